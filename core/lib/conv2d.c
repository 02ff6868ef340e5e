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
 *  - depthwise (groups == C == K): a GEMM with M = 1 wastes the BLAS, so a
 *    direct loop kernel that vectorises along the output row is used;
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

/* The output positions o in [0, n_out) whose input index
 * o*stride - pad + off falls inside [0, n_in), as the range [*lo, *hi). */
static void valid_range(int n_out, int stride, int pad, int off, int n_in,
			int *lo, int *hi)
{
	int a = pad - off; /* need o*stride >= a */
	int l = a <= 0 ? 0 : (a + stride - 1) / stride;
	int b = n_in - 1 + pad - off; /* need o*stride <= b */
	int h = b < 0 ? 0 : b / stride + 1;
	if (h > n_out)
		h = n_out;
	if (l > h)
		l = h;
	*lo = l;
	*hi = h;
}

/*
 * im (C,H,W) -> col (C*R*S, P*Q): row (c,r,s) holds the input pixel under
 * kernel tap (r,s) for every output position, zero where it is padding.
 * Row order matches w (K, C, R, S) flattened, so out = w * col.
 * The runs are short (a few to a few dozen floats), so plain loops on
 * restrict pointers, which the compiler vectorises, beat memcpy/memset
 * calls.
 */
static void im2col(float *col, const float *im, int C, int H, int W, int R,
		   int S, int sh, int sw, int ph, int pw, int P, int Q)
{
	for (int c = 0; c < C; c++)
		for (int r = 0; r < R; r++) {
			int p0, p1;
			valid_range(P, sh, ph, r, H, &p0, &p1);
			for (int s = 0; s < S; s++) {
				float *restrict dst =
				    col + ((size_t)(c * R + r) * S + s) * P * Q;
				const float *src = im + (size_t)c * H * W;
				int q0, q1;
				valid_range(Q, sw, pw, s, W, &q0, &q1);
				for (size_t i = 0; i < (size_t)p0 * Q; i++)
					dst[i] = 0;
				for (int p = p0; p < p1; p++) {
					float *restrict d = dst + (size_t)p * Q;
					/* input row h; column of q is q*sw+off */
					const float *restrict row =
					    src + (size_t)(p * sh - ph + r) * W;
					const int off = s - pw;
					for (int q = 0; q < q0; q++)
						d[q] = 0;
					if (sw == 1) {
#pragma omp simd
						for (int q = q0; q < q1; q++)
							d[q] = row[q + off];
					} else {
#pragma omp simd
						for (int q = q0; q < q1; q++)
							d[q] = row[q * sw + off];
					}
					for (int q = q1; q < Q; q++)
						d[q] = 0;
				}
				for (size_t i = (size_t)p1 * Q; i < (size_t)P * Q;
				     i++)
					dst[i] = 0;
			}
		}
}

/* The adjoint of im2col: im (C,H,W) += col (C*R*S, P*Q) scattered back;
 * padding positions are dropped. */
