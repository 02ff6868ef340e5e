/*
 * dafl_test.c - data-free distillation: DAFL's three generator losses
 * against PyTorch golden values and finite differences, the gradient that
 * flows from them back through a frozen teacher into the generator, the
 * generator's parameter counts (the reference's), the `dafl` plugin's
 * access, plan, synthetic batches and state, and the core's data-free
 * training loop: a run killed after an epoch and resumed from its state
 * file is bit-identical to an uninterrupted one, generator included; a
 * state file whose hook state is missing or foreign is refused.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "dafl.h"
#include "data.h"
#include "error.h"
#include "registry.h"
#include "testutil.h"
#include "train.h"

#include "../fixtures/golden_dafl.h"

/* ---- the losses ------------------------------------------------------------
 */

static void losses_match_torch(void)
{
	float g_o[GD_B * GD_C] = {0}, g_f[GD_B * GD_NF] = {0};
	float g1[GD_B * GD_C] = {0}, g2[GD_B * GD_C] = {0};
	float g3[GD_B * GD_NF] = {0};
	int pred[GD_B];
	double oh = nb_dafl_onehot_loss(gd_o, GD_B, GD_C, pred, g1, 1.0f);
	double ie = nb_dafl_entropy_loss(gd_o, GD_B, GD_C, g2, 1.0f);
	double a = nb_dafl_activation_loss(gd_f, GD_B * GD_NF, g3, 1.0f);
	CU_ASSERT_DOUBLE_EQUAL(oh, gd_l_oh, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(ie, gd_l_ie, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(a, gd_l_a, 1e-9);
	for (int b = 0; b < GD_B; b++)
		CU_ASSERT_EQUAL(pred[b], gd_pred[b]);
	for (int i = 0; i < GD_B * GD_C; i++) {
		CU_ASSERT_DOUBLE_EQUAL(g1[i], gd_g_oh[i], 1e-7);
		CU_ASSERT_DOUBLE_EQUAL(g2[i], gd_g_ie[i], 1e-7);
	}
	for (int i = 0; i < GD_B * GD_NF; i++)
		CU_ASSERT_DOUBLE_EQUAL(g3[i], gd_g_a[i], 1e-9);
	/* weighted and accumulated into one buffer, as the plugin does */
	double total =
	    GD_OH *
		nb_dafl_onehot_loss(gd_o, GD_B, GD_C, NULL, g_o, (float)GD_OH) +
	    GD_IE * nb_dafl_entropy_loss(gd_o, GD_B, GD_C, g_o, (float)GD_IE) +
	    GD_A *
		nb_dafl_activation_loss(gd_f, GD_B * GD_NF, g_f, (float)GD_A);
	CU_ASSERT_DOUBLE_EQUAL(total, gd_loss, 1e-9);
	for (int i = 0; i < GD_B * GD_C; i++)
		CU_ASSERT_DOUBLE_EQUAL(g_o[i], gd_g_o[i], 5e-7);
	for (int i = 0; i < GD_B * GD_NF; i++)
		CU_ASSERT_DOUBLE_EQUAL(g_f[i], gd_g_f[i], 1e-9);
	/* the student's kdloss is KL at temperature 1, batchmean */
	float g_s[GD_B * GD_C] = {0};
	double kd =
	    nb_kl_div_temp(gd_o, gd_s, GD_B, GD_C, 1.0f, NULL, g_s, 1.0f);
	CU_ASSERT_DOUBLE_EQUAL(kd, gd_l_kd, 1e-6);
	for (int i = 0; i < GD_B * GD_C; i++)
		CU_ASSERT_DOUBLE_EQUAL(g_s[i], gd_g_s[i], 1e-7);
}

enum { T_ONEHOT, T_ENTROPY, T_ACT };

typedef struct loss_ctx {
	int kind, B, C;
	const float *x;
} loss_ctx;

static double loss_eval(void *p)
{
	loss_ctx *c = p;
	switch (c->kind) {
	case T_ONEHOT:
		return nb_dafl_onehot_loss(c->x, c->B, c->C, NULL, NULL, 0);
	case T_ENTROPY:
		return nb_dafl_entropy_loss(c->x, c->B, c->C, NULL, 0);
	default:
		return nb_dafl_activation_loss(c->x, (size_t)c->B * c->C, NULL,
					       0);
	}
}

static void losses_gradcheck(void)
{
	enum { B = 7, C = 10 };
	float x[B * C], g[B * C];
	loss_ctx c = {0, B, C, x};
	/* one-hot: a clear maximum per row, so the pseudo-label does not
	 * move under the finite differences */
	tu_fill_normal(x, B * C, 2.0f, 31);
	for (int b = 0; b < B; b++)
		x[b * C + (b * 3) % C] += 6.0f;
	memset(g, 0, sizeof g);
	nb_dafl_onehot_loss(x, B, C, NULL, g, 1.0f);
	c.kind = T_ONEHOT;
	tu_gradcheck("DAFL one-hot", loss_eval, &c, x, g, B * C, 200, 1e-3,
		     1e-6, 1e-3);
	tu_fill_normal(x, B * C, 3.0f, 32);
	memset(g, 0, sizeof g);
	nb_dafl_entropy_loss(x, B, C, g, 1.0f);
	c.kind = T_ENTROPY;
	tu_gradcheck("DAFL information entropy", loss_eval, &c, x, g, B * C,
		     200, 1e-3, 1e-6, 1e-3);
	static const float kink = 0.0f;
	tu_fill_normal(x, B * C, 1.0f, 33);
	tu_push_away(x, B * C, &kink, 1, 0.05f);
	memset(g, 0, sizeof g);
	nb_dafl_activation_loss(x, B * C, g, 1.0f);
	c.kind = T_ACT;
	tu_gradcheck("DAFL activation", loss_eval, &c, x, g, B * C, 200, 1e-3,
		     1e-7, 1e-3);
	/* a class nobody predicts: finite, no gradient from it */
	float o[2 * 3] = {0, 0, -INFINITY, 1, 0, -INFINITY};
	float go[6] = {0};
	double ie = nb_dafl_entropy_loss(o, 2, 3, go, 1.0f);
	CU_ASSERT(isfinite(ie));
	CU_ASSERT_EQUAL(go[2], 0.0f);
	CU_ASSERT_EQUAL(go[5], 0.0f);
}

/* ---- the reshape node (the generator's view) -------------------------------
 */

static void reshape_node(void)
{
	char err[NB_ERR_LEN];
	nb_net *net = nb_net_new(12, 1, 1);
	int x = nb_net_add_reshape(net, 0, 3, 2, 2, err);
	CU_ASSERT_FATAL(x > 0);
	int c, h, w;
	nb_net_node_shape(net, x, &c, &h, &w);
	CU_ASSERT(c == 3 && h == 2 && w == 2);
	/* a conv after it, so the gradient has somewhere to go */
	int y = nb_net_add_conv2d(net, x, "conv", 2, 2, 1, 0, 1, 0,
				  NB_INIT_DEFAULT, err);
	CU_ASSERT_FATAL(y > 0);
	CU_ASSERT_EQUAL_FATAL(nb_net_finalize(net, 1, err), 0);
	float in[2 * 12], dx[2 * 12];
	for (int i = 0; i < 24; i++)
		in[i] = (float)i;
	CU_ASSERT_EQUAL_FATAL(nb_net_forward(net, in, 2, err), 0);
	/* the same values in the same order, as torch's view */
	CU_ASSERT(memcmp(nb_net_output(net, x), in, sizeof in) == 0);
	/* the gradient comes back unchanged, in the same order */
	float *g = nb_net_grad(net, x);
	for (int i = 0; i < 24; i++)
		g[i] = 0.5f * (float)i - 3.0f;
	CU_ASSERT_EQUAL(nb_net_backward(net, dx, err), 0);
	for (int i = 0; i < 24; i++)
		CU_ASSERT_EQUAL(dx[i], 0.5f * (float)i - 3.0f);
	nb_net_free(net);
	/* a shape with another number of values is refused */
	net = nb_net_new(12, 1, 1);
	CU_ASSERT_EQUAL(nb_net_add_reshape(net, 0, 5, 2, 2, err), NB_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "12 values"));
	CU_ASSERT_STRING_EQUAL(nb_node_kind_name(NB_NODE_RESHAPE), "reshape");
	nb_net_free(net);
}

/* ---- the generator
 * ------------------------------------------------------------ */

static void generator_matches_reference(void)
{
	char err[NB_ERR_LEN];
	nb_net *g;
	/* DAFL's MNIST and CIFAR generators */
	CU_ASSERT_EQUAL_FATAL(nb_dafl_generator(100, 1, 32, 32, 128, &g, err),
			      0);
	CU_ASSERT_EQUAL_FATAL(nb_net_finalize(g, 1, err), 0);
	CU_ASSERT_EQUAL(nb_net_param_count(g), 1049985);
	int c, h, w;
	nb_net_node_shape(g, nb_net_output_node(g), &c, &h, &w);
	CU_ASSERT(c == 1 && h == 32 && w == 32);
	CU_ASSERT_PTR_NOT_NULL(nb_net_param(g, "l1.0.weight"));
	CU_ASSERT_PTR_NOT_NULL(nb_net_param(g, "conv_blocks2.3.bias"));
	/* the final BatchNorm has running statistics but no affine part */
	CU_ASSERT_PTR_NOT_NULL(nb_net_param(g, "conv_blocks2.5.running_var"));
	CU_ASSERT_PTR_NULL(nb_net_param(g, "conv_blocks2.5.weight"));
	nb_net_free(g);
	CU_ASSERT_EQUAL_FATAL(nb_dafl_generator(1000, 3, 32, 32, 128, &g, err),
			      0);
	CU_ASSERT_EQUAL_FATAL(nb_net_finalize(g, 1, err), 0);
	CU_ASSERT_EQUAL(nb_net_param_count(g), 8423939);
	nb_net_free(g);
	/* 28x28 (unpadded MNIST): a 7x7 start */
	CU_ASSERT_EQUAL_FATAL(nb_dafl_generator(100, 1, 28, 28, 128, &g, err),
			      0);
	nb_net_node_shape(g, nb_net_output_node(g), &c, &h, &w);
	CU_ASSERT(c == 1 && h == 28 && w == 28);
	nb_net_free(g);
	/* sides that are not multiples of 4 cannot be made */
	CU_ASSERT_EQUAL(nb_dafl_generator(100, 1, 30, 30, 128, &g, err),
			NB_EINVAL);
	CU_ASSERT_PTR_NULL(g);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "multiples of 4"));
}

