/*
 * cifar.c - the CIFAR-10 / CIFAR-100 "binary version" loaders.
 *
 * A record is the label byte(s) then 3072 pixel bytes, already laid out as
 * the R, G and B planes of a row-major 32x32 image, i.e. exactly the (3,32,32)
 * layout of nb_dataset, so pixels are copied as they are. Every file must be
 * a non-empty whole number of records and every label (both of CIFAR-100's)
 * must be in range. It does not read the Python (pickle) or Matlab versions,
 * nor the tar.gz archive itself: extract it first (see data/README.md).
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data.h"
#include "error.h"

#define CIFAR_PIXELS 3072
#define CIFAR_CHUNK 512 /* records per fread */

typedef struct cifar_format {
	const char *archive;  /* for hints */
	int nlab;	      /* label bytes per record: 1 or 2 */
	int classes[2];	      /* range of each label byte */
	const char *lname[2]; /* name of each label byte */
	int keep;	      /* which label byte becomes ds->labels */
} cifar_format;

static const cifar_format cifar10_fmt = {
    "cifar-10-binary.tar.gz", 1, {10, 0}, {"label", NULL}, 0};
static const cifar_format cifar100_fine_fmt = {
    "cifar-100-binary.tar.gz", 2, {20, 100}, {"coarse label", "fine label"}, 1};
static const cifar_format cifar100_coarse_fmt = {
    "cifar-100-binary.tar.gz", 2, {20, 100}, {"coarse label", "fine label"}, 0};

static int join(char *out, size_t len, const char *dir, const char *name,
		char *err)
{
	int k = snprintf(out, len, "%s/%s", dir, name);
	if (k < 0 || (size_t)k >= len)
		return nb_errorf(err, NB_EINVAL, "%s: path too long", dir);
	return 0;
}

/* Size in records of one file, checked. */
static int file_records(const char *path, const cifar_format *f, long long *n,
			char *err)
{
	struct stat st;
	long long rec = f->nlab + CIFAR_PIXELS;
	if (stat(path, &st) != 0)
		return nb_errorf(err, NB_EIO,
				 "%s: cannot open: %s (it is part "
				 "of %s, see data/README.md)",
				 path, strerror(errno), f->archive);
	if (!S_ISREG(st.st_mode))
		return nb_errorf(err, NB_EIO, "%s: not a regular file", path);
	long long size = (long long)st.st_size;
	if (size == 0)
		return nb_errorf(err, NB_EFORMAT,
				 "%s: empty file; extract %s again", path,
				 f->archive);
	if (size % rec != 0)
		return nb_errorf(err, NB_EFORMAT,
				 "%s: size %lld bytes is not a whole number of "
				 "%lld-byte records (%lld records and %lld "
				 "bytes over); truncated, or not this CIFAR "
				 "format: extract %s again",
				 path, size, rec, size / rec, size % rec,
				 f->archive);
	*n = size / rec;
	return 0;
}

/* Reads nrec records of path into images/labels (already allocated). */
static int read_file(const char *path, const cifar_format *f, long long nrec,
		     uint8_t *images, int *labels, uint8_t *buf, char *err)
{
	size_t rec = (size_t)f->nlab + CIFAR_PIXELS;
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return nb_errorf(err, NB_EIO, "%s: cannot open: %s", path,
				 strerror(errno));
	int rc = 0;
	long long done = 0;
	while (done < nrec) {
		size_t want = nrec - done < CIFAR_CHUNK ? (size_t)(nrec - done)
							: CIFAR_CHUNK;
		size_t got = fread(buf, rec, want, fp);
		if (got != want) {
			rc =
			    nb_errorf(err, ferror(fp) ? NB_EIO : NB_EFORMAT,
				      "%s: %s after %lld of %lld records", path,
				      ferror(fp) ? "read error"
						 : "file shrank while reading",
				      done + (long long)got, nrec);
			goto out;
		}
		for (size_t i = 0; i < want; i++) {
			const uint8_t *r = buf + i * rec;
			for (int k = 0; k < f->nlab; k++)
				if (r[k] >= f->classes[k]) {
					rc = nb_errorf(
					    err, NB_EFORMAT,
					    "%s: record %lld has %s %d, "
					    "out of range 0..%d",
					    path, done + (long long)i,
					    f->lname[k], r[k],
					    f->classes[k] - 1);
					goto out;
				}
			labels[done + i] = r[f->keep];
			memcpy(images + (size_t)(done + i) * CIFAR_PIXELS,
			       r + f->nlab, CIFAR_PIXELS);
		}
		done += (long long)want;
	}
	if (fgetc(fp) != EOF)
		rc = nb_errorf(err, NB_EFORMAT, "%s: file grew while reading",
			       path);
out:
	fclose(fp);
	return rc;
}

static int cifar_load(const char *dir, const char *const *names, int nfiles,
		      const cifar_format *f, nb_dataset *ds, char *err)
{
	char path[4096];
	long long counts[8] = {0}, total = 0;
	uint8_t *buf = NULL;
	int rc;

	memset(ds, 0, sizeof *ds);
	if (!dir || !*dir)
		return nb_errorf(err, NB_EINVAL, "cifar: no folder given");
	for (int i = 0; i < nfiles; i++) {
		if ((rc = join(path, sizeof path, dir, names[i], err)) ||
		    (rc = file_records(path, f, &counts[i], err)))
			return rc;
		total += counts[i];
	}
	if (total > INT_MAX ||
	    (unsigned long long)total > SIZE_MAX / CIFAR_PIXELS)
		return nb_errorf(err, NB_EFORMAT, "%s: %lld records, too many",
				 dir, total);

	ds->images = malloc((size_t)total * CIFAR_PIXELS);
	ds->labels = malloc((size_t)total * sizeof *ds->labels);
	buf = malloc(CIFAR_CHUNK * ((size_t)f->nlab + CIFAR_PIXELS));
	if (!ds->images || !ds->labels || !buf) {
		rc = nb_errorf(err, NB_ENOMEM,
			       "%s: out of memory for %lld CIFAR images", dir,
			       total);
		goto fail;
	}
	long long at = 0;
	for (int i = 0; i < nfiles; i++) {
		if ((rc = join(path, sizeof path, dir, names[i], err)) ||
		    (rc = read_file(path, f, counts[i],
				    ds->images + (size_t)at * CIFAR_PIXELS,
				    ds->labels + at, buf, err)))
			goto fail;
		at += counts[i];
	}
	free(buf);
	ds->n = (int)total;
	ds->c = 3;
	ds->h = 32;
	ds->w = 32;
	ds->classes = f->classes[f->keep];
	return 0;
fail:
	free(buf);
	nb_dataset_free(ds);
	return rc;
}

int nb_cifar10_load(const char *dir, enum nb_split split, nb_dataset *ds,
		    char *err)
{
	static const char *const train[] = {
	    "data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
	    "data_batch_4.bin", "data_batch_5.bin"};
	static const char *const test[] = {"test_batch.bin"};
	if (split == NB_SPLIT_TRAIN)
		return cifar_load(dir, train, 5, &cifar10_fmt, ds, err);
	return cifar_load(dir, test, 1, &cifar10_fmt, ds, err);
}

int nb_cifar100_load(const char *dir, enum nb_split split, int coarse,
		     nb_dataset *ds, char *err)
{
	static const char *const train[] = {"train.bin"};
	static const char *const test[] = {"test.bin"};
	const cifar_format *f =
	    coarse ? &cifar100_coarse_fmt : &cifar100_fine_fmt;
	return cifar_load(dir, split == NB_SPLIT_TRAIN ? train : test, 1, f, ds,
			  err);
}
