/*
 * eval_cmd.c - `nasty-bench eval CHECKPOINT`: test accuracy of a checkpoint
 * (trained here or converted from PyTorch) on a dataset's test split, with
 * that dataset's normalisation, and optionally one CSV row of logits per
 * test image.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "loss.h"
#include "train.h"

static void eval_usage(FILE *f)
{
	fputs("usage: nasty-bench eval CHECKPOINT [--dataset NAME] [--data-dir DIR]\n"
	      "                       [--limit N] [--logits FILE.csv] [--batch N]\n"
	      "                       [--threads N] [--arch A --classes N --input CxHxW]\n"
	      "\n"
	      "Reports the test accuracy of a safetensors checkpoint. The architecture,\n"
	      "class count, input shape and dataset come from the checkpoint's metadata;\n"
	      "--arch, --classes, --input and --dataset set or override them (a PyTorch\n"
	      "state_dict converted to safetensors has no metadata).\n"
	      "--logits writes index,label,prediction,logit_0..logit_{C-1} per image.\n",
	      f);
}

int cmd_eval(int argc, char **argv)
{
	const char *path = NULL, *dataset = NULL, *data_dir = NULL;
	const char *logits = NULL, *arch = NULL, *input = NULL;
	int limit = 0, batch = 256, threads = 0, classes = 0;
	if (argc > 1 && argv[1][0] != '-') {
		path = argv[1];
		argv++;
		argc--;
	}
	cli_args a;
	cli_args_init(&a, argc, argv);
	int r;
	while ((r = cli_next(&a)) > 0) {
		int bad = 0;
		const char *k = a.key;
		if (!strcmp(k, "help")) {
			eval_usage(stdout);
			return 0;
		} else if (!strcmp(k, "dataset"))
			bad = !(dataset = cli_value(&a));
		else if (!strcmp(k, "data-dir"))
			bad = !(data_dir = cli_value(&a));
		else if (!strcmp(k, "logits"))
			bad = !(logits = cli_value(&a));
		else if (!strcmp(k, "arch"))
			bad = !(arch = cli_value(&a));
		else if (!strcmp(k, "input"))
			bad = !(input = cli_value(&a));
		else if (!strcmp(k, "limit"))
			bad = cli_int(&a, 0, 1 << 30, &limit) < 0;
		else if (!strcmp(k, "batch"))
			bad = cli_int(&a, 1, 1 << 16, &batch) < 0;
		else if (!strcmp(k, "threads"))
			bad = cli_int(&a, 0, 1024, &threads) < 0;
		else if (!strcmp(k, "classes"))
			bad = cli_int(&a, 1, 1000000, &classes) < 0;
		else {
			cli_error("eval: unknown option --%s (see nasty-bench eval --help)",
				  k);
			return 2;
		}
		if (bad)
			return 2;
	}
	if (r < 0)
		return 2;
	if (!path) {
		eval_usage(stderr);
		return 2;
	}
	cli_set_threads(threads);
	char err[NB_ERR_LEN];
	nb_ckpt_meta meta;
	if (nb_checkpoint_read_meta(path, &meta, err) < 0) {
		cli_error("%s", err);
		return 2;
	}
	if (arch)
		snprintf(meta.arch, sizeof meta.arch, "%s", arch);
	if (dataset)
		snprintf(meta.dataset, sizeof meta.dataset, "%s", dataset);
	if (classes)
		meta.classes = classes;
	if (input && cli_parse_input(input, &meta.in_c, &meta.in_h,
				     &meta.in_w) < 0) {
		cli_error("--input: '%s' is not CxHxW", input);
		return 2;
	}
	if (!meta.arch[0] || !meta.dataset[0]) {
		cli_error("%s: the checkpoint does not say its %s: give --%s",
			  path, meta.arch[0] ? "dataset" : "architecture",
			  meta.arch[0] ? "dataset" : "arch");
		return 2;
	}
	nb_dataset test = {0};
	if (nb_dataset_load(meta.dataset, data_dir, NB_SPLIT_TEST, &test, err) < 0) {
		cli_error("%s", err);
		return 2;
	}
	if (limit > 0 && limit < test.n)
		nb_dataset_truncate(&test, limit);
	nb_augment aug;
	cli_dataset_augment(meta.dataset, &aug);
	int h, w;
	nb_augment_out_size(&test, &aug, &h, &w);
	if (!meta.classes)
		meta.classes = test.classes;
	if (!meta.in_c) {
		meta.in_c = test.c;
		meta.in_h = h;
		meta.in_w = w;
	}
	int rc = 2;
	nb_net *net = NULL;
	float *x = NULL;
	int *y = NULL, *idx = NULL;
	nb_csv *csv = NULL;
	if (meta.in_c != test.c || meta.in_h != h || meta.in_w != w) {
		cli_error("%s takes %dx%dx%d inputs but %s test images are %dx%dx%d after preprocessing",
			  path, meta.in_c, meta.in_h, meta.in_w, meta.dataset,
			  test.c, h, w);
		goto out;
	}
	if (meta.classes < test.classes) {
		cli_error("%s has %d outputs but %s has %d classes", path,
			  meta.classes, meta.dataset, test.classes);
		goto out;
	}
	nb_registry *reg = cli_registry();
	const nb_plugin *p = reg ? cli_find_arch(reg, meta.arch) : NULL;
	if (!p)
		goto out;
	if (nb_arch_build(p, NULL, meta.in_c, meta.in_h, meta.in_w,
			  meta.classes, 0, &net, err) < 0 ||
	    nb_checkpoint_load(net, path, NULL, err) < 0) {
		cli_error("%s", err);
		goto out;
	}
	nb_net_set_training(net, 0);
	int C = meta.classes;
	size_t per = (size_t)test.c * h * w;
	x = malloc((size_t)batch * per * sizeof(float));
	y = malloc((size_t)batch * sizeof(int));
	idx = malloc((size_t)batch * sizeof(int));
	if (!x || !y || !idx) {
		cli_error("out of memory");
		goto out;
	}
	if (logits) {
		int cols = 3 + C;
		char **hdr = calloc((size_t)cols, sizeof *hdr);
		if (!hdr) {
			cli_error("out of memory");
			goto out;
		}
		hdr[0] = strdup("index");
		hdr[1] = strdup("label");
		hdr[2] = strdup("prediction");
		for (int j = 0; j < C; j++) {
			char name[32];
			snprintf(name, sizeof name, "logit_%d", j);
			hdr[3 + j] = strdup(name);
		}
		csv = nb_csv_new((const char *const *)hdr, cols);
		for (int j = 0; j < cols; j++)
			free(hdr[j]);
		free(hdr);
		if (!csv) {
			cli_error("out of memory");
			goto out;
		}
	}
	long correct = 0;
	char **row = NULL;
	char *cells = NULL;
	if (csv) {
		row = calloc((size_t)(3 + C), sizeof *row);
		cells = malloc((size_t)(3 + C) * 24);
		if (!row || !cells) {
			cli_error("out of memory");
			free(row);
			free(cells);
			goto out;
		}
		for (int j = 0; j < 3 + C; j++)
			row[j] = cells + (size_t)j * 24;
	}
	for (int start = 0; start < test.n; start += batch) {
		int b = test.n - start < batch ? test.n - start : batch;
		for (int i = 0; i < b; i++)
			idx[i] = start + i;
		nb_batch_build(x, y, &test, idx, b, &aug, 0, NULL);
		if (nb_net_forward(net, x, b, err) < 0) {
			cli_error("%s", err);
			free(row);
			free(cells);
			goto out;
		}
		const float *z = nb_net_output(net, nb_net_output_node(net));
		correct += nb_count_correct(z, y, b, C);
		for (int i = 0; csv && i < b; i++) {
			const float *zi = z + (size_t)i * C;
			int best = 0;
			for (int j = 1; j < C; j++)
				if (zi[j] > zi[best])
					best = j;
			snprintf(row[0], 24, "%d", start + i);
			snprintf(row[1], 24, "%d", y[i]);
			snprintf(row[2], 24, "%d", best);
			for (int j = 0; j < C; j++)
				snprintf(row[3 + j], 24, "%.9g", zi[j]);
			if (nb_csv_add_row(csv, (const char *const *)row) < 0) {
				cli_error("out of memory");
				free(row);
				free(cells);
				goto out;
			}
		}
	}
	free(row);
	free(cells);
	printf("%s: %s on %s test: %.2f%% (%ld/%d)\n", path, meta.arch,
	       meta.dataset, 100.0 * correct / test.n, correct, test.n);
	if (csv) {
		if (nb_csv_write(csv, logits, err) < 0) {
			cli_error("%s", err);
			goto out;
		}
		printf("logits: %s\n", logits);
	}
	rc = 0;
out:
	nb_csv_free(csv);
	nb_net_free(net);
	nb_dataset_free(&test);
	free(x);
	free(y);
	free(idx);
	return rc;
}
