/*
 * image_test.c - tests of core/lib/png.c: a grid of normalised images is
 * drawn, encoded and written; the test parses the PNG itself (signature,
 * chunk order and lengths, every CRC, the IHDR fields), inflates the IDAT
 * with zlib and compares every pixel with the de-normalisation worked out
 * here independently; bad shapes are errors and leave no file.
 *
 * A third-party decoder (PIL) reads the grids deepinversion writes in
 * tests/suite-smoke.sh when it is installed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zlib.h>

#include "error.h"
#include "image.h"
#include "testutil.h"

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

/* Parses png; on success fills the decoded pixels (without filter bytes)
 * and the header fields. Returns 0 or a negative step number. */
static int decode(const uint8_t *png, size_t len, uint8_t **pix, int *w, int *h,
		  int *ctype)
{
	static const uint8_t sig[8] = {0x89, 'P',  'N',	 'G',
				       '\r', '\n', 0x1a, '\n'};
	if (len < 8 || memcmp(png, sig, 8))
		return -1;
	size_t pos = 8;
	const char *want[3] = {"IHDR", "IDAT", "IEND"};
	const uint8_t *idat = NULL;
	uint32_t idat_len = 0;
	for (int k = 0; k < 3; k++) {
		if (pos + 12 > len)
			return -2;
		uint32_t n = get_u32(png + pos);
		if (memcmp(png + pos + 4, want[k], 4) || pos + 12 + n > len)
			return -3;
		uLong crc = crc32(crc32(0L, Z_NULL, 0), png + pos + 4, 4 + n);
		if (get_u32(png + pos + 8 + n) != (uint32_t)crc)
			return -4;
		const uint8_t *d = png + pos + 8;
		if (k == 0) {
			if (n != 13)
				return -5;
			*w = (int)get_u32(d);
			*h = (int)get_u32(d + 4);
			*ctype = d[9];
			if (d[8] != 8 || d[10] || d[11] || d[12])
				return -6;
		} else if (k == 1) {
			idat = d;
			idat_len = n;
		} else if (n != 0) {
			return -7;
		}
		pos += 12 + n;
	}
	if (pos != len)
		return -8;
	int ch = *ctype == 2 ? 3 : 1;
	size_t row = (size_t)*w * ch + 1;
	uLongf raw_len = row * *h;
	uint8_t *raw = malloc(raw_len);
	if (uncompress(raw, &raw_len, idat, idat_len) != Z_OK ||
	    raw_len != row * *h) {
		free(raw);
		return -9;
	}
	*pix = malloc(raw_len);
	for (int y = 0; y < *h; y++) {
		if (raw[y * row] != 0) {
			free(raw);
			free(*pix);
			return -10;
		}
		memcpy(*pix + y * (row - 1), raw + y * row + 1, row - 1);
	}
	free(raw);
	return 0;
}

/* The pixel a normalised value should become, worked out on its own. */
static int expect(float x, float mean, float std)
{
	double v = ((double)x * std + mean) * 255.0;
	if (!(v > 0))
		return 0;
	long q = lround(floor(v + 0.5));
	return q > 255 ? 255 : (int)q;
}

