/*
 * batchnorm.c - batch normalisation over (N,C,L) tensors: BatchNorm2d with
 * L = H*W, BatchNorm1d with L = 1 or a sequence length.
 *
 * Numerics follow PyTorch's CPU kernel: per-channel statistics accumulated
 * in double, normalisation with the biased batch variance, eps inside the
 * square root, running variance updated with the unbiased variance. The
 * sums are taken per fixed slice of the batch and added in slice order
 * (below), so the results are bit-identical for any thread count.
 *
 * Speed: every per-channel sum runs in NB_BN_LANES independent double
 * lanes (element l of a plane goes to lane l % NB_BN_LANES, the lanes are
 * added up in a fixed order at the end), so the loops vectorise without
 * -ffast-math and stay deterministic; a single running double sum is bound
 * by the add latency (measured 4x slower). 16 lanes are two vectors of
 * doubles in flight per sum (preresnet20 training 5 % faster than with 8;
 * 32 spill). The training-mode statistics are per-channel sums: of
 * slice_stats (of x - K and (x - K)^2, one pass) and of slice_grad_sums
 * (sum dy, sum dy*(x - mean)); syncbn.c takes the same sums over a group
 * of processes.
 *
 * The threads split the batch, not the channels: the images fall into
 * NB_BN_SLICES fixed ranges (slices), each thread takes a run of whole
 * slices, and a channel's sum is its per-slice sums added up in slice
 * order, so the bits do not depend on the thread count. Split by
 * channels, two threads read alternate 16-32 KB runs of every image and
 * stream no faster than one (this machine, batch 128, 16 channels of
 * 32x32, cold caches: 0.38 -> 0.32 ms for a sums pass from 1 to 2
 * threads); split by images each reads one half of the tensor (0.39 ->
 * 0.21 ms).
 *
 * What this file deliberately does not do: allocate anything (the caller
 * owns save_mean/save_invstd), track num_batches_tracked or support
 * momentum=None (cumulative averaging). The _relu and _relu6 variants are
 * BatchNorm followed by ReLU or ReLU6 in one pass, bit-identical to the
 * two ops one after the other (the network uses them when the activation
 * works in place); their backward masks the activation's gradient in its
 * first pass, recomputing the forward's values from in (preresnet20's
 * training step, batch 128: BatchNorm + ReLU backward 21 -> 16.5 ms at 1
 * thread, 19 -> 16 ms at 2).
 * The _store variant of the backward writes din instead of adding to it.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <omp.h>

/* GCC tunes most AVX-512 cores (-march=native on an Intel server core says
 * rocketlake, skylake-avx512, ...) to vectorise with 256-bit registers;
 * the double-precision sums below are then bound by arithmetic, not by
 * memory. With 512-bit vectors: the BatchNorm + ReLU backward on 128 x 16
 * x 32x32, 1 thread, 2.04 -> 1.70 ms (Intel Xeon, AVX-512); the forward
 * unchanged. Same bits: every lane keeps its own sum either way. */
#if defined(__AVX512F__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("prefer-vector-width=512")
#endif

#include "bnaffine.h"
#include "error.h"
#include "ops.h"

/* Below this many elements the OpenMP fork costs more than it saves. */
#define NB_BN_PAR_MIN 32768

/*
 * Channels c0..c0+nc-1 of a thread's share, NB_BN_BLOCK at most. Every
 * pass below sweeps a block image by image (the planes of image n of
 * channels c0.. lie next to each other), not channel by channel: a
 * channel's planes are L floats C*L apart, so one channel at a time reads
 * a short run per plane and the prefetcher starts over each time (16 x 4 KB
 * planes side by side are one 64 KB run). Measured in preresnet20's
 * training step, batch 128, 1 thread: BatchNorm backward 17-19 -> 13.3 ms,
 * forward 28-29 -> 25-26 ms. Each channel's sums still take its elements
 * in the same order as a channel-at-a-time loop, so the bits are the same.
 */
#define NB_BN_BLOCK 64

typedef struct bn_block {
	int c0, nc;
} bn_block;

/* The block of channels starting at c0: every thread walks the same
 * blocks, for (int c0 = 0; c0 < C; c0 += NB_BN_BLOCK) */
static bn_block block_at(int c0, int C)
{
	const int n = C - c0;
	bn_block b = {c0, n < NB_BN_BLOCK ? n : NB_BN_BLOCK};
	return b;
}

/* the plane of image n, channel c */
#define PLANE(p, n, c) ((p) + ((size_t)(n)*C + (c)) * L)

