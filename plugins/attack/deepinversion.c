/*
 * deepinversion.c - the `deepinversion` attack: DeepInversion (Yin et al.,
 * CVPR 2020) as its official CIFAR-10 code synthesises images
 * (cifar10/deepinversion_cifar10.py), then knowledge distillation of the
 * student on them. Data-free: the attack never sees a training image.
 * White box: it backpropagates through the frozen teacher (gradients) and
 * reads its BatchNorm running statistics.
 *
 * Synthesis of one batch of `batch` images (core/lib/inversion.c):
 *  - x ~ N(0, 1) in the normalised input space; fixed targets y_i =
 *    i mod classes (the official [0..9] * 25 + [0..5] for 256 images);
 *  - `iters` Adam steps (lr, torch defaults otherwise; fresh state per
 *    batch) on the pixels, each on a jittered copy (circular shift of up
 *    to `jitter` pixels in each direction, and with `flip` a horizontal
 *    flip with probability 1/2) of the objective
 *      CE(T(x), y) + bn_weight * R_bn + tv_weight * R_tv + l2_weight * |x|
 *      + comp_weight * (1 - clamp(JS(S(x), T(x)), 0, 1))      (ADI)
 *    with the teacher (and, for ADI, the current student) in evaluation
 *    mode;
 *  - the batch kept is the iterate of lowest loss (the official code
 *    meant to keep it; its `best_inputs = inputs.data` aliases the
 *    optimised tensor and so returns the last iterate).
 *
 * Distillation protocol (the authors never published theirs for CIFAR):
 * a pool of `pool_batches` synthesised batches is built batch by batch
 * during the first epoch, as the student's steps consume it (so the ADI
 * term competes with the student as it learns), and the student then
 * trains for the suite's epochs on the whole pool, reshuffled every
 * epoch, with the suite's student optimiser, schedule and batch size and
 * the logit KD loss alpha * tau^2 * KL(p_T || p_S) + (1 - alpha) *
 * CE(z_S, y), where p_T are the teacher's released outputs on the
 * synthesised images and y their synthesis targets (alpha 1: KL only).
 * Each epoch is floor(pool / batch) steps.
 *
 * Resumption: the pool, its targets and teacher outputs, the epoch's order
 * and the three random streams (noise, jitter, order) join the core's
 * state file after every epoch, so a killed run resumes bit-identically.
 *
 * Report: when the pool is complete, the first (up to) 100 images are
 * written, de-normalised with the suite's mean and std, as a 10-column
 * PNG grid (one class per column while classes <= 10) named
 * synthesised.png next to the student's log (the artefact folder; the
 * runner copies it into the report), with synthesis.csv (per batch: the
 * kept batch's loss terms and how many of its images the teacher
 * classifies as their targets).
 */
#include <libgen.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "inversion.h"
#include "plugin.h"

struct opts {
	int batch, iters, pool_batches, jitter, flip, keep_best;
	double lr, bn_weight, tv_weight, l2_weight, comp_weight;
	double alpha, tau;
};

static const nb_option options[] = {
    {"batch", NB_OPT_INT, offsetof(struct opts, batch), "256",
     "images optimised together (official: 256)", 2, 65536},
    {"iters", NB_OPT_INT, offsetof(struct opts, iters), "2000",
     "Adam steps per batch (official: 2000)", 1, 1e7},
    {"pool_batches", NB_OPT_INT, offsetof(struct opts, pool_batches), "8",
     "synthesised batches the student is distilled on", 1, 1e6},
    {"lr", NB_OPT_FLOAT, offsetof(struct opts, lr), "0.05",
     "Adam learning rate on the pixels (paper parameters: 0.05; script "
     "default 0.1)",
     1e-6, 10},
    {"bn_weight", NB_OPT_FLOAT, offsetof(struct opts, bn_weight), "10",
     "weight of the BatchNorm-statistics regulariser (paper parameters: "
     "10; script default 100)",
     0, 1e9},
    {"tv_weight", NB_OPT_FLOAT, offsetof(struct opts, tv_weight), "2.5e-5",
     "weight of the total-variation prior (official: 2.5e-5)", 0, 1e9},
    {"l2_weight", NB_OPT_FLOAT, offsetof(struct opts, l2_weight), "0",
     "weight of the l2 prior (official: 0)", 0, 1e9},
    {"comp_weight", NB_OPT_FLOAT, offsetof(struct opts, comp_weight), "0",
     "Adaptive DeepInversion competition weight (0: plain DeepInversion)", 0,
     1e9},
    {"jitter", NB_OPT_INT, offsetof(struct opts, jitter), "2",
     "largest random circular shift in pixels (official: 2)", 0, 64},
    {"flip", NB_OPT_BOOL, offsetof(struct opts, flip), "1",
     "random horizontal flips (ImageNet code: yes; CIFAR-10 code: no)", 0, 1},
    {"keep_best", NB_OPT_BOOL, offsetof(struct opts, keep_best), "1",
     "keep the lowest-loss iterate (else the last)", 0, 1},
    {"alpha", NB_OPT_FLOAT, offsetof(struct opts, alpha), "1",
     "weight of the KL term in the distillation loss (1: no CE on the "
     "synthesis targets)",
     0, 1},
    {"tau", NB_OPT_FLOAT, offsetof(struct opts, tau), "4",
     "distillation temperature", 1e-3, 1e3},
    {NULL, 0, 0, NULL, NULL, 0, 0}};

