/*
 * tinyimagenet_test.c - the Tiny-ImageNet-200 loader: synthetic round trips
 * (train and val: counts, labels in sorted-wnid order, pixels equal to an
 * independent libjpeg decode of the same files), grayscale to RGB, a
 * near-lossless quality-100 check against known pixels, loading by name,
 * every kind of bad input (each error one line naming the file), symlink
 * loops, and the same result with 1 and 2 threads. Prints the decode speed.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jpeglib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "data.h"
#include "error.h"
#include "testutil.h"

#define SIDE 64
#define PLANE (SIDE * SIDE)
#define PIX (3 * PLANE)
#define SEED 20240611ULL

/* ---- helpers ------------------------------------------------------------ */

static char *path_in(const char *dir, const char *rel)
{
	static char buf[8][4200];
	static int k;
	char *p = buf[k++ % 8];
	snprintf(p, sizeof buf[0], "%s/%s", dir, rel);
	return p;
}

/* A fresh synthetic set: 200 classes, per_class train images each, n_val
 * val images. The caller removes it with tu_rmtree and frees it. */
static char *make_set(int per_class, int n_val)
{
	char err[NB_ERR_LEN];
	char *dir = tu_mkdtemp();
	CU_ASSERT_FATAL(dir != NULL);
	int rc = nb_synth_write(dir, "tiny-imagenet", 200 * per_class, n_val, 0,
				SEED, err);
	if (rc)
		fprintf(stderr, "synth: %s\n", err);
	CU_ASSERT_FATAL(rc == 0);
	return dir;
}

static void drop_set(char *dir)
{
	tu_rmtree(dir);
	free(dir);
}

static int write_bytes(const char *path, const void *buf, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	int ok = fwrite(buf, 1, n, f) == n;
	return fclose(f) == 0 && ok ? 0 : -1;
}

static int append_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "ab");
	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

static uint8_t *read_bytes(const char *path, size_t *n)
{
	*n = 0;
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long sz = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *b = sz >= 0 ? malloc((size_t)sz + 1) : NULL;
	if (b)
		*n = fread(b, 1, (size_t)sz, f);
	fclose(f);
	return b;
}

/* The sorted wnids of a set (the class order), into ids[200][10]. */
static int sorted_ids(const char *dir, char ids[][10])
{
	FILE *f = fopen(path_in(dir, "wnids.txt"), "r");
	char line[64];
	int n = 0;
	if (!f)
		return 0;
	while (n < 200 && fgets(line, sizeof line, f))
		if (sscanf(line, "%9s", ids[n]) == 1)
			n++;
	fclose(f);
	qsort(ids, (size_t)n, 10, (int (*)(const void *, const void *))strcmp);
	return n;
}

struct jerr {
	struct jpeg_error_mgr pub;
	jmp_buf jump;
};

static void jerr_exit(j_common_ptr c)
{
	longjmp(((struct jerr *)c->err)->jump, 1);
}

/*
 * The twin: decodes path with libjpeg's own grayscale-to-RGB conversion
 * (out_color_space = JCS_RGB for every input) into out (3,64,64). Another
 * code path than the loader's, same libjpeg settings. 0 on success.
 */
static int twin_decode(const char *path, uint8_t *out)
{
	struct jpeg_decompress_struct ci;
	struct jerr je;
	JSAMPLE line[SIDE * 3];
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	ci.err = jpeg_std_error(&je.pub);
	je.pub.error_exit = jerr_exit;
	if (setjmp(je.jump)) {
		jpeg_destroy_decompress(&ci);
		fclose(f);
		return -1;
	}
	jpeg_create_decompress(&ci);
	jpeg_stdio_src(&ci, f);
	jpeg_read_header(&ci, TRUE);
	ci.out_color_space = JCS_RGB;
	jpeg_start_decompress(&ci);
	if (ci.output_width != SIDE || ci.output_height != SIDE)
		longjmp(je.jump, 1);
	while (ci.output_scanline < SIDE) {
		int y = (int)ci.output_scanline;
		JSAMPROW row = line;
		jpeg_read_scanlines(&ci, &row, 1);
		for (int x = 0; x < SIDE; x++)
			for (int c = 0; c < 3; c++)
				out[c * PLANE + y * SIDE + x] = line[3 * x + c];
	}
	jpeg_finish_decompress(&ci);
	jpeg_destroy_decompress(&ci);
	fclose(f);
	return 0;
}

/*
 * Encodes an interleaved image (w x h, comps components of space) at
 * quality, 4:4:4 when full_chroma, into path.
 */
