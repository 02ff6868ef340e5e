/*
 * inversion_test.c - tests of core/lib/inversion.c, DeepInversion's pieces:
 * the BatchNorm-statistics regulariser, total variation, the l2 prior, the
 * jitter (roll and flip) and the Adaptive DeepInversion competition term
 * against PyTorch golden values (tests/fixtures/golden_featloss.h), their
 * finite-difference gradient checks, and the whole objective of one
 * inversion step on small BatchNorm networks with the gradient flowing back
 * to the input image.
 *
 * Not tested here: the optimisation loop and the pool (the deepinversion
 * plugin; tests/suite-smoke.sh runs it).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "inversion.h"
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

static int check(const char *name, const char *what, double v, double ref)
{
	if (close_rel(v, ref, 0, LOSS_RTOL))
		return 1;
	fprintf(stderr, "\n  %s %s: %.17g vs torch %.17g", name, what, v, ref);
	return 0;
}

/* ---- golden values ----------------------------------------------------------
 */

static void golden_bn(const gf_bn_case *c)
{
	int L = c->H * c->W;
	size_t n = (size_t)c->N * c->C * L;
	float *dx = calloc(n, sizeof *dx);
	CU_ASSERT_PTR_NOT_NULL_FATAL(dx);
	double v = nb_bn_stats_loss(c->x, c->N, c->C, L, c->running_mean,
				    c->running_var, dx, 1.0f);
	CU_ASSERT_TRUE(check(c->name, "loss", v, c->loss));
	CU_ASSERT_EQUAL(count_bad(dx, c->dx, n, c->name, "dx"), 0);
	free(dx);
}

static void test_bn_golden(void)
{
	golden_bn(&gf_bn_a);
	golden_bn(&gf_bn_1d);
}

static void golden_prior(const gf_prior_case *c)
{
	size_t n = (size_t)c->N * c->C * c->H * c->W;
	float *dx = calloc(n, sizeof *dx), *out = malloc(n * sizeof *out);
	CU_ASSERT_PTR_NOT_NULL_FATAL(dx);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	double tv = nb_tv_loss(c->x, c->N, c->C, c->H, c->W, dx, 1.0f);
	CU_ASSERT_TRUE(check(c->name, "tv", tv, c->tv));
	CU_ASSERT_EQUAL(count_bad(dx, c->dtv, n, c->name, "dtv"), 0);
	memset(dx, 0, n * sizeof *dx);
	double l2 = nb_l2_loss(c->x, n, dx, 1.0f);
	CU_ASSERT_TRUE(check(c->name, "l2", l2, c->l2));
	CU_ASSERT_EQUAL(count_bad(dx, c->dl2, n, c->name, "dl2"), 0);
	for (int k = 0; k < 4; k++) {
		const gf_jitter *j = &c->jitter[k];
		nb_jitter_forward(out, c->x, c->N, c->C, c->H, c->W, j->dy,
				  j->dx, j->flip);
		CU_ASSERT_EQUAL(memcmp(out, j->out, n * sizeof *out), 0);
	}
	free(dx);
	free(out);
}

static void test_prior_golden(void)
{
	golden_prior(&gf_prior_a);
	golden_prior(&gf_prior_b);
}

static void golden_adi(const gf_adi_case *c)
{
	size_t n = (size_t)c->B * c->C;
	float *ds = calloc(n, sizeof *ds), *dt = calloc(n, sizeof *dt);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ds);
	CU_ASSERT_PTR_NOT_NULL_FATAL(dt);
	double js = -1;
	double v = nb_adi_competition(c->zs, c->zt, c->B, c->C, c->T, ds, dt,
				      1.0f, &js);
	CU_ASSERT_TRUE(check(c->name, "loss", v, c->loss));
	CU_ASSERT_TRUE(check(c->name, "js", js, c->js));
	CU_ASSERT_EQUAL(count_bad(ds, c->dzs, n, c->name, "dzs"), 0);
	CU_ASSERT_EQUAL(count_bad(dt, c->dzt, n, c->name, "dzt"), 0);
	free(ds);
	free(dt);
}

static void test_adi_golden(void)
{
	golden_adi(&gf_adi_a);
	golden_adi(&gf_adi_b);
}

/* ---- finite differences -----------------------------------------------------
 */

typedef struct fd_ctx {
	int which; /* 0 bn, 1 tv, 2 l2, 3 adi */
	int N, C, H, W;
	float *x, *y; /* y: the second logits (adi) */
	float *rm, *rv;
} fd_ctx;

