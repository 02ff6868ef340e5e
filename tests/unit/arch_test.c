/*
 * arch_test.c - the architecture plugins against two independent sources:
 * the parameter counts of the facts sheet (§4 of nasty-teacher-facts.md,
 * hard-coded below) and PyTorch twins of the reference modules
 * (tests/fixtures/reference_models.py, via arch_reference.h: state_dict
 * names and shapes in order, parameter counts, and logits for weights set
 * by a formula). Also: feature taps and stage shapes, the initialisation
 * rules of PreResNet and ResNeXt, that a few SGD steps lower the loss, that
 * BatchNorm networks differ between training and evaluation, and which
 * architectures accept 64x64 (Tiny-ImageNet) inputs.
 *
 * What it deliberately does not do: train ResNet-50 or ResNeXt-29 (too slow
 * for a unit test; their graphs share the code paths of the smaller nets),
 * or check gradients by finite differences (net_test.c does that for every
 * node kind).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "loss.h"
#include "net.h"
#include "optim.h"
#include "checkpoint.h"
#include "registry.h"
#include "testutil.h"

#include "../fixtures/arch_reference.h"

/*
 * One architecture: its usual input, the facts sheet's trainable counts
 * for 10/100/200 classes (0 = not listed), whether it has BatchNorm, the
 * stage taps' shapes on the usual input (channels x side) and the feature
 * width, the training test's input side (0 = not trained here), SGD
 * learning rate and step count, and whether it takes 64x64 inputs.
 */
typedef struct arch_case {
	const char *name;
	int c, hw;
	long facts[3];
	int bn;
	const char *stages; /* "CxS CxS ..." per stage tap, in order */
	int features;
	struct {
		int hw; /* input side; 0 = not trained here */
		float lr;
		int steps;
	} train;
	int tiny;
} arch_case;

/* clang-format off */
static const arch_case cases[] = {
	{"lenet5",       1, 32, {61706, 0, 0},                   0,
	 "6x14 16x5", 120, {32, 0.03f, 50}, 0},
	{"lenet5-half",  1, 32, {15738, 0, 0},                   0,
	 "3x14 8x5", 60, {32, 0.03f, 50}, 0},
	{"cnn",          3, 32, {357514, 369124, 382024},        1,
	 "32x16 64x8 128x4", 128, {32, 0.01f, 10}, 0},
	{"resnet18",     3, 32, {11173962, 11220132, 11271432},  1,
	 "64x32 128x16 256x8 512x4", 512, {8, 0.01f, 10}, 1},
	{"resnet34",     3, 32, {21282122, 21328292, 21379592},  1,
	 "64x32 128x16 256x8 512x4", 512, {8, 0.01f, 10}, 1},
	{"resnet50",     3, 32, {23520842, 23705252, 23910152},  1,
	 "256x32 512x16 1024x8 2048x4", 2048, {0, 0, 0}, 1},
	{"resnext29",    3, 32, {34426698, 34518948, 34621448},  1,
	 "256x32 512x16 1024x8", 1024, {0, 0, 0}, 1},
	{"preresnet20",  3, 32, {272282, 278132, 284632},        1,
	 "16x32 32x16 64x8", 64, {32, 0.05f, 10}, 0},
	{"preresnet32",  3, 32, {466714, 472564, 479064},        1,
	 "16x32 32x16 64x8", 64, {32, 0.05f, 10}, 0},
	{"mobilenetv2",  3, 32, {2254090, 2369380, 2497480},     1,
	 "16x34 24x17 32x9 64x5 96x5 160x5 320x5", 1280, {8, 0.01f, 10}, 1},
	{"shufflenetv2", 3, 32, {1268646, 1360896, 1463396},     1,
	 "116x16 232x8 464x4", 1024, {8, 0.01f, 10}, 1},
};
/* clang-format on */
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

static const int class_counts[3] = {10, 100, 200};

/* Builds case a for `classes` on its usual input; NULL (reported) on
 * failure. */