/* Adaptive DeepInversion's temperature (official code: T = 3.0). */
#define ADI_T 3.0f
/* Random stream purposes besides NB_RNG_NOISE ("dij", "dio"). */
#define RNG_JITTER 0x64696au
#define RNG_ORDER 0x64696fu
/* The report grid. */
#define GRID_IMAGES 100
#define GRID_COLS 10

struct state {
	struct opts o;
	nb_teacher *teacher;
	nb_net *tnet, *student;
	int C, c, h, w; /* classes, input shape */
	size_t per;	/* floats per image */
	const nb_train_config *cfg;
	/* the pool */
	int P, n_done;
	float *pool, *pool_z; /* (P, per), (P, C) */
	int *pool_y;
	int64_t *y64; /* pool_y as saved */
	int B;	      /* the student's batch */
	int *order;   /* this epoch's order of the pool */
	int64_t *order64;
	int64_t shuffled_epoch; /* the epoch order belongs to */
	int64_t n_done64;
	float *stats; /* per pool batch: N_STATS values (log_batch) */
	float *zt;    /* a student batch's teacher outputs */
	nb_rng noise, jit, ord;
	/* one batch's synthesis */
	float *x, *xj, *dxj, *best;
	int *ybuf;
	nb_param px;
	nb_param *ppx;
};

static void fini(void *state)
{
	struct state *s = state;
	if (!s)
		return;
	free(s->pool);
	free(s->pool_z);
	free(s->pool_y);
	free(s->y64);
	free(s->order);
	free(s->order64);
	free(s->x);
	free(s->xj);
	free(s->dxj);
	free(s->best);
	free(s->ybuf);
	free(s->px.grad);
	free(s->stats);
	free(s->zt);
	free(s);
}

/* Per synthesised batch, for synthesis.csv: loss, ce, bn, tv, l2, js of
 * the kept iterate, and how many of its images the teacher classifies as
 * their targets. */
static const char *const log_header[] = {
    "batch", "loss", "ce", "bn", "tv", "l2", "js", "teacher_correct"};
#define N_STATS 7