/* acc[l % LANES] += x[l] - K, sq[...] += (x[l] - K)^2 for l < Lv (whole
 * lane blocks) */
static void plane_shifted(double *restrict acc, double *restrict sq,
			  const float *restrict x, int Lv, double K)
{
	for (int l = 0; l < Lv; l += NB_BN_LANES)
#pragma omp simd
		for (int j = 0; j < NB_BN_LANES; j++) {
			double d = x[l + j] - K;
			acc[j] += d;
			sq[j] += d * d;
		}
}

/*
 * The elements past a plane's whole lane blocks (L % LANES of them) go to
 * one more sum per channel, in order: for each image, its tail elements
 * l = Lv.. L-1. Those sums are serial chains, so they run across the
 * block's channels, one vector of channels per tail position, which keeps
 * every channel's order (and bits) and does not wait for one add after the
 * other (MobileNetV2's 5x5 maps: 9 of every 25 elements are tail; the
 * channel-by-channel loop made its BatchNorm backward twice as slow per
 * element as on 16x16 maps).
 */
static void tail_shifted(double *restrict rest, double *restrict sq_rest,
			 const float *restrict x, int nc, int L, int Lv,
			 const double *restrict K)
{
	for (int l = Lv; l < L; l++)
#pragma omp simd
		for (int j = 0; j < nc; j++) {
			double d = x[(size_t)j * L + l] - K[j];
			rest[j] += d;
			sq_rest[j] += d * d;
		}
}

/*
 * Batch statistics, in one pass over the data (BatchNorm is memory-bound:
 * a pass is what it costs): per-channel sums of x - K and (x - K)^2 with K
 * the channel's first element, over the images [n0, n1) (one slice) of a
 * block, into s1[j], s2[j]. The variance S2/M - (S1/M)^2 then cancels only
 * by (mean - K)^2 / var, the squared z-score of one sample (a plain sum of
 * squares, K = 0, cancels badly when |mean| >> std), and in double that
 * leaves the float result exact but for ties; PyTorch takes two passes
 * (mean, then squared deviations), which round the same way.
 */
static void slice_stats(const float *in, int n0, int n1, int C, int L,
			bn_block b, double *s1, double *s2)
{
	double acc[NB_BN_BLOCK][NB_BN_LANES] = {{0}}, rest[NB_BN_BLOCK] = {0};
	double sq[NB_BN_BLOCK][NB_BN_LANES] = {{0}}, sq_rest[NB_BN_BLOCK] = {0};
	double K[NB_BN_BLOCK];
	for (int j = 0; j < b.nc; j++)
		K[j] = *PLANE(in, 0, b.c0 + j);
	const int Lv = L - L % NB_BN_LANES;
	for (int n = n0; n < n1; n++) {
		for (int j = 0; j < b.nc; j++)
			plane_shifted(acc[j], sq[j], PLANE(in, n, b.c0 + j), Lv,
				      K[j]);
		tail_shifted(rest, sq_rest, PLANE(in, n, b.c0), b.nc, L, Lv, K);
	}
	for (int j = 0; j < b.nc; j++) {
		s1[j] = nb_bn_lanes_sum(acc[j]) + rest[j];
		s2[j] = nb_bn_lanes_sum(sq[j]) + sq_rest[j];
	}
}

/* Block channel j's sum over the whole batch: its slices' sums p[s][j]
 * added in slice order */
static double slices_sum(double p[][NB_BN_BLOCK], int j)
{
	double S = 0;
	for (int s = 0; s < NB_BN_SLICES; s++)
		S += p[s][j];
	return S;
}

/* Mean and biased variance of block channel j from its slices' sums */
static void slices_stats(double s1[][NB_BN_BLOCK], double s2[][NB_BN_BLOCK],
			 int j, double K, double M, double *mean, double *var)
{
	const double d = slices_sum(s1, j) / M;
	const double v = slices_sum(s2, j) / M - d * d;
	*mean = K + d;
	*var = v < 0.0 ? 0.0 : v; /* NaN stays NaN */
}

/*
 * The normalisation of one plane: y = (x - mean) * scale + shift, with the
 * mean split into a float and its float remainder (hi + lo).
 *
 * Why not PyTorch's fold, x * (invstd*gamma) + (beta - mean*invstd*gamma)?
 * When |mean| >> std both terms are huge and cancel: with mean 100 and std
 * 0.007 the fold loses ~1e-3 of an O(1) output. Subtracting the mean first
 * is exact for x near mean_hi (Sterbenz), so the output keeps float
 * precision; it stays in float and vectorises. The expression itself is
 * nb_bn_value (bnaffine.h), shared with the convolutions that normalise
 * their input as they read it (nb_conv2d_forward_pre).
 */
