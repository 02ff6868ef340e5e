/*
 * suite_test.c - suite files (core/lib/suite.c): every shipped suite loads
 * in every tier it has, with the real plugins of this build tree, and holds
 * the paper's numbers where it claims to; the precedence of [train],
 * [train.ROLE], [train.ARCH] and the tier; a table of bad suites, each of
 * which must fail with file:line and a message saying what is wrong; the
 * notes about defaults; finding suites by name; the dataset presets.
 *
 * Bad and test suites are written to a temporary folder here. With
 * NB_TEST_VERBOSE set, the message of every bad suite is printed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"
#include "registry.h"
#include "suite.h"
#include "testutil.h"

static char *tmpdir;

static int suite_init(void)
{
	tmpdir = tu_mkdtemp();
	return tmpdir ? 0 : -1;
}

static int suite_clean(void)
{
	if (tmpdir)
		tu_rmtree(tmpdir);
	free(tmpdir);
	tmpdir = NULL;
	return 0;
}

/* Writes text to tmpdir/name; returns the path (static buffer). */
static const char *write_tmp(const char *name, const char *text)
{
	static char path[4096];
	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static nb_registry *registry(void)
{
	nb_registry *r = tu_registry();
	/* tu_registry loads every build-tree plugin folder: the suites need
	 * architectures, teacher strategies and attacks */
	CU_ASSERT_PTR_NOT_NULL_FATAL(r);
	CU_ASSERT_PTR_NOT_NULL_FATAL(
	    nb_registry_find(r, NB_PLUGIN_ARCH, "lenet5"));
	CU_ASSERT_PTR_NOT_NULL_FATAL(
	    nb_registry_find(r, NB_PLUGIN_TEACHER, "normal"));
	CU_ASSERT_PTR_NOT_NULL_FATAL(
	    nb_registry_find(r, NB_PLUGIN_TEACHER, "nasty"));
	CU_ASSERT_PTR_NOT_NULL_FATAL(
	    nb_registry_find(r, NB_PLUGIN_ATTACK, "kd"));
	return r;
}

static int load(const char *path, const char *tier, nb_suite *s, FILE *notes,
		char *err)
{
	err[0] = 0;
	int rc = nb_suite_load(path, tier, registry(), s, notes, err);
	if (rc < 0)
		fprintf(stderr, "\n  %s [%s]: %s\n", path, tier ? tier : "",
			err);
	return rc;
}

/* The value of a plugin option as text. */
static void option_text(const nb_plugin_use *u, const char *name, char *buf,
			size_t len)
{
	buf[0] = 0;
	for (const nb_option *o = u->plugin->options; o && o->name; o++)
		if (!strcmp(o->name, name))
			nb_options_format(o, u->opts, buf, len);
}

/* ---- the shipped suites ----------------------------------------------------
 */

static const struct {
	const char *name;
	const char *default_tier;
	int n_tiers;
} shipped[] = {
    {"fashion-mnist", "default", 2}, {"mnist", "paper", 2},
    {"cifar10", "small", 3},	     {"cifar100", "small", 3},
    {"tiny-imagenet", "small", 3},   {"smoke", "smoke", 1},
};
#define N_SHIPPED (int)(sizeof shipped / sizeof *shipped)

static void test_shipped_every_tier(void)
{
	char err[NB_ERR_LEN], rel[256];
	for (int i = 0; i < N_SHIPPED; i++) {
		snprintf(rel, sizeof rel, "suites/%s.ini", shipped[i].name);
		const char *path = tu_srcpath(rel);
		nb_suite s;
		CU_ASSERT_EQUAL_FATAL(load(path, NULL, &s, NULL, err), 0);
		CU_ASSERT_STRING_EQUAL(s.name, shipped[i].name);
		CU_ASSERT_STRING_EQUAL(s.tier, shipped[i].default_tier);
		CU_ASSERT_EQUAL(s.n_tiers, shipped[i].n_tiers);
		CU_ASSERT(s.description[0] != 0);
		int n_tiers = s.n_tiers;
		char tiers[NB_SUITE_MAX][NB_SUITE_NAME];
		memcpy(tiers, s.tiers, sizeof tiers);
		nb_suite_free(&s);
		for (int t = 0; t < n_tiers; t++) {
			char *buf = NULL;
			size_t len = 0;
			FILE *notes = open_memstream(&buf, &len);
			CU_ASSERT_EQUAL_FATAL(
			    load(path, tiers[t], &s, notes, err), 0);
			fclose(notes);
			free(buf);
			CU_ASSERT_STRING_EQUAL(s.tier, tiers[t]);
			CU_ASSERT(s.n_teachers >= 1);
			CU_ASSERT(s.n_students >= 1 || s.students_self);
			CU_ASSERT(s.n_seeds >= 1);
			CU_ASSERT_PTR_NOT_NULL(s.normal.plugin);
			CU_ASSERT(s.n_defenses >= 1);
			CU_ASSERT(s.n_attacks >= 1);
			CU_ASSERT(s.aug.std[0] > 0);
			/* every architecture of the suite has its own spec */
			for (int a = 0; a < s.n_teachers; a++) {
				const nb_train_spec *sp = nb_suite_train_for(
				    &s, s.teachers[a], NB_ROLE_TEACHER);
				CU_ASSERT_PTR_NOT_EQUAL(sp, &s.train[0]);
				CU_ASSERT(sp->epochs >= 1 && sp->batch >= 1);
				CU_ASSERT(sp->optim.lr > 0);
				CU_ASSERT_EQUAL(sp->sched.base_lr,
						sp->optim.lr);
			}
			for (int a = 0; a < s.n_students; a++)
				CU_ASSERT_PTR_NOT_EQUAL(
				    nb_suite_train_for(&s, s.students[a],
						       NB_ROLE_STUDENT),
				    &s.train[1]);
			nb_suite_free(&s);
		}
	}
}

/* What some shipped tiers must hold (the paper's numbers). */
static const struct {
	const char *suite, *tier, *arch;
	enum nb_role role;
	int epochs, batch;
	enum nb_optim_kind optim;
	float lr, momentum, wd;
	enum nb_sched_kind sched;
	int milestones[3];
	float gamma;
	int train_limit;
} specs[] = {
    /* CIFAR-10: SGD 0.1/0.9/5e-4, 160 epochs, x0.1 at 80, 120; the CNN
     * with Adam 1e-3, 100 epochs, no decay */
    {"cifar10",
     "paper",
     "resnet18",
     NB_ROLE_TEACHER,
     160,
     128,
     NB_OPTIM_SGD,
     0.1f,
     0.9f,
     5e-4f,
     NB_SCHED_STEP,
     {80, 120, 0},
     0.1f,
     0},
    {"cifar10",
     "paper",
     "preresnet20",
     NB_ROLE_STUDENT,
     160,
     128,
     NB_OPTIM_SGD,
     0.1f,
     0.9f,
     5e-4f,
     NB_SCHED_STEP,
     {80, 120, 0},
     0.1f,
     0},
    {"cifar10",
     "paper",
     "cnn",
     NB_ROLE_STUDENT,
     100,
     128,
     NB_OPTIM_ADAM,
     1e-3f,
     0,
     0,
     NB_SCHED_CONSTANT,
     {0},
     0,
     0},
    {"cifar10",
     "small",
     "cnn",
     NB_ROLE_STUDENT,
     20,
     128,
     NB_OPTIM_ADAM,
     1e-3f,
     0,
     0,
     NB_SCHED_CONSTANT,
     {0},
     0,
     10000},
    /* CIFAR-100 and Tiny-ImageNet: 200 epochs, x0.2 at 60, 120, 160 */
    {"cifar100",
     "paper",
     "resnext29",
     NB_ROLE_TEACHER,
     200,
     128,
     NB_OPTIM_SGD,
     0.1f,
     0.9f,
     5e-4f,
     NB_SCHED_STEP,
     {60, 120, 160},
     0.2f,
     0},
    {"tiny-imagenet",
     "paper",
     "mobilenetv2",
     NB_ROLE_STUDENT,
     200,
     128,
     NB_OPTIM_SGD,
     0.1f,
     0.9f,
     5e-4f,
     NB_SCHED_STEP,
     {60, 120, 160},
     0.2f,
     0},
    /* Fashion-MNIST (the paper's CIFAR-100 tau/omega) and DAFL's MNIST teacher */
    {"fashion-mnist",
     "default",
     "lenet5",
     NB_ROLE_TEACHER,
     10,
     128,
     NB_OPTIM_ADAM,
     1e-3f,
     0,
     0,
     NB_SCHED_CONSTANT,
     {0},
     0,
     0},
    {"fashion-mnist",
     "smoke",
     "lenet5-half",
     NB_ROLE_STUDENT,
     2,
     128,
     NB_OPTIM_ADAM,
     1e-3f,
     0,
     0,
     NB_SCHED_CONSTANT,
     {0},
     0,
     5000},
    {"mnist",
     "paper",
     "lenet5",
     NB_ROLE_TEACHER,
     9,
     256,
     NB_OPTIM_ADAM,
     1e-3f,
     0,
     0,
     NB_SCHED_CONSTANT,
     {0},
     0,
     0},
    {"smoke",
     "smoke",
     "lenet5-half",
     NB_ROLE_STUDENT,
     3,
     128,
     NB_OPTIM_ADAM,
     1e-3f,
     0,
     0,
     NB_SCHED_CONSTANT,
     {0},
     0,
     2000},
};

static void test_shipped_values(void)
{
	char err[NB_ERR_LEN], rel[256];
	for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
		snprintf(rel, sizeof rel, "suites/%s.ini", specs[i].suite);
		nb_suite s;
		CU_ASSERT_EQUAL_FATAL(
		    load(tu_srcpath(rel), specs[i].tier, &s, NULL, err), 0);
		const nb_train_spec *sp =
		    nb_suite_train_for(&s, specs[i].arch, specs[i].role);
		CU_ASSERT_EQUAL(sp->epochs, specs[i].epochs);
		CU_ASSERT_EQUAL(sp->batch, specs[i].batch);
		CU_ASSERT_EQUAL(sp->optim.kind, specs[i].optim);
		CU_ASSERT_DOUBLE_EQUAL(sp->optim.lr, specs[i].lr, 1e-9);
		CU_ASSERT_DOUBLE_EQUAL(sp->optim.momentum, specs[i].momentum,
				       1e-9);
		CU_ASSERT_DOUBLE_EQUAL(sp->optim.weight_decay, specs[i].wd,
				       1e-9);
		CU_ASSERT_EQUAL(sp->sched.kind, specs[i].sched);
		for (int m = 0; m < 3 && specs[i].milestones[m]; m++)
			CU_ASSERT_EQUAL(sp->sched.milestones[m],
					specs[i].milestones[m]);
		if (specs[i].sched == NB_SCHED_STEP)
			CU_ASSERT_DOUBLE_EQUAL(sp->sched.gamma, specs[i].gamma,
					       1e-9);
		CU_ASSERT_EQUAL(sp->train_limit, specs[i].train_limit);
		if (sp->epochs != specs[i].epochs)
			fprintf(stderr, "\n  %s/%s %s: epochs %d\n",
				specs[i].suite, specs[i].tier, specs[i].arch,
				sp->epochs);
		nb_suite_free(&s);
	}
}