static double fd_probe(void *vctx)
{
	fd_ctx *c = vctx;
	size_t n = (size_t)c->N * c->C * c->H * c->W;
	switch (c->which) {
	case 0:
		return nb_bn_stats_loss(c->x, c->N, c->C, c->H * c->W, c->rm,
					c->rv, NULL, 1.0f);
	case 1:
		return nb_tv_loss(c->x, c->N, c->C, c->H, c->W, NULL, 1.0f);
	case 2:
		return nb_l2_loss(c->x, n, NULL, 1.0f);
	default:
		return nb_adi_competition(c->x, c->y, c->N, c->C, 3.0f, NULL,
					  NULL, 1.0f, NULL);
	}
}

static void test_bn_gradcheck(void)
{
	enum { N = 4, C = 3, H = 3, W = 2 };
	float x[N * C * H * W], dx[N * C * H * W] = {0};
	float rm[C] = {0.2f, -0.4f, 1.0f}, rv[C] = {0.5f, 2.0f, 1.2f};
	tu_fill_normal(x, N * C * H * W, 1.3f, 21);
	fd_ctx c = {0, N, C, H, W, x, NULL, rm, rv};
	double v = nb_bn_stats_loss(x, N, C, H * W, rm, rv, dx, 1.0f);
	CU_ASSERT_TRUE(v > 0);
	CU_ASSERT_EQUAL(tu_gradcheck("bn stats dx", fd_probe, &c, x, dx,
				     N * C * H * W, 200, 1e-2, 1e-5, 2e-3),
			0);
	/* statistics equal to the running ones: zero loss, zero gradient */
	float z[2 * 1 * 2] = {1.0f, 3.0f, 1.0f, 3.0f}, dz[4] = {0};
	float m1 = 2.0f, v1 = 1.0f;
	CU_ASSERT_DOUBLE_EQUAL(nb_bn_stats_loss(z, 2, 1, 2, &m1, &v1, dz, 1.0f),
			       0, 1e-12);
	for (int i = 0; i < 4; i++)
		CU_ASSERT_EQUAL(dz[i], 0.0f);
}

static void test_tv_l2_gradcheck(void)
{
	enum { N = 2, C = 2, H = 5, W = 4 };
	float x[N * C * H * W], dx[N * C * H * W] = {0};
	tu_fill_normal(x, N * C * H * W, 1.0f, 22);
	fd_ctx c = {1, N, C, H, W, x, NULL, NULL, NULL};
	nb_tv_loss(x, N, C, H, W, dx, 1.0f);
	CU_ASSERT_EQUAL(tu_gradcheck("tv dx", fd_probe, &c, x, dx,
				     N * C * H * W, 200, 1e-2, 1e-5, 2e-3),
			0);
	memset(dx, 0, sizeof dx);
	c.which = 2;
	nb_l2_loss(x, N * C * H * W, dx, 1.0f);
	CU_ASSERT_EQUAL(tu_gradcheck("l2 dx", fd_probe, &c, x, dx,
				     N * C * H * W, 200, 1e-2, 1e-5, 2e-3),
			0);
	/* a constant image has no variation and no gradient */
	float k[9], dk[9] = {0};
	for (int i = 0; i < 9; i++)
		k[i] = 0.25f;
	CU_ASSERT_DOUBLE_EQUAL(nb_tv_loss(k, 1, 1, 3, 3, dk, 1.0f), 0, 0);
	for (int i = 0; i < 9; i++)
		CU_ASSERT_EQUAL(dk[i], 0.0f);
}

static void test_adi_gradcheck(void)
{
	enum { B = 4, C = 6 };
	float zs[B * C], zt[B * C], ds[B * C] = {0}, dt[B * C] = {0};
	tu_fill_normal(zs, B * C, 1.5f, 23);
	tu_fill_normal(zt, B * C, 1.5f, 24);
	double js;
	double v = nb_adi_competition(zs, zt, B, C, 3.0f, ds, dt, 1.0f, &js);
	CU_ASSERT_TRUE(js > 0 && js < 1);
	CU_ASSERT_DOUBLE_EQUAL(v, 1 - js, 1e-15);
	fd_ctx c = {3, B, C, 1, 1, zs, zt, NULL, NULL};
	CU_ASSERT_EQUAL(tu_gradcheck("adi dz_s", fd_probe, &c, zs, ds, B * C,
				     200, 1e-2, 1e-6, 2e-3),
			0);
	/* the term is symmetric in its two arguments */
	c.x = zt;
	c.y = zs;
	CU_ASSERT_EQUAL(tu_gradcheck("adi dz_t", fd_probe, &c, zt, dt, B * C,
				     200, 1e-2, 1e-6, 2e-3),
			0);
	/* equal distributions: JS = 0, the term is 1 */
	CU_ASSERT_DOUBLE_EQUAL(
	    nb_adi_competition(zs, zs, B, C, 3.0f, NULL, NULL, 1.0f, &js), 1.0,
	    1e-12);
	CU_ASSERT_DOUBLE_EQUAL(js, 0, 1e-12);
}

