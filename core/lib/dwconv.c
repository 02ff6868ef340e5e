/*
 * dwconv.c - depthwise convolutions with the channels on the vector lanes
 * (see dwconv.h).
 *
 * A depthwise convolution multiplies each plane by its own R x S taps: in
 * NCHW a vector holds neighbouring positions of one plane, and on small
 * maps (MobileNetV2's 9x9 and 5x5 ones at 32x32 inputs) most lanes of a
 * row tile are past the row, while with stride 2 a vector has to be
 * gathered element by element (the plane kernels of conv2d.c: 3-9 GFLOP/s
 * there). Here each image is first transposed to positions x channels
 * (16 x 16 blocks in registers), channels padded to whole vectors, into a
 * zero-bordered buffer; then every multiply-add is a whole vector of 16
 * channels at one position, whatever the map's size or the stride, and a
 * stride-2 tap is just another address. The results go back through the
 * same transpose.
 *
 * The forward pass and the input gradient take every element's terms in
 * the order conv2d.c's plane kernels take them (bias or zero, then the
 * taps row by row; the strided input gradient scattered output row by
 * output row, tap by tap), so they give the same bits. The weight gradient
 * sums each weight over the positions of an image in order, image after
 * image, per thread (the plane kernel summed 8 columns in lanes first): the
 * bits differ from it, so the numerics version counts it.
 *
 * What it deliberately does not do: groups other than depthwise, channel
 * multipliers (K != C), the BLAS fallback (conv2d.c keeps the plane kernels
 * as this path's twin, and for builds without 512-bit vectors).
 */
#include <string.h>

#include <omp.h>

#include "dwconv.h"
#include "error.h"
#include "gemmpack.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

typedef float v16f __attribute__((vector_size(64)));

/* floats rounded up to whole 64-byte lines */
static size_t pad16(size_t n)
{
	return (n + 15) & ~(size_t)15;
}

/* the shape's derived sizes */
typedef struct dw_geom {
	int C, Cp; /* channels, rounded up to whole vectors */
	int H, W, P, Q, R, S, sh, sw, ph, pw;
	int Hp, Wp; /* the padded input */
	int Pg, Qg; /* stride 1: dout padded by R-1, S-1 for din */
	size_t HW, PQ, RS;
	size_t tr_n;   /* a transposed image, positions x Cp */
	size_t xp_n;   /* the padded input, Hp x Wp x Cp */
	size_t gp_n;   /* din's padded buffer */
	size_t back_n; /* the back-transpose, Cp x (16-rounded) */
} dw_geom;

static dw_geom geom(const nb_conv2d_shape *s)
{
	dw_geom g = {.C = s->C,
		     .Cp = (s->C + 15) / 16 * 16,
		     .H = s->H,
		     .W = s->W,
		     .P = s->P,
		     .Q = s->Q,
		     .R = s->R,
		     .S = s->S,
		     .sh = s->stride_h,
		     .sw = s->stride_w,
		     .ph = s->pad_h,
		     .pw = s->pad_w};
	g.Hp = g.H + 2 * g.ph;
	g.Wp = g.W + 2 * g.pw;
	g.Pg = g.P + 2 * (g.R - 1);
	g.Qg = g.Q + 2 * (g.S - 1);
	g.HW = (size_t)g.H * g.W;
	g.PQ = (size_t)g.P * g.Q;
	g.RS = (size_t)g.R * g.S;
	const size_t npos = g.HW > g.PQ ? g.HW : g.PQ;
	g.tr_n = pad16(npos * g.Cp);
	g.xp_n = pad16((size_t)g.Hp * g.Wp * g.Cp);
	const size_t unit =
	    g.sh == 1 && g.sw == 1 ? (size_t)g.Pg * g.Qg : (size_t)g.Hp * g.Wp;
	g.gp_n = pad16(unit * g.Cp);
	g.back_n = pad16((size_t)g.Cp * ((npos + 15) / 16 * 16));
	return g;
}

/* wt (RS x Cp) <- w (C, RS) transposed, taps reversed if flip, channels
 * past C zero */
