/*
 * data.h - datasets in their original distribution formats, and the batch
 * builder with augmentation.
 *
 * A dataset is kept as raw uint8 pixels (N,C,H,W) with int labels; batches
 * are built on the fly as float32 (B,C,H',W') after padding, cropping,
 * rotating, flipping and per-channel normalisation, in that order, as
 * torchvision's transforms do (padding and the corners uncovered by a
 * rotation are raw zeros, i.e. black, before normalising).
 *
 * Formats:
 *  - MNIST / Fashion-MNIST IDX: images magic 0x00000803 (N,rows,cols), labels
 *    magic 0x00000801 (N); big-endian header; plain or gzip (read through
 *    zlib, which reads plain files too);
 *  - CIFAR-10 binary: data_batch_1..5.bin, test_batch.bin; records of
 *    1 label byte + 3072 pixel bytes (R, G, B planes of 32x32, row-major);
 *  - CIFAR-100 binary: train.bin, test.bin; records of coarse label byte,
 *    fine label byte, 3072 pixel bytes;
 *  - Tiny-ImageNet-200: the folders of tiny-imagenet-200.zip, 64x64 JPEGs
 *    decoded with libjpeg (see nb_tinyimagenet_load).
 * Every loader checks magic numbers, dimensions, exact file sizes and label
 * ranges and returns a one-line error naming the file and the problem.
 *
 * Ownership: a loader fills *ds (it does not free what *ds held before); on
 * failure *ds is left zeroed. The caller frees with nb_dataset_free.
 * All int functions return 0 or a negative NB_E* code with a message in err
 * (NB_ERR_LEN bytes, see error.h).
 */
#ifndef NASTY_BENCH_DATA_H
#define NASTY_BENCH_DATA_H

#include <stdint.h>

#include "rng.h"

typedef struct nb_dataset {
	char name[32];
	int n, c, h, w;
	int classes;
	uint8_t *images; /* (n,c,h,w), owned */
	int *labels;	 /* (n), owned, each in [0, classes) */
} nb_dataset;

/* Frees images and labels and zeroes *ds. Safe on a zeroed dataset. */
void nb_dataset_free(nb_dataset *ds);

enum nb_split { NB_SPLIT_TRAIN = 0, NB_SPLIT_TEST = 1 };

/*
 * IDX pair (each plain or .gz). classes (1..256) is the expected class
 * count: a label >= classes is an error naming the file and the sample.
 * The images and labels files must hold the same count and end exactly
 * where their headers say. ds->c = 1, ds->name is left empty.
 */
int nb_idx_load(const char *images_path, const char *labels_path, int classes,
		nb_dataset *ds, char *err);
/*
 * CIFAR-10 binary from dir (the cifar-10-batches-bin folder): train reads
 * data_batch_1..5.bin, test reads test_batch.bin. Each file must be a
 * non-empty whole number of 3073-byte records (the originals hold 10000).
 * ds is (N,3,32,32), 10 classes.
 */
int nb_cifar10_load(const char *dir, enum nb_split split, nb_dataset *ds,
		    char *err);
/*
 * CIFAR-100 binary from dir (the cifar-100-binary folder): train.bin or
 * test.bin, 3074-byte records. Fine labels (100 classes), or coarse (20)
 * when coarse is non-zero; both are range-checked.
 */
int nb_cifar100_load(const char *dir, enum nb_split split, int coarse,
		     nb_dataset *ds, char *err);

/*
 * Tiny-ImageNet-200 from dir, the extracted tiny-imagenet-200 folder of the
 * original tiny-imagenet-200.zip (CS231n): wnids.txt,
 * train/<wnid>/images/<name>.JPEG, val/images/<name>.JPEG with
 * val/val_annotations.txt (tab-separated: file, wnid, 4 box numbers).
 * NB_SPLIT_TRAIN reads train/, NB_SPLIT_TEST reads val/ (test/ has no labels
 * and is not read; the paper tests on val).
 *
 * Labels follow torchvision's ImageFolder: class k is the k-th wnid in
 * sorted order (wnids.txt itself is not sorted). Samples are ordered by
 * class, then file name, as ImageFolder lists them (val as if re-foldered
 * into val/<wnid>/). ds is (N,3,64,64) uint8, classes = number of ids in
 * wnids.txt (200 in the original; any count up to 100000 is read, and
 * every folder in train/ must be one of them). Grayscale JPEGs are
 * replicated into R, G and B.
 *
 * The JPEGs are decoded in parallel (OpenMP); the result does not depend
 * on the thread count. Errors (one line, naming the file): a missing
 * folder, file or class folder; a malformed or duplicate wnid; a train/
 * folder that wnids.txt lacks; a malformed annotation line or one naming
 * an unknown wnid or a file twice; a corrupt or truncated JPEG (libjpeg
 * warnings count as errors); an image that is not 64x64 or not grayscale
 * or RGB; a file that is not regular or too large; a symlink loop; more
 * than 174762 images in a split (INT_MAX / (3*64*64)). ds->name is left
 * empty.
 */
