/*
 * cnn.c - the paper's "5-layer plain CNN" student on CIFAR-10 (the
 * Nasty-Teacher repository's model/net.py, `net`, num_channels 32):
 *
 *   3 x [conv3x3 (pad 1, bias) -> BN -> maxpool 2 -> ReLU], 32/64/128 wide
 *   flatten (4*4*128 = 2048) -> fc1 2048->128 -> fcbn1 (BatchNorm1d) -> ReLU
 *   -> fc2 128->C
 *
 * Note the order BN -> pool -> ReLU, as the reference. Every layer keeps
 * PyTorch's default initialisation. The reference trains it with Adam
 * (lr 1e-3), which is the suite's business, not the architecture's.
 *
 * Inputs must be 32x32: the reference flattens to a hard-coded 4x4x128, so
 * any other size would silently mix samples there. Taps: "stage1".."stage3"
 * = the three conv blocks' outputs, "features" = the 128-vector fc2 reads.
 *
 * What it deliberately does not do: the reference's dropout, whose rate is
 * 0 in every configuration (a no-op node is left out), or other widths.
 */
#include <stdio.h>

#include "plugin.h"

#define CHANNELS 32

#define TRY(v, expr)                                                           \
	do {                                                                   \
		if (((v) = (expr)) < 0)                                        \
			return (v);                                            \
	} while (0)

static int build_body(nb_net *net, int classes, char *err)
{
	char conv[16], bn[16], tap[16];
	int x = 0, rc;
	for (int i = 1; i <= 3; i++) {
		snprintf(conv, sizeof conv, "conv%d", i);
		snprintf(bn, sizeof bn, "bn%d", i);
		snprintf(tap, sizeof tap, "stage%d", i);
		TRY(x, nb_net_add_conv2d(net, x, conv, CHANNELS << (i - 1), 3,
					 1, 1, 1, 1, NB_INIT_DEFAULT, err));
		TRY(x, nb_net_add_batchnorm(net, x, bn, 1e-5f, 0.1f, 1, err));
		TRY(x, nb_net_add_maxpool(net, x, 2, 2, 0, err));
		TRY(x, nb_net_add_relu(net, x, err));
		TRY(rc, nb_net_add_tap(net, x, tap, err));
	}
	TRY(x, nb_net_add_flatten(net, x, err));
	TRY(x, nb_net_add_linear(net, x, "fc1", 4 * CHANNELS, 1,
				 NB_INIT_DEFAULT, err));
	TRY(x, nb_net_add_batchnorm(net, x, "fcbn1", 1e-5f, 0.1f, 1, err));
	TRY(x, nb_net_add_relu(net, x, err));
	TRY(rc, nb_net_add_tap(net, x, "features", err));
	return nb_net_add_linear(net, x, "fc2", classes, 1, NB_INIT_DEFAULT,
				 err);
}

static int build(const nb_arch_args *a, nb_net **out, char *err)
{
	*out = NULL;
	if (a->in_c <= 0 || a->classes < 1)
		return nb_errorf(err, NB_EINVAL,
				 "cnn: bad input %dx%dx%d or %d classes",
				 a->in_c, a->in_h, a->in_w, a->classes);
	if (a->in_h != 32 || a->in_w != 32)
		return nb_errorf(err, NB_EINVAL,
				 "cnn needs 32x32 inputs (its flatten is fixed "
				 "at 4x4x128), got %dx%d",
				 a->in_h, a->in_w);
	nb_net *net = nb_net_new(a->in_c, a->in_h, a->in_w);
	if (!net)
		return nb_errorf(err, NB_ENOMEM, "out of memory");
	int rc = build_body(net, a->classes, err);
	if (rc < 0) {
		nb_net_free(net);
		return rc;
	}
	*out = net;
	return 0;
}

static const nb_arch_ops ops = {.build = build};

NB_PLUGIN_EXPORT const nb_plugin nb_plugin_desc = {
	NB_PLUGIN_HEADER,
	.kind = NB_PLUGIN_ARCH,
	.name = "cnn",
	.summary = "the paper's plain 5-layer CNN (model/net.py; 32x32 inputs)",
	.arch = &ops,
};