static int write_jpeg(const char *path, const uint8_t *pix, int w, int h,
		      int comps, J_COLOR_SPACE space, int quality,
		      int full_chroma)
{
	struct jpeg_compress_struct ci;
	struct jerr je;
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	ci.err = jpeg_std_error(&je.pub);
	je.pub.error_exit = jerr_exit;
	if (setjmp(je.jump)) {
		jpeg_destroy_compress(&ci);
		fclose(f);
		return -1;
	}
	jpeg_create_compress(&ci);
	jpeg_stdio_dest(&ci, f);
	ci.image_width = (JDIMENSION)w;
	ci.image_height = (JDIMENSION)h;
	ci.input_components = comps;
	ci.in_color_space = space;
	jpeg_set_defaults(&ci);
	jpeg_set_quality(&ci, quality, TRUE);
	if (full_chroma)
		for (int c = 0; c < ci.num_components; c++)
			ci.comp_info[c].h_samp_factor =
			    ci.comp_info[c].v_samp_factor = 1;
	jpeg_start_compress(&ci, TRUE);
	while (ci.next_scanline < ci.image_height) {
		JSAMPROW row =
		    (JSAMPROW)(pix + (size_t)ci.next_scanline * w * comps);
		jpeg_write_scanlines(&ci, &row, 1);
	}
	jpeg_finish_compress(&ci);
	jpeg_destroy_compress(&ci);
	return fclose(f);
}

/*
 * A hand-made set, written here with libjpeg rather than by
 * nb_synth_write: 3 classes listed unsorted in wnids.txt, 2 train images
 * per class (one grayscale), 4 val images. Small, so that each bad-input
 * case costs a few dozen file operations, not a thousand.
 */
static const char *const mini_ids[3] = {"n00000300", "n00000100", "n00000200"};

static char *make_mini(void)
{
	char *dir = tu_mkdtemp(), rel[128], text[512];
	uint8_t px[PIX];
	CU_ASSERT_FATAL(dir != NULL);
	FILE *f = fopen(path_in(dir, "wnids.txt"), "w");
	CU_ASSERT_FATAL(f != NULL);
	for (int k = 0; k < 3; k++)
		fprintf(f, "%s\n", mini_ids[k]);
	fclose(f);
	CU_ASSERT_FATAL(mkdir(path_in(dir, "train"), 0777) == 0);
	CU_ASSERT_FATAL(mkdir(path_in(dir, "val"), 0777) == 0);
	CU_ASSERT_FATAL(mkdir(path_in(dir, "val/images"), 0777) == 0);
	for (int k = 0; k < 3; k++) {
		snprintf(rel, sizeof rel, "train/%s", mini_ids[k]);
		CU_ASSERT_FATAL(mkdir(path_in(dir, rel), 0777) == 0);
		snprintf(rel, sizeof rel, "train/%s/images", mini_ids[k]);
		CU_ASSERT_FATAL(mkdir(path_in(dir, rel), 0777) == 0);
		for (int j = 0; j < 2; j++) {
			for (int i = 0; i < PIX; i++)
				px[i] = (uint8_t)(i * (k + 1) + 50 * j);
			snprintf(rel, sizeof rel, "train/%s/images/%s_%d.JPEG",
				 mini_ids[k], mini_ids[k], j);
			CU_ASSERT_FATAL(write_jpeg(path_in(dir, rel), px, SIDE,
						   SIDE, j ? 1 : 3,
						   j ? JCS_GRAYSCALE : JCS_RGB,
						   85, 0) == 0);
		}
	}
	f = fopen(path_in(dir, "val/val_annotations.txt"), "w");
	CU_ASSERT_FATAL(f != NULL);
	for (int i = 0; i < 4; i++) {
		for (int p = 0; p < PIX; p++)
			px[p] = (uint8_t)(p * (i + 3));
		snprintf(rel, sizeof rel, "val/images/val_%d.JPEG", i);
		CU_ASSERT_FATAL(write_jpeg(path_in(dir, rel), px, SIDE, SIDE, 3,
					   JCS_RGB, 85, 0) == 0);
		snprintf(text, sizeof text, "val_%d.JPEG\t%s\t%d\t%d\t%d\t%d\n",
			 i, mini_ids[i % 3], 1, 2, 60, 61);
		fputs(text, f);
	}
	fclose(f);
	return dir;
}

/* The expected samples of a split: paths and labels, in loader order. */
typedef struct expect {
	char path[4000][300];
	int label[4000];
	int n;
} expect;

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* train: class by class (sorted wnids), names sorted within a class. */
static void expect_train(const char *dir, expect *e)
{
	char ids[200][10], cmd[4300];
	int n = sorted_ids(dir, ids);
	e->n = 0;
	for (int k = 0; k < n; k++) {
		char *names[512];
		int m = 0;
		snprintf(cmd, sizeof cmd, "ls %s/train/%s/images", dir, ids[k]);
		FILE *p = popen(cmd, "r");
		char line[300];
		while (p && m < 512 && fgets(line, sizeof line, p)) {
			line[strcspn(line, "\n")] = 0;
			names[m++] = strdup(line);
		}
		if (p)
			pclose(p);
		qsort(names, (size_t)m, sizeof *names, cmp_name);
		for (int i = 0; i < m; i++) {
			int len = snprintf(e->path[e->n], sizeof e->path[0],
					   "%s/train/%s/images/%s", dir, ids[k],
					   names[i]);
			CU_ASSERT_FATAL(len > 0 &&
					(size_t)len < sizeof e->path[0]);
			e->label[e->n++] = k;
			free(names[i]);
		}
	}
}

