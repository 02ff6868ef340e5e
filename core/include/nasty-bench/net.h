/*
 * net.h - a network as a graph of nodes in topological order.
 *
 * A network is built once with the nb_net_add_* functions (each returns the
 * new node's id, or a negative error), then finalised, which allocates every
 * parameter in one block (and their gradients in another) and initialises
 * them. Node 0 is the input. Each node keeps its output for the whole batch,
 * so backward can run after forward; backward can start from gradients
 * injected at any node (nb_net_grad), returns the gradient with respect to
 * the input when asked, and skips everything that no trainable parameter or
 * requested input gradient depends on.
 *
 * Names: every node carries the PyTorch module path it stands for (for
 * example "layer1.0.conv1"); its parameters are "<name>.weight",
 * "<name>.bias", "<name>.running_mean", "<name>.running_var", as in the
 * reference implementations' state_dict.
 *
 * Ownership: the network owns every buffer it returns. Pointers returned by
 * nb_net_output stay valid until the next nb_net_forward with a different
 * batch size, a new tap, or nb_net_free; those from nb_net_grad until the
 * next nb_net_backward (which recycles each gradient buffer once it is
 * consumed) or any of the former.
 *
 * In place: the output of a node whose only consumer is a ReLU or ReLU6,
 * and which is neither a tap nor the output node, is overwritten by that
 * ReLU (they share one buffer). Read inner activations through taps.
 */
#ifndef NASTY_BENCH_NET_H
#define NASTY_BENCH_NET_H

#include <stddef.h>
#include <stdint.h>

#include "ops.h"
#include "rng.h"

#define NB_NAME_LEN 96
#define NB_MAX_INPUTS 8

enum nb_param_role {
	NB_PARAM_WEIGHT = 0, /* trained, has a gradient */
	NB_PARAM_BUFFER = 1  /* state that is not trained (BN running stats) */
};

typedef struct nb_param {
	char name[NB_NAME_LEN];
	enum nb_param_role role;
	int frozen;   /* 1: no gradient, never updated */
	int ndim;
	int shape[4];
	size_t size;  /* elements */
	float *data;  /* view into the network's parameter block */
	float *grad;  /* view into the gradient block; NULL for buffers */
} nb_param;

enum nb_node_kind {
	NB_NODE_INPUT = 0,
	NB_NODE_CONV2D,
	NB_NODE_LINEAR,
	NB_NODE_BATCHNORM,
	NB_NODE_RELU,
	NB_NODE_RELU6,
	NB_NODE_LEAKY_RELU,
	NB_NODE_TANH,
	NB_NODE_MAXPOOL,
	NB_NODE_AVGPOOL,
	NB_NODE_ADAPTIVE_AVGPOOL,
	NB_NODE_ADD,
	NB_NODE_CONCAT,
	NB_NODE_SLICE,
	NB_NODE_SHUFFLE,
	NB_NODE_UPSAMPLE,
	NB_NODE_FLATTEN,
	NB_NODE_DROPOUT,
	NB_NODE_RESHAPE
};

/* How a layer's weights are initialised at finalisation. */
enum nb_init {
	NB_INIT_DEFAULT = 0,      /* PyTorch default: kaiming_uniform(a=sqrt(5)),
				     bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
	NB_INIT_KAIMING_FAN_OUT,  /* N(0, sqrt(2/fan_out)), bias 0 */
	NB_INIT_KAIMING_FAN_IN,   /* N(0, sqrt(2/fan_in)), bias 0 */
	NB_INIT_NORMAL_FAN_OUT    /* PreResNet: N(0, sqrt(2/(R*S*K))), bias
				     default */
};

typedef struct nb_net nb_net;

/* A new network whose input is (c, h, w) per sample. */
nb_net *nb_net_new(int c, int h, int w);
void nb_net_free(nb_net *net);

/*
 * Builders. `in` is the id of the input node (0 = the network input); the
 * shape checks happen here, so a bad architecture fails at build time with a
 * message in err. Each returns the new node id (> 0) or a negative code.
 */
int nb_net_add_conv2d(nb_net *net, int in, const char *name, int out_c,
		      int kernel, int stride, int pad, int groups, int bias,
		      enum nb_init init, char *err);
int nb_net_add_linear(nb_net *net, int in, const char *name, int out,
		      int bias, enum nb_init init, char *err);
/* BatchNorm1d or 2d by the input's shape. affine 0 = no gamma/beta. */
int nb_net_add_batchnorm(nb_net *net, int in, const char *name, float eps,
			 float momentum, int affine, char *err);
int nb_net_add_relu(nb_net *net, int in, char *err);
int nb_net_add_relu6(nb_net *net, int in, char *err);
int nb_net_add_leaky_relu(nb_net *net, int in, float slope, char *err);
int nb_net_add_tanh(nb_net *net, int in, char *err);
int nb_net_add_maxpool(nb_net *net, int in, int k, int stride, int pad,
		       char *err);
int nb_net_add_avgpool(nb_net *net, int in, int k, int stride, int pad,
		       char *err);
int nb_net_add_adaptive_avgpool(nb_net *net, int in, int out_h, int out_w,
				char *err);
