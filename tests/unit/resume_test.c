/*
 * resume_test.c - resumable training: a run stopped after an epoch and
 * resumed from its state file ends bit-identical to an uninterrupted run
 * (weights, buffers, counters, optimiser state, random streams, log rows
 * apart from timings, best accuracy), for SGD with momentum, Adam, and a
 * network with dropout and BatchNorm; a state file from another
 * architecture, a truncated one or one from another configuration is a
 * clear error that leaves the network alone; the best-epoch checkpoint
 * holds the best epoch.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "data.h"
#include "error.h"
#include "registry.h"
#include "testutil.h"
#include "train.h"

static char *synth_dir;
static nb_dataset synth_train, synth_test;

static int suite_init(void)
{
	char err[NB_ERR_LEN];
	synth_dir = tu_mkdtemp();
	if (!synth_dir)
		return 1;
	if (nb_synth_write(synth_dir, "idx", 1000, 300, 0, 21, err) < 0 ||
	    nb_dataset_load("mnist", synth_dir, NB_SPLIT_TRAIN, &synth_train,
			    err) < 0 ||
	    nb_dataset_load("mnist", synth_dir, NB_SPLIT_TEST, &synth_test,
			    err) < 0) {
		fprintf(stderr, "resume suite setup: %s\n", err);
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

/* ---- networks ----------------------------------------------------------- */

static nb_net *lenet_half(uint64_t seed)
{
	char err[NB_ERR_LEN];
	nb_net *net;
	const nb_plugin *p = tu_arch("lenet5-half");
	if (!p || nb_arch_build(p, NULL, 1, 32, 32, 10, seed, &net, err) < 0)
		return NULL;
	return net;
}

/* conv-BN-ReLU-pool, then a hidden layer with dropout: exercises buffers,
 * counters and the dropout stream */
static nb_net *dropout_net(uint64_t seed)
{
	char err[NB_ERR_LEN];
	nb_net *net = nb_net_new(1, 32, 32);
	int x = nb_net_add_conv2d(net, 0, "conv", 6, 5, 2, 0, 1, 0,
				  NB_INIT_DEFAULT, err);
	x = nb_net_add_batchnorm(net, x, "bn", 1e-5f, 0.1f, 1, err);
	x = nb_net_add_relu(net, x, err);
	x = nb_net_add_maxpool(net, x, 2, 2, 0, err);
	x = nb_net_add_flatten(net, x, err);
	x = nb_net_add_linear(net, x, "fc1", 32, 1, NB_INIT_DEFAULT, err);
	x = nb_net_add_relu(net, x, err);
	x = nb_net_add_dropout(net, x, 0.5f, err);
	x = nb_net_add_linear(net, x, "fc2", 10, 1, NB_INIT_DEFAULT, err);
	if (x < 0 || nb_net_finalize(net, seed, err) < 0) {
		fprintf(stderr, "\n  dropout net: %s\n", err);
		nb_net_free(net);
		return NULL;
	}
	return net;
}

typedef nb_net *(*net_builder)(uint64_t seed);

/* ---- runs ---------------------------------------------------------------- */

enum { OPT_SGD, OPT_ADAM };

static void config(nb_train_config *cfg, int opt, int epochs)
{
	nb_train_config_default(cfg);
	cfg->epochs = epochs;
	cfg->batch = 50;
	cfg->eval_batch = 128;
	cfg->seed = 5;
	cfg->aug.pad_to = 32;
	cfg->aug.crop_pad = 2;
	cfg->aug.flip = 1;
	cfg->aug.mean[0] = 0.5f;
	cfg->aug.std[0] = 0.5f;
	if (opt == OPT_SGD) {
		cfg->optim = nb_optim_sgd_default();
		cfg->optim.lr = 0.05f;
		cfg->sched.kind = NB_SCHED_STEP;
		cfg->sched.base_lr = 0.05f;
		cfg->sched.gamma = 0.1f;
		cfg->sched.milestones[0] = 2;
		cfg->sched.n_milestones = 1;
	} else {
		cfg->optim = nb_optim_adam_default();
		cfg->optim.weight_decay = 1e-4f;
		cfg->sched.kind = NB_SCHED_COSINE;
		cfg->sched.base_lr = 2e-3f;
		cfg->sched.t_max = 3;
	}
}

/* The files of one run. */
typedef struct run_files {
	char dir[4096], state[4200], log[4200], best[4200];
} run_files;

