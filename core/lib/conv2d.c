/*
 * conv2d.c - 2-D convolution (PyTorch's Conv2d: zero padding, stride,
 * groups incl. depthwise, optional bias), forward and backward, NCHW.
 *
 * How it is fast: the batch is split over OpenMP threads; each thread
 * works on one image at a time with single-threaded kernels and its own
 * slice of the workspace. Two ways to do a convolution's products:
 *  - the packed kernels (gemmpack.h; see "packed kernels" below), where
 *    they were compiled for 512-bit vectors and the shape suits them;
 *  - im2col + a single-threaded cblas_sgemm per group (OpenBLAS runs serial
 *    inside a parallel region), with a plain GEMM and no copy for 1x1,
 *    stride 1, no padding (the input plane already is the im2col matrix).
 * Depthwise convolutions (groups == C == K), where a GEMM with M = 1 wastes
 * either, take direct kernels with register tiles (forward, weight
 * gradient, and the stride-1 input gradient as a forward convolution of the
 * padded output gradient with the flipped taps). A kernel that covers the
 * whole unpadded input is a linear layer (linear.c) on the flattened image.
 * Weight and bias gradients are summed into private buffers (per thread, or
 * per fixed chunk of images) and then reduced in a fixed order, so a result
 * is bit-identical for a given thread count (no atomics, no timing-dependent
 * order).
 *
 * What it deliberately does not do: dilation, padding modes other than
 * zeros, Winograd/FFT, or layouts other than NCHW. The plain-loop reference
 * these paths are checked against lives in tests/unit/conv_test.c.
 */
#include <string.h>

/* Keep cblas.h from pulling in <complex.h>, whose macro `I` breaks ops.h. */
#define FORCE_OPENBLAS_COMPLEX_STRUCT
#include <cblas.h>
#include <omp.h>

#include "dwconv.h"
#include "error.h"
#include "gemmpack.h"
#include "ops.h"
#include "winograd.h"

int nb_conv2d_shape_finish(nb_conv2d_shape *s)
{
	if (s->N <= 0 || s->C <= 0 || s->H <= 0 || s->W <= 0 || s->K <= 0 ||
	    s->R <= 0 || s->S <= 0 || s->stride_h <= 0 || s->stride_w <= 0 ||
	    s->pad_h < 0 || s->pad_w < 0 || s->groups <= 0 ||
	    s->C % s->groups != 0 || s->K % s->groups != 0)
		return NB_EINVAL;
	int hp = s->H + 2 * s->pad_h - s->R;
	int wp = s->W + 2 * s->pad_w - s->S;
	if (hp < 0 || wp < 0)
		return NB_EINVAL;
	s->P = hp / s->stride_h + 1;
	s->Q = wp / s->stride_w + 1;
	return NB_OK;
}

typedef float v8f __attribute__((vector_size(32)));
/* for loads and stores at any float address; may alias float */
typedef float v8f_u __attribute__((vector_size(32), aligned(4), may_alias));

/* d[0..n) = s[0..n). The rows copied here are short (5 to 64 floats), and
 * a plain loop is turned into a memmove call by the compiler, whose call
 * and dispatch cost more than the copy itself (measured: LeNet-5 spent as
 * long in memmove as in im2col proper). */
typedef float v4f_u __attribute__((vector_size(16), aligned(4), may_alias));
static inline void copy_row(float *restrict d, const float *restrict s, int n)
{
	int i = 0;
	/* the empty asm keeps the compiler from turning even this vector
	 * loop into a memmove call */
	for (; i + 8 <= n; i += 8) {
		*(v8f_u *)(d + i) = *(const v8f_u *)(s + i);
		__asm__ volatile("" ::: "memory");
	}
	/* the tail without a loop, which would become a memmove call too */
	if (n - i >= 4) {
		*(v4f_u *)(d + i) = *(const v4f_u *)(s + i);
		i += 4;
	}
	if (n - i >= 2) {
		d[i] = s[i];
		d[i + 1] = s[i + 1];
		i += 2;
	}
	if (n - i >= 1)
		d[i] = s[i];
}

/* xp (Hp,Wp) interior <- x (H,W); the border is left alone (zero). */
static void pad_plane(float *restrict xp, const float *restrict x, int H, int W,
		      int ph, int pw)
{
	const int Wp = W + 2 * pw;
	for (int h = 0; h < H; h++) {
		copy_row(xp + (size_t)(h + ph) * Wp + pw, x + (size_t)h * W, W);
	}
}

/*
 * im (C,H,W) -> col (C*R*S, P*Q): row (c,r,s) holds the input pixel under
 * kernel tap (r,s) for every output position, zero where it is padding.
 * Row order matches w (K,C,R,S) flattened, so out = w * col.
 * With padding, the planes are first copied into xp (C,Hp,Wp), whose zero
 * border the caller keeps (only interiors are ever written here); then
 * every row of col is P whole runs of Q with no edge cases, which
 * vectorise without remainders for the usual Q = 8, 16, 32.
 */
static void im2col(float *restrict col, float *restrict xp, const float *im,
		   int C, int H, int W, int R, int S, int sh, int sw, int ph,
		   int pw, int P, int Q)
{
	const int Hp = H + 2 * ph, Wp = W + 2 * pw;
	const float *src = im;
	if (ph || pw) {
		for (int c = 0; c < C; c++)
			pad_plane(xp + (size_t)c * Hp * Wp,
				  im + (size_t)c * H * W, H, W, ph, pw);
		src = xp;
	}
	for (int c = 0; c < C; c++)
		for (int r = 0; r < R; r++)
			for (int t = 0; t < S; t++) {
				float *d =
				    col + ((size_t)(c * R + r) * S + t) * P * Q;
				for (int p = 0; p < P; p++) {
					const float *x =
					    src +
					    ((size_t)c * Hp + p * sh + r) * Wp +
					    t;
					float *o = d + (size_t)p * Q;
					if (sw == 1) {
						copy_row(o, x, Q);
					} else {
#pragma omp simd
						for (int q = 0; q < Q; q++)
							o[q] = x[q * sw];
					}
				}
			}
}

/* Stride 2 phases: where padded column w + pw of a row lands. Even input
 * columns go to phase pw % 2 from column pw / 2 on, odd ones to phase
 * (pw + 1) % 2 from (pw + 1) / 2 on; a phase no tap reads (b >= nb, a 1x1
 * kernel) is NULL. */
static void phase_cols2(float *const d[2], int nb, int pw, float **even,
			float **odd)
{
	const int be = pw % 2, bo = (pw + 1) % 2;
	*even = be < nb ? d[be] + pw / 2 : NULL;
	*odd = bo < nb ? d[bo] + (pw + 1) / 2 : NULL;
}

/* e[j] = x[2j], o[j] = x[2j + 1] for j < n (vectorised: two loads, two
 * permutes) */
static void split_pairs(float *restrict e, float *restrict o,
			const float *restrict x, int n)
{
	for (int j = 0; j < n; j++) {
		e[j] = x[2 * j];
		o[j] = x[2 * j + 1];
	}
}

/* the adjoint: x[2j] += e[j], x[2j + 1] += o[j] for j < n */
static void join_pairs_add(float *restrict x, const float *restrict e,
			   const float *restrict o, int n)
{
	for (int j = 0; j < n; j++) {
		x[2 * j] += e[j];
		x[2 * j + 1] += o[j];
	}
}

/* The adjoint of im2col: im (C,H,W) += col (C*R*S, P*Q; rows ldcol floats
 * apart) scattered back. With padding, the scatter goes into dxp
 * (C,Hp,Wp), zeroed here, and only its interior is added to im. */
static void col2im_add(float *im, float *restrict dxp,
		       const float *restrict col, size_t ldcol, int C, int H,
		       int W, int R, int S, int sh, int sw, int ph, int pw,
		       int P, int Q)
{
	const int Hp = H + 2 * ph, Wp = W + 2 * pw;
	float *dst = im;
	if (ph || pw) {
		memset(dxp, 0, sizeof(float) * C * Hp * Wp);
		dst = dxp;
	}
	for (int c = 0; c < C; c++)
		for (int r = 0; r < R; r++)
			for (int t = 0; t < S; t++) {
				const float *d =
				    col + ((size_t)(c * R + r) * S + t) * ldcol;
				for (int p = 0; p < P; p++) {
					float *restrict x =
					    dst +
					    ((size_t)c * Hp + p * sh + r) * Wp +
					    t;
					const float *restrict g =
					    d + (size_t)p * Q;
					if (sw == 1) {
#pragma omp simd
						for (int q = 0; q < Q; q++)
							x[q] += g[q];
					} else {
#pragma omp simd
						for (int q = 0; q < Q; q++)
							x[q * sw] += g[q];
					}
				}
			}
	if (dst == im)
		return;
	for (int c = 0; c < C; c++)
		for (int h = 0; h < H; h++) {
			float *restrict o = im + ((size_t)c * H + h) * W;
			const float *restrict e =
			    dxp + ((size_t)c * Hp + h + ph) * Wp + pw;
#pragma omp simd
			for (int i = 0; i < W; i++)
				o[i] += e[i];
		}
}

/* Floats of col2im_add_phases2's planes: (C, na, nb, Hh, Wh) as the
 * input's view of a stride-2 convolution. */
static size_t phases2_floats(int C, int H, int W, int R, int S, int ph, int pw)
{
	const int na = R < 2 ? R : 2, nb = S < 2 ? S : 2;
	return (size_t)C * na * nb * ((H + 2 * ph + 1) / 2) *
	       ((W + 2 * pw + 1) / 2);
}

/*
 * col2im_add for stride 2 x 2: tap (r,t) scatters into phase (r % 2,
 * t % 2) of dxp (phases2_floats, zeroed here) from row r / 2, column
 * t / 2 on, so every row is a contiguous add; then each row of im takes
 * its even and odd columns from the two phase rows that hold them. (With a
 * stride the scatter and the final add went element by element: a fifth
 * of a strided 3x3 convolution's time.)
 */
static void col2im_add_phases2(float *im, float *restrict dxp,
			       const float *restrict col, size_t ldcol, int C,
			       int H, int W, int R, int S, int ph, int pw,
			       int P, int Q)
{
	const int na = R < 2 ? R : 2, nb = S < 2 ? S : 2;
	const int Hh = (H + 2 * ph + 1) / 2, Wh = (W + 2 * pw + 1) / 2;
	const size_t plane = (size_t)Hh * Wh;
	memset(dxp, 0, sizeof(float) * phases2_floats(C, H, W, R, S, ph, pw));
	for (int c = 0; c < C; c++)
		for (int r = 0; r < R; r++)
			for (int t = 0; t < S; t++) {
				const float *d =
				    col + ((size_t)(c * R + r) * S + t) * ldcol;
				float *base =
				    dxp +
				    ((size_t)(c * na + r % 2) * nb + t % 2) *
					plane +
				    (size_t)(r / 2) * Wh + t / 2;
				for (int p = 0; p < P; p++) {
					float *restrict x =
					    base + (size_t)p * Wh;
					const float *restrict g =
					    d + (size_t)p * Q;
#pragma omp simd
					for (int q = 0; q < Q; q++)
						x[q] += g[q];
				}
			}
	for (int c = 0; c < C; c++)
		for (int h = 0; h < H; h++) {
			const int a = (h + ph) % 2, u = (h + ph) / 2;
			if (a >= na) /* rows no tap reaches */
				continue;
			float *row = dxp + (size_t)(c * na + a) * nb * plane +
				     (size_t)u * Wh;
			float *const d[2] = {row, row + plane};
			float *e, *o;
			phase_cols2(d, nb, pw, &e, &o);
			float *x = im + ((size_t)c * H + h) * W;
			if (e && o) {
				join_pairs_add(x, e, o, W / 2);
				if (W % 2)
					x[W - 1] += e[W / 2];
			} else if (e) {
				for (int j = 0; j < (W + 1) / 2; j++)
					x[2 * j] += e[j];
			} else {
				for (int j = 0; j < W / 2; j++)
					x[2 * j + 1] += o[j];
			}
		}
}

