/*
 * dwconv.h - depthwise convolutions with the channels on the vector lanes:
 * each image transposed to positions x channels, so that small maps and
 * strides waste no lanes. Internal to the library; conv2d.c chooses it
 * (see there) and keeps its plane kernels as the twin.
 *
 * Shapes as in ops.h, with groups == C == K (one input channel per
 * output channel). The forward writes out; the backward adds to dw, and
 * writes din if store, else adds to it (either may be NULL); the bias
 * gradient stays with conv2d.c. Results: the forward and the input
 * gradient bit for bit the plane kernels'; the weight gradient summed in
 * another order.
 */
#ifndef NB_DWCONV_H
#define NB_DWCONV_H

#include "ops.h"

int nb_dw_cl_forward(float *out, const float *in, const float *w,
		     const float *b, const nb_conv2d_shape *s,
		     nb_workspace *ws);
int nb_dw_cl_backward(float *din, float *dw, const float *dout, const float *in,
		      const float *w, const nb_conv2d_shape *s,
		      nb_workspace *ws, int store);

#endif
