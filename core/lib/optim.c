/*
 * optim.c - SGD (momentum, dampening, Nesterov, weight decay) and Adam (L2
 * weight decay), step for step as torch.optim.SGD / torch.optim.Adam in
 * PyTorch 1.x (formulas in optim.h).
 *
 * State lives per parameter, as in torch: a parameter's momentum buffer or
 * Adam moments (float, like a float32 model's) and its Adam step count are
 * allocated the first time the parameter is updated, so a parameter that is
 * frozen at first and trained later starts fresh, exactly like a torch
 * parameter whose .grad was None. The arithmetic of one element is done in
 * double and rounded once when stored. nb_optim_export/nb_optim_import
 * hand that state out and back under torch's names, for resumable
 * training.
 *
 * What it deliberately does not do: no AdamW (decoupled decay), AMSGrad,
 * maximize, gradient clipping or parameter groups with different settings;
 * it never changes the gradients (weight decay is added to a copy); it
 * does not check gradients for NaN (nb_all_finite in loss.h does).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "optim.h"

typedef struct optim_state {
	float *m; /* SGD momentum buffer, or Adam first moment */
	float *v; /* Adam second moment */
	long step;
} optim_state;

struct nb_optim {
	nb_optim_config cfg;
	nb_param **params; /* borrowed parameters, our own array */
	optim_state *state;
	int n;
};

/* Elements per parameter below which a step stays on one thread. */
#define NB_OPTIM_PAR_MIN 32768

nb_optim_config nb_optim_sgd_default(void)
{
	nb_optim_config c;
	memset(&c, 0, sizeof c);
	c.kind = NB_OPTIM_SGD;
	c.lr = 0.1f;
	c.momentum = 0.9f;
	c.weight_decay = 5e-4f;
	c.beta1 = 0.9f;
	c.beta2 = 0.999f;
	c.eps = 1e-8f;
	return c;
}

nb_optim_config nb_optim_adam_default(void)
{
	nb_optim_config c;
	memset(&c, 0, sizeof c);
	c.kind = NB_OPTIM_ADAM;
	c.lr = 1e-3f;
	c.beta1 = 0.9f;
	c.beta2 = 0.999f;
	c.eps = 1e-8f;
	return c;
}

static int check_config(const nb_optim_config *c, char *err)
{
	if (c->kind != NB_OPTIM_SGD && c->kind != NB_OPTIM_ADAM)
		return nb_errorf(
		    err, NB_EINVAL,
		    "optimiser: unknown kind %d (1 = SGD, 2 = Adam)",
		    (int)c->kind);
	if (!(c->lr >= 0) || !(c->weight_decay >= 0))
		return nb_errorf(
		    err, NB_EINVAL,
		    "optimiser: lr (%g) and weight_decay (%g) must be >= 0",
		    c->lr, c->weight_decay);
	if (c->kind == NB_OPTIM_SGD) {
		if (!(c->momentum >= 0))
			return nb_errorf(err, NB_EINVAL,
					 "SGD: momentum %g must be >= 0",
					 c->momentum);
		if (c->nesterov && (c->momentum <= 0 || c->dampening != 0))
			return nb_errorf(
			    err, NB_EINVAL,
			    "SGD: Nesterov momentum requires a momentum > 0 "
			    "and zero dampening (as torch.optim.SGD)");
	} else {
		if (!(c->beta1 >= 0 && c->beta1 < 1) ||
		    !(c->beta2 >= 0 && c->beta2 < 1))
			return nb_errorf(
			    err, NB_EINVAL,
			    "Adam: betas (%g, %g) must be in [0, 1)", c->beta1,
			    c->beta2);
		if (!(c->eps >= 0))
			return nb_errorf(err, NB_EINVAL,
					 "Adam: eps %g must be >= 0", c->eps);
	}
	return NB_OK;
}

