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

#include <stdint.h>
#include <string.h>

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

/*
 * A product kept from fusing with the add after it. A build for the
 * baseline x86-64 compiles the kernels twice (NB_GP_CLONES: an AVX-512
 * clone, which fuses a multiply and an add into one FMA, rounded once)
 * but batchnorm.c once, without FMAs; so there the kernels' side of every
 * expression batchnorm.c also computes keeps its product apart and rounds
 * as batchnorm.c does. A native build fuses both sides alike.
 */
#if NB_GP_RUNTIME_CHECK
#define NB_UNFUSED(v) __asm__("" : "+m"(v))
#else
#define NB_UNFUSED(v) ((void)0)
#endif

/* nb_bn_value on the kernels' side (see NB_UNFUSED) */
static inline float nb_bn_value_k(float x, nb_bn_affine a)
{
	float p = ((x - a.hi) - a.lo) * a.s;
	NB_UNFUSED(p);
	return p + a.b;
}

static inline __attribute__((always_inline)) nb_v16f
nb_bn_value16(nb_v16f x, nb_bn_affine a)
{
	nb_v16f p = ((x - a.hi) - a.lo) * a.s;
	NB_UNFUSED(p);
	return p + a.b;
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
	return nb_put1(nb_bn_value_k(x, a), 0.0f, op);
}

/*
 * The sums a training-mode BatchNorm takes (batchnorm.c) run over fixed
 * slices of the batch, images [nb_bn_slice_begin(N, s),
 * nb_bn_slice_begin(N, s + 1)) for slice s, each in NB_BN_LANES double
 * lanes (element l of a plane to lane l % NB_BN_LANES, in order), the
 * lanes then added in a fixed order (nb_bn_lanes_sum) and the slices in
 * slice order: the bits do not depend on the thread count, and a
 * convolution that takes a backward's sums as it writes its input
 * gradient (winograd.c) takes them in the same order.
 */
#define NB_BN_SLICES NB_BATCHNORM_SLICES
#define NB_BN_LANES 16

static inline int nb_bn_slice_begin(int N, int s)
{
	return (int)((long long)N * s / NB_BN_SLICES);
}

static inline double nb_bn_lanes_sum(const double *a)
{
	double s = 0;
	for (int j = 0; j < NB_BN_LANES; j++)
		s += a[j];
	return s;
}

/* g masked by the activation's (act, NB_ACT_RELU or NB_ACT_RELU6)
 * derivative at x: for ReLU out > 0 exactly when nb_bn_value(x) > 0
 * (out = v < 0 ? 0 : v; NaN and -0 are not > 0), for ReLU6 0 < out < 6
 * exactly when 0 < v < 6 (torch's hardtanh_backward reads the output the
 * same way); + 0.0f turns -0 into +0, as adding the masked value to a
 * zeroed gradient does. The mask is an AND on g's bits: GCC 12 leaves a
 * float select feeding double arithmetic as a branch (the loops stay
 * scalar and mispredict the mask every other element, 25x slower), and
 * vectorises this. */
static inline float nb_bn_mask1(float g, float x, nb_bn_affine a, const int act)
{
	uint32_t u;
	memcpy(&u, &g, sizeof u);
	const float v = nb_bn_value(x, a);
	if (act == NB_ACT_RELU6)
		u &= -(uint32_t)((v > 0.0f) & (v < 6.0f));
	else
		u &= -(uint32_t)(v > 0.0f);
	float r;
	memcpy(&r, &u, sizeof r);
	return r + 0.0f;
}

/* the same on 16 lanes */
static inline __attribute__((always_inline)) nb_v16f
nb_bn_mask16(nb_v16f g, nb_v16f x, nb_bn_affine a, const int act)
{
	const nb_v16f v = nb_bn_value16(x, a);
	nb_v16i m = (nb_v16i)(v > 0.0f);
	if (act == NB_ACT_RELU6)
		m &= (nb_v16i)(v < 6.0f);
	return (nb_v16f)((nb_v16i)g & m) + 0.0f;
}

#endif