static void files_in(run_files *f, const char *dir)
{
	snprintf(f->dir, sizeof f->dir, "%s", dir);
	snprintf(f->state, sizeof f->state, "%s/state.safetensors", dir);
	snprintf(f->log, sizeof f->log, "%s/log.csv", dir);
	snprintf(f->best, sizeof f->best, "%s/best.safetensors", dir);
}

static int train_run(nb_net *net, int opt, int epochs, const run_files *f,
		     nb_train_result *res, char *err)
{
	nb_train_config cfg;
	config(&cfg, opt, epochs);
	cfg.state_path = f->state;
	cfg.log_csv = f->log;
	cfg.best_path = f->best;
	return nb_train(net, &synth_train, &synth_test, &cfg, res, err);
}

/* ---- comparisons ------------------------------------------------------- */

static int same_net(nb_net *a, nb_net *b)
{
	nb_param **pa, **pb;
	int n = nb_net_params(a, &pa);
	if (nb_net_params(b, &pb) != n)
		return 0;
	for (int i = 0; i < n; i++)
		if (pa[i]->size != pb[i]->size ||
		    memcmp(pa[i]->data, pb[i]->data,
			   pa[i]->size * sizeof(float)))
			return 0;
	nb_counter *ca, *cb;
	int nc = nb_net_counters(a, &ca);
	if (nb_net_counters(b, &cb) != nc)
		return 0;
	for (int i = 0; i < nc; i++)
		if (ca[i].value != cb[i].value)
			return 0;
	return 1;
}

/*
 * Two state files hold the same tensors bit for bit (the network, the
 * optimiser state, the random streams), the same epoch statistics apart
 * from the timing columns (img_per_s, epoch_s, wall_s: the last three),
 * and the same results in their metadata.
 */