static expect *sort_e;
static int cmp_idx(const void *a, const void *b)
{
	int i = *(const int *)a, j = *(const int *)b;
	if (sort_e->label[i] != sort_e->label[j])
		return sort_e->label[i] - sort_e->label[j];
	return strcmp(sort_e->path[i], sort_e->path[j]);
}

/* val: from the annotations, by (class, file name). */
static void expect_val(const char *dir, expect *e)
{
	static expect raw;
	char ids[200][10], line[512], name[256], id[64];
	int n = sorted_ids(dir, ids), idx[4000];
	FILE *f = fopen(path_in(dir, "val/val_annotations.txt"), "r");
	raw.n = 0;
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "%255s %63s", name, id) == 2) {
			int len = snprintf(raw.path[raw.n], sizeof raw.path[0],
					   "%s/val/images/%s", dir, name);
			CU_ASSERT_FATAL(len > 0 &&
					(size_t)len < sizeof raw.path[0]);
			raw.label[raw.n] = -1;
			for (int k = 0; k < n; k++)
				if (!strcmp(ids[k], id))
					raw.label[raw.n] = k;
			idx[raw.n] = raw.n;
			raw.n++;
		}
	if (f)
		fclose(f);
	sort_e = &raw;
	qsort(idx, (size_t)raw.n, sizeof *idx, cmp_idx);
	for (int i = 0; i < raw.n; i++) {
		memcpy(e->path[i], raw.path[idx[i]], sizeof e->path[0]);
		e->label[i] = raw.label[idx[i]];
	}
	e->n = raw.n;
}

/* Loads and compares everything with the expectation and the twin. */
static void check_against(const char *dir, enum nb_split split, int classes)
{
	static expect e;
	char err[NB_ERR_LEN];
	nb_dataset ds;
	uint8_t img[PIX];
	if (split == NB_SPLIT_TRAIN)
		expect_train(dir, &e);
	else
		expect_val(dir, &e);
	int rc = nb_tinyimagenet_load(dir, split, &ds, err);
	if (rc)
		fprintf(stderr, "load: %s\n", err);
	CU_ASSERT_FATAL(rc == 0);
	CU_ASSERT_EQUAL(ds.n, e.n);
	CU_ASSERT(ds.c == 3 && ds.h == SIDE && ds.w == SIDE);
	CU_ASSERT_EQUAL(ds.classes, classes);
	int bad_label = 0, bad_pix = 0;
	for (int i = 0; i < ds.n && i < e.n; i++) {
		bad_label += ds.labels[i] != e.label[i];
		CU_ASSERT_FATAL(twin_decode(e.path[i], img) == 0);
		bad_pix += memcmp(img, ds.images + (size_t)i * PIX, PIX) != 0;
	}
	CU_ASSERT_EQUAL(bad_label, 0);
	CU_ASSERT_EQUAL(bad_pix, 0);
	nb_dataset_free(&ds);
}

/* ---- round trips -------------------------------------------------------- */

static void round_trip_train(void)
{
	char *dir = make_set(2, 30);
	char ids[200][10], first[16] = "";
	/* wnids.txt is not in sorted order, so file-order labels would
	 * fail the label check below. */
	FILE *f = fopen(path_in(dir, "wnids.txt"), "r");
	CU_ASSERT_FATAL(f != NULL);
	CU_ASSERT(fscanf(f, "%15s", first) == 1);
	fclose(f);
	CU_ASSERT_EQUAL(sorted_ids(dir, ids), 200);
	CU_ASSERT(strcmp(first, ids[0]) != 0);
	check_against(dir, NB_SPLIT_TRAIN, 200);

	char err[NB_ERR_LEN];
	nb_dataset ds;
	CU_ASSERT_FATAL(nb_tinyimagenet_load(dir, NB_SPLIT_TRAIN, &ds, err) ==
			0);
	CU_ASSERT_EQUAL(ds.n, 400);
	int count[200] = {0};
	for (int i = 0; i < ds.n; i++)
		count[ds.labels[i]]++;
	int uneven = 0;
	for (int k = 0; k < 200; k++)
		uneven += count[k] != 2;
	CU_ASSERT_EQUAL(uneven, 0);
	/* Labels are grouped by class in ascending order. */
	for (int i = 0; i < ds.n; i++)
		CU_ASSERT_EQUAL(ds.labels[i], i / 2);
	/* The writer's grayscale images (index mod 7 == 3) load as
	 * R = G = B; colour ones do not. */
	const uint8_t *g = ds.images + 3 * PIX, *c = ds.images + 2 * PIX;
	CU_ASSERT(memcmp(g, g + PLANE, PLANE) == 0);
	CU_ASSERT(memcmp(g, g + 2 * PLANE, PLANE) == 0);
	CU_ASSERT(memcmp(c, c + PLANE, PLANE) != 0);
	nb_dataset_free(&ds);
	drop_set(dir);
}