/*
 * The generator's loss through a frozen teacher: a small generator
 * (latent 3, width 4, 1x8x8) feeds a small teacher (conv, tanh, average
 * pool, flatten = "features", linear: smooth, so finite differences do not
 * cross ReLU kinks); L_G = oh*CE(o, argmax o) + ie*entropy + a*act. The
 * analytic gradient (teacher backward with dx, then the generator's
 * backward) is compared with finite differences for generator weights
 * and for the latent input. The loss still has kinks (LeakyReLU, |f|,
 * argmax), so the tolerance is 8% of the value: a wrong or missing path
 * is off by far more.
 */
typedef struct chain {
	nb_net *gen, *teacher;
	int feat, B;
	float *z;
	int *labels; /* fixed pseudo-labels (argmax does not move) */
} chain;

static double chain_loss(chain *c, float *dz, char *err)
{
	if (nb_net_forward(c->gen, c->z, c->B, err) < 0)
		return NAN;
	float *x = nb_net_output(c->gen, nb_net_output_node(c->gen));
	if (nb_net_forward(c->teacher, x, c->B, err) < 0)
		return NAN;
	int out = nb_net_output_node(c->teacher);
	const float *o = nb_net_output(c->teacher, out);
	int C, fc;
	nb_net_node_shape(c->teacher, out, &C, NULL, NULL);
	nb_net_node_shape(c->teacher, c->feat, &fc, NULL, NULL);
	const float *f = nb_net_output(c->teacher, c->feat);
	/* CE with the fixed labels: the one-hot loss where argmax = label */
	float *d_o = dz ? nb_net_grad(c->teacher, out) : NULL;
	float *d_f = dz ? nb_net_grad(c->teacher, c->feat) : NULL;
	double l =
	    1.0 * nb_dafl_onehot_loss(o, c->B, C, NULL, d_o, 1.0f) +
	    5.0 * nb_dafl_entropy_loss(o, c->B, C, d_o, 5.0f) +
	    0.1 * nb_dafl_activation_loss(f, (size_t)c->B * fc, d_f, 0.1f);
	if (!dz)
		return l;
	int gc, gh, gw;
	nb_net_node_shape(c->gen, nb_net_output_node(c->gen), &gc, &gh, &gw);
	size_t nx = (size_t)c->B * gc * gh * gw;
	float *dx = malloc(nx * sizeof *dx);
	if (nb_net_backward(c->teacher, dx, err) < 0) {
		free(dx);
		return NAN;
	}
	float *dg = nb_net_grad(c->gen, nb_net_output_node(c->gen));
	for (size_t i = 0; i < nx; i++)
		dg[i] += dx[i];
	free(dx);
	nb_net_zero_grad(c->gen);
	if (nb_net_backward(c->gen, dz, err) < 0)
		return NAN;
	return l;
}

