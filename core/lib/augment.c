/*
 * augment.c - builds float batches from uint8 datasets: centred zero pad
 * (pad_to), random crop with zero padding (torchvision RandomCrop(size,
 * padding)), random rotation (torchvision RandomRotation(degrees) on a PIL
 * image), horizontal flip with p = 0.5, then x/255 and per-channel
 * (x - mean) / std. Padded and rotated-in pixels are raw 0, normalised
 * like any pixel.
 *
 * nb_augment_apply is the one-image reference; nb_batch_build draws every
 * random number of the batch in a fixed order first, then fills the images
 * in an OpenMP loop, so batches depend on the seed, not the thread count.
 * The rotation reproduces Pillow's Image.rotate(angle, NEAREST,
 * expand=False) pixel for pixel (tests/fixtures/golden_rotate.h); it has no
 * bilinear mode, as the paper's code uses none. It does not resize,
 * colour-jitter or cut out: the paper's recipes need none of these.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
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
	if (!isfinite(aug->rotate_deg) || aug->rotate_deg < 0 ||
	    aug->rotate_deg > 180)
		return nb_errorf(err, NB_EINVAL,
				 "augment: rotate_deg %g out of range 0..180",
				 aug->rotate_deg);
	int H, W;
	nb_augment_out_size(ds, aug, &H, &W);
	if (aug->rotate_deg > 0 && (H > 4096 || W > 4096))
		return nb_errorf(err, NB_EINVAL,
				 "augment: cannot rotate %dx%d images, at most "
				 "4096x4096",
				 H, W);
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

/* ---- rotation: Pillow's Image.rotate(angle, NEAREST, expand=False) ----
 *
 * What Pillow 9.4 does (PIL/Image.py rotate, libImaging/Geometry.c), and
 * so what this code does, step by step:
 *  - angle = angle % 360 (Python's %: the result is in [0, 360));
 *  - 0: a copy; 180: Transpose.ROTATE_180; 90 and 270 on a square image:
 *    Transpose.ROTATE_90 / ROTATE_270 (exact, no arithmetic);
 *  - otherwise the inverse affine map, about the centre (w/2, h/2) (not
 *    ((w-1)/2, (h-1)/2)): t = -radians(angle), a = round(cos t, 15),
 *    b = round(sin t, 15), d = round(-sin t, 15), e = a (Python's round to
 *    15 decimals), c = a*(-cx) + b*(-cy) + 0 + cx, f = d*(-cx) + e*(-cy) +
 *    0 + cy; output pixel (x, y) samples the input at (a*(x+0.5) +
 *    b*(y+0.5) + c, d*(x+0.5) + e*(y+0.5) + f), i.e. at the image of its
 *    centre, and takes the pixel containing that point (floor; a point on
 *    a pixel edge belongs to the pixel right of / below it);
 *  - that sampling is done in 16.16 fixed point (affine_fixed): a0 =
 *    FIX(a), a1 = FIX(b), a3 = FIX(d), a4 = FIX(e), a2 = FIX(c + a/2 +
 *    b/2), a5 = FIX(f + d/2 + e/2), FIX(v) = floor(v * 65536 + 0.5), and
 *    the source column of (x, y) is (a2 + y*a1 + x*a0) >> 16 (Pillow adds
 *    the steps one by one; integer sums are exact, so this is the same).
 *    The rounding to 15 decimals and to 1/65536 decides which pixel a
 *    point near a pixel edge lands in, so both are reproduced;
 *  - when b and d round to 0 (angle within ~3e-14 degrees of 0 or 180)
 *    Pillow takes its scaling path instead, which then is the identity or
 *    the 180-degree turn: the same as the exact cases.
 * Pillow's floating-point fallback (coordinates beyond +-32768) cannot
 * happen: nb_augment_check limits rotated images to 4096 on a side. */

enum { ROT_NONE, ROT_90, ROT_180, ROT_270, ROT_AFFINE };

typedef struct rot_map {
	int kind;
	int64_t a0, a1, a2, a3, a4, a5; /* 16.16, for ROT_AFFINE */
} rot_map;

/* Python's round(v, 15) for |v| <= 1: correctly rounded to 15 decimals
 * and back, as glibc's printf and strtod do (and CPython's dtoa). */
static double round15(double v)
{
	char buf[64];
	snprintf(buf, sizeof buf, "%.15f", v);
	return strtod(buf, NULL);
}

static int64_t fix16(double v)
{
	return (int64_t)floor(v * 65536.0 + 0.5);
}

static void rot_setup(rot_map *m, double angle, int H, int W)
{
	memset(m, 0, sizeof *m);
	double r = fmod(angle, 360.0); /* Python's float % 360 */
	if (r < 0)
		r += 360.0;
	if (r == 0) {
		m->kind = ROT_NONE;
		return;
	}
	if (r == 180) {
		m->kind = ROT_180;
		return;
	}
	if ((r == 90 || r == 270) && H == W) {
		m->kind = r == 90 ? ROT_90 : ROT_270;
		return;
	}
	double t = -(r * (M_PI / 180.0));
	double a = round15(cos(t)), b = round15(sin(t)), d = round15(-sin(t));
	double e = a;
	if (b == 0 && d == 0) { /* Pillow's scaling path; cos t is +-1 */
		m->kind = a > 0 ? ROT_NONE : ROT_180;
		return;
	}
	double cx = W / 2.0, cy = H / 2.0;
	/* Each product rounded on its own, as Python evaluates a*x + b*y + c:
	 * volatile keeps the compiler from fusing them into an FMA (the build
	 * uses -march=native), which could move a point across an edge. */
	volatile double p0 = a * -cx, p1 = b * -cy, p3 = d * -cx, p4 = e * -cy;
	double c = p0 + p1 + 0.0, f = p3 + p4 + 0.0;
	c += cx;
	f += cy;
	m->kind = ROT_AFFINE;
	m->a0 = fix16(a);
	m->a1 = fix16(b);
	m->a3 = fix16(d);
	m->a4 = fix16(e);
	/* x * 0.5 is exact, so a fused multiply-add changes nothing here */
	m->a2 = fix16(c + a * 0.5 + b * 0.5);
	m->a5 = fix16(f + d * 0.5 + e * 0.5);
}

