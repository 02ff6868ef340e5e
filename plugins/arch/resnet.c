/*
 * resnet.c - the CIFAR ResNet-18/34/50 of the Nasty-Teacher repository
 * (model/resnet.py, "kuangliu" style):
 *
 *   conv3x3 64 -> BN -> ReLU                        (no max-pool)
 *   layer1..layer4: 64/128/256/512 planes, strides 1/2/2/2,
 *     [2,2,2,2] BasicBlocks (18), [3,4,6,3] BasicBlocks (34) or
 *     [3,4,6,3] Bottlenecks of expansion 4 (50)
 *   adaptive average pool to 1x1 -> flatten -> linear (with bias)
 *
 * BasicBlock: conv3x3(s)-BN-ReLU-conv3x3-BN (+ shortcut) -> ReLU.
 * Bottleneck: conv1x1-BN-ReLU-conv3x3(s)-BN-ReLU-conv1x1(x4)-BN (+ shortcut)
 * -> ReLU. The shortcut is the identity, or conv1x1(s)+BN ("shortcut.0",
 * "shortcut.1") when the stride or the width changes. Convs have no bias;
 * every layer has PyTorch's default initialisation.
 *
 * Built once per variant: NB_RESNET_DEPTH (18, 34 or 50) selects it. The
 * adaptive pool lets any input size through (32x32 CIFAR, 64x64
 * Tiny-ImageNet). Taps: "stage1".."stage4" = layer1..layer4 outputs,
 * "features" = the pooled vector the classifier reads.
 *
 * What it deliberately does not do: ResNet-101/152, the ImageNet stem
 * (7x7 conv + max-pool), or zero-initialised last BN gammas.
 */
#include <stdarg.h>
#include <stdio.h>

#include "plugin.h"

#ifndef NB_RESNET_DEPTH
#define NB_RESNET_DEPTH 18
#endif

#if NB_RESNET_DEPTH == 18
static const int blocks[4] = {2, 2, 2, 2};
#define BOTTLENECK 0
#define BLOCK_KIND "basic"
#elif NB_RESNET_DEPTH == 34
static const int blocks[4] = {3, 4, 6, 3};
#define BOTTLENECK 0
#define BLOCK_KIND "basic"
#elif NB_RESNET_DEPTH == 50
static const int blocks[4] = {3, 4, 6, 3};
#define BOTTLENECK 1
#define BLOCK_KIND "bottleneck"
#else
#error "NB_RESNET_DEPTH must be 18, 34 or 50"
#endif

#define EXPANSION (BOTTLENECK ? 4 : 1)
#define STR_(x) #x
#define STR(x) STR_(x)
#define ARCH_NAME "resnet" STR(NB_RESNET_DEPTH)
#define SUMMARY                                                                \
	"CIFAR ResNet-" STR(NB_RESNET_DEPTH) " (kuangliu, " BLOCK_KIND         \
					     " blocks; any input size)"

/* Stores the node id of expr in v, or returns the error code from the
 * enclosing function. */
#define TRY(v, expr)                                                           \
	do {                                                                   \
		if (((v) = (expr)) < 0)                                        \
			return (v);                                            \
	} while (0)

/* A module path "<prefix>.<leaf>" in buf (NB_NAME_LEN bytes). */
__attribute__((format(printf, 2, 3))) static const char *
path(char *buf, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, NB_NAME_LEN, fmt, ap);
	va_end(ap);
	return buf;
}

/* conv (no bias) -> BN named "<p>.<conv>" and "<p>.<bn>"; optional ReLU. */
static int conv_bn(nb_net *net, int x, const char *p, const char *conv,
		   const char *bn, int out_c, int k, int stride, int relu,
		   char *err)
{
	char name[NB_NAME_LEN];
	TRY(x, nb_net_add_conv2d(net, x, path(name, "%s.%s", p, conv), out_c, k,
				 stride, k / 2, 1, 0, NB_INIT_DEFAULT, err));
	TRY(x, nb_net_add_batchnorm(net, x, path(name, "%s.%s", p, bn), 1e-5f,
				    0.1f, 1, err));
	if (relu)
		TRY(x, nb_net_add_relu(net, x, err));
	return x;
}

/* One residual block "<p>" (e.g. "layer2.0") on node x; returns its
 * output node. Nodes are added in the module's registration order (main
 * path, then shortcut) so the parameters come out in state_dict order. */
static int block(nb_net *net, int x, const char *p, int planes, int stride,
		 char *err)
{
	int in_c, y, s = x;
	nb_net_node_shape(net, x, &in_c, NULL, NULL);
	const int out_c = planes * EXPANSION;
	if (BOTTLENECK) {
		TRY(y,
		    conv_bn(net, x, p, "conv1", "bn1", planes, 1, 1, 1, err));
		TRY(y, conv_bn(net, y, p, "conv2", "bn2", planes, 3, stride, 1,
			       err));
		TRY(y, conv_bn(net, y, p, "conv3", "bn3", out_c, 1, 1, 0, err));
	} else {
		TRY(y, conv_bn(net, x, p, "conv1", "bn1", planes, 3, stride, 1,
			       err));
		TRY(y,
		    conv_bn(net, y, p, "conv2", "bn2", planes, 3, 1, 0, err));
	}
	if (stride != 1 || in_c != out_c)
		TRY(s, conv_bn(net, x, p, "shortcut.0", "shortcut.1", out_c, 1,
			       stride, 0, err));
	TRY(y, nb_net_add_add(net, y, s, err));
	return nb_net_add_relu(net, y, err);
}

static int build_body(nb_net *net, int classes, char *err)
{
	static const int planes[4] = {64, 128, 256, 512};
	char name[NB_NAME_LEN], tap[16];
	int x = 0;
	TRY(x, nb_net_add_conv2d(net, x, "conv1", 64, 3, 1, 1, 1, 0,
				 NB_INIT_DEFAULT, err));
	TRY(x, nb_net_add_batchnorm(net, x, "bn1", 1e-5f, 0.1f, 1, err));
	TRY(x, nb_net_add_relu(net, x, err));
	for (int l = 0; l < 4; l++) {
		for (int b = 0; b < blocks[l]; b++)
			TRY(x, block(net, x, path(name, "layer%d.%d", l + 1, b),
				     planes[l], b == 0 && l > 0 ? 2 : 1, err));
		snprintf(tap, sizeof tap, "stage%d", l + 1);
		int rc;
		TRY(rc, nb_net_add_tap(net, x, tap, err));
	}
	TRY(x, nb_net_add_adaptive_avgpool(net, x, 1, 1, err));
	TRY(x, nb_net_add_flatten(net, x, err));
	int rc;
	TRY(rc, nb_net_add_tap(net, x, "features", err));
	return nb_net_add_linear(net, x, "linear", classes, 1, NB_INIT_DEFAULT,
				 err);
}

static int build(const nb_arch_args *a, nb_net **out, char *err)
{
	*out = NULL;
	if (a->in_c <= 0 || a->in_h <= 0 || a->in_w <= 0 || a->classes < 1)
		return nb_errorf(err, NB_EINVAL,
				 ARCH_NAME ": bad input %dx%dx%d or %d classes",
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
	.name = ARCH_NAME,
	.summary = SUMMARY,
	.arch = &ops,
};
