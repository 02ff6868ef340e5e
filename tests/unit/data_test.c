/*
 * data_test.c - the dataset loaders, the synthetic writers and the batch
 * builder: round trips synth -> load in every format, every loader's bad
 * input (each error must name the file and the problem), augmentation
 * values and determinism, rotation against torchvision/Pillow
 * (tests/fixtures/golden_rotate.h, made by make_golden_rotate.py), seeded
 * subsets, and the real Fashion-MNIST files when installed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "../fixtures/golden_rotate.h"
#include "data.h"
#include "error.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------ */

static char *path_in(const char *dir, const char *name)
{
	static char buf[8][4200];
	static int k;
	char *p = buf[k++ % 8];
	snprintf(p, sizeof buf[0], "%s/%s", dir, name);
	return p;
}

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
	uint32_t c = 0xffffffffu;
	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = c >> 1 ^ (0xedb88320u & (0u - (c & 1)));
	}
	return ~c;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> 8 * i);
}

/*
 * buf as a gzip member of stored (uncompressed) deflate blocks: written
 * here without zlib, so the loader is also checked against an encoder
 * that is not the one it reads with.
 */
static uint8_t *gzip_stored(const uint8_t *buf, size_t n, size_t *out_n)
{
	size_t blocks = n / 65535 + 1;
	uint8_t *z = malloc(10 + n + 5 * blocks + 8), *p = z;
	if (!z)
		return NULL;
	static const uint8_t hdr[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
	memcpy(p, hdr, 10);
	p += 10;
	size_t done = 0;
	for (size_t b = 0; b < blocks; b++) {
		size_t len = n - done > 65535 ? 65535 : n - done;
		*p++ = b == blocks - 1; /* BFINAL, BTYPE 00 */
		p[0] = (uint8_t)len;
		p[1] = (uint8_t)(len >> 8);
		p[2] = (uint8_t)~len;
		p[3] = (uint8_t)(~len >> 8);
		p += 4;
		memcpy(p, buf + done, len);
		p += len;
		done += len;
	}
	put_le32(p, crc32_of(buf, n));
	put_le32(p + 4, (uint32_t)n);
	p += 8;
	*out_n = (size_t)(p - z);
	return z;
}

static int write_file(const char *path, const void *buf, size_t n, int gz)
{
	uint8_t *z = NULL;
	if (gz) {
		z = gzip_stored(buf, n, &n);
		if (!z)
			return -1;
		buf = z;
	}
	FILE *f = fopen(path, "wb");
	int ok = f && fwrite(buf, 1, n, f) == n;
	if (f && fclose(f) != 0)
		ok = 0;
	free(z);
	return ok ? 0 : -1;
}

static uint8_t *read_all(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long len = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *b = malloc(len > 0 ? (size_t)len : 1);
	if (b && fread(b, 1, (size_t)len, f) != (size_t)len) {
		free(b);
		b = NULL;
	}
	fclose(f);
	*n = (size_t)len;
	return b;
}

/* rc must be non-zero and the message must hold file and what. */
static void expect_error(const char *tcase, int rc, const char *err,
			 const char *file, const char *what)
{
	int ok = rc != 0 && (!file || strstr(err, file)) && strstr(err, what);
	if (getenv("NB_TEST_VERBOSE"))
		printf("\n  %-28s rc %d: %s", tcase, rc, err);
	if (!ok)
		fprintf(stderr,
			"\n  case %s: rc %d, message \"%s\"; wanted \"%s\" "
			"and \"%s\"\n",
			tcase, rc, err, file ? file : "", what);
	CU_ASSERT(ok);
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* ---- round trips -------------------------------------------------------- */

static void idx_round_trip(int gz)
{
	char err[NB_ERR_LEN] = "";
	char *dir = tu_mkdtemp();
	CU_ASSERT_FATAL(dir != NULL);
	CU_ASSERT_EQUAL_FATAL(nb_synth_write(dir, "idx", 50, 20, gz, 7, err),
			      0);
	const char *ext = gz ? ".gz" : "";
	char ip[64], lp[64];
	snprintf(ip, sizeof ip, "train-images-idx3-ubyte%s", ext);
	snprintf(lp, sizeof lp, "train-labels-idx1-ubyte%s", ext);

	nb_dataset ds;
	int rc = nb_dataset_load("mnist", dir, NB_SPLIT_TRAIN, &ds, err);
	if (rc)
		fprintf(stderr, "\n  %s\n", err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	CU_ASSERT_STRING_EQUAL(ds.name, "mnist");
	CU_ASSERT_EQUAL(ds.n, 50);
	CU_ASSERT_EQUAL(ds.c, 1);
	CU_ASSERT_EQUAL(ds.h, 28);
	CU_ASSERT_EQUAL(ds.w, 28);
	CU_ASSERT_EQUAL(ds.classes, 10);
	int count[10] = {0};
	for (int i = 0; i < ds.n; i++)
		count[ds.labels[i]]++;
	for (int k = 0; k < 10; k++)
		CU_ASSERT_EQUAL(count[k], 5);

	/* Compare with the bytes on disk; for gz, with those of a plain
	 * twin written from the same seed. */
	size_t ni, nl;
	char *twin = NULL;
	const char *rawdir = dir;
	if (gz) {
		size_t n;
		uint8_t *disk = read_all(path_in(dir, ip), &n);
		CU_ASSERT_FATAL(disk != NULL);
		CU_ASSERT(disk[0] == 0x1f && disk[1] == 0x8b); /* gzip */
		CU_ASSERT(n < 16 + 50 * 784);		       /* compressed */
		free(disk);
		twin = tu_mkdtemp();
		CU_ASSERT_FATAL(twin != NULL);
		CU_ASSERT_EQUAL_FATAL(
		    nb_synth_write(twin, "idx", 50, 20, 0, 7, err), 0);
		rawdir = twin;
	}
	uint8_t *raw_i =
	    read_all(path_in(rawdir, "train-images-idx3-ubyte"), &ni);
	uint8_t *raw_l =
	    read_all(path_in(rawdir, "train-labels-idx1-ubyte"), &nl);
	CU_ASSERT_FATAL(raw_i && raw_l);
	CU_ASSERT_EQUAL_FATAL(ni, 16 + 50 * 784);
	CU_ASSERT_EQUAL_FATAL(nl, 8 + 50);
	CU_ASSERT_EQUAL(raw_i[3], 0x03);
	CU_ASSERT_EQUAL(raw_l[3], 0x01);
	static const int probe[][2] = {{0, 0}, {0, 783}, {17, 400}, {49, 211}};
	for (size_t k = 0; k < sizeof probe / sizeof probe[0]; k++) {
		int i = probe[k][0], j = probe[k][1];
		CU_ASSERT_EQUAL(ds.images[i * 784 + j],
				raw_i[16 + i * 784 + j]);
	}
	CU_ASSERT(memcmp(ds.images, raw_i + 16, 50 * 784) == 0);
	for (int i = 0; i < 50; i++)
		CU_ASSERT_EQUAL(ds.labels[i], raw_l[8 + i]);
	free(raw_i);
	free(raw_l);
	if (twin) {
		tu_rmtree(twin);
		free(twin);
	}

	nb_dataset te;
	CU_ASSERT_EQUAL_FATAL(
	    nb_dataset_load("mnist", dir, NB_SPLIT_TEST, &te, err), 0);
	CU_ASSERT_EQUAL(te.n, 20);
	/* the test split is not a copy of the first training images */
	CU_ASSERT(memcmp(te.images, ds.images, 784) != 0);
	nb_dataset_free(&te);
	nb_dataset_free(&ds);
	CU_ASSERT_PTR_NULL(ds.images);
	tu_rmtree(dir);
	free(dir);
}

static void idx_plain_round_trip(void)
{
	idx_round_trip(0);
}

static void idx_gz_round_trip(void)
{
	idx_round_trip(1);
}

static void idx_gz_equals_plain(void)
{
	char err[NB_ERR_LEN];
	char *a = tu_mkdtemp(), *b = tu_mkdtemp();
	CU_ASSERT_FATAL(a && b);
	CU_ASSERT_EQUAL_FATAL(nb_synth_write(a, "idx", 30, 10, 0, 3, err), 0);
	CU_ASSERT_EQUAL_FATAL(nb_synth_write(b, "idx", 30, 10, 1, 3, err), 0);
	nb_dataset x, y;
	CU_ASSERT_EQUAL_FATAL(nb_idx_load(path_in(a, "t10k-images-idx3-ubyte"),
					  path_in(a, "t10k-labels-idx1-ubyte"),
					  10, &x, err),
			      0);
	CU_ASSERT_EQUAL_FATAL(
	    nb_idx_load(path_in(b, "t10k-images-idx3-ubyte.gz"),
			path_in(b, "t10k-labels-idx1-ubyte.gz"), 10, &y, err),
	    0);
	CU_ASSERT_EQUAL(x.n, y.n);
	CU_ASSERT(memcmp(x.images, y.images, (size_t)x.n * 784) == 0);
	CU_ASSERT(memcmp(x.labels, y.labels, (size_t)x.n * sizeof(int)) == 0);
	nb_dataset_free(&x);
	nb_dataset_free(&y);
	tu_rmtree(a);
	tu_rmtree(b);
	free(a);
	free(b);
}

static void cifar10_round_trip(void)
{
	char err[NB_ERR_LEN] = "";
	char *dir = tu_mkdtemp();
	CU_ASSERT_FATAL(dir != NULL);
	/* 23 = 5+5+5+4+4 over the five batch files */
	CU_ASSERT_EQUAL_FATAL(nb_synth_write(dir, "cifar10", 23, 7, 0, 5, err),
			      0);
	nb_dataset ds;
	int rc = nb_cifar10_load(dir, NB_SPLIT_TRAIN, &ds, err);
	if (rc)
		fprintf(stderr, "\n  %s\n", err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	CU_ASSERT_EQUAL(ds.n, 23);
	CU_ASSERT_EQUAL(ds.c, 3);
	CU_ASSERT_EQUAL(ds.h, 32);
	CU_ASSERT_EQUAL(ds.w, 32);
	CU_ASSERT_EQUAL(ds.classes, 10);
	int at = 0;
	for (int f = 1; f <= 5; f++) {
		char name[32];
		snprintf(name, sizeof name, "data_batch_%d.bin", f);
		size_t n;
		uint8_t *raw = read_all(path_in(dir, name), &n);
		CU_ASSERT_FATAL(raw != NULL);
		CU_ASSERT_EQUAL(n, (size_t)(f <= 3 ? 5 : 4) * 3073);
		for (size_t r = 0; r < n / 3073; r++, at++) {
			const uint8_t *rec = raw + r * 3073;
			CU_ASSERT_EQUAL(ds.labels[at], rec[0]);
			const uint8_t *im = ds.images + (size_t)at * 3072;
			/* (c, y, x) from the R, G, B planes */
			CU_ASSERT_EQUAL(im[0], rec[1]);
			CU_ASSERT_EQUAL(im[1024 + 5 * 32 + 7],
					rec[1 + 1024 + 5 * 32 + 7]);
			CU_ASSERT_EQUAL(im[2048 + 31 * 32 + 31], rec[3072]);
			CU_ASSERT(memcmp(im, rec + 1, 3072) == 0);
		}
		free(raw);
	}
	CU_ASSERT_EQUAL(at, 23);
	nb_dataset_free(&ds);

	/* the dataset loader also finds the cifar-10-batches-bin subfolder */
	char *top = tu_mkdtemp();
	CU_ASSERT_FATAL(top != NULL);
	CU_ASSERT_EQUAL_FATAL(rename(dir, path_in(top, "cifar-10-batches-bin")),
			      0);
	rc = nb_dataset_load("cifar10", top, NB_SPLIT_TEST, &ds, err);
	if (rc)
		fprintf(stderr, "\n  %s\n", err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	CU_ASSERT_EQUAL(ds.n, 7);
	CU_ASSERT_STRING_EQUAL(ds.name, "cifar10");
	nb_dataset_free(&ds);
	tu_rmtree(top);
	free(top);
	free(dir);
}

static void cifar100_round_trip(void)
{
	char err[NB_ERR_LEN] = "";
	char *dir = tu_mkdtemp();
	CU_ASSERT_FATAL(dir != NULL);
	CU_ASSERT_EQUAL_FATAL(
	    nb_synth_write(dir, "cifar100", 300, 40, 0, 9, err), 0);
	nb_dataset fine, coarse;
	CU_ASSERT_EQUAL_FATAL(
	    nb_cifar100_load(dir, NB_SPLIT_TRAIN, 0, &fine, err), 0);
	CU_ASSERT_EQUAL_FATAL(
	    nb_cifar100_load(dir, NB_SPLIT_TRAIN, 1, &coarse, err), 0);
	CU_ASSERT_EQUAL(fine.n, 300);
	CU_ASSERT_EQUAL(fine.classes, 100);
	CU_ASSERT_EQUAL(coarse.classes, 20);
	CU_ASSERT_EQUAL(fine.c, 3);
	size_t n;
	uint8_t *raw = read_all(path_in(dir, "train.bin"), &n);
	CU_ASSERT_FATAL(raw != NULL);
	CU_ASSERT_EQUAL_FATAL(n, 300 * 3074);
	int count[100] = {0};
	for (int i = 0; i < 300; i++) {
		const uint8_t *rec = raw + (size_t)i * 3074;
		CU_ASSERT_EQUAL(coarse.labels[i], rec[0]);
		CU_ASSERT_EQUAL(fine.labels[i], rec[1]);
		CU_ASSERT_EQUAL(coarse.labels[i], fine.labels[i] / 5);
		count[fine.labels[i]]++;
	}
	for (int k = 0; k < 100; k++)
		CU_ASSERT_EQUAL(count[k], 3);
	CU_ASSERT_EQUAL(fine.images[0], raw[2]);
	CU_ASSERT_EQUAL(fine.images[299 * 3072 + 2047], raw[299 * 3074 + 2049]);
	CU_ASSERT(memcmp(fine.images, coarse.images, 300 * 3072) == 0);
	free(raw);
	nb_dataset_free(&fine);
	nb_dataset_free(&coarse);

	CU_ASSERT_EQUAL_FATAL(nb_dataset_load("cifar100-coarse", dir,
					      NB_SPLIT_TEST, &coarse, err),
			      0);
	CU_ASSERT_EQUAL(coarse.n, 40);
	CU_ASSERT_EQUAL(coarse.classes, 20);
	nb_dataset_free(&coarse);
	tu_rmtree(dir);
	free(dir);
}

/* Nearest class mean on the synthetic data: the patterns are learnable. */
static double nearest_mean_accuracy(const nb_dataset *tr, const nb_dataset *te)
{
	size_t px = (size_t)tr->c * tr->h * tr->w;
	double *mean = calloc((size_t)tr->classes * px, sizeof *mean);
	int *cnt = calloc((size_t)tr->classes, sizeof *cnt);
	if (!mean || !cnt) {
		free(mean);
		free(cnt);
		return -1;
	}
	for (int i = 0; i < tr->n; i++) {
		cnt[tr->labels[i]]++;
		for (size_t j = 0; j < px; j++)
			mean[tr->labels[i] * px + j] += tr->images[i * px + j];
	}
	for (int k = 0; k < tr->classes; k++)
		for (size_t j = 0; j < px; j++)
			mean[k * px + j] /= cnt[k] ? cnt[k] : 1;
	int right = 0;
	for (int i = 0; i < te->n; i++) {
		int best = -1;
		double bd = 0;
		for (int k = 0; k < tr->classes; k++) {
			double d = 0;
			for (size_t j = 0; j < px; j++) {
				double e =
				    te->images[i * px + j] - mean[k * px + j];
				d += e * e;
			}
			if (best < 0 || d < bd) {
				best = k;
				bd = d;
			}
		}
		right += best == te->labels[i];
	}
	free(mean);
	free(cnt);
	return (double)right / te->n;
}

static void synth_is_learnable_and_seeded(void)
{
	static const struct {
		const char *format, *name;
		int ntr, nte;
	} cases[] = {{"idx", "mnist", 500, 200},
		     {"cifar10", "cifar10", 500, 200},
		     {"cifar100", "cifar100", 2000, 300}};
	char err[NB_ERR_LEN];
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		char *a = tu_mkdtemp(), *b = tu_mkdtemp();
		CU_ASSERT_FATAL(a && b);
		CU_ASSERT_EQUAL_FATAL(nb_synth_write(a, cases[c].format,
						     cases[c].ntr, cases[c].nte,
						     0, 11, err),
				      0);
		CU_ASSERT_EQUAL_FATAL(nb_synth_write(b, cases[c].format,
						     cases[c].ntr, cases[c].nte,
						     0, 12, err),
				      0);
		nb_dataset tr, te, other;
		CU_ASSERT_EQUAL_FATAL(
		    nb_dataset_load(cases[c].name, a, NB_SPLIT_TRAIN, &tr, err),
		    0);
		CU_ASSERT_EQUAL_FATAL(
		    nb_dataset_load(cases[c].name, a, NB_SPLIT_TEST, &te, err),
		    0);
		CU_ASSERT_EQUAL_FATAL(nb_dataset_load(cases[c].name, b,
						      NB_SPLIT_TRAIN, &other,
						      err),
				      0);
		double acc = nearest_mean_accuracy(&tr, &te);
		if (acc < 0.9)
			fprintf(stderr, "\n  %s: nearest-mean accuracy %.3f\n",
				cases[c].format, acc);
		CU_ASSERT(acc >= 0.9);
		CU_ASSERT(memcmp(tr.images, other.images, 3 * 28 * 28) != 0);
		nb_dataset_free(&tr);
		nb_dataset_free(&te);
		nb_dataset_free(&other);
		tu_rmtree(a);
		tu_rmtree(b);
		free(a);
		free(b);
	}
	/* same seed, same bytes */
	char *a = tu_mkdtemp(), *b = tu_mkdtemp();
	CU_ASSERT_FATAL(a && b);
	CU_ASSERT_EQUAL(nb_synth_write(a, "cifar100", 20, 5, 0, 4, err), 0);
	CU_ASSERT_EQUAL(nb_synth_write(b, "cifar100", 20, 5, 0, 4, err), 0);
	size_t na, nb;
	uint8_t *ra = read_all(path_in(a, "train.bin"), &na);
	uint8_t *rb = read_all(path_in(b, "train.bin"), &nb);
	CU_ASSERT_FATAL(ra && rb);
	CU_ASSERT(na == nb && memcmp(ra, rb, na) == 0);
	free(ra);
	free(rb);
	tu_rmtree(a);
	tu_rmtree(b);
	free(a);
	free(b);
}

static void synth_bad_arguments(void)
{
	char err[NB_ERR_LEN];
	char *dir = tu_mkdtemp();
	CU_ASSERT_FATAL(dir != NULL);
	expect_error("format", nb_synth_write(dir, "png", 10, 10, 0, 1, err),
		     err, NULL, "unknown format");
	expect_error("cifar10 n",
		     nb_synth_write(dir, "cifar10", 4, 1, 0, 1, err), err, NULL,
		     "n_train >= 5");
	expect_error("n", nb_synth_write(dir, "idx", 0, 1, 0, 1, err), err,
		     NULL, "at least 1");
	expect_error(
	    "no dir",
	    nb_synth_write(path_in(dir, "nope"), "idx", 1, 1, 0, 1, err), err,
	    "nope", "cannot create");
	tu_rmtree(dir);
	free(dir);
}

static void truncate_keeps_prefix(void)
{
	char err[NB_ERR_LEN];
	char *dir = tu_mkdtemp();
	CU_ASSERT_FATAL(dir != NULL);
	CU_ASSERT_EQUAL_FATAL(nb_synth_write(dir, "idx", 40, 5, 0, 2, err), 0);
	nb_dataset a, b;
	CU_ASSERT_EQUAL_FATAL(
	    nb_dataset_load("mnist", dir, NB_SPLIT_TRAIN, &a, err), 0);
	CU_ASSERT_EQUAL_FATAL(
	    nb_dataset_load("mnist", dir, NB_SPLIT_TRAIN, &b, err), 0);
	nb_dataset_truncate(&a, 100); /* no-op */
	CU_ASSERT_EQUAL(a.n, 40);
	nb_dataset_truncate(&a, 13);
	CU_ASSERT_EQUAL(a.n, 13);
	CU_ASSERT(memcmp(a.images, b.images, 13 * 784) == 0);
	CU_ASSERT(memcmp(a.labels, b.labels, 13 * sizeof(int)) == 0);
	nb_dataset_free(&a);
	nb_dataset_free(&b);
	nb_dataset_free(&a); /* twice is safe */
	tu_rmtree(dir);
	free(dir);
}

/* ---- IDX bad input --------------------------------------------------------
 */

enum { GZ_NONE, GZ_OK, GZ_CUT, GZ_FLIP };

typedef struct idx_bad {
	const char *name;
	uint32_t img_magic, lab_magic;
	int n_img, n_lab; /* counts written in the headers */
	long img_keep;	  /* bytes of the images file kept; -1 all */
	long lab_keep;
	int img_extra; /* trailing bytes appended */
	int lab_extra;
	int bad_label;	  /* label of sample 3 set to this if > 0 */
	int gz;		  /* GZ_*: how the images file is stored */
	int no_images;	  /* images file absent */
	int labels_named; /* the error must name the labels file */
	const char *expect;
} idx_bad;

#define M3 0x803u
#define M1 0x801u
static const idx_bad idx_cases[] = {
    {"missing images", M3, M1, 20, 20, -1, -1, 0, 0, 0, GZ_NONE, 1, 0,
     "cannot open"},
    {"images wrong magic", 0x12345678, M1, 20, 20, -1, -1, 0, 0, 0, GZ_NONE, 0,
     0, "wrong magic"},
    {"images float type", 0x0d03, M1, 20, 20, -1, -1, 0, 0, 0, GZ_NONE, 0, 0,
     "wrong magic"},
    {"labels wrong magic", M3, 0xdeadbeef, 20, 20, -1, -1, 0, 0, 0, GZ_NONE, 0,
     1, "wrong magic"},
    {"images 2-D", 0x802, M1, 20, 20, -1, -1, 0, 0, 0, GZ_NONE, 0, 0,
     "dimension count"},
    {"labels 3-D", M3, M3, 20, 20, -1, -1, 0, 0, 0, GZ_NONE, 0, 1,
     "dimension count"},
    {"images cut in header", M3, M1, 20, 20, 10, -1, 0, 0, 0, GZ_NONE, 0, 0,
     "truncated"},
    {"images cut in magic", M3, M1, 20, 20, 2, -1, 0, 0, 0, GZ_NONE, 0, 0,
     "truncated"},
    {"images cut in pixels", M3, M1, 20, 20, 16 + 700, -1, 0, 0, 0, GZ_NONE, 0,
     0, "truncated"},
    {"labels cut in header", M3, M1, 20, 20, -1, 6, 0, 0, 0, GZ_NONE, 0, 1,
     "truncated"},
    {"labels cut in data", M3, M1, 20, 20, -1, 8 + 19, 0, 0, 0, GZ_NONE, 0, 1,
     "truncated"},
    {"images trailing garbage", M3, M1, 20, 20, -1, -1, 3, 0, 0, GZ_NONE, 0, 0,
     "trailing garbage"},
    {"labels trailing garbage", M3, M1, 20, 20, -1, -1, 0, 1, 0, GZ_NONE, 0, 1,
     "trailing garbage"},
    {"count mismatch", M3, M1, 20, 19, -1, -1, 0, 0, 0, GZ_NONE, 0, 0,
     "do not belong together"},
    {"count mismatch names labels", M3, M1, 20, 19, -1, -1, 0, 0, 0, GZ_NONE, 0,
     1, "19 labels"},
    {"label out of range", M3, M1, 20, 20, -1, -1, 0, 0, 10, GZ_NONE, 0, 1,
     "out of range"},
    /* a plain file is measured before any allocation: no attempt to
     * allocate 2^31 x 784 bytes for a 50 kB file */
    {"hostile counts", M3, M1, 0x7fffffff, 0x7fffffff, -1, -1, 0, 0, 0, GZ_NONE,
     0, 0, "truncated: "},
    {"gz wrong magic", 0x12345678, M1, 20, 20, -1, -1, 0, 0, 0, GZ_OK, 0, 0,
     "wrong magic"},
    {"gz cut in header", M3, M1, 20, 20, 12, -1, 0, 0, 0, GZ_OK, 0, 0,
     "truncated"},
    {"gz cut in pixels", M3, M1, 20, 20, 16 + 5000, -1, 0, 0, 0, GZ_OK, 0, 0,
     "truncated"},
    {"gz trailing garbage", M3, M1, 20, 20, -1, -1, 5, 0, 0, GZ_OK, 0, 0,
     "trailing garbage"},
    {"gz stream cut", M3, M1, 20, 20, -1, -1, 0, 0, 0, GZ_CUT, 0, 0, "gzip"},
    {"corrupt gz", M3, M1, 20, 20, -1, -1, 0, 0, 0, GZ_FLIP, 0, 0, "gzip"},
    {NULL, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, NULL}};

static void run_idx_case(const idx_bad *c, const char *dir)
{
	enum { R = 28, C = 28 };
	char err[NB_ERR_LEN] = "";
	int nmax = c->n_img > c->n_lab ? c->n_img : c->n_lab;
	if (nmax > 64) /* hostile headers: far less data than announced */
		nmax = 64;
	size_t isz = 16 + (size_t)nmax * R * C + (size_t)c->img_extra;
	size_t lsz = 8 + (size_t)nmax + (size_t)c->lab_extra;
	uint8_t *im = calloc(isz, 1), *lb = calloc(lsz, 1);
	CU_ASSERT_FATAL(im && lb);
	nb_rng r;
	nb_rng_seed(&r, 1, NB_RNG_DATA);
	put_be32(im, c->img_magic);
	put_be32(im + 4, (uint32_t)c->n_img);
	put_be32(im + 8, R);
	put_be32(im + 12, C);
	for (size_t i = 16; i < isz; i++)
		im[i] = (uint8_t)nb_rng_below(&r, 256);
	put_be32(lb, c->lab_magic);
	put_be32(lb + 4, (uint32_t)c->n_lab);
	if (c->lab_magic == M3) { /* a "3-D" labels header */
		put_be32(lb + 8, 1);
		put_be32(lb + 12, 1);
	} else {
		for (size_t i = 8; i < lsz; i++)
			lb[i] = (uint8_t)(i % 10);
	}
	if (c->bad_label)
		lb[8 + 3] = (uint8_t)c->bad_label;
	size_t iw = 16 + (size_t)c->n_img * R * C + (size_t)c->img_extra;
	size_t lw = 8 + (size_t)c->n_lab + (size_t)c->lab_extra;
	if (c->img_keep >= 0)
		iw = (size_t)c->img_keep;
	if (c->lab_keep >= 0)
		lw = (size_t)c->lab_keep;
	iw = iw < isz ? iw : isz;
	lw = lw < lsz ? lw : lsz;

	const char *ipath = path_in(dir, c->gz ? "img.gz" : "img");
	const char *lpath = path_in(dir, "lab");
	remove(ipath);
	if (!c->no_images) {
		CU_ASSERT_FATAL(write_file(ipath, im, iw, c->gz != GZ_NONE) ==
				0);
	}
	CU_ASSERT_FATAL(write_file(lpath, lb, lw, 0) == 0);
	if (c->gz == GZ_CUT || c->gz == GZ_FLIP) {
		size_t n;
		uint8_t *z = read_all(ipath, &n);
		CU_ASSERT_FATAL(z != NULL && n > 100);
		if (c->gz == GZ_FLIP) {
			for (size_t k = n / 2; k < n / 2 + 8; k++)
				z[k] ^= 0x5a;
		} else {
			n /= 2;
		}
		CU_ASSERT_FATAL(write_file(ipath, z, n, 0) == 0);
		free(z);
	}
	nb_dataset ds;
	memset(&ds, 0xff, sizeof ds); /* the loader must not trust it */
	int rc = nb_idx_load(ipath, lpath, 10, &ds, err);
	expect_error(c->name, rc, err, c->labels_named ? lpath : ipath,
		     c->expect);
	CU_ASSERT_PTR_NULL(ds.images);
	CU_ASSERT_EQUAL(ds.n, 0);
	if (rc == 0)
		nb_dataset_free(&ds);
	free(im);
	free(lb);
}

static void idx_bad_inputs(void)
{
	char *dir = tu_mkdtemp();
	CU_ASSERT_FATAL(dir != NULL);
	for (const idx_bad *c = idx_cases; c->name; c++)
		run_idx_case(c, dir);
	tu_rmtree(dir);
	free(dir);
}

static void idx_bad_classes_and_missing_labels(void)
{
	char err[NB_ERR_LEN];
	char *dir = tu_mkdtemp();
	CU_ASSERT_FATAL(dir != NULL);
	CU_ASSERT_EQUAL_FATAL(nb_synth_write(dir, "idx", 10, 10, 0, 1, err), 0);
	const char *ip = path_in(dir, "train-images-idx3-ubyte");
	const char *lp = path_in(dir, "train-labels-idx1-ubyte");
	nb_dataset ds;
	expect_error("classes 0", nb_idx_load(ip, lp, 0, &ds, err), err, lp,
		     "class count");
	/* 10 balanced samples hold label 9: out of range for 5 classes */
	expect_error("classes 5", nb_idx_load(ip, lp, 5, &ds, err), err, lp,
		     "out of range");
	expect_error("missing labels",
		     nb_idx_load(ip, path_in(dir, "nolabels"), 10, &ds, err),
		     err, "nolabels", "cannot open");
	expect_error("labels is a folder", nb_idx_load(ip, dir, 10, &ds, err),
		     err, dir, "not a regular file");

	/* a deflate-compressed file (zlib's encoder, through synth) damaged
	 * in the middle */
	CU_ASSERT_EQUAL_FATAL(nb_synth_write(dir, "idx", 60, 10, 1, 1, err), 0);
	const char *gi = path_in(dir, "train-images-idx3-ubyte.gz");
	const char *gl = path_in(dir, "train-labels-idx1-ubyte.gz");
	CU_ASSERT_EQUAL_FATAL(nb_idx_load(gi, gl, 10, &ds, err), 0);
	nb_dataset_free(&ds);
	size_t n;
	uint8_t *z = read_all(gi, &n);
	CU_ASSERT_FATAL(z != NULL && n > 1000);
	for (size_t k = n / 2; k < n / 2 + 16; k++)
		z[k] = (uint8_t)(z[k] * 31 + 7);
	CU_ASSERT_FATAL(write_file(gi, z, n, 0) == 0);
	expect_error("deflate damaged", nb_idx_load(gi, gl, 10, &ds, err), err,
		     gi, "corrupt or truncated gzip");
	/* and cut short */
	CU_ASSERT_FATAL(write_file(gi, z, n - 20, 0) == 0);
	expect_error("deflate cut", nb_idx_load(gi, gl, 10, &ds, err), err, gi,
		     "gzip");
	free(z);
	tu_rmtree(dir);
	free(dir);
}

/* ---- CIFAR bad input ------------------------------------------------------
 */

enum { CUT, ADD, REMOVE, EMPTY, LABEL };

typedef struct cifar_bad {
	const char *name;
	int c100;	  /* 0 CIFAR-10, 1 CIFAR-100 */
	const char *file; /* the file damaged, named by the error */
	int action;
	int arg;	/* bytes cut/added, or the label value */
	int label_byte; /* for LABEL: byte 0 or 1 of the record */
	int record;	/* for LABEL */
	const char *expect;
} cifar_bad;

static const cifar_bad cifar_cases[] = {
    {"c10 missing batch", 0, "data_batch_3.bin", REMOVE, 0, 0, 0,
     "cannot open"},
    {"c10 missing test", 0, "test_batch.bin", REMOVE, 0, 0, 0,
     "cifar-10-binary.tar.gz"},
    {"c10 cut", 0, "data_batch_2.bin", CUT, 100, 0, 0, "whole number"},
    {"c10 cut one byte", 0, "data_batch_5.bin", CUT, 1, 0, 0, "whole number"},
    {"c10 extra byte", 0, "test_batch.bin", ADD, 1, 0, 0, "whole number"},
    {"c10 empty", 0, "data_batch_1.bin", EMPTY, 0, 0, 0, "empty"},
    {"c10 label 10", 0, "data_batch_4.bin", LABEL, 10, 0, 1, "out of range"},
    {"c10 label 255", 0, "test_batch.bin", LABEL, 255, 0, 0, "out of range"},
    {"c100 fine 100", 1, "train.bin", LABEL, 100, 1, 7, "fine label 100"},
    {"c100 coarse 20", 1, "test.bin", LABEL, 20, 0, 2, "coarse label 20"},
    {"c100 cut", 1, "train.bin", CUT, 1, 0, 0, "whole number"},
    {"c100 extra", 1, "test.bin", ADD, 3073, 0, 0, "whole number"},
    {"c100 missing", 1, "test.bin", REMOVE, 0, 0, 0, "cannot open"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL}};

static void run_cifar_case(const cifar_bad *c)
{
	char err[NB_ERR_LEN] = "";
	char *dir = tu_mkdtemp();
	CU_ASSERT_FATAL(dir != NULL);
	CU_ASSERT_EQUAL_FATAL(nb_synth_write(dir,
					     c->c100 ? "cifar100" : "cifar10",
					     25, 5, 0, 1, err),
			      0);
	const char *path = path_in(dir, c->file);
	size_t n;
	uint8_t *raw = read_all(path, &n);
	CU_ASSERT_FATAL(raw != NULL);
	uint8_t *big = calloc(n + (size_t)c->arg + 1, 1);
	CU_ASSERT_FATAL(big != NULL);
	memcpy(big, raw, n);
	switch (c->action) {
	case CUT:
		CU_ASSERT_FATAL(write_file(path, raw, n - (size_t)c->arg, 0) ==
				0);
		break;
	case ADD:
		CU_ASSERT_FATAL(write_file(path, big, n + (size_t)c->arg, 0) ==
				0);
		break;
	case REMOVE:
		CU_ASSERT_FATAL(remove(path) == 0);
		break;
	case EMPTY:
		CU_ASSERT_FATAL(write_file(path, raw, 0, 0) == 0);
		break;
	case LABEL:
		raw[(size_t)c->record * (c->c100 ? 3074 : 3073) +
		    (size_t)c->label_byte] = (uint8_t)c->arg;
		CU_ASSERT_FATAL(write_file(path, raw, n, 0) == 0);
		break;
	}
	enum nb_split split =
	    !strcmp(c->file, "test_batch.bin") || !strcmp(c->file, "test.bin")
		? NB_SPLIT_TEST
		: NB_SPLIT_TRAIN;
	nb_dataset ds;
	int rc = c->c100 ? nb_cifar100_load(dir, split, 0, &ds, err)
			 : nb_cifar10_load(dir, split, &ds, err);
	expect_error(c->name, rc, err, path, c->expect);
	CU_ASSERT_PTR_NULL(ds.images);
	if (rc == 0)
		nb_dataset_free(&ds);
	free(raw);
	free(big);
	tu_rmtree(dir);
	free(dir);
}

static void cifar_bad_inputs(void)
{
	for (const cifar_bad *c = cifar_cases; c->name; c++)
		run_cifar_case(c);
}

/* ---- nb_dataset_load: defaults and missing data ---------------------- */

static void dataset_missing_says_how_to_get_it(void)
{
	static const struct {
		const char *name, *how1, *how2;
	} cases[] = {
	    {"cifar10", "cifar-10-binary.tar.gz",
	     "www.cs.toronto.edu/~kriz/cifar.html"},
	    {"cifar100", "cifar-100-binary.tar.gz",
	     "www.cs.toronto.edu/~kriz/cifar.html"},
	    {"cifar100-coarse", "cifar-100-binary.tar.gz", "--data-dir"},
	    {"fashion-mnist", "apt-get install dataset-fashion-mnist",
	     "train-images-idx3-ubyte"},
	    {"mnist", "train-images-idx3-ubyte", "data/README.md"},
	};
	char err[NB_ERR_LEN];
	char *dir = tu_mkdtemp();
	CU_ASSERT_FATAL(dir != NULL);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		nb_dataset ds;
		int rc = nb_dataset_load(cases[i].name, dir, NB_SPLIT_TRAIN,
					 &ds, err);
		expect_error(cases[i].name, rc, err, dir, cases[i].how1);
		expect_error(cases[i].name, rc, err, cases[i].name,
			     cases[i].how2);
		CU_ASSERT_PTR_NULL(strchr(err, '\n'));
		CU_ASSERT(strlen(err) < NB_ERR_LEN - 1); /* not cut short */
	}
	nb_dataset ds;
	expect_error("unknown",
		     nb_dataset_load("imagenet", dir, NB_SPLIT_TRAIN, &ds, err),
		     err, "imagenet", "unknown dataset");
	tu_rmtree(dir);
	free(dir);
}

/* IDX headers whose sizes overflow 32 or 64 bits once multiplied: one
 * line, before anything is allocated from them. */
static void idx_overflowing_sizes(void)
{
	static const struct {
		uint32_t n, rows, cols, n_lab;
		const char *expect;
	} cases[] = {
	    {4, 0xffffffffu, 0xffffffffu, 4, "side"},
	    {4, 0x10000u, 0x10000u, 4, "side"},
	    {0x80000000u, 28, 28, 0x80000000u, "samples"},
	    {0xffffffffu, 65535, 65535, 0xffffffffu, "samples"},
	    {0x7fffffffu, 65535, 65535, 0x7fffffffu, "size"},
	    {0x00100001u, 4096, 4096, 0x00100001u, "size"},
	};
	char err[NB_ERR_LEN], ip[4200], lp[4200];
	char *dir = tu_mkdtemp();
	CU_ASSERT_FATAL(dir != NULL);
	snprintf(ip, sizeof ip, "%s/images", dir);
	snprintf(lp, sizeof lp, "%s/labels", dir);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint8_t h[16 + 64] = {0}, l[8 + 4] = {0};
		put_be32(h, 0x803);
		put_be32(h + 4, cases[i].n);
		put_be32(h + 8, cases[i].rows);
		put_be32(h + 12, cases[i].cols);
		put_be32(l, 0x801);
		put_be32(l + 4, cases[i].n_lab);
		FILE *f = fopen(ip, "wb");
		CU_ASSERT_FATAL(f && fwrite(h, 1, sizeof h, f) == sizeof h);
		fclose(f);
		f = fopen(lp, "wb");
		CU_ASSERT_FATAL(f && fwrite(l, 1, sizeof l, f) == sizeof l);
		fclose(f);
		nb_dataset ds;
		int rc = nb_idx_load(ip, lp, 10, &ds, err);
		char name[32];
		snprintf(name, sizeof name, "overflow %zu", i);
		expect_error(name, rc, err, dir, "");
		CU_ASSERT(rc == NB_EFORMAT || rc == NB_EINVAL);
		CU_ASSERT_PTR_NULL(ds.images);
		CU_ASSERT_PTR_NULL(strchr(err, '\n'));
	}
	tu_rmtree(dir);
	free(dir);
}

/* A symlink loop where a loader looks (the data folder itself, a data
 * file, a subfolder it tries): one line naming the path and the loop,
 * never "download the dataset". */
static void dataset_symlink_loops(void)
{
	static const struct {
		const char *name, *link; /* link: a looping entry of the folder */
	} cases[] = {
	    {"mnist", "train-images-idx3-ubyte"},
	    {"mnist", "train-labels-idx1-ubyte.gz"},
	    {"fashion-mnist", "train-images-idx3-ubyte.gz"},
	    {"cifar10", "data_batch_1.bin"},
	    {"cifar10", "cifar-10-batches-bin"},
	    {"cifar100", "train.bin"},
	    {"cifar100-coarse", "cifar-100-binary"},
	    {"tiny-imagenet", "wnids.txt"},
	    {"tiny-imagenet", "tiny-imagenet-200"},
	};
	char err[NB_ERR_LEN], path[4200], want[4200];
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *dir = tu_mkdtemp();
		CU_ASSERT_FATAL(dir != NULL);
		snprintf(path, sizeof path, "%s/%s", dir, cases[i].link);
		CU_ASSERT_FATAL(symlink(cases[i].link, path) == 0);
		/* the labels of mnist are looked for after the images */
		if (strstr(cases[i].link, "labels")) {
			snprintf(want, sizeof want,
				 "%s/train-images-idx3-ubyte", dir);
			FILE *f = fopen(want, "wb");
			CU_ASSERT_FATAL(f != NULL);
			fclose(f);
		}
		nb_dataset ds;
		int rc = nb_dataset_load(cases[i].name, dir, NB_SPLIT_TRAIN,
					 &ds, err);
		expect_error(cases[i].link, rc, err, path, "symlink loop");
		CU_ASSERT_PTR_NULL(strstr(err, "download"));
		CU_ASSERT_PTR_NULL(ds.images);
		tu_rmtree(dir);
		free(dir);
	}
	/* the data folder itself */
	char *dir = tu_mkdtemp();
	CU_ASSERT_FATAL(dir != NULL);
	snprintf(path, sizeof path, "%s/self", dir);
	CU_ASSERT_FATAL(symlink("self", path) == 0);
	nb_dataset ds;
	expect_error("folder loop",
		     nb_dataset_load("cifar10", path, NB_SPLIT_TEST, &ds, err),
		     err, path, "symlink loop");
	tu_rmtree(dir);
	free(dir);
}

static void dataset_default_dirs(void)
{
	char *old = getenv("NASTY_BENCH_DATA");
	char *saved = old ? strdup(old) : NULL;
	CU_ASSERT_STRING_EQUAL(nb_dataset_default_dir("fashion-mnist"),
			       "/usr/share/datasets/fashion-mnist");
	unsetenv("NASTY_BENCH_DATA");
	CU_ASSERT_STRING_EQUAL(nb_dataset_default_dir("cifar10"),
			       "data/cifar10");
	CU_ASSERT_STRING_EQUAL(nb_dataset_default_dir("mnist"), "data/mnist");
	setenv("NASTY_BENCH_DATA", "/srv/nb", 1);
	CU_ASSERT_STRING_EQUAL(nb_dataset_default_dir("cifar100"),
			       "/srv/nb/cifar100");
	CU_ASSERT_STRING_EQUAL(nb_dataset_default_dir("mnist"),
			       "/srv/nb/mnist");
	CU_ASSERT_PTR_NULL(nb_dataset_default_dir("svhn"));

	/* NASTY_BENCH_DATA is where nb_dataset_load looks without a dir */
	char err[NB_ERR_LEN];
	char *root = tu_mkdtemp();
	CU_ASSERT_FATAL(root != NULL);
	CU_ASSERT_EQUAL_FATAL(mkdir(path_in(root, "cifar100"), 0700), 0);
	CU_ASSERT_EQUAL_FATAL(nb_synth_write(path_in(root, "cifar100"),
					     "cifar100", 10, 10, 0, 1, err),
			      0);
	setenv("NASTY_BENCH_DATA", root, 1);
	nb_dataset ds;
	CU_ASSERT_EQUAL(
	    nb_dataset_load("cifar100", NULL, NB_SPLIT_TEST, &ds, err), 0);
	CU_ASSERT_EQUAL(ds.n, 10);
	nb_dataset_free(&ds);
	tu_rmtree(root);
	free(root);
	if (saved) {
		setenv("NASTY_BENCH_DATA", saved, 1);
		free(saved);
	} else {
		unsetenv("NASTY_BENCH_DATA");
	}
}

/* ---- augmentation ------------------------------------------------------- */

static nb_augment plain_aug(void)
{
	nb_augment a;
	memset(&a, 0, sizeof a);
	for (int c = 0; c < 4; c++)
		a.std[c] = 1;
	return a;
}

static float norm(uint8_t v, float mean, float sd)
{
	return ((float)v / 255.0f - mean) / sd;
}

static void pad_to_centres(void)
{
	/* 2x2 into 4x4: offset 1 on each side */
	const uint8_t img[4] = {10, 20, 30, 40};
	nb_augment a = plain_aug();
	a.pad_to = 4;
	float out[16];
	nb_augment_apply(out, img, 1, 2, 2, &a, 0, 0, 0, 0);
	const float want[16] = {
	    0, 0,	    0,		 0, 0, 10 / 255.0f, 20 / 255.0f, 0,
	    0, 30 / 255.0f, 40 / 255.0f, 0, 0, 0,	    0,		 0};
	for (int i = 0; i < 16; i++)
		CU_ASSERT_EQUAL(out[i], want[i]);

	/* 28 -> 32 as LeNet-5 expects: offset 2, zeros around */
	nb_dataset ds = {.n = 1, .c = 1, .h = 28, .w = 28, .classes = 10};
	uint8_t im[784];
	int lab = 3, idx = 0, y;
	for (int i = 0; i < 784; i++)
		im[i] = (uint8_t)(1 + i % 250);
	ds.images = im;
	ds.labels = &lab;
	a.pad_to = 32;
	int h, w;
	nb_augment_out_size(&ds, &a, &h, &w);
	CU_ASSERT(h == 32 && w == 32);
	char err[NB_ERR_LEN];
	CU_ASSERT_EQUAL(nb_augment_check(&ds, &a, err), 0);
	float x[32 * 32];
	nb_batch_build(x, &y, &ds, &idx, 1, &a, 0, NULL);
	CU_ASSERT_EQUAL(y, 3);
	int bad = 0;
	for (int r = 0; r < 32; r++)
		for (int c = 0; c < 32; c++) {
			int sr = r - 2, sc = c - 2;
			float v = sr >= 0 && sr < 28 && sc >= 0 && sc < 28
				      ? im[sr * 28 + sc] / 255.0f
				      : 0.0f;
			bad += x[r * 32 + c] != v;
		}
	CU_ASSERT_EQUAL(bad, 0);
}

static void crop_offsets_exact(void)
{
	uint8_t img[16];
	for (int i = 0; i < 16; i++)
		img[i] = (uint8_t)(100 + i);
	nb_augment a = plain_aug();
	a.crop_pad = 2;
	float out[16];
	/* offset (0,0): the image moves down-right by crop_pad */
	nb_augment_apply(out, img, 1, 4, 4, &a, 0, 0, 0, 0);
	const uint8_t want00[16] = {0, 0, 0,   0,   0, 0, 0,   0,
				    0, 0, 100, 101, 0, 0, 104, 105};
	for (int i = 0; i < 16; i++)
		CU_ASSERT_EQUAL(out[i], want00[i] / 255.0f);
	/* offset (4,4) = 2*crop_pad: up-left */
	nb_augment_apply(out, img, 1, 4, 4, &a, 4, 4, 0, 0);
	const uint8_t want44[16] = {110, 111, 0, 0, 114, 115, 0, 0,
				    0,	 0,   0, 0, 0,	 0,   0, 0};
	for (int i = 0; i < 16; i++)
		CU_ASSERT_EQUAL(out[i], want44[i] / 255.0f);
	/* offset (2,2): the centre, the image itself */
	nb_augment_apply(out, img, 1, 4, 4, &a, 2, 2, 0, 0);
	for (int i = 0; i < 16; i++)
		CU_ASSERT_EQUAL(out[i], img[i] / 255.0f);
	/* offset (1,3): rows shift down 1, columns left 1 */
	nb_augment_apply(out, img, 1, 4, 4, &a, 1, 3, 0, 0);
	const uint8_t want13[16] = {0,	 0,   0,   0, 101, 102, 103, 0,
				    105, 106, 107, 0, 109, 110, 111, 0};
	for (int i = 0; i < 16; i++)
		CU_ASSERT_EQUAL(out[i], want13[i] / 255.0f);
}

static void flip_mirrors(void)
{
	uint8_t img[2 * 3 * 4];
	for (int i = 0; i < 24; i++)
		img[i] = (uint8_t)(7 * i + 1);
	nb_augment a = plain_aug();
	float out[24];
	nb_augment_apply(out, img, 2, 3, 4, &a, 0, 0, 1, 0);
	for (int c = 0; c < 2; c++)
		for (int y = 0; y < 3; y++)
			for (int x = 0; x < 4; x++)
				CU_ASSERT_EQUAL(out[(c * 3 + y) * 4 + x],
						img[(c * 3 + y) * 4 + 3 - x] /
						    255.0f);
	/* crop then flip, as torchvision: flip of the offset-(0,0) crop */
	a.crop_pad = 1;
	float crop[24], both[24];
	nb_augment_apply(crop, img, 2, 3, 4, &a, 0, 0, 0, 0);
	nb_augment_apply(both, img, 2, 3, 4, &a, 0, 0, 1, 0);
	for (int c = 0; c < 2; c++)
		for (int y = 0; y < 3; y++)
			for (int x = 0; x < 4; x++)
				CU_ASSERT_EQUAL(both[(c * 3 + y) * 4 + x],
						crop[(c * 3 + y) * 4 + 3 - x]);
}

static void normalisation_exact(void)
{
	/* the CIFAR constants of the paper */
	nb_augment a = plain_aug();
	const float mean[3] = {0.4914f, 0.4822f, 0.4465f};
	const float sd[3] = {0.247f, 0.243f, 0.261f};
	memcpy(a.mean, mean, sizeof mean);
	memcpy(a.std, sd, sizeof sd);
	a.crop_pad = 1;
	uint8_t img[3 * 2 * 2] = {0,  255, 128, 1, 50, 60,
				  70, 80,  200, 3, 9,  27};
	float out[12];
	nb_augment_apply(out, img, 3, 2, 2, &a, 1, 1, 0, 0);
	for (int c = 0; c < 3; c++)
		for (int i = 0; i < 4; i++)
			CU_ASSERT_EQUAL(out[c * 4 + i],
					norm(img[c * 4 + i], mean[c], sd[c]));
	CU_ASSERT(fabsf(out[1] - (1.0f - 0.4914f) / 0.247f) < 1e-6f);
	/* padded pixels: raw 0 normalised, i.e. -mean/std */
	nb_augment_apply(out, img, 3, 2, 2, &a, 0, 0, 0, 0);
	CU_ASSERT_EQUAL(out[0], norm(0, mean[0], sd[0]));
	CU_ASSERT_EQUAL(out[4 + 1], norm(0, mean[1], sd[1]));
	CU_ASSERT_EQUAL(out[8 + 3], norm(img[8], mean[2], sd[2]));
	CU_ASSERT(fabsf(out[0] + 0.4914f / 0.247f) < 1e-6f);
}

/* A random (n,3,8,8) dataset for the batch tests. */
static nb_dataset random_ds(int n)
{
	nb_dataset ds = {.n = n, .c = 3, .h = 8, .w = 8, .classes = 10};
	ds.images = malloc((size_t)n * 192);
	ds.labels = malloc((size_t)n * sizeof(int));
	nb_rng r;
	nb_rng_seed(&r, 5, NB_RNG_DATA);
	for (int i = 0; ds.images && i < n * 192; i++)
		ds.images[i] = (uint8_t)nb_rng_below(&r, 256);
	for (int i = 0; ds.labels && i < n; i++)
		ds.labels[i] = i % 10;
	return ds;
}

/* The augmentation and sample indices the batch-contract tests share. */
static nb_augment contract_aug(void)
{
	nb_augment a = plain_aug();
	a.crop_pad = 2;
	a.flip = 1;
	a.mean[0] = 0.5f;
	a.std[2] = 0.25f;
	return a;
}

static void contract_indices(int *idx, int b, int n)
{
	for (int i = 0; i < b; i++)
		idx[i] = (i * 7) % n;
}

static void batch_draws_follow_contract(void)
{
	enum { N = 40, B = 300 };
	nb_dataset ds = random_ds(N);
	CU_ASSERT_FATAL(ds.images && ds.labels);
	nb_augment a = contract_aug();
	int idx[B], y[B];
	contract_indices(idx, B, N);
	float *x = malloc(sizeof(float) * B * 192);
	float one[192];
	CU_ASSERT_FATAL(x != NULL);
	nb_rng r, copy;
	nb_rng_seed(&r, 17, NB_RNG_AUGMENT);
	nb_rng_seed(&copy, 17, NB_RNG_AUGMENT);
	nb_batch_build(x, y, &ds, idx, B, &a, 1, &r);
	int bad = 0, shifted = 0, flipped = 0;
	for (int b = 0; b < B; b++) {
		int oy = (int)nb_rng_below(&copy, 5);
		int ox = (int)nb_rng_below(&copy, 5);
		int f = (int)nb_rng_below(&copy, 2);
		shifted += oy != 2 || ox != 2;
		flipped += f;
		nb_augment_apply(one, ds.images + (size_t)idx[b] * 192, 3, 8, 8,
				 &a, oy, ox, f, 0);
		bad += memcmp(one, x + (size_t)b * 192, sizeof one) != 0;
		bad += y[b] != ds.labels[idx[b]];
	}
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT(shifted > B / 2 && flipped > B / 4 && flipped < 3 * B / 4);
	CU_ASSERT_EQUAL(nb_rng_u64(&r), nb_rng_u64(&copy)); /* same use */
	free(x);
	nb_dataset_free(&ds);
}

static void batch_deterministic_across_threads(void)
{
	enum { N = 64, B = 300 };
	nb_dataset ds = random_ds(N);
	CU_ASSERT_FATAL(ds.images && ds.labels);
	nb_augment a = plain_aug();
	a.pad_to = 12;
	a.crop_pad = 4;
	a.flip = 1;
	int idx[B], y1[B], y2[B];
	for (int i = 0; i < B; i++)
		idx[i] = (i * 13 + 5) % N;
	size_t sz = (size_t)B * 3 * 12 * 12;
	float *x1 = malloc(sz * sizeof(float)),
	      *x2 = malloc(sz * sizeof(float));
	CU_ASSERT_FATAL(x1 && x2);
	nb_rng r;
	/* same seed, same batch */
	nb_rng_seed(&r, 99, NB_RNG_AUGMENT);
	nb_batch_build(x1, y1, &ds, idx, B, &a, 1, &r);
	nb_rng_seed(&r, 99, NB_RNG_AUGMENT);
	nb_batch_build(x2, y2, &ds, idx, B, &a, 1, &r);
	CU_ASSERT(memcmp(x1, x2, sz * sizeof(float)) == 0);
	/* another seed, another batch */
	nb_rng_seed(&r, 100, NB_RNG_AUGMENT);
	nb_batch_build(x2, y2, &ds, idx, B, &a, 1, &r);
	CU_ASSERT(memcmp(x1, x2, sz * sizeof(float)) != 0);
#ifdef _OPENMP
	int saved = omp_get_max_threads();
	omp_set_num_threads(1);
	nb_rng_seed(&r, 99, NB_RNG_AUGMENT);
	nb_batch_build(x1, y1, &ds, idx, B, &a, 1, &r);
	omp_set_num_threads(2);
	nb_rng_seed(&r, 99, NB_RNG_AUGMENT);
	nb_batch_build(x2, y2, &ds, idx, B, &a, 1, &r);
	CU_ASSERT(memcmp(x1, x2, sz * sizeof(float)) == 0);
	CU_ASSERT(memcmp(y1, y2, sizeof y1) == 0);
	omp_set_num_threads(saved);
#else
	printf("\n  (no OpenMP: thread-count check skipped) ");
#endif
	free(x1);
	free(x2);
	nb_dataset_free(&ds);
}

static void test_mode_no_crop_no_flip(void)
{
	enum { N = 10, B = 10 };
	nb_dataset ds = random_ds(N);
	CU_ASSERT_FATAL(ds.images && ds.labels);
	nb_augment a = plain_aug();
	a.crop_pad = 4;
	a.flip = 1;
	a.mean[1] = 0.3f;
	a.std[1] = 0.7f;
	int idx[B], y[B];
	for (int i = 0; i < B; i++)
		idx[i] = N - 1 - i;
	float x[B * 192];
	nb_batch_build(x, y, &ds, idx, B, &a, 0, NULL); /* rng unused */
	int bad = 0;
	for (int b = 0; b < B; b++)
		for (int c = 0; c < 3; c++)
			for (int i = 0; i < 64; i++)
				bad +=
				    x[b * 192 + c * 64 + i] !=
				    norm(ds.images[idx[b] * 192 + c * 64 + i],
					 a.mean[c], a.std[c]);
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT_EQUAL(y[0], ds.labels[N - 1]);
	nb_dataset_free(&ds);
}

static void augment_check_rejects(void)
{
	char err[NB_ERR_LEN];
	nb_dataset ds = {.name = "t", .n = 1, .c = 3, .h = 28, .w = 28};
	nb_augment a = plain_aug();
	CU_ASSERT_EQUAL(nb_augment_check(&ds, &a, err), 0);
	a.std[1] = 0;
	expect_error("std 0", nb_augment_check(&ds, &a, err), err, NULL,
		     "std must be > 0");
	a = plain_aug();
	a.pad_to = 27;
	expect_error("pad_to", nb_augment_check(&ds, &a, err), err, NULL,
		     "pad_to 27");
	a = plain_aug();
	a.crop_pad = -1;
	expect_error("crop_pad", nb_augment_check(&ds, &a, err), err, NULL,
		     "crop_pad -1");
	a = plain_aug();
	ds.c = 5;
	expect_error("channels", nb_augment_check(&ds, &a, err), err, NULL,
		     "5 channels");
}

/* ---- rotation (torchvision RandomRotation on PIL images) ----------------- */

/* 64-bit FNV-1a, as make_golden_rotate.py hashes outputs. */
static uint64_t fnv1a64(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* The uint8 image behind an output made with mean 0, std 1 (v/255). */
static void to_bytes(uint8_t *b, const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)lrintf(x[i] * 255.0f);
}

/* out of a plain (mean 0, std 1) augment of img (c,h,w), as bytes */
static void rotate_bytes(uint8_t *out, const uint8_t *img, int c, int h, int w,
			 double angle)
{
	nb_augment a = plain_aug();
	float *x = malloc(sizeof(float) * c * h * w);
	CU_ASSERT_FATAL(x != NULL);
	nb_augment_apply(x, img, c, h, w, &a, 0, 0, 0, angle);
	to_bytes(out, x, (size_t)c * h * w);
	free(x);
}

static void rotate_matches_torchvision(void)
{
	size_t n = sizeof golden_rot_cases / sizeof *golden_rot_cases;
	int bad = 0, full = 0;
	for (size_t i = 0; i < n; i++) {
		const golden_rot_case *g = &golden_rot_cases[i];
		const golden_rot_image *im = &golden_rot_images[g->image];
		size_t sz = (size_t)im->c * im->h * im->w;
		uint8_t *out = malloc(sz);
		CU_ASSERT_FATAL(out != NULL);
		rotate_bytes(out, im->px, im->c, im->h, im->w, g->angle);
		int ok = fnv1a64(out, sz) == g->fnv;
		if (g->out) {
			full++;
			ok = ok && memcmp(out, g->out, sz) == 0;
		}
		if (!ok && bad++ < 5)
			printf("\n  image %d (%dx%dx%d), angle %.17g differs ",
			       g->image, im->c, im->h, im->w, g->angle);
		free(out);
	}
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT(full >= 100 && n >= 200); /* the fixture is all there */
}

static void rotate_zero_is_identity(void)
{
	nb_dataset ds = random_ds(1);
	CU_ASSERT_FATAL(ds.images != NULL);
	nb_augment a = plain_aug();
	a.crop_pad = 2;
	a.mean[1] = 0.25f;
	a.std[2] = 0.5f;
	float ref[192], out[192];
	nb_augment_apply(ref, ds.images, 3, 8, 8, &a, 1, 3, 1, 0);
	/* full turns, -0, and angles whose rounded sine is 0 (Pillow's
	 * scaling path) are the identity too */
	const double same[] = {-0.0, 360, -360, 720, 1e-15, -1e-20};
	for (size_t i = 0; i < sizeof same / sizeof *same; i++) {
		nb_augment_apply(out, ds.images, 3, 8, 8, &a, 1, 3, 1, same[i]);
		CU_ASSERT(memcmp(out, ref, sizeof ref) == 0);
	}
	/* and angle 0 without crop or flip is the image itself */
	a.crop_pad = 0;
	nb_augment_apply(out, ds.images, 3, 8, 8, &a, 0, 0, 0, 0);
	int bad = 0;
	for (int c = 0; c < 3; c++)
		for (int i = 0; i < 64; i++)
			bad += out[c * 64 + i] !=
			       norm(ds.images[c * 64 + i], a.mean[c], a.std[c]);
	CU_ASSERT_EQUAL(bad, 0);
	nb_dataset_free(&ds);
}

static void rotate_90_is_transpose_flip(void)
{
	/* counter-clockwise 90 of a square image: transpose, then reverse
	 * the rows; -90 (= 270): transpose, then reverse the columns; 180:
	 * reverse both. Odd and even sizes; multiples of 360 added. */
	for (int n = 5; n <= 6; n++) {
		uint8_t img[2 * 36], out[2 * 36];
		for (int i = 0; i < 2 * n * n; i++)
			img[i] = (uint8_t)(1 + 3 * i);
		const double angles[] = {90, 450, -270, -90, 270, 180, -180};
		for (size_t k = 0; k < sizeof angles / sizeof *angles; k++) {
			rotate_bytes(out, img, 2, n, n, angles[k]);
			int bad = 0;
			for (int c = 0; c < 2; c++)
				for (int y = 0; y < n; y++)
					for (int x = 0; x < n; x++) {
						double r =
						    fmod(angles[k] + 720, 360);
						int sy = r == 90    ? x
							 : r == 270 ? n - 1 - x
								    : n - 1 - y;
						int sx = r == 90    ? n - 1 - y
							 : r == 270 ? y
								    : n - 1 - x;
						bad +=
						    out[(c * n + y) * n + x] !=
						    img[(c * n + sy) * n + sx];
					}
			CU_ASSERT_EQUAL(bad, 0);
		}
	}
	/* an odd square turns about its middle pixel, at any angle */
	uint8_t img[81], out[81];
	for (int i = 0; i < 81; i++)
		img[i] = (uint8_t)(2 + i);
	for (double ang = -20; ang <= 20; ang += 2.5) {
		rotate_bytes(out, img, 1, 9, 9, ang);
		CU_ASSERT_EQUAL(out[4 * 9 + 4], img[4 * 9 + 4]);
	}
}

static void rotate_fill_is_raw_zero(void)
{
	/* an all-white image turned 45 degrees: the corners are the fill,
	 * raw 0 normalised (-mean/std, the value padding gets), the middle is
	 * white */
	uint8_t img[3 * 8 * 8];
	memset(img, 255, sizeof img);
	nb_augment a = plain_aug();
	const float mean[3] = {0.4802f, 0.4481f, 0.3975f};
	const float sd[3] = {0.2302f, 0.2265f, 0.2262f};
	memcpy(a.mean, mean, sizeof mean);
	memcpy(a.std, sd, sizeof sd);
	float out[192], pad[3 * 10 * 10];
	nb_augment_apply(out, img, 3, 8, 8, &a, 0, 0, 0, 45);
	a.pad_to = 10;
	nb_augment_apply(pad, img, 3, 8, 8, &a, 0, 0, 0, 0);
	int other = 0;
	for (int c = 0; c < 3; c++) {
		float zero = norm(0, mean[c], sd[c]),
		      white = norm(255, mean[c], sd[c]);
		CU_ASSERT_EQUAL(out[c * 64], zero);
		CU_ASSERT_EQUAL(out[c * 64 + 63], zero);
		CU_ASSERT_EQUAL(out[c * 64 + 7], zero);
		CU_ASSERT_EQUAL(out[c * 64 + 4 * 8 + 4], white);
		CU_ASSERT_EQUAL(pad[c * 100], zero); /* same as padding */
		CU_ASSERT(fabsf(zero + mean[c] / sd[c]) < 1e-6f);
		for (int i = 0; i < 64; i++)
			other +=
			    out[c * 64 + i] != zero && out[c * 64 + i] != white;
	}
	CU_ASSERT_EQUAL(other, 0);
}

static void rotate_order_pad_crop_rotate_flip(void)
{
	/* apply(pad, crop, angle, flip) is the mirror of the rotation of the
	 * padded crop: build the crop as bytes, rotate it alone, mirror */
	enum { H = 6, W = 6, P = 8 }; /* pad 6x6 to 8x8, crop_pad 2 */
	uint8_t img[H * W], crop[P * P], rot[P * P];
	for (int i = 0; i < H * W; i++)
		img[i] = (uint8_t)(10 + 6 * i);
	nb_augment a = plain_aug();
	a.pad_to = P;
	a.crop_pad = 2;
	float x[P * P];
	const double angles[] = {17.25, -11, 90};
	for (size_t k = 0; k < sizeof angles / sizeof *angles; k++) {
		nb_augment_apply(x, img, 1, H, W, &a, 3, 1, 0, 0);
		to_bytes(crop, x, P * P);
		rotate_bytes(rot, crop, 1, P, P, angles[k]);
		nb_augment_apply(x, img, 1, H, W, &a, 3, 1, 1, angles[k]);
		int bad = 0;
		for (int y = 0; y < P; y++)
			for (int c = 0; c < P; c++)
				bad += x[y * P + c] !=
				       rot[y * P + P - 1 - c] / 255.0f;
		CU_ASSERT_EQUAL(bad, 0);
	}
}

/* FNV-1a of the float bits, little-endian, whatever the host. */
static uint64_t fnv_floats(const float *x, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++) {
		uint32_t u;
		memcpy(&u, &x[i], 4);
		for (int k = 0; k < 4; k++) {
			h ^= (uint8_t)(u >> 8 * k);
			h *= 0x100000001b3ULL;
		}
	}
	return h;
}