static void taps_t(float *wt, const float *w, const dw_geom *g, int flip)
{
	memset(wt, 0, sizeof(float) * g->RS * g->Cp);
	for (int c = 0; c < g->C; c++)
		for (size_t i = 0; i < g->RS; i++)
			wt[i * g->Cp + c] =
			    w[(size_t)c * g->RS + (flip ? g->RS - 1 - i : i)];
}

/* The rows of t (h x w positions x Cp) into buf at rows of wb positions,
 * from (oy, ox) on */
static const float *place_rows(float *buf, const float *t, const dw_geom *g,
			       int h, int w, int wb, int oy, int ox)
{
	const size_t rowf = (size_t)w * g->Cp;
	for (int y = 0; y < h; y++)
		memcpy(buf + ((size_t)(y + oy) * wb + ox) * g->Cp,
		       t + (size_t)y * rowf, sizeof(float) * rowf);
	return buf;
}

/*
 * The image x (C, h, w) into buf as positions x Cp at rows of wb
 * positions, from (oy, ox) on (the interior of a zero-bordered buffer):
 * transposed into tr first (nb_gp_transpose_pad), then copied row by row
 * unless the rows already sit where they belong.
 */
static const float *to_cl(float *buf, float *tr, const float *x,
			  const dw_geom *g, int h, int w, int wb, int oy,
			  int ox)
{
	if (oy == 0 && ox == 0 && wb == w) {
		nb_gp_transpose_pad(buf, g->Cp, x, g->C, h * w, h * w, NULL, 0);
		return buf;
	}
	nb_gp_transpose_pad(tr, g->Cp, x, g->C, h * w, h * w, NULL,
			    0);
	return place_rows(buf, tr, g, h, w, wb, oy, ox);
}

/* how from_cl writes out: =, += or = 0 + (an input gradient written
 * rather than added to: as adding to a zeroed buffer, -0 becomes +0) */
enum { PUT_COPY, PUT_ADD, PUT_STORE };

/*
 * out (C, n positions) (see PUT_*) the positions x Cp matrix m, rows of wm
 * positions read from (oy, ox) on, h x w of them: transposed back through
 * back (Cp x n rounded up to 16, then room for the gathered rows).
 */
static void from_cl(float *out, const float *m, float *back, const dw_geom *g,
		    int h, int w, int wm, int oy, int ox, int put)
{
	const int n = h * w, n16 = (n + 15) / 16 * 16;
	const float *src = m;
	if (!(oy == 0 && ox == 0 && wm == w)) {
		/* gather the rows first: m is only ever read here */
		float *t = back + (size_t)g->Cp * n16;
		for (int y = 0; y < h; y++)
			memcpy(t + (size_t)y * w * g->Cp,
			       m + ((size_t)(y + oy) * wm + ox) * g->Cp,
			       sizeof(float) * w * g->Cp);
		src = t;
	}
	nb_gp_transpose_pad(back, n16, src, n, g->Cp, g->Cp, NULL, 0);
	for (int c = 0; c < g->C; c++) {
		float *o = out + (size_t)c * n;
		const float *b = back + (size_t)c * n16;
		if (put == PUT_COPY)
			memcpy(o, b, sizeof(float) * n);
		else if (put == PUT_ADD)
#pragma omp simd
			for (int i = 0; i < n; i++)
				o[i] += b[i];
		else
#pragma omp simd
			for (int i = 0; i < n; i++)
				o[i] = b[i] + 0.0f;
	}
}

/*
 * o (P*Q x Cp) = init (or zero) + sum over taps (r,t), row by row, of
 * wt[r*S + t] * x at (p*sh + r, q*sw + t) of the Wp-wide buffer x.
 * Inlined with R = S = 3 as constants, so that the taps unroll.
 */
static inline __attribute__((always_inline)) void
cl_conv_t(float *restrict o, const float *restrict x, const float *wt,
	  const float *init, int Cp, int Wp, int R, int S, int sh, int sw,
	  int P, int Q)
{
	for (int c0 = 0; c0 < Cp; c0 += 16)
		for (int p = 0; p < P; p++)
			for (int q = 0; q < Q; q++) {
				v16f a = init ? *(const v16f *)(init + c0)
					      : (v16f){0};
				const float *xq =
				    x +
				    ((size_t)p * sh * Wp + (size_t)q * sw) *
					Cp +
				    c0;
				for (int r = 0; r < R; r++)
					for (int t = 0; t < S; t++)
						a +=
						    *(const v16f
							  *)(wt +
							     (size_t)(r * S +
								      t) *
								 Cp +
							     c0) *
						    *(const v16f *)(xq +
								    ((size_t)r *
									 Wp +
								     t) *
									Cp);
				*(v16f *)(o + ((size_t)p * Q + q) * Cp + c0) =
				    a;
			}
}