static nb_bn_affine affine(double mean, double scale, double shift)
{
	nb_bn_affine a;
	a.hi = (float)mean;
	a.lo = (float)(mean - a.hi);
	a.s = (float)scale;
	a.b = (float)shift;
	return a;
}

/* The activation fused after the normalisation: none, ReLU or ReLU6
 * (clamp to [0, 6]). A constant in every inlined call, so that each loop
 * is straight-line. The NB_ACT_* values (nb_bn_mask1 takes them). */
enum {
	ACT_NONE = NB_ACT_NONE,
	ACT_RELU = NB_ACT_RELU,
	ACT_RELU6 = NB_ACT_RELU6
};

/* v activated: nb_relu_forward's / nb_relu6_forward's select on v */
static inline float act_value(float v, const int act)
{
	if (act == ACT_RELU6)
		return v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v);
	if (act == ACT_RELU)
		return v < 0.0f ? 0.0f : v;
	return v;
}

/* a kept for the backward as 4 floats (save_affine) and back */
static void affine_put(float *p, nb_bn_affine a)
{
	p[0] = a.hi;
	p[1] = a.lo;
	p[2] = a.s;
	p[3] = a.b;
}

/* One plane's share of slice_grad_sums' sums. If act (ACT_RELU or
 * ACT_RELU6), dy = g masked by that activation of a, and the masked values
 * are written back to g (act is a constant in every call, so that each
 * loop is straight-line and vectorises). */
static inline __attribute__((always_inline)) void
plane_grad_sums_t(double *restrict ady, double *restrict adx,
		  double *restrict adydx, float *g, const float *restrict x,
		  int Lv, double m, nb_bn_affine a, const int act)
{
	for (int l = 0; l < Lv; l += NB_BN_LANES)
#pragma omp simd
		for (int k = 0; k < NB_BN_LANES; k++) {
			float gm = g[l + k];
			if (act) {
				gm = nb_bn_mask1(gm, x[l + k], a, act);
				g[l + k] = gm;
			}
			double dy = gm;
			double dx = x[l + k] - m;
			ady[k] += dy;
			adx[k] += dx;
			adydx[k] += dy * dx;
		}
}

/* The planes' tails (L % LANES elements each) of one image, across the
 * block's channels as in tail_shifted: r[0][j] += dy, r[1][j] += dx,
 * r[2][j] += dy * dx, each channel in order; masked and written back as
 * in plane_grad_sums_t. g and x: the image's first plane of the block. */
static inline __attribute__((always_inline)) void
tail_grad_sums_t(double (*restrict r)[NB_BN_BLOCK], float *g,
		 const float *restrict x, int nc, int L, int Lv,
		 const double *restrict m, const nb_bn_affine *restrict a,
		 const int act)
{
	for (int l = Lv; l < L; l++)
#pragma omp simd
		for (int j = 0; j < nc; j++) {
			const size_t i = (size_t)j * L + l;
			float gm = g[i];
			if (act) {
				gm = nb_bn_mask1(gm, x[i], a[j], act);
				g[i] = gm;
			}
			double dy = gm;
			double dx = x[i] - m[j];
			r[0][j] += dy;
			r[1][j] += dx;
			r[2][j] += dy * dx;
		}
}

/*
 * The sums the backward pass of a block needs over the images [n0, n1)
 * (one slice), with m0[j] a float-valued reference point (the saved or
 * running mean): sum_dy = sum dy, sum_dx = sum (x - m0), sum_dy_dx =
 * sum dy * (x - m0), each x - m0 exact in double. dy is dout as it is, or,
 * if act is ACT_RELU or ACT_RELU6, masked by that activation of aff[j]:
 * then the masked dy is written to masked (dout itself).
 */