static void round_trip_val(void)
{
	char *dir = make_set(1, 60);
	check_against(dir, NB_SPLIT_TEST, 200);
	char err[NB_ERR_LEN];
	nb_dataset ds;
	CU_ASSERT_FATAL(nb_tinyimagenet_load(dir, NB_SPLIT_TEST, &ds, err) ==
			0);
	CU_ASSERT_EQUAL(ds.n, 60);
	for (int i = 1; i < ds.n; i++)
		CU_ASSERT(ds.labels[i] >= ds.labels[i - 1]);
	nb_dataset_free(&ds);
	drop_set(dir);
}

/* The hand-made set: labels by sorted id (n00000100 is class 0 although
 * listed second), pixels as the twin decodes them, grayscale replicated. */
static void round_trip_mini(void)
{
	char *dir = make_mini(), err[NB_ERR_LEN];
	nb_dataset ds;
	check_against(dir, NB_SPLIT_TRAIN, 3);
	check_against(dir, NB_SPLIT_TEST, 3);
	CU_ASSERT_FATAL(nb_tinyimagenet_load(dir, NB_SPLIT_TEST, &ds, err) ==
			0);
	/* val_i is mini_ids[i % 3]: sorted classes 2, 0, 1, 2. */
	static const int want[4] = {0, 1, 2, 2};
	for (int i = 0; i < 4; i++)
		CU_ASSERT_EQUAL(ds.labels[i], want[i]);
	nb_dataset_free(&ds);
	CU_ASSERT_FATAL(nb_tinyimagenet_load(dir, NB_SPLIT_TRAIN, &ds, err) ==
			0);
	const uint8_t *g = ds.images + PIX; /* class 0, image _1: gray */
	CU_ASSERT(memcmp(g, g + PLANE, PLANE) == 0);
	CU_ASSERT(memcmp(g, g + 2 * PLANE, PLANE) == 0);
	nb_dataset_free(&ds);
	drop_set(dir);
}

/*
 * Known pixels at quality 100: in the hand-made set, a grayscale JPEG
 * replaces one class's image and an RGB one (4:4:4) another's; the loaded
 * pixels stay within a few levels of what was encoded, and the gray one has R =
 * G = B.
 */
static void known_pixels(void)
{
	char *dir = make_mini();
	char ids[200][10], err[NB_ERR_LEN];
	uint8_t gray[PLANE], rgb[PIX];
	CU_ASSERT_FATAL(sorted_ids(dir, ids) == 3);
	for (int y = 0; y < SIDE; y++)
		for (int x = 0; x < SIDE; x++) {
			gray[y * SIDE + x] = (uint8_t)(2 * x + y);
			rgb[3 * (y * SIDE + x)] = (uint8_t)(4 * x);
			rgb[3 * (y * SIDE + x) + 1] = (uint8_t)(4 * y);
			rgb[3 * (y * SIDE + x) + 2] = (uint8_t)(128 + x - y);
		}
	char rel[64];
	snprintf(rel, sizeof rel, "train/%s/images/%s_0.JPEG", ids[0], ids[0]);
	CU_ASSERT_FATAL(write_jpeg(path_in(dir, rel), gray, SIDE, SIDE, 1,
				   JCS_GRAYSCALE, 100, 1) == 0);
	snprintf(rel, sizeof rel, "train/%s/images/%s_0.JPEG", ids[1], ids[1]);
	CU_ASSERT_FATAL(write_jpeg(path_in(dir, rel), rgb, SIDE, SIDE, 3,
				   JCS_RGB, 100, 1) == 0);
	nb_dataset ds;
	CU_ASSERT_FATAL(nb_tinyimagenet_load(dir, NB_SPLIT_TRAIN, &ds, err) ==
			0);
	int worst_g = 0, worst_c = 0, unequal = 0;
	for (int p = 0; p < PLANE; p++) {
		/* Class 0 image 0, class 1 image 0 (2 per class). */
		const uint8_t *g = ds.images, *c = ds.images + 2 * PIX;
		int d = abs(g[p] - gray[p]);
		worst_g = d > worst_g ? d : worst_g;
		unequal += g[p] != g[PLANE + p] || g[p] != g[2 * PLANE + p];
		for (int ch = 0; ch < 3; ch++) {
			d = abs(c[ch * PLANE + p] - rgb[3 * p + ch]);
			worst_c = d > worst_c ? d : worst_c;
		}
	}
	CU_ASSERT_EQUAL(unequal, 0);
	CU_ASSERT(worst_g <= 2);
	CU_ASSERT(worst_c <= 4);
	nb_dataset_free(&ds);
	drop_set(dir);
}

/* By name: the folder or its tiny-imagenet-200/, $NASTY_BENCH_DATA, and
 * the one-line message when absent. */
