/*
 * loss_test.c - tests of core/lib/loss.c: values and gradients against
 * PyTorch golden values (tests/fixtures/golden_loss.h, made by
 * make_golden.py), finite-difference gradient checks of every loss, the
 * closed-form gradients of the facts file, the nasty loss's argument order,
 * and the edge cases (huge and masked logits, bad labels, accumulation).
 *
 * Not tested here: the networks that produce the logits (net_test.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loss.h"
#include "testutil.h"

#define GL_WANT_LOSS
#include "../fixtures/golden_loss.h"

/* Tolerances against torch float64: the C side stores float gradients. */
#define LOSS_RTOL 1e-6
#define GRAD_ATOL 1e-6
#define GRAD_RTOL 1e-5
/* Against torch float32 (its own rounding dominates). */
#define LOSS32_RTOL 2e-5
#define GRAD32_ATOL 2e-5
#define GRAD32_RTOL 1e-3

static int close_rel(double a, double b, double atol, double rtol)
{
	return fabs(a - b) <= atol + rtol * fmax(fabs(a), fabs(b));
}

/* Number of i with a[i] not within atol + rtol * |ref[i]| of ref[i]. NaN
 * references (torch float32 underflow, see golden_loss.h) only require a
 * finite value. */
static int count_bad64(const float *a, const double *ref, size_t n, double atol,
		       double rtol)
{
	int bad = 0;
	for (size_t i = 0; i < n; i++)
		if (!close_rel(a[i], ref[i], atol, rtol))
			bad++;
	return bad;
}

static int count_bad32(const float *a, const float *ref, size_t n, double atol,
		       double rtol, int *nan_refs)
{
	int bad = 0;
	for (size_t i = 0; i < n; i++) {
		if (isnan(ref[i])) {
			(*nan_refs)++;
			if (!isfinite(a[i]))
				bad++;
			continue;
		}
		if (!close_rel(a[i], ref[i], atol, rtol))
			bad++;
	}
	return bad;
}

/* Evaluates a golden case with the C code; g1, g2 are zeroed first. */
static double eval_case(const gl_loss_case *c, float *g1, float *g2,
			nb_loss_terms *t)
{
	size_t n = (size_t)c->B * c->C;
	memset(g1, 0, n * sizeof *g1);
	memset(g2, 0, n * sizeof *g2);
	memset(t, 0, sizeof *t);
	switch (c->kind) {
	case GL_CE:
		return nb_cross_entropy(c->z1, c->labels, c->B, c->C,
					c->smoothing, g1, 1.0f);
	case GL_KL:
		return nb_kl_div_temp(c->z1, c->z2, c->B, c->C, c->tau, g1, g2,
				      1.0f);
	case GL_KD:
		return nb_kd_loss(c->z1, c->z2, c->labels, c->B, c->C, c->alpha,
				  c->tau, g1, 1.0f, t);
	case GL_NASTY:
		return nb_nasty_loss(c->z1, c->z2, c->labels, c->B, c->C,
				     c->omega, c->tau, g1, 1.0f, t);
	}
	return NAN;
}

/* Reports a mismatch on stderr (CUnit only shows the expression). */
static int check(const char *name, const char *what, double v, double ref,
		 double atol, double rtol)
{
	if (close_rel(v, ref, atol, rtol))
		return 1;
	fprintf(stderr, "\n  %s %s: %.17g vs torch %.17g", name, what, v, ref);
	return 0;
}

static int check_bad(const char *name, const char *what, int bad)
{
	if (bad)
		fprintf(stderr, "\n  %s %s: %d mismatches", name, what, bad);
	return bad == 0;
}