static void slice_grad_sums(const float *dout, float *masked, int n0, int n1,
			    int C, int L, const float *in, bn_block b,
			    const nb_bn_affine *aff, int act, const double *m0,
			    double *sum_dy, double *sum_dx, double *sum_dy_dx)
{
	double a_dy[NB_BN_BLOCK][NB_BN_LANES] = {{0}},
	       a_dx[NB_BN_BLOCK][NB_BN_LANES] = {{0}},
	       a_dydx[NB_BN_BLOCK][NB_BN_LANES] = {{0}};
	double rest[3][NB_BN_BLOCK] = {{0}};
	const int Lv = L - L % NB_BN_LANES;
	for (int n = n0; n < n1; n++) {
		for (int j = 0; j < b.nc; j++) {
			const float *x = PLANE(in, n, b.c0 + j);
			if (act == ACT_RELU)
				plane_grad_sums_t(a_dy[j], a_dx[j], a_dydx[j],
						  PLANE(masked, n, b.c0 + j), x,
						  Lv, m0[j], aff[j], ACT_RELU);
			else if (act == ACT_RELU6)
				plane_grad_sums_t(a_dy[j], a_dx[j], a_dydx[j],
						  PLANE(masked, n, b.c0 + j), x,
						  Lv, m0[j], aff[j], ACT_RELU6);
			else /* not written: the cast only shares the code */
				plane_grad_sums_t(
				    a_dy[j], a_dx[j], a_dydx[j],
				    (float *)PLANE(dout, n, b.c0 + j), x, Lv,
				    m0[j], (nb_bn_affine){0}, 0);
		}
		if (Lv == L)
			continue;
		const float *x = PLANE(in, n, b.c0);
		if (act == ACT_RELU)
			tail_grad_sums_t(rest, PLANE(masked, n, b.c0), x, b.nc,
					 L, Lv, m0, aff, ACT_RELU);
		else if (act == ACT_RELU6)
			tail_grad_sums_t(rest, PLANE(masked, n, b.c0), x, b.nc,
					 L, Lv, m0, aff, ACT_RELU6);
		else
			tail_grad_sums_t(rest, (float *)PLANE(dout, n, b.c0), x,
					 b.nc, L, Lv, m0, aff, 0);
	}
	for (int j = 0; j < b.nc; j++) {
		sum_dy[j] = nb_bn_lanes_sum(a_dy[j]) + rest[0][j];
		sum_dx[j] = nb_bn_lanes_sum(a_dx[j]) + rest[1][j];
		sum_dy_dx[j] = nb_bn_lanes_sum(a_dydx[j]) + rest[2][j];
	}
}

static void plane_apply(float *restrict y, const float *restrict x, int L,
			nb_bn_affine a, int act)
{
	if (act == ACT_RELU) {
#pragma omp simd
		for (int l = 0; l < L; l++)
			y[l] = act_value(nb_bn_value(x[l], a), ACT_RELU);
	} else if (act == ACT_RELU6) {
#pragma omp simd
		for (int l = 0; l < L; l++)
			y[l] = act_value(nb_bn_value(x[l], a), ACT_RELU6);
	} else {
#pragma omp simd
		for (int l = 0; l < L; l++)
			y[l] = nb_bn_value(x[l], a);
	}
}

/* out = the block normalised by a[], image by image over [n0, n1) */
static void block_apply(float *out, const float *in, int n0, int n1, int C,
			int L, bn_block b, const nb_bn_affine *a, int act)
{
	for (int n = n0; n < n1; n++)
		for (int j = 0; j < b.nc; j++)
			plane_apply(PLANE(out, n, b.c0 + j),
				    PLANE(in, n, b.c0 + j), L, a[j], act);
}

/*
 * in, out (N,C,L); gamma, beta, save_*, running_* (C) or NULL; act: a
 * ReLU or ReLU6 applied to out in the same pass (ACT_*). Block by block: the
 * threads sum their slices, one thread turns the sums into the normalisation
 * (and the saved and running statistics), the threads normalise their slices.
 * sums (or NULL): the slices' sums taken already (slice s: s1 of channel c
 * at sums[s * 2 * C + c], s2 at sums[(s * 2 + 1) * C + c]).
 */
