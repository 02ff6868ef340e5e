/*
 * dataset.c - datasets by name: where each one lives by default, which
 * files of a folder make up a split, and what to tell the user when they
 * are not there. Also freeing, truncating and subsetting a dataset.
 *
 * It does not download anything (the program never touches the network)
 * and does not convert formats: the files stay as their publishers
 * distribute them; data/README.md says how to get each one.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data.h"
#include "error.h"

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"
#define CIFAR_PAGE "https://www.cs.toronto.edu/~kriz/cifar.html"
#define TINY_ZIP "http://cs231n.stanford.edu/tiny-imagenet-200.zip"

void nb_dataset_free(nb_dataset *ds)
{
	if (!ds)
		return;
	free(ds->images);
	free(ds->labels);
	memset(ds, 0, sizeof *ds);
}

void nb_dataset_truncate(nb_dataset *ds, int n)
{
	if (n < 0 || n >= ds->n)
		return;
	ds->n = n;
	/* Shrinking never needs new memory; if realloc declines, the old
	 * (larger) blocks stay valid. */
	size_t px = (size_t)ds->c * ds->h * ds->w;
	if (n > 0) {
		uint8_t *im = realloc(ds->images, (size_t)n * px);
		int *lb = realloc(ds->labels, (size_t)n * sizeof *lb);
		if (im)
			ds->images = im;
		if (lb)
			ds->labels = lb;
	}
}

int nb_dataset_subset(nb_dataset *ds, int n, uint64_t seed, char *err)
{
	if (n < 1 || n > ds->n)
		return nb_errorf(err, NB_EINVAL,
				 "subset: %d samples asked of %s, which has %d",
				 n, ds->name[0] ? ds->name : "a dataset",
				 ds->n);
	size_t px = (size_t)ds->c * ds->h * ds->w;
	int *idx = malloc((size_t)ds->n * sizeof *idx);
	uint8_t *im = malloc(px > 0 ? (size_t)n * px : 1);
	int *lb = malloc((size_t)n * sizeof *lb);
	if (!idx || !im || !lb) {
		free(idx);
		free(im);
		free(lb);
		return nb_errorf(err, NB_ENOMEM,
				 "subset: out of memory for %d samples", n);
	}
	for (int i = 0; i < ds->n; i++)
		idx[i] = i;
	nb_rng r;
	nb_rng_seed(&r, seed, NB_RNG_DATA);
	nb_rng_shuffle(&r, idx, ds->n);
	for (int i = 0; i < n; i++) {
		memcpy(im + (size_t)i * px, ds->images + (size_t)idx[i] * px,
		       px);
		lb[i] = ds->labels[idx[i]];
	}
	free(idx);
	free(ds->images);
	free(ds->labels);
	ds->images = im;
	ds->labels = lb;
	ds->n = n;
	return 0;
}

/* 1 when path is a regular file (want_dir: a folder), 0 when it is not
 * there, or a negative code with err filled when it cannot be looked at:
 * a symlink loop (ELOOP) or a folder without permission must not read as
 * "download the dataset". */
static int probe(const char *path, int want_dir, char *err)
{
	struct stat st;
	if (stat(path, &st) == 0)
		return want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode);
	int e = errno;
	if (e == ENOENT || e == ENOTDIR)
		return 0;
	return nb_errorf(err, NB_EIO, "%s: %s%s", path, strerror(e),
			 e == ELOOP ? " (a symlink loop?)" : "");
}

/* a/b into out; 0 when it does not fit. */
static int join(char *out, size_t len, const char *a, const char *b)
{
	int k = snprintf(out, len, "%s/%s", a, b);
	return k >= 0 && (size_t)k < len;
}

/* $NASTY_BENCH_DATA/sub, else data/sub, into buf. */
static const char *env_dir(char *buf, size_t len, const char *sub)
{
	const char *root = getenv("NASTY_BENCH_DATA");
	snprintf(buf, len, "%s/%s", root && *root ? root : "data", sub);
	return buf;
}

const char *nb_dataset_default_dir(const char *name)
{
	static char mnist[4096], cifar10[4096], cifar100[4096], tiny[4096];
	if (!name)
		return NULL;
	if (!strcmp(name, "fashion-mnist"))
		return FASHION_DIR;
	if (!strcmp(name, "mnist"))
		return env_dir(mnist, sizeof mnist, "mnist");
	if (!strcmp(name, "cifar10"))
		return env_dir(cifar10, sizeof cifar10, "cifar10");
	if (!strcmp(name, "cifar100") || !strcmp(name, "cifar100-coarse"))
		return env_dir(cifar100, sizeof cifar100, "cifar100");
	if (!strcmp(name, "tiny-imagenet"))
		return env_dir(tiny, sizeof tiny, "tiny-imagenet");
	return NULL;
}

/* dir/base or dir/base.gz (plain first), into out; 0 when neither, <0
 * (err filled) when one cannot be looked at. */
static int find_idx(char *out, size_t len, const char *dir, const char *base,
		    char *err)
{
	char gz[80];
	snprintf(gz, sizeof gz, "%s.gz", base);
	int r = join(out, len, dir, base) ? probe(out, 0, err) : 0;
	if (r == 0)
		r = join(out, len, dir, gz) ? probe(out, 0, err) : 0;
	return r;
}

