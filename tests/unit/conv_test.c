/*
 * conv_test.c - tests for conv2d.c, linear.c and pool.c.
 *
 * The fast convolution paths (im2col + GEMM, 1x1 GEMM, grouped GEMMs,
 * depthwise direct loops) are compared with the plain-loop reference
 * below on many shapes; every op has a finite-difference gradient check
 * with the probe loss sum(r * out); pooling is checked against PyTorch's
 * rules on hand-made cases; backward is checked to accumulate, to skip NULL
 * gradients, and to be deterministic across runs and thread counts.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "error.h"
#include "ops.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------ */

static float *fzeros(size_t n)
{
	float *p = calloc(n ? n : 1, sizeof(float));
	CU_ASSERT_FATAL(p != NULL);
	return p;
}

static float *fdup(const float *x, size_t n)
{
	float *p = fzeros(n);
	memcpy(p, x, n * sizeof(float));
	return p;
}

static double max_abs(const float *x, size_t n)
{
	double m = 0;
	for (size_t i = 0; i < n; i++)
		m = fmax(m, fabs((double)x[i]));
	return m;
}

/* Passes when max|got - want| <= rtol * max(1, max|want|): a norm-wise
 * relative check, robust to single elements that cancel to near zero. */
static void check_close(const char *what, int case_no, const float *got,
			const float *want, size_t n, double rtol)
{
	double d = tu_max_abs_diff(got, want, n);
	double lim = rtol * fmax(1.0, max_abs(want, n));
	char msg[200];
	snprintf(msg, sizeof msg, "case %d: %s differs by %.3g (limit %.3g)",
		 case_no, what, d, lim);
	CU_assertImplementation(d <= lim, __LINE__, msg, __FILE__, "",
				CU_FALSE);
}

/* Fills x (n) with distinct values 0.02 apart in a shuffled order, so that
 * max pooling has no near-ties for a finite difference to cross. */
static void fill_distinct(float *x, size_t n, uint64_t seed)
{
	float *u = fzeros(n);
	tu_fill_uniform(u, n, 0, 1, seed);
	for (size_t i = 0; i < n; i++)
		x[i] = 0.02f * (float)i - 0.01f * (float)n;
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)(u[i - 1] * (float)i);
		if (j >= i)
			j = i - 1;
		float t = x[i - 1];
		x[i - 1] = x[j];
		x[j] = t;
	}
	free(u);
}

/* ---- the plain-loop reference convolution ----------------------------------
 * Straight from the definition, accumulating in double. Same shapes as
 * nb_conv2d_forward/backward; backward accumulates (+=) too. */

/* The flat index of in[n][c][h][w], or -1 where (h,w) is padding. */
static long ref_in_index(const nb_conv2d_shape *s, int n, int c, int h, int w)
{
	if (h < 0 || h >= s->H || w < 0 || w >= s->W)
		return -1;
	return (((long)n * s->C + c) * s->H + h) * s->W + w;
}

/* Calls visit(ctx, out index, in index, w index) for every (output, tap)
 * pair that reads a real input pixel: the definition of the convolution as
 * one flat walk, shared by the reference forward and backward. */
typedef void (*ref_visit_fn)(void *ctx, long o, long i, long wi);

static void ref_walk(const nb_conv2d_shape *s, ref_visit_fn visit, void *ctx)
{
	const int Cg = s->C / s->groups, Kg = s->K / s->groups;
	const long n_out = (long)s->N * s->K * s->P * s->Q;
	for (long o = 0; o < n_out; o++) {
		const int q = (int)(o % s->Q), p = (int)(o / s->Q % s->P);
		const int k = (int)(o / ((long)s->Q * s->P) % s->K);
		const int n = (int)(o / ((long)s->Q * s->P * s->K));
		const int g = k / Kg;
		for (int c = 0; c < Cg; c++)
			for (int r = 0; r < s->R; r++)
				for (int t = 0; t < s->S; t++) {
					int h = p * s->stride_h - s->pad_h + r;
					int x = q * s->stride_w - s->pad_w + t;
					long i = ref_in_index(s, n, g * Cg + c,
							      h, x);
					long wi =
					    (((long)k * Cg + c) * s->R + r) *
						s->S +
					    t;
					if (i >= 0)
						visit(ctx, o, i, wi);
				}
	}
}

typedef struct ref_ctx {
	const float *in, *w, *dout;
	double *out, *gin, *gw;
} ref_ctx;

static void ref_visit_forward(void *ctx, long o, long i, long wi)
{
	ref_ctx *c = ctx;
	c->out[o] += (double)c->in[i] * c->w[wi];
}

static void ref_visit_backward(void *ctx, long o, long i, long wi)
{
	ref_ctx *c = ctx;
	c->gin[i] += (double)c->dout[o] * c->w[wi];
	c->gw[wi] += (double)c->dout[o] * c->in[i];
}

static double *dzeros(size_t n)
{
	double *p = calloc(n ? n : 1, sizeof(double));
	CU_ASSERT_FATAL(p != NULL);
	return p;
}

/* The plain-loop reference forward: out = conv(in, w) + b, in double. */
static void ref_conv_forward(float *out, const float *in, const float *w,
			     const float *b, const nb_conv2d_shape *s)
{
	const long n_out = (long)s->N * s->K * s->P * s->Q;
	ref_ctx c = {.in = in, .w = w, .out = dzeros(n_out)};
	ref_walk(s, ref_visit_forward, &c);
	for (long o = 0; o < n_out; o++) {
		int k = (int)(o / ((long)s->P * s->Q) % s->K);
		out[o] = (float)(c.out[o] + (b ? b[k] : 0.0));
	}
	free(c.out);
}

/* The plain-loop reference backward; accumulates (+=) like the real one. */
static void ref_conv_backward(float *din, float *dw, float *db,
			      const float *dout, const float *in,
			      const float *w, const nb_conv2d_shape *s)
{
	const size_t nin = (size_t)s->N * s->C * s->H * s->W;
	const size_t nw = (size_t)s->K * (s->C / s->groups) * s->R * s->S;
	const long n_out = (long)s->N * s->K * s->P * s->Q;
	ref_ctx c = {.in = in,
		     .w = w,
		     .dout = dout,
		     .gin = dzeros(nin),
		     .gw = dzeros(nw)};
	ref_walk(s, ref_visit_backward, &c);
	double *gb = dzeros(s->K);
	for (long o = 0; o < n_out; o++)
		gb[o / ((long)s->P * s->Q) % s->K] += dout[o];
	if (din)
		for (size_t i = 0; i < nin; i++)
			din[i] += (float)c.gin[i];
	if (dw)
		for (size_t i = 0; i < nw; i++)
			dw[i] += (float)c.gw[i];
	if (db)
		for (int k = 0; k < s->K; k++)
			db[k] += (float)gb[k];
	free(c.gin);
	free(c.gw);
	free(gb);
}

/* ---- the shapes --------------------------------------------------------- */

typedef struct conv_case {
	int N, C, H, W, K, R, S, sh, sw, ph, pw, groups, bias;
} conv_case;

/* Every path and edge: odd and non-square sizes, stride 2 (and 3, and
 * mixed), padding 0/1/2 (also padding wider than the kernel), groups
 * 1/2/3, depthwise with stride and 5x5, channel multiplier, 1x1 with and
 * without the GEMM-only path, batch 1 and 3, bias on and off. */
