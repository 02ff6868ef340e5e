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
