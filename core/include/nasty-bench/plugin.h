/*
 * plugin.h - the plugin ABI: what a shared object must export to add an
 * architecture, a teacher strategy (a defence) or an attack.
 *
 * A plugin is a shared object that exports exactly one symbol,
 *
 *     const nb_plugin nb_plugin_desc = { NB_PLUGIN_HEADER, .kind = ..., ... };
 *
 * built against the installed headers:
 *
 *     cc -shared -fPIC $(pkg-config --cflags nasty-bench) my.c -o my.so \
 *        $(pkg-config --libs nasty-bench)
 *
 * NB_PLUGIN_HEADER records the ABI version and the sizes of the core's
 * public structs as the plugin saw them when it was compiled; the loader
 * refuses a plugin whose version or sizes differ from its own, with a
 * message saying what to rebuild. Rules for changing this file: new hooks
 * and fields are only appended (into the reserved slots first); anything
 * else bumps NB_PLUGIN_ABI_VERSION.
 *
 * Ownership: descriptors, option tables and strings are the plugin's static
 * data. Networks, datasets and teachers passed to hooks are the core's and
 * are borrowed for the duration of the call (or, for init, until fini).
 * State a plugin allocates in init is its own and is freed in its fini.
 * Hooks return 0 on success or a negative NB_E* code with a one-line
 * message in err (NB_ERR_LEN bytes); they never print or exit.
 */
#ifndef NASTY_BENCH_PLUGIN_H
#define NASTY_BENCH_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "data.h"
#include "error.h"
#include "loss.h"
#include "net.h"
#include "train.h"

#define NB_PLUGIN_ABI_VERSION 2
/* The one symbol every plugin exports. */
#define NB_PLUGIN_SYMBOL "nb_plugin_desc"

enum nb_plugin_kind {
	NB_PLUGIN_ARCH = 1,    /* builds a network */
	NB_PLUGIN_TEACHER = 2, /* trains a teacher: a defence strategy */
	NB_PLUGIN_ATTACK = 3   /* trains a student from a teacher */
};

/* ---- options ---------------------------------------------------------------
 * A plugin describes its options struct with a table; the core fills the
 * struct from the suite's INI section or command-line key=value pairs
 * (unknown keys and bad values are errors) and passes it to the hooks.
 */
enum nb_opt_type {
	NB_OPT_INT = 1,    /* int */
	NB_OPT_FLOAT = 2,  /* double */
	NB_OPT_BOOL = 3,   /* int, 0 or 1; accepts true/false/yes/no/on/off/1/0 */
	NB_OPT_STRING = 4  /* char[NB_OPT_STRING_LEN] */
};

#define NB_OPT_STRING_LEN 128

typedef struct nb_option {
	const char *name;     /* key, [a-z0-9_-] */
	enum nb_opt_type type;
	size_t offset;        /* offsetof(struct my_opts, field) */
	const char *def;      /* default, as text; parsed like a user value */
	const char *help;     /* one line */
	double min, max;      /* inclusive range for INT and FLOAT; min > max
				 means unbounded */
} nb_option;

/* ---- architectures -------------------------------------------------------- */
typedef struct nb_arch_args {
	int in_c, in_h, in_w; /* input shape per sample */
	int classes;
	const void *opts;     /* the plugin's options struct, filled */
} nb_arch_args;

typedef struct nb_arch_ops {
	/*
	 * Required. Builds the network for a->in_* and a->classes into *out,
	 * unfinalised (the core finalises it with the run's seed). Node names
	 * must be the reference implementation's state_dict module paths. The
	 * builder names the feature taps (nb_net_add_tap): "stage1".."stageN"
	 * for stage outputs and "features" for the penultimate features.
	 * Returns NB_EINVAL with a message when the input shape or class count
	 * does not fit the architecture.
	 */
	int (*build)(const nb_arch_args *a, nb_net **out, char *err);
	/* Optional. The input shape the architecture was designed for (used
	 * by `describe` and `bench` when none is given); 0 = 3x32x32. */
	int default_c, default_h, default_w;
	void *reserved[8];
} nb_arch_ops;

/* ---- teachers ---------------------------------------------------------------
 * A teacher as an attacker sees it, provided by the core. What an attack may
 * do with it is what it declared in nb_attack_ops.access; the core hands out
 * nothing more.
 */
typedef struct nb_teacher nb_teacher;

/* Released outputs (logits after the defence's release transform) for n
 * inputs x (n,c,h,w) into out (n,classes). Always allowed. */
int nb_teacher_query(nb_teacher *t, const float *x, int n, float *out,
		     char *err);
/* The teacher network itself (frozen, evaluation mode) when the attack
 * declared white-box, feature or BatchNorm-statistics access; else NULL. */
nb_net *nb_teacher_network(nb_teacher *t);
int nb_teacher_classes(const nb_teacher *t);

