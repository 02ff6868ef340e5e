/*
 * fuzz_suite.c - the suite INI parser nb_suite_load (core/lib/suite.c).
 *
 * Input layout: the suite file itself (the corpus is the shipped suite
 * files, suites/NAME.ini). It is loaded with its default tier and then,
 * when that works, once with each tier it declares (at most four), so the
 * tier overrides are fuzzed by the file's own content.
 *
 * The plugins come from the build tree, loaded once per process
 * (nb_registry_load_dir on each folder of nb_registry_build_dirs(): run
 * make before make fuzz); the registry is never changed by a load.
 *
 * Checked: a failed load leaves *s zeroed, with a message; a successful
 * one gives terminated strings, counts within 0..NB_SUITE_MAX, a normal
 * strategy, plugins of the right kind with options, positive epochs and
 * batch sizes, a training spec for every teacher and student; and
 * nb_suite_free zeroes *s.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "fuzz_util.h"
#include "registry.h"
#include "suite.h"

static nb_registry *reg;
static FILE *notes;
static nb_suite *zero;

static void release(void)
{
	nb_registry_free(reg);
	if (notes)
		fclose(notes);
	free(zero);
	reg = NULL;
	notes = NULL;
	zero = NULL;
}

static void setup(void)
{
	if (reg)
		return;
	char err[NB_ERR_LEN];
	reg = nb_registry_new();
	zero = calloc(1, sizeof *zero);
	notes = fopen("/dev/null", "w");
	if (!reg || !zero || !notes)
		abort();
	atexit(release);
	char *dirs = strdup(nb_registry_build_dirs()), *save = NULL;
	if (!dirs)
		abort();
	for (char *d = strtok_r(dirs, ":", &save); d;
	     d = strtok_r(NULL, ":", &save)) {
		if (access(d, F_OK) != 0)
			continue;
		if (nb_registry_load_dir(reg, d, err) < 0) {
			fprintf(stderr, "fuzz_suite: plugins: %s\n", err);
			abort();
		}
	}
	free(dirs);
	if (!nb_registry_find(reg, NB_PLUGIN_TEACHER, "normal")) {
		fprintf(stderr,
			"fuzz_suite: no plugins in %s (run make "
			"first)\n",
			nb_registry_build_dirs());
		abort();
	}
}

static int terminated(const char *s, size_t size)
{
	return memchr(s, '\0', size) != NULL;
}

static void check_use(const nb_plugin_use *u, enum nb_plugin_kind kind,
		      const char *what)
{
	NB_FUZZ_CHECK(u->plugin && u->plugin->kind == kind,
		      "%s: no plugin or wrong kind", what);
	NB_FUZZ_CHECK(u->opts != NULL, "%s: no options", what);
	NB_FUZZ_CHECK(terminated(u->adversary, sizeof u->adversary),
		      "%s: adversary not terminated", what);
}

static void check_spec(const nb_train_spec *t, const char *what)
{
	NB_FUZZ_CHECK(t->epochs >= 1 && t->batch >= 1 && t->eval_batch >= 1 &&
			  t->train_limit >= 0 && t->test_limit >= 0,
		      "%s: epochs %d batch %d eval_batch %d limits %d %d", what,
		      t->epochs, t->batch, t->eval_batch, t->train_limit,
		      t->test_limit);
	NB_FUZZ_CHECK(terminated(t->schedule, sizeof t->schedule),
		      "%s: schedule not terminated", what);
}

static void check_suite(const nb_suite *s)
{
	NB_FUZZ_CHECK(terminated(s->path, sizeof s->path) &&
			  terminated(s->name, sizeof s->name) &&
			  terminated(s->description, sizeof s->description) &&
			  terminated(s->tier, sizeof s->tier) &&
			  terminated(s->dataset, sizeof s->dataset) &&
			  terminated(s->data_dir, sizeof s->data_dir) &&
			  terminated(s->synthetic, sizeof s->synthetic),
		      "a string is not terminated");
#define IN_RANGE(n) ((n) >= 0 && (n) <= NB_SUITE_MAX)
	NB_FUZZ_CHECK(IN_RANGE(s->n_tiers) && IN_RANGE(s->n_seeds) &&
			  IN_RANGE(s->n_teachers) && IN_RANGE(s->n_students) &&
			  IN_RANGE(s->n_defenses) && IN_RANGE(s->n_attacks) &&
			  IN_RANGE(s->n_arch_train),
		      "a count is out of range");
#undef IN_RANGE
	for (int i = 0; i < s->n_tiers; i++)
		NB_FUZZ_CHECK(terminated(s->tiers[i], NB_SUITE_NAME), "tier %d",
			      i);
	check_use(&s->normal, NB_PLUGIN_TEACHER, "normal");
	for (int i = 0; i < s->n_defenses; i++)
		check_use(&s->defenses[i], NB_PLUGIN_TEACHER, "defense");
	for (int i = 0; i < s->n_attacks; i++)
		check_use(&s->attacks[i], NB_PLUGIN_ATTACK, "attack");
	check_spec(&s->train[0], "teacher spec");
	check_spec(&s->train[1], "student spec");
	for (int i = 0; i < s->n_arch_train; i++) {
		NB_FUZZ_CHECK(terminated(s->arch_train[i].arch, NB_SUITE_NAME),
			      "arch_train %d", i);
		check_spec(&s->arch_train[i].spec[0], s->arch_train[i].arch);
		check_spec(&s->arch_train[i].spec[1], s->arch_train[i].arch);
	}
	for (int i = 0; i < s->n_teachers; i++) {
		NB_FUZZ_CHECK(
		    terminated(s->teachers[i], NB_SUITE_NAME) &&
			nb_registry_find(reg, NB_PLUGIN_ARCH, s->teachers[i]),
		    "teacher %d is not an architecture", i);
		check_spec(
		    nb_suite_train_for(s, s->teachers[i], NB_ROLE_TEACHER),
		    s->teachers[i]);
	}
	for (int i = 0; i < s->n_students; i++) {
		NB_FUZZ_CHECK(terminated(s->students[i], NB_SUITE_NAME),
			      "student %d", i);
		check_spec(
		    nb_suite_train_for(s, s->students[i], NB_ROLE_STUDENT),
		    s->students[i]);
	}
}

/* One load; returns 1 when it worked (and s holds the suite). */
static int load(const char *path, const char *tier, nb_suite *s)
{
	char err[NB_ERR_LEN] = "";
	memset(s, 0x5a, sizeof *s);
	int rc = nb_suite_load(path, tier, reg, s, notes, err);
	nb_fuzz_note("suite (tier '%s'): %d %s", tier ? tier : "(default)", rc,
		     rc ? err : "loaded");
	if (rc < 0) {
		nb_fuzz_failed(rc, err);
		NB_FUZZ_CHECK(!memcmp(s, zero, sizeof *s),
			      "suite not zeroed on failure: %s", err);
		return 0;
	}
	NB_FUZZ_CHECK(rc == 0, "rc %d", rc);
	check_suite(s);
	return 1;
}

int nb_fuzz_suite(const uint8_t *data, size_t size)
{
	if (!data) /* an empty input may come as NULL */
		data = (const uint8_t *)"";
	setup();
	nb_fuzz_put("suite.ini", data, size);
	char path[4096];
	nb_fuzz_path(path, sizeof path, "suite.ini");
	nb_suite *s = malloc(sizeof *s), *t = malloc(sizeof *t);
	if (!s || !t)
		abort();
	if (load(path, NULL, s)) {
		for (int i = 0; i < s->n_tiers && i < 4; i++)
			if (load(path, s->tiers[i], t))
				nb_suite_free(t);
		nb_suite_free(s);
		NB_FUZZ_CHECK(!memcmp(s, zero, sizeof *s),
			      "nb_suite_free did not zero the suite");
	}
	free(s);
	free(t);
	return 0;
}

NB_FUZZ_TARGET(nb_fuzz_suite)