static nb_net *build(const arch_case *a, int h, int w, int classes)
{
	char err[NB_ERR_LEN];
	const nb_plugin *p = tu_arch(a->name);
	CU_ASSERT_PTR_NOT_NULL(p);
	if (!p) {
		fprintf(stderr, "\n  no arch plugin %s\n", a->name);
		return NULL;
	}
	nb_net *net = NULL;
	int rc = nb_arch_build(p, NULL, a->c, h, w, classes, 1, &net, err);
	CU_ASSERT_EQUAL(rc, 0);
	if (rc < 0)
		fprintf(stderr, "\n  %s: %s\n", a->name, err);
	return net;
}

static const ar_arch *fixture(const char *name)
{
	for (int i = 0; i < AR_N_ARCHS; i++)
		if (!strcmp(ar_archs[i].name, name))
			return &ar_archs[i];
	return NULL;
}

/* Trainable counts against the facts sheet and the PyTorch twins. */
static void param_counts(void)
{
	for (int i = 0; i < N_CASES; i++) {
		const arch_case *a = &cases[i];
		const ar_arch *f = fixture(a->name);
		CU_ASSERT_PTR_NOT_NULL_FATAL(f);
		for (int j = 0; j < 3; j++) {
			CU_ASSERT_EQUAL_FATAL(ar_classes[j], class_counts[j]);
			nb_net *net = build(a, a->hw, a->hw, class_counts[j]);
			if (!net)
				continue;
			long got = (long)nb_net_param_count(net);
			if ((a->facts[j] && got != a->facts[j]) ||
			    got != f->params[j]) {
				fprintf(stderr,
					"\n  %s/%d classes: %ld parameters, "
					"facts %ld, torch %ld\n",
					a->name, class_counts[j], got,
					a->facts[j], f->params[j]);
				CU_FAIL("parameter count");
			}
			nb_net_free(net);
		}
	}
}

/* nb_net_params (names, shapes, order) equals the torch state_dict minus
 * num_batches_tracked, which are the network's counters instead. */
static void state_dict_names_and_shapes(void)
{
	for (int i = 0; i < N_CASES; i++) {
		const arch_case *a = &cases[i];
		const ar_arch *f = fixture(a->name);
		CU_ASSERT_PTR_NOT_NULL_FATAL(f);
		for (int j = 0; j < 3; j++) {
			nb_net *net = build(a, a->hw, a->hw, class_counts[j]);
			if (!net)
				continue;
			nb_param **ps;
			int n = nb_net_params(net, &ps), bad = 0;
			if (n != f->n_entries) {
				fprintf(stderr,
					"\n  %s: %d tensors, torch %d\n",
					a->name, n, f->n_entries);
				bad = 1;
			}
			for (int k = 0; k < n && k < f->n_entries && !bad;
			     k++) {
				const ar_entry *e = &f->entries[k];
				int same = !strcmp(ps[k]->name, e->name) &&
					   ps[k]->ndim == e->ndim;
				for (int d = 0; same && d < e->ndim; d++) {
					int want = e->shape[d] < 0
						       ? class_counts[j]
						       : e->shape[d];
					same = ps[k]->shape[d] == want;
				}
				if (!same) {
					fprintf(stderr,
						"\n  %s/%d classes: tensor %d "
						"is %s (%d dims), torch %s\n",
						a->name, class_counts[j], k,
						ps[k]->name, ps[k]->ndim,
						e->name);
					bad = 1;
				}
			}
			CU_ASSERT_EQUAL(bad, 0);
			/* one num_batches_tracked per BatchNorm, named after it
			 */
			nb_counter *cnt;
			int nc = nb_net_counters(net, &cnt);
			int n_bn = 0;
			for (int k = 0; k < n; k++) {
				const char *dot = strrchr(ps[k]->name, '.');
				n_bn += dot && !strcmp(dot, ".running_mean");
			}
			CU_ASSERT_EQUAL(nc, n_bn);
			if (nc > 0)
				CU_ASSERT_PTR_NOT_NULL(strstr(
				    cnt[0].name, ".num_batches_tracked"));
			nb_net_free(net);
		}
	}
}