static void same_state(const char *pa, const char *pb, int *optim_tensors)
{
	char err[NB_ERR_LEN];
	nb_st_file *a = nb_st_open(pa, err), *b = nb_st_open(pb, err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	CU_ASSERT_EQUAL(nb_st_count(a), nb_st_count(b));
	*optim_tensors = 0;
	for (int i = 0; i < nb_st_count(a); i++) {
		const nb_st_tensor *ta = nb_st_get(a, i);
		const nb_st_tensor *tb = nb_st_find(b, ta->name);
		CU_ASSERT_PTR_NOT_NULL_FATAL(tb);
		CU_ASSERT_EQUAL(ta->dtype, tb->dtype);
		CU_ASSERT_EQUAL_FATAL(ta->nbytes, tb->nbytes);
		*optim_tensors += !strncmp(ta->name, "optim.", 6);
		if (strcmp(ta->name, "log.stats")) {
			if (memcmp(ta->data, tb->data, ta->nbytes))
				printf("\n  %s differs\n", ta->name);
			CU_ASSERT(memcmp(ta->data, tb->data, ta->nbytes) == 0);
			continue;
		}
		int rows = (int)ta->shape[0], cols = (int)ta->shape[1];
		CU_ASSERT_EQUAL(rows, 3);
		for (int r = 0; r < rows; r++)
			CU_ASSERT(memcmp((const double *)ta->data + r * cols,
					 (const double *)tb->data + r * cols,
					 (cols - 3) * sizeof(double)) == 0);
	}
	static const char *const keys[] = {
	    "epochs_done", "best_epoch", "best_acc", "last_acc",
	    "last_loss",   "last_ce",	 "last_kl"};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		CU_ASSERT_STRING_EQUAL(nb_st_meta(a, keys[i]),
				       nb_st_meta(b, keys[i]));
	nb_st_close(a);
	nb_st_close(b);
}

/* The log's rows, without the last three (timing) columns. */
static char *log_without_timing(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char line[1024], *out = calloc(1, 16384);
	while (fgets(line, sizeof line, f)) {
		for (int k = 0; k < 3; k++) {
			char *c = strrchr(line, ',');
			if (c)
				*c = '\0';
		}
		strcat(out, line);
		strcat(out, "\n");
	}
	fclose(f);
	return out;
}

static int log_rows(const char *path)
{
	char *t = log_without_timing(path);
	int n = 0;
	for (char *p = t; p && *p; p++)
		n += *p == '\n';
	free(t);
	return n - 1;
}

/*
 * Trains 3 epochs straight, and 1 + (resume) 2 epochs, from the same
 * initial weights, and compares everything.
 */
static void resume_identical(net_builder build, int opt)
{
	char err[NB_ERR_LEN];
	char *dir = tu_mkdtemp(), sub[4096];
	run_files straight, split;
	snprintf(sub, sizeof sub, "%s/straight", dir);
	mkdir(sub, 0755);
	files_in(&straight, sub);
	snprintf(sub, sizeof sub, "%s/split", dir);
	mkdir(sub, 0755);
	files_in(&split, sub);

	nb_net *a = build(3), *b = build(3);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	nb_train_result ra, rb1, rb;
	CU_ASSERT_EQUAL_FATAL(train_run(a, opt, 3, &straight, &ra, err), 0);
	CU_ASSERT_EQUAL(ra.resumed_from, 0);
	CU_ASSERT_EQUAL(ra.epochs_done, 3);

	/* killed after epoch 1: a fresh process builds the net again */
	CU_ASSERT_EQUAL_FATAL(train_run(b, opt, 1, &split, &rb1, err), 0);
	CU_ASSERT_EQUAL(rb1.epochs_done, 1);
	nb_net_free(b);
	b = build(3);
	/* a resume with nothing left to do restores the results */
	CU_ASSERT_EQUAL_FATAL(train_run(b, opt, 1, &split, &rb, err), 0);
	CU_ASSERT_EQUAL(rb.resumed_from, 1);
	CU_ASSERT_EQUAL(rb.epochs_done, 1);
	CU_ASSERT(rb.best_acc == rb1.best_acc && rb.last_acc == rb1.last_acc);
	CU_ASSERT(rb.last.total == rb1.last.total);
	nb_net_free(b);
	b = build(3);
	int rc = train_run(b, opt, 3, &split, &rb, err);
	if (rc < 0)
		printf("\n  resume: %s\n", err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	CU_ASSERT_EQUAL(rb.resumed_from, 1);
	CU_ASSERT_EQUAL(rb.epochs_done, 3);
	CU_ASSERT_EQUAL(rb.diverged, 0);

	CU_ASSERT(same_net(a, b));
	CU_ASSERT(ra.best_acc == rb.best_acc);
	CU_ASSERT_EQUAL(ra.best_epoch, rb.best_epoch);
	CU_ASSERT(ra.last_acc == rb.last_acc);
	CU_ASSERT(ra.last.total == rb.last.total && ra.last.ce == rb.last.ce);
	int n_optim = 0;
	same_state(straight.state, split.state, &n_optim);
	CU_ASSERT(n_optim > 0); /* the optimiser state was compared */
	char *la = log_without_timing(straight.log);
	char *lb = log_without_timing(split.log);
	CU_ASSERT_PTR_NOT_NULL_FATAL(la);
	CU_ASSERT_PTR_NOT_NULL_FATAL(lb);
	CU_ASSERT_STRING_EQUAL(la, lb);
	CU_ASSERT_EQUAL(log_rows(split.log), 3);
	free(la);
	free(lb);
	/* the accuracy actually moved: the comparison is not trivial */
	CU_ASSERT(ra.best_acc > 20.0);
	nb_net_free(a);
	nb_net_free(b);
	tu_rmtree(dir);
	free(dir);
}

static void resume_sgd(void)
{
	resume_identical(lenet_half, OPT_SGD);
}

static void resume_adam(void)
{
	resume_identical(lenet_half, OPT_ADAM);
}

static void resume_dropout(void)
{
	resume_identical(dropout_net, OPT_SGD);
	resume_identical(dropout_net, OPT_ADAM);
}

/* ---- optimiser state ---------------------------------------------------- */

/* One step of an optimiser over net's parameters with fixed gradients. */
static nb_optim *stepped(nb_net *net, const nb_optim_config *oc, int steps)
{
	char err[NB_ERR_LEN];
	nb_param **params;
	int n = nb_net_params(net, &params);
	nb_optim *o = nb_optim_new(oc, params, n, err);
	for (int s = 0; s < steps; s++) {
		for (int i = 0; i < n; i++)
			if (params[i]->grad)
				tu_fill_normal(params[i]->grad, params[i]->size,
					       0.1f, 100 + s * n + i);
		nb_optim_step(o);
	}
	return o;
}

static void optim_state_round_trip(void)
{
	char err[NB_ERR_LEN];
	nb_optim_config configs[2] = {nb_optim_sgd_default(),
				      nb_optim_adam_default()};
	for (int c = 0; c < 2; c++) {
		nb_net *net = dropout_net(1);
		nb_param **params;
		int np = nb_net_params(net, &params);
		/* no step yet: no state (it is allocated lazily) */
		nb_optim *o = stepped(net, &configs[c], 0);
		nb_optim_tensor *t;
		CU_ASSERT_EQUAL(nb_optim_export(o, &t, err), 0);
		free(t);
		nb_optim_free(o);
		o = stepped(net, &configs[c], 2);
		int n = nb_optim_export(o, &t, err);
		int weights = 0;
		for (int i = 0; i < np; i++)
			weights += params[i]->role == NB_PARAM_WEIGHT;
		CU_ASSERT_EQUAL(n, weights * (c ? 3 : 1));
		/* into a fresh optimiser, out again: the same state */
		nb_optim *o2 = stepped(net, &configs[c], 0);
		CU_ASSERT_EQUAL(nb_optim_import(o2, t, n, err), 0);
		nb_optim_tensor *t2;
		CU_ASSERT_EQUAL_FATAL(nb_optim_export(o2, &t2, err), n);
		for (int i = 0; i < n; i++) {
			CU_ASSERT_STRING_EQUAL(t[i].name, t2[i].name);
			CU_ASSERT_EQUAL(t[i].is_step, t2[i].is_step);
			CU_ASSERT_EQUAL(t[i].step, t2[i].step);
			CU_ASSERT(t[i].is_step ||
				  !memcmp(t[i].data, t2[i].data,
					  t[i].size * sizeof(float)));
		}
		if (c == 1)
			CU_ASSERT_EQUAL(t2[2].step, 2);
		free(t2);
		/* bad imports are refused, and change nothing */
		nb_optim_tensor bad[4];
		memcpy(bad, t, sizeof bad[0] * (c ? 3 : 1));
		char name0[sizeof bad[0].name];
		memcpy(name0, bad[0].name, sizeof name0);
		snprintf(bad[0].name, sizeof bad[0].name, "nope.weight.%s",
			 c ? "exp_avg" : "momentum_buffer");
		CU_ASSERT(nb_optim_import(o2, bad, c ? 3 : 1, err) < 0);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, "nope"));
		memcpy(bad[0].name, name0, sizeof name0);
		bad[0].size--;
		CU_ASSERT(nb_optim_import(o2, bad, c ? 3 : 1, err) < 0);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, name0));
		bad[0].size++;
		snprintf(bad[0].name, sizeof bad[0].name, "bn.running_mean.%s",
			 c ? "exp_avg" : "momentum_buffer");
		CU_ASSERT(nb_optim_import(o2, bad, c ? 3 : 1, err) < 0);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, "buffer"));
		memcpy(bad[0].name, name0, sizeof name0);
		bad[1] = bad[0]; /* twice */
		CU_ASSERT(nb_optim_import(o2, bad, 2, err) < 0);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, "twice"));
		if (c == 1) {
			memcpy(bad, t, sizeof bad[0] * 3);
			CU_ASSERT(nb_optim_import(o2, bad, 2, err) < 0);
			CU_ASSERT_PTR_NOT_NULL(strstr(err, "incomplete"));
			bad[2].step = 0;
			CU_ASSERT(nb_optim_import(o2, bad, 3, err) < 0);
		} else {
			/* Adam state into SGD */
			snprintf(bad[0].name, sizeof bad[0].name, "%s", name0);
			strcpy(strrchr(bad[0].name, '.'), ".exp_avg");
			CU_ASSERT(nb_optim_import(o2, bad, 1, err) < 0);
			CU_ASSERT_PTR_NOT_NULL(strstr(err, "exp_avg"));
		}
		CU_ASSERT_EQUAL_FATAL(nb_optim_export(o2, &t2, err), n);
		for (int i = 0; i < n; i++)
			CU_ASSERT(t[i].is_step ||
				  !memcmp(t[i].data, t2[i].data,
					  t[i].size * sizeof(float)));
		free(t2);
		/* an empty import clears the state */
		CU_ASSERT_EQUAL(nb_optim_import(o2, NULL, 0, err), 0);
		CU_ASSERT_EQUAL(nb_optim_export(o2, &t2, err), 0);
		free(t2);
		free(t);
		nb_optim_free(o);
		nb_optim_free(o2);
		nb_net_free(net);
	}
}