static void batch_streams_unchanged_without_rotation(void)
{
	/* Values recorded from nb_batch_build before rotation existed (the
	 * augment.c of the commit before it, same dataset, augment, indices
	 * and seed as batch_draws_follow_contract): with rotate_deg 0 the
	 * batch and the rng's next number must not move. */
	enum { N = 40, B = 300 };
	nb_dataset ds = random_ds(N);
	CU_ASSERT_FATAL(ds.images && ds.labels);
	nb_augment a = contract_aug();
	int idx[B], y[B];
	contract_indices(idx, B, N);
	float *x = malloc(sizeof(float) * B * 192);
	CU_ASSERT_FATAL(x != NULL);
	nb_rng r;
	nb_rng_seed(&r, 17, NB_RNG_AUGMENT);
	nb_batch_build(x, y, &ds, idx, B, &a, 1, &r);
	CU_ASSERT_EQUAL(fnv_floats(x, (size_t)B * 192), 0xbc65f46da6cc9998ULL);
	CU_ASSERT_EQUAL(nb_rng_u64(&r), 0x48847484452e0cbdULL);
	/* flip only, as Tiny-ImageNet was */
	a.crop_pad = 0;
	nb_rng_seed(&r, 17, NB_RNG_AUGMENT);
	nb_batch_build(x, y, &ds, idx, B, &a, 1, &r);
	CU_ASSERT_EQUAL(fnv_floats(x, (size_t)B * 192), 0xea2810f381bec3ecULL);
	CU_ASSERT_EQUAL(nb_rng_u64(&r), 0x0edd91ca80a55797ULL);
	free(x);
	nb_dataset_free(&ds);
}

