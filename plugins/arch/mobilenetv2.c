/*
 * mobilenetv2.c - the CIFAR MobileNetV2 student of the Nasty-Teacher
 * repository (model/mobilenetv2.py, weiaicunzai's variant), quirks kept:
 *
 *   pre: conv1x1 3->32 with padding 1 (32x32 -> 34x34; the border is the
 *        bias alone), BN, ReLU6
 *   stage1..stage7: inverted residual blocks (blocks, out, first stride, t):
 *     (1,16,1,1) (2,24,2,6) (3,32,2,6) (4,64,2,6) (3,96,1,6) (3,160,1,6)
 *     (1,320,1,6); spatial 34 -> 34 -> 17 -> 9 -> 5 -> 5 -> 5 -> 5
 *   conv1: conv1x1 320->1280, BN, ReLU6 -> adaptive average pool to 1x1
 *   conv2: conv1x1 1280->C as the classifier -> flatten
 *
 * Block "<stage>[.i].residual": .0 conv1x1 c->tc, .1 BN, ReLU6, .3
 * depthwise 3x3 (stride s, pad 1), .4 BN, ReLU6, .6 conv1x1 tc->c', .7 BN
 * (linear); plus the input when s = 1 and c = c'. stage1 and stage7 are
 * single blocks (no ".i" in their names). Every conv has a bias; every layer
 * keeps PyTorch's default initialisation.
 *
 * Any input size goes through (adaptive pool; 64x64 Tiny-ImageNet gives
 * 66 -> ... -> 9x9 at the end). Taps: "stage1".."stage7" = stage outputs,
 * "features" = the pooled 1280-vector the classifier conv reads.
 *
 * What it deliberately does not do: width multipliers or the ImageNet
 * MobileNetV2 (3x3 stride-2 stem, dropout, linear classifier).
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

/* Stages (blocks, out channels, first stride, expansion t). */
static const struct {
	int n, out, stride, t;
} stages[7] = {{1, 16, 1, 1}, {2, 24, 2, 6},  {3, 32, 2, 6}, {4, 64, 2, 6},
	       {3, 96, 1, 6}, {3, 160, 1, 6}, {1, 320, 1, 6}};

/* "<p>.<i>" conv (bias) -> "<p>.<i+1>" BN [-> ReLU6]. */
static int conv_bn(nb_net *net, int x, const char *p, int i, int out_c, int k,
		   int stride, int pad, int groups, int relu6, char *err)
{
	char name[NB_NAME_LEN];
	TRY(x, nb_net_add_conv2d(net, x, path(name, "%s.%d", p, i), out_c, k,
				 stride, pad, groups, 1, NB_INIT_DEFAULT, err));
	TRY(x, nb_net_add_batchnorm(net, x, path(name, "%s.%d", p, i + 1),
				    1e-5f, 0.1f, 1, err));
	if (relu6)
		TRY(x, nb_net_add_relu6(net, x, err));
	return x;
}

/* LinearBottleNeck "<p>" (e.g. "stage3.1" or "stage1") on node x. */
static int block(nb_net *net, int x, const char *p, int out_c, int stride,
		 int t, char *err)
{
	char res[NB_NAME_LEN];
	int in_c, y;
	nb_net_node_shape(net, x, &in_c, NULL, NULL);
	const int e = in_c * t;
	path(res, "%s.residual", p);
	TRY(y, conv_bn(net, x, res, 0, e, 1, 1, 0, 1, 1, err));
	TRY(y, conv_bn(net, y, res, 3, e, 3, stride, 1, e, 1, err));
	TRY(y, conv_bn(net, y, res, 6, out_c, 1, 1, 0, 1, 0, err));
	if (stride == 1 && in_c == out_c)
		TRY(y, nb_net_add_add(net, y, x, err));
	return y;
}

static int build_body(nb_net *net, int classes, char *err)
{
	char name[NB_NAME_LEN], tap[16];
	int x = 0, rc;
	/* the 1x1 stem with padding 1 is the reference's, border and all */
	TRY(x, conv_bn(net, x, "pre", 0, 32, 1, 1, 1, 1, 1, err));
	for (int s = 0; s < 7; s++) {
		for (int b = 0; b < stages[s].n; b++) {
			if (stages[s].n == 1)
				path(name, "stage%d", s + 1);
			else
				path(name, "stage%d.%d", s + 1, b);
			TRY(x, block(net, x, name, stages[s].out,
				     b == 0 ? stages[s].stride : 1, stages[s].t,
				     err));
		}
		snprintf(tap, sizeof tap, "stage%d", s + 1);
		TRY(rc, nb_net_add_tap(net, x, tap, err));
	}
	TRY(x, conv_bn(net, x, "conv1", 0, 1280, 1, 1, 0, 1, 1, err));
	TRY(x, nb_net_add_adaptive_avgpool(net, x, 1, 1, err));
	TRY(rc, nb_net_add_tap(net, x, "features", err));
	TRY(x, nb_net_add_conv2d(net, x, "conv2", classes, 1, 1, 0, 1, 1,
				 NB_INIT_DEFAULT, err));
	return nb_net_add_flatten(net, x, err);
}

static int build(const nb_arch_args *a, nb_net **out, char *err)
{
	*out = NULL;
	if (a->in_c <= 0 || a->in_h <= 0 || a->in_w <= 0 || a->classes < 1)
		return nb_errorf(
		    err, NB_EINVAL,
		    "mobilenetv2: bad input %dx%dx%d or %d classes", a->in_c,
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
	.name = "mobilenetv2",
	.summary = "CIFAR MobileNetV2 (weiaicunzai; padded 1x1 stem; any size)",
	.arch = &ops,
};