static double chain_eval(void *p)
{
	char err[NB_ERR_LEN];
	return chain_loss(p, NULL, err);
}

static void gradient_reaches_the_generator(void)
{
	char err[NB_ERR_LEN];
	enum { B = 6, LAT = 3 };
	chain c = {0};
	c.B = B;
	CU_ASSERT_EQUAL_FATAL(nb_dafl_generator(LAT, 1, 8, 8, 4, &c.gen, err),
			      0);
	CU_ASSERT_EQUAL_FATAL(nb_net_finalize(c.gen, 3, err), 0);
	nb_net_set_training(c.gen, 1);
	/* the BatchNorm running statistics change with every forward; only
	 * the batch statistics enter the loss, so that is harmless here.
	 * At the default initialisation the eps-0.8 BatchNorms squeeze their
	 * outputs close to the LeakyReLU kink, where finite differences
	 * straddle it; larger weights keep the check away from the kinks
	 * (the same backward, away from non-differentiable points). */
	static const char *const scaled[] = {
	    "l1.0.weight", "conv_blocks1.0.weight", "conv_blocks2.0.weight"};
	for (int k = 0; k < 3; k++) {
		nb_param *p = nb_net_param(c.gen, scaled[k]);
		CU_ASSERT_PTR_NOT_NULL_FATAL(p);
		for (size_t i = 0; i < p->size; i++)
			p->data[i] *= 10.0f;
	}
	nb_net *t = nb_net_new(1, 8, 8);
	int x = nb_net_add_conv2d(t, 0, "conv", 3, 3, 1, 1, 1, 1,
				  NB_INIT_DEFAULT, err);
	x = nb_net_add_tanh(t, x, err);
	x = nb_net_add_avgpool(t, x, 2, 2, 0, err);
	x = nb_net_add_flatten(t, x, err);
	CU_ASSERT_FATAL(x > 0);
	CU_ASSERT_FATAL(nb_net_add_tap(t, x, "features", err) >= 0);
	x = nb_net_add_linear(t, x, "fc", 4, 1, NB_INIT_DEFAULT, err);
	CU_ASSERT_EQUAL_FATAL(nb_net_finalize(t, 4, err), 0);
	nb_net_set_training(t, 0);
	nb_net_set_frozen(t, 1);
	c.teacher = t;
	c.feat = nb_net_find_tap(t, "features");
	float z[B * LAT], dz[B * LAT];
	tu_fill_normal(z, B * LAT, 1.0f, 41);
	c.z = z;
	double l = chain_loss(&c, dz, err);
	CU_ASSERT_FATAL(isfinite(l));
	/* the gradient is not trivially zero */
	double norm = 0;
	for (int i = 0; i < B * LAT; i++)
		norm += fabs(dz[i]);
	CU_ASSERT(norm > 1e-6);
	tu_gradcheck("DAFL loss -> teacher -> generator, d/dz", chain_eval, &c,
		     z, dz, B * LAT, 18, 2e-3, 2e-4, 8e-2);
	static const char *const names[] = {
	    "l1.0.weight", "conv_blocks1.0.weight", "conv_blocks2.3.weight",
	    "conv_blocks1.1.bias"};
	for (int k = 0; k < 4; k++) {
		chain_loss(&c, dz, err);
		nb_param *p = nb_net_param(c.gen, names[k]);
		CU_ASSERT_PTR_NOT_NULL_FATAL(p);
		float *g = malloc(p->size * sizeof *g);
		memcpy(g, p->grad, p->size * sizeof *g);
		char what[128];
		snprintf(what, sizeof what, "DAFL loss -> generator %s",
			 names[k]);
		tu_gradcheck(what, chain_eval, &c, p->data, g, p->size, 24,
			     2e-3, 2e-4, 8e-2);
		free(g);
	}
	/* the teacher is frozen: its weights got no gradient */
	nb_param *tw = nb_net_param(t, "conv.weight");
	for (size_t i = 0; i < tw->size; i++)
		CU_ASSERT_EQUAL(tw->grad ? tw->grad[i] : 0.0f, 0.0f);
	nb_net_free(c.gen);
	nb_net_free(t);
}

