/* error.c - formats the one-line error messages of the library. */
#include <stdarg.h>
#include <stdio.h>

#include "error.h"

int nb_errorf(char *err, int code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, NB_ERR_LEN, fmt, ap);
		va_end(ap);
	}
	return code;
}
