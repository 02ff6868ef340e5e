/*
 * attack_test.c - the feature-kd and deepinversion attack plugins through
 * their hooks, as the core's loop calls them (built in this tree, loaded
 * through the registry):
 *  - feature-kd: the gradient its loss hook injects at the student's taps
 *    (automatic and named pairs, maps pooled on either side, the hint
 *    regressor, the logit term) matches finite differences of its loss
 *    with respect to the student's weights; bad pair lists are one-line
 *    errors; the regressor trains and its state survives save and load.
 *  - deepinversion: see the tests below.
 *
 * Not tested here: the losses' own values (featloss_test.c,
 * inversion_test.c) and whole runs (tests/suite-smoke.sh).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bag.h"
#include "error.h"
#include "plugin.h"
#include "registry.h"
#include "testutil.h"

static const nb_plugin *attack(const char *name)
{
	return nb_registry_find(tu_registry(), NB_PLUGIN_ATTACK, name);
}

static nb_net *arch(const char *name, uint64_t seed)
{
	char err[NB_ERR_LEN];
	nb_net *net = NULL;
	const nb_plugin *p = tu_arch(name);
	if (!p || nb_arch_build(p, NULL, 1, 32, 32, 10, seed, &net, err) < 0) {
		fprintf(stderr, "\n  %s: %s\n", name, p ? err : "not built");
		return NULL;
	}
	return net;
}

/* ---- feature-kd ---- */

/* Smooth stand-ins for the cnn teacher and the LeNet-5-half student (tanh
 * and average pooling instead of ReLU and max pooling, so that finite
 * differences hold), with the same stage taps and map sizes: teacher
 * stage1..3 at 16x16, 8x8, 4x4; student stage1..2 at 14x14, 5x5. */
static nb_net *smooth_teacher(void)
{
	char err[NB_ERR_LEN];
	nb_net *net = nb_net_new(1, 32, 32);
	int x = 0;
	for (int i = 1; i <= 3; i++) {
		char name[16];
		snprintf(name, sizeof name, "conv%d", i);
		x = nb_net_add_conv2d(net, x, name, 2 + 2 * i, 3, 1, 1, 1, 1,
				      NB_INIT_DEFAULT, err);
		x = nb_net_add_tanh(net, x, err);
		x = nb_net_add_avgpool(net, x, 2, 2, 0, err);
		snprintf(name, sizeof name, "stage%d", i);
		nb_net_add_tap(net, x, name, err);
	}
	x = nb_net_add_flatten(net, x, err);
	x = nb_net_add_linear(net, x, "fc", 10, 1, NB_INIT_DEFAULT, err);
	if (x < 0 || nb_net_finalize(net, 1, err) < 0) {
		nb_net_free(net);
		return NULL;
	}
	return net;
}

static nb_net *smooth_student(void)
{
	char err[NB_ERR_LEN];
	nb_net *net = nb_net_new(1, 32, 32);
	int x = nb_net_add_conv2d(net, 0, "conv1", 3, 5, 1, 0, 1, 1,
				  NB_INIT_DEFAULT, err);
	x = nb_net_add_tanh(net, x, err);
	x = nb_net_add_avgpool(net, x, 2, 2, 0, err);
	nb_net_add_tap(net, x, "stage1", err);
	x = nb_net_add_conv2d(net, x, "conv2", 5, 5, 1, 0, 1, 1,
			      NB_INIT_DEFAULT, err);
	x = nb_net_add_tanh(net, x, err);
	x = nb_net_add_avgpool(net, x, 2, 2, 0, err);
	nb_net_add_tap(net, x, "stage2", err);
	x = nb_net_add_flatten(net, x, err);
	x = nb_net_add_linear(net, x, "fc", 10, 1, NB_INIT_DEFAULT, err);
	if (x < 0 || nb_net_finalize(net, 2, err) < 0) {
		nb_net_free(net);
		return NULL;
	}
	return net;
}

typedef struct fk_ctx {
	const nb_plugin *p;
	void *state;
	nb_net *student;
	float *x;
	int *y;
	int n;
} fk_ctx;

/* The hook's loss for the current student weights (the regressors do not
 * move: the optimiser's lr is 0). */
static double fk_probe(void *vctx)
{
	fk_ctx *c = vctx;
	char err[NB_ERR_LEN];
	if (nb_net_forward(c->student, c->x, c->n, err) < 0)
		return NAN;
	int on = nb_net_output_node(c->student);
	float *dz = nb_net_grad(c->student, on);
	nb_batch b = {c->x, c->y, c->n, 0, 0};
	nb_loss_terms t = {0, 0, 0};
	if (c->p->attack->loss(c->state, &b, nb_net_output(c->student, on), 10,
			       dz, &t, err) < 0)
		return NAN;
	return t.total;
}

