/*
 * ops.h - the tensor operations, each a forward/backward pair of plain
 * functions with explicit shapes.
 *
 * Layout is NCHW float32, contiguous. Shapes are stated in a comment above
 * each pair: `in (N,C,H,W)` means N images of C channels of H x W.
 *
 * Conventions shared by every op:
 *  - forward writes (=) its outputs;
 *  - backward ACCUMULATES (+=) into every gradient buffer it is given, so a
 *    node used twice, or a parameter shared, sums its gradients. Any gradient
 *    pointer may be NULL, and that gradient is then not computed at all
 *    (frozen parameters, inputs that need no gradient);
 *  - functions that need scratch memory take an nb_workspace and return 0 or
 *    NB_ENOMEM; the others return nothing;
 *  - work is split over the batch with OpenMP (static schedule); BLAS calls
 *    inside a parallel region run single-threaded; reductions over the batch
 *    (weight gradients, BatchNorm statistics) are done in a fixed order, so a
 *    result is bit-identical for a given thread count.
 *
 * Numerics follow PyTorch: the same padding rules, the same pooling windows,
 * BatchNorm with biased batch variance for normalisation and unbiased
 * variance for the running estimate.
 *
 * What this file deliberately does not do: allocate activations, know about
 * graphs or names. The network graph (net.h) owns memory and calls these.
 */
#ifndef NASTY_BENCH_OPS_H
#define NASTY_BENCH_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"

/*
 * A growable scratch buffer. Reserve before a parallel region, then split it
 * between threads (nb_workspace_threads() slices). Never reserve inside a
 * parallel region. The owner frees it with nb_workspace_free.
 */
typedef struct nb_workspace {
	float *buf;
	size_t cap; /* floats */
} nb_workspace;

/* Returns a buffer of at least n floats (contents undefined) or NULL. */
float *nb_workspace_reserve(nb_workspace *ws, size_t n);
void nb_workspace_free(nb_workspace *ws);
/* The number of OpenMP threads a parallel region here will use. */
int nb_workspace_threads(void);

/* ---- convolution --------------------------------------------------------
 * in (N,C,H,W), w (K, C/groups, R, S), b (K) or NULL, out (N,K,P,Q) with
 * P = (H + 2*pad_h - R) / stride_h + 1, Q likewise. Zero padding. groups
 * divides C and K; groups == C == K is a depthwise convolution.
 */
typedef struct nb_conv2d_shape {
	int N, C, H, W;
	int K, R, S;
	int stride_h, stride_w;
	int pad_h, pad_w;
	int groups;
	int P, Q; /* output size: fill with nb_conv2d_shape_finish */
} nb_conv2d_shape;

/* Computes P and Q; returns NB_EINVAL if the shape is impossible. */
int nb_conv2d_shape_finish(nb_conv2d_shape *s);
int nb_conv2d_forward(float *out, const float *in, const float *w,
		      const float *b, const nb_conv2d_shape *s,
		      nb_workspace *ws);
/* The activations a convolution's forward can apply to its own output. */
enum { NB_ACT_NONE, NB_ACT_RELU, NB_ACT_RELU6 };
/* nb_conv2d_forward followed by nb_relu_forward (act NB_ACT_RELU) or
 * nb_relu6_forward (NB_ACT_RELU6) on out, with the same bits; where the
 * packed kernels run, each unit of images is activated while its maps are
 * still in cache (the inference path's folded BatchNorm + ReLU). NB_EINVAL
 * for another act. */
int nb_conv2d_forward_act(float *out, const float *in, const float *w,
			  const float *b, const nb_conv2d_shape *s,
			  nb_workspace *ws, int act);
/* din (N,C,H,W), dw (K,C/groups,R,S), db (K); each may be NULL. */
int nb_conv2d_backward(float *din, float *dw, float *db, const float *dout,
		       const float *in, const float *w,
		       const nb_conv2d_shape *s, nb_workspace *ws);
/* The same with din written rather than added to (dw and db still
 * accumulate): for a din buffer nothing has written yet, which then needs
 * no zeroing first (the network's backward uses it that way). */
