/*
 * teacher.c - a skeleton teacher-strategy (defence) plugin: copy it to
 * start your own.
 *
 *     cc -shared -fPIC $(pkg-config --cflags nasty-bench) teacher.c -o my-defence.so
 *
 * A strategy supplies the loss the teacher is trained with, batch by batch,
 * inside the core's training loop (schedules, evaluation, checkpoints and
 * logs are the core's). This one trains with label-smoothed cross entropy
 * and, as a post-hoc defence, releases temperature-scaled logits.
 */
#include <stddef.h>
#include <stdlib.h>

#include <nasty-bench/plugin.h>

struct opts {
	double smoothing;
	double release_temperature;
};

static const nb_option options[] = {
	{"smoothing", NB_OPT_FLOAT, offsetof(struct opts, smoothing), "0.1",
	 "label smoothing of the training cross entropy", 0, 0.99},
	{"release_temperature", NB_OPT_FLOAT,
	 offsetof(struct opts, release_temperature), "1",
	 "released logits are divided by this", 1e-3, 1e3},
	{NULL, 0, 0, NULL, NULL, 0, 0}};

/* init (optional): once per trained teacher, before the first batch. The
 * state pointer comes back to every hook and to fini. */
static int init(const void *opts, const nb_teacher_env *env, void **state,
		char *err)
{
	(void)env;
	struct opts *copy = malloc(sizeof *copy);
	if (!copy)
		return nb_errorf(err, NB_ENOMEM, "out of memory");
	*copy = *(const struct opts *)opts;
	*state = copy;
	return 0;
}

/* loss (required): z are the teacher's logits (b->n, C); accumulate dL/dz
 * into dz and report the parts in terms. A NaN total stops the run as
 * diverged. */
static int loss(void *state, const nb_batch *b, const float *z, int C,
		float *dz, nb_loss_terms *terms, char *err)
{
	(void)err;
	const struct opts *o = state;
	terms->ce = nb_cross_entropy(z, b->y, b->n, C, (float)o->smoothing, dz,
				     1.0f);
	terms->total = terms->ce;
	terms->kl = 0;
	return 0;
}

/* release (optional): what an attacker sees, transformed in place. */
static int release(void *state, float *logits, int n, int C, char *err)
{
	(void)err;
	const struct opts *o = state;
	for (long i = 0; i < (long)n * C; i++)
		logits[i] /= (float)o->release_temperature;
	return 0;
}

static void fini(void *state)
{
	free(state);
}

static const nb_teacher_ops ops = {
	.needs_adversary = 0,
	.init = init,
	.loss = loss,
	.release = release,
	.fini = fini,
};

NB_PLUGIN_EXPORT const nb_plugin nb_plugin_desc = {
	NB_PLUGIN_HEADER,
	.kind = NB_PLUGIN_TEACHER,
	.name = "skeleton-teacher",
	.summary = "skeleton: label smoothing, temperature-scaled release",
	.options = options,
	.opts_size = sizeof(struct opts),
	.teacher = &ops,
};