static void test_golden(void)
{
	int nan_refs = 0;
	for (int k = 0; k < GL_N_LOSS_CASES; k++) {
		const gl_loss_case *c = &gl_loss_cases[k];
		const char *nm = c->name;
		size_t n = (size_t)c->B * c->C;
		float *g1 = malloc(n * sizeof *g1),
		      *g2 = malloc(n * sizeof *g2);
		CU_ASSERT_PTR_NOT_NULL_FATAL(g1);
		CU_ASSERT_PTR_NOT_NULL_FATAL(g2);
		nb_loss_terms t;
		double v = eval_case(c, g1, g2, &t);
		CU_ASSERT_TRUE(check(nm, "loss", v, c->loss64, 0, LOSS_RTOL));
		CU_ASSERT_TRUE(
		    check(nm, "loss (f32)", v, c->loss32, 1e-6, LOSS32_RTOL));
		CU_ASSERT_TRUE(check_bad(
		    nm, "grad",
		    count_bad64(g1, c->g1_64, n, GRAD_ATOL, GRAD_RTOL)));
		CU_ASSERT_TRUE(
		    check_bad(nm, "grad (f32)",
			      count_bad32(g1, c->g1_32, n, GRAD32_ATOL,
					  GRAD32_RTOL, &nan_refs)));
		if (c->g2_64) {
			CU_ASSERT_TRUE(
			    check_bad(nm, "grad q",
				      count_bad64(g2, c->g2_64, n, GRAD_ATOL,
						  GRAD_RTOL)));
			CU_ASSERT_TRUE(
			    check_bad(nm, "grad q (f32)",
				      count_bad32(g2, c->g2_32, n, GRAD32_ATOL,
						  GRAD32_RTOL, &nan_refs)));
		}
		if (c->kind == GL_KD || c->kind == GL_NASTY) {
			CU_ASSERT_TRUE(
			    check(nm, "ce", t.ce, c->ce64, 0, LOSS_RTOL));
			CU_ASSERT_TRUE(
			    check(nm, "kl", t.kl, c->kl64, 1e-12, LOSS_RTOL));
			CU_ASSERT_DOUBLE_EQUAL(t.total, v, 0);
		}
		free(g1);
		free(g2);
	}
	/* The fixture records torch float32 NaN gradients at one row of
	 * kl_l_tau1 (a target probability underflows); ours stay finite. */
	CU_ASSERT_TRUE(nan_refs > 0);
}

/* The nasty loss must use KL(p_nasty || p_adversary): the golden values of
 * the two orders differ, and we match the official one. */
static void test_nasty_direction(void)
{
	int seen = 0;
	for (int k = 0; k < GL_N_LOSS_CASES; k++) {
		const gl_loss_case *c = &gl_loss_cases[k];
		if (c->kind != GL_NASTY)
			continue;
		seen++;
		double v = nb_nasty_loss(c->z1, c->z2, c->labels, c->B, c->C,
					 c->omega, c->tau, NULL, 1.0f, NULL);
		double gap = fabs(c->swapped64 - c->loss64);
		CU_ASSERT_TRUE(gap > 1e-3 * fabs(c->loss64));
		CU_ASSERT_TRUE(close_rel(v, c->loss64, 0, LOSS_RTOL));
		CU_ASSERT_TRUE(fabs(v - c->swapped64) >
			       100 * LOSS_RTOL * fabs(c->loss64));
		/* and the swapped golden is what the other order gives */
		double sw =
		    nb_cross_entropy(c->z1, c->labels, c->B, c->C, 0, NULL,
				     1.0f) -
		    (double)c->omega * nb_kl_div_temp(c->z2, c->z1, c->B, c->C,
						      c->tau, NULL, NULL, 1.0f);
		CU_ASSERT_TRUE(close_rel(sw, c->swapped64, 0, LOSS_RTOL));
	}
	CU_ASSERT_EQUAL(seen, 4);
}

/* ---- reference formulas from the facts file, written independently ---- */

/* softmax(z/tau) of one row, in double */
static void ref_softmax(const float *z, int C, double tau, double *p)
{
	double m = -INFINITY, s = 0;
	for (int i = 0; i < C; i++)
		m = fmax(m, z[i] / tau);
	for (int i = 0; i < C; i++)
		s += (p[i] = exp(z[i] / tau - m));
	for (int i = 0; i < C; i++)
		p[i] /= s;
}