int nb_tinyimagenet_load(const char *dir, enum nb_split split, nb_dataset *ds,
			 char *err);

/*
 * Loads a named dataset from dir, or from its default folder when dir is
 * NULL or empty. Names:
 *  - "fashion-mnist": default /usr/share/datasets/fashion-mnist (Debian
 *    package dataset-fashion-mnist);
 *  - "mnist": default $NASTY_BENCH_DATA/mnist, else data/mnist;
 *    files train-images-idx3-ubyte, ... with or without .gz (both names
 *    are accepted for fashion-mnist too);
 *  - "cifar10": default $NASTY_BENCH_DATA/cifar10, else data/cifar10; the
 *    folder itself or its cifar-10-batches-bin subfolder;
 *  - "cifar100" (fine labels) and "cifar100-coarse": default
 *    $NASTY_BENCH_DATA/cifar100, else data/cifar100; the folder or its
 *    cifar-100-binary subfolder;
 *  - "tiny-imagenet": default $NASTY_BENCH_DATA/tiny-imagenet, else
 *    data/tiny-imagenet; the folder itself or its tiny-imagenet-200
 *    subfolder; the test split is val/ (see nb_tinyimagenet_load).
 * When the data is absent the one-line error names where it looked and how
 * to get the data. ds->name is set to name.
 */
int nb_dataset_load(const char *name, const char *dir, enum nb_split split,
		    nb_dataset *ds, char *err);
/* The default folder of a named dataset (a static string, overwritten by
 * the next call for the same name), or NULL for an unknown name. */
const char *nb_dataset_default_dir(const char *name);

/* Keeps the first n samples; does nothing when n < 0 or n >= ds->n. */
void nb_dataset_truncate(nb_dataset *ds, int n);

/*
 * Keeps n samples (1 <= n <= ds->n) drawn without replacement: idx =
 * 0..ds->n-1 is shuffled by nb_rng_shuffle (Fisher-Yates) with the stream
 * (seed, NB_RNG_DATA), and samples idx[0..n) are kept in that shuffled
 * order, each image with its label. Same dataset, n and seed: same subset,
 * on any machine. This is how the paper's fetch_subset_dataloader draws
 * (the first n of a shuffle seeded with 230, served in random order by a
 * SubsetRandomSampler), with our generator instead of NumPy's: the same
 * kind of subset, not the same images. Unlike nb_dataset_truncate it
 * spreads over all classes of class-ordered data (Tiny-ImageNet), in
 * proportion on average (not stratified). On error (n out of range, out
 * of memory) *ds is unchanged. The result owns new blocks; the old ones
 * are freed.
 */
int nb_dataset_subset(nb_dataset *ds, int n, uint64_t seed, char *err);

typedef struct nb_augment {
	int pad_to;    /* 0, or zero-pad (centred) to pad_to x pad_to first;
			  e.g. 28 -> 32 for LeNet-5 (offset (32-28)/2) */
	int crop_pad;  /* random crop of the (padded) size after zero
			  padding by crop_pad on every side
			  (torchvision RandomCrop(size, padding)); 0 = none */
	int flip;      /* random horizontal flip with p = 0.5 */
	float mean[4]; /* per-channel mean of x/255 */
	float std[4];  /* per-channel std of x/255, > 0 */
	/* random rotation by an angle uniform in [-rotate_deg, rotate_deg]
	 * degrees, as torchvision's RandomRotation(rotate_deg) on a PIL
	 * image: nearest neighbour, about the centre, same size, fill 0;
	 * 0 = none. Last, as plugin.h's rule for public structs asks. */
	float rotate_deg;
} nb_augment;

/* Checks aug against ds: 1 <= c <= 4, pad_to 0 or >= h and w (at most
 * 4096), 0 <= crop_pad <= 1024, 0 <= rotate_deg <= 180 (and, when
 * rotating, an output of at most 4096 on a side), std > 0 and finite, mean
 * finite. Call it once before nb_batch_build, which assumes a checked
 * aug. */
