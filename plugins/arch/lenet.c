/*
 * lenet.c - DAFL's LeNet-5 and its half-width student (DAFL/lenet.py):
 * conv5x5 -> ReLU -> maxpool 2 -> conv5x5 -> ReLU -> maxpool 2 -> conv5x5
 * -> ReLU (a 1x1 map whose vector is DAFL's "feature") -> fc -> ReLU -> fc.
 * Widths 6/16/120/84 (lenet5) or 3/8/60/42 (lenet5-half); all layers have
 * biases and PyTorch's default initialisation; no BatchNorm.
 *
 * Built twice: NB_LENET_HALF selects the variant of the shared object.
 * Inputs must be 32x32 (MNIST-style 28x28 images are zero-padded to 32).
 */
#include "plugin.h"

#ifndef NB_LENET_HALF
#define NB_LENET_HALF 0
#endif

#define TRY(expr)                                                              \
	do {                                                                   \
		if ((x = (expr)) < 0)                                          \
			goto fail;                                             \
	} while (0)

static int build(const nb_arch_args *a, nb_net **out, char *err)
{
	const int half = NB_LENET_HALF;
	const int c1 = half ? 3 : 6, c2 = half ? 8 : 16, c3 = half ? 60 : 120;
	const int f1 = half ? 42 : 84;
	*out = NULL;
	if (a->in_h != 32 || a->in_w != 32)
		return nb_errorf(err, NB_EINVAL,
				 "%s needs 32x32 inputs, got %dx%d (pad 28x28 images to 32)",
				 half ? "lenet5-half" : "lenet5", a->in_h, a->in_w);
	nb_net *net = nb_net_new(a->in_c, a->in_h, a->in_w);
	if (!net)
		return nb_errorf(err, NB_ENOMEM, "out of memory");
	int x = 0;
	TRY(nb_net_add_conv2d(net, x, "conv1", c1, 5, 1, 0, 1, 1,
			      NB_INIT_DEFAULT, err));
	TRY(nb_net_add_relu(net, x, err));
	TRY(nb_net_add_maxpool(net, x, 2, 2, 0, err));
	if (nb_net_add_tap(net, x, "stage1", err) < 0)
		goto fail;
	TRY(nb_net_add_conv2d(net, x, "conv2", c2, 5, 1, 0, 1, 1,
			      NB_INIT_DEFAULT, err));
	TRY(nb_net_add_relu(net, x, err));
	TRY(nb_net_add_maxpool(net, x, 2, 2, 0, err));
	if (nb_net_add_tap(net, x, "stage2", err) < 0)
		goto fail;
	TRY(nb_net_add_conv2d(net, x, "conv3", c3, 5, 1, 0, 1, 1,
			      NB_INIT_DEFAULT, err));
	TRY(nb_net_add_relu(net, x, err));
	TRY(nb_net_add_flatten(net, x, err));
	if (nb_net_add_tap(net, x, "features", err) < 0)
		goto fail;
	TRY(nb_net_add_linear(net, x, "fc1", f1, 1, NB_INIT_DEFAULT, err));
	TRY(nb_net_add_relu(net, x, err));
	TRY(nb_net_add_linear(net, x, "fc2", a->classes, 1, NB_INIT_DEFAULT,
			      err));
	*out = net;
	return 0;
fail:
	nb_net_free(net);
	return x < 0 ? x : NB_EINVAL;
}

static const nb_arch_ops ops = {
	.build = build, .default_c = 1, .default_h = 32, .default_w = 32};

NB_PLUGIN_EXPORT const nb_plugin nb_plugin_desc = {
	NB_PLUGIN_HEADER,
	.kind = NB_PLUGIN_ARCH,
#if NB_LENET_HALF
	.name = "lenet5-half",
	.summary = "DAFL's LeNet-5-half student (3/8/60/42 wide; 32x32 inputs)",
#else
	.name = "lenet5",
	.summary = "DAFL's LeNet-5 (6/16/120/84 wide; 32x32 inputs)",
#endif
	.arch = &ops,
};
