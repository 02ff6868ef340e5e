/*
 * feature-kd.c - the `feature-kd` attack: distillation from the teacher's
 * intermediate feature maps as well as its logits (white box: feature
 * access), trained with the core's loop on the training data:
 *
 *   kd_weight * [alpha * tau^2 * KL(p_T || p_S) + (1 - alpha) * CE]
 *   + hint_weight * sum over hint pairs of MSE(r(S_k), T_k)       (FitNets)
 *   + at_weight / 2 * sum over attention pairs of AT(S_k, T_k)   (AT)
 *
 * FitNets (Romero et al., ICLR 2015): a learned 1x1 convolution r (with
 * bias, PyTorch's default initialisation) maps the student's map to the
 * teacher's channels; the loss is nn.MSELoss. It is trained jointly with
 * the student (as RepDistiller's FitNet baseline, not FitNets' two
 * stages), by its own optimiser with the student's settings and learning
 * rate schedule, stepped inside the loss hook after its gradient.
 * Attention transfer (Zagoruyko & Komodakis, ICLR 2017): the official
 * code's at_loss, weighted by beta/2 (beta = 1e3 there). Both as
 * core/lib/featloss.c computes them.
 *
 * Pairs of taps: "auto" pairs the architectures' stage taps from the
 * deepest backwards (student stageNs with teacher stageNt, stageNs-1 with
 * stageNt-1, ... for min(Ns, Nt) pairs); attention transfer uses every
 * pair, the hint the middle one (FitNets' "middle" guided and hint
 * layers; with two pairs, the first). A list "s:t s:t" (blanks or
 * commas between the pairs) names the taps
 * instead. Maps of different spatial sizes are matched by adaptive average
 * pooling of the larger one to the smaller's size (as RepDistiller's AT).
 *
 * The gradients of the feature terms are injected at the student's tap
 * nodes (nb_net_grad); the core's loop runs the student's backward after
 * the hook. The teacher's logits are its released outputs
 * (nb_teacher_query), its maps the taps of that same forward.
 */
#include <ctype.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "featloss.h"
#include "plugin.h"

struct opts {
	double alpha, tau, kd_weight, hint_weight, at_weight, at_p;
	char hint_pairs[NB_OPT_STRING_LEN], at_pairs[NB_OPT_STRING_LEN];
};

static const nb_option options[] = {
    {"alpha", NB_OPT_FLOAT, offsetof(struct opts, alpha), "0.9",
     "weight of the KL term within the logit KD loss (as kd)", 0, 1},
    {"tau", NB_OPT_FLOAT, offsetof(struct opts, tau), "4",
     "temperature of the logit KD loss (as kd)", 1e-3, 1e3},
    {"kd_weight", NB_OPT_FLOAT, offsetof(struct opts, kd_weight), "1",
     "weight of the whole logit KD loss (0: features only)", 0, 1e6},
    {"hint_weight", NB_OPT_FLOAT, offsetof(struct opts, hint_weight), "100",
     "weight of the FitNets hint loss (0: off; RepDistiller: 100)", 0, 1e9},
    {"at_weight", NB_OPT_FLOAT, offsetof(struct opts, at_weight), "1000",
     "beta of attention transfer, applied as beta/2 (0: off; official: "
     "1000)",
     0, 1e9},
    {"at_p", NB_OPT_FLOAT, offsetof(struct opts, at_p), "2",
     "power p of the attention maps (mean over channels of |A|^p)", 1, 8},
    {"hint_pairs", NB_OPT_STRING, offsetof(struct opts, hint_pairs), "auto",
     "student:teacher taps of the hint, e.g. stage2:stage3 (auto: the "
     "middle stage pair)",
     0, -1},
    {"at_pairs", NB_OPT_STRING, offsetof(struct opts, at_pairs), "auto",
     "student:teacher taps for attention, e.g. stage1:stage1 stage2:stage2 "
     "(auto: every stage pair)",
     0, -1},
    {NULL, 0, 0, NULL, NULL, 0, 0}};

#define MAX_PAIRS 16

/* A student tap and a teacher tap, and the size both are compared at. */
struct pair {
	char sname[NB_NAME_LEN], tname[NB_NAME_LEN];
	int s_node, t_node;
	int Cs, Hs, Ws, Ct, Ht, Wt;
	int H, W; /* the smaller map's size */
	/* the hint regressor (hint pairs only) */
	nb_param *w, *b;
};

