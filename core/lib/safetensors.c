/*
 * safetensors.c - reads and writes safetensors files (the tensor container
 * of Hugging Face's safetensors, which PyTorch users load with
 * safetensors.torch.load_file).
 *
 * A file is read whole into memory once and validated as strictly as the
 * reference Rust implementation does before anything is handed out: header
 * length within the file and at most 100 MB (checked before the header is
 * allocated), a JSON object (jansson: valid UTF-8, no duplicate names),
 * known dtypes, shapes of non-negative integers whose byte size is computed
 * with overflow checks and equals the declared range, ranges that lie in the
 * byte buffer and cover it exactly (no overlap, no gap, no trailing bytes),
 * and a "__metadata__" object of strings. Every error is one line naming the
 * file and the problem; names from the file are quoted with control bytes
 * escaped so that a hostile name cannot break the line.
 *
 * The writer pads the header with spaces to a multiple of 8 bytes (as the
 * reference does, so tensor data is 8-byte aligned in the file), lays the
 * tensors out in the order given and replaces the target atomically
 * (temporary file in the same folder, fsync, rename), streaming the tensor
 * bytes instead of building the whole file in memory.
 *
 * Deliberately not done: mmap (a file truncated under us would SIGBUS
 * instead of failing cleanly), byte swapping (tensor bytes are handed out
 * and taken as they are; callers on a little-endian host use them
 * directly), dtype conversion, sub-byte and 8-bit float dtypes, and
 * alignment of the returned data pointers (copy them with memcpy).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "checkpoint.h"
#include "error.h"

/* The reference implementation's MAX_HEADER_SIZE. */
#define ST_MAX_HEADER 100000000ull

struct nb_st_file {
	char *path;
	unsigned char *buf; /* the whole file (NULL for header-only opens) */
	size_t file_size;
	size_t data_len;       /* bytes after the header */
	nb_st_tensor *tensors; /* in the order of their data in the file */
	int n;
	int *by_name; /* indices into tensors, sorted by name (nb_st_find) */
	char **meta_keys, **meta_values;
	int n_meta;
};

/* ---- dtypes -------------------------------------------------------------- */

static const struct {
	const char *name;
	enum nb_dtype dtype;
	size_t size;
} dtypes[] = {
    {"F32", NB_DTYPE_F32, 4}, {"F64", NB_DTYPE_F64, 8},
    {"F16", NB_DTYPE_F16, 2}, {"BF16", NB_DTYPE_BF16, 2},
    {"I64", NB_DTYPE_I64, 8}, {"I32", NB_DTYPE_I32, 4},
    {"I16", NB_DTYPE_I16, 2}, {"I8", NB_DTYPE_I8, 1},
    {"U8", NB_DTYPE_U8, 1},   {"BOOL", NB_DTYPE_BOOL, 1},
};
#define N_DTYPES (int)(sizeof dtypes / sizeof dtypes[0])

const char *nb_dtype_name(enum nb_dtype dtype)
{
	for (int i = 0; i < N_DTYPES; i++)
		if (dtypes[i].dtype == dtype)
			return dtypes[i].name;
	return NULL;
}

size_t nb_dtype_size(enum nb_dtype dtype)
{
	for (int i = 0; i < N_DTYPES; i++)
		if (dtypes[i].dtype == dtype)
			return dtypes[i].size;
	return 0;
}

static int dtype_by_name(const char *s, enum nb_dtype *dtype)
{
	for (int i = 0; i < N_DTYPES; i++)
		if (strcmp(dtypes[i].name, s) == 0) {
			*dtype = dtypes[i].dtype;
			return 0;
		}
	return -1;
}

/* ---- messages ------------------------------------------------------------ */

/*
 * Copies s for an error message: at most max bytes (then "..."), control
 * bytes as \xNN so that the message stays one line. Bytes >= 0x80 are kept
 * (a header is valid UTF-8 by the time its names are quoted; a cut may
 * split a character, which is harmless in a message). out must hold
 * 4 * max + 4 bytes.
 */