static void batch_rotation_draws_and_threads(void)
{
	enum { N = 40, B = 300 };
	nb_dataset ds = random_ds(N);
	CU_ASSERT_FATAL(ds.images && ds.labels);
	nb_augment a = plain_aug();
	a.crop_pad = 1;
	a.flip = 1;
	a.rotate_deg = 20;
	a.mean[1] = 0.4f;
	char err[NB_ERR_LEN];
	CU_ASSERT_EQUAL(nb_augment_check(&ds, &a, err), 0);
	int idx[B], y[B];
	for (int i = 0; i < B; i++)
		idx[i] = (i * 11 + 3) % N;
	size_t sz = (size_t)B * 192;
	float *x = malloc(sz * sizeof(float)), *x2 = malloc(sz * sizeof(float));
	float one[192];
	CU_ASSERT_FATAL(x && x2);
	nb_rng r, copy;
	nb_rng_seed(&r, 23, NB_RNG_AUGMENT);
	nb_rng_seed(&copy, 23, NB_RNG_AUGMENT);
	nb_batch_build(x, y, &ds, idx, B, &a, 1, &r);
	/* per sample: oy, ox, flip, then the angle */
	int bad = 0, neg = 0, pos = 0;
	for (int b = 0; b < B; b++) {
		int oy = (int)nb_rng_below(&copy, 3);
		int ox = (int)nb_rng_below(&copy, 3);
		int f = (int)nb_rng_below(&copy, 2);
		double ang = -20.0 + 40.0 * nb_rng_uniform(&copy);
		neg += ang < -10;
		pos += ang > 10;
		nb_augment_apply(one, ds.images + (size_t)idx[b] * 192, 3, 8, 8,
				 &a, oy, ox, f, ang);
		bad += memcmp(one, x + (size_t)b * 192, sizeof one) != 0;
		bad += y[b] != ds.labels[idx[b]];
	}
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT(neg > B / 8 && pos > B / 8);
	CU_ASSERT_EQUAL(nb_rng_u64(&r), nb_rng_u64(&copy));
#ifdef _OPENMP
	int saved = omp_get_max_threads();
	for (int t = 1; t <= 2; t++) {
		omp_set_num_threads(t);
		nb_rng_seed(&r, 23, NB_RNG_AUGMENT);
		nb_batch_build(x2, y, &ds, idx, B, &a, 1, &r);
		CU_ASSERT(memcmp(x, x2, sz * sizeof(float)) == 0);
	}
	omp_set_num_threads(saved);
#endif
	/* test mode: no rotation, rng unused */
	nb_batch_build(x, y, &ds, idx, 1, &a, 0, NULL);
	nb_augment_apply(one, ds.images + (size_t)idx[0] * 192, 3, 8, 8, &a, 1,
			 1, 0, 0);
	CU_ASSERT(memcmp(one, x, sizeof one) == 0);
	free(x);
	free(x2);
	nb_dataset_free(&ds);
}

