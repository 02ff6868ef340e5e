/*
 * featloss_test.c - tests of core/lib/featloss.c: the FitNets hint loss and
 * attention transfer against PyTorch golden values
 * (tests/fixtures/golden_featloss.h, made by make_golden_featloss.py),
 * finite-difference gradient checks with respect to the student's map and
 * the regressor, the attention map itself, gradient accumulation, and bad
 * arguments.
 *
 * Not tested here: pairing taps and pooling maps of different sizes (the
 * feature-kd plugin does that; tests/suite-smoke.sh runs it).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "featloss.h"
#include "testutil.h"

#include "../fixtures/golden_featloss.h"

#define LOSS_RTOL 1e-6
#define GRAD_ATOL 1e-7
#define GRAD_RTOL 1e-5

static int close_rel(double a, double b, double atol, double rtol)
{
	return fabs(a - b) <= atol + rtol * fmax(fabs(a), fabs(b));
}

static int count_bad(const float *a, const double *ref, size_t n,
		     const char *name, const char *what)
{
	int bad = 0;
	for (size_t i = 0; i < n; i++)
		if (!close_rel(a[i], ref[i], GRAD_ATOL, GRAD_RTOL)) {
			if (!bad)
				fprintf(stderr,
					"\n  %s %s[%zu]: %.9g vs torch %.9g",
					name, what, i, a[i], ref[i]);
			bad++;
		}
	return bad;
}

static void golden_hint(const gf_hint_case *c)
{
	int L = c->H * c->W;
	size_t ns = (size_t)c->N * c->Cs * L, nw = (size_t)c->Ct * c->Cs;
	float *ds = calloc(ns, sizeof *ds), *dw = calloc(nw, sizeof *dw);
	float db[16] = {0};
	CU_ASSERT_PTR_NOT_NULL_FATAL(ds);
	CU_ASSERT_PTR_NOT_NULL_FATAL(dw);
	nb_workspace ws = {0};
	double loss = -1;
	CU_ASSERT_EQUAL(nb_hint_loss(c->s, c->Cs, c->t, c->Ct, c->N, L, c->w,
				     c->b, ds, dw, c->b ? db : NULL, 1.0f, &ws,
				     &loss),
			0);
	CU_ASSERT_TRUE(close_rel(loss, c->loss, 0, LOSS_RTOL));
	CU_ASSERT_EQUAL(count_bad(ds, c->ds, ns, c->name, "ds"), 0);
	CU_ASSERT_EQUAL(count_bad(dw, c->dw, nw, c->name, "dw"), 0);
	if (c->b)
		CU_ASSERT_EQUAL(count_bad(db, c->db, c->Ct, c->name, "db"), 0);
	/* accumulation: a second call with scale 2 triples the gradient */
	CU_ASSERT_EQUAL(nb_hint_loss(c->s, c->Cs, c->t, c->Ct, c->N, L, c->w,
				     c->b, ds, NULL, NULL, 2.0f, &ws, &loss),
			0);
	for (size_t i = 0; i < ns; i++)
		CU_ASSERT_TRUE(
		    close_rel(ds[i], 3 * c->ds[i], 3 * GRAD_ATOL, GRAD_RTOL));
	nb_workspace_free(&ws);
	free(ds);
	free(dw);
}

static void test_hint_golden(void)
{
	golden_hint(&gf_hint_a);
	golden_hint(&gf_hint_b);
}

static void golden_at(const gf_at_case *c)
{
	int L = c->H * c->W;
	size_t ns = (size_t)c->N * c->Cs * L;
	float *ds = calloc(ns, sizeof *ds), *q = malloc(c->N * L * sizeof *q);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ds);
	CU_ASSERT_PTR_NOT_NULL_FATAL(q);
	nb_workspace ws = {0};
	double loss = -1;
	CU_ASSERT_EQUAL(nb_at_loss(c->s, c->Cs, c->t, c->Ct, c->N, L, c->p, ds,
				   1.0f, &ws, &loss),
			0);
	if (!close_rel(loss, c->loss, 0, LOSS_RTOL))
		fprintf(stderr, "\n  %s loss %.17g vs torch %.17g", c->name,
			loss, c->loss);
	CU_ASSERT_TRUE(close_rel(loss, c->loss, 0, LOSS_RTOL));
	CU_ASSERT_EQUAL(count_bad(ds, c->ds, ns, c->name, "ds"), 0);
	CU_ASSERT_EQUAL(nb_attention_map(q, c->s, c->N, c->Cs, L, c->p), 0);
	CU_ASSERT_EQUAL(count_bad(q, c->qs, (size_t)c->N * L, c->name, "map"),
			0);
	nb_workspace_free(&ws);
	free(ds);
	free(q);
}