struct state {
	struct opts o;
	nb_teacher *teacher;
	nb_net *tnet, *student;
	nb_schedule sched;
	struct pair at[MAX_PAIRS], hint[MAX_PAIRS];
	int n_at, n_hint;
	nb_param *rparams; /* regressor weights and biases, 2 per hint */
	nb_param **rptr;
	nb_optim *ropt;
	float *zt;	      /* teacher logits */
	float *ps, *pt, *dps; /* pooled maps and the pooled map's gradient */
	size_t cap_z, cap_ps, cap_pt, cap_dps;
	nb_workspace ws;
};

/* The stage taps "stage1".."stageN" a network has, as N (they are named
 * consecutively by every architecture plugin). */
static int count_stages(const nb_net *net)
{
	int n = 0;
	char name[32];
	for (;;) {
		snprintf(name, sizeof name, "stage%d", n + 1);
		if (nb_net_find_tap(net, name) < 0)
			return n;
		n++;
	}
}

static int set_pair(struct state *s, struct pair *p, const char *sn,
		    const char *tn, char *err)
{
	memset(p, 0, sizeof *p);
	snprintf(p->sname, sizeof p->sname, "%s", sn);
	snprintf(p->tname, sizeof p->tname, "%s", tn);
	p->s_node = nb_net_find_tap(s->student, sn);
	p->t_node = nb_net_find_tap(s->tnet, tn);
	if (p->s_node < 0 || p->t_node < 0)
		return nb_errorf(err, NB_EINVAL,
				 "feature-kd: the %s has no tap '%s' (taps are "
				 "stage1..stageN and features)",
				 p->s_node < 0 ? "student" : "teacher",
				 p->s_node < 0 ? sn : tn);
	nb_net_node_shape(s->student, p->s_node, &p->Cs, &p->Hs, &p->Ws);
	nb_net_node_shape(s->tnet, p->t_node, &p->Ct, &p->Ht, &p->Wt);
	p->H = p->Hs < p->Ht ? p->Hs : p->Ht;
	p->W = p->Ws < p->Wt ? p->Ws : p->Wt;
	return 0;
}

/* Fills pairs from "auto" (all: every stage pair; else the middle one) or
 * a list "s:t,s:t". Returns the count or a negative code. */
static int parse_pairs(struct state *s, const char *spec, int all,
		       struct pair *out, const char *what, char *err)
{
	int n = 0, rc;
	if (!strcmp(spec, "auto")) {
		int ns = count_stages(s->student), nt = count_stages(s->tnet);
		int m = ns < nt ? ns : nt;
		if (m == 0)
			return nb_errorf(err, NB_EINVAL,
					 "feature-kd: %s=auto, but the %s has "
					 "no stage taps; name the taps (e.g. "
					 "%s=features:features)",
					 what, ns ? "teacher" : "student",
					 what);
		if (m > MAX_PAIRS)
			m = MAX_PAIRS;
		for (int i = 0; i < m; i++) {
			if (!all && i != (m - 1) / 2)
				continue;
			char a[32], b[32];
			snprintf(a, sizeof a, "stage%d", ns - m + 1 + i);
			snprintf(b, sizeof b, "stage%d", nt - m + 1 + i);
			if ((rc = set_pair(s, &out[n++], a, b, err)) < 0)
				return rc;
		}
		return n;
	}
	/* "s:t" items separated by commas or blanks */
	const char *p = spec;
	for (;;) {
		while (*p == ',' || isspace((unsigned char)*p))
			p++;
		if (!*p)
			break;
		char sn[NB_NAME_LEN], tn[NB_NAME_LEN];
		int ks = 0, kt = 0;
		while (*p && *p != ':' && *p != ',' &&
		       !isspace((unsigned char)*p) && ks < NB_NAME_LEN - 1)
			sn[ks++] = *p++;
		sn[ks] = 0;
		if (*p == ':')
			for (p++; *p && *p != ':' && *p != ',' &&
				  !isspace((unsigned char)*p) &&
				  kt < NB_NAME_LEN - 1;)
				tn[kt++] = *p++;
		tn[kt] = 0;
		if (!ks || !kt ||
		    (*p && *p != ',' && !isspace((unsigned char)*p)))
			return nb_errorf(err, NB_EINVAL,
					 "feature-kd: %s '%s': expected "
					 "student_tap:teacher_tap, separated "
					 "by blanks or commas",
					 what, spec);
		if (n == MAX_PAIRS)
			return nb_errorf(err, NB_EINVAL,
					 "feature-kd: %s: more than %d pairs",
					 what, MAX_PAIRS);
		if ((rc = set_pair(s, &out[n++], sn, tn, err)) < 0)
			return rc;
	}
	if (!n)
		return nb_errorf(err, NB_EINVAL, "feature-kd: %s is empty",
				 what);
	return n;
}

