/*
 * plugin_test.c - the plugin loader and options: every shipped plugin and
 * the skeletons load; deliberately broken plugins are refused, each with a
 * message that says what is wrong; files and folders others can write to
 * are refused; options are parsed from text with their types and ranges;
 * a wrapped teacher hands out only what the access bits allow.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registry.h"
#include "testutil.h"

#ifndef NB_BUILD_DIR
#define NB_BUILD_DIR "."
#endif

static const char *test_plugin(const char *name)
{
	static char path[4096];
	snprintf(path, sizeof path, "%s/tests/plugins/.libs/%s.so",
		 NB_BUILD_DIR, name);
	return path;
}

static void shipped_plugins_load(void)
{
	nb_registry *r = tu_registry();
	CU_ASSERT_FATAL(nb_registry_count(r) >= 3);
	const char *archs[] = {"lenet5", "lenet5-half", "convstack"};
	for (int i = 0; i < 3; i++) {
		const nb_plugin *p = nb_registry_find(r, NB_PLUGIN_ARCH, archs[i]);
		CU_ASSERT_PTR_NOT_NULL(p);
		if (p)
			CU_ASSERT_STRING_EQUAL(p->name, archs[i]);
	}
	CU_ASSERT_PTR_NULL(nb_registry_find(r, NB_PLUGIN_ARCH, "no-such"));
	CU_ASSERT_PTR_NULL(nb_registry_find(r, NB_PLUGIN_ATTACK, "lenet5"));
	for (int i = 0; i < nb_registry_count(r); i++)
		CU_ASSERT_PTR_NOT_NULL(strstr(nb_registry_path(r, i), ".so"));
}

static void skeletons_load_and_work(void)
{
	char err[NB_ERR_LEN];
	nb_registry *r = nb_registry_new();
	const char *names[] = {"skeleton-arch", "skeleton-teacher",
			       "skeleton-attack"};
	for (int i = 0; i < 3; i++) {
		int rc = nb_registry_load_file(r, test_plugin(names[i]), err);
		if (rc < 0)
			fprintf(stderr, "\n  %s\n", err);
		CU_ASSERT_EQUAL_FATAL(rc, 0);
	}
	const nb_plugin *arch = nb_registry_find(r, NB_PLUGIN_ARCH, "skeleton-arch");
	CU_ASSERT_PTR_NOT_NULL_FATAL(arch);
	void *opts = nb_options_new(arch, err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(opts);
	CU_ASSERT_EQUAL(nb_options_parse(arch, opts, " hidden = 8 , act=tanh", err), 0);
	nb_net *net;
	CU_ASSERT_EQUAL_FATAL(nb_arch_build(arch, opts, 1, 4, 4, 3, 1, &net, err), 0);
	CU_ASSERT_EQUAL(nb_net_param_count(net), 16 * 8 + 8 + 8 * 3 + 3);
	nb_net_free(net);
	CU_ASSERT(nb_options_set(arch, opts, "act", "sigmoid", err) == 0);
	CU_ASSERT(nb_arch_build(arch, opts, 1, 4, 4, 3, 1, &net, err) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "sigmoid"));
	CU_ASSERT_PTR_NULL(net);
	free(opts);
	CU_ASSERT_PTR_NOT_NULL(nb_registry_find(r, NB_PLUGIN_TEACHER, "skeleton-teacher"));
	CU_ASSERT_PTR_NOT_NULL(nb_registry_find(r, NB_PLUGIN_ATTACK, "skeleton-attack"));
	/* the same plugin twice is a duplicate */
	CU_ASSERT(nb_registry_load_file(r, test_plugin("skeleton-arch"), err) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "already taken"));
	nb_registry_free(r);
}

