/*
 * store.c - the content-addressed artefact store (see store.h): folders
 * ROOT/store/KEY/ named by SHA-256 keys, and the summary.ini that marks an
 * artefact finished.
 *
 * summary.ini is a few `name = value` lines, written and parsed here: the
 * value is the rest of the line, verbatim, so nothing is escaped and no
 * value may hold a control character (a description with a newline is
 * refused at write time). The last line, `check = <sha256>`, is the SHA-256
 * of every byte before it, so a summary that was cut short or edited by
 * hand reads as corrupt rather than as a different result. Every field is
 * required exactly once; an unknown name is corrupt too (only
 * nb_store_finish writes summaries).
 *
 * SHA-256 is OpenSSL's libcrypto (EVP interface): a well-kept Debian
 * library, rather than a hand-written hash.
 *
 * What it deliberately does not do: locking (the runner holds an flock on
 * each artefact's `lock` file while training it), garbage collection of old artefacts, or fsync of the folder after
 * a rename (a power cut may lose the newest version of a file, never mix
 * two).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "error.h"
#include "store.h"
#include "train.h"

#define STORE_PATH_LEN 4096
/* A summary is a few hundred bytes plus the description. */
#define SUMMARY_MAX (64 * 1024)

struct nb_store {
	char *root;
};

/* ---- SHA-256 ------------------------------------------------------------- */

static void to_hex(const unsigned char *md, unsigned len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (unsigned i = 0; i < len; i++) {
		out[2 * i] = digits[md[i] >> 4];
		out[2 * i + 1] = digits[md[i] & 15];
	}
	out[2 * len] = '\0';
}

void nb_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	/* fails only when OpenSSL cannot allocate: an empty string then,
	 * which no key check accepts */
	if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) ||
	    mdlen != 32) {
		out[0] = '\0';
		return;
	}
	to_hex(md, mdlen, out);
}

int nb_sha256_file(const char *path, char out[65], char *err)
{
	out[0] = '\0';
	FILE *f = fopen(path, "rb");
	if (!f)
		return nb_errorf(err, NB_EIO, "%s: cannot open: %s", path,
				 strerror(errno));
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char *buf = malloc(1 << 16);
	int rc = NB_OK;
	if (!ctx || !buf || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		rc = nb_errorf(err, NB_ENOMEM, "%s: out of memory for SHA-256",
			       path);
		goto out;
	}
	size_t got;
	while ((got = fread(buf, 1, 1 << 16, f)) > 0)
		if (!EVP_DigestUpdate(ctx, buf, got)) {
			rc = nb_errorf(err, NB_ENOMEM,
				       "%s: SHA-256 failed (out of memory)",
				       path);
			goto out;
		}
	if (ferror(f)) {
		rc = nb_errorf(err, NB_EIO, "%s: read error: %s", path,
			       strerror(errno));
		goto out;
	}
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	if (!EVP_DigestFinal_ex(ctx, md, &mdlen) || mdlen != 32) {
		rc = nb_errorf(err, NB_ENOMEM, "%s: SHA-256 failed", path);
		goto out;
	}
	to_hex(md, mdlen, out);
out:
	EVP_MD_CTX_free(ctx);
	free(buf);
	fclose(f);
	return rc;
}

void nb_store_key(const char *desc, char key[65])
{
	nb_sha256_hex(desc, strlen(desc), key);
}

/* ---- folders and paths -----------------------------------------------------
 */

/* 64 lowercase hex digits, exactly what nb_store_key makes: nothing else
 * can name a folder (no "..", no slash, no second spelling of a key). */
static int valid_key(const char *key)
{
	if (!key)
		return 0;
	size_t i = 0;
	for (; key[i] && i < 64; i++)
		if (!((key[i] >= '0' && key[i] <= '9') ||
		      (key[i] >= 'a' && key[i] <= 'f')))
			return 0;
	return i == 64 && key[64] == '\0';
}

static int key_error(const char *key, char *err)
{
	return nb_errorf(err, NB_EINVAL,
			 "artefact key '%.80s' is not 64 lowercase hex digits "
			 "(a SHA-256 from nb_store_key)",
			 key ? key : "(null)");
}

static int mkdir_one(const char *path, char *err)
{
	if (mkdir(path, 0755) == 0 || errno == EEXIST) {
		struct stat st;
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			return NB_OK;
		return nb_errorf(err, NB_EIO, "%s: exists and is not a folder",
				 path);
	}
	return nb_errorf(err, NB_EIO, "%s: cannot create folder: %s", path,
			 strerror(errno));
}

