/*
 * pool.c - 2-D pooling with PyTorch's numerics, forward and backward, NCHW:
 *  - max pooling: -inf padding, the first maximum (raster order) wins a
 *    tie, a NaN propagates (as PyTorch's CPU kernel), argmax records the flat
 *    in-plane index h*W+w of the winner for backward;
 *  - average pooling: count_include_pad=True, so the divisor is always k*k
 *    in floor mode;
 *  - adaptive average pooling: rows [floor(i*H/P), ceil((i+1)*H/P)),
 *    columns likewise, divisor = window size.
 * Every (image, channel) plane is independent, so the work is split over
 * the N*C planes with OpenMP; backward writes only into its own plane, so
 * there are no races and no reductions.
 *
 * Max pooling with k = stride = 2 and no padding (LeNet's and the plain
 * CNNs' pool) has a branch-free fast path: the general loop's compare and
 * branch per pixel mispredicts on real data about half the time. Both paths
 * apply the same rule in the same order; tests/unit/conv_test.c compares
 * the fast path against a plain-loop twin.
 *
 * What it deliberately does not do: ceil_mode, dilation, non-square
 * kernels/strides/padding for the fixed-window pools, or
 * count_include_pad=False.
 */
#include <math.h>
#include <stdint.h>

#include "ops.h"

/*
 * One plane of 2x2, stride 2, unpadded max pooling: x (H,W) -> o, am (P,Q).
 * The rule of the general loop below as selects: a pixel takes over when it
 * is greater than the best so far or is NaN, in raster order a, b, c, d (the
 * first pixel always "takes over" from -inf, or keeps -inf at its own
 * index).
 */
typedef float pv8f __attribute__((vector_size(32)));
typedef int32_t pv8i __attribute__((vector_size(32)));
typedef float pv8f_u __attribute__((vector_size(32), aligned(4), may_alias));
typedef int32_t pv8i_u __attribute__((vector_size(32), aligned(4), may_alias));

/* where m: v and i take over from *best and *at (bit selects) */
static inline void take_where(pv8f *best, pv8i *at, pv8f v, pv8i i)
{
	const pv8i m = (v > *best) | (v != v);
	*best = (pv8f)(((pv8i)v & m) | ((pv8i)*best & ~m));
	*at = (i & m) | (*at & ~m);
}

/* 8 outputs from 16 floats of each of the two input rows; index0 is the
 * flat input index of the first output's top-left pixel */
static inline void pool8(float *o, int32_t *am, const float *r0,
			 const float *r1, int32_t index0, int32_t W)
{
	const pv8f a0 = *(const pv8f_u *)r0, a1 = *(const pv8f_u *)(r0 + 8);
	const pv8f b0 = *(const pv8f_u *)r1, b1 = *(const pv8f_u *)(r1 + 8);
	const pv8f a = __builtin_shufflevector(a0, a1, 0, 2, 4, 6, 8, 10, 12,
					       14); /* even columns */
	const pv8f b = __builtin_shufflevector(a0, a1, 1, 3, 5, 7, 9, 11, 13,
					       15); /* odd columns */
	const pv8f c =
	    __builtin_shufflevector(b0, b1, 0, 2, 4, 6, 8, 10, 12, 14);
	const pv8f d =
	    __builtin_shufflevector(b0, b1, 1, 3, 5, 7, 9, 11, 13, 15);
	const pv8i i = index0 + (pv8i){0, 2, 4, 6, 8, 10, 12, 14};
	pv8f best = a;
	pv8i at = i;
	take_where(&best, &at, b, i + 1);
	take_where(&best, &at, c, i + W);
	take_where(&best, &at, d, i + W + 1);
	*(pv8f_u *)o = best;
	*(pv8i_u *)am = at;
}

/*
 * One plane of 2x2, stride 2, unpadded max pooling: x (H,W) -> o, am (P,Q).
 * The rule of the general loop below on 8 outputs at a time: a pixel takes
 * over when it is greater than the best so far or is NaN, in raster order
 * a, b, c, d (the first pixel always starts as the best, -inf included).
 * The last columns of a row go through the same code on a copy padded to
 * 16 floats, so no scalar path (whose float selects compile to branches)
 * is needed.
 */