int nb_conv2d_backward_store(float *din, float *dw, float *db,
			     const float *dout, const float *in,
			     const float *w, const nb_conv2d_shape *s,
			     nb_workspace *ws);

/*
 * A BatchNorm (training mode) and its activation applied to a
 * convolution's input as the convolution reads it: affine is the
 * BatchNorm's save_affine (4 floats per input channel, see
 * nb_batchnorm_relu_forward_train), act NB_ACT_*. The forward then equals
 * nb_batchnorm_affine_forward into a buffer followed by the convolution of
 * that buffer, to the bit, without the buffer; the backward reads in the
 * same way for the weight gradient, and din is the gradient of the
 * normalised, activated input. Only where nb_conv2d_takes_pre says so
 * (the Winograd kernels: NB_EINVAL elsewhere).
 */
typedef struct nb_conv_pre {
	const float *affine;
	int act;
	/* backward, optional: the BatchNorm's save_mean and room for its
	 * backward's sums (NB_BATCHNORM_SLICES x 3 x C doubles): where the
	 * kernels can, they take the sums as they write din, which they
	 * then write masked by act (as nb_batchnorm_relu_backward_train's
	 * first pass; din must then be the activation's whole gradient),
	 * and nb_conv2d_backward_pre returns 1 */
	const float *mean;
	double *sums;
} nb_conv_pre;
int nb_conv2d_takes_pre(const nb_conv2d_shape *s);
int nb_conv2d_forward_pre(float *out, const float *in, const float *w,
			  const float *b, const nb_conv2d_shape *s,
			  nb_workspace *ws, const nb_conv_pre *pre);
/*
 * What the forward does to its output as it writes it: res (or NULL) is
 * added (N,K,P,Q; not overlapping out), the same bits as the convolution
 * followed by nb_add_forward (a residual block's add without a pass of its
 * own, in every kernel; while each image's output is in cache in the
 * Winograd ones); stats (or NULL; NB_BATCHNORM_SLICES x 2 x K doubles):
 * where the kernels can (with the tiles on the lanes), the sums a training
 * BatchNorm of the output takes for its statistics, as
 * nb_batchnorm_forward_train_sums takes them.
 */
typedef struct nb_conv_post {
	const float *res;
	double *stats;
} nb_conv_post;
/* out = the convolution (of in as pre reads it, if pre is not NULL), post
 * applied; 1 if it took the statistics, else 0 (or an NB_E* code) */
int nb_conv2d_forward_post(float *out, const float *in, const float *w,
			   const float *b, const nb_conv2d_shape *s,
			   nb_workspace *ws, const nb_conv_pre *pre,
			   const nb_conv_post *post);
/* 0, or 1 if it took the BatchNorm's sums (see sums above) */
int nb_conv2d_backward_pre(float *din, float *dw, float *db,
			   const float *dout, const float *in, const float *w,
			   const nb_conv2d_shape *s, nb_workspace *ws,
			   int store, const nb_conv_pre *pre);

/*
 * The kernels behind the two calls above: NB_CONV_AUTO (the default) takes
 * the engine's packed kernels where they were compiled for 512-bit vectors
 * and the shape suits them (at least 16 output positions per image),
 * im2col + BLAS elsewhere; with the packed kernels, 3x3 convolutions of
 * stride 1 and padding 1 whose channel counts are whole vectors (16, 32,
 * ... up to 128) go through Winograd's F(2x2, 3x3) (2.25x fewer
 * multiply-adds; results to rounding), and depthwise convolutions through
 * the kernels with channels on the lanes (the plane kernels elsewhere).
 * NB_CONV_BLAS, NB_CONV_PACKED and NB_CONV_WINOGRAD force one side for
 * every convolution (BLAS: im2col + BLAS and the depthwise plane kernels;
 * PACKED: the packed kernels, never Winograd; WINOGRAD: Winograd with the
 * channels on the lanes for every 3x3 / stride 1 / padding 1 / ungrouped
 * convolution, the packed kernels for the rest; auto's Winograd puts the
 * tiles on the lanes on 32-wide maps, with the same bits). The tests run each against a plain-loop reference;
 * `nasty-bench bench --conv` compares their speed. Process-wide; set it
 * before any convolution runs.
 */