/* ---- the plugin
 * --------------------------------------------------------------- */

static const nb_plugin *dafl_plugin(void)
{
	nb_registry *r = tu_registry();
	return r ? nb_registry_find(r, NB_PLUGIN_ATTACK, "dafl") : NULL;
}

static nb_net *arch(const char *name, uint64_t seed)
{
	char err[NB_ERR_LEN];
	nb_net *net;
	const nb_plugin *p = tu_arch(name);
	if (!p || nb_arch_build(p, NULL, 1, 32, 32, 10, seed, &net, err) < 0)
		return NULL;
	return net;
}

/* Small options for tests: a narrow generator, small batches. */
static void *small_opts(const nb_plugin *p)
{
	char err[NB_ERR_LEN];
	void *o = nb_options_new(p, err);
	if (o && nb_options_parse(p, o, "width=8,batch=16,iters=3,latent=10",
				  err) < 0) {
		free(o);
		return NULL;
	}
	return o;
}

static void plugin_access_and_plan(void)
{
	char err[NB_ERR_LEN];
	const nb_plugin *p = dafl_plugin();
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	/* declared: white box (gradients, features), data-free */
	CU_ASSERT(p->attack->access & NB_ACCESS_GRADIENTS);
	CU_ASSERT(p->attack->access & NB_ACCESS_FEATURES);
	CU_ASSERT_FALSE(p->attack->access & NB_ACCESS_TRAIN_DATA);
	char words[160];
	nb_access_describe(p->attack->access, words, sizeof words);
	CU_ASSERT_STRING_EQUAL(words,
			       "white box (gradients, features), data-free");
	nb_access_describe(NB_ACCESS_OUTPUTS | NB_ACCESS_TRAIN_DATA, words,
			   sizeof words);
	CU_ASSERT_STRING_EQUAL(words, "released outputs, training data");
	nb_access_describe(NB_ACCESS_BN_STATS, words, sizeof words);
	CU_ASSERT_STRING_EQUAL(words,
			       "white box (BatchNorm statistics), data-free");

	nb_net *teacher = arch("lenet5", 1), *student = arch("lenet5-half", 2);
	CU_ASSERT_PTR_NOT_NULL_FATAL(teacher);
	CU_ASSERT_PTR_NOT_NULL_FATAL(student);
	void *opts = nb_options_new(p, err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(opts);
	/* a teacher wrapped for a black-box attack hands out no network:
	 * DAFL cannot start */
	nb_teacher *black =
	    nb_teacher_wrap(teacher, NULL, NULL, NB_ACCESS_OUTPUTS, err);
	nb_train_config cfg;
	nb_train_config_default(&cfg);
	nb_attack_env env = {student, black, NULL, &cfg, 10, 0};
	void *state = NULL;
	CU_ASSERT(p->attack->init(opts, &env, &state, err) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "white-box access"));
	CU_ASSERT_PTR_NULL(state);
	nb_teacher_free(black);
	/* with the declared access it starts; the plan is DAFL's MNIST
	 * setting on top of the suite's epochs */
	nb_teacher *white =
	    nb_teacher_wrap(teacher, NULL, NULL, p->attack->access, err);
	env.teacher = white;
	CU_ASSERT_EQUAL_FATAL(p->attack->init(opts, &env, &state, err), 0);
	nb_synth_plan plan = {0};
	plan.epochs = 7;
	plan.batch = 128;
	plan.optim = nb_optim_sgd_default();
	CU_ASSERT_EQUAL(p->attack->plan(state, &env, &plan, err), 0);
	CU_ASSERT_EQUAL(plan.steps, 120);
	CU_ASSERT_EQUAL(plan.batch, 512);
	CU_ASSERT_EQUAL(plan.epochs, 7);
	CU_ASSERT_EQUAL(plan.optim.kind, NB_OPTIM_ADAM);
	CU_ASSERT_DOUBLE_EQUAL(plan.optim.lr, 2e-3, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(plan.optim.weight_decay, 0, 0);
	CU_ASSERT_EQUAL(plan.sched.kind, NB_SCHED_CONSTANT);
	p->attack->fini(state);
	/* CIFAR: SGD with the decay at 40% and 80% of the epochs */
	CU_ASSERT_EQUAL(
	    nb_options_parse(p, opts, "student_optim=sgd,lr_s=0.1,epochs=2000",
			     err),
	    0);
	CU_ASSERT_EQUAL_FATAL(p->attack->init(opts, &env, &state, err), 0);
	CU_ASSERT_EQUAL(p->attack->plan(state, &env, &plan, err), 0);
	CU_ASSERT_EQUAL(plan.epochs, 2000);
	CU_ASSERT_EQUAL(plan.optim.kind, NB_OPTIM_SGD);
	CU_ASSERT_DOUBLE_EQUAL(plan.optim.momentum, 0.9, 1e-7);
	CU_ASSERT_DOUBLE_EQUAL(plan.optim.weight_decay, 5e-4, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(nb_schedule_lr(&plan.sched, 799), 0.1, 1e-7);
	CU_ASSERT_DOUBLE_EQUAL(nb_schedule_lr(&plan.sched, 800), 0.01, 1e-8);
	CU_ASSERT_DOUBLE_EQUAL(nb_schedule_lr(&plan.sched, 1600), 0.001, 1e-9);
	p->attack->fini(state);
	/* a bad student optimiser is refused by name */
	CU_ASSERT_EQUAL(nb_options_parse(p, opts, "student_optim=rmsprop", err),
			0);
	CU_ASSERT(p->attack->init(opts, &env, &state, err) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "rmsprop"));
	nb_teacher_free(white);
	free(opts);
	nb_net_free(teacher);
	nb_net_free(student);
}

static int same_params(nb_net *a, nb_net *b)
{
	nb_param **pa, **pb;
	int n = nb_net_params(a, &pa);
	if (nb_net_params(b, &pb) != n)
		return 0;
	for (int i = 0; i < n; i++)
		if (memcmp(pa[i]->data, pb[i]->data,
			   pa[i]->size * sizeof(float)))
			return 0;
	return 1;
}

static void plugin_synth_and_state(void)
{
	char err[NB_ERR_LEN];
	const nb_plugin *p = dafl_plugin();
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	nb_net *teacher = arch("lenet5", 1), *student = arch("lenet5-half", 2);
	CU_ASSERT_PTR_NOT_NULL_FATAL(teacher);
	CU_ASSERT_PTR_NOT_NULL_FATAL(student);
	void *opts = small_opts(p);
	CU_ASSERT_PTR_NOT_NULL_FATAL(opts);
	nb_teacher *t =
	    nb_teacher_wrap(teacher, NULL, NULL, p->attack->access, err);
	nb_train_config cfg;
	nb_train_config_default(&cfg);
	nb_attack_env env = {student, t, NULL, &cfg, 10, 9};
	void *a = NULL, *b = NULL;
	CU_ASSERT_EQUAL_FATAL(p->attack->init(opts, &env, &a, err), 0);
	CU_ASSERT_EQUAL_FATAL(p->attack->init(opts, &env, &b, err), 0);
	enum { N = 16, IMG = 32 * 32 };
	float *x1 = malloc(N * IMG * sizeof *x1), *x2 = malloc(N * IMG * 4);
	int y1[N], y2[N];
	/* two steps of a; the labels are the teacher's argmax on x */
	CU_ASSERT_EQUAL_FATAL(p->attack->synth(a, &env, 0, 0, N, x1, y1, err),
			      0);
	CU_ASSERT(nb_all_finite(x1, N * IMG));
	float zt[N * 10];
	CU_ASSERT_EQUAL(nb_teacher_query(t, x1, N, zt, err), 0);
	for (int i = 0; i < N; i++) {
		int best = 0;
		for (int k = 1; k < 10; k++)
			if (zt[i * 10 + k] > zt[i * 10 + best])
				best = k;
		CU_ASSERT_EQUAL(y1[i], best);
	}
	/* the final affine-free BatchNorm: zero mean, about unit variance */
	double m = 0, v = 0;
	for (int i = 0; i < N * IMG; i++)
		m += x1[i];
	m /= N * IMG;
	for (int i = 0; i < N * IMG; i++)
		v += (x1[i] - m) * (x1[i] - m);
	v /= N * IMG;
	CU_ASSERT_DOUBLE_EQUAL(m, 0, 1e-4);
	/* var / (var + 1e-5) per channel */
	CU_ASSERT(v <= 1.0 && v > 0.98);
	/* b saves its untouched state, a restores it after a step... */
	nb_bag *bag = nb_bag_new();
	CU_ASSERT_EQUAL_FATAL(p->attack->save(b, bag, err), 0);
	CU_ASSERT(nb_bag_count(bag) > 10);
	CU_ASSERT_EQUAL_FATAL(p->attack->load(a, bag, err), 0);
	CU_ASSERT_PTR_NULL(nb_bag_unread(bag));
	nb_bag_free(bag);
	/* ...so both make the same batches from now on, bit for bit */
	CU_ASSERT_EQUAL(p->attack->synth(a, &env, 0, 0, N, x1, y1, err), 0);
	CU_ASSERT_EQUAL(p->attack->synth(b, &env, 0, 0, N, x2, y2, err), 0);
	CU_ASSERT(memcmp(x1, x2, N * IMG * sizeof *x1) == 0);
	CU_ASSERT(memcmp(y1, y2, sizeof y1) == 0);
	/* and the state after a step (Adam moments now exist) travels too */
	bag = nb_bag_new();
	CU_ASSERT_EQUAL_FATAL(p->attack->save(a, bag, err), 0);
	void *c = NULL;
	CU_ASSERT_EQUAL_FATAL(p->attack->init(opts, &env, &c, err), 0);
	CU_ASSERT_EQUAL_FATAL(p->attack->load(c, bag, err), 0);
	nb_bag_free(bag);
	CU_ASSERT_EQUAL(p->attack->synth(a, &env, 0, 1, N, x1, y1, err), 0);
	CU_ASSERT_EQUAL(p->attack->synth(c, &env, 0, 1, N, x2, y2, err), 0);
	CU_ASSERT(memcmp(x1, x2, N * IMG * sizeof *x1) == 0);
	/* a bag that lacks a piece is refused by name */
	bag = nb_bag_new();
	float one = 1;
	CU_ASSERT_EQUAL(
	    nb_bag_put_f32(bag, "generator.l1.0.weight", &one, 1, err), 0);
	CU_ASSERT(p->attack->load(c, bag, err) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "generator.l1.0.weight"));
	nb_bag_free(bag);
	/* the loss belongs to the batch just made */
	nb_batch bt = {x1, y1, N, 0, 1};
	float z[N * 10] = {0}, dz[N * 10] = {0};
	nb_loss_terms terms;
	CU_ASSERT_EQUAL(p->attack->loss(a, &bt, z, 10, dz, &terms, err), 0);
	CU_ASSERT(terms.kl > 0);
	CU_ASSERT_DOUBLE_EQUAL(terms.total, terms.kl, 0);
	bt.step = 2;
	CU_ASSERT(p->attack->loss(a, &bt, z, 10, dz, &terms, err) < 0);
	p->attack->fini(a);
	p->attack->fini(b);
	p->attack->fini(c);
	nb_teacher_free(t);
	free(x1);
	free(x2);
	free(opts);
	nb_net_free(teacher);
	nb_net_free(student);
}