static int forward_train(float *out, float *save_mean, float *save_invstd,
			 float *save_affine, float *running_mean,
			 float *running_var, const float *in,
			 const float *gamma, const float *beta, int N, int C,
			 int L, float momentum, float eps, int act,
			 const double *sums)
{
	if (N <= 0 || C <= 0 || L <= 0 || (long long)N * L <= 1)
		return NB_EINVAL;
	size_t total = (size_t)N * C * L;
	double M = (double)N * L;
	double s1[NB_BN_SLICES][NB_BN_BLOCK], s2[NB_BN_SLICES][NB_BN_BLOCK];
	nb_bn_affine a[NB_BN_BLOCK];
#pragma omp parallel if (total >= NB_BN_PAR_MIN)
	for (int c0 = 0; c0 < C; c0 += NB_BN_BLOCK) {
		const bn_block b = block_at(c0, C);
#pragma omp for schedule(static)
		for (int s = 0; s < NB_BN_SLICES; s++) {
			if (!sums) {
				slice_stats(in, nb_bn_slice_begin(N, s),
					    nb_bn_slice_begin(N, s + 1), C, L,
					    b, s1[s], s2[s]);
				continue;
			}
			const double *q = sums + (size_t)s * 2 * C + b.c0;
			for (int j = 0; j < b.nc; j++) {
				s1[s][j] = q[j];
				s2[s][j] = q[C + j];
			}
		}
#pragma omp single
		for (int j = 0; j < b.nc; j++) {
			const int c = b.c0 + j;
			double mean, var;
			slices_stats(s1, s2, j, *PLANE(in, 0, c), M, &mean,
				     &var);
			double invstd = 1.0 / sqrt(var + (double)eps);
			double g = gamma ? gamma[c] : 1.0;
			double be = beta ? beta[c] : 0.0;
			a[j] = affine(mean, invstd * g, be);
			if (save_affine)
				affine_put(save_affine + 4 * (size_t)c, a[j]);
			if (save_mean)
				save_mean[c] = (float)mean;
			if (save_invstd)
				save_invstd[c] = (float)invstd;
			if (running_mean)
				running_mean[c] =
				    (float)((1.0 - momentum) * running_mean[c] +
					    momentum * mean);
			if (running_var) {
				double unbiased = var * M / (M - 1.0);
				running_var[c] =
				    (float)((1.0 - momentum) * running_var[c] +
					    momentum * unbiased);
			}
		}
		/* a[] and s1/s2 are written again only after the next
		 * block's sums, whose loop ends in a barrier */
#pragma omp for schedule(static) nowait
		for (int s = 0; s < (out ? NB_BN_SLICES : 0); s++)
			block_apply(out, in, nb_bn_slice_begin(N, s),
				    nb_bn_slice_begin(N, s + 1), C, L, b, a,
				    act);
	}
	return NB_OK;
}

int nb_batchnorm_forward_train(float *out, float *save_mean, float *save_invstd,
			       float *running_mean, float *running_var,
			       const float *in, const float *gamma,
			       const float *beta, int N, int C, int L,
			       float momentum, float eps)
{
	return forward_train(out, save_mean, save_invstd, NULL, running_mean,
			     running_var, in, gamma, beta, N, C, L, momentum,
			     eps, ACT_NONE, NULL);
}

int nb_batchnorm_forward_train_sums(float *out, float *save_mean,
				    float *save_invstd, float *save_affine,
				    float *running_mean, float *running_var,
				    const float *in, const float *gamma,
				    const float *beta, int N, int C, int L,
				    float momentum, float eps, int act,
				    const double *sums)
{
	return forward_train(out, save_mean, save_invstd, save_affine,
			     running_mean, running_var, in, gamma, beta, N, C,
			     L, momentum, eps,
			     act == NB_ACT_RELU6  ? ACT_RELU6
			     : act == NB_ACT_RELU ? ACT_RELU
						  : ACT_NONE,
			     sums);
}

int nb_batchnorm_relu_forward_train(float *out, float *save_mean,
				    float *save_invstd, float *save_affine,
				    float *running_mean, float *running_var,
				    const float *in, const float *gamma,
				    const float *beta, int N, int C, int L,
				    float momentum, float eps)
{
	return forward_train(out, save_mean, save_invstd, save_affine,
			     running_mean, running_var, in, gamma, beta, N, C,
			     L, momentum, eps, ACT_RELU, NULL);
}

int nb_batchnorm_relu6_forward_train(float *out, float *save_mean,
				     float *save_invstd, float *save_affine,
				     float *running_mean, float *running_var,
				     const float *in, const float *gamma,
				     const float *beta, int N, int C, int L,
				     float momentum, float eps)
{
	return forward_train(out, save_mean, save_invstd, save_affine,
			     running_mean, running_var, in, gamma, beta, N, C,
			     L, momentum, eps, ACT_RELU6, NULL);
}