static void augment_check_rotation(void)
{
	char err[NB_ERR_LEN];
	nb_dataset ds = {.name = "t", .n = 1, .c = 3, .h = 64, .w = 64};
	nb_augment a = plain_aug();
	a.rotate_deg = 180;
	CU_ASSERT_EQUAL(nb_augment_check(&ds, &a, err), 0);
	const float badv[] = {-1, 180.5f, NAN, INFINITY};
	for (size_t i = 0; i < sizeof badv / sizeof *badv; i++) {
		a.rotate_deg = badv[i];
		expect_error("rotate_deg", nb_augment_check(&ds, &a, err), err,
			     NULL, "rotate_deg");
	}
	a.rotate_deg = 20;
	ds.h = ds.w = 5000;
	expect_error("rotate size", nb_augment_check(&ds, &a, err), err, NULL,
		     "cannot rotate 5000x5000");
	a.rotate_deg = 0; /* no rotation: no size limit */
	CU_ASSERT_EQUAL(nb_augment_check(&ds, &a, err), 0);
}

/* ---- seeded subsets ------------------------------------------------------ */

/* n samples of 1x2x2 whose pixels spell the index (i & 255, i >> 8), the
 * label grouped by class as ImageFolder orders them (per per class). */
static nb_dataset indexed_ds(int n, int per)
{
	nb_dataset ds = {.name = "ix", .n = n, .c = 1, .h = 2, .w = 2};
	ds.classes = (n + per - 1) / per;
	ds.images = calloc((size_t)n, 4);
	ds.labels = malloc((size_t)n * sizeof(int));
	for (int i = 0; ds.images && ds.labels && i < n; i++) {
		ds.images[4 * i] = (uint8_t)(i & 255);
		ds.images[4 * i + 1] = (uint8_t)(i >> 8);
		ds.labels[i] = i / per;
	}
	return ds;
}

