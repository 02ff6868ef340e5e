/*
 * registry.c - loads plugins with dlopen and checks each one completely at
 * load time (see registry.h): file and folder permissions, the exported
 * descriptor, ABI version and struct sizes, required hooks, option tables,
 * and unique names. A plugin that fails any check is unloaded again and the
 * load reports why in one line.
 *
 * What it deliberately does not do: search paths found in suites or
 * checkpoints, load plugins lazily, or unload single plugins.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "registry.h"

#ifndef NB_PLUGIN_DIR
#define NB_PLUGIN_DIR "/usr/local/lib/nasty-bench/plugins"
#endif
#ifndef NB_BUILD_DIR
#define NB_BUILD_DIR ""
#endif

typedef struct entry {
	const nb_plugin *p;
	void *handle;
	char *path;
} entry;

struct nb_registry {
	entry *e;
	int n, cap;
};

nb_registry *nb_registry_new(void)
{
	return calloc(1, sizeof(nb_registry));
}

void nb_registry_free(nb_registry *r)
{
	if (!r)
		return;
	for (int i = 0; i < r->n; i++) {
		dlclose(r->e[i].handle);
		free(r->e[i].path);
	}
	free(r->e);
	free(r);
}

const char *nb_plugin_kind_name(enum nb_plugin_kind kind)
{
	switch (kind) {
	case NB_PLUGIN_ARCH:
		return "arch";
	case NB_PLUGIN_TEACHER:
		return "teacher";
	case NB_PLUGIN_ATTACK:
		return "attack";
	}
	return "unknown";
}

int nb_registry_count(const nb_registry *r)
{
	return r->n;
}

const nb_plugin *nb_registry_get(const nb_registry *r, int i)
{
	return i >= 0 && i < r->n ? r->e[i].p : NULL;
}

const char *nb_registry_path(const nb_registry *r, int i)
{
	return i >= 0 && i < r->n ? r->e[i].path : NULL;
}

static int answers_to(const nb_plugin *p, const char *name)
{
	if (!strcmp(p->name, name))
		return 1;
	for (const char *const *a = p->aliases; a && *a; a++)
		if (!strcmp(*a, name))
			return 1;
	return 0;
}

const nb_plugin *nb_registry_find(const nb_registry *r,
				  enum nb_plugin_kind kind, const char *name)
{
	for (int i = 0; i < r->n; i++)
		if (r->e[i].p->kind == kind && answers_to(r->e[i].p, name))
			return r->e[i].p;
	return NULL;
}

/* ---- checks -------------------------------------------------------------------- */

/* Other users may write to st when it is world-writable, or group-writable
 * by a group other than the owner's own (user private groups are fine), or
 * when it belongs to someone who is neither root nor us. */
static const char *unsafe_reason(const struct stat *st)
{
	if (st->st_mode & S_IWOTH)
		return "it is writable by every user";
	if (st->st_mode & S_IWGRP) {
		struct passwd *pw = getpwuid(st->st_uid);
		if (!pw || pw->pw_gid != st->st_gid)
			return "it is writable by its group";
	}
	if (st->st_uid != 0 && st->st_uid != geteuid())
		return "it belongs to another user";
	return NULL;
}

static int check_safe(const char *path, int want_dir, char *err)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return nb_errorf(err, NB_EIO, "%s: %s", path, strerror(errno));
	if (want_dir && !S_ISDIR(st.st_mode))
		return nb_errorf(err, NB_EINVAL, "%s: not a folder", path);
	if (!want_dir && !S_ISREG(st.st_mode))
		return nb_errorf(err, NB_EINVAL, "%s: not a regular file", path);
	const char *why = unsafe_reason(&st);
	if (why)
		return nb_errorf(err, NB_EINVAL,
				 "%s: refusing to load plugins from it: %s (plugins are code; fix with chmod go-w or chown)",
				 path, why);
	return 0;
}

static int valid_name(const char *s)
{
	if (!s || !*s || strlen(s) > 64)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
		      *s == '-' || *s == '_' || *s == '.'))
			return 0;
	return 1;
}

