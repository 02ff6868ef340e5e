/*
 * structure.c - the ops that move data rather than compute with it:
 * element-wise add (residual connections), concatenation and slicing along
 * channels (DenseNet, Inception, ShuffleNet's split), channel shuffle, and
 * nearest-neighbour upsampling by an integer factor.
 *
 * Every backward is the exact adjoint of its forward and accumulates into
 * the gradient buffers. Work is split over images or planes, so no two
 * threads ever write the same element and results do not depend on the
 * thread count.
 *
 * What this file deliberately does not do: views or zero-copy tricks (the
 * graph owns memory and these ops always copy), concat along other axes,
 * fractional or bilinear upsampling.
 */
#include <stddef.h>
#include <string.h>

#include "ops.h"

/* Below this many elements the OpenMP fork costs more than it saves. */
#define NB_STRUCT_PAR_MIN 65536

/* out, a, b (n); out may alias a or b. */
void nb_add_forward(float *out, const float *a, const float *b, size_t n)
{
#pragma omp parallel for simd schedule(static) if (n >= NB_STRUCT_PAR_MIN)
	for (size_t i = 0; i < n; i++)
		out[i] = a[i] + b[i];
}

/* da, db, dout (n); either may be NULL, and da == db (x + x) is fine. */
void nb_add_backward(float *da, float *db, const float *dout, size_t n)
{
	if (da) {
#pragma omp parallel for simd schedule(static) if (n >= NB_STRUCT_PAR_MIN)
		for (size_t i = 0; i < n; i++)
			da[i] += dout[i];
	}
	if (db) {
#pragma omp parallel for simd schedule(static) if (n >= NB_STRUCT_PAR_MIN)
		for (size_t i = 0; i < n; i++)
			db[i] += dout[i];
	}
}

static size_t sum_channels(const int *C, int n_in)
{
	size_t s = 0;
	for (int k = 0; k < n_in; k++)
		s += (size_t)C[k];
	return s;
}

/* in[k] (N, C[k], L), out (N, sum C, L): one contiguous block per input
 * per image. */
void nb_concat_forward(float *out, const float *const *in, const int *C,
		       int n_in, int N, int L)
{
	size_t Ct = sum_channels(C, n_in);
#pragma omp parallel for schedule(static) if (N * Ct * L >= NB_STRUCT_PAR_MIN)
	for (int n = 0; n < N; n++) {
		float *dst = out + (size_t)n * Ct * L;
		for (int k = 0; k < n_in; k++) {
			size_t blk = (size_t)C[k] * L;
			memcpy(dst, in[k] + (size_t)n * blk,
			       blk * sizeof(float));
			dst += blk;
		}
	}
}

/* din[k] (N, C[k], L) or NULL, dout (N, sum C, L). */
void nb_concat_backward(float *const *din, const float *dout, const int *C,
			int n_in, int N, int L)
{
	size_t Ct = sum_channels(C, n_in);
#pragma omp parallel for schedule(static) if (N * Ct * L >= NB_STRUCT_PAR_MIN)
	for (int n = 0; n < N; n++) {
		const float *src = dout + (size_t)n * Ct * L;
		for (int k = 0; k < n_in; k++) {
			size_t blk = (size_t)C[k] * L;
			if (din[k]) {
				float *dst = din[k] + (size_t)n * blk;
				for (size_t i = 0; i < blk; i++)
					dst[i] += src[i];
			}
			src += blk;
		}
	}
}

/* in (N,C,L), out (N,len,L) = channels [start, start+len). */
void nb_channel_slice_forward(float *out, const float *in, int N, int C, int L,
			      int start, int len)
{
	size_t blk = (size_t)len * L;
#pragma omp parallel for schedule(static) if (N * blk >= NB_STRUCT_PAR_MIN)
	for (int n = 0; n < N; n++)
		memcpy(out + (size_t)n * blk, in + ((size_t)n * C + start) * L,
		       blk * sizeof(float));
}

