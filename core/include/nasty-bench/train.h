/*
 * train.h - the training loop that every teacher strategy and attack
 * drives: epochs of shuffled, augmented mini-batches, a loss hook that turns
 * the model's logits into a loss and its gradient, an optimiser step, a
 * learning-rate schedule evaluated per epoch, a test pass after every epoch,
 * and a per-epoch CSV log.
 *
 * The loop owns order and augmentation randomness (streams NB_RNG_ORDER and
 * NB_RNG_AUGMENT of the run's seed), so two runs with the same seed and
 * thread count produce identical weights. A step whose loss or logits are
 * not finite stops the run and marks it diverged: that is a result, not an
 * error.
 */
#ifndef NASTY_BENCH_TRAIN_H
#define NASTY_BENCH_TRAIN_H

#include <stdint.h>

#include "bag.h"
#include "data.h"
#include "loss.h"
#include "net.h"
#include "optim.h"

/* One training mini-batch as the loss hook sees it. */
typedef struct nb_batch {
	const float *x; /* (n, c, h, w), normalised */
	const int *y;   /* (n) labels */
	int n;
	int epoch, step; /* 0-based */
} nb_batch;

/*
 * The loss hook, called after the model's forward on a training batch.
 * z (n, C) are the model's logits. It must ACCUMULATE dL/dz into dz (zeroed
 * by the loop) and fill terms (terms->total is the minimised value). It may
 * run other networks on b->x (a teacher, an adversary). Returns 0 or a
 * negative code with err filled; an error ends the run.
 * When no hook is given the loss is cross entropy with the labels.
 */
typedef int (*nb_loss_hook)(void *ctx, const nb_batch *b, const float *z,
			    int C, float *dz, nb_loss_terms *terms, char *err);

typedef struct nb_epoch_stats {
	int epoch, epochs; /* epoch is 0-based */
	float lr;
	double loss, ce, kl;    /* means over the epoch's batches */
	double train_acc;       /* percent, on augmented training batches */
	double test_acc;        /* percent */
	double test_loss;       /* cross entropy on the test set */
	double best_acc;        /* best test accuracy so far, percent */
	int best_epoch;
	double img_per_s;       /* training images per second this epoch */
	double epoch_s, wall_s; /* this epoch, since the start */
} nb_epoch_stats;

/*
 * A source of synthetic training batches (data-free training): fills n
 * inputs x (n, c, h, w), normalised as the model sees them, and labels y
 * (n), each in [0, classes) or -1 where there is none, for step `step`
 * (0-based) of epoch `epoch`. Called once per step, before the model's
 * forward. Returns 0 or a negative code with err filled.
 */
typedef int (*nb_synth_hook)(void *ctx, int epoch, int step, int n, float *x,
			     int *y, char *err);
/*
 * A hook's own resumable state (bag.h): save puts it into the bag after
 * every epoch, load gets it back when a run resumes (every entry must be
 * read). Both return 0 or a negative code with err filled.
 */
typedef int (*nb_save_hook)(void *ctx, nb_bag *out, char *err);
typedef int (*nb_load_hook)(void *ctx, nb_bag *in, char *err);

/* Called after each epoch (progress display); may be NULL. */
typedef void (*nb_epoch_hook)(void *ctx, const nb_epoch_stats *s);
/* Called after each step with the running mean loss; may be NULL. */
typedef void (*nb_step_hook)(void *ctx, int epoch, int step, int steps,
			     double loss);