/* col2im through phases where taps overlap (a 1x1 kernel scatters each
 * element once: directly is faster) */
static int col2im_phased(const nb_conv2d_shape *s)
{
	return s->stride_h == 2 && s->stride_w == 2 && s->R > 1 && s->S > 1;
}

/* sum of x[0..n) in 16 independent lanes, so that it vectorises without
 * -ffast-math; the order is fixed, so the result is deterministic */
static float sum_floats(const float *x, size_t n)
{
	float lane[16] = {0};
	size_t i = 0;
	for (; i + 16 <= n; i += 16)
#pragma omp simd
		for (int j = 0; j < 16; j++)
			lane[j] += x[i + j];
	float acc = 0;
	for (; i < n; i++)
		acc += x[i];
	for (int j = 0; j < 16; j++)
		acc += lane[j];
	return acc;
}

static int is_pointwise(const nb_conv2d_shape *s)
{
	return s->R == 1 && s->S == 1 && s->stride_h == 1 && s->stride_w == 1 &&
	       s->pad_h == 0 && s->pad_w == 0;
}

static int is_depthwise(const nb_conv2d_shape *s)
{
	return s->groups == s->C && s->groups == s->K;
}

/* A kernel that covers the whole unpadded input (one output position, as
 * LeNet-5's 16x5x5 -> 120 convolution) is a linear layer on the flattened
 * image: weights (K, C*R*S) and inputs (C*H*W) flatten in the same order,
 * so one GEMM over the batch replaces a matrix-vector product per image. */
static int is_whole_plane(const nb_conv2d_shape *s)
{
	return s->groups == 1 && s->R == s->H && s->S == s->W &&
	       s->stride_h == 1 && s->stride_w == 1 && s->pad_h == 0 &&
	       s->pad_w == 0 && !is_depthwise(s);
}

/* Floats rounded up to a whole 64-byte line, so thread slices do not share
 * cache lines (the workspace itself is 64-byte aligned). */
static size_t pad16(size_t n)
{
	return (n + 15) & ~(size_t)15;
}

/* ---- depthwise direct kernels -------------------------------------------
 * Each plane is first copied into a zero-bordered scratch plane xp of
 * (Hp,Wp) = (H+2*pad_h, W+2*pad_w), so that the kernels need no edge cases.
 * A row whose length is not a multiple of 8 ends in a partial tile (the
 * 5x5 and 9x9 maps of MobileNetV2 are mostly such tiles): its loads run on
 * into the next row, and past the plane's end into DW_SLACK floats that
 * every scratch plane carries, zeroed; lanes past the row are not stored,
 * and the weight gradient multiplies them by zero.
 * Output tiles of DW_TR rows x DW_TC columns keep their sums in registers
 * (GCC/Clang vector extensions, one 256-bit vector per row) through all the
 * taps: a loop that adds one tap at a time into memory is bound by
 * store-to-load latency instead (measured 4x slower). */
#define DW_TR 4 /* a0..a3 below */
#define DW_TC 8 /* one v8f */
/* floats a partial tile's loads may read past a plane with column stride
 * sw */
#define DW_SLACK(sw) ((size_t)DW_TC * (sw))
/* 8 floats x[0], x[sw], ..., x[7*sw] */
static inline v8f load8(const float *x, int sw)
{
	if (sw == 1)
		return *(const v8f_u *)x;
	return (v8f){x[0],	x[sw],	   x[2 * sw], x[3 * sw],
		     x[4 * sw], x[5 * sw], x[6 * sw], x[7 * sw]};
}

/* Q rounded up to whole tiles */
static inline int dw_q8(int Q)
{
	return (Q + DW_TC - 1) / DW_TC * DW_TC;
}

/* o[0..n) = (or, if accumulate, +=) the first n lanes of v */
static inline void store8(float *o, v8f v, int n, int accumulate)
{
	if (n == DW_TC) {
		if (accumulate)
			v += *(v8f_u *)o;
		*(v8f_u *)o = v;
		return;
	}
	for (int j = 0; j < n; j++)
		o[j] = accumulate ? o[j] + v[j] : v[j];
}

/*
 * (This and dw_plane_scatter are cloned like dwconv.c's kernels, so that
 * in a generic build both sides of the twin contract the same
 * multiply-adds and give the same bits.)
 * out (P,Q) (= or, if accumulate, +=) bias + the sum over taps (r,s) of
 * w[r,s] * xp[p*sh + r][q*sw + s], with xp rows Wp floats apart. The same
 * kernel serves the forward pass and, with flipped taps, the stride-1 input
 * gradient.
 */
NB_GP_CLONES
static void dw_plane_conv(float *restrict out, int accumulate,
			  const float *restrict xp, const float *w, float bias,
			  int Wp, int R, int S, int sh, int sw, int P, int Q)
{
	const int Pt = P - P % DW_TR;
	const v8f b8 = (v8f){0} + bias;
	const size_t rs = (size_t)sh * Wp; /* next output row */
	for (int p = 0; p < Pt; p += DW_TR)
		for (int q = 0; q < Q; q += DW_TC) {
			v8f a0 = b8, a1 = b8, a2 = b8, a3 = b8;
			for (int r = 0; r < R; r++)
				for (int t = 0; t < S; t++) {
					const float wv = w[r * S + t];
					const float *x =
					    xp + (size_t)(p * sh + r) * Wp +
					    (size_t)q * sw + t;
					a0 += wv * load8(x, sw);
					a1 += wv * load8(x + rs, sw);
					a2 += wv * load8(x + 2 * rs, sw);
					a3 += wv * load8(x + 3 * rs, sw);
				}
			float *o = out + (size_t)p * Q + q;
			const int n = Q - q < DW_TC ? Q - q : DW_TC;
			store8(o, a0, n, accumulate);
			store8(o + Q, a1, n, accumulate);
			store8(o + 2 * Q, a2, n, accumulate);
			store8(o + 3 * Q, a3, n, accumulate);
		}
	/* the last P % DW_TR rows, a row of vectors at a time */
	for (int p = Pt; p < P; p++)
		for (int q = 0; q < Q; q += DW_TC) {
			v8f a = b8;
			for (int r = 0; r < R; r++)
				for (int t = 0; t < S; t++)
					a +=
					    w[r * S + t] *
					    load8(
						xp + (size_t)(p * sh + r) * Wp +
						    (size_t)q * sw + t,
						sw);
			const int n = Q - q < DW_TC ? Q - q : DW_TC;
			store8(out + (size_t)p * Q + q, a, n, accumulate);
		}
}

/* the sum of the 8 elements, in a fixed order */
static float hsum8(v8f v)
{
	float acc = 0;
	for (int j = 0; j < 8; j++)
		acc += v[j];
	return acc;
}

/*
 * dw (R,S) += for each tap (r,s) the sum over outputs (p,q) of
 * g[p][q] * xp[p*sh + r][q*sw + s]. Taps go four at a time, each with its
 * own vector of 8 column sums in a register; the order of every sum is
 * fixed, so the result is deterministic.
 */
static void dw_plane_wgrad(float *dw, const float *restrict g,
			   float *restrict gq, const float *restrict xp, int Wp,
			   int R, int S, int sh, int sw, int P, int Q)
{
	const int RS = R * S, Q8 = dw_q8(Q);
	/* rows that end in a partial tile: copied into gq with their
	 * missing lanes zero, so that x's (finite) lanes there add nothing */
	if (Q8 != Q) {
		for (int p = 0; p < P; p++)
			for (int j = 0; j < Q8; j++)
				gq[(size_t)p * Q8 + j] =
				    j < Q ? g[(size_t)p * Q + j] : 0.0f;
		g = gq;
	}
	for (int k0 = 0; k0 < RS; k0 += 4) {
		const int nk = RS - k0 < 4 ? RS - k0 : 4;
		/* where each tap reads in xp; a missing fourth tap repeats
		 * the last one and is dropped at the end */
		size_t off[4];
		for (int i = 0; i < 4; i++) {
			int k = k0 + (i < nk ? i : nk - 1);
			off[i] = (size_t)(k / S) * Wp + k % S;
		}
		v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
		for (int q = 0; q < Q; q += DW_TC)
			for (int p = 0; p < P; p++) {
				const v8f gv =
				    *(const v8f_u *)(g + (size_t)p * Q8 + q);
				const float *x =
				    xp + (size_t)p * sh * Wp + (size_t)q * sw;
				a0 += gv * load8(x + off[0], sw);
				a1 += gv * load8(x + off[1], sw);
				a2 += gv * load8(x + off[2], sw);
				a3 += gv * load8(x + off[3], sw);
			}
		const v8f acc[4] = {a0, a1, a2, a3};
		for (int i = 0; i < nk; i++)
			dw[k0 + i] += hsum8(acc[i]);
	}
}

/* dxp (Hp,Wp) += g (P,Q) scattered through each tap w[r,s]: the input
 * gradient for strides other than 1, in padded coordinates. */
NB_GP_CLONES
static void dw_plane_scatter(float *restrict dxp, const float *restrict g,
			     const float *w, int Wp, int R, int S, int sh,
			     int sw, int P, int Q)
{
	for (int p = 0; p < P; p++) {
		const float *gp = g + (size_t)p * Q;
		for (int r = 0; r < R; r++)
			for (int t = 0; t < S; t++) {
				float *d = dxp + (size_t)(p * sh + r) * Wp + t;
				const float wv = w[r * S + t];
#pragma omp simd
				for (int q = 0; q < Q; q++)
					d[q * sw] += wv * gp[q];
			}
	}
}

/* Floats of a padded plane with its slack, as the depthwise kernels read
 * it. */
static size_t dw_xp_floats(const nb_conv2d_shape *s)
{
	return pad16((size_t)(s->H + 2 * s->pad_h) * (s->W + 2 * s->pad_w) +
		     DW_SLACK(s->stride_w));
}

/*
 * The backward pass of one depthwise plane: g (P,Q), x (H,W), w (R,S) ->
 * dx (H,W) +=, dw (R,S) +=; either may be NULL.
 * Scratch: xp (Hp,Wp) with a zero border (if dw); gb (if dx): for stride 1, g
 * padded by R-1 rows and S-1 columns each side (zero border) followed by the
 * R*S flipped taps, because then dx[h][w] = sum_{r,s} w[R-1-r][S-1-s] *
 * gpad[h+pad_h+r][w+pad_w+s] is again a forward convolution; for other strides,
 * a padded (Hp,Wp) plane to scatter into.
 */