int nb_net_add_add(nb_net *net, int a, int b, char *err);
int nb_net_add_concat(nb_net *net, const int *in, int n_in, char *err);
int nb_net_add_slice(nb_net *net, int in, int start, int len, char *err);
int nb_net_add_shuffle(nb_net *net, int in, int groups, char *err);
int nb_net_add_upsample(nb_net *net, int in, int scale, char *err);
/* (C,H,W) -> (C*H*W, 1, 1) */
int nb_net_add_flatten(nb_net *net, int in, char *err);
int nb_net_add_dropout(nb_net *net, int in, float p, char *err);
/* (C,H,W) -> (c,h,w) with C*H*W = c*h*w, the values in the same order (as
 * torch's view: a linear layer's output as feature maps). */
int nb_net_add_reshape(nb_net *net, int in, int c, int h, int w, char *err);

/*
 * Feature taps: named nodes whose outputs attacks may read (feature KD,
 * DeepInversion). Architectures name "stage1".."stageN" (stage outputs)
 * and "features" (the penultimate features). Every BatchNorm node's input
 * is a tap too, without being named here (see nb_net_node_kind).
 */
int nb_net_add_tap(nb_net *net, int node, const char *name, char *err);
int nb_net_taps(const nb_net *net);
const char *nb_net_tap_name(const nb_net *net, int i);
int nb_net_tap_node(const nb_net *net, int i);
/* The node of a named tap, or -1. */
int nb_net_find_tap(const nb_net *net, const char *name);
/* The input node of node (its j-th input), or -1. */
int nb_net_node_input(const nb_net *net, int node, int j);

/*
 * Integer state of the network that PyTorch keeps in its state_dict: one
 * "<bn>.num_batches_tracked" counter per BatchNorm node, incremented by
 * every training-mode forward.
 */
typedef struct nb_counter {
	char name[NB_NAME_LEN];
	int64_t value;
} nb_counter;
int nb_net_counters(const nb_net *net, nb_counter **counters);

/* Allocates and initialises the parameters from `seed` (NB_RNG_INIT
 * stream). After this no node can be added. */
int nb_net_finalize(nb_net *net, uint64_t seed, char *err);

/* Number of nodes, the output node id (the last node), per-sample shape. */
int nb_net_nodes(const nb_net *net);
int nb_net_output_node(const nb_net *net);
void nb_net_node_shape(const nb_net *net, int node, int *c, int *h, int *w);
enum nb_node_kind nb_net_node_kind(const nb_net *net, int node);
const char *nb_net_node_name(const nb_net *net, int node);
/* A node kind's short name ("conv2d", "batchnorm", ...). */
const char *nb_node_kind_name(enum nb_node_kind kind);
/* Trainable elements of a node's own parameters. */
size_t nb_net_node_param_count(const nb_net *net, int node);
/* Forward multiply-accumulates per sample of a node (conv, linear). */
double nb_net_node_macs(const nb_net *net, int node);

/* Parameter table (weights and buffers, in state_dict order). */
int nb_net_params(const nb_net *net, nb_param ***params);
nb_param *nb_net_param(const nb_net *net, const char *name);
/* Number of trainable elements (weights, not buffers). */
size_t nb_net_param_count(const nb_net *net);
/* Freezes or unfreezes every weight. */
void nb_net_set_frozen(nb_net *net, int frozen);

/* Training mode (BatchNorm batch statistics, dropout) or evaluation. */
void nb_net_set_training(nb_net *net, int training);
int nb_net_training(const nb_net *net);
/* Seeds the dropout stream. */
void nb_net_seed_dropout(nb_net *net, uint64_t seed);
/* The dropout stream itself (owned by the network), so that resumable
 * training can save and restore its exact position. */
nb_rng *nb_net_dropout_rng(nb_net *net);

/* Forward for a batch of n inputs x (n,c,h,w). */
int nb_net_forward(nb_net *net, const float *x, int n, char *err);
/*
 * Forward for queries that need no backward (a frozen teacher's outputs,
 * evaluation, inference benchmarks): evaluation mode whatever the training
 * flag, with every BatchNorm that is a convolution's only consumer folded
 * into that convolution's weights and bias (w * s, (b - mean) * s + beta,
 * s = gamma / sqrt(var + eps)). Outputs equal nb_net_forward's in
 * evaluation mode up to float rounding; the folded convolutions' own
 * outputs are not computed, and nb_net_backward refuses to follow it.
 * Only the output's and the taps' values are kept (read inner activations
 * through taps, which are never folded): every other node's buffer comes
 * from a pool and goes back once its last reader has run, so the pass
 * holds the activations in flight, not all of them.
 */
int nb_net_forward_infer(nb_net *net, const float *x, int n, char *err);
/* nb_net_forward_infer's buffer reuse, on by default; off, every node
 * writes its own buffer (the twin the tests compare against). */
void nb_net_set_infer_reuse(nb_net *net, int on);
/* The output of a node for the last forward: (n, c, h, w). A training
 * BatchNorm (or its activation) whose output its convolution applied as
 * it read (see net.c) writes that output now, with the forward's bits. */
float *nb_net_output(nb_net *net, int node);
/*
 * The gradient buffer of a node's output for the current backward pass,
 * zeroed at its first use after a forward. Write or add the injected
 * gradient there, then call nb_net_backward.
 */
float *nb_net_grad(nb_net *net, int node);
/* Zeroes every parameter gradient. */
void nb_net_zero_grad(nb_net *net);
/*
 * Backward from every gradient injected since the last forward. Accumulates
 * into parameter gradients (not frozen ones). If dx is not NULL, writes (=)
 * the gradient with respect to the input (n,c,h,w) into it.
 */
int nb_net_backward(nb_net *net, float *dx, char *err);

#endif