/* u(i, k) of make_arch_fixtures.py, in [-1, 1). */
static double hash_u(uint32_t i, uint32_t k)
{
	uint32_t h = i * 2654435761u + (k * 40503u + 12345u);
	h ^= h >> 15;
	h *= 2246822519u;
	h ^= h >> 13;
	h *= 3266489917u;
	h ^= h >> 16;
	return (double)h / 4294967296.0 * 2.0 - 1.0;
}

/* Fills every parameter by the fixture's formula (k = state_dict index). */
static int fill_formula(nb_net *net)
{
	nb_param **ps;
	int n = nb_net_params(net, &ps);
	for (int k = 0; k < n; k++) {
		nb_param *p = ps[k];
		const char *dot = strrchr(p->name, '.');
		const char *leaf = dot ? dot + 1 : p->name;
		double amp = 0;
		int kind;
		if (!strcmp(leaf, "weight") && p->ndim >= 2) {
			amp =
			    sqrt(6.0 / (double)(p->size / (size_t)p->shape[0]));
			kind = 0;
		} else if (!strcmp(leaf, "weight")) {
			kind = 1;
		} else if (!strcmp(leaf, "bias") ||
			   !strcmp(leaf, "running_mean")) {
			kind = 2;
		} else if (!strcmp(leaf, "running_var")) {
			kind = 3;
		} else {
			fprintf(stderr, "\n  no fill rule for %s\n", p->name);
			return -1;
		}
		for (size_t i = 0; i < p->size; i++) {
			double u = hash_u((uint32_t)i, (uint32_t)k), v;
			switch (kind) {
			case 0:
				v = amp * u;
				break;
			case 1:
				v = 1.0 + 0.2 * u;
				break;
			case 2:
				v = 0.1 * u;
				break;
			default:
				v = 1.0 + 0.5 * u * u;
				break;
			}
			p->data[i] = (float)v;
		}
	}
	return 0;
}

/* Evaluation-mode logits with formula weights match PyTorch's. */
static void logits_match_torch(void)
{
	char err[NB_ERR_LEN];
	for (int t = 0; t < AR_N_LOGITS; t++) {
		const ar_logits *L = &ar_logits_table[t];
		const nb_plugin *p = tu_arch(L->arch);
		CU_ASSERT_PTR_NOT_NULL_FATAL(p);
		nb_net *net = NULL;
		CU_ASSERT_EQUAL_FATAL(nb_arch_build(p, NULL, L->c, L->h, L->w,
						    L->classes, 1, &net, err),
				      0);
		CU_ASSERT_EQUAL_FATAL(fill_formula(net), 0);
		size_t in = (size_t)L->n * L->c * L->h * L->w;
		float *x = malloc(in * sizeof *x);
		CU_ASSERT_PTR_NOT_NULL_FATAL(x);
		for (size_t i = 0; i < in; i++)
			x[i] = (float)(sin(0.11 * (double)i) +
				       sin(0.0007 * (double)i));
		nb_net_set_training(net, 0);
		CU_ASSERT_EQUAL_FATAL(nb_net_forward(net, x, L->n, err), 0);
		const float *y = nb_net_output(net, nb_net_output_node(net));
		size_t m = (size_t)L->n * L->classes;
		double scale = 0;
		for (size_t i = 0; i < m; i++)
			scale = fmax(scale, fabs(L->y[i]));
		double diff = tu_max_abs_diff(y, L->y, m);
		if (!(diff <= 1e-4 * scale)) {
			fprintf(stderr,
				"\n  %s: logits differ from torch by %g "
				"(largest logit %g)\n",
				L->arch, diff, scale);
			CU_FAIL("logits");
		}
		free(x);
		nb_net_free(net);
	}
}

/* "stage1".."stageN" with the expected shapes, no "stageN+1", and a
 * "features" tap as wide as the classifier's input. */
