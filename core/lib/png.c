/*
 * png.c - a minimal PNG encoder and the image-grid writer (image.h).
 *
 * Why by hand: the format needs four chunks and zlib, which the library
 * links already; libpng would be a new dependency for 80 lines.
 *
 * What it deliberately does not do: decode, filter scanlines adaptively
 * (filter 0 everywhere: smaller files are not the point), 16-bit depth,
 * alpha or palettes.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "error.h"
#include "image.h"
#include "train.h"

static void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Appends a chunk (length, type, data, CRC of type and data) at *pos. */
static void put_chunk(uint8_t *buf, size_t *pos, const char type[4],
		      const uint8_t *data, uint32_t len)
{
	uint8_t *p = buf + *pos;
	put_u32(p, len);
	memcpy(p + 4, type, 4);
	if (len)
		memcpy(p + 8, data, len);
	uLong crc = crc32(0L, Z_NULL, 0);
	crc = crc32(crc, p + 4, 4 + len);
	put_u32(p + 8 + len, (uint32_t)crc);
	*pos += 12 + (size_t)len;
}

int nb_png_encode(const uint8_t *pix, int width, int height, int channels,
		  uint8_t **out, size_t *len, char *err)
{
	*out = NULL;
	*len = 0;
	if (width < 1 || height < 1 || (channels != 1 && channels != 3))
		return nb_errorf(err, NB_EINVAL,
				 "png: bad image %dx%d with %d channels (1 or "
				 "3 allowed)",
				 width, height, channels);
	size_t row = (size_t)width * channels + 1; /* filter byte first */
	size_t raw_len = row * height;
	if (raw_len / row != (size_t)height || raw_len > 0x7fffffffu / 2)
		return nb_errorf(err, NB_EINVAL, "png: image %dx%d too large",
				 width, height);
	uint8_t *raw = malloc(raw_len);
	uLongf zlen = compressBound((uLong)raw_len);
	uint8_t *z = malloc(zlen);
	/* signature 8, IHDR 25, IDAT 12 + data, IEND 12 */
	uint8_t *buf = malloc(8 + 25 + 12 + (size_t)zlen + 12);
	if (!raw || !z || !buf) {
		free(raw);
		free(z);
		free(buf);
		return nb_errorf(err, NB_ENOMEM, "png: out of memory");
	}
	for (int y = 0; y < height; y++) {
		raw[y * row] = 0; /* filter type None */
		memcpy(raw + y * row + 1, pix + (size_t)y * (row - 1), row - 1);
	}
	int zrc =
	    compress2(z, &zlen, raw, (uLong)raw_len, Z_DEFAULT_COMPRESSION);
	free(raw);
	if (zrc != Z_OK) {
		free(z);
		free(buf);
		return nb_errorf(err, zrc == Z_MEM_ERROR ? NB_ENOMEM : NB_EIO,
				 "png: zlib compress2 failed (%d)", zrc);
	}
	static const uint8_t sig[8] = {0x89, 'P',  'N',	 'G',
				       '\r', '\n', 0x1a, '\n'};
	size_t pos = 8;
	memcpy(buf, sig, 8);
	uint8_t ihdr[13];
	put_u32(ihdr, (uint32_t)width);
	put_u32(ihdr + 4, (uint32_t)height);
	ihdr[8] = 8;			 /* bit depth */
	ihdr[9] = channels == 3 ? 2 : 0; /* colour type: RGB or grey */
	ihdr[10] = 0;			 /* deflate */
	ihdr[11] = 0;			 /* adaptive filtering, type 0 */
	ihdr[12] = 0;			 /* no interlace */
	put_chunk(buf, &pos, "IHDR", ihdr, 13);
	put_chunk(buf, &pos, "IDAT", z, (uint32_t)zlen);
	put_chunk(buf, &pos, "IEND", NULL, 0);
	free(z);
	*out = buf;
	*len = pos;
	return 0;
}

#define GRID_PAD 2

int nb_image_grid(const float *x, int n, int c, int h, int w, const float *mean,
		  const float *std, int cols, uint8_t **pix, int *width,
		  int *height, char *err)
{
	*pix = NULL;
	if (n < 1 || h < 1 || w < 1 || cols < 1 || (c != 1 && c != 3))
		return nb_errorf(err, NB_EINVAL,
				 "image grid: bad batch of %d images %dx%dx%d "
				 "in %d columns (1 or 3 channels allowed)",
				 n, c, h, w, cols);
	if (cols > n)
		cols = n;
	int rows = (n + cols - 1) / cols;
	long W = (long)cols * (w + GRID_PAD) + GRID_PAD;
	long H = (long)rows * (h + GRID_PAD) + GRID_PAD;
	if (W > 1 << 16 || H > 1 << 16)
		return nb_errorf(err, NB_EINVAL,
				 "image grid: %ldx%ld pixels is too large", W,
				 H);
	uint8_t *p = calloc((size_t)W * H * c, 1);
	if (!p)
		return nb_errorf(err, NB_ENOMEM, "image grid: out of memory");
	for (int i = 0; i < n; i++) {
		long x0 = (long)(i % cols) * (w + GRID_PAD) + GRID_PAD;
		long y0 = (long)(i / cols) * (h + GRID_PAD) + GRID_PAD;
		for (int k = 0; k < c; k++) {
			const float *plane = x + ((size_t)i * c + k) * h * w;
			for (int y = 0; y < h; y++)
				for (int xx = 0; xx < w; xx++) {
					double v =
					    (double)plane[y * w + xx] * std[k] +
					    mean[k];
					double q = floor(v * 255.0 + 0.5);
					/* NaN lands on 0 too */
					uint8_t b = q >= 255.0 ? 255
						    : q > 0    ? (uint8_t)q
							       : 0;
					p[((y0 + y) * W + x0 + xx) * c + k] = b;
				}
		}
	}
	*pix = p;
	*width = (int)W;
	*height = (int)H;
	return 0;
}

int nb_png_write_grid(const char *path, const float *x, int n, int c, int h,
		      int w, const float *mean, const float *std, int cols,
		      char *err)
{
	uint8_t *pix, *png;
	int W, H;
	size_t len;
	int rc =
	    nb_image_grid(x, n, c, h, w, mean, std, cols, &pix, &W, &H, err);
	if (rc < 0)
		return rc;
	rc = nb_png_encode(pix, W, H, c, &png, &len, err);
	free(pix);
	if (rc < 0)
		return rc;
	rc = nb_write_file_atomic(path, png, len, err);
	free(png);
	return rc;
}
