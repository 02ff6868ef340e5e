/*
 * net.c - the network graph: nodes in topological order, one parameter
 * block, forward with cached activations, backward from injected gradients.
 *
 * Every node keeps its output for the whole batch (backward needs them) and,
 * only once a gradient reaches it, a gradient buffer of the same size. A
 * node's gradient buffer is zeroed lazily at its first use after a forward,
 * so a backward touches only what the injected gradients reach; the first
 * to write it need not zero it: convolutions and training-mode BatchNorm
 * store their input gradient (the ops' _store variants) instead of adding
 * it, and an add hands its own gradient buffer to an addend, as a ReLU
 * fused with its BatchNorm does (same bits as zeroing and adding); where
 * the other addend is a convolution that can, it reads that buffer as its
 * own gradient instead of a copy (can_borrow).
 *
 * Memory: a ReLU or ReLU6 whose input node has no other consumer, is not a
 * tap and is not the output, works in place in that node's output buffer
 * (its backward reads its own output, which is > 0 exactly where its input
 * is; no op that could precede it needs its own output in backward, tanh
 * excepted, which is never shared). Likewise a residual add writes its sum
 * into an addend's buffer when that addend is a conv, BatchNorm,
 * linear or add output with no other consumer (their backward passes read
 * their inputs, never their outputs): one activation less per residual
 * block, as in PyTorch, whose BatchNorm output before an add is a
 * temporary; where that addend is a convolution and the other addend is
 * computed first, the convolution adds it as it writes its output and the
 * add has nothing left to do (link_res). A gradient buffer goes back to a pool as
 * soon as its node's backward has run, and later nodes take theirs from the
 * pool (best fit), so a backward holds only the gradients in flight, not
 * one per node; nothing is allocated per batch once the pool is warm.
 * A BatchNorm whose ReLU or ReLU6 works in place applies it in its own
 * pass (nb_batchnorm_relu_forward_*, nb_batchnorm_relu6_forward_*,
 * bit-identical to the two ops), and in training its backward masks the
 * activation's gradient in its own first pass
 * (nb_batchnorm_relu_backward_train and _relu6_, relu_hand_over).
 *
 * In training, a BatchNorm + ReLU (or ReLU6) whose only consumer is a
 * convolution that can apply the two as it reads (nb_conv_pre: the
 * Winograd kernels, nb_conv2d_takes_pre) writes no output at all: it takes
 * its statistics, and the convolution's forward and weight gradient read
 * the BatchNorm's input and normalise it on the way (link_pre; same bits;
 * nb_net_output writes the output on demand). That saves a write and a
 * read of every such activation; where the convolution's input gradient
 * runs with the tiles on the lanes, it takes the BatchNorm backward's
 * first pass too (gsums, sums_live). preresnet20, batch 128, 1 thread,
 * builds side by side: 516 -> 530 img/s (medians of eight), peak memory
 * 227 -> 149 MB.
 *
 * What it deliberately does not do: schedule ops out of order, free
 * activations early, or fuse other ops.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "net.h"
#include "dist.h"

/* the activation a BatchNorm applies in its own pass (fuse_act) */
enum { FUSE_NONE, FUSE_RELU, FUSE_RELU6 };

typedef struct nb_node {
	enum nb_node_kind kind;
	char name[NB_NAME_LEN];
	int in[NB_MAX_INPUTS];
	int n_in;
	int c, h, w; /* per-sample output shape */
	size_t size; /* c*h*w */

	/* attributes (each kind reads its own) */
	int k, stride, pad, groups, bias, scale, start, len, affine;
	float slope, p, eps, momentum;
	enum nb_init init;
	nb_conv2d_shape conv;
	double macs;

	/* parameter indices into net->params, -1 if absent */
	int p_weight, p_bias, p_rmean, p_rvar;
	int counter; /* batchnorm: index into net->counters */

	/* buffers for the current batch */
	float *out, *grad;
	size_t grad_cap; /* floats grad holds */
	int grad_live;
	int grad_borrowed; /* grad is another node's buffer, only read
			      (add_hand_over): never pooled or freed */
	int inplace;   /* out is the (sole) input's out buffer, shared */
	int fuse_act;  /* batchnorm: applies its in-place ReLU or ReLU6
			  consumer too (FUSE_RELU, FUSE_RELU6), or 0 */
	int fold_bn;   /* conv: index of the BatchNorm that is its only
			  consumer (nb_net_forward_infer folds it), or 0 */
	int fused;     /* relu, relu6: done by its input's forward (fuse_act) */
	int pre_conv;  /* batchnorm with fuse_act: the conv that is its
			  activation's only consumer and can apply both as
			  it reads (nb_conv_pre), or 0 */
	int pre_bn;    /* conv: the batchnorm whose pre_conv it is, or 0 */
	int pre_live;  /* batchnorm: the last forward left its output to
			  pre_conv (out not written) */
	double *gsums; /* batchnorm with pre_conv: its backward's sums, as
			  pre_conv's backward takes them (nb_conv_pre) */
	int sums_live; /* batchnorm: gsums hold this backward's sums and
			  its gradient is masked already */
	int res_add;   /* conv: the add that writes its sum into the conv's
			  buffer and whose other addend comes first: the
			  conv adds it as it writes (link_res), or 0 */
	int res_live;  /* add: its conv wrote the sum this forward */
	int stats_bn;  /* conv: the batchnorm whose input it writes (its
			  output, or the sum of the add it writes: link_res),
			  which may take its statistics from it, or 0 */
	double *fsums; /* batchnorm that is a stats_bn: its statistics'
			  sums (nb_batchnorm_forward_train_sums) */
	int fsums_live; /* batchnorm: fsums hold this forward's */
	float *save_mean, *save_invstd; /* batchnorm (C) */
	float *save_affine;             /* batchnorm (4C), for grad_relu */
	int affine_live; /* batchnorm: the last forward kept save_affine */
	int grad_relu;   /* batchnorm: grad is its fused activation's,
			    unmasked */
	int32_t *argmax;                /* maxpool */
	float *mask;                    /* dropout */
	int needs_grad;                 /* set at each backward */
} nb_node;

struct nb_net {
	nb_node *nodes;
	int n_nodes, cap_nodes;
	nb_param *params;
	nb_param **param_ptrs;
	int n_params, cap_params;
	float *param_block, *grad_block;
	nb_counter *counters; /* one per BatchNorm node, in node order */
	int n_counters, cap_counters;
	struct {
		char name[NB_NAME_LEN];
		int node;
	} *taps;
	int n_taps, cap_taps;
	int finalized;
	int training;
	int alloc_n;  /* batch size the buffers hold */
	int cur_n;    /* batch size of the last forward */
	int infer_only; /* the last forward was nb_net_forward_infer */
	float *fold;	/* folded conv weights and bias (one conv at a time) */
	size_t fold_n;
	int grads_alloc_n;
	nb_workspace ws;
	nb_rng dropout_rng;
	/* data-parallel: BatchNorm sums over the group (dist.h), or NULL */
	nb_sum_d_fn reduce;
	void *reduce_ctx;
	/* gradient buffers no node holds right now, for reuse */
	struct grad_buf {
		float *buf;
		size_t cap;
	} * pool;
	int n_pool; /* the array has room for n_nodes */
	/* nb_net_forward_infer's buffer reuse (infer_reuse): per node, the
	 * node whose buffer it writes (itself, or what it works in place
	 * in), the last node that reads that buffer, whether the buffer is
	 * pooled, the node's own buffer while a pooled one stands in, and
	 * the capacity of the pooled one it holds; idle buffers in ipool */
	int infer_keep_all; /* nb_net_set_infer_reuse(net, 0) */
	int *iroot, *ilast;
	unsigned char *ipooled;
	float **isaved;
	size_t *icap;
	struct grad_buf *ipool;
	int n_ipool;
};

/* ---- building ------------------------------------------------------------ */

nb_net *nb_net_new(int c, int h, int w)
{
	if (c <= 0 || h <= 0 || w <= 0)
		return NULL;
	nb_net *net = calloc(1, sizeof *net);
	if (!net)
		return NULL;
	net->training = 1;
	nb_rng_seed(&net->dropout_rng, 0, NB_RNG_DROPOUT);
	nb_node *in = NULL;
	net->cap_nodes = 64;
	net->nodes = calloc((size_t)net->cap_nodes, sizeof *net->nodes);
	if (!net->nodes) {
		free(net);
		return NULL;
	}
	in = &net->nodes[0];
	in->kind = NB_NODE_INPUT;
	strcpy(in->name, "input");
	in->c = c;
	in->h = h;
	in->w = w;
	in->size = (size_t)c * h * w;
	in->p_weight = in->p_bias = in->p_rmean = in->p_rvar = -1;
	net->n_nodes = 1;
	return net;
}

static void node_free_buffers(nb_node *n)
{
	if (!n->inplace)
		free(n->out);
	n->inplace = 0;
	if (!n->grad_borrowed)
		free(n->grad);
	n->grad_borrowed = 0;
	free(n->save_mean);
	free(n->save_invstd);
	free(n->save_affine);
	free(n->gsums);
	n->gsums = NULL;
	free(n->fsums);
	n->fsums = NULL;
	free(n->argmax);
	free(n->mask);
	n->out = n->grad = n->save_mean = n->save_invstd = n->mask = NULL;
	n->save_affine = NULL;
	n->argmax = NULL;
}

/* Forgets the gradients nodes borrowed (add_hand_over) that a failed
 * backward left behind: their owners hold and free the buffers. */
static void drop_borrowed(nb_net *net)
{
	for (int i = 0; i < net->n_nodes; i++) {
		nb_node *nd = &net->nodes[i];
		if (nd->grad_borrowed) {
			nd->grad = NULL;
			nd->grad_live = nd->grad_borrowed = 0;
		}
	}
}

/* Frees every buffer of a pool (gradients, or inference outputs). */
static void pool_clear(struct grad_buf *pool, int *n_pool)
{
	for (int i = 0; i < *n_pool; i++)
		free(pool[i].buf);
	*n_pool = 0;
}

void nb_net_free(nb_net *net)
{
	if (!net)
		return;
	for (int i = 0; i < net->n_nodes; i++)
		node_free_buffers(&net->nodes[i]);
	free(net->nodes);
	free(net->params);
	free(net->param_ptrs);
	free(net->counters);
	free(net->taps);
	pool_clear(net->pool, &net->n_pool);
	free(net->pool);
	pool_clear(net->ipool, &net->n_ipool);
	free(net->ipool);
	free(net->iroot);
	free(net->ilast);
	free(net->ipooled);
	free(net->isaved);
	free(net->icap);
	free(net->fold);
	free(net->param_block);
	free(net->grad_block);
	nb_workspace_free(&net->ws);
	free(net);
}