static int setup(struct state *s, const void *opts, const nb_attack_env *env,
		 char *err)
{
	s->o = *(const struct opts *)opts;
	s->teacher = env->teacher;
	s->student = env->student;
	s->cfg = env->cfg;
	s->tnet = nb_teacher_network(env->teacher);
	if (!s->tnet)
		return nb_errorf(err, NB_EINVAL,
				 "deepinversion: the core gave no teacher "
				 "network (gradient and BatchNorm access)");
	s->C = nb_teacher_classes(env->teacher);
	if (s->C != env->classes)
		return nb_errorf(err, NB_EINVAL,
				 "deepinversion: the teacher has %d classes, "
				 "the student %d",
				 s->C, env->classes);
	nb_net_node_shape(s->tnet, 0, &s->c, &s->h, &s->w);
	int sc, sh, sw;
	nb_net_node_shape(s->student, 0, &sc, &sh, &sw);
	if (sc != s->c || sh != s->h || sw != s->w)
		return nb_errorf(err, NB_EINVAL,
				 "deepinversion: the teacher takes %dx%dx%d "
				 "inputs, the student %dx%dx%d",
				 s->c, s->h, s->w, sc, sh, sw);
	s->per = (size_t)s->c * s->h * s->w;
	long long P = (long long)s->o.pool_batches * s->o.batch;
	if (P > (1LL << 30) || P * (long long)s->per > (1LL << 33))
		return nb_errorf(err, NB_EINVAL,
				 "deepinversion: a pool of %lld images of "
				 "%zu values is too large (pool_batches, "
				 "batch)",
				 P, s->per);
	s->P = (int)P;
	size_t bs = (size_t)s->o.batch;
	s->pool = malloc((size_t)s->P * s->per * sizeof(float));
	s->pool_z = malloc((size_t)s->P * s->C * sizeof(float));
	s->pool_y = malloc((size_t)s->P * sizeof(int));
	s->y64 = malloc((size_t)s->P * sizeof(int64_t));
	s->order = malloc((size_t)s->P * sizeof(int));
	s->order64 = malloc((size_t)s->P * sizeof(int64_t));
	s->x = malloc(bs * s->per * sizeof(float));
	s->xj = malloc(bs * s->per * sizeof(float));
	s->dxj = malloc(bs * s->per * sizeof(float));
	s->best = malloc(bs * s->per * sizeof(float));
	s->ybuf = malloc(bs * sizeof(int));
	s->px.grad = malloc(bs * s->per * sizeof(float));
	s->stats = calloc((size_t)s->o.pool_batches * N_STATS, sizeof(float));
	if (!s->pool || !s->pool_z || !s->pool_y || !s->y64 || !s->order ||
	    !s->order64 || !s->x || !s->xj || !s->dxj || !s->best || !s->ybuf ||
	    !s->px.grad || !s->stats)
		return nb_errorf(err, NB_ENOMEM,
				 "deepinversion: out of memory for a pool of "
				 "%d images",
				 s->P);
	/* the pixels as an optimiser parameter */
	snprintf(s->px.name, sizeof s->px.name, "pixels");
	s->px.role = NB_PARAM_WEIGHT;
	s->px.ndim = 4;
	s->px.shape[0] = s->o.batch;
	s->px.shape[1] = s->c;
	s->px.shape[2] = s->h;
	s->px.shape[3] = s->w;
	s->px.size = bs * s->per;
	s->px.data = s->x;
	s->ppx = &s->px;
	for (int i = 0; i < s->P; i++)
		s->order[i] = i;
	s->shuffled_epoch = 0;
	nb_rng_seed(&s->noise, env->seed, NB_RNG_NOISE);
	nb_rng_seed(&s->jit, env->seed, RNG_JITTER);
	nb_rng_seed(&s->ord, env->seed, RNG_ORDER);
	return 0;
}

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

static int plan(void *state, const nb_attack_env *env, nb_synth_plan *p,
		char *err)
{
	struct state *s = state;
	(void)env;
	if (p->batch > s->P)
		p->batch = s->P;
	s->B = p->batch;
	p->steps = s->P / p->batch;
	free(s->zt);
	s->zt = malloc((size_t)s->B * s->C * sizeof *s->zt);
	if (!s->zt)
		return nb_errorf(err, NB_ENOMEM, "out of memory");
	return 0;
}

/* The frozen flags of the student's weights, to restore after ADI. */
static int *save_frozen(nb_net *net)
{
	nb_param **ps;
	int n = nb_net_params(net, &ps);
	int *f = malloc((size_t)(n > 0 ? n : 1) * sizeof *f);
	if (!f)
		return NULL;
	for (int i = 0; i < n; i++)
		f[i] = ps[i]->frozen;
	nb_net_set_frozen(net, 1);
	return f;
}

static void restore_frozen(nb_net *net, const int *f)
{
	nb_param **ps;
	int n = nb_net_params(net, &ps);
	for (int i = 0; i < n; i++)
		ps[i]->frozen = f[i];
}

/* Uniform integer in [-k, k]. */
static int shift(nb_rng *r, int k)
{
	return k > 0 ? (int)nb_rng_below(r, (uint64_t)(2 * k + 1)) - k : 0;
}

static void record_batch(struct state *s, int k, double loss,
			 const nb_inversion_terms *t, int correct)
{
	float *r = s->stats + (size_t)k * N_STATS;
	r[0] = (float)loss;
	r[1] = (float)t->ce;
	r[2] = (float)t->bn;
	r[3] = (float)t->tv;
	r[4] = (float)t->l2;
	r[5] = (float)t->js;
	r[6] = (float)correct;
}

