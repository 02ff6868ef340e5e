/*
 * fuzz_tinyimagenet.c - nb_tinyimagenet_load (core/lib/tinyimagenet.c):
 * the annotation files wnids.txt and val/val_annotations.txt, and one JPEG
 * of the val split, in a Tiny-ImageNet folder tree that is otherwise whole.
 *
 * The tree (nb_fuzz_tiny_tree: nb_synth_write "tiny-imagenet", 200
 * classes of one training image each, 4 val images val_0..val_3.JPEG) is
 * written once per process; each input replaces three of its files.
 *
 * Input layout:
 *   byte 0       bit 0: split (0 train, 1 val)
 *   bytes 1-2    little-endian length W of wnids.txt (cut to what is there)
 *   bytes 3-4    little-endian length A of val_annotations.txt (likewise)
 *   then         W bytes of wnids.txt, A bytes of val_annotations.txt,
 *                the rest: val/images/val_fuzz.JPEG (removed when empty)
 *
 * Checked on success: (n,3,64,64); classes = the number of ids in
 * wnids.txt; train: 200 images, image k of class k (the tree holds one
 * per class); val: one image per annotation line, labels in range and in
 * class order; every pixel readable. (wnids.txt in the tree is not what
 * ImageFolder would see if words.txt mattered: the loader reads no
 * words.txt, so there is nothing of it to fuzz.)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data.h"
#include "error.h"
#include "fuzz_util.h"

#define TINY_TREE "tiny"

const char *nb_fuzz_tiny_tree(void)
{
	static char path[4096];
	if (path[0])
		return path;
	char err[NB_ERR_LEN];
	nb_fuzz_path(path, sizeof path, TINY_TREE);
	mkdir(path, 0755);
	if (nb_synth_write(path, "tiny-imagenet", 200, 4, 0, 7, err) < 0)
		nb_fuzz_fail(__FILE__, __LINE__, "nb_synth_write", "%s", err);
	return path;
}

/* Lines of text with something on them (CR LF or LF, CR alone counts). */
static int count_lines(const uint8_t *p, size_t len)
{
	int n = 0;
	for (size_t a = 0; a < len;) {
		const uint8_t *e = memchr(p + a, '\n', len - a);
		size_t b = e ? (size_t)(e - p) : len;
		size_t l = b - a;
		if (l > 0 && p[a + l - 1] == '\r')
			l--;
		n += l > 0;
		a = b + 1;
	}
	return n;
}

int nb_fuzz_tinyimagenet(const uint8_t *data, size_t size)
{
	if (!data) /* an empty input may come as NULL */
		data = (const uint8_t *)"";
	const char *tree = nb_fuzz_tiny_tree();
	unsigned flags = size > 0 ? data[0] : 0;
	int val = flags & 1;
	size_t w = size >= 3 ? (size_t)data[1] | (size_t)data[2] << 8 : 0;
	size_t a = size >= 5 ? (size_t)data[3] | (size_t)data[4] << 8 : 0;
	const uint8_t *p = size >= 5 ? data + 5 : data + size;
	size_t left = size >= 5 ? size - 5 : 0;
	if (w > left)
		w = left;
	const uint8_t *wnids = p;
	p += w;
	left -= w;
	if (a > left)
		a = left;
	const uint8_t *ann = p;
	p += a;
	left -= a;
	nb_fuzz_put(TINY_TREE "/wnids.txt", wnids, w);
	nb_fuzz_put(TINY_TREE "/val/val_annotations.txt", ann, a);
	if (left)
		nb_fuzz_put(TINY_TREE "/val/images/val_fuzz.JPEG", p, left);
	else
		nb_fuzz_remove(TINY_TREE "/val/images/val_fuzz.JPEG");

	char err[NB_ERR_LEN];
	nb_dataset ds;
	memset(&ds, 0xa5, sizeof ds);
	err[0] = '\0';
	int rc = nb_tinyimagenet_load(tree, val ? NB_SPLIT_TEST : NB_SPLIT_TRAIN,
				      &ds, err);
	nb_fuzz_note("tinyimagenet: %d %s", rc, rc ? err : "loaded");
	if (rc < 0) {
		nb_fuzz_failed(rc, err);
		NB_FUZZ_CHECK(!ds.images && !ds.labels && ds.n == 0,
			      "dataset not zeroed on failure");
		return 0;
	}
	NB_FUZZ_CHECK(rc == 0, "rc %d", rc);
	NB_FUZZ_CHECK(ds.c == 3 && ds.h == 64 && ds.w == 64,
		      "shape (%d,%d,%d)", ds.c, ds.h, ds.w);
	NB_FUZZ_CHECK(ds.classes == count_lines(wnids, w),
		      "%d classes from %d lines of wnids.txt", ds.classes,
		      count_lines(wnids, w));
	if (val)
		NB_FUZZ_CHECK(ds.n == count_lines(ann, a),
			      "%d val images from %d annotation lines", ds.n,
			      count_lines(ann, a));
	else
		NB_FUZZ_CHECK(ds.n == 200 && ds.classes == 200,
			      "%d training images of %d classes", ds.n,
			      ds.classes);
	for (int i = 0; i < ds.n; i++) {
		NB_FUZZ_CHECK(ds.labels[i] >= 0 && ds.labels[i] < ds.classes,
			      "label %d of image %d", ds.labels[i], i);
		NB_FUZZ_CHECK(val || ds.labels[i] == i,
			      "training image %d has label %d", i,
			      ds.labels[i]);
		NB_FUZZ_CHECK(i == 0 || ds.labels[i] >= ds.labels[i - 1],
			      "image %d out of class order", i);
	}
	nb_fuzz_touch(ds.images, (size_t)ds.n * 3 * 64 * 64);
	nb_dataset_free(&ds);
	return 0;
}

NB_FUZZ_TARGET(nb_fuzz_tinyimagenet)