/* Plugin options and suite-level facts of the shipped suites. */
static const struct {
	const char *suite, *tier;
	const char *defense_omega, *defense_tau, *kd_alpha, *kd_tau;
	const char *dataset;
	int students_self;
	const char *synthetic;
} facts[] = {
    {"cifar10", "paper", "0.04", "4", "0.9", "4", "cifar10", 0, ""},
    {"cifar100", "paper", "0.005", "20", "0.9", "20", "cifar100", 1, ""},
    {"tiny-imagenet", "paper", "0.01", "20", "0.9", "20", "tiny-imagenet", 1,
     ""},
    {"fashion-mnist", "default", "0.005", "20", "0.9", "20", "fashion-mnist", 0,
     ""},
    {"smoke", NULL, "0.005", "20", "0.9", "20", "mnist", 0, "idx"},
};

static void test_shipped_plugins(void)
{
	char err[NB_ERR_LEN], rel[256], v[64];
	for (size_t i = 0; i < sizeof facts / sizeof *facts; i++) {
		snprintf(rel, sizeof rel, "suites/%s.ini", facts[i].suite);
		nb_suite s;
		CU_ASSERT_EQUAL_FATAL(
		    load(tu_srcpath(rel), facts[i].tier, &s, NULL, err), 0);
		CU_ASSERT_STRING_EQUAL(s.dataset, facts[i].dataset);
		CU_ASSERT_EQUAL(s.students_self, facts[i].students_self);
		CU_ASSERT_STRING_EQUAL(s.synthetic, facts[i].synthetic);
		CU_ASSERT_STRING_EQUAL(s.defenses[0].plugin->name, "nasty");
		option_text(&s.defenses[0], "omega", v, sizeof v);
		CU_ASSERT_STRING_EQUAL(v, facts[i].defense_omega);
		option_text(&s.defenses[0], "tau", v, sizeof v);
		CU_ASSERT_STRING_EQUAL(v, facts[i].defense_tau);
		CU_ASSERT_STRING_EQUAL(s.attacks[0].plugin->name, "kd");
		option_text(&s.attacks[0], "alpha", v, sizeof v);
		CU_ASSERT_STRING_EQUAL(v, facts[i].kd_alpha);
		option_text(&s.attacks[0], "tau", v, sizeof v);
		CU_ASSERT_STRING_EQUAL(v, facts[i].kd_tau);
		nb_suite_free(&s);
	}
}

