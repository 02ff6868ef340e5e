/*
 * put16.h - how a vector of 16 results goes into its destination (the
 * NB_GP_PUT_* operations of gemmpack.h), shared by the kernels that write
 * convolution outputs. Internal to the library.
 */
#ifndef NB_PUT16_H
#define NB_PUT16_H

#include "gemmpack.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

typedef float nb_v16f __attribute__((vector_size(64)));
typedef int nb_v16i __attribute__((vector_size(64)));

/* v (old: what the destination held, read only for NB_GP_PUT_ADD) with
 * the operation op applied; every element as the scalar loops of conv2d.c
 * take it (ReLU keeps -0 and NaN, as x < 0 ? 0 : x does) */
static inline __attribute__((always_inline)) nb_v16f
nb_put16(nb_v16f v, nb_v16f old, int op)
{
	switch (op) {
	case NB_GP_PUT_ADD:
		return old + v;
	case NB_GP_PUT_STORE:
		return v + 0.0f;
	case NB_GP_PUT_RELU:
		return (nb_v16f)((nb_v16i)v & ~(nb_v16i)(v < 0.0f));
	case NB_GP_PUT_RELU6: {
		const nb_v16f r = (nb_v16f)((nb_v16i)v & ~(nb_v16i)(v < 0.0f));
		const nb_v16i gt = (nb_v16i)(r > 6.0f);
		const nb_v16f six = (nb_v16f){0} + 6.0f;
		return (nb_v16f)(((nb_v16i)r & ~gt) | ((nb_v16i)six & gt));
	}
	default:
		return v;
	}
}

/* the same for one float */
static inline float nb_put1(float v, float old, int op)
{
	switch (op) {
	case NB_GP_PUT_ADD:
		return old + v;
	case NB_GP_PUT_STORE:
		return v + 0.0f;
	case NB_GP_PUT_RELU:
		return v < 0.0f ? 0.0f : v;
	case NB_GP_PUT_RELU6:
		return v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v);
	default:
		return v;
	}
}

#endif