/* ---- the data-free training loop
 * ------------------------------------------------ */

static char *synth_dir;
static nb_dataset test_set;

static int suite_init(void)
{
	char err[NB_ERR_LEN];
	synth_dir = tu_mkdtemp();
	if (!synth_dir)
		return 1;
	if (nb_synth_write(synth_dir, "idx", 200, 300, 0, 22, err) < 0 ||
	    nb_dataset_load("mnist", synth_dir, NB_SPLIT_TEST, &test_set, err) <
		0) {
		fprintf(stderr, "dafl suite setup: %s\n", err);
		return 1;
	}
	return 0;
}

static int suite_clean(void)
{
	nb_dataset_free(&test_set);
	tu_rmtree(synth_dir);
	free(synth_dir);
	return 0;
}

/* The attack's hooks as the runner hands them to the loop. */
typedef struct attack_run {
	const nb_plugin *p;
	void *state;
	nb_attack_env env;
} attack_run;

static int run_synth(void *ctx, int epoch, int step, int n, float *x, int *y,
		     char *err)
{
	attack_run *a = ctx;
	return a->p->attack->synth(a->state, &a->env, epoch, step, n, x, y,
				   err);
}

static int run_save(void *ctx, nb_bag *out, char *err)
{
	attack_run *a = ctx;
	return a->p->attack->save(a->state, out, err);
}