#define QUOTE_MAX 64
#define QUOTE_BUF (4 * QUOTE_MAX + 4)
static const char *quote_n(const char *s, char *out, size_t max)
{
	size_t o = 0;
	for (size_t i = 0; s[i]; i++) {
		unsigned char c = (unsigned char)s[i];
		if (i == max) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		if (c < 0x20 || c == 0x7f)
			o += (size_t)snprintf(out + o, 5, "\\x%02x", c);
		else
			out[o++] = (char)c;
	}
	out[o] = '\0';
	return out;
}

static const char *quote(const char *s, char out[QUOTE_BUF])
{
	return quote_n(s, out, QUOTE_MAX);
}

void nb_st_format_shape(char *out, size_t len, const int64_t *shape, int ndim)
{
	size_t o = 0;
	int w = snprintf(out, len, "[");
	o += w > 0 ? (size_t)w : 0;
	for (int i = 0; i < ndim && o < len; i++) {
		w = snprintf(out + o, len - o, "%s%lld", i ? "," : "",
			     (long long)shape[i]);
		o += w > 0 ? (size_t)w : 0;
	}
	if (o < len)
		snprintf(out + o, len - o, "]");
}

/* ---- reading ------------------------------------------------------------- */

void nb_st_close(nb_st_file *f)
{
	if (!f)
		return;
	for (int i = 0; i < f->n; i++)
		free(f->tensors[i].name);
	for (int i = 0; i < f->n_meta; i++) {
		free(f->meta_keys[i]);
		free(f->meta_values[i]);
	}
	free(f->tensors);
	free(f->by_name);
	free(f->meta_keys);
	free(f->meta_values);
	free(f->buf);
	free(f->path);
	free(f);
}

/* Reads exactly len bytes at the current position. 0, or -1 with errno
 * (0 for a short file). */
