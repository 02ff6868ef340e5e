/*
 * models.h - the built-in architectures the engine needs before the
 * architecture plugins: the DAFL LeNet-5 pair and a stack of 3x3
 * conv+BN+ReLU layers used by the benchmark.
 *
 * Each builder returns an unfinalised network (call nb_net_finalize with a
 * seed) whose node names follow the PyTorch reference modules.
 */
#ifndef NASTY_BENCH_MODELS_H
#define NASTY_BENCH_MODELS_H

#include "net.h"

/*
 * Builds `arch` for inputs (c,h,w) and `classes` outputs into *out.
 * Architectures:
 *  - "lenet5", "lenet5-half": DAFL's LeNet-5 and its half-width student
 *    (5x5 convs, ReLU, 2x2 max pools; needs 32x32 inputs);
 *  - "convstack": 3x3 conv(c->64) + BN + ReLU, then 3 more 64->64 blocks,
 *    global average pool, linear; a benchmark shape, not from the paper.
 * Returns 0, or an error naming the architecture and what does not fit.
 */
int nb_model_build(const char *arch, int c, int h, int w, int classes,
		   nb_net **out, char *err);

/* NULL-terminated list of the names nb_model_build accepts. */
const char *const *nb_model_names(void);

#endif
