/*
 * describe_cmd.c - `nasty-bench describe ARCH`: the layer table of an
 * architecture (name, kind, output shape, parameters, forward MACs), its
 * feature taps, and a last line `parameters: N`; optionally writes the
 * freshly initialised model as a checkpoint.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "config.h"

static void describe_usage(FILE *f)
{
	fputs("usage: nasty-bench describe ARCH [--classes N] [--input CxHxW]\n"
	      "                              [--opt KEY=VALUE,...] [--seed S --save FILE]\n"
	      "\n"
	      "Prints the layers of an architecture with output shapes, parameters and\n"
	      "forward multiply-adds per image, then `parameters: N` (trainable values).\n"
	      "--save writes the model initialised from --seed (default 0) as a\n"
	      "safetensors checkpoint.\n",
	      f);
}

/* 1234567 -> "1,234,567" */
static const char *grouped(double v, char *buf, size_t len)
{
	char raw[32];
	snprintf(raw, sizeof raw, "%.0f", v);
	size_t n = strlen(raw), o = 0;
	for (size_t i = 0; i < n && o + 2 < len; i++) {
		if (i && (n - i) % 3 == 0)
			buf[o++] = ',';
		buf[o++] = raw[i];
	}
	buf[o] = 0;
	return buf;
}

int cmd_describe(int argc, char **argv)
{
	const char *arch = NULL, *input = NULL, *save = NULL, *opt = NULL;
	int classes = 10;
	uint64_t seed = 0;
	int have_seed = 0;
	/* the architecture name is the first plain argument */
	if (argc > 1 && argv[1][0] != '-') {
		arch = argv[1];
		argv++;
		argc--;
	}
	cli_args a;
	cli_args_init(&a, argc, argv);
	int r;
	while ((r = cli_next(&a)) > 0) {
		int bad = 0;
		if (!strcmp(a.key, "help")) {
			describe_usage(stdout);
			return 0;
		} else if (!strcmp(a.key, "classes"))
			bad = cli_int(&a, 1, 1000000, &classes) < 0;
		else if (!strcmp(a.key, "input"))
			bad = !(input = cli_value(&a));
		else if (!strcmp(a.key, "save"))
			bad = !(save = cli_value(&a));
		else if (!strcmp(a.key, "opt"))
			bad = !(opt = cli_value(&a));
		else if (!strcmp(a.key, "seed")) {
			bad = cli_u64(&a, &seed) < 0;
			have_seed = 1;
		} else {
			cli_error("describe: unknown option --%s (see nasty-bench describe --help)",
				  a.key);
			return 2;
		}
		if (bad)
			return 2;
	}
	if (r < 0)
		return 2;
	if (!arch) {
		describe_usage(stderr);
		return 2;
	}
	nb_registry *reg = cli_registry();
	const nb_plugin *p = reg ? cli_find_arch(reg, arch) : NULL;
	if (!p)
		return 2;
	int c = p->arch->default_c > 0 ? p->arch->default_c : 3;
	int h = p->arch->default_h > 0 ? p->arch->default_h : 32;
	int w = p->arch->default_w > 0 ? p->arch->default_w : 32;
	if (input && cli_parse_input(input, &c, &h, &w) < 0) {
		cli_error("--input: '%s' is not CxHxW", input);
		return 2;
	}
	char err[NB_ERR_LEN];
	void *opts = NULL;
	if (p->options) {
		opts = nb_options_new(p, err);
		if (!opts || (opt && nb_options_parse(p, opts, opt, err) < 0)) {
			cli_error("%s", err);
			free(opts);
			return 2;
		}
	} else if (opt && *opt) {
		cli_error("%s takes no options", p->name);
		return 2;
	}
	nb_net *net = NULL;
	int rc = nb_arch_build(p, opts, c, h, w, classes, seed, &net, err);
	free(opts);
	if (rc < 0) {
		cli_error("%s", err);
		return 2;
	}
	printf("%s for %dx%dx%d inputs, %d classes\n\n", p->name, c, h, w,
	       classes);
	printf("%-34s %-16s %-14s %12s %16s\n", "layer", "kind", "output",
	       "params", "MACs");
	double macs = 0;
	char b1[32], b2[32];
	for (int i = 0; i < nb_net_nodes(net); i++) {
		int oc, oh, ow;
		nb_net_node_shape(net, i, &oc, &oh, &ow);
		char shape[40];
		snprintf(shape, sizeof shape, "%dx%dx%d", oc, oh, ow);
		const char *name = nb_net_node_name(net, i);
		double m = nb_net_node_macs(net, i);
		macs += m;
		printf("%-34s %-16s %-14s %12s %16s\n", name[0] ? name : "-",
		       nb_node_kind_name(nb_net_node_kind(net, i)), shape,
		       grouped((double)nb_net_node_param_count(net, i), b1,
			       sizeof b1),
		       grouped(m, b2, sizeof b2));
	}
	printf("\ntaps:");
	for (int i = 0; i < nb_net_taps(net); i++) {
		int oc, oh, ow;
		nb_net_node_shape(net, nb_net_tap_node(net, i), &oc, &oh, &ow);
		printf(" %s (%dx%dx%d)", nb_net_tap_name(net, i), oc, oh, ow);
	}
	int bns = nb_net_counters(net, NULL);
	printf("%s; %d BatchNorm inputs\n", nb_net_taps(net) ? "" : " none",
	       bns);
	printf("forward MACs per image: %s\n", grouped(macs, b1, sizeof b1));
	printf("parameters: %zu\n", nb_net_param_count(net));
	if (save) {
		nb_ckpt_meta meta = {0};
		snprintf(meta.arch, sizeof meta.arch, "%s", p->name);
		snprintf(meta.strategy, sizeof meta.strategy, "init");
		snprintf(meta.version, sizeof meta.version, "%s",
			 PACKAGE_VERSION);
		meta.classes = classes;
		meta.in_c = c;
		meta.in_h = h;
		meta.in_w = w;
		meta.seed = seed;
		meta.best_acc = -1;
		if (nb_checkpoint_save(net, &meta, save, err) < 0) {
			cli_error("%s", err);
			nb_net_free(net);
			return 2;
		}
		fprintf(stderr, "saved %s (initialised with seed %llu%s)\n", save,
			(unsigned long long)seed, have_seed ? "" : ", the default");
	}
	nb_net_free(net);
	return 0;
}