static void dw_plane_backward(float *dx, float *dw, const float *g,
			      const float *x, const float *w, float *xp,
			      float *gb, const nb_conv2d_shape *s)
{
	const int H = s->H, W = s->W, R = s->R, S = s->S, P = s->P, Q = s->Q;
	const int sh = s->stride_h, sw = s->stride_w, ph = s->pad_h,
		  pw = s->pad_w;
	const int Wp = W + 2 * pw;
	if (dw) {
		pad_plane(xp, x, H, W, ph, pw);
		dw_plane_wgrad(dw, g, xp + dw_xp_floats(s), xp, Wp, R, S, sh,
			       sw, P, Q);
	}
	if (!dx)
		return;
	if (sh == 1 && sw == 1) {
		const int Pp = P + 2 * (R - 1), Qp = Q + 2 * (S - 1);
		float *wf = gb + (size_t)Pp * Qp;
		for (int i = 0; i < R * S; i++)
			wf[i] = w[R * S - 1 - i];
		pad_plane(gb, g, P, Q, R - 1, S - 1);
		dw_plane_conv(dx, 1, gb + (size_t)ph * Qp + pw, wf, 0.0f, Qp, R,
			      S, 1, 1, H, W);
	} else {
		const int Hp = H + 2 * ph;
		memset(gb, 0, sizeof(float) * Hp * Wp);
		dw_plane_scatter(gb, g, w, Wp, R, S, sh, sw, P, Q);
		for (int h = 0; h < H; h++) {
			float *d = dx + (size_t)h * W;
			const float *e = gb + (size_t)(h + ph) * Wp + pw;
#pragma omp simd
			for (int i = 0; i < W; i++)
				d[i] += e[i];
		}
	}
}

/* Floats of scratch dw_plane_backward needs for gb. */
static size_t dw_gb_floats(const nb_conv2d_shape *s)
{
	if (s->stride_h == 1 && s->stride_w == 1)
		return (size_t)(s->P + 2 * (s->R - 1)) *
			   (s->Q + 2 * (s->S - 1)) +
		       (size_t)s->R * s->S + DW_SLACK(1);
	return (size_t)(s->H + 2 * s->pad_h) * (s->W + 2 * s->pad_w);
}

/* in (N,C,H,W), w (C,1,R,S), b (C) or NULL -> out (N,C,P,Q) */
static int depthwise_forward(float *out, const float *in, const float *w,
			     const float *b, const nb_conv2d_shape *s,
			     nb_workspace *ws)
{
	const int N = s->N, C = s->C, H = s->H, W = s->W, R = s->R, S = s->S;
	const int Wp = W + 2 * s->pad_w;
	const size_t HW = (size_t)H * W, PQ = (size_t)s->P * s->Q;
	const size_t slice = dw_xp_floats(s);
	const int T = nb_workspace_threads();
	float *scratch = nb_workspace_reserve(ws, slice * T);
	if (!scratch)
		return NB_ENOMEM;
#pragma omp parallel num_threads(T)
	{
		float *xp = scratch + slice * omp_get_thread_num();
		memset(xp, 0, sizeof(float) * slice);
#pragma omp for schedule(static)
		for (int n = 0; n < N; n++)
			for (int c = 0; c < C; c++) {
				pad_plane(xp, in + ((size_t)n * C + c) * HW, H,
					  W, s->pad_h, s->pad_w);
				dw_plane_conv(
				    out + ((size_t)n * C + c) * PQ, 0, xp,
				    w + (size_t)c * R * S, b ? b[c] : 0.0f, Wp,
				    R, S, s->stride_h, s->stride_w, s->P, s->Q);
			}
	}
	return NB_OK;
}

/* ---- packed kernels -----------------------------------------------------
 * The engine's own GEMM (gemmpack.h) on operands packed for it, the weights
 * packed once per call:
 *  - forward: where output rows fill vectors (16 or pairs of 8), the
 *    implicit product reads the padded input planes (stride 1) or their
 *    stride phases directly; otherwise im2col writes straight into column
 *    panels, several small-map images side by side;
 *  - weight gradient: always implicit, output channels on the lanes;
 *  - input gradient: for stride 1 with rows that fill vectors, the forward
 *    convolution of the output gradient with the flipped, transposed taps
 *    (padding R-1-pad), no col2im; otherwise w^T times the output gradient
 *    (images side by side) and col2im. */

static nb_conv_kernels conv_kernels = NB_CONV_AUTO;

void nb_conv2d_set_kernels(nb_conv_kernels k)
{
	conv_kernels = k;
}

nb_conv_kernels nb_conv2d_kernels(void)
{
	if (conv_kernels != NB_CONV_AUTO)
		return conv_kernels;
	return nb_gp_available() ? NB_CONV_WINOGRAD : NB_CONV_BLAS;
}

const char *nb_conv_kernels_name(nb_conv_kernels k)
{
	static const char *const names[] = {"auto", "blas", "packed",
					    "winograd"};
	return k >= NB_CONV_AUTO && k <= NB_CONV_WINOGRAD ? names[k] : "?";
}

/*
 * Under NB_CONV_AUTO the packed kernels take a convolution only where they
 * were measured to win: with at least 16 output positions per image (half
 * a panel; such a tile skips the multiply-adds of the empty half). With
 * fewer (ResNet-18's 4x4 stage at 32x32 inputs has 16 and gained 15 % from
 * the packed kernels; 2x2 and 1x1 maps would be mostly padding) the BLAS
 * path stays.
 */
static int packed_suits(const nb_conv2d_shape *s)
{
	return s->P * s->Q >= NB_GP_NR / 2;
}

/*
 * Depthwise convolutions with the channels on the lanes (dwconv.c) or on
 * the plane kernels above (their twin, and the path of machines without
 * 512-bit vectors): under NB_CONV_AUTO as nb_conv2d_kernels() reports
 * (which goes into the artefact key).
 */
static int use_dw_cl(const nb_conv2d_shape *s)
{
	(void)s;
	return nb_conv2d_kernels() != NB_CONV_BLAS;
}

static int use_packed(const nb_conv2d_shape *s)
{
	if (is_depthwise(s))
		return 0;
	if (conv_kernels == NB_CONV_AUTO)
		return nb_gp_available() && packed_suits(s);
	return conv_kernels != NB_CONV_BLAS;
}

/*
 * Winograd's F(2x2, 3x3) (winograd.c) for a 3x3 convolution of stride 1
 * and padding 1: forced, or under NB_CONV_AUTO where the packed kernels
 * would run and the channel counts are whole vectors of at most 512 (its
 * transformed weights and per-thread weight-gradient sums take 16 x C x K
 * floats: 16 MB each for 512 channels).
 */
static int use_wino(const nb_conv2d_shape *s)
{
	if (is_depthwise(s) || !nb_wino_fits(s))
		return 0;
	if (conv_kernels == NB_CONV_WINOGRAD)
		return 1;
	return conv_kernels == NB_CONV_AUTO && nb_gp_available() &&
	       packed_suits(s) && s->C % 16 == 0 && s->K % 16 == 0 &&
	       s->C <= 512 && s->K <= 512;
}

/* the input gradient as a forward convolution (see above) */
static int dgrad_as_forward(const nb_conv2d_shape *s)
{
	return s->stride_h == 1 && s->stride_w == 1 && s->pad_h <= s->R - 1 &&
	       s->pad_w <= s->S - 1;
}

/* n floats of row x go to output positions pos.. of row i of the panels bp
 * (inner dimension Kd), split where a panel ends */
static inline void put_run(float *restrict bp, int Kd, int i, int pos,
			   const float *restrict x, int n)
{
	while (n > 0) {
		const int off = pos % NB_GP_NR;
		const int m = n < NB_GP_NR - off ? n : NB_GP_NR - off;
		copy_row(bp + nb_gp_b_at(Kd, i, pos), x, m);
		pos += m;
		x += m;
		n -= m;
	}
}

/* The planes im (C,H,W) with their zero padding: im itself if there is
 * none, else copied into the interiors of xp (C,Hp,Wp), whose border the
 * caller keeps zero. */
static const float *pad_planes(float *restrict xp, const float *im, int C,
			       int H, int W, int ph, int pw)
{
	if (!ph && !pw)
		return im;
	const size_t HpWp = (size_t)(H + 2 * ph) * (W + 2 * pw);
	for (int c = 0; c < C; c++)
		pad_plane(xp + c * HpWp, im + (size_t)c * H * W, H, W, ph, pw);
	return xp;
}

/* The implicit (no im2col) products need rows of output positions that
 * hold whole vectors of 16, or pairs of rows of 8 (any stride: see
 * input_view). */
static int implicit_ok(int P, int Q)
{
	return Q % 16 == 0 || (Q == 8 && P % 2 == 0);
}

/*
 * The row length an implicit product computes for output rows of Q: Q
 * itself (implicit_ok), else Q rounded up to whole vectors when that wastes
 * at most 3/8 of the lanes (rows of 10 or more: LeNet-5's 28 and 10); the
 * lanes past Q read on into the next input row or the view's slack and
 * are dropped. 0: no implicit product (im2col).
 */
static int implicit_rows(int P, int Q)
{
	if (implicit_ok(P, Q))
		return Q;
	const int Qv = (Q + 15) / 16 * 16;
	return Q >= 10 && 5 * Qv <= 8 * Q ? Qv : 0;
}

/* A 1x1 stride-1 convolution (any padding) whose rows neither fill
 * vectors nor suit padded rows (implicit_rows): its implicit product may
 * read each (padded) plane as one row of P*Q positions, since position
 * (p, q) reads the padded plane's element (p, q) and its rows are Q long.
 * (Where padded rows do suit, as MobileNetV2's 34-wide maps, they stay:
 * there the product goes through a scratch that stays in cache, and with
 * 16 or 32 input channels writing the cold output tile by tile instead
 * was slower, 4.7 -> 7.2 ms.) */
static int pointwise_flat(const nb_conv2d_shape *s)
{
	return s->R == 1 && s->S == 1 && s->stride_h == 1 && s->stride_w == 1 &&
	       !implicit_rows(s->P, s->Q);
}

/* off[(c*R + r)*S + t] = where tap (r,t) of plane c starts in zero-padded
 * planes of (Hp,Wp): row i of the implicit im2col matrix. */
static void tap_offsets(int *off, int C, int R, int S, int Hp, int Wp)
{
	for (int c = 0; c < C; c++)
		for (int r = 0; r < R; r++)
			for (int t = 0; t < S; t++)
				off[(c * R + r) * S + t] =
				    (c * Hp + r) * Wp + t;
}

/*
 * How the implicit kernels read a convolution's input planes: zero-padded
 * (stride 1), or split into stride phases. Phase (a,b) of plane c holds the
 * padded plane's element (u*sh + a, v*sw + b) at (u,v), zero past its end;
 * tap (r,t) of a strided convolution then reads phase (r % sh, t % sw) from
 * (r / sh, t / sw) on with stride 1, so the implicit kernels need no
 * im2col for strided convolutions either.
 */
