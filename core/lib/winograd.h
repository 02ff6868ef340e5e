/*
 * winograd.h - 3x3 convolutions of stride 1 and padding 1 by Winograd's
 * minimal filtering F(2x2, 3x3), with the channels on the vector lanes.
 * Internal to the library; conv2d.c chooses it (see there) and keeps the
 * direct kernels as its twin.
 *
 * Shapes as in ops.h, with R = S = 3, strides 1, padding 1, groups 1, any
 * channel counts and map sizes. The forward writes out (+ bias, then the
 * activation act, NB_ACT_*); the backward adds to dw, and writes din if
 * store, else adds to it (either may be NULL); the bias gradient stays
 * with conv2d.c. The results are the convolution's to rounding: every
 * product is taken in the transformed domain, so the bits differ from the
 * direct kernels' (the numerics version counts it).
 */
#ifndef NB_WINOGRAD_H
#define NB_WINOGRAD_H

#include "ops.h"

/* 1 if the shape is one this file computes (3x3, stride 1, padding 1,
 * groups 1) */
int nb_wino_fits(const nb_conv2d_shape *s);

/* lanes: 1 lets 32-wide maps with at most 32 channels put the tiles on
 * the vector lanes (see winograd.c; the same bits), 0 keeps the channels
 * there (their twin). pre (or NULL): the input normalised and activated
 * as it is read (ops.h, nb_conv_pre); the weight gradient reads it so too,
 * din is the gradient of the normalised input. The backward returns 1 if
 * it took pre's BatchNorm sums with din (on the tiles' lanes), else 0.
 * post (or NULL; act NB_ACT_NONE; ops.h, nb_conv_post): its res added to
 * the forward's output while the output is in cache, its stats taken with
 * the tiles on the lanes (the forward then returns 1). */
int nb_wino_forward(float *out, const float *in, const float *w, const float *b,
		    const nb_conv2d_shape *s, nb_workspace *ws, int act,
		    int lanes, const nb_conv_pre *pre, const nb_conv_post *post);
int nb_wino_backward(float *din, float *dw, const float *dout, const float *in,
		     const float *w, const nb_conv2d_shape *s, nb_workspace *ws,
		     int store, int lanes, const nb_conv_pre *pre);

#endif