static void taps_and_stage_shapes(void)
{
	char tap[16];
	for (int i = 0; i < N_CASES; i++) {
		const arch_case *a = &cases[i];
		nb_net *net = build(a, a->hw, a->hw, 10);
		if (!net)
			continue;
		int c, h, w, s = 0, sc, shw, used;
		for (const char *q = a->stages;
		     sscanf(q, "%dx%d%n", &sc, &shw, &used) == 2; q += used) {
			snprintf(tap, sizeof tap, "stage%d", ++s);
			int node = nb_net_find_tap(net, tap);
			CU_ASSERT(node > 0);
			if (node <= 0) {
				fprintf(stderr, "\n  %s: no tap %s\n", a->name,
					tap);
				continue;
			}
			nb_net_node_shape(net, node, &c, &h, &w);
			if (c != sc || h != shw || w != shw) {
				fprintf(stderr,
					"\n  %s: %s is %dx%dx%d, expected "
					"%dx%dx%d\n",
					a->name, tap, c, h, w, sc, shw, shw);
				CU_FAIL("stage shape");
			}
		}
		CU_ASSERT(s > 0);
		snprintf(tap, sizeof tap, "stage%d", s + 1);
		CU_ASSERT(nb_net_find_tap(net, tap) < 0);
		int node = nb_net_find_tap(net, "features");
		CU_ASSERT(node > 0);
		if (node > 0) {
			nb_net_node_shape(net, node, &c, &h, &w);
			CU_ASSERT_EQUAL(c * h * w, a->features);
			if (c * h * w != a->features)
				fprintf(stderr, "\n  %s: features %d wide\n",
					a->name, c * h * w);
		}
		nb_net_free(net);
	}
}

/* nb_net_forward_infer with its buffers reused against its twin that keeps
 * every node's output: the same bits in the output and every tap, for
 * every architecture, on a warm pool too, with every node's own buffer
 * holding another input's activations; and the training-mode forward
 * that follows still gives what it gave before (every node's own buffer
 * is back in place). */
static void infer_reuse_matches_twin(void)
{
	char err[NB_ERR_LEN];
	for (int i = 0; i < N_CASES; i++) {
		const arch_case *a = &cases[i];
		nb_net *net = build(a, a->hw, a->hw, 10);
		if (!net)
			continue;
		const int n = 3, out = nb_net_output_node(net);
		const size_t in_n = (size_t)n * a->c * a->hw * a->hw;
		float *x = malloc(in_n * sizeof(float));
		CU_ASSERT_FATAL(x != NULL);
		tu_fill_normal(x, in_n, 1.0f, 500 + i);
		/* BatchNorm statistics away from 0 and 1, so that folding
		 * and the ReLUs after it have something to do */
		nb_param **ps;
		const int np = nb_net_params(net, &ps);
		for (int k = 0; k < np; k++)
			if (strstr(ps[k]->name, "running_var"))
				tu_fill_uniform(ps[k]->data, ps[k]->size, 0.5f,
						2.0f, 600 + k);
			else if (strstr(ps[k]->name, "running_mean"))
				tu_fill_uniform(ps[k]->data, ps[k]->size, -0.2f,
						0.2f, 600 + k);
		const int nt = nb_net_taps(net);
		size_t total = 0, at = 0;
		for (int t = -1; t < nt; t++) {
			int c, h, w;
			nb_net_node_shape(net, t < 0 ? out : nb_net_tap_node(net, t),
					  &c, &h, &w);
			total += (size_t)n * c * h * w;
		}
		float *ref = malloc(total * sizeof(float));
		float *got = malloc(total * sizeof(float));
		CU_ASSERT_FATAL(ref && got);
		/* the forward before any inference, for the last check */
		nb_net_set_training(net, 1);
		CU_ASSERT_EQUAL_FATAL(nb_net_forward(net, x, n, err), 0);
		int c, h, w;
		nb_net_node_shape(net, out, &c, &h, &w);
		const size_t out_n = (size_t)n * c * h * w;
		float *train0 = malloc(out_n * sizeof(float));
		CU_ASSERT_FATAL(train0 != NULL);
		memcpy(train0, nb_net_output(net, out), out_n * sizeof(float));
		float *x2 = malloc(in_n * sizeof(float));
		CU_ASSERT_FATAL(x2 != NULL);
		tu_fill_normal(x2, in_n, 2.0f, 700 + i);
		for (int pass = 0; pass < 3; pass++) {
			if (pass) {
				/* every node's own buffer now holds another
				 * input's values: a value read from one of
				 * them would show */
				nb_net_set_training(net, 0);
				CU_ASSERT_EQUAL_FATAL(
				    nb_net_forward(net, x2, n, err), 0);
			}
			nb_net_set_infer_reuse(net, pass > 0);
			CU_ASSERT_EQUAL_FATAL(nb_net_forward_infer(net, x, n, err),
					      0);
			float *dst = pass ? got : ref;
			at = 0;
			for (int t = -1; t < nt; t++) {
				const int node =
				    t < 0 ? out : nb_net_tap_node(net, t);
				nb_net_node_shape(net, node, &c, &h, &w);
				const size_t m = (size_t)n * c * h * w;
				memcpy(dst + at, nb_net_output(net, node),
				       m * sizeof(float));
				at += m;
			}
			if (pass && memcmp(ref, got, total * sizeof(float))) {
				fprintf(stderr, "\n  %s: reused buffers change "
						"the inference (pass %d)\n",
					a->name, pass);
				CU_FAIL("inference with reused buffers");
			}
		}
		double s = 0;
		for (size_t k = 0; k < total; k++)
			s += fabs(ref[k]);
		CU_ASSERT(s > 0 && isfinite(s));
		nb_net_set_training(net, 1);
		CU_ASSERT_EQUAL_FATAL(nb_net_forward(net, x, n, err), 0);
		CU_ASSERT_EQUAL(memcmp(train0, nb_net_output(net, out),
				       out_n * sizeof(float)),
				0);
		free(train0);
		free(ref);
		free(got);
		free(x);
		free(x2);
		nb_net_free(net);
	}
}

