/*
 * shufflenetv2.c - the CIFAR ShuffleNetV2 1x student of the Nasty-Teacher
 * repository (model/shufflenetv2.py, weiaicunzai's variant):
 *
 *   pre: conv3x3 3->24 (pad 1), BN (no ReLU)
 *   stage2..stage4: one stride-2 unit then 3/7/3 stride-1 units, out
 *     channels 116/232/464 (32 -> 16 -> 8 -> 4 px on CIFAR)
 *   conv5: conv1x1 464->1024, BN, ReLU -> adaptive average pool -> flatten
 *   fc: linear 1024->C
 *
 * Stride-2 unit "stageK.0": both branches read the whole input and are
 * concatenated as [shortcut, residual]:
 *   residual .0 conv1x1 in->in, .1 BN, ReLU, .3 dw3x3 s2, .4 BN,
 *            .5 conv1x1 in->out/2, .6 BN, ReLU
 *   shortcut .0 dw3x3 s2, .1 BN, .2 conv1x1 in->out/2, .3 BN, ReLU
 * Stride-1 unit "stageK.i": the channels are split in halves; the first
 * half passes unchanged, the second goes through a residual branch as above
 * (stride 1, c/2 -> c/2), and the result is [first half, branch].
 * Every unit ends in a channel shuffle with 2 groups (view (2, C/2),
 * transpose). Every conv has a bias; every layer keeps PyTorch's default
 * initialisation. Nodes are added in the reference's registration order
 * (residual before shortcut) so the parameters come out in state_dict
 * order.
 *
 * Any input size goes through (adaptive pool): 32x32 CIFAR, 64x64
 * Tiny-ImageNet. Taps: "stage1".."stage3" are the outputs of the
 * reference's stage2..stage4 (the tap names count from 1 in every
 * architecture), "features" = the pooled 1024-vector.
 *
 * What it deliberately does not do: the 0.5x/1.5x/2x widths.
 */
#include <stdarg.h>
#include <stdio.h>

#include "plugin.h"

#define TRY(v, expr)                                                           \
	do {                                                                   \
		if (((v) = (expr)) < 0)                                        \
			return (v);                                            \
	} while (0)

__attribute__((format(printf, 2, 3))) static const char *
path(char *buf, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, NB_NAME_LEN, fmt, ap);
	va_end(ap);
	return buf;
}

/* "<p>.<i>" conv (bias; depthwise when dw) -> "<p>.<i+1>" BN [-> ReLU]. */
static int conv_bn(nb_net *net, int x, const char *p, int i, int out_c, int dw,
		   int stride, int relu, char *err)
{
	char name[NB_NAME_LEN];
	int in_c;
	nb_net_node_shape(net, x, &in_c, NULL, NULL);
	TRY(x, nb_net_add_conv2d(net, x, path(name, "%s.%d", p, i), out_c,
				 dw ? 3 : 1, stride, dw ? 1 : 0, dw ? in_c : 1,
				 1, NB_INIT_DEFAULT, err));
	TRY(x, nb_net_add_batchnorm(net, x, path(name, "%s.%d", p, i + 1),
				    1e-5f, 0.1f, 1, err));
	if (relu)
		TRY(x, nb_net_add_relu(net, x, err));
	return x;
}

/* "<p>.residual": conv1x1 c->c, dw3x3 (stride), conv1x1 c->out. */
static int residual(nb_net *net, int x, const char *p, int out_c, int stride,
		    char *err)
{
	char r[NB_NAME_LEN];
	int c;
	nb_net_node_shape(net, x, &c, NULL, NULL);
	path(r, "%s.residual", p);
	TRY(x, conv_bn(net, x, r, 0, c, 0, 1, 1, err));
	TRY(x, conv_bn(net, x, r, 3, c, 1, stride, 0, err));
	return conv_bn(net, x, r, 5, out_c, 0, 1, 1, err);
}

/* ShuffleUnit "<p>" on node x with out_c output channels. */
static int unit(nb_net *net, int x, const char *p, int out_c, int stride,
		char *err)
{
	char s[NB_NAME_LEN];
	int in_c, cat[2];
	nb_net_node_shape(net, x, &in_c, NULL, NULL);
	if (stride != 1 || in_c != out_c) {
		TRY(cat[1], residual(net, x, p, out_c / 2, stride, err));
		path(s, "%s.shortcut", p);
		TRY(cat[0], conv_bn(net, x, s, 0, in_c, 1, stride, 0, err));
		TRY(cat[0],
		    conv_bn(net, cat[0], s, 2, out_c / 2, 0, 1, 1, err));
	} else {
		int b;
		TRY(cat[0], nb_net_add_slice(net, x, 0, in_c / 2, err));
		TRY(b, nb_net_add_slice(net, x, in_c / 2, in_c / 2, err));
		TRY(cat[1], residual(net, b, p, in_c / 2, 1, err));
	}
	TRY(x, nb_net_add_concat(net, cat, 2, err));
	return nb_net_add_shuffle(net, x, 2, err);
}

static int build_body(nb_net *net, int classes, char *err)
{
	static const int widths[3] = {116, 232, 464}, repeat[3] = {3, 7, 3};
	char name[NB_NAME_LEN], tap[16];
	int x = 0, rc;
	TRY(x, nb_net_add_conv2d(net, x, "pre.0", 24, 3, 1, 1, 1, 1,
				 NB_INIT_DEFAULT, err));
	TRY(x, nb_net_add_batchnorm(net, x, "pre.1", 1e-5f, 0.1f, 1, err));
	for (int s = 0; s < 3; s++) {
		for (int u = 0; u <= repeat[s]; u++)
			TRY(x, unit(net, x, path(name, "stage%d.%d", s + 2, u),
				    widths[s], u == 0 ? 2 : 1, err));
		snprintf(tap, sizeof tap, "stage%d", s + 1);
		TRY(rc, nb_net_add_tap(net, x, tap, err));
	}
	TRY(x, conv_bn(net, x, "conv5", 0, 1024, 0, 1, 1, err));
	TRY(x, nb_net_add_adaptive_avgpool(net, x, 1, 1, err));
	TRY(x, nb_net_add_flatten(net, x, err));
	TRY(rc, nb_net_add_tap(net, x, "features", err));
	return nb_net_add_linear(net, x, "fc", classes, 1, NB_INIT_DEFAULT,
				 err);
}

static int build(const nb_arch_args *a, nb_net **out, char *err)
{
	*out = NULL;
	if (a->in_c <= 0 || a->in_h <= 0 || a->in_w <= 0 || a->classes < 1)
		return nb_errorf(
		    err, NB_EINVAL,
		    "shufflenetv2: bad input %dx%dx%d or %d classes", a->in_c,
		    a->in_h, a->in_w, a->classes);
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
	.name = "shufflenetv2",
	.summary = "CIFAR ShuffleNetV2 1x (weiaicunzai; any input size)",
	.arch = &ops,
};