static int run_load(void *ctx, nb_bag *in, char *err)
{
	attack_run *a = ctx;
	return a->p->attack->load(a->state, in, err);
}

/* The files of one run. */
typedef struct run_files {
	char state[4200], log[4200], best[4200];
} run_files;

static void files_in(run_files *f, const char *dir)
{
	snprintf(f->state, sizeof f->state, "%s/state.safetensors", dir);
	snprintf(f->log, sizeof f->log, "%s/log.csv", dir);
	snprintf(f->best, sizeof f->best, "%s/best.safetensors", dir);
}

/* A data-free student run of `epochs` epochs with state in f. with_hooks
 * 0 leaves out save/load, 2 leaves out load only. The student's final
 * weights go to *student_out when not NULL. */
static int datafree_run(int epochs, const run_files *f, int with_hooks,
			nb_train_result *res, nb_net **student_out, char *err)
{
	const nb_plugin *p = dafl_plugin();
	nb_net *teacher = arch("lenet5", 1), *student = arch("lenet5-half", 2);
	void *opts = p ? small_opts(p) : NULL;
	int rc = NB_EINVAL;
	if (!teacher || !student || !opts) {
		snprintf(err, NB_ERR_LEN, "setup failed");
		goto out;
	}
	nb_train_config cfg;
	nb_train_config_default(&cfg);
	cfg.epochs = epochs;
	cfg.eval_batch = 100;
	cfg.seed = 4;
	cfg.aug.pad_to = 32;
	cfg.aug.mean[0] = 0.1307f;
	cfg.aug.std[0] = 0.3081f;
	cfg.state_path = f->state;
	cfg.log_csv = f->log;
	cfg.best_path = f->best;
	nb_teacher *t =
	    nb_teacher_wrap(teacher, NULL, NULL, p->attack->access, err);
	attack_run a = {p, NULL, {student, t, NULL, &cfg, 10, 4}};
	if ((rc = p->attack->init(opts, &a.env, &a.state, err)) < 0) {
		nb_teacher_free(t);
		goto out;
	}
	nb_synth_plan plan = {0};
	plan.batch = cfg.batch;
	plan.epochs = cfg.epochs;
	plan.optim = cfg.optim;
	plan.sched = cfg.sched;
	p->attack->plan(a.state, &a.env, &plan, err);
	cfg.batch = plan.batch;
	cfg.optim = plan.optim;
	cfg.sched = plan.sched;
	cfg.synth = run_synth;
	cfg.synth_ctx = &a;
	cfg.synth_steps = plan.steps;
	cfg.loss = p->attack->loss;
	cfg.loss_ctx = a.state;
	if (with_hooks) {
		cfg.save = run_save;
		cfg.load = with_hooks == 1 ? run_load : NULL;
		cfg.state_ctx = &a;
	}
	rc = nb_train(student, NULL, &test_set, &cfg, res, err);
	p->attack->fini(a.state);
	nb_teacher_free(t);
out:
	free(opts);
	nb_net_free(teacher);
	if (rc == 0 && student_out)
		*student_out = student;
	else
		nb_net_free(student);
	return rc;
}