/* Source pixel (*ys, *xs) of output pixel (y, x) of the rotation of an
 * H x W image; 0 when it falls outside (the pixel is fill). */
static inline int rot_src(const rot_map *m, int H, int W, int y, int x, int *ys,
			  int *xs)
{
	switch (m->kind) {
	case ROT_NONE:
		*ys = y, *xs = x;
		return 1;
	case ROT_90: /* counter-clockwise: the last column is the top row */
		*ys = x, *xs = W - 1 - y;
		return 1;
	case ROT_180:
		*ys = H - 1 - y, *xs = W - 1 - x;
		return 1;
	case ROT_270:
		*ys = H - 1 - x, *xs = y;
		return 1;
	default: {
		int64_t xx = m->a2 + y * m->a1 + x * m->a0;
		int64_t yy = m->a5 + y * m->a4 + x * m->a3;
		/* a negative value floors to a negative pixel: outside */
		if (xx < 0 || yy < 0 || (xx >> 16) >= W || (yy >> 16) >= H)
			return 0;
		*xs = (int)(xx >> 16), *ys = (int)(yy >> 16);
		return 1;
	}
	}
}

/* Image pixel (sy, sx) normalised; outside the image, a raw 0 normalised
 * (the same value as the fast path's `zero`). */
static inline float pixel(const uint8_t *ip, int h, int w, int sy, int sx,
			  float mean, float sd)
{
	uint8_t v = sy >= 0 && sy < h && sx >= 0 && sx < w
			? ip[(size_t)sy * w + sx]
			: 0;
	return ((float)v / 255.0f - mean) / sd;
}

void nb_augment_apply(float *out, const uint8_t *img, int c, int h, int w,
		      const nb_augment *aug, int oy, int ox, int flip,
		      double angle)
{
	int H = aug->pad_to > 0 ? aug->pad_to : h;
	int W = aug->pad_to > 0 ? aug->pad_to : w;
	/* Source pixel of crop pixel (y, x): row y + dy, column x + dx; dy/dx
	 * undo the centred pad and the crop. */
	int dy = oy - aug->crop_pad - (H - h) / 2;
	int dx = ox - aug->crop_pad - (W - w) / 2;
	rot_map m;
	rot_setup(&m, angle, H, W);
	for (int ch = 0; ch < c; ch++) {
		float mean = aug->mean[ch], sd = aug->std[ch];
		float zero = (0.0f - mean) / sd;
		const uint8_t *ip = img + (size_t)ch * h * w;
		float *op = out + (size_t)ch * H * W;
		for (int y = 0; y < H; y++) {
			float *row = op + (size_t)y * W;
			if (m.kind != ROT_NONE) {
				/* output (y, x) <- rotated (y, xf) <- crop
				 * (ys, xs) <- image (ys + dy, xs + dx) */
				for (int x = 0; x < W; x++) {
					int xf = flip ? W - 1 - x : x, ys, xs;
					row[x] =
					    rot_src(&m, H, W, y, xf, &ys, &xs)
						? pixel(ip, h, w, ys + dy,
							xs + dx, mean, sd)
						: zero;
				}
				continue;
			}
			int sy = y + dy;
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
	int rot = train && aug->rotate_deg > 0;
	double deg = aug->rotate_deg;
	int oy[DRAW_CHUNK], ox[DRAW_CHUNK], fl[DRAW_CHUNK];
	double ang[DRAW_CHUNK];

	for (int b0 = 0; b0 < B; b0 += DRAW_CHUNK) {
		int nb = B - b0 < DRAW_CHUNK ? B - b0 : DRAW_CHUNK;
		/* Sequential draws: the order is part of the contract. */
		for (int i = 0; i < nb; i++) {
			oy[i] = ox[i] = p;
			fl[i] = 0;
			ang[i] = 0;
			if (crop) {
				oy[i] = (int)nb_rng_below(rng, 2 * p + 1);
				ox[i] = (int)nb_rng_below(rng, 2 * p + 1);
			}
			if (flip)
				fl[i] = (int)nb_rng_below(rng, 2);
			/* last, so streams without rotation are unchanged;
			 * torchvision: uniform_(-deg, deg) */
			if (rot)
				ang[i] = -deg + 2 * deg * nb_rng_uniform(rng);
		}
#pragma omp parallel for schedule(static) if (nb > 1)
		for (int i = 0; i < nb; i++) {
			int s = idx[b0 + i];
			nb_augment_apply(x + (size_t)(b0 + i) * out_sz,
					 ds->images + (size_t)s * in_sz, ds->c,
					 ds->h, ds->w, aug, oy[i], ox[i], fl[i],
					 ang[i]);
			y[b0 + i] = ds->labels[s];
		}
	}
}