static int read_full(int fd, void *dst, size_t len)
{
	unsigned char *p = dst;
	while (len) {
		ssize_t r = read(fd, p, len > (1u << 30) ? (1u << 30) : len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = 0;
			return -1;
		}
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

/* Range of one tensor while validating. */
typedef struct st_range {
	uint64_t begin, end;
	int idx;
} st_range;

static int cmp_range(const void *a, const void *b)
{
	const st_range *x = a, *y = b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return x->idx - y->idx;
}

/* Orders pointers to tensors by name (the index behind nb_st_find). */
static int cmp_tensor_name(const void *a, const void *b)
{
	const nb_st_tensor *const *x = a, *const *y = b;
	return strcmp((*x)->name, (*y)->name);
}

/* Parses one non-negative JSON integer (shape entry or offset). */
static int json_u64(const json_t *v, uint64_t *out)
{
	if (!json_is_integer(v))
		return -1;
	json_int_t x = json_integer_value(v);
	if (x < 0)
		return -1;
	*out = (uint64_t)x;
	return 0;
}

/* What a JSON value is, for messages. */
static const char *json_kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return json_integer_value(v) < 0 ? "a negative integer"
						 : "an integer";
	case JSON_REAL:
		return "a non-integer number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "something else";
}

/* Fills t (name already set) from its JSON description. */
static int parse_tensor(const char *path, const json_t *desc, nb_st_tensor *t,
			uint64_t *begin, uint64_t *end, size_t data_len,
			char *err)
{
	char q[QUOTE_BUF], sh[256];
	const char *name = quote(t->name, q);
	if (!json_is_object(desc))
		return nb_errorf(err, NB_EFORMAT,
				 "%s: tensor '%s': description is %s, not an "
				 "object with dtype, shape and data_offsets",
				 path, name, json_kind(desc));
	const json_t *jd = json_object_get(desc, "dtype");
	const json_t *js = json_object_get(desc, "shape");
	const json_t *jo = json_object_get(desc, "data_offsets");
	if (!jd || !js || !jo)
		return nb_errorf(err, NB_EFORMAT,
				 "%s: tensor '%s': no \"%s\" field", path, name,
				 !jd   ? "dtype"
				 : !js ? "shape"
				       : "data_offsets");
	/* dtype */
	if (!json_is_string(jd))
		return nb_errorf(err, NB_EFORMAT,
				 "%s: tensor '%s': dtype is %s, not a string",
				 path, name, json_kind(jd));
	if (dtype_by_name(json_string_value(jd), &t->dtype) < 0) {
		char qd[QUOTE_BUF];
		return nb_errorf(err, NB_EFORMAT,
				 "%s: tensor '%s': unsupported dtype '%s' "
				 "(known: F32 F64 F16 BF16 I64 I32 I16 I8 U8 "
				 "BOOL)",
				 path, name, quote(json_string_value(jd), qd));
	}
	size_t dsize = nb_dtype_size(t->dtype);
	/* shape */
	if (!json_is_array(js))
		return nb_errorf(err, NB_EFORMAT,
				 "%s: tensor '%s': shape is %s, not an array",
				 path, name, json_kind(js));
	size_t nd = json_array_size(js);
	if (nd > NB_ST_MAX_DIMS)
		return nb_errorf(err, NB_EFORMAT,
				 "%s: tensor '%s': shape has %zu dimensions, "
				 "more than the %d supported",
				 path, name, nd, NB_ST_MAX_DIMS);
	t->ndim = (int)nd;
	uint64_t elems = 1;
	int overflow = 0;
	for (size_t i = 0; i < nd; i++) {
		uint64_t d;
		const json_t *v = json_array_get(js, i);
		if (json_u64(v, &d) < 0)
			return nb_errorf(err, NB_EFORMAT,
					 "%s: tensor '%s': shape entry %zu is "
					 "%s, not a non-negative integer",
					 path, name, i, json_kind(v));
		t->shape[i] = (int64_t)d;
		if (d != 0 && elems > (uint64_t)INT64_MAX / d)
			overflow = 1;
		else
			elems *= d;
	}
	nb_st_format_shape(sh, sizeof sh, t->shape, t->ndim);
	/* Left to right, as the reference's checked product: [2^40, 2^40, 0]
	 * overflows on the way even though the product is 0. */
	if (overflow || elems > SIZE_MAX / dsize ||
	    elems * dsize > (uint64_t)INT64_MAX)
		return nb_errorf(err, NB_EFORMAT,
				 "%s: tensor '%s': shape %s %s has more "
				 "elements than can be addressed (overflow)",
				 path, name, sh, json_string_value(jd));
	uint64_t nbytes = elems * dsize;
	/* data_offsets */
	if (!json_is_array(jo) || json_array_size(jo) != 2)
		return nb_errorf(err, NB_EFORMAT,
				 "%s: tensor '%s': data_offsets is not an "
				 "array [begin, end]",
				 path, name);
	if (json_u64(json_array_get(jo, 0), begin) < 0 ||
	    json_u64(json_array_get(jo, 1), end) < 0)
		return nb_errorf(
		    err, NB_EFORMAT,
		    "%s: tensor '%s': data_offsets entries must be "
		    "non-negative integers",
		    path, name);
	if (*end < *begin)
		return nb_errorf(err, NB_EFORMAT,
				 "%s: tensor '%s': data_offsets [%llu, %llu] "
				 "end before begin",
				 path, name, (unsigned long long)*begin,
				 (unsigned long long)*end);
	if (*end - *begin != nbytes)
		return nb_errorf(err, NB_EFORMAT,
				 "%s: tensor '%s': data_offsets [%llu, %llu] "
				 "but shape %s %s needs %llu bytes",
				 path, name, (unsigned long long)*begin,
				 (unsigned long long)*end, sh,
				 json_string_value(jd),
				 (unsigned long long)nbytes);
	if (*end > data_len)
		return nb_errorf(err, NB_EFORMAT,
				 "%s: tensor '%s': data_offsets [%llu, %llu] "
				 "run past the end of the data (%zu bytes): "
				 "the file is truncated",
				 path, name, (unsigned long long)*begin,
				 (unsigned long long)*end, data_len);
	t->nbytes = (size_t)nbytes;
	return 0;
}

static int parse_metadata(nb_st_file *f, const json_t *m, char *err)
{
	char q[QUOTE_BUF];
	if (!json_is_object(m))
		return nb_errorf(err, NB_EFORMAT,
				 "%s: \"__metadata__\" is %s, not an object of "
				 "strings",
				 f->path, json_kind(m));
	size_t n = json_object_size(m);
	f->meta_keys = calloc(n ? n : 1, sizeof(char *));
	f->meta_values = calloc(n ? n : 1, sizeof(char *));
	if (!f->meta_keys || !f->meta_values)
		return nb_errorf(err, NB_ENOMEM, "%s: out of memory", f->path);
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)m, key, v)
	{
		if (!json_is_string(v))
			return nb_errorf(
			    err, NB_EFORMAT,
			    "%s: \"__metadata__\" value of '%s' is "
			    "%s, not a string",
			    f->path, quote(key, q), json_kind(v));
		/* A NUL inside a value would be cut by every C reader. */
		if (strlen(json_string_value(v)) != json_string_length(v))
			return nb_errorf(err, NB_EFORMAT,
					 "%s: \"__metadata__\" value of '%s' "
					 "contains a NUL character",
					 f->path, quote(key, q));
		f->meta_keys[f->n_meta] = strdup(key);
		f->meta_values[f->n_meta] = strdup(json_string_value(v));
		f->n_meta++;
		if (!f->meta_keys[f->n_meta - 1] ||
		    !f->meta_values[f->n_meta - 1])
			return nb_errorf(err, NB_ENOMEM, "%s: out of memory",
					 f->path);
	}
	return 0;
}

