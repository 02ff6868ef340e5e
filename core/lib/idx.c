/*
 * idx.c - the MNIST / Fashion-MNIST IDX loader (images 0x00000803, labels
 * 0x00000801, big-endian headers, uint8 payload), plain or gzip.
 *
 * Every file goes through zlib's gzopen/gzread, which reads plain files
 * transparently, so one path handles both. The files are checked
 * completely: magic, dimensions, equal counts, exact length (a truncated
 * file or trailing garbage is an error, the gzip CRC is verified by reading
 * to the end) and label range. It does not read other IDX element types
 * (int, float) or more than three dimensions: MNIST-style data only.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zlib.h>

#include "data.h"
#include "error.h"

#define IDX_MAX_SIDE 65535u

typedef struct idx_file {
	const char *path;
	gzFile gz;
	long long disk_size;
} idx_file;

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static int idx_open(idx_file *f, const char *path, char *err)
{
	struct stat st;
	f->path = path;
	f->gz = NULL;
	if (stat(path, &st) != 0)
		return nb_errorf(err, NB_EIO, "%s: cannot open: %s", path,
				 strerror(errno));
	if (!S_ISREG(st.st_mode))
		return nb_errorf(err, NB_EIO, "%s: not a regular file", path);
	f->disk_size = (long long)st.st_size;
	errno = 0;
	f->gz = gzopen(path, "rb");
	if (!f->gz)
		return nb_errorf(err, errno ? NB_EIO : NB_ENOMEM,
				 "%s: cannot open: %s", path,
				 errno ? strerror(errno) : "out of memory");
	gzbuffer(f->gz, 1u << 17);
	return 0;
}

static void idx_close(idx_file *f)
{
	if (f->gz)
		gzclose_r(f->gz);
	f->gz = NULL;
}

/* The zlib error pending on f, or NULL when there is none. */
static const char *gz_pending_error(idx_file *f)
{
	int e = Z_OK;
	const char *msg = gzerror(f->gz, &e);
	if (e == Z_OK)
		return NULL;
	if (e == Z_BUF_ERROR)
		return "unexpected end of the gzip stream";
	if (!msg || !*msg)
		return "zlib error";
	/* zlib prefixes the path; the caller names the file already */
	size_t len = strlen(f->path);
	if (!strncmp(msg, f->path, len) && !strncmp(msg + len, ": ", 2))
		msg += len + 2;
	return msg;
}

static int gz_corrupt(idx_file *f, const char *msg, char *err)
{
	return nb_errorf(err, NB_EFORMAT,
			 "%s: corrupt or truncated gzip data (zlib: %s); fetch "
			 "the file again",
			 f->path, msg);
}

/*
 * Reads exactly n bytes. A short read is reported as truncation with
 * `what` (e.g. "in the header"), counting `before` bytes already read of
 * that part; a zlib error as corrupt gzip data.
 */
