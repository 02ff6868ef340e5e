/*
 * replay.c - runs fuzz harnesses over saved inputs, without libFuzzer: the
 * regression half of the fuzzing policy (tests/fuzz/README.md). Built with
 * the normal compiler as a check program; tests/fuzz-regressions.sh runs
 * it over tests/fuzz/regressions/PARSER/ and tests/fuzz/corpus/PARSER/.
 *
 *   replay PARSER FILE...
 *
 * Each file is read whole and handed to the same function libFuzzer calls
 * (nb_fuzz_PARSER). A harness that finds a broken promise aborts, as does
 * a crash; replay exits 0 when every file went through, 2 on bad usage or
 * an unreadable file.
 *
 * Without AddressSanitizer, the address space is limited to
 * REPLAY_AS_LIMIT, so that a parser which believes a huge size written in
 * a small file gets NULL from malloc (and the harness reports NB_ENOMEM)
 * instead of a lazily mapped buffer that goes unnoticed; libFuzzer's
 * -malloc_limit_mb plays that part in make fuzz.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "fuzz_util.h"

static const struct {
	const char *name;
	int (*fn)(const uint8_t *, size_t);
} parsers[] = {
    {"idx", nb_fuzz_idx},
    {"cifar10", nb_fuzz_cifar10},
    {"cifar100", nb_fuzz_cifar100},
    {"safetensors", nb_fuzz_safetensors},
    {"checkpoint", nb_fuzz_checkpoint},
    {"store", nb_fuzz_store},
    {"suite", nb_fuzz_suite},
    {"tinyimagenet", nb_fuzz_tinyimagenet},
};
#define N_PARSERS (int)(sizeof parsers / sizeof parsers[0])

#define REPLAY_AS_LIMIT (4ull << 30)
#if defined(__SANITIZE_ADDRESS__)
#define REPLAY_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define REPLAY_ASAN 1
#endif
#endif

/* The whole file into *out (malloc'ed, at least 1 byte). */
static int slurp(const char *path, uint8_t **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	size_t cap = 1 << 16, n = 0;
	uint8_t *buf = malloc(cap);
	while (buf) {
		n += fread(buf + n, 1, cap - n, f);
		if (n < cap)
			break;
		uint8_t *more = realloc(buf, cap * 2);
		if (!more) {
			free(buf);
			buf = NULL;
			break;
		}
		buf = more;
		cap *= 2;
	}
	int e = !buf ? ENOMEM : ferror(f) ? EIO : 0;
	fclose(f);
	if (e) {
		free(buf);
		errno = e;
		return -1;
	}
	*out = buf;
	*len = n;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: replay PARSER FILE...\nparsers:");
		for (int i = 0; i < N_PARSERS; i++)
			fprintf(stderr, " %s", parsers[i].name);
		fputc('\n', stderr);
		return 2;
	}
	int p = 0;
	while (p < N_PARSERS && strcmp(parsers[p].name, argv[1]))
		p++;
	if (p == N_PARSERS) {
		fprintf(stderr, "replay: unknown parser '%s'\n", argv[1]);
		return 2;
	}
#ifndef REPLAY_ASAN
	struct rlimit lim;
	if (getrlimit(RLIMIT_AS, &lim) == 0 &&
	    (lim.rlim_cur == RLIM_INFINITY || lim.rlim_cur > REPLAY_AS_LIMIT)) {
		lim.rlim_cur = REPLAY_AS_LIMIT;
		setrlimit(RLIMIT_AS, &lim);
	}
#endif
	for (int i = 2; i < argc; i++) {
		uint8_t *data;
		size_t len;
		if (slurp(argv[i], &data, &len) < 0) {
			fprintf(stderr, "replay: %s: %s\n", argv[i],
				strerror(errno));
			return 2;
		}
		parsers[p].fn(data, len);
		free(data);
		printf("ok %s %s\n", parsers[p].name, argv[i]);
	}
	return 0;
}
