/*
 * train.c - the training loop and the test pass (see train.h).
 *
 * Accuracy here is sample-weighted (correct / samples). The paper's code
 * averages per-batch accuracies instead, which weighs the last partial test
 * batch more; the difference is a few hundredths of a point.
 *
 * What it deliberately does not do: checkpoints, resumption and progress
 * display. The runner owns those and plugs in through the hooks.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "error.h"
#include "train.h"

void nb_train_config_default(nb_train_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->epochs = 10;
	cfg->batch = 128;
	cfg->eval_batch = 500;
	cfg->optim = nb_optim_adam_default();
	cfg->sched.kind = NB_SCHED_CONSTANT;
	cfg->sched.base_lr = cfg->optim.lr;
	for (int i = 0; i < 4; i++) {
		cfg->aug.mean[i] = 0.0f;
		cfg->aug.std[i] = 1.0f;
	}
}

static int ce_hook(void *ctx, const nb_batch *b, const float *z, int C,
		   float *dz, nb_loss_terms *terms, char *err)
{
	(void)ctx;
	(void)err;
	double ce = nb_cross_entropy(z, b->y, b->n, C, 0.0f, dz, 1.0f);
	terms->total = terms->ce = ce;
	terms->kl = 0;
	return 0;
}

int nb_evaluate(nb_net *net, const nb_dataset *ds, const nb_augment *aug,
		int batch, int limit, double *acc, double *loss, char *err)
{
	int n = limit > 0 && limit < ds->n ? limit : ds->n;
	int rc = nb_augment_check(ds, aug, err);
	if (rc < 0)
		return rc;
	int oh, ow;
	nb_augment_out_size(ds, aug, &oh, &ow);
	if (batch <= 0)
		batch = 256;
	if (batch > n)
		batch = n;
	size_t per = (size_t)ds->c * oh * ow;
	float *x = malloc((size_t)batch * per * sizeof(float));
	int *y = malloc((size_t)batch * sizeof(int));
	int *idx = malloc((size_t)batch * sizeof(int));
	if (!x || !y || !idx) {
		rc = nb_errorf(err, NB_ENOMEM, "out of memory for a test batch");
		goto out;
	}
	int was_training = nb_net_training(net);
	nb_net_set_training(net, 0);
	int C;
	nb_net_node_shape(net, nb_net_output_node(net), &C, NULL, NULL);
	long correct = 0;
	double ce_sum = 0;
	for (int start = 0; start < n; start += batch) {
		int b = n - start < batch ? n - start : batch;
		for (int i = 0; i < b; i++)
			idx[i] = start + i;
		nb_batch_build(x, y, ds, idx, b, aug, 0, NULL);
		rc = nb_net_forward(net, x, b, err);
		if (rc < 0)
			break;
		const float *z = nb_net_output(net, nb_net_output_node(net));
		correct += nb_count_correct(z, y, b, C);
		ce_sum += nb_cross_entropy(z, y, b, C, 0.0f, NULL, 0.0f) * b;
	}
	nb_net_set_training(net, was_training);
	if (rc == 0) {
		if (acc)
			*acc = 100.0 * (double)correct / n;
		if (loss)
			*loss = ce_sum / n;
	}
out:
	free(x);
	free(y);
	free(idx);
	return rc;
}

static const char *const log_header[] = {
	"epoch", "lr", "loss", "ce", "kl", "train_acc", "test_acc",
	"test_loss", "best_acc", "img_per_s", "epoch_s", "wall_s"};
#define LOG_COLS ((int)(sizeof log_header / sizeof log_header[0]))

static int log_epoch(nb_csv *log, const nb_epoch_stats *s)
{
	char cells[LOG_COLS][32];
	const char *row[LOG_COLS];
	snprintf(cells[0], 32, "%d", s->epoch + 1);
	snprintf(cells[1], 32, "%.6g", s->lr);
	snprintf(cells[2], 32, "%.6f", s->loss);
	snprintf(cells[3], 32, "%.6f", s->ce);
	snprintf(cells[4], 32, "%.6f", s->kl);
	snprintf(cells[5], 32, "%.2f", s->train_acc);
	snprintf(cells[6], 32, "%.2f", s->test_acc);
	snprintf(cells[7], 32, "%.6f", s->test_loss);
	snprintf(cells[8], 32, "%.2f", s->best_acc);
	snprintf(cells[9], 32, "%.1f", s->img_per_s);
	snprintf(cells[10], 32, "%.3f", s->epoch_s);
	snprintf(cells[11], 32, "%.3f", s->wall_s);
	for (int i = 0; i < LOG_COLS; i++)
		row[i] = cells[i];
	return nb_csv_add_row(log, row);
}

int nb_train(nb_net *net, const nb_dataset *train, const nb_dataset *test,
	     const nb_train_config *cfg, nb_train_result *res, char *err)
{
	memset(res, 0, sizeof *res);
	res->best_epoch = -1;
	if (cfg->epochs < 0 || cfg->batch <= 0)
		return nb_errorf(err, NB_EINVAL, "bad epochs %d / batch %d",
				 cfg->epochs, cfg->batch);
	if (train->n < 2)
		return nb_errorf(err, NB_EINVAL,
				 "training set '%s' has %d samples", train->name,
				 train->n);
	int rc = nb_augment_check(train, &cfg->aug, err);
	if (rc < 0)
		return rc;
	int C, c_in, h_in, w_in, oh, ow;
	nb_net_node_shape(net, nb_net_output_node(net), &C, NULL, NULL);
	nb_net_node_shape(net, 0, &c_in, &h_in, &w_in);
	nb_augment_out_size(train, &cfg->aug, &oh, &ow);
	if (c_in != train->c || h_in != oh || w_in != ow)
		return nb_errorf(err, NB_EINVAL,
				 "the model takes %dx%dx%d inputs but '%s' batches are %dx%dx%d",
				 c_in, h_in, w_in, train->name, train->c, oh, ow);
	if (C < train->classes)
		return nb_errorf(err, NB_EINVAL,
				 "the model has %d outputs but '%s' has %d classes",
				 C, train->name, train->classes);

	int B = cfg->batch < train->n ? cfg->batch : train->n;
	size_t per = (size_t)c_in * oh * ow;
	float *x = malloc((size_t)B * per * sizeof(float));
	int *y = malloc((size_t)B * sizeof(int));
	int *order = malloc((size_t)train->n * sizeof(int));
	nb_param **params;
	int n_params = nb_net_params(net, &params);
	nb_csv *log = cfg->log_csv ? nb_csv_new(log_header, LOG_COLS) : NULL;
	nb_optim *opt = NULL;
	if (!x || !y || !order || (cfg->log_csv && !log)) {
		rc = nb_errorf(err, NB_ENOMEM, "out of memory for training");
		goto out;
	}
	nb_optim_config oc = cfg->optim;
	if (cfg->sched.base_lr > 0)
		oc.lr = cfg->sched.base_lr;
	opt = nb_optim_new(&oc, params, n_params, err);
	if (!opt) {
		rc = NB_ENOMEM;
		goto out;
	}
	nb_schedule sched = cfg->sched;
	if (!(sched.base_lr > 0))
		sched.base_lr = oc.lr;

	nb_rng order_rng, aug_rng;
	nb_rng_seed(&order_rng, cfg->seed, NB_RNG_ORDER);
	nb_rng_seed(&aug_rng, cfg->seed, NB_RNG_AUGMENT);
	nb_net_seed_dropout(net, cfg->seed);
	for (int i = 0; i < train->n; i++)
		order[i] = i;
	nb_loss_hook hook = cfg->loss ? cfg->loss : ce_hook;

	double t0 = omp_get_wtime();
	double train_s = 0;
	long train_imgs = 0;
	int steps = (train->n + B - 1) / B;
	if (train->n % B == 1)
		steps--; /* a one-sample batch breaks BatchNorm statistics */

	for (int epoch = 0; epoch < cfg->epochs; epoch++) {
		double te = omp_get_wtime();
		float lr = nb_schedule_lr(&sched, epoch);
		nb_optim_set_lr(opt, lr);
		nb_rng_shuffle(&order_rng, order, train->n);
		nb_net_set_training(net, 1);
		double sum_loss = 0, sum_ce = 0, sum_kl = 0;
		long correct = 0, seen = 0;
		for (int step = 0; step < steps; step++) {
			int start = step * B;
			int b = train->n - start < B ? train->n - start : B;
			nb_batch_build(x, y, train, order + start, b, &cfg->aug,
				       1, &aug_rng);
			rc = nb_net_forward(net, x, b, err);
			if (rc < 0)
				goto out;
			int out_node = nb_net_output_node(net);
			const float *z = nb_net_output(net, out_node);
			float *dz = nb_net_grad(net, out_node);
			if (!dz) {
				rc = nb_errorf(err, NB_ENOMEM,
					       "out of memory for gradients");
				goto out;
			}
			nb_batch bt = {x, y, b, epoch, step};
			nb_loss_terms terms = {0, 0, 0};
			rc = hook(cfg->loss_ctx, &bt, z, C, dz, &terms, err);
			if (rc < 0)
				goto out;
			if (!isfinite(terms.total) ||
			    !nb_all_finite(z, (long)b * C)) {
				res->diverged = 1;
				break;
			}
			correct += nb_count_correct(z, y, b, C);
			seen += b;
			sum_loss += terms.total;
			sum_ce += terms.ce;
			sum_kl += terms.kl;
			nb_optim_zero_grad(opt);
			rc = nb_net_backward(net, NULL, err);
			if (rc < 0)
				goto out;
			rc = nb_optim_step(opt);
			if (rc < 0) {
				rc = nb_errorf(err, rc,
					       "optimiser: out of memory");
				goto out;
			}
			if (cfg->on_step)
				cfg->on_step(cfg->hook_ctx, epoch, step, steps,
					     sum_loss / (step + 1));
		}
		double t_train = omp_get_wtime() - te;
		if (res->diverged)
			break;
		train_s += t_train;
		train_imgs += seen;

		nb_epoch_stats s = {0};
		s.epoch = epoch;
		s.epochs = cfg->epochs;
		s.lr = lr;
		s.loss = sum_loss / steps;
		s.ce = sum_ce / steps;
		s.kl = sum_kl / steps;
		s.train_acc = seen ? 100.0 * correct / seen : 0;
		s.img_per_s = t_train > 0 ? seen / t_train : 0;
		if (test) {
			rc = nb_evaluate(net, test, &cfg->aug, cfg->eval_batch,
					 0, &s.test_acc, &s.test_loss, err);
			if (rc < 0)
				goto out;
		}
		/* ties go to the later epoch, as the paper's checkpointing */
		if (s.test_acc >= res->best_acc || res->best_epoch < 0) {
			res->best_acc = s.test_acc;
			res->best_epoch = epoch;
		}
		res->last_acc = s.test_acc;
		res->epochs_done = epoch + 1;
		res->last.total = s.loss;
		res->last.ce = s.ce;
		res->last.kl = s.kl;
		s.best_acc = res->best_acc;
		s.best_epoch = res->best_epoch;
		s.epoch_s = omp_get_wtime() - te;
		s.wall_s = omp_get_wtime() - t0;
		if (log) {
			if (log_epoch(log, &s) < 0) {
				rc = nb_errorf(err, NB_ENOMEM, "out of memory");
				goto out;
			}
			rc = nb_csv_write(log, cfg->log_csv, err);
			if (rc < 0)
				goto out;
		}
		if (cfg->on_epoch)
			cfg->on_epoch(cfg->hook_ctx, &s);
	}
	res->wall_s = omp_get_wtime() - t0;
	res->img_per_s = train_s > 0 ? train_imgs / train_s : 0;
out:
	nb_optim_free(opt);
	nb_csv_free(log);
	free(x);
	free(y);
	free(order);
	return rc;
}