/* Every shipped suite runs dafl; the paper tiers hold DAFL's official
 * values (DAFL-train.py and its README), the others a smaller generator. */
static const struct {
	const char *suite, *tier;
	const char *kv[12][2];
} dafl_facts[] = {
    {"mnist",
     "paper",
     {{"latent", "100"},
      {"batch", "512"},
      {"iters", "120"},
      {"epochs", "200"},
      {"width", "128"},
      {"lr_g", "0.2"},
      {"lr_s", "0.002"},
      {"student_optim", "adam"},
      {"oh", "1"},
      {"ie", "5"},
      {"a", "0.1"}}},
    {"cifar10",
     "paper",
     {{"latent", "1000"},
      {"batch", "1024"},
      {"iters", "120"},
      {"epochs", "2000"},
      {"width", "128"},
      {"lr_g", "0.02"},
      {"lr_s", "0.1"},
      {"student_optim", "sgd"},
      {"oh", "0.05"},
      {"ie", "5"},
      {"a", "0.01"}}},
    {"cifar100",
     "paper",
     {{"latent", "1000"},
      {"batch", "1024"},
      {"epochs", "2000"},
      {"lr_g", "0.02"},
      {"lr_s", "0.1"},
      {"student_optim", "sgd"},
      {"oh", "0.5"},
      {"ie", "20"},
      {"a", "0.1"}}},
    {"tiny-imagenet", "paper", {{"oh", "0.5"}, {"ie", "20"}, {"a", "0.1"}}},
    {"cifar10", "small", {{"width", "32"}}},
    {"fashion-mnist", "default", {{"width", "32"}, {"epochs", "10"}}},
    {"fashion-mnist", "smoke", {{"width", "16"}}},
    {"smoke", "smoke", {{"width", "16"}, {"iters", "8"}}},
};