static void fk_case(const char *opts, const char *what)
{
	char err[NB_ERR_LEN];
	const nb_plugin *p = attack("feature-kd");
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	nb_net *teacher = smooth_teacher(), *student = smooth_student();
	CU_ASSERT_PTR_NOT_NULL_FATAL(teacher);
	CU_ASSERT_PTR_NOT_NULL_FATAL(student);
	nb_teacher *t =
	    nb_teacher_wrap(teacher, NULL, NULL, p->attack->access, err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(t);
	void *o = nb_options_new(p, err);
	CU_ASSERT_EQUAL_FATAL(nb_options_parse(p, o, opts, err), 0);
	nb_train_config cfg;
	nb_train_config_default(&cfg);
	/* keeps the regressors still for the probe */
	cfg.optim.lr = 0;
	cfg.sched.base_lr = 0;
	nb_attack_env env = {student, t, NULL, &cfg, 10, 5};
	fk_ctx c = {p, NULL, student, NULL, NULL, 6};
	CU_ASSERT_EQUAL_FATAL(p->attack->init(o, &env, &c.state, err), 0);
	c.x = malloc((size_t)c.n * 32 * 32 * sizeof(float));
	c.y = malloc((size_t)c.n * sizeof(int));
	tu_fill_normal(c.x, (size_t)c.n * 32 * 32, 1.0f, 70);
	for (int i = 0; i < c.n; i++)
		c.y[i] = (3 * i) % 10;
	/* analytic: the hook's injected gradients, then the backward */
	nb_net_zero_grad(student);
	double v = fk_probe(&c);
	CU_ASSERT_TRUE(isfinite(v) && v > 0);
	CU_ASSERT_EQUAL_FATAL(nb_net_backward(student, NULL, err), 0);
	nb_param *w = nb_net_param(student, "conv1.weight");
	nb_param *w2 = nb_net_param(student, "conv2.weight");
	CU_ASSERT_PTR_NOT_NULL_FATAL(w);
	float *g = malloc(w->size * sizeof *g),
	      *g2 = malloc(w2->size * sizeof *g2);
	memcpy(g, w->grad, w->size * sizeof *g);
	memcpy(g2, w2->grad, w2->size * sizeof *g2);
	char name[128];
	snprintf(name, sizeof name, "feature-kd %s conv1", what);
	CU_ASSERT_EQUAL(tu_gradcheck(name, fk_probe, &c, w->data, g, w->size,
				     75, 3e-3, 5e-5, 5e-3),
			0);
	snprintf(name, sizeof name, "feature-kd %s conv2", what);
	CU_ASSERT_EQUAL(tu_gradcheck(name, fk_probe, &c, w2->data, g2, w2->size,
				     75, 3e-3, 5e-5, 5e-3),
			0);
	p->attack->fini(c.state);
	free(g);
	free(g2);
	free(c.x);
	free(c.y);
	free(o);
	nb_teacher_free(t);
	nb_net_free(teacher);
	nb_net_free(student);
}

static void test_fk_gradients(void)
{
	/* automatic pairs: student stage1/2 (14x14, 5x5) with teacher
	 * stage2/3 (8x8, 4x4): every student map pooled */
	fk_case("hint_weight=3,at_weight=50,kd_weight=1", "auto pairs");
	/* named pairs, the teacher's map pooled too (16x16 -> 5x5) */
	fk_case("hint_weight=2,at_weight=80,kd_weight=0.5,"
		"at_pairs=stage2:stage1,hint_pairs=stage2:stage1",
		"named pairs");
	/* features only, p = 3 */
	fk_case("hint_weight=0,at_weight=100,kd_weight=0,at_p=3,"
		"at_pairs=stage1:stage1 stage2:stage3",
		"attention only");
}

static void test_fk_bad_pairs(void)
{
	char err[NB_ERR_LEN];
	const nb_plugin *p = attack("feature-kd");
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	nb_net *teacher = arch("cnn", 1), *student = arch("lenet5-half", 2);
	CU_ASSERT_PTR_NOT_NULL_FATAL(teacher);
	CU_ASSERT_PTR_NOT_NULL_FATAL(student);
	nb_teacher *t =
	    nb_teacher_wrap(teacher, NULL, NULL, p->attack->access, err);
	nb_train_config cfg;
	nb_train_config_default(&cfg);
	nb_attack_env env = {student, t, NULL, &cfg, 10, 5};
	static const struct {
		const char *opts, *msg;
	} bad[] = {{"at_pairs=stage9:stage1", "student has no tap 'stage9'"},
		   {"hint_pairs=stage1:nope", "teacher has no tap 'nope'"},
		   {"at_pairs=stage1", "expected student_tap:teacher_tap"},
		   {"at_pairs=stage1:stage2:stage3",
		    "expected student_tap:teacher_tap"},
		   {"at_pairs= ", "at_pairs is empty"}};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		void *o = nb_options_new(p, err), *st = (void *)1;
		CU_ASSERT_EQUAL_FATAL(nb_options_parse(p, o, bad[i].opts, err),
				      0);
		err[0] = 0;
		CU_ASSERT_EQUAL(p->attack->init(o, &env, &st, err), NB_EINVAL);
		CU_ASSERT_PTR_NULL(st);
		if (!strstr(err, bad[i].msg))
			fprintf(stderr, "\n  %s: '%s'", bad[i].opts, err);
		CU_ASSERT_TRUE(strstr(err, bad[i].msg) != NULL);
		free(o);
	}
	/* a teacher network without feature access is refused */
	nb_teacher *blind =
	    nb_teacher_wrap(teacher, NULL, NULL, NB_ACCESS_OUTPUTS, err);
	nb_attack_env env2 = {student, blind, NULL, &cfg, 10, 5};
	void *o = nb_options_new(p, err), *st;
	CU_ASSERT_EQUAL(p->attack->init(o, &env2, &st, err), NB_EINVAL);
	free(o);
	nb_teacher_free(blind);
	nb_teacher_free(t);
	nb_net_free(teacher);
	nb_net_free(student);
}