/* Validates the header (hdr, hlen bytes) against a data buffer of data_len
 * bytes; data (may be NULL) is where that buffer starts in memory. */
static int parse_header(nb_st_file *f, const char *hdr, size_t hlen,
			const unsigned char *data, char *err)
{
	char q[QUOTE_BUF], q2[QUOTE_BUF];
	json_error_t je;
	json_t *root = json_loadb(hdr, hlen, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		char jt[4 * JSON_ERROR_TEXT_LENGTH + 4];
		/* jansson's "duplicate object key near '"a"'" */
		const char *dup = strstr(je.text, "duplicate object key near ");
		if (dup)
			return nb_errorf(
			    err, NB_EFORMAT,
			    "%s: duplicate name %s in the header (byte %d "
			    "of the header)",
			    f->path,
			    quote_n(dup + 26, jt, JSON_ERROR_TEXT_LENGTH),
			    je.position);
		return nb_errorf(err, NB_EFORMAT,
				 "%s: header is not valid JSON: %s (byte %d "
				 "of the header)",
				 f->path,
				 quote_n(je.text, jt, JSON_ERROR_TEXT_LENGTH),
				 je.position);
	}
	int rc = 0;
	st_range *ranges = NULL;
	if (!json_is_object(root)) {
		rc = nb_errorf(err, NB_EFORMAT,
			       "%s: header is %s, not a JSON object of tensors",
			       f->path, json_kind(root));
		goto out;
	}
	size_t n = json_object_size(root);
	const json_t *meta = json_object_get(root, "__metadata__");
	if (meta)
		n--;
	if (n > INT_MAX / 2) {
		rc =
		    nb_errorf(err, NB_EFORMAT, "%s: too many tensors", f->path);
		goto out;
	}
	f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
	f->by_name = calloc(n ? n : 1, sizeof *f->by_name);
	ranges = calloc(n ? n : 1, sizeof *ranges);
	if (!f->tensors || !f->by_name || !ranges) {
		rc = nb_errorf(err, NB_ENOMEM,
			       "%s: out of memory for %zu "
			       "tensor descriptions",
			       f->path, n);
		goto out;
	}
	if (meta && (rc = parse_metadata(f, meta, err)) < 0)
		goto out;

	/* Parse into a scratch table in header order, then reorder by data
	 * offset: the order of the bytes is the file's own order (and the
	 * order the writer was given). */
	nb_st_tensor *tmp = calloc(n ? n : 1, sizeof *tmp);
	if (!tmp) {
		rc = nb_errorf(err, NB_ENOMEM, "%s: out of memory", f->path);
		goto out;
	}
	int k = 0;
	const char *key;
	json_t *v;
	json_object_foreach(root, key, v)
	{
		if (strcmp(key, "__metadata__") == 0)
			continue;
		tmp[k].name = strdup(key);
		if (!tmp[k].name) {
			rc = nb_errorf(err, NB_ENOMEM, "%s: out of memory",
				       f->path);
			break;
		}
		k++;
		rc = parse_tensor(f->path, v, &tmp[k - 1], &ranges[k - 1].begin,
				  &ranges[k - 1].end, f->data_len, err);
		if (rc < 0)
			break;
		ranges[k - 1].idx = k - 1;
	}
	if (rc < 0) {
		for (int i = 0; i < k; i++)
			free(tmp[i].name);
		free(tmp);
		goto out;
	}
	/* Coverage: sorted by offset, each range must start where the
	 * previous one ended and the last must end at the end of the file. */
	qsort(ranges, n, sizeof *ranges, cmp_range);
	uint64_t at = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		const st_range *r = &ranges[i];
		if (r->begin < at)
			rc = nb_errorf(err, NB_EFORMAT,
				       "%s: tensors '%s' and '%s' overlap "
				       "(data_offsets [%llu, %llu] and [%llu, "
				       "%llu])",
				       f->path,
				       quote(tmp[ranges[i - 1].idx].name, q),
				       quote(tmp[r->idx].name, q2),
				       (unsigned long long)ranges[i - 1].begin,
				       (unsigned long long)ranges[i - 1].end,
				       (unsigned long long)r->begin,
				       (unsigned long long)r->end);
		else if (r->begin > at)
			rc = nb_errorf(err, NB_EFORMAT,
				       "%s: bytes [%llu, %llu) of the data "
				       "belong to no tensor (gap before "
				       "'%s')",
				       f->path, (unsigned long long)at,
				       (unsigned long long)r->begin,
				       quote(tmp[r->idx].name, q));
		at = r->end;
	}
	if (rc == 0 && at != f->data_len)
		rc = nb_errorf(err, NB_EFORMAT,
			       "%s: %llu trailing byte%s after the last tensor "
			       "(data is %zu bytes, tensors cover %llu)",
			       f->path, (unsigned long long)(f->data_len - at),
			       f->data_len - at == 1 ? "" : "s", f->data_len,
			       (unsigned long long)at);
	if (rc < 0) {
		for (size_t i = 0; i < n; i++)
			free(tmp[i].name);
		free(tmp);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		f->tensors[i] = tmp[ranges[i].idx];
		f->tensors[i].data = data ? data + ranges[i].begin : NULL;
	}
	f->n = (int)n;
	free(tmp);
	/* Name index for nb_st_find. */
	const nb_st_tensor **ptrs = malloc((n ? n : 1) * sizeof *ptrs);
	if (!ptrs) {
		rc = nb_errorf(err, NB_ENOMEM, "%s: out of memory", f->path);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		ptrs[i] = &f->tensors[i];
	qsort(ptrs, n, sizeof *ptrs, cmp_tensor_name);
	for (size_t i = 0; i < n; i++)
		f->by_name[i] = (int)(ptrs[i] - f->tensors);
	free(ptrs);
out:
	free(ranges);
	json_decref(root);
	return rc;
}