static void load_by_name(void)
{
	char err[NB_ERR_LEN];
	nb_dataset ds;
	char *root = tu_mkdtemp();
	CU_ASSERT_FATAL(root != NULL);
	CU_ASSERT_FATAL(mkdir(path_in(root, "tiny-imagenet"), 0777) == 0);
	char sub[4200];
	snprintf(sub, sizeof sub, "%s/tiny-imagenet/tiny-imagenet-200", root);
	CU_ASSERT_FATAL(mkdir(sub, 0777) == 0);
	CU_ASSERT_FATAL(
	    nb_synth_write(sub, "tiny-imagenet", 200, 3, 0, SEED, err) == 0);

	CU_ASSERT(nb_dataset_load("tiny-imagenet", sub, NB_SPLIT_TEST, &ds,
				  err) == 0);
	CU_ASSERT_EQUAL(ds.n, 3);
	CU_ASSERT_STRING_EQUAL(ds.name, "tiny-imagenet");
	nb_dataset_free(&ds);

	const char *old = getenv("NASTY_BENCH_DATA");
	char *saved = old ? strdup(old) : NULL;
	setenv("NASTY_BENCH_DATA", root, 1);
	int rc =
	    nb_dataset_load("tiny-imagenet", NULL, NB_SPLIT_TRAIN, &ds, err);
	if (rc)
		fprintf(stderr, "by name: %s\n", err);
	CU_ASSERT(rc == 0);
	CU_ASSERT_EQUAL(ds.n, 200);
	CU_ASSERT_EQUAL(ds.classes, 200);
	nb_dataset_free(&ds);
	if (saved) {
		setenv("NASTY_BENCH_DATA", saved, 1);
		free(saved);
	} else {
		unsetenv("NASTY_BENCH_DATA");
	}

	CU_ASSERT(nb_dataset_load("tiny-imagenet", root, NB_SPLIT_TRAIN, &ds,
				  err) < 0);
	CU_ASSERT(strstr(err, root) != NULL);
	CU_ASSERT(strstr(err, "tiny-imagenet-200.zip") != NULL);
	CU_ASSERT(strstr(err, "--data-dir") != NULL);
	CU_ASSERT(strchr(err, '\n') == NULL);
	CU_ASSERT(ds.images == NULL && ds.n == 0);
	tu_rmtree(root);
	free(root);
}

/* ---- bad input ---------------------------------------------------------- */

/* The set being damaged by the current case, and its sorted ids (3 in the
 * hand-made set). */
static const char *bad_dir;
static char bad_ids[200][10];

static char *rel_path(const char *fmt, int k)
{
	char rel[300];
	snprintf(rel, sizeof rel, fmt, bad_ids[k], bad_ids[k]);
	return path_in(bad_dir, rel);
}

static void replace_with(const char *path, const void *buf, size_t n)
{
	CU_ASSERT_FATAL(write_bytes(path, buf, n) == 0);
}

static void rm_wnids(void)
{
	remove(path_in(bad_dir, "wnids.txt"));
}
static void dup_wnid(void)
{
	char line[16];
	snprintf(line, sizeof line, "%s\n", bad_ids[2]);
	append_text(path_in(bad_dir, "wnids.txt"), line);
}
static void short_wnid(void)
{
	append_text(path_in(bad_dir, "wnids.txt"), "n123\n");
}
static void traversal_wnid(void)
{
	append_text(path_in(bad_dir, "wnids.txt"), "../../etc\n");
}
static void rm_class(void)
{
	tu_rmtree(rel_path("train/%s", 1));
}
static void stray_class(void)
{
	mkdir(path_in(bad_dir, "train/n99999999"), 0777);
}
static void empty_class(void)
{
	remove(rel_path("train/%s/images/%s_0.JPEG", 2));
	remove(rel_path("train/%s/images/%s_1.JPEG", 2));
}
static void garbage_jpeg(void)
{
	replace_with(rel_path("train/%s/images/%s_0.JPEG", 1),
		     "this is not a JPEG at all", 25);
}
static void empty_jpeg(void)
{
	replace_with(rel_path("train/%s/images/%s_0.JPEG", 1), "", 0);
}
static void truncated_jpeg(void)
{
	size_t n;
	char *p = rel_path("train/%s/images/%s_0.JPEG", 1);
	uint8_t *b = read_bytes(p, &n);
	CU_ASSERT_FATAL(b != NULL);
	replace_with(p, b, n / 2);
	free(b);
}
static void small_jpeg(void)
{
	uint8_t px[32 * 32 * 3] = {0};
	CU_ASSERT_FATAL(write_jpeg(rel_path("train/%s/images/%s_0.JPEG", 1), px,
				   32, 32, 3, JCS_RGB, 90, 0) == 0);
}
/* A valid file whose header claims 65500x65500: refused from the header,
 * before anything is sized from it. */