NB_GP_CLONES
static void cl_conv(float *o, const float *x, const float *wt,
		    const float *init, int Cp, int Wp, int R, int S, int sh,
		    int sw, int P, int Q)
{
	if (R == 3 && S == 3)
		cl_conv_t(o, x, wt, init, Cp, Wp, 3, 3, sh, sw, P, Q);
	else
		cl_conv_t(o, x, wt, init, Cp, Wp, R, S, sh, sw, P, Q);
}

/* What the shared part of the workspace holds: the transposed taps, the
 * flipped ones (din, stride 1) and the bias padded to Cp. */
typedef struct dw_shared {
	float *wt, *wf, *bias;
} dw_shared;

static size_t shared_floats(const dw_geom *g)
{
	return 2 * pad16(g->RS * g->Cp) + pad16((size_t)g->Cp);
}

static dw_shared shared_at(float *p, const dw_geom *g)
{
	dw_shared d = {p, p + pad16(g->RS * g->Cp),
		       p + 2 * pad16(g->RS * g->Cp)};
	return d;
}

int nb_dw_cl_forward(float *out, const float *in, const float *w,
		     const float *b, const nb_conv2d_shape *s, nb_workspace *ws)
{
	const dw_geom g = geom(s);
	const int padded = g.ph || g.pw;
	/* per thread: tr, xp (if padded), o, back (+ its gather rows) */
	const size_t o_n = pad16(g.PQ * g.Cp);
	const size_t slice =
	    g.tr_n + (padded ? g.xp_n : 0) + o_n + 2 * g.back_n;
	const size_t sh_n = shared_floats(&g);
	const int T = nb_workspace_threads();
	float *base = nb_workspace_reserve(ws, sh_n + slice * T);
	if (!base)
		return NB_ENOMEM;
	const dw_shared sd = shared_at(base, &g);
	taps_t(sd.wt, w, &g, 0);
	memset(sd.bias, 0, sizeof(float) * g.Cp);
	if (b)
		memcpy(sd.bias, b, sizeof(float) * g.C);
#pragma omp parallel num_threads(T)
	{
		float *tr = base + sh_n + slice * omp_get_thread_num();
		float *xp = padded ? tr + g.tr_n : NULL;
		float *o = tr + g.tr_n + (padded ? g.xp_n : 0);
		float *back = o + o_n;
		if (xp) /* the border stays zero: only interiors are written */
			memset(xp, 0, sizeof(float) * g.xp_n);
#pragma omp for schedule(static)
		for (int n = 0; n < s->N; n++) {
			const float *x =
			    padded ? to_cl(xp, tr, in + (size_t)n * g.C * g.HW,
					   &g, g.H, g.W, g.Wp, g.ph, g.pw)
				   : to_cl(tr, tr, in + (size_t)n * g.C * g.HW,
					   &g, g.H, g.W, g.W, 0, 0);
			cl_conv(o, x, sd.wt, sd.bias, g.Cp, g.Wp, g.R, g.S,
				g.sh, g.sw, g.P, g.Q);
			from_cl(out + (size_t)n * g.C * g.PQ, o, back, &g, g.P,
				g.Q, g.Q, 0, 0, PUT_COPY);
		}
	}
	return NB_OK;
}

/*
 * The weight gradient's share of one image: dwp (RS x Cp) += for each tap
 * the sum over positions, in order, of g (P*Q x Cp) times x at the tap.
 * For R = S = 3 the nine sums of a vector of channels stay in registers
 * through the image.
 */
