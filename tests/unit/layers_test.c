/*
 * layers_test.c - BatchNorm, activations, structure ops and dropout:
 * finite-difference gradient checks for every backward, PyTorch golden
 * values (tests/fixtures/golden_layers.h, made by make_golden_layers.py),
 * the accumulate/NULL conventions of ops.h, and thread-count independence.
 *
 * Gradient checks use the probe loss sum(r * out) with a fixed random r, so
 * d loss / d out = r is what each backward is fed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "error.h"
#include "ops.h"
#include "rng.h"
#include "testutil.h"

#include "../fixtures/golden_layers.h"

/* Golden values are compared to this relative tolerance, with an absolute
 * floor of GOLD_RTOL * 1% of max|want| over the array for entries that are
 * (nearly) zero, where relative error means nothing. */
#define GOLD_RTOL 1e-5

/* Finite-difference settings: smooth ops (BatchNorm, tanh) and piecewise
 * linear ones away from their kinks. */
#define FD_EPS 1e-2
#define FD_ATOL 2e-3
#define FD_RTOL 1e-2
#define FD_POINTS 200
/* BatchNorm with N*L = 2 has |x - mean| as small as ~1e-2 in a channel,
 * where the curvature is large: a smaller step keeps the FD honest. */
#define BN_FD_EPS 1e-3

static float *zalloc(size_t n)
{
	float *p = calloc(n ? n : 1, sizeof(float));
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	return p;
}

/* Compares got with PyTorch's want; reports the worst entry on failure. */
static void expect_golden(const char *what, const float *got, const float *want,
			  size_t n)
{
	double scale = 0;
	for (size_t i = 0; i < n; i++)
		scale = fmax(scale, fabs(want[i]));
	size_t bad = 0, worst_i = 0;
	double worst = 0;
	for (size_t i = 0; i < n; i++) {
		double err = fabs((double)got[i] - want[i]);
		double lim = GOLD_RTOL * (fabs(want[i]) + 1e-2 * scale);
		if (!(err <= lim)) {
			bad++;
			if (!(err / lim <= worst)) {
				worst = err / lim;
				worst_i = i;
			}
		}
	}
	if (bad) {
		char msg[256];
		snprintf(msg, sizeof msg,
			 "%s: %zu of %zu off PyTorch, worst [%zu] %.9g vs %.9g",
			 what, bad, n, worst_i, got[worst_i], want[worst_i]);
		/* CU_FAIL records only its literal text: print the detail */
		fprintf(stderr, "\n    %s\n", msg);
		CU_FAIL(msg);
	} else {
		CU_PASS(what);
	}
}

/* ==== BatchNorm: PyTorch golden values ================================== */

/* One BatchNorm fixture: the pointers into golden_layers.h. */
typedef struct bn_golden {
	const char *name;
	int N, C, L, steps;
	const float *gamma, *beta; /* NULL: affine=False */
	const float *const *x;	   /* training inputs, one per step */
	const float *train_out, *save_mean, *save_invstd;
	const float *train_dout, *train_din, *train_dgamma, *train_dbeta;
	const float *running_mean, *running_var;
	const float *eval_x, *eval_out, *eval_dout, *eval_din, *eval_dgamma,
	    *eval_dbeta;
} bn_golden;

/* p: the array prefix (gl_bn2d), P: the size prefix (GL_BN2D). */
#define BN_COMMON(p, P)                                                        \
	.N = P##_N, .C = P##_C, .L = P##_L, .steps = P##_STEPS, .x = p##_xs,   \
	.train_out = p##_train_out, .save_mean = p##_save_mean,                \
	.save_invstd = p##_save_invstd, .train_dout = p##_train_dout,          \
	.train_din = p##_train_din, .running_mean = p##_running_mean,          \
	.running_var = p##_running_var, .eval_x = p##_eval_x,                  \
	.eval_out = p##_eval_out, .eval_dout = p##_eval_dout,                  \
	.eval_din = p##_eval_din
#define BN_AFFINE(p)                                                           \
	.gamma = p##_gamma, .beta = p##_beta,                                  \
	.train_dgamma = p##_train_dgamma, .train_dbeta = p##_train_dbeta,      \
	.eval_dgamma = p##_eval_dgamma, .eval_dbeta = p##_eval_dbeta

static const bn_golden bn_goldens[] = {
    {.name = "bn2d", BN_COMMON(gl_bn2d, GL_BN2D), BN_AFFINE(gl_bn2d)},
    {.name = "bn1d", BN_COMMON(gl_bn1d, GL_BN1D), BN_AFFINE(gl_bn1d)},
    {.name = "bn1d-noaffine", BN_COMMON(gl_bn1dna, GL_BN1DNA)},
    {.name = "bn2d-bigmean",
     BN_COMMON(gl_bnbig, GL_BNBIG),
     BN_AFFINE(gl_bnbig)},
};