int nb_st_read(const char *path, int header_only, nb_st_file **out, char *err)
{
	*out = NULL;
	nb_st_file *f = calloc(1, sizeof *f);
	if (!f || !(f->path = strdup(path))) {
		free(f);
		return nb_errorf(err, NB_ENOMEM, "%s: out of memory", path);
	}
	int rc;
	char *hdr = NULL;
	/* O_NONBLOCK: opening a FIFO must not wait for a writer (it is then
	 * refused as not a regular file; regular files ignore the flag). */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		rc = nb_errorf(err, NB_EIO, "%s: cannot open: %s", path,
			       strerror(errno));
		goto fail;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		rc = nb_errorf(err, NB_EIO, "%s: cannot stat: %s", path,
			       strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = nb_errorf(err, NB_EIO, "%s: not a regular file", path);
		goto fail;
	}
	if ((uint64_t)st.st_size > SIZE_MAX / 2) {
		rc = nb_errorf(err, NB_EFORMAT, "%s: file too large", path);
		goto fail;
	}
	f->file_size = (size_t)st.st_size;
	if (f->file_size == 0) {
		rc = nb_errorf(
		    err, NB_EFORMAT,
		    "%s: empty file (0 bytes), not a safetensors file", path);
		goto fail;
	}
	if (f->file_size < 8) {
		rc = nb_errorf(err, NB_EFORMAT,
			       "%s: %zu bytes, too short for the 8-byte header "
			       "length of a safetensors file",
			       path, f->file_size);
		goto fail;
	}
	unsigned char len8[8];
	if (read_full(fd, len8, 8) < 0) {
		rc = nb_errorf(err, NB_EIO, "%s: read failed: %s", path,
			       errno ? strerror(errno)
				     : "file shrank while reading");
		goto fail;
	}
	uint64_t hlen = 0;
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | len8[i];
	/* Both limits before allocating anything of that size. */
	if (hlen > ST_MAX_HEADER) {
		rc = nb_errorf(
		    err, NB_EFORMAT,
		    "%s: declared header length %llu exceeds the %llu "
		    "byte limit: corrupt or not a safetensors file",
		    path, (unsigned long long)hlen, ST_MAX_HEADER);
		goto fail;
	}
	if (hlen > f->file_size - 8) {
		rc = nb_errorf(
		    err, NB_EFORMAT,
		    "%s: declared header length %llu runs past the end "
		    "of the file (%zu bytes): truncated or not a "
		    "safetensors file",
		    path, (unsigned long long)hlen, f->file_size);
		goto fail;
	}
	f->data_len = f->file_size - 8 - (size_t)hlen;
	const unsigned char *data = NULL;
	if (header_only) {
		hdr = malloc(hlen ? (size_t)hlen : 1);
		if (!hdr) {
			rc = nb_errorf(err, NB_ENOMEM, "%s: out of memory",
				       path);
			goto fail;
		}
		if (read_full(fd, hdr, (size_t)hlen) < 0) {
			rc = nb_errorf(err, NB_EIO, "%s: read failed: %s", path,
				       errno ? strerror(errno)
					     : "file shrank while reading");
			goto fail;
		}
	} else {
		f->buf = malloc(f->file_size);
		if (!f->buf) {
			rc = nb_errorf(err, NB_ENOMEM,
				       "%s: out of memory for %zu bytes", path,
				       f->file_size);
			goto fail;
		}
		memcpy(f->buf, len8, 8);
		if (read_full(fd, f->buf + 8, f->file_size - 8) < 0) {
			rc = nb_errorf(err, NB_EIO, "%s: read failed: %s", path,
				       errno ? strerror(errno)
					     : "file shrank while reading");
			goto fail;
		}
		data = f->buf + 8 + hlen;
	}
	close(fd);
	fd = -1;
	rc = parse_header(f, header_only ? hdr : (const char *)f->buf + 8,
			  (size_t)hlen, data, err);
	if (rc < 0)
		goto fail;
	free(hdr);
	*out = f;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	free(hdr);
	nb_st_close(f);
	return rc;
}