/* Sample standard deviation of a parameter. */
static double param_std(const nb_param *p)
{
	double s = 0, s2 = 0;
	for (size_t i = 0; i < p->size; i++) {
		s += p->data[i];
		s2 += (double)p->data[i] * p->data[i];
	}
	double m = s / (double)p->size;
	return sqrt(s2 / (double)p->size - m * m);
}

static int all_equal(const nb_param *p, float v)
{
	for (size_t i = 0; i < p->size; i++)
		if (p->data[i] != v)
			return 0;
	return 1;
}

static void check_std(nb_net *net, const char *name, double want)
{
	nb_param *p = nb_net_param(net, name);
	CU_ASSERT_PTR_NOT_NULL(p);
	if (!p)
		return;
	double got = param_std(p);
	if (fabs(got - want) > 0.05 * want) {
		fprintf(stderr, "\n  %s: std %g, expected %g\n", name, got,
			want);
		CU_FAIL("initialisation std");
	}
}

/* PreResNet: convs N(0, sqrt(2/(k*k*out))); ResNeXt: convs Kaiming fan_out,
 * classifier Kaiming fan_in with bias 0; BN gamma 1, beta 0; the others
 * PyTorch's default U(+-1/sqrt(fan_in)). */
static void initialisation_rules(void)
{
	const arch_case *pre = NULL, *rnx = NULL, *r18 = NULL;
	for (int i = 0; i < N_CASES; i++) {
		if (!strcmp(cases[i].name, "preresnet20"))
			pre = &cases[i];
		if (!strcmp(cases[i].name, "resnext29"))
			rnx = &cases[i];
		if (!strcmp(cases[i].name, "resnet18"))
			r18 = &cases[i];
	}
	CU_ASSERT_FATAL(pre && rnx && r18);
	nb_net *net = build(pre, 32, 32, 100);
	if (net) {
		check_std(net, "layer3.1.conv2.weight", sqrt(2.0 / (9 * 64)));
		check_std(net, "layer2.0.downsample.0.weight", sqrt(2.0 / 32));
		CU_ASSERT(
		    all_equal(nb_net_param(net, "layer2.0.bn1.weight"), 1.0f));
		CU_ASSERT(all_equal(nb_net_param(net, "bn.bias"), 0.0f));
		/* fc keeps the default: bias not all zero */
		CU_ASSERT(!all_equal(nb_net_param(net, "fc.bias"), 0.0f));
		nb_net_free(net);
	}
	net = build(rnx, 32, 32, 100);
	if (net) {
		check_std(net, "stage_2.stage_2_bottleneck_1.conv_conv.weight",
			  sqrt(2.0 / (1024 * 9)));
		check_std(net,
			  "stage_3.stage_3_bottleneck_0.conv_expand.weight",
			  sqrt(2.0 / 1024));
		check_std(net, "classifier.weight", sqrt(2.0 / 1024));
		CU_ASSERT(
		    all_equal(nb_net_param(net, "classifier.bias"), 0.0f));
		CU_ASSERT(all_equal(nb_net_param(net, "bn_1.weight"), 1.0f));
		nb_net_free(net);
	}
	net = build(r18, 32, 32, 10);
	if (net) {
		/* U(-b, b) has std b / sqrt(3), b = 1/sqrt(fan_in) */
		check_std(net, "layer3.0.conv1.weight",
			  1.0 / sqrt(128 * 9) / sqrt(3.0));
		check_std(net, "linear.weight", 1.0 / sqrt(512) / sqrt(3.0));
		nb_net_free(net);
	}
}

