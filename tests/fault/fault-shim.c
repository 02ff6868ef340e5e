/*
 * fault-shim.c - an LD_PRELOAD library for the crash and disk-fault tests
 * (tests/crash-safety.sh): it makes the Nth matching file operation of a
 * whole process tree kill that tree or fail with an errno, so that a test
 * can stop the runner at a precise moment (in the middle of a checkpoint
 * write, just before a report is renamed into place) or fill the disk at a
 * precise byte, instead of at a random time. Built for tests only; nothing
 * of it is in the program.
 *
 * Configuration (environment; without NB_FAULT_OPS the shim does nothing):
 *   NB_FAULT_OPS      comma-separated operations to watch: write, fsync,
 *                     rename, open (only opens that create or truncate),
 *                     mkdir
 *   NB_FAULT_PATH     fnmatch(3) pattern for the path (`*` also matches
 *                     `/`): the file written or flushed (its name in
 *                     /proc/self/fd), the target of a rename, the path
 *                     opened or created. Default `*`.
 *   NB_FAULT_COUNTER  a file holding the shared count (created; required),
 *                     so that the forked jobs and the runner count
 *                     together
 *   NB_FAULT_AT       the matching call (1-based) that triggers; default 1
 *   NB_FAULT_BYTES    for write: trigger once this many bytes were written
 *                     to matching files in all (counts bytes, not calls;
 *                     the call that crosses the limit writes what fits)
 *   NB_FAULT_ACTION   kill (default): SIGKILL to the whole process group,
 *                     before the operation; or an errno name (ENOSPC,
 *                     EACCES, EROFS, EIO, EDQUOT): the call fails with it,
 *                     and so does every later matching call ("the disk
 *                     stays full")
 *
 * The counter file also receives nothing else; a test reads it to check
 * that the fault was reached.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { OP_WRITE = 1, OP_FSYNC = 2, OP_RENAME = 4, OP_OPEN = 8, OP_MKDIR = 16 };

static __thread int inside; /* no faults from the shim's own calls */

static int watched(int op)
{
	const char *ops = getenv("NB_FAULT_OPS");
	if (!ops || !*ops)
		return 0;
	static const char *const names[] = {"write", "fsync", "rename",
					    "open", "mkdir"};
	int i = 0;
	while (!((op >> i) & 1))
		i++;
	size_t n = strlen(names[i]);
	for (const char *p = ops; *p;) {
		size_t len = strcspn(p, ",");
		if (len == n && !strncmp(p, names[i], n))
			return 1;
		p += len;
		if (*p == ',')
			p++;
	}
	return 0;
}

static int path_matches(const char *path)
{
	const char *pat = getenv("NB_FAULT_PATH");
	if (!pat || !*pat)
		pat = "*";
	return path && fnmatch(pat, path, 0) == 0;
}

static int fd_matches(int fd)
{
	char link[64], path[4096];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof path - 1);
	if (n <= 0)
		return 0;
	path[n] = 0;
	return path_matches(path);
}

static int fault_errno(void)
{
	const char *a = getenv("NB_FAULT_ACTION");
	if (!a || !*a || !strcmp(a, "kill"))
		return 0;
	static const struct {
		const char *name;
		int e;
	} t[] = {{"ENOSPC", ENOSPC}, {"EACCES", EACCES}, {"EROFS", EROFS},
		 {"EIO", EIO},       {"EDQUOT", EDQUOT}, {"EPERM", EPERM}};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (!strcmp(a, t[i].name))
			return t[i].e;
	return EIO;
}