static void maxpool_plane_2x2(float *restrict o, int32_t *restrict am,
			      const float *restrict x, int W, int P, int Q)
{
	for (int p = 0; p < P; p++) {
		const float *r0 = x + (size_t)2 * p * W, *r1 = r0 + W;
		float *op = o + (size_t)p * Q;
		int32_t *ap = am + (size_t)p * Q;
		const int32_t base = 2 * p * W;
		int q = 0;
		for (; q + 8 <= Q; q += 8)
			pool8(op + q, ap + q, r0 + 2 * q, r1 + 2 * q,
			      base + 2 * q, W);
		if (q == Q)
			continue;
		float t0[16] = {0}, t1[16] = {0}, ot[8];
		int32_t at[8];
		const int n = Q - q;
		for (int j = 0; j < 2 * n; j++) {
			t0[j] = r0[2 * q + j];
			t1[j] = r1[2 * q + j];
		}
		pool8(ot, at, t0, t1, base + 2 * q, W);
		for (int j = 0; j < n; j++) {
			op[q + j] = ot[j];
			ap[q + j] = at[j];
		}
	}
}

/* in (N,C,H,W) -> out, argmax (N,C,P,Q), P = (H + 2*pad - k)/stride + 1 */
void nb_maxpool2d_forward(float *out, int32_t *argmax, const float *in, int N,
			  int C, int H, int W, int k, int stride, int pad)
{
	const int P = (H + 2 * pad - k) / stride + 1;
	const int Q = (W + 2 * pad - k) / stride + 1;
	const long planes = (long)N * C;
	if (k == 2 && stride == 2 && pad == 0) {
#pragma omp parallel for schedule(static)
		for (long pl = 0; pl < planes; pl++)
			maxpool_plane_2x2(out + pl * P * Q, argmax + pl * P * Q,
					  in + pl * H * W, W, P, Q);
		return;
	}
#pragma omp parallel for schedule(static)
	for (long pl = 0; pl < planes; pl++) {
		const float *x = in + pl * H * W;
		float *o = out + pl * P * Q;
		int32_t *am = argmax + pl * P * Q;
		for (int p = 0; p < P; p++) {
			int h0 = p * stride - pad, h1 = h0 + k;
			h0 = h0 < 0 ? 0 : h0;
			h1 = h1 > H ? H : h1;
			for (int q = 0; q < Q; q++) {
				int w0 = q * stride - pad, w1 = w0 + k;
				w0 = w0 < 0 ? 0 : w0;
				w1 = w1 > W ? W : w1;
				/* padding is -inf: it never wins; a window
				 * of only -inf reports its first pixel, as
				 * PyTorch */
				float best = -INFINITY;
				int32_t at =
				    h0 < h1 && w0 < w1 ? h0 * W + w0 : -1;
				for (int h = h0; h < h1; h++)
					for (int w = w0; w < w1; w++) {
						float v = x[h * W + w];
						if (v > best || isnan(v)) {
							best = v;
							at = h * W + w;
						}
					}
				o[p * Q + q] = best;
				am[p * Q + q] = at;
			}
		}
	}
}

/* dout, argmax (N,C,P,Q) -> din (N,C,H,W) += dout at each argmax */
void nb_maxpool2d_backward(float *din, const float *dout, const int32_t *argmax,
			   int N, int C, int H, int W, int P, int Q)
{
	const long planes = (long)N * C;
#pragma omp parallel for schedule(static)
	for (long pl = 0; pl < planes; pl++) {
		float *d = din + pl * H * W;
		const float *g = dout + pl * P * Q;
		const int32_t *am = argmax + pl * P * Q;
		for (int i = 0; i < P * Q; i++)
			if (am[i] >= 0)
				d[am[i]] += g[i];
	}
}

