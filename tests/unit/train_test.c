/*
 * train_test.c - the training loop end to end: it learns (synthetic data in
 * the IDX format, and the real Fashion-MNIST when installed), it is
 * bit-reproducible for a seed and thread count, a non-finite loss ends the
 * run as diverged, and the per-epoch log is complete.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <omp.h>

#include "data.h"
#include "error.h"
#include "registry.h"
#include "train.h"
#include "testutil.h"

static char *synth_dir;
static nb_dataset synth_train, synth_test;

static int suite_init(void)
{
	char err[NB_ERR_LEN];
	synth_dir = tu_mkdtemp();
	if (!synth_dir)
		return 1;
	if (nb_synth_write(synth_dir, "idx", 3000, 600, 1, 5, err) < 0 ||
	    nb_dataset_load("mnist", synth_dir, NB_SPLIT_TRAIN, &synth_train,
			    err) < 0 ||
	    nb_dataset_load("mnist", synth_dir, NB_SPLIT_TEST, &synth_test,
			    err) < 0) {
		fprintf(stderr, "train suite setup: %s\n", err);
		return 1;
	}
	return 0;
}

static int suite_clean(void)
{
	nb_dataset_free(&synth_train);
	nb_dataset_free(&synth_test);
	tu_rmtree(synth_dir);
	free(synth_dir);
	return 0;
}

static void mnist_config(nb_train_config *cfg, int epochs, uint64_t seed)
{
	nb_train_config_default(cfg);
	cfg->epochs = epochs;
	cfg->batch = 64;
	cfg->seed = seed;
	cfg->aug.pad_to = 32;
	cfg->aug.mean[0] = 0.5f;
	cfg->aug.std[0] = 0.5f;
}

static nb_net *lenet(const char *arch, uint64_t seed)
{
	char err[NB_ERR_LEN];
	nb_net *net;
	const nb_plugin *p = tu_arch(arch);
	if (!p || nb_arch_build(p, NULL, 1, 32, 32, 10, seed, &net, err) < 0)
		return NULL;
	return net;
}

static void learns_synthetic(void)
{
	char err[NB_ERR_LEN];
	nb_net *net = lenet("lenet5-half", 1);
	CU_ASSERT_PTR_NOT_NULL_FATAL(net);
	nb_train_config cfg;
	mnist_config(&cfg, 3, 1);
	nb_train_result res;
	int rc = nb_train(net, &synth_train, &synth_test, &cfg, &res, err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	CU_ASSERT_EQUAL(res.diverged, 0);
	CU_ASSERT_EQUAL(res.epochs_done, 3);
	/* chance is 10% */
	CU_ASSERT(res.best_acc > 60.0);
	CU_ASSERT(res.best_acc >= res.last_acc);
	double acc;
	CU_ASSERT_EQUAL(nb_evaluate(net, &synth_test, &cfg.aug, 100, 0, &acc,
				    NULL, err),
			0);
	CU_ASSERT_DOUBLE_EQUAL(acc, res.last_acc, 1e-9);
	nb_net_free(net);
}

static int same_params(nb_net *a, nb_net *b)
{
	nb_param **pa, **pb;
	int n = nb_net_params(a, &pa);
	nb_net_params(b, &pb);
	for (int i = 0; i < n; i++)
		if (memcmp(pa[i]->data, pb[i]->data, pa[i]->size * sizeof(float)))
			return 0;
	return 1;
}

static void run_once(nb_net *net, uint64_t seed, int threads)
{
	char err[NB_ERR_LEN];
	omp_set_num_threads(threads);
	nb_train_config cfg;
	mnist_config(&cfg, 1, seed);
	cfg.aug.crop_pad = 2; /* exercise the augmentation stream too */
	cfg.aug.flip = 1;
	cfg.optim = nb_optim_sgd_default();
	cfg.optim.lr = 0.05f;
	cfg.sched.base_lr = 0.05f;
	nb_train_result res;
	CU_ASSERT_EQUAL(nb_train(net, &synth_train, NULL, &cfg, &res, err), 0);
}

static void reproducible(void)
{
	int max = omp_get_max_threads();
	for (int threads = 1; threads <= 2; threads++) {
		nb_net *a = lenet("lenet5", 7), *b = lenet("lenet5", 7);
		CU_ASSERT_PTR_NOT_NULL_FATAL(a);
		CU_ASSERT_PTR_NOT_NULL_FATAL(b);
		run_once(a, 7, threads);
		run_once(b, 7, threads);
		CU_ASSERT(same_params(a, b));
		nb_net *c = lenet("lenet5", 7);
		run_once(c, 8, threads); /* other data order and crops */
		CU_ASSERT(!same_params(a, c));
		nb_net_free(a);
		nb_net_free(b);
		nb_net_free(c);
	}
	omp_set_num_threads(max);
}

static int nan_hook(void *ctx, const nb_batch *b, const float *z, int C,
		    float *dz, nb_loss_terms *terms, char *err)
{
	(void)err;
	int *calls = ctx;
	double ce = nb_cross_entropy(z, b->y, b->n, C, 0.0f, dz, 1.0f);
	terms->ce = ce;
	terms->total = ++*calls >= 5 ? NAN : ce;
	return 0;
}

