/*
 * resnext.c - ResNeXt-29 (8x64d), the largest teacher of the paper: prlz77's
 * CifarResNeXt(cardinality=8, depth=29, widen_factor=4) as the
 * Nasty-Teacher repository uses it (model/resnext.py):
 *
 *   conv_1_3x3 64 -> bn_1 -> ReLU
 *   stage_1..stage_3: 3 bottlenecks each, 64->256 (stride 1), 256->512
 *     (stride 2), 512->1024 (stride 2); the stride sits on the first
 *     bottleneck's grouped conv
 *   adaptive average pool to 1x1 -> flatten -> classifier (linear 1024->C)
 *
 * Bottleneck "stage_k.stage_k_bottleneck_i" with D = 8*out/4 (512, 1024,
 * 2048): conv_reduce 1x1 in->D, bn_reduce, ReLU; conv_conv 3x3 D->D, 8
 * groups, stride s, bn, ReLU; conv_expand 1x1 D->out, bn_expand; plus the
 * input, or shortcut.shortcut_conv (1x1, stride s) + shortcut.shortcut_bn
 * when in != out; ReLU of the sum. No conv has a bias.
 *
 * Initialisation as the reference: convs Kaiming-normal with fan_out
 * (N(0, sqrt(2/(out*k*k)))), the classifier Kaiming-normal with fan_in and
 * bias 0, BN gamma 1 and beta 0.
 *
 * Any input size goes through (adaptive pool): 32x32 CIFAR, 64x64
 * Tiny-ImageNet. Taps: "stage1".."stage3" = stage_1..stage_3 outputs,
 * "features" = the pooled 1024-vector.
 *
 * What it deliberately does not do: other cardinalities, depths or widths
 * (the reference class takes them; the paper uses only 8x64d).
 */
#include <stdarg.h>
#include <stdio.h>

#include "plugin.h"

#define CARDINALITY 8
#define WIDEN 4
#define BLOCKS 3 /* (29 - 2) / 9 */

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

/* conv "<p>.<conv>" (no bias, Kaiming fan_out) -> BN "<p>.<bn>" [-> ReLU];
 * p "" names them "<conv>" and "<bn>". */
static int conv_bn(nb_net *net, int x, const char *p, const char *conv,
		   const char *bn, int out_c, int k, int stride, int groups,
		   int relu, char *err)
{
	char name[NB_NAME_LEN];
	const char *dot = *p ? "." : "";
	TRY(x, nb_net_add_conv2d(net, x, path(name, "%s%s%s", p, dot, conv),
				 out_c, k, stride, k / 2, groups, 0,
				 NB_INIT_KAIMING_FAN_OUT, err));
	TRY(x, nb_net_add_batchnorm(net, x, path(name, "%s%s%s", p, dot, bn),
				    1e-5f, 0.1f, 1, err));
	if (relu)
		TRY(x, nb_net_add_relu(net, x, err));
	return x;
}

static int bottleneck(nb_net *net, int x, const char *p, int out_c, int stride,
		      char *err)
{
	const int d = CARDINALITY * out_c / WIDEN;
	int in_c, y, s = x;
	nb_net_node_shape(net, x, &in_c, NULL, NULL);
	TRY(y,
	    conv_bn(net, x, p, "conv_reduce", "bn_reduce", d, 1, 1, 1, 1, err));
	TRY(y, conv_bn(net, y, p, "conv_conv", "bn", d, 3, stride, CARDINALITY,
		       1, err));
	TRY(y, conv_bn(net, y, p, "conv_expand", "bn_expand", out_c, 1, 1, 1, 0,
		       err));
	/* The reference adds a projection only when the width changes; every
	 * strided bottleneck of ResNeXt-29 changes it too. */
	if (in_c != out_c)
		TRY(s, conv_bn(net, x, p, "shortcut.shortcut_conv",
			       "shortcut.shortcut_bn", out_c, 1, stride, 1, 0,
			       err));
	TRY(y, nb_net_add_add(net, s, y, err));
	return nb_net_add_relu(net, y, err);
}

static int build_body(nb_net *net, int classes, char *err)
{
	static const int widths[4] = {64, 64 * WIDEN, 128 * WIDEN, 256 * WIDEN};
	char name[NB_NAME_LEN], tap[16];
	int x = 0, rc;
	TRY(x, conv_bn(net, x, "", "conv_1_3x3", "bn_1", widths[0], 3, 1, 1, 1,
		       err));
	for (int s = 1; s <= 3; s++) {
		for (int b = 0; b < BLOCKS; b++)
			TRY(x, bottleneck(
				   net, x,
				   path(name, "stage_%d.stage_%d_bottleneck_%d",
					s, s, b),
				   widths[s], b == 0 && s > 1 ? 2 : 1, err));
		snprintf(tap, sizeof tap, "stage%d", s);
		TRY(rc, nb_net_add_tap(net, x, tap, err));
	}
	TRY(x, nb_net_add_adaptive_avgpool(net, x, 1, 1, err));
	TRY(x, nb_net_add_flatten(net, x, err));
	TRY(rc, nb_net_add_tap(net, x, "features", err));
	return nb_net_add_linear(net, x, "classifier", classes, 1,
				 NB_INIT_KAIMING_FAN_IN, err);
}

static int build(const nb_arch_args *a, nb_net **out, char *err)
{
	*out = NULL;
	if (a->in_c <= 0 || a->in_h <= 0 || a->in_w <= 0 || a->classes < 1)
		return nb_errorf(err, NB_EINVAL,
				 "resnext29: bad input %dx%dx%d or %d classes",
				 a->in_c, a->in_h, a->in_w, a->classes);
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
	.name = "resnext29",
	.summary = "CIFAR ResNeXt-29 8x64d (prlz77; any input size)",
	.arch = &ops,
};
