/*
 * dafl.c - the `dafl` attack: Data-Free Learning of student networks (Chen
 * et al., ICCV 2019), as its official code (DAFL/DAFL-train.py) trains.
 *
 * Data-free and white box: the attack never sees a training image. A
 * generator G (dafl.h) turns Gaussian noise z into images; every iteration
 *
 *   x = G(z); the frozen teacher gives logits o and its penultimate
 *   features f (tap "features"); t = argmax o;
 *   L_G = oh * CE(o, t) + ie * sum_k pm_k log10 pm_k + a * (-mean |f|),
 *         pm = batch mean of softmax(o);
 *   L_S = KL(softmax(o) || softmax(S(x))) summed over classes / B, at
 *         temperature 1, with x and o constants (detached);
 *   one step of G's Adam on L_G (its gradient reaches G through the frozen
 *   teacher) and one step of the student's optimiser on L_S.
 *
 * The official code sums both losses and calls backward once; since the
 * student's loss sees detached x and o and the generator's loss never sees
 * the student, that is the same as this order: synth makes x with the
 * current G and steps G, the core's loop then steps the student on that
 * same x (before G's step, as in the original) with the loss hook.
 *
 * The student is trained with DAFL's own optimiser by default (see the
 * option student_optim): Adam lr_s on MNIST, SGD lr_s with momentum 0.9,
 * weight decay 5e-4 and x0.1 at 40%, x0.01 at 80% of the epochs on CIFAR
 * (800 and 1600 of 2000), or the suite's student schedule. The images go to
 * the student as G makes them (its last layer is an affine-free BatchNorm,
 * so they are normalised per batch); the test set is normalised as usual.
 *
 * Its state (G's weights and BatchNorm buffers, G's Adam moments, the noise
 * stream) joins the student's resumable state file, so a killed run resumes
 * bit-identically.
 *
 * What it deliberately does not do: the teacher's released outputs are not
 * used (white box: whoever holds the weights computes the raw logits), and
 * G is never switched to evaluation mode (the original never does).
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "dafl.h"
#include "plugin.h"

struct opts {
	int latent, batch, iters, epochs, width;
	double lr_g, lr_s, oh, ie, a;
	char student_optim[NB_OPT_STRING_LEN];
};

static const nb_option options[] = {
    {"latent", NB_OPT_INT, offsetof(struct opts, latent), "100",
     "latent size of the generator (DAFL: 100 MNIST, 1000 CIFAR)", 1, 100000},
    {"batch", NB_OPT_INT, offsetof(struct opts, batch), "512",
     "synthetic images per iteration (DAFL: 512 MNIST, 1024 CIFAR)", 2,
     1000000},
    {"iters", NB_OPT_INT, offsetof(struct opts, iters), "120",
     "iterations (generator and student steps) per epoch (DAFL: 120)", 1,
     1000000},
    {"epochs", NB_OPT_INT, offsetof(struct opts, epochs), "0",
     "epochs; 0 = the suite's student epochs (DAFL: 200 MNIST, 2000 "
     "CIFAR)",
     0, 1000000},
    {"width", NB_OPT_INT, offsetof(struct opts, width), "128",
     "channels of the generator's first stage (DAFL: 128; the second has "
     "half)",
     2, 4096},
    {"lr_g", NB_OPT_FLOAT, offsetof(struct opts, lr_g), "0.2",
     "generator Adam learning rate (DAFL: 0.2 MNIST, 0.02 CIFAR)", 0, 10},
    {"lr_s", NB_OPT_FLOAT, offsetof(struct opts, lr_s), "0.002",
     "student learning rate (DAFL: Adam 2e-3 MNIST, SGD 0.1 CIFAR)", 0, 10},
    {"student_optim", NB_OPT_STRING, offsetof(struct opts, student_optim),
     "adam",
     "adam (DAFL MNIST: Adam lr_s), sgd (DAFL CIFAR: SGD lr_s, momentum "
     "0.9, wd 5e-4, x0.1 at 40% and x0.01 at 80% of the epochs) or suite "
     "(the suite's student optimiser and schedule; lr_s unused)",
     0, -1},
    {"oh", NB_OPT_FLOAT, offsetof(struct opts, oh), "1",
     "weight of the one-hot loss (DAFL: 1 MNIST, 0.05 CIFAR-10, 0.5 "
     "CIFAR-100)",
     0, 1e6},
    {"ie", NB_OPT_FLOAT, offsetof(struct opts, ie), "5",
     "weight of the information-entropy loss (DAFL: 5 MNIST and "
     "CIFAR-10, 20 CIFAR-100)",
     0, 1e6},
    {"a", NB_OPT_FLOAT, offsetof(struct opts, a), "0.1",
     "weight of the activation loss (DAFL: 0.1 MNIST, 0.01 CIFAR-10, 0.1 "
     "CIFAR-100)",
     0, 1e6},
    {NULL, 0, 0, NULL, NULL, 0, 0}};

struct state {
	struct opts o;
	nb_net *gen, *teacher;
	nb_optim *gopt;
	nb_rng noise;
	int classes, feat_node, img; /* img = c*h*w */
	float *z, *logits, *dx;	     /* (cap,latent), (cap,C), (cap,img) */
	int cap;
	int epoch, step, n; /* the batch o belongs to; epoch -1: none */
};

