/*
 * train_cmd.c - `nasty-bench train`: trains one model with cross entropy on
 * a dataset and reports per-epoch test accuracy. The first real job a user
 * runs; the suite runner builds on the same library calls.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "data.h"
#include "error.h"
#include "checkpoint.h"
#include "config.h"
#include "train.h"

static void train_usage(FILE *f)
{
	fputs("usage: nasty-bench train [OPTIONS]\n"
	      "\n"
	      "Trains one model with cross entropy and prints the test accuracy\n"
	      "after every epoch.\n"
	      "\n"
	      "  --arch NAME        an architecture plugin (default lenet5; see --list-plugins)\n"
	      "  --dataset NAME     fashion-mnist (default), mnist, cifar10, cifar100\n"
	      "  --data-dir DIR     where the dataset files are (default: its usual place)\n"
	      "  --epochs N         default 10\n"
	      "  --batch N          default 128\n"
	      "  --optim NAME       adam (default, lr 1e-3) or sgd (lr 0.1, momentum 0.9)\n"
	      "  --lr X             base learning rate\n"
	      "  --momentum X       SGD momentum (default 0.9)\n"
	      "  --wd X             weight decay (default 0 for adam, 5e-4 for sgd)\n"
	      "  --nesterov         SGD with Nesterov momentum\n"
	      "  --schedule S       constant (default), step:M1,M2,...:GAMMA, cosine[:ETA_MIN]\n"
	      "  --seed N           default 0\n"
	      "  --threads N        default: all cores\n"
	      "  --train-limit N    use only the first N training images\n"
	      "  --test-limit N     use only the first N test images\n"
	      "  --log FILE.csv     per-epoch log (written atomically each epoch)\n"
	      "  --save FILE        write the trained model as a safetensors checkpoint\n"
	      "  --quiet            print only the final line\n",
	      f);
}

/* "constant", "step:60,120,160:0.2", "cosine" or "cosine:0.001" */
static int parse_schedule(const char *s, int epochs, nb_schedule *out)
{
	memset(out, 0, sizeof *out);
	if (!strcmp(s, "constant")) {
		out->kind = NB_SCHED_CONSTANT;
		return 0;
	}
	if (!strncmp(s, "cosine", 6)) {
		out->kind = NB_SCHED_COSINE;
		out->t_max = epochs;
		if (s[6] == ':') {
			char *end;
			out->eta_min = strtof(s + 7, &end);
			if (*end || out->eta_min < 0)
				return -1;
		} else if (s[6]) {
			return -1;
		}
		return 0;
	}
	if (!strncmp(s, "step:", 5)) {
		out->kind = NB_SCHED_STEP;
		const char *p = s + 5;
		char *end;
		while (1) {
			long m = strtol(p, &end, 10);
			if (end == p || m < 0 ||
			    out->n_milestones == NB_SCHED_MAX_MILESTONES)
				return -1;
			out->milestones[out->n_milestones++] = (int)m;
			p = end;
			if (*p == ',') {
				p++;
				continue;
			}
			break;
		}
		if (*p != ':')
			return -1;
		out->gamma = strtof(p + 1, &end);
		if (*end || !(out->gamma > 0))
			return -1;
		return 0;
	}
	return -1;
}

typedef struct progress {
	int quiet;
	int tty;
} progress;

static void on_step(void *ctx, int epoch, int step, int steps, double loss)
{
	progress *p = ctx;
	if (p->quiet || !p->tty || (step % 20 && step != steps - 1))
		return;
	fprintf(stderr, "\repoch %d  step %d/%d  loss %.4f ", epoch + 1,
		step + 1, steps, loss);
	fflush(stderr);
}

static void on_epoch(void *ctx, const nb_epoch_stats *s)
{
	progress *p = ctx;
	if (p->quiet)
		return;
	if (p->tty)
		fputs("\r\033[K", stderr);
	printf("epoch %3d/%d  lr %.4g  loss %.4f  train %.2f%%  test %.2f%%  best %.2f%%  %.0f img/s  %.1fs\n",
	       s->epoch + 1, s->epochs, s->lr, s->loss, s->train_acc,
	       s->test_acc, s->best_acc, s->img_per_s, s->epoch_s);
	fflush(stdout);
}