static void col2im_add(float *im, const float *col, int C, int H, int W,
		       int R, int S, int sh, int sw, int ph, int pw, int P,
		       int Q)
{
	for (int c = 0; c < C; c++)
		for (int r = 0; r < R; r++) {
			int p0, p1;
			valid_range(P, sh, ph, r, H, &p0, &p1);
			for (int s = 0; s < S; s++) {
				const float *src =
				    col + ((size_t)(c * R + r) * S + s) * P * Q;
				float *dst = im + (size_t)c * H * W;
				int q0, q1;
				valid_range(Q, sw, pw, s, W, &q0, &q1);
				for (int p = p0; p < p1; p++) {
					const float *restrict d =
					    src + (size_t)p * Q;
					float *restrict row =
					    dst + (size_t)(p * sh - ph + r) * W;
					const int off = s - pw;
					if (sw == 1) {
#pragma omp simd
						for (int q = q0; q < q1; q++)
							row[q + off] += d[q];
					} else {
#pragma omp simd
						for (int q = q0; q < q1; q++)
							row[q * sw + off] += d[q];
					}
				}
			}
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
	return s->R == 1 && s->S == 1 && s->stride_h == 1 &&
	       s->stride_w == 1 && s->pad_h == 0 && s->pad_w == 0;
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
 * (Hp,Wp) = (H+2*pad_h, W+2*pad_w), so that every kernel tap runs over
 * whole output rows with no edge cases: the inner loops have the full
 * length Q (16 or 32 on CIFAR), with no remainders. `omp simd` makes GCC
 * vectorise them at -O2 too. */

/* xp (Hp,Wp) interior <- x (H,W); the border is left alone (zero). */
static void pad_plane(float *restrict xp, const float *restrict x, int H,
		      int W, int ph, int pw)
{
	const int Wp = W + 2 * pw;
	for (int h = 0; h < H; h++) {
		float *d = xp + (size_t)(h + ph) * Wp + pw;
		const float *src = x + (size_t)h * W;
#pragma omp simd
		for (int i = 0; i < W; i++)
			d[i] = src[i];
	}
}

/* Output tiles of DW_TR rows x 8 columns keep their sums in registers
 * (GCC/Clang vector extensions; one 256-bit vector per row) through all
 * the taps; a loop that adds one tap at a time into memory is bound by
 * store-to-load latency instead. */
#define DW_TR 4 /* a0..a3 below */
#define DW_TC 8
typedef float v8f __attribute__((vector_size(32)));
typedef float v8f_u __attribute__((vector_size(32), aligned(4)));

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
			  const float *restrict xp, const float *w,
			  float bias, int Wp, int R, int S, int sh, int sw,
			  int P, int Q)
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
					const float *x = xp +
							 (size_t)(p * sh + r) * Wp +
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

/* lanes (R*S, Q) += for each tap (r,s) and output column q, the sum over
 * output rows p of g[p][q] * xp[p*sh + r][q*sw + s]. Summing each lane row
 * afterwards gives dw[r,s] in a fixed order; the lanes vectorise where a
 * single running sum would not (without -ffast-math). */
static void dw_plane_lanes(float *restrict lanes, const float *restrict g,
			   const float *restrict xp, int Wp, int R, int S,
			   int sh, int sw, int P, int Q)
{
	for (int p = 0; p < P; p++) {
		const float *gp = g + (size_t)p * Q;
		for (int r = 0; r < R; r++)
			for (int t = 0; t < S; t++) {
				float *l = lanes + (size_t)(r * S + t) * Q;
				const float *x =
				    xp + (size_t)(p * sh + r) * Wp + t;
				if (sw == 1) {
#pragma omp simd
					for (int q = 0; q < Q; q++)
						l[q] += gp[q] * x[q];
				} else {
#pragma omp simd
					for (int q = 0; q < Q; q++)
						l[q] += gp[q] * x[q * sw];
				}
			}
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
 * Scratch: xp (Hp,Wp) with a zero border (if dw); lanes (R*S,Q) (if dw);
 * gb (if dx): for stride 1, g padded by R-1 rows and S-1 columns each side
 * (zero border) followed by the R*S flipped taps, because then
 * dx[h][w] = sum_{r,s} w[R-1-r][S-1-s] * gpad[h+pad_h+r][w+pad_w+s] is
 * again a forward convolution; for other strides, a padded (Hp,Wp) plane
 * to scatter into.
 */
static void dw_plane_backward(float *dx, float *dw, const float *g,
			      const float *x, const float *w, float *xp,
			      float *lanes, float *gb,
			      const nb_conv2d_shape *s)
{
	const int H = s->H, W = s->W, R = s->R, S = s->S, P = s->P, Q = s->Q;
	const int sh = s->stride_h, sw = s->stride_w, ph = s->pad_h,
		  pw = s->pad_w;
	const int Wp = W + 2 * pw;
	if (dw) {
		const size_t RS = (size_t)R * S;
		pad_plane(xp, x, H, W, ph, pw);
		memset(lanes, 0, sizeof(float) * RS * Q);
		dw_plane_lanes(lanes, g, xp, Wp, R, S, sh, sw, P, Q);
		for (size_t i = 0; i < RS; i++)
			dw[i] += sum_floats(lanes + i * Q, (size_t)Q);
	}
	if (!dx)
		return;
	if (sh == 1 && sw == 1) {
		const int Pp = P + 2 * (R - 1), Qp = Q + 2 * (S - 1);
		float *wf = gb + (size_t)Pp * Qp;
		for (int i = 0; i < R * S; i++)
			wf[i] = w[R * S - 1 - i];
		pad_plane(gb, g, P, Q, R - 1, S - 1);
		dw_plane_conv(dx, 1, gb + (size_t)ph * Qp + pw, wf, 0.0f, Qp,
			      R, S, 1, 1, H, W);
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
		return (size_t)(s->P + 2 * (s->R - 1)) * (s->Q + 2 * (s->S - 1)) +
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
				dw_plane_conv(out + ((size_t)n * C + c) * PQ, 0,
					      xp, w + (size_t)c * R * S,
					      b ? b[c] : 0.0f, Wp, R, S,
					      s->stride_h, s->stride_w, s->P,
					      s->Q);
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

	const int direct = is_pointwise(s);
	const int T = nb_workspace_threads();
	const size_t slice = direct ? 0 : pad16(CRSg * PQ);
	float *scratch = NULL;
	if (slice && !(scratch = nb_workspace_reserve(ws, slice * T)))
		return NB_ENOMEM;

#pragma omp parallel num_threads(T)
	{
		float *col = scratch ? scratch + slice * omp_get_thread_num()
				     : NULL;
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
				const float *ig = in + ((size_t)n * C + (size_t)g * Cg) * HW;
				const float *B = ig;
				if (!direct) {
					im2col(col, ig, Cg, H, W, R, S, sh, sw,
					       ph, pw, P, Q);
					B = col;
				}
				/* out_g (Kg,PQ) = w_g (Kg,CRSg) * B (CRSg,PQ) */
				cblas_sgemm(CblasRowMajor, CblasNoTrans,
					    CblasNoTrans, Kg, (int)PQ, (int)CRSg,
					    1.0f, w + (size_t)g * Kg * CRSg,
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
 * Per-thread workspace slice: [col (C/G*R*S, P*Q), or for depthwise
 * xp, lanes, gb] [dw partial] [db partial], each part present only when
 * needed. */
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
	/* the im2col matrix; for depthwise instead the scratch of
	 * dw_plane_backward: xp, lanes, gb */
	const int Hp = H + 2 * ph, Wp = W + 2 * pw;
	const size_t xp_n = depthwise && dw ? pad16((size_t)Hp * Wp) : 0;
	const size_t lanes_n = depthwise && dw ? pad16((size_t)R * S * Q) : 0;
	const size_t gb_n = depthwise && din ? pad16(dw_gb_floats(s)) : 0;
	const size_t col_n =
	    need_col ? pad16(CRSg * PQ) : xp_n + lanes_n + gb_n;
	const size_t dw_n = dw ? pad16(nw) : 0;
	const size_t db_n = db ? pad16((size_t)K) : 0;
	const size_t slice = col_n + dw_n + db_n;
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
		float *xp = xp_n ? mine : NULL;
		float *lanes = lanes_n ? mine + xp_n : NULL;
		float *gb = gb_n ? mine + xp_n + lanes_n : NULL;
		/* zero borders once: the planes only overwrite interiors */
		if (xp)
			memset(xp, 0, sizeof(float) * xp_n);
		if (gb)
			memset(gb, 0, sizeof(float) * gb_n);
		float *dwp = dw ? mine + col_n : NULL;
		float *dbp = db ? mine + col_n + dw_n : NULL;
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
					    dwp ? dwp + (size_t)c * R * S : NULL,
					    gn + c * PQ, xn + c * HW,
					    w + (size_t)c * R * S, xp, lanes, gb,
					    s);
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
						im2col(col, xg, Cg, H, W, R, S,
						       sh, sw, ph, pw, P, Q);
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
					cblas_sgemm(CblasRowMajor, CblasTrans,
						    CblasNoTrans, (int)CRSg,
						    (int)PQ, Kg, 1.0f, wg,
						    (int)CRSg, gg, (int)PQ,
						    direct ? 1.0f : 0.0f,
						    direct ? dxg : col,
						    (int)PQ);
					if (!direct)
						col2im_add(dxg, col, Cg, H, W,
							   R, S, sh, sw, ph, pw,
							   P, Q);
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
					acc += scratch[slice * u + col_n + i];
				dw[i] += acc;
			}
		}
		if (db) {
#pragma omp single
			for (int k = 0; k < K; k++) {
				float acc = 0;
				for (int u = 0; u < used; u++)
					acc += scratch[slice * u + col_n +
						       dw_n + k];
				db[k] += acc;
			}
		}
	}
	return NB_OK;
}