static void options_parse_types_and_ranges(void)
{
	char err[NB_ERR_LEN], buf[64];
	nb_registry *r = nb_registry_new();
	CU_ASSERT_EQUAL_FATAL(nb_registry_load_file(r, test_plugin("skeleton-arch"), err), 0);
	const nb_plugin *p = nb_registry_get(r, 0);
	void *o = nb_options_new(p, err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(o);
	const nb_option *hidden = &p->options[0], *drop = &p->options[1];
	const nb_option *bias = &p->options[2], *act = &p->options[3];
	nb_options_format(hidden, o, buf, sizeof buf);
	CU_ASSERT_STRING_EQUAL(buf, "128");
	nb_options_format(bias, o, buf, sizeof buf);
	CU_ASSERT_STRING_EQUAL(buf, "true");
	CU_ASSERT_EQUAL(nb_options_set(p, o, "dropout", "0.25", err), 0);
	nb_options_format(drop, o, buf, sizeof buf);
	CU_ASSERT_STRING_EQUAL(buf, "0.25");
	CU_ASSERT_EQUAL(nb_options_set(p, o, "bias", "off", err), 0);
	nb_options_format(bias, o, buf, sizeof buf);
	CU_ASSERT_STRING_EQUAL(buf, "false");
	CU_ASSERT_EQUAL(nb_options_set(p, o, "act", "tanh", err), 0);
	nb_options_format(act, o, buf, sizeof buf);
	CU_ASSERT_STRING_EQUAL(buf, "tanh");
	struct {
		const char *key, *value, *needle;
	} bad[] = {{"hiden", "3", "no option 'hiden'"},
		   {"hidden", "3x", "not a whole number"},
		   {"hidden", "0", "outside [1, 65536]"},
		   {"hidden", "99999999999", "not a whole number"},
		   {"dropout", "nan", "not a finite number"},
		   {"dropout", "1.5", "outside [0, 1]"},
		   {"dropout", "", "not a finite number"},
		   {"bias", "maybe", "true/false"},
		   {"act", NULL, "longer than"}};
	char longv[300];
	memset(longv, 'a', sizeof longv - 1);
	longv[sizeof longv - 1] = 0;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = 0;
		CU_ASSERT(nb_options_set(p, o, bad[i].key,
					 bad[i].value ? bad[i].value : longv,
					 err) < 0);
		if (!strstr(err, bad[i].needle))
			fprintf(stderr, "\n  option case %zu: '%s'\n", i, err);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, bad[i].needle));
		CU_ASSERT_PTR_NOT_NULL(strstr(err, "skeleton-arch"));
	}
	/* a failed set leaves the value alone */
	nb_options_format(hidden, o, buf, sizeof buf);
	CU_ASSERT_STRING_EQUAL(buf, "128");
	CU_ASSERT(nb_options_parse(p, o, "hidden=4,act", err) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "key=value"));
	free(o);
	nb_registry_free(r);
}

static void broken_plugins_refused(void)
{
	struct {
		const char *file, *needle;
	} cases[] = {
		{"broken-abi", "ABI version 42"},
		{"broken-size", "nb_dataset is"},
		{"broken-hook", "required hook .arch->build"},
		{"broken-nosym", "exports no nb_plugin_desc"},
		{"broken-dup", "already taken by"},
		{"broken-option", "default of"},
		{"broken-undef", "ldd"},
		{"broken-datafree", ".attack->synth and .attack->plan"},
		{"does-not-exist", "No such file"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char err[NB_ERR_LEN] = "";
		nb_registry *r = nb_registry_new();
		/* the duplicate needs the real lenet5 loaded first */
		if (!strcmp(cases[i].file, "broken-dup")) {
			char dir[4096];
			snprintf(dir, sizeof dir, "%s/plugins/arch/.libs",
				 NB_BUILD_DIR);
			CU_ASSERT_EQUAL_FATAL(nb_registry_load_dir(r, dir, err), 0);
		}
		int n = nb_registry_count(r);
		const char *path = test_plugin(cases[i].file);
		CU_ASSERT(nb_registry_load_file(r, path, err) < 0);
		CU_ASSERT_EQUAL(nb_registry_count(r), n);
		if (!strstr(err, cases[i].needle))
			fprintf(stderr, "\n  %s: '%s'\n", cases[i].file, err);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, cases[i].needle));
		CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
		CU_ASSERT_PTR_NULL(strchr(err, '\n'));
		nb_registry_free(r);
	}
	/* a folder with one broken plugin fails as a whole, naming it */
	char *dir = tu_mkdtemp(), cmd[16384], err[NB_ERR_LEN];
	char *good = strdup(test_plugin("skeleton-arch"));
	snprintf(cmd, sizeof cmd, "cp %s %s/ && cp %s %s/", good, dir,
		 test_plugin("broken-hook"), dir);
	free(good);
	CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
	nb_registry *r = nb_registry_new();
	CU_ASSERT(nb_registry_load_dir(r, dir, err) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "broken-hook.so"));
	nb_registry_free(r);
	tu_rmtree(dir);
	free(dir);
}