int nb_augment_check(const nb_dataset *ds, const nb_augment *aug, char *err);

/* Output size of a batch built with aug (h', w'). */
void nb_augment_out_size(const nb_dataset *ds, const nb_augment *aug, int *h,
			 int *w);

/*
 * One image, the simple twin of nb_batch_build: out (c,h',w') from img
 * (c,h,w) with explicit draws: crop offsets oy, ox in [0, 2*crop_pad]
 * (crop_pad, crop_pad is the centre, i.e. no shift), flip 0/1 and a
 * rotation angle in degrees (finite; counter-clockwise when positive; 0 =
 * none). The steps, in this order (torchvision's Compose order; no suite
 * combines crop and rotation, but the order is defined):
 *  1. pad: centred zero pad to pad_to;
 *  2. crop: pixel (y,x) of the crop is padded pixel (y + oy - crop_pad,
 *     x + ox - crop_pad);
 *  3. rotate: PIL's Image.rotate(angle, NEAREST, expand=False) of the
 *     h' x w' crop, exactly (see augment.c): the angle is taken mod 360;
 *     0, 180, and 90/270 on square images are exact transpositions; any
 *     other angle maps output pixel centre (x+0.5, y+0.5) back by the
 *     inverse rotation about the image centre (w'/2, h'/2), in PIL's 16.16
 *     fixed point, and takes the source pixel the point falls in (floor);
 *  4. flip: output column x comes from column w'-1-x of the rotated image;
 *  5. normalise: (v/255 - mean[c]) / std[c].
 * Pixels from outside the image (padding, crop border, rotated-in corners)
 * are raw 0, i.e. -mean[c]/std[c] after normalising.
 */
void nb_augment_apply(float *out, const uint8_t *img, int c, int h, int w,
		      const nb_augment *aug, int oy, int ox, int flip,
		      double angle);

/*
 * Builds a batch: x (B,C,h',w') float, y (B) labels, from samples
 * idx[0..B) (each in [0, ds->n)). When train is 0, crop, rotation and flip
 * are off (test preprocessing) and rng is not used (may be NULL). When
 * train is non-zero, the random numbers of the whole batch are drawn
 * first, in order, per sample:
 *  1. oy = below(2*crop_pad+1), 2. ox = likewise (both only if
 *     crop_pad > 0),
 *  3. flip = below(2) (only if aug->flip),
 *  4. angle = -rotate_deg + 2*rotate_deg*uniform() (only if
 *     rotate_deg > 0),
 * then the images are filled in parallel. The result therefore depends on
 * the seed only, never on the thread count. The angle comes last, so a
 * stream without rotation is the same as before rotation existed.
 */
void nb_batch_build(float *x, int *y, const nb_dataset *ds, const int *idx,
		    int B, const nb_augment *aug, int train, nb_rng *rng);

/*
 * Synthetic datasets in the original file formats, for tests and smoke
 * runs: n_train / n_test samples of class-dependent patterns (a bright blob
 * whose position depends on the class, plus stripes, on a noisy
 * background) that a small model can learn. Balanced labels in a shuffled
 * order, fully determined by seed. Writes into dir (which must exist), each
 * file through a temporary name and rename:
 *  - "idx": 28x28, 10 classes: train-images-idx3-ubyte,
 *    train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
 *    t10k-labels-idx1-ubyte, each with .gz appended when gz is non-zero;
 *  - "cifar10": data_batch_1..5.bin (n_train split over the five, so
 *    n_train >= 5) and test_batch.bin;
 *  - "cifar100": train.bin and test.bin, fine label = class (100), coarse
 *    label = fine / 5;
 *  - "tiny-imagenet": the tiny-imagenet-200 layout directly in dir (see
 *    nb_tinyimagenet_load), 200 classes of 64x64 JPEGs (libjpeg, quality
 *    90): wnids.txt (200 distinct ids, in a shuffled order),
 *    train/<wnid>/images/<wnid>_<j>.JPEG and train/<wnid>/<wnid>_boxes.txt,
 *    val/images/val_<i>.JPEG and val/val_annotations.txt. n_train is
 *    spread evenly over the classes (so n_train >= 200); n_test val images
 *    have balanced, shuffled labels. Every 7th image (index mod 7 == 3, per
 *    split, counting train images class by class) is grayscale.
 * gz only applies to "idx". n_train, n_test >= 1.
 */
int nb_synth_write(const char *dir, const char *format, int n_train, int n_test,
		   int gz, uint64_t seed, char *err);

#endif
