/*
 * cli.h - the command line: subcommands and the small argument helpers
 * they share. Only this layer prints and chooses exit codes.
 */
#ifndef NB_CLI_H
#define NB_CLI_H

#include <stdint.h>

#include "data.h"
#include "registry.h"

int cmd_train(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_describe(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_synth(int argc, char **argv);
/* The suite runner; command is the whole command line, for the report. */
int cmd_run(int argc, char **argv, const char *command);
int cmd_list_plugins(void);
int cmd_plugin_help(const char *name);

/* Adds a --plugin-dir folder (before the first cli_registry call). */
void cli_add_plugin_dir(const char *dir);
/* The plugins, loaded at the first call from the --plugin-dir folders,
 * NASTY_BENCH_PLUGIN_PATH and the program's own folder. NULL after
 * printing the error. Freed at exit. */
nb_registry *cli_registry(void);
/* The architecture plugin called name, or NULL after printing an error
 * that lists the known ones. */
const nb_plugin *cli_find_arch(nb_registry *reg, const char *name);

/* Preprocessing of a named dataset, as the paper's code and DAFL use it:
 * normalisation constants, padding, crop and flip. */
void cli_dataset_augment(const char *name, nb_augment *aug);
/* "CxHxW" -> c, h, w (each positive); -1 if malformed. */
int cli_parse_input(const char *s, int *c, int *h, int *w);

/* Iterates "--key value" / "--key=value" arguments. */
typedef struct cli_args {
	int argc, i;
	char **argv;
	const char *key;   /* current option name without dashes */
	const char *value; /* its value, or NULL if it takes none */
	char buf[128];
} cli_args;

void cli_args_init(cli_args *a, int argc, char **argv);
/* Advances to the next option; 0 at the end, -1 on a stray argument. */
int cli_next(cli_args *a);
/* The option's value, taking the next argument if needed; NULL (and a
 * message) if there is none. */
const char *cli_value(cli_args *a);
int cli_int(cli_args *a, int lo, int hi, int *out);
int cli_float(cli_args *a, double lo, double hi, float *out);
int cli_u64(cli_args *a, uint64_t *out);

/* Sets OpenMP and OpenBLAS thread counts (0 = all cores). */
void cli_set_threads(int threads);

/* "error: ..." on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