/* mkdir -p */
static int mkdir_p(const char *path, char *err)
{
	char buf[STORE_PATH_LEN];
	if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
		return nb_errorf(err, NB_EINVAL,
				 "store path too long: %.80s...", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		int rc = mkdir_one(buf, err);
		*p = '/';
		if (rc < 0)
			return rc;
	}
	return mkdir_one(buf, err);
}

nb_store *nb_store_open(const char *root, char *err)
{
	if (!root || !*root) {
		nb_errorf(err, NB_EINVAL, "no store root folder given");
		return NULL;
	}
	char path[STORE_PATH_LEN];
	if (snprintf(path, sizeof path, "%s/store", root) >= (int)sizeof path) {
		nb_errorf(err, NB_EINVAL, "store root too long: %.80s...",
			  root);
		return NULL;
	}
	if (mkdir_p(path, err) < 0)
		return NULL;
	nb_store *s = calloc(1, sizeof *s);
	if (s)
		s->root = strdup(root);
	if (!s || !s->root) {
		free(s);
		nb_errorf(err, NB_ENOMEM, "out of memory opening store %s",
			  root);
		return NULL;
	}
	return s;
}

void nb_store_close(nb_store *s)
{
	if (!s)
		return;
	free(s->root);
	free(s);
}

const char *nb_store_root(const nb_store *s)
{
	return s->root;
}

static int folder_path(const nb_store *s, const char *key, char *out,
		       size_t len, char *err)
{
	if (!valid_key(key))
		return key_error(key, err);
	if (snprintf(out, len, "%s/store/%s", s->root, key) >= (int)len)
		return nb_errorf(err, NB_EINVAL,
				 "path of artefact %s is too long", key);
	return NB_OK;
}

int nb_store_path(const nb_store *s, const char *key, const char *name,
		  int create, char *out, size_t len, char *err)
{
	char dir[STORE_PATH_LEN];
	int rc = folder_path(s, key, dir, sizeof dir, err);
	if (rc < 0)
		return rc;
	if (!name || !*name || strchr(name, '/') || !strcmp(name, ".") ||
	    !strcmp(name, ".."))
		return nb_errorf(err, NB_EINVAL,
				 "artefact file name '%s' must be a plain "
				 "file name",
				 name ? name : "(null)");
	if (create && (rc = mkdir_one(dir, err)) < 0)
		return rc;
	if (snprintf(out, len, "%s/%s", dir, name) >= (int)len)
		return nb_errorf(err, NB_EINVAL, "%s/%s: path too long", dir,
				 name);
	return NB_OK;
}

/* ---- summary.ini ------------------------------------------------------------
 */

enum field_type { F_KEY, F_STR, F_INT, F_DBL, F_SHA };

static const struct field {
	const char *name;
	enum field_type type;
	size_t off, size;
} fields[] = {
#define FLD(n, t)                                                              \
	{                                                                      \
#n, t, offsetof(nb_model_summary, n),                          \
		    sizeof(((nb_model_summary *)0)->n)                         \
	}
    FLD(key, F_KEY),	    FLD(status, F_STR),	     FLD(epochs, F_INT),
    FLD(best_epoch, F_INT), FLD(best_acc, F_DBL),    FLD(last_acc, F_DBL),
    FLD(wall_s, F_DBL),	    FLD(final_loss, F_DBL),  FLD(final_ce, F_DBL),
    FLD(final_kl, F_DBL),   FLD(best_sha256, F_SHA), FLD(log_sha256, F_SHA),
    FLD(desc, F_STR),
#undef FLD
};
#define N_FIELDS ((int)(sizeof fields / sizeof fields[0]))

static const char *const statuses[] = {"ok", "diverged", "failed"};

static int valid_status(const char *s)
{
	for (int i = 0; i < 3; i++)
		if (!strcmp(s, statuses[i]))
			return 1;
	return 0;
}

/* The first control character in s, or NULL. */
static const char *control_char(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return s;
	return NULL;
}

/* "" or a SHA-256 in hex */
static int valid_sha(const char *s)
{
	return !*s || valid_key(s);
}

