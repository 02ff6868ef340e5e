/*
 * suite.h - a benchmark suite: which dataset, which teachers, defences,
 * students and attacks, which seeds, how every model is trained, and tiers
 * that scale it all (smoke, small, paper).
 *
 * A suite is an INI file (parsed with inih; `;` or `#` starts a comment
 * line, ` ;` an inline comment; a line that starts with white space
 * continues the previous value, joined with one space; at most 197
 * characters a line):
 *
 *   [suite]                 name, description, dataset, data_dir, seeds,
 *                           teachers, students, defenses, attacks,
 *                           default_tier, synthetic, synthetic_train,
 *                           synthetic_test, data_parallel
 *   [train]                 training defaults of every model: epochs, batch,
 *                           eval_batch, optim, lr, momentum, wd, nesterov,
 *                           schedule, train_limit, test_limit
 *   [train.teacher]         the same keys, for teachers only
 *   [train.student]         the same keys, for students only
 *   [train.ARCH]            the same keys, for one architecture (e.g. cnn
 *                           trains with Adam in the paper)
 *   [teacher.STRATEGY]      options of a teacher-strategy plugin ("normal",
 *                           "nasty", ...), plus the core key `adversary`
 *                           (the architecture of the frozen normal teacher
 *                           a strategy that needs one trains against;
 *                           default: the teacher's own)
 *   [attack.NAME]           options of an attack plugin
 *   [tier.NAME]             overrides: `SECTION.KEY = VALUE` for any key
 *                           above (e.g. `train.epochs = 1`,
 *                           `teacher.nasty.omega = 0.01`,
 *                           `suite.students = lenet5-half`); an empty tier
 *                           section is a tier without overrides
 *
 * Values:
 *  - lists are comma-separated, white space around items trimmed, no
 *    duplicates, at most NB_SUITE_MAX items; an empty value is an empty
 *    list (defenses, attacks);
 *  - dataset: fashion-mnist, mnist, cifar10, cifar100, cifar100-coarse,
 *    tiny-imagenet; the preprocessing comes from it (nb_dataset_preset);
 *  - data_dir: as written (relative to the working folder);
 *  - seeds: non-negative integers (default 0);
 *  - teachers, students: architecture plugins (names or aliases, stored as
 *    the plugin's name); students may also hold `self`: each teacher's own
 *    architecture (the paper's "teacher self" column), see students_self;
 *  - defenses: teacher-strategy plugins other than `normal`, which is
 *    implicit (every teacher is trained normally first); attacks: attack
 *    plugins other than `scratch`, the implicit student baseline;
 *  - synthetic: idx | cifar10 | cifar100: the runner writes a synthetic
 *    dataset of that format (synthetic_train / synthetic_test samples,
 *    default 2000 / 500) with nb_synth_write and uses it as data_dir;
 *    the format must match the dataset (idx: mnist or fashion-mnist);
 *  - optim: sgd | adam. The section (or tier layer) that sets optim resets
 *    the optimiser: lr, momentum, wd and nesterov take that optimiser's
 *    defaults (sgd: lr 0.1, momentum 0.9, wd 5e-4; adam: lr 1e-3, wd 0)
 *    unless set in the same layer or a later one. momentum and nesterov
 *    are errors with adam.
 *  - schedule: constant | step:M1,M2,...:GAMMA (MultiStepLR: milestones
 *    strictly increasing epochs) | cosine[:ETA_MIN] (t_max = epochs);
 *  - epochs >= 1, batch >= 1, eval_batch >= 1, train_limit and test_limit
 *    >= 0 (0 = the whole split); lr > 0; 0 <= momentum < 1; 0 <= wd <= 1;
 *    nesterov true/false.
 * Built-in defaults: epochs 10, batch 128, eval_batch 500, optim sgd,
 * schedule constant, nesterov false, limits 0.
 *
 * Precedence, lowest first: built-in defaults, [train],
 * [train.teacher|student], [train.ARCH], then the tier's overrides in the
 * same order (so a tier's `train.epochs` beats a file's [train.ARCH]
 * epochs). Unknown sections and keys are errors (with the file and line,
 * and the allowed names), in every tier; so are bad [suite] and [train...]
 * values in every tier, and bad plugin option values in the file and the
 * tier in force.
 * Keys left unset are reported once, with the default used.
 */
#ifndef NASTY_BENCH_SUITE_H
#define NASTY_BENCH_SUITE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "data.h"
#include "optim.h"
#include "registry.h"

#define NB_SUITE_MAX 32 /* entries per list */
#define NB_SUITE_NAME 64

enum nb_role { NB_ROLE_TEACHER = 0, NB_ROLE_STUDENT = 1 };