/* din (N,C,L), dout (N,len,L): channels outside the slice get nothing. */
void nb_channel_slice_backward(float *din, const float *dout, int N, int C,
			       int L, int start, int len)
{
	size_t blk = (size_t)len * L;
#pragma omp parallel for schedule(static) if (N * blk >= NB_STRUCT_PAR_MIN)
	for (int n = 0; n < N; n++) {
		float *dst = din + ((size_t)n * C + start) * L;
		const float *src = dout + (size_t)n * blk;
		for (size_t i = 0; i < blk; i++)
			dst[i] += src[i];
	}
}

/* in, out (N,C,L), C = groups * m: out channel j*groups + g is in channel
 * g*m + j. in and out must not alias. */
void nb_channel_shuffle_forward(float *out, const float *in, int N, int C,
				int L, int groups)
{
	int m = C / groups;
	size_t total = (size_t)N * C * L;
#pragma omp parallel for schedule(static) if (total >= NB_STRUCT_PAR_MIN)
	for (int n = 0; n < N; n++)
		for (int g = 0; g < groups; g++)
			for (int j = 0; j < m; j++)
				memcpy(out +
					   ((size_t)n * C + j * groups + g) * L,
				       in + ((size_t)n * C + g * m + j) * L,
				       (size_t)L * sizeof(float));
}

/* din, dout (N,C,L): the inverse permutation, accumulated. */
void nb_channel_shuffle_backward(float *din, const float *dout, int N, int C,
				 int L, int groups)
{
	int m = C / groups;
	size_t total = (size_t)N * C * L;
#pragma omp parallel for schedule(static) if (total >= NB_STRUCT_PAR_MIN)
	for (int n = 0; n < N; n++)
		for (int g = 0; g < groups; g++)
			for (int j = 0; j < m; j++) {
				float *dst =
				    din + ((size_t)n * C + g * m + j) * L;
				const float *src =
				    dout + ((size_t)n * C + j * groups + g) * L;
				for (int l = 0; l < L; l++)
					dst[l] += src[l];
			}
}

/* in (N,C,H,W), out (N,C,sH,sW): out(y,x) = in(y/s, x/s). */
void nb_upsample_nearest_forward(float *out, const float *in, int N, int C,
				 int H, int W, int scale)
{
	int s = scale, OW = W * s;
	size_t planes = (size_t)N * C;
#pragma omp parallel for schedule(static) if (planes * H * W * s * s >=        \
					      NB_STRUCT_PAR_MIN)
	for (size_t p = 0; p < planes; p++) {
		const float *src = in + p * H * W;
		float *dst = out + p * H * W * s * s;
		for (int y = 0; y < H; y++) {
			/* build one output row, then repeat it s-1 times */
			float *row = dst + (size_t)y * s * OW;
			for (int x = 0; x < W; x++)
				for (int i = 0; i < s; i++)
					row[x * s + i] = src[y * W + x];
			for (int r = 1; r < s; r++)
				memcpy(row + (size_t)r * OW, row,
				       (size_t)OW * sizeof(float));
		}
	}
}

/* din (N,C,H,W), dout (N,C,sH,sW): each input pixel gathers its s x s
 * block, so threads (one per plane) never collide. */
void nb_upsample_nearest_backward(float *din, const float *dout, int N, int C,
				  int H, int W, int scale)
{
	int s = scale, OW = W * s;
	size_t planes = (size_t)N * C;
#pragma omp parallel for schedule(static) if (planes * H * W * s * s >=        \
					      NB_STRUCT_PAR_MIN)
	for (size_t p = 0; p < planes; p++) {
		float *dst = din + p * H * W;
		const float *src = dout + p * H * W * s * s;
		for (int y = 0; y < H; y++)
			for (int x = 0; x < W; x++) {
				float acc = 0;
				for (int r = 0; r < s; r++)
					for (int i = 0; i < s; i++)
						acc += src[((size_t)y * s + r) *
							       OW +
							   x * s + i];
				dst[y * W + x] += acc;
			}
	}
}