/* in (N,C,H,W) -> out (N,C,P,Q), zero padding counted in the divisor */
void nb_avgpool2d_forward(float *out, const float *in, int N, int C, int H,
			  int W, int k, int stride, int pad)
{
	const int P = (H + 2 * pad - k) / stride + 1;
	const int Q = (W + 2 * pad - k) / stride + 1;
	const long planes = (long)N * C;
	const float scale = 1.0f / (float)(k * k);
#pragma omp parallel for schedule(static)
	for (long pl = 0; pl < planes; pl++) {
		const float *x = in + pl * H * W;
		float *o = out + pl * P * Q;
		for (int p = 0; p < P; p++) {
			int h0 = p * stride - pad, h1 = h0 + k;
			h0 = h0 < 0 ? 0 : h0;
			h1 = h1 > H ? H : h1;
			for (int q = 0; q < Q; q++) {
				int w0 = q * stride - pad, w1 = w0 + k;
				w0 = w0 < 0 ? 0 : w0;
				w1 = w1 > W ? W : w1;
				float acc = 0;
				for (int h = h0; h < h1; h++)
					for (int w = w0; w < w1; w++)
						acc += x[h * W + w];
				o[p * Q + q] = acc * scale;
			}
		}
	}
}

/* dout (N,C,P,Q) -> din (N,C,H,W) += dout / (k*k) over each window */
void nb_avgpool2d_backward(float *din, const float *dout, int N, int C, int H,
			   int W, int k, int stride, int pad)
{
	const int P = (H + 2 * pad - k) / stride + 1;
	const int Q = (W + 2 * pad - k) / stride + 1;
	const long planes = (long)N * C;
	const float scale = 1.0f / (float)(k * k);
#pragma omp parallel for schedule(static)
	for (long pl = 0; pl < planes; pl++) {
		float *d = din + pl * H * W;
		const float *g = dout + pl * P * Q;
		for (int p = 0; p < P; p++) {
			int h0 = p * stride - pad, h1 = h0 + k;
			h0 = h0 < 0 ? 0 : h0;
			h1 = h1 > H ? H : h1;
			for (int q = 0; q < Q; q++) {
				int w0 = q * stride - pad, w1 = w0 + k;
				w0 = w0 < 0 ? 0 : w0;
				w1 = w1 > W ? W : w1;
				float v = g[p * Q + q] * scale;
				for (int h = h0; h < h1; h++)
					for (int w = w0; w < w1; w++)
						d[h * W + w] += v;
			}
		}
	}
}

/* PyTorch's adaptive window for output index i of n_out over n_in:
 * [floor(i*n_in/n_out), ceil((i+1)*n_in/n_out)). */
static void adaptive_window(int i, int n_in, int n_out, int *lo, int *hi)
{
	*lo = (int)(((long)i * n_in) / n_out);
	*hi = (int)(((long)(i + 1) * n_in + n_out - 1) / n_out);
}

/* in (N,C,H,W) -> out (N,C,P,Q), each output the mean of its window */
void nb_adaptive_avgpool2d_forward(float *out, const float *in, int N, int C,
				   int H, int W, int P, int Q)
{
	const long planes = (long)N * C;
#pragma omp parallel for schedule(static)
	for (long pl = 0; pl < planes; pl++) {
		const float *x = in + pl * H * W;
		float *o = out + pl * P * Q;
		for (int p = 0; p < P; p++) {
			int h0, h1;
			adaptive_window(p, H, P, &h0, &h1);
			for (int q = 0; q < Q; q++) {
				int w0, w1;
				adaptive_window(q, W, Q, &w0, &w1);
				float acc = 0;
				for (int h = h0; h < h1; h++)
					for (int w = w0; w < w1; w++)
						acc += x[h * W + w];
				o[p * Q + q] =
				    acc / (float)((h1 - h0) * (w1 - w0));
			}
		}
	}
}

/* dout (N,C,P,Q) -> din (N,C,H,W) += dout / window size over each window */
void nb_adaptive_avgpool2d_backward(float *din, const float *dout, int N, int C,
				    int H, int W, int P, int Q)
{
	const long planes = (long)N * C;
#pragma omp parallel for schedule(static)
	for (long pl = 0; pl < planes; pl++) {
		float *d = din + pl * H * W;
		const float *g = dout + pl * P * Q;
		for (int p = 0; p < P; p++) {
			int h0, h1;
			adaptive_window(p, H, P, &h0, &h1);
			for (int q = 0; q < Q; q++) {
				int w0, w1;
				adaptive_window(q, W, Q, &w0, &w1);
				float v = g[p * Q + q] /
					  (float)((h1 - h0) * (w1 - w0));
				for (int h = h0; h < h1; h++)
					for (int w = w0; w < w1; w++)
						d[h * W + w] += v;
			}
		}
	}
}
