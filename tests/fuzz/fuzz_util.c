/*
 * fuzz_util.c - the scratch folder and small helpers of the fuzz harnesses
 * (see fuzz_util.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "fuzz_util.h"

static char scratch[4096];

void nb_fuzz_fail(const char *file, int line, const char *cond, const char *fmt,
		  ...)
{
	va_list ap;
	fprintf(stderr, "%s:%d: parser promise broken: %s: ", file, line, cond);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

void nb_fuzz_note(const char *fmt, ...)
{
	static int verbose = -1;
	if (verbose < 0) {
		const char *v = getenv("NB_FUZZ_VERBOSE");
		verbose = v && *v && strcmp(v, "0");
	}
	if (!verbose)
		return;
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void nb_fuzz_message(const char *err)
{
	const char *end = memchr(err, '\0', NB_ERR_LEN);
	NB_FUZZ_CHECK(end != NULL, "message not terminated");
	NB_FUZZ_CHECK(end > err, "empty message");
	static int allow_control = -1;
	if (allow_control < 0) {
		const char *v = getenv("NB_FUZZ_ALLOW_CONTROL_BYTES");
		allow_control = v && *v && strcmp(v, "0");
	}
	for (const char *p = err; p < end && !allow_control; p++)
		NB_FUZZ_CHECK(((unsigned char)*p >= 0x20 && *p != 0x7f) ||
				  *p == '\t',
			      "control byte 0x%02x at %d of the message: %s",
			      (unsigned char)*p, (int)(p - err), err);
}

void nb_fuzz_failed(int rc, const char *err)
{
	NB_FUZZ_CHECK(rc == NB_EINVAL || rc == NB_EIO || rc == NB_EFORMAT ||
			  rc == NB_ENUMERIC,
		      "rc %d: %.*s", rc, NB_ERR_LEN, err);
	nb_fuzz_message(err);
}

static int remove_entry(const char *path, const struct stat *st, int flag,
			struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void remove_scratch(void)
{
	if (scratch[0])
		nftw(scratch, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	scratch[0] = '\0';
}

const char *nb_fuzz_dir(void)
{
	if (scratch[0])
		return scratch;
	struct stat st;
	const char *base = "/dev/shm";
	if (stat(base, &st) != 0 || !S_ISDIR(st.st_mode) ||
	    access(base, W_OK) != 0) {
		base = getenv("TMPDIR");
		if (!base || !*base)
			base = "/tmp";
	}
	if (snprintf(scratch, sizeof scratch, "%s/nb-fuzz-XXXXXX", base) >=
	    (int)sizeof scratch) {
		fprintf(stderr, "fuzz: scratch path too long\n");
		abort();
	}
	if (!mkdtemp(scratch)) {
		fprintf(stderr, "fuzz: cannot create %s: %s\n", scratch,
			strerror(errno));
		abort();
	}
	atexit(remove_scratch);
	return scratch;
}

void nb_fuzz_path(char *out, size_t len, const char *name)
{
	if (snprintf(out, len, "%s/%s", nb_fuzz_dir(), name) >= (int)len) {
		fprintf(stderr, "fuzz: path of %s too long\n", name);
		abort();
	}
}

void nb_fuzz_put(const char *name, const void *data, size_t len)
{
	char path[4096];
	nb_fuzz_path(path, sizeof path, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "fuzz: cannot write %s: %s\n", path,
			strerror(errno));
		abort();
	}
	const uint8_t *p = data;
	while (len > 0) {
		ssize_t k = write(fd, p, len);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			fprintf(stderr, "fuzz: cannot write %s: %s\n", path,
				strerror(errno));
			abort();
		}
		p += k;
		len -= (size_t)k;
	}
	if (close(fd) != 0) {
		fprintf(stderr, "fuzz: cannot write %s: %s\n", path,
			strerror(errno));
		abort();
	}
}

void nb_fuzz_remove(const char *name)
{
	char path[4096];
	nb_fuzz_path(path, sizeof path, name);
	if (unlink(path) != 0 && errno != ENOENT) {
		fprintf(stderr, "fuzz: cannot remove %s: %s\n", path,
			strerror(errno));
		abort();
	}
}

uint32_t nb_fuzz_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

unsigned nb_fuzz_touch(const void *p, size_t len)
{
	const volatile uint8_t *b = p;
	unsigned s = 0;
	for (size_t i = 0; i < len; i++)
		s += b[i];
	return s;
}