static void subset_seeded(void)
{
	char err[NB_ERR_LEN];
	enum { N = 10000, PER = 50, K = 2000 };
	nb_dataset a = indexed_ds(N, PER), b = indexed_ds(N, PER),
		   c = indexed_ds(N, PER);
	CU_ASSERT_FATAL(a.images && a.labels && b.images && b.labels &&
			c.images && c.labels);
	CU_ASSERT_EQUAL_FATAL(nb_dataset_subset(&a, K, 230, err), 0);
	CU_ASSERT_EQUAL_FATAL(nb_dataset_subset(&b, K, 230, err), 0);
	CU_ASSERT_EQUAL_FATAL(nb_dataset_subset(&c, K, 231, err), 0);
	CU_ASSERT(a.n == K && b.n == K && c.n == K);
	/* deterministic; another seed, another subset */
	CU_ASSERT(memcmp(a.images, b.images, (size_t)K * 4) == 0);
	CU_ASSERT(memcmp(a.labels, b.labels, (size_t)K * sizeof(int)) == 0);
	CU_ASSERT(memcmp(a.images, c.images, (size_t)K * 4) != 0);
	/* the documented draw: the first K of nb_rng_shuffle(0..N-1) with
	 * (seed, NB_RNG_DATA), in that order */
	int *idx = malloc(N * sizeof *idx);
	unsigned char *seen = calloc(N, 1);
	CU_ASSERT_FATAL(idx && seen);
	for (int i = 0; i < N; i++)
		idx[i] = i;
	nb_rng r;
	nb_rng_seed(&r, 230, NB_RNG_DATA);
	nb_rng_shuffle(&r, idx, N);
	int bad = 0, dup = 0, classes = 0, moved = 0;
	int count[N / PER] = {0};
	for (int i = 0; i < K; i++) {
		int s = a.images[4 * i] | a.images[4 * i + 1] << 8;
		bad += s != idx[i] || s >= N;
		if (s < N) {
			dup += seen[s]++ != 0;
			bad += a.labels[i] != s / PER; /* the label followed */
		}
		moved += s != i;
		count[a.labels[i]]++;
	}
	for (int k = 0; k < N / PER; k++)
		classes += count[k] > 0;
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT_EQUAL(dup, 0);
	CU_ASSERT(moved > K / 2); /* shuffled, not a prefix */
	/* class-grouped data: the subset spans (nearly) every class, where
	 * the first K images would be the first K / PER classes */
	CU_ASSERT(classes >= 190);
	free(idx);
	free(seen);
	nb_dataset_free(&a);
	nb_dataset_free(&b);
	nb_dataset_free(&c);
}