static void test_shipped_dafl(void)
{
	char err[NB_ERR_LEN], rel[256], v[64];
	for (size_t i = 0; i < sizeof dafl_facts / sizeof *dafl_facts; i++) {
		snprintf(rel, sizeof rel, "suites/%s.ini", dafl_facts[i].suite);
		nb_suite s;
		CU_ASSERT_EQUAL_FATAL(
		    load(tu_srcpath(rel), dafl_facts[i].tier, &s, NULL, err),
		    0);
		const nb_plugin_use *u = NULL;
		for (int a = 0; a < s.n_attacks; a++)
			if (!strcmp(s.attacks[a].plugin->name, "dafl"))
				u = &s.attacks[a];
		CU_ASSERT_PTR_NOT_NULL_FATAL(u);
		for (int k = 0; k < 12 && dafl_facts[i].kv[k][0]; k++) {
			option_text(u, dafl_facts[i].kv[k][0], v, sizeof v);
			if (strcmp(v, dafl_facts[i].kv[k][1]))
				printf("\n  %s/%s: dafl %s = %s, expected %s\n",
				       dafl_facts[i].suite, dafl_facts[i].tier,
				       dafl_facts[i].kv[k][0], v,
				       dafl_facts[i].kv[k][1]);
			CU_ASSERT_STRING_EQUAL(v, dafl_facts[i].kv[k][1]);
		}
		nb_suite_free(&s);
	}
}

/* ---- precedence -----------------------------------------------------------
 */

static const char precedence_ini[] =
    "[suite]\n"
    "dataset = mnist\n"
    "teachers = lenet5\n"
    "students = lenet5-half, resnetc20, cnn\n"
    "defenses = nasty\n"
    "attacks = kd\n"
    "[train]\n"
    "epochs = 2\n"
    "batch = 64\n"
    "lr = 0.05\n"
    "[train.student]\n"
    "epochs = 3\n"
    "[train.lenet5-half]\n"
    "epochs = 4\n"
    "[train.resnetc20]\n" /* an alias: the same as [train.preresnet20] */
    "batch = 8\n"
    "[train.cnn]\n"
    "optim = adam\n" /* resets lr to Adam's default */
    "[teacher.nasty]\n"
    "omega = 0.1\n"
    "adversary = lenet5-half\n"
    "[tier.t]\n"
    "train.epochs = 5\n"
    "train.student.batch = 16\n"
    "train.lenet5-half.lr = 0.01\n"
    "teacher.nasty.omega = 0.5\n"
    "[tier.u]\n"
    "suite.students = lenet5, cnn\n"
    "train.cnn.lr = 0.2\n";

static const struct {
	const char *tier, *arch;
	enum nb_role role;
	int epochs, batch;
	float lr;
} prec[] = {
    /* [train] < [train.student] < [train.ARCH] */
    {"", "lenet5", NB_ROLE_TEACHER, 2, 64, 0.05f},
    {"", "lenet5-half", NB_ROLE_STUDENT, 4, 64, 0.05f},
    {"", "lenet5-half", NB_ROLE_TEACHER, 4, 64, 0.05f},
    {"", "preresnet20", NB_ROLE_STUDENT, 3, 8, 0.05f},
    {"", "cnn", NB_ROLE_STUDENT, 3, 64, 1e-3f},
    {"", NULL, NB_ROLE_STUDENT, 3, 64, 0.05f},
    {"", NULL, NB_ROLE_TEACHER, 2, 64, 0.05f},
    /* ... < the tier, in the same order */
    {"t", "lenet5", NB_ROLE_TEACHER, 5, 64, 0.05f},
    {"t", "lenet5-half", NB_ROLE_STUDENT, 5, 16, 0.01f},
    {"t", "preresnet20", NB_ROLE_STUDENT, 5, 16, 0.05f}, /* tier wins */
    {"t", "cnn", NB_ROLE_STUDENT, 5, 16, 1e-3f},
    /* a tier's key set after a file's optim change applies */
    {"u", "cnn", NB_ROLE_STUDENT, 3, 64, 0.2f},
};

static void test_precedence(void)
{
	char err[NB_ERR_LEN];
	const char *path = write_tmp("precedence.ini", precedence_ini);
	for (size_t i = 0; i < sizeof prec / sizeof *prec; i++) {
		nb_suite s;
		CU_ASSERT_EQUAL_FATAL(load(path, prec[i].tier, &s, NULL, err),
				      0);
		const nb_train_spec *sp =
		    nb_suite_train_for(&s, prec[i].arch, prec[i].role);
		CU_ASSERT_EQUAL(sp->epochs, prec[i].epochs);
		CU_ASSERT_EQUAL(sp->batch, prec[i].batch);
		CU_ASSERT_DOUBLE_EQUAL(sp->optim.lr, prec[i].lr, 1e-9);
		CU_ASSERT_DOUBLE_EQUAL(sp->sched.base_lr, prec[i].lr, 1e-9);
		if (sp->epochs != prec[i].epochs || sp->batch != prec[i].batch)
			fprintf(stderr, "\n  row %zu: epochs %d batch %d\n", i,
				sp->epochs, sp->batch);
		nb_suite_free(&s);
	}
	/* aliases are stored under the plugin's name; lists, plugin
	 * options and the adversary follow the tier too */
	nb_suite s;
	char v[64];
	CU_ASSERT_EQUAL_FATAL(load(path, "", &s, NULL, err), 0);
	CU_ASSERT_STRING_EQUAL(s.tier, "");
	CU_ASSERT_EQUAL(s.n_tiers, 2);
	CU_ASSERT_EQUAL(s.n_students, 3);
	CU_ASSERT_STRING_EQUAL(s.students[1], "preresnet20");
	CU_ASSERT_EQUAL(s.n_arch_train, 4);
	CU_ASSERT_STRING_EQUAL(s.defenses[0].adversary, "lenet5-half");
	option_text(&s.defenses[0], "omega", v, sizeof v);
	CU_ASSERT_STRING_EQUAL(v, "0.1");
	nb_suite_free(&s);
	CU_ASSERT_EQUAL_FATAL(load(path, "t", &s, NULL, err), 0);
	option_text(&s.defenses[0], "omega", v, sizeof v);
	CU_ASSERT_STRING_EQUAL(v, "0.5");
	nb_suite_free(&s);
	CU_ASSERT_EQUAL_FATAL(load(path, "u", &s, NULL, err), 0);
	CU_ASSERT_EQUAL(s.n_students, 2);
	CU_ASSERT_STRING_EQUAL(s.students[0], "lenet5");
	nb_suite_free(&s);
}