typedef struct xview {
	int phased; /* stride > 1 */
	int copy;   /* stride 1 without padding, copied anyway (slack) */
	int na, nb; /* phases some tap reads: a < na, b < nb (a 1x1
		       convolution reads only phase (0,0)) */
	int Hh, Wh; /* a (phase) plane's size; Wh is the row stride */
	size_t n;   /* floats of the view's planes, 0 if the input serves */
} xview;

/* slack: zeros the view needs past its planes (padded rows read up to
 * Qv - Q floats past the last one), which also makes it copy an input
 * that could otherwise serve as it is */
static xview input_view(const nb_conv2d_shape *s, int Cg, int slack)
{
	const int sh = s->stride_h, sw = s->stride_w;
	const int Hp = s->H + 2 * s->pad_h, Wp = s->W + 2 * s->pad_w;
	xview v = {.phased = sh > 1 || sw > 1};
	v.na = s->R < sh ? s->R : sh;
	v.nb = s->S < sw ? s->S : sw;
	v.Hh = (Hp + sh - 1) / sh;
	v.Wh = (Wp + sw - 1) / sw;
	v.copy = !v.phased && !s->pad_h && !s->pad_w && slack > 0;
	if (v.phased)
		v.n = pad16((size_t)Cg * v.na * v.nb * v.Hh * v.Wh + slack);
	else if (s->pad_h || s->pad_w || v.copy)
		v.n = pad16((size_t)Cg * Hp * Wp + slack);
	return v;
}

/*
 * view_planes for stride 2 x 2: each input row is read once and its even
 * and odd columns written to the two phase rows that hold them. Only
 * interiors are written: the borders stay zero from the caller's zeroing
 * of buf, as for pad_planes. (Gathering each phase row with a stride, and
 * writing its zeros every time, cost as much as the forward's product.)
 */
static void view_phases2(const xview *v, float *restrict buf, const float *im,
			 const nb_conv2d_shape *s, int Cg)
{
	const int H = s->H, W = s->W, ph = s->pad_h, pw = s->pad_w;
	const size_t plane = (size_t)v->Hh * v->Wh;
	for (int c = 0; c < Cg; c++)
		for (int h = 0; h < H; h++) {
			const int a = (h + ph) % 2, u = (h + ph) / 2;
			if (a >= v->na)
				continue;
			float *row = buf +
				     (size_t)(c * v->na + a) * v->nb * plane +
				     (size_t)u * v->Wh;
			float *const d[2] = {row, row + plane};
			float *e, *o;
			phase_cols2(d, v->nb, pw, &e, &o);
			const float *x = im + ((size_t)c * H + h) * W;
			if (e && o) {
				split_pairs(e, o, x, W / 2);
				if (W % 2)
					e[W / 2] = x[W - 1];
			} else if (e) {
				for (int j = 0; j < (W + 1) / 2; j++)
					e[j] = x[2 * j];
			} else {
				for (int j = 0; j < W / 2; j++)
					o[j] = x[2 * j + 1];
			}
		}
}

/* The view of planes im (Cg of them) in buf (v->n floats; for stride 1 its
 * border stays zero from the caller's zeroing, as for pad_planes). */
static const float *view_planes(const xview *v, float *restrict buf,
				const float *im, const nb_conv2d_shape *s,
				int Cg)
{
	const int H = s->H, W = s->W, ph = s->pad_h, pw = s->pad_w;
	if (v->copy) {
		memcpy(buf, im, sizeof(float) * Cg * H * W);
		return buf;
	}
	if (!v->phased)
		return pad_planes(buf, im, Cg, H, W, ph, pw);
	const int sh = s->stride_h, sw = s->stride_w, Wh = v->Wh;
	if (sh == 2 && sw == 2) {
		view_phases2(v, buf, im, s, Cg);
		return buf;
	}
	for (int c = 0; c < Cg; c++)
		for (int a = 0; a < v->na; a++)
			for (int b = 0; b < v->nb; b++) {
				float *d =
				    buf +
				    ((size_t)(c * v->na + a) * v->nb + b) *
					v->Hh * Wh;
				/* columns q0..q1 of a phase row come from
				 * inside the plane, the others are zero */
				int q0 = (pw - b + sw - 1) / sw;
				q0 = q0 < 0 ? 0 : q0 > Wh ? Wh : q0;
				int q1 = (W + pw - b + sw - 1) / sw;
				q1 = q1 < q0 ? q0 : q1 > Wh ? Wh : q1;
				for (int u = 0; u < v->Hh; u++, d += Wh) {
					const int h = u * sh + a - ph;
					if (h < 0 || h >= H) {
						memset(d, 0,
						       sizeof(float) * Wh);
						continue;
					}
					const float *x =
					    im + ((size_t)c * H + h) * W + b -
					    pw;
					for (int q = 0; q < q0; q++)
						d[q] = 0.0f;
					for (int q = q0; q < q1; q++)
						d[q] = x[q * sw];
					for (int q = q1; q < Wh; q++)
						d[q] = 0.0f;
				}
			}
	return buf;
}

/* off[(c*R + r)*S + t] = where tap (r,t) of plane c starts in the view */
static void view_offsets(const xview *v, int *off, const nb_conv2d_shape *s,
			 int Cg)
{
	const int R = s->R, S = s->S, sh = s->stride_h, sw = s->stride_w;
	if (!v->phased) {
		tap_offsets(off, Cg, R, S, v->Hh, v->Wh);
		return;
	}
	for (int c = 0; c < Cg; c++)
		for (int r = 0; r < R; r++)
			for (int t = 0; t < S; t++)
				off[(c * R + r) * S + t] =
				    (((c * v->na + r % sh) * v->nb + t % sw) *
					 v->Hh +
				     r / sh) *
					v->Wh +
				    t / sw;
}

/*
 * im2col into panels: bp (Kd = C*R*S rows) gets the (Kd, P*Q) matrix of
 * im2col above in the packed-B layout, at positions pos0.. (several
 * images side by side). Positions past the last one written are left
 * alone. xp as for im2col.
 */
static void im2col_panels(float *restrict bp, int pos0, float *restrict xp,
			  const float *im, int C, int H, int W, int R, int S,
			  int sh, int sw, int ph, int pw, int P, int Q)
{
	const int Hp = H + 2 * ph, Wp = W + 2 * pw, Kd = C * R * S;
	const float *src = pad_planes(xp, im, C, H, W, ph, pw);
	float row[Q];
	for (int c = 0; c < C; c++)
		for (int r = 0; r < R; r++)
			for (int t = 0; t < S; t++) {
				const int i = (c * R + r) * S + t;
				for (int p = 0; p < P; p++) {
					const float *x =
					    src +
					    ((size_t)c * Hp + p * sh + r) * Wp +
					    t;
					if (sw != 1) {
						for (int q = 0; q < Q; q++)
							row[q] = x[q * sw];
						x = row;
					}
					put_run(bp, Kd, i, pos0 + p * Q, x, Q);
				}
			}
}

/* Zeroes the positions past N of the last panel of bp (Kd x N). */
static void zero_panel_tail(float *bp, int Kd, int N)
{
	if (N % NB_GP_NR == 0)
		return;
	memset(bp + (size_t)(N / NB_GP_NR) * Kd * NB_GP_NR, 0,
	       sizeof(float) * Kd * NB_GP_NR);
}

/*
 * The packed weights below are written a block of NB_GP_MR rows of A at a
 * time, block t of every group's blocks in turn, so that the threads
 * share the packing (ResNet-18's 512x512x3x3 weights are 9.4 MB, packed
 * for every forward and again for the input gradient: packed by one
 * thread, the other waited). rows: the rows of one group's A.
 */
static int weight_blocks(const nb_conv2d_shape *s, int rows)
{
	return s->groups * ((rows + NB_GP_MR - 1) / NB_GP_MR);
}

/* Block t of every group's weights (Kg, CRSg) packed as A, an floats
 * apart. */
static void pack_weights(float *ap, size_t an, const float *w,
			 const nb_conv2d_shape *s, int t)
{
	const int G = s->groups, Kg = s->K / G;
	const int CRSg = s->C / G * s->R * s->S;
	const int Mb = weight_blocks(s, Kg) / G;
	const int g = t / Mb, m0 = t % Mb * NB_GP_MR;
	const int rows = Kg - m0 < NB_GP_MR ? Kg - m0 : NB_GP_MR;
	nb_gp_pack_a(ap + g * an + (size_t)m0 * CRSg,
		     w + ((size_t)g * Kg + m0) * CRSg, rows, CRSg, CRSg);
}

/* Block t of every group's flipped, transposed taps packed as A: row c,
 * column (k*R + r)*S + t holds w[k][c][R-1-r][S-1-t]; an floats apart. */
static void pack_weights_flipped(float *ap, size_t an, const float *w,
				 const nb_conv2d_shape *s, int t)
{
	const int G = s->groups, Kg = s->K / G, Cg = s->C / G;
	const int R = s->R, S = s->S, RS = R * S, Kd = Kg * RS;
	const int Mb = weight_blocks(s, Cg) / G;
	const int g = t / Mb, c0 = t % Mb * NB_GP_MR;
	const int c1 = Cg - c0 < NB_GP_MR ? Cg : c0 + NB_GP_MR;
	float *a = ap + g * an;
	memset(a + nb_gp_a_at(Kd, c0, 0), 0, sizeof(float) * Kd * NB_GP_MR);
	for (int k = 0; k < Kg; k++)
		for (int c = c0; c < c1; c++) {
			const float *wk =
			    w + (((size_t)g * Kg + k) * Cg + c) * RS;
			for (int j = 0; j < RS; j++)
				a[nb_gp_a_at(Kd, c, k * RS + j)] =
				    wk[RS - 1 - j];
		}
}

/* Block t of every group's weights transposed, (CRSg, Kg), packed as A:
 * the input gradient's im2col matrix of group g is w_g^T * dout_g. an
 * floats apart. */
static void pack_weights_t(float *ap, size_t an, const float *w,
			   const nb_conv2d_shape *s, int t)
{
	const int G = s->groups, Kg = s->K / G;
	const int CRSg = s->C / G * s->R * s->S;
	const int Mb = weight_blocks(s, CRSg) / G;
	const int g = t / Mb, m0 = t % Mb * NB_GP_MR;
	const float *wg = w + (size_t)g * Kg * CRSg;
	float *a = ap + g * an + (size_t)m0 * Kg;
	/* a block of 8 rows of A is 8 neighbouring floats of every row of
	 * w: both sides stay in cache, and a whole block is one 32-byte copy
	 * per row of w (element by element, this was 3 % of ResNet-18's
	 * training step) */
	if (m0 + NB_GP_MR <= CRSg) {
		for (int k = 0; k < Kg; k++)
			*(v8f_u *)(a + k * NB_GP_MR) =
			    *(const v8f_u *)(wg + (size_t)k * CRSg + m0);
		return;
	}
	for (int k = 0; k < Kg; k++)
		for (int m = 0; m < NB_GP_MR; m++)
			a[k * NB_GP_MR + m] =
			    m0 + m < CRSg ? wg[(size_t)k * CRSg + m0 + m]
					  : 0.0f;
}

