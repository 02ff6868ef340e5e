/*
 * schedule.c - learning rate per epoch (0-based), in closed form: constant,
 * MultiStepLR and CosineAnnealingLR (formulas in optim.h).
 *
 * torch's schedulers update the rate recursively each epoch; the closed
 * forms here agree with them to rounding (tests/unit/optim_test.c compares
 * with the values torch reports). Past t_max the cosine keeps going as
 * torch's does (back up towards base over the next t_max epochs).
 *
 * What it deliberately does not do: no warm-up, no per-iteration schedules,
 * no ReduceLROnPlateau; it never touches an optimiser (the caller passes the
 * value to nb_optim_set_lr). Degenerate inputs are not errors: a negative
 * epoch gives base_lr, t_max <= 0 gives base_lr, milestones need not be
 * sorted, and one listed twice counts twice (as torch's Counter does).
 */
#include <math.h>

#include "optim.h"

static const double nb_pi = 3.14159265358979323846;

float nb_schedule_lr(const nb_schedule *s, int epoch)
{
	double base = s->base_lr;
	if (epoch < 0)
		return s->base_lr;
	switch (s->kind) {
	case NB_SCHED_STEP: {
		int n = s->n_milestones;
		if (n > NB_SCHED_MAX_MILESTONES)
			n = NB_SCHED_MAX_MILESTONES;
		int passed = 0;
		for (int i = 0; i < n; i++)
			if (s->milestones[i] <= epoch)
				passed++;
		return (float)(base * pow((double)s->gamma, passed));
	}
	case NB_SCHED_COSINE: {
		if (s->t_max <= 0)
			return s->base_lr;
		double emin = s->eta_min;
		double c = cos(nb_pi * (double)epoch / (double)s->t_max);
		return (float)(emin + (base - emin) * (1.0 + c) / 2.0);
	}
	case NB_SCHED_CONSTANT:
	default:
		return s->base_lr;
	}
}