typedef struct nb_teacher_env {
	nb_net *net;            /* the teacher being trained (finalised) */
	nb_net *adversary;      /* the frozen dependency model, evaluation
				   mode, or NULL when none is needed */
	const nb_dataset *train;
	int classes;
	uint64_t seed;
} nb_teacher_env;

typedef struct nb_teacher_ops {
	/* 1: the strategy needs an adversary, by default the normally
	 * trained teacher of the same architecture, which the core trains
	 * (or reuses) first and passes frozen in env->adversary. */
	int needs_adversary;
	/* Optional. Called once before training; may set *state. */
	int (*init)(const void *opts, const nb_teacher_env *env, void **state,
		    char *err);
	/* Required. The training loss of one batch (see nb_loss_hook in
	 * train.h; ctx is the state from init). */
	nb_loss_hook loss;
	/* Optional. Transforms released logits (n, classes) in place before
	 * an attacker sees them (a post-hoc defence such as top-k). */
	int (*release)(void *state, float *logits, int n, int classes,
		       char *err);
	/* Optional. Frees the state. */
	void (*fini)(void *state);
	void *reserved[8];
} nb_teacher_ops;

/* ---- attacks --------------------------------------------------------------- */
enum nb_access {
	NB_ACCESS_OUTPUTS = 1u << 0,    /* released outputs only (black box) */
	NB_ACCESS_GRADIENTS = 1u << 1,  /* white box: gradients through it */
	NB_ACCESS_FEATURES = 1u << 2,   /* intermediate features (taps) */
	NB_ACCESS_BN_STATS = 1u << 3,   /* BatchNorm running statistics */
	NB_ACCESS_TRAIN_DATA = 1u << 4  /* the training set (else data-free) */
};

typedef struct nb_attack_env {
	nb_net *student;        /* finalised, to be trained */
	nb_teacher *teacher;    /* the attacked teacher */
	const nb_dataset *train; /* NULL unless NB_ACCESS_TRAIN_DATA */
	const nb_train_config *cfg; /* the suite's student schedule */
	int classes;
	uint64_t seed;
} nb_attack_env;

typedef struct nb_attack_ops {
	unsigned access; /* NB_ACCESS_* bits */
	/* Optional. Called once before training; may set *state. */
	int (*init)(const void *opts, const nb_attack_env *env, void **state,
		    char *err);
	/* One of loss or run is required. loss: the student's loss of one
	 * training batch, with the core's training loop (ctx is the state).
	 * run: the attack owns its loop (data-free attacks) and fills res. */
	nb_loss_hook loss;
	int (*run)(void *state, const nb_attack_env *env, nb_train_result *res,
		   char *err);
	/* Optional. Frees the state. */
	void (*fini)(void *state);
	void *reserved[8];
} nb_attack_ops;

/* ---- the descriptor ------------------------------------------------------------ */
typedef struct nb_abi_sizes {
	uint32_t plugin, option, arch_ops, arch_args, teacher_ops, teacher_env;
	uint32_t attack_ops, attack_env, batch, loss_terms, dataset, param;
	uint32_t train_config, train_result, augment;
} nb_abi_sizes;

typedef struct nb_plugin {
	uint32_t abi_version; /* NB_PLUGIN_ABI_VERSION */
	nb_abi_sizes sizes;   /* NB_ABI_SIZES */
	enum nb_plugin_kind kind;
	const char *name;              /* unique per kind, [a-z0-9_-] */
	const char *const *aliases;    /* NULL-terminated, or NULL */
	const char *summary;           /* one line */
	const nb_option *options;      /* terminated by a NULL name, or NULL */
	size_t opts_size;              /* sizeof the options struct */
	const nb_arch_ops *arch;       /* for NB_PLUGIN_ARCH */
	const nb_teacher_ops *teacher; /* for NB_PLUGIN_TEACHER */
	const nb_attack_ops *attack;   /* for NB_PLUGIN_ATTACK */
	void *reserved[8];
} nb_plugin;

#define NB_ABI_SIZES                                                           \
	{                                                                      \
		sizeof(nb_plugin), sizeof(nb_option), sizeof(nb_arch_ops),     \
		    sizeof(nb_arch_args), sizeof(nb_teacher_ops),              \
		    sizeof(nb_teacher_env), sizeof(nb_attack_ops),             \
		    sizeof(nb_attack_env), sizeof(nb_batch),                   \
		    sizeof(nb_loss_terms), sizeof(nb_dataset),                 \
		    sizeof(nb_param), sizeof(nb_train_config),                 \
		    sizeof(nb_train_result), sizeof(nb_augment)                \
	}

/* Starts every descriptor: `const nb_plugin nb_plugin_desc = {
 * NB_PLUGIN_HEADER, .kind = ..., ... };` */
#define NB_PLUGIN_HEADER                                                       \
	.abi_version = NB_PLUGIN_ABI_VERSION, .sizes = NB_ABI_SIZES

/* Marks the descriptor as the one exported symbol. */
#define NB_PLUGIN_EXPORT __attribute__((visibility("default")))

#endif