static const conv_case conv_cases[] = {
    /* N C  H  W   K R S sh sw ph pw  G bias */
    {1, 3, 5, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1},
    {3, 3, 7, 6, 5, 3, 3, 2, 2, 1, 1, 1, 0},
    {2, 4, 9, 7, 6, 3, 3, 1, 2, 0, 1, 2, 1},
    {3, 6, 8, 8, 6, 3, 3, 1, 1, 1, 1, 6, 1},   /* depthwise */
    {2, 5, 7, 9, 5, 3, 3, 2, 2, 1, 1, 5, 0},   /* depthwise, stride 2 */
    {1, 3, 6, 5, 3, 5, 5, 1, 1, 2, 2, 3, 1},   /* depthwise 5x5 */
    {3, 8, 6, 5, 4, 1, 1, 1, 1, 0, 0, 1, 1},   /* 1x1: plain GEMM */
    {2, 8, 5, 7, 6, 1, 1, 1, 1, 0, 0, 2, 0},   /* 1x1 grouped */
    {3, 4, 9, 9, 8, 1, 1, 2, 2, 0, 0, 1, 1},   /* 1x1 stride 2 */
    {1, 2, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1, 1},   /* 1x1, pad > kernel */
    {2, 3, 11, 9, 4, 5, 5, 2, 1, 2, 0, 1, 1},  /* 5x5 */
    {1, 2, 4, 4, 3, 3, 3, 1, 1, 2, 2, 1, 1},   /* pad 2 on 3x3 */
    {3, 4, 5, 6, 6, 2, 3, 1, 1, 0, 1, 2, 1},   /* non-square kernel */
    {1, 1, 3, 3, 1, 3, 3, 1, 1, 0, 0, 1, 0},   /* output 1x1 */
    {2, 6, 7, 7, 12, 3, 3, 1, 1, 1, 1, 3, 1},  /* groups 3 */
    {1, 4, 6, 6, 8, 3, 3, 1, 1, 1, 1, 4, 1},   /* channel multiplier */
    {1, 3, 8, 7, 2, 3, 3, 3, 3, 1, 1, 1, 1},   /* stride 3 */
    {3, 16, 8, 8, 16, 3, 3, 1, 1, 1, 1, 1, 1}, /* ResNet-like */
    {2, 32, 1, 1, 10, 1, 1, 1, 1, 0, 0, 1, 1}, /* 1x1 plane */
    /* depthwise with whole 4x8 register tiles and leftovers */
    {2, 3, 13, 19, 3, 3, 3, 1, 1, 1, 1, 3, 1},
    {2, 4, 19, 21, 4, 3, 3, 2, 2, 1, 1, 4, 1},
    {1, 2, 16, 16, 2, 5, 5, 1, 1, 2, 2, 2, 0},
    {1, 2, 9, 17, 2, 3, 3, 1, 1, 0, 0, 2, 1},
    {1, 2, 10, 12, 2, 3, 3, 1, 1, 3, 2, 2, 1}, /* pad > kernel */
    /* several register tiles of the packed kernels, with partial ones:
     * K = 20 is 2.5 row blocks, 72 positions 2.25 panels, C*R*S = 288 two
     * inner-dimension chunks */
    {2, 32, 9, 8, 20, 3, 3, 1, 1, 1, 1, 1, 1},
    {2, 12, 10, 10, 16, 3, 3, 2, 2, 1, 1, 1, 0}, /* stride 2, 3 panels */
    {1, 40, 6, 7, 9, 1, 1, 1, 1, 0, 0, 1, 1},    /* 1x1, C = 40 */
    {2, 16, 8, 8, 24, 3, 3, 1, 1, 1, 1, 2, 1},   /* groups 2, Kg = 12 */
    /* rows of 16 or 32 outputs: the implicit kernels (no im2col), with a
     * half panel at the end (80 and 48 positions), without padding, 5x5,
     * groups, and an input gradient that cannot be implicit (W = 18) */
    {2, 8, 16, 16, 12, 3, 3, 1, 1, 1, 1, 1, 1},
    {1, 4, 4, 32, 8, 3, 3, 1, 1, 1, 1, 1, 0},
    /* the weight gradient with positions on the lanes (at most 16 output
     * channels, rows of 32): PreResNet's 16-channel stage and its stem on
     * several images */
    {3, 16, 32, 32, 16, 3, 3, 1, 1, 1, 1, 1, 0},
    {4, 3, 32, 32, 16, 3, 3, 1, 1, 1, 1, 1, 1},
    {2, 6, 5, 16, 10, 3, 3, 1, 1, 1, 1, 1, 1},
    {2, 8, 3, 16, 8, 1, 1, 1, 1, 0, 0, 1, 1},
    {1, 3, 10, 18, 5, 3, 3, 1, 1, 0, 0, 1, 1},
    {1, 3, 16, 16, 4, 5, 5, 1, 1, 2, 2, 1, 1},
    {2, 8, 6, 16, 12, 3, 3, 1, 1, 1, 1, 2, 1},
    /* rows of 8: implicit in pairs of rows (16, 48 positions), or not (an
     * odd row count) */
    {2, 6, 2, 8, 9, 3, 3, 1, 1, 1, 1, 1, 1},
    {1, 10, 6, 8, 17, 3, 3, 1, 1, 1, 1, 1, 0},
    {1, 4, 5, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1},
    /* small maps: several images side by side in one panel product
     * (8 of 16 positions, then a unit of 3; 5 strided images of 16; 4x4
     * 1x1 maps; groups), the input gradient through im2col columns */
    {11, 16, 4, 4, 20, 3, 3, 1, 1, 1, 1, 1, 1},
    {5, 8, 8, 8, 12, 3, 3, 2, 2, 1, 1, 1, 0},
    {9, 24, 4, 4, 17, 1, 1, 1, 1, 0, 0, 1, 1},
    {6, 16, 4, 4, 32, 3, 3, 1, 1, 1, 1, 2, 1},
    /* strided, with rows of 8 or 16 outputs: the implicit kernels on the
     * input's stride phases (an odd height, 1x1, stride 3, strides 2 and
     * 1, groups, 5x5) */
    {2, 8, 16, 16, 12, 3, 3, 2, 2, 1, 1, 1, 1},
    {1, 4, 31, 32, 8, 3, 3, 2, 2, 1, 1, 1, 0},
    {2, 6, 16, 16, 10, 1, 1, 2, 2, 0, 0, 1, 1},
    {1, 3, 24, 48, 5, 3, 3, 3, 3, 1, 1, 1, 1},
    {1, 4, 16, 16, 6, 3, 3, 2, 1, 1, 1, 1, 1},
    {2, 8, 16, 16, 8, 3, 3, 2, 2, 1, 1, 2, 0},
    {1, 3, 32, 32, 4, 5, 5, 2, 2, 2, 2, 1, 1},
    /* stride 2 x 2 through the phases of the input and of col2im: odd
     * sizes without padding, a 2x2 kernel, a 5x5 one with odd padding */
    {2, 5, 9, 11, 7, 3, 3, 2, 2, 0, 0, 1, 1},
    {1, 4, 10, 12, 6, 2, 2, 2, 2, 0, 0, 1, 0},
    {1, 3, 13, 15, 5, 5, 5, 2, 2, 1, 1, 1, 1},
    {2, 3, 6, 7, 4, 1, 1, 2, 2, 1, 1, 1, 1}, /* 1x1, odd columns only */
    /* rows of 10 to 28: the implicit kernels on rows padded to whole
     * vectors (LeNet-5's 28 and 10, the input gradient's 14; 1x1 without
     * padding, whose view is a copy with slack; groups; stride 2) */
    {2, 3, 28, 28, 6, 5, 5, 1, 1, 2, 2, 1, 1},
    {2, 6, 14, 14, 16, 5, 5, 1, 1, 0, 0, 1, 1},
    {1, 4, 12, 12, 8, 1, 1, 1, 1, 0, 0, 1, 0},
    {2, 8, 14, 14, 8, 3, 3, 1, 1, 1, 1, 2, 1},
    {1, 4, 21, 21, 6, 3, 3, 2, 2, 1, 1, 1, 1},
    /* 1x1 on rows that suit neither vectors nor padded rows: each plane
     * read as one row (MobileNetV2's 17-wide maps, 289 positions; padded
     * 7x7 -> 9x9; 5x5 with groups) */
    {2, 24, 17, 17, 20, 1, 1, 1, 1, 0, 0, 1, 1},
    {2, 6, 7, 7, 10, 1, 1, 1, 1, 1, 1, 1, 0},
    {3, 8, 5, 5, 12, 1, 1, 1, 1, 0, 0, 2, 1},
    /* depthwise on MobileNetV2's 5x5 maps: every row a partial tile */
    {3, 16, 5, 5, 16, 3, 3, 1, 1, 1, 1, 16, 1},
    /* Winograd with several vectors of channels (48 / 64 / 80 lanes:
     * register tiles of three, four and four + one vectors), an odd map,
     * units of several images whose row blocks cross images */
    {2, 64, 6, 6, 48, 3, 3, 1, 1, 1, 1, 1, 1},
    {3, 40, 7, 7, 72, 3, 3, 1, 1, 1, 1, 1, 0},
    {5, 48, 2, 6, 16, 3, 3, 1, 1, 1, 1, 1, 1},
    /* 32- and 16-wide maps: Winograd's tiles on the lanes under auto (odd
     * heights) */
    {2, 32, 5, 32, 16, 3, 3, 1, 1, 1, 1, 1, 1},
    {2, 16, 9, 16, 32, 3, 3, 1, 1, 1, 1, 1, 1},
    /* a kernel over the whole input: a linear layer */
    {3, 4, 5, 5, 7, 5, 5, 1, 1, 0, 0, 1, 1},
    {2, 3, 2, 3, 20, 2, 3, 1, 1, 0, 0, 1, 0},
};
#define N_CONV_CASES (int)(sizeof conv_cases / sizeof conv_cases[0])

static nb_conv2d_shape shape_of(const conv_case *c)
{
	nb_conv2d_shape s = {.N = c->N,
			     .C = c->C,
			     .H = c->H,
			     .W = c->W,
			     .K = c->K,
			     .R = c->R,
			     .S = c->S,
			     .stride_h = c->sh,
			     .stride_w = c->sw,
			     .pad_h = c->ph,
			     .pad_w = c->pw,
			     .groups = c->groups};
	CU_ASSERT_FATAL(nb_conv2d_shape_finish(&s) == NB_OK);
	return s;
}

static size_t n_in(const nb_conv2d_shape *s)
{
	return (size_t)s->N * s->C * s->H * s->W;
}
static size_t n_w(const nb_conv2d_shape *s)
{
	return (size_t)s->K * (s->C / s->groups) * s->R * s->S;
}
static size_t n_out(const nb_conv2d_shape *s)
{
	return (size_t)s->N * s->K * s->P * s->Q;
}

/* Buffers for one convolution with random contents. */
typedef struct conv_bufs {
	nb_conv2d_shape s;
	float *in, *w, *b, *out, *r; /* r: the probe / upstream gradient */
	nb_workspace ws;
} conv_bufs;

static void conv_bufs_init(conv_bufs *cb, const conv_case *c, uint64_t seed)
{
	memset(cb, 0, sizeof *cb);
	cb->s = shape_of(c);
	cb->in = fzeros(n_in(&cb->s));
	cb->w = fzeros(n_w(&cb->s));
	cb->b = c->bias ? fzeros(cb->s.K) : NULL;
	cb->out = fzeros(n_out(&cb->s));
	cb->r = fzeros(n_out(&cb->s));
	tu_fill_uniform(cb->in, n_in(&cb->s), -1, 1, seed);
	tu_fill_normal(cb->w, n_w(&cb->s), 0.3f, seed + 1);
	if (cb->b)
		tu_fill_uniform(cb->b, cb->s.K, -0.5f, 0.5f, seed + 2);
	tu_fill_uniform(cb->r, n_out(&cb->s), -1, 1, seed + 3);
}

static void conv_bufs_free(conv_bufs *cb)
{
	free(cb->in);
	free(cb->w);
	free(cb->b);
	free(cb->out);
	free(cb->r);
	nb_workspace_free(&cb->ws);
}

/* ---- convolution tests ----------------------------------------------------
 */

static void test_conv_shape_finish(void)
{
	nb_conv2d_shape s = {.N = 2,
			     .C = 3,
			     .H = 32,
			     .W = 31,
			     .K = 8,
			     .R = 3,
			     .S = 3,
			     .stride_h = 2,
			     .stride_w = 1,
			     .pad_h = 1,
			     .pad_w = 0,
			     .groups = 1};
	CU_ASSERT_EQUAL(nb_conv2d_shape_finish(&s), NB_OK);
	CU_ASSERT_EQUAL(s.P, 16); /* (32 + 2 - 3) / 2 + 1 */
	CU_ASSERT_EQUAL(s.Q, 29); /* (31 - 3) / 1 + 1 */

	nb_conv2d_shape bad = s;
	bad.groups = 2; /* does not divide C = 3 */
	CU_ASSERT_EQUAL(nb_conv2d_shape_finish(&bad), NB_EINVAL);
	bad = s;
	bad.C = 4;
	bad.K = 6;
	bad.groups = 4; /* divides C, not K */
	CU_ASSERT_EQUAL(nb_conv2d_shape_finish(&bad), NB_EINVAL);
	bad = s;
	bad.stride_w = 0;
	CU_ASSERT_EQUAL(nb_conv2d_shape_finish(&bad), NB_EINVAL);
	bad = s;
	bad.pad_h = -1;
	CU_ASSERT_EQUAL(nb_conv2d_shape_finish(&bad), NB_EINVAL);
	bad = s;
	bad.H = 1; /* 1 + 2 < 3 is fine, 1 + 0 < 3 is not */
	bad.pad_h = 0;
	CU_ASSERT_EQUAL(nb_conv2d_shape_finish(&bad), NB_EINVAL);
	bad = s;
	bad.N = 0;
	CU_ASSERT_EQUAL(nb_conv2d_shape_finish(&bad), NB_EINVAL);
}

/* Fast forward and backward against the reference on every shape; the
 * gradient buffers start non-zero to check that backward adds. */
static void test_conv_matches_reference_once(void)
{
	for (int i = 0; i < N_CONV_CASES; i++) {
		conv_bufs cb;
		conv_bufs_init(&cb, &conv_cases[i], 100 + 10 * i);
		const nb_conv2d_shape *s = &cb.s;
		float *want = fzeros(n_out(s));
		CU_ASSERT_EQUAL(
		    nb_conv2d_forward(cb.out, cb.in, cb.w, cb.b, s, &cb.ws),
		    NB_OK);
		ref_conv_forward(want, cb.in, cb.w, cb.b, s);
		check_close("forward", i, cb.out, want, n_out(s), 1e-4);

		float *din = fzeros(n_in(s)), *dw = fzeros(n_w(s)),
		      *db = fzeros(s->K);
		tu_fill_uniform(din, n_in(s), -1, 1, 7);
		tu_fill_uniform(dw, n_w(s), -1, 1, 8);
		tu_fill_uniform(db, s->K, -1, 1, 9);
		float *rdin = fdup(din, n_in(s)), *rdw = fdup(dw, n_w(s)),
		      *rdb = fdup(db, s->K);
		CU_ASSERT_EQUAL(nb_conv2d_backward(din, dw, db, cb.r, cb.in,
						   cb.w, s, &cb.ws),
				NB_OK);
		ref_conv_backward(rdin, rdw, rdb, cb.r, cb.in, cb.w, s);
		check_close("din", i, din, rdin, n_in(s), 1e-4);
		check_close("dw", i, dw, rdw, n_w(s), 1e-4);
		check_close("db", i, db, rdb, s->K, 1e-4);

		free(want);
		free(din);
		free(dw);
		free(db);
		free(rdin);
		free(rdw);
		free(rdb);
		conv_bufs_free(&cb);
	}
}