static int read_exact(idx_file *f, void *buf, size_t n, size_t before,
		      const char *what, char *err)
{
	size_t done = 0;
	while (done < n) {
		size_t want = n - done;
		if (want > (1u << 30))
			want = 1u << 30;
		int r = gzread(f->gz, (uint8_t *)buf + done, (unsigned)want);
		if (r < 0) {
			const char *m = gz_pending_error(f);
			return gz_corrupt(f, m ? m : "read error", err);
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	if (done == n)
		return 0;
	const char *zmsg = gz_pending_error(f);
	if (zmsg)
		return gz_corrupt(f, zmsg, err);
	return nb_errorf(err, NB_EFORMAT,
			 "%s: truncated %s: %zu of %zu bytes; fetch the file "
			 "again",
			 f->path, what, before + done, before + n);
}

/* After the payload: the data must end here (and a gzip CRC must match). */
static int expect_end(idx_file *f, size_t payload, char *err)
{
	uint8_t b;
	int r = gzread(f->gz, &b, 1);
	if (r > 0)
		return nb_errorf(err, NB_EFORMAT,
				 "%s: trailing garbage after the %zu bytes the "
				 "header announces; not an original IDX file",
				 f->path, payload);
	const char *zmsg = gz_pending_error(f);
	if (zmsg)
		return gz_corrupt(f, zmsg, err);
	return 0;
}

/*
 * Reads and checks the header: magic 0x000008<ndims>, then ndims
 * big-endian sizes into dims. what names the file's role for messages.
 */
static int read_header(idx_file *f, int ndims, const char *what, uint32_t *dims,
		       char *err)
{
	uint8_t h[16];
	size_t hlen = 4 + 4 * (size_t)ndims;
	int rc = read_exact(f, h, 4, 0, "in the header", err);
	if (rc)
		return rc;
	uint32_t magic = be32(h);
	uint32_t want = 0x800u | (uint32_t)ndims;
	if (h[0] != 0 || h[1] != 0 || h[2] != 0x08)
		return nb_errorf(err, NB_EFORMAT,
				 "%s: wrong magic 0x%08x, expected 0x%08x "
				 "(IDX unsigned-byte %s); not an IDX %s file",
				 f->path, magic, want, what, what);
	if (h[3] != ndims)
		return nb_errorf(err, NB_EFORMAT,
				 "%s: wrong dimension count %d (magic 0x%08x), "
				 "expected %d (magic 0x%08x) for an IDX %s "
				 "file; images and labels swapped?",
				 f->path, h[3], magic, ndims, want, what);
	rc = read_exact(f, h + 4, hlen - 4, 4, "in the header", err);
	if (rc)
		return rc;
	for (int i = 0; i < ndims; i++) {
		dims[i] = be32(h + 4 + 4 * i);
		if (dims[i] == 0)
			return nb_errorf(err, NB_EFORMAT,
					 "%s: dimension %d of the header is 0",
					 f->path, i);
	}
	if (dims[0] > (uint32_t)INT_MAX)
		return nb_errorf(err, NB_EFORMAT,
				 "%s: header announces %u samples, more than "
				 "this program handles",
				 f->path, dims[0]);
	for (int i = 1; i < ndims; i++)
		if (dims[i] > IDX_MAX_SIDE)
			return nb_errorf(err, NB_EFORMAT,
					 "%s: header announces a side of %u "
					 "pixels (at most %u)",
					 f->path, dims[i], IDX_MAX_SIDE);
	return 0;
}

/* deflate's largest expansion: a 258-byte match costs at least 2 bits. */
#define GZ_MAX_RATIO 1032ull

/* A file's length is known before reading: check it up front, so a hostile
 * header cannot make us allocate for data that is not there. A plain file
 * must match exactly; a gzip file cannot hold more than GZ_MAX_RATIO times
 * its length (the exact check comes at the end of the stream). */
static int check_size(idx_file *f, size_t hlen, size_t payload, char *err)
{
	unsigned long long want = (unsigned long long)hlen + payload;
	unsigned long long have = (unsigned long long)f->disk_size;
	if (!gzdirect(f->gz)) {
		if (have < ULLONG_MAX / GZ_MAX_RATIO &&
		    want > have * GZ_MAX_RATIO)
			return nb_errorf(
			    err, NB_EFORMAT,
			    "%s: the header announces %llu bytes, "
			    "more than a gzip file of %llu bytes "
			    "can hold; corrupt or truncated, fetch "
			    "the file again",
			    f->path, want, have);
		return 0;
	}
	if (have < want)
		return nb_errorf(err, NB_EFORMAT,
				 "%s: truncated: %llu bytes, the header "
				 "announces %llu; fetch the file again",
				 f->path, have, want);
	if (have > want)
		return nb_errorf(err, NB_EFORMAT,
				 "%s: trailing garbage: %llu bytes, the header "
				 "announces %llu; not an original IDX file",
				 f->path, have, want);
	return 0;
}

int nb_idx_load(const char *images_path, const char *labels_path, int classes,
		nb_dataset *ds, char *err)
{
	idx_file fi = {0}, fl = {0};
	uint8_t *lab8 = NULL;
	uint32_t idim[3] = {0, 0, 0}, ldim[1] = {0};
	int rc;

	memset(ds, 0, sizeof *ds);
	if (!images_path || !labels_path)
		return nb_errorf(err, NB_EINVAL, "idx: no file name given");
	if (classes < 1 || classes > 256)
		return nb_errorf(err, NB_EINVAL,
				 "%s: class count %d out of range 1..256",
				 labels_path, classes);

	if ((rc = idx_open(&fl, labels_path, err)) ||
	    (rc = read_header(&fl, 1, "labels", ldim, err)))
		goto fail;
	if ((rc = idx_open(&fi, images_path, err)) ||
	    (rc = read_header(&fi, 3, "images", idim, err)))
		goto fail;
	if (idim[0] != ldim[0]) {
		rc = nb_errorf(err, NB_EFORMAT,
			       "%s: %u images but %s has %u labels; the two "
			       "files do not belong together",
			       images_path, idim[0], labels_path, ldim[0]);
		goto fail;
	}

	size_t n = idim[0], hw = (size_t)idim[1] * idim[2];
	if (n > SIZE_MAX / hw) {
		rc = nb_errorf(err, NB_EFORMAT,
			       "%s: header announces %zu images of %ux%u, too "
			       "large",
			       images_path, n, idim[1], idim[2]);
		goto fail;
	}
	if ((rc = check_size(&fi, 16, n * hw, err)) ||
	    (rc = check_size(&fl, 8, n, err)))
		goto fail;

	ds->images = malloc(n * hw);
	ds->labels = malloc(n * sizeof *ds->labels);
	lab8 = malloc(n);
	if (!ds->images || !ds->labels || !lab8) {
		rc = nb_errorf(err, NB_ENOMEM,
			       "%s: out of memory for %zu images of %ux%u",
			       images_path, n, idim[1], idim[2]);
		goto fail;
	}
	if ((rc = read_exact(&fi, ds->images, n * hw, 0, "in the pixels",
			     err)) ||
	    (rc = expect_end(&fi, n * hw, err)) ||
	    (rc = read_exact(&fl, lab8, n, 0, "in the labels", err)) ||
	    (rc = expect_end(&fl, n, err)))
		goto fail;
	for (size_t i = 0; i < n; i++) {
		if (lab8[i] >= classes) {
			rc = nb_errorf(err, NB_EFORMAT,
				       "%s: label %d of sample %zu out of "
				       "range 0..%d (%d classes)",
				       labels_path, lab8[i], i, classes - 1,
				       classes);
			goto fail;
		}
		ds->labels[i] = lab8[i];
	}
	free(lab8);
	idx_close(&fi);
	idx_close(&fl);
	ds->n = (int)n;
	ds->c = 1;
	ds->h = (int)idim[1];
	ds->w = (int)idim[2];
	ds->classes = classes;
	return 0;

fail:
	free(lab8);
	idx_close(&fi);
	idx_close(&fl);
	nb_dataset_free(ds);
	return rc;
}