void nb_batchnorm_affine_forward(float *out, const float *in,
				 const float *save_affine, int N, int C, int L,
				 int act)
{
	const int a_ = act == NB_ACT_RELU    ? ACT_RELU
		       : act == NB_ACT_RELU6 ? ACT_RELU6
					     : ACT_NONE;
	size_t total = (size_t)N * C * L;
#pragma omp parallel if (total >= NB_BN_PAR_MIN)
	for (int c0 = 0; c0 < C; c0 += NB_BN_BLOCK) {
		const bn_block b = block_at(c0, C);
		nb_bn_affine a[NB_BN_BLOCK];
		for (int j = 0; j < b.nc; j++)
			a[j] = nb_bn_affine_at(save_affine, b.c0 + j);
#pragma omp for schedule(static) nowait
		for (int s = 0; s < NB_BN_SLICES; s++)
			block_apply(out, in, nb_bn_slice_begin(N, s),
				    nb_bn_slice_begin(N, s + 1), C, L, b, a,
				    a_);
	}
}

/* in, out (N,C,L); gamma, beta (C) or NULL; running_mean, running_var (C). */
static void forward_eval(float *out, const float *in, const float *gamma,
			 const float *beta, const float *running_mean,
			 const float *running_var, int N, int C, int L,
			 float eps, int act)
{
	size_t total = (size_t)N * C * L;
#pragma omp parallel if (total >= NB_BN_PAR_MIN)
	for (int c0 = 0; c0 < C; c0 += NB_BN_BLOCK) {
		const bn_block b = block_at(c0, C);
		nb_bn_affine a[NB_BN_BLOCK];
		for (int j = 0; j < b.nc; j++) {
			const int c = b.c0 + j;
			double invstd =
			    1.0 / sqrt((double)running_var[c] + eps);
			double g = gamma ? gamma[c] : 1.0;
			double be = beta ? beta[c] : 0.0;
			a[j] = affine(running_mean[c], invstd * g, be);
		}
#pragma omp for schedule(static) nowait
		for (int s = 0; s < NB_BN_SLICES; s++)
			block_apply(out, in, nb_bn_slice_begin(N, s),
				    nb_bn_slice_begin(N, s + 1), C, L, b, a,
				    act);
	}
}

void nb_batchnorm_forward_eval(float *out, const float *in, const float *gamma,
			       const float *beta, const float *running_mean,
			       const float *running_var, int N, int C, int L,
			       float eps)
{
	forward_eval(out, in, gamma, beta, running_mean, running_var, N, C, L,
		     eps, ACT_NONE);
}

void nb_batchnorm_relu_forward_eval(float *out, const float *in,
				    const float *gamma, const float *beta,
				    const float *running_mean,
				    const float *running_var, int N, int C,
				    int L, float eps)
{
	forward_eval(out, in, gamma, beta, running_mean, running_var, N, C, L,
		     eps, ACT_RELU);
}

void nb_batchnorm_relu6_forward_eval(float *out, const float *in,
				     const float *gamma, const float *beta,
				     const float *running_mean,
				     const float *running_var, int N, int C,
				     int L, float eps)
{
	forward_eval(out, in, gamma, beta, running_mean, running_var, N, C, L,
		     eps, ACT_RELU6);
}

/* d = (or, unless store, +=) k * (dy - mean_dy - (x - mean) * proj) over
 * a plane */
static void plane_din(float *restrict d, const float *restrict dy,
		      const float *restrict x, int L, double k, double mean_dy,
		      double mean, double proj, int store)
{
	if (store)
#pragma omp simd
		for (int l = 0; l < L; l++)
			d[l] = (float)(k * (dy[l] - mean_dy -
					    (x[l] - mean) * proj));
	else
#pragma omp simd
		for (int l = 0; l < L; l++)
			d[l] += (float)(k * (dy[l] - mean_dy -
					     (x[l] - mean) * proj));
}

/*
 * din, dout, in (N,C,L); dgamma, dbeta, gamma, save_* (C). With
 * xhat = (x - mean) * invstd and M = N*L per channel:
 *   dbeta  = sum dout
 *   dgamma = sum dout * xhat
 *   din    = gamma * invstd * (dout - dbeta/M - xhat * dgamma/M)
 * The two mean terms are what the batch statistics contribute.
 *
 * save_mean is a float, rounded from the double mean; when |mean| >> std
 * that rounding is a visible fraction of x - mean (PyTorch's float kernel
 * has this error). So the pass that sums dout also sums x - save_mean in
 * double, which recovers the exact mean as save_mean + that sum / M.
 *
 * save_affine (4*C floats, or NULL): the forward had act (ACT_RELU or
 * ACT_RELU6) fused, dout is the gradient of the activation's output and
 * masked is dout itself; the first pass masks each element by the
 * activation's derivative, recomputed from in, as it reads it and writes
 * it back, so that the second pass reads the BatchNorm's own output
 * gradient. Against a masking pass of its own (read the activation's
 * output and dout, write dout) that saves reading the output and dout
 * once; recomputing the mask in the second pass
 * too instead of writing it back costs more arithmetic than the store
 * saves (measured: a third slower at 1 thread).
 */