static void divergence_is_a_result(void)
{
	char err[NB_ERR_LEN];
	nb_net *net = lenet("lenet5-half", 2);
	nb_train_config cfg;
	mnist_config(&cfg, 3, 2);
	int calls = 0;
	cfg.loss = nan_hook;
	cfg.loss_ctx = &calls;
	nb_train_result res;
	CU_ASSERT_EQUAL(nb_train(net, &synth_train, &synth_test, &cfg, &res, err), 0);
	CU_ASSERT_EQUAL(res.diverged, 1);
	CU_ASSERT_EQUAL(res.epochs_done, 0);
	CU_ASSERT_EQUAL(calls, 5);
	nb_net_free(net);
}

static void epoch_log(void)
{
	char err[NB_ERR_LEN];
	char *dir = tu_mkdtemp();
	char path[4096];
	snprintf(path, sizeof path, "%s/log.csv", dir);
	nb_net *net = lenet("lenet5-half", 3);
	nb_train_config cfg;
	mnist_config(&cfg, 2, 3);
	cfg.log_csv = path;
	nb_train_result res;
	CU_ASSERT_EQUAL_FATAL(nb_train(net, &synth_train, &synth_test, &cfg, &res, err), 0);
	FILE *f = fopen(path, "r");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	char line[1024];
	int lines = 0;
	CU_ASSERT_PTR_NOT_NULL(fgets(line, sizeof line, f));
	CU_ASSERT(strncmp(line, "epoch,lr,loss,ce,kl,train_acc,test_acc", 38) == 0);
	double last_test = -1;
	while (fgets(line, sizeof line, f)) {
		int epoch;
		double lr, loss, ce, kl, tr, te;
		CU_ASSERT_EQUAL(sscanf(line, "%d,%lf,%lf,%lf,%lf,%lf,%lf", &epoch,
				       &lr, &loss, &ce, &kl, &tr, &te),
				7);
		CU_ASSERT_EQUAL(epoch, lines + 1);
		CU_ASSERT(loss > 0 && loss < 5);
		last_test = te;
		lines++;
	}
	fclose(f);
	CU_ASSERT_EQUAL(lines, 2);
	CU_ASSERT_DOUBLE_EQUAL(last_test, res.last_acc, 0.006);
	nb_net_free(net);
	tu_rmtree(dir);
	free(dir);
}

static void input_mismatch_is_an_error(void)
{
	char err[NB_ERR_LEN];
	nb_net *net = lenet("lenet5", 1);
	nb_train_config cfg;
	mnist_config(&cfg, 1, 1);
	cfg.aug.pad_to = 0; /* 28x28 into a 32x32 model */
	nb_train_result res;
	CU_ASSERT(nb_train(net, &synth_train, &synth_test, &cfg, &res, err) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "32x32"));
	nb_net_free(net);
}

/* Real data: LeNet-5 on the installed Fashion-MNIST, one epoch, well above
 * chance. (The 10-epoch >= 89% proof runs from tests/fashion-mnist.sh.) */
static void learns_fashion_mnist(void)
{
	char err[NB_ERR_LEN];
	nb_dataset train = {0}, test = {0};
	if (nb_dataset_load("fashion-mnist", NULL, NB_SPLIT_TRAIN, &train, err) < 0 ||
	    nb_dataset_load("fashion-mnist", NULL, NB_SPLIT_TEST, &test, err) < 0) {
		printf("\n  skipped: %s\n", err);
		nb_dataset_free(&train);
		return;
	}
	nb_net *net = lenet("lenet5", 0);
	nb_train_config cfg;
	nb_train_config_default(&cfg);
	cfg.epochs = 1;
	cfg.aug.pad_to = 32;
	cfg.aug.mean[0] = 0.2860f;
	cfg.aug.std[0] = 0.3530f;
	nb_train_result res;
	CU_ASSERT_EQUAL_FATAL(nb_train(net, &train, &test, &cfg, &res, err), 0);
	printf("\n  fashion-mnist, lenet5, 1 epoch: %.2f%% (%.0f img/s)\n",
	       res.best_acc, res.img_per_s);
	CU_ASSERT(res.best_acc > 80.0);
	nb_net_free(net);
	nb_dataset_free(&train);
	nb_dataset_free(&test);
}

static const nb_test_entry tests[] = {
	{"learns synthetic IDX data", learns_synthetic},
	{"bit-reproducible for a seed and thread count", reproducible},
	{"a NaN loss ends the run as diverged", divergence_is_a_result},
	{"per-epoch CSV log", epoch_log},
	{"input shape mismatch is an error", input_mismatch_is_an_error},
	{"learns real Fashion-MNIST", learns_fashion_mnist},
	{NULL, NULL}};

void nb_test_train(void)
{
	CU_pSuite s = CU_add_suite("train", suite_init, suite_clean);
	if (!s)
		return;
	for (const nb_test_entry *t = tests; t->name; t++)
		CU_add_test(s, t->name, t->fn);
}