static void grid_case(int n, int c, int hh, int ww, int cols)
{
	const float mean[3] = {0.4914f, 0.4822f, 0.4465f},
		    std[3] = {0.247f, 0.243f, 0.261f};
	size_t sz = (size_t)n * c * hh * ww;
	float *x = malloc(sz * sizeof *x);
	tu_fill_normal(x, sz, 2.0f, 60 + (uint64_t)n);
	x[0] = NAN; /* drawn black */
	if (sz > 2) {
		x[1] = (1.5f - mean[0]) / std[0]; /* above white */
		x[2] = (0.6f - mean[0]) / std[0]; /* 153 */
	}
	uint8_t *png = NULL, *pix = NULL;
	size_t len;
	int W, H, rc;
	char err[NB_ERR_LEN];
	uint8_t *grid;
	CU_ASSERT_EQUAL_FATAL(
	    nb_image_grid(x, n, c, hh, ww, mean, std, cols, &grid, &W, &H, err),
	    0);
	int ccols = cols > n ? n : cols, rows = (n + ccols - 1) / ccols;
	CU_ASSERT_EQUAL(W, ccols * (ww + 2) + 2);
	CU_ASSERT_EQUAL(H, rows * (hh + 2) + 2);
	CU_ASSERT_EQUAL_FATAL(nb_png_encode(grid, W, H, c, &png, &len, err), 0);
	int dw, dh, ctype;
	rc = decode(png, len, &pix, &dw, &dh, &ctype);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	CU_ASSERT_EQUAL(dw, W);
	CU_ASSERT_EQUAL(dh, H);
	CU_ASSERT_EQUAL(ctype, c == 3 ? 2 : 0);
	int bad = 0;
	for (int y = 0; y < H; y++)
		for (int xx = 0; xx < W; xx++)
			for (int k = 0; k < c; k++) {
				int want = 0;
				int gx = xx - 2, gy = y - 2;
				int cx = gx / (ww + 2), cy = gy / (hh + 2);
				int ix = gx % (ww + 2), iy = gy % (hh + 2);
				int i = cy * ccols + cx;
				if (gx >= 0 && gy >= 0 && ix < ww && iy < hh &&
				    cx < ccols && i < n)
					want = expect(
					    x[(((size_t)i * c + k) * hh + iy) *
						  ww +
					      ix],
					    mean[k], std[k]);
				if (pix[((size_t)y * W + xx) * c + k] != want)
					bad++;
			}
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT_EQUAL(pix[(2 * W + 2) * c], 0);
	if (ww >= 3) {
		CU_ASSERT_EQUAL(pix[(2 * W + 3) * c], 255);
		CU_ASSERT_EQUAL(pix[(2 * W + 4) * c], 153);
	}
	/* the file holds exactly the encoded bytes */
	char *dir = tu_mkdtemp();
	char path[4096];
	snprintf(path, sizeof path, "%s/grid.png", dir);
	CU_ASSERT_EQUAL(
	    nb_png_write_grid(path, x, n, c, hh, ww, mean, std, cols, err), 0);
	FILE *f = fopen(path, "rb");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	uint8_t *back = malloc(len + 1);
	size_t got = fread(back, 1, len + 1, f);
	fclose(f);
	CU_ASSERT_EQUAL(got, len);
	CU_ASSERT_EQUAL(memcmp(back, png, len), 0);
	free(back);
	tu_rmtree(dir);
	free(dir);
	free(grid);
	free(png);
	free(pix);
	free(x);
}

static void test_grids(void)
{
	grid_case(5, 3, 4, 3, 3); /* RGB, a short last row */
	grid_case(4, 1, 3, 5, 8); /* grey, fewer images than columns */
	grid_case(1, 1, 1, 1, 1);
}

static void test_bad_input(void)
{
	const float mean[2] = {0, 0}, std[2] = {1, 1};
	float x[8] = {0};
	char err[NB_ERR_LEN] = "";
	char *dir = tu_mkdtemp();
	char path[4096];
	snprintf(path, sizeof path, "%s/bad.png", dir);
	CU_ASSERT_EQUAL(
	    nb_png_write_grid(path, x, 2, 2, 1, 2, mean, std, 2, err),
	    NB_EINVAL);
	CU_ASSERT_TRUE(strstr(err, "channels") != NULL);
	struct stat st;
	CU_ASSERT_NOT_EQUAL(stat(path, &st), 0);
	uint8_t px[4] = {0}, *png;
	size_t len;
	CU_ASSERT_EQUAL(nb_png_encode(px, 0, 1, 1, &png, &len, err), NB_EINVAL);
	CU_ASSERT_PTR_NULL(png);
	/* an unwritable path is an I/O error */
	CU_ASSERT_EQUAL(nb_png_write_grid("/nonexistent-dir/x.png", x, 1, 1, 2,
					  2, mean, std, 1, err),
			NB_EIO);
	tu_rmtree(dir);
	free(dir);
}

void nb_test_image(void)
{
	static const nb_test_entry tests[] = {
	    {"grids decode to the de-normalised pixels", test_grids},
	    {"bad input", test_bad_input},
	    {NULL, NULL}};
	nb_test_add_suite("image", tests);
}