static void huge_header_jpeg(void)
{
	size_t n;
	char *p = rel_path("train/%s/images/%s_0.JPEG", 1);
	uint8_t *b = read_bytes(p, &n);
	CU_ASSERT_FATAL(b != NULL);
	for (size_t i = 0; i + 9 < n; i++)
		if (b[i] == 0xff && b[i + 1] == 0xc0) {
			b[i + 5] = b[i + 7] = 0xff;
			b[i + 6] = b[i + 8] = 0xdc;
			break;
		}
	replace_with(p, b, n);
	free(b);
}
static void cmyk_jpeg(void)
{
	uint8_t px[PLANE * 4];
	memset(px, 100, sizeof px);
	CU_ASSERT_FATAL(write_jpeg(rel_path("train/%s/images/%s_0.JPEG", 1), px,
				   SIDE, SIDE, 4, JCS_CMYK, 90, 0) == 0);
}
static void sparse_huge_jpeg(void)
{
	char *p = rel_path("train/%s/images/%s_0.JPEG", 1);
	CU_ASSERT_FATAL(truncate(p, 1LL << 30) == 0);
}
static void dir_named_jpeg(void)
{
	mkdir(rel_path("train/%s/images/zz.JPEG", 1), 0777);
}
static void fifo_jpeg(void)
{
	CU_ASSERT_FATAL(mkfifo(rel_path("train/%s/images/zz.JPEG", 1), 0666) ==
			0);
}
static void loop_images_dir(void)
{
	char *p = rel_path("train/%s/images", 1);
	tu_rmtree(p);
	CU_ASSERT_FATAL(symlink("images", p) == 0);
}
static void loop_jpegs(void)
{
	CU_ASSERT_FATAL(
	    symlink("b.JPEG", rel_path("train/%s/images/a.JPEG", 1)) == 0);
	CU_ASSERT_FATAL(
	    symlink("a.JPEG", rel_path("train/%s/images/b.JPEG", 1)) == 0);
}
static void loop_in_train(void)
{
	CU_ASSERT_FATAL(symlink("loop", path_in(bad_dir, "train/loop")) == 0);
}
static void rm_annotations(void)
{
	remove(path_in(bad_dir, "val/val_annotations.txt"));
}
static void unknown_wnid(void)
{
	append_text(path_in(bad_dir, "val/val_annotations.txt"),
		    "val_0.JPEG\tn99999999\t1\t2\t3\t4\n");
}
static void rm_val_image(void)
{
	remove(path_in(bad_dir, "val/images/val_2.JPEG"));
}
static void five_fields(void)
{
	append_text(path_in(bad_dir, "val/val_annotations.txt"),
		    "val_9.JPEG\tn01000000\t1\t2\t3\n");
}
static void bad_box(void)
{
	char line[128];
	snprintf(line, sizeof line, "val_9.JPEG\t%s\t1\tx\t3\t4\n", bad_ids[0]);
	append_text(path_in(bad_dir, "val/val_annotations.txt"), line);
}
/* File and folder names with control bytes: refused, and shown escaped
 * (a message never carries a control byte). */
static void control_jpeg_name(void)
{
	FILE *f = fopen(rel_path("train/%s/images/a\001b.JPEG", 1), "wb");
	CU_ASSERT_FATAL(f != NULL);
	fclose(f);
}
static void control_folder_name(void)
{
	mkdir(path_in(bad_dir, "train/n\033[2Jxx"), 0777);
}
static void control_val_name(void)
{
	char line[128];
	snprintf(line, sizeof line, "val\0379.JPEG\t%s\t1\t2\t3\t4\n",
		 bad_ids[0]);
	append_text(path_in(bad_dir, "val/val_annotations.txt"), line);
}
static void slash_name(void)
{
	char line[128];
	snprintf(line, sizeof line, "../../wnids.txt\t%s\t1\t2\t3\t4\n",
		 bad_ids[0]);
	append_text(path_in(bad_dir, "val/val_annotations.txt"), line);
}
static void twice(void)
{
	char line[128];
	snprintf(line, sizeof line, "val_1.JPEG\t%s\t1\t2\t3\t4\n", bad_ids[0]);
	append_text(path_in(bad_dir, "val/val_annotations.txt"), line);
}
/* One more line than a split may hold (the count is refused before any
 * image is opened or memory sized from it). */
static void too_many(void)
{
	FILE *f = fopen(path_in(bad_dir, "val/val_annotations.txt"), "w");
	CU_ASSERT_FATAL(f != NULL);
	for (int i = 0; i <= INT_MAX / PIX; i++)
		fprintf(f, "v%d.JPEG\t%s\t0\t0\t63\t63\n", i, bad_ids[i % 3]);
	fclose(f);
}

typedef struct bad_case {
	const char *name;
	void (*damage)(void);
	enum nb_split split;
	const char *want[3]; /* substrings of the message */
} bad_case;