static void check_bn_golden(const bn_golden *g)
{
	size_t n = (size_t)g->N * g->C * g->L, C = (size_t)g->C;
	float *out = zalloc(n), *din = zalloc(n);
	float *mean = zalloc(C), *invstd = zalloc(C);
	float *rm = zalloc(C), *rv = zalloc(C);
	float *dgamma = zalloc(C), *dbeta = zalloc(C);
	char what[128];
	for (size_t c = 0; c < C; c++)
		rv[c] = 1.0f; /* PyTorch's initial running_var */

	for (int k = 0; k < g->steps; k++) {
		int rc = nb_batchnorm_forward_train(
		    out, mean, invstd, rm, rv, g->x[k], g->gamma, g->beta, g->N,
		    g->C, g->L, GL_BN_MOMENTUM, GL_BN_EPS);
		CU_ASSERT_EQUAL_FATAL(rc, NB_OK);
	}
#define GOLD(field, got, len)                                                  \
	do {                                                                   \
		snprintf(what, sizeof what, "%s " #field, g->name);            \
		expect_golden(what, got, g->field, len);                       \
	} while (0)
	GOLD(train_out, out, n);
	GOLD(save_mean, mean, C);
	GOLD(save_invstd, invstd, C);
	GOLD(running_mean, rm, C);
	GOLD(running_var, rv, C);

	const float *x_last = g->x[g->steps - 1];
	nb_batchnorm_backward_train(
	    din, g->gamma ? dgamma : NULL, g->gamma ? dbeta : NULL,
	    g->train_dout, x_last, mean, invstd, g->gamma, g->N, g->C, g->L);
	GOLD(train_din, din, n);
	if (g->gamma) {
		GOLD(train_dgamma, dgamma, C);
		GOLD(train_dbeta, dbeta, C);
	}

	/* Eval with PyTorch's running statistics, so this part does not
	 * depend on the training part above. */
	nb_batchnorm_forward_eval(out, g->eval_x, g->gamma, g->beta,
				  g->running_mean, g->running_var, g->N, g->C,
				  g->L, GL_BN_EPS);
	GOLD(eval_out, out, n);
	memset(din, 0, n * sizeof *din);
	memset(dgamma, 0, C * sizeof *dgamma);
	memset(dbeta, 0, C * sizeof *dbeta);
	nb_batchnorm_backward_eval(din, g->gamma ? dgamma : NULL,
				   g->gamma ? dbeta : NULL, g->eval_dout,
				   g->eval_x, g->gamma, g->running_mean,
				   g->running_var, g->N, g->C, g->L, GL_BN_EPS);
	GOLD(eval_din, din, n);
	if (g->gamma) {
		GOLD(eval_dgamma, dgamma, C);
		GOLD(eval_dbeta, dbeta, C);
	}
#undef GOLD
	free(out);
	free(din);
	free(mean);
	free(invstd);
	free(rm);
	free(rv);
	free(dgamma);
	free(dbeta);
}

static void bn_golden_all(void)
{
	for (size_t i = 0; i < sizeof bn_goldens / sizeof *bn_goldens; i++)
		check_bn_golden(&bn_goldens[i]);
}

/* ==== BatchNorm: gradient checks ========================================= */

typedef struct bn_ctx {
	int N, C, L, train;
	float *x, *gamma, *beta, *out, *r;
	float *rm, *rv; /* eval: the running statistics */
} bn_ctx;

static double bn_loss(void *p)
{
	bn_ctx *b = p;
	size_t n = (size_t)b->N * b->C * b->L;
	if (b->train)
		nb_batchnorm_forward_train(b->out, NULL, NULL, NULL, NULL, b->x,
					   b->gamma, b->beta, b->N, b->C, b->L,
					   0.1f, 1e-5f);
	else
		nb_batchnorm_forward_eval(b->out, b->x, b->gamma, b->beta,
					  b->rm, b->rv, b->N, b->C, b->L,
					  1e-5f);
	return tu_dot(b->r, b->out, n);
}

/* Checks d/dx, d/dgamma, d/dbeta of sum(r * bn(x)) for one shape. */
static void bn_gradcheck(int N, int C, int L, int affine, int train,
			 uint64_t seed)
{
	size_t n = (size_t)N * C * L;
	bn_ctx b = {.N = N,
		    .C = C,
		    .L = L,
		    .train = train,
		    .x = zalloc(n),
		    .out = zalloc(n),
		    .r = zalloc(n),
		    .rm = zalloc(C),
		    .rv = zalloc(C)};
	float *mean = zalloc(C), *invstd = zalloc(C);
	float *din = zalloc(n), *dgamma = zalloc(C), *dbeta = zalloc(C);
	/* channels with different means and spreads */
	tu_fill_normal(b.x, n, 1.0f, seed);
	for (int i = 0; i < N; i++)
		for (int c = 0; c < C; c++)
			for (int l = 0; l < L; l++)
				b.x[((size_t)i * C + c) * L + l] =
				    b.x[((size_t)i * C + c) * L + l] *
					(0.5f + 0.4f * c) +
				    0.3f * c - 0.5f;
	tu_fill_uniform(b.r, n, -1, 1, seed + 1);
	if (affine) {
		b.gamma = zalloc(C);
		b.beta = zalloc(C);
		tu_fill_uniform(b.gamma, C, 0.5f, 1.5f, seed + 2);
		tu_fill_uniform(b.beta, C, -0.5f, 0.5f, seed + 3);
	}
	tu_fill_uniform(b.rm, C, -0.5f, 0.5f, seed + 4);
	tu_fill_uniform(b.rv, C, 0.5f, 2.0f, seed + 5);

	if (train) {
		int rc = nb_batchnorm_forward_train(b.out, mean, invstd, NULL,
						    NULL, b.x, b.gamma, b.beta,
						    N, C, L, 0.1f, 1e-5f);
		CU_ASSERT_EQUAL_FATAL(rc, NB_OK);
		nb_batchnorm_backward_train(din, affine ? dgamma : NULL,
					    affine ? dbeta : NULL, b.r, b.x,
					    mean, invstd, b.gamma, N, C, L);
	} else {
		nb_batchnorm_backward_eval(din, affine ? dgamma : NULL,
					   affine ? dbeta : NULL, b.r, b.x,
					   b.gamma, b.rm, b.rv, N, C, L, 1e-5f);
	}
	char what[96];
	snprintf(what, sizeof what, "bn %s (%d,%d,%d)%s d/dx",
		 train ? "train" : "eval", N, C, L, affine ? "" : " no-affine");
	tu_gradcheck(what, bn_loss, &b, b.x, din, n, FD_POINTS, BN_FD_EPS,
		     FD_ATOL, FD_RTOL);
	if (affine) {
		snprintf(what, sizeof what, "bn %s (%d,%d,%d) d/dgamma",
			 train ? "train" : "eval", N, C, L);
		tu_gradcheck(what, bn_loss, &b, b.gamma, dgamma, C, FD_POINTS,
			     BN_FD_EPS, FD_ATOL, FD_RTOL);
		snprintf(what, sizeof what, "bn %s (%d,%d,%d) d/dbeta",
			 train ? "train" : "eval", N, C, L);
		tu_gradcheck(what, bn_loss, &b, b.beta, dbeta, C, FD_POINTS,
			     BN_FD_EPS, FD_ATOL, FD_RTOL);
	}
	free(b.x);
	free(b.gamma);
	free(b.beta);
	free(b.out);
	free(b.r);
	free(b.rm);
	free(b.rv);
	free(mean);
	free(invstd);
	free(din);
	free(dgamma);
	free(dbeta);
}

/* (N, C, L, affine): 2d planes of odd sizes, 1d with L = 1, N = 1. */
static const int bn_shapes[][4] = {
    {2, 3, 9, 1},  /* 3x3 */
    {3, 2, 35, 1}, /* 5x7 */
    {1, 4, 15, 1}, /* one image, 3x5 */
    {4, 3, 6, 0},  /* affine off */
    {5, 3, 1, 1},  /* BatchNorm1d on (N,C) */
    {7, 2, 1, 0},  /* BatchNorm1d, affine off */
    {2, 2, 1, 1},  /* the smallest legal batch: N*L = 2 */
};

static void bn_train_gradcheck(void)
{
	for (size_t i = 0; i < sizeof bn_shapes / sizeof *bn_shapes; i++)
		bn_gradcheck(bn_shapes[i][0], bn_shapes[i][1], bn_shapes[i][2],
			     bn_shapes[i][3], 1, 100 + i);
}

static void bn_eval_gradcheck(void)
{
	bn_gradcheck(2, 3, 9, 1, 0, 200);
	bn_gradcheck(5, 3, 1, 1, 0, 201);
	bn_gradcheck(3, 2, 4, 0, 0, 202);
}

/* PyTorch: "Expected more than 1 value per channel when training". */
static void bn_single_value_rejected(void)
{
	float x[3] = {1, 2, 3}, out[3], m[3], s[3];
	CU_ASSERT_EQUAL(nb_batchnorm_forward_train(out, m, s, NULL, NULL, x,
						   NULL, NULL, 1, 3, 1, 0.1f,
						   1e-5f),
			NB_EINVAL);
	CU_ASSERT_EQUAL(nb_batchnorm_forward_train(out, m, s, NULL, NULL, x,
						   NULL, NULL, 0, 3, 1, 0.1f,
						   1e-5f),
			NB_EINVAL);
	CU_ASSERT_EQUAL(nb_batchnorm_forward_train(out, m, s, NULL, NULL, x,
						   NULL, NULL, 1, 1, 3, 0.1f,
						   1e-5f),
			NB_OK);
}

/* A constant channel: variance 0, output beta, no NaN, unbiased var 0. */
static void bn_constant_channel(void)
{
	float x[8], out[8], m[1], s[1], rm[1] = {0}, rv[1] = {1};
	float g[1] = {2}, b[1] = {0.25f};
	for (int i = 0; i < 8; i++)
		x[i] = 3.5f;
	CU_ASSERT_EQUAL_FATAL(nb_batchnorm_forward_train(out, m, s, rm, rv, x,
							 g, b, 2, 1, 4, 0.1f,
							 1e-5f),
			      NB_OK);
	for (int i = 0; i < 8; i++)
		CU_ASSERT_DOUBLE_EQUAL(out[i], 0.25, 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(m[0], 3.5, 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(s[0], 1 / sqrt(1e-5), 1e-2);
	CU_ASSERT_DOUBLE_EQUAL(rm[0], 0.35, 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(rv[0], 0.9, 1e-6);
}

/* Backward adds to what is there, and skips NULL gradients. */
static void bn_backward_accumulates(void)
{
	enum { N = 3, C = 2, L = 5, n = N * C * L };
	float x[n], dy[n], out[n], m[C], s[C], g[C] = {1.5f, 0.5f};
	float d1[n] = {0}, d2[n], dg1[C] = {0}, dg2[C], db1[C] = {0}, db2[C];
	tu_fill_normal(x, n, 1, 300);
	tu_fill_normal(dy, n, 1, 301);
	nb_batchnorm_forward_train(out, m, s, NULL, NULL, x, g, NULL, N, C, L,
				   0.1f, 1e-5f);
	nb_batchnorm_backward_train(d1, dg1, db1, dy, x, m, s, g, N, C, L);
	for (int i = 0; i < n; i++)
		d2[i] = 1.0f;
	for (int c = 0; c < C; c++)
		dg2[c] = db2[c] = -2.0f;
	nb_batchnorm_backward_train(d2, dg2, db2, dy, x, m, s, g, N, C, L);
	for (int i = 0; i < n; i++)
		CU_ASSERT_DOUBLE_EQUAL(d2[i], 1.0 + d1[i], 1e-6);
	for (int c = 0; c < C; c++) {
		CU_ASSERT_DOUBLE_EQUAL(dg2[c], -2.0 + dg1[c], 1e-6);
		CU_ASSERT_DOUBLE_EQUAL(db2[c], -2.0 + db1[c], 1e-6);
	}
	/* NULL everywhere: nothing to do, nothing to crash on */
	nb_batchnorm_backward_train(NULL, NULL, NULL, dy, x, m, s, g, N, C, L);
	nb_batchnorm_backward_eval(NULL, NULL, NULL, dy, x, g, m, s, N, C, L,
				   1e-5f);
	/* only dgamma: the same value as when everything is asked for */
	float dg3[C] = {0};
	nb_batchnorm_backward_train(NULL, dg3, NULL, dy, x, m, s, g, N, C, L);
	for (int c = 0; c < C; c++)
		CU_ASSERT_EQUAL(dg3[c], dg1[c]);
	/* _store writes din (NaN before) with the values added to zeros
	 * above, and still adds to dgamma and dbeta */
	float d4[n], dg4[C], db4[C];
	for (int i = 0; i < n; i++)
		d4[i] = NAN;
	for (int c = 0; c < C; c++)
		dg4[c] = db4[c] = -2.0f;
	nb_batchnorm_backward_train_store(d4, dg4, db4, dy, x, m, s, g, N, C,
					  L);
	for (int i = 0; i < n; i++)
		CU_ASSERT_EQUAL(d4[i], d1[i]);
	for (int c = 0; c < C; c++) {
		CU_ASSERT_EQUAL(dg4[c], dg2[c]);
		CU_ASSERT_EQUAL(db4[c], db2[c]);
	}
}

/* One-pass shifted statistics against a two-pass long double reference on
 * channels made to cancel: mean 1e4 with std 0.01, an outlier as the first
 * element (the shift), and a plain one; mean and 1/std within float
 * rounding. */
static void bn_shifted_stats_precision(void)
{
	enum { N = 4, C = 3, L = 257 };
	const size_t n = (size_t)N * C * L;
	float *x = zalloc(n), *out = zalloc(n);
	tu_fill_normal(x, n, 1, 420);
	for (int i = 0; i < N; i++)
		for (int l = 0; l < L; l++) {
			float *p = x + ((size_t)i * C) * L + l;
			p[0] = 1e4f + 0.01f * p[0]; /* channel 0 */
			p[L] = 3.0f * p[L];	    /* channel 1 */
		}
	x[L] = 5000.0f; /* channel 1's first element: far from its mean */
	float m[C], s[C];
	CU_ASSERT_EQUAL_FATAL(nb_batchnorm_forward_train(out, m, s, NULL, NULL,
							 x, NULL, NULL, N, C, L,
							 0.1f, 1e-5f),
			      NB_OK);
	for (int c = 0; c < C; c++) {
		long double sum = 0, sq = 0;
		for (int i = 0; i < N; i++)
			for (int l = 0; l < L; l++)
				sum += x[((size_t)i * C + c) * L + l];
		const long double mean = sum / (N * L);
		for (int i = 0; i < N; i++)
			for (int l = 0; l < L; l++) {
				long double d =
				    x[((size_t)i * C + c) * L + l] - mean;
				sq += d * d;
			}
		const long double invstd = 1.0L / sqrtl(sq / (N * L) + 1e-5L);
		CU_ASSERT(fabsl(m[c] - mean) <= 1e-6L * fabsl(mean) + 1e-12L);
		CU_ASSERT(fabsl(s[c] - invstd) <= 2e-7L * invstd);
	}
	free(x);
	free(out);
}

/* The passes sweep blocks of channels image by image: 130 channels (two
 * whole blocks and a short one, split over 3 threads) give every channel
 * the bits it gets alone (C = 1), forward, backward and evaluation. */
static void bn_blocks_match_single_channels(void)
{
	enum { N = 3, C = 130, L = 19 };
	const size_t n = (size_t)N * C * L;
	float *x = zalloc(n), *dy = zalloc(n), *out = zalloc(n),
	      *din = zalloc(n), *eout = zalloc(n), *edin = zalloc(n);
	float m[C], s[C], rm[C], rv[C], gm[C], bt[C], dg[C] = {0}, db[C] = {0};
	tu_fill_normal(x, n, 2, 410);
	tu_fill_normal(dy, n, 1, 411);
	tu_fill_uniform(gm, C, 0.5f, 1.5f, 412);
	tu_fill_uniform(bt, C, -0.5f, 0.5f, 413);
	for (int c = 0; c < C; c++) {
		rm[c] = c / 128.0f; /* exact: no rounding to differ in */
		rv[c] = 1.0f + c / 64.0f;
	}
	int keep = omp_get_max_threads();
	omp_set_num_threads(3);
	nb_batchnorm_relu_forward_train(out, m, s, NULL, rm, rv, x, gm, bt, N,
					C, L, 0.1f, 1e-5f);
	nb_batchnorm_backward_train(din, dg, db, dy, x, m, s, gm, N, C, L);
	nb_batchnorm_forward_eval(eout, x, gm, bt, rm, rv, N, C, L, 1e-5f);
	nb_batchnorm_backward_eval(edin, NULL, NULL, dy, x, gm, rm, rv, N, C, L,
				   1e-5f);
	omp_set_num_threads(keep);
	size_t bad = 0;
	for (int c = 0; c < C; c++) {
		float x1[N * L], dy1[N * L], o1[N * L],
		    d1[N * L] = {0}, eo1[N * L], ed1[N * L] = {0};
		float m1, s1, rm1 = c / 128.0f, rv1 = 1.0f + c / 64.0f, dg1 = 0,
			      db1 = 0;
		for (int i = 0; i < N; i++) {
			memcpy(x1 + i * L, x + ((size_t)i * C + c) * L,
			       L * sizeof(float));
			memcpy(dy1 + i * L, dy + ((size_t)i * C + c) * L,
			       L * sizeof(float));
		}
		nb_batchnorm_relu_forward_train(o1, &m1, &s1, NULL, &rm1, &rv1,
						x1, &gm[c], &bt[c], N, 1, L,
						0.1f, 1e-5f);
		nb_batchnorm_backward_train(d1, &dg1, &db1, dy1, x1, &m1, &s1,
					    &gm[c], N, 1, L);
		nb_batchnorm_forward_eval(eo1, x1, &gm[c], &bt[c], &rm1, &rv1,
					  N, 1, L, 1e-5f);
		nb_batchnorm_backward_eval(ed1, NULL, NULL, dy1, x1, &gm[c],
					   &rm1, &rv1, N, 1, L, 1e-5f);
		bad += m1 != m[c] || s1 != s[c] || rm1 != rm[c] ||
		       rv1 != rv[c] || dg1 != dg[c] || db1 != db[c];
		for (int i = 0; i < N; i++)
			for (int l = 0; l < L; l++) {
				size_t at = ((size_t)i * C + c) * L + l;
				bad += o1[i * L + l] != out[at] ||
				       d1[i * L + l] != din[at] ||
				       eo1[i * L + l] != eout[at] ||
				       ed1[i * L + l] != edin[at];
			}
	}
	CU_ASSERT_EQUAL(bad, 0);
	free(x);
	free(dy);
	free(out);
	free(din);
	free(eout);
	free(edin);
}

/*
 * Large enough to run in parallel: 1 thread and many give the same bits,
 * forward and backward, with and without the fused ReLU. 37 images make
 * slices of 2 and 3 images that 3 threads take unevenly; 70 channels are
 * a whole block and a short one.
 */
static void bn_thread_independent(void)
{
	enum { N = 37, C = 70, L = 16 * 16 };
	const size_t n = (size_t)N * C * L;
	float *x = zalloc(n), *dy = zalloc(n);
	float *o[2], *d[2], *dr[2], *dyr[2];
	float m[2][C], s[2][C], rm[2][C], rv[2][C], g[2][C], b[2][C],
	    aff[2][4 * C], gm[C], bt[C];
	tu_fill_normal(x, n, 2, 400);
	tu_fill_normal(dy, n, 1, 401);
	tu_fill_uniform(gm, C, 0.5f, 1.5f, 402);
	tu_fill_uniform(bt, C, -0.5f, 0.5f, 403);
	int keep = omp_get_max_threads();
	for (int k = 0; k < 2; k++) {
		o[k] = zalloc(n);
		d[k] = zalloc(n);
		dr[k] = zalloc(n);
		dyr[k] = zalloc(n);
		memcpy(dyr[k], dy, n * sizeof *dy);
		for (int c = 0; c < C; c++) {
			rm[k][c] = 0;
			rv[k][c] = 1;
			g[k][c] = b[k][c] = 0;
		}
		omp_set_num_threads(k ? 3 : 1);
		nb_batchnorm_forward_train(o[k], m[k], s[k], rm[k], rv[k], x,
					   NULL, NULL, N, C, L, 0.1f, 1e-5f);
		nb_batchnorm_backward_train(d[k], g[k], NULL, dy, x, m[k], s[k],
					    NULL, N, C, L);
		nb_batchnorm_relu_forward_train(o[k], m[k], s[k], aff[k], rm[k],
						rv[k], x, gm, bt, N, C, L, 0.1f,
						1e-5f);
		nb_batchnorm_relu_backward_train(dr[k], g[k], b[k], dyr[k], x,
						 m[k], s[k], aff[k], gm, N, C,
						 L, 1);
	}
	omp_set_num_threads(keep);
	CU_ASSERT(memcmp(o[0], o[1], n * sizeof *x) == 0);
	CU_ASSERT(memcmp(d[0], d[1], n * sizeof *x) == 0);
	CU_ASSERT(memcmp(dr[0], dr[1], n * sizeof *x) == 0);
	CU_ASSERT(memcmp(dyr[0], dyr[1], n * sizeof *x) == 0);
	CU_ASSERT(memcmp(m[0], m[1], sizeof m[0]) == 0);
	CU_ASSERT(memcmp(s[0], s[1], sizeof s[0]) == 0);
	CU_ASSERT(memcmp(rm[0], rm[1], sizeof rm[0]) == 0);
	CU_ASSERT(memcmp(rv[0], rv[1], sizeof rv[0]) == 0);
	CU_ASSERT(memcmp(g[0], g[1], sizeof g[0]) == 0);
	CU_ASSERT(memcmp(b[0], b[1], sizeof b[0]) == 0);
	CU_ASSERT(memcmp(aff[0], aff[1], sizeof aff[0]) == 0);
	free(x);
	free(dy);
	for (int k = 0; k < 2; k++) {
		free(o[k]);
		free(d[k]);
		free(dr[k]);
		free(dyr[k]);
	}
}

/* ==== activations ======================================================= */

enum act_kind { ACT_RELU, ACT_RELU6, ACT_LEAKY, ACT_TANH };

static void act_forward(enum act_kind k, float *out, const float *in, size_t n)
{
	switch (k) {
	case ACT_RELU:
		nb_relu_forward(out, in, n);
		break;
	case ACT_RELU6:
		nb_relu6_forward(out, in, n);
		break;
	case ACT_LEAKY:
		nb_leaky_relu_forward(out, in, n, GL_LEAKY_SLOPE);
		break;
	case ACT_TANH:
		nb_tanh_forward(out, in, n);
		break;
	}
}

/* tanh's backward takes the forward output, the others the input. */
static void act_backward(enum act_kind k, float *din, const float *dout,
			 const float *in, const float *out, size_t n)
{
	switch (k) {
	case ACT_RELU:
		nb_relu_backward(din, dout, in, n);
		break;
	case ACT_RELU6:
		nb_relu6_backward(din, dout, in, n);
		break;
	case ACT_LEAKY:
		nb_leaky_relu_backward(din, dout, in, n, GL_LEAKY_SLOPE);
		break;
	case ACT_TANH:
		nb_tanh_backward(din, dout, out, n);
		break;
	}
}

static const struct {
	const char *name;
	enum act_kind kind;
	const float *gold_out, *gold_din;
} act_table[] = {
    {"relu", ACT_RELU, gl_relu_out, gl_relu_din},
    {"relu6", ACT_RELU6, gl_relu6_out, gl_relu6_din},
    {"leaky relu", ACT_LEAKY, gl_leaky_out, gl_leaky_din},
    {"tanh", ACT_TANH, gl_tanh_out, gl_tanh_din},
};
#define N_ACT (sizeof act_table / sizeof *act_table)

/* Includes the exact kinks 0 and 6: PyTorch's subgradients there. */
static void act_golden(void)
{
	enum { n = GL_ACT_N };
	float out[n], din[n];
	char what[64];
	for (size_t a = 0; a < N_ACT; a++) {
		act_forward(act_table[a].kind, out, gl_act_x, n);
		snprintf(what, sizeof what, "%s forward", act_table[a].name);
		expect_golden(what, out, act_table[a].gold_out, n);
		memset(din, 0, sizeof din);
		act_backward(act_table[a].kind, din, gl_act_dout, gl_act_x, out,
			     n);
		snprintf(what, sizeof what, "%s backward", act_table[a].name);
		expect_golden(what, din, act_table[a].gold_din, n);
	}
}

typedef struct act_ctx {
	enum act_kind kind;
	float *x, *out, *r;
	size_t n;
} act_ctx;

static double act_loss(void *p)
{
	act_ctx *a = p;
	act_forward(a->kind, a->out, a->x, a->n);
	return tu_dot(a->r, a->out, a->n);
}

static void act_gradcheck(void)
{
	const float kinks[] = {0.0f, 6.0f};
	enum { n = 400 };
	for (size_t k = 0; k < N_ACT; k++) {
		float x[n], out[n], r[n], din[n];
		act_ctx a = {.kind = act_table[k].kind,
			     .x = x,
			     .out = out,
			     .r = r,
			     .n = n};
		tu_fill_uniform(x, n, -4, 9, 500 + k);
		/* twice the FD step, so no probe crosses a kink */
		tu_push_away(x, n, kinks, 2, 2 * (float)FD_EPS);
		tu_fill_uniform(r, n, -1, 1, 510 + k);
		act_forward(a.kind, out, x, n);
		for (size_t i = 0; i < n; i++)
			din[i] = 0.25f; /* backward must add to this */
		act_backward(a.kind, din, r, x, out, n);
		for (size_t i = 0; i < n; i++)
			din[i] -= 0.25f;
		tu_gradcheck(act_table[k].name, act_loss, &a, x, din, n, n,
			     FD_EPS, FD_ATOL, FD_RTOL);
	}
}

/* Large n runs in parallel; compare with a serial loop of the same ops. */
static void act_large_matches_small(void)
{
	size_t n = 200003, chunk = 1000;
	float *x = zalloc(n), *big = zalloc(n), *small = zalloc(n);
	tu_fill_uniform(x, n, -8, 8, 520);
	for (size_t k = 0; k < N_ACT; k++) {
		act_forward(act_table[k].kind, big, x, n);
		for (size_t i = 0; i < n; i += chunk)
			act_forward(act_table[k].kind, small + i, x + i,
				    i + chunk <= n ? chunk : n - i);
		CU_ASSERT(memcmp(big, small, n * sizeof *big) == 0);
	}
	free(x);
	free(big);
	free(small);
}

static void act_nan_propagates(void)
{
	float x[1] = {NAN}, y[1];
	for (size_t k = 0; k < N_ACT; k++) {
		act_forward(act_table[k].kind, y, x, 1);
		CU_ASSERT(isnan(y[0]));
	}
}

/* ==== structure ops ===================================================== */

/* A generic linear op under test: forward from ctx->in[] into ctx->out. */
typedef struct lin_ctx {
	void (*forward)(struct lin_ctx *);
	float *in[3];
	float *out, *r;
	size_t n_out;
	int N, C, L, H, W, arg; /* arg: groups, scale, start... */
	int Cs[3], len;
} lin_ctx;

static double lin_loss(void *p)
{
	lin_ctx *c = p;
	c->forward(c);
	return tu_dot(c->r, c->out, c->n_out);
}

/* Linear ops: the FD is exact up to rounding, so tolerances are tight. */
static void lin_check(const char *what, lin_ctx *c, float *x, const float *grad,
		      size_t n)
{
	tu_gradcheck(what, lin_loss, c, x, grad, n, FD_POINTS, FD_EPS, 1e-4,
		     1e-4);
}

static void add_fwd(lin_ctx *c)
{
	nb_add_forward(c->out, c->in[0], c->in[1], c->n_out);
}

static void add_gradcheck(void)
{
	enum { n = 57 };
	float a[n], b[n], out[n], r[n], da[n], db[n];
	lin_ctx c = {
	    .forward = add_fwd, .in = {a, b}, .out = out, .r = r, .n_out = n};
	tu_fill_normal(a, n, 1, 600);
	tu_fill_normal(b, n, 1, 601);
	tu_fill_uniform(r, n, -1, 1, 602);
	memset(da, 0, sizeof da);
	memset(db, 0, sizeof db);
	nb_add_backward(da, db, r, n);
	lin_check("add d/da", &c, a, da, n);
	lin_check("add d/db", &c, b, db, n);
	/* x + x: one buffer gets both contributions */
	memset(da, 0, sizeof da);
	nb_add_backward(da, da, r, n);
	for (int i = 0; i < n; i++)
		CU_ASSERT_EQUAL(da[i], 2 * r[i]);
	nb_add_backward(NULL, NULL, r, n); /* both frozen */
}

static void concat_fwd(lin_ctx *c)
{
	const float *in[3] = {c->in[0], c->in[1], c->in[2]};
	nb_concat_forward(c->out, in, c->Cs, 3, c->N, c->L);
}

static void concat_gradcheck(void)
{
	enum { N = 2, L = 6 };
	int Cs[3] = {1, 3, 2};
	size_t n_out = (size_t)N * 6 * L;
	lin_ctx c = {.forward = concat_fwd,
		     .out = zalloc(n_out),
		     .r = zalloc(n_out),
		     .n_out = n_out,
		     .N = N,
		     .L = L,
		     .Cs = {Cs[0], Cs[1], Cs[2]}};
	float *din[3];
	for (int k = 0; k < 3; k++) {
		c.in[k] = zalloc((size_t)N * Cs[k] * L);
		din[k] = zalloc((size_t)N * Cs[k] * L);
		tu_fill_normal(c.in[k], (size_t)N * Cs[k] * L, 1, 610 + k);
	}
	tu_fill_uniform(c.r, n_out, -1, 1, 615);
	concat_fwd(&c);
	/* spot check the layout: image 1, channel 4 is input 2's channel 0 */
	CU_ASSERT_EQUAL(c.out[(1 * 6 + 4) * L + 3],
			c.in[2][(1 * 2 + 0) * L + 3]);
	/* the middle input frozen: its gradient is skipped */
	float *const skip_mid[3] = {din[0], NULL, din[2]};
	nb_concat_backward(skip_mid, c.r, Cs, 3, N, L);
	nb_concat_backward((float *const[]){NULL, din[1], NULL}, c.r, Cs, 3, N,
			   L);
	char what[32];
	for (int k = 0; k < 3; k++) {
		snprintf(what, sizeof what, "concat d/din[%d]", k);
		lin_check(what, &c, c.in[k], din[k], (size_t)N * Cs[k] * L);
	}
	for (int k = 0; k < 3; k++) { /* every forward reads all three */
		free(c.in[k]);
		free(din[k]);
	}
	free(c.out);
	free(c.r);
}

static void slice_fwd(lin_ctx *c)
{
	nb_channel_slice_forward(c->out, c->in[0], c->N, c->C, c->L, c->arg,
				 c->len);
}

static void slice_gradcheck(void)
{
	enum { N = 3, C = 5, L = 4, start = 1, len = 3 };
	enum { n = N * C * L, n_out = N * len * L };
	float x[n], out[n_out], r[n_out], din[n];
	lin_ctx c = {.forward = slice_fwd,
		     .in = {x},
		     .out = out,
		     .r = r,
		     .n_out = n_out,
		     .N = N,
		     .C = C,
		     .L = L,
		     .arg = start,
		     .len = len};
	tu_fill_normal(x, n, 1, 620);
	tu_fill_uniform(r, n_out, -1, 1, 621);
	memset(din, 0, sizeof din);
	nb_channel_slice_backward(din, r, N, C, L, start, len);
	lin_check("slice d/din", &c, x, din, n);
	/* channels outside the slice get exactly nothing */
	for (int i = 0; i < N; i++)
		for (int l = 0; l < L; l++) {
			CU_ASSERT_EQUAL(din[(i * C + 0) * L + l], 0.0f);
			CU_ASSERT_EQUAL(din[(i * C + 4) * L + l], 0.0f);
		}
}

/* Split into two slices and concatenate them again: the identity. */
static void slice_concat_roundtrip(void)
{
	enum { N = 2, C = 7, L = 3, a = 3 };
	float x[N * C * L], lo[N * a * L], hi[N * (C - a) * L], y[N * C * L];
	tu_fill_normal(x, N * C * L, 1, 630);
	nb_channel_slice_forward(lo, x, N, C, L, 0, a);
	nb_channel_slice_forward(hi, x, N, C, L, a, C - a);
	const float *parts[2] = {lo, hi};
	int Cs[2] = {a, C - a};
	nb_concat_forward(y, parts, Cs, 2, N, L);
	CU_ASSERT(memcmp(x, y, sizeof x) == 0);
}

static void shuffle_fwd(lin_ctx *c)
{
	nb_channel_shuffle_forward(c->out, c->in[0], c->N, c->C, c->L, c->arg);
}

static void shuffle_gradcheck(void)
{
	enum { N = 2, C = 12, L = 5, n = N * C * L };
	for (int groups = 2; groups <= 3; groups++) {
		float x[n], out[n], r[n], din[n];
		lin_ctx c = {.forward = shuffle_fwd,
			     .in = {x},
			     .out = out,
			     .r = r,
			     .n_out = n,
			     .N = N,
			     .C = C,
			     .L = L,
			     .arg = groups};
		tu_fill_normal(x, n, 1, 640 + groups);
		tu_fill_uniform(r, n, -1, 1, 645 + groups);
		memset(din, 0, sizeof din);
		nb_channel_shuffle_backward(din, r, N, C, L, groups);
		lin_check(groups == 2 ? "shuffle g=2" : "shuffle g=3", &c, x,
			  din, n);
	}
}

static void shuffle_golden(void)
{
	enum { n = GL_SHUF_N * GL_SHUF_C * GL_SHUF_L };
	float out[n];
	nb_channel_shuffle_forward(out, gl_shuf_x, GL_SHUF_N, GL_SHUF_C,
				   GL_SHUF_L, 2);
	expect_golden("shuffle g=2", out, gl_shuf_g2_out, n);
	nb_channel_shuffle_forward(out, gl_shuf_x, GL_SHUF_N, GL_SHUF_C,
				   GL_SHUF_L, 3);
	expect_golden("shuffle g=3", out, gl_shuf_g3_out, n);
}

static void up_fwd(lin_ctx *c)
{
	nb_upsample_nearest_forward(c->out, c->in[0], c->N, c->C, c->H, c->W,
				    c->arg);
}

static void upsample_gradcheck(void)
{
	enum { N = 2, C = 3, H = 3, W = 5, n = N * C * H * W };
	for (int s = 2; s <= 3; s++) {
		size_t n_out = (size_t)n * s * s;
		float x[n], din[n];
		lin_ctx c = {.forward = up_fwd,
			     .in = {x},
			     .out = zalloc(n_out),
			     .r = zalloc(n_out),
			     .n_out = n_out,
			     .N = N,
			     .C = C,
			     .H = H,
			     .W = W,
			     .arg = s};
		tu_fill_normal(x, n, 1, 650 + s);
		tu_fill_uniform(c.r, n_out, -1, 1, 655 + s);
		memset(din, 0, sizeof din);
		nb_upsample_nearest_backward(din, c.r, N, C, H, W, s);
		lin_check(s == 2 ? "upsample x2" : "upsample x3", &c, x, din,
			  n);
		free(c.out);
		free(c.r);
	}
}

static void upsample_golden(void)
{
	enum { n = GL_UP_N * GL_UP_C * GL_UP_H * GL_UP_W };
	float out2[n * 4], out3[n * 9];
	nb_upsample_nearest_forward(out2, gl_up_x, GL_UP_N, GL_UP_C, GL_UP_H,
				    GL_UP_W, 2);
	expect_golden("upsample x2", out2, gl_up_s2_out, n * 4);
	nb_upsample_nearest_forward(out3, gl_up_x, GL_UP_N, GL_UP_C, GL_UP_H,
				    GL_UP_W, 3);
	expect_golden("upsample x3", out3, gl_up_s3_out, n * 9);
}

/* ==== dropout =========================================================== */

static void dropout_fixed_mask_gradcheck(void)
{
	enum { n = 64 };
	float x[n], mask[n], out[n], r[n], din[n];
	tu_fill_normal(x, n, 1, 700);
	tu_fill_uniform(r, n, -1, 1, 701);
	nb_rng rng;
	nb_rng_seed(&rng, 5, NB_RNG_DROPOUT);
	nb_dropout_forward(out, mask, x, n, 0.3f, &rng);
	for (int i = 0; i < n; i++)
		din[i] = 1.0f;
	nb_dropout_backward(din, r, mask, n);
	/* with the mask fixed, out = mask * x: d loss / dx = r * mask */
	for (int i = 0; i < n; i++) {
		CU_ASSERT_EQUAL(out[i], x[i] * mask[i]);
		CU_ASSERT_EQUAL(din[i], 1.0f + r[i] * mask[i]);
	}
	nb_dropout_backward(din, r, mask, 0); /* n = 0 is a no-op */
}

static void dropout_statistics(void)
{
	size_t n = 100000;
	float *x = zalloc(n), *y = zalloc(n), *m1 = zalloc(n), *m2 = zalloc(n),
	      *m3 = zalloc(n);
	for (size_t i = 0; i < n; i++)
		x[i] = 1.0f + (float)(i % 7);
	nb_rng a, b, c;
	nb_rng_seed(&a, 11, NB_RNG_DROPOUT);
	nb_rng_seed(&b, 11, NB_RNG_DROPOUT);
	nb_rng_seed(&c, 12, NB_RNG_DROPOUT);
	nb_dropout_forward(y, m1, x, n, 0.5f, &a);
	size_t kept = 0, bad = 0;
	for (size_t i = 0; i < n; i++) {
		if (m1[i] != 0.0f) {
			kept++;
			bad += m1[i] != 2.0f || y[i] != 2.0f * x[i];
		} else {
			bad += y[i] != 0.0f;
		}
	}
	CU_ASSERT_EQUAL(bad, 0);
	/* binomial sd is sqrt(n)/2 ~ 158: 5 sd */
	CU_ASSERT(labs((long)kept - (long)(n / 2)) < 800);
	/* the same seed reproduces the mask, with any thread count */
	int keep = omp_get_max_threads();
	omp_set_num_threads(1);
	nb_dropout_forward(y, m2, x, n, 0.5f, &b);
	omp_set_num_threads(keep);
	CU_ASSERT(memcmp(m1, m2, n * sizeof *m1) == 0);
	/* another seed does not */
	nb_dropout_forward(y, m3, x, n, 0.5f, &c);
	CU_ASSERT(memcmp(m1, m3, n * sizeof *m1) != 0);
	/* p = 0.2: keep 80% and scale by 1.25 */
	nb_dropout_forward(y, m3, x, n, 0.2f, &c);
	kept = 0;
	for (size_t i = 0; i < n; i++)
		kept += m3[i] != 0.0f;
	CU_ASSERT(labs((long)kept - 80000) < 700);
	for (size_t i = 0; i < n; i++)
		if (m3[i] != 0.0f) {
			CU_ASSERT_DOUBLE_EQUAL(m3[i], 1.25, 1e-7);
			break;
		}
	free(x);
	free(y);
	free(m1);
	free(m2);
	free(m3);
}

static void dropout_edge_p(void)
{
	enum { n = 10 };
	float x[n], y[n], m[n];
	tu_fill_normal(x, n, 1, 710);
	nb_rng r, ref;
	nb_rng_seed(&r, 3, NB_RNG_DROPOUT);
	ref = r;
	nb_dropout_forward(y, m, x, n, 0.0f, &r);
	CU_ASSERT(memcmp(x, y, sizeof x) == 0);
	for (int i = 0; i < n; i++)
		CU_ASSERT_EQUAL(m[i], 1.0f);
	nb_dropout_forward(y, m, x, n, 1.0f, &r);
	for (int i = 0; i < n; i++) {
		CU_ASSERT_EQUAL(y[i], 0.0f);
		CU_ASSERT_EQUAL(m[i], 0.0f);
	}
	/* neither edge consumes random numbers */
	CU_ASSERT_EQUAL(nb_rng_u64(&r), nb_rng_u64(&ref));
}

/* The fused activations' ops: ReLU (relu6 = 0) or ReLU6 */
typedef struct bn_act_ops {
	void (*act)(float *, const float *, size_t);
	void (*act_backward)(float *, const float *, const float *, size_t);
	int (*train)(float *, float *, float *, float *, float *, float *,
		     const float *, const float *, const float *, int, int, int,
		     float, float);
	void (*eval)(float *, const float *, const float *, const float *,
		     const float *, const float *, int, int, int, float);
	void (*backward)(float *, float *, float *, float *, const float *,
			 const float *, const float *, const float *,
			 const float *, int, int, int, int);
	float gscale; /* gamma's scale: ReLU6 needs outputs past 6 */
} bn_act_ops;

static bn_act_ops act_ops(int relu6)
{
	bn_act_ops o = {nb_relu_forward,
			nb_relu_backward,
			nb_batchnorm_relu_forward_train,
			nb_batchnorm_relu_forward_eval,
			nb_batchnorm_relu_backward_train,
			1.0f};
	if (relu6) {
		o.act = nb_relu6_forward;
		o.act_backward = nb_relu6_backward;
		o.train = nb_batchnorm_relu6_forward_train;
		o.eval = nb_batchnorm_relu6_forward_eval;
		o.backward = nb_batchnorm_relu6_backward_train;
		o.gscale = 8.0f;
	}
	return o;
}

/* outputs at 0 and (ReLU6) at 6: both between 1/20 and 3/4 of n */
static void assert_act_clamps(const float *y, size_t n, int relu6)
{
	size_t zeros = 0, sixes = 0;
	for (size_t i = 0; i < n; i++) {
		zeros += y[i] == 0.0f;
		sixes += y[i] == 6.0f;
	}
	CU_ASSERT(zeros > n / 20 && zeros < 3 * n / 4);
	if (relu6)
		CU_ASSERT(sixes > n / 20 && sixes < 3 * n / 4);
}

/* BatchNorm + ReLU (ReLU6) in one pass against its twin, BatchNorm then
 * the activation: the same bits in both modes, running statistics
 * included. */
static void bn_act_fused_matches_twin(int relu6)
{
	const bn_act_ops o = act_ops(relu6);
	const int N = 3, C = 5, L = 37; /* L: not a whole vector */
	const size_t n = (size_t)N * C * L;
	float *x = malloc(n * sizeof(float)), *a = malloc(n * sizeof(float)),
	      *b = malloc(n * sizeof(float));
	float g[5], be[5], rm[2][5], rv[2][5], sm[2][5], si[2][5];
	CU_ASSERT_FATAL(x && a && b);
	tu_fill_normal(x, n, 2.0f, 901);
	tu_fill_uniform(g, C, 0.5f, 1.5f, 902);
	tu_fill_uniform(be, C, -0.5f, 0.5f, 903);
	for (int c = 0; c < C; c++)
		g[c] *= o.gscale;
	for (int k = 0; k < 2; k++)
		for (int c = 0; c < C; c++) {
			rm[k][c] = 0.1f * c;
			rv[k][c] = 1.0f + 0.2f * c;
		}
	CU_ASSERT_EQUAL(nb_batchnorm_forward_train(a, sm[0], si[0], rm[0],
						   rv[0], x, g, be, N, C, L,
						   0.1f, 1e-5f),
			0);
	o.act(a, a, n);
	CU_ASSERT_EQUAL(o.train(b, sm[1], si[1], NULL, rm[1], rv[1], x, g, be,
				N, C, L, 0.1f, 1e-5f),
			0);
	CU_ASSERT_EQUAL(memcmp(a, b, n * sizeof(float)), 0);
	CU_ASSERT_EQUAL(memcmp(sm[0], sm[1], sizeof sm[0]), 0);
	CU_ASSERT_EQUAL(memcmp(si[0], si[1], sizeof si[0]), 0);
	CU_ASSERT_EQUAL(memcmp(rm[0], rm[1], sizeof rm[0]), 0);
	CU_ASSERT_EQUAL(memcmp(rv[0], rv[1], sizeof rv[0]), 0);
	assert_act_clamps(b, n, relu6); /* the activation did act */
	nb_batchnorm_forward_eval(a, x, g, be, rm[0], rv[0], N, C, L, 1e-5f);
	o.act(a, a, n);
	o.eval(b, x, g, be, rm[0], rv[0], N, C, L, 1e-5f);
	CU_ASSERT_EQUAL(memcmp(a, b, n * sizeof(float)), 0);
	assert_act_clamps(b, n, relu6);
	free(x);
	free(a);
	free(b);
}

static void bn_relu_fused_matches_twin(void)
{
	bn_act_fused_matches_twin(0);
}

static void bn_relu6_fused_matches_twin(void)
{
	bn_act_fused_matches_twin(1);
}

/* The BatchNorm + ReLU (ReLU6) backward, masking in its first pass, against
 * its twin: the activation's backward into a zeroed buffer, then the
 * BatchNorm's. Same bits for din (added to and stored), dgamma, dbeta and
 * the masked gradient left in dout, at 1 and 3 threads; one channel has
 * gamma = beta = 0 (every output 0: all masked), one a mean far from 0. */
static void bn_act_backward_matches_twin(int relu6)
{
	const bn_act_ops o = act_ops(relu6);
	enum { N = 4, C = 6, L = 37 };
	const size_t n = (size_t)N * C * L;
	float *x = zalloc(n), *dy = zalloc(n), *out = zalloc(n),
	      *masked = zalloc(n), *work = zalloc(n);
	float *d[2][2]; /* [twin, fused][add, store] */
	float g[C], be[C], m[C], s[C], aff[4 * C], dg[2][C], db[2][C];
	tu_fill_normal(x, n, 2.0f, 930);
	tu_fill_normal(dy, n, 1.0f, 931);
	tu_fill_uniform(g, C, 0.5f, 1.5f, 932);
	tu_fill_uniform(be, C, -0.5f, 0.5f, 933);
	for (int c = 0; c < C; c++)
		g[c] *= o.gscale;
	g[2] = be[2] = 0.0f;
	for (int i = 0; i < N; i++)
		for (int l = 0; l < L; l++)
			x[((size_t)i * C + 4) * L + l] += 300.0f;
	dy[5] = -0.0f;
	for (int k = 0; k < 2; k++)
		for (int st = 0; st < 2; st++)
			d[k][st] = zalloc(n);
	const int keep = omp_get_max_threads();
	for (int threads = 1; threads <= 3; threads += 2) {
		omp_set_num_threads(threads);
		CU_ASSERT_EQUAL_FATAL(o.train(out, m, s, aff, NULL, NULL, x, g,
					      be, N, C, L, 0.1f, 1e-5f),
				      NB_OK);
		memset(masked, 0, n * sizeof(float));
		o.act_backward(masked, dy, out, n);
		assert_act_clamps(out, n, relu6);
		for (int k = 0; k < 2; k++) {
			for (int c = 0; c < C; c++)
				dg[k][c] = db[k][c] = 0.25f;
			for (size_t i = 0; i < n; i++)
				d[k][0][i] = 1.0f, d[k][1][i] = NAN;
		}
		nb_batchnorm_backward_train(d[0][0], dg[0], db[0], masked, x, m,
					    s, g, N, C, L);
		nb_batchnorm_backward_train_store(d[0][1], dg[0], db[0], masked,
						  x, m, s, g, N, C, L);
		for (int st = 0; st < 2; st++) {
			/* dout is overwritten with the masked gradient */
			memcpy(work, dy, n * sizeof(float));
			o.backward(d[1][st], dg[1], db[1], work, x, m, s, aff,
				   g, N, C, L, st);
			CU_ASSERT_EQUAL(
			    memcmp(d[0][st], d[1][st], n * sizeof(float)), 0);
			CU_ASSERT_EQUAL(memcmp(work, masked, n * sizeof(float)),
					0);
		}
		CU_ASSERT_EQUAL(memcmp(dg[0], dg[1], sizeof dg[0]), 0);
		CU_ASSERT_EQUAL(memcmp(db[0], db[1], sizeof db[0]), 0);
	}
	omp_set_num_threads(keep);
	/* the all-masked channel's beta gets nothing, the others' do */
	CU_ASSERT_EQUAL(db[1][2], 0.25f);
	CU_ASSERT(db[1][3] != 0.25f);
	free(x);
	free(dy);
	free(out);
	free(masked);
	free(work);
	for (int k = 0; k < 2; k++)
		for (int st = 0; st < 2; st++)
			free(d[k][st]);
}

static void bn_relu_backward_matches_twin(void)
{
	bn_act_backward_matches_twin(0);
}

static void bn_relu6_backward_matches_twin(void)
{
	bn_act_backward_matches_twin(1);
}

static const nb_test_entry tests[] = {
    {"batchnorm matches PyTorch (train, running stats, eval, backward)",
     bn_golden_all},
    {"batchnorm train gradcheck (2d, 1d L=1, affine off)", bn_train_gradcheck},
    {"batchnorm eval gradcheck", bn_eval_gradcheck},
    {"batchnorm refuses one value per channel", bn_single_value_rejected},
    {"batchnorm constant channel", bn_constant_channel},
    {"batchnorm backward accumulates, skips NULL, _store writes",
     bn_backward_accumulates},
    {"batchnorm same bits for 1 and 3 threads", bn_thread_independent},
    {"batchnorm one-pass statistics on cancelling channels",
     bn_shifted_stats_precision},
    {"batchnorm channel blocks: each channel's bits as alone",
     bn_blocks_match_single_channels},
    {"batchnorm + ReLU in one pass: same bits as the two ops",
     bn_relu_fused_matches_twin},
    {"batchnorm + relu backward masks in its first pass (same bits as the "
     "twin)",
     bn_relu_backward_matches_twin},
    {"batchnorm + ReLU6 in one pass: same bits as the two ops",
     bn_relu6_fused_matches_twin},
    {"batchnorm + relu6 backward masks in its first pass (same bits as the "
     "twin)",
     bn_relu6_backward_matches_twin},
    {"activations match PyTorch incl. kinks", act_golden},
    {"activations gradcheck", act_gradcheck},
    {"activations parallel == serial", act_large_matches_small},
    {"activations propagate NaN", act_nan_propagates},
    {"add gradcheck, x+x", add_gradcheck},
    {"concat gradcheck (3 inputs)", concat_gradcheck},
    {"slice gradcheck", slice_gradcheck},
    {"slice then concat is the identity", slice_concat_roundtrip},
    {"shuffle gradcheck (groups 2, 3)", shuffle_gradcheck},
    {"shuffle matches PyTorch", shuffle_golden},
    {"upsample gradcheck (x2, x3)", upsample_gradcheck},
    {"upsample matches PyTorch", upsample_golden},
    {"dropout fixed-mask gradient", dropout_fixed_mask_gradcheck},
    {"dropout p=0.5 keeps half, scales 2, reproducible", dropout_statistics},
    {"dropout p=0 copies, p=1 zeroes", dropout_edge_p},
    {NULL, NULL}};

void nb_test_layers(void)
{
	nb_test_add_suite("layers", tests);
}