static void test_nasty_grad_formula(void)
{
	enum { B = 6, C = 10 };
	float zn[B * C], za[B * C], dz[B * C];
	int y[B] = {0, 3, 9, 2, 2, 7};
	tu_fill_normal(zn, B * C, 3.0f, 11);
	tu_fill_normal(za, B * C, 3.0f, 12);
	const float omega = 0.04f, tau = 4.0f;
	memset(dz, 0, sizeof dz);
	nb_nasty_loss(zn, za, y, B, C, omega, tau, dz, 1.0f, NULL);
	/* dL/dz_n = (softmax(z_n) - onehot)/B - omega*tau*p(log p - log q -
	 * K)/B */
	int bad = 0;
	for (int b = 0; b < B; b++) {
		double s[C], p[C], q[C], K = 0;
		ref_softmax(zn + b * C, C, 1.0, s);
		ref_softmax(zn + b * C, C, tau, p);
		ref_softmax(za + b * C, C, tau, q);
		for (int i = 0; i < C; i++)
			K += p[i] * (log(p[i]) - log(q[i]));
		for (int i = 0; i < C; i++) {
			double g = (s[i] - (i == y[b])) / B -
				   omega * tau * p[i] *
				       (log(p[i]) - log(q[i]) - K) / B;
			if (!close_rel(dz[b * C + i], g, 1e-7, 1e-5))
				bad++;
		}
	}
	CU_ASSERT_EQUAL(bad, 0);
	/* and it is the CE gradient plus -omega times the KL p-gradient */
	float g2[B * C];
	memset(g2, 0, sizeof g2);
	nb_cross_entropy(zn, y, B, C, 0, g2, 1.0f);
	nb_kl_div_temp(zn, za, B, C, tau, g2, NULL, -omega);
	CU_ASSERT_TRUE(tu_max_abs_diff(dz, g2, B * C) < 1e-7);
}

static void test_kd_grad_formula(void)
{
	enum { B = 4, C = 12 };
	float zs[B * C], zt[B * C], dz[B * C];
	int y[B] = {1, 11, 0, 5};
	tu_fill_normal(zs, B * C, 2.0f, 21);
	tu_fill_normal(zt, B * C, 5.0f, 22);
	const float alpha = 0.9f, tau = 20.0f;
	memset(dz, 0, sizeof dz);
	nb_kd_loss(zs, zt, y, B, C, alpha, tau, dz, 1.0f, NULL);
	int bad = 0;
	for (int b = 0; b < B; b++) {
		double s[C], ps[C], pt[C];
		ref_softmax(zs + b * C, C, 1.0, s);
		ref_softmax(zs + b * C, C, tau, ps);
		ref_softmax(zt + b * C, C, tau, pt);
		for (int i = 0; i < C; i++) {
			double g = alpha * tau * (ps[i] - pt[i]) / B +
				   (1 - alpha) * (s[i] - (i == y[b])) / B;
			if (!close_rel(dz[b * C + i], g, 1e-7, 1e-5))
				bad++;
		}
	}
	CU_ASSERT_EQUAL(bad, 0);
}