/* Cross entropy of the network's output for (x, labels); with train set,
 * also backward and one optimiser step. */
static double ce_step(nb_net *net, nb_optim *opt, const float *x,
		      const int *labels, int n, int classes, int train)
{
	char err[NB_ERR_LEN];
	if (nb_net_forward(net, x, n, err) < 0) {
		fprintf(stderr, "\n  forward: %s\n", err);
		return NAN;
	}
	int out = nb_net_output_node(net);
	const float *z = nb_net_output(net, out);
	if (!train)
		return nb_cross_entropy(z, labels, n, classes, 0, NULL, 1);
	nb_optim_zero_grad(opt);
	double loss = nb_cross_entropy(z, labels, n, classes, 0,
				       nb_net_grad(net, out), 1);
	if (nb_net_backward(net, NULL, err) < 0) {
		fprintf(stderr, "\n  backward: %s\n", err);
		return NAN;
	}
	nb_optim_step(opt);
	return loss;
}

/* A few SGD steps on 8 small synthetic images lower the loss; then a BN
 * network's training and evaluation outputs differ (batch vs running
 * statistics), and a network without BN gives the same in both. */
static void training_lowers_loss(void)
{
	enum { N = 8, CLASSES = 10 };
	char err[NB_ERR_LEN];
	int labels[N];
	for (int i = 0; i < N; i++)
		labels[i] = i % CLASSES;
	for (int i = 0; i < N_CASES; i++) {
		const arch_case *a = &cases[i];
		if (!a->train.hw)
			continue;
		nb_net *net = build(a, a->train.hw, a->train.hw, CLASSES);
		if (!net)
			continue;
		size_t in = (size_t)N * a->c * a->train.hw * a->train.hw;
		float *x = malloc(in * sizeof *x);
		float *y_train = malloc(N * CLASSES * sizeof *y_train);
		CU_ASSERT_PTR_NOT_NULL_FATAL(x);
		CU_ASSERT_PTR_NOT_NULL_FATAL(y_train);
		tu_fill_normal(x, in, 1.0f, 7 + (uint64_t)i);
		nb_param **ps;
		int np = nb_net_params(net, &ps);
		nb_optim_config cfg = nb_optim_sgd_default();
		cfg.lr = a->train.lr;
		cfg.weight_decay = 0;
		nb_optim *opt = nb_optim_new(&cfg, ps, np, err);
		CU_ASSERT_PTR_NOT_NULL_FATAL(opt);
		nb_net_set_training(net, 1);
		double first = ce_step(net, opt, x, labels, N, CLASSES, 1);
		for (int s = 1; s < a->train.steps; s++)
			ce_step(net, opt, x, labels, N, CLASSES, 1);
		double last = ce_step(net, opt, x, labels, N, CLASSES, 0);
		if (!(last < 0.8 * first)) {
			fprintf(stderr,
				"\n  %s: loss %g -> %g after %d steps\n",
				a->name, first, last, a->train.steps);
			CU_FAIL("loss did not fall");
		}
		/* the last forward was in training mode */
		memcpy(y_train, nb_net_output(net, nb_net_output_node(net)),
		       N * CLASSES * sizeof *y_train);
		nb_net_set_training(net, 0);
		CU_ASSERT_EQUAL(nb_net_forward(net, x, N, err), 0);
		double d = tu_max_abs_diff(
		    y_train, nb_net_output(net, nb_net_output_node(net)),
		    N * CLASSES);
		if (a->bn) {
			CU_ASSERT(d > 1e-4);
		} else {
			CU_ASSERT(d == 0);
		}
		nb_optim_free(opt);
		free(y_train);
		free(x);
		nb_net_free(net);
	}
}