/* ---- values: lists, schedules, continuation lines
 * ---------------------------- */

static void test_values(void)
{
	char err[NB_ERR_LEN];
	const char *path =
	    write_tmp("values.ini", "; a comment\n"
				    "# another\n"
				    "[suite]\n"
				    "name = v\n"
				    "description = first part\n"
				    "\tsecond part\n"
				    "dataset = cifar100-coarse\n"
				    "seeds =  3 ,1,  18446744073709551615\n"
				    "teachers = resnet18\n"
				    "students =\n"
				    "\tmobilenetv2,\n"
				    "\tself\n"
				    "defenses =\n"
				    "attacks =\n"
				    "[train]\n"
				    "schedule = cosine:0.001 ; inline comment\n"
				    "epochs = 7\n"
				    "nesterov = yes\n"
				    "[train.teacher]\n"
				    "schedule = step: 2, 4 :0.5\n");
	nb_suite s;
	CU_ASSERT_EQUAL_FATAL(load(path, NULL, &s, NULL, err), 0);
	CU_ASSERT_STRING_EQUAL(s.description, "first part second part");
	CU_ASSERT_EQUAL(s.n_seeds, 3);
	CU_ASSERT_EQUAL(s.seeds[0], 3);
	CU_ASSERT_EQUAL(s.seeds[2], UINT64_MAX);
	CU_ASSERT_EQUAL(s.n_students, 1);
	CU_ASSERT_EQUAL(s.students_self, 1);
	CU_ASSERT_EQUAL(s.n_defenses, 0);
	CU_ASSERT_EQUAL(s.n_attacks, 0);
	CU_ASSERT_EQUAL(s.aug.crop_pad, 4);
	const nb_train_spec *st = &s.train[NB_ROLE_STUDENT];
	CU_ASSERT_EQUAL(st->sched.kind, NB_SCHED_COSINE);
	CU_ASSERT_EQUAL(st->sched.t_max, 7);
	CU_ASSERT_DOUBLE_EQUAL(st->sched.eta_min, 0.001, 1e-9);
	CU_ASSERT_EQUAL(st->optim.nesterov, 1);
	CU_ASSERT_STRING_EQUAL(st->schedule, "cosine:0.001");
	const nb_train_spec *te =
	    nb_suite_train_for(&s, "resnet18", NB_ROLE_TEACHER);
	CU_ASSERT_EQUAL(te->sched.kind, NB_SCHED_STEP);
	CU_ASSERT_EQUAL(te->sched.n_milestones, 2);
	CU_ASSERT_EQUAL(te->sched.milestones[1], 4);
	CU_ASSERT_DOUBLE_EQUAL(te->sched.gamma, 0.5, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(te->sched.base_lr, 0.1, 1e-7);
	nb_suite_free(&s);
	nb_suite_free(&s); /* safe twice */
}

/* ---- bad suites ------------------------------------------------------------
 */

#define HEAD                                                                   \
	"[suite]\n"                                                            \
	"dataset = mnist\n"                                                    \
	"teachers = lenet5\n"                                                  \
	"students = lenet5-half\n" /* lines 1-4 */

static const struct {
	const char *what;
	const char *text;
	const char *tier;
	int line; /* the line the message must name; 0 = none */
	const char *want1, *want2;
} bad[] = {
    {"unknown section", HEAD "[trian]\nepochs = 1\n", NULL, 5,
     "unknown section [trian]", "train.ARCH"},
    {"unknown empty section", HEAD "[attack]\n", NULL, 5,
     "unknown section [attack]", NULL},
    {"unknown key", HEAD "[train]\nepoch = 3\n", NULL, 6,
     "[train] epoch: unknown key", "epochs, batch"},
    {"unknown suite key", HEAD "teacher = lenet5\n", NULL, 5, "unknown key",
     "teachers"},
    {"bad number", HEAD "[train]\nepochs = ten\n", NULL, 6,
     "'ten' is not a whole number", NULL},
    {"number with junk", HEAD "[train]\nbatch = 12x\n", NULL, 6, "'12x'", NULL},
    {"negative lr", HEAD "[train]\nlr = -0.1\n", NULL, 6, "> 0", NULL},
    {"nan lr", HEAD "[train]\nlr = nan\n", NULL, 6, "'nan'", NULL},
    {"bad seed", HEAD "seeds = 0, -1\n", NULL, 5,
     "seed '-1' is not a non-negative integer", NULL},
    {"duplicate seed", HEAD "seeds = 1, 1\n", NULL, 5, "twice", NULL},
    {"empty list item", HEAD "defenses = nasty,,\n", NULL, 5, "an empty item",
     NULL},
    {"unknown arch", "[suite]\ndataset = mnist\nteachers = lenet6\n", NULL, 3,
     "unknown architecture 'lenet6'", "lenet5-half"},
    {"unknown arch section", HEAD "[train.lenet6]\nepochs = 1\n", NULL, 5,
     "unknown architecture 'lenet6'", "known: "},
    {"unknown plugin option", HEAD "[teacher.nasty]\nomgea = 0.1\n", NULL, 6,
     "nasty has no option 'omgea'", "omega"},
    {"plugin option out of range", HEAD "[attack.kd]\nalpha = 2\n", NULL, 6,
     "kd: option 'alpha'", NULL},
    {"unknown strategy section", HEAD "[teacher.nasti]\n", NULL, 5,
     "unknown teacher strategy 'nasti'", "nasty"},
    {"adversary of normal", HEAD "[teacher.normal]\nadversary = lenet5\n", NULL,
     6, "trains against no adversary", NULL},
    {"unknown adversary", HEAD "[teacher.nasty]\nadversary = big\n", NULL, 6,
     "unknown architecture 'big'", NULL},
    {"bad schedule", HEAD "[train]\nschedule = linear\n", NULL, 6,
     "not constant, step", NULL},
    {"decreasing milestones", HEAD "[train]\nschedule = step:80,40:0.1\n", NULL,
     6, "milestones must increase", NULL},
    {"step without gamma", HEAD "[train]\nschedule = step:80\n", NULL, 6,
     "GAMMA", NULL},
    {"normal as a defense", HEAD "defenses = nasty, normal\n", NULL, 5,
     "'normal' is implicit", NULL},
    {"unknown defense", HEAD "defenses = nasti\n", NULL, 5,
     "unknown teacher strategy 'nasti'", "nasty"},
    {"scratch as an attack", HEAD "attacks = scratch\n", NULL, 5, "'scratch'",
     "implicit"},
    {"unknown attack", HEAD "attacks = dafl2\n", NULL, 5,
     "unknown attack 'dafl2'", "kd"},
    {"unknown tier", HEAD "[tier.a]\n[tier.b]\ntrain.epochs = 1\n", "huge", 0,
     "no tier 'huge'", "tiers: a, b"},
    {"no tiers", HEAD, "small", 0, "no tier 'small'", "has no tiers"},
    {"bad default tier", HEAD "default_tier = paper\n[tier.smoke]\n", NULL, 5,
     "no tier 'paper'", "tiers: smoke"},
    {"tier key without section", HEAD "[tier.a]\nepochs = 1\n", NULL, 6,
     "SECTION.KEY", NULL},
    {"tier unknown key", HEAD "[tier.a]\ntrain.epoch = 1\n", NULL, 6,
     "[tier.a] train.epoch: unknown key", NULL},
    {"tier unknown section", HEAD "[tier.a]\ntrian.epochs = 1\n", NULL, 6,
     "unknown section [trian]", NULL},
    {"tier bad value", HEAD "[tier.a]\ntrain.epochs = 0\n", NULL, 6,
     "'0' is not a whole number", NULL},
    {"tier sets default tier", HEAD "[tier.a]\nsuite.default_tier = a\n", NULL,
     6, "cannot set the default tier", NULL},
    {"tier unknown option", HEAD "[tier.a]\nattack.kd.beta = 1\n", "a", 6,
     "kd has no option 'beta'", NULL},
    {"key set twice", HEAD "[train]\nepochs = 1\nbatch = 2\nepochs = 3\n", NULL,
     8, "set twice (first at line 6)", NULL},
    {"alias set twice",
     HEAD "[train.resnetc20]\nepochs = 1\n[train.preresnet20]\nepochs = 3\n",
     NULL, 8, "set twice", NULL},
    {"momentum with adam", HEAD "[train]\noptim = adam\nmomentum = 0.5\n", NULL,
     7, "sgd only", NULL},
    {"nesterov without momentum",
     HEAD "[train]\nmomentum = 0\nnesterov = true\n", NULL, 7, "Nesterov",
     NULL},
    {"unknown optimiser", HEAD "[train]\noptim = rmsprop\n", NULL, 6,
     "not sgd or adam", NULL},
    {"key outside a section", "dataset = mnist\n" HEAD, NULL, 1,
     "outside any section", NULL},
    {"not an INI line", HEAD "just words\n", NULL, 5, "neither a [section] nor",
     NULL},
    {"unclosed section", HEAD "[train\n", NULL, 5, "neither", NULL},
    {"line too long",
     HEAD "description = "
	  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	  "\n",
     NULL, 5, "line longer than", NULL},
    {"no dataset", "[suite]\nteachers = lenet5\nstudents = lenet5\n", NULL, 0,
     "has no dataset", NULL},
    {"unknown dataset", "[suite]\ndataset = imagenet\n", NULL, 2,
     "unknown dataset 'imagenet'", "tiny-imagenet"},
    {"no students", "[suite]\ndataset = mnist\nteachers = lenet5\n", NULL, 0,
     "no students", NULL},
    {"synthetic of another format", HEAD "synthetic = cifar10\n", NULL, 5,
     "does not fit", NULL},
    {"synthetic count without synthetic", HEAD "synthetic_train = 10\n", NULL,
     5, "only used with synthetic", NULL},
    {"scratch section", HEAD "[attack.scratch]\n", NULL, 5, "takes no options",
     NULL},
};

static void test_bad_suites(void)
{
	char err[NB_ERR_LEN], want[4200], name[64];
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		snprintf(name, sizeof name, "bad%zu.ini", i);
		const char *path = write_tmp(name, bad[i].text);
		nb_suite s;
		err[0] = 0;
		int rc =
		    nb_suite_load(path, bad[i].tier, registry(), &s, NULL, err);
		int ok = rc < 0 && strstr(err, bad[i].want1) &&
			 (!bad[i].want2 || strstr(err, bad[i].want2));
		if (bad[i].line)
			snprintf(want, sizeof want, "%s:%d: ", path,
				 bad[i].line);
		else
			snprintf(want, sizeof want, "%s", path);
		ok = ok && strstr(err, want) == err;
		ok = ok && !strchr(err, '\n');
		/* a failed load leaves a zeroed suite */
		ok = ok && s.n_teachers == 0 && s.normal.opts == NULL;
		if (!ok || getenv("NB_TEST_VERBOSE"))
			fprintf(stderr, "\n  %s: rc %d, message: %s\n",
				bad[i].what, rc, err);
		CU_ASSERT(ok);
	}
}