/* Each gradient alone (the others NULL) equals its share of the full
 * result; all NULL is a no-op that does not even touch the workspace. */
static void test_conv_null_gradients_once(void)
{
	static const int picks[] = {0, 2, 3, 6, 8}; /* gemm, grouped, dw, 1x1 */
	for (size_t j = 0; j < sizeof picks / sizeof picks[0]; j++) {
		int i = picks[j];
		conv_bufs cb;
		conv_bufs_init(&cb, &conv_cases[i], 300 + i);
		const nb_conv2d_shape *s = &cb.s;
		float *rdin = fzeros(n_in(s)), *rdw = fzeros(n_w(s)),
		      *rdb = fzeros(s->K);
		ref_conv_backward(rdin, rdw, rdb, cb.r, cb.in, cb.w, s);

		CU_ASSERT_EQUAL(nb_conv2d_backward(NULL, NULL, NULL, cb.r,
						   cb.in, cb.w, s, &cb.ws),
				NB_OK);
		CU_ASSERT_EQUAL(cb.ws.cap, 0);

		float *din = fzeros(n_in(s));
		nb_conv2d_backward(din, NULL, NULL, cb.r, cb.in, cb.w, s,
				   &cb.ws);
		check_close("din alone", i, din, rdin, n_in(s), 1e-4);
		if (i == 6 && nb_conv2d_kernels() == NB_CONV_BLAS)
			/* 1x1: din is a GEMM straight into din */
			CU_ASSERT_EQUAL(cb.ws.cap, 0);

		float *dw = fzeros(n_w(s));
		nb_conv2d_backward(NULL, dw, NULL, cb.r, cb.in, cb.w, s,
				   &cb.ws);
		check_close("dw alone", i, dw, rdw, n_w(s), 1e-4);

		float *db = fzeros(s->K);
		nb_conv2d_backward(NULL, NULL, db, cb.r, cb.in, cb.w, s,
				   &cb.ws);
		check_close("db alone", i, db, rdb, s->K, 1e-4);

		free(din);
		free(dw);
		free(db);
		free(rdin);
		free(rdw);
		free(rdb);
		conv_bufs_free(&cb);
	}
}

static double conv_probe(void *ctx)
{
	conv_bufs *cb = ctx;
	nb_conv2d_forward(cb->out, cb->in, cb->w, cb->b, &cb->s, &cb->ws);
	return tu_dot(cb->r, cb->out, n_out(&cb->s));
}

static void test_conv_gradcheck_once(void)
{
	static const conv_case cases[] = {
	    /* N C H W K R S sh sw ph pw G bias */
	    {2, 3, 5, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1},
	    {1, 4, 7, 6, 6, 3, 3, 2, 2, 1, 1, 2, 1},   /* stride 2, groups 2 */
	    {2, 3, 6, 5, 3, 3, 3, 1, 1, 1, 1, 3, 1},   /* depthwise */
	    {1, 4, 5, 7, 4, 3, 3, 2, 2, 0, 1, 4, 0},   /* depthwise stride 2 */
	    {1, 2, 7, 5, 3, 5, 5, 2, 1, 2, 2, 1, 1},   /* 5x5, odd */
	    {2, 4, 5, 5, 6, 1, 1, 1, 1, 0, 0, 2, 1},   /* 1x1 grouped */
	    {2, 3, 5, 6, 4, 1, 1, 2, 2, 0, 0, 1, 0},   /* 1x1 stride 2 */
	    {2, 3, 6, 7, 4, 3, 3, 1, 2, 0, 1, 1, 1},   /* pad_h != pad_w */
	    {1, 2, 13, 11, 2, 3, 3, 1, 1, 1, 1, 2, 1}, /* depthwise tiles */
	    {1, 2, 17, 19, 2, 3, 3, 2, 2, 1, 1, 2, 1}, /* same, stride 2 */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		conv_bufs cb;
		conv_bufs_init(&cb, &cases[i], 500 + 10 * i);
		const nb_conv2d_shape *s = &cb.s;
		float *din = fzeros(n_in(s)), *dw = fzeros(n_w(s)),
		      *db = fzeros(s->K);
		nb_conv2d_backward(din, dw, cb.b ? db : NULL, cb.r, cb.in, cb.w,
				   s, &cb.ws);
		/* the probe is linear in each argument, so a large step is
		 * exact up to float rounding of the output */
		tu_gradcheck("conv din", conv_probe, &cb, cb.in, din, n_in(s),
			     200, 1e-2, 1e-3, 1e-3);
		tu_gradcheck("conv dw", conv_probe, &cb, cb.w, dw, n_w(s), 200,
			     1e-2, 1e-3, 1e-3);
		if (cb.b)
			tu_gradcheck("conv db", conv_probe, &cb, cb.b, db, s->K,
				     200, 1e-2, 1e-3, 1e-3);
		free(din);
		free(dw);
		free(db);
		conv_bufs_free(&cb);
	}
}

/* Calling backward twice doubles every gradient. */
static void test_conv_accumulates_once(void)
{
	static const int picks[] = {1, 3, 6, 14};
	for (size_t j = 0; j < sizeof picks / sizeof picks[0]; j++) {
		int i = picks[j];
		conv_bufs cb;
		conv_bufs_init(&cb, &conv_cases[i], 700 + i);
		const nb_conv2d_shape *s = &cb.s;
		float *din = fzeros(n_in(s)), *dw = fzeros(n_w(s)),
		      *db = fzeros(s->K);
		nb_conv2d_backward(din, dw, db, cb.r, cb.in, cb.w, s, &cb.ws);
		float *din2 = fdup(din, n_in(s)), *dw2 = fdup(dw, n_w(s)),
		      *db2 = fdup(db, s->K);
		for (size_t k = 0; k < n_in(s); k++)
			din2[k] *= 2;
		for (size_t k = 0; k < n_w(s); k++)
			dw2[k] *= 2;
		for (int k = 0; k < s->K; k++)
			db2[k] *= 2;
		nb_conv2d_backward(din, dw, db, cb.r, cb.in, cb.w, s, &cb.ws);
		check_close("din twice", i, din, din2, n_in(s), 1e-6);
		check_close("dw twice", i, dw, dw2, n_w(s), 1e-6);
		check_close("db twice", i, db, db2, s->K, 1e-6);
		free(din);
		free(dw);
		free(db);
		free(din2);
		free(dw2);
		free(db2);
		conv_bufs_free(&cb);
	}
}

/* nb_conv2d_backward_store writes every element of din (it starts as NaN
 * here) with exactly what nb_conv2d_backward adds to zeros, and leaves dw
 * and db accumulating, on every case. */
static void test_conv_store_once(void)
{
	for (int i = 0; i < N_CONV_CASES; i++) {
		conv_bufs cb;
		conv_bufs_init(&cb, &conv_cases[i], 900 + i);
		const nb_conv2d_shape *s = &cb.s;
		const size_t ni = n_in(s), nw = n_w(s);
		float *din = fzeros(ni), *dw = fzeros(nw), *db = fzeros(s->K);
		float *din2 = fzeros(ni), *dw2 = fzeros(nw),
		      *db2 = fzeros(s->K);
		for (size_t k = 0; k < ni; k++)
			din2[k] = NAN;
		for (size_t k = 0; k < nw; k++)
			dw[k] = dw2[k] = 0.25f;
		for (int k = 0; k < s->K; k++)
			db[k] = db2[k] = -0.5f;
		nb_conv2d_backward(din, dw, db, cb.r, cb.in, cb.w, s, &cb.ws);
		nb_conv2d_backward_store(din2, dw2, db2, cb.r, cb.in, cb.w, s,
					 &cb.ws);
		size_t bad = 0;
		for (size_t k = 0; k < ni; k++)
			bad += !(din2[k] == din[k]);
		for (size_t k = 0; k < nw; k++)
			bad += !(dw2[k] == dw[k]);
		for (int k = 0; k < s->K; k++)
			bad += !(db2[k] == db[k]);
		char msg[120];
		snprintf(msg, sizeof msg,
			 "case %d: %zu elements differ between store and add",
			 i, bad);
		CU_assertImplementation(bad == 0, __LINE__, msg, __FILE__, "",
					CU_FALSE);
		free(din);
		free(dw);
		free(db);
		free(din2);
		free(dw2);
		free(db2);
		conv_bufs_free(&cb);
	}
}

/* Runs backward from zeroed gradients with `threads` OpenMP threads. */
static void conv_grads(conv_bufs *cb, int threads, float *out, float *din,
		       float *dw, float *db)
{
	int keep = omp_get_max_threads();
	omp_set_num_threads(threads);
	memset(din, 0, n_in(&cb->s) * sizeof(float));
	memset(dw, 0, n_w(&cb->s) * sizeof(float));
	memset(db, 0, cb->s.K * sizeof(float));
	nb_conv2d_forward(out, cb->in, cb->w, cb->b, &cb->s, &cb->ws);
	nb_conv2d_backward(din, dw, db, cb->r, cb->in, cb->w, &cb->s, &cb->ws);
	omp_set_num_threads(keep);
}

/* Bit-identical for a given thread count (weight gradients are reduced in
 * thread order), and the same within rounding for 1, 2 and 3 threads.
 * Batch 7 splits unevenly over the threads. */
static void test_conv_deterministic_once(void)
{
	static const conv_case cases[] = {
	    {7, 16, 8, 8, 16, 3, 3, 1, 1, 1, 1, 1, 1},
	    {7, 8, 9, 9, 8, 3, 3, 2, 2, 1, 1, 8, 1},   /* depthwise */
	    {7, 4, 12, 12, 4, 3, 3, 1, 1, 1, 1, 4, 1}, /* depthwise */
	    {7, 8, 6, 6, 16, 1, 1, 1, 1, 0, 0, 1, 1},  /* 1x1 */
	    /* images side by side */
	    {19, 16, 4, 4, 24, 3, 3, 1, 1, 1, 1, 1, 1},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		conv_bufs cb;
		conv_bufs_init(&cb, &cases[i], 900 + i);
		const nb_conv2d_shape *s = &cb.s;
		float *o[2], *x[2], *w[2], *b[2];
		for (int k = 0; k < 2; k++) {
			o[k] = fzeros(n_out(s));
			x[k] = fzeros(n_in(s));
			w[k] = fzeros(n_w(s));
			b[k] = fzeros(s->K);
		}
		int ref_threads[] = {1, 2, 3};
		for (int t = 0; t < 3; t++) {
			int th = ref_threads[t];
			conv_grads(&cb, th, o[0], x[0], w[0], b[0]);
			conv_grads(&cb, th, o[1], x[1], w[1], b[1]);
			CU_ASSERT(memcmp(o[0], o[1], n_out(s) * 4) == 0);
			CU_ASSERT(memcmp(x[0], x[1], n_in(s) * 4) == 0);
			CU_ASSERT(memcmp(w[0], w[1], n_w(s) * 4) == 0);
			CU_ASSERT(memcmp(b[0], b[1], s->K * 4) == 0);
			if (th == 1) /* keep the 1-thread result in slot 1 */
				continue;
			conv_grads(&cb, 1, o[1], x[1], w[1], b[1]);
			check_close("out 1 vs n threads", (int)i, o[0], o[1],
				    n_out(s), 1e-5);
			check_close("din 1 vs n threads", (int)i, x[0], x[1],
				    n_in(s), 1e-5);
			check_close("dw 1 vs n threads", (int)i, w[0], w[1],
				    n_w(s), 1e-5);
			check_close("db 1 vs n threads", (int)i, b[0], b[1],
				    s->K, 1e-5);
		}
		for (int k = 0; k < 2; k++) {
			free(o[k]);
			free(x[k]);
			free(w[k]);
			free(b[k]);
		}
		conv_bufs_free(&cb);
	}
}

