/*
 * synth.c - synthetic datasets written in the original file formats (IDX
 * plain or gzip, CIFAR-10 and CIFAR-100 binary, the Tiny-ImageNet-200
 * folders of JPEGs), so the real loaders, and everything after them, can be
 * tested without the real data.
 *
 * Class k draws a bright blob at one of ten places (k mod 10) with a colour
 * ((k div 10) mod 10 for CIFAR-100 and Tiny-ImageNet, k for CIFAR-10) and
 * faint stripes whose orientation follows k's parity and whose period is 2
 * pixels (4 for k >= 100: Tiny-ImageNet's second hundred), on uniform
 * noise; the blob jitters by a pixel. A small CNN separates these quickly. It
 * does not imitate the statistics of the real datasets; numbers measured on it
 * say nothing about the paper's results.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>
#include <zlib.h>

#include "data.h"
#include "error.h"

#define TEST_STREAM 0x5445535453455400ULL /* "TESTSET": test split seed */

/* Blob colours (R, G, B) in 1/8 steps. */
static const uint8_t colours[10][3] = {
    {8, 2, 2}, {2, 8, 2}, {2, 2, 8}, {8, 8, 2}, {8, 2, 8},
    {2, 8, 8}, {8, 5, 2}, {5, 2, 8}, {8, 8, 8}, {4, 4, 4}};

/* One image (c,h,w) of class k into img. */
static void draw_image(uint8_t *img, int c, int h, int w, int k, int classes,
		       nb_rng *rng)
{
	int pos = k % 10, col = classes == 10 ? k : (k / 10) % 10;
	int period = k >= 100 ? 4 : 2;
	/* Ten blob centres on a 2 x 5 grid, jittered by -1..1 pixel. */
	int cx = w * (2 * (pos % 5) + 1) / 10 + (int)nb_rng_below(rng, 3) - 1;
	int cy = h * (2 * (pos / 5) + 1) / 4 + (int)nb_rng_below(rng, 3) - 1;
	int r = h / 7;
	int vertical = k % 2;
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			int noise = (int)nb_rng_below(rng, 48);
			int stripe = ((vertical ? x : y) / period) % 2 ? 24 : 0;
			int in =
			    (x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r;
			for (int ch = 0; ch < c; ch++) {
				int v = noise + stripe;
				if (in)
					v += (c == 1 ? 8 : colours[col][ch]) *
					     22;
				img[((size_t)ch * h + y) * w + x] =
				    (uint8_t)(v > 255 ? 255 : v);
			}
		}
}

/* Balanced labels 0..classes-1 in a shuffled order. */
static int *make_labels(int n, int classes, nb_rng *rng)
{
	int *lab = malloc((size_t)n * sizeof *lab);
	if (!lab)
		return NULL;
	for (int i = 0; i < n; i++)
		lab[i] = i % classes;
	nb_rng_shuffle(rng, lab, n);
	return lab;
}

/* A file written under a temporary name, renamed into place by
 * out_close, so a failure never leaves a half-written file. */
typedef struct out_file {
	char path[4096], tmp[4200];
	gzFile gz;
} out_file;

static int out_open(out_file *f, const char *dir, const char *name, int gz,
		    char *err)
{
	int k = snprintf(f->path, sizeof f->path, "%s/%s%s", dir, name,
			 gz ? ".gz" : "");
	if (k < 0 || (size_t)k >= sizeof f->path)
		return nb_errorf(err, NB_EINVAL, "%s: path too long", dir);
	snprintf(f->tmp, sizeof f->tmp, "%s.tmp", f->path);
	errno = 0;
	/* "T" writes a plain file through the same interface. */
	f->gz = gzopen(f->tmp, gz ? "wb6" : "wbT");
	if (!f->gz)
		return nb_errorf(err, NB_EIO, "%s: cannot create: %s", f->tmp,
				 errno ? strerror(errno) : "out of memory");
	return 0;
}

static int out_write(out_file *f, const void *buf, size_t n, char *err)
{
	const uint8_t *p = buf;
	while (n > 0) {
		unsigned chunk = n > (1u << 30) ? 1u << 30 : (unsigned)n;
		if (gzwrite(f->gz, p, chunk) != (int)chunk) {
			int e;
			const char *m = gzerror(f->gz, &e);
			return nb_errorf(err, NB_EIO, "%s: write failed: %s",
					 f->tmp,
					 e == Z_ERRNO ? strerror(errno) : m);
		}
		p += chunk;
		n -= chunk;
	}
	return 0;
}

