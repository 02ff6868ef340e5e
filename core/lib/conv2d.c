/*
 * conv2d.c - 2-D convolution (PyTorch's Conv2d: zero padding, stride,
 * groups incl. depthwise, optional bias), forward and backward, NCHW.
 *
 * How it is fast: the batch is split over OpenMP threads (static schedule);
 * each thread lowers one image at a time with im2col into its own slice of
 * the workspace and calls a single-threaded cblas_sgemm per group (OpenBLAS
 * runs serial inside a parallel region). Three shapes take other paths:
 *  - 1x1, stride 1, no padding: the input plane already is the im2col
 *    matrix, so it is a plain GEMM with no copy;
 *  - depthwise (groups == C == K): a GEMM with M = 1 wastes the BLAS, so
 *    direct kernels with register tiles are used (forward, weight
 *    gradient, and the stride-1 input gradient as a forward convolution of
 *    the padded output gradient with the flipped taps);
 *  - grouped: one GEMM per group on that group's slice.
 * Weight and bias gradients are summed per thread into private buffers and
 * then reduced in thread order, so a result is bit-identical for a given
 * thread count (no atomics, no timing-dependent order).
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

#include "error.h"
#include "ops.h"

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

/* The adjoint of im2col: im (C,H,W) += col (C*R*S, P*Q) scattered back.
 * With padding, the scatter goes into dxp (C,Hp,Wp), zeroed here, and only
 * its interior is added to im. */
static void col2im_add(float *im, float *restrict dxp,
		       const float *restrict col, int C, int H, int W, int R,
		       int S, int sh, int sw, int ph, int pw, int P, int Q)
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
				    col + ((size_t)(c * R + r) * S + t) * P * Q;
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

/* Floats rounded up to a whole 64-byte line, so thread slices do not share
 * cache lines (the workspace itself is 64-byte aligned). */
static size_t pad16(size_t n)
{
	return (n + 15) & ~(size_t)15;
}

/* ---- depthwise direct kernels -------------------------------------------
 * Each plane is first copied into a zero-bordered scratch plane xp of
 * (Hp,Wp) = (H+2*pad_h, W+2*pad_w), so that the kernels need no edge cases.
 * Output tiles of DW_TR rows x DW_TC columns keep their sums in registers
 * (GCC/Clang vector extensions, one 256-bit vector per row) through all the
 * taps: a loop that adds one tap at a time into memory is bound by
 * store-to-load latency instead (measured 4x slower). */
#define DW_TR 4 /* a0..a3 below */
#define DW_TC 8 /* one v8f */
/* 8 floats x[0], x[sw], ..., x[7*sw] */
static inline v8f load8(const float *x, int sw)
{
	if (sw == 1)
		return *(const v8f_u *)x;
	return (v8f){x[0],	x[sw],	   x[2 * sw], x[3 * sw],
		     x[4 * sw], x[5 * sw], x[6 * sw], x[7 * sw]};
}

/*
 * out (P,Q) (= or, if accumulate, +=) bias + the sum over taps (r,s) of
 * w[r,s] * xp[p*sh + r][q*sw + s], with xp rows Wp floats apart. The same
 * kernel serves the forward pass and, with flipped taps, the stride-1 input
 * gradient.
 */