static const bad_case bad_cases[] = {
    {"missing wnids.txt",
     rm_wnids,
     NB_SPLIT_TRAIN,
     {"wnids.txt", "No such file"}},
    {"duplicate wnid",
     dup_wnid,
     NB_SPLIT_TRAIN,
     {"wnids.txt", "duplicate id", "line"}},
    {"malformed wnid",
     short_wnid,
     NB_SPLIT_TRAIN,
     {"wnids.txt", "line 4", "not a WordNet id"}},
    {"path in wnids.txt",
     traversal_wnid,
     NB_SPLIT_TEST,
     {"wnids.txt", "line 4", "../../etc"}},
    {"class folder missing",
     rm_class,
     NB_SPLIT_TRAIN,
     {"class folder missing"}},
    {"stray class folder",
     stray_class,
     NB_SPLIT_TRAIN,
     {"train/n99999999", "does not list"}},
    {"empty class", empty_class, NB_SPLIT_TRAIN, {"images", "no .JPEG"}},
    {"garbage JPEG",
     garbage_jpeg,
     NB_SPLIT_TRAIN,
     {"_0.JPEG", "corrupt or not a JPEG"}},
    {"empty JPEG",
     empty_jpeg,
     NB_SPLIT_TRAIN,
     {"_0.JPEG", "corrupt or not a JPEG"}},
    {"truncated JPEG",
     truncated_jpeg,
     NB_SPLIT_TRAIN,
     {"_0.JPEG", "truncated"}},
    {"32x32 JPEG", small_jpeg, NB_SPLIT_TRAIN, {"_0.JPEG", "32x32"}},
    {"65500x65500 header",
     huge_header_jpeg,
     NB_SPLIT_TRAIN,
     {"_0.JPEG", "65500x65500", "not 64x64"}},
    {"CMYK JPEG",
     cmyk_jpeg,
     NB_SPLIT_TRAIN,
     {"_0.JPEG", "4 colour components"}},
    {"1 GB JPEG",
     sparse_huge_jpeg,
     NB_SPLIT_TRAIN,
     {"_0.JPEG", "1073741824 bytes"}},
    {"folder named .JPEG",
     dir_named_jpeg,
     NB_SPLIT_TRAIN,
     {"zz.JPEG", "not a regular file"}},
    {"FIFO named .JPEG",
     fifo_jpeg,
     NB_SPLIT_TRAIN,
     {"zz.JPEG", "not a regular file"}},
    {"images/ is a symlink loop",
     loop_images_dir,
     NB_SPLIT_TRAIN,
     {"images", "symlink loop"}},
    {"JPEG symlink loop",
     loop_jpegs,
     NB_SPLIT_TRAIN,
     {"a.JPEG", "symlink loop"}},
    {"symlink loop in train/",
     loop_in_train,
     NB_SPLIT_TRAIN,
     {"train/loop", "symlink loop"}},
    {"missing annotations",
     rm_annotations,
     NB_SPLIT_TEST,
     {"val_annotations.txt", "No such file"}},
    {"unknown wnid",
     unknown_wnid,
     NB_SPLIT_TEST,
     {"val_annotations.txt", "n99999999", "not in wnids.txt"}},
    {"missing val image",
     rm_val_image,
     NB_SPLIT_TEST,
     {"val/images/val_2.JPEG", "No such file"}},
    {"five fields",
     five_fields,
     NB_SPLIT_TEST,
     {"val_annotations.txt", "line 5"}},
    {"bad box", bad_box, NB_SPLIT_TEST, {"val_annotations.txt", "line 5"}},
    {"control byte in a JPEG name",
     control_jpeg_name,
     NB_SPLIT_TRAIN,
     {"images", "\"a?b.JPEG\" holds control characters"}},
    {"control bytes in a folder name",
     control_folder_name,
     NB_SPLIT_TRAIN,
     {"train/n?[2Jxx", "does not list"}},
    {"control byte in an annotation",
     control_val_name,
     NB_SPLIT_TEST,
     {"val_annotations.txt", "line 5", "val?9.JPEG"}},
    {"path as file name",
     slash_name,
     NB_SPLIT_TEST,
     {"val_annotations.txt", "line 5"}},
    {"file listed twice",
     twice,
     NB_SPLIT_TEST,
     {"val_annotations.txt", "val_1.JPEG", "listed twice"}},
    {"too many images",
     too_many,
     NB_SPLIT_TEST,
     {"val_annotations.txt", "more than 174762 images"}},
    {NULL, NULL, 0, {NULL}}};

static void check_error(const char *what, int rc, const char *err,
			const nb_dataset *ds, const char *const *want)
{
	int ok = rc < 0 && !strchr(err, '\n') && ds->images == NULL &&
		 ds->labels == NULL && ds->n == 0;
	for (const char *p = err; rc < 0 && *p; p++)
		ok = ok && (unsigned char)*p >= 0x20 && *p != 0x7f;
	for (int i = 0; i < 3 && want[i]; i++)
		ok = ok && strstr(err, want[i]) != NULL;
	if (!ok || getenv("NB_TEST_SHOW_ERRORS"))
		fprintf(stderr, "\n  %s: rc %d, message: %s\n", what, rc,
			rc < 0 ? err : "(none)");
	CU_ASSERT(ok);
}

static void bad_input(void)
{
	for (const bad_case *c = bad_cases; c->name; c++) {
		char *dir = make_mini();
		char err[NB_ERR_LEN] = "";
		nb_dataset ds;
		bad_dir = dir;
		CU_ASSERT_FATAL(sorted_ids(dir, bad_ids) == 3);
		c->damage();
		int rc = nb_tinyimagenet_load(dir, c->split, &ds, err);
		check_error(c->name, rc, err, &ds, c->want);
		drop_set(dir);
	}
}