/* The regressor learns (the hint falls over steps with a fixed student)
 * and save/load restore it exactly. */
static void test_fk_regressor_state(void)
{
	char err[NB_ERR_LEN];
	const nb_plugin *p = attack("feature-kd");
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	nb_net *teacher = arch("cnn", 1), *student = arch("lenet5-half", 2);
	CU_ASSERT_PTR_NOT_NULL_FATAL(teacher);
	CU_ASSERT_PTR_NOT_NULL_FATAL(student);
	nb_teacher *t =
	    nb_teacher_wrap(teacher, NULL, NULL, p->attack->access, err);
	void *o = nb_options_new(p, err);
	CU_ASSERT_EQUAL_FATAL(
	    nb_options_parse(p, o, "hint_weight=1,at_weight=0,kd_weight=0",
			     err),
	    0);
	nb_train_config cfg;
	nb_train_config_default(&cfg);
	cfg.optim.lr = 0.01f;
	cfg.sched.base_lr = 0.01f;
	nb_attack_env env = {student, t, NULL, &cfg, 10, 5};
	fk_ctx c = {p, NULL, student, NULL, NULL, 8};
	CU_ASSERT_EQUAL_FATAL(p->attack->init(o, &env, &c.state, err), 0);
	c.x = malloc((size_t)c.n * 32 * 32 * sizeof(float));
	c.y = calloc((size_t)c.n, sizeof(int));
	tu_fill_normal(c.x, (size_t)c.n * 32 * 32, 1.0f, 71);
	double first = fk_probe(&c), last = first;
	for (int k = 0; k < 30; k++)
		last = fk_probe(&c);
	CU_ASSERT_TRUE(last < 0.8 * first);
	/* save, disturb by more steps, load: the next loss is the saved
	 * state's */
	nb_bag *bag = nb_bag_new();
	CU_ASSERT_EQUAL_FATAL(p->attack->save(c.state, bag, err), 0);
	CU_ASSERT_TRUE(nb_bag_count(bag) >= 2);
	/* copy the referenced floats: the saved weights move with steps */
	nb_bag *copy = nb_bag_new();
	float *keep[64];
	int nk = 0;
	for (int i = 0; i < nb_bag_count(bag) && nk < 64; i++) {
		const char *name;
		int is_i64;
		const void *d;
		size_t n;
		nb_bag_entry(bag, i, &name, &is_i64, &d, &n);
		if (is_i64) {
			int64_t *v = malloc(n * sizeof *v);
			memcpy(v, d, n * sizeof *v);
			keep[nk++] = (float *)v;
			nb_bag_put_i64(copy, name, v, n, err);
		} else {
			float *v = malloc(n * sizeof *v);
			memcpy(v, d, n * sizeof *v);
			keep[nk++] = v;
			nb_bag_put_f32(copy, name, v, n, err);
		}
	}
	double at_save = fk_probe(&c); /* steps once more */
	for (int k = 0; k < 5; k++)
		fk_probe(&c);
	CU_ASSERT_EQUAL(p->attack->load(c.state, copy, err), 0);
	CU_ASSERT_PTR_NULL(nb_bag_unread(copy));
	CU_ASSERT_DOUBLE_EQUAL(fk_probe(&c), at_save, 0);
	for (int i = 0; i < nk; i++)
		free(keep[i]);
	nb_bag_free(copy);
	nb_bag_free(bag);
	p->attack->fini(c.state);
	free(c.x);
	free(c.y);
	free(o);
	nb_teacher_free(t);
	nb_net_free(teacher);
	nb_net_free(student);
}

void nb_test_attack(void)
{
	static const nb_test_entry tests[] = {
	    {"feature-kd: injected gradients by finite differences",
	     test_fk_gradients},
	    {"feature-kd: bad pairs and access", test_fk_bad_pairs},
	    {"feature-kd: regressor trains, save and load",
	     test_fk_regressor_state},
	    {NULL, NULL}};
	nb_test_add_suite("attack", tests);
}