/* ---- bad state files ----------------------------------------------------- */

static void bad_state_files(void)
{
	char err[NB_ERR_LEN], *dir = tu_mkdtemp();
	run_files f;
	files_in(&f, dir);
	nb_net *net = lenet_half(4);
	nb_train_result res;
	CU_ASSERT_EQUAL_FATAL(train_run(net, OPT_SGD, 1, &f, &res, err), 0);
	nb_net_free(net);

	/* another architecture: an error naming the file, network untouched */
	nb_net *other = dropout_net(4), *fresh = dropout_net(4);
	err[0] = '\0';
	CU_ASSERT(train_run(other, OPT_SGD, 2, &f, &res, err) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, f.state));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "architecture"));
	CU_ASSERT_PTR_NULL(strchr(err, '\n'));
	CU_ASSERT(same_net(other, fresh));
	nb_net_free(other);
	nb_net_free(fresh);

	/* another configuration (the seed, the optimiser) */
	net = lenet_half(4);
	nb_train_config cfg;
	config(&cfg, OPT_SGD, 2);
	cfg.state_path = f.state;
	cfg.seed = 6;
	CU_ASSERT(nb_train(net, &synth_train, &synth_test, &cfg, &res, err) <
		  0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "seed"));
	CU_ASSERT(train_run(net, OPT_ADAM, 2, &f, &res, err) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "optim"));
	/* fewer epochs than the state holds */
	config(&cfg, OPT_SGD, 0);
	cfg.state_path = f.state;
	CU_ASSERT(nb_train(net, &synth_train, &synth_test, &cfg, &res, err) <
		  0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "epochs"));

	/* truncated */
	FILE *fp = fopen(f.state, "r+b");
	CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
	fseek(fp, 0, SEEK_END);
	long size = ftell(fp);
	fclose(fp);
	CU_ASSERT_EQUAL(truncate(f.state, size / 2), 0);
	nb_net *before = lenet_half(4);
	err[0] = '\0';
	CU_ASSERT(train_run(net, OPT_SGD, 2, &f, &res, err) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, f.state));
	CU_ASSERT(same_net(net, before));
	/* not a state file at all: a model checkpoint */
	CU_ASSERT_EQUAL(rename(f.best, f.state), 0);
	err[0] = '\0';
	CU_ASSERT(train_run(net, OPT_SGD, 2, &f, &res, err) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a training state"));
	nb_net_free(before);
	nb_net_free(net);
	tu_rmtree(dir);
	free(dir);
}