/* synthesis.csv from the recorded statistics. */
static int write_stats(const struct state *s, const char *path, char *err)
{
	nb_csv *t = nb_csv_new(log_header, N_STATS + 1);
	if (!t)
		return nb_errorf(err, NB_ENOMEM, "out of memory");
	int rc = 0;
	for (int k = 0; k < s->o.pool_batches && rc == 0; k++) {
		const float *r = s->stats + (size_t)k * N_STATS;
		char cells[N_STATS + 1][32];
		const char *row[N_STATS + 1];
		snprintf(cells[0], 32, "%d", k);
		for (int i = 0; i < N_STATS; i++)
			snprintf(cells[i + 1], 32, i == 6 ? "%.0f" : "%.6g",
				 r[i]);
		for (int i = 0; i <= N_STATS; i++)
			row[i] = cells[i];
		if (nb_csv_add_row(t, row) < 0)
			rc = nb_errorf(err, NB_ENOMEM, "out of memory");
	}
	if (rc == 0)
		rc = nb_csv_write(t, path, err);
	nb_csv_free(t);
	return rc;
}

/* The artefact folder (that of the student's log), or NULL. */
static int artefact_path(const struct state *s, const char *name, char *out,
			 size_t len)
{
	if (!s->cfg || !s->cfg->log_csv || !*s->cfg->log_csv)
		return -1;
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s", s->cfg->log_csv);
	int n = snprintf(out, len, "%s/%s", dirname(tmp), name);
	return n > 0 && (size_t)n < len ? 0 : -1;
}

/* The report files, once the pool is complete. */
static int write_report(struct state *s, char *err)
{
	char path[4096];
	int rc = 0;
	if (artefact_path(s, "synthesised.png", path, sizeof path) == 0) {
		int n = s->P < GRID_IMAGES ? s->P : GRID_IMAGES;
		float mean[4], std[4];
		for (int k = 0; k < s->c && k < 4; k++) {
			mean[k] = s->cfg->aug.mean[k];
			std[k] = s->cfg->aug.std[k];
		}
		if (s->c == 1 || s->c == 3)
			rc = nb_png_write_grid(path, s->pool, n, s->c, s->h,
					       s->w, mean, std, GRID_COLS, err);
	}
	if (rc == 0 &&
	    artefact_path(s, "synthesis.csv", path, sizeof path) == 0)
		rc = write_stats(s, path, err);
	return rc;
}

/* Synthesises pool batch k (images [k*batch, (k+1)*batch)). */
static int synth_batch(struct state *s, int k, char *err)
{
	const int bs = s->o.batch;
	const size_t n = (size_t)bs * s->per;
	const int comp = s->o.comp_weight > 0;
	nb_inversion_weights w = {(float)s->o.bn_weight, (float)s->o.tv_weight,
				  (float)s->o.l2_weight,
				  (float)s->o.comp_weight, ADI_T};
	for (int i = 0; i < bs; i++)
		s->ybuf[i] = i % s->C;
	for (size_t i = 0; i < n; i++)
		s->x[i] = (float)nb_rng_normal(&s->noise);
	nb_optim_config oc = nb_optim_adam_default();
	oc.lr = (float)s->o.lr;
	nb_optim *opt = nb_optim_new(&oc, &s->ppx, 1, err);
	if (!opt)
		return NB_ENOMEM;
	int *frozen = NULL, was_training = 0;
	if (comp) {
		was_training = nb_net_training(s->student);
		nb_net_set_training(s->student, 0);
		if (!(frozen = save_frozen(s->student))) {
			nb_optim_free(opt);
			return nb_errorf(err, NB_ENOMEM, "out of memory");
		}
	}
	double best = INFINITY;
	nb_inversion_terms bt = {0}, t;
	int rc = 0;
	memcpy(s->best, s->x, n * sizeof(float));
	for (int it = 0; it < s->o.iters; it++) {
		int dy = shift(&s->jit, s->o.jitter);
		int dx = shift(&s->jit, s->o.jitter);
		int flip = s->o.flip && nb_rng_uniform(&s->jit) < 0.5;
		nb_jitter_forward(s->xj, s->x, bs, s->c, s->h, s->w, dy, dx,
				  flip);
		rc = nb_inversion_loss(s->tnet, comp ? s->student : NULL, s->xj,
				       s->ybuf, bs, &w, s->dxj, &t, err);
		if (rc < 0)
			break;
		if (!isfinite(t.total)) {
			rc = nb_errorf(err, NB_ENUMERIC,
				       "deepinversion: batch %d, step %d: the "
				       "loss is not finite (lower lr?)",
				       k, it);
			break;
		}
		if (!s->o.keep_best || t.total < best) {
			best = t.total;
			bt = t;
			memcpy(s->best, s->x, n * sizeof(float));
		}
		memset(s->px.grad, 0, n * sizeof(float));
		nb_jitter_backward(s->px.grad, s->dxj, bs, s->c, s->h, s->w, dy,
				   dx, flip);
		if (nb_optim_step(opt) < 0) {
			rc = nb_errorf(err, NB_ENOMEM, "out of memory");
			break;
		}
	}
	nb_optim_free(opt);
	if (comp) {
		restore_frozen(s->student, frozen);
		nb_net_set_training(s->student, was_training);
		free(frozen);
	}
	if (rc < 0)
		return rc;
	/* into the pool, with the teacher's released outputs */
	size_t at = (size_t)k * bs;
	memcpy(s->pool + at * s->per, s->best, n * sizeof(float));
	for (int i = 0; i < bs; i++) {
		s->pool_y[at + i] = s->ybuf[i];
		s->y64[at + i] = s->ybuf[i];
	}
	float *z = s->pool_z + at * s->C;
	if ((rc = nb_teacher_query(s->teacher, s->best, bs, z, err)) < 0)
		return rc;
	record_batch(s, k, best, &bt, nb_count_correct(z, s->ybuf, bs, s->C));
	s->n_done = (int)(at + bs);
	if (s->n_done == s->P)
		return write_report(s, err);
	return 0;
}