/* Stream purpose of the regressors' initialisation ("fkd"). */
#define RNG_REGRESSOR 0x666b64u

/* The regressors of the hint pairs: weight (Ct,Cs,1,1) and bias (Ct), as
 * nn.Conv2d(Cs, Ct, 1) initialises them (both U(-1/sqrt(Cs), 1/sqrt(Cs))),
 * and their optimiser. */
static int make_regressors(struct state *s, const nb_attack_env *env, char *err)
{
	int np = 2 * s->n_hint;
	s->rparams = calloc((size_t)np, sizeof *s->rparams);
	s->rptr = calloc((size_t)np, sizeof *s->rptr);
	if (!s->rparams || !s->rptr)
		return nb_errorf(err, NB_ENOMEM, "out of memory");
	nb_rng r;
	nb_rng_seed(&r, env->seed, RNG_REGRESSOR);
	for (int i = 0; i < s->n_hint; i++) {
		struct pair *p = &s->hint[i];
		double bound = 1.0 / sqrt((double)p->Cs);
		for (int k = 0; k < 2; k++) {
			nb_param *q = &s->rparams[2 * i + k];
			snprintf(q->name, sizeof q->name, "regressor%d.%s", i,
				 k ? "bias" : "weight");
			q->role = NB_PARAM_WEIGHT;
			q->ndim = k ? 1 : 4;
			q->shape[0] = p->Ct;
			q->shape[1] = q->shape[2] = q->shape[3] = 1;
			if (!k)
				q->shape[1] = p->Cs;
			q->size = k ? (size_t)p->Ct : (size_t)p->Ct * p->Cs;
			q->data = malloc(q->size * sizeof(float));
			q->grad = calloc(q->size, sizeof(float));
			if (!q->data || !q->grad)
				return nb_errorf(err, NB_ENOMEM,
						 "out of memory");
			for (size_t j = 0; j < q->size; j++)
				q->data[j] =
				    (float)((2 * nb_rng_uniform(&r) - 1) *
					    bound);
			s->rptr[2 * i + k] = q;
		}
		p->w = &s->rparams[2 * i];
		p->b = &s->rparams[2 * i + 1];
	}
	s->ropt = nb_optim_new(&env->cfg->optim, s->rptr, np, err);
	return s->ropt ? 0 : NB_ENOMEM;
}

static int setup(struct state *s, const void *opts, const nb_attack_env *env,
		 char *err)
{
	s->o = *(const struct opts *)opts;
	s->teacher = env->teacher;
	s->student = env->student;
	s->tnet = nb_teacher_network(env->teacher);
	if (!s->tnet)
		return nb_errorf(err, NB_EINVAL,
				 "feature-kd: the core gave no teacher network "
				 "(feature access)");
	if (nb_teacher_classes(env->teacher) != env->classes)
		return nb_errorf(err, NB_EINVAL,
				 "feature-kd: the teacher has %d classes, the "
				 "student %d",
				 nb_teacher_classes(env->teacher),
				 env->classes);
	s->sched = env->cfg->sched;
	if (!(s->sched.base_lr > 0))
		s->sched.base_lr = env->cfg->optim.lr;
	int rc;
	if (s->o.at_weight > 0) {
		rc = parse_pairs(s, s->o.at_pairs, 1, s->at, "at_pairs", err);
		if (rc < 0)
			return rc;
		s->n_at = rc;
	}
	if (s->o.hint_weight > 0) {
		rc = parse_pairs(s, s->o.hint_pairs, 0, s->hint, "hint_pairs",
				 err);
		if (rc < 0)
			return rc;
		s->n_hint = rc;
		if ((rc = make_regressors(s, env, err)) < 0)
			return rc;
	}
	return 0;
}

