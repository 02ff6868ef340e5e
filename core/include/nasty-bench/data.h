/*
 * data.h - datasets in their original distribution formats, and the batch
 * builder with augmentation.
 *
 * A dataset is kept as raw uint8 pixels (N,C,H,W) with int labels; batches
 * are built on the fly as float32 (B,C,H',W') after padding, cropping,
 * flipping and per-channel normalisation, in that order, as torchvision's
 * transforms do (padding fills raw zeros, i.e. black, before normalising).
 *
 * Formats:
 *  - MNIST / Fashion-MNIST IDX: images magic 0x00000803 (N,rows,cols), labels
 *    magic 0x00000801 (N); plain or gzip (read through zlib);
 *  - CIFAR-10 binary: data_batch_1..5.bin, test_batch.bin; records of
 *    1 label byte + 3072 pixel bytes (R, G, B planes of 32x32);
 *  - CIFAR-100 binary: train.bin, test.bin; records of coarse label byte,
 *    fine label byte, 3072 pixel bytes.
 * Every loader checks magic numbers, sizes and label ranges and reports a
 * one-line error naming the file, the problem and how to get the data.
 */
#ifndef NASTY_BENCH_DATA_H
#define NASTY_BENCH_DATA_H

#include <stdint.h>

#include "rng.h"

typedef struct nb_dataset {
	char name[32];
	int n, c, h, w;
	int classes;
	uint8_t *images; /* n*c*h*w, owned */
	int *labels;     /* n, owned */
} nb_dataset;

void nb_dataset_free(nb_dataset *ds);

enum nb_split { NB_SPLIT_TRAIN = 0, NB_SPLIT_TEST = 1 };

/* IDX pair (plain or .gz). classes is set to max label + 1, at least 10. */
int nb_idx_load(const char *images_path, const char *labels_path,
		nb_dataset *ds, char *err);
/* CIFAR-10 binary from dir (the cifar-10-batches-bin folder). */
int nb_cifar10_load(const char *dir, enum nb_split split, nb_dataset *ds,
		    char *err);
/* CIFAR-100 binary from dir (the cifar-100-binary folder); fine labels
 * (100 classes) or coarse (20). */
int nb_cifar100_load(const char *dir, enum nb_split split, int coarse,
		     nb_dataset *ds, char *err);

/*
 * Loads a named dataset ("fashion-mnist", "mnist", "cifar10", "cifar100")
 * from dir, or from its default place when dir is NULL or empty:
 * fashion-mnist: /usr/share/datasets/fashion-mnist (Debian package
 * dataset-fashion-mnist); others: $NASTY_BENCH_DATA/<name> or
 * data/<name>. The error says where the data was looked for and how to get
 * it.
 */
int nb_dataset_load(const char *name, const char *dir, enum nb_split split,
		    nb_dataset *ds, char *err);
/* The default folder of a named dataset (static string). */
const char *nb_dataset_default_dir(const char *name);

/* Keeps the first n samples (n <= ds->n). */
void nb_dataset_truncate(nb_dataset *ds, int n);

typedef struct nb_augment {
	int pad_to;       /* 0, or zero-pad (centred) to pad_to x pad_to first */
	int crop_pad;     /* random crop of the (padded) size after zero
			     padding by crop_pad on every side; 0 = none */
	int flip;         /* random horizontal flip with p = 0.5 */
	float mean[4];    /* per-channel mean of x/255 */
	float std[4];     /* per-channel std of x/255 */
} nb_augment;

/* Output size of a batch built with aug (h', w'). */
void nb_augment_out_size(const nb_dataset *ds, const nb_augment *aug,
			 int *h, int *w);

/*
 * Builds a batch: x (B,C,h',w') float, y (B) labels, from samples idx[0..B).
 * When train is 0, crop and flip are off (test preprocessing). rng is the
 * augmentation stream; its use is deterministic for a given seed
 * whatever the thread count.
 */
void nb_batch_build(float *x, int *y, const nb_dataset *ds, const int *idx,
		    int B, const nb_augment *aug, int train, nb_rng *rng);

/*
 * Synthetic datasets in the original file formats, for tests: n samples of
 * class-dependent patterns (so a model can learn them). Writes the files a
 * loader expects into dir:
 *  - format "idx": train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte(.gz),
 *    t10k-...; gz selects gzip;
 *  - "cifar10": data_batch_1..5.bin and test_batch.bin;
 *  - "cifar100": train.bin and test.bin.
 */
int nb_synth_write(const char *dir, const char *format, int n_train,
		   int n_test, int gz, uint64_t seed, char *err);

#endif
