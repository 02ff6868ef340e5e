/*
 * net_test.c - the network graph: shapes, names, parameter counts,
 * initialisation, gradients through a whole graph (input, parameters,
 * gradients injected at an inner node), frozen parameters, train/eval modes
 * and reproducibility.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "registry.h"
#include "net.h"
#include "testutil.h"

/* A smooth graph that uses most node kinds, so finite differences hold:
 * conv -> BN -> tanh -> {grouped conv, depthwise conv} -> add -> concat
 * with a slice -> shuffle -> upsample -> avg pool -> adaptive pool ->
 * tanh -> flatten -> dropout(eval) -> linear -> BN1d -> linear. */
static nb_net *smooth_net(int with_bn, char *err)
{
	nb_net *net = nb_net_new(3, 7, 7);
	int x = nb_net_add_conv2d(net, 0, "c1", 8, 3, 1, 1, 1, 1,
				  NB_INIT_DEFAULT, err);
	if (with_bn)
		x = nb_net_add_batchnorm(net, x, "bn1", 1e-5f, 0.1f, 1, err);
	x = nb_net_add_tanh(net, x, err);
	int g = nb_net_add_conv2d(net, x, "g", 8, 3, 2, 1, 2, 0,
				  NB_INIT_KAIMING_FAN_OUT, err);
	int d = nb_net_add_conv2d(net, x, "dw", 8, 3, 2, 1, 8, 1,
				  NB_INIT_DEFAULT, err);
	int s = nb_net_add_add(net, g, d, err);
	int sl = nb_net_add_slice(net, s, 2, 4, err);
	int cat[2] = {s, sl};
	x = nb_net_add_concat(net, cat, 2, err);
	x = nb_net_add_shuffle(net, x, 2, err);
	x = nb_net_add_upsample(net, x, 2, err);
	x = nb_net_add_avgpool(net, x, 3, 2, 1, err);
	x = nb_net_add_adaptive_avgpool(net, x, 2, 2, err);
	x = nb_net_add_tanh(net, x, err);
	x = nb_net_add_flatten(net, x, err);
	x = nb_net_add_dropout(net, x, 0.5f, err);
	x = nb_net_add_linear(net, x, "fc1", 6, 1, NB_INIT_DEFAULT, err);
	if (with_bn)
		x = nb_net_add_batchnorm(net, x, "bn2", 1e-5f, 0.1f, 1, err);
	x = nb_net_add_linear(net, x, "fc2", 5, 1, NB_INIT_DEFAULT, err);
	if (x < 0 || nb_net_finalize(net, 11, err) < 0) {
		nb_net_free(net);
		return NULL;
	}
	return net;
}

typedef struct probe {
	nb_net *net;
	float *x;
	float *r;
	int n;
	int node; /* node whose output is probed */
} probe;

static double probe_loss(void *ctx)
{
	probe *p = ctx;
	char err[NB_ERR_LEN];
	if (nb_net_forward(p->net, p->x, p->n, err) < 0)
		return NAN;
	int c, h, w;
	nb_net_node_shape(p->net, p->node, &c, &h, &w);
	return tu_dot(p->r, nb_net_output(p->net, p->node),
		      (size_t)p->n * c * h * w);
}

/* Runs forward + backward from probe weights at p->node; fills dx and the
 * parameter gradients. */
static void probe_backward(probe *p, float *dx)
{
	char err[NB_ERR_LEN];
	CU_ASSERT_EQUAL_FATAL(nb_net_forward(p->net, p->x, p->n, err), 0);
	int c, h, w;
	nb_net_node_shape(p->net, p->node, &c, &h, &w);
	float *g = nb_net_grad(p->net, p->node);
	CU_ASSERT_PTR_NOT_NULL_FATAL(g);
	memcpy(g, p->r, (size_t)p->n * c * h * w * sizeof(float));
	nb_net_zero_grad(p->net);
	CU_ASSERT_EQUAL_FATAL(nb_net_backward(p->net, dx, err), 0);
}