/*
 * Images per product where the products go through im2col panels (the
 * forward pass and the input gradient where rows do not fill vectors). A
 * small output map (ResNet-18's 4x4 stage at 32x32 inputs) would make every
 * product a thin one that streams the whole weight matrix (up to 9 MB) for
 * 16 columns. Images side by side give each product at least 128 columns
 * (measured on the 4x4 stage, one thread: forward 120 -> 155 GFLOP/s, input
 * gradient 67 -> 139).
 */
static int images_per_product(int N, int PQ)
{
	const int b = (128 + PQ - 1) / PQ;
	return b > N ? N : b;
}

/* o[0..n) through ReLU or ReLU6 in place (NB_ACT_*), with
 * nb_relu_forward's and nb_relu6_forward's selects */
static void act_inplace(float *o, size_t n, int act)
{
	if (act == NB_ACT_RELU) {
#pragma omp simd
		for (size_t i = 0; i < n; i++)
			o[i] = o[i] < 0.0f ? 0.0f : o[i];
	} else if (act == NB_ACT_RELU6) {
#pragma omp simd
		for (size_t i = 0; i < n; i++) {
			const float x = o[i];
			o[i] = x < 0.0f ? 0.0f : (x > 6.0f ? 6.0f : x);
		}
	}
}

static int packed_forward(float *out, const float *in, const float *w,
			  const float *b, const nb_conv2d_shape *s,
			  nb_workspace *ws, int act)
{
	const int N = s->N, C = s->C, H = s->H, W = s->W, K = s->K, R = s->R,
		  S = s->S, P = s->P, Q = s->Q, G = s->groups;
	const int sh = s->stride_h, sw = s->stride_w, ph = s->pad_h,
		  pw = s->pad_w;
	const int Cg = C / G, Kg = K / G, CRSg = Cg * R * S, PQ = P * Q;
	const size_t HW = (size_t)H * W;
	/* Qv: the implicit product's row length, > Q for padded rows; a 1x1
	 * stride-1 convolution whose rows do not fill vectors reads its
	 * (padded) planes as one row each (flat): output position n is
	 * element n of its plane, so no lane is wasted (MobileNetV2's 34-,
	 * 17-, 9- and 5-wide maps) */
	const int flat = pointwise_flat(s);
	const int Qv = flat ? Q : implicit_rows(P, Q), implicit = Qv > 0;
	/* the row length the product reads and its zero slack past the
	 * planes: a vector read at the last position runs on 15 floats */
	const int Qx = flat ? PQ : Q;
	const xview v = input_view(s, Cg, flat ? 15 : Qv - Q);
	/* units of work: B images side by side (one when implicit) */
	const int B = implicit ? 1 : images_per_product(N, PQ);
	const int NU = (N + B - 1) / B, cols = B * PQ;

	/* shared: the packed weights [tap offsets if implicit]; per thread:
	 * [panels of B images unless implicit] [their product if B > 1 or
	 * rows are padded] [the input's view if implicit, else padded planes
	 * for im2col] */
	const size_t an = pad16(nb_gp_a_floats(Kg, CRSg));
	const size_t off_n = implicit ? pad16((size_t)CRSg) : 0;
	const size_t col_n = implicit ? 0 : pad16(nb_gp_b_floats(CRSg, cols));
	const size_t prod_n = B > 1		   ? pad16((size_t)Kg * cols)
			      : implicit && Qv > Q ? pad16((size_t)Kg * P * Qv)
						   : 0;
	const size_t xp_n =
	    implicit   ? v.n
	    : ph || pw ? pad16((size_t)Cg * (H + 2 * ph) * (W + 2 * pw))
		       : 0;
	const size_t slice = col_n + prod_n + xp_n;
	const int T = nb_workspace_threads();
	float *ap = nb_workspace_reserve(ws, an * G + off_n + slice * T);
	if (!ap)
		return NB_ENOMEM;
	int *off = implicit ? (int *)(ap + an * G) : NULL;
	if (off)
		view_offsets(&v, off, s, Cg);
	float *scratch = ap + an * G + off_n;

#pragma omp parallel num_threads(T)
	{
		float *mine = scratch + slice * omp_get_thread_num();
		float *col = col_n ? mine : NULL;
		float *prod = prod_n ? mine + col_n : NULL;
		float *xp = xp_n ? mine + col_n + prod_n : NULL;
		if (xp)
			memset(xp, 0, sizeof(float) * xp_n);
		/* columns past those written are computed but never stored */
		if (col)
			zero_panel_tail(col, CRSg, cols);
#pragma omp for schedule(static)
		for (int t = 0; t < weight_blocks(s, Kg); t++)
			pack_weights(ap, an, w, s, t);
			/* units are independent; each thread takes one
			 * contiguous run of them. Handed out one at a time as
			 * threads come free, neighbouring images alternate
			 * between the two cores and the 2-thread forward ran
			 * 5-25 % slower (ResNet-18's 64-channel 3x3 at batch
			 * 32: 7.7 -> 6.2 ms, preresnet20's 64-channel one at
			 * batch 128: 1.9 -> 1.6 ms). */
#pragma omp for schedule(static)
		for (int u = 0; u < NU; u++) {
			const int n0 = u * B, nb = N - n0 < B ? N - n0 : B;
			for (int g = 0; g < G; g++) {
				const float *ig =
				    in + ((size_t)n0 * C + (size_t)g * Cg) * HW;
				float *og =
				    out +
				    ((size_t)n0 * K + (size_t)g * Kg) * PQ;
				const float *bg = b ? b + g * Kg : NULL;
				if (implicit && Qv == Q) {
					const float *x =
					    view_planes(&v, xp, ig, s, Cg);
					nb_gp_gemm_x(og, PQ, Kg, PQ, CRSg,
						     ap + g * an, x, off, Qx,
						     v.Wh, bg, 0);
					continue;
				}
				if (implicit) { /* rows of Qv, Q of them kept */
					const float *x =
					    view_planes(&v, xp, ig, s, Cg);
					const int PQv = P * Qv;
					nb_gp_gemm_x(prod, PQv, Kg, PQv, CRSg,
						     ap + g * an, x, off, Qv,
						     v.Wh, bg, 0);
					for (int k = 0; k < Kg; k++)
						for (int p = 0; p < P; p++)
							memcpy(
							    og + k * PQ + p * Q,
							    prod + k * PQv +
								p * Qv,
							    sizeof(float) * Q);
					continue;
				}
				for (int j = 0; j < nb; j++)
					im2col_panels(col, j * PQ, xp,
						      ig + (size_t)j * C * HW,
						      Cg, H, W, R, S, sh, sw,
						      ph, pw, P, Q);
				if (nb == 1) {
					nb_gp_gemm(og, PQ, Kg, PQ, CRSg,
						   ap + g * an, col, bg, 0);
					continue;
				}
				/* prod (Kg, nb*PQ): image j's map of
				 * channel k at row k, columns j*PQ.. */
				const size_t ld = (size_t)nb * PQ;
				nb_gp_gemm(prod, ld, Kg, nb * PQ, CRSg,
					   ap + g * an, col, bg, 0);
				for (int j = 0; j < nb; j++)
					for (int k = 0; k < Kg; k++)
						memcpy(og + (size_t)j * K * PQ +
							   (size_t)k * PQ,
						       prod + k * ld +
							   (size_t)j * PQ,
						       sizeof(float) * PQ);
			}
			/* the unit's maps are still in cache */
			act_inplace(out + (size_t)n0 * K * PQ,
				    (size_t)nb * K * PQ, act);
		}
	}
	return NB_OK;
}

/*
 * The weight gradient with positions on the lanes (nb_gp_wgrad_lanes) where
 * a group has at most 16 output channels: with one vector of channels,
 * nb_gp_wgrad loads a broadcast per multiply-add. Its vectors of positions
 * need rows of whole vectors.
 */
static int wgrad_on_lanes(const nb_conv2d_shape *s)
{
	return s->groups == 1 && s->K <= 16 && s->Q % 16 == 0 &&
	       s->stride_h == 1 && s->stride_w == 1;
}

/* What packed_backward's threads share: the shape's derived sizes, the
 * packed weights for din and the tap-offset tables. */
typedef struct pb_plan {
	const nb_conv2d_shape *s;
	int Cg, Kg, CRSg, KRSg, PQ, HW, Hp, Wp;
	int gph, gpw, Pp, Qp; /* dout's padding and padded size for din */
	int Mp;		      /* Kg rounded up to whole vectors of 16 */
	int lanes;	      /* the weight gradient on nb_gp_wgrad_lanes */
	int implicit_d;
	int Wv; /* implicit_d: its product's row length (> W: padded rows) */
	int flat_d; /* implicit_d on each plane as one row (pointwise_flat) */
	int store;  /* din is written, not added to (see
		       nb_conv2d_backward_store) */
	xview xv;   /* how the weight gradient reads x */
	/* din's weights, an floats per group: flipped (implicit_d) or
	 * transposed (through im2col columns) */
	const float *ap;
	size_t an;
	const int *offx; /* x's taps: padded planes or panels */
	const int *offg; /* dout's taps (implicit_d) */
} pb_plan;

/* One thread's scratch in packed_backward; NULL where not needed. */
typedef struct pb_scratch {
	float *xp;	    /* x's view (padded planes or phases) */
	float *gT;	    /* dout of one group transposed, (B*PQ, Mp) */
	float *wl;	    /* lanes: the partial sums (CRSg, Kg, 16) */
	float *gpad;	    /* padded dout planes (implicit_d) */
	float *colg, *dcol; /* dout's panels and din's im2col matrix */
	float *dxp;	    /* padded din planes for col2im */
	float *drows;	    /* din of one group in padded rows (Wv > W) */
} pb_scratch;

/* dwT_g += group g's weight gradient from images n0..n0+nb-1 (one unit:
 * up to images_per_product of them) on the input's views, not im2col
 * panels (measured on 4x4 and 8x8 maps, im2col costs more than the sum's
 * traffic). The unit's images go into one call, their views and
 * transposed gradients side by side: one image at a time, ResNet-18's 4x4
 * stage read and wrote its whole 9.4 MB dwT for every 16 positions. */
static void pb_wgrad(const pb_plan *pl, pb_scratch *sc, float *dwT,
		     const float *in, const float *dout, int n0, int nb, int g)
{
	const nb_conv2d_shape *s = pl->s;
	const int PQ = pl->PQ;
	const float *x0 = NULL;
	for (int j = 0; j < nb; j++) {
		const size_t n = (size_t)n0 + j;
		const float *xg = in + (n * s->C + (size_t)g * pl->Cg) * pl->HW;
		const float *gg = dout + (n * s->K + (size_t)g * pl->Kg) * PQ;
		float *buf = sc->xp ? sc->xp + j * pl->xv.n : NULL;
		const float *x = view_planes(&pl->xv, buf, xg, s, pl->Cg);
		if (pl->lanes) {
			nb_gp_wgrad_lanes(sc->wl, pl->Kg, pl->CRSg, PQ, gg, PQ,
					  x, pl->offx, s->Q, pl->xv.Wh);
			continue;
		}
		nb_gp_transpose_pad(sc->gT + (size_t)j * PQ * pl->Mp, pl->Mp,
				    gg, pl->Kg, PQ, PQ, NULL, 0);
		if (!j)
			x0 = x;
	}
	if (pl->lanes)
		return;
	/* image j's view is x0 + j * xs: in its slot of xp, or the input */
	const size_t xs = pl->xv.n ? pl->xv.n : (size_t)s->C * pl->HW;
	nb_gp_wgrad(dwT, pl->Mp, pl->CRSg, PQ, nb, sc->gT, x0, xs, pl->offx,
		    s->Q, pl->xv.Wh);
}