typedef struct nb_train_config {
	int epochs;
	int batch;      /* training batch size (the last partial batch is
			   kept, unless it would hold a single sample) */
	int eval_batch; /* test batch size */
	uint64_t seed;
	nb_optim_config optim;
	nb_schedule sched; /* sched.base_lr overrides optim.lr */
	nb_augment aug;
	const char *log_csv; /* per-epoch CSV log, rewritten atomically after
				each epoch; NULL for none */
	/* Resumable runs: when state_path is set, the full training state
	 * (weights, buffers, optimiser state, random streams, epoch, best
	 * accuracy, log rows) is written there atomically after every epoch,
	 * and a run that finds the file resumes after its last epoch, with a
	 * result bit-identical to an uninterrupted run (with the same thread
	 * count; the log is rebuilt with every epoch). A state file that does
	 * not match the network (names, shapes) or the configuration (data,
	 * batch, seed, optimiser, schedule, augmentation; the epoch count
	 * may grow) is an error naming it, and nothing is changed. The loss
	 * hook's own state is saved only through save/load below. */
	const char *state_path;
	/* When set, the checkpoint of the best test-accuracy epoch (ties: the
	 * later) is written there atomically, with best_meta's metadata. */
	const char *best_path;
	const struct nb_ckpt_meta *best_meta;
	nb_loss_hook loss;
	void *loss_ctx;
	nb_epoch_hook on_epoch;
	nb_step_hook on_step;
	void *hook_ctx;
	/* Data-free training: when synth is set, nb_train's `train` may be
	 * NULL and is not read; every epoch is synth_steps batches of `batch`
	 * samples from synth (synth_ctx), without augmentation, each passed
	 * to the loss hook as usual (a loss hook is required: the labels may
	 * be -1). The test set and its preprocessing (aug's mean and std)
	 * are used as with data. train_acc counts only labelled samples. */
	nb_synth_hook synth;
	void *synth_ctx;
	int synth_steps;
	/* Resumable hook state: when state_path is set and save is not
	 * NULL, save (with state_ctx) adds the hooks' own state to every
	 * state file, as "attack.<name>" tensors, and load restores it on
	 * resume, before the first resumed step. */
	nb_save_hook save;
	nb_load_hook load;
	void *state_ctx;
} nb_train_config;

typedef struct nb_train_result {
	double best_acc, last_acc; /* percent */
	int best_epoch;            /* 0-based; ties go to the later epoch */
	int epochs_done;
	int diverged;  /* 1: a non-finite loss or logit stopped the run */
	double wall_s;
	double img_per_s; /* over the whole run's training steps */
	int resumed_from; /* epochs found finished in state_path (0 = none) */
	nb_loss_terms last; /* epoch means of the last epoch */
} nb_train_result;

/* Fills the defaults: 10 epochs, batch 128, Adam 1e-3, constant lr, no
 * augmentation, seed 0. */
void nb_train_config_default(nb_train_config *cfg);

/*
 * Trains net (finalised, in training mode for the steps) on `train` (or on
 * cfg->synth's batches), evaluating on `test` after every epoch. Returns 0 (also when the run
 * diverged: see res->diverged) or a negative code with err filled.
 */
int nb_train(nb_net *net, const nb_dataset *train, const nb_dataset *test,
	     const nb_train_config *cfg, nb_train_result *res, char *err);

/*
 * Test accuracy (percent, sample-weighted) and mean cross entropy of net on
 * ds with test preprocessing, in evaluation mode (the mode is restored).
 * limit > 0 uses only the first `limit` samples. Either output may be NULL.
 */
int nb_evaluate(nb_net *net, const nb_dataset *ds, const nb_augment *aug,
		int batch, int limit, double *acc, double *loss, char *err);

/*
 * An in-memory table of text cells written as CSV (libcsv quoting) to a
 * file atomically: a temporary file in the same folder, fsync, rename.
 */
typedef struct nb_csv nb_csv;
nb_csv *nb_csv_new(const char *const *header, int cols);
void nb_csv_free(nb_csv *t);
/* Appends a row of `cols` cells (copied). */
int nb_csv_add_row(nb_csv *t, const char *const *cells);
int nb_csv_write(const nb_csv *t, const char *path, char *err);

/* Writes len bytes to path atomically (temp file, fsync, rename). */
int nb_write_file_atomic(const char *path, const void *data, size_t len,
			 char *err);

#endif