static inline __attribute__((always_inline)) void
cl_wgrad_t(float *restrict dwp, const float *restrict gt,
	   const float *restrict x, int Cp, int Wp, int R, int S, int sh,
	   int sw, int P, int Q)
{
	enum { MAXT = 9 };
	const int RS = R * S;
	for (int c0 = 0; c0 < Cp; c0 += 16) {
		if (RS > MAXT) { /* sums in memory */
			for (int p = 0; p < P; p++)
				for (int q = 0; q < Q; q++) {
					const v16f gv = *(
					    const v16f *)(gt +
							  ((size_t)p * Q + q) *
							      Cp +
							  c0);
					const float *xq = x +
							  ((size_t)p * sh * Wp +
							   (size_t)q * sw) *
							      Cp +
							  c0;
					for (int r = 0; r < R; r++)
						for (int t = 0; t < S; t++) {
							v16f *d =
							    (v16f
								 *)(dwp +
								    (size_t)(r * S +
									     t) *
									Cp +
								    c0);
							*d +=
							    gv *
							    *(const v16f
								  *)(xq +
								     ((size_t)r *
									  Wp +
								      t) *
									 Cp);
						}
				}
			continue;
		}
		v16f a[MAXT];
		for (int i = 0; i < RS; i++)
			a[i] = *(const v16f *)(dwp + (size_t)i * Cp + c0);
		for (int p = 0; p < P; p++)
			for (int q = 0; q < Q; q++) {
				const v16f gv =
				    *(const v16f *)(gt +
						    ((size_t)p * Q + q) * Cp +
						    c0);
				const float *xq =
				    x +
				    ((size_t)p * sh * Wp + (size_t)q * sw) *
					Cp +
				    c0;
				for (int r = 0; r < R; r++)
					for (int t = 0; t < S; t++)
						a[r * S + t] +=
						    gv *
						    *(const v16f *)(xq +
								    ((size_t)r *
									 Wp +
								     t) *
									Cp);
			}
		for (int i = 0; i < RS; i++)
			*(v16f *)(dwp + (size_t)i * Cp + c0) = a[i];
	}
}

NB_GP_CLONES
static void cl_wgrad(float *dwp, const float *gt, const float *x, int Cp,
		     int Wp, int R, int S, int sh, int sw, int P, int Q)
{
	if (R == 3 && S == 3)
		cl_wgrad_t(dwp, gt, x, Cp, Wp, 3, 3, sh, sw, P, Q);
	else
		cl_wgrad_t(dwp, gt, x, Cp, Wp, R, S, sh, sw, P, Q);
}

/*
 * The strided input gradient's share of one image: gp (Hp x Wp x Cp,
 * zeroed) += g scattered through the taps, output row p by output row,
 * tap by tap, positions q along the row (conv2d.c's dw_plane_scatter
 * order).
 */
NB_GP_CLONES
static void cl_scatter(float *restrict gp, const float *restrict gt,
		       const float *wt, const dw_geom *g)
{
	const int Cp = g->Cp;
	for (int p = 0; p < g->P; p++)
		for (int r = 0; r < g->R; r++)
			for (int t = 0; t < g->S; t++) {
				const float *wv =
				    wt + (size_t)(r * g->S + t) * Cp;
				float *d =
				    gp +
				    ((size_t)(p * g->sh + r) * g->Wp + t) * Cp;
				for (int q = 0; q < g->Q; q++) {
					const float *gq =
					    gt + ((size_t)p * g->Q + q) * Cp;
					float *dq = d + (size_t)q * g->sw * Cp;
					for (int c0 = 0; c0 < Cp; c0 += 16)
						*(v16f *)(dq + c0) +=
						    *(const v16f *)(wv + c0) *
						    *(const v16f *)(gq + c0);
				}
			}
}