static void fini(void *state);

static int init(const void *opts, const nb_attack_env *env, void **out,
		char *err)
{
	*out = NULL;
	struct state *s = calloc(1, sizeof *s);
	if (!s)
		return nb_errorf(err, NB_ENOMEM, "out of memory");
	int rc = setup(s, opts, env, err);
	if (rc < 0) {
		fini(s);
		return rc;
	}
	*out = s;
	return 0;
}

/* Grows a buffer to n floats. */
static int reserve(float **p, size_t *cap, size_t n)
{
	if (n <= *cap)
		return 0;
	float *q = realloc(*p, n * sizeof *q);
	if (!q)
		return NB_ENOMEM;
	*p = q;
	*cap = n;
	return 0;
}

/*
 * The two maps of a pair at the common size: pointers to the tap outputs
 * or to pooled copies in s->ps / s->pt. *pooled_s tells whether the
 * student's map was pooled (its gradient then goes through s->dps).
 */
static int pair_maps(struct state *s, const struct pair *p, int n,
		     const float **ms, const float **mt, int *pooled_s)
{
	const float *a = nb_net_output(s->student, p->s_node);
	const float *b = nb_net_output(s->tnet, p->t_node);
	size_t L = (size_t)p->H * p->W;
	if (reserve(&s->ps, &s->cap_ps, (size_t)n * p->Cs * L) < 0 ||
	    reserve(&s->dps, &s->cap_dps, (size_t)n * p->Cs * L) < 0 ||
	    reserve(&s->pt, &s->cap_pt, (size_t)n * p->Ct * L) < 0)
		return NB_ENOMEM;
	*pooled_s = p->Hs != p->H || p->Ws != p->W;
	if (*pooled_s) {
		nb_adaptive_avgpool2d_forward(s->ps, a, n, p->Cs, p->Hs, p->Ws,
					      p->H, p->W);
		a = s->ps;
	}
	if (p->Ht != p->H || p->Wt != p->W) {
		nb_adaptive_avgpool2d_forward(s->pt, b, n, p->Ct, p->Ht, p->Wt,
					      p->H, p->W);
		b = s->pt;
	}
	*ms = a;
	*mt = b;
	return 0;
}

/* After a term wrote its gradient into s->dps (pooled student map), adds
 * it to the student tap's gradient through the pooling. */
static void unpool(struct state *s, const struct pair *p, int n, float *g)
{
	nb_adaptive_avgpool2d_backward(g, s->dps, n, p->Cs, p->Hs, p->Ws, p->H,
				       p->W);
}

