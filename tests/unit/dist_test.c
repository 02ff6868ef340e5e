/*
 * dist_test.c - data-parallel training (dist.h) without MPI: a "group" of
 * threads in one process whose sums go through shared memory, summed in
 * member order (as every member of an MPI group gets one result).
 *  - synchronised BatchNorm on shares of a batch equals batchnorm.c on the
 *    whole batch (outputs, saved and running statistics, all gradients);
 *  - nb_train_dist on 2 members equals nb_train on the global batch within
 *    float tolerance, the members end bit-identical, and a second group
 *    run is bit-identical to the first (deterministic for a group size);
 *  - a group resumes from member 0's state file bit-identically;
 *  - a batch smaller than the group is an error, not a hang.
 * The same training through MPI ranks is tests/mpi-runner.sh.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "../../core/lib/dist.h"
#include "data.h"
#include "error.h"
#include "ops.h"
#include "train.h"
#include "testutil.h"

/* ---- a group of threads ---------------------------------------------------- */

#define MAX_MEMBERS 4

typedef struct group {
	int size;
	pthread_barrier_t bar;
	double *d[MAX_MEMBERS];
	float *f[MAX_MEMBERS];
} group;

typedef struct member {
	group *g;
	int rank;
} member;

static int sum_d(void *ctx, double *buf, int n)
{
	member *m = ctx;
	group *g = m->g;
	g->d[m->rank] = buf;
	pthread_barrier_wait(&g->bar);
	double *t = malloc((size_t)(n > 0 ? n : 1) * sizeof *t);
	for (int i = 0; i < n; i++) {
		double s = 0;
		for (int r = 0; r < g->size; r++)
			s += g->d[r][i];
		t[i] = s;
	}
	pthread_barrier_wait(&g->bar); /* everyone has read */
	memcpy(buf, t, (size_t)n * sizeof *t);
	free(t);
	return 0;
}

static int sum_f(void *ctx, float *buf, int n)
{
	member *m = ctx;
	group *g = m->g;
	g->f[m->rank] = buf;
	pthread_barrier_wait(&g->bar);
	float *t = malloc((size_t)(n > 0 ? n : 1) * sizeof *t);
	for (int i = 0; i < n; i++) {
		float s = 0;
		for (int r = 0; r < g->size; r++)
			s += g->f[r][i];
		t[i] = s;
	}
	pthread_barrier_wait(&g->bar);
	memcpy(buf, t, (size_t)n * sizeof *t);
	free(t);
	return 0;
}

/* ---- synchronised BatchNorm ------------------------------------------------- */

enum { BN_N = 7, BN_C = 3, BN_L = 5 };

typedef struct bn_job {
	member m;
	int lo, hi; /* this member's samples */
	const float *x, *dy, *gamma, *beta;
	float out[BN_N * BN_C * BN_L], din[BN_N * BN_C * BN_L];
	float mean[BN_C], invstd[BN_C], rm[BN_C], rv[BN_C];
	float dgamma[BN_C], dbeta[BN_C];
	int rc;
} bn_job;

static void *bn_member(void *arg)
{
	bn_job *j = arg;
	size_t off = (size_t)j->lo * BN_C * BN_L;
	int n = j->hi - j->lo;
	j->rc = nb_batchnorm_forward_train_sync(
	    j->out + off, j->mean, j->invstd, j->rm, j->rv, j->x + off,
	    j->gamma, j->beta, n, BN_C, BN_L, 0.1f, 1e-5f, sum_d, &j->m);
	if (j->rc == 0)
		j->rc = nb_batchnorm_backward_train_sync(
		    j->din + off, j->dgamma, j->dbeta, j->dy + off, j->x + off,
		    j->mean, j->invstd, j->gamma, n, BN_C, BN_L, sum_d, &j->m);
	return NULL;
}

