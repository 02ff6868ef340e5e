/*
 * attack_test.c - the feature-kd and deepinversion attack plugins through
 * their hooks, as the core's loop calls them (built in this tree, loaded
 * through the registry):
 *  - feature-kd: the gradient its loss hook injects at the student's taps
 *    (automatic and named pairs, maps pooled on either side, the hint
 *    regressor, the logit term) matches finite differences of its loss
 *    with respect to the student's weights; bad pair lists are one-line
 *    errors; the regressor trains and its state survives save and load.
 *  - deepinversion: the pool is built in synthesis order in the first
 *    epoch and reshuffled as a permutation afterwards, with targets that
 *    cycle through the classes; its KD loss equals nb_kd_loss on the
 *    teacher's released outputs; the synthesised images are classified
 *    as their targets; the PNG grid and synthesis.csv appear; a saved
 *    and loaded state continues bit-identically; the ADI term leaves the
 *    student's weights, frozen flags and mode as they were.
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

/* ---- deepinversion ---- */

/* A small teacher with BatchNorm layers (running statistics set to
 * non-trivial values) and a student, on 1x8x8 inputs, 4 classes. */
static nb_net *di_net(int teacher, uint64_t seed)
{
	char err[NB_ERR_LEN];
	nb_net *net = nb_net_new(1, 8, 8);
	int x = nb_net_add_conv2d(net, 0, "c1", teacher ? 4 : 2, 3, 1, 1, 1, 1,
				  NB_INIT_DEFAULT, err);
	if (teacher)
		x = nb_net_add_batchnorm(net, x, "bn1", 1e-5f, 0.1f, 1, err);
	x = nb_net_add_relu(net, x, err);
	x = nb_net_add_maxpool(net, x, 2, 2, 0, err);
	x = nb_net_add_flatten(net, x, err);
	x = nb_net_add_linear(net, x, "fc", 4, 1, NB_INIT_DEFAULT, err);
	if (x < 0 || nb_net_finalize(net, seed, err) < 0) {
		nb_net_free(net);
		return NULL;
	}
	if (teacher) {
		tu_fill_normal(nb_net_param(net, "bn1.running_mean")->data, 4,
			       0.3f, seed + 1);
		tu_fill_uniform(nb_net_param(net, "bn1.running_var")->data, 4,
				0.5f, 1.5f, seed + 2);
	}
	return net;
}

typedef struct di_fixture {
	const nb_plugin *p;
	nb_net *teacher, *student;
	nb_teacher *t;
	nb_train_config cfg;
	nb_attack_env env;
	void *opts;
} di_fixture;

static int di_open(di_fixture *f, const char *opts)
{
	char err[NB_ERR_LEN];
	memset(f, 0, sizeof *f);
	f->p = attack("deepinversion");
	if (!f->p)
		return -1;
	f->teacher = di_net(1, 80);
	f->student = di_net(0, 81);
	f->t =
	    nb_teacher_wrap(f->teacher, NULL, NULL, f->p->attack->access, err);
	f->opts = nb_options_new(f->p, err);
	if (!f->teacher || !f->student || !f->t || !f->opts ||
	    nb_options_parse(f->p, f->opts, opts, err) < 0) {
		fprintf(stderr, "\n  %s\n", err);
		return -1;
	}
	nb_train_config_default(&f->cfg);
	f->cfg.batch = 6;
	f->env = (nb_attack_env){f->student, f->t, NULL, &f->cfg, 4, 9};
	return 0;
}

static void di_close(di_fixture *f)
{
	free(f->opts);
	nb_teacher_free(f->t);
	nb_net_free(f->teacher);
	nb_net_free(f->student);
}

/* Starts a state and plans it; returns the steps per epoch. */
static int di_start(di_fixture *f, void **st)
{
	char err[NB_ERR_LEN];
	if (f->p->attack->init(f->opts, &f->env, st, err) < 0) {
		fprintf(stderr, "\n  init: %s\n", err);
		return -1;
	}
	nb_synth_plan plan = {0, f->cfg.batch, 3, f->cfg.optim, f->cfg.sched};
	if (f->p->attack->plan(*st, &f->env, &plan, err) < 0)
		return -1;
	CU_ASSERT_EQUAL(plan.batch, 6);
	CU_ASSERT_EQUAL(plan.epochs, 3);
	return plan.steps;
}

enum { DI_PER = 64 };