static void test_kl_identical(void)
{
	enum { B = 3, C = 9 };
	float z[B * C], zs[B * C], gp[B * C], gq[B * C];
	tu_fill_normal(z, B * C, 10.0f, 31);
	for (int i = 0; i < B * C; i++)
		zs[i] = z[i] + 7.0f * (float)(i / C); /* per-row shift */
	const float taus[] = {1, 4, 20};
	for (int k = 0; k < 3; k++) {
		memset(gp, 0, sizeof gp);
		memset(gq, 0, sizeof gq);
		double v = nb_kl_div_temp(z, z, B, C, taus[k], gp, gq, 1.0f);
		CU_ASSERT_DOUBLE_EQUAL(v, 0, 1e-12);
		CU_ASSERT_TRUE(tu_max_abs_diff(gp, gq, B * C) < 1e-9);
		float zero[B * C] = {0};
		CU_ASSERT_TRUE(tu_max_abs_diff(gp, zero, B * C) < 1e-9);
		/* a shift of a row does not change its softmax */
		v = nb_kl_div_temp(z, zs, B, C, taus[k], NULL, NULL, 1.0f);
		CU_ASSERT_DOUBLE_EQUAL(v, 0, 1e-9);
	}
	/* KL >= 0 */
	float z2[B * C];
	tu_fill_normal(z2, B * C, 10.0f, 32);
	CU_ASSERT_TRUE(nb_kl_div_temp(z, z2, B, C, 4, NULL, NULL, 1) > 0);
}

static void test_ce_rows_sum_zero(void)
{
	enum { B = 5, C = 13 };
	float z[B * C], g[B * C];
	int y[B] = {0, 12, 6, 6, 3};
	tu_fill_normal(z, B * C, 8.0f, 41);
	const float eps[] = {0.0f, 0.1f, 0.5f};
	for (int k = 0; k < 3; k++) {
		memset(g, 0, sizeof g);
		nb_cross_entropy(z, y, B, C, eps[k], g, 1.0f);
		for (int b = 0; b < B; b++) {
			double s = 0;
			for (int i = 0; i < C; i++)
				s += g[b * C + i];
			CU_ASSERT_DOUBLE_EQUAL(s, 0, 1e-7);
			/* the label's entry is the only negative one when
			 * eps = 0 */
			if (eps[k] == 0)
				CU_ASSERT_TRUE(g[b * C + y[b]] <= 0);
		}
	}
	/* smoothing with uniform logits: loss = log C whatever the label */
	float u[C] = {0};
	int y0 = 4;
	CU_ASSERT_DOUBLE_EQUAL(nb_cross_entropy(u, &y0, 1, C, 0.1f, NULL, 1),
			       log((double)C), 1e-12);
}

/* ---- finite differences ---- */

typedef struct fd_ctx {
	int kind; /* GL_* */
	const float *z1, *z2;
	const int *labels;
	int B, C;
	float smoothing, tau, alpha, omega;
} fd_ctx;

static double fd_eval(void *p)
{
	const fd_ctx *c = p;
	switch (c->kind) {
	case GL_CE:
		return nb_cross_entropy(c->z1, c->labels, c->B, c->C,
					c->smoothing, NULL, 1);
	case GL_KL:
		return nb_kl_div_temp(c->z1, c->z2, c->B, c->C, c->tau, NULL,
				      NULL, 1);
	case GL_KD:
		return nb_kd_loss(c->z1, c->z2, c->labels, c->B, c->C, c->alpha,
				  c->tau, NULL, 1, NULL);
	default:
		return nb_nasty_loss(c->z1, c->z2, c->labels, c->B, c->C,
				     c->omega, c->tau, NULL, 1, NULL);
	}
}