int cmd_train(int argc, char **argv)
{
	const char *arch = "lenet5", *dataset = "fashion-mnist";
	const char *data_dir = NULL, *log = NULL, *sched_s = "constant";
	const char *optim = "adam", *save = NULL;
	int epochs = 10, batch = 128, threads = 0, train_limit = 0;
	int test_limit = 0, quiet = 0, nesterov = 0;
	float lr = -1, momentum = 0.9f, wd = -1;
	uint64_t seed = 0;
	cli_args a;
	cli_args_init(&a, argc, argv);
	int r;
	while ((r = cli_next(&a)) > 0) {
		const char *k = a.key;
		int bad = 0;
		if (!strcmp(k, "help")) {
			train_usage(stdout);
			return 0;
		} else if (!strcmp(k, "arch"))
			bad = !(arch = cli_value(&a));
		else if (!strcmp(k, "dataset"))
			bad = !(dataset = cli_value(&a));
		else if (!strcmp(k, "data-dir"))
			bad = !(data_dir = cli_value(&a));
		else if (!strcmp(k, "log"))
			bad = !(log = cli_value(&a));
		else if (!strcmp(k, "save"))
			bad = !(save = cli_value(&a));
		else if (!strcmp(k, "schedule"))
			bad = !(sched_s = cli_value(&a));
		else if (!strcmp(k, "optim"))
			bad = !(optim = cli_value(&a));
		else if (!strcmp(k, "epochs"))
			bad = cli_int(&a, 0, 100000, &epochs) < 0;
		else if (!strcmp(k, "batch"))
			bad = cli_int(&a, 1, 1 << 20, &batch) < 0;
		else if (!strcmp(k, "threads"))
			bad = cli_int(&a, 0, 1024, &threads) < 0;
		else if (!strcmp(k, "train-limit"))
			bad = cli_int(&a, 0, 1 << 30, &train_limit) < 0;
		else if (!strcmp(k, "test-limit"))
			bad = cli_int(&a, 0, 1 << 30, &test_limit) < 0;
		else if (!strcmp(k, "lr"))
			bad = cli_float(&a, 1e-12, 1e3, &lr) < 0;
		else if (!strcmp(k, "momentum"))
			bad = cli_float(&a, 0, 1, &momentum) < 0;
		else if (!strcmp(k, "wd"))
			bad = cli_float(&a, 0, 1, &wd) < 0;
		else if (!strcmp(k, "seed"))
			bad = cli_u64(&a, &seed) < 0;
		else if (!strcmp(k, "nesterov"))
			nesterov = 1;
		else if (!strcmp(k, "quiet"))
			quiet = 1;
		else {
			cli_error("train: unknown option --%s (see nasty-bench train --help)",
				  k);
			return 2;
		}
		if (bad)
			return 2;
	}
	if (r < 0)
		return 2;

	nb_train_config cfg;
	nb_train_config_default(&cfg);
	if (!strcmp(optim, "sgd"))
		cfg.optim = nb_optim_sgd_default();
	else if (!strcmp(optim, "adam"))
		cfg.optim = nb_optim_adam_default();
	else {
		cli_error("--optim: '%s' is not sgd or adam", optim);
		return 2;
	}
	if (lr > 0)
		cfg.optim.lr = lr;
	if (wd >= 0)
		cfg.optim.weight_decay = wd;
	cfg.optim.momentum = momentum;
	cfg.optim.nesterov = nesterov;
	if (parse_schedule(sched_s, epochs, &cfg.sched) < 0) {
		cli_error("--schedule: '%s' is not constant, step:M1,M2,...:GAMMA or cosine[:ETA_MIN]",
			  sched_s);
		return 2;
	}
	cfg.sched.base_lr = cfg.optim.lr;
	cfg.epochs = epochs;
	cfg.batch = batch;
	cfg.seed = seed;
	cfg.log_csv = log;
	cli_dataset_augment(dataset, &cfg.aug);
	progress prog = {quiet, isatty(2)};
	cfg.on_epoch = on_epoch;
	cfg.on_step = on_step;
	cfg.hook_ctx = &prog;
	cli_set_threads(threads);

	char err[NB_ERR_LEN];
	nb_dataset train = {0}, test = {0};
	nb_net *net = NULL;
	int rc = 2;
	if (nb_dataset_load(dataset, data_dir, NB_SPLIT_TRAIN, &train, err) < 0 ||
	    nb_dataset_load(dataset, data_dir, NB_SPLIT_TEST, &test, err) < 0) {
		cli_error("%s", err);
		goto out;
	}
	if (train_limit > 0 && train_limit < train.n)
		nb_dataset_truncate(&train, train_limit);
	if (test_limit > 0 && test_limit < test.n)
		nb_dataset_truncate(&test, test_limit);
	int h, w;
	nb_augment_out_size(&train, &cfg.aug, &h, &w);
	nb_registry *reg = cli_registry();
	const nb_plugin *ap = reg ? cli_find_arch(reg, arch) : NULL;
	if (!ap)
		goto out;
	if (nb_arch_build(ap, NULL, train.c, h, w, train.classes, seed, &net,
			  err) < 0) {
		cli_error("%s", err);
		goto out;
	}
	if (!quiet)
		printf("train %s on %s: %d train / %d test images of %dx%dx%d, %zu parameters, %s lr %g, batch %d, %d epochs, seed %llu\n",
		       arch, dataset, train.n, test.n, train.c, h, w,
		       nb_net_param_count(net), optim, cfg.optim.lr, batch,
		       epochs, (unsigned long long)seed);
	nb_train_result res;
	if (nb_train(net, &train, &test, &cfg, &res, err) < 0) {
		cli_error("%s", err);
		goto out;
	}
	printf("result: arch=%s dataset=%s epochs=%d best_acc=%.2f best_epoch=%d last_acc=%.2f status=%s wall_s=%.1f img_per_s=%.0f\n",
	       arch, dataset, res.epochs_done, res.best_acc, res.best_epoch + 1,
	       res.last_acc, res.diverged ? "diverged" : "ok", res.wall_s,
	       res.img_per_s);
	rc = res.diverged ? 1 : 0;
	if (save && !res.diverged) {
		nb_ckpt_meta meta = {0};
		snprintf(meta.arch, sizeof meta.arch, "%s", ap->name);
		snprintf(meta.strategy, sizeof meta.strategy, "normal");
		snprintf(meta.dataset, sizeof meta.dataset, "%s", dataset);
		snprintf(meta.version, sizeof meta.version, "%s",
			 PACKAGE_VERSION);
		meta.classes = train.classes;
		meta.in_c = train.c;
		meta.in_h = h;
		meta.in_w = w;
		meta.epochs = res.epochs_done;
		meta.seed = seed;
		meta.best_acc = res.best_acc;
		if (nb_checkpoint_save(net, &meta, save, err) < 0) {
			cli_error("%s", err);
			rc = 2;
		} else if (!quiet) {
			printf("saved %s (last epoch's weights)\n", save);
		}
	}
out:
	nb_net_free(net);
	nb_dataset_free(&train);
	nb_dataset_free(&test);
	return rc;
}