/* Tiny-ImageNet: the adaptive-pool architectures build for 64x64 and 200
 * classes (the cheap ones also run); the fixed-size ones refuse with a
 * message that says why. */
static void tiny_imagenet_inputs(void)
{
	char err[NB_ERR_LEN];
	for (int i = 0; i < N_CASES; i++) {
		const arch_case *a = &cases[i];
		const nb_plugin *p = tu_arch(a->name);
		CU_ASSERT_PTR_NOT_NULL_FATAL(p);
		nb_net *net = NULL;
		int rc =
		    nb_arch_build(p, NULL, a->c, 64, 64, 200, 1, &net, err);
		if (!a->tiny) {
			CU_ASSERT_EQUAL(rc, NB_EINVAL);
			CU_ASSERT_PTR_NULL(net);
			CU_ASSERT_PTR_NOT_NULL(strstr(err, "64x64"));
			CU_ASSERT_PTR_NULL(strchr(err, '\n'));
			nb_net_free(net);
			continue;
		}
		CU_ASSERT_EQUAL(rc, 0);
		if (rc < 0) {
			fprintf(stderr, "\n  %s at 64x64: %s\n", a->name, err);
			continue;
		}
		int c, h, w;
		nb_net_node_shape(net, nb_net_output_node(net), &c, &h, &w);
		CU_ASSERT(c == 200 && h == 1 && w == 1);
		if (a->train.hw) { /* cheap enough to run one image */
			size_t in = (size_t)a->c * 64 * 64;
			float *x = malloc(in * sizeof *x);
			CU_ASSERT_PTR_NOT_NULL_FATAL(x);
			tu_fill_normal(x, in, 1.0f, 3);
			nb_net_set_training(net, 0);
			CU_ASSERT_EQUAL(nb_net_forward(net, x, 1, err), 0);
			CU_ASSERT(nb_all_finite(
			    nb_net_output(net, nb_net_output_node(net)), 200));
			free(x);
		}
		nb_net_free(net);
	}
	/* PreResNet needs an 8x8 last stage: 29..32 pixels */
	const nb_plugin *p = tu_arch("preresnet32");
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	nb_net *net = NULL;
	CU_ASSERT_EQUAL(nb_arch_build(p, NULL, 3, 29, 30, 10, 1, &net, err), 0);
	nb_net_free(net);
	net = NULL;
	CU_ASSERT_EQUAL(nb_arch_build(p, NULL, 3, 28, 32, 10, 1, &net, err),
			NB_EINVAL);
	CU_ASSERT_PTR_NULL(net);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "8x8"));
}

/* Names, aliases, and the build hook called directly with bad arguments. */
static void descriptors_and_bad_arguments(void)
{
	char err[NB_ERR_LEN];
	CU_ASSERT_PTR_NOT_NULL(tu_arch("resnetc20"));
	CU_ASSERT_PTR_EQUAL(tu_arch("resnetc20"), tu_arch("preresnet20"));
	CU_ASSERT_PTR_EQUAL(tu_arch("resnetc32"), tu_arch("preresnet32"));
	for (int i = 0; i < N_CASES; i++) {
		const nb_plugin *p = tu_arch(cases[i].name);
		CU_ASSERT_PTR_NOT_NULL_FATAL(p);
		CU_ASSERT_STRING_EQUAL(p->name, cases[i].name);
		CU_ASSERT_PTR_NOT_NULL(p->summary);
		nb_arch_args args = {cases[i].c, cases[i].hw, cases[i].hw, 0,
				     NULL};
		nb_net *net = (nb_net *)&args; /* must be reset to NULL */
		err[0] = '\0';
		CU_ASSERT_EQUAL(p->arch->build(&args, &net, err), NB_EINVAL);
		CU_ASSERT_PTR_NULL(net);
		CU_ASSERT(err[0] != '\0');
	}
}

