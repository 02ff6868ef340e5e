/*
 * loss.c - cross entropy, temperature KL, the KD and nasty-teacher losses,
 * with their gradients (see loss.h for the formulas and the argument order).
 *
 * How: every row works from its log-softmax, log p_i = (z_i - max)/tau -
 * log sum_k exp((z_k - max)/tau), computed in double on the fly (no scratch
 * buffers), so large logits (tens to hundreds) neither overflow nor lose the
 * small probabilities. Sums are accumulated in double; gradients are
 * computed in double and ACCUMULATED (+=) into the float buffers, times the
 * caller's scale.
 *
 * Conventions that loss.h leaves open:
 *  - a KL term with p_i = 0 contributes 0 and has gradient 0 (PyTorch's
 *    xlogy convention), so p-side logits may be -inf (masked classes, as a
 *    "stingy" teacher does) as long as one entry of the row is finite;
 *  - labels must be in [0, C): checking them is the caller's job, but a row
 *    with a label out of range is never used as an index: it makes the
 *    returned loss NaN (so the mistake shows in every log) and leaves that
 *    row's gradient untouched;
 *  - B < 1 or C < 1: the loss is NaN and nothing is written.
 *
 * What it deliberately does not do: no threading (a batch of logits is tiny
 * next to the network that produced it), no ignore_index, no class weights,
 * no reductions other than PyTorch's mean / batchmean, and no "+100" offset
 * of the paper's logged nasty loss.
 */
#include <math.h>
#include <stddef.h>

#include "loss.h"

/* log sum_k exp((z_k - m)/tau) and m = max_k z_k of one row. */
static double row_lse(const float *z, int C, double inv_tau, double *m_out)
{
	double m = z[0];
	for (int i = 1; i < C; i++)
		if (z[i] > m)
			m = z[i];
	double s = 0;
	for (int i = 0; i < C; i++)
		s += exp(((double)z[i] - m) * inv_tau);
	*m_out = m;
	return log(s);
}

static double ce_core(const float *z, const int *labels, int B, int C,
		      double smoothing, float *dz, double scale)
{
	if (B < 1 || C < 1)
		return NAN;
	double total = 0;
	double off = smoothing / C;  /* target of every class */
	double on = 1.0 - smoothing; /* extra target of the label */
	double gs = scale / B;
	for (int b = 0; b < B; b++) {
		const float *zr = z + (size_t)b * C;
		int y = labels[b];
		if (y < 0 || y >= C) {
			total += NAN;
			continue;
		}
		double m;
		double lse = row_lse(zr, C, 1.0, &m);
		double sum_lp = 0;
		for (int i = 0; i < C; i++)
			sum_lp += ((double)zr[i] - m) - lse;
		double lp_y = ((double)zr[y] - m) - lse;
		total += -on * lp_y - off * sum_lp;
		if (dz) {
			float *dr = dz + (size_t)b * C;
			for (int i = 0; i < C; i++) {
				double p = exp(((double)zr[i] - m) - lse);
				double t = off + (i == y ? on : 0.0);
				dr[i] += (float)(gs * (p - t));
			}
		}
	}
	return total / B;
}

static double kl_core(const float *zp, const float *zq, int B, int C,
		      double tau, float *dzp, float *dzq, double scale)
{
	if (B < 1 || C < 1)
		return NAN;
	double inv_tau = 1.0 / tau;
	double total = 0;
	double gs = scale * tau / B; /* tau^2 * (1/tau) from the chain rule */
	for (int b = 0; b < B; b++) {
		const float *pr = zp + (size_t)b * C;
		const float *qr = zq + (size_t)b * C;
		double mp, mq;
		double lsep = row_lse(pr, C, inv_tau, &mp);
		double lseq = row_lse(qr, C, inv_tau, &mq);
		double K = 0; /* KL of this row */
		for (int i = 0; i < C; i++) {
			double lp = ((double)pr[i] - mp) * inv_tau - lsep;
			double p = exp(lp);
			if (p == 0)
				continue; /* xlogy: 0 * log 0 = 0 */
			double lq = ((double)qr[i] - mq) * inv_tau - lseq;
			K += p * (lp - lq);
		}
		total += K;
		if (!dzp && !dzq)
			continue;
		for (int i = 0; i < C; i++) {
			double lp = ((double)pr[i] - mp) * inv_tau - lsep;
			double lq = ((double)qr[i] - mq) * inv_tau - lseq;
			double p = exp(lp), q = exp(lq);
			if (dzq)
				dzq[(size_t)b * C + i] += (float)(gs * (q - p));
			if (dzp && p != 0)
				dzp[(size_t)b * C + i] +=
				    (float)(gs * p * (lp - lq - K));
		}
	}
	return tau * tau * total / B;
}

double nb_cross_entropy(const float *z, const int *labels, int B, int C,
			float smoothing, float *dz, float scale)
{
	return ce_core(z, labels, B, C, smoothing, dz, scale);
}

double nb_kl_div_temp(const float *zp, const float *zq, int B, int C, float tau,
		      float *dzp, float *dzq, float scale)
{
	return kl_core(zp, zq, B, C, tau, dzp, dzq, scale);
}

double nb_kd_loss(const float *z_s, const float *z_t, const int *labels, int B,
		  int C, float alpha, float tau, float *dz_s, float scale,
		  nb_loss_terms *terms)
{
	double a = alpha;
	/* teacher in the p slot (constant), student in the q slot */
	double kl = kl_core(z_t, z_s, B, C, tau, NULL, dz_s, scale * a);
	double ce = ce_core(z_s, labels, B, C, 0.0, dz_s, scale * (1.0 - a));
	double total = a * kl + (1.0 - a) * ce;
	if (terms) {
		terms->total = total;
		terms->ce = ce;
		terms->kl = kl;
	}
	return total;
}

double nb_nasty_loss(const float *z_n, const float *z_a, const int *labels,
		     int B, int C, float omega, float tau, float *dz_n,
		     float scale, nb_loss_terms *terms)
{
	double w = omega;
	double ce = ce_core(z_n, labels, B, C, 0.0, dz_n, scale);
	/* the nasty model in the p slot: the gradient flows through p */
	double kl = kl_core(z_n, z_a, B, C, tau, dz_n, NULL, -w * scale);
	double total = ce - w * kl;
	if (terms) {
		terms->total = total;
		terms->ce = ce;
		terms->kl = kl;
	}
	return total;
}

int nb_count_correct(const float *z, const int *labels, int B, int C)
{
	int n = 0;
	for (int b = 0; b < B; b++) {
		const float *zr = z + (size_t)b * C;
		int best = 0;
		for (int i = 1; i < C; i++)
			if (zr[i] > zr[best])
				best = i;
		if (C > 0 && labels[b] == best)
			n++;
	}
	return n;
}

int nb_all_finite(const float *x, long n)
{
	for (long i = 0; i < n; i++)
		if (!isfinite(x[i]))
			return 0;
	return 1;
}
