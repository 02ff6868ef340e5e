/*
 * fuzz_cifar100.c - nb_cifar100_load (core/lib/cifar.c) on a folder of
 * CIFAR-100 binary files.
 *
 * Input layout:
 *   byte 0       bit 0: split (0 train.bin, 1 test.bin); bit 1: coarse
 *                labels; bit 2: leave the file out (missing-file path)
 *   the rest     the file
 * Both files of the folder are rewritten or removed for each input.
 *
 * Checked on success: (n,3,32,32), 20 or 100 classes, n = bytes / 3074,
 * every label in range and equal to the file's byte, every pixel
 * readable and equal to the file's bytes.
 */
#include <stdint.h>
#include <string.h>

#include "data.h"
#include "error.h"
#include "fuzz_util.h"

int nb_fuzz_cifar100(const uint8_t *data, size_t size)
{
	if (!data) /* an empty input may come as NULL */
		data = (const uint8_t *)"";
	unsigned flags = size > 0 ? data[0] : 0;
	int test = flags & 1, coarse = (flags >> 1) & 1,
	    omit = (flags >> 2) & 1;
	const uint8_t *file = size > 0 ? data + 1 : data;
	size_t len = size > 0 ? size - 1 : 0;
	const char *name = test ? "test.bin" : "train.bin";
	nb_fuzz_remove("train.bin");
	nb_fuzz_remove("test.bin");
	if (!omit)
		nb_fuzz_put(name, file, len);

	char err[NB_ERR_LEN];
	nb_dataset ds;
	memset(&ds, 0xa5, sizeof ds);
	err[0] = '\0';
	int rc = nb_cifar100_load(nb_fuzz_dir(),
				  test ? NB_SPLIT_TEST : NB_SPLIT_TRAIN, coarse,
				  &ds, err);
	nb_fuzz_note("cifar100: %d %s", rc, rc ? err : "loaded");
	if (rc < 0) {
		nb_fuzz_failed(rc, err);
		NB_FUZZ_CHECK(!ds.images && !ds.labels && ds.n == 0,
			      "dataset not zeroed on failure");
		return 0;
	}
	NB_FUZZ_CHECK(rc == 0, "rc %d", rc);
	NB_FUZZ_CHECK(!omit, "loaded a missing file");
	NB_FUZZ_CHECK(ds.c == 3 && ds.h == 32 && ds.w == 32 &&
			  ds.classes == (coarse ? 20 : 100),
		      "shape (%d,%d,%d) classes %d", ds.c, ds.h, ds.w,
		      ds.classes);
	NB_FUZZ_CHECK(ds.n >= 1 && (size_t)ds.n * 3074 == len,
		      "%d records from %zu bytes", ds.n, len);
	for (int i = 0; i < ds.n; i++) {
		const uint8_t *rec = file + (size_t)i * 3074;
		NB_FUZZ_CHECK(rec[0] < 20 && rec[1] < 100,
			      "record %d has labels %d, %d", i, rec[0], rec[1]);
		NB_FUZZ_CHECK(ds.labels[i] == rec[coarse ? 0 : 1],
			      "label %d of record %d", ds.labels[i], i);
		NB_FUZZ_CHECK(
		    !memcmp(ds.images + (size_t)i * 3072, rec + 2, 3072),
		    "pixels of record %d differ from the file", i);
	}
	nb_dataset_free(&ds);
	return 0;
}

NB_FUZZ_TARGET(nb_fuzz_cifar100)