static int check_input(nb_net *net, int in, char *err)
{
	if (net->finalized)
		return nb_errorf(err, NB_EINVAL,
				 "network is finalised; no node can be added");
	if (in < 0 || in >= net->n_nodes)
		return nb_errorf(err, NB_EINVAL, "node %d does not exist", in);
	return 0;
}

/* Appends a node of `kind` reading `in`; returns it or NULL (err set). */
static nb_node *add_node(nb_net *net, enum nb_node_kind kind, const int *in,
			 int n_in, const char *name, char *err)
{
	for (int i = 0; i < n_in; i++)
		if (check_input(net, in[i], err) < 0)
			return NULL;
	if (net->n_nodes == net->cap_nodes) {
		int cap = net->cap_nodes * 2;
		nb_node *nodes = realloc(net->nodes, (size_t)cap * sizeof *nodes);
		if (!nodes) {
			nb_errorf(err, NB_ENOMEM, "out of memory building network");
			return NULL;
		}
		net->nodes = nodes;
		net->cap_nodes = cap;
	}
	nb_node *n = &net->nodes[net->n_nodes];
	memset(n, 0, sizeof *n);
	n->kind = kind;
	n->n_in = n_in;
	for (int i = 0; i < n_in; i++)
		n->in[i] = in[i];
	n->p_weight = n->p_bias = n->p_rmean = n->p_rvar = -1;
	if (name)
		snprintf(n->name, sizeof n->name, "%s", name);
	/* default: shape of the first input */
	const nb_node *src = &net->nodes[in[0]];
	n->c = src->c;
	n->h = src->h;
	n->w = src->w;
	n->size = src->size;
	return n;
}

static int commit_node(nb_net *net, nb_node *n)
{
	n->size = (size_t)n->c * n->h * n->w;
	return net->n_nodes++;
}

static int add_param(nb_net *net, const char *prefix, const char *suffix,
		     enum nb_param_role role, int ndim, const int *shape,
		     char *err)
{
	if (net->n_params == net->cap_params) {
		int cap = net->cap_params ? net->cap_params * 2 : 64;
		nb_param *p = realloc(net->params, (size_t)cap * sizeof *p);
		if (!p)
			return nb_errorf(err, NB_ENOMEM,
					 "out of memory building network");
		net->params = p;
		net->cap_params = cap;
	}
	nb_param *p = &net->params[net->n_params];
	memset(p, 0, sizeof *p);
	if (prefix && *prefix)
		snprintf(p->name, sizeof p->name, "%s.%s", prefix, suffix);
	else
		snprintf(p->name, sizeof p->name, "%s", suffix);
	p->role = role;
	p->ndim = ndim;
	p->size = 1;
	for (int i = 0; i < ndim; i++) {
		p->shape[i] = shape[i];
		p->size *= (size_t)shape[i];
	}
	return net->n_params++;
}

int nb_net_add_conv2d(nb_net *net, int in, const char *name, int out_c,
		      int kernel, int stride, int pad, int groups, int bias,
		      enum nb_init init, char *err)
{
	nb_node *n = add_node(net, NB_NODE_CONV2D, &in, 1, name, err);
	if (!n)
		return NB_EINVAL;
	const nb_node *src = &net->nodes[in];
	nb_conv2d_shape s = {.N = 1, .C = src->c, .H = src->h, .W = src->w,
			     .K = out_c, .R = kernel, .S = kernel,
			     .stride_h = stride, .stride_w = stride,
			     .pad_h = pad, .pad_w = pad, .groups = groups};
	if (out_c <= 0 || kernel <= 0 || stride <= 0 || pad < 0 ||
	    groups <= 0 || src->c % groups || out_c % groups)
		return nb_errorf(err, NB_EINVAL,
				 "conv %s: bad parameters (in %d, out %d, kernel %d, stride %d, pad %d, groups %d)",
				 name, src->c, out_c, kernel, stride, pad,
				 groups);
	if (nb_conv2d_shape_finish(&s) < 0 || s.P <= 0 || s.Q <= 0)
		return nb_errorf(err, NB_EINVAL,
				 "conv %s: kernel %d does not fit the %dx%d input (pad %d)",
				 name, kernel, src->h, src->w, pad);
	n->conv = s;
	n->k = kernel;
	n->stride = stride;
	n->pad = pad;
	n->groups = groups;
	n->bias = bias;
	n->init = init;
	n->c = out_c;
	n->h = s.P;
	n->w = s.Q;
	n->macs = (double)out_c * s.P * s.Q * (src->c / groups) * kernel *
		  kernel;
	int wshape[4] = {out_c, src->c / groups, kernel, kernel};
	int rc = add_param(net, name, "weight", NB_PARAM_WEIGHT, 4, wshape, err);
	if (rc < 0)
		return rc;
	n->p_weight = rc;
	if (bias) {
		rc = add_param(net, name, "bias", NB_PARAM_WEIGHT, 1, &out_c, err);
		if (rc < 0)
			return rc;
		n->p_bias = rc;
	}
	return commit_node(net, n);
}

int nb_net_add_linear(nb_net *net, int in, const char *name, int out,
		      int bias, enum nb_init init, char *err)
{
	nb_node *n = add_node(net, NB_NODE_LINEAR, &in, 1, name, err);
	if (!n)
		return NB_EINVAL;
	const nb_node *src = &net->nodes[in];
	if (out <= 0)
		return nb_errorf(err, NB_EINVAL, "linear %s: %d outputs", name,
				 out);
	int I = (int)src->size;
	n->bias = bias;
	n->init = init;
	n->c = out;
	n->h = n->w = 1;
	n->macs = (double)I * out;
	int wshape[2] = {out, I};
	int rc = add_param(net, name, "weight", NB_PARAM_WEIGHT, 2, wshape, err);
	if (rc < 0)
		return rc;
	n->p_weight = rc;
	if (bias) {
		rc = add_param(net, name, "bias", NB_PARAM_WEIGHT, 1, &out, err);
		if (rc < 0)
			return rc;
		n->p_bias = rc;
	}
	return commit_node(net, n);
}

int nb_net_add_batchnorm(nb_net *net, int in, const char *name, float eps,
			 float momentum, int affine, char *err)
{
	nb_node *n = add_node(net, NB_NODE_BATCHNORM, &in, 1, name, err);
	if (!n)
		return NB_EINVAL;
	if (!(eps > 0) || !(momentum >= 0 && momentum <= 1))
		return nb_errorf(err, NB_EINVAL,
				 "batchnorm %s: eps %g / momentum %g out of range",
				 name, eps, momentum);
	n->eps = eps;
	n->momentum = momentum;
	n->affine = affine;
	int C = n->c, rc;
	if (affine) {
		rc = add_param(net, name, "weight", NB_PARAM_WEIGHT, 1, &C, err);
		if (rc < 0)
			return rc;
		n->p_weight = rc;
		rc = add_param(net, name, "bias", NB_PARAM_WEIGHT, 1, &C, err);
		if (rc < 0)
			return rc;
		n->p_bias = rc;
	}
	rc = add_param(net, name, "running_mean", NB_PARAM_BUFFER, 1, &C, err);
	if (rc < 0)
		return rc;
	n->p_rmean = rc;
	rc = add_param(net, name, "running_var", NB_PARAM_BUFFER, 1, &C, err);
	if (rc < 0)
		return rc;
	n->p_rvar = rc;
	if (net->n_counters == net->cap_counters) {
		int cap = net->cap_counters ? net->cap_counters * 2 : 32;
		nb_counter *c = realloc(net->counters, (size_t)cap * sizeof *c);
		if (!c)
			return nb_errorf(err, NB_ENOMEM,
					 "out of memory building network");
		net->counters = c;
		net->cap_counters = cap;
	}
	n->counter = net->n_counters++;
	nb_counter *cnt = &net->counters[n->counter];
	snprintf(cnt->name, sizeof cnt->name, "%s.num_batches_tracked",
		 name ? name : "");
	cnt->value = 0;
	return commit_node(net, n);
}

static int add_simple(nb_net *net, enum nb_node_kind kind, int in, char *err)
{
	nb_node *n = add_node(net, kind, &in, 1, NULL, err);
	if (!n)
		return NB_EINVAL;
	return commit_node(net, n);
}

int nb_net_add_relu(nb_net *net, int in, char *err)
{
	return add_simple(net, NB_NODE_RELU, in, err);
}

int nb_net_add_relu6(nb_net *net, int in, char *err)
{
	return add_simple(net, NB_NODE_RELU6, in, err);
}

int nb_net_add_tanh(nb_net *net, int in, char *err)
{
	return add_simple(net, NB_NODE_TANH, in, err);
}

int nb_net_add_leaky_relu(nb_net *net, int in, float slope, char *err)
{
	nb_node *n = add_node(net, NB_NODE_LEAKY_RELU, &in, 1, NULL, err);
	if (!n)
		return NB_EINVAL;
	n->slope = slope;
	return commit_node(net, n);
}

static int add_pool(nb_net *net, enum nb_node_kind kind, int in, int k,
		    int stride, int pad, char *err)
{
	nb_node *n = add_node(net, kind, &in, 1, NULL, err);
	if (!n)
		return NB_EINVAL;
	if (k <= 0 || stride <= 0 || pad < 0 || 2 * pad > k)
		return nb_errorf(err, NB_EINVAL,
				 "pooling: bad kernel %d / stride %d / pad %d",
				 k, stride, pad);
	int P = (n->h + 2 * pad - k) / stride + 1;
	int Q = (n->w + 2 * pad - k) / stride + 1;
	if (n->h + 2 * pad < k || n->w + 2 * pad < k)
		return nb_errorf(err, NB_EINVAL,
				 "pooling: kernel %d larger than the %dx%d input",
				 k, n->h, n->w);
	n->k = k;
	n->stride = stride;
	n->pad = pad;
	n->h = P;
	n->w = Q;
	return commit_node(net, n);
}

int nb_net_add_maxpool(nb_net *net, int in, int k, int stride, int pad,
		       char *err)
{
	return add_pool(net, NB_NODE_MAXPOOL, in, k, stride, pad, err);
}

int nb_net_add_avgpool(nb_net *net, int in, int k, int stride, int pad,
		       char *err)
{
	return add_pool(net, NB_NODE_AVGPOOL, in, k, stride, pad, err);
}

int nb_net_add_adaptive_avgpool(nb_net *net, int in, int out_h, int out_w,
				char *err)
{
	nb_node *n = add_node(net, NB_NODE_ADAPTIVE_AVGPOOL, &in, 1, NULL, err);
	if (!n)
		return NB_EINVAL;
	if (out_h <= 0 || out_w <= 0)
		return nb_errorf(err, NB_EINVAL,
				 "adaptive pooling to %dx%d", out_h, out_w);
	n->h = out_h;
	n->w = out_w;
	return commit_node(net, n);
}

