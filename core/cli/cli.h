/*
 * cli.h - the command line: subcommands and the small argument helpers
 * they share. Only this layer prints and chooses exit codes.
 */
#ifndef NB_CLI_H
#define NB_CLI_H

#include <stdint.h>

int cmd_train(int argc, char **argv);
int cmd_bench(int argc, char **argv);

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
