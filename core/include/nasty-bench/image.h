/*
 * image.h - writing images as PNG files: a batch of normalised model
 * inputs laid out as a grid (what a reader of a report looks at to see
 * what a data-free attack synthesised).
 *
 * The encoder writes the format by hand (signature, IHDR, one IDAT of
 * zlib-deflated scanlines with filter 0, IEND, each chunk with its CRC-32)
 * with zlib, which the library already links: 8-bit greyscale or RGB,
 * no interlacing, no ancillary chunks.
 *
 * Ownership: nb_png_encode allocates *out (the caller frees it with
 * free()); the grid writer writes its file atomically (temporary file,
 * fsync, rename), so a reader never sees half an image.
 */
#ifndef NASTY_BENCH_IMAGE_H
#define NASTY_BENCH_IMAGE_H

#include <stddef.h>
#include <stdint.h>

/*
 * Encodes 8-bit pixels (height rows of width * channels bytes, channels
 * interleaved; channels 1 = greyscale, 3 = RGB) as a PNG file in memory.
 */
int nb_png_encode(const uint8_t *pix, int width, int height, int channels,
		  uint8_t **out, size_t *len, char *err);

/*
 * The grid of n images x (n,c,h,w), c = 1 or 3, normalised per channel
 * with mean[c], std[c], as torchvision.utils.save_image(make_grid(x,
 * nrow=cols, padding=2)) draws the de-normalised batch: cols images per
 * row (the last row may be short), 2 pixels of black between and around
 * them, each value v = x*std + mean quantised as clamp(floor(255 v + 0.5),
 * 0, 255). Fills *pix (allocated here, freed by the caller) and its size.
 */
int nb_image_grid(const float *x, int n, int c, int h, int w, const float *mean,
		  const float *std, int cols, uint8_t **pix, int *width,
		  int *height, char *err);

/* nb_image_grid encoded and written to path atomically. */
int nb_png_write_grid(const char *path, const float *x, int n, int c, int h,
		      int w, const float *mean, const float *std, int cols,
		      char *err);

#endif