int nb_net_add_add(nb_net *net, int a, int b, char *err)
{
	int in[2] = {a, b};
	nb_node *n = add_node(net, NB_NODE_ADD, in, 2, NULL, err);
	if (!n)
		return NB_EINVAL;
	const nb_node *na = &net->nodes[a], *nb = &net->nodes[b];
	if (na->c != nb->c || na->h != nb->h || na->w != nb->w)
		return nb_errorf(err, NB_EINVAL,
				 "add: shapes differ (%dx%dx%d vs %dx%dx%d)",
				 na->c, na->h, na->w, nb->c, nb->h, nb->w);
	return commit_node(net, n);
}

int nb_net_add_concat(nb_net *net, const int *in, int n_in, char *err)
{
	if (n_in < 1 || n_in > NB_MAX_INPUTS)
		return nb_errorf(err, NB_EINVAL, "concat of %d inputs", n_in);
	nb_node *n = add_node(net, NB_NODE_CONCAT, in, n_in, NULL, err);
	if (!n)
		return NB_EINVAL;
	int c = 0;
	for (int i = 0; i < n_in; i++) {
		const nb_node *s = &net->nodes[in[i]];
		if (s->h != n->h || s->w != n->w)
			return nb_errorf(err, NB_EINVAL,
					 "concat: spatial sizes differ (%dx%d vs %dx%d)",
					 s->h, s->w, n->h, n->w);
		c += s->c;
	}
	n->c = c;
	return commit_node(net, n);
}

int nb_net_add_slice(nb_net *net, int in, int start, int len, char *err)
{
	nb_node *n = add_node(net, NB_NODE_SLICE, &in, 1, NULL, err);
	if (!n)
		return NB_EINVAL;
	if (start < 0 || len <= 0 || start + len > n->c)
		return nb_errorf(err, NB_EINVAL,
				 "slice [%d, %d) of %d channels", start,
				 start + len, n->c);
	n->start = start;
	n->len = len;
	n->c = len;
	return commit_node(net, n);
}

int nb_net_add_shuffle(nb_net *net, int in, int groups, char *err)
{
	nb_node *n = add_node(net, NB_NODE_SHUFFLE, &in, 1, NULL, err);
	if (!n)
		return NB_EINVAL;
	if (groups <= 0 || n->c % groups)
		return nb_errorf(err, NB_EINVAL,
				 "channel shuffle: %d groups do not divide %d channels",
				 groups, n->c);
	n->groups = groups;
	return commit_node(net, n);
}

int nb_net_add_upsample(nb_net *net, int in, int scale, char *err)
{
	nb_node *n = add_node(net, NB_NODE_UPSAMPLE, &in, 1, NULL, err);
	if (!n)
		return NB_EINVAL;
	if (scale <= 0)
		return nb_errorf(err, NB_EINVAL, "upsample by %d", scale);
	n->scale = scale;
	n->h *= scale;
	n->w *= scale;
	return commit_node(net, n);
}

int nb_net_add_flatten(nb_net *net, int in, char *err)
{
	nb_node *n = add_node(net, NB_NODE_FLATTEN, &in, 1, NULL, err);
	if (!n)
		return NB_EINVAL;
	n->c = (int)n->size;
	n->h = n->w = 1;
	return commit_node(net, n);
}

int nb_net_add_reshape(nb_net *net, int in, int c, int h, int w, char *err)
{
	nb_node *n = add_node(net, NB_NODE_RESHAPE, &in, 1, NULL, err);
	if (!n)
		return NB_EINVAL;
	if (c <= 0 || h <= 0 || w <= 0 || (size_t)c * h * w != n->size)
		return nb_errorf(err, NB_EINVAL,
				 "reshape of %zu values per sample to "
				 "%dx%dx%d",
				 n->size, c, h, w);
	n->c = c;
	n->h = h;
	n->w = w;
	return commit_node(net, n);
}

int nb_net_add_dropout(nb_net *net, int in, float p, char *err)
{
	nb_node *n = add_node(net, NB_NODE_DROPOUT, &in, 1, NULL, err);
	if (!n)
		return NB_EINVAL;
	if (!(p >= 0 && p <= 1))
		return nb_errorf(err, NB_EINVAL, "dropout p %g not in [0,1]", p);
	n->p = p;
	return commit_node(net, n);
}

int nb_net_add_tap(nb_net *net, int node, const char *name, char *err)
{
	if (node < 0 || node >= net->n_nodes || !name || !*name)
		return nb_errorf(err, NB_EINVAL, "tap '%s' on node %d",
				 name ? name : "", node);
	if (nb_net_find_tap(net, name) >= 0)
		return nb_errorf(err, NB_EINVAL, "tap '%s' named twice", name);
	if (net->n_taps == net->cap_taps) {
		int cap = net->cap_taps ? net->cap_taps * 2 : 8;
		void *t = realloc(net->taps, (size_t)cap * sizeof *net->taps);
		if (!t)
			return nb_errorf(err, NB_ENOMEM,
					 "out of memory building network");
		net->taps = t;
		net->cap_taps = cap;
	}
	snprintf(net->taps[net->n_taps].name, NB_NAME_LEN, "%s", name);
	net->taps[net->n_taps].node = node;
	net->n_taps++;
	/* a tap's output must stay its own: plan the buffers again */
	net->alloc_n = 0;
	return 0;
}

int nb_net_taps(const nb_net *net)
{
	return net->n_taps;
}

const char *nb_net_tap_name(const nb_net *net, int i)
{
	return i >= 0 && i < net->n_taps ? net->taps[i].name : NULL;
}

int nb_net_tap_node(const nb_net *net, int i)
{
	return i >= 0 && i < net->n_taps ? net->taps[i].node : -1;
}

int nb_net_find_tap(const nb_net *net, const char *name)
{
	for (int i = 0; i < net->n_taps; i++)
		if (!strcmp(net->taps[i].name, name))
			return net->taps[i].node;
	return -1;
}

int nb_net_node_input(const nb_net *net, int node, int j)
{
	if (node < 0 || node >= net->n_nodes || j < 0 ||
	    j >= net->nodes[node].n_in)
		return -1;
	return net->nodes[node].in[j];
}

int nb_net_counters(const nb_net *net, nb_counter **counters)
{
	if (counters)
		*counters = net->counters;
	return net->n_counters;
}

/* ---- initialisation --------------------------------------------------------- */

static void fill_uniform(float *x, size_t n, double bound, nb_rng *rng)
{
	for (size_t i = 0; i < n; i++)
		x[i] = (float)((2.0 * nb_rng_uniform(rng) - 1.0) * bound);
}

static void fill_normal(float *x, size_t n, double std, nb_rng *rng)
{
	for (size_t i = 0; i < n; i++)
		x[i] = (float)(std * nb_rng_normal(rng));
}

static void fill_const(float *x, size_t n, float v)
{
	for (size_t i = 0; i < n; i++)
		x[i] = v;
}

/* Fans as torch.nn.init._calculate_fan_in_and_fan_out computes them. */
static void init_layer(nb_net *net, const nb_node *n, nb_rng *rng)
{
	nb_param *w = &net->params[n->p_weight];
	size_t receptive = w->ndim == 4 ? (size_t)w->shape[2] * w->shape[3] : 1;
	double fan_in = (double)w->shape[1] * receptive;
	double fan_out = (double)w->shape[0] * receptive;
	double bias_bound = fan_in > 0 ? 1.0 / sqrt(fan_in) : 0;
	int bias_default = 0;
	switch (n->init) {
	case NB_INIT_DEFAULT:
		/* kaiming_uniform(a=sqrt(5)): bound = 1/sqrt(fan_in) */
		fill_uniform(w->data, w->size, 1.0 / sqrt(fan_in), rng);
		bias_default = 1;
		break;
	case NB_INIT_KAIMING_FAN_OUT:
		fill_normal(w->data, w->size, sqrt(2.0 / fan_out), rng);
		break;
	case NB_INIT_KAIMING_FAN_IN:
		fill_normal(w->data, w->size, sqrt(2.0 / fan_in), rng);
		break;
	case NB_INIT_NORMAL_FAN_OUT:
		fill_normal(w->data, w->size, sqrt(2.0 / fan_out), rng);
		bias_default = 1;
		break;
	}
	if (n->p_bias >= 0) {
		nb_param *b = &net->params[n->p_bias];
		if (bias_default)
			fill_uniform(b->data, b->size, bias_bound, rng);
		else
			fill_const(b->data, b->size, 0.0f);
	}
}

int nb_net_finalize(nb_net *net, uint64_t seed, char *err)
{
	if (net->finalized)
		return nb_errorf(err, NB_EINVAL, "network already finalised");
	size_t total = 0, total_grad = 0;
	for (int i = 0; i < net->n_params; i++) {
		total += net->params[i].size;
		if (net->params[i].role == NB_PARAM_WEIGHT)
			total_grad += net->params[i].size;
	}
	net->param_block = calloc(total ? total : 1, sizeof(float));
	net->grad_block = calloc(total_grad ? total_grad : 1, sizeof(float));
	net->param_ptrs = calloc((size_t)net->n_params + 1, sizeof(nb_param *));
	if (!net->param_block || !net->grad_block || !net->param_ptrs)
		return nb_errorf(err, NB_ENOMEM,
				 "out of memory for %zu parameters", total);
	size_t off = 0, goff = 0;
	for (int i = 0; i < net->n_params; i++) {
		nb_param *p = &net->params[i];
		p->data = net->param_block + off;
		off += p->size;
		if (p->role == NB_PARAM_WEIGHT) {
			p->grad = net->grad_block + goff;
			goff += p->size;
		}
		net->param_ptrs[i] = p;
	}
	nb_rng rng;
	nb_rng_seed(&rng, seed, NB_RNG_INIT);
	for (int i = 1; i < net->n_nodes; i++) {
		const nb_node *n = &net->nodes[i];
		if (n->kind == NB_NODE_CONV2D || n->kind == NB_NODE_LINEAR)
			init_layer(net, n, &rng);
		if (n->kind == NB_NODE_BATCHNORM) {
			if (n->affine) {
				nb_param *g = &net->params[n->p_weight];
				fill_const(g->data, g->size, 1.0f);
				/* bias already 0 */
			}
			nb_param *rv = &net->params[n->p_rvar];
			fill_const(rv->data, rv->size, 1.0f);
		}
	}
	net->finalized = 1;
	return 0;
}

/* ---- queries ----------------------------------------------------------------- */

int nb_net_nodes(const nb_net *net)
{
	return net->n_nodes;
}

int nb_net_output_node(const nb_net *net)
{
	return net->n_nodes - 1;
}

void nb_net_node_shape(const nb_net *net, int node, int *c, int *h, int *w)
{
	const nb_node *n = &net->nodes[node];
	if (c)
		*c = n->c;
	if (h)
		*h = n->h;
	if (w)
		*w = n->w;
}

enum nb_node_kind nb_net_node_kind(const nb_net *net, int node)
{
	return net->nodes[node].kind;
}

