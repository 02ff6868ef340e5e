/*
 * augment.c - builds float batches from uint8 datasets: centred zero pad
 * (pad_to), random crop with zero padding (torchvision RandomCrop(size,
 * padding)), horizontal flip with p = 0.5, then x/255 and per-channel
 * (x - mean) / std. Padded pixels are raw 0, normalised like any pixel.
 *
 * nb_augment_apply is the one-image reference; nb_batch_build draws every
 * random number of the batch in a fixed order first, then fills the images
 * in an OpenMP loop, so batches depend on the seed, not the thread count.
 * It does not rotate, resize, colour-jitter or cut out: the paper's CIFAR
 * and MNIST recipes need none of these.
 */
#include <math.h>
#include <string.h>

#include "data.h"
#include "error.h"

#define DRAW_CHUNK 256 /* samples whose draws are made before a fill */

int nb_augment_check(const nb_dataset *ds, const nb_augment *aug, char *err)
{
	if (ds->c < 1 || ds->c > 4)
		return nb_errorf(err, NB_EINVAL,
				 "augment: %s has %d channels, 1..4 supported",
				 ds->name, ds->c);
	if (aug->pad_to < 0 || aug->pad_to > 4096 ||
	    (aug->pad_to > 0 && (aug->pad_to < ds->h || aug->pad_to < ds->w)))
		return nb_errorf(
		    err, NB_EINVAL,
		    "augment: pad_to %d must be 0 or from the image "
		    "size %dx%d to 4096",
		    aug->pad_to, ds->h, ds->w);
	if (aug->crop_pad < 0 || aug->crop_pad > 1024)
		return nb_errorf(err, NB_EINVAL,
				 "augment: crop_pad %d out of range 0..1024",
				 aug->crop_pad);
	for (int c = 0; c < ds->c; c++)
		if (!isfinite(aug->mean[c]) || !isfinite(aug->std[c]) ||
		    !(aug->std[c] > 0))
			return nb_errorf(err, NB_EINVAL,
					 "augment: channel %d has mean %g, std "
					 "%g; std must be > 0 and both finite",
					 c, aug->mean[c], aug->std[c]);
	return 0;
}

void nb_augment_out_size(const nb_dataset *ds, const nb_augment *aug, int *h,
			 int *w)
{
	*h = aug->pad_to > 0 ? aug->pad_to : ds->h;
	*w = aug->pad_to > 0 ? aug->pad_to : ds->w;
}

void nb_augment_apply(float *out, const uint8_t *img, int c, int h, int w,
		      const nb_augment *aug, int oy, int ox, int flip)
{
	int H = aug->pad_to > 0 ? aug->pad_to : h;
	int W = aug->pad_to > 0 ? aug->pad_to : w;
	/* Source pixel of output (y, x): row y + dy, column xs + dx, where
	 * xs is x or its mirror; dy/dx undo the centred pad and the crop. */
	int dy = oy - aug->crop_pad - (H - h) / 2;
	int dx = ox - aug->crop_pad - (W - w) / 2;
	for (int ch = 0; ch < c; ch++) {
		float mean = aug->mean[ch], sd = aug->std[ch];
		float zero = (0.0f - mean) / sd;
		const uint8_t *ip = img + (size_t)ch * h * w;
		float *op = out + (size_t)ch * H * W;
		for (int y = 0; y < H; y++) {
			int sy = y + dy;
			float *row = op + (size_t)y * W;
			if (sy < 0 || sy >= h) {
				for (int x = 0; x < W; x++)
					row[x] = zero;
				continue;
			}
			const uint8_t *src = ip + (size_t)sy * w;
			for (int x = 0; x < W; x++) {
				int sx = (flip ? W - 1 - x : x) + dx;
				row[x] =
				    sx < 0 || sx >= w
					? zero
					: ((float)src[sx] / 255.0f - mean) / sd;
			}
		}
	}
}

void nb_batch_build(float *x, int *y, const nb_dataset *ds, const int *idx,
		    int B, const nb_augment *aug, int train, nb_rng *rng)
{
	int H, W;
	nb_augment_out_size(ds, aug, &H, &W);
	size_t in_sz = (size_t)ds->c * ds->h * ds->w;
	size_t out_sz = (size_t)ds->c * H * W;
	int p = aug->crop_pad;
	int crop = train && p > 0, flip = train && aug->flip;
	int oy[DRAW_CHUNK], ox[DRAW_CHUNK], fl[DRAW_CHUNK];

	for (int b0 = 0; b0 < B; b0 += DRAW_CHUNK) {
		int nb = B - b0 < DRAW_CHUNK ? B - b0 : DRAW_CHUNK;
		/* Sequential draws: the order is part of the contract. */
		for (int i = 0; i < nb; i++) {
			oy[i] = ox[i] = p;
			fl[i] = 0;
			if (crop) {
				oy[i] = (int)nb_rng_below(rng, 2 * p + 1);
				ox[i] = (int)nb_rng_below(rng, 2 * p + 1);
			}
			if (flip)
				fl[i] = (int)nb_rng_below(rng, 2);
		}
#pragma omp parallel for schedule(static) if (nb > 1)
		for (int i = 0; i < nb; i++) {
			int s = idx[b0 + i];
			nb_augment_apply(x + (size_t)(b0 + i) * out_sz,
					 ds->images + (size_t)s * in_sz, ds->c,
					 ds->h, ds->w, aug, oy[i], ox[i],
					 fl[i]);
			y[b0 + i] = ds->labels[s];
		}
	}
}
