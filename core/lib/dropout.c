/*
 * dropout.c - inverted dropout, as torch.nn.Dropout in training mode: keep
 * each element with probability 1-p, scale the kept ones by 1/(1-p), and
 * record the factor applied in a mask for backward.
 *
 * The mask is drawn sequentially from the caller's stream, one uniform per
 * element in index order, so a given (seed, n, p) gives the same mask for
 * any thread count; only applying the mask runs in parallel.
 *
 * What this file deliberately does not do: reproduce PyTorch's random
 * stream (only its distribution), evaluation mode (the graph simply skips
 * dropout there), or spatial/channel dropout (Dropout2d).
 */
#include <stddef.h>

#include "ops.h"
#include "rng.h"

/* Below this many elements the OpenMP fork costs more than it saves. */
#define NB_DROP_PAR_MIN 65536

/* out, mask, in (n); out may alias in. p <= 0 copies (mask 1, no draws),
 * p >= 1 zeroes (mask 0, no draws). */
void nb_dropout_forward(float *out, float *mask, const float *in, size_t n,
			float p, nb_rng *rng)
{
	if (p <= 0.0f || p >= 1.0f) {
		float f = p <= 0.0f ? 1.0f : 0.0f;
		for (size_t i = 0; i < n; i++)
			mask[i] = f;
	} else {
		/* keep when u < 1-p: P(keep) = 1-p exactly for u in [0,1) */
		double keep = 1.0 - (double)p;
		float scale = (float)(1.0 / keep);
		for (size_t i = 0; i < n; i++)
			mask[i] = nb_rng_uniform(rng) < keep ? scale : 0.0f;
	}
#pragma omp parallel for simd schedule(static) if (n >= NB_DROP_PAR_MIN)
	for (size_t i = 0; i < n; i++)
		out[i] = in[i] * mask[i];
}

/* din, dout, mask (n): din += dout * mask. */
void nb_dropout_backward(float *din, const float *dout, const float *mask,
			 size_t n)
{
#pragma omp parallel for simd schedule(static) if (n >= NB_DROP_PAR_MIN)
	for (size_t i = 0; i < n; i++)
		din[i] += dout[i] * mask[i];
}