/* Closes; on success (rc == 0) renames into place, else removes. */
static int out_close(out_file *f, int rc, char *err)
{
	if (!f->gz)
		return rc;
	int zr = gzclose_w(f->gz);
	f->gz = NULL;
	if (rc == 0 && zr != Z_OK)
		rc =
		    nb_errorf(err, NB_EIO, "%s: cannot finish writing", f->tmp);
	if (rc == 0 && rename(f->tmp, f->path) != 0)
		rc = nb_errorf(err, NB_EIO, "%s: cannot rename to %s: %s",
			       f->tmp, f->path, strerror(errno));
	if (rc != 0)
		remove(f->tmp);
	return rc;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static int write_idx_split(const char *dir, const char *pre, int n, int gz,
			   nb_rng *rng, char *err)
{
	enum { H = 28, W = 28 };
	char name[64];
	uint8_t hdr[16], img[H * W];
	out_file f = {0};
	int rc;
	int *lab = make_labels(n, 10, rng);
	uint8_t *lab8 = malloc((size_t)n);
	if (!lab || !lab8) {
		free(lab);
		free(lab8);
		return nb_errorf(err, NB_ENOMEM, "synth: out of memory");
	}
	snprintf(name, sizeof name, "%s-images-idx3-ubyte", pre);
	put_be32(hdr, 0x803);
	put_be32(hdr + 4, (uint32_t)n);
	put_be32(hdr + 8, H);
	put_be32(hdr + 12, W);
	rc = out_open(&f, dir, name, gz, err);
	if (!rc)
		rc = out_write(&f, hdr, 16, err);
	for (int i = 0; i < n && !rc; i++) {
		draw_image(img, 1, H, W, lab[i], 10, rng);
		rc = out_write(&f, img, sizeof img, err);
	}
	rc = out_close(&f, rc, err);

	if (!rc) {
		snprintf(name, sizeof name, "%s-labels-idx1-ubyte", pre);
		put_be32(hdr, 0x801);
		put_be32(hdr + 4, (uint32_t)n);
		for (int i = 0; i < n; i++)
			lab8[i] = (uint8_t)lab[i];
		rc = out_open(&f, dir, name, gz, err);
		if (!rc)
			rc = out_write(&f, hdr, 8, err);
		if (!rc)
			rc = out_write(&f, lab8, (size_t)n, err);
		rc = out_close(&f, rc, err);
	}
	free(lab);
	free(lab8);
	return rc;
}

/* Writes records [0, n) of one CIFAR split over nfiles files. */
static int write_cifar_split(const char *dir, const char *const *names,
			     int nfiles, int n, int classes, nb_rng *rng,
			     char *err)
{
	uint8_t rec[2 + 3072];
	int nlab = classes == 100 ? 2 : 1;
	int *lab = make_labels(n, classes, rng);
	int rc = 0, at = 0;
	if (!lab)
		return nb_errorf(err, NB_ENOMEM, "synth: out of memory");
	for (int k = 0; k < nfiles && !rc; k++) {
		int cnt = n / nfiles + (k < n % nfiles);
		out_file f = {0};
		rc = out_open(&f, dir, names[k], 0, err);
		for (int i = 0; i < cnt && !rc; i++, at++) {
			if (nlab == 2) {
				rec[0] = (uint8_t)(lab[at] / 5);
				rec[1] = (uint8_t)lab[at];
			} else {
				rec[0] = (uint8_t)lab[at];
			}
			draw_image(rec + nlab, 3, 32, 32, lab[at], classes,
				   rng);
			rc = out_write(&f, rec, (size_t)nlab + 3072, err);
		}
		rc = out_close(&f, rc, err);
	}
	free(lab);
	return rc;
}

/* ---- Tiny-ImageNet ------------------------------------------------------ */

#define TINY_CLASSES 200
#define TINY_SIDE 64
#define TINY_QUALITY 90

/* libjpeg's fatal errors come back here instead of exit(). */
typedef struct jpeg_catch {
	struct jpeg_error_mgr pub;
	jmp_buf jump;
	char msg[JMSG_LENGTH_MAX];
} jpeg_catch;

static void catch_error_exit(j_common_ptr cinfo)
{
	jpeg_catch *c = (jpeg_catch *)cinfo->err;
	cinfo->err->format_message(cinfo, c->msg);
	longjmp(c->jump, 1);
}

/*
 * img (3,64,64) as a JPEG in memory (*out from malloc, the caller frees):
 * RGB, or, when gray, its channel mean as a one-component grayscale JPEG.
 */
static int encode_jpeg(const uint8_t *img, int gray, uint8_t **out,
		       unsigned long *len, char *err)
{
	enum { P = TINY_SIDE * TINY_SIDE };
	struct jpeg_compress_struct ci;
	jpeg_catch c;
	JSAMPLE line[TINY_SIDE * 3];
	*out = NULL;
	*len = 0;
	ci.err = jpeg_std_error(&c.pub);
	c.pub.error_exit = catch_error_exit;
	if (setjmp(c.jump)) {
		jpeg_destroy_compress(&ci);
		free(*out);
		*out = NULL;
		return nb_errorf(err, NB_EINVAL, "synth: libjpeg: %s", c.msg);
	}
	jpeg_create_compress(&ci);
	jpeg_mem_dest(&ci, out, len);
	ci.image_width = ci.image_height = TINY_SIDE;
	ci.input_components = gray ? 1 : 3;
	ci.in_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
	jpeg_set_defaults(&ci);
	jpeg_set_quality(&ci, TINY_QUALITY, TRUE);
	jpeg_start_compress(&ci, TRUE);
	while (ci.next_scanline < ci.image_height) {
		const uint8_t *r = img + (size_t)ci.next_scanline * TINY_SIDE;
		JSAMPROW row = line;
		for (int x = 0; x < TINY_SIDE; x++) {
			if (gray) {
				line[x] = (JSAMPLE)((r[x] + r[P + x] +
						     r[2 * P + x] + 1) /
						    3);
			} else {
				line[3 * x] = r[x];
				line[3 * x + 1] = r[P + x];
				line[3 * x + 2] = r[2 * P + x];
			}
		}
		jpeg_write_scanlines(&ci, &row, 1);
	}
	jpeg_finish_compress(&ci);
	jpeg_destroy_compress(&ci);
	return 0;
}

/* dir/rel as a folder; one that exists already is fine. */
static int make_dir(const char *dir, const char *rel, char *err)
{
	char p[4200];
	int k = snprintf(p, sizeof p, "%s/%s", dir, rel);
	if (k < 0 || (size_t)k >= sizeof p)
		return nb_errorf(err, NB_EINVAL, "%s: path too long", dir);
	if (mkdir(p, 0777) != 0 && errno != EEXIST)
		return nb_errorf(err, NB_EIO, "%s: cannot create folder: %s", p,
				 strerror(errno));
	return 0;
}

/* dir/rel from a buffer, through a temporary name. */
static int write_whole(const char *dir, const char *rel, const void *buf,
		       size_t n, char *err)
{
	out_file f = {0};
	int rc = out_open(&f, dir, rel, 0, err);
	if (!rc)
		rc = out_write(&f, buf, n, err);
	return out_close(&f, rc, err);
}

/* One image of class k drawn, encoded and written as dir/rel. */
static int write_tiny_image(const char *dir, const char *rel, int k, int gray,
			    nb_rng *rng, char *err)
{
	uint8_t img[3 * TINY_SIDE * TINY_SIDE], *jpg;
	unsigned long len;
	draw_image(img, 3, TINY_SIDE, TINY_SIDE, k, TINY_CLASSES, rng);
	int rc = encode_jpeg(img, gray, &jpg, &len, err);
	if (!rc)
		rc = write_whole(dir, rel, jpg, len, err);
	free(jpg);
	return rc;
}

/* A growing text buffer for wnids.txt and the annotation files. */
typedef struct text_buf {
	char *s;
	size_t n, cap;
} text_buf;

static int text_add(text_buf *t, const char *line)
{
	size_t l = strlen(line);
	if (t->n + l + 1 > t->cap) {
		size_t cap = 2 * (t->n + l + 1);
		char *s = realloc(t->s, cap);
		if (!s)
			return -1;
		t->s = s;
		t->cap = cap;
	}
	memcpy(t->s + t->n, line, l + 1);
	t->n += l;
	return 0;
}

static int write_tiny(const char *dir, int n_train, int n_test, nb_rng *tr,
		      nb_rng *te, char *err)
{
	char ids[TINY_CLASSES][16], rel[256], line[256];
	int order[TINY_CLASSES], rc = 0, g = 0;
	text_buf t = {0};
	int *lab = NULL;

	/* Increasing ids, so class k (sorted order) is ids[k]; the file
	 * lists them shuffled, as the original does not sort them. */
	for (int k = 0; k < TINY_CLASSES; k++) {
		snprintf(ids[k], sizeof ids[k], "n%08d",
			 1000000 + 4999 * k + (int)nb_rng_below(tr, 4999));
		order[k] = k;
	}
	nb_rng_shuffle(tr, order, TINY_CLASSES);
	for (int k = 0; k < TINY_CLASSES && !rc; k++) {
		snprintf(line, sizeof line, "%s\n", ids[order[k]]);
		if (text_add(&t, line))
			rc = nb_errorf(err, NB_ENOMEM, "synth: out of memory");
	}
	if (!rc)
		rc = write_whole(dir, "wnids.txt", t.s, t.n, err);
	if (!rc)
		rc = make_dir(dir, "train", err);
	for (int k = 0; k < TINY_CLASSES && !rc; k++) {
		int cnt = n_train / TINY_CLASSES + (k < n_train % TINY_CLASSES);
		t.n = 0;
		snprintf(rel, sizeof rel, "train/%s", ids[k]);
		if (!(rc = make_dir(dir, rel, err))) {
			snprintf(rel, sizeof rel, "train/%s/images", ids[k]);
			rc = make_dir(dir, rel, err);
		}
		for (int j = 0; j < cnt && !rc; j++, g++) {
			snprintf(rel, sizeof rel, "train/%s/images/%s_%d.JPEG",
				 ids[k], ids[k], j);
			rc = write_tiny_image(dir, rel, k, g % 7 == 3, tr, err);
			snprintf(line, sizeof line,
				 "%s_%d.JPEG\t%d\t%d\t%d\t%d\n", ids[k], j, 8,
				 8, 55, 55);
			if (!rc && text_add(&t, line))
				rc = nb_errorf(err, NB_ENOMEM,
					       "synth: out of memory");
		}
		snprintf(rel, sizeof rel, "train/%s/%s_boxes.txt", ids[k],
			 ids[k]);
		if (!rc)
			rc = write_whole(dir, rel, t.s, t.n, err);
	}
	if (!rc && !(lab = make_labels(n_test, TINY_CLASSES, te)))
		rc = nb_errorf(err, NB_ENOMEM, "synth: out of memory");
	if (!rc)
		rc = make_dir(dir, "val", err);
	if (!rc)
		rc = make_dir(dir, "val/images", err);
	t.n = 0;
	for (int i = 0; i < n_test && !rc; i++) {
		snprintf(rel, sizeof rel, "val/images/val_%d.JPEG", i);
		rc = write_tiny_image(dir, rel, lab[i], i % 7 == 3, te, err);
		snprintf(line, sizeof line, "val_%d.JPEG\t%s\t%d\t%d\t%d\t%d\n",
			 i, ids[lab[i]], 4, 6, 50, 60);
		if (!rc && text_add(&t, line))
			rc = nb_errorf(err, NB_ENOMEM, "synth: out of memory");
	}
	if (!rc)
		rc = write_whole(dir, "val/val_annotations.txt", t.s, t.n, err);
	free(t.s);
	free(lab);
	return rc;
}

int nb_synth_write(const char *dir, const char *format, int n_train, int n_test,
		   int gz, uint64_t seed, char *err)
{
	static const char *const c10_train[] = {
	    "data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
	    "data_batch_4.bin", "data_batch_5.bin"};
	static const char *const c10_test[] = {"test_batch.bin"};
	static const char *const c100_train[] = {"train.bin"};
	static const char *const c100_test[] = {"test.bin"};
	nb_rng tr, te;
	int rc;

	if (!dir || !format)
		return nb_errorf(err, NB_EINVAL, "synth: no folder or format");
	if (n_train < 1 || n_test < 1)
		return nb_errorf(err, NB_EINVAL,
				 "synth: %d train / %d test samples; need at "
				 "least 1 each",
				 n_train, n_test);
	nb_rng_seed(&tr, seed, NB_RNG_DATA);
	nb_rng_seed(&te, seed ^ TEST_STREAM, NB_RNG_DATA);

	if (!strcmp(format, "idx")) {
		rc = write_idx_split(dir, "train", n_train, gz, &tr, err);
		if (!rc)
			rc = write_idx_split(dir, "t10k", n_test, gz, &te, err);
		return rc;
	}
	if (!strcmp(format, "cifar10")) {
		if (n_train < 5)
			return nb_errorf(err, NB_EINVAL,
					 "synth: cifar10 needs n_train >= 5 "
					 "(five batch files), got %d",
					 n_train);
		rc =
		    write_cifar_split(dir, c10_train, 5, n_train, 10, &tr, err);
		if (!rc)
			rc = write_cifar_split(dir, c10_test, 1, n_test, 10,
					       &te, err);
		return rc;
	}
	if (!strcmp(format, "cifar100")) {
		rc = write_cifar_split(dir, c100_train, 1, n_train, 100, &tr,
				       err);
		if (!rc)
			rc = write_cifar_split(dir, c100_test, 1, n_test, 100,
					       &te, err);
		return rc;
	}
	if (!strcmp(format, "tiny-imagenet")) {
		if (n_train < TINY_CLASSES)
			return nb_errorf(err, NB_EINVAL,
					 "synth: tiny-imagenet needs n_train "
					 ">= %d (an image per class folder), "
					 "got %d",
					 TINY_CLASSES, n_train);
		return write_tiny(dir, n_train, n_test, &tr, &te, err);
	}
	return nb_errorf(err, NB_EINVAL,
			 "synth: unknown format \"%s\"; known: idx, cifar10, "
			 "cifar100, tiny-imagenet",
			 format);
}
