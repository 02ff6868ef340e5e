/*
 * models.c - the built-in architectures (see models.h). Layer names follow
 * the reference PyTorch modules (DAFL's lenet.py: conv1..conv3, fc1, fc2),
 * so state_dict names line up when checkpoints arrive.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "models.h"

/* Propagates a negative node id out of a builder function. */
#define TRY(expr)                                                              \
	do {                                                                   \
		int rc_ = (expr);                                              \
		if (rc_ < 0)                                                   \
			return rc_;                                            \
		x = rc_;                                                       \
	} while (0)

static int build_lenet(nb_net *net, int classes, int half, char *err)
{
	int c1 = half ? 3 : 6, c2 = half ? 8 : 16, c3 = half ? 60 : 120;
	int f1 = half ? 42 : 84;
	int x = 0;
	TRY(nb_net_add_conv2d(net, x, "conv1", c1, 5, 1, 0, 1, 1,
			      NB_INIT_DEFAULT, err));
	TRY(nb_net_add_relu(net, x, err));
	TRY(nb_net_add_maxpool(net, x, 2, 2, 0, err));
	TRY(nb_net_add_conv2d(net, x, "conv2", c2, 5, 1, 0, 1, 1,
			      NB_INIT_DEFAULT, err));
	TRY(nb_net_add_relu(net, x, err));
	TRY(nb_net_add_maxpool(net, x, 2, 2, 0, err));
	TRY(nb_net_add_conv2d(net, x, "conv3", c3, 5, 1, 0, 1, 1,
			      NB_INIT_DEFAULT, err));
	TRY(nb_net_add_relu(net, x, err));
	TRY(nb_net_add_flatten(net, x, err));
	TRY(nb_net_add_linear(net, x, "fc1", f1, 1, NB_INIT_DEFAULT, err));
	TRY(nb_net_add_relu(net, x, err));
	TRY(nb_net_add_linear(net, x, "fc2", classes, 1, NB_INIT_DEFAULT, err));
	return 0;
}

static int build_convstack(nb_net *net, int classes, char *err)
{
	int x = 0;
	char name[32];
	for (int i = 0; i < 4; i++) {
		snprintf(name, sizeof name, "features.%d.conv", i);
		TRY(nb_net_add_conv2d(net, x, name, 64, 3, 1, 1, 1, 0,
				      NB_INIT_DEFAULT, err));
		snprintf(name, sizeof name, "features.%d.bn", i);
		TRY(nb_net_add_batchnorm(net, x, name, 1e-5f, 0.1f, 1, err));
		TRY(nb_net_add_relu(net, x, err));
	}
	TRY(nb_net_add_adaptive_avgpool(net, x, 1, 1, err));
	TRY(nb_net_add_flatten(net, x, err));
	TRY(nb_net_add_linear(net, x, "fc", classes, 1, NB_INIT_DEFAULT, err));
	return 0;
}

static const char *const names[] = {"lenet5", "lenet5-half", "convstack",
				    NULL};

const char *const *nb_model_names(void)
{
	return names;
}

int nb_model_build(const char *arch, int c, int h, int w, int classes,
		   nb_net **out, char *err)
{
	*out = NULL;
	if (classes < 2)
		return nb_errorf(err, NB_EINVAL, "%s: %d classes (need >= 2)",
				 arch, classes);
	int is_lenet = !strcmp(arch, "lenet5") || !strcmp(arch, "lenet5-half");
	if (is_lenet && (h != 32 || w != 32))
		return nb_errorf(err, NB_EINVAL,
				 "%s needs 32x32 inputs, got %dx%d (pad 28x28 images to 32)",
				 arch, h, w);
	if (!is_lenet && strcmp(arch, "convstack"))
		return nb_errorf(err, NB_EINVAL,
				 "unknown architecture '%s' (built in: lenet5, lenet5-half, convstack)",
				 arch);
	nb_net *net = nb_net_new(c, h, w);
	if (!net)
		return nb_errorf(err, NB_ENOMEM, "out of memory");
	int rc = is_lenet ? build_lenet(net, classes,
					!strcmp(arch, "lenet5-half"), err)
			  : build_convstack(net, classes, err);
	if (rc < 0) {
		nb_net_free(net);
		return rc;
	}
	*out = net;
	return 0;
}