/* Names the first struct whose size differs. */
static int check_sizes(const char *path, const nb_abi_sizes *got, char *err)
{
	static const nb_abi_sizes want = NB_ABI_SIZES;
	static const char *const names[] = {
		"nb_plugin",       "nb_option",        "nb_arch_ops",
		"nb_arch_args",    "nb_teacher_ops",   "nb_teacher_env",
		"nb_attack_ops",   "nb_attack_env",    "nb_batch",
		"nb_loss_terms",   "nb_dataset",       "nb_param",
		"nb_train_config", "nb_train_result", "nb_augment",
		"nb_synth_plan"};
	const uint32_t *g = (const uint32_t *)got, *w = (const uint32_t *)&want;
	for (size_t i = 0; i < sizeof want / sizeof(uint32_t); i++)
		if (g[i] != w[i])
			return nb_errorf(err, NB_EINVAL,
					 "%s: built against other nasty-bench headers (%s is %u bytes there, %u here): rebuild the plugin against nasty-bench %s",
					 path, names[i], g[i], w[i],
					 PACKAGE_VERSION);
	return 0;
}

static int check_hooks(const char *path, const nb_plugin *p, char *err)
{
	const char *missing = NULL;
	switch (p->kind) {
	case NB_PLUGIN_ARCH:
		if (!p->arch)
			missing = ".arch";
		else if (!p->arch->build)
			missing = ".arch->build";
		break;
	case NB_PLUGIN_TEACHER:
		if (!p->teacher)
			missing = ".teacher";
		else if (!p->teacher->loss)
			missing = ".teacher->loss";
		break;
	case NB_PLUGIN_ATTACK:
		if (!p->attack)
			missing = ".attack";
		else if (!p->attack->loss)
			missing = ".attack->loss";
		else if (!(p->attack->access & NB_ACCESS_TRAIN_DATA) &&
			 (!p->attack->synth || !p->attack->plan))
			missing = ".attack->synth and .attack->plan (it "
				  "declares no training-data access, so it is "
				  "data-free)";
		else if (!p->attack->save != !p->attack->load)
			missing = ".attack->save and .attack->load (one "
				  "without the other)";
		else if (p->attack->access & ~(unsigned)(NB_ACCESS_OUTPUTS |
				NB_ACCESS_GRADIENTS | NB_ACCESS_FEATURES |
				NB_ACCESS_BN_STATS | NB_ACCESS_TRAIN_DATA))
			return nb_errorf(err, NB_EINVAL,
					 "%s: attack plugin '%s' declares "
					 "unknown access bits 0x%x: fix the "
					 "descriptor and rebuild",
					 path, p->name, p->attack->access);
		break;
	default:
		return nb_errorf(err, NB_EINVAL,
				 "%s: plugin '%s' has unknown kind %d: fix the descriptor and rebuild",
				 path, p->name, (int)p->kind);
	}
	if (missing)
		return nb_errorf(err, NB_EINVAL,
				 "%s: %s plugin '%s' lacks the required hook %s: fix the descriptor and rebuild",
				 path, nb_plugin_kind_name(p->kind), p->name,
				 missing);
	return 0;
}

static size_t opt_size(enum nb_opt_type t)
{
	switch (t) {
	case NB_OPT_INT:
	case NB_OPT_BOOL:
		return sizeof(int);
	case NB_OPT_FLOAT:
		return sizeof(double);
	case NB_OPT_STRING:
		return NB_OPT_STRING_LEN;
	}
	return 0;
}

static int check_options(const char *path, const nb_plugin *p, char *err)
{
	if (!p->options)
		return 0;
	for (const nb_option *o = p->options; o->name; o++) {
		size_t sz = opt_size(o->type);
		if (!valid_name(o->name) || !sz || !o->def || !o->help ||
		    o->offset + sz > p->opts_size)
			return nb_errorf(err, NB_EINVAL,
					 "%s: plugin '%s': option '%s' is malformed (name, type, default, help, or offset past opts_size %zu): fix the table and rebuild",
					 path, p->name, o->name, p->opts_size);
		for (const nb_option *q = p->options; q < o; q++)
			if (!strcmp(q->name, o->name))
				return nb_errorf(err, NB_EINVAL,
						 "%s: plugin '%s': option '%s' is listed twice",
						 path, p->name, o->name);
	}
	/* every default must parse */
	char e2[NB_ERR_LEN];
	void *opts = nb_options_new(p, e2);
	if (!opts)
		return nb_errorf(err, NB_EINVAL, "%s: %s", path, e2);
	free(opts);
	return 0;
}

