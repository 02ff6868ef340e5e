/*
 * plugins_cmd.c - `nasty-bench --list-plugins` and `--plugin-help NAME`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *type_name(enum nb_opt_type t)
{
	switch (t) {
	case NB_OPT_INT:
		return "int";
	case NB_OPT_FLOAT:
		return "float";
	case NB_OPT_BOOL:
		return "bool";
	case NB_OPT_STRING:
		return "string";
	}
	return "?";
}

static void print_aliases(const nb_plugin *p)
{
	if (!p->aliases || !p->aliases[0])
		return;
	printf(" (alias");
	for (const char *const *a = p->aliases; *a; a++)
		printf(" %s", *a);
	printf(")");
}

int cmd_list_plugins(void)
{
	nb_registry *reg = cli_registry();
	if (!reg)
		return 2;
	static const enum nb_plugin_kind kinds[] = {
		NB_PLUGIN_ARCH, NB_PLUGIN_TEACHER, NB_PLUGIN_ATTACK};
	static const char *const titles[] = {
		"architectures", "teacher strategies (defences)", "attacks"};
	for (int k = 0; k < 3; k++) {
		printf("%s%s:\n", k ? "\n" : "", titles[k]);
		int any = 0;
		for (int i = 0; i < nb_registry_count(reg); i++) {
			const nb_plugin *p = nb_registry_get(reg, i);
			if (p->kind != kinds[k])
				continue;
			printf("  %-16s %s", p->name, p->summary);
			print_aliases(p);
			printf("\n");
			any = 1;
		}
		if (!any)
			printf("  (none)\n");
	}
	return 0;
}

int cmd_plugin_help(const char *name)
{
	nb_registry *reg = cli_registry();
	if (!reg)
		return 2;
	int found = 0;
	for (int i = 0; i < nb_registry_count(reg); i++) {
		const nb_plugin *p = nb_registry_get(reg, i);
		if (!nb_registry_find(reg, p->kind, name) ||
		    nb_registry_find(reg, p->kind, name) != p)
			continue;
		found = 1;
		printf("%s plugin %s", nb_plugin_kind_name(p->kind), p->name);
		print_aliases(p);
		printf("\n  %s\n  file: %s\n", p->summary,
		       nb_registry_path(reg, i));
		if (p->kind == NB_PLUGIN_ATTACK) {
			char acc[160];
			nb_access_describe(p->attack->access, acc, sizeof acc);
			printf("  access: %s", acc);
			printf("\n");
		}
		if (!p->options || !p->options->name) {
			printf("  options: none\n");
			continue;
		}
		printf("  options:\n");
		for (const nb_option *o = p->options; o->name; o++) {
			char range[64] = "";
			if (o->min <= o->max &&
			    (o->type == NB_OPT_INT || o->type == NB_OPT_FLOAT))
				snprintf(range, sizeof range, " in [%g, %g]",
					 o->min, o->max);
			printf("    %-14s %-6s default %-10s %s%s\n", o->name,
			       type_name(o->type), o->def, o->help, range);
		}
	}
	if (!found) {
		cli_error("no plugin called '%s' (see nasty-bench --list-plugins)",
			  name);
		return 2;
	}
	return 0;
}