/* Adds `add` to the shared count; returns the count before and after. */
static int count(long long add, long long *before, long long *after)
{
	const char *path = getenv("NB_FAULT_COUNTER");
	if (!path || !*path)
		return -1;
	int fd = (int)syscall(SYS_openat, AT_FDCWD, path,
			      O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	flock(fd, LOCK_EX);
	char buf[32] = {0};
	ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
	long long c = n > 0 ? atoll(buf) : 0;
	*before = c;
	*after = c + add;
	int len = snprintf(buf, sizeof buf, "%lld\n", *after);
	if (ftruncate(fd, 0) == 0)
		(void)!syscall(SYS_pwrite64, fd, buf, (size_t)len, (off_t)0);
	flock(fd, LOCK_UN);
	close(fd);
	return 0;
}

/*
 * Decides for one matching call: 0 = go on, 1 = fail with *e. For a write,
 * *len may shrink (the call that fills the disk writes what fits). Kills
 * the process group itself when the action is kill.
 */
static int decide(size_t *len, int *e)
{
	long long before, after;
	const char *bytes = getenv("NB_FAULT_BYTES");
	const char *at_s = getenv("NB_FAULT_AT");
	long long at = at_s && *at_s ? atoll(at_s) : 1;
	int hit = 0;
	if (!len && bytes && *bytes) {
		/* another operation on a full disk fails too */
		if (count(0, &before, &after) < 0)
			return 0;
		hit = after >= atoll(bytes);
	} else if (len && bytes && *bytes) {
		long long limit = atoll(bytes);
		if (count((long long)*len, &before, &after) < 0)
			return 0;
		if (after > limit) {
			hit = 1;
			if (before < limit) {
				/* a short write, as a filling disk gives */
				*len = (size_t)(limit - before);
				*e = 0;
				if (!fault_errno())
					goto die;
				return 0;
			}
		}
	} else {
		if (count(1, &before, &after) < 0)
			return 0;
		hit = after >= at;
	}
	if (!hit)
		return 0;
die:
	*e = fault_errno();
	if (!*e) {
		kill(0, SIGKILL);
		for (;;)
			pause();
	}
	return 1;
}

#define REAL(ret, name, ...)                                                   \
	static ret (*real_##name)(__VA_ARGS__);                                \
	if (!real_##name)                                                      \
		real_##name = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name);

ssize_t write(int fd, const void *buf, size_t len)
{
	REAL(ssize_t, write, int, const void *, size_t);
	if (inside || !watched(OP_WRITE) || fd <= 2)
		return real_write(fd, buf, len);
	inside = 1;
	int e = 0;
	size_t n = len;
	int fail = fd_matches(fd) && decide(&n, &e);
	inside = 0;
	if (fail) {
		errno = e;
		return -1;
	}
	return real_write(fd, buf, n);
}

int fsync(int fd)
{
	REAL(int, fsync, int);
	if (inside || !watched(OP_FSYNC))
		return real_fsync(fd);
	inside = 1;
	int e = 0;
	int fail = fd_matches(fd) && decide(NULL, &e);
	inside = 0;
	if (fail) {
		errno = e;
		return -1;
	}
	return real_fsync(fd);
}

int rename(const char *from, const char *to)
{
	REAL(int, rename, const char *, const char *);
	if (inside || !watched(OP_RENAME))
		return real_rename(from, to);
	inside = 1;
	int e = 0;
	int fail = path_matches(to) && decide(NULL, &e);
	inside = 0;
	if (fail) {
		errno = e;
		return -1;
	}
	return real_rename(from, to);
}

int mkdir(const char *path, mode_t mode)
{
	REAL(int, mkdir, const char *, mode_t);
	if (inside || !watched(OP_MKDIR))
		return real_mkdir(path, mode);
	inside = 1;
	int e = 0;
	/* an existing folder stays reachable: mkdir says EEXIST first */
	struct stat st;
	int fail = path_matches(path) && stat(path, &st) != 0 &&
		   decide(NULL, &e);
	inside = 0;
	if (fail) {
		errno = e;
		return -1;
	}
	return real_mkdir(path, mode);
}

/* Only opens that create or truncate: reading stays possible. */
static int open_fails(const char *path, int flags, int *e)
{
	if (inside || !(flags & (O_CREAT | O_TRUNC)) || !watched(OP_OPEN))
		return 0;
	inside = 1;
	int fail = path_matches(path) && decide(NULL, e);
	inside = 0;
	return fail;
}

int open(const char *path, int flags, ...)
{
	REAL(int, open, const char *, int, ...);
	mode_t mode = 0;
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	int e = 0;
	if (open_fails(path, flags, &e)) {
		errno = e;
		return -1;
	}
	return real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
	REAL(int, open64, const char *, int, ...);
	mode_t mode = 0;
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	int e = 0;
	if (open_fails(path, flags, &e)) {
		errno = e;
		return -1;
	}
	return real_open64(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	REAL(int, openat, int, const char *, int, ...);
	mode_t mode = 0;
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	int e = 0;
	if (open_fails(path, flags, &e)) {
		errno = e;
		return -1;
	}
	return real_openat(dirfd, path, flags, mode);
}