static void dw_plane_conv(float *restrict out, int accumulate,
			  const float *restrict xp, const float *w, float bias,
			  int Wp, int R, int S, int sh, int sw, int P, int Q)
{
	const int Pt = P - P % DW_TR, Qt = Q - Q % DW_TC;
	for (int p = 0; p < Pt; p += DW_TR)
		for (int q = 0; q < Qt; q += DW_TC) {
			const v8f b8 = (v8f){0} + bias;
			v8f a0 = b8, a1 = b8, a2 = b8, a3 = b8;
			const size_t rs = (size_t)sh * Wp; /* next tile row */
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
			if (accumulate) {
				a0 += *(v8f_u *)o;
				a1 += *(v8f_u *)(o + Q);
				a2 += *(v8f_u *)(o + 2 * Q);
				a3 += *(v8f_u *)(o + 3 * Q);
			}
			*(v8f_u *)o = a0;
			*(v8f_u *)(o + Q) = a1;
			*(v8f_u *)(o + 2 * Q) = a2;
			*(v8f_u *)(o + 3 * Q) = a3;
		}
	/* what the tiles leave: the last columns of the tiled rows, and the
	 * last rows, one output at a time */
	for (int p = 0; p < P; p++)
		for (int q = p < Pt ? Qt : 0; q < Q; q++) {
			float acc = bias;
			for (int r = 0; r < R; r++)
				for (int t = 0; t < S; t++)
					acc += w[r * S + t] *
					       xp[(size_t)(p * sh + r) * Wp +
						  (size_t)q * sw + t];
			if (accumulate)
				out[(size_t)p * Q + q] += acc;
			else
				out[(size_t)p * Q + q] = acc;
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
			   const float *restrict xp, int Wp, int R, int S,
			   int sh, int sw, int P, int Q)
{
	const int RS = R * S, Qt = Q - Q % DW_TC;
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
		for (int q = 0; q < Qt; q += DW_TC)
			for (int p = 0; p < P; p++) {
				const v8f gv =
				    *(const v8f_u *)(g + (size_t)p * Q + q);
				const float *x =
				    xp + (size_t)p * sh * Wp + (size_t)q * sw;
				a0 += gv * load8(x + off[0], sw);
				a1 += gv * load8(x + off[1], sw);
				a2 += gv * load8(x + off[2], sw);
				a3 += gv * load8(x + off[3], sw);
			}
		float tail[4] = {0};
		for (int p = 0; p < P; p++)
			for (int q = Qt; q < Q; q++) {
				const float gv = g[(size_t)p * Q + q];
				const float *x =
				    xp + (size_t)p * sh * Wp + (size_t)q * sw;
				for (int i = 0; i < 4; i++)
					tail[i] += gv * x[off[i]];
			}
		const v8f acc[4] = {a0, a1, a2, a3};
		for (int i = 0; i < nk; i++)
			dw[k0 + i] += hsum8(acc[i]) + tail[i];
	}
}

/* dxp (Hp,Wp) += g (P,Q) scattered through each tap w[r,s]: the input
 * gradient for strides other than 1, in padded coordinates. */
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
		dw_plane_wgrad(dw, g, xp, Wp, R, S, sh, sw, P, Q);
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
		       (size_t)s->R * s->S;
	return (size_t)(s->H + 2 * s->pad_h) * (s->W + 2 * s->pad_w);
}

/* in (N,C,H,W), w (C,1,R,S), b (C) or NULL -> out (N,C,P,Q) */
static int depthwise_forward(float *out, const float *in, const float *w,
			     const float *b, const nb_conv2d_shape *s,
			     nb_workspace *ws)
{
	const int N = s->N, C = s->C, H = s->H, W = s->W, R = s->R, S = s->S;
	const int Hp = H + 2 * s->pad_h, Wp = W + 2 * s->pad_w;
	const size_t HW = (size_t)H * W, PQ = (size_t)s->P * s->Q;
	const size_t slice = pad16((size_t)Hp * Wp);
	const int T = nb_workspace_threads();
	float *scratch = nb_workspace_reserve(ws, slice * T);
	if (!scratch)
		return NB_ENOMEM;
#pragma omp parallel num_threads(T)
	{
		float *xp = scratch + slice * omp_get_thread_num();
		memset(xp, 0, sizeof(float) * Hp * Wp);
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

/* ---- forward ------------------------------------------------------------
 * in (N,C,H,W), w (K,C/G,R,S), b (K) or NULL -> out (N,K,P,Q). */
int nb_conv2d_forward(float *out, const float *in, const float *w,
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
		return depthwise_forward(out, in, w, b, s, ws);

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
 * Per-thread workspace slice: [col] [xp] [dxp] [dw partial] [db partial],
 * each part present only when needed (see below). */
int nb_conv2d_backward(float *din, float *dw, float *db, const float *dout,
		       const float *in, const float *w,
		       const nb_conv2d_shape *s, nb_workspace *ws)
{
	if (!din && !dw && !db)
		return NB_OK;
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
		xp_n = dw ? pad16(plane_n) : 0;
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
						col2im_add(dxg, dxp, col, Cg, H,
							   W, R, S, sh, sw, ph,
							   pw, P, Q);
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
