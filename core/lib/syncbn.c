/*
 * syncbn.c - synchronised BatchNorm for data-parallel training (dist.h):
 * the training-mode forward and backward of batchnorm.c with the
 * per-channel sums taken over every member of the group.
 *
 * The numerics are batchnorm.c's up to the rounding of double sums:
 * statistics in double, here in two passes (the mean, then squared
 * deviations from it: each pass one sum over the group; batchnorm.c takes
 * shifted sums in one pass), the biased variance for normalisation, the
 * unbiased one (with the group's count) for the running variance, and the
 * backward's mean correction recovering the double mean from the float
 * save_mean.
 *
 * What it deliberately does not do: overlap the sums with computation, or
 * anything in evaluation mode (running statistics are the same on every
 * member, so batchnorm.c's evaluation functions serve).
 */
#include <math.h>
#include <stdlib.h>

#include "dist.h"
#include "error.h"
#include "ops.h"

#define NB_BN_PAR_MIN 32768

int nb_batchnorm_forward_train_sync(float *out, float *save_mean,
				    float *save_invstd, float *running_mean,
				    float *running_var, const float *in,
				    const float *gamma, const float *beta, int N,
				    int C, int L, float momentum, float eps,
				    nb_sum_d_fn fn, void *ctx)
{
	if (N < 0 || C <= 0 || L <= 0)
		return NB_EINVAL;
	/* [0, C): sums, then squared deviations; [C]: the count */
	double *s = malloc(((size_t)C + 1) * sizeof *s);
	double *mean = malloc((size_t)C * sizeof *mean);
	if (!s || !mean) {
		free(s);
		free(mean);
		return NB_ENOMEM;
	}
	size_t total = (size_t)N * C * L;
#pragma omp parallel for schedule(static) if (total >= NB_BN_PAR_MIN)
	for (int c = 0; c < C; c++) {
		double sum = 0;
		for (int n = 0; n < N; n++) {
			const float *x = in + ((size_t)n * C + c) * L;
			for (int l = 0; l < L; l++)
				sum += x[l];
		}
		s[c] = sum;
	}
	s[C] = (double)N * L;
	int rc = fn(ctx, s, C + 1);
	double M = s[C];
	if (rc == 0 && M <= 1)
		rc = NB_EINVAL;
	if (rc < 0)
		goto out;
	for (int c = 0; c < C; c++)
		mean[c] = s[c] / M;
#pragma omp parallel for schedule(static) if (total >= NB_BN_PAR_MIN)
	for (int c = 0; c < C; c++) {
		double sq = 0;
		for (int n = 0; n < N; n++) {
			const float *x = in + ((size_t)n * C + c) * L;
			for (int l = 0; l < L; l++) {
				double d = x[l] - mean[c];
				sq += d * d;
			}
		}
		s[c] = sq;
	}
	if ((rc = fn(ctx, s, C)) < 0)
		goto out;
#pragma omp parallel for schedule(static) if (total >= NB_BN_PAR_MIN)
	for (int c = 0; c < C; c++) {
		double var = s[c] / M;
		double invstd = 1.0 / sqrt(var + (double)eps);
		double g = gamma ? gamma[c] : 1.0;
		double b = beta ? beta[c] : 0.0;
		/* batchnorm.c's channel_apply: the mean as float + remainder */
		float hi = (float)mean[c], lo = (float)(mean[c] - hi);
		float sc = (float)(invstd * g), sh = (float)b;
		for (int n = 0; n < N; n++) {
			size_t off = ((size_t)n * C + c) * L;
			for (int l = 0; l < L; l++)
				out[off + l] = ((in[off + l] - hi) - lo) * sc + sh;
		}
		if (save_mean)
			save_mean[c] = (float)mean[c];
		if (save_invstd)
			save_invstd[c] = (float)invstd;
		if (running_mean)
			running_mean[c] =
			    (float)((1.0 - momentum) * running_mean[c] +
				    momentum * mean[c]);
		if (running_var)
			running_var[c] =
			    (float)((1.0 - momentum) * running_var[c] +
				    momentum * (var * M / (M - 1.0)));
	}
out:
	free(s);
	free(mean);
	return rc;
}

int nb_batchnorm_backward_train_sync(float *din, float *dgamma, float *dbeta,
				     const float *dout, const float *in,
				     const float *save_mean,
				     const float *save_invstd,
				     const float *gamma, int N, int C, int L,
				     nb_sum_d_fn fn, void *ctx)
{
	/* per channel: sum dy, sum (x - m0), sum dy (x - m0); then the count;
	 * then this member's own sum dy and sum dy (x - m0) */
	double *s = malloc(((size_t)5 * C + 1) * sizeof *s);
	if (!s)
		return NB_ENOMEM;
	double *own = s + 3 * C + 1;
	size_t total = (size_t)N * C * L;
#pragma omp parallel for schedule(static) if (total >= NB_BN_PAR_MIN)
	for (int c = 0; c < C; c++) {
		double m0 = save_mean[c];
		double sum_dy = 0, sum_dx = 0, sum_dy_dx = 0;
		for (int n = 0; n < N; n++) {
			size_t off = ((size_t)n * C + c) * L;
			for (int l = 0; l < L; l++) {
				double dy = dout[off + l];
				double dx = in[off + l] - m0;
				sum_dy += dy;
				sum_dx += dx;
				sum_dy_dx += dy * dx;
			}
		}
		s[3 * c] = sum_dy;
		s[3 * c + 1] = sum_dx;
		s[3 * c + 2] = sum_dy_dx;
		own[2 * c] = sum_dy;
		own[2 * c + 1] = sum_dy_dx;
	}
	s[3 * C] = (double)N * L;
	int rc = fn(ctx, s, 3 * C + 1);
	if (rc < 0) {
		free(s);
		return rc;
	}
	double M = s[3 * C];
#pragma omp parallel for schedule(static) if (total >= NB_BN_PAR_MIN)
	for (int c = 0; c < C; c++) {
		double invstd = save_invstd[c];
		double sum_dy = s[3 * c];
		double delta = s[3 * c + 1] / M;
		double mean = save_mean[c] + delta;
		double sum_dy_xhat = (s[3 * c + 2] - delta * sum_dy) * invstd;
		/* dgamma and dbeta: this member's share only, as every
		 * weight gradient (the loop sums them over the group) */
		if (dbeta)
			dbeta[c] += (float)own[2 * c];
		if (dgamma)
			dgamma[c] += (float)((own[2 * c + 1] -
					      delta * own[2 * c]) *
					     invstd);
		if (!din)
			continue;
		double g = gamma ? gamma[c] : 1.0;
		double k = g * invstd;
		double mean_dy = sum_dy / M;
		double proj = sum_dy_xhat / M * invstd;
		for (int n = 0; n < N; n++) {
			size_t off = ((size_t)n * C + c) * L;
			for (int l = 0; l < L; l++) {
				double v = dout[off + l] - mean_dy -
					   (in[off + l] - mean) * proj;
				din[off + l] += (float)(k * v);
			}
		}
	}
	free(s);
	return 0;
}
