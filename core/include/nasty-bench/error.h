/*
 * error.h - the error convention of the whole library.
 *
 * Library functions never print and never exit. A function that can fail
 * returns 0 on success or a negative NB_E* code, and writes a one-line,
 * human-readable message into a caller-owned buffer of NB_ERR_LEN bytes
 * (the `err` argument). The message names the file or object at fault, what
 * was wrong and, where it helps, what to do. Only the command line prints.
 */
#ifndef NASTY_BENCH_ERROR_H
#define NASTY_BENCH_ERROR_H

#include <stddef.h>

#define NB_ERR_LEN 512

enum nb_status {
	NB_OK = 0,
	NB_EINVAL = -1,  /* bad argument or bad value in an input file */
	NB_ENOMEM = -2,  /* allocation failed */
	NB_EIO = -3,     /* file missing, unreadable or unwritable */
	NB_EFORMAT = -4, /* file present but not in the expected format */
	NB_ENUMERIC = -5 /* NaN or Inf where a number was expected */
};

/* Formats the message into err (if err is not NULL) and returns code. */
int nb_errorf(char *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
