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

#include "bag.h"
#include "data.h"
#include "error.h"
#include "loss.h"
#include "net.h"
#include "train.h"

#define NB_PLUGIN_ABI_VERSION 3
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

/* ---- attacks ----------------------------------------------------------------
 * Access levels. An attack declares what it needs; the core hands out that
 * and nothing more:
 *  - NB_ACCESS_OUTPUTS: nb_teacher_query, the teacher's released outputs
 *    (after its defence's release transform). Every attack has it.
 *  - NB_ACCESS_GRADIENTS, NB_ACCESS_FEATURES, NB_ACCESS_BN_STATS: any of
 *    them is white-box access: nb_teacher_network returns the frozen
 *    network (evaluation mode), through which the attack may backpropagate
 *    (nb_net_backward with dx), read its taps, or read its BatchNorm
 *    running statistics. The network's raw outputs are not passed through
 *    the release transform: whoever holds the weights can compute them.
 *    Without these bits nb_teacher_network returns NULL.
 *  - NB_ACCESS_TRAIN_DATA: env->train is the training set, and the core
 *    trains the student on it. Without it the attack is data-free:
 *    env->train is NULL, it must have synth (and plan), and the core trains
 *    the student on the batches synth makes. No attack gets the test set:
 *    the core evaluates.
 * The loader refuses an attack whose hooks do not fit its declaration.
 * This is the core's contract, not a sandbox: a plugin is native code.
 */
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

/*
 * How a data-free attack's student is trained: the core pre-fills it with
 * the suite's student schedule (epochs, batch, optimiser, learning-rate
 * schedule; steps 0) and plan may change any of it. Every epoch is `steps`
 * synthetic batches of `batch` samples, then a test pass.
 */
typedef struct nb_synth_plan {
	int steps;             /* synthetic batches per epoch: required, > 0 */
	int batch;             /* samples per batch, > 0 */
	int epochs;            /* >= 0 */
	nb_optim_config optim; /* the student's optimiser */
	nb_schedule sched;     /* its schedule (sched.base_lr = optim.lr) */
} nb_synth_plan;

typedef struct nb_attack_ops {
	unsigned access; /* NB_ACCESS_* bits; OUTPUTS is implied */
	/* Optional. Called once before training; may set *state. */
	int (*init)(const void *opts, const nb_attack_env *env, void **state,
		    char *err);
	/* Required. The student's loss of one training batch, with the
	 * core's training loop (ctx is the state): a batch of the training
	 * set, or (data-free) the batch synth just made, whose labels may be
	 * -1. */
	nb_loss_hook loss;
	/* Optional. Frees the state. */
	void (*fini)(void *state);
	/*
	 * Data-free attacks (no NB_ACCESS_TRAIN_DATA): both required (and
	 * only used then).
	 *
	 * plan: called once after init, before training, with the suite's
	 * student schedule pre-filled (see nb_synth_plan).
	 *
	 * synth: called once per training step, before the student's
	 * forward and the loss hook, with the step's position (0-based
	 * epoch and step) and n = plan->batch. Fills x (n, c, h, w) with
	 * student inputs, already normalised as the student sees them, and
	 * y (n) with labels in [0, classes) or -1 where it has none (the
	 * loss hook gets both; train_acc counts labelled samples). It may
	 * update its own generator, optimise images against the teacher
	 * (per its access) and run env->student forward or backward, but
	 * must leave the student's weights and training mode as it found
	 * them (the core zeroes gradients before its own backward).
	 */
	int (*plan)(void *state, const nb_attack_env *env, nb_synth_plan *plan,
		    char *err);
	int (*synth)(void *state, const nb_attack_env *env, int epoch,
		     int step, int n, float *x, int *y, char *err);
	/*
	 * Optional, together: the attack's own resumable state (generator
	 * weights, its optimiser moments, its random streams, an image pool;
	 * see bag.h). save is called after every epoch, after the student's
	 * step, and puts the state into the bag; the core writes it into the
	 * student's atomic state file. When a killed run resumes, load is
	 * called after init and plan and before the first resumed step, with
	 * a bag of what save put; it must read every entry. A resumed run is
	 * then bit-identical to an uninterrupted one. An attack that keeps
	 * state across steps and has no save/load does not resume exactly.
	 */
	int (*save)(void *state, nb_bag *out, char *err);
	int (*load)(void *state, nb_bag *in, char *err);
	void *reserved[8];
} nb_attack_ops;

/*
 * The access bits as words for reports and --plugin-help, for example
 * "released outputs, training data" or "gradients, features, data-free".
 */
void nb_access_describe(unsigned access, char *buf, size_t len);

/* ---- the descriptor ------------------------------------------------------------ */
typedef struct nb_abi_sizes {
	uint32_t plugin, option, arch_ops, arch_args, teacher_ops, teacher_env;
	uint32_t attack_ops, attack_env, batch, loss_terms, dataset, param;
	uint32_t train_config, train_result, augment, synth_plan;
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
		    sizeof(nb_train_result), sizeof(nb_augment),               \
		    sizeof(nb_synth_plan)                                      \
	}

/* Starts every descriptor: `const nb_plugin nb_plugin_desc = {
 * NB_PLUGIN_HEADER, .kind = ..., ... };` */
#define NB_PLUGIN_HEADER                                                       \
	.abi_version = NB_PLUGIN_ABI_VERSION, .sizes = NB_ABI_SIZES

/* Marks the descriptor as the one exported symbol. */
#define NB_PLUGIN_EXPORT __attribute__((visibility("default")))

#endif
