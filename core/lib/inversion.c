/*
 * inversion.c - DeepInversion's regularisers and augmentation
 * (inversion.h).
 *
 * How: every function works in passes over its input without scratch
 * memory: a first pass for the norms (or the row statistics), a second
 * that writes the gradient. The passes are serial: next to the teacher's
 * forward and backward that an inversion step also runs, they are a
 * rounding error, and a fixed order keeps the sums bit-reproducible.
 *
 * nb_inversion_loss puts the pieces together on a teacher (and, for the
 * competition term, a student) through the network graph's backward to
 * the input.
 *
 * What it deliberately does not do: hold an optimiser or the jitter's
 * randomness (the deepinversion attack plugin does).
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "inversion.h"
#include "loss.h"

/* Per-channel mean and biased variance of x (N,C,L), channel c. */
static void channel_stats(const float *x, int N, int C, int L, int c,
			  double *mean, double *var)
{
	double s = 0;
	for (int n = 0; n < N; n++) {
		const float *p = x + ((size_t)n * C + c) * L;
		for (int l = 0; l < L; l++)
			s += p[l];
	}
	double m = s / ((double)N * L);
	double v = 0;
	for (int n = 0; n < N; n++) {
		const float *p = x + ((size_t)n * C + c) * L;
		for (int l = 0; l < L; l++) {
			double d = p[l] - m;
			v += d * d;
		}
	}
	*mean = m;
	*var = v / ((double)N * L);
}

double nb_bn_stats_loss(const float *x, int N, int C, int L,
			const float *running_mean, const float *running_var,
			float *dx, float scale)
{
	if (N < 1 || C < 1 || L < 1)
		return NAN;
	double sv = 0, sm = 0;
	for (int c = 0; c < C; c++) {
		double m, v;
		channel_stats(x, N, C, L, c, &m, &v);
		double dv = v - running_var[c], dm = m - running_mean[c];
		sv += dv * dv;
		sm += dm * dm;
	}
	double nv = sqrt(sv), nm = sqrt(sm);
	if (!dx)
		return nv + nm;
	const double inv = 1.0 / ((double)N * L);
	for (int c = 0; c < C; c++) {
		double m, v;
		channel_stats(x, N, C, L, c, &m, &v);
		/* d|v - rv|/dv_c times dv_c/dx = 2 (x - m) / NL, and
		 * d|m - rm|/dm_c times dm_c/dx = 1 / NL */
		double gv = nv > 0 ? (v - running_var[c]) / nv : 0;
		double gm = nm > 0 ? (m - running_mean[c]) / nm : 0;
		double a = scale * gv * 2.0 * inv, b = scale * gm * inv;
		for (int n = 0; n < N; n++) {
			const float *p = x + ((size_t)n * C + c) * L;
			float *d = dx + ((size_t)n * C + c) * L;
			for (int l = 0; l < L; l++)
				d[l] += (float)(a * (p[l] - m) + b);
		}
	}
	return nv + nm;
}

/*
 * The four neighbour differences of a plane, as (row offset, column
 * offset) of the positive and the negative term, over rows [0, H-dh) and
 * columns [0, W-dw):
 *   1: x[h,w] - x[h,w+1]       2: x[h,w] - x[h+1,w]
 *   3: x[h+1,w] - x[h,w+1]     4: x[h,w] - x[h+1,w+1]
 */
static const int tv_pos[4][2] = {{0, 0}, {0, 0}, {1, 0}, {0, 0}};
static const int tv_neg[4][2] = {{0, 1}, {1, 0}, {0, 1}, {1, 1}};
static const int tv_span[4][2] = {{0, 1}, {1, 0}, {1, 1}, {1, 1}};

