/*
 * synth_cmd.c - `nasty-bench synth`: writes a small synthetic dataset in a
 * dataset's original file format (class-dependent patterns a small model
 * can learn), for trying the program and the loaders without the real
 * data.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static void synth_usage(FILE *f)
{
	fputs("usage: nasty-bench synth --format idx|cifar10|cifar100|tiny-imagenet --dir DIR\n"
	      "                         [--train N] [--test N] [--gz] [--seed S]\n"
	      "\n"
	      "Writes synthetic images in the original format of MNIST-style IDX files\n"
	      "(28x28, 10 classes), CIFAR-10 or CIFAR-100 binary (32x32x3), or the\n"
	      "Tiny-ImageNet folder layout (64x64 JPEGs, 200 classes) into DIR,\n"
	      "which is created if missing. Load them with --dataset mnist, cifar10 or\n"
	      "cifar100 (or tiny-imagenet) and --data-dir DIR. Defaults: 2000 training\n"
	      "and 500 test images.\n",
	      f);
}

int cmd_synth(int argc, char **argv)
{
	const char *format = NULL, *dir = NULL;
	int n_train = 2000, n_test = 500, gz = 0;
	uint64_t seed = 0;
	cli_args a;
	cli_args_init(&a, argc, argv);
	int r;
	while ((r = cli_next(&a)) > 0) {
		int bad = 0;
		if (!strcmp(a.key, "help")) {
			synth_usage(stdout);
			return 0;
		} else if (!strcmp(a.key, "format"))
			bad = !(format = cli_value(&a));
		else if (!strcmp(a.key, "dir"))
			bad = !(dir = cli_value(&a));
		else if (!strcmp(a.key, "train"))
			bad = cli_int(&a, 5, 1 << 24, &n_train) < 0;
		else if (!strcmp(a.key, "test"))
			bad = cli_int(&a, 1, 1 << 24, &n_test) < 0;
		else if (!strcmp(a.key, "seed"))
			bad = cli_u64(&a, &seed) < 0;
		else if (!strcmp(a.key, "gz"))
			gz = 1;
		else {
			cli_error("synth: unknown option --%s (see nasty-bench synth --help)",
				  a.key);
			return 2;
		}
		if (bad)
			return 2;
	}
	if (r < 0)
		return 2;
	if (!format || !dir) {
		synth_usage(stderr);
		return 2;
	}
	if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
		cli_error("%s: cannot create: %s", dir, strerror(errno));
		return 2;
	}
	char err[NB_ERR_LEN];
	if (nb_synth_write(dir, format, n_train, n_test, gz, seed, err) < 0) {
		cli_error("%s", err);
		return 2;
	}
	printf("wrote %d training and %d test images (%s) into %s\n", n_train,
	       n_test, format, dir);
	return 0;
}