typedef enum {
	NB_CONV_AUTO,
	NB_CONV_BLAS,
	NB_CONV_PACKED,
	NB_CONV_WINOGRAD
} nb_conv_kernels;
void nb_conv2d_set_kernels(nb_conv_kernels k);
/* What is in use here: under NB_CONV_AUTO NB_CONV_WINOGRAD where the
 * packed kernels run (Winograd for the shapes that suit it), else
 * NB_CONV_BLAS; otherwise what was set. */
nb_conv_kernels nb_conv2d_kernels(void);
/* "auto", "blas", "packed" or "winograd" */
const char *nb_conv_kernels_name(nb_conv_kernels k);

/* ---- linear -------------------------------------------------------------
 * in (N,In), w (Out,In) as PyTorch stores it, b (Out) or NULL, out (N,Out):
 * out = in * w^T + b. (Not named I/O: <complex.h>, which cblas.h may pull
 * in, defines I.)
 */
void nb_linear_forward(float *out, const float *in, const float *w,
		       const float *b, int N, int In, int Out);
void nb_linear_backward(float *din, float *dw, float *db, const float *dout,
			const float *in, const float *w, int N, int In,
			int Out);

/* ---- batch normalisation ------------------------------------------------
 * in, out (N,C,L) where L = H*W for BatchNorm2d and L = 1 (or the sequence
 * length) for BatchNorm1d. gamma, beta (C) or NULL (affine=False).
 *
 * Training: normalise with the batch mean and the biased batch variance;
 * save mean and 1/sqrt(var+eps) per channel for backward; update
 * running_mean/var (if not NULL) as r = (1-momentum)*r + momentum*stat with
 * the UNBIASED variance (N*L/(N*L-1)). Needs N*L > 1 (PyTorch refuses it too):
 * returns NB_EINVAL otherwise.
 * Evaluation: normalise with running_mean/running_var.
 */
int nb_batchnorm_forward_train(float *out, float *save_mean,
			       float *save_invstd, float *running_mean,
			       float *running_var, const float *in,
			       const float *gamma, const float *beta, int N,
			       int C, int L, float momentum, float eps);
void nb_batchnorm_forward_eval(float *out, const float *in,
			       const float *gamma, const float *beta,
			       const float *running_mean,
			       const float *running_var, int N, int C, int L,
			       float eps);
/* The two forwards followed by ReLU in the same pass: bit-identical to
 * nb_relu_forward applied to their output. save_affine (4*C floats, or
 * NULL) keeps each channel's normalisation for
 * nb_batchnorm_relu_backward_train. In training out may be NULL: then
 * only the statistics are taken (save_*, running_*), and the output is left
 * to what applies save_affine itself (nb_conv2d_forward_pre,
 * nb_batchnorm_affine_forward). */
int nb_batchnorm_relu_forward_train(float *out, float *save_mean,
				    float *save_invstd, float *save_affine,
				    float *running_mean, float *running_var,
				    const float *in, const float *gamma,
				    const float *beta, int N, int C, int L,
				    float momentum, float eps);
void nb_batchnorm_relu_forward_eval(float *out, const float *in,
				    const float *gamma, const float *beta,
				    const float *running_mean,
				    const float *running_var, int N, int C,
				    int L, float eps);
/* The same with ReLU6 (nb_relu6_forward) in place of ReLU. */
int nb_batchnorm_relu6_forward_train(float *out, float *save_mean,
				     float *save_invstd, float *save_affine,
				     float *running_mean, float *running_var,
				     const float *in, const float *gamma,
				     const float *beta, int N, int C, int L,
				     float momentum, float eps);
/*
 * The training forward (act NB_ACT_NONE, NB_ACT_RELU or NB_ACT_RELU6, as
 * the three calls above) with its statistics' sums taken already (by the
 * convolution that wrote in: nb_conv2d_forward_post): for slice s of the
 * batch (NB_BATCHNORM_SLICES, see bnaffine.h) and channel c, sums[s * 2 *
 * C + c] is the sum of x - K and sums[(s * 2 + 1) * C + c] that of
 * (x - K)^2, K the channel's first element (image 0, position 0), each in
 * 16 double lanes (element l to lane l % 16, in order) added in lane
 * order. The same bits as the forward taking them itself.
 */
