/*
 * csvlog.c - CSV tables built in memory and written atomically, so a
 * reader never sees a half-written log or report, and a crash leaves the
 * previous complete version in place. Quoting is libcsv's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <csv.h>

#include "error.h"
#include "train.h"

struct nb_csv {
	int cols;
	int rows, cap;
	char **cells; /* rows * cols, row 0 is the header */
};

nb_csv *nb_csv_new(const char *const *header, int cols)
{
	nb_csv *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->cols = cols;
	if (nb_csv_add_row(t, header) < 0) {
		nb_csv_free(t);
		return NULL;
	}
	return t;
}

void nb_csv_free(nb_csv *t)
{
	if (!t)
		return;
	for (int i = 0; i < t->rows * t->cols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}

int nb_csv_add_row(nb_csv *t, const char *const *cells)
{
	if (t->rows == t->cap) {
		int cap = t->cap ? t->cap * 2 : 16;
		char **c = realloc(t->cells, (size_t)cap * t->cols * sizeof *c);
		if (!c)
			return NB_ENOMEM;
		t->cells = c;
		t->cap = cap;
	}
	char **row = t->cells + (size_t)t->rows * t->cols;
	for (int i = 0; i < t->cols; i++) {
		row[i] = strdup(cells[i] ? cells[i] : "");
		if (!row[i]) {
			for (int j = 0; j < i; j++)
				free(row[j]);
			return NB_ENOMEM;
		}
	}
	t->rows++;
	return 0;
}

int nb_csv_write(const nb_csv *t, const char *path, char *err)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	if (!m)
		return nb_errorf(err, NB_ENOMEM, "%s: out of memory", path);
	for (int r = 0; r < t->rows; r++) {
		for (int c = 0; c < t->cols; c++) {
			if (c)
				fputc(',', m);
			const char *cell = t->cells[(size_t)r * t->cols + c];
			/* quote only when needed, so numbers stay bare */
			if (strpbrk(cell, ",\"\r\n"))
				csv_fwrite(m, cell, strlen(cell));
			else
				fputs(cell, m);
		}
		fputc('\n', m);
	}
	if (fclose(m) != 0) {
		free(buf);
		return nb_errorf(err, NB_ENOMEM, "%s: out of memory", path);
	}
	int rc = nb_write_file_atomic(path, buf, len, err);
	free(buf);
	return rc;
}

int nb_write_file_atomic(const char *path, const void *data, size_t len,
			 char *err)
{
	size_t plen = strlen(path);
	char *tmp = malloc(plen + 32);
	if (!tmp)
		return nb_errorf(err, NB_ENOMEM, "%s: out of memory", path);
	snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		int e = errno;
		free(tmp);
		return nb_errorf(err, NB_EIO, "%s: cannot create: %s", path,
				 strerror(e));
	}
	const char *p = data;
	size_t left = len;
	while (left) {
		ssize_t w = write(fd, p, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = w < 0 ? errno : ENOSPC;
			close(fd);
			unlink(tmp);
			free(tmp);
			return nb_errorf(err, NB_EIO,
					 "%s: write failed: %s (nothing was replaced)",
					 path, strerror(e));
		}
		p += w;
		left -= (size_t)w;
	}
	if (fsync(fd) != 0 || close(fd) != 0) {
		int e = errno;
		unlink(tmp);
		free(tmp);
		return nb_errorf(err, NB_EIO,
				 "%s: cannot flush: %s (nothing was replaced)",
				 path, strerror(e));
	}
	if (rename(tmp, path) != 0) {
		int e = errno;
		unlink(tmp);
		free(tmp);
		return nb_errorf(err, NB_EIO, "%s: cannot rename into place: %s",
				 path, strerror(e));
	}
	free(tmp);
	return 0;
}