static void test_gradcheck(void)
{
	static const int shapes[][2] = {{1, 2}, {4, 10}, {3, 100}, {7, 5}};
	static const float taus[] = {1, 4, 20};
	char what[128];
	for (int s = 0; s < 4; s++) {
		int B = shapes[s][0], C = shapes[s][1];
		size_t n = (size_t)B * C;
		float *z1 = malloc(n * sizeof *z1),
		      *z2 = malloc(n * sizeof *z2);
		float *g1 = malloc(n * sizeof *g1),
		      *g2 = malloc(n * sizeof *g2);
		int *y = malloc(B * sizeof *y);
		tu_fill_normal(z1, n, 3.0f, 100 + s);
		tu_fill_normal(z2, n, 4.0f, 200 + s);
		for (int b = 0; b < B; b++)
			y[b] = (b * 7 + 3) % C;
		for (int t = 0; t < 3; t++) {
			fd_ctx c = {GL_CE, z1,	 z2,	  y,	B,
				    C,	   0.1f, taus[t], 0.9f, 0.04f};
			/* CE: smoothing on (t = 0 also without) */
			for (int e = 0; e < (t == 0 ? 2 : 1); e++) {
				c.kind = GL_CE;
				c.smoothing = e ? 0.0f : 0.1f;
				memset(g1, 0, n * sizeof *g1);
				nb_cross_entropy(z1, y, B, C, c.smoothing, g1,
						 1);
				snprintf(what, sizeof what,
					 "CE B=%d C=%d eps=%g", B, C,
					 c.smoothing);
				tu_gradcheck(what, fd_eval, &c, z1, g1, n, 200,
					     1e-3, 1e-6, 1e-4);
			}
			/* KL, both arguments */
			c.kind = GL_KL;
			memset(g1, 0, n * sizeof *g1);
			memset(g2, 0, n * sizeof *g2);
			nb_kl_div_temp(z1, z2, B, C, taus[t], g1, g2, 1);
			snprintf(what, sizeof what, "KL d/dzp B=%d C=%d tau=%g",
				 B, C, taus[t]);
			tu_gradcheck(what, fd_eval, &c, z1, g1, n, 200, 1e-3,
				     1e-6, 1e-4);
			snprintf(what, sizeof what, "KL d/dzq B=%d C=%d tau=%g",
				 B, C, taus[t]);
			tu_gradcheck(what, fd_eval, &c, z2, g2, n, 200, 1e-3,
				     1e-6, 1e-4);
			/* KD w.r.t. the student */
			c.kind = GL_KD;
			memset(g1, 0, n * sizeof *g1);
			nb_kd_loss(z1, z2, y, B, C, c.alpha, taus[t], g1, 1,
				   NULL);
			snprintf(what, sizeof what, "KD B=%d C=%d tau=%g", B, C,
				 taus[t]);
			tu_gradcheck(what, fd_eval, &c, z1, g1, n, 200, 1e-3,
				     1e-6, 1e-4);
			/* nasty w.r.t. the nasty teacher (large omega so the
			 * KL part is not hidden under the CE part) */
			c.kind = GL_NASTY;
			c.omega = 0.5f;
			memset(g1, 0, n * sizeof *g1);
			nb_nasty_loss(z1, z2, y, B, C, c.omega, taus[t], g1, 1,
				      NULL);
			snprintf(what, sizeof what, "nasty B=%d C=%d tau=%g", B,
				 C, taus[t]);
			tu_gradcheck(what, fd_eval, &c, z1, g1, n, 200, 1e-3,
				     1e-6, 1e-4);
		}
		free(z1);
		free(z2);
		free(g1);
		free(g2);
		free(y);
	}
}

/* Gradients accumulate: g += scale * dL/dz. */
static void test_accumulate(void)
{
	enum { B = 3, C = 6 };
	float z1[B * C], z2[B * C], a[B * C], b[B * C], c[B * C];
	int y[B] = {0, 5, 2};
	tu_fill_normal(z1, B * C, 2.0f, 51);
	tu_fill_normal(z2, B * C, 2.0f, 52);
	tu_fill_uniform(a, B * C, -1, 1, 53);
	memcpy(b, a, sizeof a);
	memset(c, 0, sizeof c);
	nb_nasty_loss(z1, z2, y, B, C, 0.04f, 4, b, 2.5f, NULL);
	nb_nasty_loss(z1, z2, y, B, C, 0.04f, 4, c, 1.0f, NULL);
	int bad = 0;
	for (int i = 0; i < B * C; i++)
		if (!close_rel(b[i], a[i] + 2.5 * c[i], 1e-7, 1e-6))
			bad++;
	CU_ASSERT_EQUAL(bad, 0);
	/* the same for KL's q side and CE */
	memcpy(b, a, sizeof a);
	memset(c, 0, sizeof c);
	nb_kl_div_temp(z1, z2, B, C, 4, NULL, b, -3.0f);
	nb_kl_div_temp(z1, z2, B, C, 4, NULL, c, 1.0f);
	nb_cross_entropy(z1, y, B, C, 0.1f, b, 0.5f);
	float d[B * C] = {0};
	nb_cross_entropy(z1, y, B, C, 0.1f, d, 1.0f);
	bad = 0;
	for (int i = 0; i < B * C; i++)
		if (!close_rel(b[i], a[i] - 3.0 * c[i] + 0.5 * d[i], 1e-7,
			       1e-6))
			bad++;
	CU_ASSERT_EQUAL(bad, 0);
}