int nb_dw_cl_backward(float *din, float *dw, const float *dout, const float *in,
		      const float *w, const nb_conv2d_shape *s,
		      nb_workspace *ws, int store)
{
	if (!din && !dw)
		return NB_OK;
	const dw_geom g = geom(s);
	const int padded = g.ph || g.pw;
	const int unit = g.sh == 1 && g.sw == 1;
	/* per thread: tr, xp (dw and padded), gt (g transposed), gp (din),
	 * back (din, + its gather rows), dwp (RS x Cp) */
	const size_t xp_n = dw && padded ? g.xp_n : 0;
	const size_t gt_n = g.tr_n;
	const size_t gp_n = din ? g.gp_n : 0;
	const size_t back_n = din ? 2 * g.back_n : 0;
	const size_t dwp_n = dw ? pad16(g.RS * g.Cp) : 0;
	const size_t slice = g.tr_n + xp_n + gt_n + gp_n + back_n + dwp_n;
	const size_t sh_n = shared_floats(&g);
	const int T = nb_workspace_threads();
	float *base = nb_workspace_reserve(ws, sh_n + slice * T);
	if (!base)
		return NB_ENOMEM;
	const dw_shared sd = shared_at(base, &g);
	if (din)
		taps_t(unit ? sd.wf : sd.wt, w, &g, unit);
	int used = 1;
#pragma omp parallel num_threads(T)
	{
		float *tr = base + sh_n + slice * omp_get_thread_num();
		float *xp = xp_n ? tr + g.tr_n : NULL;
		float *gt = tr + g.tr_n + xp_n;
		float *gp = gp_n ? gt + gt_n : NULL;
		float *back = back_n ? gt + gt_n + gp_n : NULL;
		float *dwp = dwp_n ? gt + gt_n + gp_n + back_n : NULL;
		if (xp)
			memset(xp, 0, sizeof(float) * xp_n);
		if (gp && unit) /* the border stays zero */
			memset(gp, 0, sizeof(float) * gp_n);
		if (dwp)
			memset(dwp, 0, sizeof(float) * dwp_n);
#pragma omp single
		used = omp_get_num_threads();
#pragma omp for schedule(static)
		for (int n = 0; n < s->N; n++) {
			const float *gn = dout + (size_t)n * g.C * g.PQ;
			if (dw) {
				const float *x =
				    padded
					? to_cl(xp, tr,
						in + (size_t)n * g.C * g.HW, &g,
						g.H, g.W, g.Wp, g.ph, g.pw)
					: to_cl(tr, tr,
						in + (size_t)n * g.C * g.HW, &g,
						g.H, g.W, g.W, 0, 0);
				to_cl(gt, NULL, gn, &g, g.P, g.Q, g.Q, 0, 0);
				cl_wgrad(dwp, gt, x, g.Cp, g.Wp, g.R, g.S, g.sh,
					 g.sw, g.P, g.Q);
			}
			if (!din)
				continue;
			float *dxn = din + (size_t)n * g.C * g.HW;
			if (unit) {
				/* a forward convolution of dout padded by
				 * R-1, S-1 with the flipped taps; its output
				 * lands in tr (dout is transposed in gt
				 * already if dw was taken) */
				if (dw)
					place_rows(gp, gt, &g, g.P, g.Q, g.Qg,
						   g.R - 1, g.S - 1);
				else
					to_cl(gp, tr, gn, &g, g.P, g.Q, g.Qg,
					      g.R - 1, g.S - 1);
				cl_conv(tr,
					gp +
					    ((size_t)g.ph * g.Qg + g.pw) * g.Cp,
					sd.wf, NULL, g.Cp, g.Qg, g.R, g.S, 1, 1,
					g.H, g.W);
				from_cl(dxn, tr, back, &g, g.H, g.W, g.W, 0, 0,
					store ? PUT_STORE : PUT_ADD);
			} else {
				if (!dw)
					to_cl(gt, NULL, gn, &g, g.P, g.Q, g.Q,
					      0, 0);
				memset(gp, 0, sizeof(float) * gp_n);
				cl_scatter(gp, gt, sd.wt, &g);
				from_cl(dxn, gp, back, &g, g.H, g.W, g.Wp, g.ph,
					g.pw, store ? PUT_STORE : PUT_ADD);
			}
		}
		/* the partials in thread order, element by element split over
		 * the threads; the loop above ends in a barrier */
		if (dw) {
			const size_t nw = (size_t)g.C * g.RS;
#pragma omp for schedule(static)
			for (size_t i = 0; i < nw; i++) {
				const size_t c = i / g.RS, k = i % g.RS;
				float acc = 0;
				for (int u = 0; u < used; u++)
					acc += base[sh_n + slice * u + g.tr_n +
						    xp_n + gt_n + gp_n +
						    back_n + k * g.Cp + c];
				dw[i] += acc;
			}
		}
	}
	return NB_OK;
}