/* din += group g's input gradient from images n0..n0+nb-1: a forward
 * convolution of the padded dout with the flipped taps (implicit_d, one
 * image at a time), or din's im2col matrix w_g^T * dout_g for all nb
 * images in one product, scattered back by col2im. */
static void pb_dgrad(const pb_plan *pl, pb_scratch *sc, float *din,
		     const float *dout, int n0, int nb, int g)
{
	const nb_conv2d_shape *s = pl->s;
	const int PQ = pl->PQ;
	const float *ag = pl->ap + g * pl->an;
	for (int j = 0; j < nb; j++) {
		const size_t n = (size_t)n0 + j;
		float *dxg = din + (n * s->C + (size_t)g * pl->Cg) * pl->HW;
		const float *gg = dout + (n * s->K + (size_t)g * pl->Kg) * PQ;
		if (pl->flat_d) {
			/* the planes as one row each, copied for the slack
			 * the last vector reads; din += a product made
			 * first, so that the bits are the im2col path's */
			const size_t n_d = (size_t)pl->Cg * pl->HW;
			const float *x =
			    memcpy(sc->gpad, gg, sizeof(float) * pl->Kg * PQ);
			float *d = pl->store ? dxg : sc->drows;
			nb_gp_gemm_x(d, pl->HW, pl->Cg, pl->HW, pl->KRSg, ag, x,
				     pl->offg, pl->HW, pl->Qp, NULL, 0);
			if (!pl->store)
#pragma omp simd
				for (size_t i = 0; i < n_d; i++)
					dxg[i] += d[i];
			continue;
		}
		if (pl->implicit_d && pl->Wv == s->W) {
			const float *x = pad_planes(sc->gpad, gg, pl->Kg, s->P,
						    s->Q, pl->gph, pl->gpw);
			nb_gp_gemm_x(dxg, pl->HW, pl->Cg, pl->HW, pl->KRSg, ag,
				     x, pl->offg, s->W, pl->Qp, NULL,
				     !pl->store);
			continue;
		}
		if (pl->implicit_d) { /* rows of Wv, W of them kept */
			const int W = s->W, Wv = pl->Wv, HWv = s->H * Wv;
			const float *x =
			    pl->gph || pl->gpw
				? pad_planes(sc->gpad, gg, pl->Kg, s->P, s->Q,
					     pl->gph, pl->gpw)
				: memcpy(sc->gpad, gg,
					 sizeof(float) * pl->Kg * PQ);
			nb_gp_gemm_x(sc->drows, HWv, pl->Cg, HWv, pl->KRSg, ag,
				     x, pl->offg, Wv, pl->Qp, NULL, 0);
			for (int c = 0; c < pl->Cg; c++)
				for (int h = 0; h < s->H; h++) {
					float *restrict d =
					    dxg + (size_t)c * pl->HW + h * W;
					const float *restrict e =
					    sc->drows + (size_t)c * HWv +
					    h * Wv;
					if (pl->store)
						memcpy(d, e, sizeof(float) * W);
					else
#pragma omp simd
						for (int i = 0; i < W; i++)
							d[i] += e[i];
				}
			continue;
		}
		if (pl->store) /* col2im adds: zero the planes it adds to */
			memset(dxg, 0, sizeof(float) * pl->Cg * pl->HW);
		for (int k = 0; k < pl->Kg; k++)
			put_run(sc->colg, pl->Kg, k, j * PQ,
				gg + (size_t)k * PQ, PQ);
	}
	if (pl->implicit_d)
		return;
	const size_t ld = (size_t)nb * PQ;
	nb_gp_gemm(sc->dcol, ld, pl->CRSg, nb * PQ, pl->Kg, ag, sc->colg, NULL,
		   0);
	for (int j = 0; j < nb; j++) {
		float *dxg =
		    din +
		    (((size_t)n0 + j) * s->C + (size_t)g * pl->Cg) * pl->HW;
		const float *dc = sc->dcol + (size_t)j * PQ;
		if (col2im_phased(s))
			col2im_add_phases2(dxg, sc->dxp, dc, ld, pl->Cg, s->H,
					   s->W, s->R, s->S, s->pad_h, s->pad_w,
					   s->P, s->Q);
		else
			col2im_add(dxg, sc->dxp, dc, ld, pl->Cg, s->H, s->W,
				   s->R, s->S, s->stride_h, s->stride_w,
				   s->pad_h, s->pad_w, s->P, s->Q);
	}
}

/*
 * Chunks of images with a partial weight gradient each (see
 * packed_backward): up to 4 per thread, so that a thread that comes free
 * takes more, but each partial element must gather at least 512
 * multiply-adds, or zeroing and reducing the partials costs more than the
 * balance gains (ResNet-18's 4x4 stage: 2.36 M floats per partial for 16
 * positions per image; with 8 chunks two threads were 3.6x slower than
 * one).
 */
#define NB_CONV_PART_FLOATS ((size_t)4 << 20) /* see backward_chunks */
static int backward_chunks(int T, int NU, int N, int PQ, size_t part_n,
			   int has_dw)
{
	if (T == 1)
		return 1;
	int nch = NU < 4 * T ? NU : 4 * T;
	long long cap = (long long)N * PQ / 512;
	/* and the partials past one per thread take at most 16 MB (ResNeXt's
	 * 1x1 convolutions have 2 M weights: training memory) */
	const long long mem =
	    part_n ? (long long)(NB_CONV_PART_FLOATS / part_n) + T : cap;
	if (mem < cap)
		cap = mem;
	if (has_dw && nch > cap)
		nch = cap > T ? (int)cap : T;
	return nch < NU ? nch : NU;
}

/*
 * The backward pass on packed kernels. Each chunk of images sums its dw
 * (transposed, output channels on the lanes of nb_gp_wgrad) and db
 * privately; the partials are reduced in chunk order.
 */