static void fini(void *state)
{
	struct state *s = state;
	if (!s)
		return;
	nb_optim_free(s->gopt);
	nb_net_free(s->gen);
	free(s->z);
	free(s->logits);
	free(s->dx);
	free(s);
}

/* A seed for G's initialisation that differs from the student's (both
 * would otherwise draw from the run seed's NB_RNG_INIT stream). */
static uint64_t gen_seed(uint64_t seed)
{
	return seed * 0x9E3779B97F4A7C15ULL + 0x4441464CULL; /* "DAFL" */
}

static int init(const void *opts, const nb_attack_env *env, void **out,
		char *err)
{
	struct state *s = calloc(1, sizeof *s);
	if (!s)
		return nb_errorf(err, NB_ENOMEM, "out of memory");
	s->o = *(const struct opts *)opts;
	s->epoch = -1;
	int rc;
	const char *so = s->o.student_optim;
	if (strcmp(so, "adam") && strcmp(so, "sgd") && strcmp(so, "suite")) {
		rc = nb_errorf(err, NB_EINVAL,
			       "dafl: student_optim '%s': use adam, sgd or "
			       "suite",
			       so);
		goto fail;
	}
	s->teacher = nb_teacher_network(env->teacher);
	if (!s->teacher) {
		rc = nb_errorf(err, NB_EINVAL,
			       "dafl: no teacher network (white-box access "
			       "was not granted)");
		goto fail;
	}
	s->feat_node = nb_net_find_tap(s->teacher, "features");
	if (s->feat_node < 0) {
		rc = nb_errorf(err, NB_EINVAL,
			       "dafl: the teacher has no 'features' tap (its "
			       "penultimate features, for the activation "
			       "loss)");
		goto fail;
	}
	int c, h, w, tc, th, tw;
	nb_net_node_shape(env->student, 0, &c, &h, &w);
	nb_net_node_shape(s->teacher, 0, &tc, &th, &tw);
	if (c != tc || h != th || w != tw) {
		rc = nb_errorf(err, NB_EINVAL,
			       "dafl: the student takes %dx%dx%d inputs, the "
			       "teacher %dx%dx%d",
			       c, h, w, tc, th, tw);
		goto fail;
	}
	s->classes = nb_teacher_classes(env->teacher);
	int sc;
	nb_net_node_shape(env->student, nb_net_output_node(env->student), &sc,
			  NULL, NULL);
	if (sc != s->classes) {
		rc = nb_errorf(err, NB_EINVAL,
			       "dafl: the teacher has %d classes, the student "
			       "%d",
			       s->classes, sc);
		goto fail;
	}
	s->img = c * h * w;
	if ((rc = nb_dafl_generator(s->o.latent, c, h, w, s->o.width, &s->gen,
				    err)) < 0 ||
	    (rc = nb_net_finalize(s->gen, gen_seed(env->seed), err)) < 0)
		goto fail;
	nb_net_set_training(s->gen, 1);
	nb_param **params;
	int np = nb_net_params(s->gen, &params);
	/* torch.optim.Adam(generator.parameters(), lr=opt.lr_G) */
	nb_optim_config oc = nb_optim_adam_default();
	oc.lr = (float)s->o.lr_g;
	oc.weight_decay = 0;
	s->gopt = nb_optim_new(&oc, params, np, err);
	if (!s->gopt) {
		rc = NB_ENOMEM;
		goto fail;
	}
	nb_rng_seed(&s->noise, env->seed, NB_RNG_NOISE);
	*out = s;
	return 0;
fail:
	fini(s);
	return rc;
}