/* Makes sure pool images [0, upto) exist. */
static int fill_pool(struct state *s, int upto, char *err)
{
	while (s->n_done < upto) {
		int rc = synth_batch(s, s->n_done / s->o.batch, err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int synth(void *state, const nb_attack_env *env, int epoch, int step,
		 int n, float *x, int *y, char *err)
{
	struct state *s = state;
	(void)env;
	int rc;
	if (n != s->B)
		return nb_errorf(err, NB_EINVAL,
				 "deepinversion: asked for %d images, planned "
				 "%d",
				 n, s->B);
	if (epoch == 0) {
		/* the pool in synthesis order, built as it is consumed */
		if ((rc = fill_pool(s, (step + 1) * n, err)) < 0)
			return rc;
	} else {
		if ((rc = fill_pool(s, s->P, err)) < 0)
			return rc;
		if (s->shuffled_epoch != epoch) {
			for (int i = 0; i < s->P; i++)
				s->order[i] = i;
			nb_rng_shuffle(&s->ord, s->order, s->P);
			s->shuffled_epoch = epoch;
		}
	}
	for (int i = 0; i < n; i++) {
		int j = s->order[step * n + i];
		memcpy(x + (size_t)i * s->per, s->pool + (size_t)j * s->per,
		       s->per * sizeof(float));
		y[i] = s->pool_y[j];
	}
	return 0;
}

/*
 * The student's loss: KD on the teacher's released outputs for the pool
 * images of this batch. The batch's rows are pool images; their teacher
 * outputs were stored with them, so the batch is matched back by the
 * order (the loss hook sees the batch synth just made).
 */
static int loss(void *state, const nb_batch *b, const float *z, int C,
		float *dz, nb_loss_terms *terms, char *err)
{
	struct state *s = state;
	if (C != s->C || b->n != s->B)
		return nb_errorf(err, NB_EINVAL,
				 "deepinversion: a batch of %d x %d logits, "
				 "expected %d x %d",
				 b->n, C, s->B, s->C);
	/* gather the stored teacher outputs in the batch's order */
	float *zt = s->zt;
	for (int i = 0; i < b->n; i++) {
		int j = s->order[b->step * b->n + i];
		memcpy(zt + (size_t)i * C, s->pool_z + (size_t)j * C,
		       (size_t)C * sizeof *zt);
	}
	nb_kd_loss(z, zt, b->y, b->n, C, (float)s->o.alpha, (float)s->o.tau, dz,
		   1.0f, terms);
	return 0;
}

static int save(void *state, nb_bag *out, char *err)
{
	struct state *s = state;
	int rc;
	size_t n = (size_t)s->n_done;
	s->n_done64 = s->n_done;
	for (int i = 0; i < s->P; i++)
		s->order64[i] = s->order[i];
	if ((rc = nb_bag_put_i64(out, "pool.n", &s->n_done64, 1, err)) < 0 ||
	    (rc = nb_bag_put_i64(out, "order", s->order64, (size_t)s->P, err)) <
		0 ||
	    (rc = nb_bag_put_i64(out, "order.epoch", &s->shuffled_epoch, 1,
				 err)) < 0 ||
	    (rc = nb_bag_put_f32(out, "synthesis", s->stats,
				 (size_t)s->o.pool_batches * N_STATS, err)) <
		0 ||
	    (rc = nb_bag_put_rng(out, "rng.noise", &s->noise, err)) < 0 ||
	    (rc = nb_bag_put_rng(out, "rng.jitter", &s->jit, err)) < 0 ||
	    (rc = nb_bag_put_rng(out, "rng.order", &s->ord, err)) < 0)
		return rc;
	if (!n)
		return 0;
	if ((rc = nb_bag_put_f32(out, "pool.x", s->pool, n * s->per, err)) <
		0 ||
	    (rc = nb_bag_put_f32(out, "pool.z", s->pool_z, n * s->C, err)) <
		0 ||
	    (rc = nb_bag_put_i64(out, "pool.y", s->y64, n, err)) < 0)
		return rc;
	return 0;
}

static int load(void *state, nb_bag *in, char *err)
{
	struct state *s = state;
	int rc;
	int64_t nd = -1;
	if ((rc = nb_bag_get_i64(in, "pool.n", &nd, 1, err)) < 0)
		return rc;
	if (nd < 0 || nd > s->P || nd % s->o.batch)
		return nb_errorf(err, NB_EFORMAT,
				 "deepinversion: the state holds %lld pool "
				 "images, not a whole number of batches of "
				 "%d up to %d",
				 (long long)nd, s->o.batch, s->P);
	size_t n = (size_t)nd;
	if ((rc = nb_bag_get_i64(in, "order", s->order64, (size_t)s->P, err)) <
		0 ||
	    (rc = nb_bag_get_i64(in, "order.epoch", &s->shuffled_epoch, 1,
				 err)) < 0 ||
	    (rc = nb_bag_get_f32(in, "synthesis", s->stats,
				 (size_t)s->o.pool_batches * N_STATS, err)) <
		0 ||
	    (rc = nb_bag_get_rng(in, "rng.noise", &s->noise, err)) < 0 ||
	    (rc = nb_bag_get_rng(in, "rng.jitter", &s->jit, err)) < 0 ||
	    (rc = nb_bag_get_rng(in, "rng.order", &s->ord, err)) < 0)
		return rc;
	if (n &&
	    ((rc = nb_bag_get_f32(in, "pool.x", s->pool, n * s->per, err)) <
		 0 ||
	     (rc = nb_bag_get_f32(in, "pool.z", s->pool_z, n * s->C, err)) <
		 0 ||
	     (rc = nb_bag_get_i64(in, "pool.y", s->y64, n, err)) < 0))
		return rc;
	/* the order must be a permutation, the labels classes */
	memset(s->order, 0, (size_t)s->P * sizeof *s->order);
	for (int i = 0; i < s->P; i++) {
		int64_t j = s->order64[i];
		if (j < 0 || j >= s->P || s->order[j])
			return nb_errorf(err, NB_EFORMAT,
					 "deepinversion: the saved pool order "
					 "is not a permutation");
		s->order[j] = 1;
	}
	for (int i = 0; i < s->P; i++)
		s->order[i] = (int)s->order64[i];
	for (size_t i = 0; i < n; i++) {
		if (s->y64[i] < 0 || s->y64[i] >= s->C)
			return nb_errorf(err, NB_EFORMAT,
					 "deepinversion: saved pool label "
					 "%lld is not a class",
					 (long long)s->y64[i]);
		s->pool_y[i] = (int)s->y64[i];
	}
	s->n_done = (int)n;
	return 0;
}

static const nb_attack_ops ops = {
    .access = NB_ACCESS_OUTPUTS | NB_ACCESS_GRADIENTS | NB_ACCESS_BN_STATS,
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
    .name = "deepinversion",
    .summary = "DeepInversion (optionally Adaptive): images optimised "
	       "against the teacher's BatchNorm statistics, then KD on them "
	       "(white box: gradients, BatchNorm statistics; data-free)",
    .options = options,
    .opts_size = sizeof(struct opts),
    .attack = &ops,
};