/* max |got - want| / max(1, max |want|) */
static double rel_err(const float *got, const float *want, size_t n)
{
	return tu_max_abs_diff(got, want, n) / fmax(1.0, max_abs(want, n));
}

/* Winograd's rounding on network-sized layers (PreResNet's three stages,
 * ResNet-18's four; sums of 144 to 4608 terms per output and of hundreds
 * to thousands of positions per weight): against the reference summed in
 * double, its error in each of out, din and dw stays below 2e-6 of the
 * largest element (the direct packed kernels' errors there: 1.2e-7 to
 * 3.8e-6; Winograd's forward is the more accurate of the two, its weight
 * gradient up to 6x less so on 16 channels), and the two paths agree.
 * Also under auto, which on AVX-512 puts the tiles on the lanes for the
 * 32- and 16-wide maps (another order of the weight gradient's sums). */
static void test_winograd_accuracy(void)
{
	static const conv_case cases[] = {
	    {4, 16, 32, 32, 16, 3, 3, 1, 1, 1, 1, 1, 0},
	    {4, 32, 16, 16, 32, 3, 3, 1, 1, 1, 1, 1, 1},
	    {8, 64, 8, 8, 64, 3, 3, 1, 1, 1, 1, 1, 0},
	    {4, 128, 4, 4, 128, 3, 3, 1, 1, 1, 1, 1, 0},
	    {2, 256, 8, 8, 256, 3, 3, 1, 1, 1, 1, 1, 1},
	    {3, 512, 4, 4, 512, 3, 3, 1, 1, 1, 1, 1, 0},
	    {4, 16, 7, 7, 32, 3, 3, 1, 1, 1, 1, 1, 0}, /* FMNIST's 7x7 */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		conv_bufs cb;
		conv_bufs_init(&cb, &cases[i], 7100 + i);
		const nb_conv2d_shape *s = &cb.s;
		const size_t no = n_out(s), ni = n_in(s), nw = n_w(s);
		float *ro = fzeros(no), *rdi = fzeros(ni), *rdw = fzeros(nw);
		ref_conv_forward(ro, cb.in, cb.w, cb.b, s);
		ref_conv_backward(rdi, rdw, NULL, cb.r, cb.in, cb.w, s);
		double err[3][3];
		float *o[3], *di[3], *dw[3];
		for (int k = 0; k < 3; k++) {
			nb_conv2d_set_kernels(k == 2   ? NB_CONV_AUTO
					      : k == 1 ? NB_CONV_WINOGRAD
						       : NB_CONV_PACKED);
			o[k] = fzeros(no);
			di[k] = fzeros(ni);
			dw[k] = fzeros(nw);
			CU_ASSERT_EQUAL(nb_conv2d_forward(o[k], cb.in, cb.w,
							  cb.b, s, &cb.ws),
					NB_OK);
			CU_ASSERT_EQUAL(nb_conv2d_backward(di[k], dw[k], NULL,
							   cb.r, cb.in, cb.w,
							   s, &cb.ws),
					NB_OK);
			err[k][0] = rel_err(o[k], ro, no);
			err[k][1] = rel_err(di[k], rdi, ni);
			err[k][2] = rel_err(dw[k], rdw, nw);
		}
		static const char *what[] = {"out", "din", "dw"};
		for (int j = 0; j < 3; j++) {
			char msg[200];
			snprintf(msg, sizeof msg,
				 "case %zu %s: Winograd error %.3g (auto "
				 "%.3g), direct %.3g",
				 i, what[j], err[1][j], err[2][j], err[0][j]);
			CU_assertImplementation(
			    err[1][j] < 2e-6 && err[2][j] < 2e-6, __LINE__, msg,
			    __FILE__, "", CU_FALSE);
			if (getenv("NB_TEST_VERBOSE"))
				fprintf(stderr, "%s\n", msg);
		}
		check_close("out Winograd vs direct", (int)i, o[1], o[0], no,
			    1e-5);
		check_close("din Winograd vs direct", (int)i, di[1], di[0], ni,
			    1e-5);
		check_close("dw Winograd vs direct", (int)i, dw[1], dw[0], nw,
			    1e-5);
		check_close("dw auto vs direct", (int)i, dw[2], dw[0], nw,
			    1e-5);
		for (int k = 0; k < 3; k++) {
			free(o[k]);
			free(di[k]);
			free(dw[k]);
		}
		free(ro);
		free(rdi);
		free(rdw);
		conv_bufs_free(&cb);
	}
	nb_conv2d_set_kernels(NB_CONV_AUTO);
}

/* Winograd with the tiles on the lanes (auto, 32- and 16-wide maps with at
 * most 32 channels) against its twin with the channels on the lanes
 * (forced):
 * the same bits for the forward (plain, ReLU, ReLU6) and the input
 * gradient (written and added), at 1 and 3 threads; odd heights, bias.
 * The weight gradient sums its products in another order on the tiles'
 * lanes (four partial sums per weight), so it agrees to rounding (the
 * accuracy test bounds both against a reference). Skipped where auto does
 * not take Winograd (no AVX-512). */
static void test_winograd_lanes_twins(void)
{
	static const conv_case cases[] = {
	    {3, 16, 32, 32, 16, 3, 3, 1, 1, 1, 1, 1, 1},
	    {2, 32, 7, 32, 16, 3, 3, 1, 1, 1, 1, 1, 0},
	    {2, 16, 9, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1},
	    /* 16 wide: two tile rows a vector (odd heights: a vector's
	     * second row past the map) */
	    {2, 32, 16, 16, 32, 3, 3, 1, 1, 1, 1, 1, 1},
	    {3, 16, 7, 16, 32, 3, 3, 1, 1, 1, 1, 1, 0},
	    {1, 32, 5, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1},
	};
	nb_conv2d_set_kernels(NB_CONV_AUTO);
	if (nb_conv2d_kernels() != NB_CONV_WINOGRAD)
		return;
	const int keep = omp_get_max_threads();
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		conv_bufs cb;
		conv_bufs_init(&cb, &cases[i], 7300 + i);
		const nb_conv2d_shape *s = &cb.s;
		const size_t no = n_out(s), ni = n_in(s), nw = n_w(s);
		for (size_t j = 0; j < nw; j++) /* some outputs pass 6 */
			cb.w[j] *= 6.0f;
		for (int th = 1; th <= 3; th += 2) {
			omp_set_num_threads(th);
			float *o[2], *di[2], *ds[2], *dw[2];
			for (int k = 0; k < 2; k++) {
				nb_conv2d_set_kernels(k ? NB_CONV_WINOGRAD
							: NB_CONV_AUTO);
				o[k] = fzeros(3 * no);
				di[k] = fzeros(ni);
				ds[k] = fzeros(ni);
				dw[k] = fzeros(nw);
				tu_fill_uniform(di[k], ni, -1, 1, 11);
				CU_ASSERT_EQUAL(nb_conv2d_forward(o[k], cb.in,
								  cb.w, cb.b, s,
								  &cb.ws),
						NB_OK);
				for (int act = 1; act <= 2; act++)
					CU_ASSERT_EQUAL(
					    nb_conv2d_forward_act(
						o[k] + act * no, cb.in, cb.w,
						cb.b, s, &cb.ws,
						act == 1 ? NB_ACT_RELU
							 : NB_ACT_RELU6),
					    NB_OK);
				CU_ASSERT_EQUAL(
				    nb_conv2d_backward(di[k], dw[k], NULL, cb.r,
						       cb.in, cb.w, s, &cb.ws),
				    NB_OK);
				CU_ASSERT_EQUAL(nb_conv2d_backward_store(
						    ds[k], NULL, NULL, cb.r,
						    cb.in, cb.w, s, &cb.ws),
						NB_OK);
			}
			CU_ASSERT_EQUAL(memcmp(o[0], o[1], 3 * no * 4), 0);
			CU_ASSERT_EQUAL(memcmp(di[0], di[1], ni * 4), 0);
			CU_ASSERT_EQUAL(memcmp(ds[0], ds[1], ni * 4), 0);
			check_close("dw tiles vs channels on the lanes", (int)i,
				    dw[0], dw[1], nw, 1e-5);
			for (int k = 0; k < 2; k++) {
				free(o[k]);
				free(di[k]);
				free(ds[k]);
				free(dw[k]);
			}
		}
		conv_bufs_free(&cb);
	}
	omp_set_num_threads(keep);
	nb_conv2d_set_kernels(NB_CONV_AUTO);
}

/*
 * A BatchNorm + activation applied by the convolution as it reads its
 * input (nb_conv_pre) against the BatchNorm's output buffer convolved:
 * the same bits, forward and backward, on both Winograd layouts (tiles on
 * the lanes under auto for 32- and 16-wide maps, channels on the lanes for
 * the others and when forced), 1 and 3 threads. The input has a mean far
 * from 0 (the mean's two parts matter) and gamma is large enough that
 * ReLU6 clips. The statistics-only forward (out NULL) keeps the same
 * affine, and nb_batchnorm_affine_forward rebuilds the output to the bit.
 */