/* The summary's text into *out (malloc'ed), or a negative code. */
static int format_summary(const nb_model_summary *sum, char **out, size_t *len,
			  char *err)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *m = open_memstream(&buf, &n);
	if (!m)
		return nb_errorf(err, NB_ENOMEM, "out of memory for a summary");
	fprintf(m, "# nasty-bench artefact summary: written last, atomically "
		   "(see store.h)\n");
	for (int i = 0; i < N_FIELDS; i++) {
		const struct field *f = &fields[i];
		const char *p = (const char *)sum + f->off;
		fprintf(m, "%s = ", f->name);
		switch (f->type) {
		case F_INT:
			fprintf(m, "%d", *(const int *)p);
			break;
		case F_DBL:
			fprintf(m, "%.17g", *(const double *)p);
			break;
		default:
			fputs(p, m);
		}
		fputc('\n', m);
	}
	if (fclose(m) != 0) {
		free(buf);
		return nb_errorf(err, NB_ENOMEM, "out of memory for a summary");
	}
	char check[65];
	nb_sha256_hex(buf, n, check);
	char *full = realloc(buf, n + 80);
	if (!full || !check[0]) {
		free(full ? full : buf);
		return nb_errorf(err, NB_ENOMEM, "out of memory for a summary");
	}
	n += (size_t)snprintf(full + n, 80, "check = %s\n", check);
	*out = full;
	*len = n;
	return NB_OK;
}

static int parse_value(const struct field *f, const char *v,
		       nb_model_summary *sum, char *msg, size_t msglen)
{
	char *p = (char *)sum + f->off;
	char *end;
	switch (f->type) {
	case F_INT: {
		errno = 0;
		long x = strtol(v, &end, 10);
		if (!*v || *end || errno || x < 0 || x > INT_MAX) {
			snprintf(msg, msglen, "%s '%.40s' is not a count",
				 f->name, v);
			return -1;
		}
		*(int *)p = (int)x;
		return 0;
	}
	case F_DBL: {
		double x = strtod(v, &end);
		if (!*v || *end) {
			snprintf(msg, msglen, "%s '%.40s' is not a number",
				 f->name, v);
			return -1;
		}
		*(double *)p = x;
		return 0;
	}
	case F_KEY:
	case F_SHA:
		if (f->type == F_KEY ? !valid_key(v) : !valid_sha(v)) {
			snprintf(msg, msglen,
				 "%s '%.70s' is not a SHA-256 in hex", f->name,
				 v);
			return -1;
		}
		break;
	case F_STR:
		break;
	}
	if (strlen(v) >= f->size) {
		snprintf(msg, msglen, "%s is longer than %zu bytes", f->name,
			 f->size - 1);
		return -1;
	}
	strcpy(p, v);
	return 0;
}

/*
 * Parses a summary's text (NUL-terminated, len bytes) into sum. Returns 0,
 * or -1 with msg saying what is wrong (and where).
 */
static int parse_summary(char *text, size_t len, nb_model_summary *sum,
			 char *msg, size_t msglen)
{
	memset(sum, 0, sizeof *sum);
	if (strlen(text) != len) {
		snprintf(msg, msglen, "holds a NUL byte");
		return -1;
	}
	if (len == 0 || text[len - 1] != '\n') {
		snprintf(msg, msglen, "%s",
			 len ? "does not end with a newline (cut short?)"
			     : "is empty");
		return -1;
	}
	/* the check line covers everything before it */
	text[len - 1] = '\0';
	char *last = strrchr(text, '\n');
	last = last ? last + 1 : text;
	char want[65];
	if (strncmp(last, "check = ", 8) || !valid_key(last + 8)) {
		snprintf(msg, msglen,
			 "the last line is not 'check = <sha256>' (cut short "
			 "or edited?)");
		return -1;
	}
	nb_sha256_hex(text, (size_t)(last - text), want);
	if (strcmp(want, last + 8)) {
		snprintf(msg, msglen,
			 "its check sum does not match its contents (edited "
			 "or damaged)");
		return -1;
	}
	*last = '\0';

	int seen[N_FIELDS] = {0};
	int line_no = 0;
	for (char *line = text, *next; line && *line; line = next) {
		line_no++;
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		if (!*line || line[0] == '#')
			continue;
		const char *bad = control_char(line);
		if (bad) {
			snprintf(msg, msglen,
				 "line %d: control character 0x%02x", line_no,
				 (unsigned char)*bad);
			return -1;
		}
		char *eq = strstr(line, " = ");
		if (!eq) {
			snprintf(msg, msglen, "line %d: not 'name = value'",
				 line_no);
			return -1;
		}
		*eq = '\0';
		const char *value = eq + 3;
		int i = 0;
		while (i < N_FIELDS && strcmp(fields[i].name, line))
			i++;
		if (i == N_FIELDS) {
			snprintf(msg, msglen, "line %d: unknown name '%.40s'",
				 line_no, line);
			return -1;
		}
		if (seen[i]++) {
			snprintf(msg, msglen, "line %d: '%s' given twice",
				 line_no, line);
			return -1;
		}
		char m2[200];
		if (parse_value(&fields[i], value, sum, m2, sizeof m2) < 0) {
			snprintf(msg, msglen, "line %d: %s", line_no, m2);
			return -1;
		}
	}
	for (int i = 0; i < N_FIELDS; i++)
		if (!seen[i]) {
			snprintf(msg, msglen, "'%s' is missing",
				 fields[i].name);
			return -1;
		}
	if (!valid_status(sum->status)) {
		snprintf(msg, msglen,
			 "status '%s' is not ok, diverged or failed",
			 sum->status);
		return -1;
	}
	if (!strcmp(sum->status, "ok") &&
	    (!sum->best_sha256[0] || !sum->log_sha256[0])) {
		snprintf(msg, msglen,
			 "an 'ok' model must record best_sha256 and "
			 "log_sha256");
		return -1;
	}
	if (sum->best_epoch > sum->epochs) {
		snprintf(msg, msglen, "best_epoch %d is after epochs %d",
			 sum->best_epoch, sum->epochs);
		return -1;
	}
	return 0;
}