double nb_tv_loss(const float *x, int N, int C, int H, int W, float *dx,
		  float scale)
{
	if (N < 1 || C < 1 || H < 1 || W < 1)
		return NAN;
	size_t planes = (size_t)N * C, hw = (size_t)H * W;
	double norm[4];
	for (int k = 0; k < 4; k++) {
		double s = 0;
		int h1 = H - tv_span[k][0], w1 = W - tv_span[k][1];
		int po = tv_pos[k][0] * W + tv_pos[k][1];
		int no = tv_neg[k][0] * W + tv_neg[k][1];
		for (size_t pl = 0; pl < planes; pl++) {
			const float *p = x + pl * hw;
			for (int h = 0; h < h1; h++)
				for (int w = 0; w < w1; w++) {
					int i = h * W + w;
					double d =
					    (double)p[i + po] - p[i + no];
					s += d * d;
				}
		}
		norm[k] = sqrt(s);
	}
	if (dx)
		for (int k = 0; k < 4; k++) {
			if (!(norm[k] > 0))
				continue;
			double g = scale / norm[k];
			int h1 = H - tv_span[k][0], w1 = W - tv_span[k][1];
			int po = tv_pos[k][0] * W + tv_pos[k][1];
			int no = tv_neg[k][0] * W + tv_neg[k][1];
			for (size_t pl = 0; pl < planes; pl++) {
				const float *p = x + pl * hw;
				float *d = dx + pl * hw;
				for (int h = 0; h < h1; h++)
					for (int w = 0; w < w1; w++) {
						int i = h * W + w;
						float v =
						    (float)(g *
							    ((double)p[i + po] -
							     p[i + no]));
						d[i + po] += v;
						d[i + no] -= v;
					}
			}
		}
	return norm[0] + norm[1] + norm[2] + norm[3];
}

double nb_l2_loss(const float *x, size_t n, float *dx, float scale)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)x[i] * x[i];
	double nrm = sqrt(s);
	if (dx && nrm > 0) {
		double g = scale / nrm;
		for (size_t i = 0; i < n; i++)
			dx[i] += (float)(g * x[i]);
	}
	return nrm;
}

/* ((a % n) + n) % n for any sign of a */
static int wrap(int a, int n)
{
	int r = a % n;
	return r < 0 ? r + n : r;
}

void nb_jitter_forward(float *out, const float *in, int N, int C, int H, int W,
		       int dy, int dx, int flip)
{
	size_t planes = (size_t)N * C, hw = (size_t)H * W;
	for (size_t pl = 0; pl < planes; pl++) {
		const float *p = in + pl * hw;
		float *o = out + pl * hw;
		for (int h = 0; h < H; h++) {
			const float *row = p + (size_t)wrap(h - dy, H) * W;
			for (int w = 0; w < W; w++) {
				int ws = flip ? W - 1 - w : w;
				o[h * W + w] = row[wrap(ws - dx, W)];
			}
		}
	}
}

void nb_jitter_backward(float *din, const float *dout, int N, int C, int H,
			int W, int dy, int dx, int flip)
{
	size_t planes = (size_t)N * C, hw = (size_t)H * W;
	for (size_t pl = 0; pl < planes; pl++) {
		float *p = din + pl * hw;
		const float *o = dout + pl * hw;
		for (int h = 0; h < H; h++) {
			float *row = p + (size_t)wrap(h - dy, H) * W;
			for (int w = 0; w < W; w++) {
				int ws = flip ? W - 1 - w : w;
				row[wrap(ws - dx, W)] += o[h * W + w];
			}
		}
	}
}

/* ---- Adaptive DeepInversion ------------------------------------------------
 */

#define ADI_LO 0.01
#define ADI_HI 0.99

/* Row maximum and log-sum-exp of z/T. */
static void row_softmax_stats(const float *z, int C, double invT, double *m,
			      double *lse)
{
	double mx = z[0];
	for (int k = 1; k < C; k++)
		if (z[k] > mx)
			mx = z[k];
	double s = 0;
	for (int k = 0; k < C; k++)
		s += exp(((double)z[k] - mx) * invT);
	*m = mx;
	*lse = log(s);
}

static double clampd(double v)
{
	return v < ADI_LO ? ADI_LO : v > ADI_HI ? ADI_HI : v;
}

static double inside(double v)
{
	return v >= ADI_LO && v <= ADI_HI ? 1.0 : 0.0;
}

/* The per-class gradients of JS*B with respect to P and Q (before the
 * softmax), for one class: P, Q unclamped. */
