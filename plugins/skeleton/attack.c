/*
 * attack.c - a skeleton attack plugin: copy it to start your own.
 *
 *     cc -shared -fPIC $(pkg-config --cflags nasty-bench) attack.c -o my-attack.so
 *
 * An attack trains a student from a teacher. It declares the access it
 * needs in .access and the core gives it that and nothing more: with
 * NB_ACCESS_OUTPUTS only, nb_teacher_query is all it can call. This one
 * learns from the teacher's hard labels only (its top-1 class, as an API
 * that returns no probabilities would allow):
 *   (1 - label_weight) * CE(z_S, argmax z_T) + label_weight * CE(z_S, y),
 * trained with the core's loop on the training data.
 *
 * A data-free attack (no NB_ACCESS_TRAIN_DATA) adds two hooks: plan (how
 * many synthetic batches per epoch, of what size, and the student's
 * optimiser) and synth (fills each batch: a generator's images, or images
 * optimised against the teacher). If it keeps state across steps (a
 * generator, its optimiser, a random stream), save and load put that state
 * into the core's resumable state file (bag.h). plugins/attack/dafl.c is a
 * complete example.
 */
#include <stddef.h>
#include <stdlib.h>

#include <nasty-bench/plugin.h>

struct opts {
	double label_weight;
};

static const nb_option options[] = {
	{"label_weight", NB_OPT_FLOAT, offsetof(struct opts, label_weight),
	 "0", "weight of the true labels against the teacher's", 0, 1},
	{NULL, 0, 0, NULL, NULL, 0, 0}};

struct state {
	struct opts o;
	nb_teacher *teacher;
	float *zt;    /* teacher logits of the current batch */
	int *labels; /* the teacher's top-1 classes */
	int cap;      /* rows zt and labels hold */
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
	if (b->n > s->cap) {
		float *zt = realloc(s->zt, (size_t)b->n * C * sizeof *zt);
		int *lab = realloc(s->labels, (size_t)b->n * sizeof *lab);
		if (zt)
			s->zt = zt;
		if (lab)
			s->labels = lab;
		if (!zt || !lab)
			return nb_errorf(err, NB_ENOMEM, "out of memory");
		s->cap = b->n;
	}
	int rc = nb_teacher_query(s->teacher, b->x, b->n, s->zt, err);
	if (rc < 0)
		return rc;
	for (int i = 0; i < b->n; i++) {
		const float *row = s->zt + (size_t)i * C;
		int best = 0;
		for (int k = 1; k < C; k++)
			if (row[k] > row[best])
				best = k;
		s->labels[i] = best;
	}
	float w = (float)s->o.label_weight;
	double from_teacher = nb_cross_entropy(z, s->labels, b->n, C, 0.0f,
					       dz, 1.0f - w);
	terms->ce = nb_cross_entropy(z, b->y, b->n, C, 0.0f, dz, w);
	terms->kl = 0;
	terms->total = (1.0 - w) * from_teacher + w * terms->ce;
	return 0;
}

static void fini(void *state)
{
	struct state *s = state;
	if (s) {
		free(s->zt);
		free(s->labels);
	}
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
	.name = "skeleton-attack",
	.summary = "skeleton: learns from the teacher's top-1 labels (black box)",
	.options = options,
	.opts_size = sizeof(struct opts),
	.attack = &ops,
};