nb_optim *nb_optim_new(const nb_optim_config *cfg, nb_param *const *params,
		       int n, char *err)
{
	if (!cfg || n < 0 || (n > 0 && !params)) {
		nb_errorf(err, NB_EINVAL,
			  "optimiser: no configuration or parameters");
		return NULL;
	}
	if (check_config(cfg, err) < 0)
		return NULL;
	nb_optim *o = calloc(1, sizeof *o);
	if (o) {
		o->params = calloc(n > 0 ? n : 1, sizeof *o->params);
		o->state = calloc(n > 0 ? n : 1, sizeof *o->state);
	}
	if (!o || !o->params || !o->state) {
		nb_optim_free(o);
		nb_errorf(err, NB_ENOMEM,
			  "optimiser: out of memory for %d parameters", n);
		return NULL;
	}
	o->cfg = *cfg;
	o->n = n;
	for (int i = 0; i < n; i++)
		o->params[i] = params[i];
	return o;
}

void nb_optim_free(nb_optim *opt)
{
	if (!opt)
		return;
	if (opt->state)
		for (int i = 0; i < opt->n; i++) {
			free(opt->state[i].m);
			free(opt->state[i].v);
		}
	free(opt->state);
	free(opt->params);
	free(opt);
}

void nb_optim_set_lr(nb_optim *opt, float lr)
{
	opt->cfg.lr = lr;
}

float nb_optim_lr(const nb_optim *opt)
{
	return opt->cfg.lr;
}

static int trainable(const nb_param *p)
{
	return p && p->role != NB_PARAM_BUFFER && !p->frozen && p->grad &&
	       p->data && p->size > 0;
}

static void sgd_step(const nb_optim_config *c, nb_param *p, optim_state *s,
		     int first)
{
	const long n = (long)p->size;
	const double lr = c->lr, wd = c->weight_decay, mu = c->momentum;
	const double keep = 1.0 - (double)c->dampening;
	const int nesterov = c->nesterov;
	float *w = p->data, *buf = s->m;
	const float *gr = p->grad;
#pragma omp parallel for schedule(static) if (n >= NB_OPTIM_PAR_MIN)
	for (long i = 0; i < n; i++) {
		double g = (double)gr[i] + wd * (double)w[i];
		if (buf) {
			double b = first ? g : mu * (double)buf[i] + keep * g;
			buf[i] = (float)b;
			b = buf[i]; /* torch keeps the buffer in float */
			g = nesterov ? g + mu * b : b;
		}
		w[i] = (float)((double)w[i] - lr * g);
	}
}

static void adam_step(const nb_optim_config *c, nb_param *p, optim_state *s)
{
	const long n = (long)p->size;
	const double lr = c->lr, wd = c->weight_decay, eps = c->eps;
	const double b1 = c->beta1, b2 = c->beta2;
	s->step++;
	const double bc1 = 1.0 - pow(b1, (double)s->step);
	const double bc2_sqrt = sqrt(1.0 - pow(b2, (double)s->step));
	const double step_size = lr / bc1;
	float *w = p->data, *m = s->m, *v = s->v;
	const float *gr = p->grad;
#pragma omp parallel for schedule(static) if (n >= NB_OPTIM_PAR_MIN)
	for (long i = 0; i < n; i++) {
		double g = (double)gr[i] + wd * (double)w[i];
		m[i] = (float)(b1 * (double)m[i] + (1.0 - b1) * g);
		v[i] = (float)(b2 * (double)v[i] + (1.0 - b2) * g * g);
		double denom = sqrt((double)v[i]) / bc2_sqrt + eps;
		w[i] = (float)((double)w[i] - step_size * (double)m[i] / denom);
	}
}

