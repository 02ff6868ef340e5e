/*
 * dafl.h - the pieces of DAFL (Chen et al., "Data-Free Learning of Student
 * Networks", ICCV 2019) as its official code (DAFL/DAFL-train.py) defines
 * them: the generator and the generator's three losses. The `dafl` attack
 * plugin puts them together; they live in the core so that tests check
 * them and other data-free attacks can reuse them.
 *
 * Loss conventions are loss.h's: logits o (B,C) row-major, values returned
 * as doubles, gradients ACCUMULATED (+=) times scale into float buffers.
 */
#ifndef NASTY_BENCH_DAFL_H
#define NASTY_BENCH_DAFL_H

#include "net.h"

/*
 * The DAFL generator for c x h x w images (h and w divisible by 4),
 * unfinalised, from a latent vector of `latent` values, with `width`
 * channels in its first stage (the reference's 128; the second stage has
 * width/2, the reference's 64):
 *
 *   l1: Linear(latent -> width*(h/4)*(w/4)) -> view (width, h/4, w/4)
 *   conv_blocks0.0: BatchNorm2d(width)                  (eps 1e-5)
 *   nearest upsampling x2
 *   conv_blocks1.0: Conv2d(width, width, 3, pad 1)
 *   conv_blocks1.1: BatchNorm2d(width, eps 0.8), LeakyReLU 0.2
 *   nearest upsampling x2
 *   conv_blocks2.0: Conv2d(width, width/2, 3, pad 1)
 *   conv_blocks2.1: BatchNorm2d(width/2, eps 0.8), LeakyReLU 0.2
 *   conv_blocks2.3: Conv2d(width/2, c, 3, pad 1), Tanh
 *   conv_blocks2.5: BatchNorm2d(c, affine=False)        (eps 1e-5)
 *
 * Node names are the reference module's state_dict paths. Its input is the
 * latent vector as (latent, 1, 1). Parameters with width 128: 1,049,985
 * for 1x32x32 and latent 100 (MNIST), 8,423,939 for 3x32x32 and latent
 * 1000 (CIFAR). PyTorch's default initialisation (the reference applies no
 * other). Returns NB_EINVAL for a shape it cannot make.
 */
int nb_dafl_generator(int latent, int c, int h, int w, int width, nb_net **out,
		      char *err);

/*
 * One-hot loss: CE(o, argmax o), the batch mean, with the pseudo-labels
 * argmax o (first maximum) written to labels (B) when not NULL. The labels
 * are constants (torch's .max(1)[1]): do = (softmax(o) - onehot(t)) / B.
 */
double nb_dafl_onehot_loss(const float *o, int B, int C, int *labels,
			   float *do_, float scale);

/*
 * Information-entropy loss: sum_k pm_k * log10(pm_k) with pm the batch mean
 * of softmax(o) (its minimum is -log10(C), every class equally often).
 * do[b][j] = p_bj * (g_j - sum_k g_k p_bk) / B with g_k = (ln pm_k + 1) /
 * ln 10. A class whose mean probability is exactly 0 adds 0 to the loss
 * and to the gradient (the limit of x log x).
 */
double nb_dafl_entropy_loss(const float *o, int B, int C, float *do_,
			    float scale);

/*
 * Activation loss: -mean(|f|) over n feature values (the batch's
 * penultimate features, B*F values). df = -sign(f) / n, with sign(0) = 0
 * as torch's abs.
 */
double nb_dafl_activation_loss(const float *f, size_t n, float *df,
			       float scale);

#endif