static void test_at_golden(void)
{
	golden_at(&gf_at_a);
	golden_at(&gf_at_b);
	golden_at(&gf_at_zero);
}

/* ---- finite differences ----------------------------------------------------
 */

typedef struct fd_ctx {
	int which; /* 0 hint, 1 attention */
	int N, Cs, Ct, L;
	float p;
	float *s, *t, *w, *b;
	nb_workspace ws;
} fd_ctx;

static double fd_probe(void *vctx)
{
	fd_ctx *c = vctx;
	double loss = NAN;
	if (c->which == 0)
		nb_hint_loss(c->s, c->Cs, c->t, c->Ct, c->N, c->L, c->w, c->b,
			     NULL, NULL, NULL, 1.0f, &c->ws, &loss);
	else
		nb_at_loss(c->s, c->Cs, c->t, c->Ct, c->N, c->L, c->p, NULL,
			   1.0f, &c->ws, &loss);
	return loss;
}

static void test_hint_gradcheck(void)
{
	fd_ctx c = {0, 3, 5, 4, 6, 2.0f, NULL, NULL, NULL, NULL, {0}};
	size_t ns = (size_t)c.N * c.Cs * c.L, nt = (size_t)c.N * c.Ct * c.L;
	c.s = malloc(ns * sizeof(float));
	c.t = malloc(nt * sizeof(float));
	c.w = malloc((size_t)c.Ct * c.Cs * sizeof(float));
	c.b = malloc((size_t)c.Ct * sizeof(float));
	float *ds = calloc(ns, sizeof(float)),
	      *dw = calloc((size_t)c.Ct * c.Cs, sizeof(float)),
	      *db = calloc((size_t)c.Ct, sizeof(float));
	tu_fill_normal(c.s, ns, 1.0f, 1);
	tu_fill_normal(c.t, nt, 1.0f, 2);
	tu_fill_normal(c.w, (size_t)c.Ct * c.Cs, 0.5f, 3);
	tu_fill_normal(c.b, (size_t)c.Ct, 0.5f, 4);
	double loss;
	CU_ASSERT_EQUAL_FATAL(nb_hint_loss(c.s, c.Cs, c.t, c.Ct, c.N, c.L, c.w,
					   c.b, ds, dw, db, 1.0f, &c.ws, &loss),
			      0);
	CU_ASSERT_EQUAL(tu_gradcheck("hint ds", fd_probe, &c, c.s, ds, ns, 200,
				     1e-2, 1e-5, 2e-3),
			0);
	CU_ASSERT_EQUAL(tu_gradcheck("hint dw", fd_probe, &c, c.w, dw,
				     (size_t)c.Ct * c.Cs, 200, 1e-2, 1e-5,
				     2e-3),
			0);
	CU_ASSERT_EQUAL(tu_gradcheck("hint db", fd_probe, &c, c.b, db,
				     (size_t)c.Ct, 200, 1e-2, 1e-5, 2e-3),
			0);
	nb_workspace_free(&c.ws);
	free(c.s);
	free(c.t);
	free(c.w);
	free(c.b);
	free(ds);
	free(dw);
	free(db);
}