static int check_unique(const nb_registry *r, const char *path,
			const nb_plugin *p, char *err)
{
	for (int i = 0; i < r->n; i++) {
		const nb_plugin *q = r->e[i].p;
		if (q->kind != p->kind)
			continue;
		const char *clash = NULL;
		if (answers_to(q, p->name))
			clash = p->name;
		for (const char *const *a = p->aliases; !clash && a && *a; a++)
			if (answers_to(q, *a))
				clash = *a;
		if (clash)
			return nb_errorf(err, NB_EINVAL,
					 "%s: %s plugin name '%s' is already taken by %s: remove or rename one of them",
					 path, nb_plugin_kind_name(p->kind), clash,
					 r->e[i].path);
	}
	return 0;
}

int nb_registry_load_file(nb_registry *r, const char *path, char *err)
{
	int rc = check_safe(path, 0, err);
	if (rc < 0)
		return rc;
	dlerror();
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		const char *why = dlerror();
		return nb_errorf(err, NB_EIO,
				 "%s: cannot load: %s (check its library dependencies with: ldd %s)",
				 path, why ? why : "unknown error", path);
	}
	const nb_plugin *p = dlsym(h, NB_PLUGIN_SYMBOL);
	if (!p) {
		rc = nb_errorf(err, NB_EINVAL,
			       "%s: not a nasty-bench plugin (it exports no %s)",
			       path, NB_PLUGIN_SYMBOL);
		goto fail;
	}
	if (p->abi_version != NB_PLUGIN_ABI_VERSION) {
		rc = nb_errorf(err, NB_EINVAL,
			       "%s: plugin ABI version %u, but this nasty-bench %s speaks version %d: rebuild the plugin against its headers",
			       path, p->abi_version, PACKAGE_VERSION,
			       NB_PLUGIN_ABI_VERSION);
		goto fail;
	}
	if ((rc = check_sizes(path, &p->sizes, err)) < 0)
		goto fail;
	if (!valid_name(p->name)) {
		rc = nb_errorf(err, NB_EINVAL,
			       "%s: plugin name '%s' is empty or not [a-z0-9_.-]: fix the descriptor and rebuild",
			       path, p->name ? p->name : "(null)");
		goto fail;
	}
	for (const char *const *a = p->aliases; a && *a; a++)
		if (!valid_name(*a)) {
			rc = nb_errorf(err, NB_EINVAL,
				       "%s: plugin '%s' has a bad alias '%s'",
				       path, p->name, *a);
			goto fail;
		}
	if (!p->summary) {
		rc = nb_errorf(err, NB_EINVAL,
			       "%s: plugin '%s' has no summary: fix the descriptor and rebuild",
			       path, p->name);
		goto fail;
	}
	if ((rc = check_hooks(path, p, err)) < 0 ||
	    (rc = check_options(path, p, err)) < 0 ||
	    (rc = check_unique(r, path, p, err)) < 0)
		goto fail;
	if (r->n == r->cap) {
		int cap = r->cap ? r->cap * 2 : 32;
		entry *e = realloc(r->e, (size_t)cap * sizeof *e);
		if (!e) {
			rc = nb_errorf(err, NB_ENOMEM, "out of memory");
			goto fail;
		}
		r->e = e;
		r->cap = cap;
	}
	char *copy = strdup(path);
	if (!copy) {
		rc = nb_errorf(err, NB_ENOMEM, "out of memory");
		goto fail;
	}
	r->e[r->n++] = (entry){p, h, copy};
	return 0;
fail:
	dlclose(h);
	return rc;
}

static int is_plugin_file(const struct dirent *d)
{
	size_t n = strlen(d->d_name);
	return d->d_name[0] != '.' && n > 3 &&
	       !strcmp(d->d_name + n - 3, ".so");
}

int nb_registry_load_dir(nb_registry *r, const char *dir, char *err)
{
	int rc = check_safe(dir, 1, err);
	if (rc < 0)
		return rc;
	struct dirent **list;
	int n = scandir(dir, &list, is_plugin_file, alphasort);
	if (n < 0)
		return nb_errorf(err, NB_EIO, "%s: cannot list: %s", dir,
				 strerror(errno));
	rc = 0;
	for (int i = 0; i < n; i++) {
		if (rc == 0) {
			char path[PATH_MAX];
			if ((size_t)snprintf(path, sizeof path, "%s/%s", dir,
					     list[i]->d_name) >= sizeof path)
				rc = nb_errorf(err, NB_EINVAL,
					       "%s/%s: path too long", dir,
					       list[i]->d_name);
			else
				rc = nb_registry_load_file(r, path, err);
		}
		free(list[i]);
	}
	free(list);
	return rc;
}

