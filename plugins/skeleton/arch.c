/*
 * arch.c - a skeleton architecture plugin: copy it to start your own.
 *
 * Build it out of tree against an installed nasty-bench:
 *
 *     cc -shared -fPIC $(pkg-config --cflags nasty-bench) arch.c -o my-arch.so
 *
 * and use it with `nasty-bench --plugin-dir DIR ...` (DIR holding my-arch.so,
 * writable by you only). The core's symbols (nb_net_*, nb_errorf) resolve
 * from the running program, so no -l flag is needed.
 *
 * It builds a small multi-layer perceptron: flatten -> linear(hidden) ->
 * activation -> dropout -> linear(classes). Its options show each option
 * type; the core fills `struct mlp_opts` from a suite section or from
 * `--opt hidden=64,act=tanh` before calling build.
 */
#include <stddef.h>
#include <string.h>

#include <nasty-bench/plugin.h>

/* The options struct: one field per entry of the table below. */
struct mlp_opts {
	int hidden;                      /* NB_OPT_INT */
	double dropout;                  /* NB_OPT_FLOAT (always double) */
	int bias;                        /* NB_OPT_BOOL (int 0/1) */
	char act[NB_OPT_STRING_LEN];     /* NB_OPT_STRING */
};

static const nb_option options[] = {
	{"hidden", NB_OPT_INT, offsetof(struct mlp_opts, hidden), "128",
	 "width of the hidden layer", 1, 65536},
	{"dropout", NB_OPT_FLOAT, offsetof(struct mlp_opts, dropout), "0",
	 "dropout probability after the activation", 0, 1},
	{"bias", NB_OPT_BOOL, offsetof(struct mlp_opts, bias), "true",
	 "linear layers have biases", 0, -1},
	{"act", NB_OPT_STRING, offsetof(struct mlp_opts, act), "relu",
	 "activation: relu or tanh", 0, -1},
	{NULL, 0, 0, NULL, NULL, 0, 0}};

/*
 * build: called by the core for every model of this architecture, with the
 * input shape and class count of the run and the filled options. Return an
 * unfinalised network in *out (the core finalises and initialises it), or a
 * negative code with a one-line message in err and *out left NULL.
 */
static int build(const nb_arch_args *a, nb_net **out, char *err)
{
	const struct mlp_opts *o = a->opts;
	*out = NULL;
	int relu = !strcmp(o->act, "relu");
	if (!relu && strcmp(o->act, "tanh"))
		return nb_errorf(err, NB_EINVAL,
				 "skeleton-arch: act '%s' is not relu or tanh",
				 o->act);
	nb_net *net = nb_net_new(a->in_c, a->in_h, a->in_w);
	if (!net)
		return nb_errorf(err, NB_ENOMEM, "out of memory");
	int x = nb_net_add_flatten(net, 0, err);
	if (x >= 0)
		x = nb_net_add_linear(net, x, "fc1", o->hidden, o->bias,
				      NB_INIT_DEFAULT, err);
	if (x >= 0)
		x = relu ? nb_net_add_relu(net, x, err)
			 : nb_net_add_tanh(net, x, err);
	if (x >= 0 && o->dropout > 0)
		x = nb_net_add_dropout(net, x, (float)o->dropout, err);
	/* name the penultimate features for feature-based attacks */
	if (x >= 0 && nb_net_add_tap(net, x, "features", err) < 0)
		x = NB_EINVAL;
	if (x >= 0)
		x = nb_net_add_linear(net, x, "fc2", a->classes, o->bias,
				      NB_INIT_DEFAULT, err);
	if (x < 0) {
		nb_net_free(net);
		return x;
	}
	*out = net;
	return 0;
}

static const nb_arch_ops ops = {.build = build};

/* The one exported symbol. NB_PLUGIN_HEADER stamps the ABI version and the
 * struct sizes this file was compiled with; the loader checks them. */
NB_PLUGIN_EXPORT const nb_plugin nb_plugin_desc = {
	NB_PLUGIN_HEADER,
	.kind = NB_PLUGIN_ARCH,
	.name = "skeleton-arch",
	.summary = "skeleton: a two-layer perceptron (copy this to start)",
	.options = options,
	.opts_size = sizeof(struct mlp_opts),
	.arch = &ops,
};