static int plan(void *state, const nb_attack_env *env, nb_synth_plan *p,
		char *err)
{
	(void)env;
	(void)err;
	struct state *s = state;
	p->steps = s->o.iters;
	p->batch = s->o.batch;
	if (s->o.epochs > 0)
		p->epochs = s->o.epochs;
	if (!strcmp(s->o.student_optim, "adam")) {
		/* torch.optim.Adam(net.parameters(), lr=opt.lr_S) */
		p->optim = nb_optim_adam_default();
		p->optim.lr = (float)s->o.lr_s;
		p->optim.weight_decay = 0;
		memset(&p->sched, 0, sizeof p->sched);
		p->sched.kind = NB_SCHED_CONSTANT;
	} else if (!strcmp(s->o.student_optim, "sgd")) {
		/* SGD(lr_S, momentum 0.9, weight_decay 5e-4) and
		 * adjust_learning_rate: x0.1 from epoch 800, x0.01 from 1600
		 * of 2000, kept as fractions of the run */
		p->optim = nb_optim_sgd_default();
		p->optim.lr = (float)s->o.lr_s;
		p->optim.momentum = 0.9f;
		p->optim.weight_decay = 5e-4f;
		memset(&p->sched, 0, sizeof p->sched);
		p->sched.kind = NB_SCHED_STEP;
		p->sched.gamma = 0.1f;
		p->sched.milestones[0] = p->epochs * 2 / 5;
		p->sched.milestones[1] = p->epochs * 4 / 5;
		p->sched.n_milestones = 2;
	}
	p->sched.base_lr = p->optim.lr;
	return 0;
}

static int reserve(struct state *s, int n, char *err)
{
	if (n <= s->cap)
		return 0;
	float *z = realloc(s->z, (size_t)n * s->o.latent * sizeof *z);
	if (z)
		s->z = z;
	float *lg = realloc(s->logits, (size_t)n * s->classes * sizeof *lg);
	if (lg)
		s->logits = lg;
	float *dx = realloc(s->dx, (size_t)n * s->img * sizeof *dx);
	if (dx)
		s->dx = dx;
	if (!z || !lg || !dx)
		return nb_errorf(err, NB_ENOMEM,
				 "dafl: out of memory for a batch of %d", n);
	s->cap = n;
	return 0;
}

/* One DAFL iteration's generator half: x = G(z), the teacher's logits and
 * pseudo-labels, and one Adam step of G on oh*L_oh + ie*L_ie + a*L_a. */
