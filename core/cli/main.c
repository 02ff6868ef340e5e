/*
 * main.c - the nasty-bench program: dispatches subcommands and holds the
 * argument helpers they share.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <omp.h>

#include "cli.h"
#include "config.h"

void cli_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("nasty-bench: error: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

void cli_args_init(cli_args *a, int argc, char **argv)
{
	memset(a, 0, sizeof *a);
	a->argc = argc;
	a->argv = argv;
	a->i = 0;
}

int cli_next(cli_args *a)
{
	if (++a->i >= a->argc)
		return 0;
	const char *arg = a->argv[a->i];
	if (strncmp(arg, "--", 2) != 0 || !arg[2]) {
		cli_error("unexpected argument '%s' (options start with --)", arg);
		return -1;
	}
	const char *eq = strchr(arg, '=');
	if (eq) {
		size_t n = (size_t)(eq - arg - 2);
		if (n >= sizeof a->buf)
			n = sizeof a->buf - 1;
		memcpy(a->buf, arg + 2, n);
		a->buf[n] = 0;
		a->key = a->buf;
		a->value = eq + 1;
	} else {
		a->key = arg + 2;
		a->value = NULL;
	}
	return 1;
}

const char *cli_value(cli_args *a)
{
	if (a->value)
		return a->value;
	if (a->i + 1 >= a->argc) {
		cli_error("--%s needs a value", a->key);
		return NULL;
	}
	a->value = a->argv[++a->i];
	return a->value;
}

int cli_int(cli_args *a, int lo, int hi, int *out)
{
	const char *v = cli_value(a);
	if (!v)
		return -1;
	char *end;
	errno = 0;
	long x = strtol(v, &end, 10);
	if (errno || end == v || *end || x < lo || x > hi) {
		cli_error("--%s: '%s' is not a whole number in [%d, %d]", a->key,
			  v, lo, hi);
		return -1;
	}
	*out = (int)x;
	return 0;
}

int cli_float(cli_args *a, double lo, double hi, float *out)
{
	const char *v = cli_value(a);
	if (!v)
		return -1;
	char *end;
	errno = 0;
	double x = strtod(v, &end);
	if (errno || end == v || *end || !(x >= lo && x <= hi)) {
		cli_error("--%s: '%s' is not a number in [%g, %g]", a->key, v, lo,
			  hi);
		return -1;
	}
	*out = (float)x;
	return 0;
}

int cli_u64(cli_args *a, uint64_t *out)
{
	const char *v = cli_value(a);
	if (!v)
		return -1;
	char *end;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 10);
	if (errno || end == v || *end || v[0] == '-') {
		cli_error("--%s: '%s' is not a non-negative whole number", a->key,
			  v);
		return -1;
	}
	*out = x;
	return 0;
}

void cli_set_threads(int threads)
{
	if (threads <= 0)
		threads = omp_get_num_procs();
	omp_set_num_threads(threads);
	openblas_set_num_threads(threads);
}

static void usage(FILE *f)
{
	fputs("usage: nasty-bench [--plugin-dir DIR]... [--suite NAME] [RUN OPTIONS]\n"
	      "       nasty-bench [--plugin-dir DIR]... COMMAND [OPTIONS]\n"
	      "       nasty-bench --list-plugins | --plugin-help NAME | --help | --version\n"
	      "\n"
	      "Without a command, runs a suite's whole matrix (default: fashion-mnist);\n"
	      "see nasty-bench --suite NAME --help.\n"
	      "\n"
	      "commands:\n"
	      "  train      train one model on a dataset\n"
	      "  describe   print an architecture's layers, parameters and MACs\n"
	      "  eval       test accuracy (and logits) of a checkpoint\n"
	      "  bench      training and inference speed\n"
	      "  synth      write a small synthetic dataset in an original format\n"
	      "(each takes --help)\n"
	      "\n"
	      "  --plugin-dir DIR   load plugins from DIR too (repeatable; also\n"
	      "                     NASTY_BENCH_PLUGIN_PATH=DIR:DIR)\n"
	      "  --list-plugins     every plugin by kind, with its summary\n"
	      "  --plugin-help NAME a plugin's options, types and defaults\n",
	      f);
}

/* Takes every --plugin-dir out of argv (it may stand anywhere). */
static int take_plugin_dirs(int *argc, char **argv)
{
	int out = 1;
	for (int i = 1; i < *argc; i++) {
		if (!strcmp(argv[i], "--plugin-dir")) {
			if (i + 1 >= *argc) {
				cli_error("--plugin-dir needs a folder");
				return -1;
			}
			cli_add_plugin_dir(argv[++i]);
		} else if (!strncmp(argv[i], "--plugin-dir=", 13)) {
			cli_add_plugin_dir(argv[i] + 13);
		} else {
			argv[out++] = argv[i];
		}
	}
	*argc = out;
	argv[out] = NULL;
	return 0;
}

int main(int argc, char **argv)
{
	if (take_plugin_dirs(&argc, argv) < 0)
		return 2;
	char command[4096] = "nasty-bench";
	for (int i = 1; i < argc; i++) {
		size_t l = strlen(command);
		snprintf(command + l, sizeof command - l, " %s", argv[i]);
	}
	/* no command: run a suite (the default one without options) */
	if (argc < 2)
		return cmd_run(argc, argv, command);
	const char *cmd = argv[1];
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "--version")) {
		printf("nasty-bench %s (plugin ABI %d)\n", PACKAGE_VERSION,
		       NB_PLUGIN_ABI_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "--list-plugins"))
		return cmd_list_plugins();
	if (!strcmp(cmd, "--plugin-help") ||
	    !strncmp(cmd, "--plugin-help=", 14)) {
		const char *name = cmd[13] == '=' ? cmd + 14 : argv[2];
		if (!name) {
			cli_error("--plugin-help needs a plugin name");
			return 2;
		}
		return cmd_plugin_help(name);
	}
	if (!strcmp(cmd, "train"))
		return cmd_train(argc - 1, argv + 1);
	if (!strcmp(cmd, "bench"))
		return cmd_bench(argc - 1, argv + 1);
	if (!strcmp(cmd, "describe"))
		return cmd_describe(argc - 1, argv + 1);
	if (!strcmp(cmd, "eval"))
		return cmd_eval(argc - 1, argv + 1);
	if (!strcmp(cmd, "synth"))
		return cmd_synth(argc - 1, argv + 1);
	if (cmd[0] == '-' && cmd[1] == '-')
		return cmd_run(argc, argv, command);
	cli_error("unknown command '%s' (try: nasty-bench --help)", cmd);
	return 2;
}