/* Reads a small text file whole. 1 = read, 0 = missing, <0 error. */
static int read_small(const char *path, char **out, size_t *len, char *err)
{
	*out = NULL;
	FILE *f = fopen(path, "rb");
	if (!f) {
		if (errno == ENOENT)
			return 0;
		return nb_errorf(err, NB_EIO, "%s: cannot open: %s", path,
				 strerror(errno));
	}
	char *buf = malloc(SUMMARY_MAX + 1);
	if (!buf) {
		fclose(f);
		return nb_errorf(err, NB_ENOMEM, "%s: out of memory", path);
	}
	size_t n = fread(buf, 1, SUMMARY_MAX + 1, f);
	int bad = ferror(f);
	fclose(f);
	if (bad) {
		free(buf);
		return nb_errorf(err, NB_EIO, "%s: read error", path);
	}
	buf[n > SUMMARY_MAX ? SUMMARY_MAX : n] = '\0';
	*out = buf;
	*len = n;
	return 1;
}

/* Compares a file's SHA-256 with the summary's. 0 = matches. */
static int check_file(const char *dir, const char *name, const char *want,
		      char *err)
{
	char path[STORE_PATH_LEN + 64], got[65];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	struct stat st;
	if (stat(path, &st) != 0)
		return nb_errorf(err, NB_EFORMAT,
				 "%s: missing, though summary.ini records its "
				 "checksum (discard and retrain the artefact)",
				 path);
	int rc = nb_sha256_file(path, got, err);
	if (rc < 0)
		return rc;
	if (strcmp(got, want))
		return nb_errorf(err, NB_EFORMAT,
				 "%s: SHA-256 %.12s... differs from %.12s... "
				 "recorded in summary.ini (the file changed or "
				 "is damaged; discard and retrain the "
				 "artefact)",
				 path, got, want);
	return NB_OK;
}

enum nb_store_state nb_store_lookup(const nb_store *s, const char *key,
				    nb_model_summary *sum, char *err)
{
	char dir[STORE_PATH_LEN], path[STORE_PATH_LEN + 64];
	if (folder_path(s, key, dir, sizeof dir, err) < 0)
		return NB_STORE_ERROR;
	struct stat st;
	if (stat(dir, &st) != 0) {
		if (errno == ENOENT)
			return NB_STORE_NONE;
		nb_errorf(err, NB_EIO, "%s: %s", dir, strerror(errno));
		return NB_STORE_ERROR;
	}
	if (!S_ISDIR(st.st_mode)) {
		nb_errorf(err, NB_EFORMAT,
			  "%s: not a folder (discard and retrain the "
			  "artefact)",
			  dir);
		return NB_STORE_CORRUPT;
	}
	snprintf(path, sizeof path, "%s/summary.ini", dir);
	char *text = NULL;
	size_t len = 0;
	int rc = read_small(path, &text, &len, err);
	if (rc < 0)
		return NB_STORE_ERROR;
	if (rc == 0)
		return NB_STORE_PARTIAL; /* not finished: resume or start */
	nb_model_summary tmp;
	char msg[300];
	if (len > SUMMARY_MAX)
		snprintf(msg, sizeof msg, "larger than %d bytes", SUMMARY_MAX);
	rc = len > SUMMARY_MAX
		 ? -1
		 : parse_summary(text, len, &tmp, msg, sizeof msg);
	free(text);
	if (rc == 0 && strcmp(tmp.key, key)) {
		snprintf(msg, sizeof msg,
			 "it is the summary of %.16s..., not "
			 "of this folder",
			 tmp.key);
		rc = -1;
	}
	if (rc < 0) {
		nb_errorf(err, NB_EFORMAT,
			  "%s: %s (discard and retrain the artefact)", path,
			  msg);
		return NB_STORE_CORRUPT;
	}
	if ((tmp.best_sha256[0] &&
	     check_file(dir, "best.safetensors", tmp.best_sha256, err) < 0) ||
	    (tmp.log_sha256[0] &&
	     check_file(dir, "log.csv", tmp.log_sha256, err) < 0))
		return NB_STORE_CORRUPT;
	if (sum)
		*sum = tmp;
	return NB_STORE_DONE;
}