static void syncbn_matches_whole_batch(void)
{
	enum { T = BN_N * BN_C * BN_L };
	float x[T], dy[T], gamma[BN_C], beta[BN_C];
	tu_fill_normal(x, T, 2.0f, 1);
	for (int i = 0; i < T; i++)
		x[i] += 3.0f; /* a mean far from 0 */
	tu_fill_normal(dy, T, 1.0f, 2);
	tu_fill_uniform(gamma, BN_C, 0.5f, 1.5f, 3);
	tu_fill_uniform(beta, BN_C, -0.5f, 0.5f, 4);
	/* the reference: one process, the whole batch */
	float out[T], din[T] = {0}, mean[BN_C], invstd[BN_C];
	float rm[BN_C] = {0.1f, 0.2f, 0.3f}, rv[BN_C] = {1, 2, 3};
	float dgamma[BN_C] = {0}, dbeta[BN_C] = {0};
	CU_ASSERT_EQUAL_FATAL(nb_batchnorm_forward_train(out, mean, invstd, rm,
							  rv, x, gamma, beta,
							  BN_N, BN_C, BN_L,
							  0.1f, 1e-5f),
			      0);
	nb_batchnorm_backward_train(din, dgamma, dbeta, dy, x, mean, invstd,
				    gamma, BN_N, BN_C, BN_L);
	/* two members, uneven shares 5 + 2 */
	group g = {.size = 2};
	pthread_barrier_init(&g.bar, NULL, 2);
	static bn_job j[2];
	memset(j, 0, sizeof j);
	pthread_t th[2];
	for (int r = 0; r < 2; r++) {
		j[r].m = (member){&g, r};
		j[r].lo = r ? 5 : 0;
		j[r].hi = r ? BN_N : 5;
		j[r].x = x;
		j[r].dy = dy;
		j[r].gamma = gamma;
		j[r].beta = beta;
		for (int c = 0; c < BN_C; c++) {
			j[r].rm[c] = 0.1f * (c + 1);
			j[r].rv[c] = (float)(c + 1);
		}
		pthread_create(&th[r], NULL, bn_member, &j[r]);
	}
	for (int r = 0; r < 2; r++)
		pthread_join(th[r], NULL);
	pthread_barrier_destroy(&g.bar);
	CU_ASSERT_EQUAL(j[0].rc, 0);
	CU_ASSERT_EQUAL(j[1].rc, 0);
	/* each member wrote its own samples */
	float o2[T], d2[T];
	memcpy(o2, j[0].out, 5 * BN_C * BN_L * sizeof(float));
	memcpy(o2 + 5 * BN_C * BN_L, j[1].out + 5 * BN_C * BN_L,
	       2 * BN_C * BN_L * sizeof(float));
	memcpy(d2, j[0].din, 5 * BN_C * BN_L * sizeof(float));
	memcpy(d2 + 5 * BN_C * BN_L, j[1].din + 5 * BN_C * BN_L,
	       2 * BN_C * BN_L * sizeof(float));
	CU_ASSERT(tu_max_abs_diff(o2, out, T) < 1e-5);
	CU_ASSERT(tu_max_abs_diff(d2, din, T) < 1e-5);
	for (int r = 0; r < 2; r++) {
		CU_ASSERT(tu_max_abs_diff(j[r].mean, mean, BN_C) < 1e-6);
		CU_ASSERT(tu_max_abs_diff(j[r].invstd, invstd, BN_C) < 1e-5);
		CU_ASSERT(tu_max_abs_diff(j[r].rm, rm, BN_C) < 1e-6);
		CU_ASSERT(tu_max_abs_diff(j[r].rv, rv, BN_C) < 1e-5);
	}
	/* dgamma, dbeta: each member holds its share; the sum is the whole */
	for (int c = 0; c < BN_C; c++) {
		CU_ASSERT(fabsf(j[0].dgamma[c] + j[1].dgamma[c] - dgamma[c]) <
			  1e-4f);
		CU_ASSERT(fabsf(j[0].dbeta[c] + j[1].dbeta[c] - dbeta[c]) <
			  1e-4f);
		/* and the shares are real shares, not copies of the sum */
		CU_ASSERT(fabsf(j[0].dbeta[c] - dbeta[c]) > 1e-3f);
	}
}

/* ---- training --------------------------------------------------------------- */

static char *dir;
static nb_dataset train_set, test_set;

static int suite_init(void)
{
	char err[NB_ERR_LEN];
	dir = tu_mkdtemp();
	if (!dir)
		return 1;
	if (nb_synth_write(dir, "idx", 600, 200, 1, 5, err) < 0 ||
	    nb_dataset_load("mnist", dir, NB_SPLIT_TRAIN, &train_set, err) <
		0 ||
	    nb_dataset_load("mnist", dir, NB_SPLIT_TEST, &test_set, err) < 0) {
		fprintf(stderr, "dist suite setup: %s\n", err);
		return 1;
	}
	return 0;
}

static int suite_clean(void)
{
	nb_dataset_free(&train_set);
	nb_dataset_free(&test_set);
	tu_rmtree(dir);
	free(dir);
	return 0;
}