nb_st_file *nb_st_open(const char *path, char *err)
{
	nb_st_file *f;
	nb_st_read(path, 0, &f, err);
	return f;
}

nb_st_file *nb_st_open_header(const char *path, char *err)
{
	nb_st_file *f;
	nb_st_read(path, 1, &f, err);
	return f;
}

const char *nb_st_path(const nb_st_file *f)
{
	return f->path;
}

int nb_st_count(const nb_st_file *f)
{
	return f->n;
}

const nb_st_tensor *nb_st_get(const nb_st_file *f, int i)
{
	if (i < 0 || i >= f->n)
		return NULL;
	return &f->tensors[i];
}

const nb_st_tensor *nb_st_find(const nb_st_file *f, const char *name)
{
	int lo = 0, hi = f->n - 1;
	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;
		const nb_st_tensor *t = &f->tensors[f->by_name[mid]];
		int c = strcmp(name, t->name);
		if (c == 0)
			return t;
		if (c < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return NULL;
}

const char *nb_st_meta(const nb_st_file *f, const char *key)
{
	for (int i = 0; i < f->n_meta; i++)
		if (strcmp(f->meta_keys[i], key) == 0)
			return f->meta_values[i];
	return NULL;
}

int nb_st_meta_count(const nb_st_file *f)
{
	return f->n_meta;
}

const char *nb_st_meta_key(const nb_st_file *f, int i)
{
	return i >= 0 && i < f->n_meta ? f->meta_keys[i] : NULL;
}

/* ---- writing ------------------------------------------------------------- */

/* Builds the header JSON padded with spaces to a multiple of 8 bytes into
 * *out (malloc, NUL-terminated; *out_len excludes the NUL): 0 or < 0. */
static int build_header(const char *path, const nb_st_out *t, int n,
			const char *const *meta_keys,
			const char *const *meta_values, int n_meta, char **out,
			size_t *out_len, char *err)
{
	char q[QUOTE_BUF];
	int rc = 0;
	json_t *root = json_object();
	if (!root)
		return nb_errorf(err, NB_ENOMEM, "%s: out of memory", path);
	if (n_meta > 0) {
		json_t *m = json_object();
		if (!m || json_object_set_new(root, "__metadata__", m) < 0) {
			rc = nb_errorf(err, NB_ENOMEM, "%s: out of memory",
				       path);
			goto out;
		}
		for (int i = 0; i < n_meta; i++) {
			if (!meta_keys[i] || !meta_values[i]) {
				rc = nb_errorf(err, NB_EINVAL,
					       "%s: metadata entry %d is NULL",
					       path, i);
				goto out;
			}
			json_t *s = json_string(meta_values[i]);
			if (!s) {
				rc =
				    nb_errorf(err, NB_EINVAL,
					      "%s: metadata '%s': value is not "
					      "valid UTF-8",
					      path, quote(meta_keys[i], q));
				goto out;
			}
			if (json_object_get(m, meta_keys[i])) {
				json_decref(s);
				rc = nb_errorf(err, NB_EINVAL,
					       "%s: metadata key '%s' given "
					       "twice",
					       path, quote(meta_keys[i], q));
				goto out;
			}
			if (json_object_set_new(m, meta_keys[i], s) < 0) {
				rc = nb_errorf(err, NB_EINVAL,
					       "%s: metadata key '%s' is not "
					       "valid UTF-8",
					       path, quote(meta_keys[i], q));
				goto out;
			}
		}
	}
	uint64_t off = 0;
	for (int i = 0; i < n; i++) {
		const nb_st_out *o = &t[i];
		const char *dn = nb_dtype_name(o->dtype);
		if (!o->name || !*o->name)
			rc = nb_errorf(err, NB_EINVAL,
				       "%s: tensor %d has no name", path, i);
		else if (strcmp(o->name, "__metadata__") == 0)
			rc = nb_errorf(err, NB_EINVAL,
				       "%s: \"__metadata__\" is reserved and "
				       "cannot name a tensor",
				       path);
		else if (json_object_get(root, o->name))
			rc = nb_errorf(err, NB_EINVAL,
				       "%s: tensor '%s' given twice", path,
				       quote(o->name, q));
		else if (!dn)
			rc = nb_errorf(err, NB_EINVAL,
				       "%s: tensor '%s': unknown dtype %d",
				       path, quote(o->name, q), (int)o->dtype);
		else if (o->ndim < 0 || o->ndim > NB_ST_MAX_DIMS)
			rc = nb_errorf(err, NB_EINVAL,
				       "%s: tensor '%s': %d dimensions", path,
				       quote(o->name, q), o->ndim);
		if (rc < 0)
			goto out;
		uint64_t elems = 1;
		for (int d = 0; d < o->ndim && rc == 0; d++) {
			uint64_t s = (uint64_t)o->shape[d];
			if (o->shape[d] < 0 ||
			    (s && elems > (uint64_t)INT64_MAX / s))
				rc = nb_errorf(err, NB_EINVAL,
					       "%s: tensor '%s': bad shape",
					       path, quote(o->name, q));
			elems *= s;
		}
		if (rc < 0)
			goto out;
		size_t dsize = nb_dtype_size(o->dtype);
		if (elems > SIZE_MAX / dsize || elems * dsize != o->nbytes ||
		    (o->nbytes && !o->data) ||
		    off + o->nbytes > (uint64_t)INT64_MAX) {
			rc = nb_errorf(err, NB_EINVAL,
				       "%s: tensor '%s': %zu bytes of data do "
				       "not match its shape and dtype",
				       path, quote(o->name, q), o->nbytes);
			goto out;
		}
		json_t *shape = json_array();
		json_t *offs = json_array();
		json_t *desc = json_object();
		int bad = !shape || !offs || !desc;
		for (int d = 0; d < o->ndim && !bad; d++)
			bad = json_array_append_new(
				  shape, json_integer(o->shape[d])) < 0;
		bad =
		    bad ||
		    json_array_append_new(offs, json_integer((json_int_t)off)) <
			0 ||
		    json_array_append_new(
			offs, json_integer((json_int_t)(off + o->nbytes))) < 0;
		/* Field order as the reference writes it. */
		bad = bad ||
		      json_object_set_new(desc, "dtype", json_string(dn)) < 0;
		if (!bad) {
			bad = json_object_set_new(desc, "shape", shape) < 0;
			shape = NULL;
		}
		if (!bad) {
			bad =
			    json_object_set_new(desc, "data_offsets", offs) < 0;
			offs = NULL;
		}
		if (bad) {
			json_decref(shape);
			json_decref(offs);
			json_decref(desc);
			rc = nb_errorf(err, NB_ENOMEM, "%s: out of memory",
				       path);
			goto out;
		}
		if (json_object_set_new(root, o->name, desc) < 0) {
			rc = nb_errorf(err, NB_EINVAL,
				       "%s: tensor name '%s' is not valid "
				       "UTF-8",
				       path, quote(o->name, q));
			goto out;
		}
		off += o->nbytes;
	}
	char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!s) {
		rc = nb_errorf(err, NB_ENOMEM, "%s: out of memory", path);
		goto out;
	}
	size_t len = strlen(s);
	size_t padded = (len + 7) & ~(size_t)7;
	char *h = realloc(s, padded + 1);
	if (!h) {
		free(s);
		rc = nb_errorf(err, NB_ENOMEM, "%s: out of memory", path);
		goto out;
	}
	memset(h + len, ' ', padded - len);
	h[padded] = '\0';
	*out = h;
	*out_len = padded;
out:
	json_decref(root);
	return rc;
}