static void js_grad(double P, double Q, double *gP, double *gQ)
{
	double M = 0.5 * (P + Q);
	double Pc = clampd(P), Qc = clampd(Q), Mc = clampd(M);
	/* JS*B = sum Mc log Mc - Mc log Pc / 2 - Mc log Qc / 2 */
	double gM = (log(Mc) + 1.0 - 0.5 * log(Pc) - 0.5 * log(Qc)) * inside(M);
	*gP = -0.5 * Mc / Pc * inside(P) + 0.5 * gM;
	*gQ = -0.5 * Mc / Qc * inside(Q) + 0.5 * gM;
}

double nb_adi_competition(const float *z_s, const float *z_t, int B, int C,
			  float T, float *dz_s, float *dz_t, float scale,
			  double *js)
{
	if (B < 1 || C < 1 || !(T > 0))
		return NAN;
	const double invT = 1.0 / T;
	double total = 0;
	for (int b = 0; b < B; b++) {
		const float *zs = z_s + (size_t)b * C,
			    *zt = z_t + (size_t)b * C;
		double ms, ls, mt, lt;
		row_softmax_stats(zs, C, invT, &ms, &ls);
		row_softmax_stats(zt, C, invT, &mt, &lt);
		for (int k = 0; k < C; k++) {
			double P = exp(((double)zs[k] - ms) * invT - ls);
			double Q = exp(((double)zt[k] - mt) * invT - lt);
			double Mc = clampd(0.5 * (P + Q));
			total += Mc * log(Mc) - 0.5 * Mc * log(clampd(P)) -
				 0.5 * Mc * log(clampd(Q));
		}
	}
	double J = total / B;
	if (js)
		*js = J;
	double cl = J < 0 ? 0 : J > 1 ? 1 : J;
	/* d(1 - clamp(JS))/dJS */
	double go = J >= 0 && J <= 1 ? -1.0 : 0.0;
	if ((!dz_s && !dz_t) || go == 0)
		return 1.0 - cl;
	const double g = scale * go / B;
	for (int b = 0; b < B; b++) {
		const float *zs = z_s + (size_t)b * C,
			    *zt = z_t + (size_t)b * C;
		double ms, ls, mt, lt;
		row_softmax_stats(zs, C, invT, &ms, &ls);
		row_softmax_stats(zt, C, invT, &mt, &lt);
		double sp = 0, sq = 0;
		for (int k = 0; k < C; k++) {
			double P = exp(((double)zs[k] - ms) * invT - ls);
			double Q = exp(((double)zt[k] - mt) * invT - lt);
			double gP, gQ;
			js_grad(P, Q, &gP, &gQ);
			sp += P * gP;
			sq += Q * gQ;
		}
		/* softmax at temperature T: dz = P (gP - sum P gP) / T */
		for (int k = 0; k < C; k++) {
			double P = exp(((double)zs[k] - ms) * invT - ls);
			double Q = exp(((double)zt[k] - mt) * invT - lt);
			double gP, gQ;
			js_grad(P, Q, &gP, &gQ);
			if (dz_s)
				dz_s[(size_t)b * C + k] +=
				    (float)(g * P * (gP - sp) * invT);
			if (dz_t)
				dz_t[(size_t)b * C + k] +=
				    (float)(g * Q * (gQ - sq) * invT);
		}
	}
	return 1.0 - cl;
}

/* ---- the whole objective ----------------------------------------------------
 */