const char *nb_registry_build_dirs(void)
{
	static char dirs[3 * PATH_MAX];
	if (!dirs[0])
		snprintf(dirs, sizeof dirs,
			 "%s/plugins/arch/.libs:%s/plugins/teacher/.libs:%s/plugins/attack/.libs",
			 NB_BUILD_DIR, NB_BUILD_DIR, NB_BUILD_DIR);
	return dirs;
}

const char *nb_registry_install_dir(void)
{
	return NB_PLUGIN_DIR;
}

/* Loads each existing folder of a colon-separated list; missing folders
 * are an error only when `strict`. */
static int load_list(nb_registry *r, const char *list, int strict, char *err)
{
	char *copy = strdup(list), *save = NULL;
	if (!copy)
		return nb_errorf(err, NB_ENOMEM, "out of memory");
	int rc = 0;
	for (char *d = strtok_r(copy, ":", &save); d && rc == 0;
	     d = strtok_r(NULL, ":", &save)) {
		struct stat st;
		if (!strict && stat(d, &st) != 0)
			continue;
		rc = nb_registry_load_dir(r, d, err);
	}
	free(copy);
	return rc;
}

/* The program runs uninstalled when its executable lives in the build
 * tree (libtool puts the real binary in .libs). */
static int running_uninstalled(void)
{
	char exe[PATH_MAX], build[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0 || !NB_BUILD_DIR[0] || !realpath(NB_BUILD_DIR, build))
		return 0;
	exe[n] = 0;
	char *slash = strrchr(exe, '/');
	if (!slash)
		return 0;
	*slash = 0;
	size_t bl = strlen(build);
	if (strncmp(exe, build, bl) != 0)
		return 0;
	return exe[bl] == 0 || !strcmp(exe + bl, "/.libs");
}

int nb_registry_load_defaults(nb_registry *r, char *err)
{
	const char *env = getenv("NASTY_BENCH_PLUGIN_PATH");
	int rc = 0;
	if (env && *env && (rc = load_list(r, env, 1, err)) < 0)
		return rc;
	if (running_uninstalled())
		return load_list(r, nb_registry_build_dirs(), 0, err);
	struct stat st;
	if (stat(NB_PLUGIN_DIR, &st) != 0)
		return nb_errorf(err, NB_EIO,
				 "%s: no plugin folder (run make install, or use --plugin-dir)",
				 NB_PLUGIN_DIR);
	return nb_registry_load_dir(r, NB_PLUGIN_DIR, err);
}

int nb_arch_build(const nb_plugin *arch, const void *opts, int c, int h,
		  int w, int classes, uint64_t seed, nb_net **out, char *err)
{
	*out = NULL;
	if (!arch || arch->kind != NB_PLUGIN_ARCH)
		return nb_errorf(err, NB_EINVAL, "not an architecture plugin");
	if (c <= 0 || h <= 0 || w <= 0 || classes < 1)
		return nb_errorf(err, NB_EINVAL,
				 "%s: bad input %dx%dx%d or %d classes",
				 arch->name, c, h, w, classes);
	void *own = NULL;
	if (!opts && arch->options) {
		own = nb_options_new(arch, err);
		if (!own)
			return NB_EINVAL;
		opts = own;
	}
	nb_arch_args a = {c, h, w, classes, opts};
	nb_net *net = NULL;
	int rc = arch->arch->build(&a, &net, err);
	free(own);
	if (rc < 0) {
		nb_net_free(net);
		return rc;
	}
	if (!net)
		return nb_errorf(err, NB_EINVAL,
				 "%s: build returned no network", arch->name);
	int oc, oh, ow;
	nb_net_node_shape(net, nb_net_output_node(net), &oc, &oh, &ow);
	if (oc * oh * ow != classes) {
		nb_net_free(net);
		return nb_errorf(err, NB_EINVAL,
				 "%s: the network ends in %dx%dx%d values, not %d class scores",
				 arch->name, oc, oh, ow, classes);
	}
	if ((rc = nb_net_finalize(net, seed, err)) < 0) {
		nb_net_free(net);
		return rc;
	}
	*out = net;
	return 0;
}