/* How one model is trained. */
typedef struct nb_train_spec {
	int epochs;
	int batch;
	int eval_batch;
	nb_optim_config optim;
	nb_schedule sched;		  /* base_lr = optim.lr */
	char schedule[NB_SUITE_NAME * 2]; /* as written, for keys and logs */
	int train_limit;		  /* 0 = whole training set */
	int test_limit;			  /* 0 = whole test set */
} nb_train_spec;

/* A strategy or attack with its options filled. */
typedef struct nb_plugin_use {
	const nb_plugin *plugin;       /* borrowed from the registry */
	void *opts;		       /* owned, filled from the INI and tier */
	char adversary[NB_SUITE_NAME]; /* strategies: adversary arch or "" */
} nb_plugin_use;

typedef struct nb_suite {
	char path[1024];
	char name[NB_SUITE_NAME]; /* default: the file name without .ini */
	char description[512];
	char tier[NB_SUITE_NAME]; /* the tier in force ("" = none) */
	char tiers[NB_SUITE_MAX][NB_SUITE_NAME]; /* every tier of the file */
	int n_tiers;
	char dataset[NB_SUITE_NAME];
	char data_dir[1024]; /* "" = the dataset's default place */
	char synthetic[16];  /* "", "idx", "cifar10" or "cifar100" */
	int synthetic_train, synthetic_test; /* sample counts */
	int data_parallel; /* under mpirun: largest group training one job
			      (0 = none); --data-parallel overrides */
	uint64_t seeds[NB_SUITE_MAX];
	int n_seeds;
	char teachers[NB_SUITE_MAX][NB_SUITE_NAME]; /* architectures */
	int n_teachers;
	char students[NB_SUITE_MAX][NB_SUITE_NAME];
	int n_students;
	int students_self;    /* 1: each teacher's own arch is a student too */
	nb_plugin_use normal; /* the "normal" strategy, always present */
	nb_plugin_use defenses[NB_SUITE_MAX];
	int n_defenses;
	nb_plugin_use attacks[NB_SUITE_MAX];
	int n_attacks;
	nb_augment aug; /* the dataset's preprocessing */
	/* resolved training specs: per role, and per (role, arch) for every
	 * teacher, student and adversary architecture */
	nb_train_spec train[2];
	struct {
		char arch[NB_SUITE_NAME];
		nb_train_spec spec[2];
	} arch_train[NB_SUITE_MAX];
	int n_arch_train;
} nb_suite;

/*
 * Reads a suite file with the given tier ("" or NULL = the suite's
 * default_tier, or none when it has none), resolving architecture,
 * strategy and attack names in reg (which must stay loaded while s is
 * used) and filling their options. Notes about defaults used go to
 * `notes`, one line each (NULL = silent). Every error names the file and
 * line. On failure *s is left zeroed. Free with nb_suite_free.
 */
int nb_suite_load(const char *path, const char *tier, nb_registry *reg,
		  nb_suite *s, FILE *notes, char *err);
/* Frees the plugin options and zeroes *s. Safe on a zeroed suite. */
void nb_suite_free(nb_suite *s);

/* The training spec of arch (the plugin's name, as stored in the suite)
 * in role: its own when arch is one of the suite's teachers, students or
 * adversaries, else the role's. */
const nb_train_spec *nb_suite_train_for(const nb_suite *s, const char *arch,
					enum nb_role role);

/* Where suites/NAME.ini is found: each folder of $NASTY_BENCH_SUITES
 * (colon-separated), the source tree's suites/ when running uninstalled,
 * $(pkgdatadir)/suites. A name with a '/' or ending in .ini is taken as a
 * path. Writes the path into out (len bytes). An unknown name is an error
 * naming where it looked and the suites found there. */
int nb_suite_find(const char *name, char *out, size_t len, char *err);

/* The preprocessing of a named dataset (suite.c's table; unknown names
 * get no augmentation, mean 0 and std 1):
 *  - fashion-mnist, mnist: zero-pad 28 -> 32 (LeNet-5, DAFL), mean/std
 *    (0.2860/0.3530 and 0.1307/0.3081);
 *  - cifar10, cifar100, cifar100-coarse: random crop 32 pad 4, flip, the
 *    CIFAR-10 mean/std for all three (as the paper's code does);
 *  - tiny-imagenet: random rotation of up to 20 degrees (torchvision's
 *    RandomRotation(20), nearest neighbour, zero fill), flip, no crop,
 *    mean (0.4802, 0.4481, 0.3975) std (0.2302, 0.2265, 0.2262). */
void nb_dataset_preset(const char *dataset, nb_augment *aug);

#endif