int nb_inversion_loss(nb_net *teacher, nb_net *student, const float *xj,
		      const int *y, int n, const nb_inversion_weights *w,
		      float *dx, nb_inversion_terms *terms, char *err)
{
	memset(terms, 0, sizeof *terms);
	int c, h, wd;
	nb_net_node_shape(teacher, 0, &c, &h, &wd);
	size_t per = (size_t)c * h * wd;
	int use_comp = w->comp != 0.0f;
	if (use_comp && !student)
		return nb_errorf(err, NB_EINVAL,
				 "inversion: the competition term needs a "
				 "student");
	int C;
	nb_net_node_shape(teacher, nb_net_output_node(teacher), &C, NULL, NULL);
	for (int i = 0; i < n; i++)
		if (y[i] < 0 || y[i] >= C)
			return nb_errorf(err, NB_EINVAL,
					 "inversion: target %d of sample %d "
					 "is not a class of the teacher (%d)",
					 y[i], i, C);
	float *dxs = NULL;
	const float *zs = NULL;
	int rc;
	if (use_comp) {
		int Cs;
		nb_net_node_shape(student, nb_net_output_node(student), &Cs,
				  NULL, NULL);
		if (Cs != C)
			return nb_errorf(err, NB_EINVAL,
					 "inversion: the student has %d "
					 "classes, the teacher %d",
					 Cs, C);
		dxs = malloc((size_t)n * per * sizeof *dxs);
		if (!dxs)
			return nb_errorf(err, NB_ENOMEM,
					 "inversion: out of memory");
		if ((rc = nb_net_forward(student, xj, n, err)) < 0)
			goto out;
		zs = nb_net_output(student, nb_net_output_node(student));
	}
	if ((rc = nb_net_forward(teacher, xj, n, err)) < 0)
		goto out;
	int on = nb_net_output_node(teacher);
	const float *zt = nb_net_output(teacher, on);
	float *dzt = nb_net_grad(teacher, on);
	if (!dzt) {
		rc = nb_errorf(err, NB_ENOMEM, "inversion: out of memory");
		goto out;
	}
	terms->ce = nb_cross_entropy(zt, y, n, C, 0.0f, dzt, 1.0f);
	terms->correct = nb_count_correct(zt, y, n, C);
	double total = terms->ce;
	if (use_comp) {
		float *dzs = nb_net_grad(student, nb_net_output_node(student));
		if (!dzs) {
			rc = nb_errorf(err, NB_ENOMEM,
				       "inversion: out of memory");
			goto out;
		}
		double comp = nb_adi_competition(zs, zt, n, C, w->comp_T, dzs,
						 dzt, w->comp, &terms->js);
		total += w->comp * comp;
	}
	/* R_bn at every BatchNorm node's input */
	for (int node = 1; node < nb_net_nodes(teacher); node++) {
		if (nb_net_node_kind(teacher, node) != NB_NODE_BATCHNORM)
			continue;
		int in = nb_net_node_input(teacher, node, 0);
		char pname[NB_NAME_LEN + 16];
		const char *name = nb_net_node_name(teacher, node);
		snprintf(pname, sizeof pname, "%s.running_mean", name);
		const nb_param *rm = nb_net_param(teacher, pname);
		snprintf(pname, sizeof pname, "%s.running_var", name);
		const nb_param *rv = nb_net_param(teacher, pname);
		if (!rm || !rv) {
			rc = nb_errorf(err, NB_EINVAL,
				       "inversion: BatchNorm '%s' has no "
				       "running statistics",
				       name);
			goto out;
		}
		int bc, bh, bw;
		nb_net_node_shape(teacher, in, &bc, &bh, &bw);
		float *g = w->bn != 0.0f ? nb_net_grad(teacher, in) : NULL;
		if (w->bn != 0.0f && !g) {
			rc = nb_errorf(err, NB_ENOMEM,
				       "inversion: out of memory");
			goto out;
		}
		terms->bn +=
		    nb_bn_stats_loss(nb_net_output(teacher, in), n, bc, bh * bw,
				     rm->data, rv->data, g, w->bn);
		terms->bn_layers++;
	}
	total += w->bn * terms->bn;
	if ((rc = nb_net_backward(teacher, dx, err)) < 0)
		goto out;
	if (use_comp) {
		if ((rc = nb_net_backward(student, dxs, err)) < 0)
			goto out;
		for (size_t i = 0; i < (size_t)n * per; i++)
			dx[i] += dxs[i];
	}
	terms->tv =
	    nb_tv_loss(xj, n, c, h, wd, w->tv != 0.0f ? dx : NULL, w->tv);
	terms->l2 =
	    nb_l2_loss(xj, (size_t)n * per, w->l2 != 0.0f ? dx : NULL, w->l2);
	total += w->tv * terms->tv + w->l2 * terms->l2;
	terms->total = total;
	rc = 0;
out:
	free(dxs);
	return rc;
}