/* conv-BN2d-relu-pool, conv-BN2d-relu, pool, linear-BN1d-relu, linear */
static nb_net *bn_net(void)
{
	char err[NB_ERR_LEN];
	nb_net *net = nb_net_new(1, 32, 32);
	int n = nb_net_add_conv2d(net, 0, "c1", 8, 3, 1, 1, 1, 0,
				  NB_INIT_DEFAULT, err);
	n = nb_net_add_batchnorm(net, n, "b1", 1e-5f, 0.1f, 1, err);
	n = nb_net_add_relu(net, n, err);
	n = nb_net_add_maxpool(net, n, 2, 2, 0, err);
	n = nb_net_add_conv2d(net, n, "c2", 16, 3, 2, 1, 1, 0,
			      NB_INIT_DEFAULT, err);
	n = nb_net_add_batchnorm(net, n, "b2", 1e-5f, 0.1f, 1, err);
	n = nb_net_add_relu(net, n, err);
	n = nb_net_add_adaptive_avgpool(net, n, 2, 2, err);
	n = nb_net_add_flatten(net, n, err);
	n = nb_net_add_linear(net, n, "f1", 32, 1, NB_INIT_DEFAULT, err);
	n = nb_net_add_batchnorm(net, n, "b3", 1e-5f, 0.1f, 1, err);
	n = nb_net_add_relu(net, n, err);
	n = nb_net_add_linear(net, n, "f2", 10, 1, NB_INIT_DEFAULT, err);
	if (n < 0 || nb_net_finalize(net, 11, err) < 0) {
		fprintf(stderr, "bn_net: %s\n", err);
		nb_net_free(net);
		return NULL;
	}
	return net;
}

static void config(nb_train_config *cfg, int batch)
{
	nb_train_config_default(cfg);
	cfg->epochs = 2;
	cfg->batch = batch;
	cfg->seed = 5;
	cfg->aug.pad_to = 32;
	cfg->aug.crop_pad = 2;
	cfg->aug.flip = 1;
	cfg->aug.mean[0] = 0.5f;
	cfg->aug.std[0] = 0.5f;
	cfg->optim = nb_optim_sgd_default();
	cfg->optim.lr = 0.05f;
	cfg->optim.momentum = 0.9f;
	cfg->optim.weight_decay = 5e-4f;
	cfg->sched.base_lr = 0.05f;
}

typedef struct train_job {
	member m;
	nb_dist d;
	nb_net *net;
	int batch, epochs;
	const char *state; /* state file, or NULL */
	nb_train_result res;
	int rc;
	char err[NB_ERR_LEN];
} train_job;

static void *train_member(void *arg)
{
	train_job *j = arg;
	omp_set_num_threads(1);
	nb_train_config cfg;
	config(&cfg, j->batch);
	if (j->epochs)
		cfg.epochs = j->epochs;
	cfg.state_path = j->state;
	j->rc = nb_train_dist(j->net, &train_set, &test_set, &cfg, &j->d,
			      &j->res, j->err);
	return NULL;
}

/* Trains a fresh bn_net on a group of `size` threads; nets[r] get the
 * members' networks. */
static int train_group_state(int size, int batch, int epochs,
			     const char *state, nb_net **nets,
			     train_job *jobs)
{
	group g = {.size = size};
	pthread_barrier_init(&g.bar, NULL, (unsigned)size);
	pthread_t th[MAX_MEMBERS];
	for (int r = 0; r < size; r++) {
		memset(&jobs[r], 0, sizeof jobs[r]);
		jobs[r].m = (member){&g, r};
		jobs[r].d = (nb_dist){r, size, sum_d, sum_f, &jobs[r].m};
		jobs[r].net = nets[r] = bn_net();
		jobs[r].batch = batch;
		jobs[r].epochs = epochs;
		jobs[r].state = state;
		if (!nets[r])
			return -1;
	}
	for (int r = 0; r < size; r++)
		pthread_create(&th[r], NULL, train_member, &jobs[r]);
	for (int r = 0; r < size; r++)
		pthread_join(th[r], NULL);
	pthread_barrier_destroy(&g.bar);
	for (int r = 0; r < size; r++)
		if (jobs[r].rc != 0) {
			fprintf(stderr, "member %d: %s\n", r, jobs[r].err);
			return -1;
		}
	return 0;
}

static int train_group(int size, int batch, nb_net **nets, train_job *jobs)
{
	return train_group_state(size, batch, 0, NULL, nets, jobs);
}

/* Largest |a - b| over every parameter and buffer, relative to max |a|. */
static double params_diff(nb_net *a, nb_net *b, double *scale)
{
	nb_param **pa, **pb;
	int n = nb_net_params(a, &pa);
	nb_net_params(b, &pb);
	double d = 0, s = 0;
	for (int i = 0; i < n; i++)
		for (size_t k = 0; k < pa[i]->size; k++) {
			d = fmax(d, fabs((double)pa[i]->data[k] - pb[i]->data[k]));
			s = fmax(s, fabs((double)pa[i]->data[k]));
		}
	if (scale)
		*scale = s;
	return d;
}