static void test_conv_pre_twins(void)
{
	static const conv_case cases[] = {
	    {3, 16, 32, 32, 16, 3, 3, 1, 1, 1, 1, 1, 1},
	    {2, 32, 7, 16, 32, 3, 3, 1, 1, 1, 1, 1, 0},
	    {2, 64, 8, 8, 64, 3, 3, 1, 1, 1, 1, 1, 1},
	    {2, 48, 7, 9, 16, 3, 3, 1, 1, 1, 1, 1, 1}, /* W % 16: through tr */
	    {2, 20, 6, 6, 8, 3, 3, 1, 1, 1, 1, 1, 0},  /* channels not whole
							  vectors: forced only */
	};
	const int keep = omp_get_max_threads();
	nb_conv2d_set_kernels(NB_CONV_AUTO);
	const int wino = nb_conv2d_kernels() == NB_CONV_WINOGRAD;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		conv_bufs cb;
		conv_bufs_init(&cb, &cases[i], 7400 + i);
		const nb_conv2d_shape *s = &cb.s;
		const int C = s->C, L = s->H * s->W;
		const size_t no = n_out(s), ni = n_in(s), nw = n_w(s);
		for (size_t j = 0; j < ni; j++)
			cb.in[j] = 40.0f + cb.in[j] * 0.03f;
		float *gamma = fzeros(C), *beta = fzeros(C);
		tu_fill_uniform(gamma, C, 1.0f, 4.0f, 7490 + i);
		tu_fill_uniform(beta, C, -1.0f, 2.0f, 7495 + i);
		float *aff = fzeros(4 * C), *aff2 = fzeros(4 * C);
		float *m = fzeros(C), *is = fzeros(C), *y = fzeros(ni),
		      *y2 = fzeros(ni);
		for (int act = NB_ACT_NONE; act <= NB_ACT_RELU6; act++) {
			int (*bn)(float *, float *, float *, float *, float *,
				  float *, const float *, const float *,
				  const float *, int, int, int, float, float) =
			    act == NB_ACT_RELU6 ? nb_batchnorm_relu6_forward_train
						: nb_batchnorm_relu_forward_train;
			CU_ASSERT_EQUAL(bn(y, m, is, aff, NULL, NULL, cb.in,
					   gamma, beta, s->N, C, L, 0.1f,
					   1e-5f),
					NB_OK);
			CU_ASSERT_EQUAL(bn(NULL, m, is, aff2, NULL, NULL,
					   cb.in, gamma, beta, s->N, C, L,
					   0.1f, 1e-5f),
					NB_OK);
			CU_ASSERT_EQUAL(memcmp(aff, aff2, 16 * (size_t)C), 0);
			if (act == NB_ACT_NONE) /* the plain normalisation */
				nb_batchnorm_forward_train(y, m, is, NULL,
							   NULL, cb.in, gamma,
							   beta, s->N, C, L,
							   0.1f, 1e-5f);
			nb_batchnorm_affine_forward(y2, cb.in, aff, s->N, C, L,
						    act);
			CU_ASSERT_EQUAL(memcmp(y, y2, ni * 4), 0);
			const nb_conv_pre pre = {aff, act, NULL, NULL};
			for (int kern = 0; kern < 2; kern++) {
				nb_conv2d_set_kernels(kern ? NB_CONV_WINOGRAD
							   : NB_CONV_AUTO);
				if (!nb_conv2d_takes_pre(s)) {
					CU_ASSERT(!wino || (kern == 0 && C % 16));
					CU_ASSERT_EQUAL(nb_conv2d_forward_pre(
							    cb.out, cb.in, cb.w,
							    cb.b, s, &cb.ws,
							    &pre),
							NB_EINVAL);
					continue;
				}
				for (int th = 1; th <= 3; th += 2) {
					omp_set_num_threads(th);
					float *o[2], *di[2], *dw[2], *db[2];
					for (int k = 0; k < 2; k++) {
						o[k] = fzeros(no);
						di[k] = fzeros(ni);
						dw[k] = fzeros(nw);
						db[k] = fzeros(s->K);
						tu_fill_uniform(di[k], ni, -1, 1,
								12);
						CU_ASSERT_EQUAL(
						    k ? nb_conv2d_forward_pre(
							    o[k], cb.in, cb.w,
							    cb.b, s, &cb.ws,
							    &pre)
						      : nb_conv2d_forward(
							    o[k], y, cb.w, cb.b,
							    s, &cb.ws),
						    NB_OK);
						CU_ASSERT_EQUAL(
						    k ? nb_conv2d_backward_pre(
							    di[k], dw[k], db[k],
							    cb.r, cb.in, cb.w,
							    s, &cb.ws, 0, &pre)
						      : nb_conv2d_backward(
							    di[k], dw[k], db[k],
							    cb.r, y, cb.w, s,
							    &cb.ws),
						    NB_OK);
					}
					CU_ASSERT_EQUAL(
					    memcmp(o[0], o[1], no * 4), 0);
					CU_ASSERT_EQUAL(
					    memcmp(di[0], di[1], ni * 4), 0);
					CU_ASSERT_EQUAL(
					    memcmp(dw[0], dw[1], nw * 4), 0);
					CU_ASSERT_EQUAL(
					    memcmp(db[0], db[1], s->K * 4), 0);
					/* and a store into garbage */
					for (size_t j = 0; j < ni; j++)
						di[1][j] = NAN;
					CU_ASSERT_EQUAL(
					    nb_conv2d_backward_pre(
						di[1], NULL, NULL, cb.r, cb.in,
						cb.w, s, &cb.ws, 1, &pre),
					    NB_OK);
					memset(di[0], 0, ni * 4);
					CU_ASSERT_EQUAL(
					    nb_conv2d_backward(di[0], NULL,
							       NULL, cb.r, y,
							       cb.w, s, &cb.ws),
					    NB_OK);
					CU_ASSERT_EQUAL(
					    memcmp(di[0], di[1], ni * 4), 0);
					for (int k = 0; k < 2; k++) {
						free(o[k]);
						free(di[k]);
						free(dw[k]);
						free(db[k]);
					}
				}
				omp_set_num_threads(keep);
			}
		}
		/* a shape the Winograd kernels do not take */
		nb_conv2d_shape st = *s;
		st.stride_h = st.stride_w = 2;
		CU_ASSERT_EQUAL(nb_conv2d_shape_finish(&st), NB_OK);
		CU_ASSERT(!nb_conv2d_takes_pre(&st));
		free(gamma);
		free(beta);
		free(aff);
		free(aff2);
		free(m);
		free(is);
		free(y);
		free(y2);
		conv_bufs_free(&cb);
	}
	omp_set_num_threads(keep);
	nb_conv2d_set_kernels(NB_CONV_AUTO);
}

/*
 * The BatchNorm backward's first pass taken by the convolution as it
 * writes din (nb_conv_pre's sums) and nb_batchnorm_backward_train_sums
 * against the convolution's din and nb_batchnorm_relu(6)_backward_train:
 * the same bits for din (masked), the weight gradient, the BatchNorm's
 * din, dgamma and dbeta; 32- and 16-wide maps with odd heights, batches
 * that leave slices empty or uneven, or that split into slices as into
 * the weight gradient's units (din and dw in one loop), din written or
 * added to, 1 and 3 threads.
 */
static void test_conv_pre_sums_twins(void)
{
	static const conv_case cases[] = {
	    {5, 16, 9, 32, 16, 3, 3, 1, 1, 1, 1, 1, 1},
	    {19, 32, 7, 16, 16, 3, 3, 1, 1, 1, 1, 1, 0},
	    {3, 16, 16, 16, 32, 3, 3, 1, 1, 1, 1, 1, 1},
	    /* units of one image and of two that the slices split alike:
	     * din and dw in one loop (with 3 threads too, and 1) */
	    {16, 16, 18, 32, 16, 3, 3, 1, 1, 1, 1, 1, 0},
	    {32, 32, 12, 16, 32, 3, 3, 1, 1, 1, 1, 1, 0},
	};
	nb_conv2d_set_kernels(NB_CONV_AUTO);
	if (nb_conv2d_kernels() != NB_CONV_WINOGRAD)
		return;
	const int keep = omp_get_max_threads();
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		conv_bufs cb;
		conv_bufs_init(&cb, &cases[i], 7600 + i);
		const nb_conv2d_shape *s = &cb.s;
		const int N = s->N, C = s->C, L = s->H * s->W;
		const size_t ni = n_in(s);
		for (size_t j = 0; j < ni; j++)
			cb.in[j] = -3.0f + cb.in[j];
		float *gamma = fzeros(C), *beta = fzeros(C);
		tu_fill_uniform(gamma, C, 1.0f, 4.0f, 7690 + i);
		tu_fill_uniform(beta, C, -1.0f, 2.0f, 7695 + i);
		float *aff = fzeros(4 * C), *m = fzeros(C), *is = fzeros(C),
		      *y = fzeros(ni);
		double *sums = calloc((size_t)NB_BATCHNORM_SLICES * 3 * C,
				      sizeof(double));
		CU_ASSERT_FATAL(sums != NULL);
		for (int act = NB_ACT_RELU; act <= NB_ACT_RELU6; act++) {
			(act == NB_ACT_RELU6 ? nb_batchnorm_relu6_forward_train
					     : nb_batchnorm_relu_forward_train)(
			    y, m, is, aff, NULL, NULL, cb.in, gamma, beta, N, C,
			    L, 0.1f, 1e-5f);
			const nb_conv_pre pre = {aff, act, m, sums};
			for (int store = 0; store <= 1; store++)
				for (int th = 1; th <= 3; th += 2) {
					omp_set_num_threads(th);
					float *g[2], *d[2], *dg[2], *db[2],
					    *dw[2];
					for (int k = 0; k < 2; k++) {
						g[k] = fzeros(ni);
						d[k] = fzeros(ni);
						dg[k] = fzeros(C);
						db[k] = fzeros(C);
						dw[k] = fzeros(n_w(s));
						tu_fill_uniform(g[k], ni, -1, 1,
								13);
					}
					/* the twin: din, then the BatchNorm */
					CU_ASSERT_EQUAL(
					    (store ? nb_conv2d_backward_store
						   : nb_conv2d_backward)(
						g[0], dw[0], NULL, cb.r, y,
						cb.w, s, &cb.ws),
					    NB_OK);
					(act == NB_ACT_RELU6
					     ? nb_batchnorm_relu6_backward_train
					     : nb_batchnorm_relu_backward_train)(
					    d[0], dg[0], db[0], g[0], cb.in, m,
					    is, aff, gamma, N, C, L, 1);
					CU_ASSERT_EQUAL(
					    nb_conv2d_backward_pre(
						g[1], dw[1], NULL, cb.r, cb.in,
						cb.w, s, &cb.ws, store, &pre),
					    1);
					nb_batchnorm_backward_train_sums(
					    d[1], dg[1], db[1], g[1], cb.in, m,
					    is, gamma, N, C, L, 1, sums);
					CU_ASSERT_EQUAL(
					    memcmp(g[0], g[1], ni * 4), 0);
					CU_ASSERT_EQUAL(
					    memcmp(d[0], d[1], ni * 4), 0);
					CU_ASSERT_EQUAL(
					    memcmp(dg[0], dg[1], C * 4), 0);
					CU_ASSERT_EQUAL(
					    memcmp(db[0], db[1], C * 4), 0);
					CU_ASSERT_EQUAL(memcmp(dw[0], dw[1],
							       n_w(s) * 4),
							0);
					CU_ASSERT(max_abs(d[1], ni) > 0);
					CU_ASSERT(max_abs(dw[1], n_w(s)) > 0);
					for (int k = 0; k < 2; k++) {
						free(dw[k]);
						free(g[k]);
						free(d[k]);
						free(dg[k]);
						free(db[k]);
					}
				}
			omp_set_num_threads(keep);
		}
		free(gamma);
		free(beta);
		free(aff);
		free(m);
		free(is);
		free(y);
		free(sums);
		conv_bufs_free(&cb);
	}
	omp_set_num_threads(keep);
}

static void fill_const(float *x, size_t n, float v)
{
	for (size_t i = 0; i < n; i++)
		x[i] = v;
}

/*
 * nb_conv2d_forward_post against the convolution followed by
 * nb_add_forward and a BatchNorm (+ ReLU) taking its own statistics: the
 * same bits for the output and, where the kernels took the statistics
 * (tiles on the lanes: 32- and 16-wide maps, here), for everything the
 * BatchNorm's forward writes from them; with the channels on the lanes,
 * rows not whole vectors, channels not whole vectors (forced Winograd), a
 * shape the Winograd kernels do not take (stride 2), batches that leave
 * slices empty or uneven, with and without a bias, a residual and a
 * BatchNorm applied as the convolution reads (pre), every kernel choice,
 * 1 and 3 threads.
 */