int nb_optim_step(nb_optim *opt)
{
	const nb_optim_config *c = &opt->cfg;
	for (int k = 0; k < opt->n; k++) {
		nb_param *p = opt->params[k];
		optim_state *s = &opt->state[k];
		if (!trainable(p))
			continue;
		int first = 0;
		if (c->kind == NB_OPTIM_SGD && c->momentum != 0 && !s->m) {
			s->m = malloc(p->size * sizeof *s->m);
			if (!s->m)
				return NB_ENOMEM;
			first = 1;
		}
		if (c->kind == NB_OPTIM_ADAM && !s->m) {
			s->m = calloc(p->size, sizeof *s->m);
			s->v = calloc(p->size, sizeof *s->v);
			if (!s->m || !s->v) {
				free(s->m);
				free(s->v);
				s->m = s->v = NULL;
				return NB_ENOMEM;
			}
		}
		if (c->kind == NB_OPTIM_SGD)
			sgd_step(c, p, s, first);
		else
			adam_step(c, p, s);
	}
	return NB_OK;
}

void nb_optim_zero_grad(nb_optim *opt)
{
	for (int k = 0; k < opt->n; k++) {
		nb_param *p = opt->params[k];
		if (p && p->grad && p->role != NB_PARAM_BUFFER)
			memset(p->grad, 0, p->size * sizeof *p->grad);
	}
}

/* ---- state export and import (resumable training) ----------------------- */

static const char *const sgd_piece = "momentum_buffer";
static const char *const adam_pieces[3] = {"exp_avg", "exp_avg_sq", "step"};

static void piece_name(char *out, const nb_param *p, const char *piece)
{
	snprintf(out, NB_NAME_LEN + 16, "%s.%s", p->name, piece);
}

int nb_optim_export(const nb_optim *opt, nb_optim_tensor **out, char *err)
{
	*out = NULL;
	int count = 0;
	for (int k = 0; k < opt->n; k++)
		if (opt->state[k].m)
			count += opt->cfg.kind == NB_OPTIM_ADAM ? 3 : 1;
	nb_optim_tensor *t = calloc(count > 0 ? count : 1, sizeof *t);
	if (!t)
		return nb_errorf(err, NB_ENOMEM,
				 "optimiser: out of memory for its state list");
	int i = 0;
	for (int k = 0; k < opt->n; k++) {
		const optim_state *s = &opt->state[k];
		const nb_param *p = opt->params[k];
		if (!s->m)
			continue;
		if (opt->cfg.kind == NB_OPTIM_SGD) {
			piece_name(t[i].name, p, sgd_piece);
			t[i].data = s->m;
			t[i++].size = p->size;
			continue;
		}
		piece_name(t[i].name, p, adam_pieces[0]);
		t[i].data = s->m;
		t[i++].size = p->size;
		piece_name(t[i].name, p, adam_pieces[1]);
		t[i].data = s->v;
		t[i++].size = p->size;
		piece_name(t[i].name, p, adam_pieces[2]);
		t[i].is_step = 1;
		t[i++].step = s->step;
	}
	*out = t;
	return count;
}

/* The parameter index and piece (0 m, 1 v, 2 step) a name stands for, or
 * -1 with err filled. */
static int parse_piece(const nb_optim *opt, const nb_optim_tensor *t,
		       int *piece, char *err)
{
	const char *dot = strrchr(t->name, '.');
	if (!dot)
		return nb_errorf(err, NB_EINVAL,
				 "optimiser state '%s': not <param>.<piece>",
				 t->name);
	const char *suffix = dot + 1;
	size_t plen = (size_t)(dot - t->name);
	*piece = -1;
	if (opt->cfg.kind == NB_OPTIM_SGD) {
		if (opt->cfg.momentum != 0 && !strcmp(suffix, sgd_piece))
			*piece = 0;
	} else {
		for (int j = 0; j < 3; j++)
			if (!strcmp(suffix, adam_pieces[j]))
				*piece = j;
	}
	if (*piece < 0)
		return nb_errorf(
		    err, NB_EINVAL, "optimiser state '%s': %s keeps no '%s'",
		    t->name,
		    opt->cfg.kind == NB_OPTIM_SGD
			? (opt->cfg.momentum != 0 ? "SGD"
						  : "SGD without momentum")
			: "Adam",
		    suffix);
	for (int k = 0; k < opt->n; k++) {
		const nb_param *p = opt->params[k];
		if (strlen(p->name) != plen || strncmp(p->name, t->name, plen))
			continue;
		if (p->role == NB_PARAM_BUFFER || !p->grad)
			return nb_errorf(err, NB_EINVAL,
					 "optimiser state '%s': '%s' is a "
					 "buffer, not a trained parameter",
					 t->name, p->name);
		int want_step = *piece == 2;
		if (t->is_step != want_step ||
		    (!want_step && (!t->data || t->size != p->size)))
			return nb_errorf(err, NB_EINVAL,
					 "optimiser state '%s': expected %s, "
					 "got %s of %zu",
					 t->name,
					 want_step ? "a step count"
						   : "floats of the "
						     "parameter's size",
					 t->is_step ? "a step count" : "floats",
					 t->size);
		if (want_step && t->step < 1)
			return nb_errorf(err, NB_EINVAL,
					 "optimiser state '%s': step %lld "
					 "must be >= 1",
					 t->name, (long long)t->step);
		return k;
	}
	return nb_errorf(err, NB_EINVAL,
			 "optimiser state '%s': no parameter '%.*s' in this "
			 "optimiser",
			 t->name, (int)plen, t->name);
}

