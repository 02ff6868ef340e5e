/*
 * run_cmd.c - `nasty-bench [--suite NAME] ...`: runs a suite's whole
 * teacher x defence x student x attack matrix (the default command; the
 * fashion-mnist suite when none is named).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "runner.h"
#include "suite.h"

static void run_usage(FILE *f)
{
	fputs("usage: nasty-bench [--suite NAME|FILE] [--tier T] [--out DIR] [--store DIR]\n"
	      "                   [--jobs N] [--threads N] [--seeds S,S,...] [--only GLOB,...]\n"
	      "                   [--data-dir DIR] [--data-parallel[=R]] [--dry-run] [--quiet]\n"
	      "\n"
	      "Trains every teacher and student of a suite (default: fashion-mnist) and\n"
	      "writes results.csv, gaps.csv and report.md into --out (default runs/SUITE).\n"
	      "Finished models are kept in --store (default runs/store) and reused; a\n"
	      "killed run resumes where it stopped.\n"
	      "\n"
	      "  --suite NAME|FILE  a shipped suite (fashion-mnist, mnist, cifar10, cifar100,\n"
	      "                     tiny-imagenet, smoke) or a suite file\n"
	      "  --tier T           smoke, small, paper, ... (default: the suite's)\n"
	      "  --jobs N           run N independent jobs at once (threads are split)\n"
	      "  --threads N        threads in all (default: every core)\n"
	      "  --seeds LIST       override the suite's seeds\n"
	      "  --only GLOBS       only jobs whose names match (and what they need);\n"
	      "                     names as --dry-run prints them, e.g. 'student/*/kd/*'\n"
	      "  --data-dir DIR     where the dataset is\n"
	      "  --data-parallel[=R] under mpirun: train a job that others wait for on up\n"
	      "                     to R idle ranks at once (default: all idle ranks)\n"
	      "  --dry-run          print the job graph with estimated cost, run nothing\n"
	      "  --quiet            print only errors and the final table\n",
	      f);
}

static int parse_seeds(const char *s, uint64_t *out, int max)
{
	int n = 0;
	const char *p = s;
	while (*p) {
		char *end;
		if (*p < '0' || *p > '9' || n == max)
			return -1;
		out[n++] = strtoull(p, &end, 10);
		p = end;
		if (*p == ',')
			p++;
		else if (*p)
			return -1;
	}
	return n;
}

int cmd_run(int argc, char **argv, const char *command)
{
	const char *suite = "fashion-mnist", *tier = NULL, *out = NULL;
	const char *store = NULL, *only = NULL, *data_dir = NULL;
	int jobs = 1, threads = 0, dry = 0, quiet = 0, n_seeds = 0;
	int data_parallel = 0;
	uint64_t seeds[NB_SUITE_MAX];
	cli_args a;
	cli_args_init(&a, argc, argv);
	int r;
	while ((r = cli_next(&a)) > 0) {
		const char *k = a.key;
		int bad = 0;
		if (!strcmp(k, "help")) {
			run_usage(stdout);
			return 0;
		} else if (!strcmp(k, "suite"))
			bad = !(suite = cli_value(&a));
		else if (!strcmp(k, "tier"))
			bad = !(tier = cli_value(&a));
		else if (!strcmp(k, "out"))
			bad = !(out = cli_value(&a));
		else if (!strcmp(k, "store"))
			bad = !(store = cli_value(&a));
		else if (!strcmp(k, "only"))
			bad = !(only = cli_value(&a));
		else if (!strcmp(k, "data-dir"))
			bad = !(data_dir = cli_value(&a));
		else if (!strcmp(k, "jobs"))
			bad = cli_int(&a, 1, 64, &jobs) < 0;
		else if (!strcmp(k, "threads"))
			bad = cli_int(&a, 0, 1024, &threads) < 0;
		else if (!strcmp(k, "seeds")) {
			const char *v = cli_value(&a);
			if (!v || (n_seeds = parse_seeds(v, seeds, NB_SUITE_MAX)) <= 0) {
				cli_error("--seeds: '%s' is not a comma-separated list of seeds",
					  v ? v : "");
				return 2;
			}
		} else if (!strcmp(k, "data-parallel")) {
			const char *v = a.value;
			char *end;
			long g = v ? strtol(v, &end, 10) : 1 << 20;
			if (v && (!*v || *end || g < 1 || g > 1 << 20)) {
				cli_error("--data-parallel=R: '%s' is not a group size", v);
				return 2;
			}
			data_parallel = (int)g;
		} else if (!strcmp(k, "dry-run"))
			dry = 1;
		else if (!strcmp(k, "quiet"))
			quiet = 1;
		else {
			cli_error("unknown option --%s (see nasty-bench --help and nasty-bench --suite X --help)",
				  k);
			return 2;
		}
		if (bad)
			return 2;
	}
	if (r < 0)
		return 2;
	char err[NB_ERR_LEN], path[4096];
	if (nb_suite_find(suite, path, sizeof path, err) < 0) {
		cli_error("%s", err);
		return 2;
	}
	nb_registry *reg = cli_registry();
	if (!reg)
		return 2;
	nb_suite s;
	/* under mpirun, rank 0 speaks for every rank */
	if (nb_run_rank() != 0)
		quiet = 1;
	if (nb_suite_load(path, tier, reg, &s, quiet ? NULL : stderr, err) < 0) {
		cli_error("%s", err);
		return 2;
	}
	char out_buf[4096], store_buf[4096];
	if (!out) {
		snprintf(out_buf, sizeof out_buf, "runs/%s", s.name);
		out = out_buf;
		if (!store)
			store = "runs/store";
	}
	if (!store) {
		snprintf(store_buf, sizeof store_buf, "%s/store", out);
		store = store_buf;
	}
	nb_run_options o = {
		.out = out,
		.store = store,
		.data_dir = data_dir,
		.threads = threads,
		.jobs = jobs,
		.seeds = seeds,
		.n_seeds = n_seeds,
		.only = only,
		.dry_run = dry,
		.quiet = quiet,
		.live = isatty(2),
		.command = command,
		.data_parallel = data_parallel,
	};
	int rc = nb_run_suite(&s, reg, &o, err);
	nb_suite_free(&s);
	if (rc < 0) {
		cli_error("%s", err);
		return 2;
	}
	return rc;
}