/* The jitter's backward is the adjoint of its forward:
 * <jitter(a), b> = <a, jitter^T(b)> for every shift and flip. */
static void test_jitter_adjoint(void)
{
	enum { N = 2, C = 2, H = 5, W = 6, S = N * C * H * W };
	float a[S], b[S], ja[S], jb[S];
	tu_fill_normal(a, S, 1.0f, 25);
	tu_fill_normal(b, S, 1.0f, 26);
	for (int dy = -7; dy <= 7; dy += 3)
		for (int dx = -8; dx <= 8; dx += 4)
			for (int flip = 0; flip < 2; flip++) {
				nb_jitter_forward(ja, a, N, C, H, W, dy, dx,
						  flip);
				memset(jb, 0, sizeof jb);
				nb_jitter_backward(jb, b, N, C, H, W, dy, dx,
						   flip);
				CU_ASSERT_DOUBLE_EQUAL(tu_dot(ja, b, S),
						       tu_dot(a, jb, S), 1e-4);
			}
	/* a shift by the full size is the identity */
	nb_jitter_forward(ja, a, N, C, H, W, H, -W, 0);
	CU_ASSERT_EQUAL(memcmp(ja, a, sizeof a), 0);
}

/* ---- the whole objective through networks -----------------------------------
 */

/* conv -> BN -> tanh -> conv(stride 2) -> BN -> tanh -> flatten -> linear
 * -> BN1d -> linear(5): smooth, with three BatchNorm layers whose running
 * statistics are set to non-trivial values. */
static nb_net *bn_teacher(char *err)
{
	nb_net *net = nb_net_new(2, 6, 6);
	int x = nb_net_add_conv2d(net, 0, "c1", 3, 3, 1, 1, 1, 1,
				  NB_INIT_DEFAULT, err);
	x = nb_net_add_batchnorm(net, x, "bn1", 1e-5f, 0.1f, 1, err);
	x = nb_net_add_tanh(net, x, err);
	x = nb_net_add_conv2d(net, x, "c2", 4, 3, 2, 1, 1, 0, NB_INIT_DEFAULT,
			      err);
	x = nb_net_add_batchnorm(net, x, "bn2", 1e-5f, 0.1f, 1, err);
	x = nb_net_add_tanh(net, x, err);
	x = nb_net_add_flatten(net, x, err);
	x = nb_net_add_linear(net, x, "fc1", 6, 1, NB_INIT_DEFAULT, err);
	x = nb_net_add_batchnorm(net, x, "bn3", 1e-5f, 0.1f, 1, err);
	x = nb_net_add_linear(net, x, "fc2", 5, 1, NB_INIT_DEFAULT, err);
	if (x < 0 || nb_net_finalize(net, 31, err) < 0) {
		nb_net_free(net);
		return NULL;
	}
	nb_param **ps;
	int np = nb_net_params(net, &ps);
	uint64_t seed = 40;
	for (int i = 0; i < np; i++) {
		nb_param *p = ps[i];
		size_t len = strlen(p->name);
		if (len > 13 && !strcmp(p->name + len - 13, ".running_mean"))
			tu_fill_normal(p->data, p->size, 0.3f, seed++);
		else if (len > 12 &&
			 !strcmp(p->name + len - 12, ".running_var"))
			tu_fill_uniform(p->data, p->size, 0.4f, 1.6f, seed++);
	}
	nb_net_set_training(net, 0);
	nb_net_set_frozen(net, 1);
	return net;
}

static nb_net *small_student(char *err)
{
	nb_net *net = nb_net_new(2, 6, 6);
	int x = nb_net_add_conv2d(net, 0, "c", 2, 3, 2, 1, 1, 1,
				  NB_INIT_DEFAULT, err);
	x = nb_net_add_tanh(net, x, err);
	x = nb_net_add_flatten(net, x, err);
	x = nb_net_add_linear(net, x, "fc", 5, 1, NB_INIT_DEFAULT, err);
	if (x < 0 || nb_net_finalize(net, 32, err) < 0) {
		nb_net_free(net);
		return NULL;
	}
	nb_net_set_training(net, 0);
	nb_net_set_frozen(net, 1);
	return net;
}

typedef struct obj_ctx {
	nb_net *t, *s;
	float *x;
	int y[6];
	int n;
	nb_inversion_weights w;
} obj_ctx;