/* Huge logits stay finite; -inf on the p side is a class with p = 0. */
static void test_extreme_logits(void)
{
	enum { C = 5 };
	float z1[C] = {1000.0f, -1000.0f, 0.0f, 999.0f, -3e4f};
	float z2[C] = {-2000.0f, 3000.0f, 5.0f, 0.0f, 3e4f};
	float g1[C] = {0}, g2[C] = {0};
	int y = 1;
	double v = nb_cross_entropy(z1, &y, 1, C, 0.1f, g1, 1);
	CU_ASSERT_TRUE(isfinite(v) && nb_all_finite(g1, C));
	/* lse = 1000 + log1p(e^-1); sum over classes of lse - z_i is
	 * 5 lse - (-29001) */
	double e = 0.1f;
	CU_ASSERT_DOUBLE_EQUAL(
	    v, (1 - e) * 2000.0 + e / C * 34001.0 + log1p(exp(-1.0)), 1e-9);
	v = nb_kl_div_temp(z1, z2, 1, C, 1, g1, g2, 1);
	CU_ASSERT_TRUE(isfinite(v) && nb_all_finite(g1, C) &&
		       nb_all_finite(g2, C));
	v = nb_nasty_loss(z1, z2, &y, 1, C, 0.04f, 4, g1, 1, NULL);
	CU_ASSERT_TRUE(isfinite(v) && nb_all_finite(g1, C));

	/* masked classes: KL over the remaining classes only */
	float zp[4] = {1.0f, -INFINITY, 2.0f, -INFINITY};
	float zq[4] = {0.5f, 0.1f, -1.0f, 3.0f};
	float gp[4] = {0}, gq[4] = {0};
	v = nb_kl_div_temp(zp, zq, 1, 4, 2, gp, gq, 1);
	double p[4], q[4], ref = 0;
	ref_softmax(zp, 4, 2, p);
	ref_softmax(zq, 4, 2, q);
	for (int i = 0; i < 4; i++)
		if (p[i] > 0)
			ref += p[i] * (log(p[i]) - log(q[i]));
	CU_ASSERT_DOUBLE_EQUAL(v, 4 * ref, 1e-12);
	CU_ASSERT_TRUE(nb_all_finite(gp, 4) && nb_all_finite(gq, 4));
	CU_ASSERT_EQUAL(gp[1], 0.0f);
	CU_ASSERT_EQUAL(gp[3], 0.0f);
}

/* Labels out of range: never used as an index, NaN loss, row untouched. */
static void test_bad_label(void)
{
	enum { B = 3, C = 4 };
	float z[B * C], g[B * C], ok[B * C];
	tu_fill_normal(z, B * C, 1.0f, 61);
	const int bads[] = {-1, C, 1 << 30};
	for (int k = 0; k < 3; k++) {
		int y[B] = {2, bads[k], 0};
		memset(g, 0, sizeof g);
		double v = nb_cross_entropy(z, y, B, C, 0.1f, g, 1);
		CU_ASSERT_TRUE(isnan(v));
		for (int i = 0; i < C; i++)
			CU_ASSERT_EQUAL(g[C + i], 0.0f);
		int yok[B] = {2, 0, 0};
		memset(ok, 0, sizeof ok);
		nb_cross_entropy(z, yok, B, C, 0.1f, ok, 1);
		CU_ASSERT_EQUAL(memcmp(g, ok, C * sizeof *g), 0);
		CU_ASSERT_EQUAL(memcmp(g + 2 * C, ok + 2 * C, C * sizeof *g),
				0);
		CU_ASSERT_TRUE(isnan(
		    nb_nasty_loss(z, z, y, B, C, 0.04f, 4, NULL, 1, NULL)));
		CU_ASSERT_TRUE(nb_count_correct(z, y, B, C) <= 2);
	}
}