static int packed_backward(float *din, float *dw, float *db, const float *dout,
			   const float *in, const float *w,
			   const nb_conv2d_shape *s, nb_workspace *ws,
			   int store)
{
	const int N = s->N, C = s->C, K = s->K, R = s->R, S = s->S,
		  G = s->groups;
	pb_plan pl = {.s = s, .Cg = C / G, .Kg = K / G, .store = store};
	pl.CRSg = pl.Cg * R * S;
	pl.KRSg = pl.Kg * R * S;
	pl.PQ = s->P * s->Q;
	pl.HW = s->H * s->W;
	pl.Hp = s->H + 2 * s->pad_h;
	pl.Wp = s->W + 2 * s->pad_w;
	pl.gph = R - 1 - s->pad_h;
	pl.gpw = S - 1 - s->pad_w;
	pl.Pp = s->P + 2 * pl.gph;
	pl.Qp = s->Q + 2 * pl.gpw;
	pl.Mp = (pl.Kg + 15) / 16 * 16;
	pl.lanes = dw && wgrad_on_lanes(s);
	const int PQ = pl.PQ;
	const int B = images_per_product(N, PQ), NU = (N + B - 1) / B,
		  cols = B * PQ;
	/* the weight gradient's implicit im2col takes any row length */
	pl.xv = input_view(s, pl.Cg, 0);
	/* the input gradient as a forward convolution only where that needs
	 * no im2col: otherwise its im2col matrix (K*R*S x H*W) is larger
	 * than col2im's (C*R*S x P*Q) wherever C <= K */
	pl.flat_d = din && dgrad_as_forward(s) && pointwise_flat(s);
	pl.Wv = pl.flat_d		     ? s->W
		: din && dgrad_as_forward(s) ? implicit_rows(s->H, s->W)
					     : 0;
	pl.implicit_d = pl.Wv > 0;
	const int Cg = pl.Cg, Kg = pl.Kg, CRSg = pl.CRSg;
	const int padded = s->pad_h || s->pad_w;

	/* shared: [din's packed weights] [x's tap offsets if dw]
	 * [dout's tap offsets if implicit_d] */
	pl.an = !din		? 0
		: pl.implicit_d ? pad16(nb_gp_a_floats(Cg, pl.KRSg))
				: pad16(nb_gp_a_floats(CRSg, Kg));
	const size_t offx_n = dw ? pad16((size_t)CRSg) : 0;
	const size_t offg_n = pl.implicit_d ? pad16((size_t)pl.KRSg) : 0;
	const size_t shared = pl.an * G + offx_n + offg_n;
	/* per thread: the scratch of pb_scratch, each only when needed,
	 * then per chunk the partial dw (transposed) and db */
	const int cols_d = din && !pl.implicit_d;
	const size_t xp_n = dw ? pl.xv.n * B : 0;
	const size_t gT_n = dw && !pl.lanes ? pad16((size_t)B * PQ * pl.Mp) : 0;
	const size_t wl_n = pl.lanes ? pad16((size_t)CRSg * Kg * 16) : 0;
	/* (padded rows read up to Wv - W floats past the padded planes) */
	const size_t gpad_n =
	    pl.flat_d ? pad16((size_t)Kg * PQ + 15) /* a copy with slack */
	    : pl.implicit_d && (pl.gph || pl.gpw || pl.Wv > s->W)
		? pad16((size_t)Kg * pl.Pp * pl.Qp + pl.Wv - s->W)
		: 0;
	/* (flat_d adding to din: the product first, as the im2col path) */
	const size_t drows_n =
	    pl.implicit_d && (pl.Wv > s->W || (pl.flat_d && !store))
		? pad16((size_t)Cg * s->H * pl.Wv)
		: 0;
	const size_t colg_n = cols_d ? pad16(nb_gp_b_floats(Kg, cols)) : 0;
	const size_t dcol_n = cols_d ? pad16((size_t)CRSg * cols) : 0;
	const size_t dxp_n = !cols_d ? 0
			     : col2im_phased(s)
				 ? pad16(phases2_floats(Cg, s->H, s->W, R, S,
							s->pad_h, s->pad_w))
			     : padded ? pad16((size_t)Cg * pl.Hp * pl.Wp)
				      : 0;
	const size_t work_n =
	    xp_n + gT_n + wl_n + gpad_n + colg_n + dcol_n + dxp_n + drows_n;
	const size_t dwT_g = (size_t)CRSg * pl.Mp; /* per group */
	const size_t dw_n = dw ? pad16(dwT_g * G) : 0;
	const size_t db_n = db ? pad16((size_t)K) : 0;
	/* The units of B images go in NCH fixed chunks, each with its own
	 * partial dw and db, each thread taking a contiguous run of chunks
	 * (as the forward's units, and as much faster); the partials are
	 * then reduced in chunk order, so a result depends on N and the
	 * thread count only. */
	const int T = nb_workspace_threads();
	const size_t part_n = dw_n + db_n;
	const int NCH = backward_chunks(T, NU, N, PQ, part_n, dw != NULL);
	float *ap =
	    nb_workspace_reserve(ws, shared + work_n * T + part_n * NCH);
	if (!ap)
		return NB_ENOMEM;
	pl.ap = ap;
	int *offx = dw ? (int *)(ap + pl.an * G) : NULL;
	int *offg = pl.implicit_d ? (int *)(ap + pl.an * G + offx_n) : NULL;
	if (offx)
		view_offsets(&pl.xv, offx, s, Cg);
	if (offg)
		tap_offsets(offg, Kg, R, S, pl.Pp, pl.Qp);
	pl.offx = offx;
	pl.offg = offg;
	float *scratch = ap + shared;
	float *parts = scratch + work_n * T;

#pragma omp parallel num_threads(T)
	{
		float *at = scratch + work_n * omp_get_thread_num();
		pb_scratch sc = {0};
		float **slot[] = {&sc.xp,   &sc.gT,   &sc.wl,  &sc.gpad,
				  &sc.colg, &sc.dcol, &sc.dxp, &sc.drows};
		const size_t len[] = {xp_n,   gT_n,   wl_n,  gpad_n,
				      colg_n, dcol_n, dxp_n, drows_n};
		for (int i = 0; i < 8; i++) {
			*slot[i] = len[i] ? at : NULL;
			at += len[i];
		}
		/* borders and panel tails are zeroed once: only interiors
		 * and positions inside the planes are written below
		 * (col2im zeroes its dxp itself) */
		if (sc.xp)
			memset(sc.xp, 0, sizeof(float) * xp_n);
		if (sc.wl) /* and zeroed again by each chunk's sum */
			memset(sc.wl, 0, sizeof(float) * wl_n);
		if (sc.gpad)
			memset(sc.gpad, 0, sizeof(float) * gpad_n);
		if (sc.colg)
			zero_panel_tail(sc.colg, Kg, cols);
		if (din) {
			const int nblk =
			    weight_blocks(s, pl.implicit_d ? Cg : CRSg);
#pragma omp for schedule(static)
			for (int t = 0; t < nblk; t++)
				if (pl.implicit_d)
					pack_weights_flipped(ap, pl.an, w, s,
							     t);
				else
					pack_weights_t(ap, pl.an, w, s, t);
		}

#pragma omp for schedule(static)
		for (int ch = 0; ch < NCH; ch++) {
			float *dwp = dw ? parts + part_n * ch : NULL;
			float *dbp = db ? parts + part_n * ch + dw_n : NULL;
			if (part_n)
				memset(parts + part_n * ch, 0,
				       sizeof(float) * part_n);
			const int u1 = (int)((long long)NU * (ch + 1) / NCH);
			for (int u = (int)((long long)NU * ch / NCH); u < u1;
			     u++) {
				const int n0 = u * B,
					  nb = N - n0 < B ? N - n0 : B;
				for (int n = n0; dbp && n < n0 + nb; n++) {
					const float *gn =
					    dout + (size_t)n * K * PQ;
					for (int k = 0; k < K; k++)
						dbp[k] +=
						    sum_floats(gn + k * PQ, PQ);
				}
				for (int g = 0; g < G; g++) {
					if (dwp)
						pb_wgrad(&pl, &sc,
							 dwp + g * dwT_g, in,
							 dout, n0, nb, g);
					if (din)
						pb_dgrad(&pl, &sc, din, dout,
							 n0, nb, g);
				}
			}
			if (pl.lanes)
				nb_gp_wgrad_lanes_sum(dwp, pl.Mp, sc.wl, Kg,
						      CRSg);
		}

		/* dw[g][k][i] += the chunks' dwT[g][i][k], in chunk order:
		 * first summed into chunk 0's (rows split over threads), then
		 * transposed in tiles of 16 x 16, so that neither side is
		 * read or written a float per cache line (ResNet-18's 4x4
		 * stage: a 2.36 M-float sum, 6 ms a step before). The `for`
		 * above ends in a barrier. */
		if (dw && NCH > 1) {
			const size_t rows = dwT_g * G / 16;
#pragma omp for schedule(static)
			for (size_t r = 0; r < rows; r++)
				for (int ch = 1; ch < NCH; ch++)
					for (int l = 0; l < 16; l++)
						parts[r * 16 + l] +=
						    parts[part_n * ch + r * 16 +
							  l];
		}
		if (dw) {
			const int ti = (CRSg + 15) / 16, tk = (Kg + 15) / 16;
#pragma omp for schedule(static)
			for (int t = 0; t < G * tk * ti; t++) {
				const int g = t / (tk * ti);
				const int k0 = t / ti % tk * 16,
					  i0 = t % ti * 16;
				const int k1 = k0 + 16 < Kg ? k0 + 16 : Kg;
				const int i1 = i0 + 16 < CRSg ? i0 + 16 : CRSg;
				const float *src = parts + g * dwT_g;
				float *d = dw + (size_t)g * Kg * CRSg;
				if (k1 - k0 == 16 && i1 - i0 == 16) {
					/* a whole block: transposed in
					 * registers (gathered element by
					 * element, this was 1 % of
					 * ResNet-18's step) */
					nb_gp_add_transposed16(
					    d + (size_t)k0 * CRSg + i0, CRSg,
					    src + (size_t)i0 * pl.Mp + k0,
					    pl.Mp);
					continue;
				}
				for (int k = k0; k < k1; k++)
					for (int i = i0; i < i1; i++)
						d[(size_t)k * CRSg + i] +=
						    src[(size_t)i * pl.Mp + k];
			}
		}
		if (db) {
#pragma omp single
			for (int k = 0; k < K; k++) {
				float acc = 0;
				for (int ch = 0; ch < NCH; ch++)
					acc += parts[part_n * ch + dw_n + k];
				db[k] += acc;
			}
		}
	}
	return NB_OK;
}

/* ---- forward ------------------------------------------------------------
 * in (N,C,H,W), w (K,C/G,R,S), b (K) or NULL -> out (N,K,P,Q). */
static int conv2d_forward(float *out, const float *in, const float *w,
			  const float *b, const nb_conv2d_shape *s,
			  nb_workspace *ws);

int nb_conv2d_forward(float *out, const float *in, const float *w,
		      const float *b, const nb_conv2d_shape *s,
		      nb_workspace *ws)
{
	return conv2d_forward(out, in, w, b, s, ws);
}

int nb_conv2d_forward_act(float *out, const float *in, const float *w,
			  const float *b, const nb_conv2d_shape *s,
			  nb_workspace *ws, int act)
{
	if (act == NB_ACT_NONE)
		return conv2d_forward(out, in, w, b, s, ws);
	if (act != NB_ACT_RELU && act != NB_ACT_RELU6)
		return NB_EINVAL;
	if (use_wino(s))
		return nb_wino_forward(out, in, w, b, s, ws, act,
				       conv_kernels == NB_CONV_AUTO, NULL,
				       NULL);
	if (!is_depthwise(s) && !is_whole_plane(s) && use_packed(s))
		return packed_forward(out, in, w, b, s, ws, act);
	const int rc = conv2d_forward(out, in, w, b, s, ws);
	if (rc < 0)
		return rc;
	const size_t n = (size_t)s->N * s->K * s->P * s->Q;
	if (act == NB_ACT_RELU)
		nb_relu_forward(out, out, n);
	else
		nb_relu6_forward(out, out, n);
	return NB_OK;
}

int nb_conv2d_takes_pre(const nb_conv2d_shape *s)
{
	return use_wino(s);
}

static int pre_ok(const nb_conv2d_shape *s, const nb_conv_pre *pre)
{
	return use_wino(s) && pre && pre->affine &&
	       (pre->act == NB_ACT_NONE || pre->act == NB_ACT_RELU ||
		pre->act == NB_ACT_RELU6);
}

int nb_conv2d_forward_pre(float *out, const float *in, const float *w,
			  const float *b, const nb_conv2d_shape *s,
			  nb_workspace *ws, const nb_conv_pre *pre)
{
	if (!pre_ok(s, pre))
		return NB_EINVAL;
	return nb_wino_forward(out, in, w, b, s, ws, NB_ACT_NONE,
			       conv_kernels == NB_CONV_AUTO, pre, NULL);
}

int nb_conv2d_forward_post(float *out, const float *in, const float *w,
			   const float *b, const nb_conv2d_shape *s,
			   nb_workspace *ws, const nb_conv_pre *pre,
			   const nb_conv_post *post)
{
	if (pre && !pre_ok(s, pre))
		return NB_EINVAL;
	if (use_wino(s))
		return nb_wino_forward(out, in, w, b, s, ws, NB_ACT_NONE,
				       conv_kernels == NB_CONV_AUTO, pre, post);
	const int rc = conv2d_forward(out, in, w, b, s, ws);
	if (rc >= 0 && post && post->res)
		nb_add_forward(out, out, post->res,
			       (size_t)s->N * s->K * s->P * s->Q);
	return rc < 0 ? rc : 0;
}

static int conv2d_forward(float *out, const float *in, const float *w,
			  const float *b, const nb_conv2d_shape *s,
			  nb_workspace *ws)
{
	const int N = s->N, C = s->C, H = s->H, W = s->W, K = s->K, R = s->R,
		  S = s->S, P = s->P, Q = s->Q, G = s->groups;
	const int sh = s->stride_h, sw = s->stride_w, ph = s->pad_h,
		  pw = s->pad_w;
	const int Cg = C / G, Kg = K / G;
	const size_t HW = (size_t)H * W, PQ = (size_t)P * Q;
	const size_t CRSg = (size_t)Cg * R * S;

	if (is_depthwise(s))
		return use_dw_cl(s) ? nb_dw_cl_forward(out, in, w, b, s, ws)
				    : depthwise_forward(out, in, w, b, s, ws);
	if (is_whole_plane(s)) {
		nb_linear_forward(out, in, w, b, N, C * H * W, K);
		return NB_OK;
	}
	if (use_wino(s))
		return nb_wino_forward(out, in, w, b, s, ws, NB_ACT_NONE,
				       conv_kernels == NB_CONV_AUTO, NULL,
				       NULL);
	if (use_packed(s))
		return packed_forward(out, in, w, b, s, ws, NB_ACT_NONE);

	/* per-thread scratch: [col (CRSg,PQ)] [xp (Cg,Hp,Wp) if padded] */
	const int direct = is_pointwise(s);
	const int padded = ph || pw;
	const size_t col_n = direct ? 0 : pad16(CRSg * PQ);
	const size_t xp_n =
	    !direct && padded ? pad16((size_t)Cg * (H + 2 * ph) * (W + 2 * pw))
			      : 0;
	const size_t slice = col_n + xp_n;
	const int T = nb_workspace_threads();
	float *scratch = NULL;
	if (slice && !(scratch = nb_workspace_reserve(ws, slice * T)))
		return NB_ENOMEM;

#pragma omp parallel num_threads(T)
	{
		float *col =
		    scratch ? scratch + slice * omp_get_thread_num() : NULL;
		float *xp = xp_n ? col + col_n : NULL;
		if (xp) /* the border stays zero: only interiors are written */
			memset(xp, 0, sizeof(float) * xp_n);
#pragma omp for schedule(static)
		for (int n = 0; n < N; n++) {
			float *on = out + (size_t)n * K * PQ;
			float beta = 0.0f;
			if (b) {
				/* start from the bias and let the GEMM add */
				for (int k = 0; k < K; k++)
					for (size_t i = 0; i < PQ; i++)
						on[k * PQ + i] = b[k];
				beta = 1.0f;
			}
			for (int g = 0; g < G; g++) {
				const float *ig =
				    in + ((size_t)n * C + (size_t)g * Cg) * HW;
				const float *B = ig;
				if (!direct) {
					im2col(col, xp, ig, Cg, H, W, R, S, sh,
					       sw, ph, pw, P, Q);
					B = col;
				}
				/* out_g (Kg,PQ) += w_g (Kg,CRSg) * B */
				cblas_sgemm(CblasRowMajor, CblasNoTrans,
					    CblasNoTrans, Kg, (int)PQ,
					    (int)CRSg, 1.0f,
					    w + (size_t)g * Kg * CRSg,
					    (int)CRSg, B, (int)PQ, beta,
					    on + (size_t)g * Kg * PQ, (int)PQ);
			}
		}
	}
	return NB_OK;
}