static double obj_probe(void *vctx)
{
	obj_ctx *c = vctx;
	char err[NB_ERR_LEN];
	nb_inversion_terms terms;
	float *dx = malloc((size_t)c->n * 72 * sizeof *dx);
	int rc = nb_inversion_loss(c->t, c->s, c->x, c->y, c->n, &c->w, dx,
				   &terms, err);
	free(dx);
	return rc < 0 ? NAN : terms.total;
}

static void test_objective(void)
{
	char err[NB_ERR_LEN];
	enum { N = 6, PER = 2 * 6 * 6 };
	obj_ctx c = {0};
	c.t = bn_teacher(err);
	nb_net *student = small_student(err);
	c.s = student;
	CU_ASSERT_PTR_NOT_NULL_FATAL(c.t);
	CU_ASSERT_PTR_NOT_NULL_FATAL(student);
	c.n = N;
	float x[N * PER], dx[N * PER];
	tu_fill_normal(x, N * PER, 1.0f, 33);
	c.x = x;
	for (int i = 0; i < N; i++)
		c.y[i] = i % 5;
	/* weights of the order of the terms' gradients, so every term
	 * counts in the check */
	c.w = (nb_inversion_weights){0.5f, 0.05f, 0.02f, 0.7f, 3.0f};
	nb_inversion_terms t;
	CU_ASSERT_EQUAL_FATAL(
	    nb_inversion_loss(c.t, c.s, x, c.y, N, &c.w, dx, &t, err), 0);
	CU_ASSERT_EQUAL(t.bn_layers, 3);
	CU_ASSERT_TRUE(t.ce > 0 && t.bn > 0 && t.tv > 0 && t.l2 > 0);
	CU_ASSERT_TRUE(t.js > 0 && t.js < 1);
	CU_ASSERT_TRUE(t.correct >= 0 && t.correct <= N);
	CU_ASSERT_DOUBLE_EQUAL(
	    t.total,
	    t.ce + (double)c.w.bn * t.bn + (double)c.w.tv * t.tv +
		(double)c.w.l2 * t.l2 + (double)c.w.comp * (1 - t.js),
	    1e-9);
	CU_ASSERT_EQUAL(tu_gradcheck("inversion objective dx", obj_probe, &c, x,
				     dx, N * PER, 250, 1e-2, 1e-4, 1e-2),
			0);
	/* plain DeepInversion (no student) */
	c.w.comp = 0;
	c.s = NULL;
	CU_ASSERT_EQUAL_FATAL(
	    nb_inversion_loss(c.t, NULL, x, c.y, N, &c.w, dx, &t, err), 0);
	CU_ASSERT_DOUBLE_EQUAL(t.js, 0, 0);
	CU_ASSERT_EQUAL(tu_gradcheck("inversion objective dx (no ADI)",
				     obj_probe, &c, x, dx, N * PER, 250, 1e-2,
				     1e-4, 1e-2),
			0);
	/* cross entropy and the regulariser at a large weight */
	c.w = (nb_inversion_weights){10.0f, 0, 0, 0, 3.0f};
	CU_ASSERT_EQUAL_FATAL(
	    nb_inversion_loss(c.t, NULL, x, c.y, N, &c.w, dx, &t, err), 0);
	CU_ASSERT_EQUAL(tu_gradcheck("inversion objective dx (ce + bn)",
				     obj_probe, &c, x, dx, N * PER, 250, 1e-2,
				     1e-4, 1e-2),
			0);
	/* bad targets and a missing student are errors, not crashes */
	c.y[2] = 5;
	CU_ASSERT_EQUAL(
	    nb_inversion_loss(c.t, NULL, x, c.y, N, &c.w, dx, &t, err),
	    NB_EINVAL);
	c.y[2] = 2;
	c.w.comp = 1;
	CU_ASSERT_EQUAL(
	    nb_inversion_loss(c.t, NULL, x, c.y, N, &c.w, dx, &t, err),
	    NB_EINVAL);
	nb_net_free(c.t);
	nb_net_free(student);
}

void nb_test_inversion(void)
{
	static const nb_test_entry tests[] = {
	    {"BN statistics regulariser vs torch", test_bn_golden},
	    {"TV, l2 and jitter vs torch", test_prior_golden},
	    {"ADI competition vs torch", test_adi_golden},
	    {"BN statistics gradcheck", test_bn_gradcheck},
	    {"TV and l2 gradcheck", test_tv_l2_gradcheck},
	    {"ADI competition gradcheck (both logits)", test_adi_gradcheck},
	    {"jitter backward is the adjoint", test_jitter_adjoint},
	    {"whole objective to the image through networks", test_objective},
	    {NULL, NULL}};
	nb_test_add_suite("inversion", tests);
}
