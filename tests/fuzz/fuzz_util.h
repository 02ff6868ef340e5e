/*
 * fuzz_util.h - plumbing shared by the fuzz harnesses (tests/fuzz/fuzz_*.c)
 * and the regression replayer (tests/fuzz/replay.c).
 *
 * Each harness is a plain function `int nb_fuzz_NAME(const uint8_t *data,
 * size_t size)` that feeds one input to one parser, checks what the parser
 * promises (abort() when a promise is broken, so libFuzzer and replay both
 * report it) and frees everything before it returns 0. Compiled with
 * -DNB_LIBFUZZER, each file also defines LLVMFuzzerTestOneInput around its
 * function; replay calls the functions directly.
 *
 * The parsers read paths, so inputs are written to files in a per-process
 * scratch folder (under /dev/shm when it exists: no disk traffic), created
 * on first use and removed at exit. Nothing else is shared between inputs:
 * every harness rewrites or removes all the files it reads.
 */
#ifndef NB_FUZZ_UTIL_H
#define NB_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* The scratch folder (created on first call, removed at exit). Aborts if
 * it cannot be created: a harness without files tests nothing. */
const char *nb_fuzz_dir(void);

/* DIR/NAME into out (len bytes); aborts when it does not fit. */
void nb_fuzz_path(char *out, size_t len, const char *name);

/* Writes len bytes to DIR/NAME, replacing it (data may be NULL when len
 * is 0: an empty file). nb_fuzz_remove removes DIR/NAME if it exists.
 * Both abort on I/O errors (of the harness, not of the parser). */
void nb_fuzz_put(const char *name, const void *data, size_t len);
void nb_fuzz_remove(const char *name);

/* A little-endian u32 at p. */
uint32_t nb_fuzz_le32(const uint8_t *p);

/* Sums bytes, so that reading every byte of a buffer the parser handed
 * out cannot be optimised away (ASan checks each access). */
unsigned nb_fuzz_touch(const void *p, size_t len);

/* With NB_FUZZ_VERBOSE set in the environment, prints one line to stderr
 * (what the parser said about an input): for triage, and to see that the
 * seeds are accepted. Silent otherwise. */
void nb_fuzz_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * What every failure must look like (error.h): rc one of the NB_E* codes
 * but not NB_ENOMEM (inputs are small: running out of memory means the
 * parser believed a size written in the file), and a message that is one
 * terminated line of NB_ERR_LEN bytes at most, without control characters
 * (names from a hostile file must be escaped). nb_fuzz_message checks the
 * message alone. NB_FUZZ_ALLOW_CONTROL_BYTES=1 in the environment skips
 * the control-character check, to fuzz on past an open finding of that
 * kind.
 */
void nb_fuzz_failed(int rc, const char *err);
void nb_fuzz_message(const char *err);

/* Aborts with a message when cond is false: a broken promise of the
 * parser, i.e. a finding. */
#define NB_FUZZ_CHECK(cond, ...)                                               \
	do {                                                                   \
		if (!(cond))                                                   \
			nb_fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);  \
	} while (0)
void nb_fuzz_fail(const char *file, int line, const char *cond, const char *fmt,
		  ...) __attribute__((noreturn, format(printf, 4, 5)));

/* The entry points (one per harness). */
int nb_fuzz_idx(const uint8_t *data, size_t size);
int nb_fuzz_cifar10(const uint8_t *data, size_t size);
int nb_fuzz_cifar100(const uint8_t *data, size_t size);
int nb_fuzz_safetensors(const uint8_t *data, size_t size);
int nb_fuzz_checkpoint(const uint8_t *data, size_t size);
int nb_fuzz_store(const uint8_t *data, size_t size);
int nb_fuzz_suite(const uint8_t *data, size_t size);
int nb_fuzz_tinyimagenet(const uint8_t *data, size_t size);

/* The Tiny-ImageNet tree of fuzz_tinyimagenet.c (written on first call
 * into the scratch folder, as "tiny"), for make_corpus.c. */
const char *nb_fuzz_tiny_tree(void);

/* The artefact of fuzz_store.c: its key is nb_store_key of the
 * description, its best.safetensors and log.csv hold these bytes. */
#define NB_FUZZ_STORE_KEY_DESC "nasty-bench fuzz artefact"
#define NB_FUZZ_STORE_BEST "not really a checkpoint\n"
#define NB_FUZZ_STORE_LOG "epoch,loss\n1,0.5\n"

/* The fixed network of fuzz_checkpoint.c (built and finalised with seed
 * 1; the caller frees it with nb_net_free), for make_corpus.c. */
struct nb_net;
struct nb_net *nb_fuzz_checkpoint_net(void);

#ifdef NB_LIBFUZZER
#define NB_FUZZ_TARGET(fn)                                                     \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);          \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)           \
	{                                                                      \
		return fn(data, size);                                         \
	}
#else
#define NB_FUZZ_TARGET(fn)
#endif

#endif
