/*
 * dist.h - data-parallel training, inside the library (not installed).
 *
 * One model trained by a group of processes ("members", ranks 0..size-1 of
 * the group): every member holds the same weights, builds the same global
 * batch (so the order and augmentation streams are those of a
 * single-process run), and computes the forward and backward of its share
 * of it. Two things cross members, both through the group's sum callbacks:
 * the weight gradients after every backward, and the per-channel sums of
 * every BatchNorm layer in training mode (synchronised BatchNorm), so that
 * the statistics are those of the global batch. The result equals a
 * single-process run on the global batch up to float rounding.
 *
 * Nothing here knows MPI: the callbacks are MPI_Allreduce in
 * mpi_runner.c, and a test can supply its own.
 */
#ifndef NB_DIST_H
#define NB_DIST_H

#include "net.h"
#include "train.h"

/* Sums buf (n values) over the group, in place. Every member calls it at
 * the same point with the same n, and every member gets the same result.
 * Returns 0 or a negative code. */
typedef int (*nb_sum_d_fn)(void *ctx, double *buf, int n);
typedef int (*nb_sum_f_fn)(void *ctx, float *buf, int n);

typedef struct nb_dist {
	int rank, size; /* this member, the group's size */
	nb_sum_d_fn sum_d; /* statistics, loss terms, BatchNorm sums */
	nb_sum_f_fn sum_f; /* weight gradients */
	void *ctx;
} nb_dist;

/*
 * The BatchNorm hook: with a sum callback set, every BatchNorm layer in
 * training mode takes its statistics over the whole group's batch (its
 * per-channel sums go through fn) in forward and backward. NULL (the
 * default) restores per-process statistics.
 */
void nb_net_set_reduce(nb_net *net, nb_sum_d_fn fn, void *ctx);

/* Synchronised BatchNorm (syncbn.c): as nb_batchnorm_forward_train and
 * nb_batchnorm_backward_train, with the per-channel sums summed over the
 * group by fn. N is this member's share; the statistics count every
 * member's. */
int nb_batchnorm_forward_train_sync(float *out, float *save_mean,
				    float *save_invstd, float *running_mean,
				    float *running_var, const float *in,
				    const float *gamma, const float *beta, int N,
				    int C, int L, float momentum, float eps,
				    nb_sum_d_fn fn, void *ctx);
int nb_batchnorm_backward_train_sync(float *din, float *dgamma, float *dbeta,
				     const float *dout, const float *in,
				     const float *save_mean,
				     const float *save_invstd,
				     const float *gamma, int N, int C, int L,
				     nb_sum_d_fn fn, void *ctx);

/*
 * nb_train on a group: as nb_train (train.h), with dist == NULL exactly
 * nb_train. With a group, every member must call it with the same
 * arguments (the same network weights, data and configuration); member k
 * of R computes batch samples [k*b/R, (k+1)*b/R) of every batch of b, so
 * every batch must hold at least R samples. Only member 0 writes the log,
 * the best checkpoint and the state file and calls the progress hooks;
 * every member reads a state file to resume. The loss hook must be a mean
 * over the batch's samples (cross entropy, KD, the nasty teacher's loss):
 * the loop weighs each member's share by its size. Dropout masks are drawn
 * per member, so a network with dropout is deterministic for a given group
 * size but does not match a single-process run.
 */
int nb_train_dist(nb_net *net, const nb_dataset *train,
		  const nb_dataset *test, const nb_train_config *cfg,
		  const nb_dist *dist, nb_train_result *res, char *err);

#endif