static void missing_or_looping_folder(void)
{
	char err[NB_ERR_LEN];
	nb_dataset ds;
	char *root = tu_mkdtemp();
	const char *want_missing[3] = {"nowhere", "No such file"};
	int rc = nb_tinyimagenet_load(path_in(root, "nowhere"), NB_SPLIT_TRAIN,
				      &ds, err);
	check_error("missing folder", rc, err, &ds, want_missing);

	const char *want_loop[3] = {"self", "symlink loop"};
	CU_ASSERT_FATAL(symlink("self", path_in(root, "self")) == 0);
	rc = nb_tinyimagenet_load(path_in(root, "self"), NB_SPLIT_TRAIN, &ds,
				  err);
	check_error("folder is a symlink loop", rc, err, &ds, want_loop);
	tu_rmtree(root);
	free(root);
}

/* A symlink in images/ back up the tree, not named .JPEG, is never
 * followed (nothing is walked recursively): the load succeeds. */
static void upward_symlink_ignored(void)
{
	char *dir = make_mini();
	char err[NB_ERR_LEN];
	nb_dataset ds;
	bad_dir = dir;
	CU_ASSERT_FATAL(sorted_ids(dir, bad_ids) == 3);
	CU_ASSERT_FATAL(
	    symlink("../../..", rel_path("train/%s/images/up", 0)) == 0);
	CU_ASSERT(nb_tinyimagenet_load(dir, NB_SPLIT_TRAIN, &ds, err) == 0);
	CU_ASSERT_EQUAL(ds.n, 6);
	nb_dataset_free(&ds);
	drop_set(dir);
}

static void synth_arguments(void)
{
	char err[NB_ERR_LEN];
	char *dir = tu_mkdtemp();
	CU_ASSERT(nb_synth_write(dir, "tiny-imagenet", 199, 5, 0, 1, err) < 0);
	CU_ASSERT(strstr(err, "n_train >= 200") != NULL);
	tu_rmtree(dir);
	free(dir);
}

/* ---- threads and speed -------------------------------------------------- */

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/*
 * 1 and 2 threads give the same bytes, and with two bad files the same
 * (first) error. Prints images/s for 2000 images.
 */
static void threads_deterministic(void)
{
#ifdef _OPENMP
	int saved = omp_get_max_threads();
#endif
	char *dir = make_set(10, 10);
	char err[NB_ERR_LEN], err1[NB_ERR_LEN];
	nb_dataset a, b;
	double t[3] = {0};
	for (int threads = 1; threads <= 2; threads++) {
#ifdef _OPENMP
		omp_set_num_threads(threads);
#endif
		double t0 = now();
		CU_ASSERT_FATAL(nb_tinyimagenet_load(dir, NB_SPLIT_TRAIN,
						     threads == 1 ? &a : &b,
						     err) == 0);
		t[threads] = now() - t0;
	}
	CU_ASSERT_EQUAL(a.n, 2000);
	CU_ASSERT_EQUAL(a.n, b.n);
	CU_ASSERT(memcmp(a.images, b.images, (size_t)a.n * PIX) == 0);
	CU_ASSERT(memcmp(a.labels, b.labels, (size_t)a.n * sizeof(int)) == 0);
	printf("\n    tiny-imagenet decode, %d synthetic 64x64 JPEGs: "
	       "1 thread %.0f images/s, 2 threads %.0f images/s ",
	       a.n, a.n / t[1], a.n / t[2]);
	nb_dataset_free(&a);
	nb_dataset_free(&b);

	bad_dir = dir;
	CU_ASSERT_FATAL(sorted_ids(dir, bad_ids) == 200);
	replace_with(rel_path("train/%s/images/%s_3.JPEG", 150), "junk", 4);
	replace_with(rel_path("train/%s/images/%s_7.JPEG", 40), "junk", 4);
	for (int threads = 1; threads <= 2; threads++) {
#ifdef _OPENMP
		omp_set_num_threads(threads);
#endif
		CU_ASSERT(nb_tinyimagenet_load(dir, NB_SPLIT_TRAIN, &a,
					       threads == 1 ? err1 : err) < 0);
	}
	CU_ASSERT_STRING_EQUAL(err1, err);
	CU_ASSERT(strstr(err, bad_ids[40]) != NULL);
#ifdef _OPENMP
	omp_set_num_threads(saved);
#endif
	drop_set(dir);
}

void nb_test_tinyimagenet(void)
{
	static const nb_test_entry tests[] = {
	    {"synthetic round trip, train", round_trip_train},
	    {"synthetic round trip, val", round_trip_val},
	    {"hand-made set round trip, sorted-id labels", round_trip_mini},
	    {"quality-100 pixels, gray and RGB", known_pixels},
	    {"by name, default folder, missing data", load_by_name},
	    {"bad input: one-line errors naming the file", bad_input},
	    {"missing folder, folder symlink loop", missing_or_looping_folder},
	    {"directory symlinks are not followed", upward_symlink_ignored},
	    {"synth arguments", synth_arguments},
	    {"1 vs 2 threads: same bytes, same error", threads_deterministic},
	    {NULL, NULL}};
	nb_test_add_suite("tinyimagenet", tests);
}