static void test_missing_file(void)
{
	char err[NB_ERR_LEN], path[4096];
	snprintf(path, sizeof path, "%s/no-such.ini", tmpdir);
	nb_suite s;
	CU_ASSERT_EQUAL(nb_suite_load(path, NULL, registry(), &s, NULL, err),
			NB_EIO);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "No such file"));
	/* a folder is no suite file */
	CU_ASSERT(nb_suite_load(tmpdir, NULL, registry(), &s, NULL, err) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, tmpdir));
	/* nor is a binary file */
	static const char bin[] = "[suite]\0dataset";
	snprintf(path, sizeof path, "%s/binary.ini", tmpdir);
	FILE *f = fopen(path, "wb");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fwrite(bin, 1, sizeof bin, f);
	fclose(f);
	CU_ASSERT_EQUAL(nb_suite_load(path, NULL, registry(), &s, NULL, err),
			NB_EFORMAT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "NUL"));
}

/* ---- notes ------------------------------------------------------------------
 */

static int count(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

static void test_notes(void)
{
	char err[NB_ERR_LEN];
	const char *path = write_tmp("notes.ini", HEAD "defenses = nasty\n"
						       "[train]\n"
						       "epochs = 3\n"
						       "[train.cnn]\n"
						       "optim = adam\n"
						       "[attack.kd]\n"
						       "tau = 20\n");
	static const struct {
		const char *text;
		int times;
	} want[] = {
	    {"notes.ini: [train] momentum not set: 0.9", 1},
	    {"[train] lr not set: 0.1 (sgd default)", 1},
	    {"[train] wd not set: 0.0005 (sgd default)", 1},
	    {"[train] batch not set: 128", 1},
	    {"[train] schedule not set: constant", 1},
	    {"[suite] seeds not set: 0", 1},
	    {"[suite] name not set: notes", 1},
	    {"[suite] attacks not set", 1},
	    {"[teacher.nasty] omega not set: 0.04", 1},
	    {"[teacher.nasty] adversary not set", 1},
	    {"[train.cnn] not used", 1}, /* cnn is not in this suite */
	    {"epochs not set", 0},	 /* set in [train] */
	    {"defenses not set", 0},
	    {"[attack.kd] tau", 0},
	};
	char *buf = NULL;
	size_t len = 0;
	FILE *notes = open_memstream(&buf, &len);
	nb_suite s;
	CU_ASSERT_EQUAL_FATAL(load(path, NULL, &s, notes, err), 0);
	fclose(notes);
	for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
		int n = count(buf, want[i].text);
		if (n != want[i].times)
			fprintf(stderr, "\n  '%s' %d times in:\n%s\n",
				want[i].text, n, buf);
		CU_ASSERT_EQUAL(n, want[i].times);
	}
	free(buf);
	nb_suite_free(&s);

	/* an architecture that changes the optimiser gets that one's
	 * defaults, noted once */
	path = write_tmp("notes2.ini", "[suite]\ndataset = cifar10\n"
				       "teachers = resnet18\n"
				       "students = cnn, preresnet20\n"
				       "[train]\nlr = 0.05\n"
				       "[train.cnn]\noptim = adam\n");
	buf = NULL;
	notes = open_memstream(&buf, &len);
	CU_ASSERT_EQUAL_FATAL(load(path, NULL, &s, notes, err), 0);
	fclose(notes);
	CU_ASSERT_EQUAL(count(buf, "[train.cnn] lr not set: 0.001 (adam "
				   "default)"),
			1);
	CU_ASSERT_EQUAL(count(buf, "wd not set: 0 (adam default)"), 1);
	CU_ASSERT_EQUAL(count(buf, "momentum not set"), 1); /* sgd's only */
	CU_ASSERT_EQUAL(count(buf, "lr not set"), 1);
	free(buf);
	const nb_train_spec *sp =
	    nb_suite_train_for(&s, "cnn", NB_ROLE_STUDENT);
	CU_ASSERT_EQUAL(sp->optim.kind, NB_OPTIM_ADAM);
	CU_ASSERT_DOUBLE_EQUAL(sp->optim.lr, 1e-3, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(sp->optim.weight_decay, 0, 1e-12);
	sp = nb_suite_train_for(&s, "preresnet20", NB_ROLE_STUDENT);
	CU_ASSERT_DOUBLE_EQUAL(sp->optim.lr, 0.05, 1e-9);
	nb_suite_free(&s);
}

/* ---- finding suites and dataset presets -------------------------------------
 */

static void test_find(void)
{
	char out[4096], err[NB_ERR_LEN];
	const char *old = getenv("NASTY_BENCH_SUITES");
	char *saved = old ? strdup(old) : NULL;
	unsetenv("NASTY_BENCH_SUITES");
	/* the source tree's suites/ (the test runs uninstalled) */
	CU_ASSERT_EQUAL(nb_suite_find("fashion-mnist", out, sizeof out, err),
			0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "suites/fashion-mnist.ini"));
	/* $NASTY_BENCH_SUITES comes first */
	char dir[4200], env[4300];
	snprintf(dir, sizeof dir, "%s/find", tmpdir);
	CU_ASSERT_EQUAL_FATAL(mkdir(dir, 0700), 0);
	write_tmp("find/fashion-mnist.ini", HEAD);
	snprintf(env, sizeof env, "/nonexistent:%s", dir);
	setenv("NASTY_BENCH_SUITES", env, 1);
	CU_ASSERT_EQUAL(nb_suite_find("fashion-mnist", out, sizeof out, err),
			0);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, dir));
	/* paths are taken as they are */
	CU_ASSERT_EQUAL(
	    nb_suite_find(tu_srcpath("suites/smoke.ini"), out, sizeof out, err),
	    0);
	CU_ASSERT_STRING_EQUAL(out, tu_srcpath("suites/smoke.ini"));
	CU_ASSERT(nb_suite_find("./nope.ini", out, sizeof out, err) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "nope.ini"));
	/* an unknown name lists where it looked and what is there */
	CU_ASSERT(nb_suite_find("nope", out, sizeof out, err) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "no suite 'nope'"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, dir));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "fashion-mnist"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "cifar10"));
	/* a result that does not fit is an error, not a cut path */
	CU_ASSERT(nb_suite_find("fashion-mnist", out, 8, err) < 0);
	if (saved)
		setenv("NASTY_BENCH_SUITES", saved, 1);
	else
		unsetenv("NASTY_BENCH_SUITES");
	free(saved);
}