/* ---- backward -----------------------------------------------------------
 * dout (N,K,P,Q), in (N,C,H,W), w (K,C/G,R,S) -> din (N,C,H,W) +=,
 * dw (K,C/G,R,S) +=, db (K) +=; each may be NULL.
 *
 * The BLAS path's per-thread workspace slice: [col] [xp] [dxp] [dw partial]
 * [db partial], each part present only when needed (see below). */
static int blas_backward(float *din, float *dw, float *db, const float *dout,
			 const float *in, const float *w,
			 const nb_conv2d_shape *s, nb_workspace *ws, int store);

static int conv2d_backward(float *din, float *dw, float *db, const float *dout,
			   const float *in, const float *w,
			   const nb_conv2d_shape *s, nb_workspace *ws,
			   int store)
{
	if (!din && !dw && !db)
		return NB_OK;
	if (is_whole_plane(s)) {
		if (din && store)
			memset(din, 0,
			       sizeof(float) * s->N * s->C * s->H * s->W);
		nb_linear_backward(din, dw, db, dout, in, w, s->N,
				   s->C * s->H * s->W, s->K);
		return NB_OK;
	}
	if (is_depthwise(s) && use_dw_cl(s)) {
		/* the bias gradient as blas_backward takes it, first: the
		 * depthwise path does not take it */
		if (db) {
			int rc = blas_backward(NULL, NULL, db, dout, in, w, s,
					       ws, 0);
			if (rc < 0)
				return rc;
		}
		return nb_dw_cl_backward(din, dw, dout, in, w, s, ws, store);
	}
	if (use_wino(s)) {
		/* the bias gradient as blas_backward takes it, first */
		if (db) {
			int rc = blas_backward(NULL, NULL, db, dout, in, w, s,
					       ws, 0);
			if (rc < 0)
				return rc;
		}
		return nb_wino_backward(din, dw, dout, in, w, s, ws, store,
					conv_kernels == NB_CONV_AUTO, NULL);
	}
	if (!use_packed(s))
		return blas_backward(din, dw, db, dout, in, w, s, ws, store);
	return packed_backward(din, dw, db, dout, in, w, s, ws, store);
}

int nb_conv2d_backward(float *din, float *dw, float *db, const float *dout,
		       const float *in, const float *w,
		       const nb_conv2d_shape *s, nb_workspace *ws)
{
	return conv2d_backward(din, dw, db, dout, in, w, s, ws, 0);
}

int nb_conv2d_backward_store(float *din, float *dw, float *db,
			     const float *dout, const float *in, const float *w,
			     const nb_conv2d_shape *s, nb_workspace *ws)
{
	return conv2d_backward(din, dw, db, dout, in, w, s, ws, 1);
}

int nb_conv2d_backward_pre(float *din, float *dw, float *db, const float *dout,
			   const float *in, const float *w,
			   const nb_conv2d_shape *s, nb_workspace *ws,
			   int store, const nb_conv_pre *pre)
{
	if (!pre_ok(s, pre))
		return NB_EINVAL;
	if (db) { /* as conv2d_backward takes it (in is not read) */
		int rc = blas_backward(NULL, NULL, db, dout, in, w, s, ws, 0);
		if (rc < 0)
			return rc;
	}
	return nb_wino_backward(din, dw, dout, in, w, s, ws, store,
				conv_kernels == NB_CONV_AUTO, pre);
}

static int blas_backward(float *din, float *dw, float *db, const float *dout,
			 const float *in, const float *w,
			 const nb_conv2d_shape *s, nb_workspace *ws, int store)
{
	const int N = s->N, C = s->C, H = s->H, W = s->W, K = s->K, R = s->R,
		  S = s->S, P = s->P, Q = s->Q, G = s->groups;
	const int sh = s->stride_h, sw = s->stride_w, ph = s->pad_h,
		  pw = s->pad_w;
	const int Cg = C / G, Kg = K / G;
	const size_t HW = (size_t)H * W, PQ = (size_t)P * Q;
	const size_t CRSg = (size_t)Cg * R * S;
	const size_t nw = (size_t)K * CRSg;

	const int depthwise = is_depthwise(s);
	const int direct = is_pointwise(s);
	const int need_col = !depthwise && !direct && (din || dw);
	/* GEMM path: the im2col matrix col, and with padding the padded
	 * input planes xp (for dw) and the padded din planes dxp; depthwise:
	 * the xp and gb of dw_plane_backward */
	const int padded = ph || pw;
	const size_t plane_n = (size_t)(H + 2 * ph) * (W + 2 * pw);
	const size_t col_n = need_col ? pad16(CRSg * PQ) : 0;
	size_t xp_n = 0, dxp_n = 0;
	if (depthwise) {
		/* xp, then g's rows padded to whole tiles */
		xp_n = dw ? dw_xp_floats(s) + pad16((size_t)P * dw_q8(Q)) : 0;
		dxp_n = din ? pad16(dw_gb_floats(s)) : 0;
	} else if (need_col && padded) {
		xp_n = dw ? pad16((size_t)Cg * plane_n) : 0;
		dxp_n = din ? pad16((size_t)Cg * plane_n) : 0;
	}
	const size_t work_n = col_n + xp_n + dxp_n;
	const size_t dw_n = dw ? pad16(nw) : 0;
	const size_t db_n = db ? pad16((size_t)K) : 0;
	const size_t slice = work_n + dw_n + db_n;
	const int T = nb_workspace_threads();
	float *scratch = NULL;
	if (slice && !(scratch = nb_workspace_reserve(ws, slice * T)))
		return NB_ENOMEM;
	int used = 1; /* threads the runtime actually gave us */

#pragma omp parallel num_threads(T)
	{
		const int t = omp_get_thread_num();
		float *mine = scratch ? scratch + slice * t : NULL;
		float *col = need_col ? mine : NULL;
		float *xp = xp_n ? mine + col_n : NULL;
		float *dxp = dxp_n ? mine + col_n + xp_n : NULL;
		/* zero borders once: the planes only overwrite interiors
		 * (col2im_add zeroes its dxp itself) */
		if (xp)
			memset(xp, 0, sizeof(float) * xp_n);
		if (dxp)
			memset(dxp, 0, sizeof(float) * dxp_n);
		float *dwp = dw ? mine + work_n : NULL;
		float *dbp = db ? mine + work_n + dw_n : NULL;
		if (dwp)
			memset(dwp, 0, sizeof(float) * nw);
		if (dbp)
			memset(dbp, 0, sizeof(float) * K);
#pragma omp single
		used = omp_get_num_threads();
		/* the implicit barrier of `single` orders the zeroing above
		 * before the reduction below, for every thread */

#pragma omp for schedule(static)
		for (int n = 0; n < N; n++) {
			const float *gn = dout + (size_t)n * K * PQ;
			const float *xn = in + (size_t)n * C * HW;
			float *dxn = din ? din + (size_t)n * C * HW : NULL;
			if (dxn && store) /* everything below adds to it */
				memset(dxn, 0, sizeof(float) * C * HW);
			if (dbp)
				for (int k = 0; k < K; k++)
					dbp[k] += sum_floats(gn + k * PQ, PQ);
			if (depthwise) {
				for (int c = 0; c < C && (dxn || dwp); c++)
					dw_plane_backward(
					    dxn ? dxn + c * HW : NULL,
					    dwp ? dwp + (size_t)c * R * S
						: NULL,
					    gn + c * PQ, xn + c * HW,
					    w + (size_t)c * R * S, xp, dxp, s);
				continue;
			}
			for (int g = 0; g < G; g++) {
				const float *gg = gn + (size_t)g * Kg * PQ;
				const float *wg = w + (size_t)g * Kg * CRSg;
				const float *xg = xn + (size_t)g * Cg * HW;
				if (dwp) {
					/* dw_g (Kg,CRSg) += dout_g (Kg,PQ) *
					 * col^T (PQ,CRSg) */
					const float *B = xg;
					if (!direct) {
						im2col(col, xp, xg, Cg, H, W, R,
						       S, sh, sw, ph, pw, P, Q);
						B = col;
					}
					cblas_sgemm(CblasRowMajor, CblasNoTrans,
						    CblasTrans, Kg, (int)CRSg,
						    (int)PQ, 1.0f, gg, (int)PQ,
						    B, (int)PQ, 1.0f,
						    dwp + (size_t)g * Kg * CRSg,
						    (int)CRSg);
				}
				if (dxn) {
					/* col (CRSg,PQ) = w_g^T * dout_g; for
					 * 1x1 that is din_g itself, += */
					float *dxg = dxn + (size_t)g * Cg * HW;
					cblas_sgemm(
					    CblasRowMajor, CblasTrans,
					    CblasNoTrans, (int)CRSg, (int)PQ,
					    Kg, 1.0f, wg, (int)CRSg, gg,
					    (int)PQ, direct ? 1.0f : 0.0f,
					    direct ? dxg : col, (int)PQ);
					if (!direct)
						col2im_add(dxg, dxp, col, PQ,
							   Cg, H, W, R, S, sh,
							   sw, ph, pw, P, Q);
				}
			}
		}

		/* Reduce the partials in thread order 0..used-1; the
		 * elements are split over threads, the order per element is
		 * fixed. The `for` above ends in a barrier. */
		if (dw) {
#pragma omp for schedule(static)
			for (size_t i = 0; i < nw; i++) {
				float acc = 0;
				for (int u = 0; u < used; u++)
					acc += scratch[slice * u + work_n + i];
				dw[i] += acc;
			}
		}
		if (db) {
#pragma omp single
			for (int k = 0; k < K; k++) {
				float acc = 0;
				for (int u = 0; u < used; u++)
					acc += scratch[slice * u + work_n +
						       dw_n + k];
				db[k] += acc;
			}
		}
	}
	return NB_OK;
}
