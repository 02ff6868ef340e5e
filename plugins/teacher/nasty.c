/*
 * nasty.c - the `nasty` teacher strategy (Ma et al., ICLR 2021,
 * "Undistillable"): self-undermining knowledge distillation. The teacher
 * is trained from scratch with
 *
 *   L = CE(z_T, y) - omega * tau^2 * KL(p^tau(z_T) || p^tau(z_A))
 *
 * against a frozen, normally trained adversary A (evaluation mode, no
 * gradient), in the argument order of the paper's code (the trainable model
 * in the KL's target slot) and PyTorch's batchmean reduction. The core logs
 * the cross entropy and the tau^2*KL term per epoch: a teacher whose KL
 * stays small is "not nasty enough". A NaN loss stops the run as diverged
 * (the loss is unbounded below; the paper gives no remedy).
 */
#include <stddef.h>
#include <stdlib.h>

#include "plugin.h"

struct opts {
	double omega, tau;
};

static const nb_option options[] = {
	{"omega", NB_OPT_FLOAT, offsetof(struct opts, omega), "0.04",
	 "weight of the KL term (paper: 0.04 CIFAR-10 code, 0.005 CIFAR-100, 0.01 Tiny-ImageNet)",
	 0, 100},
	{"tau", NB_OPT_FLOAT, offsetof(struct opts, tau), "4",
	 "temperature (paper: 4 CIFAR-10, 20 CIFAR-100 and Tiny-ImageNet)",
	 1e-3, 1e3},
	{NULL, 0, 0, NULL, NULL, 0, 0}};

struct state {
	struct opts o;
	nb_net *adversary;
};

static int init(const void *opts, const nb_teacher_env *env, void **out,
		char *err)
{
	if (!env->adversary)
		return nb_errorf(err, NB_EINVAL,
				 "nasty: no adversary (the normal teacher) was given");
	int c, h, w;
	nb_net_node_shape(env->adversary, nb_net_output_node(env->adversary),
			  &c, &h, &w);
	if (c * h * w != env->classes)
		return nb_errorf(err, NB_EINVAL,
				 "nasty: the adversary has %d outputs, the teacher %d",
				 c * h * w, env->classes);
	struct state *s = malloc(sizeof *s);
	if (!s)
		return nb_errorf(err, NB_ENOMEM, "out of memory");
	s->o = *(const struct opts *)opts;
	s->adversary = env->adversary;
	nb_net_set_training(s->adversary, 0);
	nb_net_set_frozen(s->adversary, 1);
	*out = s;
	return 0;
}

static int loss(void *state, const nb_batch *b, const float *z, int C,
		float *dz, nb_loss_terms *terms, char *err)
{
	struct state *s = state;
	/* the frozen adversary only answers: no backward goes through it */
	int rc = nb_net_forward_infer(s->adversary, b->x, b->n, err);
	if (rc < 0)
		return rc;
	const float *za = nb_net_output(s->adversary,
					nb_net_output_node(s->adversary));
	nb_nasty_loss(z, za, b->y, b->n, C, (float)s->o.omega,
		      (float)s->o.tau, dz, 1.0f, terms);
	return 0;
}

static void fini(void *state)
{
	free(state);
}

static const nb_teacher_ops ops = {
	.needs_adversary = 1,
	.init = init,
	.loss = loss,
	.fini = fini,
};

NB_PLUGIN_EXPORT const nb_plugin nb_plugin_desc = {
	NB_PLUGIN_HEADER,
	.kind = NB_PLUGIN_TEACHER,
	.name = "nasty",
	.summary = "nasty teacher: CE - omega*tau^2*KL(teacher || frozen normal teacher)",
	.options = options,
	.opts_size = sizeof(struct opts),
	.teacher = &ops,
};