static void backward_train(float *din, float *dgamma, float *dbeta,
			   const float *dout, float *masked, const float *in,
			   const float *save_mean, const float *save_invstd,
			   const float *save_affine, int act,
			   const float *gamma, int N, int C, int L, int store,
			   const double *sums)
{
	size_t total = (size_t)N * C * L;
	double M = (double)N * L;
	/* the slices' sums: of dy, of x - m0, of dy * (x - m0) */
	double p_dy[NB_BN_SLICES][NB_BN_BLOCK], p_dx[NB_BN_SLICES][NB_BN_BLOCK],
	    p_dydx[NB_BN_SLICES][NB_BN_BLOCK];
	/* din's terms: k * (dy - mean_dy - (x - mean) * proj) */
	double k[NB_BN_BLOCK], mean[NB_BN_BLOCK], mean_dy[NB_BN_BLOCK],
	    proj[NB_BN_BLOCK];
#pragma omp parallel if (total >= NB_BN_PAR_MIN)
	for (int c0 = 0; c0 < C; c0 += NB_BN_BLOCK) {
		const bn_block b = block_at(c0, C);
		double m0[NB_BN_BLOCK];
		nb_bn_affine aff[NB_BN_BLOCK];
		for (int j = 0; j < b.nc; j++) {
			m0[j] = save_mean[b.c0 + j];
			aff[j] = save_affine
				     ? nb_bn_affine_at(save_affine, b.c0 + j)
				     : (nb_bn_affine){0};
		}
#pragma omp for schedule(static)
		for (int s = 0; s < NB_BN_SLICES; s++) {
			if (!sums) {
				slice_grad_sums(
				    dout, masked, nb_bn_slice_begin(N, s),
				    nb_bn_slice_begin(N, s + 1), C, L, in, b,
				    aff, save_affine ? act : ACT_NONE, m0,
				    p_dy[s], p_dx[s], p_dydx[s]);
				continue;
			}
			const double *q = sums + (size_t)s * 3 * C + b.c0;
			for (int j = 0; j < b.nc; j++) {
				p_dy[s][j] = q[j];
				p_dx[s][j] = q[C + j];
				p_dydx[s][j] = q[2 * C + j];
			}
		}
#pragma omp single
		for (int j = 0; j < b.nc; j++) {
			const int c = b.c0 + j;
			const double sum_dy = slices_sum(p_dy, j),
				     sum_dx = slices_sum(p_dx, j),
				     sum_dy_dx = slices_sum(p_dydx, j);
			double invstd = save_invstd[c];
			double delta = sum_dx / M; /* exact mean - m0 */
			mean[j] = m0[j] + delta;
			double sum_dy_xhat =
			    (sum_dy_dx - delta * sum_dy) * invstd;
			if (dbeta)
				dbeta[c] += (float)sum_dy;
			if (dgamma)
				dgamma[c] += (float)sum_dy_xhat;
			double g = gamma ? gamma[c] : 1.0;
			k[j] = g * invstd;
			mean_dy[j] = sum_dy / M;
			/* per unit of (x - mean) */
			proj[j] = sum_dy_xhat / M * invstd;
		}
		/* the terms and sums are written again only after the next
		 * block's sums, whose loop ends in a barrier */
		if (!din)
			continue;
#pragma omp for schedule(static) nowait
		for (int s = 0; s < NB_BN_SLICES; s++)
			for (int n = nb_bn_slice_begin(N, s);
			     n < nb_bn_slice_begin(N, s + 1); n++)
				for (int j = 0; j < b.nc; j++)
					plane_din(PLANE(din, n, b.c0 + j),
						  PLANE(dout, n, b.c0 + j),
						  PLANE(in, n, b.c0 + j), L,
						  k[j], mean_dy[j], mean[j],
						  proj[j], store);
	}
}

void nb_batchnorm_backward_train(float *din, float *dgamma, float *dbeta,
				 const float *dout, const float *in,
				 const float *save_mean,
				 const float *save_invstd, const float *gamma,
				 int N, int C, int L)
{
	backward_train(din, dgamma, dbeta, dout, NULL, in, save_mean,
		       save_invstd, NULL, ACT_NONE, gamma, N, C, L, 0, NULL);
}