static void subset_bad_sizes(void)
{
	char err[NB_ERR_LEN];
	nb_dataset a = indexed_ds(30, 3);
	CU_ASSERT_FATAL(a.images && a.labels);
	uint8_t *im = a.images;
	expect_error("too many", nb_dataset_subset(&a, 31, 1, err), err, "ix",
		     "31 samples");
	expect_error("zero", nb_dataset_subset(&a, 0, 1, err), err, NULL,
		     "0 samples");
	expect_error("negative", nb_dataset_subset(&a, -2, 1, err), err, NULL,
		     "-2 samples");
	CU_ASSERT(a.n == 30 && a.images == im); /* untouched */
	for (int i = 0; i < 30; i++)
		CU_ASSERT_EQUAL(a.images[4 * i], i);
	/* all of them: a permutation */
	CU_ASSERT_EQUAL_FATAL(nb_dataset_subset(&a, 30, 1, err), 0);
	int sum = 0, okl = 0;
	for (int i = 0; i < 30; i++) {
		sum += a.images[4 * i];
		okl += a.labels[i] == a.images[4 * i] / 3;
	}
	CU_ASSERT_EQUAL(sum, 29 * 30 / 2);
	CU_ASSERT_EQUAL(okl, 30);
	nb_dataset_free(&a);
}

