/*
 * registry.h - finding, loading and checking plugins, filling their
 * options, and building networks from architecture plugins.
 *
 * Plugins are loaded only from the folders the user named (--plugin-dir,
 * NASTY_BENCH_PLUGIN_PATH) and the program's own plugin folder (the install
 * folder, or the build tree when the program runs uninstalled), never from
 * a path found inside a suite or checkpoint. A folder or file that other
 * users can write to is refused.
 *
 * Every check happens at load time, each failure a one-line message that
 * says what to rebuild: a wrong ABI version, a struct size that differs
 * from the core's, a missing required hook, a duplicate name or alias, a
 * library dependency that cannot be resolved (dlerror, and the hint to run
 * ldd). Nothing is re-checked later.
 */
#ifndef NASTY_BENCH_REGISTRY_H
#define NASTY_BENCH_REGISTRY_H

#include <stdint.h>

#include "plugin.h"

typedef struct nb_registry nb_registry;

nb_registry *nb_registry_new(void);
/* Unloads every plugin: no descriptor from it may be used afterwards. */
void nb_registry_free(nb_registry *r);

/* Loads every plugin (*.so) in dir. */
int nb_registry_load_dir(nb_registry *r, const char *dir, char *err);
/* Loads one plugin file. */
int nb_registry_load_file(nb_registry *r, const char *path, char *err);
/* Loads the default folders: each folder of NASTY_BENCH_PLUGIN_PATH
 * (colon-separated), then the program's own plugin folder. */
int nb_registry_load_defaults(nb_registry *r, char *err);
/* The program's own plugin folder(s) in the build tree (for tests and an
 * uninstalled program), colon-separated, and the install folder. */
const char *nb_registry_build_dirs(void);
const char *nb_registry_install_dir(void);

int nb_registry_count(const nb_registry *r);
const nb_plugin *nb_registry_get(const nb_registry *r, int i);
/* The file the i-th plugin was loaded from. */
const char *nb_registry_path(const nb_registry *r, int i);
/* By name or alias; NULL if none. */
const nb_plugin *nb_registry_find(const nb_registry *r,
				  enum nb_plugin_kind kind, const char *name);
/* "arch", "teacher", "attack". */
const char *nb_plugin_kind_name(enum nb_plugin_kind kind);

/*
 * Options. nb_options_new allocates the plugin's options struct filled with
 * its defaults (free with free()); nb_options_set parses one key=value into
 * it (unknown key, bad value or out-of-range value: error naming the
 * plugin, the key and what is allowed).
 */
void *nb_options_new(const nb_plugin *p, char *err);
int nb_options_set(const nb_plugin *p, void *opts, const char *key,
		   const char *value, char *err);
/* Parses "key=value,key=value" (or one pair) into opts. */
int nb_options_parse(const nb_plugin *p, void *opts, const char *list,
		     char *err);
/* The current value of option o in opts as text. */
void nb_options_format(const nb_option *o, const void *opts, char *buf,
		       size_t len);

/*
 * Builds and finalises an architecture for (c,h,w) inputs and `classes`
 * outputs, parameters initialised from seed. opts NULL = the defaults.
 */
int nb_arch_build(const nb_plugin *arch, const void *opts, int c, int h,
		  int w, int classes, uint64_t seed, nb_net **out, char *err);

/*
 * The teacher an attack sees (plugin.h): wraps a trained teacher network
 * with its strategy's release transform (strategy may be NULL) and grants
 * the access bits the attack declared. The network stays owned by the
 * caller and must outlive the wrapper; it is put in evaluation mode.
 */
nb_teacher *nb_teacher_wrap(nb_net *net, const nb_teacher_ops *strategy,
			    void *strategy_state, unsigned access, char *err);
void nb_teacher_free(nb_teacher *t);

#endif
