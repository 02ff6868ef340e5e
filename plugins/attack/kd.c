/*
 * kd.c - the `kd` attack: Hinton's logit distillation as the paper's
 * students use it (loss_fn_kd):
 *
 *   alpha * tau^2 * KL(p^tau(z_T) || p^tau(z_S)) + (1 - alpha) * CE(z_S, y)
 *
 * Black box: the teacher is only queried for its released outputs
 * (nb_teacher_query), after any release transform of its defence. Trained
 * with the core's loop on the training data.
 */
#include <stddef.h>
#include <stdlib.h>

#include "plugin.h"

struct opts {
	double alpha, tau;
};

static const nb_option options[] = {
	{"alpha", NB_OPT_FLOAT, offsetof(struct opts, alpha), "0.9",
	 "weight of the distillation term (paper: 0.9)", 0, 1},
	{"tau", NB_OPT_FLOAT, offsetof(struct opts, tau), "4",
	 "temperature (paper: 4 CIFAR-10, 20 CIFAR-100 and Tiny-ImageNet)",
	 1e-3, 1e3},
	{NULL, 0, 0, NULL, NULL, 0, 0}};

struct state {
	struct opts o;
	nb_teacher *teacher;
	float *zt;
	int cap;
};

static int init(const void *opts, const nb_attack_env *env, void **out,
		char *err)
{
	struct state *s = calloc(1, sizeof *s);
	if (!s)
		return nb_errorf(err, NB_ENOMEM, "out of memory");
	s->o = *(const struct opts *)opts;
	s->teacher = env->teacher;
	*out = s;
	return 0;
}

static int loss(void *state, const nb_batch *b, const float *z, int C,
		float *dz, nb_loss_terms *terms, char *err)
{
	struct state *s = state;
	if (nb_teacher_classes(s->teacher) != C)
		return nb_errorf(err, NB_EINVAL,
				 "kd: the teacher has %d classes, the student %d",
				 nb_teacher_classes(s->teacher), C);
	if (b->n > s->cap) {
		float *zt = realloc(s->zt, (size_t)b->n * C * sizeof *zt);
		if (!zt)
			return nb_errorf(err, NB_ENOMEM, "out of memory");
		s->zt = zt;
		s->cap = b->n;
	}
	int rc = nb_teacher_query(s->teacher, b->x, b->n, s->zt, err);
	if (rc < 0)
		return rc;
	nb_kd_loss(z, s->zt, b->y, b->n, C, (float)s->o.alpha,
		   (float)s->o.tau, dz, 1.0f, terms);
	return 0;
}

static void fini(void *state)
{
	struct state *s = state;
	if (s)
		free(s->zt);
	free(s);
}

static const nb_attack_ops ops = {
	.access = NB_ACCESS_OUTPUTS | NB_ACCESS_TRAIN_DATA,
	.init = init,
	.loss = loss,
	.fini = fini,
};

NB_PLUGIN_EXPORT const nb_plugin nb_plugin_desc = {
	NB_PLUGIN_HEADER,
	.kind = NB_PLUGIN_ATTACK,
	.name = "kd",
	.summary = "logit distillation: alpha*tau^2*KL(teacher || student) + (1-alpha)*CE (black box)",
	.options = options,
	.opts_size = sizeof(struct opts),
	.attack = &ops,
};