static void group_matches_one_process(void)
{
	char err[NB_ERR_LEN];
	int max = omp_get_max_threads();
	omp_set_num_threads(1);
	nb_net *one = bn_net();
	CU_ASSERT_PTR_NOT_NULL_FATAL(one);
	nb_train_config cfg;
	config(&cfg, 64);
	nb_train_result r1;
	CU_ASSERT_EQUAL_FATAL(
	    nb_train(one, &train_set, &test_set, &cfg, &r1, err), 0);
	omp_set_num_threads(max);

	nb_net *a[2], *b[2];
	train_job ja[2], jb[2];
	CU_ASSERT_EQUAL_FATAL(train_group(2, 64, a, ja), 0);
	CU_ASSERT_EQUAL_FATAL(train_group(2, 64, b, jb), 0);
	double scale;
	double d = params_diff(one, a[0], &scale);
	printf("\n  2 members vs one process: max |diff| %.3g (max |w| %.3g)\n",
	       d, scale);
	CU_ASSERT(d < 1e-3 * scale);
	/* the members hold one model */
	CU_ASSERT_EQUAL(params_diff(a[0], a[1], NULL), 0.0);
	/* deterministic for a group size */
	CU_ASSERT_EQUAL(params_diff(a[0], b[0], NULL), 0.0);
	/* the same statistics as the one process */
	CU_ASSERT_EQUAL(ja[0].res.epochs_done, 2);
	CU_ASSERT(fabs(ja[0].res.last.total - r1.last.total) <
		  1e-3 * fabs(r1.last.total) + 1e-6);
	CU_ASSERT(fabs(ja[0].res.last_acc - r1.last_acc) <= 1.0);
	CU_ASSERT_EQUAL(ja[0].res.last_acc, ja[1].res.last_acc);
	for (int r = 0; r < 2; r++) {
		nb_net_free(a[r]);
		nb_net_free(b[r]);
	}
	nb_net_free(one);
}

/* A group killed after an epoch resumes from member 0's state file (every
 * member reads it) to the uninterrupted group's weights, bit for bit. */
static void group_resumes(void)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/state.safetensors", dir);
	nb_net *a[2], *b[2], *c[2];
	train_job ja[2], jb[2], jc[2];
	CU_ASSERT_EQUAL_FATAL(train_group_state(2, 64, 2, NULL, a, ja), 0);
	CU_ASSERT_EQUAL_FATAL(train_group_state(2, 64, 1, path, b, jb), 0);
	CU_ASSERT_EQUAL_FATAL(train_group_state(2, 64, 2, path, c, jc), 0);
	CU_ASSERT_EQUAL(jc[0].res.resumed_from, 1);
	CU_ASSERT_EQUAL(jc[1].res.resumed_from, 1);
	CU_ASSERT(params_diff(a[0], b[0], NULL) > 0); /* 1 epoch != 2 */
	CU_ASSERT_EQUAL(params_diff(a[0], c[0], NULL), 0.0);
	CU_ASSERT_EQUAL(params_diff(a[1], c[1], NULL), 0.0);
	for (int r = 0; r < 2; r++) {
		nb_net_free(a[r]);
		nb_net_free(b[r]);
		nb_net_free(c[r]);
	}
	remove(path);
}

static void batch_smaller_than_group(void)
{
	nb_net *n[3];
	train_job j[3];
	/* 600 samples in batches of 2 on 3 members */
	CU_ASSERT_NOT_EQUAL(train_group(3, 2, n, j), 0);
	for (int r = 0; r < 3; r++) {
		CU_ASSERT(j[r].rc < 0);
		CU_ASSERT_PTR_NOT_NULL(strstr(j[r].err, "at least 3 samples"));
		nb_net_free(n[r]);
	}
}

static const nb_test_entry tests[] = {
	{"synchronised BatchNorm equals the whole batch's",
	 syncbn_matches_whole_batch},
	{"a 2-member group trains as one process", group_matches_one_process},
	{"a group resumes bit-identically from its state file", group_resumes},
	{"a batch smaller than the group is an error",
	 batch_smaller_than_group},
	{NULL, NULL}};

void nb_test_dist(void)
{
	CU_pSuite s = CU_add_suite("dist", suite_init, suite_clean);
	if (!s)
		return;
	for (const nb_test_entry *t = tests; t->name; t++)
		CU_add_test(s, t->name, t->fn);
}
