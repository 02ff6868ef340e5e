/*
 * convstack.c - a benchmark shape, not an architecture of the paper: four
 * 3x3 conv (64 channels, no bias) + BatchNorm + ReLU layers at full
 * resolution, global average pooling and a linear classifier. It isolates
 * the cost of the conv/BN/ReLU pattern that dominates the ResNets.
 */
#include <stdio.h>

#include "plugin.h"

static int build(const nb_arch_args *a, nb_net **out, char *err)
{
	*out = NULL;
	nb_net *net = nb_net_new(a->in_c, a->in_h, a->in_w);
	if (!net)
		return nb_errorf(err, NB_ENOMEM, "out of memory");
	int x = 0;
	char name[32];
	for (int i = 0; i < 4 && x >= 0; i++) {
		snprintf(name, sizeof name, "features.%d", 3 * i);
		x = nb_net_add_conv2d(net, x, name, 64, 3, 1, 1, 1, 0,
				      NB_INIT_DEFAULT, err);
		snprintf(name, sizeof name, "features.%d", 3 * i + 1);
		if (x >= 0)
			x = nb_net_add_batchnorm(net, x, name, 1e-5f, 0.1f, 1,
						 err);
		if (x >= 0)
			x = nb_net_add_relu(net, x, err);
	}
	if (x >= 0)
		x = nb_net_add_adaptive_avgpool(net, x, 1, 1, err);
	if (x >= 0)
		x = nb_net_add_flatten(net, x, err);
	if (x >= 0 && nb_net_add_tap(net, x, "features", err) < 0)
		x = NB_EINVAL;
	if (x >= 0)
		x = nb_net_add_linear(net, x, "fc", a->classes, 1,
				      NB_INIT_DEFAULT, err);
	if (x < 0) {
		nb_net_free(net);
		return x;
	}
	*out = net;
	return 0;
}

static const nb_arch_ops ops = {.build = build};

NB_PLUGIN_EXPORT const nb_plugin nb_plugin_desc = {
	NB_PLUGIN_HEADER,
	.kind = NB_PLUGIN_ARCH,
	.name = "convstack",
	.summary = "benchmark shape: 4 x (3x3 conv 64 + BN + ReLU), pool, linear",
	.arch = &ops,
};
