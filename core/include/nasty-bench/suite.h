/*
 * suite.h - a benchmark suite: which dataset, which teachers, defences,
 * students and attacks, which seeds, how every model is trained, and tiers
 * that scale it all (smoke, small, paper).
 *
 * A suite is an INI file (parsed with inih):
 *
 *   [suite]                 name, description, dataset, data_dir, seeds,
 *                           teachers, students, defenses, attacks,
 *                           default_tier
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
 *                           `suite.students = lenet5-half`)
 *
 * Lists are comma-separated. Precedence, lowest first: built-in defaults,
 * [train], [train.teacher|student], [train.ARCH], then the tier's
 * overrides in the same order. Unknown sections and keys are errors (with
 * the file and line); a plugin's keys are checked against its option table.
 * Keys left unset are reported with the default used.
 */
#ifndef NASTY_BENCH_SUITE_H
#define NASTY_BENCH_SUITE_H

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
	nb_schedule sched; /* base_lr = optim.lr */
	char schedule[NB_SUITE_NAME * 2]; /* as written, for keys and logs */
	int train_limit;                  /* 0 = whole training set */
	int test_limit;                   /* 0 = whole test set */
} nb_train_spec;

/* A strategy or attack with its options filled. */
typedef struct nb_plugin_use {
	const nb_plugin *plugin; /* borrowed from the registry */
	void *opts;              /* owned, filled from the INI and tier */
	char adversary[NB_SUITE_NAME]; /* strategies: adversary arch or "" */
} nb_plugin_use;

typedef struct nb_suite {
	char path[1024];
	char name[NB_SUITE_NAME];
	char description[512];
	char tier[NB_SUITE_NAME]; /* the tier in force ("" = none) */
	char dataset[NB_SUITE_NAME];
	char data_dir[1024]; /* "" = the dataset's default place */
	uint64_t seeds[NB_SUITE_MAX];
	int n_seeds;
	char teachers[NB_SUITE_MAX][NB_SUITE_NAME]; /* architectures */
	int n_teachers;
	char students[NB_SUITE_MAX][NB_SUITE_NAME];
	int n_students;
	nb_plugin_use normal; /* the "normal" strategy, always present */
	nb_plugin_use defenses[NB_SUITE_MAX];
	int n_defenses;
	nb_plugin_use attacks[NB_SUITE_MAX];
	int n_attacks;
	nb_augment aug; /* the dataset's preprocessing */
	/* resolved training specs: per role, and per (role, arch) */
	nb_train_spec train[2];
	struct {
		char arch[NB_SUITE_NAME];
		nb_train_spec spec[2];
	} arch_train[NB_SUITE_MAX];
	int n_arch_train;
} nb_suite;

/*
 * Reads a suite file with the given tier ("" or NULL = the suite's
 * default_tier), resolving strategy and attack names in reg and filling
 * their options. Notes about defaults used go to `notes` (NULL = silent).
 * Every error names the file and line.
 */
int nb_suite_load(const char *path, const char *tier, nb_registry *reg,
		  nb_suite *s, FILE *notes, char *err);
void nb_suite_free(nb_suite *s);

/* The training spec of arch in role. */
const nb_train_spec *nb_suite_train_for(const nb_suite *s, const char *arch,
					enum nb_role role);

/* Where suites/NAME.ini is found: $NASTY_BENCH_SUITES, the source tree's
 * suites/ when running uninstalled, $(pkgdatadir)/suites. A name with a
 * '/' or ending in .ini is taken as a path. Writes the path into out. */
int nb_suite_find(const char *name, char *out, size_t len, char *err);

#endif