int nb_batchnorm_forward_train_sums(float *out, float *save_mean,
				    float *save_invstd, float *save_affine,
				    float *running_mean, float *running_var,
				    const float *in, const float *gamma,
				    const float *beta, int N, int C, int L,
				    float momentum, float eps, int act,
				    const double *sums);
void nb_batchnorm_relu6_forward_eval(float *out, const float *in,
				     const float *gamma, const float *beta,
				     const float *running_mean,
				     const float *running_var, int N, int C,
				     int L, float eps);
/* out = in normalised by a training forward's save_affine, then act
 * (NB_ACT_*): the bits that forward writes to its out. */
void nb_batchnorm_affine_forward(float *out, const float *in,
				 const float *save_affine, int N, int C, int L,
				 int act);
/* Backward of the training-mode forward (batch statistics depend on in). */
void nb_batchnorm_backward_train(float *din, float *dgamma, float *dbeta,
				 const float *dout, const float *in,
				 const float *save_mean,
				 const float *save_invstd, const float *gamma,
				 int N, int C, int L);
/* The same with din written rather than added to (as
 * nb_conv2d_backward_store). */
void nb_batchnorm_backward_train_store(float *din, float *dgamma,
				       float *dbeta, const float *dout,
				       const float *in, const float *save_mean,
				       const float *save_invstd,
				       const float *gamma, int N, int C, int L);
/* Backward of nb_batchnorm_relu_forward_train through both ops: dout is
 * the gradient of the ReLU's output; the ReLU's mask (out > 0) is
 * recomputed from in with save_affine, so out is not read, and dout is
 * overwritten with the masked gradient. din is written if store, else
 * added to. Bit-identical to masking dout (out > 0 ? dout : 0, into a
 * zeroed buffer) and then nb_batchnorm_backward_train(_store). */
void nb_batchnorm_relu_backward_train(float *din, float *dgamma,
				      float *dbeta, float *dout,
				      const float *in, const float *save_mean,
				      const float *save_invstd,
				      const float *save_affine,
				      const float *gamma, int N, int C, int L,
				      int store);
/* The same for nb_batchnorm_relu6_forward_train: the mask is
 * 0 < out < 6 (nb_relu6_backward's). */
void nb_batchnorm_relu6_backward_train(float *din, float *dgamma,
				       float *dbeta, float *dout,
				       const float *in, const float *save_mean,
				       const float *save_invstd,
				       const float *save_affine,
				       const float *gamma, int N, int C, int L,
				       int store);
/*
 * The training backward with its first pass already taken: sums (3 x C
 * doubles for each of NB_BATCHNORM_SLICES fixed slices of the batch: the
 * sums of dout, of in - save_mean and of dout * (in - save_mean), channel
 * by channel, as nb_conv2d_backward_pre takes them) and dout as that pass
 * leaves it (masked by the fused activation, if any). din as in
 * nb_batchnorm_relu_backward_train.
 */
#define NB_BATCHNORM_SLICES 16
void nb_batchnorm_backward_train_sums(float *din, float *dgamma, float *dbeta,
				      const float *dout, const float *in,
				      const float *save_mean,
				      const float *save_invstd,
				      const float *gamma, int N, int C, int L,
				      int store, const double *sums);
/* Backward of the eval-mode forward (running statistics are constants). */
void nb_batchnorm_backward_eval(float *din, float *dgamma, float *dbeta,
				const float *dout, const float *in,
				const float *gamma, const float *running_mean,
				const float *running_var, int N, int C, int L,
				float eps);

/* ---- element-wise activations (n elements) -------------------------------
 * Backward takes the forward input `in` (relu, relu6, leaky relu) or the
 * forward output `out` (tanh). At the kinks the gradient is PyTorch's:
 * relu'(0) = 0, relu6'(0) = relu6'(6) = 0, leaky'(0) = slope.
 */
