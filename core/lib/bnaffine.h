/*
 * bnaffine.h - a training-mode BatchNorm's normalisation of one channel as
 * its forward keeps it (save_affine: 4 floats, the mean as hi + lo, the
 * scale, the shift) and the one expression that applies it, so that every
 * pass that normalises (batchnorm.c's, and a convolution's that normalises
 * its input as it reads it: ops.h, nb_conv_pre) computes the same bits.
 * Internal to the library.
 */
#ifndef NB_BNAFFINE_H
#define NB_BNAFFINE_H

#include "ops.h"
#include "put16.h"

typedef struct nb_bn_affine {
	float hi, lo, s, b;
} nb_bn_affine;

static inline nb_bn_affine nb_bn_affine_at(const float *save_affine, int c)
{
	const float *p = save_affine + 4 * (size_t)c;
	nb_bn_affine a = {p[0], p[1], p[2], p[3]};
	return a;
}

/* x normalised: (x - mean) * scale + shift, the mean subtracted first in
 * two parts (see batchnorm.c) */
static inline float nb_bn_value(float x, nb_bn_affine a)
{
	return ((x - a.hi) - a.lo) * a.s + a.b;
}

static inline __attribute__((always_inline)) nb_v16f
nb_bn_value16(nb_v16f x, nb_bn_affine a)
{
	return ((x - a.hi) - a.lo) * a.s + a.b;
}

/* NB_ACT_* as the NB_GP_PUT_* operation that applies it */
static inline int nb_bn_act_op(int act)
{
	return act == NB_ACT_RELU    ? NB_GP_PUT_RELU
	       : act == NB_ACT_RELU6 ? NB_GP_PUT_RELU6
				     : NB_GP_PUT_COPY;
}

/* normalised and activated (op from nb_bn_act_op) */
static inline __attribute__((always_inline)) nb_v16f
nb_bn_act16(nb_v16f x, nb_bn_affine a, int op)
{
	return nb_put16(nb_bn_value16(x, a), (nb_v16f){0}, op);
}

static inline float nb_bn_act1(float x, nb_bn_affine a, int op)
{
	return nb_put1(nb_bn_value(x, a), 0.0f, op);
}

#endif