static int write_all(int fd, const void *data, size_t len)
{
	const unsigned char *p = data;
	while (len) {
		ssize_t w = write(fd, p, len > (1u << 30) ? (1u << 30) : len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = ENOSPC;
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int nb_st_write(const char *path, const nb_st_out *tensors, int n,
		const char *const *meta_keys, const char *const *meta_values,
		int n_meta, char *err)
{
	if (!path || n < 0 || n_meta < 0 || (n && !tensors) ||
	    (n_meta && (!meta_keys || !meta_values)))
		return nb_errorf(err, NB_EINVAL,
				 "%s: bad arguments to nb_st_write",
				 path ? path : "(null)");
	char *hdr = NULL;
	size_t hlen = 0;
	int rc = build_header(path, tensors, n, meta_keys, meta_values, n_meta,
			      &hdr, &hlen, err);
	if (rc < 0)
		return rc;
	if (hlen > ST_MAX_HEADER) {
		free(hdr);
		return nb_errorf(err, NB_EINVAL,
				 "%s: header of %zu bytes exceeds the "
				 "safetensors limit",
				 path, hlen);
	}

	/* Same folder as the target, so rename is atomic; pid and a counter
	 * keep concurrent writers of one path (threads or processes) apart. */
	static unsigned counter;
	unsigned c = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
	size_t plen = strlen(path) + 48;
	char *tmp = malloc(plen);
	if (!tmp) {
		free(hdr);
		return nb_errorf(err, NB_ENOMEM, "%s: out of memory", path);
	}
	snprintf(tmp, plen, "%s.tmp.%ld.%u", path, (long)getpid(), c);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		int e = errno;
		free(hdr);
		free(tmp);
		return nb_errorf(err, NB_EIO, "%s: cannot create: %s", path,
				 strerror(e));
	}
	unsigned char len8[8];
	for (int i = 0; i < 8; i++)
		len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
	int bad = write_all(fd, len8, 8) < 0 || write_all(fd, hdr, hlen) < 0;
	for (int i = 0; i < n && !bad; i++)
		bad = write_all(fd, tensors[i].data, tensors[i].nbytes) < 0;
	free(hdr);
	if (bad) {
		int e = errno;
		close(fd);
		unlink(tmp);
		free(tmp);
		return nb_errorf(err, NB_EIO,
				 "%s: write failed: %s (nothing was replaced)",
				 path, strerror(e));
	}
	if (fsync(fd) != 0) {
		int e = errno;
		close(fd);
		unlink(tmp);
		free(tmp);
		return nb_errorf(err, NB_EIO,
				 "%s: cannot flush: %s (nothing was replaced)",
				 path, strerror(e));
	}
	if (close(fd) != 0) {
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
		return nb_errorf(err, NB_EIO,
				 "%s: cannot rename into place: %s", path,
				 strerror(e));
	}
	free(tmp);
	return 0;
}
