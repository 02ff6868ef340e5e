/*
 * fuzz_idx.c - nb_idx_load (core/lib/idx.c) on an images file and a labels
 * file, each plain or gzip (the loader tells them apart by content).
 *
 * Input layout:
 *   byte 0       class count - 1 (1..256)
 *   bytes 1..4   little-endian length L of the images file (clamped to
 *                what follows)
 *   L bytes      the images file
 *   the rest     the labels file
 * An input shorter than 5 bytes gives two empty files.
 *
 * Checked on success: the dataset is (n,1,h,w) with n, h, w >= 1, every
 * label in range and every pixel byte readable; a plain (non-gzip) images
 * file holds exactly 16 + n*h*w bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "error.h"
#include "fuzz_util.h"

int nb_fuzz_idx(const uint8_t *data, size_t size)
{
	if (!data) /* an empty input may come as NULL */
		data = (const uint8_t *)"";
	int classes = size > 0 ? data[0] + 1 : 10;
	size_t img_len = 0, lab_len = 0;
	const uint8_t *img = data, *lab = data;
	if (size >= 5) {
		img = data + 5;
		img_len = nb_fuzz_le32(data + 1);
		if (img_len > size - 5)
			img_len = size - 5;
		lab = img + img_len;
		lab_len = size - 5 - img_len;
	}
	nb_fuzz_put("images", img, img_len);
	nb_fuzz_put("labels", lab, lab_len);

	char ip[4096], lp[4096], err[NB_ERR_LEN];
	nb_fuzz_path(ip, sizeof ip, "images");
	nb_fuzz_path(lp, sizeof lp, "labels");
	nb_dataset ds;
	memset(&ds, 0xa5, sizeof ds);
	err[0] = '\0';
	int rc = nb_idx_load(ip, lp, classes, &ds, err);
	nb_fuzz_note("idx: %d %s", rc, rc ? err : "loaded");
	if (rc < 0) {
		nb_fuzz_failed(rc, err);
		NB_FUZZ_CHECK(!ds.images && !ds.labels && ds.n == 0,
			      "dataset not zeroed on failure");
		return 0;
	}
	NB_FUZZ_CHECK(rc == 0, "rc %d", rc);
	NB_FUZZ_CHECK(ds.n >= 1 && ds.c == 1 && ds.h >= 1 && ds.w >= 1,
		      "shape (%d,%d,%d,%d)", ds.n, ds.c, ds.h, ds.w);
	NB_FUZZ_CHECK(ds.classes == classes, "classes %d, asked %d", ds.classes,
		      classes);
	size_t pixels = (size_t)ds.n * (size_t)ds.h * (size_t)ds.w;
	int gz = img_len >= 2 && img[0] == 0x1f && img[1] == 0x8b;
	NB_FUZZ_CHECK(gz || img_len == 16 + pixels,
		      "plain images file of %zu bytes gave %zu pixels", img_len,
		      pixels);
	for (int i = 0; i < ds.n; i++)
		NB_FUZZ_CHECK(ds.labels[i] >= 0 && ds.labels[i] < classes,
			      "label %d of sample %d", ds.labels[i], i);
	nb_fuzz_touch(ds.images, pixels);
	nb_dataset_free(&ds);
	return 0;
}

NB_FUZZ_TARGET(nb_fuzz_idx)