static int loss(void *state, const nb_batch *b, const float *z, int C,
		float *dz, nb_loss_terms *terms, char *err)
{
	struct state *s = state;
	int n = b->n, rc;
	if (reserve(&s->zt, &s->cap_z, (size_t)n * C) < 0)
		return nb_errorf(err, NB_ENOMEM, "out of memory");
	/* released logits; the same forward leaves the teacher's taps */
	if ((rc = nb_teacher_query(s->teacher, b->x, n, s->zt, err)) < 0)
		return rc;
	double total = 0;
	if (s->o.kd_weight > 0) {
		nb_loss_terms kt;
		nb_kd_loss(z, s->zt, b->y, n, C, (float)s->o.alpha,
			   (float)s->o.tau, dz, (float)s->o.kd_weight, &kt);
		terms->ce = kt.ce;
		terms->kl = kt.kl;
		total += s->o.kd_weight * kt.total;
	}
	for (int i = 0; i < s->n_at; i++) {
		const struct pair *p = &s->at[i];
		const float *ms, *mt;
		int pooled;
		float *g = nb_net_grad(s->student, p->s_node);
		if (!g || pair_maps(s, p, n, &ms, &mt, &pooled) < 0)
			return nb_errorf(err, NB_ENOMEM, "out of memory");
		int L = p->H * p->W;
		float scale = (float)(s->o.at_weight / 2);
		if (pooled)
			memset(s->dps, 0,
			       (size_t)n * p->Cs * L * sizeof(float));
		double v;
		rc = nb_at_loss(ms, p->Cs, mt, p->Ct, n, L, (float)s->o.at_p,
				pooled ? s->dps : g, scale, &s->ws, &v);
		if (rc < 0)
			return nb_errorf(err, rc,
					 "feature-kd: attention %s:%s: out of "
					 "memory",
					 p->sname, p->tname);
		if (pooled)
			unpool(s, p, n, g);
		total += scale * v;
	}
	if (s->n_hint) {
		nb_optim_set_lr(s->ropt, nb_schedule_lr(&s->sched, b->epoch));
		nb_optim_zero_grad(s->ropt);
	}
	for (int i = 0; i < s->n_hint; i++) {
		const struct pair *p = &s->hint[i];
		const float *ms, *mt;
		int pooled;
		float *g = nb_net_grad(s->student, p->s_node);
		if (!g || pair_maps(s, p, n, &ms, &mt, &pooled) < 0)
			return nb_errorf(err, NB_ENOMEM, "out of memory");
		int L = p->H * p->W;
		float scale = (float)s->o.hint_weight;
		if (pooled)
			memset(s->dps, 0,
			       (size_t)n * p->Cs * L * sizeof(float));
		double v;
		rc = nb_hint_loss(ms, p->Cs, mt, p->Ct, n, L, p->w->data,
				  p->b->data, pooled ? s->dps : g, p->w->grad,
				  p->b->grad, scale, &s->ws, &v);
		if (rc < 0)
			return nb_errorf(
			    err, rc, "feature-kd: hint %s:%s: out of memory",
			    p->sname, p->tname);
		if (pooled)
			unpool(s, p, n, g);
		total += scale * v;
	}
	/* the regressors' step, after every gradient used their old weights */
	if (s->n_hint && isfinite(total) && nb_optim_step(s->ropt) < 0)
		return nb_errorf(err, NB_ENOMEM, "out of memory");
	terms->total = total;
	return 0;
}

/* The regressors and their optimiser's moments join the state file. */
static int save(void *state, nb_bag *out, char *err)
{
	struct state *s = state;
	int rc;
	for (int i = 0; i < 2 * s->n_hint; i++)
		if ((rc = nb_bag_put_f32(out, s->rparams[i].name,
					 s->rparams[i].data, s->rparams[i].size,
					 err)) < 0)
			return rc;
	return s->n_hint
		   ? nb_bag_put_optim(out, "regressor_optim", s->ropt, err)
		   : 0;
}

static int load(void *state, nb_bag *in, char *err)
{
	struct state *s = state;
	int rc;
	for (int i = 0; i < 2 * s->n_hint; i++)
		if ((rc = nb_bag_get_f32(in, s->rparams[i].name,
					 s->rparams[i].data, s->rparams[i].size,
					 err)) < 0)
			return rc;
	return s->n_hint ? nb_bag_get_optim(in, "regressor_optim", s->ropt, err)
			 : 0;
}

static void fini(void *state)
{
	struct state *s = state;
	if (!s)
		return;
	nb_optim_free(s->ropt);
	if (s->rparams)
		for (int i = 0; i < 2 * s->n_hint; i++) {
			free(s->rparams[i].data);
			free(s->rparams[i].grad);
		}
	free(s->rparams);
	free(s->rptr);
	free(s->zt);
	free(s->ps);
	free(s->pt);
	free(s->dps);
	nb_workspace_free(&s->ws);
	free(s);
}

static const nb_attack_ops ops = {
    .access = NB_ACCESS_OUTPUTS | NB_ACCESS_FEATURES | NB_ACCESS_TRAIN_DATA,
    .init = init,
    .loss = loss,
    .fini = fini,
    .save = save,
    .load = load,
};

NB_PLUGIN_EXPORT const nb_plugin nb_plugin_desc = {
    NB_PLUGIN_HEADER,
    .kind = NB_PLUGIN_ATTACK,
    .name = "feature-kd",
    .summary = "feature distillation: FitNets hint + attention transfer + "
	       "logit KD (white box: features, training data)",
    .options = options,
    .opts_size = sizeof(struct opts),
    .attack = &ops,
};
