/*
 * fuzz_cifar10.c - nb_cifar10_load (core/lib/cifar.c) on a folder of
 * CIFAR-10 binary batches.
 *
 * Input layout:
 *   byte 0       bit 0: split (0 train, 1 test); bit 1: leave the last
 *                file out (missing-file path)
 *   train:       bytes 1..16: four little-endian lengths (each clamped to
 *                what follows) of data_batch_1..4.bin; data_batch_5.bin is
 *                the rest
 *   test:        test_batch.bin is everything after byte 0
 * Every file of the folder is rewritten or removed for each input.
 *
 * Checked on success: (n,3,32,32), 10 classes, n = total bytes / 3073,
 * every label in range and every pixel byte readable.
 */
#include <stdint.h>
#include <string.h>

#include "data.h"
#include "error.h"
#include "fuzz_util.h"

static const char *const names[6] = {"data_batch_1.bin", "data_batch_2.bin",
				     "data_batch_3.bin", "data_batch_4.bin",
				     "data_batch_5.bin", "test_batch.bin"};

int nb_fuzz_cifar10(const uint8_t *data, size_t size)
{
	if (!data) /* an empty input may come as NULL */
		data = (const uint8_t *)"";
	unsigned flags = size > 0 ? data[0] : 0;
	int test = flags & 1, omit_last = (flags >> 1) & 1;
	size_t at = size > 0 ? 1 : 0, total = 0;
	for (int i = 0; i < 6; i++)
		nb_fuzz_remove(names[i]);
	if (test) {
		if (!omit_last) {
			nb_fuzz_put(names[5], data + at, size - at);
			total = size - at;
		}
	} else {
		size_t len[5];
		size_t hdr = size - at < 16 ? size - at : 16;
		uint8_t l4[16] = {0};
		memcpy(l4, data + at, hdr);
		at += hdr;
		for (int i = 0; i < 4; i++) {
			len[i] = nb_fuzz_le32(l4 + 4 * i);
			if (len[i] > size - at)
				len[i] = size - at;
			nb_fuzz_put(names[i], data + at, len[i]);
			at += len[i];
			total += len[i];
		}
		len[4] = size - at;
		if (!omit_last) {
			nb_fuzz_put(names[4], data + at, len[4]);
			total += len[4];
		}
	}

	char err[NB_ERR_LEN];
	nb_dataset ds;
	memset(&ds, 0xa5, sizeof ds);
	err[0] = '\0';
	int rc = nb_cifar10_load(
	    nb_fuzz_dir(), test ? NB_SPLIT_TEST : NB_SPLIT_TRAIN, &ds, err);
	nb_fuzz_note("cifar10: %d %s", rc, rc ? err : "loaded");
	if (rc < 0) {
		nb_fuzz_failed(rc, err);
		NB_FUZZ_CHECK(!ds.images && !ds.labels && ds.n == 0,
			      "dataset not zeroed on failure");
		return 0;
	}
	NB_FUZZ_CHECK(rc == 0, "rc %d", rc);
	NB_FUZZ_CHECK(!omit_last, "loaded with a file missing");
	NB_FUZZ_CHECK(ds.c == 3 && ds.h == 32 && ds.w == 32 && ds.classes == 10,
		      "shape (%d,%d,%d) classes %d", ds.c, ds.h, ds.w,
		      ds.classes);
	NB_FUZZ_CHECK(ds.n >= 1 && (size_t)ds.n * 3073 == total,
		      "%d records from %zu bytes", ds.n, total);
	for (int i = 0; i < ds.n; i++)
		NB_FUZZ_CHECK(ds.labels[i] >= 0 && ds.labels[i] < 10,
			      "label %d of record %d", ds.labels[i], i);
	nb_fuzz_touch(ds.images, (size_t)ds.n * 3072);
	nb_dataset_free(&ds);
	return 0;
}

NB_FUZZ_TARGET(nb_fuzz_cifar10)
