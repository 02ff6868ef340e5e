/*
 * normal.c - the `normal` teacher strategy: plain cross-entropy training
 * with the suite's schedule (train_scratch.py in the paper's code). It is
 * the reference every defence is measured against, and the adversary the
 * nasty strategy trains against. Releases its logits unchanged.
 */
#include "plugin.h"

static int loss(void *state, const nb_batch *b, const float *z, int C,
		float *dz, nb_loss_terms *terms, char *err)
{
	(void)state;
	(void)err;
	terms->ce = nb_cross_entropy(z, b->y, b->n, C, 0.0f, dz, 1.0f);
	terms->total = terms->ce;
	terms->kl = 0;
	return 0;
}

static const nb_teacher_ops ops = {.needs_adversary = 0, .loss = loss};

NB_PLUGIN_EXPORT const nb_plugin nb_plugin_desc = {
	NB_PLUGIN_HEADER,
	.kind = NB_PLUGIN_TEACHER,
	.name = "normal",
	.summary = "cross-entropy training (the undefended reference)",
	.teacher = &ops,
};