static void datafree_resume_is_bit_identical(void)
{
	char err[NB_ERR_LEN];
	char *d1 = tu_mkdtemp(), *d2 = tu_mkdtemp();
	run_files f1, f2;
	files_in(&f1, d1);
	files_in(&f2, d2);
	nb_train_result r1, r2;
	nb_net *s1 = NULL, *s2 = NULL;
	/* uninterrupted: 3 epochs */
	int rc = datafree_run(3, &f1, 1, &r1, &s1, err);
	if (rc < 0)
		printf("\n  %s\n", err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	CU_ASSERT_EQUAL(r1.epochs_done, 3);
	CU_ASSERT_FALSE(r1.diverged);
	/* killed after epoch 1, resumed to 3 in a fresh process state */
	CU_ASSERT_EQUAL_FATAL(datafree_run(1, &f2, 1, &r2, NULL, err), 0);
	rc = datafree_run(3, &f2, 1, &r2, &s2, err);
	if (rc < 0)
		printf("\n  %s\n", err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	CU_ASSERT_EQUAL(r2.resumed_from, 1);
	CU_ASSERT(same_params(s1, s2));
	CU_ASSERT_EQUAL(r1.best_acc, r2.best_acc);
	CU_ASSERT_EQUAL(r1.last_acc, r2.last_acc);
	CU_ASSERT_EQUAL(r1.last.total, r2.last.total);
	/* the two state files hold the same generator, bit for bit */
	nb_st_file *a = nb_st_open(f1.state, err),
		   *b = nb_st_open(f2.state, err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	int hooks = 0;
	for (int i = 0; i < nb_st_count(a); i++) {
		const nb_st_tensor *ta = nb_st_get(a, i);
		if (strncmp(ta->name, "hook.", 5))
			continue;
		hooks++;
		const nb_st_tensor *tb = nb_st_find(b, ta->name);
		CU_ASSERT_PTR_NOT_NULL_FATAL(tb);
		CU_ASSERT_EQUAL_FATAL(ta->nbytes, tb->nbytes);
		CU_ASSERT(memcmp(ta->data, tb->data, ta->nbytes) == 0);
	}
	/* generator weights, buffers and counters, Adam's three pieces per
	 * weight, the noise stream */
	CU_ASSERT(hooks > 30);
	CU_ASSERT_PTR_NOT_NULL(nb_st_find(a, "hook.noise"));
	CU_ASSERT_PTR_NOT_NULL(
	    nb_st_find(a, "hook.generator.conv_blocks1.1.running_var"));
	CU_ASSERT_PTR_NOT_NULL(
	    nb_st_find(a, "hook.generator_optim.l1.0.weight.exp_avg_sq"));
	nb_st_close(a);
	nb_st_close(b);
	/* a resumed run that does not read the hook's state is refused, and
	 * so is one whose state file lacks it */
	CU_ASSERT_EQUAL(datafree_run(4, &f1, 2, &r2, NULL, err), NB_EFORMAT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "unexpected tensor 'hook."));
	char *d3 = tu_mkdtemp();
	run_files f3;
	files_in(&f3, d3);
	CU_ASSERT_EQUAL_FATAL(datafree_run(1, &f3, 0, &r2, NULL, err), 0);
	CU_ASSERT_EQUAL(datafree_run(2, &f3, 1, &r2, NULL, err), NB_EFORMAT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "is missing"));
	nb_net_free(s1);
	nb_net_free(s2);
	tu_rmtree(d1);
	tu_rmtree(d2);
	tu_rmtree(d3);
	free(d1);
	free(d2);
	free(d3);
}

/* The loop checks what synth hands it. */
static int bad_labels(void *ctx, int epoch, int step, int n, float *x, int *y,
		      char *err)
{
	(void)ctx;
	(void)epoch;
	(void)step;
	(void)err;
	memset(x, 0, (size_t)n * 32 * 32 * sizeof *x);
	for (int i = 0; i < n; i++)
		y[i] = i == 3 ? 10 : -1;
	return 0;
}

static int ce_loss(void *ctx, const nb_batch *b, const float *z, int C,
		   float *dz, nb_loss_terms *terms, char *err)
{
	(void)ctx;
	(void)err;
	(void)dz;
	(void)b;
	(void)z;
	(void)C;
	terms->total = 0;
	return 0;
}

static void datafree_loop_checks(void)
{
	char err[NB_ERR_LEN];
	nb_net *net = arch("lenet5-half", 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(net);
	nb_train_config cfg;
	nb_train_config_default(&cfg);
	cfg.epochs = 1;
	cfg.batch = 8;
	cfg.aug.pad_to = 32;
	nb_train_result res;
	/* no training set and no synth */
	CU_ASSERT_EQUAL(nb_train(net, NULL, &test_set, &cfg, &res, err),
			NB_EINVAL);
	/* synth without steps or without a loss hook */
	cfg.synth = bad_labels;
	CU_ASSERT_EQUAL(nb_train(net, NULL, &test_set, &cfg, &res, err),
			NB_EINVAL);
	cfg.synth_steps = 2;
	CU_ASSERT_EQUAL(nb_train(net, NULL, &test_set, &cfg, &res, err),
			NB_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "loss hook"));
	/* a label outside -1..C-1 stops the run, naming it */
	cfg.loss = ce_loss;
	CU_ASSERT_EQUAL(nb_train(net, NULL, &test_set, &cfg, &res, err),
			NB_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "label 10 of sample 3"));
	nb_net_free(net);
}

static const nb_test_entry tests[] = {
    {"DAFL losses match PyTorch", losses_match_torch},
    {"DAFL losses: finite differences", losses_gradcheck},
    {"reshape node: values in order, gradient back, bad shapes", reshape_node},
    {"DAFL generator: the reference's layers and parameter counts",
     generator_matches_reference},
    {"DAFL loss gradient through the frozen teacher into the generator",
     gradient_reaches_the_generator},
    {"dafl plugin: access, plan", plugin_access_and_plan},
    {"dafl plugin: synthetic batches, saved and restored state",
     plugin_synth_and_state},
    {"data-free training resumes bit-identically",
     datafree_resume_is_bit_identical},
    {"data-free training loop checks its input", datafree_loop_checks},
    {NULL, NULL}};

void nb_test_dafl(void)
{
	CU_pSuite s = CU_add_suite("dafl", suite_init, suite_clean);
	for (const nb_test_entry *t = tests; t->name; t++)
		CU_add_test(s, t->name, t->fn);
}
