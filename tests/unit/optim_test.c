/*
 * optim_test.c - tests of core/lib/optim.c and schedule.c: parameter
 * trajectories of SGD and Adam and the learning rate per epoch against
 * PyTorch golden values (tests/fixtures/golden_loss.h, made by
 * make_golden.py), plus the state rules (lazy, per parameter; frozen
 * parameters and buffers untouched), the threaded path against the serial
 * one, and the configuration checks.
 *
 * Not tested here: training loops that use them (train_test.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "optim.h"
#include "testutil.h"

#define GL_WANT_OPTIM
#include "../fixtures/golden_loss.h"

#define PARAM_RTOL 1e-6
#define PARAM_ATOL 1e-7 /* weights of size ~1 that pass near 0 */
#define LR_RTOL 1e-6

static int close_rel(double a, double b, double atol, double rtol)
{
	return fabs(a - b) <= atol + rtol * fmax(fabs(a), fabs(b));
}

/* A parameter over caller-owned storage. */
static nb_param make_param(const char *name, float *data, float *grad, size_t n,
			   enum nb_param_role role, int frozen)
{
	nb_param p;
	memset(&p, 0, sizeof p);
	snprintf(p.name, sizeof p.name, "%s", name);
	p.role = role;
	p.frozen = frozen;
	p.ndim = 1;
	p.shape[0] = (int)n;
	p.size = n;
	p.data = data;
	p.grad = grad;
	return p;
}

static nb_optim_config config_of(const gl_opt_case *c)
{
	nb_optim_config cfg =
	    c->adam ? nb_optim_adam_default() : nb_optim_sgd_default();
	cfg.lr = c->lr[0];
	cfg.weight_decay = c->weight_decay;
	if (!c->adam) {
		cfg.momentum = c->momentum;
		cfg.dampening = c->dampening;
		cfg.nesterov = c->nesterov;
	}
	return cfg;
}

/*
 * The golden parameters, plus a frozen weight and a buffer whose "grads"
 * are non-zero: the optimiser must leave both alone.
 */
static void test_golden_trajectories(void)
{
	for (int k = 0; k < GL_N_OPT_CASES; k++) {
		const gl_opt_case *c = &gl_opt_cases[k];
		float w[GL_OPT_N], g[GL_OPT_N];
		float fz[3] = {1, 2, 3}, fzg[3] = {1, 1, 1};
		float buf[2] = {4, 5}, bufg[2] = {1, 1};
		memcpy(w, gl_opt_init, sizeof w);
		nb_param ps[GL_OPT_NPARAM + 2];
		nb_param *pp[GL_OPT_NPARAM + 2];
		ps[0] =
		    make_param("frozen.weight", fz, fzg, 3, NB_PARAM_WEIGHT, 1);
		size_t off = 0;
		for (int i = 0; i < GL_OPT_NPARAM; i++) {
			ps[i + 1] =
			    make_param("w", w + off, g + off, gl_opt_sizes[i],
				       NB_PARAM_WEIGHT, 0);
			off += gl_opt_sizes[i];
		}
		ps[GL_OPT_NPARAM + 1] = make_param("bn.running_mean", buf, bufg,
						   2, NB_PARAM_BUFFER, 0);
		for (int i = 0; i < GL_OPT_NPARAM + 2; i++)
			pp[i] = &ps[i];
		nb_optim_config cfg = config_of(c);
		char err[NB_ERR_LEN];
		nb_optim *o = nb_optim_new(&cfg, pp, GL_OPT_NPARAM + 2, err);
		CU_ASSERT_PTR_NOT_NULL_FATAL(o);
		int bad64 = 0, bad32 = 0;
		for (int s = 0; s < GL_OPT_STEPS; s++) {
			nb_optim_set_lr(o, c->lr[s]);
			memcpy(g, gl_opt_grads + s * GL_OPT_N, sizeof g);
			CU_ASSERT_EQUAL(nb_optim_step(o), NB_OK);
			for (int i = 0; i < GL_OPT_N; i++) {
				double r64 = c->traj64[s * GL_OPT_N + i];
				double r32 = c->traj32[s * GL_OPT_N + i];
				if (!close_rel(w[i], r64, PARAM_ATOL,
					       PARAM_RTOL)) {
					bad64++;
					fprintf(stderr,
						"\n  %s step %d [%d]: %.9g vs "
						"torch %.17g",
						c->name, s, i, w[i], r64);
				}
				if (!close_rel(w[i], r32, PARAM_ATOL,
					       PARAM_RTOL))
					bad32++;
			}
		}
		CU_ASSERT_EQUAL(bad64, 0);
		CU_ASSERT_EQUAL(bad32, 0);
		CU_ASSERT_TRUE(fz[0] == 1 && fz[1] == 2 && fz[2] == 3);
		CU_ASSERT_TRUE(buf[0] == 4 && buf[1] == 5);
		/* the gradients are read, never changed */
		CU_ASSERT_EQUAL(
		    memcmp(g, gl_opt_grads + (GL_OPT_STEPS - 1) * GL_OPT_N,
			   sizeof g),
		    0);
		nb_optim_free(o);
	}
}