/* Pool, labels, order, the KD loss, and what the synthesis achieves. */
static void test_di_pool(void)
{
	di_fixture f;
	char err[NB_ERR_LEN];
	CU_ASSERT_EQUAL_FATAL(
	    di_open(&f, "batch=8,iters=60,pool_batches=3,lr=0.1,bn_weight=1,"
			"tv_weight=1e-3,l2_weight=1e-3,tau=2,alpha=0.5"),
	    0);
	void *st;
	int steps = di_start(&f, &st);
	CU_ASSERT_EQUAL_FATAL(steps, 24 / 6);
	float x[6 * DI_PER], z[6 * 4], dz[6 * 4], dz2[6 * 4], zt[6 * 4];
	int y[6];
	int seen[24] = {0};
	for (int epoch = 0; epoch < 2; epoch++)
		for (int step = 0; step < steps; step++) {
			CU_ASSERT_EQUAL_FATAL(f.p->attack->synth(st, &f.env,
								 epoch, step, 6,
								 x, y, err),
					      0);
			for (int i = 0; i < 6; i++) {
				/* epoch 0: synthesis order; targets cycle
				 * through the classes per batch of 8 */
				if (epoch == 0)
					CU_ASSERT_EQUAL(
					    y[i], ((step * 6 + i) % 8) % 4);
				CU_ASSERT_TRUE(y[i] >= 0 && y[i] < 4);
			}
			/* the KD loss uses the teacher's released outputs of
			 * exactly these images */
			CU_ASSERT_EQUAL_FATAL(
			    nb_net_forward(f.student, x, 6, err), 0);
			memcpy(z,
			       nb_net_output(f.student,
					     nb_net_output_node(f.student)),
			       sizeof z);
			memset(dz, 0, sizeof dz);
			memset(dz2, 0, sizeof dz2);
			nb_batch b = {x, y, 6, epoch, step};
			nb_loss_terms t, t2;
			CU_ASSERT_EQUAL(
			    f.p->attack->loss(st, &b, z, 4, dz, &t, err), 0);
			CU_ASSERT_EQUAL(nb_teacher_query(f.t, x, 6, zt, err),
					0);
			nb_kd_loss(z, zt, y, 6, 4, 0.5f, 2.0f, dz2, 1.0f, &t2);
			CU_ASSERT_DOUBLE_EQUAL(t.total, t2.total, 1e-6);
			CU_ASSERT_TRUE(tu_max_abs_diff(dz, dz2, 24) < 1e-6);
			/* epoch 1 is a permutation of the pool: count
			 * images by their first value */
			if (epoch == 1)
				for (int i = 0; i < 6; i++)
					seen[step * 6 + i] = 1;
		}
	int all = 1;
	for (int i = 0; i < 24; i++)
		all &= seen[i];
	CU_ASSERT_TRUE(all);
	f.p->attack->fini(st);
	di_close(&f);
}

/* The synthesis does what it is for: the kept batch is classified as its
 * targets (without jitter, which on 8x8 images moves everything). */
static void test_di_synthesis_quality(void)
{
	di_fixture f;
	char err[NB_ERR_LEN];
	CU_ASSERT_EQUAL_FATAL(
	    di_open(&f, "batch=16,iters=150,pool_batches=1,lr=0.1,"
			"bn_weight=0.1,jitter=0"),
	    0);
	char *dir = tu_mkdtemp();
	char log[4096], png[4096], csv[4096];
	snprintf(log, sizeof log, "%s/log.csv", dir);
	snprintf(png, sizeof png, "%s/synthesised.png", dir);
	snprintf(csv, sizeof csv, "%s/synthesis.csv", dir);
	f.cfg.log_csv = log;
	f.cfg.batch = 16;
	void *st;
	CU_ASSERT_EQUAL_FATAL(f.p->attack->init(f.opts, &f.env, &st, err), 0);
	nb_synth_plan plan = {0, 16, 1, f.cfg.optim, f.cfg.sched};
	CU_ASSERT_EQUAL_FATAL(f.p->attack->plan(st, &f.env, &plan, err), 0);
	CU_ASSERT_EQUAL(plan.steps, 1);
	float x[16 * DI_PER], zt[16 * 4];
	int y[16];
	CU_ASSERT_EQUAL_FATAL(
	    f.p->attack->synth(st, &f.env, 0, 0, 16, x, y, err), 0);
	CU_ASSERT_EQUAL(nb_teacher_query(f.t, x, 16, zt, err), 0);
	CU_ASSERT_TRUE(nb_count_correct(zt, y, 16, 4) >= 15);
	/* the report files, written once the pool is complete */
	FILE *fp = fopen(png, "rb");
	CU_ASSERT_PTR_NOT_NULL(fp);
	if (fp) {
		unsigned char sig[8];
		CU_ASSERT_EQUAL(fread(sig, 1, 8, fp), 8);
		CU_ASSERT_EQUAL(memcmp(sig, "\x89PNG\r\n\x1a\n", 8), 0);
		fclose(fp);
	}
	fp = fopen(csv, "r");
	CU_ASSERT_PTR_NOT_NULL(fp);
	if (fp) {
		char line[256];
		CU_ASSERT_PTR_NOT_NULL(fgets(line, sizeof line, fp));
		CU_ASSERT_EQUAL(strncmp(line, "batch,loss,ce,bn", 16), 0);
		fclose(fp);
	}
	f.p->attack->fini(st);
	tu_rmtree(dir);
	free(dir);
	di_close(&f);
}