static void test_terms(void)
{
	enum { B = 4, C = 10 };
	float zs[B * C], zt[B * C];
	int y[B] = {1, 2, 3, 4};
	tu_fill_normal(zs, B * C, 2.0f, 71);
	tu_fill_normal(zt, B * C, 2.0f, 72);
	nb_loss_terms t;
	double v = nb_kd_loss(zs, zt, y, B, C, 0.9f, 4, NULL, 1, &t);
	double ce = nb_cross_entropy(zs, y, B, C, 0, NULL, 1);
	double kl = nb_kl_div_temp(zt, zs, B, C, 4, NULL, NULL, 1);
	CU_ASSERT_DOUBLE_EQUAL(t.ce, ce, 1e-12);
	CU_ASSERT_DOUBLE_EQUAL(t.kl, kl, 1e-12);
	CU_ASSERT_DOUBLE_EQUAL(v, 0.9f * kl + (1 - 0.9f) * ce, 1e-9);
	v = nb_nasty_loss(zs, zt, y, B, C, 0.005f, 20, NULL, 1, &t);
	kl = nb_kl_div_temp(zs, zt, B, C, 20, NULL, NULL, 1);
	CU_ASSERT_DOUBLE_EQUAL(t.kl, kl, 1e-12);
	CU_ASSERT_DOUBLE_EQUAL(t.total, ce - 0.005f * kl, 1e-9);
	CU_ASSERT_TRUE(t.kl > 0);
}

static void test_count_correct(void)
{
	float z[3 * 4] = {
	    1,	5,  5,	0, /* tie: the first maximum (1) wins */
	    -1, -2, -3, -0.5f, 2, 2, 2, 2,
	};
	int y1[3] = {1, 3, 0};
	int y2[3] = {2, 0, 3};
	CU_ASSERT_EQUAL(nb_count_correct(z, y1, 3, 4), 3);
	CU_ASSERT_EQUAL(nb_count_correct(z, y2, 3, 4), 0);
}

static void test_all_finite(void)
{
	float x[4] = {0, -1e38f, 1e38f, 1e-45f};
	CU_ASSERT_EQUAL(nb_all_finite(x, 4), 1);
	CU_ASSERT_EQUAL(nb_all_finite(x, 0), 1);
	const float bad[] = {NAN, INFINITY, -INFINITY};
	for (int k = 0; k < 3; k++) {
		x[2] = bad[k];
		CU_ASSERT_EQUAL(nb_all_finite(x, 4), 0);
		CU_ASSERT_EQUAL(nb_all_finite(x, 2), 1);
	}
}

static const nb_test_entry tests[] = {
    {"golden values and gradients (torch)", test_golden},
    {"nasty loss uses KL(p_nasty || p_adv)", test_nasty_direction},
    {"nasty gradient = facts-file formula", test_nasty_grad_formula},
    {"KD gradient = facts-file formula", test_kd_grad_formula},
    {"KL of identical logits is 0", test_kl_identical},
    {"CE gradient rows sum to 0", test_ce_rows_sum_zero},
    {"finite-difference gradients", test_gradcheck},
    {"gradients accumulate with scale", test_accumulate},
    {"huge and masked logits", test_extreme_logits},
    {"labels out of range", test_bad_label},
    {"loss terms", test_terms},
    {"count correct", test_count_correct},
    {"all finite", test_all_finite},
    {NULL, NULL}};

void nb_test_loss(void)
{
	nb_test_add_suite("loss", tests);
}