static void check_graph(int training, int with_bn)
{
	char err[NB_ERR_LEN];
	nb_net *net = smooth_net(with_bn, err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(net);
	nb_net_set_training(net, training);
	if (!training)
		/* make the running statistics non-trivial */
		for (int i = 0; i < nb_net_params(net, NULL); i++) {
			nb_param **ps;
			nb_net_params(net, &ps);
			if (ps[i]->role == NB_PARAM_BUFFER)
				tu_fill_uniform(ps[i]->data, ps[i]->size, 0.5f,
						1.5f, 50 + i);
		}
	int n = 4;
	size_t in_size = (size_t)n * 3 * 7 * 7;
	probe p = {net, malloc(in_size * sizeof(float)), malloc(n * 5 * sizeof(float)),
		   n, nb_net_output_node(net)};
	tu_fill_normal(p.x, in_size, 1.0f, 3);
	tu_fill_normal(p.r, (size_t)n * 5, 1.0f, 4);
	float *dx = malloc(in_size * sizeof(float));
	probe_backward(&p, dx);
	tu_gradcheck("graph d/dx", probe_loss, &p, p.x, dx, in_size, 60, 1e-2,
		     2e-3, 2e-2);
	nb_param **ps;
	int np = nb_net_params(net, &ps);
	for (int i = 0; i < np; i++) {
		if (ps[i]->role != NB_PARAM_WEIGHT)
			continue;
		float *g = malloc(ps[i]->size * sizeof(float));
		probe_backward(&p, NULL);
		memcpy(g, ps[i]->grad, ps[i]->size * sizeof(float));
		tu_gradcheck(ps[i]->name, probe_loss, &p, ps[i]->data, g,
			     ps[i]->size, 20, 1e-2, 2e-3, 2e-2);
		free(g);
	}
	free(p.x);
	free(p.r);
	free(dx);
	nb_net_free(net);
}

/* Dropout draws a new mask at every forward, so the graph with dropout is
 * checked in evaluation mode; training-mode BatchNorm has its own check. */
static void graph_gradients_eval(void)
{
	check_graph(0, 1);
}

static nb_net *bn_net(char *err)
{
	nb_net *net = nb_net_new(2, 5, 5);
	int x = nb_net_add_conv2d(net, 0, "c1", 4, 3, 1, 0, 1, 0,
				  NB_INIT_DEFAULT, err);
	x = nb_net_add_batchnorm(net, x, "bn1", 1e-5f, 0.1f, 1, err);
	x = nb_net_add_tanh(net, x, err);
	x = nb_net_add_flatten(net, x, err);
	x = nb_net_add_linear(net, x, "fc", 3, 1, NB_INIT_DEFAULT, err);
	x = nb_net_add_batchnorm(net, x, "bn2", 1e-5f, 0.1f, 0, err);
	if (x < 0 || nb_net_finalize(net, 5, err) < 0) {
		nb_net_free(net);
		return NULL;
	}
	return net;
}

static void graph_gradients_train_bn(void)
{
	char err[NB_ERR_LEN];
	nb_net *net = bn_net(err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(net);
	int n = 5;
	size_t in_size = (size_t)n * 2 * 5 * 5;
	probe p = {net, malloc(in_size * sizeof(float)),
		   malloc((size_t)n * 3 * sizeof(float)), n,
		   nb_net_output_node(net)};
	tu_fill_normal(p.x, in_size, 1.0f, 8);
	tu_fill_normal(p.r, (size_t)n * 3, 1.0f, 9);
	float *dx = malloc(in_size * sizeof(float));
	probe_backward(&p, dx);
	tu_gradcheck("train-mode graph d/dx", probe_loss, &p, p.x, dx, in_size,
		     80, 1e-2, 2e-3, 2e-2);
	nb_param *w = nb_net_param(net, "c1.weight");
	CU_ASSERT_PTR_NOT_NULL_FATAL(w);
	float *g = malloc(w->size * sizeof(float));
	probe_backward(&p, NULL);
	memcpy(g, w->grad, w->size * sizeof(float));
	tu_gradcheck("train-mode graph d/dc1.weight", probe_loss, &p, w->data,
		     g, w->size, 40, 1e-2, 2e-3, 2e-2);
	free(g);
	free(p.x);
	free(p.r);
	free(dx);
	nb_net_free(net);
}

/* A gradient injected at an inner node reaches only what lies before it. */
static void inject_inner_node(void)
{
	char err[NB_ERR_LEN];
	nb_net *net = smooth_net(0, err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(net);
	nb_net_set_training(net, 0);
	int inner = -1;
	for (int i = 0; i < nb_net_nodes(net); i++)
		if (nb_net_node_kind(net, i) == NB_NODE_CONCAT)
			inner = i;
	CU_ASSERT_FATAL(inner > 0);
	int n = 3, c, h, w;
	nb_net_node_shape(net, inner, &c, &h, &w);
	size_t in_size = (size_t)n * 3 * 7 * 7, mid = (size_t)n * c * h * w;
	probe p = {net, malloc(in_size * sizeof(float)),
		   malloc(mid * sizeof(float)), n, inner};
	tu_fill_normal(p.x, in_size, 1.0f, 21);
	tu_fill_normal(p.r, mid, 1.0f, 22);
	float *dx = malloc(in_size * sizeof(float));
	probe_backward(&p, dx);
	tu_gradcheck("inner-node d/dx", probe_loss, &p, p.x, dx, in_size, 60,
		     1e-2, 2e-3, 2e-2);
	/* layers after the inner node got no gradient */
	nb_param *fc = nb_net_param(net, "fc2.weight");
	double s = 0;
	for (size_t i = 0; i < fc->size; i++)
		s += fabs(fc->grad[i]);
	CU_ASSERT_EQUAL(s, 0.0);
	nb_param *c1 = nb_net_param(net, "c1.weight");
	s = 0;
	for (size_t i = 0; i < c1->size; i++)
		s += fabs(c1->grad[i]);
	CU_ASSERT(s > 0);
	free(p.x);
	free(p.r);
	free(dx);
	nb_net_free(net);
}

static void frozen_parameters(void)
{
	char err[NB_ERR_LEN];
	nb_net *net = smooth_net(1, err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(net);
	nb_net_set_training(net, 0);
	nb_net_set_frozen(net, 1);
	int n = 2;
	size_t in_size = (size_t)n * 3 * 7 * 7;
	probe p = {net, malloc(in_size * sizeof(float)),
		   malloc((size_t)n * 5 * sizeof(float)), n,
		   nb_net_output_node(net)};
	tu_fill_normal(p.x, in_size, 1.0f, 31);
	tu_fill_normal(p.r, (size_t)n * 5, 1.0f, 32);
	float *dx = malloc(in_size * sizeof(float));
	probe_backward(&p, dx);
	nb_param **ps;
	int np = nb_net_params(net, &ps);
	for (int i = 0; i < np; i++)
		for (size_t j = 0; ps[i]->grad && j < ps[i]->size; j++)
			CU_ASSERT_EQUAL_FATAL(ps[i]->grad[j], 0.0f);
	/* the input gradient still flows through a frozen network */
	tu_gradcheck("frozen net d/dx", probe_loss, &p, p.x, dx, in_size, 40,
		     1e-2, 2e-3, 2e-2);
	/* and backward without dx does nothing at all */
	CU_ASSERT_EQUAL(nb_net_forward(net, p.x, n, err), 0);
	nb_net_grad(net, nb_net_output_node(net))[0] = 1.0f;
	CU_ASSERT_EQUAL(nb_net_backward(net, NULL, err), 0);
	free(p.x);
	free(p.r);
	free(dx);
	nb_net_free(net);
}

static void train_eval_modes_differ(void)
{
	char err[NB_ERR_LEN];
	nb_net *net = bn_net(err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(net);
	int n = 4;
	size_t in_size = (size_t)n * 2 * 5 * 5;
	float *x = malloc(in_size * sizeof(float));
	tu_fill_normal(x, in_size, 2.0f, 41);
	float out_train[12], out_eval[12];
	nb_param *rm = nb_net_param(net, "bn1.running_mean");
	CU_ASSERT_EQUAL(rm->data[0], 0.0f);
	CU_ASSERT_EQUAL(nb_net_forward(net, x, n, err), 0);
	memcpy(out_train, nb_net_output(net, nb_net_output_node(net)),
	       sizeof out_train);
	/* training moved the running statistics */
	CU_ASSERT(rm->data[0] != 0.0f);
	nb_net_set_training(net, 0);
	float keep = rm->data[0];
	CU_ASSERT_EQUAL(nb_net_forward(net, x, n, err), 0);
	memcpy(out_eval, nb_net_output(net, nb_net_output_node(net)),
	       sizeof out_eval);
	CU_ASSERT_EQUAL(rm->data[0], keep); /* eval leaves them alone */
	CU_ASSERT(tu_max_abs_diff(out_train, out_eval, 12) > 1e-3);
	/* training-mode BN output of a batch has per-feature mean 0 */
	for (int j = 0; j < 3; j++) {
		double m = 0;
		for (int i = 0; i < n; i++)
			m += out_train[i * 3 + j];
		CU_ASSERT(fabs(m / n) < 1e-5);
	}
	/* a batch of one cannot be normalised in training mode */
	nb_net_set_training(net, 1);
	CU_ASSERT(nb_net_forward(net, x, 1, err) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "batchnorm"));
	free(x);
	nb_net_free(net);
}

static void lenet_counts_and_names(void)
{
	char err[NB_ERR_LEN];
	nb_net *net;
	const nb_plugin *p = tu_arch("lenet5");
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_EQUAL_FATAL(nb_arch_build(p, NULL, 1, 32, 32, 10, 0, &net, err), 0);
	CU_ASSERT_EQUAL(nb_net_param_count(net), 61706);
	const char *names[] = {"conv1.weight", "conv1.bias", "conv2.weight",
			       "conv2.bias", "conv3.weight", "conv3.bias",
			       "fc1.weight", "fc1.bias", "fc2.weight",
			       "fc2.bias"};
	nb_param **ps;
	CU_ASSERT_EQUAL_FATAL(nb_net_params(net, &ps), 10);
	for (int i = 0; i < 10; i++)
		CU_ASSERT_STRING_EQUAL(ps[i]->name, names[i]);
	nb_param *w = nb_net_param(net, "conv3.weight");
	CU_ASSERT_EQUAL(w->shape[0], 120);
	CU_ASSERT_EQUAL(w->shape[1], 16);
	int c, h, ww;
	nb_net_node_shape(net, nb_net_output_node(net), &c, &h, &ww);
	CU_ASSERT_EQUAL(c, 10);
	CU_ASSERT(nb_net_find_tap(net, "features") > 0);
	nb_net_free(net);
	p = tu_arch("lenet5-half");
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	CU_ASSERT_EQUAL_FATAL(nb_arch_build(p, NULL, 1, 32, 32, 10, 0, &net, err), 0);
	CU_ASSERT_EQUAL(nb_net_param_count(net), 15738);
	nb_net_free(net);
	CU_ASSERT(nb_arch_build(p, NULL, 1, 28, 28, 10, 0, &net, err) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "32x32"));
	CU_ASSERT_PTR_NULL(net);
}

/* PyTorch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights
 * and biases; Kaiming normal fan_out: std sqrt(2/fan_out). */
static void initialisation_statistics(void)
{
	char err[NB_ERR_LEN];
	nb_net *net = nb_net_new(64, 8, 8);
	int x = nb_net_add_conv2d(net, 0, "u", 128, 3, 1, 1, 1, 1,
				  NB_INIT_DEFAULT, err);
	x = nb_net_add_conv2d(net, x, "k", 256, 3, 1, 1, 1, 1,
			      NB_INIT_KAIMING_FAN_OUT, err);
	x = nb_net_add_batchnorm(net, x, "bn", 1e-5f, 0.1f, 1, err);
	CU_ASSERT_FATAL(x > 0);
	CU_ASSERT_EQUAL_FATAL(nb_net_finalize(net, 3, err), 0);
	nb_param *u = nb_net_param(net, "u.weight");
	double bound = 1.0 / sqrt(64 * 9), mx = 0, s2 = 0;
	for (size_t i = 0; i < u->size; i++) {
		mx = fmax(mx, fabs(u->data[i]));
		s2 += (double)u->data[i] * u->data[i];
	}
	CU_ASSERT(mx <= bound);
	CU_ASSERT(mx > 0.99 * bound);
	/* uniform variance bound^2/3 */
	CU_ASSERT(fabs(s2 / u->size / (bound * bound / 3) - 1) < 0.02);
	nb_param *ub = nb_net_param(net, "u.bias");
	for (size_t i = 0; i < ub->size; i++)
		CU_ASSERT(fabs(ub->data[i]) <= bound);
	nb_param *k = nb_net_param(net, "k.weight");
	double var = 0;
	for (size_t i = 0; i < k->size; i++)
		var += (double)k->data[i] * k->data[i];
	var /= k->size;
	CU_ASSERT(fabs(var / (2.0 / (256 * 9)) - 1) < 0.02);
	nb_param *kb = nb_net_param(net, "k.bias");
	CU_ASSERT_EQUAL(kb->data[0], 0.0f);
	CU_ASSERT_EQUAL(nb_net_param(net, "bn.weight")->data[5], 1.0f);
	CU_ASSERT_EQUAL(nb_net_param(net, "bn.bias")->data[5], 0.0f);
	CU_ASSERT_EQUAL(nb_net_param(net, "bn.running_var")->data[5], 1.0f);
	CU_ASSERT_EQUAL(nb_net_param(net, "bn.running_var")->role,
			NB_PARAM_BUFFER);
	nb_net_free(net);
}

static void same_seed_same_weights(void)
{
	char err[NB_ERR_LEN];
	nb_net *a = smooth_net(1, err), *b = smooth_net(1, err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	nb_param **pa, **pb;
	int n = nb_net_params(a, &pa);
	nb_net_params(b, &pb);
	for (int i = 0; i < n; i++)
		CU_ASSERT_EQUAL(memcmp(pa[i]->data, pb[i]->data,
				       pa[i]->size * sizeof(float)),
				0);
	nb_net_free(a);
	nb_net_free(b);
}

static void build_errors(void)
{
	char err[NB_ERR_LEN];
	nb_net *net = nb_net_new(3, 8, 8);
	CU_ASSERT(nb_net_add_conv2d(net, 0, "c", 4, 9, 1, 0, 1, 0,
				    NB_INIT_DEFAULT, err) < 0);
	CU_ASSERT(nb_net_add_conv2d(net, 0, "c", 4, 3, 1, 1, 2, 0,
				    NB_INIT_DEFAULT, err) < 0); /* 3 % 2 */
	CU_ASSERT(nb_net_add_conv2d(net, 7, "c", 4, 3, 1, 1, 1, 0,
				    NB_INIT_DEFAULT, err) < 0);
	int a = nb_net_add_conv2d(net, 0, "a", 4, 3, 1, 1, 1, 0,
				  NB_INIT_DEFAULT, err);
	int b = nb_net_add_conv2d(net, 0, "b", 4, 3, 2, 1, 1, 0,
				  NB_INIT_DEFAULT, err);
	CU_ASSERT(nb_net_add_add(net, a, b, err) < 0);
	CU_ASSERT(nb_net_add_slice(net, a, 2, 3, err) < 0);
	CU_ASSERT(nb_net_add_shuffle(net, a, 3, err) < 0);
	CU_ASSERT_EQUAL(nb_net_finalize(net, 0, err), 0);
	CU_ASSERT(nb_net_add_relu(net, a, err) < 0);
	nb_net_free(net);
}

/* conv -> BN -> ReLU -> conv -> add (with the first ReLU) -> ReLU ->
 * max pool -> ReLU6 -> flatten -> linear -> ReLU -> linear. With tap_all,
 * every node is a tap, which keeps every output in its own buffer: the
 * simple twin of the in-place ReLUs and of the add, which otherwise sums
 * into c2's buffer. *bn, *relu: the first BN and ReLU. */
static nb_net *relu_net(int tap_all, int *bn, int *relu, char *err)
{
	nb_net *net = nb_net_new(3, 8, 8);
	int x = nb_net_add_conv2d(net, 0, "c1", 6, 3, 1, 1, 1, 0,
				  NB_INIT_DEFAULT, err);
	*bn = x = nb_net_add_batchnorm(net, x, "bn1", 1e-5f, 0.1f, 1, err);
	*relu = x = nb_net_add_relu(net, x, err);
	int y = nb_net_add_conv2d(net, x, "c2", 6, 3, 1, 1, 1, 1,
				  NB_INIT_DEFAULT, err);
	x = nb_net_add_add(net, x, y, err);
	x = nb_net_add_relu(net, x, err);
	x = nb_net_add_maxpool(net, x, 2, 2, 0, err);
	x = nb_net_add_relu6(net, x, err);
	x = nb_net_add_flatten(net, x, err);
	x = nb_net_add_linear(net, x, "fc1", 12, 1, NB_INIT_DEFAULT, err);
	x = nb_net_add_relu(net, x, err);
	x = nb_net_add_linear(net, x, "fc2", 4, 1, NB_INIT_DEFAULT, err);
	if (x < 0 || nb_net_finalize(net, 5, err) < 0) {
		nb_net_free(net);
		return NULL;
	}
	for (int i = 1; tap_all && i < nb_net_nodes(net); i++) {
		char name[32];
		snprintf(name, sizeof name, "t%d", i);
		if (nb_net_add_tap(net, i, name, err) < 0) {
			nb_net_free(net);
			return NULL;
		}
	}
	return net;
}

/* In-place ReLUs and pooled gradient buffers change no bit of the outputs
 * or gradients, over several steps (the pool is reused) in both modes. */
static void inplace_relu_matches_twin(void)
{
	char err[NB_ERR_LEN];
	int bn[2], relu[2];
	nb_net *net[2];
	for (int k = 0; k < 2; k++) {
		net[k] = relu_net(k, &bn[k], &relu[k], err);
		CU_ASSERT_PTR_NOT_NULL_FATAL(net[k]);
	}
	const int n = 5, in_size = n * 3 * 8 * 8, out_size = n * 4;
	float *x = malloc(in_size * sizeof(float));
	float *r = malloc(out_size * sizeof(float));
	float *dx[2] = {malloc(in_size * sizeof(float)),
			malloc(in_size * sizeof(float))};
	CU_ASSERT_FATAL(x && r && dx[0] && dx[1]);
	for (int step = 0; step < 4; step++) {
		int training = step != 2;
		tu_fill_normal(x, in_size, 1.0f, 60 + step);
		tu_fill_normal(r, out_size, 1.0f, 70 + step);
		for (int k = 0; k < 2; k++) {
			nb_net_set_training(net[k], training);
			CU_ASSERT_EQUAL_FATAL(nb_net_forward(net[k], x, n, err),
					      0);
			int o = nb_net_output_node(net[k]);
			memcpy(nb_net_grad(net[k], o), r,
			       out_size * sizeof(float));
			nb_net_zero_grad(net[k]);
			CU_ASSERT_EQUAL_FATAL(
			    nb_net_backward(net[k], dx[k], err), 0);
		}
		/* the shared buffer is in use in the twin without taps only */
		CU_ASSERT(nb_net_output(net[0], bn[0]) ==
			  nb_net_output(net[0], relu[0]));
		CU_ASSERT(nb_net_output(net[1], bn[1]) !=
			  nb_net_output(net[1], relu[1]));
		int o = nb_net_output_node(net[0]);
		CU_ASSERT_EQUAL(memcmp(nb_net_output(net[0], o),
				       nb_net_output(net[1], o),
				       out_size * sizeof(float)),
				0);
		CU_ASSERT_EQUAL(memcmp(dx[0], dx[1], in_size * sizeof(float)),
				0);
		nb_param **p0, **p1;
		int np = nb_net_params(net[0], &p0);
		nb_net_params(net[1], &p1);
		for (int i = 0; i < np; i++) {
			CU_ASSERT_EQUAL(memcmp(p0[i]->data, p1[i]->data,
					       p0[i]->size * sizeof(float)),
					0);
			if (p0[i]->grad)
				CU_ASSERT_EQUAL(
				    memcmp(p0[i]->grad, p1[i]->grad,
					   p0[i]->size * sizeof(float)),
				    0);
		}
	}
	/* the input gradient is not all zero (the test can see a change) */
	double s = 0;
	for (int i = 0; i < in_size; i++)
		s += fabs(dx[0][i]);
	CU_ASSERT(s > 0);
	for (int k = 0; k < 2; k++) {
		nb_net_free(net[k]);
		free(dx[k]);
	}
	free(x);
	free(r);
}

/* Two pre-activation blocks on 16 channels of 16x16: conv -> [BN ->
 * ReLU -> conv -> BN -> ReLU6 -> conv] + add -> [BN -> ReLU -> conv] + 1x1
 * conv (built before the block, as preresnet's projection is not) -> BN
 * -> ReLU -> avg pool -> flatten -> linear. With taps on the two
 * activations inside the first block (*r1, *r2), on c1 and on the three
 * addends that are convolutions, their BatchNorms write their outputs and
 * take their own statistics, and the adds' addends keep their own
 * gradients; without, the convolutions apply the BatchNorms as they read
 * (nb_conv_pre) where the kernels take it, the first block's second
 * convolution adds the residual as it writes (link_res), c1 and c2 take
 * the statistics of the BatchNorms that read what they write (link_stats),
 * and an addend reads the other's gradient (add_hand_over). */
static nb_net *pre_net(int taps, int *r1, int *r2, char *err)
{
	nb_net *net = nb_net_new(3, 16, 16);
	int x = nb_net_add_conv2d(net, 0, "stem", 16, 3, 1, 1, 1, 0,
				  NB_INIT_DEFAULT, err);
	int y = nb_net_add_batchnorm(net, x, "bn1", 1e-5f, 0.1f, 1, err);
	*r1 = y = nb_net_add_relu(net, y, err);
	const int c1 = y = nb_net_add_conv2d(net, y, "c1", 16, 3, 1, 1, 1, 1,
					     NB_INIT_DEFAULT, err);
	y = nb_net_add_batchnorm(net, y, "bn2", 1e-5f, 0.1f, 1, err);
	*r2 = y = nb_net_add_relu6(net, y, err);
	y = nb_net_add_conv2d(net, y, "c2", 16, 3, 1, 1, 1, 0, NB_INIT_DEFAULT,
			      err);
	const int c2 = y;
	x = nb_net_add_add(net, x, y, err);
	const int ds = nb_net_add_conv2d(net, x, "ds", 16, 1, 1, 0, 1, 0,
					 NB_INIT_DEFAULT, err);
	y = nb_net_add_batchnorm(net, x, "bn3", 1e-5f, 0.1f, 1, err);
	y = nb_net_add_relu(net, y, err);
	const int c3 = y = nb_net_add_conv2d(net, y, "c3", 16, 3, 1, 1, 1, 0,
					     NB_INIT_DEFAULT, err);
	x = nb_net_add_add(net, ds, y, err);
	x = nb_net_add_batchnorm(net, x, "bn", 1e-5f, 0.1f, 1, err);
	x = nb_net_add_relu(net, x, err);
	x = nb_net_add_avgpool(net, x, 16, 16, 0, err);
	x = nb_net_add_flatten(net, x, err);
	x = nb_net_add_linear(net, x, "fc", 5, 1, NB_INIT_DEFAULT, err);
	if (x < 0 || (taps && (nb_net_add_tap(net, *r1, "r1", err) < 0 ||
			       nb_net_add_tap(net, *r2, "r2", err) < 0 ||
			       nb_net_add_tap(net, c1, "c1", err) < 0 ||
			       nb_net_add_tap(net, c2, "c2", err) < 0 ||
			       nb_net_add_tap(net, c3, "c3", err) < 0 ||
			       nb_net_add_tap(net, ds, "ds", err) < 0)) ||
	    nb_net_finalize(net, 9, err) < 0) {
		nb_net_free(net);
		return NULL;
	}
	/* a gamma of 4: ReLU6 clips about 7 % of bn2's outputs */
	nb_param *g = nb_net_param(net, "bn2.weight");
	for (size_t i = 0; i < g->size; i++)
		g->data[i] = 4.0f;
	return net;
}

/* The BatchNorms left to their convolutions, the residuals and
 * statistics the convolutions take and the addends reading the other
 * addend's gradient change no bit of the outputs, gradients,
 * parameters or running statistics against the twin without them (taps),
 * over training and evaluation steps, on both Winograd layouts; an
 * activation asked for by nb_net_output in between is written then, with
 * the twin's bits. */
static void pre_bn_matches_twin(void)
{
	char err[NB_ERR_LEN];
	const int n = 6, in_size = n * 3 * 16 * 16, out_size = n * 5;
	float *x = malloc(in_size * sizeof(float));
	float *r = malloc(out_size * sizeof(float));
	float *dx[2] = {malloc(in_size * sizeof(float)),
			malloc(in_size * sizeof(float))};
	CU_ASSERT_FATAL(x && r && dx[0] && dx[1]);
	for (int kern = 0; kern < 2; kern++) {
		nb_conv2d_set_kernels(kern ? NB_CONV_WINOGRAD : NB_CONV_AUTO);
		int r1[2], r2[2];
		nb_net *net[2];
		for (int k = 0; k < 2; k++) {
			net[k] = pre_net(k, &r1[k], &r2[k], err);
			CU_ASSERT_PTR_NOT_NULL_FATAL(net[k]);
		}
		for (int step = 0; step < 4; step++) {
			const int training = step != 2;
			tu_fill_normal(x, in_size, 1.0f, 80 + step);
			tu_fill_normal(r, out_size, 1.0f, 90 + step);
			for (int k = 0; k < 2; k++) {
				nb_net_set_training(net[k], training);
				CU_ASSERT_EQUAL_FATAL(
				    nb_net_forward(net[k], x, n, err), 0);
			}
			if (step == 3) /* written on demand */
				CU_ASSERT_EQUAL(
				    memcmp(nb_net_output(net[0], r2[0]),
					   nb_net_output(net[1], r2[1]),
					   (size_t)n * 16 * 16 * 16 *
					       sizeof(float)),
				    0);
			for (int k = 0; k < 2; k++) {
				int o = nb_net_output_node(net[k]);
				memcpy(nb_net_grad(net[k], o), r,
				       out_size * sizeof(float));
				nb_net_zero_grad(net[k]);
				CU_ASSERT_EQUAL_FATAL(
				    nb_net_backward(net[k], dx[k], err), 0);
			}
			int o = nb_net_output_node(net[0]);
			CU_ASSERT_EQUAL(memcmp(nb_net_output(net[0], o),
					       nb_net_output(net[1], o),
					       out_size * sizeof(float)),
					0);
			CU_ASSERT_EQUAL(
			    memcmp(dx[0], dx[1], in_size * sizeof(float)), 0);
			nb_param **p0, **p1;
			int np = nb_net_params(net[0], &p0);
			nb_net_params(net[1], &p1);
			for (int i = 0; i < np; i++) {
				CU_ASSERT_EQUAL(
				    memcmp(p0[i]->data, p1[i]->data,
					   p0[i]->size * sizeof(float)),
				    0);
				if (p0[i]->grad)
					CU_ASSERT_EQUAL(
					    memcmp(p0[i]->grad, p1[i]->grad,
						   p0[i]->size * sizeof(float)),
					    0);
			}
			/* a step of plain SGD, so that the next one differs */
			for (int i = 0; i < np; i++)
				for (size_t j = 0; p0[i]->grad && j < p0[i]->size;
				     j++) {
					p0[i]->data[j] -= 0.1f * p0[i]->grad[j];
					p1[i]->data[j] -= 0.1f * p1[i]->grad[j];
				}
		}
		double sd = 0;
		for (int i = 0; i < in_size; i++)
			sd += fabs(dx[0][i]);
		CU_ASSERT(sd > 0);
		for (int k = 0; k < 2; k++)
			nb_net_free(net[k]);
	}
	nb_conv2d_set_kernels(NB_CONV_AUTO);
	for (int k = 0; k < 2; k++)
		free(dx[k]);
	free(x);
	free(r);
}

/* nb_net_forward_infer (BatchNorm folded into convolutions) against its
 * twin, nb_net_forward in evaluation mode: conv+bias -> BN -> ReLU ->
 * grouped conv -> BN -> add -> ReLU -> depthwise conv -> BN -> avg pool ->
 * flatten -> linear. */
static void infer_folded_matches_eval(void)
{
	char err[NB_ERR_LEN];
	nb_net *net = nb_net_new(4, 9, 9);
	int x = nb_net_add_conv2d(net, 0, "c1", 8, 3, 1, 1, 1, 1,
				  NB_INIT_DEFAULT, err);
	x = nb_net_add_batchnorm(net, x, "bn1", 1e-5f, 0.1f, 1, err);
	int r = nb_net_add_relu(net, x, err);
	x = nb_net_add_conv2d(net, r, "c2", 8, 3, 1, 1, 2, 0, NB_INIT_DEFAULT,
			      err);
	x = nb_net_add_batchnorm(net, x, "bn2", 1e-5f, 0.1f, 1, err);
	x = nb_net_add_add(net, x, r, err);
	x = nb_net_add_relu(net, x, err);
	x = nb_net_add_conv2d(net, x, "dw", 8, 3, 2, 1, 8, 0, NB_INIT_DEFAULT,
			      err);
	x = nb_net_add_batchnorm(net, x, "bn3", 1e-5f, 0.1f, 1, err);
	x = nb_net_add_avgpool(net, x, 5, 5, 0, err);
	x = nb_net_add_flatten(net, x, err);
	x = nb_net_add_linear(net, x, "fc", 3, 1, NB_INIT_DEFAULT, err);
	CU_ASSERT_FATAL(x > 0);
	CU_ASSERT_EQUAL_FATAL(nb_net_finalize(net, 9, err), 0);
	nb_param **ps;
	int np = nb_net_params(net, &ps);
	for (int i = 0; i < np; i++)
		if (strstr(ps[i]->name, "bn"))
			tu_fill_uniform(ps[i]->data, ps[i]->size, 0.3f, 1.7f,
					80 + i);
	const int n = 3, in_size = n * 4 * 9 * 9, out_size = n * 3;
	float *in = malloc(in_size * sizeof(float));
	float ref[9], got[9];
	CU_ASSERT_FATAL(in != NULL);
	tu_fill_normal(in, in_size, 1.0f, 81);
	nb_net_set_training(net, 0);
	CU_ASSERT_EQUAL_FATAL(nb_net_forward(net, in, n, err), 0);
	memcpy(ref, nb_net_output(net, x), sizeof ref);
	/* conv c1 (node 1) is folded: infer leaves its own output alone */
	float *c1 = nb_net_output(net, 1);
	c1[0] = 12345.0f;
	nb_net_set_training(net, 1); /* infer ignores it and keeps it */
	CU_ASSERT_EQUAL_FATAL(nb_net_forward_infer(net, in, n, err), 0);
	CU_ASSERT_EQUAL(c1[0], 12345.0f);
	CU_ASSERT_EQUAL(nb_net_training(net), 1);
	memcpy(got, nb_net_output(net, x), sizeof got);
	double m = 0;
	for (int i = 0; i < out_size; i++)
		m = fmax(m, fabs(ref[i]));
	CU_ASSERT(m > 0.1);
	CU_ASSERT(tu_max_abs_diff(ref, got, out_size) <= 1e-5 * m);
	/* no backward after it; a normal forward makes backward work again */
	nb_net_grad(net, x)[0] = 1.0f;
	CU_ASSERT(nb_net_backward(net, NULL, err) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "inference-only"));
	CU_ASSERT_EQUAL_FATAL(nb_net_forward(net, in, n, err), 0);
	nb_net_grad(net, x)[0] = 1.0f;
	CU_ASSERT_EQUAL(nb_net_backward(net, NULL, err), 0);
	free(in);
	nb_net_free(net);
}

static const nb_test_entry tests[] = {
    {"graph gradients (eval mode, every node kind)", graph_gradients_eval},
    {"graph gradients (training-mode BatchNorm)", graph_gradients_train_bn},
    {"gradient injected at an inner node", inject_inner_node},
    {"frozen parameters get no gradient, input still does", frozen_parameters},
    {"train and eval modes differ as BatchNorm should",
     train_eval_modes_differ},
    {"LeNet-5 parameter counts and state_dict names", lenet_counts_and_names},
    {"initialisation follows PyTorch", initialisation_statistics},
    {"same seed, same weights", same_seed_same_weights},
    {"bad architectures fail at build time", build_errors},
    {"in-place ReLUs and pooled gradients match the twin",
     inplace_relu_matches_twin},
    {"BatchNorms applied by convolutions, addends sharing gradients: twin",
     pre_bn_matches_twin},
    {"inference with folded BatchNorm matches evaluation mode",
     infer_folded_matches_eval},
    {NULL, NULL}};

void nb_test_net(void)
{
	nb_test_add_suite("net", tests);
}