int nb_optim_import(nb_optim *opt, const nb_optim_tensor *t, int n, char *err)
{
	const int pieces = opt->cfg.kind == NB_OPTIM_ADAM ? 3 : 1;
	/* which tensor gives piece j of parameter k: seen[k * 3 + j] */
	int *seen =
	    malloc((size_t)(opt->n > 0 ? opt->n : 1) * 3 * sizeof *seen);
	optim_state *fresh = calloc(opt->n > 0 ? opt->n : 1, sizeof *fresh);
	int rc = NB_OK;
	if (!seen || !fresh) {
		rc = nb_errorf(err, NB_ENOMEM,
			       "optimiser: out of memory for its state");
		goto out;
	}
	for (int i = 0; i < opt->n * 3; i++)
		seen[i] = -1;
	for (int i = 0; i < n; i++) {
		int piece = -1;
		int k = parse_piece(opt, &t[i], &piece, err);
		if (k < 0) {
			rc = k;
			goto out;
		}
		if (seen[k * 3 + piece] >= 0) {
			rc = nb_errorf(err, NB_EINVAL,
				       "optimiser state '%s' given twice",
				       t[i].name);
			goto out;
		}
		seen[k * 3 + piece] = i;
	}
	for (int k = 0; k < opt->n && rc == NB_OK; k++) {
		int have = 0;
		for (int j = 0; j < pieces; j++)
			have += seen[k * 3 + j] >= 0;
		if (have == 0)
			continue;
		if (have != pieces) {
			rc = nb_errorf(err, NB_EINVAL,
				       "optimiser state of '%s' is incomplete "
				       "(Adam needs exp_avg, exp_avg_sq and "
				       "step)",
				       opt->params[k]->name);
			break;
		}
		size_t bytes = opt->params[k]->size * sizeof(float);
		fresh[k].m = malloc(bytes);
		if (pieces == 3)
			fresh[k].v = malloc(bytes);
		if (!fresh[k].m || (pieces == 3 && !fresh[k].v)) {
			rc = nb_errorf(err, NB_ENOMEM,
				       "optimiser: out of memory for its "
				       "state");
			break;
		}
		memcpy(fresh[k].m, t[seen[k * 3]].data, bytes);
		if (pieces == 3) {
			memcpy(fresh[k].v, t[seen[k * 3 + 1]].data, bytes);
			fresh[k].step = t[seen[k * 3 + 2]].step;
		}
	}
	if (rc == NB_OK) {
		/* all good: swap the new state in, the old one out */
		optim_state *old = opt->state;
		opt->state = fresh;
		fresh = old;
	}
out:
	if (fresh)
		for (int k = 0; k < opt->n; k++) {
			free(fresh[k].m);
			free(fresh[k].v);
		}
	free(fresh);
	free(seen);
	return rc;
}
