/*
 * broken.c - deliberately broken plugins for the loader's tests; the
 * variant is chosen at build time (one shared object each):
 *   BROKEN_ABI       wrong ABI version
 *   BROKEN_SIZE      a struct size that differs from the core's
 *   BROKEN_HOOK      an arch without its required build hook
 *   BROKEN_NOSYM     exports no descriptor at all
 *   BROKEN_DUP       an arch called "lenet5" (taken by a real plugin)
 *   BROKEN_OPTION    an option whose default does not parse
 *   BROKEN_UNDEF     needs a symbol that nothing provides
 *   BROKEN_DATAFREE  an attack without training-data access that has no
 *                    synth hook (it would be trained on data it may not
 *                    see)
 */
#include <stddef.h>

#include "plugin.h"

static int __attribute__((unused))
build(const nb_arch_args *a, nb_net **out, char *err)
{
	(void)a;
	*out = NULL;
	return nb_errorf(err, NB_EINVAL, "never built");
}

#if defined(BROKEN_UNDEF)
int nb_function_nobody_defines(void);
static int build_undef(const nb_arch_args *a, nb_net **out, char *err)
{
	(void)a;
	(void)err;
	*out = NULL;
	return nb_function_nobody_defines();
}
static const nb_arch_ops __attribute__((unused)) ops = {.build = build_undef};
#elif defined(BROKEN_HOOK)
static const nb_arch_ops __attribute__((unused)) ops = {.build = NULL};
#else
static const nb_arch_ops __attribute__((unused)) ops = {.build = build};
#endif

struct opts {
	int n;
};

#ifdef BROKEN_OPTION
static const nb_option __attribute__((unused)) options[] = {
	{"n", NB_OPT_INT, offsetof(struct opts, n), "twelve", "a count", 0, 99},
	{NULL, 0, 0, NULL, NULL, 0, 0}};
#else
static const nb_option __attribute__((unused)) options[] = {
	{"n", NB_OPT_INT, offsetof(struct opts, n), "12", "a count", 0, 99},
	{NULL, 0, 0, NULL, NULL, 0, 0}};
#endif

#ifdef BROKEN_DATAFREE
static int loss(void *ctx, const nb_batch *b, const float *z, int C,
		float *dz, nb_loss_terms *terms, char *err)
{
	(void)ctx;
	(void)err;
	terms->total = terms->ce = nb_cross_entropy(z, b->y, b->n, C, 0.0f,
						    dz, 1.0f);
	return 0;
}
static const nb_attack_ops attack_ops = {
	.access = NB_ACCESS_OUTPUTS, /* no training data, yet no synth */
	.loss = loss,
};
#endif

#ifndef BROKEN_NOSYM
NB_PLUGIN_EXPORT const nb_plugin nb_plugin_desc = {
#ifdef BROKEN_ABI
	.abi_version = 42, /* never a real version */
	.sizes = NB_ABI_SIZES,
#elif defined(BROKEN_SIZE)
	.abi_version = NB_PLUGIN_ABI_VERSION,
	.sizes = {sizeof(nb_plugin), sizeof(nb_option), sizeof(nb_arch_ops),
		  sizeof(nb_arch_args), sizeof(nb_teacher_ops),
		  sizeof(nb_teacher_env), sizeof(nb_attack_ops),
		  sizeof(nb_attack_env), sizeof(nb_batch),
		  sizeof(nb_loss_terms), sizeof(nb_dataset) + 8,
		  sizeof(nb_param), sizeof(nb_train_config),
		  sizeof(nb_train_result), sizeof(nb_augment),
		  sizeof(nb_synth_plan)},
#else
	NB_PLUGIN_HEADER,
#endif
#ifdef BROKEN_DATAFREE
	.kind = NB_PLUGIN_ATTACK,
	.attack = &attack_ops,
#else
	.kind = NB_PLUGIN_ARCH,
	.arch = &ops,
#endif
#ifdef BROKEN_DUP
	.name = "lenet5",
#else
	.name = "broken",
#endif
	.summary = "a deliberately broken plugin",
	.options = options,
	.opts_size = sizeof(struct opts),
};
#else
/* exports something, just not the descriptor */
NB_PLUGIN_EXPORT const int nb_not_a_descriptor = 1;
#endif