/* ---- the real Fashion-MNIST files, when installed ---------------------- */

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

static void fashion_mnist_real(void)
{
	const char *dir = nb_dataset_default_dir("fashion-mnist");
	char probe[256];
	snprintf(probe, sizeof probe, "%s/train-images-idx3-ubyte.gz", dir);
	struct stat st;
	if (stat(probe, &st) != 0) {
		printf("\n  (%s not installed: apt-get install "
		       "dataset-fashion-mnist; test skipped) ",
		       dir);
		return;
	}
	static const struct {
		enum nb_split split;
		int n, per_class;
	} sp[] = {{NB_SPLIT_TRAIN, 60000, 6000}, {NB_SPLIT_TEST, 10000, 1000}};
	char err[NB_ERR_LEN] = "";
	for (int s = 0; s < 2; s++) {
		nb_dataset ds;
		double t0 = now();
		int rc = nb_dataset_load("fashion-mnist", NULL, sp[s].split,
					 &ds, err);
		double t = now() - t0;
		if (rc)
			fprintf(stderr, "\n  %s\n", err);
		CU_ASSERT_EQUAL_FATAL(rc, 0);
		printf("\n  fashion-mnist %s: %d images loaded in %.3f s ",
		       s ? "test" : "train", ds.n, t);
		CU_ASSERT_EQUAL(ds.n, sp[s].n);
		CU_ASSERT(ds.c == 1 && ds.h == 28 && ds.w == 28);
		CU_ASSERT_EQUAL(ds.classes, 10);
		int count[10] = {0};
		for (int i = 0; i < ds.n; i++)
			count[ds.labels[i]]++;
		for (int k = 0; k < 10; k++)
			CU_ASSERT_EQUAL(count[k], sp[s].per_class);
		/* not all black: mean pixel of Fashion-MNIST is about 73 */
		double sum = 0;
		for (size_t i = 0; i < (size_t)ds.n * 784; i++)
			sum += ds.images[i];
		double mean = sum / ((double)ds.n * 784);
		CU_ASSERT(mean > 60 && mean < 85);
		nb_dataset_free(&ds);
	}
}