const char *nb_net_node_name(const nb_net *net, int node)
{
	return net->nodes[node].name;
}

const char *nb_node_kind_name(enum nb_node_kind kind)
{
	static const char *const names[] = {
		[NB_NODE_INPUT] = "input",
		[NB_NODE_CONV2D] = "conv2d",
		[NB_NODE_LINEAR] = "linear",
		[NB_NODE_BATCHNORM] = "batchnorm",
		[NB_NODE_RELU] = "relu",
		[NB_NODE_RELU6] = "relu6",
		[NB_NODE_LEAKY_RELU] = "leaky_relu",
		[NB_NODE_TANH] = "tanh",
		[NB_NODE_MAXPOOL] = "maxpool",
		[NB_NODE_AVGPOOL] = "avgpool",
		[NB_NODE_ADAPTIVE_AVGPOOL] = "adaptive_avgpool",
		[NB_NODE_ADD] = "add",
		[NB_NODE_CONCAT] = "concat",
		[NB_NODE_SLICE] = "slice",
		[NB_NODE_SHUFFLE] = "shuffle",
		[NB_NODE_UPSAMPLE] = "upsample",
		[NB_NODE_FLATTEN] = "flatten",
		[NB_NODE_RESHAPE] = "reshape",
		[NB_NODE_DROPOUT] = "dropout"};
	if ((unsigned)kind < sizeof names / sizeof names[0] && names[kind])
		return names[kind];
	return "unknown";
}

size_t nb_net_node_param_count(const nb_net *net, int node)
{
	const nb_node *n = &net->nodes[node];
	size_t s = 0;
	if (n->p_weight >= 0)
		s += net->params[n->p_weight].size;
	if (n->p_bias >= 0)
		s += net->params[n->p_bias].size;
	return s;
}

double nb_net_node_macs(const nb_net *net, int node)
{
	return net->nodes[node].macs;
}

int nb_net_params(const nb_net *net, nb_param ***params)
{
	if (params)
		*params = net->param_ptrs;
	return net->n_params;
}

nb_param *nb_net_param(const nb_net *net, const char *name)
{
	for (int i = 0; i < net->n_params; i++)
		if (strcmp(net->params[i].name, name) == 0)
			return &net->params[i];
	return NULL;
}

size_t nb_net_param_count(const nb_net *net)
{
	size_t n = 0;
	for (int i = 0; i < net->n_params; i++)
		if (net->params[i].role == NB_PARAM_WEIGHT)
			n += net->params[i].size;
	return n;
}

void nb_net_set_frozen(nb_net *net, int frozen)
{
	for (int i = 0; i < net->n_params; i++)
		if (net->params[i].role == NB_PARAM_WEIGHT)
			net->params[i].frozen = frozen;
}

void nb_net_set_training(nb_net *net, int training)
{
	net->training = training ? 1 : 0;
}

int nb_net_training(const nb_net *net)
{
	return net->training;
}

void nb_net_seed_dropout(nb_net *net, uint64_t seed)
{
	nb_rng_seed(&net->dropout_rng, seed, NB_RNG_DROPOUT);
}

nb_rng *nb_net_dropout_rng(nb_net *net)
{
	return &net->dropout_rng;
}

/* ---- forward ----------------------------------------------------------------- */

static void *xrealloc_free(void *old, size_t bytes)
{
	/* Contents need not survive a resize: free first keeps the peak low. */
	free(old);
	void *p = NULL;
	if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0)
		return NULL;
	return p;
}

/* node i is a tap */
static int tapped(const nb_net *net, int i)
{
	for (int t = 0; t < net->n_taps; t++)
		if (net->taps[t].node == i)
			return 1;
	return 0;
}

/* 1 if node i's output may be overwritten in place by node j = its only
 * consumer: a ReLU or ReLU6, or an add with node i as an addend where node i's own backward does not read its output (see the top of
 * this file). */
static int can_share(const nb_net *net, int i, int j)
{
	const nb_node *src = &net->nodes[i];
	if (i == 0 || i == net->n_nodes - 1 || src->kind == NB_NODE_TANH)
		return 0;
	if (tapped(net, i))
		return 0;
	for (int k = i + 1; k < net->n_nodes; k++)
		for (int m = 0; m < net->nodes[k].n_in; m++)
			if (net->nodes[k].in[m] == i && k != j)
				return 0;
	const nb_node *nd = &net->nodes[j];
	if (nd->kind == NB_NODE_ADD)
		return (nd->in[0] == i || nd->in[1] == i) &&
		       (src->kind == NB_NODE_CONV2D ||
			src->kind == NB_NODE_BATCHNORM ||
			src->kind == NB_NODE_LINEAR || src->kind == NB_NODE_ADD);
	return nd->n_in == 1 &&
	       (nd->kind == NB_NODE_RELU || nd->kind == NB_NODE_RELU6);
}

/* Node i's only consumer (a node that takes it as an input once), or -1
 * if it has none or several, or is a tap */
static int sole_consumer(const nb_net *net, int i)
{
	int user = -1, users = 0;
	for (int k = i + 1; k < net->n_nodes; k++)
		for (int m = 0; m < net->nodes[k].n_in; m++)
			if (net->nodes[k].in[m] == i) {
				user = k;
				users++;
			}
	return users == 1 && !tapped(net, i) ? user : -1;
}

/*
 * A BatchNorm whose activation it applies itself (fuse_act) and whose
 * activation's only consumer is a convolution, none of them a tap or the
 * output: in training the convolution may apply the two as it reads the
 * BatchNorm's input (nb_conv2d_forward_pre, where its kernels take it),
 * and the BatchNorm then writes no output (pre_conv, pre_bn, pre_live).
 */
static void link_pre(nb_net *net)
{
	for (int i = 0; i < net->n_nodes; i++)
		net->nodes[i].pre_conv = net->nodes[i].pre_bn =
		    net->nodes[i].pre_live = 0;
	for (int i = 1; i < net->n_nodes - 1; i++) {
		nb_node *act = &net->nodes[i];
		if (!act->fused)
			continue;
		const int conv = sole_consumer(net, i);
		const int bn = act->in[0];
		if (conv < 0 || conv == net->n_nodes - 1 ||
		    net->nodes[conv].kind != NB_NODE_CONV2D ||
		    sole_consumer(net, bn) != i)
			continue;
		net->nodes[bn].pre_conv = conv;
		net->nodes[conv].pre_bn = bn;
	}
}

/*
 * A residual add working in place in a convolution's buffer (can_share)
 * whose other addend is computed before the convolution: the convolution
 * adds it to its output as it writes it (nb_conv2d_forward_res, same
 * bits), and the add has nothing left to do. Saves a pass that reads two
 * activations and writes one (1.9 % of preresnet20's training step).
 */
static void link_res(nb_net *net)
{
	for (int i = 0; i < net->n_nodes; i++)
		net->nodes[i].res_add = 0;
	for (int a = 1; a < net->n_nodes; a++) {
		const nb_node *ad = &net->nodes[a];
		if (ad->kind != NB_NODE_ADD || !ad->inplace ||
		    ad->in[0] == ad->in[1])
			continue;
		const int b = ad->out == net->nodes[ad->in[0]].out ? 0 : 1;
		nb_node *conv = &net->nodes[ad->in[b]];
		if (conv->kind == NB_NODE_CONV2D && ad->in[1 - b] < ad->in[b])
			conv->res_add = a;
	}
}

/*
 * A BatchNorm whose input a convolution writes (its output, or the sum of
 * the add it writes: link_res), the input not a tap: in training the
 * convolution takes the BatchNorm's statistics as it writes, where its
 * kernels can (nb_conv2d_forward_post), and the BatchNorm does not read
 * its input for them (nb_batchnorm_forward_train_sums; same bits).
 */
static int link_stats(nb_net *net)
{
	for (int i = 0; i < net->n_nodes; i++)
		net->nodes[i].stats_bn = 0;
	for (int i = 1; i < net->n_nodes; i++) {
		nb_node *bn = &net->nodes[i];
		const int p = bn->in[0];
		if (bn->kind != NB_NODE_BATCHNORM || p <= 0 || tapped(net, p))
			continue;
		int conv = net->nodes[p].kind == NB_NODE_CONV2D ? p : 0;
		for (int k = 1; k < p && !conv; k++)
			if (net->nodes[k].res_add == p)
				conv = k;
		if (!conv || net->nodes[conv].stats_bn)
			continue;
		net->nodes[conv].stats_bn = i;
		if (!bn->fsums) {
			bn->fsums = malloc(sizeof(double) *
					   NB_BATCHNORM_SLICES * 2 * bn->c);
			if (!bn->fsums)
				return NB_ENOMEM;
		}
	}
	return 0;
}

/* room for the backward's sums of every BatchNorm with a pre_conv */
static int alloc_gsums(nb_net *net)
{
	for (int i = 0; i < net->n_nodes; i++) {
		nb_node *nd = &net->nodes[i];
		if (!nd->pre_conv || nd->gsums)
			continue;
		nd->gsums =
		    malloc(sizeof(double) * NB_BATCHNORM_SLICES * 3 * nd->c);
		if (!nd->gsums)
			return NB_ENOMEM;
	}
	return 0;
}