static int load_idx(const char *name, const char *dir, enum nb_split split,
		    nb_dataset *ds, char *err)
{
	const char *pre = split == NB_SPLIT_TRAIN ? "train" : "t10k";
	char ibase[64], lbase[64], ipath[4200], lpath[4200];
	snprintf(ibase, sizeof ibase, "%s-images-idx3-ubyte", pre);
	snprintf(lbase, sizeof lbase, "%s-labels-idx1-ubyte", pre);
	int fi = find_idx(ipath, sizeof ipath, dir, ibase, err);
	int fl = fi > 0 ? find_idx(lpath, sizeof lpath, dir, lbase, err) : 0;
	if (fi < 0 || fl < 0)
		return fi < 0 ? fi : fl;
	const char *missing = !fi ? ibase : !fl ? lbase : NULL;
	if (missing && !strcmp(name, "fashion-mnist"))
		return nb_errorf(
		    err, NB_EIO,
		    "fashion-mnist: no %s(.gz) in %s; install the data with "
		    "`apt-get install dataset-fashion-mnist` (it goes to "
		    "%s), or pass --data-dir DIR holding the original IDX "
		    "files",
		    missing, dir, FASHION_DIR);
	if (missing)
		return nb_errorf(
		    err, NB_EIO,
		    "mnist: no %s(.gz) in %s; download the four original "
		    "files train-images-idx3-ubyte.gz, "
		    "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
		    "t10k-labels-idx1-ubyte.gz (see data/README.md) into "
		    "%s, or set NASTY_BENCH_DATA or pass --data-dir",
		    missing, dir, dir);
	return nb_idx_load(ipath, lpath, 10, ds, err);
}

/* dir or dir/sub, whichever holds file, into *at; *at = NULL when
 * neither. <0 (err filled) when a path cannot be looked at. */
static int pick_dir(char *buf, size_t len, const char *dir, const char *sub,
		    const char *file, const char **at, char *err)
{
	char p[4200];
	int r;
	*at = NULL;
	if ((r = join(p, sizeof p, dir, file) ? probe(p, 0, err) : 0))
		return r < 0 ? r : (*at = dir, 0);
	if ((r = join(buf, len, dir, sub) ? probe(buf, 1, err) : 0) <= 0)
		return r;
	if ((r = join(p, sizeof p, buf, file) ? probe(p, 0, err) : 0) > 0)
		*at = buf;
	return r < 0 ? r : 0;
}

static int load_cifar(const char *name, const char *dir, enum nb_split split,
		      nb_dataset *ds, char *err)
{
	char buf[4200];
	int c10 = !strcmp(name, "cifar10");
	const char *sub = c10 ? "cifar-10-batches-bin" : "cifar-100-binary";
	const char *probe =
	    c10 ? (split == NB_SPLIT_TRAIN ? "data_batch_1.bin"
					   : "test_batch.bin")
		: (split == NB_SPLIT_TRAIN ? "train.bin" : "test.bin");
	const char *at;
	int r = pick_dir(buf, sizeof buf, dir, sub, probe, &at, err);
	if (r < 0)
		return r;
	if (!at)
		return nb_errorf(
		    err, NB_EIO,
		    "%s: no %s in %s (or its %s/); download the \"%s binary "
		    "version\" archive %s from the CIFAR page of the "
		    "University of Toronto (%s) and extract it into %s, or "
		    "set NASTY_BENCH_DATA or pass --data-dir",
		    name, probe, dir, sub, c10 ? "CIFAR-10" : "CIFAR-100",
		    c10 ? "cifar-10-binary.tar.gz" : "cifar-100-binary.tar.gz",
		    CIFAR_PAGE, dir);
	if (c10)
		return nb_cifar10_load(at, split, ds, err);
	return nb_cifar100_load(at, split, !strcmp(name, "cifar100-coarse"), ds,
				err);
}

/* Tiny-ImageNet: dir or dir/tiny-imagenet-200, whichever holds wnids.txt;
 * the test split is val/. */
static int load_tiny(const char *dir, enum nb_split split, nb_dataset *ds,
		     char *err)
{
	char buf[4200];
	const char *at;
	int r = pick_dir(buf, sizeof buf, dir, "tiny-imagenet-200",
			 "wnids.txt", &at, err);
	if (r < 0)
		return r;
	if (!at)
		return nb_errorf(
		    err, NB_EIO,
		    "tiny-imagenet: no wnids.txt in %s (or its "
		    "tiny-imagenet-200/); download the original "
		    "tiny-imagenet-200.zip from the CS231n course site (%s) "
		    "and unzip it into %s, or set NASTY_BENCH_DATA or pass "
		    "--data-dir",
		    dir, TINY_ZIP, dir);
	return nb_tinyimagenet_load(at, split, ds, err);
}

int nb_dataset_load(const char *name, const char *dir, enum nb_split split,
		    nb_dataset *ds, char *err)
{
	int rc;
	memset(ds, 0, sizeof *ds);
	const char *def = nb_dataset_default_dir(name);
	if (!def)
		return nb_errorf(
		    err, NB_EINVAL,
		    "unknown dataset \"%s\"; known: fashion-mnist, "
		    "mnist, cifar10, cifar100, cifar100-coarse, tiny-imagenet",
		    name ? name : "(null)");
	if (split != NB_SPLIT_TRAIN && split != NB_SPLIT_TEST)
		return nb_errorf(err, NB_EINVAL, "%s: bad split %d", name,
				 (int)split);
	if (!dir || !*dir)
		dir = def;
	if (strlen(dir) > 4000)
		return nb_errorf(err, NB_EINVAL,
				 "%s: data folder path too long", name);
	if ((rc = probe(dir, 1, err)) < 0)
		return rc;
	if (!strcmp(name, "fashion-mnist") || !strcmp(name, "mnist"))
		rc = load_idx(name, dir, split, ds, err);
	else if (!strcmp(name, "tiny-imagenet"))
		rc = load_tiny(dir, split, ds, err);
	else
		rc = load_cifar(name, dir, split, ds, err);
	if (rc == 0)
		snprintf(ds->name, sizeof ds->name, "%s", name);
	return rc;
}