/* Every architecture survives save -> load with bit-identical logits:
 * train-mode forwards first give the BatchNorm statistics and counters
 * values of their own, the loaded copy starts from another seed. */
static void checkpoint_round_trip(void)
{
	char err[NB_ERR_LEN], path[4096];
	char *dir = tu_mkdtemp();
	CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
	for (int i = 0; i < N_CASES; i++) {
		const arch_case *a = &cases[i];
		const nb_plugin *p = tu_arch(a->name);
		CU_ASSERT_PTR_NOT_NULL_FATAL(p);
		nb_net *src = NULL, *dst = NULL;
		CU_ASSERT_EQUAL_FATAL(nb_arch_build(p, NULL, a->c, a->hw, a->hw,
						    10, 1, &src, err), 0);
		CU_ASSERT_EQUAL_FATAL(nb_arch_build(p, NULL, a->c, a->hw, a->hw,
						    10, 2, &dst, err), 0);
		int n = 2;
		size_t in = (size_t)n * a->c * a->hw * a->hw;
		float *x = malloc(in * sizeof(float));
		float za[20], zb[20];
		tu_fill_normal(x, in, 1.0f, 60 + i);
		CU_ASSERT_EQUAL(nb_net_forward(src, x, n, err), 0);
		CU_ASSERT_EQUAL(nb_net_forward(src, x, n, err), 0);
		nb_net_set_training(src, 0);
		CU_ASSERT_EQUAL(nb_net_forward(src, x, n, err), 0);
		memcpy(za, nb_net_output(src, nb_net_output_node(src)), sizeof za);
		snprintf(path, sizeof path, "%s/%s.safetensors", dir, a->name);
		nb_ckpt_meta meta = {0};
		snprintf(meta.arch, sizeof meta.arch, "%s", a->name);
		meta.best_acc = -1;
		int rc = nb_checkpoint_save(src, &meta, path, err);
		if (rc < 0)
			fprintf(stderr, "\n  %s: %s\n", a->name, err);
		CU_ASSERT_EQUAL_FATAL(rc, 0);
		rc = nb_checkpoint_load(dst, path, NULL, err);
		if (rc < 0)
			fprintf(stderr, "\n  %s: %s\n", a->name, err);
		CU_ASSERT_EQUAL_FATAL(rc, 0);
		nb_net_set_training(dst, 0);
		CU_ASSERT_EQUAL(nb_net_forward(dst, x, n, err), 0);
		memcpy(zb, nb_net_output(dst, nb_net_output_node(dst)), sizeof zb);
		CU_ASSERT_EQUAL(memcmp(za, zb, sizeof za), 0);
		nb_counter *ca, *cb;
		int nc = nb_net_counters(src, &ca);
		nb_net_counters(dst, &cb);
		for (int j = 0; j < nc; j++)
			CU_ASSERT_EQUAL(cb[j].value, 2);
		remove(path);
		free(x);
		nb_net_free(src);
		nb_net_free(dst);
	}
	tu_rmtree(dir);
	free(dir);
}

static const nb_test_entry tests[] = {
    {"inference with reused buffers: same bits as keeping every output",
     infer_reuse_matches_twin},
    {"checkpoint round trip, every architecture", checkpoint_round_trip},
    {"parameter counts = facts sheet = torch", param_counts},
    {"state_dict names and shapes = torch", state_dict_names_and_shapes},
    {"formula-weight logits = torch", logits_match_torch},
    {"feature taps and stage shapes", taps_and_stage_shapes},
    {"PreResNet/ResNeXt/default initialisation", initialisation_rules},
    {"SGD steps lower the loss; train != eval with BN", training_lowers_loss},
    {"64x64 inputs: built or refused", tiny_imagenet_inputs},
    {"descriptors, aliases, bad arguments", descriptors_and_bad_arguments},
    {NULL, NULL}};

void nb_test_arch(void)
{
	nb_test_add_suite("arch", tests);
}