static void test_conv_post_twins(void)
{
	static const conv_case cases[] = {
	    {3, 16, 9, 32, 16, 3, 3, 1, 1, 1, 1, 1, 0},
	    {2, 32, 7, 16, 32, 3, 3, 1, 1, 1, 1, 1, 1},
	    {19, 16, 5, 32, 16, 3, 3, 1, 1, 1, 1, 1, 1},
	    {5, 32, 6, 16, 32, 3, 3, 1, 1, 1, 1, 1, 0},
	    {2, 64, 8, 8, 64, 3, 3, 1, 1, 1, 1, 1, 0},
	    {2, 48, 7, 9, 16, 3, 3, 1, 1, 1, 1, 1, 1},
	    {2, 20, 6, 6, 8, 3, 3, 1, 1, 1, 1, 1, 0},
	    {2, 16, 9, 9, 32, 3, 3, 2, 2, 1, 1, 1, 1},
	};
	static const int kernels[] = {NB_CONV_AUTO, NB_CONV_WINOGRAD,
				      NB_CONV_BLAS};
	nb_conv2d_set_kernels(NB_CONV_AUTO);
	const int wino = nb_conv2d_kernels() == NB_CONV_WINOGRAD;
	const int keep = omp_get_max_threads();
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		conv_bufs cb;
		conv_bufs_init(&cb, &cases[i], 7700 + i);
		const nb_conv2d_shape *s = &cb.s;
		const int C = s->C, L = s->H * s->W, K = s->K, Lo = s->P * s->Q;
		const size_t no = n_out(s), ni = n_in(s);
		float *gamma = fzeros(C), *beta = fzeros(C),
		      *aff = fzeros(4 * C);
		float *m = fzeros(C), *is = fzeros(C), *y = fzeros(ni);
		float *o[2] = {fzeros(no), fzeros(no)};
		tu_fill_uniform(gamma, C, 0.5f, 2.0f, 7790 + i);
		tu_fill_uniform(beta, C, -1.0f, 1.0f, 7795 + i);
		CU_ASSERT_EQUAL(nb_batchnorm_relu_forward_train(
				    y, m, is, aff, NULL, NULL, cb.in, gamma,
				    beta, s->N, C, L, 0.1f, 1e-5f),
				NB_OK);
		const nb_conv_pre pre = {aff, NB_ACT_RELU, NULL, NULL};
		/* the output's BatchNorm: K channels; [0] the twin's */
		float *og = fzeros(K), *obeta = fzeros(K);
		tu_fill_uniform(og, K, 0.5f, 2.0f, 7780 + i);
		tu_fill_uniform(obeta, K, -1.0f, 1.0f, 7785 + i);
		float *bo[2], *bm[2], *bi[2], *ba[2], *rm[2], *rv[2];
		for (int k = 0; k < 2; k++) {
			bo[k] = fzeros(no);
			bm[k] = fzeros(K);
			bi[k] = fzeros(K);
			ba[k] = fzeros(4 * K);
			rm[k] = fzeros(K);
			rv[k] = fzeros(K);
		}
		double *st =
		    calloc((size_t)NB_BATCHNORM_SLICES * 2 * K, sizeof(double));
		CU_ASSERT_FATAL(st != NULL);
		for (size_t kern = 0; kern < 3; kern++)
			for (int with_pre = 0; with_pre < 2; with_pre++) {
				nb_conv2d_set_kernels(kernels[kern]);
				const nb_conv_post only_res = {cb.r, NULL};
				if (with_pre && !nb_conv2d_takes_pre(s)) {
					CU_ASSERT_EQUAL(nb_conv2d_forward_post(
							    o[1], cb.in, cb.w,
							    cb.b, s, &cb.ws,
							    &pre, &only_res),
							NB_EINVAL);
					continue;
				}
				/* the statistics taken: tiles on the lanes */
				const int tl = wino && kern == 0 && i < 4;
				for (int th = 1; th <= 3; th += 2)
					for (int v = 0; v < 3; v++) {
						const nb_conv_post post = {
						    v != 1 ? cb.r : NULL,
						    v ? st : NULL};
						omp_set_num_threads(th);
						CU_ASSERT_EQUAL(
						    nb_conv2d_forward(
							o[0],
							with_pre ? y : cb.in,
							cb.w, cb.b, s, &cb.ws),
						    NB_OK);
						if (post.res)
							nb_add_forward(
							    o[0], o[0], cb.r,
							    no);
						for (size_t j = 0; j < no; j++)
							o[1][j] = NAN;
						const int rc =
						    nb_conv2d_forward_post(
							o[1], cb.in, cb.w, cb.b,
							s, &cb.ws,
							with_pre ? &pre : NULL,
							&post);
						CU_ASSERT_EQUAL(
						    rc, v && tl ? 1 : 0);
						CU_ASSERT_EQUAL(
						    memcmp(o[0], o[1], no * 4),
						    0);
						if (rc != 1)
							continue;
						for (int k = 0; k < 2; k++) {
							fill_const(rm[k], K,
								   0.5f);
							fill_const(rv[k], K,
								   2.0f);
						}
						nb_batchnorm_relu_forward_train(
						    bo[0], bm[0], bi[0], ba[0],
						    rm[0], rv[0], o[0], og,
						    obeta, s->N, K, Lo, 0.1f,
						    1e-5f);
						nb_batchnorm_forward_train_sums(
						    bo[1], bm[1], bi[1], ba[1],
						    rm[1], rv[1], o[1], og,
						    obeta, s->N, K, Lo, 0.1f,
						    1e-5f, NB_ACT_RELU, st);
						CU_ASSERT_EQUAL(memcmp(bo[0],
								       bo[1],
								       no * 4),
								0);
						CU_ASSERT_EQUAL(
						    memcmp(ba[0], ba[1],
							   16 * (size_t)K),
						    0);
						CU_ASSERT_EQUAL(
						    memcmp(bm[0], bm[1], 4 * K),
						    0);
						CU_ASSERT_EQUAL(
						    memcmp(bi[0], bi[1], 4 * K),
						    0);
						CU_ASSERT_EQUAL(
						    memcmp(rm[0], rm[1], 4 * K),
						    0);
						CU_ASSERT_EQUAL(
						    memcmp(rv[0], rv[1], 4 * K),
						    0);
						CU_ASSERT(max_abs(bo[1], no) >
							  0);
					}
				omp_set_num_threads(keep);
			}
		CU_ASSERT(max_abs(o[0], no) > 0);
		for (int k = 0; k < 2; k++) {
			free(bo[k]);
			free(bm[k]);
			free(bi[k]);
			free(ba[k]);
			free(rm[k]);
			free(rv[k]);
		}
		free(st);
		free(og);
		free(obeta);
		free(gamma);
		free(beta);
		free(aff);
		free(m);
		free(is);
		free(y);
		free(o[0]);
		free(o[1]);
		conv_bufs_free(&cb);
	}
	omp_set_num_threads(keep);
	nb_conv2d_set_kernels(NB_CONV_AUTO);
}

/* ---- linear ---------------------------------------------------------------
 */

typedef struct lin_ctx {
	int N, I, O;
	float *in, *w, *b, *out, *r;
} lin_ctx;

static void lin_init(lin_ctx *l, int N, int I, int O, int bias, uint64_t seed)
{
	l->N = N;
	l->I = I;
	l->O = O;
	l->in = fzeros((size_t)N * I);
	l->w = fzeros((size_t)O * I);
	l->b = bias ? fzeros(O) : NULL;
	l->out = fzeros((size_t)N * O);
	l->r = fzeros((size_t)N * O);
	tu_fill_uniform(l->in, (size_t)N * I, -1, 1, seed);
	tu_fill_normal(l->w, (size_t)O * I, 0.4f, seed + 1);
	if (l->b)
		tu_fill_uniform(l->b, O, -1, 1, seed + 2);
	tu_fill_uniform(l->r, (size_t)N * O, -1, 1, seed + 3);
}

static void lin_free(lin_ctx *l)
{
	free(l->in);
	free(l->w);
	free(l->b);
	free(l->out);
	free(l->r);
}

static double lin_probe(void *ctx)
{
	lin_ctx *l = ctx;
	nb_linear_forward(l->out, l->in, l->w, l->b, l->N, l->I, l->O);
	return tu_dot(l->r, l->out, (size_t)l->N * l->O);
}

/* Forward against out[n][o] = b[o] + sum_i in[n][i] * w[o][i] (w is
 * (O,I) as PyTorch) and backward against its plain-loop transpose. */
static void test_linear_matches_reference(void)
{
	static const int shapes[][4] = {
	    {3, 7, 5, 1}, {1, 10, 1, 0}, {5, 1, 4, 1}, {64, 33, 17, 1}};
	for (int c = 0; c < 4; c++) {
		lin_ctx l;
		lin_init(&l, shapes[c][0], shapes[c][1], shapes[c][2],
			 shapes[c][3], 40 + c);
		int N = l.N, I = l.I, O = l.O;
		float *want = fzeros((size_t)N * O);
		float *rdin = fzeros((size_t)N * I),
		      *rdw = fzeros((size_t)O * I), *rdb = fzeros(O);
		for (int n = 0; n < N; n++)
			for (int o = 0; o < O; o++) {
				double acc = l.b ? l.b[o] : 0;
				double g = l.r[n * O + o];
				for (int i = 0; i < I; i++) {
					acc += (double)l.in[n * I + i] *
					       l.w[o * I + i];
					rdin[n * I + i] +=
					    (float)(g * l.w[o * I + i]);
					rdw[o * I + i] +=
					    (float)(g * l.in[n * I + i]);
				}
				want[n * O + o] = (float)acc;
				rdb[o] += (float)g;
			}
		nb_linear_forward(l.out, l.in, l.w, l.b, N, I, O);
		check_close("linear forward", c, l.out, want, (size_t)N * O,
			    1e-5);
		float *din = fzeros((size_t)N * I), *dw = fzeros((size_t)O * I),
		      *db = fzeros(O);
		nb_linear_backward(din, dw, db, l.r, l.in, l.w, N, I, O);
		check_close("linear din", c, din, rdin, (size_t)N * I, 1e-5);
		check_close("linear dw", c, dw, rdw, (size_t)O * I, 1e-5);
		check_close("linear db", c, db, rdb, O, 1e-5);
		/* accumulates, and NULL gradients are skipped */
		nb_linear_backward(din, NULL, NULL, l.r, l.in, l.w, N, I, O);
		nb_linear_backward(NULL, dw, NULL, l.r, l.in, l.w, N, I, O);
		nb_linear_backward(NULL, NULL, db, l.r, l.in, l.w, N, I, O);
		nb_linear_backward(NULL, NULL, NULL, l.r, l.in, l.w, N, I, O);
		for (int k = 0; k < N * I; k++)
			rdin[k] *= 2;
		for (int k = 0; k < O * I; k++)
			rdw[k] *= 2;
		for (int k = 0; k < O; k++)
			rdb[k] *= 2;
		check_close("linear din twice", c, din, rdin, (size_t)N * I,
			    1e-5);
		check_close("linear dw twice", c, dw, rdw, (size_t)O * I, 1e-5);
		check_close("linear db twice", c, db, rdb, O, 1e-5);
		free(want);
		free(rdin);
		free(rdw);
		free(rdb);
		free(din);
		free(dw);
		free(db);
		lin_free(&l);
	}
}

static void test_linear_gradcheck(void)
{
	lin_ctx l;
	lin_init(&l, 3, 7, 5, 1, 60);
	size_t ni = (size_t)l.N * l.I, nw = (size_t)l.O * l.I;
	float *din = fzeros(ni), *dw = fzeros(nw), *db = fzeros(l.O);
	nb_linear_backward(din, dw, db, l.r, l.in, l.w, l.N, l.I, l.O);
	tu_gradcheck("linear din", lin_probe, &l, l.in, din, ni, 200, 1e-2,
		     1e-3, 1e-3);
	tu_gradcheck("linear dw", lin_probe, &l, l.w, dw, nw, 200, 1e-2, 1e-3,
		     1e-3);
	tu_gradcheck("linear db", lin_probe, &l, l.b, db, l.O, 200, 1e-2, 1e-3,
		     1e-3);
	free(din);
	free(dw);
	free(db);
	lin_free(&l);
}

/* ---- pooling --------------------------------------------------------------
 */

enum pool_kind { POOL_MAX, POOL_AVG, POOL_ADAPTIVE };

typedef struct pool_ctx {
	enum pool_kind kind;
	int N, C, H, W, k, stride, pad, P, Q;
	float *in, *out, *r;
	int32_t *argmax;
} pool_ctx;