static const nb_test_entry tests[] = {
    {"idx plain round trip", idx_plain_round_trip},
    {"idx gz round trip", idx_gz_round_trip},
    {"idx gz equals plain", idx_gz_equals_plain},
    {"cifar10 round trip", cifar10_round_trip},
    {"cifar100 round trip", cifar100_round_trip},
    {"synth learnable and seeded", synth_is_learnable_and_seeded},
    {"synth bad arguments", synth_bad_arguments},
    {"truncate keeps prefix", truncate_keeps_prefix},
    {"idx bad inputs", idx_bad_inputs},
    {"idx bad classes, missing labels", idx_bad_classes_and_missing_labels},
    {"cifar bad inputs", cifar_bad_inputs},
    {"missing dataset says how to get it", dataset_missing_says_how_to_get_it},
    {"idx sizes that would overflow", idx_overflowing_sizes},
    {"symlink loops in data folders", dataset_symlink_loops},
    {"default dirs", dataset_default_dirs},
    {"pad_to centres", pad_to_centres},
    {"crop offsets exact", crop_offsets_exact},
    {"flip mirrors", flip_mirrors},
    {"normalisation exact", normalisation_exact},
    {"batch draws follow the contract", batch_draws_follow_contract},
    {"batch deterministic across threads", batch_deterministic_across_threads},
    {"test mode: no crop, no flip", test_mode_no_crop_no_flip},
    {"rotation matches torchvision (PIL) exactly", rotate_matches_torchvision},
    {"rotation by 0 (mod 360) is the identity", rotate_zero_is_identity},
    {"rotation by 90 is transpose and flip", rotate_90_is_transpose_flip},
    {"rotation fill is raw 0", rotate_fill_is_raw_zero},
    {"order: pad, crop, rotate, flip", rotate_order_pad_crop_rotate_flip},
    {"streams unchanged without rotation",
     batch_streams_unchanged_without_rotation},
    {"rotation draws and threads", batch_rotation_draws_and_threads},
    {"augment check: rotation", augment_check_rotation},
    {"subset: seeded, no duplicates, labels follow", subset_seeded},
    {"subset: bad sizes", subset_bad_sizes},
    {"augment check rejects", augment_check_rejects},
    {"fashion-mnist real files", fashion_mnist_real},
    {NULL, NULL}};

void nb_test_data(void)
{
	nb_test_add_suite("data", tests);
}