static void writable_by_others_refused(void)
{
	char err[NB_ERR_LEN], cmd[16384], path[8192];
	char *dir = tu_mkdtemp();
	snprintf(cmd, sizeof cmd, "cp %s %s/", test_plugin("skeleton-arch"), dir);
	CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
	snprintf(path, sizeof path, "%s/skeleton-arch.so", dir);
	nb_registry *r = nb_registry_new();
	CU_ASSERT_EQUAL(nb_registry_load_dir(r, dir, err), 0);
	nb_registry_free(r);

	chmod(path, 0777);
	r = nb_registry_new();
	CU_ASSERT(nb_registry_load_dir(r, dir, err) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "writable by every user"));
	nb_registry_free(r);
	chmod(path, 0755);

	chmod(dir, 0777);
	r = nb_registry_new();
	CU_ASSERT(nb_registry_load_dir(r, dir, err) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "refusing"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, dir));
	nb_registry_free(r);
	chmod(dir, 0700);

	/* group-writable by a group that is not the owner's own */
	if (geteuid() == 0 && chown(path, 0, 4242) == 0) {
		chmod(path, 0775);
		r = nb_registry_new();
		CU_ASSERT(nb_registry_load_file(r, path, err) < 0);
		CU_ASSERT_PTR_NOT_NULL(strstr(err, "writable by its group"));
		nb_registry_free(r);
	}
	tu_rmtree(dir);
	free(dir);
}

static void teacher_access(void)
{
	char err[NB_ERR_LEN];
	nb_registry *r = nb_registry_new();
	CU_ASSERT_EQUAL_FATAL(nb_registry_load_file(r, test_plugin("skeleton-teacher"), err), 0);
	const nb_plugin *tp = nb_registry_get(r, 0);
	void *opts = nb_options_new(tp, err);
	CU_ASSERT_EQUAL(nb_options_set(tp, opts, "release_temperature", "2", err), 0);
	void *state = NULL;
	nb_net *net = nb_net_new(1, 2, 2);
	int x = nb_net_add_flatten(net, 0, err);
	x = nb_net_add_linear(net, x, "fc", 3, 1, NB_INIT_DEFAULT, err);
	CU_ASSERT_EQUAL_FATAL(nb_net_finalize(net, 1, err), 0);
	nb_teacher_env env = {net, NULL, NULL, 3, 1};
	CU_ASSERT_EQUAL_FATAL(tp->teacher->init(opts, &env, &state, err), 0);
	float in[8] = {1, 2, 3, 4, -1, 0.5f, 2, 0}, raw[6], rel[6];
	CU_ASSERT_EQUAL(nb_net_forward(net, in, 2, err), 0);
	memcpy(raw, nb_net_output(net, x), sizeof raw);
	nb_teacher *black = nb_teacher_wrap(net, tp->teacher, state,
					    NB_ACCESS_OUTPUTS, err);
	CU_ASSERT_EQUAL(nb_teacher_query(black, in, 2, rel, err), 0);
	for (int i = 0; i < 6; i++)
		CU_ASSERT_DOUBLE_EQUAL(rel[i], raw[i] / 2, 1e-6);
	CU_ASSERT_PTR_NULL(nb_teacher_network(black));
	CU_ASSERT_EQUAL(nb_teacher_classes(black), 3);
	nb_teacher *white = nb_teacher_wrap(net, NULL, NULL,
					    NB_ACCESS_OUTPUTS | NB_ACCESS_GRADIENTS,
					    err);
	CU_ASSERT_PTR_EQUAL(nb_teacher_network(white), net);
	CU_ASSERT_EQUAL(nb_teacher_query(white, in, 2, rel, err), 0);
	CU_ASSERT_EQUAL(tu_max_abs_diff(rel, raw, 6), 0.0);
	/* the wrapped teacher is frozen */
	CU_ASSERT(nb_net_param(net, "fc.weight")->frozen);
	nb_teacher_free(black);
	nb_teacher_free(white);
	tp->teacher->fini(state);
	free(opts);
	nb_net_free(net);
	nb_registry_free(r);
}

static const nb_test_entry tests[] = {
	{"the shipped plugins load", shipped_plugins_load},
	{"the skeletons load and work", skeletons_load_and_work},
	{"options: types, ranges, errors", options_parse_types_and_ranges},
	{"broken plugins are refused with a reason",
	 broken_plugins_refused},
	{"plugins others can write to are refused",
	 writable_by_others_refused},
	{"a teacher gives only the access granted", teacher_access},
	{NULL, NULL}};

void nb_test_plugin(void)
{
	nb_test_add_suite("plugin", tests);
}