static const struct {
	const char *dataset;
	int pad_to, crop_pad, flip;
	float mean0, std2;
} presets[] = {
    {"fashion-mnist", 32, 0, 0, 0.2860f, 1.0f},
    {"mnist", 32, 0, 0, 0.1307f, 1.0f},
    {"cifar10", 0, 4, 1, 0.4914f, 0.261f},
    {"cifar100", 0, 4, 1, 0.4914f, 0.261f},
    {"cifar100-coarse", 0, 4, 1, 0.4914f, 0.261f},
    {"tiny-imagenet", 0, 0, 1, 0.4802f, 0.2262f},
    {"unknown", 0, 0, 0, 0.0f, 1.0f},
};

static void test_presets(void)
{
	for (size_t i = 0; i < sizeof presets / sizeof *presets; i++) {
		nb_augment a;
		nb_dataset_preset(presets[i].dataset, &a);
		CU_ASSERT_EQUAL(a.pad_to, presets[i].pad_to);
		CU_ASSERT_EQUAL(a.crop_pad, presets[i].crop_pad);
		CU_ASSERT_EQUAL(a.flip, presets[i].flip);
		CU_ASSERT_DOUBLE_EQUAL(a.mean[0], presets[i].mean0, 1e-7);
		CU_ASSERT_DOUBLE_EQUAL(a.std[2], presets[i].std2, 1e-7);
	}
}

static const nb_test_entry tests[] = {
    {"shipped suites load in every tier", test_shipped_every_tier},
    {"shipped suites hold the paper's schedules", test_shipped_values},
    {"shipped suites hold the paper's tau, omega, alpha", test_shipped_plugins},
    {"shipped suites run dafl with DAFL's values in the paper tier",
     test_shipped_dafl},
    {"precedence: train < role < arch < tier", test_precedence},
    {"lists, schedules, continuation lines", test_values},
    {"bad suites fail with file:line", test_bad_suites},
    {"missing, folder and binary files", test_missing_file},
    {"notes name each default once", test_notes},
    {"nb_suite_find search order", test_find},
    {"dataset presets", test_presets},
    {NULL, NULL}};

void nb_test_suite(void)
{
	CU_pSuite s = CU_add_suite("suite", suite_init, suite_clean);
	if (!s)
		return;
	for (const nb_test_entry *t = tests; t->name; t++)
		CU_add_test(s, t->name, t->fn);
}