static void pool_init(pool_ctx *p, enum pool_kind kind, int N, int C, int H,
		      int W, int a, int b, int c, uint64_t seed)
{
	memset(p, 0, sizeof *p);
	p->kind = kind;
	p->N = N;
	p->C = C;
	p->H = H;
	p->W = W;
	if (kind == POOL_ADAPTIVE) {
		p->P = a;
		p->Q = b;
	} else {
		p->k = a;
		p->stride = b;
		p->pad = c;
		p->P = (H + 2 * c - a) / b + 1;
		p->Q = (W + 2 * c - a) / b + 1;
	}
	size_t ni = (size_t)N * C * H * W, no = (size_t)N * C * p->P * p->Q;
	p->in = fzeros(ni);
	p->out = fzeros(no);
	p->r = fzeros(no);
	p->argmax = calloc(no, sizeof(int32_t));
	CU_ASSERT_FATAL(p->argmax != NULL);
	fill_distinct(p->in, ni, seed);
	tu_fill_uniform(p->r, no, -1, 1, seed + 1);
}

static void pool_free(pool_ctx *p)
{
	free(p->in);
	free(p->out);
	free(p->r);
	free(p->argmax);
}

static void pool_forward(pool_ctx *p)
{
	if (p->kind == POOL_MAX)
		nb_maxpool2d_forward(p->out, p->argmax, p->in, p->N, p->C, p->H,
				     p->W, p->k, p->stride, p->pad);
	else if (p->kind == POOL_AVG)
		nb_avgpool2d_forward(p->out, p->in, p->N, p->C, p->H, p->W,
				     p->k, p->stride, p->pad);
	else
		nb_adaptive_avgpool2d_forward(p->out, p->in, p->N, p->C, p->H,
					      p->W, p->P, p->Q);
}

static void pool_backward(pool_ctx *p, float *din)
{
	if (p->kind == POOL_MAX)
		nb_maxpool2d_backward(din, p->r, p->argmax, p->N, p->C, p->H,
				      p->W, p->P, p->Q);
	else if (p->kind == POOL_AVG)
		nb_avgpool2d_backward(din, p->r, p->N, p->C, p->H, p->W, p->k,
				      p->stride, p->pad);
	else
		nb_adaptive_avgpool2d_backward(din, p->r, p->N, p->C, p->H,
					       p->W, p->P, p->Q);
}

static double pool_probe(void *ctx)
{
	pool_ctx *p = ctx;
	pool_forward(p);
	return tu_dot(p->r, p->out, (size_t)p->N * p->C * p->P * p->Q);
}

/* Gradient check, then backward a second time must double din. */
static void pool_check(pool_ctx *p, const char *what)
{
	size_t ni = (size_t)p->N * p->C * p->H * p->W;
	float *din = fzeros(ni);
	pool_forward(p);
	pool_backward(p, din);
	/* inputs are 0.02 apart, so a 1e-3 step never changes a max */
	tu_gradcheck(what, pool_probe, p, p->in, din, ni, 400, 1e-3, 1e-3,
		     1e-3);
	float *twice = fdup(din, ni);
	for (size_t i = 0; i < ni; i++)
		twice[i] *= 2;
	pool_forward(p);
	pool_backward(p, din);
	check_close(what, 0, din, twice, ni, 1e-6);
	free(din);
	free(twice);
}

static void test_maxpool_gradcheck(void)
{
	static const int cases[][7] = {
	    /* N C H W k stride pad */
	    {2, 3, 7, 6, 3, 2, 1},
	    {1, 2, 6, 6, 2, 2, 0},
	    {1, 2, 5, 5, 3, 1, 1}, /* overlapping windows */
	    {2, 1, 9, 7, 5, 2, 2},
	};
	for (int i = 0; i < 4; i++) {
		pool_ctx p;
		pool_init(&p, POOL_MAX, cases[i][0], cases[i][1], cases[i][2],
			  cases[i][3], cases[i][4], cases[i][5], cases[i][6],
			  1000 + i);
		pool_check(&p, "maxpool din");
		pool_free(&p);
	}
}

static void test_avgpool_gradcheck(void)
{
	static const int cases[][7] = {
	    /* N C H W k stride pad */
	    {2, 2, 7, 6, 3, 2, 1},
	    {1, 3, 5, 5, 3, 1, 1},
	    {1, 1, 6, 6, 2, 2, 0},
	    {1, 2, 8, 5, 4, 3, 2},
	};
	for (int i = 0; i < 4; i++) {
		pool_ctx p;
		pool_init(&p, POOL_AVG, cases[i][0], cases[i][1], cases[i][2],
			  cases[i][3], cases[i][4], cases[i][5], cases[i][6],
			  1100 + i);
		pool_check(&p, "avgpool din");
		pool_free(&p);
	}
}

static void test_adaptive_avgpool_gradcheck(void)
{
	static const int cases[][6] = {
	    /* N C H W P Q */
	    {2, 2, 5, 5, 3, 3}, /* 5 -> 3: overlapping windows */
	    {1, 3, 7, 7, 2, 2}, /* 7 -> 2 */
	    {2, 2, 5, 7, 1, 1}, /* global average */
	    {1, 2, 7, 5, 3, 2}, {1, 1, 3, 4, 5, 6}, /* upsampling windows */
	};
	for (int i = 0; i < 5; i++) {
		pool_ctx p;
		pool_init(&p, POOL_ADAPTIVE, cases[i][0], cases[i][1],
			  cases[i][2], cases[i][3], cases[i][4], cases[i][5], 0,
			  1200 + i);
		pool_check(&p, "adaptive avgpool din");
		pool_free(&p);
	}
}

/* PyTorch's max pooling rules on hand-made planes. */
static void test_maxpool_rules(void)
{
	float out[9];
	int32_t am[9];

	/* padding is -inf, not 0: an all-negative plane keeps its max */
	const float neg[4] = {-1, -2, -3, -4};
	nb_maxpool2d_forward(out, am, neg, 1, 1, 2, 2, 3, 1, 1);
	for (int i = 0; i < 4; i++) {
		CU_ASSERT_EQUAL(out[i], -1.0f);
		CU_ASSERT_EQUAL(am[i], 0);
	}

	/* ties: the first maximum in raster order wins */
	const float tie[9] = {1, 5, 5, /**/ 5, 2, 5, /**/ 0, 5, 1};
	nb_maxpool2d_forward(out, am, tie, 1, 1, 3, 3, 2, 1, 0);
	CU_ASSERT_EQUAL(am[0], 1); /* window {1,5;5,2} */
	CU_ASSERT_EQUAL(am[1], 1); /* window {5,5;2,5} */
	CU_ASSERT_EQUAL(am[2], 3); /* window {5,2;0,5} */
	CU_ASSERT_EQUAL(am[3], 5); /* window {2,5;5,1} */
	for (int i = 0; i < 4; i++)
		CU_ASSERT_EQUAL(out[i], 5.0f);
	const float flat[4] = {7, 7, 7, 7};
	nb_maxpool2d_forward(out, am, flat, 1, 1, 2, 2, 2, 2, 0);
	CU_ASSERT_EQUAL(am[0], 0);

	/* backward routes to the argmax and adds where windows share it */
	float din[9] = {0};
	const float g[4] = {1, 2, 3, 4};
	nb_maxpool2d_forward(out, am, tie, 1, 1, 3, 3, 2, 1, 0);
	nb_maxpool2d_backward(din, g, am, 1, 1, 3, 3, 2, 2);
	CU_ASSERT_EQUAL(din[1], 3.0f);
	CU_ASSERT_EQUAL(din[3], 3.0f);
	CU_ASSERT_EQUAL(din[5], 4.0f);
	CU_ASSERT_EQUAL(din[0] + din[2] + din[4] + din[6] + din[7] + din[8],
			0.0f);
}

/* The plain-loop twin of max pooling: PyTorch's rule written out (-inf
 * padding, a pixel wins when greater than the best so far or NaN). */
static void ref_maxpool(float *out, int32_t *am, const float *in, int N, int C,
			int H, int W, int k, int stride, int pad)
{
	const int P = (H + 2 * pad - k) / stride + 1;
	const int Q = (W + 2 * pad - k) / stride + 1;
	for (int pl = 0; pl < N * C; pl++)
		for (int p = 0; p < P; p++)
			for (int q = 0; q < Q; q++) {
				float best = -INFINITY;
				int32_t at = -1;
				for (int r = 0; r < k; r++)
					for (int t = 0; t < k; t++) {
						int h = p * stride - pad + r;
						int w = q * stride - pad + t;
						if (h < 0 || h >= H || w < 0 ||
						    w >= W)
							continue;
						float v =
						    in[(size_t)pl * H * W +
						       h * W + w];
						if (at < 0 || v > best ||
						    isnan(v)) {
							best = v;
							at = h * W + w;
						}
					}
				out[(size_t)pl * P * Q + p * Q + q] = best;
				am[(size_t)pl * P * Q + p * Q + q] = at;
			}
}

/* The 2x2/stride-2 fast path (and the general loop) against the twin, on
 * data full of ties, NaNs and infinities, odd sizes included. */
static void test_maxpool_fast_matches_reference(void)
{
	static const int cases[][7] = {
	    /* N C H W k stride pad */
	    {2, 3, 24, 24, 2, 2, 0}, {3, 2, 7, 9, 2, 2, 0},
	    {1, 4, 8, 8, 2, 2, 0},   {2, 2, 2, 17, 2, 2, 0},
	    {2, 3, 7, 6, 3, 2, 1},   {1, 2, 9, 9, 2, 1, 0},
	};
	for (int c = 0; c < 6; c++) {
		const int N = cases[c][0], C = cases[c][1], H = cases[c][2],
			  W = cases[c][3], k = cases[c][4], st = cases[c][5],
			  pad = cases[c][6];
		const int P = (H + 2 * pad - k) / st + 1;
		const int Q = (W + 2 * pad - k) / st + 1;
		size_t ni = (size_t)N * C * H * W, no = (size_t)N * C * P * Q;
		float *in = fzeros(ni), *o1 = fzeros(no), *o2 = fzeros(no);
		int32_t *a1 = calloc(no, sizeof *a1),
			*a2 = calloc(no, sizeof *a2);
		CU_ASSERT_FATAL(a1 && a2);
		tu_fill_uniform(in, ni, -3, 3, 4242 + c);
		for (size_t i = 0; i < ni; i++) {
			/* few distinct values, so ties are common */
			in[i] = floorf(in[i]);
			if (i % 13 == 5)
				in[i] = NAN;
			else if (i % 17 == 3)
				in[i] = -INFINITY;
			else if (i % 19 == 7)
				in[i] = INFINITY;
		}
		nb_maxpool2d_forward(o1, a1, in, N, C, H, W, k, st, pad);
		ref_maxpool(o2, a2, in, N, C, H, W, k, st, pad);
		int bad = 0;
		for (size_t i = 0; i < no; i++) {
			int same =
			    isnan(o1[i]) ? isnan(o2[i]) != 0 : o1[i] == o2[i];
			if (!same || a1[i] != a2[i])
				bad++;
		}
		if (bad)
			fprintf(stderr, "maxpool case %d: %d outputs differ\n",
				c, bad);
		CU_ASSERT_EQUAL(bad, 0);
		free(in);
		free(o1);
		free(o2);
		free(a1);
		free(a2);
	}
}