void nb_relu_forward(float *out, const float *in, size_t n);
void nb_relu_backward(float *din, const float *dout, const float *in,
		      size_t n);
void nb_relu6_forward(float *out, const float *in, size_t n);
void nb_relu6_backward(float *din, const float *dout, const float *in,
		       size_t n);
void nb_leaky_relu_forward(float *out, const float *in, size_t n,
			   float slope);
void nb_leaky_relu_backward(float *din, const float *dout, const float *in,
			    size_t n, float slope);
void nb_tanh_forward(float *out, const float *in, size_t n);
void nb_tanh_backward(float *din, const float *dout, const float *out,
		      size_t n);

/* ---- pooling -------------------------------------------------------------
 * in (N,C,H,W), out (N,C,P,Q), P = (H + 2*pad - k) / stride + 1 (floor mode).
 * Max pooling pads with -inf and records the flat input index (h*W+w within
 * the plane) of each maximum in argmax (N,C,P,Q); the first maximum wins
 * ties, as PyTorch. Avg pooling counts padding in the divisor
 * (count_include_pad=True, PyTorch's default).
 */
void nb_maxpool2d_forward(float *out, int32_t *argmax, const float *in,
			  int N, int C, int H, int W, int k, int stride,
			  int pad);
void nb_maxpool2d_backward(float *din, const float *dout,
			   const int32_t *argmax, int N, int C, int H, int W,
			   int P, int Q);
void nb_avgpool2d_forward(float *out, const float *in, int N, int C, int H,
			  int W, int k, int stride, int pad);
void nb_avgpool2d_backward(float *din, const float *dout, int N, int C,
			   int H, int W, int k, int stride, int pad);
/* Adaptive average pooling to (P,Q) with PyTorch's windows:
 * rows [floor(i*H/P), ceil((i+1)*H/P)). */
void nb_adaptive_avgpool2d_forward(float *out, const float *in, int N, int C,
				   int H, int W, int P, int Q);
void nb_adaptive_avgpool2d_backward(float *din, const float *dout, int N,
				    int C, int H, int W, int P, int Q);

/* ---- structure -----------------------------------------------------------
 * add: out = a + b, n elements (residual connections).
 */
void nb_add_forward(float *out, const float *a, const float *b, size_t n);
void nb_add_backward(float *da, float *db, const float *dout, size_t n);

/* concat along channels: inputs k = 0..n_in-1, each (N, C_k, L); out
 * (N, sum C_k, L) in input order. */
void nb_concat_forward(float *out, const float *const *in, const int *C,
		       int n_in, int N, int L);
void nb_concat_backward(float *const *din, const float *dout, const int *C,
			int n_in, int N, int L);

/* channel slice: in (N,C,L), out (N,len,L) = channels [start, start+len). */
void nb_channel_slice_forward(float *out, const float *in, int N, int C,
			      int L, int start, int len);
void nb_channel_slice_backward(float *din, const float *dout, int N, int C,
			       int L, int start, int len);

/* channel shuffle (ShuffleNet): in, out (N,C,L), C = groups * m; viewed as
 * (groups, m) and transposed: out channel j*groups + g = in channel g*m + j. */
void nb_channel_shuffle_forward(float *out, const float *in, int N, int C,
				int L, int groups);
void nb_channel_shuffle_backward(float *din, const float *dout, int N, int C,
				 int L, int groups);

/* nearest upsampling by an integer factor: in (N,C,H,W), out (N,C,sH,sW). */
void nb_upsample_nearest_forward(float *out, const float *in, int N, int C,
				 int H, int W, int scale);
void nb_upsample_nearest_backward(float *din, const float *dout, int N,
				  int C, int H, int W, int scale);

/* dropout (inverted, as PyTorch): in training keep each element with
 * probability 1-p and scale it by 1/(1-p); mask (n) records the factor
 * applied (0 or 1/(1-p)). p == 0 copies. p == 1 zeroes. */
void nb_dropout_forward(float *out, float *mask, const float *in, size_t n,
			float p, nb_rng *rng);
void nb_dropout_backward(float *din, const float *dout, const float *mask,
			 size_t n);

#endif