static int synth(void *state, const nb_attack_env *env, int epoch, int step,
		 int n, float *x, int *y, char *err)
{
	(void)env;
	struct state *s = state;
	const int C = s->classes;
	int rc = reserve(s, n, err);
	if (rc < 0)
		return rc;
	size_t nz = (size_t)n * s->o.latent;
	for (size_t i = 0; i < nz; i++)
		s->z[i] = (float)nb_rng_normal(&s->noise);
	/* x = G(z), G in training mode (batch statistics) */
	if ((rc = nb_net_forward(s->gen, s->z, n, err)) < 0)
		return rc;
	int g_out = nb_net_output_node(s->gen);
	memcpy(x, nb_net_output(s->gen, g_out), (size_t)n * s->img * sizeof *x);
	/* the frozen teacher, evaluation mode */
	nb_net_set_training(s->teacher, 0);
	if ((rc = nb_net_forward(s->teacher, x, n, err)) < 0)
		return rc;
	int t_out = nb_net_output_node(s->teacher);
	memcpy(s->logits, nb_net_output(s->teacher, t_out),
	       (size_t)n * C * sizeof(float));
	int fc, fh, fw;
	nb_net_node_shape(s->teacher, s->feat_node, &fc, &fh, &fw);
	const float *f = nb_net_output(s->teacher, s->feat_node);
	float *d_o = nb_net_grad(s->teacher, t_out);
	float *d_f = nb_net_grad(s->teacher, s->feat_node);
	if (!d_o || !d_f)
		return nb_errorf(err, NB_ENOMEM,
				 "dafl: out of memory for gradients");
	/* y = t = argmax o: the pseudo-labels, for the log's train_acc */
	nb_dafl_onehot_loss(s->logits, n, C, y, d_o, (float)s->o.oh);
	nb_dafl_entropy_loss(s->logits, n, C, d_o, (float)s->o.ie);
	nb_dafl_activation_loss(f, (size_t)n * fc * fh * fw, d_f,
				(float)s->o.a);
	/* back through the teacher to the images, then through G */
	if ((rc = nb_net_backward(s->teacher, s->dx, err)) < 0)
		return rc;
	float *dg = nb_net_grad(s->gen, g_out);
	if (!dg)
		return nb_errorf(err, NB_ENOMEM,
				 "dafl: out of memory for gradients");
	size_t ni = (size_t)n * s->img;
	for (size_t i = 0; i < ni; i++)
		dg[i] += s->dx[i];
	nb_optim_zero_grad(s->gopt);
	if ((rc = nb_net_backward(s->gen, NULL, err)) < 0)
		return rc;
	if ((rc = nb_optim_step(s->gopt)) < 0)
		return nb_errorf(err, rc,
				 "dafl: generator optimiser: out of "
				 "memory");
	s->epoch = epoch;
	s->step = step;
	s->n = n;
	return 0;
}

/* The student's loss on the batch synth just made:
 * KL(softmax(o) || softmax(s)) summed over classes / B, temperature 1. */
static int loss(void *state, const nb_batch *b, const float *z, int C,
		float *dz, nb_loss_terms *terms, char *err)
{
	struct state *s = state;
	if (b->epoch != s->epoch || b->step != s->step || b->n != s->n ||
	    C != s->classes)
		return nb_errorf(err, NB_EINVAL,
				 "dafl: the loss of step %d of epoch %d is not "
				 "that of the last synthetic batch",
				 b->step + 1, b->epoch + 1);
	terms->kl = nb_kl_div_temp(s->logits, z, b->n, C, 1.0f, NULL, dz, 1.0f);
	/* against the pseudo-labels, for the log only */
	terms->ce = nb_cross_entropy(z, b->y, b->n, C, 0.0f, NULL, 0.0f);
	terms->total = terms->kl;
	return 0;
}

/* G's weights and buffers, its Adam state, the noise stream. */
static int save(void *state, nb_bag *out, char *err)
{
	struct state *s = state;
	int rc;
	if ((rc = nb_bag_put_net(out, "generator", s->gen, err)) < 0 ||
	    (rc = nb_bag_put_optim(out, "generator_optim", s->gopt, err)) < 0)
		return rc;
	return nb_bag_put_rng(out, "noise", &s->noise, err);
}

static int load(void *state, nb_bag *in, char *err)
{
	struct state *s = state;
	int rc;
	if ((rc = nb_bag_get_net(in, "generator", s->gen, err)) < 0 ||
	    (rc = nb_bag_get_optim(in, "generator_optim", s->gopt, err)) < 0)
		return rc;
	return nb_bag_get_rng(in, "noise", &s->noise, err);
}

static const nb_attack_ops ops = {
    .access = NB_ACCESS_OUTPUTS | NB_ACCESS_GRADIENTS | NB_ACCESS_FEATURES,
    .init = init,
    .loss = loss,
    .fini = fini,
    .plan = plan,
    .synth = synth,
    .save = save,
    .load = load,
};

NB_PLUGIN_EXPORT const nb_plugin nb_plugin_desc = {
    NB_PLUGIN_HEADER,
    .kind = NB_PLUGIN_ATTACK,
    .name = "dafl",
    .summary = "DAFL: a generator trained against the teacher (one-hot, "
	       "activation, information-entropy losses) feeds KL "
	       "distillation (data-free, white box)",
    .options = options,
    .opts_size = sizeof(struct opts),
    .attack = &ops,
};