/* count_include_pad=True: the divisor is k*k even at the border. */
static void test_avgpool_rules(void)
{
	const float ones[4] = {1, 1, 1, 1};
	float out[4], din[4] = {0};
	nb_avgpool2d_forward(out, ones, 1, 1, 2, 2, 3, 1, 1);
	for (int i = 0; i < 4; i++)
		CU_ASSERT_DOUBLE_EQUAL(out[i], 4.0 / 9.0, 1e-6);
	nb_avgpool2d_backward(din, ones, 1, 1, 2, 2, 3, 1, 1);
	for (int i = 0; i < 4; i++) /* each pixel lies in all 4 windows */
		CU_ASSERT_DOUBLE_EQUAL(din[i], 4.0 / 9.0, 1e-6);

	const float x[16] = {1, 2,  3,	4,  5,	6,  7,	8,
			     9, 10, 11, 12, 13, 14, 15, 16};
	nb_avgpool2d_forward(out, x, 1, 1, 4, 4, 2, 2, 0);
	CU_ASSERT_DOUBLE_EQUAL(out[0], 3.5, 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(out[1], 5.5, 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(out[2], 11.5, 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(out[3], 13.5, 1e-6);
}

/* PyTorch's adaptive windows [floor(i*H/P), ceil((i+1)*H/P)). */
static void test_adaptive_avgpool_rules(void)
{
	const float x[7] = {1, 2, 3, 4, 5, 6, 7};
	float out[3];
	/* 5 -> 3: rows [0,2) [1,4) [3,5) */
	nb_adaptive_avgpool2d_forward(out, x, 1, 1, 5, 1, 3, 1);
	CU_ASSERT_DOUBLE_EQUAL(out[0], 1.5, 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(out[1], 3.0, 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(out[2], 4.5, 1e-6);
	/* 7 -> 2 along columns: [0,4) [3,7) */
	nb_adaptive_avgpool2d_forward(out, x, 1, 1, 1, 7, 1, 2);
	CU_ASSERT_DOUBLE_EQUAL(out[0], 2.5, 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(out[1], 5.5, 1e-6);
	/* to 1x1: the mean */
	nb_adaptive_avgpool2d_forward(out, x, 1, 1, 7, 1, 1, 1);
	CU_ASSERT_DOUBLE_EQUAL(out[0], 4.0, 1e-6);
	/* backward of 5 -> 3 with ones: rows shared by two windows get
	 * 1/2 + 1/3 */
	float din[5] = {0};
	const float g[3] = {1, 1, 1};
	nb_adaptive_avgpool2d_backward(din, g, 1, 1, 5, 1, 3, 1);
	CU_ASSERT_DOUBLE_EQUAL(din[0], 0.5, 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(din[1], 0.5 + 1.0 / 3, 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(din[2], 1.0 / 3, 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(din[3], 1.0 / 3 + 0.5, 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(din[4], 0.5, 1e-6);
}

/* The tests above run with im2col + BLAS, with the packed kernels, with
 * Winograd forced wherever it applies (channels on the lanes) and with
 * NB_CONV_AUTO, so each is checked whichever of them auto picks. */
static void on_both_kernels(void (*test)(void))
{
	nb_conv2d_set_kernels(NB_CONV_BLAS);
	test();
	nb_conv2d_set_kernels(NB_CONV_PACKED);
	test();
	nb_conv2d_set_kernels(NB_CONV_WINOGRAD);
	test();
	nb_conv2d_set_kernels(NB_CONV_AUTO);
	test(); /* and Winograd's tiles on the lanes, where auto takes it */
}

static void test_conv_matches_reference(void)
{
	on_both_kernels(test_conv_matches_reference_once);
}

static void test_conv_null_gradients(void)
{
	on_both_kernels(test_conv_null_gradients_once);
}

static void test_conv_gradcheck(void)
{
	on_both_kernels(test_conv_gradcheck_once);
}

static void test_conv_accumulates(void)
{
	on_both_kernels(test_conv_accumulates_once);
}

static void test_conv_store(void)
{
	on_both_kernels(test_conv_store_once);
}

static void test_conv_deterministic(void)
{
	on_both_kernels(test_conv_deterministic_once);
}

/* The depthwise convolutions with channels on the lanes (the packed
 * kernels' choice) against the plane kernels (the BLAS choice), MobileNetV2's
 * small maps and strides among them, channel counts off whole vectors, at
 * 1 and 3 threads: the forward and the input gradient (written and added
 * to) the same bits, the weight and bias gradients within rounding. */
static void test_depthwise_twins(void)
{
	static const conv_case cases[] = {
	    /* N C  H  W   K R S sh sw ph pw  G bias */
	    {3, 20, 5, 5, 20, 3, 3, 1, 1, 1, 1, 20, 1},
	    {2, 32, 9, 9, 32, 3, 3, 2, 2, 1, 1, 32, 0},
	    {2, 17, 17, 17, 17, 3, 3, 1, 1, 1, 1, 17, 1},
	    {4, 16, 12, 10, 16, 3, 3, 2, 2, 1, 1, 16, 1},
	    {2, 5, 7, 8, 5, 5, 5, 1, 1, 2, 2, 5, 0},
	    {3, 24, 11, 9, 24, 3, 3, 1, 2, 0, 1, 24, 1},
	};
	const int keep = omp_get_max_threads();
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		for (int threads = 1; threads <= 3; threads += 2) {
			omp_set_num_threads(threads);
			conv_bufs cb;
			conv_bufs_init(&cb, &cases[i], 4000 + i);
			const nb_conv2d_shape *s = &cb.s;
			const size_t ni = n_in(s), nw = n_w(s), no = n_out(s);
			float *o[2], *d[2][2], *dw[2], *db[2];
			for (int k = 0; k < 2; k++) {
				nb_conv2d_set_kernels(k ? NB_CONV_PACKED
							: NB_CONV_BLAS);
				o[k] = fzeros(no);
				d[k][0] = fzeros(ni);
				d[k][1] = fzeros(ni);
				dw[k] = fzeros(nw);
				db[k] = fzeros(s->K);
				tu_fill_uniform(d[k][0], ni, -1, 1, 77);
				CU_ASSERT_EQUAL(nb_conv2d_forward(o[k], cb.in,
								  cb.w, cb.b, s,
								  &cb.ws),
						NB_OK);
				CU_ASSERT_EQUAL(
				    nb_conv2d_backward(d[k][0], dw[k], db[k],
						       cb.r, cb.in, cb.w, s,
						       &cb.ws),
				    NB_OK);
				CU_ASSERT_EQUAL(nb_conv2d_backward_store(
						    d[k][1], NULL, NULL, cb.r,
						    cb.in, cb.w, s, &cb.ws),
						NB_OK);
			}
			nb_conv2d_set_kernels(NB_CONV_AUTO);
			CU_ASSERT_EQUAL(memcmp(o[0], o[1], no * sizeof(float)),
					0);
			CU_ASSERT_EQUAL(
			    memcmp(d[0][0], d[1][0], ni * sizeof(float)), 0);
			CU_ASSERT_EQUAL(
			    memcmp(d[0][1], d[1][1], ni * sizeof(float)), 0);
			check_close("depthwise dw", (int)i, dw[1], dw[0], nw,
				    1e-4);
			check_close("depthwise db", (int)i, db[1], db[0], s->K,
				    1e-4);
			for (int k = 0; k < 2; k++) {
				free(o[k]);
				free(d[k][0]);
				free(d[k][1]);
				free(dw[k]);
				free(db[k]);
			}
			conv_bufs_free(&cb);
		}
	omp_set_num_threads(keep);
}

/* The forward with its ReLU / ReLU6 applied per unit of images against
 * the two calls, on each kernel: the same bits; another act refused. */
static void test_conv_forward_act(void)
{
	static const conv_case cases[] = {
	    {3, 16, 8, 8, 24, 3, 3, 1, 1, 1, 1, 1, 1}, /* implicit */
	    {9, 24, 4, 4, 17, 3, 3, 1, 1, 1, 1, 1, 1}, /* panels, units */
	    {2, 6, 7, 7, 10, 1, 1, 1, 1, 1, 1, 1, 0},  /* flat 1x1 */
	    {2, 8, 9, 9, 8, 3, 3, 2, 2, 1, 1, 8, 1},   /* depthwise */
	    {3, 16, 7, 7, 20, 3, 3, 1, 1, 1, 1, 1, 1}, /* odd map */
	};
	static const nb_conv_kernels kernels[] = {
	    NB_CONV_BLAS, NB_CONV_PACKED, NB_CONV_WINOGRAD};
	for (int k = 0; k < 3; k++) {
		nb_conv2d_set_kernels(kernels[k]);
		for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
			conv_bufs cb;
			conv_bufs_init(&cb, &cases[i], 5000 + i);
			const nb_conv2d_shape *s = &cb.s;
			const size_t no = n_out(s);
			/* weights scaled up so that some outputs pass 6 */
			for (size_t j = 0; j < n_w(s); j++)
				cb.w[j] *= 8.0f;
			float *want = fzeros(no), *got = fzeros(no);
			for (int act = NB_ACT_RELU; act <= NB_ACT_RELU6; act++) {
				CU_ASSERT_EQUAL(nb_conv2d_forward(want, cb.in,
								  cb.w, cb.b, s,
								  &cb.ws),
						NB_OK);
				(act == NB_ACT_RELU ? nb_relu_forward
						    : nb_relu6_forward)(want,
									want,
									no);
				CU_ASSERT_EQUAL(nb_conv2d_forward_act(
						    got, cb.in, cb.w, cb.b, s,
						    &cb.ws, act),
						NB_OK);
				CU_ASSERT_EQUAL(
				    memcmp(want, got, no * sizeof(float)), 0);
				size_t zeros = 0, sixes = 0;
				for (size_t j = 0; j < no; j++) {
					zeros += got[j] == 0.0f;
					sixes += got[j] == 6.0f;
				}
				CU_ASSERT(zeros > 0);
				if (act == NB_ACT_RELU6)
					CU_ASSERT(sixes > 0);
			}
			CU_ASSERT_EQUAL(nb_conv2d_forward_act(got, cb.in, cb.w,
							      cb.b, s, &cb.ws,
							      7),
					NB_EINVAL);
			free(want);
			free(got);
			conv_bufs_free(&cb);
		}
	}
	nb_conv2d_set_kernels(NB_CONV_AUTO);
}

static const nb_test_entry tests[] = {
    {"conv2d shape_finish", test_conv_shape_finish},
    {"conv2d BLAS, packed and Winograd paths match the reference",
     test_conv_matches_reference},
    {"conv2d NULL gradients are skipped", test_conv_null_gradients},
    {"conv2d Winograd: rounding on network-sized layers",
     test_winograd_accuracy},
    {"conv2d Winograd: tiles on the lanes, same bits as channels",
     test_winograd_lanes_twins},
    {"conv2d with a BatchNorm applied as it reads: same bits as the two",
     test_conv_pre_twins},
    {"conv2d taking a BatchNorm's backward sums: same bits as the two",
     test_conv_pre_sums_twins},
    {"conv2d adding a residual, taking BatchNorm statistics: same bits",
     test_conv_post_twins},
    {"conv2d gradcheck", test_conv_gradcheck},
    {"conv2d backward accumulates", test_conv_accumulates},
    {"conv2d backward_store writes din, the same values",
     test_conv_store},
    {"conv2d deterministic across runs and threads", test_conv_deterministic},
    {"depthwise on the lanes: forward and din bits as the plane kernels",
     test_depthwise_twins},
    {"conv2d forward with ReLU / ReLU6: same bits as the two calls",
     test_conv_forward_act},
    {"linear matches the reference, accumulates",
     test_linear_matches_reference},
    {"linear gradcheck", test_linear_gradcheck},
    {"maxpool gradcheck, accumulates", test_maxpool_gradcheck},
    {"avgpool gradcheck, accumulates", test_avgpool_gradcheck},
    {"adaptive avgpool gradcheck, accumulates",
     test_adaptive_avgpool_gradcheck},
    {"maxpool -inf padding, first max wins", test_maxpool_rules},
    {"maxpool fast path matches the plain twin",
     test_maxpool_fast_matches_reference},
    {"avgpool count_include_pad", test_avgpool_rules},
    {"adaptive avgpool PyTorch windows", test_adaptive_avgpool_rules},
    {NULL, NULL}};

void nb_test_conv(void)
{
	nb_test_add_suite("conv", tests);
}
