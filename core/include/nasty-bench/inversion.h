/*
 * inversion.h - the building blocks of model inversion (DeepInversion, Yin
 * et al., CVPR 2020, as its official CIFAR-10 code computes them): the
 * BatchNorm-statistics regulariser, the image priors (total variation and
 * l2), the random jitter and flip, and the Adaptive DeepInversion
 * competition term.
 *
 * Shapes are NCHW float32. Like loss.h, each loss returns its value (sums
 * in double) and ACCUMULATES (+=) scale * dL/d(argument) into any
 * non-NULL gradient buffer. Norms are plain L2 norms over the whole
 * tensor, the batch included (torch.norm of the tensor), not squared; the
 * gradient of a norm that is exactly 0 is 0 (as torch.norm's backward).
 */
#ifndef NASTY_BENCH_INVERSION_H
#define NASTY_BENCH_INVERSION_H

#include <stddef.h>

#include "net.h"

/*
 * BatchNorm-statistics regulariser of one BatchNorm layer:
 *   |var - running_var|_2 + |mean - running_mean|_2
 * where mean and var (biased) are the per-channel statistics of the
 * layer's INPUT x (N,C,L), L = H*W (1 for BatchNorm1d). dx (N,C,L).
 * The regulariser of a network is the sum over its BatchNorm layers.
 */
double nb_bn_stats_loss(const float *x, int N, int C, int L,
			const float *running_mean, const float *running_var,
			float *dx, float scale);

/*
 * Total variation of x (N,C,H,W) with the four neighbour differences:
 *   |x[..,h,w] - x[..,h,w+1]|_2 + |x[..,h,w] - x[..,h+1,w]|_2
 *   + |x[..,h+1,w] - x[..,h,w+1]|_2 + |x[..,h,w] - x[..,h+1,w+1]|_2
 * each norm over every valid position of the whole batch.
 */
double nb_tv_loss(const float *x, int N, int C, int H, int W, float *dx,
		  float scale);

/* |x|_2 over all n elements. */
double nb_l2_loss(const float *x, size_t n, float *dx, float scale);

/*
 * Jitter: out = flip(roll(in, (dy, dx))), as torch.roll(in, shifts=(dy,
 * dx), dims=(2, 3)) followed, if flip, by torch.flip(dims=(3,)). in, out
 * (N,C,H,W), not overlapping; shifts of any sign.
 */
void nb_jitter_forward(float *out, const float *in, int N, int C, int H, int W,
		       int dy, int dx, int flip);
/* The gradient of the jitter: din += the inverse permutation of dout. */
void nb_jitter_backward(float *din, const float *dout, int N, int C, int H,
			int W, int dy, int dx, int flip);

/*
 * Adaptive DeepInversion competition term, as the official code computes
 * it: P = softmax(z_s/T), Q = softmax(z_t/T), M = (P+Q)/2, each then
 * clamped to [0.01, 0.99]; JS = KL(M||P)/2 + KL(M||Q)/2 with KL in
 * KLDivLoss(reduction="batchmean") form; returns 1 - clamp(JS, 0, 1)
 * (the caller weighs it). z_s, z_t (B,C); dz_s, dz_t their gradients
 * (clamps pass the gradient inside their range, bounds included). *js
 * receives JS when js is not NULL.
 */
double nb_adi_competition(const float *z_s, const float *z_t, int B, int C,
			  float T, float *dz_s, float *dz_t, float scale,
			  double *js);

/*
 * The whole DeepInversion objective of one optimisation step on a batch xj
 * (n,c,h,w) that is already jittered, as the official code sums it:
 *
 *   CE(T(xj), y) + bn * sum over T's BatchNorm layers of R_bn
 *   + tv * R_tv(xj) + l2 * |xj|_2
 *   + comp * (1 - clamp(JS(S(xj), T(xj)), 0, 1))     (Adaptive DI)
 *
 * R_bn uses the statistics of each BatchNorm node's input (BatchNorm1d
 * nodes included; the paper's teachers have BatchNorm2d only) against the
 * node's running statistics; the competition term's temperature is
 * comp_T. The caller puts both networks in evaluation mode and freezes
 * them (the official code's net.eval() and net_student.eval()); student
 * may be NULL when comp is 0. Runs the teacher's (and student's) forward
 * and backward and writes (=) the gradient with respect to xj into dx.
 * y (n) are the target classes.
 */
typedef struct nb_inversion_weights {
	float bn, tv, l2, comp;
	float comp_T;
} nb_inversion_weights;

typedef struct nb_inversion_terms {
	double total;
	double ce, bn, tv, l2; /* unweighted */
	double js;	       /* the competition's JS (0 without it) */
	int correct;	       /* samples the teacher classifies as y */
	int bn_layers;	       /* BatchNorm layers that contributed */
} nb_inversion_terms;

int nb_inversion_loss(nb_net *teacher, nb_net *student, const float *xj,
		      const int *y, int n, const nb_inversion_weights *w,
		      float *dx, nb_inversion_terms *terms, char *err);

#endif
