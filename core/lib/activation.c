/*
 * activation.c - element-wise activations: ReLU, ReLU6, leaky ReLU, tanh,
 * forward and backward over n contiguous floats.
 *
 * Each loop is written as a select so the compiler vectorises it, and is
 * split over threads (static schedule) only when n is large enough to pay
 * for the fork. Values match PyTorch, including the gradient at the kinks
 * (relu'(0) = 0, relu6'(0) = relu6'(6) = 0, leaky'(0) = slope) and NaN
 * propagation in the forward pass (relu(NaN) = NaN, as torch's clamp).
 *
 * What this file deliberately does not do: in-place variants with separate
 * semantics (out may alias in in every forward, which is all the graph
 * needs), or fused activations (conv+relu) - those belong to a fast path
 * with this file as its simple twin.
 */
#include <math.h>
#include <stddef.h>

#include "ops.h"

/* Below this many elements the OpenMP fork costs more than it saves. */
#define NB_ACT_PAR_MIN 65536

/* out, in (n). `x < 0 ? 0 : x` keeps NaN (the comparison is false). */
void nb_relu_forward(float *out, const float *in, size_t n)
{
#pragma omp parallel for simd schedule(static) if (n >= NB_ACT_PAR_MIN)
	for (size_t i = 0; i < n; i++)
		out[i] = in[i] < 0.0f ? 0.0f : in[i];
}

/* din, dout, in (n): din += dout where in > 0. */
void nb_relu_backward(float *din, const float *dout, const float *in, size_t n)
{
#pragma omp parallel for simd schedule(static) if (n >= NB_ACT_PAR_MIN)
	for (size_t i = 0; i < n; i++)
		din[i] += in[i] > 0.0f ? dout[i] : 0.0f;
}

/* out, in (n): clamp to [0, 6], NaN kept. */
void nb_relu6_forward(float *out, const float *in, size_t n)
{
#pragma omp parallel for simd schedule(static) if (n >= NB_ACT_PAR_MIN)
	for (size_t i = 0; i < n; i++) {
		float x = in[i];
		out[i] = x < 0.0f ? 0.0f : (x > 6.0f ? 6.0f : x);
	}
}

/* din, dout, in (n): din += dout strictly inside (0, 6), as torch's
 * hardtanh_backward. */
void nb_relu6_backward(float *din, const float *dout, const float *in, size_t n)
{
#pragma omp parallel for simd schedule(static) if (n >= NB_ACT_PAR_MIN)
	for (size_t i = 0; i < n; i++) {
		float x = in[i];
		din[i] += (x > 0.0f && x < 6.0f) ? dout[i] : 0.0f;
	}
}

/* out, in (n): x for x > 0, slope * x otherwise. */
void nb_leaky_relu_forward(float *out, const float *in, size_t n, float slope)
{
#pragma omp parallel for simd schedule(static) if (n >= NB_ACT_PAR_MIN)
	for (size_t i = 0; i < n; i++) {
		float x = in[i];
		out[i] = x > 0.0f ? x : x * slope;
	}
}

/* din, dout, in (n): the gradient at 0 is slope, as PyTorch. */
void nb_leaky_relu_backward(float *din, const float *dout, const float *in,
			    size_t n, float slope)
{
#pragma omp parallel for simd schedule(static) if (n >= NB_ACT_PAR_MIN)
	for (size_t i = 0; i < n; i++)
		din[i] += in[i] > 0.0f ? dout[i] : dout[i] * slope;
}

/* out, in (n). */
void nb_tanh_forward(float *out, const float *in, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= NB_ACT_PAR_MIN)
	for (size_t i = 0; i < n; i++)
		out[i] = tanhf(in[i]);
}

/* din, dout, out (n): uses the forward OUTPUT, tanh' = 1 - tanh^2. */
void nb_tanh_backward(float *din, const float *dout, const float *out, size_t n)
{
#pragma omp parallel for simd schedule(static) if (n >= NB_ACT_PAR_MIN)
	for (size_t i = 0; i < n; i++) {
		float y = out[i];
		din[i] += dout[i] * (1.0f - y * y);
	}
}