/* ---- finishing and discarding -----------------------------------------------
 */

/* The SHA-256 of DIR/NAME into out, or "" when the file does not exist
 * and `required` is 0. */
static int sum_file(const char *dir, const char *name, int required,
		    char out[65], char *err)
{
	char path[STORE_PATH_LEN + 64];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	out[0] = '\0';
	struct stat st;
	if (stat(path, &st) != 0) {
		if (errno == ENOENT && !required)
			return NB_OK;
		return nb_errorf(err, NB_EIO, "%s: %s%s", path, strerror(errno),
				 errno == ENOENT ? " (an 'ok' model needs it)"
						 : "");
	}
	return nb_sha256_file(path, out, err);
}

int nb_store_finish(nb_store *s, const char *key, nb_model_summary *sum,
		    char *err)
{
	char dir[STORE_PATH_LEN], path[STORE_PATH_LEN + 64];
	int rc = folder_path(s, key, dir, sizeof dir, err);
	if (rc < 0)
		return rc;
	if (!valid_status(sum->status))
		return nb_errorf(err, NB_EINVAL,
				 "artefact %s: status '%.20s' is not ok, "
				 "diverged or failed",
				 key, sum->status);
	if (memchr(sum->desc, '\0', sizeof sum->desc) == NULL)
		return nb_errorf(err, NB_EINVAL,
				 "artefact %s: description not terminated",
				 key);
	const char *bad = control_char(sum->desc);
	if (bad)
		return nb_errorf(err, NB_EINVAL,
				 "artefact %s: the description holds control "
				 "character 0x%02x at byte %d (it must be one "
				 "line)",
				 key, (unsigned char)*bad,
				 (int)(bad - sum->desc));
	if (sum->epochs < 0 || sum->best_epoch < 0 ||
	    sum->best_epoch > sum->epochs)
		return nb_errorf(err, NB_EINVAL,
				 "artefact %s: bad epochs %d / best_epoch %d",
				 key, sum->epochs, sum->best_epoch);
	int ok = !strcmp(sum->status, "ok");
	if ((rc = sum_file(dir, "best.safetensors", ok, sum->best_sha256,
			   err)) < 0 ||
	    (rc = sum_file(dir, "log.csv", ok, sum->log_sha256, err)) < 0)
		return rc;
	memcpy(sum->key, key, 65);
	char *text = NULL;
	size_t len = 0;
	if ((rc = format_summary(sum, &text, &len, err)) < 0)
		return rc;
	snprintf(path, sizeof path, "%s/summary.ini", dir);
	rc = nb_write_file_atomic(path, text, len, err);
	free(text);
	if (rc < 0)
		return rc;
	snprintf(path, sizeof path, "%s/state.safetensors", dir);
	if (unlink(path) != 0 && errno != ENOENT)
		return nb_errorf(err, NB_EIO,
				 "%s: cannot remove: %s (the artefact is "
				 "finished; the file only takes space)",
				 path, strerror(errno));
	return NB_OK;
}

static int remove_entry(const char *path, const struct stat *st, int flag,
			struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

int nb_store_discard(nb_store *s, const char *key, char *err)
{
	char dir[STORE_PATH_LEN];
	int rc = folder_path(s, key, dir, sizeof dir, err);
	if (rc < 0)
		return rc;
	struct stat st;
	if (lstat(dir, &st) != 0 && errno == ENOENT)
		return NB_OK;
	if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
		return nb_errorf(err, NB_EIO, "%s: cannot remove: %s", dir,
				 strerror(errno));
	return NB_OK;
}