/* SGD with momentum on a 1-element parameter, by hand: torch's rules. */
static void test_sgd_by_hand(void)
{
	float w = 1.0f, g = 0;
	nb_param p = make_param("w", &w, &g, 1, NB_PARAM_WEIGHT, 0);
	nb_param *pp = &p;
	nb_optim_config cfg = nb_optim_sgd_default();
	cfg.lr = 0.5f;
	cfg.momentum = 0.5f;
	cfg.weight_decay = 0;
	cfg.dampening = 0.5f;
	nb_optim *o = nb_optim_new(&cfg, &pp, 1, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	g = 1;
	nb_optim_step(o); /* buf = 1 (no dampening at the first step) */
	CU_ASSERT_DOUBLE_EQUAL(w, 0.5, 1e-7);
	g = 2;
	nb_optim_step(o); /* buf = 0.5*1 + 0.5*2 = 1.5 */
	CU_ASSERT_DOUBLE_EQUAL(w, 0.5 - 0.75, 1e-7);
	nb_optim_free(o);
}

/* Adam's first step moves each weight by about lr * sign(g). */
static void test_adam_first_step(void)
{
	float w[3] = {1, 1, 1}, g[3] = {3, -1e-3f, 0};
	nb_param p = make_param("w", w, g, 3, NB_PARAM_WEIGHT, 0);
	nb_param *pp = &p;
	nb_optim_config cfg = nb_optim_adam_default();
	nb_optim *o = nb_optim_new(&cfg, &pp, 1, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	nb_optim_step(o);
	CU_ASSERT_DOUBLE_EQUAL(w[0], 1 - 1e-3, 1e-7);
	CU_ASSERT_DOUBLE_EQUAL(w[1], 1 + 1e-3, 1e-7);
	CU_ASSERT_EQUAL(w[2], 1.0f);
	nb_optim_free(o);
}

/*
 * State is per parameter and lazy: a parameter frozen during the first
 * steps starts with buf = g (SGD) or step 1 (Adam) when it is unfrozen,
 * exactly like a fresh optimiser.
 */
static void test_lazy_state(void)
{
	const int kinds[2] = {NB_OPTIM_SGD, NB_OPTIM_ADAM};
	for (int k = 0; k < 2; k++) {
		nb_optim_config cfg = kinds[k] == NB_OPTIM_SGD
					  ? nb_optim_sgd_default()
					  : nb_optim_adam_default();
		float a[4] = {1, -2, 3, 0.5f}, ga[4] = {0.1f, 0.2f, -0.3f, 1};
		float b[4], gb[4];
		float other[2] = {0, 0}, go[2] = {1, 1};
		memcpy(b, a, sizeof a);
		memcpy(gb, ga, sizeof ga);
		nb_param pa = make_param("a", a, ga, 4, NB_PARAM_WEIGHT, 1);
		nb_param po = make_param("o", other, go, 2, NB_PARAM_WEIGHT, 0);
		nb_param pb = make_param("b", b, gb, 4, NB_PARAM_WEIGHT, 0);
		nb_param *l1[2] = {&pa, &po}, *l2[1] = {&pb};
		nb_optim *o1 = nb_optim_new(&cfg, l1, 2, NULL);
		nb_optim *o2 = nb_optim_new(&cfg, l2, 1, NULL);
		CU_ASSERT_PTR_NOT_NULL_FATAL(o1);
		CU_ASSERT_PTR_NOT_NULL_FATAL(o2);
		for (int s = 0; s < 3; s++)
			nb_optim_step(o1); /* a frozen: untouched */
		CU_ASSERT_TRUE(a[0] == 1 && a[3] == 0.5f);
		CU_ASSERT_TRUE(other[0] != 0);
		pa.frozen = 0;
		for (int s = 0; s < 3; s++) {
			nb_optim_step(o1);
			nb_optim_step(o2);
		}
		CU_ASSERT_EQUAL(memcmp(a, b, sizeof a), 0);
		nb_optim_free(o1);
		nb_optim_free(o2);
	}
}

/* The threaded path (large parameters) equals the serial one bit for bit. */
static void test_parallel_matches_serial(void)
{
	enum { N = 100000, CH = 1000 };
	float *wl = malloc(N * sizeof *wl), *gl = malloc(N * sizeof *gl);
	float *ws = malloc(N * sizeof *ws), *gs = malloc(N * sizeof *gs);
	nb_param *small = malloc(N / CH * sizeof *small);
	nb_param **sp = malloc(N / CH * sizeof *sp);
	CU_ASSERT_FATAL(wl && gl && ws && gs && small && sp);
	for (int kind = 0; kind < 2; kind++) {
		nb_optim_config cfg =
		    kind ? nb_optim_adam_default() : nb_optim_sgd_default();
		cfg.nesterov = !kind;
		tu_fill_normal(wl, N, 1.0f, 81);
		memcpy(ws, wl, N * sizeof *wl);
		nb_param big = make_param("big", wl, gl, N, NB_PARAM_WEIGHT, 0);
		nb_param *bp = &big;
		for (int i = 0; i < N / CH; i++) {
			small[i] = make_param("s", ws + i * CH, gs + i * CH, CH,
					      NB_PARAM_WEIGHT, 0);
			sp[i] = &small[i];
		}
		nb_optim *ob = nb_optim_new(&cfg, &bp, 1, NULL);
		nb_optim *os = nb_optim_new(&cfg, sp, N / CH, NULL);
		CU_ASSERT_FATAL(ob && os);
		for (int s = 0; s < 4; s++) {
			tu_fill_normal(gl, N, 0.1f, 90 + s);
			memcpy(gs, gl, N * sizeof *gl);
			nb_optim_step(ob);
			nb_optim_step(os);
		}
		CU_ASSERT_EQUAL(memcmp(wl, ws, N * sizeof *wl), 0);
		nb_optim_zero_grad(ob);
		CU_ASSERT_TRUE(gl[0] == 0 && gl[N - 1] == 0 &&
			       tu_max_abs_diff(gl, gl + N / 2, N / 2) == 0);
		nb_optim_free(ob);
		nb_optim_free(os);
	}
	free(wl);
	free(gl);
	free(ws);
	free(gs);
	free(small);
	free(sp);
}

static void test_config(void)
{
	nb_optim_config s = nb_optim_sgd_default();
	CU_ASSERT_EQUAL(s.kind, NB_OPTIM_SGD);
	CU_ASSERT_EQUAL(s.lr, 0.1f);
	CU_ASSERT_EQUAL(s.momentum, 0.9f);
	CU_ASSERT_EQUAL(s.weight_decay, 5e-4f);
	CU_ASSERT_EQUAL(s.dampening, 0.0f);
	CU_ASSERT_EQUAL(s.nesterov, 0);
	nb_optim_config a = nb_optim_adam_default();
	CU_ASSERT_EQUAL(a.kind, NB_OPTIM_ADAM);
	CU_ASSERT_EQUAL(a.lr, 1e-3f);
	CU_ASSERT_EQUAL(a.beta1, 0.9f);
	CU_ASSERT_EQUAL(a.beta2, 0.999f);
	CU_ASSERT_EQUAL(a.eps, 1e-8f);
	CU_ASSERT_EQUAL(a.weight_decay, 0.0f);

	char err[NB_ERR_LEN] = "";
	float w = 0, g = 0;
	nb_param p = make_param("w", &w, &g, 1, NB_PARAM_WEIGHT, 0);
	nb_param *pp = &p;
	nb_optim_config bad = s;
	bad.momentum = 0;
	bad.nesterov = 1;
	CU_ASSERT_PTR_NULL(nb_optim_new(&bad, &pp, 1, err));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "Nesterov"));
	bad = a;
	bad.beta2 = 1.0f;
	CU_ASSERT_PTR_NULL(nb_optim_new(&bad, &pp, 1, err));
	bad = s;
	bad.kind = 7;
	CU_ASSERT_PTR_NULL(nb_optim_new(&bad, &pp, 1, err));
	bad = s;
	bad.lr = NAN;
	CU_ASSERT_PTR_NULL(nb_optim_new(&bad, &pp, 1, err));

	nb_optim *o = nb_optim_new(&s, &pp, 1, err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	CU_ASSERT_EQUAL(nb_optim_lr(o), 0.1f);
	nb_optim_set_lr(o, 0.02f);
	CU_ASSERT_EQUAL(nb_optim_lr(o), 0.02f);
	g = 3;
	nb_optim_zero_grad(o);
	CU_ASSERT_EQUAL(g, 0.0f);
	nb_optim_free(o);
	nb_optim_free(NULL);
	/* an empty list is allowed */
	o = nb_optim_new(&s, NULL, 0, err);
	CU_ASSERT_PTR_NOT_NULL(o);
	CU_ASSERT_EQUAL(nb_optim_step(o), NB_OK);
	nb_optim_free(o);
}

static void test_golden_schedules(void)
{
	for (int k = 0; k < GL_N_SCHED_CASES; k++) {
		const gl_sched_case *c = &gl_sched_cases[k];
		nb_schedule s;
		memset(&s, 0, sizeof s);
		s.kind = (enum nb_sched_kind)c->kind;
		s.base_lr = c->base_lr;
		s.gamma = c->gamma;
		s.n_milestones = c->n_milestones;
		for (int i = 0; i < c->n_milestones; i++)
			s.milestones[i] = c->milestones[i];
		s.t_max = c->t_max;
		s.eta_min = c->eta_min;
		int bad = 0;
		for (int e = 0; e < c->epochs; e++) {
			double lr = nb_schedule_lr(&s, e);
			if (!close_rel(lr, c->lr[e], 0, LR_RTOL)) {
				bad++;
				fprintf(stderr,
					"\n  %s epoch %d: %.9g vs torch %.17g",
					c->name, e, lr, c->lr[e]);
			}
		}
		CU_ASSERT_EQUAL(bad, 0);
	}
}

static void test_schedule_edges(void)
{
	nb_schedule s;
	memset(&s, 0, sizeof s);
	s.kind = NB_SCHED_CONSTANT;
	s.base_lr = 0.05f;
	CU_ASSERT_EQUAL(nb_schedule_lr(&s, 0), 0.05f);
	CU_ASSERT_EQUAL(nb_schedule_lr(&s, 1000), 0.05f);
	/* the paper's CIFAR-10 decay: x0.1 at 80 and 120, applied at the
	 * start of those epochs */
	s.kind = NB_SCHED_STEP;
	s.base_lr = 0.1f;
	s.gamma = 0.1f;
	s.n_milestones = 2;
	s.milestones[0] = 120; /* unsorted on purpose */
	s.milestones[1] = 80;
	CU_ASSERT_DOUBLE_EQUAL(nb_schedule_lr(&s, 79), 0.1, 1e-8);
	CU_ASSERT_DOUBLE_EQUAL(nb_schedule_lr(&s, 80), 0.01, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(nb_schedule_lr(&s, 120), 0.001, 1e-10);
	CU_ASSERT_EQUAL(nb_schedule_lr(&s, -1), 0.1f);
	/* Adam's "no decay" schedule [999] */
	s.n_milestones = 1;
	s.milestones[0] = 999;
	CU_ASSERT_EQUAL(nb_schedule_lr(&s, 99), 0.1f);
	s.kind = NB_SCHED_COSINE;
	s.t_max = 10;
	s.eta_min = 0;
	CU_ASSERT_EQUAL(nb_schedule_lr(&s, 0), 0.1f);
	CU_ASSERT_DOUBLE_EQUAL(nb_schedule_lr(&s, 5), 0.05, 1e-8);
	CU_ASSERT_DOUBLE_EQUAL(nb_schedule_lr(&s, 10), 0.0, 1e-9);
	s.t_max = 0;
	CU_ASSERT_EQUAL(nb_schedule_lr(&s, 3), 0.1f);
}

static const nb_test_entry tests[] = {
    {"golden trajectories (torch)", test_golden_trajectories},
    {"SGD momentum and dampening by hand", test_sgd_by_hand},
    {"Adam first step", test_adam_first_step},
    {"lazy per-parameter state", test_lazy_state},
    {"threaded step = serial step", test_parallel_matches_serial},
    {"configuration", test_config},
    {"golden schedules (torch)", test_golden_schedules},
    {"schedule edge cases", test_schedule_edges},
    {NULL, NULL}};

void nb_test_optim(void)
{
	nb_test_add_suite("optim", tests);
}