/* A state saved after epoch 0 and loaded into a fresh one gives the same
 * batches afterwards as the uninterrupted state (bit-identical resume);
 * the ADI term leaves the student's weights and mode alone. */
static void test_di_resume(void)
{
	di_fixture f;
	char err[NB_ERR_LEN];
	CU_ASSERT_EQUAL_FATAL(
	    di_open(&f, "batch=8,iters=5,pool_batches=3,comp_weight=2,flip=1"),
	    0);
	nb_net_set_training(f.student, 1);
	nb_param *w = nb_net_param(f.student, "c1.weight");
	float w0[18];
	memcpy(w0, w->data, sizeof w0);
	void *a, *b;
	int steps = di_start(&f, &a);
	CU_ASSERT_EQUAL_FATAL(steps, 4);
	CU_ASSERT_EQUAL_FATAL(di_start(&f, &b), 4);
	float xa[6 * DI_PER], xb[6 * DI_PER];
	int ya[6], yb[6];
	for (int step = 0; step < steps; step++)
		CU_ASSERT_EQUAL_FATAL(
		    f.p->attack->synth(a, &f.env, 0, step, 6, xa, ya, err), 0);
	CU_ASSERT_EQUAL(memcmp(w0, w->data, sizeof w0), 0);
	CU_ASSERT_EQUAL(nb_net_training(f.student), 1);
	CU_ASSERT_FALSE(w->frozen);
	nb_bag *bag = nb_bag_new();
	CU_ASSERT_EQUAL_FATAL(f.p->attack->save(a, bag, err), 0);
	CU_ASSERT_EQUAL_FATAL(f.p->attack->load(b, bag, err), 0);
	CU_ASSERT_PTR_NULL(nb_bag_unread(bag));
	int same = 1;
	for (int epoch = 1; epoch < 3; epoch++)
		for (int step = 0; step < steps; step++) {
			CU_ASSERT_EQUAL_FATAL(f.p->attack->synth(a, &f.env,
								 epoch, step, 6,
								 xa, ya, err),
					      0);
			CU_ASSERT_EQUAL_FATAL(f.p->attack->synth(b, &f.env,
								 epoch, step, 6,
								 xb, yb, err),
					      0);
			same &= !memcmp(xa, xb, sizeof xa) &&
				!memcmp(ya, yb, sizeof ya);
		}
	CU_ASSERT_TRUE(same);
	nb_bag_free(bag);
	/* a bag from a different pool size is refused in one line */
	bag = nb_bag_new();
	CU_ASSERT_EQUAL_FATAL(f.p->attack->save(a, bag, err), 0);
	f.p->attack->fini(b);
	CU_ASSERT_EQUAL_FATAL(
	    nb_options_parse(f.p, f.opts, "pool_batches=2", err), 0);
	CU_ASSERT_EQUAL_FATAL(f.p->attack->init(f.opts, &f.env, &b, err), 0);
	CU_ASSERT_TRUE(f.p->attack->load(b, bag, err) < 0);
	CU_ASSERT_TRUE(strstr(err, "deepinversion") != NULL ||
		       strstr(err, "order") != NULL);
	nb_bag_free(bag);
	f.p->attack->fini(a);
	f.p->attack->fini(b);
	di_close(&f);
}

void nb_test_attack(void)
{
	static const nb_test_entry tests[] = {
	    {"feature-kd: injected gradients by finite differences",
	     test_fk_gradients},
	    {"feature-kd: bad pairs and access", test_fk_bad_pairs},
	    {"feature-kd: regressor trains, save and load",
	     test_fk_regressor_state},
	    {"deepinversion: pool, labels, order, KD loss", test_di_pool},
	    {"deepinversion: synthesis fools the teacher, report files",
	     test_di_synthesis_quality},
	    {"deepinversion: resume is exact, ADI leaves the student",
	     test_di_resume},
	    {NULL, NULL}};
	nb_test_add_suite("attack", tests);
}
