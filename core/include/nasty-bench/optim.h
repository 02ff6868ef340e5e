/*
 * optim.h - optimisers and learning-rate schedules with PyTorch semantics.
 *
 * An optimiser updates a list of parameters (nb_param, see net.h); it skips
 * frozen parameters and buffers (running statistics). It owns its state
 * (momentum buffers, Adam moments), allocated lazily at the first step, and
 * nb_optim_free releases it. The parameter list must stay the same for the
 * optimiser's life.
 *
 * SGD (torch.optim.SGD): g = grad + wd*w; buf = g at the first step, then
 *   buf = momentum*buf + (1-dampening)*g; g = nesterov ? g + momentum*buf :
 *   buf; w -= lr*g.
 * Adam (torch.optim.Adam, L2 weight decay added to the gradient):
 *   m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; t += 1;
 *   w -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
 */
#ifndef NASTY_BENCH_OPTIM_H
#define NASTY_BENCH_OPTIM_H

#include <stdint.h>

#include "net.h"

enum nb_optim_kind { NB_OPTIM_SGD = 1, NB_OPTIM_ADAM = 2 };

typedef struct nb_optim_config {
	enum nb_optim_kind kind;
	float lr;
	float weight_decay;
	/* SGD */
	float momentum;
	float dampening;
	int nesterov;
	/* Adam */
	float beta1, beta2, eps;
} nb_optim_config;

/* The paper's defaults: SGD lr 0.1, momentum 0.9, wd 5e-4; Adam lr 1e-3. */
nb_optim_config nb_optim_sgd_default(void);
nb_optim_config nb_optim_adam_default(void);

typedef struct nb_optim nb_optim;

/* params: n pointers into a network's parameter table (borrowed). */
nb_optim *nb_optim_new(const nb_optim_config *cfg, nb_param *const *params,
		       int n, char *err);
void nb_optim_free(nb_optim *opt);
/* Sets the learning rate used by the next steps (schedules call this). */
void nb_optim_set_lr(nb_optim *opt, float lr);
float nb_optim_lr(const nb_optim *opt);
/* One update from the gradients currently in the parameters. */
int nb_optim_step(nb_optim *opt);
/* Zeroes the gradients of the optimiser's parameters. */
void nb_optim_zero_grad(nb_optim *opt);

/*
 * The optimiser's state as named tensors, for resumable training. Names
 * follow torch's optimizer state: for each parameter that has state, SGD
 * with momentum keeps "<param>.momentum_buffer"; Adam keeps
 * "<param>.exp_avg", "<param>.exp_avg_sq" (floats, the parameter's size)
 * and "<param>.step" (a count). Lazily allocated state that does not exist
 * yet is absent from the list, and a parameter absent from an import gets
 * no state, so a restored optimiser allocates it at the same step as the
 * original would have.
 */
typedef struct nb_optim_tensor {
	char name[NB_NAME_LEN + 16];
	int is_step;      /* 1: a step count in `step`; 0: floats in data */
	const void *data; /* size floats (need not be aligned); NULL for a
			     step count */
	size_t size;
	int64_t step;
} nb_optim_tensor;

/*
 * Lists the state into *out, allocated here (the caller frees it with
 * free()). Returns the count (>= 0) or NB_ENOMEM with err filled. The data
 * pointers point into the optimiser's state and stay valid until its next
 * step, import or free.
 */
int nb_optim_export(const nb_optim *opt, nb_optim_tensor **out, char *err);
/*
 * Replaces the whole state with t[0..n) (the data is copied). Every name
 * must be a piece of state this kind of optimiser keeps for one of its
 * trainable parameters (a buffer has none), floats of the parameter's
 * size; Adam's three pieces come together and its step is >= 1; no name
 * twice. The first problem is reported in one line naming the tensor;
 * nothing changes unless every tensor is good.
 */
int nb_optim_import(nb_optim *opt, const nb_optim_tensor *t, int n,
		    char *err);

/*
 * Learning-rate schedules, evaluated per epoch (0-based) in closed form:
 *  - constant: base;
 *  - step (MultiStepLR): base * gamma^(number of milestones <= epoch);
 *  - cosine (CosineAnnealingLR): eta_min + (base - eta_min) *
 *    (1 + cos(pi * epoch / t_max)) / 2.
 */
enum nb_sched_kind {
	NB_SCHED_CONSTANT = 0,
	NB_SCHED_STEP = 1,
	NB_SCHED_COSINE = 2
};

#define NB_SCHED_MAX_MILESTONES 16

typedef struct nb_schedule {
	enum nb_sched_kind kind;
	float base_lr;
	float gamma;
	int milestones[NB_SCHED_MAX_MILESTONES];
	int n_milestones;
	int t_max;
	float eta_min;
} nb_schedule;

float nb_schedule_lr(const nb_schedule *s, int epoch);

#endif