static void at_gradcheck(float p)
{
	fd_ctx c = {1, 4, 3, 5, 12, p, NULL, NULL, NULL, NULL, {0}};
	size_t ns = (size_t)c.N * c.Cs * c.L, nt = (size_t)c.N * c.Ct * c.L;
	c.s = malloc(ns * sizeof(float));
	c.t = malloc(nt * sizeof(float));
	float *ds = calloc(ns, sizeof(float));
	tu_fill_normal(c.s, ns, 1.0f, 5);
	tu_fill_normal(c.t, nt, 1.0f, 6);
	/* |a|^p has a kink at 0 for odd p */
	const float kink = 0.0f;
	tu_push_away(c.s, ns, &kink, 1, 0.05f);
	double loss;
	CU_ASSERT_EQUAL_FATAL(nb_at_loss(c.s, c.Cs, c.t, c.Ct, c.N, c.L, c.p,
					 ds, 1.0f, &c.ws, &loss),
			      0);
	CU_ASSERT_TRUE(loss > 0);
	/* the loss is small (maps are unit vectors): probe in double steps */
	CU_ASSERT_EQUAL(tu_gradcheck(p == 2 ? "at ds p=2" : "at ds p=3",
				     fd_probe, &c, c.s, ds, ns, 300, 1e-2, 1e-7,
				     5e-3),
			0);
	nb_workspace_free(&c.ws);
	free(c.s);
	free(c.t);
	free(ds);
}

static void test_at_gradcheck(void)
{
	at_gradcheck(2.0f);
	at_gradcheck(3.0f);
}

/* Equal maps (up to a positive scale, which normalisation removes) give a
 * zero loss and gradient; the map of a one-hot spatial activation is that
 * one-hot vector. */
static void test_at_invariance(void)
{
	enum { N = 2, C = 3, L = 8 };
	float s[N * C * L], t[N * C * L], ds[N * C * L] = {0}, q[N * L];
	tu_fill_normal(s, N * C * L, 1.0f, 7);
	for (int i = 0; i < N * C * L; i++)
		t[i] = 3.0f * s[i];
	nb_workspace ws = {0};
	double loss = -1;
	CU_ASSERT_EQUAL(
	    nb_at_loss(s, C, t, C, N, L, 2.0f, ds, 1.0f, &ws, &loss), 0);
	CU_ASSERT_DOUBLE_EQUAL(loss, 0, 1e-14);
	for (int i = 0; i < N * C * L; i++)
		CU_ASSERT_DOUBLE_EQUAL(ds[i], 0, 1e-7);
	memset(s, 0, sizeof s);
	s[0 * L + 5] = -2.0f; /* sample 0, channel 0, position 5 */
	s[1 * C * L + 2 * L + 1] = 0.5f;
	CU_ASSERT_EQUAL(nb_attention_map(q, s, N, C, L, 2.0f), 0);
	for (int l = 0; l < L; l++) {
		CU_ASSERT_DOUBLE_EQUAL(q[l], l == 5 ? 1.0 : 0.0, 1e-7);
		CU_ASSERT_DOUBLE_EQUAL(q[L + l], l == 1 ? 1.0 : 0.0, 1e-7);
	}
	nb_workspace_free(&ws);
}

static void test_bad_args(void)
{
	float s[4] = {1, 2, 3, 4}, w[1] = {1};
	nb_workspace ws = {0};
	double loss = 7;
	CU_ASSERT_EQUAL(nb_hint_loss(s, 1, s, 1, 0, 4, w, NULL, NULL, NULL,
				     NULL, 1.0f, &ws, &loss),
			NB_EINVAL);
	CU_ASSERT_EQUAL(
	    nb_at_loss(s, 1, s, 1, 1, 4, 0.0f, NULL, 1.0f, &ws, &loss),
	    NB_EINVAL);
	CU_ASSERT_EQUAL(nb_attention_map(s, s, 1, 0, 4, 2.0f), NB_EINVAL);
	CU_ASSERT_DOUBLE_EQUAL(loss, 7, 0);
	nb_workspace_free(&ws);
}

void nb_test_featloss(void)
{
	static const nb_test_entry tests[] = {
	    {"hint loss vs torch", test_hint_golden},
	    {"attention transfer vs torch", test_at_golden},
	    {"hint gradcheck (map, regressor)", test_hint_gradcheck},
	    {"attention gradcheck (p 2 and 3)", test_at_gradcheck},
	    {"attention: scale invariance, one-hot maps", test_at_invariance},
	    {"bad arguments", test_bad_args},
	    {NULL, NULL}};
	nb_test_add_suite("featloss", tests);
}