/* The best-epoch checkpoint is the best epoch: evaluated, it scores the
 * best accuracy, and its metadata says so. */
static void best_checkpoint(void)
{
	char err[NB_ERR_LEN], *dir = tu_mkdtemp();
	run_files f;
	files_in(&f, dir);
	nb_net *net = lenet_half(8);
	nb_train_config cfg;
	config(&cfg, OPT_ADAM, 4);
	cfg.sched.kind = NB_SCHED_CONSTANT;
	cfg.sched.base_lr = 0.02f; /* large: the accuracy jumps around */
	cfg.best_path = f.best;
	nb_ckpt_meta meta = {0};
	snprintf(meta.arch, sizeof meta.arch, "lenet5-half");
	snprintf(meta.dataset, sizeof meta.dataset, "mnist");
	meta.seed = 5;
	meta.best_acc = -1;
	cfg.best_meta = &meta;
	nb_train_result res;
	CU_ASSERT_EQUAL_FATAL(
	    nb_train(net, &synth_train, &synth_test, &cfg, &res, err), 0);
	nb_net *best = lenet_half(99);
	nb_ckpt_meta got;
	CU_ASSERT_EQUAL_FATAL(nb_checkpoint_load(best, f.best, &got, err), 0);
	double acc = -1;
	CU_ASSERT_EQUAL(
	    nb_evaluate(best, &synth_test, &cfg.aug, 128, 0, &acc, NULL, err),
	    0);
	CU_ASSERT_DOUBLE_EQUAL(acc, res.best_acc, 1e-9);
	CU_ASSERT_EQUAL(got.epochs, res.best_epoch + 1);
	CU_ASSERT_DOUBLE_EQUAL(got.best_acc, res.best_acc, 1e-9);
	CU_ASSERT_STRING_EQUAL(got.arch, "lenet5-half");
	CU_ASSERT_STRING_EQUAL(got.dataset, "mnist");
	if (res.best_epoch != res.epochs_done - 1)
		CU_ASSERT(!same_net(best, net)); /* not simply the last */
	nb_net_free(best);
	nb_net_free(net);
	tu_rmtree(dir);
	free(dir);
}

static const nb_test_entry tests[] = {
    {"resume is bit-identical: SGD momentum", resume_sgd},
    {"resume is bit-identical: Adam", resume_adam},
    {"resume is bit-identical: dropout and BatchNorm", resume_dropout},
    {"optimiser state export and import", optim_state_round_trip},
    {"bad state files are clear errors", bad_state_files},
    {"best_path holds the best epoch", best_checkpoint},
    {NULL, NULL}};

void nb_test_resume(void)
{
	CU_pSuite s = CU_add_suite("resume", suite_init, suite_clean);
	if (!s)
		return;
	for (const nb_test_entry *t = tests; t->name; t++)
		CU_add_test(s, t->name, t->fn);
}
