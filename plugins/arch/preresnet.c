/*
 * preresnet.c - the paper's "ResNetC-20/32" students: bearpaw's CIFAR
 * PreResNet as the Nasty-Teacher repository uses it (model/preresnet.py):
 *
 *   conv3x3 16 (no BN/ReLU after it)
 *   layer1..layer3: n pre-activation blocks each (depth = 6n + 2), 16/32/64
 *     channels, strides 1/2/2
 *   BN -> ReLU -> 8x8 average pool (fixed) -> flatten -> linear
 *
 * Block: BN-ReLU-conv3x3(s)-BN-ReLU-conv3x3, plus the raw block input, or
 * "downsample.0" = conv1x1(s) (no BN) of it on the first block of layer2
 * and layer3; no ReLU after the addition. Convs have no bias and are drawn
 * from N(0, sqrt(2 / (k*k*out_channels))) (NB_INIT_NORMAL_FAN_OUT); BN
 * gamma 1, beta 0; the linear layer keeps PyTorch's default.
 *
 * Built once per variant: NB_PRERESNET_DEPTH (20 or 32). The fixed 8x8 pool
 * means the last stage must be exactly 8x8 (inputs of 29..32 pixels, i.e.
 * CIFAR); anything else is refused at build time, where PyTorch would
 * either fail or silently pool only a corner. Taps: "stage1".."stage3" =
 * layer1..layer3 outputs (before the final BN), "features" = the pooled
 * 64-vector the classifier reads.
 *
 * What it deliberately does not do: the Bottleneck variants (depth >= 44).
 */
#include <stdarg.h>
#include <stdio.h>

#include "plugin.h"

#ifndef NB_PRERESNET_DEPTH
#define NB_PRERESNET_DEPTH 20
#endif

#if NB_PRERESNET_DEPTH != 20 && NB_PRERESNET_DEPTH != 32
#error "NB_PRERESNET_DEPTH must be 20 or 32"
#endif

#define BLOCKS ((NB_PRERESNET_DEPTH - 2) / 6)
#define STR_(x) #x
#define STR(x) STR_(x)
#define ARCH_NAME "preresnet" STR(NB_PRERESNET_DEPTH)
#define SUMMARY                                                                \
	"CIFAR PreResNet-" STR(NB_PRERESNET_DEPTH) " = ResNetC (8x8 pool)"

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

/* Spatial size after a 3x3 conv with stride 2 and padding 1. */
static int halve(int n)
{
	return (n - 1) / 2 + 1;
}

/* Pre-activation block "<p>" (e.g. "layer2.0") on node x. */
static int block(nb_net *net, int x, const char *p, int planes, int stride,
		 char *err)
{
	char name[NB_NAME_LEN];
	int in_c, y, r = x;
	nb_net_node_shape(net, x, &in_c, NULL, NULL);
	TRY(y, nb_net_add_batchnorm(net, x, path(name, "%s.bn1", p), 1e-5f,
				    0.1f, 1, err));
	TRY(y, nb_net_add_relu(net, y, err));
	TRY(y, nb_net_add_conv2d(net, y, path(name, "%s.conv1", p), planes, 3,
				 stride, 1, 1, 0, NB_INIT_NORMAL_FAN_OUT, err));
	TRY(y, nb_net_add_batchnorm(net, y, path(name, "%s.bn2", p), 1e-5f,
				    0.1f, 1, err));
	TRY(y, nb_net_add_relu(net, y, err));
	TRY(y, nb_net_add_conv2d(net, y, path(name, "%s.conv2", p), planes, 3,
				 1, 1, 1, 0, NB_INIT_NORMAL_FAN_OUT, err));
	if (stride != 1 || in_c != planes)
		TRY(r, nb_net_add_conv2d(
			   net, x, path(name, "%s.downsample.0", p), planes, 1,
			   stride, 0, 1, 0, NB_INIT_NORMAL_FAN_OUT, err));
	return nb_net_add_add(net, y, r, err);
}

static int build_body(nb_net *net, int classes, char *err)
{
	static const int planes[3] = {16, 32, 64};
	char name[NB_NAME_LEN], tap[16];
	int x = 0, rc;
	TRY(x, nb_net_add_conv2d(net, x, "conv1", 16, 3, 1, 1, 1, 0,
				 NB_INIT_NORMAL_FAN_OUT, err));
	for (int l = 0; l < 3; l++) {
		for (int b = 0; b < BLOCKS; b++)
			TRY(x, block(net, x, path(name, "layer%d.%d", l + 1, b),
				     planes[l], b == 0 && l > 0 ? 2 : 1, err));
		snprintf(tap, sizeof tap, "stage%d", l + 1);
		TRY(rc, nb_net_add_tap(net, x, tap, err));
	}
	TRY(x, nb_net_add_batchnorm(net, x, "bn", 1e-5f, 0.1f, 1, err));
	TRY(x, nb_net_add_relu(net, x, err));
	TRY(x, nb_net_add_avgpool(net, x, 8, 8, 0, err));
	TRY(x, nb_net_add_flatten(net, x, err));
	TRY(rc, nb_net_add_tap(net, x, "features", err));
	return nb_net_add_linear(net, x, "fc", classes, 1, NB_INIT_DEFAULT,
				 err);
}

static int build(const nb_arch_args *a, nb_net **out, char *err)
{
	*out = NULL;
	if (a->in_c <= 0 || a->in_h <= 0 || a->in_w <= 0 || a->classes < 1)
		return nb_errorf(err, NB_EINVAL,
				 ARCH_NAME ": bad input %dx%dx%d or %d classes",
				 a->in_c, a->in_h, a->in_w, a->classes);
	const int last_h = halve(halve(a->in_h)),
		  last_w = halve(halve(a->in_w));
	if (last_h != 8 || last_w != 8)
		return nb_errorf(err, NB_EINVAL,
				 ARCH_NAME
				 ": its 8x8 average pool needs an 8x8 last "
				 "stage (inputs of 29..32 pixels, e.g. CIFAR "
				 "32x32); a %dx%d input gives %dx%d",
				 a->in_h, a->in_w, last_h, last_w);
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

static const char *const aliases[] = {"resnetc" STR(NB_PRERESNET_DEPTH), NULL};

NB_PLUGIN_EXPORT const nb_plugin nb_plugin_desc = {
	NB_PLUGIN_HEADER,
	.kind = NB_PLUGIN_ARCH,
	.name = ARCH_NAME,
	.aliases = aliases,
	.summary = SUMMARY,
	.arch = &ops,
};
