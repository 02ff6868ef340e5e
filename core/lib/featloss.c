/*
 * featloss.c - the FitNets hint loss and attention transfer (featloss.h).
 *
 * How: the hint regressor is one GEMM per sample (W (Ct,Cs) times the
 * sample's (Cs,L) map) into workspace, then the residual, then two GEMMs
 * back for the map's and the weight's gradients. Attention maps are small
 * (N,L); they are built in workspace with channel sums in double.
 *
 * What it deliberately does not do: resize maps (the caller pools), or own
 * the regressor's parameters (the attack plugin does, with its optimiser).
 */
#include <math.h>
#include <stddef.h>
#include <string.h>

/* Keep cblas.h from pulling in <complex.h>, whose macro `I` breaks ops.h. */
#define FORCE_OPENBLAS_COMPLEX_STRUCT
#include <cblas.h>

#include "error.h"
#include "featloss.h"

int nb_hint_loss(const float *s, int Cs, const float *t, int Ct, int N, int L,
		 const float *w, const float *b, float *ds, float *dw,
		 float *db, float scale, nb_workspace *ws, double *loss)
{
	if (N < 1 || Cs < 1 || Ct < 1 || L < 1)
		return NB_EINVAL;
	size_t per = (size_t)Ct * L;
	float *r = nb_workspace_reserve(ws, per);
	if (!r)
		return NB_ENOMEM;
	double total = 0;
	const double inv = 1.0 / ((double)N * per);
	const float g = (float)(2.0 * scale * inv);
	for (int n = 0; n < N; n++) {
		const float *sn = s + (size_t)n * Cs * L;
		const float *tn = t + (size_t)n * per;
		/* r = W s_n (+ b), then r <- r - t_n */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Ct, L,
			    Cs, 1.0f, w, Cs, sn, L, 0.0f, r, L);
		for (int k = 0; k < Ct; k++) {
			float bk = b ? b[k] : 0.0f;
			float *rk = r + (size_t)k * L;
			const float *tk = tn + (size_t)k * L;
			for (int l = 0; l < L; l++) {
				double d = (double)rk[l] + bk - tk[l];
				total += d * d;
				rk[l] = (float)d;
			}
		}
		if (!ds && !dw && !db)
			continue;
		/* dL/dr = 2 (r - t) / (N Ct L), times scale */
		for (size_t i = 0; i < per; i++)
			r[i] *= g;
		if (ds)
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Cs,
				    L, Ct, 1.0f, w, Cs, r, L, 1.0f,
				    ds + (size_t)n * Cs * L, L);
		if (dw)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Ct,
				    Cs, L, 1.0f, r, L, sn, L, 1.0f, dw, Cs);
		if (db)
			for (int k = 0; k < Ct; k++) {
				double acc = 0;
				const float *rk = r + (size_t)k * L;
				for (int l = 0; l < L; l++)
					acc += rk[l];
				db[k] += (float)acc;
			}
	}
	*loss = total * inv;
	return 0;
}

/* F.normalize's floor on the norm. */
#define AT_EPS 1e-12

/* Unnormalised map of one sample: q[l] = mean_c |a[c,l]|^p; returns |q|. */
static double channel_power_mean(double *q, const float *a, int C, int L,
				 float p)
{
	for (int l = 0; l < L; l++)
		q[l] = 0;
	for (int c = 0; c < C; c++) {
		const float *ac = a + (size_t)c * L;
		if (p == 2.0f)
			for (int l = 0; l < L; l++)
				q[l] += (double)ac[l] * ac[l];
		else
			for (int l = 0; l < L; l++)
				q[l] += pow(fabs((double)ac[l]), p);
	}
	double nrm = 0;
	for (int l = 0; l < L; l++) {
		q[l] /= C;
		nrm += q[l] * q[l];
	}
	return sqrt(nrm);
}

int nb_attention_map(float *q, const float *a, int N, int C, int L, float p)
{
	if (N < 1 || C < 1 || L < 1 || !(p > 0))
		return NB_EINVAL;
	for (int n = 0; n < N; n++) {
		/* q itself is the scratch: doubles would need another buffer,
		 * so accumulate per position */
		float *qn = q + (size_t)n * L;
		const float *an = a + (size_t)n * C * L;
		double nrm = 0;
		for (int l = 0; l < L; l++) {
			double v = 0;
			for (int c = 0; c < C; c++)
				v +=
				    pow(fabs((double)an[(size_t)c * L + l]), p);
			v /= C;
			qn[l] = (float)v;
			nrm += v * v;
		}
		double d = fmax(sqrt(nrm), AT_EPS);
		for (int l = 0; l < L; l++)
			qn[l] = (float)(qn[l] / d);
	}
	return 0;
}

int nb_at_loss(const float *s, int Cs, const float *t, int Ct, int N, int L,
	       float p, float *ds, float scale, nb_workspace *ws, double *loss)
{
	if (N < 1 || Cs < 1 || Ct < 1 || L < 1 || !(p > 0))
		return NB_EINVAL;
	/* two maps of doubles, as floats in the workspace */
	double *qs = (double *)nb_workspace_reserve(ws, (size_t)4 * L);
	if (!qs)
		return NB_ENOMEM;
	double *qt = qs + L;
	double total = 0;
	const double inv = 1.0 / ((double)N * L);
	for (int n = 0; n < N; n++) {
		const float *sn = s + (size_t)n * Cs * L;
		double ns = channel_power_mean(qs, sn, Cs, L, p);
		double nt =
		    channel_power_mean(qt, t + (size_t)n * Ct * L, Ct, L, p);
		double ds_ = fmax(ns, AT_EPS), dt_ = fmax(nt, AT_EPS);
		/* g = dL/dQ_s, then through the normalisation:
		 * dq = (g - Q (Q.g)) / |q| when |q| > eps, else g / eps */
		double dot = 0;
		for (int l = 0; l < L; l++) {
			double a = qs[l] / ds_, bq = qt[l] / dt_;
			double d = a - bq;
			total += d * d;
			qt[l] = 2.0 * scale * inv * d; /* g, reusing qt */
			dot += a * qt[l];
		}
		if (!ds)
			continue;
		for (int l = 0; l < L; l++) {
			double gq = qt[l];
			if (ns > AT_EPS)
				gq = (gq - qs[l] / ds_ * dot) / ds_;
			else
				gq /= AT_EPS;
			qt[l] = gq / Cs; /* d/d(|a|^p) of every channel */
		}
		float *dn = ds + (size_t)n * Cs * L;
		for (int c = 0; c < Cs; c++) {
			const float *ac = sn + (size_t)c * L;
			float *dc = dn + (size_t)c * L;
			if (p == 2.0f)
				for (int l = 0; l < L; l++)
					dc[l] += (float)(qt[l] * 2.0 * ac[l]);
			else
				for (int l = 0; l < L; l++) {
					double a = ac[l];
					if (a == 0)
						continue;
					double d = p * pow(fabs(a), p - 1);
					dc[l] +=
					    (float)(qt[l] * (a > 0 ? d : -d));
				}
		}
	}
	*loss = total * inv;
	return 0;
}
