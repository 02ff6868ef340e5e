/*
 * store.h - the content-addressed artefact store.
 *
 * Every model a suite trains is an artefact under ROOT/store/KEY/, where KEY
 * is the SHA-256 of a canonical description of everything that determines
 * the model (dataset, preprocessing, architecture, strategy or attack with
 * all options, training spec, seed, the keys of the models it depends on,
 * and the engine's numerics version). A re-run or another suite with the
 * same description reuses the artefact. An artefact folder holds:
 *
 *   best.safetensors   the checkpoint of the best test-accuracy epoch (what
 *                      students distil from, as in the paper's pipeline)
 *   state.safetensors  the resumable training state after the last
 *                      finished epoch (removed once the model is finished)
 *   log.csv            the per-epoch log
 *   summary.ini        written last, atomically: the artefact is finished
 *                      when it exists, parses, and the SHA-256 sums it
 *                      records for best.safetensors and log.csv match
 *
 * Every write is atomic (temporary file, fsync, rename), so a run killed at
 * any moment (even kill -9) leaves either the old or the new version of a
 * file; an artefact whose files do not match its summary is reported as
 * corrupt and trained again.
 *
 * Keys are exactly 64 lowercase hex digits (what nb_store_key makes);
 * every function refuses anything else, so no key can reach outside
 * ROOT/store. summary.ini is `name = value` lines (the value is the rest of
 * the line, verbatim: no value may hold a control character, so a
 * description must be a single line), every field of nb_model_summary
 * exactly once, and a last line `check = <SHA-256 of the lines before>`.
 *
 * Ownership: nb_store_open allocates the store, nb_store_close frees it;
 * every other output goes into caller-owned buffers. Functions return 0 or
 * a negative NB_E* code with a one-line message naming the file in err
 * (NB_ERR_LEN bytes).
 */
#ifndef NASTY_BENCH_STORE_H
#define NASTY_BENCH_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct nb_store nb_store;

/* Opens (creating ROOT and ROOT/store as needed). */
nb_store *nb_store_open(const char *root, char *err);
void nb_store_close(nb_store *s);
const char *nb_store_root(const nb_store *s);

/* SHA-256 of data as 64 lowercase hex digits (+ NUL); "" only if OpenSSL
 * runs out of memory (no function accepts that as a key). */
void nb_sha256_hex(const void *data, size_t len, char out[65]);
/* SHA-256 of a file's contents. */
int nb_sha256_file(const char *path, char out[65], char *err);
/* The key of a canonical description. */
void nb_store_key(const char *desc, char key[65]);

/* ROOT/store/KEY/NAME into out; creates the artefact folder if create.
 * NAME must be a plain file name (no slash, not "." or ".."). */
int nb_store_path(const nb_store *s, const char *key, const char *name,
		  int create, char *out, size_t len, char *err);

typedef struct nb_model_summary {
	char key[65];
	char status[16]; /* "ok", "diverged" or "failed" */
	int epochs;      /* epochs finished */
	int best_epoch;  /* 1-based; 0 if none */
	double best_acc, last_acc; /* percent */
	double wall_s;   /* training time, summed over resumed runs */
	double final_loss, final_ce, final_kl; /* last epoch's means */
	char best_sha256[65]; /* of best.safetensors ("" if diverged early) */
	char log_sha256[65];  /* of log.csv */
	char desc[4096];      /* the canonical description, one line */
} nb_model_summary;

enum nb_store_state {
	NB_STORE_ERROR = -1,  /* bad key, or the folder cannot be read (err
				 says why) */
	NB_STORE_NONE = 0,    /* nothing yet */
	NB_STORE_PARTIAL = 1, /* training state present, not finished */
	NB_STORE_DONE = 2,    /* finished and verified */
	NB_STORE_CORRUPT = 3  /* summary unreadable or checksums differ (err
				 says which file) */
};

/*
 * Looks up an artefact; fills sum (may be NULL) when DONE:
 *  - NONE: no folder;
 *  - PARTIAL: a folder without summary.ini (whatever else it holds: a
 *    state file to resume, or files of a run killed before its first
 *    state; nb_train with the same state path carries on or starts over);
 *  - DONE: summary.ini parses completely, names this key, and the SHA-256
 *    of best.safetensors and log.csv match it (a "diverged" or "failed"
 *    model may record none, then the file is not needed);
 *  - CORRUPT: anything else, err naming the file (retrain after
 *    nb_store_discard);
 *  - ERROR: a bad key, or a file that exists but cannot be read.
 */
enum nb_store_state nb_store_lookup(const nb_store *s, const char *key,
				    nb_model_summary *sum, char *err);
/*
 * Finishes an artefact: checks sum (status "ok", "diverged" or "failed";
 * best_epoch <= epochs; a one-line desc), computes the checksums into sum
 * (an "ok" model needs best.safetensors and log.csv; otherwise an absent
 * file gets ""), sets sum->key, writes summary.ini atomically, then
 * removes state.safetensors.
 */
int nb_store_finish(nb_store *s, const char *key, nb_model_summary *sum,
		    char *err);
/* Removes an artefact's folder (to retrain a corrupt one); 0 also when
 * there is none. */
int nb_store_discard(nb_store *s, const char *key, char *err);

#endif