void nb_batchnorm_backward_train_store(float *din, float *dgamma, float *dbeta,
				       const float *dout, const float *in,
				       const float *save_mean,
				       const float *save_invstd,
				       const float *gamma, int N, int C, int L)
{
	backward_train(din, dgamma, dbeta, dout, NULL, in, save_mean,
		       save_invstd, NULL, ACT_NONE, gamma, N, C, L, 1, NULL);
}

void nb_batchnorm_backward_train_sums(float *din, float *dgamma, float *dbeta,
				      const float *dout, const float *in,
				      const float *save_mean,
				      const float *save_invstd,
				      const float *gamma, int N, int C, int L,
				      int store, const double *sums)
{
	backward_train(din, dgamma, dbeta, dout, NULL, in, save_mean,
		       save_invstd, NULL, ACT_NONE, gamma, N, C, L, store,
		       sums);
}

void nb_batchnorm_relu_backward_train(
    float *din, float *dgamma, float *dbeta, float *dout, const float *in,
    const float *save_mean, const float *save_invstd, const float *save_affine,
    const float *gamma, int N, int C, int L, int store)
{
	backward_train(din, dgamma, dbeta, dout, dout, in, save_mean,
		       save_invstd, save_affine, ACT_RELU, gamma, N, C, L,
		       store, NULL);
}

void nb_batchnorm_relu6_backward_train(
    float *din, float *dgamma, float *dbeta, float *dout, const float *in,
    const float *save_mean, const float *save_invstd, const float *save_affine,
    const float *gamma, int N, int C, int L, int store)
{
	backward_train(din, dgamma, dbeta, dout, dout, in, save_mean,
		       save_invstd, save_affine, ACT_RELU6, gamma, N, C, L,
		       store, NULL);
}

/*
 * din, dout, in (N,C,L); dgamma, dbeta, gamma, running_* (C). The running
 * statistics are constants, so din is dout scaled per channel.
 */
void nb_batchnorm_backward_eval(float *din, float *dgamma, float *dbeta,
				const float *dout, const float *in,
				const float *gamma, const float *running_mean,
				const float *running_var, int N, int C, int L,
				float eps)
{
	size_t total = (size_t)N * C * L;
	double p_dy[NB_BN_SLICES][NB_BN_BLOCK], p_dx[NB_BN_SLICES][NB_BN_BLOCK],
	    p_dydx[NB_BN_SLICES][NB_BN_BLOCK];
#pragma omp parallel if (total >= NB_BN_PAR_MIN)
	for (int c0 = 0; c0 < C; c0 += NB_BN_BLOCK) {
		const bn_block b = block_at(c0, C);
		double invstd[NB_BN_BLOCK], mean[NB_BN_BLOCK];
		float k[NB_BN_BLOCK];
		for (int j = 0; j < b.nc; j++) {
			const int c = b.c0 + j;
			invstd[j] = 1.0 / sqrt((double)running_var[c] + eps);
			mean[j] = running_mean[c];
			k[j] = (float)((gamma ? gamma[c] : 1.0) * invstd[j]);
		}
		if (dgamma || dbeta) {
#pragma omp for schedule(static)
			for (int s = 0; s < NB_BN_SLICES; s++)
				slice_grad_sums(dout, NULL,
						nb_bn_slice_begin(N, s),
						nb_bn_slice_begin(N, s + 1), C,
						L, in, b, NULL, ACT_NONE, mean,
						p_dy[s], p_dx[s], p_dydx[s]);
#pragma omp single
			for (int j = 0; j < b.nc; j++) {
				const double sum_dy = slices_sum(p_dy, j),
					     sum_dy_dx = slices_sum(p_dydx, j);
				if (dbeta)
					dbeta[b.c0 + j] += (float)sum_dy;
				if (dgamma)
					dgamma[b.c0 + j] +=
					    (float)(sum_dy_dx * invstd[j]);
			}
		}
		/* p_* are written again only after the next block's sums'
		 * barrier */
		if (!din)
			continue;
#pragma omp for schedule(static) nowait
		for (int s = 0; s < NB_BN_SLICES; s++)
			for (int n = nb_bn_slice_begin(N, s);
			     n < nb_bn_slice_begin(N, s + 1); n++)
				for (int j = 0; j < b.nc; j++) {
					float *d = PLANE(din, n, b.c0 + j);
					const float *g =
					    PLANE(dout, n, b.c0 + j);
					for (int l = 0; l < L; l++)
						d[l] += g[l] * k[j];
				}
	}
}