/* Makes sure every forward buffer holds n samples. */
static int ensure_buffers(nb_net *net, int n, char *err)
{
	if (n <= net->alloc_n)
		return 0;
	pool_clear(net->pool, &net->n_pool);
	if (!net->pool) {
		net->pool = calloc((size_t)net->n_nodes, sizeof *net->pool);
		if (!net->pool)
			goto oom;
	}
	for (int i = 0; i < net->n_nodes; i++) {
		nb_node *nd = &net->nodes[i];
		size_t elems = (size_t)n * nd->size;
		if (nd->inplace) { /* the buffer belongs to its input */
			nd->out = NULL;
			nd->inplace = 0;
		}
		nd->fuse_act = nd->fused = 0;
		/* the buffer to work in: the input's (ReLU), or either
		 * addend's (add) */
		int from = -1;
		if (i > 0 && can_share(net, nd->in[0], i))
			from = nd->in[0];
		else if (nd->kind == NB_NODE_ADD &&
			 can_share(net, nd->in[1], i))
			from = nd->in[1];
		if (from >= 0) {
			nb_node *src = &net->nodes[from];
			free(nd->out);
			nd->out = src->out;
			nd->inplace = 1;
			/* BatchNorm + ReLU (or ReLU6) in one pass */
			if (src->kind == NB_NODE_BATCHNORM &&
			    (nd->kind == NB_NODE_RELU ||
			     nd->kind == NB_NODE_RELU6)) {
				src->fuse_act = nd->kind == NB_NODE_RELU
						    ? FUSE_RELU
						    : FUSE_RELU6;
				nd->fused = 1;
			}
		} else {
			/* flatten and the input could alias, but a copy keeps
			 * the ownership rules simple; they are small next to
			 * convs */
			nd->out = xrealloc_free(nd->out, elems * sizeof(float));
			if (!nd->out)
				goto oom;
		}
		if (nd->grad) {
			free(nd->grad);
			nd->grad = NULL;
		}
		nd->grad_live = 0;
		if (nd->kind == NB_NODE_BATCHNORM && !nd->save_mean) {
			nd->save_mean = malloc((size_t)nd->c * sizeof(float));
			nd->save_invstd = malloc((size_t)nd->c * sizeof(float));
			nd->save_affine =
			    malloc((size_t)nd->c * 4 * sizeof(float));
			if (!nd->save_mean || !nd->save_invstd ||
			    !nd->save_affine)
				goto oom;
		}
		if (nd->kind == NB_NODE_MAXPOOL) {
			nd->argmax = xrealloc_free(nd->argmax,
						   elems * sizeof(int32_t));
			if (!nd->argmax)
				goto oom;
		}
		if (nd->kind == NB_NODE_DROPOUT) {
			nd->mask = xrealloc_free(nd->mask, elems * sizeof(float));
			if (!nd->mask)
				goto oom;
		}
	}
	link_pre(net);
	link_res(net);
	if (alloc_gsums(net) < 0 || link_stats(net) < 0)
		goto oom;
	/* a conv whose only consumer is a BatchNorm, neither of them a tap
	 * or the output: nb_net_forward_infer folds the BatchNorm in */
	free(net->fold);
	net->fold = NULL;
	net->fold_n = 0;
	for (int i = 1; i < net->n_nodes; i++) {
		nb_node *nd = &net->nodes[i];
		nd->fold_bn = 0;
		if (nd->kind != NB_NODE_CONV2D || i == net->n_nodes - 1)
			continue;
		const int user = sole_consumer(net, i);
		if (user >= 0 && !tapped(net, user) &&
		    net->nodes[user].kind == NB_NODE_BATCHNORM &&
		    net->nodes[user].c == nd->c && user != net->n_nodes - 1) {
			nd->fold_bn = user;
			size_t need =
			    nb_net_node_param_count(net, i) + (size_t)nd->c;
			if (need > net->fold_n)
				net->fold_n = need;
		}
	}
	net->alloc_n = n;
	return 0;
oom:
	net->alloc_n = 0;
	return nb_errorf(err, NB_ENOMEM,
			 "out of memory for activations of batch %d", n);
}

static float *pdata(nb_net *net, int idx)
{
	return idx >= 0 ? net->params[idx].data : NULL;
}

/* The activation a BatchNorm fuses (fuse_act), applied in place to its
 * output by itself: where the BatchNorm's own pass could not (the group's
 * statistics). */
static void fused_act_forward(nb_node *bn, size_t n)
{
	if (bn->fuse_act == FUSE_RELU)
		nb_relu_forward(bn->out, bn->out, n);
	else if (bn->fuse_act == FUSE_RELU6)
		nb_relu6_forward(bn->out, bn->out, n);
}

/* Whether BatchNorm bn's forward on N samples leaves its output to its
 * pre_conv (see link_pre) */
static int pre_possible(const nb_net *net, const nb_node *bn, int N)
{
	if (!bn->pre_conv || !net->training || net->reduce)
		return 0;
	nb_conv2d_shape s = net->nodes[bn->pre_conv].conv;
	s.N = N;
	return nb_conv2d_takes_pre(&s);
}

/* For conv nd: if the last forward left its BatchNorm's output to it, the
 * BatchNorm's input, with *pre filled in; else NULL */
static const float *pre_input(const nb_net *net, const nb_node *nd,
			      nb_conv_pre *pre)
{
	if (!nd->pre_bn || !net->nodes[nd->pre_bn].pre_live)
		return NULL;
	const nb_node *bn = &net->nodes[nd->pre_bn];
	*pre = (nb_conv_pre){
	    .affine = bn->save_affine,
	    .act = bn->fuse_act == FUSE_RELU6 ? NB_ACT_RELU6 : NB_ACT_RELU};
	return net->nodes[bn->in[0]].out;
}

static int node_forward(nb_net *net, nb_node *nd, int N, char *err)
{
	const nb_node *src = &net->nodes[nd->in[0]];
	const float *x = src->out;
	size_t n_elems = (size_t)N * nd->size;
	switch (nd->kind) {
	case NB_NODE_INPUT:
		return 0;
	case NB_NODE_CONV2D: {
		nb_conv2d_shape s = nd->conv;
		s.N = N;
		nb_conv_pre pre;
		const float *xb = pre_input(net, nd, &pre);
		/* the add's sum, where the add works in this buffer (the
		 * inference path's buffers may differ) */
		nb_node *ad = nd->res_add ? &net->nodes[nd->res_add] : NULL;
		if (ad && ad->out != nd->out)
			ad = NULL;
		nb_conv_post post = {
		    .res = ad ? net->nodes[ad->in[ad->in[0] == nd - net->nodes]]
				    .out
			      : NULL};
		/* the statistics of the BatchNorm reading what it writes */
		nb_node *bn = nd->stats_bn ? &net->nodes[nd->stats_bn] : NULL;
		if (bn && (!net->training || net->reduce ||
			   (bn->in[0] != nd - net->nodes &&
			    (!ad || bn->in[0] != ad - net->nodes))))
			bn = NULL;
		post.stats = bn ? bn->fsums : NULL;
		int rc = post.res || post.stats
			     ? nb_conv2d_forward_post(
				   nd->out, xb ? xb : x,
				   pdata(net, nd->p_weight),
				   pdata(net, nd->p_bias), &s, &net->ws,
				   xb ? &pre : NULL, &post)
			 : xb ? nb_conv2d_forward_pre(nd->out, xb,
						      pdata(net, nd->p_weight),
						      pdata(net, nd->p_bias),
						      &s, &net->ws, &pre)
			      : nb_conv2d_forward(nd->out, x,
						  pdata(net, nd->p_weight),
						  pdata(net, nd->p_bias), &s,
						  &net->ws);
		if (ad)
			ad->res_live = rc >= 0;
		if (bn)
			bn->fsums_live = rc == 1;
		if (rc < 0)
			return nb_errorf(err, rc, "conv %s: out of memory",
					 nd->name);
		return 0;
	}
	case NB_NODE_LINEAR:
		nb_linear_forward(nd->out, x, pdata(net, nd->p_weight),
				  pdata(net, nd->p_bias), N, (int)src->size,
				  nd->c);
		return 0;
	case NB_NODE_BATCHNORM: {
		int L = nd->h * nd->w;
		nd->affine_live = 0;
		nd->pre_live = 0;
		if (net->training) {
			int rc;
			if (net->reduce) {
				rc = nb_batchnorm_forward_train_sync(
				    nd->out, nd->save_mean, nd->save_invstd,
				    pdata(net, nd->p_rmean),
				    pdata(net, nd->p_rvar), x,
				    pdata(net, nd->p_weight),
				    pdata(net, nd->p_bias), N, nd->c, L,
				    nd->momentum, nd->eps, net->reduce,
				    net->reduce_ctx);
				if (rc < 0 && rc != NB_EINVAL)
					return nb_errorf(err, rc,
							 "batchnorm %s: the group's sums failed",
							 nd->name);
				if (rc >= 0 && nd->fuse_act)
					fused_act_forward(nd, n_elems);
			} else if (nd->fsums_live) {
				/* its statistics' sums taken by the conv
				 * that wrote x (link_stats) */
				const int pre =
				    nd->fuse_act && pre_possible(net, nd, N);
				rc = nb_batchnorm_forward_train_sums(
				    pre ? NULL : nd->out, nd->save_mean,
				    nd->save_invstd,
				    nd->fuse_act ? nd->save_affine : NULL,
				    pdata(net, nd->p_rmean),
				    pdata(net, nd->p_rvar), x,
				    pdata(net, nd->p_weight),
				    pdata(net, nd->p_bias), N, nd->c, L,
				    nd->momentum, nd->eps,
				    nd->fuse_act == FUSE_RELU    ? NB_ACT_RELU
				    : nd->fuse_act == FUSE_RELU6 ? NB_ACT_RELU6
								 : NB_ACT_NONE,
				    nd->fsums);
				nd->fsums_live = 0;
				nd->affine_live = nd->fuse_act && rc >= 0;
				nd->pre_live = pre && rc >= 0;
			} else if (nd->fuse_act) {
				const int pre = pre_possible(net, nd, N);
				rc = (nd->fuse_act == FUSE_RELU
					  ? nb_batchnorm_relu_forward_train
					  : nb_batchnorm_relu6_forward_train)(
				    pre ? NULL : nd->out, nd->save_mean,
				    nd->save_invstd,
				    nd->save_affine, pdata(net, nd->p_rmean),
				    pdata(net, nd->p_rvar), x,
				    pdata(net, nd->p_weight),
				    pdata(net, nd->p_bias), N, nd->c, L,
				    nd->momentum, nd->eps);
				nd->affine_live = rc >= 0;
				nd->pre_live = pre && rc >= 0;
			} else {
				rc = nb_batchnorm_forward_train(
				    nd->out, nd->save_mean, nd->save_invstd,
				    pdata(net, nd->p_rmean),
				    pdata(net, nd->p_rvar), x,
				    pdata(net, nd->p_weight),
				    pdata(net, nd->p_bias), N, nd->c, L,
				    nd->momentum, nd->eps);
			}
			if (rc < 0)
				return nb_errorf(err, rc,
						 "batchnorm %s: training mode needs more than one value per channel (batch %d, %dx%d)",
						 nd->name, N, nd->h, nd->w);
			net->counters[nd->counter].value++;
		} else {
			(nd->fuse_act == FUSE_RELU
			     ? nb_batchnorm_relu_forward_eval
			 : nd->fuse_act == FUSE_RELU6
			     ? nb_batchnorm_relu6_forward_eval
			     : nb_batchnorm_forward_eval)(
			    nd->out, x, pdata(net, nd->p_weight),
			    pdata(net, nd->p_bias), pdata(net, nd->p_rmean),
			    pdata(net, nd->p_rvar), N, nd->c, L, nd->eps);
		}
		return 0;
	}
	case NB_NODE_RELU:
		if (!nd->fused)
			nb_relu_forward(nd->out, x, n_elems);
		return 0;
	case NB_NODE_RELU6:
		if (!nd->fused)
			nb_relu6_forward(nd->out, x, n_elems);
		return 0;
	case NB_NODE_LEAKY_RELU:
		nb_leaky_relu_forward(nd->out, x, n_elems, nd->slope);
		return 0;
	case NB_NODE_TANH:
		nb_tanh_forward(nd->out, x, n_elems);
		return 0;
	case NB_NODE_MAXPOOL:
		nb_maxpool2d_forward(nd->out, nd->argmax, x, N, src->c, src->h,
				     src->w, nd->k, nd->stride, nd->pad);
		return 0;
	case NB_NODE_AVGPOOL:
		nb_avgpool2d_forward(nd->out, x, N, src->c, src->h, src->w,
				     nd->k, nd->stride, nd->pad);
		return 0;
	case NB_NODE_ADAPTIVE_AVGPOOL:
		nb_adaptive_avgpool2d_forward(nd->out, x, N, src->c, src->h,
					      src->w, nd->h, nd->w);
		return 0;
	case NB_NODE_ADD:
		if (!nd->res_live)
			nb_add_forward(nd->out, x, net->nodes[nd->in[1]].out,
				       n_elems);
		return 0;
	case NB_NODE_CONCAT: {
		const float *ins[NB_MAX_INPUTS];
		int cs[NB_MAX_INPUTS];
		for (int i = 0; i < nd->n_in; i++) {
			ins[i] = net->nodes[nd->in[i]].out;
			cs[i] = net->nodes[nd->in[i]].c;
		}
		nb_concat_forward(nd->out, ins, cs, nd->n_in, N, nd->h * nd->w);
		return 0;
	}
	case NB_NODE_SLICE:
		nb_channel_slice_forward(nd->out, x, N, src->c, nd->h * nd->w,
					 nd->start, nd->len);
		return 0;
	case NB_NODE_SHUFFLE:
		nb_channel_shuffle_forward(nd->out, x, N, nd->c, nd->h * nd->w,
					   nd->groups);
		return 0;
	case NB_NODE_UPSAMPLE:
		nb_upsample_nearest_forward(nd->out, x, N, src->c, src->h,
					    src->w, nd->scale);
		return 0;
	case NB_NODE_FLATTEN:
	case NB_NODE_RESHAPE:
		memcpy(nd->out, x, n_elems * sizeof(float));
		return 0;
	case NB_NODE_DROPOUT:
		if (net->training && nd->p > 0)
			nb_dropout_forward(nd->out, nd->mask, x, n_elems, nd->p,
					   &net->dropout_rng);
		else
			memcpy(nd->out, x, n_elems * sizeof(float));
		return 0;
	}
	return nb_errorf(err, NB_EINVAL, "unknown node kind %d", nd->kind);
}

