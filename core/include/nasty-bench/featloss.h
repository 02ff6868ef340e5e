/*
 * featloss.h - feature-distillation losses on intermediate feature maps,
 * with their gradients: the FitNets hint loss and attention transfer.
 *
 * Maps are NCHW float32 with the spatial dimensions flattened: s (N,Cs,L)
 * is the student's map, t (N,Ct,L) the teacher's (a constant), L = H*W.
 * Both maps must have the same L; a caller with maps of different sizes
 * pools the larger one first (nb_adaptive_avgpool2d_forward, see ops.h).
 * Like loss.h, gradients are ACCUMULATED (+=) as scale * dL/d(argument);
 * NULL gradient pointers are skipped. Sums are accumulated in double.
 * Scratch memory comes from the caller's workspace (ops.h); the functions
 * return 0 or NB_ENOMEM / NB_EINVAL and write the loss to *loss.
 *
 * Semantics:
 *  - hint (Romero et al., FitNets, ICLR 2015): a learned 1x1 convolution
 *    (the regressor, w (Ct,Cs), b (Ct) or NULL) maps the student's map to
 *    the teacher's channels, and the loss is the mean squared error over
 *    every element, as nn.MSELoss():
 *        mean_{n,k,l} (b_k + sum_c w[k,c] s[n,c,l] - t[n,k,l])^2
 *  - attention transfer (Zagoruyko & Komodakis, ICLR 2017, the official
 *    code's at_loss): the attention map of a sample is the channel mean of
 *    |a|^p, flattened and L2-normalised as F.normalize (q / max(|q|,
 *    1e-12)); the loss is the mean over samples and positions of the
 *    squared difference of the two normalised maps:
 *        mean_{n,l} (Q_s[n,l] - Q_t[n,l])^2
 *    (the official code weighs it by beta/2, beta = 1e3; weights are the
 *    caller's business).
 */
#ifndef NASTY_BENCH_FEATLOSS_H
#define NASTY_BENCH_FEATLOSS_H

#include "ops.h"

/*
 * Hint loss of a 1x1-convolution regressor. s (N,Cs,L), t (N,Ct,L),
 * w (Ct,Cs), b (Ct) or NULL. ds (N,Cs,L), dw (Ct,Cs), db (Ct): gradients
 * with respect to the student's map and the regressor (each may be NULL).
 */
int nb_hint_loss(const float *s, int Cs, const float *t, int Ct, int N, int L,
		 const float *w, const float *b, float *ds, float *dw,
		 float *db, float scale, nb_workspace *ws, double *loss);

/*
 * The attention map of a (N,C,L) map: q (N,L) = L2-normalised mean over
 * channels of |a|^p (p > 0).
 */
int nb_attention_map(float *q, const float *a, int N, int C, int L, float p);

/*
 * Attention-transfer loss between s (N,Cs,L) and t (N,Ct,L) with power p;
 * ds (N,Cs,L) is the gradient with respect to the student's map.
 */
int nb_at_loss(const float *s, int Cs, const float *t, int Ct, int N, int L,
	       float p, float *ds, float scale, nb_workspace *ws, double *loss);

#endif
