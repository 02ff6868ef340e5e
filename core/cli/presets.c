/*
 * presets.c - command-line helpers shared by the subcommands: dataset
 * preprocessing presets, the plugin registry, input-shape parsing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "suite.h"

void cli_dataset_augment(const char *name, nb_augment *aug)
{
	nb_dataset_preset(name, aug);
}

int cli_parse_input(const char *s, int *c, int *h, int *w)
{
	char tail;
	if (!s || sscanf(s, "%dx%dx%d%c", c, h, w, &tail) != 3 || *c <= 0 ||
	    *h <= 0 || *w <= 0 || *c > 4096 || *h > 65536 || *w > 65536)
		return -1;
	return 0;
}

#define MAX_DIRS 32
static const char *plugin_dirs[MAX_DIRS];
static int n_plugin_dirs;
static nb_registry *registry;

void cli_add_plugin_dir(const char *dir)
{
	if (n_plugin_dirs < MAX_DIRS)
		plugin_dirs[n_plugin_dirs++] = dir;
}

static void free_registry(void)
{
	nb_registry_free(registry);
	registry = NULL;
}

nb_registry *cli_registry(void)
{
	if (registry)
		return registry;
	char err[NB_ERR_LEN];
	nb_registry *r = nb_registry_new();
	if (!r) {
		cli_error("out of memory");
		return NULL;
	}
	for (int i = 0; i < n_plugin_dirs; i++)
		if (nb_registry_load_dir(r, plugin_dirs[i], err) < 0)
			goto fail;
	if (nb_registry_load_defaults(r, err) < 0)
		goto fail;
	registry = r;
	atexit(free_registry);
	return registry;
fail:
	cli_error("%s", err);
	nb_registry_free(r);
	return NULL;
}

const nb_plugin *cli_find_arch(nb_registry *reg, const char *name)
{
	const nb_plugin *p = nb_registry_find(reg, NB_PLUGIN_ARCH, name);
	if (p)
		return p;
	char list[1024] = "";
	size_t len = 0;
	for (int i = 0; i < nb_registry_count(reg); i++) {
		const nb_plugin *q = nb_registry_get(reg, i);
		if (q->kind != NB_PLUGIN_ARCH)
			continue;
		int w = snprintf(list + len, sizeof list - len, "%s%s",
				 len ? ", " : "", q->name);
		if (w < 0 || (size_t)w >= sizeof list - len)
			break;
		len += (size_t)w;
	}
	cli_error("unknown architecture '%s' (known: %s)", name,
		  len ? list : "none; is the plugin folder empty?");
	return NULL;
}