int nb_net_forward(nb_net *net, const float *x, int n, char *err)
{
	if (!net->finalized)
		return nb_errorf(err, NB_EINVAL, "network not finalised");
	if (n <= 0)
		return nb_errorf(err, NB_EINVAL, "batch of %d samples", n);
	drop_borrowed(net);
	int rc = ensure_buffers(net, n, err);
	if (rc < 0)
		return rc;
	net->cur_n = n;
	net->infer_only = 0;
	nb_node *in = &net->nodes[0];
	memcpy(in->out, x, (size_t)n * in->size * sizeof(float));
	for (int i = 0; i < net->n_nodes; i++)
		net->nodes[i].grad_live = net->nodes[i].pre_live =
		    net->nodes[i].sums_live = net->nodes[i].res_live =
		    net->nodes[i].fsums_live = 0;
	for (int i = 1; i < net->n_nodes; i++) {
		rc = node_forward(net, &net->nodes[i], n, err);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/*
 * Conv node nd followed by BatchNorm bn (evaluation mode) as one conv with
 * w' = w * s and b' = (b - running_mean) * s + beta per output channel,
 * s = gamma / sqrt(running_var + eps), written into bn's output.
 */
static int folded_conv_forward(nb_net *net, nb_node *nd, nb_node *bn, int N,
			       char *err)
{
	const int K = nd->c;
	const size_t wn = net->params[nd->p_weight].size;
	float *w2 = net->fold, *b2 = net->fold + wn;
	const float *w = pdata(net, nd->p_weight), *b = pdata(net, nd->p_bias);
	const float *g = pdata(net, bn->p_weight), *be = pdata(net, bn->p_bias);
	const float *rm = pdata(net, bn->p_rmean), *rv = pdata(net, bn->p_rvar);
	const size_t wk = wn / (size_t)K;
	for (int k = 0; k < K; k++) {
		double sc = 1.0 / sqrt((double)rv[k] + bn->eps);
		if (g)
			sc *= g[k];
		const float s = (float)sc;
		for (size_t i = 0; i < wk; i++)
			w2[(size_t)k * wk + i] = w[(size_t)k * wk + i] * s;
		b2[k] = (float)(((b ? b[k] : 0.0) - rm[k]) * sc +
				(be ? be[k] : 0.0));
	}
	nb_conv2d_shape s = nd->conv;
	s.N = N;
	/* the BatchNorm's fused activation too, image by image in cache */
	const int act = bn->fuse_act == FUSE_RELU    ? NB_ACT_RELU
			: bn->fuse_act == FUSE_RELU6 ? NB_ACT_RELU6
						     : NB_ACT_NONE;
	int rc = nb_conv2d_forward_act(bn->out, net->nodes[nd->in[0]].out, w2,
				       b2, &s, &net->ws, act);
	if (rc < 0)
		return nb_errorf(err, rc, "conv %s: out of memory", nd->name);
	return 0;
}

/*
 * A buffer of at least `elems` floats from a pool (gradients, or inference
 * outputs): the smallest pooled one that is big enough, else a new one
 * (freeing the largest pooled buffer that is too small first, so that the
 * pool never holds more than the most buffers in flight at once).
 */
static float *pool_take(struct grad_buf *pool, int *n_pool, size_t elems,
			size_t *cap)
{
	int best = -1, small = -1;
	for (int i = 0; i < *n_pool; i++) {
		size_t c = pool[i].cap;
		if (c >= elems) {
			if (best < 0 || c < pool[best].cap)
				best = i;
		} else if (small < 0 || c > pool[small].cap) {
			small = i;
		}
	}
	int drop = best >= 0 ? best : small;
	float *buf = NULL;
	if (best >= 0) {
		buf = pool[best].buf;
		*cap = pool[best].cap;
	} else if (small >= 0) {
		free(pool[small].buf);
	}
	if (drop >= 0)
		pool[drop] = pool[--*n_pool];
	if (buf)
		return buf;
	if (posix_memalign((void **)&buf, 64,
			   (elems ? elems : 16) * sizeof(float)) != 0)
		return NULL;
	*cap = elems;
	return buf;
}

void nb_net_set_infer_reuse(nb_net *net, int on)
{
	net->infer_keep_all = !on;
}

/*
 * The buffer reuse of nb_net_forward_infer. Every node writes the buffer of
 * its root (itself, or for a node working in place the root of the node
 * whose buffer it shares); a root's buffer is pooled unless it holds the
 * input, the output or a tap (those keep their own, readable after the
 * pass), and is free again after ilast, the last node that reads it. A
 * folded convolution's own output is never written: it gets nothing.
 */
static int infer_plan(nb_net *net)
{
	const int N = net->n_nodes;
	if (!net->iroot) {
		net->iroot = malloc((size_t)N * sizeof *net->iroot);
		net->ilast = malloc((size_t)N * sizeof *net->ilast);
		net->ipooled = malloc((size_t)N);
		net->isaved = calloc((size_t)N, sizeof *net->isaved);
		net->icap = calloc((size_t)N, sizeof *net->icap);
		net->ipool = calloc((size_t)N, sizeof *net->ipool);
		if (!net->iroot || !net->ilast || !net->ipooled ||
		    !net->isaved || !net->icap || !net->ipool)
			return NB_ENOMEM;
	}
	int *root = net->iroot, *last = net->ilast;
	unsigned char *pooled = net->ipooled;
	for (int i = 0; i < N; i++) {
		const nb_node *nd = &net->nodes[i];
		root[i] = i;
		if (i > 0 && nd->inplace) {
			const int a = nd->in[0];
			const int src = nd->n_in > 1 && net->nodes[a].out != nd->out
					    ? nd->in[1]
					    : a;
			root[i] = root[src];
		}
		pooled[i] = !net->infer_keep_all;
		last[i] = i;
	}
	pooled[root[0]] = 0;
	pooled[root[N - 1]] = 0;
	for (int t = 0; t < net->n_taps; t++)
		pooled[root[net->taps[t].node]] = 0;
	for (int i = 1; i < N; i++) {
		const nb_node *nd = &net->nodes[i];
		if (nd->fold_bn)
			pooled[i] = 0; /* never written */
		if (last[root[i]] < i)
			last[root[i]] = i;
		for (int j = 0; j < nd->n_in; j++)
			if (last[root[nd->in[j]]] < i)
				last[root[nd->in[j]]] = i;
	}
	return 0;
}

/* Points node i at its buffer for this pass: a pooled one if it is a
 * pooled root, its root's if it works in place in a pooled one. */
static int infer_acquire(nb_net *net, int i, int n, char *err)
{
	nb_node *nd = &net->nodes[i];
	const int r = net->iroot[i];
	if (!net->ipooled[r])
		return 0;
	net->isaved[i] = nd->out;
	if (r != i) {
		nd->out = net->nodes[r].out;
		return 0;
	}
	nd->out = pool_take(net->ipool, &net->n_ipool, (size_t)n * nd->size,
			    &net->icap[i]);
	if (!nd->out) {
		nd->out = net->isaved[i];
		net->isaved[i] = NULL;
		return nb_errorf(err, NB_ENOMEM,
				 "out of memory for the output of %s",
				 nd->name[0] ? nd->name : "a node");
	}
	return 0;
}

/* Returns the pooled buffers whose last reader is at or before node upto
 * (every one if upto is n_nodes), and points every node back at its own
 * buffer once its root's is returned. */
static void infer_release(nb_net *net, int upto)
{
	for (int i = 1; i < net->n_nodes; i++) {
		const int r = net->iroot[i];
		if (!net->isaved[i] || net->ilast[r] > upto)
			continue;
		nb_node *nd = &net->nodes[i];
		if (r == i) {
			/* the pool has room for n_nodes buffers */
			net->ipool[net->n_ipool].buf = nd->out;
			net->ipool[net->n_ipool].cap = net->icap[i];
			net->n_ipool++;
		}
		nd->out = net->isaved[i];
		net->isaved[i] = NULL;
	}
}

int nb_net_forward_infer(nb_net *net, const float *x, int n, char *err)
{
	if (!net->finalized)
		return nb_errorf(err, NB_EINVAL, "network not finalised");
	if (n <= 0)
		return nb_errorf(err, NB_EINVAL, "batch of %d samples", n);
	drop_borrowed(net);
	int rc = ensure_buffers(net, n, err);
	if (rc < 0)
		return rc;
	if (net->fold_n && !net->fold) {
		net->fold = malloc(net->fold_n * sizeof(float));
		if (!net->fold)
			return nb_errorf(err, NB_ENOMEM,
					 "out of memory for folded weights");
	}
	if (infer_plan(net) < 0)
		return nb_errorf(err, NB_ENOMEM,
				 "out of memory for the inference plan");
	int was_training = net->training;
	net->training = 0;
	net->cur_n = n;
	net->infer_only = 1;
	nb_node *in = &net->nodes[0];
	memcpy(in->out, x, (size_t)n * in->size * sizeof(float));
	for (int i = 0; i < net->n_nodes; i++)
		net->nodes[i].grad_live = net->nodes[i].pre_live =
		    net->nodes[i].sums_live = net->nodes[i].res_live =
		    net->nodes[i].fsums_live = 0;
	for (int i = 1; i < net->n_nodes && rc >= 0; i++) {
		nb_node *nd = &net->nodes[i];
		if (!nd->fold_bn) {
			rc = infer_acquire(net, i, n, err);
			if (rc >= 0)
				rc = node_forward(net, nd, n, err);
			infer_release(net, i);
			continue;
		}
		/* the conv's own output stays unwritten; the BatchNorm is
		 * done, with the ReLU it would have applied */
		for (int k = i + 1; rc >= 0 && k <= nd->fold_bn; k++)
			rc = infer_acquire(net, k, n, err);
		nb_node *bn = &net->nodes[nd->fold_bn];
		if (rc >= 0)
			rc = folded_conv_forward(net, nd, bn, n, err);
		for (int k = i + 1; rc >= 0 && k < nd->fold_bn; k++)
			rc = node_forward(net, &net->nodes[k], n, err);
		i = nd->fold_bn;
		infer_release(net, i);
	}
	infer_release(net, net->n_nodes);
	net->training = was_training;
	return rc < 0 ? rc : 0;
}

float *nb_net_output(nb_net *net, int node)
{
	if (node < 0 || node >= net->n_nodes)
		return NULL;
	nb_node *nd = &net->nodes[node];
	/* a BatchNorm output left to its convolution (or that output's
	 * activation): written now, with the forward's bits (the
	 * convolution's backward then reads it as it is) */
	nb_node *bn = nd->fused ? &net->nodes[nd->in[0]] : nd;
	if (bn->kind == NB_NODE_BATCHNORM && bn->pre_live) {
		nb_batchnorm_affine_forward(
		    bn->out, net->nodes[bn->in[0]].out, bn->save_affine,
		    net->cur_n, bn->c, bn->h * bn->w,
		    bn->fuse_act == FUSE_RELU6 ? NB_ACT_RELU6 : NB_ACT_RELU);
		bn->pre_live = 0;
	}
	return nd->out;
}

/* ---- backward ---------------------------------------------------------------- */

static float *grad_take(nb_net *net, size_t elems, size_t *cap)
{
	return pool_take(net->pool, &net->n_pool, elems, cap);
}

/* Node nd's gradient is consumed: its buffer goes back to the pool. */
static void grad_release(nb_net *net, nb_node *nd)
{
	if (!nd->grad)
		return;
	if (nd->grad_borrowed) {
		nd->grad = NULL;
		nd->grad_live = nd->grad_borrowed = 0;
		return;
	}
	/* the pool has room for n_nodes buffers and every buffer is either
	 * held by one node or pooled */
	net->pool[net->n_pool].buf = nd->grad;
	net->pool[net->n_pool].cap = nd->grad_cap;
	net->n_pool++;
	nd->grad = NULL;
	nd->grad_live = 0;
	nd->grad_relu = 0;
}

/* p[0..n) = 0, split over the threads when it is large (a gradient buffer
 * of a CIFAR ResNet is megabytes: zeroing it alone keeps the other thread
 * waiting) */
static void zero_floats(float *p, size_t n)
{
	const size_t chunk = 16384;
	if (n < 4 * chunk) {
		memset(p, 0, n * sizeof(float));
		return;
	}
	const long long nc = (long long)((n + chunk - 1) / chunk);
#pragma omp parallel for schedule(static)
	for (long long c = 0; c < nc; c++) {
		const size_t at = (size_t)c * chunk;
		const size_t len = n - at < chunk ? n - at : chunk;
		memset(p + at, 0, len * sizeof(float));
	}
}

/* Node `node`'s gradient buffer, taken from the pool if it has none. One
 * that nothing has written since the forward is zeroed, unless *store is
 * given: then it is handed out as it is and *store says so (the caller
 * must write every element, see input_grad_store). */
static float *node_grad_buf(nb_net *net, int node, int *store)
{
	nb_node *nd = &net->nodes[node];
	size_t elems = (size_t)net->alloc_n * nd->size;
	if (store)
		*store = 0;
	if (!nd->grad) {
		nd->grad = grad_take(net, elems, &nd->grad_cap);
		if (!nd->grad)
			return NULL;
		nd->grad_live = 0;
	}
	if (!nd->grad_live) {
		if (store)
			*store = 1;
		else
			zero_floats(nd->grad, (size_t)net->cur_n * nd->size);
		nd->grad_live = 1;
	}
	return nd->grad;
}

static float *node_grad(nb_net *net, int node)
{
	return node_grad_buf(net, node, NULL);
}

float *nb_net_grad(nb_net *net, int node)
{
	if (node < 0 || node >= net->n_nodes || net->cur_n == 0)
		return NULL;
	return node_grad(net, node);
}

void nb_net_zero_grad(nb_net *net)
{
	for (int i = 0; i < net->n_params; i++)
		if (net->params[i].grad)
			memset(net->params[i].grad, 0,
			       net->params[i].size * sizeof(float));
}

static float *pgrad(nb_net *net, int idx)
{
	if (idx < 0)
		return NULL;
	nb_param *p = &net->params[idx];
	return p->frozen ? NULL : p->grad;
}

static int has_trainable(const nb_net *net, const nb_node *nd)
{
	int idx[2] = {nd->p_weight, nd->p_bias};
	for (int i = 0; i < 2; i++)
		if (idx[i] >= 0 && !net->params[idx[i]].frozen)
			return 1;
	return 0;
}

/* The gradient buffer of input j of nd if it needs one, else NULL. */
static float *input_grad(nb_net *net, const nb_node *nd, int j, int *oom)
{
	if (!net->nodes[nd->in[j]].needs_grad)
		return NULL;
	float *g = node_grad(net, nd->in[j]);
	if (!g)
		*oom = 1;
	return g;
}

/*
 * The gradient buffer of input j for an op that can write its gradient
 * instead of adding it (the _store variants of the ops): when nothing has
 * written the buffer yet it is handed out as it is, *store = 1, and the op
 * must write every element; that saves zeroing it and reading the zeros
 * back (5 % of preresnet20's training step). Else as input_grad, *store = 0.
 */
static float *input_grad_store(nb_net *net, const nb_node *nd, int j,
			       int *oom, int *store)
{
	*store = 0;
	if (!net->nodes[nd->in[j]].needs_grad)
		return NULL;
	float *g = node_grad_buf(net, nd->in[j], store);
	if (!g)
		*oom = 1;
	return g;
}

static int node_backward(nb_net *net, nb_node *nd, int N, char *err)
{
	const nb_node *src = &net->nodes[nd->in[0]];
	const float *x = src->out;
	const float *dy = nd->grad;
	size_t n_elems = (size_t)N * nd->size;
	int oom = 0, store = 0;
	/* the ops that can store their input gradient ask for it so */
	const int stores =
	    nd->kind == NB_NODE_CONV2D ||
	    (nd->kind == NB_NODE_BATCHNORM && net->training && !net->reduce);
	float *dx = stores ? input_grad_store(net, nd, 0, &oom, &store)
			   : input_grad(net, nd, 0, &oom);
	if (oom)
		goto oom;
	switch (nd->kind) {
	case NB_NODE_INPUT:
		return 0;
	case NB_NODE_CONV2D: {
		nb_conv2d_shape s = nd->conv;
		s.N = N;
		nb_conv_pre pre;
		const float *xb = pre_input(net, nd, &pre);
		nb_node *bn = xb ? &net->nodes[nd->pre_bn] : NULL;
		if (bn && dx) { /* its backward's first pass with din */
			pre.mean = bn->save_mean;
			pre.sums = bn->gsums;
		}
		int rc =
		    xb ? nb_conv2d_backward_pre(
			     dx, pgrad(net, nd->p_weight),
			     pgrad(net, nd->p_bias), dy, xb,
			     pdata(net, nd->p_weight), &s, &net->ws, store, &pre)
		    : (store ? nb_conv2d_backward_store : nb_conv2d_backward)(
			  dx, pgrad(net, nd->p_weight), pgrad(net, nd->p_bias),
			  dy, x, pdata(net, nd->p_weight), &s, &net->ws);
		if (rc < 0)
			goto oom;
		if (bn)
			bn->sums_live = rc == 1;
		return 0;
	}
	case NB_NODE_LINEAR:
		nb_linear_backward(dx, pgrad(net, nd->p_weight),
				   pgrad(net, nd->p_bias), dy, x,
				   pdata(net, nd->p_weight), N, (int)src->size,
				   nd->c);
		return 0;
	case NB_NODE_BATCHNORM: {
		int L = nd->h * nd->w;
		if (net->training && net->reduce) {
			int rc = nb_batchnorm_backward_train_sync(
				dx, pgrad(net, nd->p_weight),
				pgrad(net, nd->p_bias), dy, x, nd->save_mean,
				nd->save_invstd, pdata(net, nd->p_weight), N,
				nd->c, L, net->reduce, net->reduce_ctx);
			if (rc < 0)
				return nb_errorf(err, rc,
						 "batchnorm %s: the group's sums failed",
						 nd->name);
		} else if (net->training && nd->grad_relu && nd->sums_live) {
			nb_batchnorm_backward_train_sums(
			    dx, pgrad(net, nd->p_weight), pgrad(net, nd->p_bias),
			    nd->grad, x, nd->save_mean, nd->save_invstd,
			    pdata(net, nd->p_weight), N, nd->c, L, store,
			    nd->gsums);
			nd->sums_live = 0;
		} else if (net->training && nd->grad_relu)
			(nd->fuse_act == FUSE_RELU
			     ? nb_batchnorm_relu_backward_train
			     : nb_batchnorm_relu6_backward_train)(
				dx, pgrad(net, nd->p_weight),
				pgrad(net, nd->p_bias), nd->grad, x,
				nd->save_mean, nd->save_invstd, nd->save_affine,
				pdata(net, nd->p_weight), N, nd->c, L, store);
		else if (net->training)
			(store ? nb_batchnorm_backward_train_store
			       : nb_batchnorm_backward_train)(
				dx, pgrad(net, nd->p_weight),
				pgrad(net, nd->p_bias), dy, x, nd->save_mean,
				nd->save_invstd, pdata(net, nd->p_weight), N,
				nd->c, L);
		else
			nb_batchnorm_backward_eval(
				dx, pgrad(net, nd->p_weight),
				pgrad(net, nd->p_bias), dy, x,
				pdata(net, nd->p_weight),
				pdata(net, nd->p_rmean), pdata(net, nd->p_rvar),
				N, nd->c, L, nd->eps);
		return 0;
	}
	/* ReLU and ReLU6 read their own output (it may share the input's
	 * buffer): out > 0 exactly where in > 0, out in (0,6) exactly where
	 * in is */
	case NB_NODE_RELU:
		if (dx)
			nb_relu_backward(dx, dy, nd->out, n_elems);
		return 0;
	case NB_NODE_RELU6:
		if (dx)
			nb_relu6_backward(dx, dy, nd->out, n_elems);
		return 0;
	case NB_NODE_LEAKY_RELU:
		if (dx)
			nb_leaky_relu_backward(dx, dy, x, n_elems, nd->slope);
		return 0;
	case NB_NODE_TANH:
		if (dx)
			nb_tanh_backward(dx, dy, nd->out, n_elems);
		return 0;
	case NB_NODE_MAXPOOL:
		if (dx)
			nb_maxpool2d_backward(dx, dy, nd->argmax, N, src->c,
					      src->h, src->w, nd->h, nd->w);
		return 0;
	case NB_NODE_AVGPOOL:
		if (dx)
			nb_avgpool2d_backward(dx, dy, N, src->c, src->h, src->w,
					      nd->k, nd->stride, nd->pad);
		return 0;
	case NB_NODE_ADAPTIVE_AVGPOOL:
		if (dx)
			nb_adaptive_avgpool2d_backward(dx, dy, N, src->c,
						       src->h, src->w, nd->h,
						       nd->w);
		return 0;
	case NB_NODE_ADD: {
		float *db = input_grad(net, nd, 1, &oom);
		if (oom)
			goto oom;
		nb_add_backward(dx, db, dy, n_elems);
		return 0;
	}
	case NB_NODE_CONCAT: {
		float *dins[NB_MAX_INPUTS];
		int cs[NB_MAX_INPUTS];
		for (int i = 0; i < nd->n_in; i++) {
			dins[i] = i == 0 ? dx : input_grad(net, nd, i, &oom);
			if (oom)
				goto oom;
			cs[i] = net->nodes[nd->in[i]].c;
		}
		nb_concat_backward(dins, dy, cs, nd->n_in, N, nd->h * nd->w);
		return 0;
	}
	case NB_NODE_SLICE:
		if (dx)
			nb_channel_slice_backward(dx, dy, N, src->c,
						  nd->h * nd->w, nd->start,
						  nd->len);
		return 0;
	case NB_NODE_SHUFFLE:
		if (dx)
			nb_channel_shuffle_backward(dx, dy, N, nd->c,
						    nd->h * nd->w, nd->groups);
		return 0;
	case NB_NODE_UPSAMPLE:
		if (dx)
			nb_upsample_nearest_backward(dx, dy, N, src->c, src->h,
						     src->w, nd->scale);
		return 0;
	case NB_NODE_FLATTEN:
	case NB_NODE_RESHAPE:
		if (dx)
			for (size_t i = 0; i < n_elems; i++)
				dx[i] += dy[i];
		return 0;
	case NB_NODE_DROPOUT:
		if (!dx)
			return 0;
		if (net->training && nd->p > 0)
			nb_dropout_backward(dx, dy, nd->mask, n_elems);
		else
			for (size_t i = 0; i < n_elems; i++)
				dx[i] += dy[i];
		return 0;
	}
	return nb_errorf(err, NB_EINVAL, "unknown node kind %d", nd->kind);
oom:
	return nb_errorf(err, NB_ENOMEM, "out of memory in backward of %s",
			 nd->name[0] ? nd->name : "a node");
}

/* nd's gradient buffer becomes to's (whose gradient nothing has written
 * yet), as its gradient as it is */
static void hand_over_grad(nb_net *net, nb_node *nd, nb_node *to)
{
	grad_release(net, to); /* an old buffer it may hold, not live */
	to->grad = nd->grad;
	to->grad_cap = nd->grad_cap;
	to->grad_live = 1;
	to->grad_relu = 0;
	nd->grad = NULL;
	nd->grad_live = 0;
}

/*
 * The backward of a ReLU or ReLU6 fused with its BatchNorm input
 * (fuse_act): when nothing else has written the BatchNorm's gradient, that
 * gradient would be 0 + (out > 0 ? dy : 0) (ReLU6: 0 < out < 6), so the
 * activation's own gradient buffer is masked in
 * place and handed over as the BatchNorm's, saving the zeroing and a pass
 * (same bits: + 0.0f turns -0 into +0 as the addition to zero does).
 * When the BatchNorm's training forward kept its normalisation
 * (affine_live), the buffer goes over unmasked and the BatchNorm's
 * backward masks it in its first pass (grad_relu): that saves this
 * pass's reading of the ReLU's output and one pass over the gradient. Returns 1 if it did, 0 if the plain backward must run.
 */
static int relu_hand_over(nb_net *net, nb_node *nd, int N)
{
	nb_node *bn = &net->nodes[nd->in[0]];
	if (!bn->needs_grad || bn->grad_live)
		return 0;
	if (net->training && !net->reduce && bn->affine_live) {
		hand_over_grad(net, nd, bn);
		bn->grad_relu = 1;
		return 1;
	}
	float *g = nd->grad;
	const float *y = nd->out;
	const size_t n = (size_t)N * nd->size;
	if (nd->kind == NB_NODE_RELU6) {
#pragma omp parallel for simd schedule(static) if (n >= 65536)
		for (size_t i = 0; i < n; i++)
			g[i] = y[i] > 0.0f && y[i] < 6.0f ? g[i] + 0.0f : 0.0f;
	} else {
#pragma omp parallel for simd schedule(static) if (n >= 65536)
		for (size_t i = 0; i < n; i++)
			g[i] = y[i] > 0.0f ? g[i] + 0.0f : 0.0f;
	}
	hand_over_grad(net, nd, bn);
	return 1;
}

/*
 * Whether input b of add nd may read the buffer its other input o takes
 * (add_hand_over) as its own gradient, read-only, instead of a copy: b is
 * a convolution (its backward reads its gradient and writes only its
 * input's and its weights'), the add is its only consumer, neither
 * gradient is written yet, and o and every other consumer of o come
 * before b, so that nothing writes, hands over or pools o's gradient
 * until b's backward is done (the backward runs the nodes in reverse
 * order). A pre-activation block's second convolution reads the block's
 * gradient where its shortcut's input takes it (the copy was 1.8 % of
 * preresnet20's training step).
 */
static int can_borrow(const nb_net *net, const nb_node *nd, int b)
{
	const int ib = nd->in[b], io = nd->in[1 - b];
	const nb_node *B = &net->nodes[ib], *O = &net->nodes[io];
	if (B->kind != NB_NODE_CONV2D || io > ib || !B->needs_grad ||
	    B->grad_live || !O->needs_grad || O->grad_live ||
	    sole_consumer(net, ib) != nd - net->nodes)
		return 0;
	for (int k = ib; k < net->n_nodes; k++)
		for (int m = 0; m < net->nodes[k].n_in; m++)
			if (net->nodes[k].in[m] == io && &net->nodes[k] != nd)
				return 0;
	return 1;
}

/*
 * The backward of an add whose input has no gradient written yet: dy is
 * that input's gradient as it is, so the add's buffer is handed over (as
 * in relu_hand_over) and only the other input's gradient gets dy added or
 * copied. Returns 1 if it did, 0 if the plain backward must run, NB_ENOMEM.
 */
static int add_hand_over(nb_net *net, nb_node *nd, int N)
{
	if (nd->in[0] == nd->in[1])
		return 0;
	for (int b = 0; b < 2; b++)
		if (can_borrow(net, nd, b)) {
			nb_node *own = &net->nodes[nd->in[1 - b]];
			nb_node *brw = &net->nodes[nd->in[b]];
			hand_over_grad(net, nd, own);
			grad_release(net, brw); /* an old buffer, not live */
			brw->grad = own->grad;
			brw->grad_cap = own->grad_cap;
			brw->grad_live = brw->grad_borrowed = 1;
			return 1;
		}
	int j = -1; /* the input that takes the buffer */
	for (int i = 0; i < 2 && j < 0; i++) {
		const nb_node *in = &net->nodes[nd->in[i]];
		if (in->needs_grad && !in->grad_live)
			j = i;
	}
	if (j < 0)
		return 0;
	const float *dy = nd->grad;
	const size_t n = (size_t)N * nd->size;
	int oom = 0, store = 0;
	float *d = input_grad_store(net, nd, 1 - j, &oom, &store);
	if (oom)
		return NB_ENOMEM;
	if (d && store) {
#pragma omp parallel for simd schedule(static) if (n >= 65536)
		for (size_t i = 0; i < n; i++)
			d[i] = dy[i];
	} else if (d) {
		nb_add_backward(d, NULL, dy, n);
	}
	hand_over_grad(net, nd, &net->nodes[nd->in[j]]);
	return 1;
}

int nb_net_backward(nb_net *net, float *dx, char *err)
{
	if (net->cur_n == 0)
		return nb_errorf(err, NB_EINVAL, "backward before forward");
	if (net->infer_only)
		return nb_errorf(err, NB_EINVAL,
				 "backward after an inference-only forward");
	int N = net->cur_n;
	/* Which nodes need a gradient: the input if dx is asked for, every
	 * node with a trainable parameter, and everything downstream. */
	net->nodes[0].needs_grad = dx != NULL;
	for (int i = 1; i < net->n_nodes; i++) {
		nb_node *nd = &net->nodes[i];
		int need = has_trainable(net, nd);
		for (int j = 0; j < nd->n_in && !need; j++)
			need = net->nodes[nd->in[j]].needs_grad;
		nd->needs_grad = need;
	}
	for (int i = net->n_nodes - 1; i >= 1; i--) {
		nb_node *nd = &net->nodes[i];
		if (!nd->grad_live || !nd->needs_grad)
			continue;
		if (nd->kind == NB_NODE_ADD) {
			int h = add_hand_over(net, nd, N);
			if (h < 0)
				return nb_errorf(err, h,
						 "out of memory in backward of %s",
						 nd->name[0] ? nd->name
							     : "a node");
			if (h)
				continue;
		}
		if (nd->fused && relu_hand_over(net, nd, N))
			continue;
		int rc = node_backward(net, nd, N, err);
		if (rc < 0)
			return rc;
		grad_release(net, nd);
	}
	if (dx) {
		nb_node *in = &net->nodes[0];
		size_t bytes = (size_t)N * in->size * sizeof(float);
		if (in->grad_live)
			memcpy(dx, in->grad, bytes);
		else
			memset(dx, 0, bytes);
	}
	return 0;
}

void nb_net_set_reduce(nb_net *net, nb_sum_d_fn fn, void *ctx)
{
	net->reduce = fn;
	net->reduce_ctx = ctx;
}
