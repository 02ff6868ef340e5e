/*
 * tinyimagenet.c - the Tiny-ImageNet-200 loader, for the folder layout of
 * the original tiny-imagenet-200.zip (CS231n) as it unzips:
 *
 *   wnids.txt                             200 WordNet ids (n + 8 digits)
 *   train/<wnid>/images/<wnid>_<k>.JPEG   500 per class
 *   train/<wnid>/<wnid>_boxes.txt         (ignored)
 *   val/images/val_<k>.JPEG               10000 images
 *   val/val_annotations.txt               file TAB wnid TAB x0 y0 x1 y1
 *   test/                                 (unlabelled; ignored)
 *
 * Labels and order follow torchvision's ImageFolder, which the paper's code
 * uses: classes are the wnids in sorted (byte) order, NOT the line order of
 * wnids.txt, which is unsorted; samples are grouped by class and sorted by
 * file name within a class. The paper re-folders val/ into val/<wnid>/ for
 * ImageFolder; we read val_annotations.txt instead and order the val samples
 * as that re-foldered tree would be (class, then file name). Pixels come
 * from libjpeg with its default decoder settings (islow DCT, fancy
 * upsampling), as PIL's; grayscale JPEGs are replicated into R, G and B, as
 * PIL's convert("RGB") does.
 *
 * The file names are listed serially (so the order never depends on the
 * directory or the thread count), then the JPEGs are decoded in parallel
 * with OpenMP, each into its own slot. When several files are bad, the one
 * reported is the first in sample order, whatever the thread count.
 *
 * Hostile input: libjpeg's errors come back through setjmp/longjmp (its
 * default handler would exit()), and its corrupt-data warnings (truncated
 * file, bad Huffman code, ...) are errors too: libjpeg would otherwise fill
 * the rest with grey and succeed. Nothing is walked recursively: only the
 * fixed paths above and the entries directly in train/ and in each
 * images/ folder are looked at, so a symlink loop cannot make the loader
 * spin; following one gives ELOOP, reported as a symlink loop. Files are
 * opened non-blocking and must be regular (a FIFO named x.JPEG does not
 * hang the loader) and small; counts are bounded before anything is
 * allocated.
 *
 * It does not read the zip itself, the bounding boxes, the test/ split, or
 * JPEGs that are not 64x64 (the original holds none: they are an error).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jerror.h>
#include <jpeglib.h>

#include "data.h"
#include "error.h"

#define TINY_SIDE 64
#define TINY_PLANE (TINY_SIDE * TINY_SIDE)
#define TINY_PIXELS (3 * TINY_PLANE)
/* Per split, so that n * 3*64*64 fits an int as well as a size_t: 174762
 * (the original splits hold 100000 and 10000). */
#define TINY_MAX_IMAGES (INT_MAX / TINY_PIXELS)
#define TINY_MAX_CLASSES 100000
#define TINY_MAX_JPEG (4 << 20)	      /* bytes; an original is ~2 KB */
#define TINY_MAX_WNIDS_FILE (4 << 20) /* bytes */
#define TINY_MAX_ANNOT_FILE (64 << 20)
#define TINY_PATH 4200
#define WNID_LEN 9 /* "n" + 8 digits */

#define ZIP_HINT                                                               \
	"unzip the original tiny-imagenet-200.zip (CS231n) again, see "        \
	"data/README.md"

typedef struct wnid {
	char id[WNID_LEN + 1];
	int line; /* 1-based line in wnids.txt */
} wnid;

/* The samples of one split, in order: path and label of each. */
typedef struct sample {
	char *path;
	int label;
} sample;

typedef struct sample_list {
	sample *s;
	int n, cap;
} sample_list;

/* "...: <strerror>", with a hint for the cases that need one. */
static int sys_error(char *err, int code, const char *path, const char *what,
		     int e)
{
	return nb_errorf(err, code, "%s: %s: %s%s", path, what, strerror(e),
			 e == ELOOP ? " (a symlink loop?)" : "");
}

static int join(char *out, const char *a, const char *b, char *err)
{
	int k = snprintf(out, TINY_PATH, "%s/%s", a, b);
	if (k < 0 || k >= TINY_PATH)
		return nb_errorf(err, NB_EINVAL, "%s/%s: path too long", a, b);
	return 0;
}

/*
 * Reads a whole regular file of at most max bytes into *buf (grown as
 * needed, *cap its size; the caller frees). Opened non-blocking so that a
 * FIFO cannot hang us; anything but a regular file is refused.
 */
static int read_all(const char *path, size_t max, uint8_t **buf, size_t *cap,
		    size_t *len, char *err)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return sys_error(err, NB_EIO, path, "cannot open", errno);
	if (fstat(fd, &st) != 0) {
		int e = errno;
		close(fd);
		return sys_error(err, NB_EIO, path, "cannot stat", e);
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return nb_errorf(err, NB_EIO, "%s: not a regular file", path);
	}
	if ((unsigned long long)st.st_size > max) {
		close(fd);
		return nb_errorf(err, NB_EFORMAT,
				 "%s: %lld bytes, more than the %zu allowed; "
				 "not a Tiny-ImageNet file (%s)",
				 path, (long long)st.st_size, max, ZIP_HINT);
	}
	size_t want = (size_t)st.st_size;
	if (want + 1 > *cap) {
		uint8_t *nb = realloc(*buf, want + 1);
		if (!nb) {
			close(fd);
			return nb_errorf(err, NB_ENOMEM, "%s: out of memory",
					 path);
		}
		*buf = nb;
		*cap = want + 1;
	}
	size_t got = 0;
	while (got < want) {
		ssize_t r = read(fd, *buf + got, want - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			close(fd);
			return sys_error(err, NB_EIO, path, "read failed", e);
		}
		if (r == 0)
			break; /* shrank while we read: decode what is there */
		got += (size_t)r;
	}
	close(fd);
	(*buf)[got] = 0;
	*len = got;
	return 0;
}

/* ---- libjpeg ------------------------------------------------------------ */

typedef struct jpeg_catch {
	struct jpeg_error_mgr pub;
	jmp_buf jump;
	char msg[JMSG_LENGTH_MAX];
	int warned;
} jpeg_catch;

/* libjpeg's fatal errors: record the message, jump back (never exit). */
static void catch_error_exit(j_common_ptr cinfo)
{
	jpeg_catch *c = (jpeg_catch *)cinfo->err;
	cinfo->err->format_message(cinfo, c->msg);
	longjmp(c->jump, 1);
}

/*
 * Level -1 is a corrupt-data warning (premature end of file, bad Huffman
 * code, data lost to a marker...): libjpeg carries on with grey, which
 * would be a silent wrong image, so the first one is recorded and turned
 * into an error. Two header-only warnings that leave the pixels intact
 * are let through. Levels >= 0 are traces: ignored.
 */
static void catch_emit_message(j_common_ptr cinfo, int level)
{
	jpeg_catch *c = (jpeg_catch *)cinfo->err;
	int code = cinfo->err->msg_code;
	if (level >= 0 || c->warned || code == JWRN_JFIF_MAJOR ||
	    code == JWRN_ADOBE_XFORM)
		return;
	cinfo->err->format_message(cinfo, c->msg);
	c->warned = 1;
}

/*
 * Decodes one 64x64 JPEG of len bytes into out (3,64,64): RGB planes, or a
 * grayscale image replicated into all three.
 */
static int decode_jpeg(const char *path, const uint8_t *data, size_t len,
		       uint8_t *out, char *err)
{
	struct jpeg_decompress_struct ci;
	jpeg_catch c;
	JSAMPLE line[TINY_SIDE * 3];
	volatile int rc = 0; /* set between setjmp and a longjmp */

	ci.err = jpeg_std_error(&c.pub);
	c.pub.error_exit = catch_error_exit;
	c.pub.emit_message = catch_emit_message;
	c.warned = 0;
	c.msg[0] = 0;
	if (setjmp(c.jump)) {
		jpeg_destroy_decompress(&ci);
		return nb_errorf(err, NB_EFORMAT,
				 "%s: corrupt or not a JPEG: %s", path, c.msg);
	}
	jpeg_create_decompress(&ci);
	jpeg_mem_src(&ci, data, (unsigned long)len);
	jpeg_read_header(&ci, TRUE);
	/* Checked before anything is sized from the header. */
	if (ci.image_width != TINY_SIDE || ci.image_height != TINY_SIDE) {
		rc = nb_errorf(err, NB_EFORMAT,
			       "%s: image is %ux%u, not 64x64 (%s)", path,
			       (unsigned)ci.image_width,
			       (unsigned)ci.image_height, ZIP_HINT);
		goto done;
	}
	if (ci.num_components == 1) {
		ci.out_color_space = JCS_GRAYSCALE;
	} else if (ci.num_components == 3) {
		ci.out_color_space = JCS_RGB;
	} else {
		rc = nb_errorf(err, NB_EFORMAT,
			       "%s: a JPEG with %d colour components "
			       "(CMYK?); only grayscale and RGB are read",
			       path, ci.num_components);
		goto done;
	}
	/* libjpeg's defaults, which PIL uses too; stated so they stay. */
	ci.dct_method = JDCT_ISLOW;
	ci.do_fancy_upsampling = TRUE;
	jpeg_start_decompress(&ci);
	while (ci.output_scanline < ci.output_height) {
		int y = (int)ci.output_scanline;
		JSAMPROW row = line;
		if (jpeg_read_scanlines(&ci, &row, 1) != 1) {
			rc = nb_errorf(err, NB_EFORMAT,
				       "%s: decoding stopped at row %d", path,
				       y);
			goto done;
		}
		uint8_t *r = out + (size_t)y * TINY_SIDE;
		if (ci.output_components == 1) {
			for (int x = 0; x < TINY_SIDE; x++)
				r[x] = r[TINY_PLANE + x] =
				    r[2 * TINY_PLANE + x] = line[x];
		} else {
			for (int x = 0; x < TINY_SIDE; x++) {
				r[x] = line[3 * x];
				r[TINY_PLANE + x] = line[3 * x + 1];
				r[2 * TINY_PLANE + x] = line[3 * x + 2];
			}
		}
	}
	jpeg_finish_decompress(&ci);
	if (c.warned)
		rc = nb_errorf(err, NB_EFORMAT,
			       "%s: corrupt JPEG (truncated or damaged): %s; "
			       "%s",
			       path, c.msg, ZIP_HINT);
done:
	jpeg_destroy_decompress(&ci);
	return rc;
}

/* Whether s[0..len) holds a control byte (which a message must not carry:
 * a file name from a hostile tree or annotation file). */
static int has_control(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 1;
	return 0;
}

/* ---- wnids.txt ---------------------------------------------------------- */

static int is_wnid(const char *s, size_t len)
{
	if (len != WNID_LEN || s[0] != 'n')
		return 0;
	for (size_t i = 1; i < len; i++)
		if (!isdigit((unsigned char)s[i]))
			return 0;
	return 1;
}

static int cmp_wnid(const void *a, const void *b)
{
	return strcmp(((const wnid *)a)->id, ((const wnid *)b)->id);
}

/* The class of id, or -1 (ids sorted). */
static int find_class(const wnid *ids, int n, const char *id)
{
	wnid key;
	snprintf(key.id, sizeof key.id, "%s", id);
	const wnid *w = bsearch(&key, ids, (size_t)n, sizeof *ids, cmp_wnid);
	return w ? (int)(w - ids) : -1;
}

/* A copy of the line [s, s+len) for messages, shortened and printable
 * (a tab shown as \t, other control bytes as ?). */
static const char *shown(char *buf, size_t size, const char *s, size_t len)
{
	size_t k = 0, i = 0;
	for (; i < len && k + 6 < size; i++) {
		if (s[i] == '\t') {
			buf[k++] = '\\';
			buf[k++] = 't';
		} else {
			buf[k++] = isprint((unsigned char)s[i]) ? s[i] : '?';
		}
	}
	if (i < len)
		memcpy(buf + k, "...", 4);
	else
		buf[k] = 0;
	return buf;
}

/*
 * wnids.txt into *ids, sorted: this sorted order is the class order (as
 * ImageFolder sorts its class folders); the file's own order is not.
 * Blank lines are skipped; a line must be one wnid (a trailing CR is
 * allowed); duplicates are errors.
 */
static int read_wnids(const char *dir, wnid **out, int *count, char *err)
{
	char path[TINY_PATH], show[48];
	uint8_t *text = NULL;
	size_t cap = 0, len;
	int rc, n = 0, line = 0;
	wnid *ids = NULL;

	*out = NULL;
	*count = 0;
	if ((rc = join(path, dir, "wnids.txt", err)) ||
	    (rc = read_all(path, TINY_MAX_WNIDS_FILE, &text, &cap, &len, err)))
		goto fail;
	/* At most one id per 10 bytes (9 + newline), +1 for no final one. */
	ids = malloc((len / (WNID_LEN + 1) + 1) * sizeof *ids);
	if (!ids) {
		rc = nb_errorf(err, NB_ENOMEM, "%s: out of memory", path);
		goto fail;
	}
	for (char *s = (char *)text; s < (char *)text + len;) {
		char *e = memchr(s, '\n', (size_t)((char *)text + len - s));
		size_t l =
		    e ? (size_t)(e - s) : (size_t)((char *)text + len - s);
		line++;
		if (l > 0 && s[l - 1] == '\r')
			l--;
		if (l > 0) {
			if (!is_wnid(s, l) || memchr(s, 0, l)) {
				rc = nb_errorf(
				    err, NB_EFORMAT,
				    "%s: line %d: \"%s\" is not a WordNet id "
				    "(n followed by 8 digits); %s",
				    path, line, shown(show, sizeof show, s, l),
				    ZIP_HINT);
				goto fail;
			}
			if (n >= TINY_MAX_CLASSES) {
				rc = nb_errorf(err, NB_EFORMAT,
					       "%s: more than %d ids", path,
					       TINY_MAX_CLASSES);
				goto fail;
			}
			memcpy(ids[n].id, s, WNID_LEN);
			ids[n].id[WNID_LEN] = 0;
			ids[n++].line = line;
		}
		if (!e)
			break;
		s = e + 1;
	}
	if (n == 0) {
		rc = nb_errorf(err, NB_EFORMAT, "%s: no ids in the file; %s",
			       path, ZIP_HINT);
		goto fail;
	}
	qsort(ids, (size_t)n, sizeof *ids, cmp_wnid);
	for (int i = 1; i < n; i++)
		if (!strcmp(ids[i].id, ids[i - 1].id)) {
			int a = ids[i].line < ids[i - 1].line ? ids[i].line
							      : ids[i - 1].line;
			int b = ids[i].line ^ ids[i - 1].line ^ a;
			rc = nb_errorf(err, NB_EFORMAT,
				       "%s: duplicate id %s (lines %d and %d); "
				       "%s",
				       path, ids[i].id, a, b, ZIP_HINT);
			goto fail;
		}
	free(text);
	*out = ids;
	*count = n;
	return 0;
fail:
	free(text);
	free(ids);
	return rc;
}

/* ---- listing ------------------------------------------------------------ */

static void list_free(sample_list *l)
{
	for (int i = 0; i < l->n; i++)
		free(l->s[i].path);
	free(l->s);
	memset(l, 0, sizeof *l);
}

/* Appends (path, label); where names the split for the count error. */
static int list_add(sample_list *l, const char *path, int label,
		    const char *where, char *err)
{
	if (l->n >= TINY_MAX_IMAGES)
		return nb_errorf(err, NB_EFORMAT,
				 "%s: more than %d images in one split, which "
				 "would overflow the image buffer's indices; "
				 "not Tiny-ImageNet-200 (%s)",
				 where, TINY_MAX_IMAGES, ZIP_HINT);
	if (l->n == l->cap) {
		int cap = !l->cap			 ? 1024
			  : l->cap > TINY_MAX_IMAGES / 2 ? TINY_MAX_IMAGES
							 : 2 * l->cap;
		sample *s = realloc(l->s, (size_t)cap * sizeof *s);
		if (!s)
			return nb_errorf(err, NB_ENOMEM,
					 "%s: out of memory listing images",
					 where);
		l->s = s;
		l->cap = cap;
	}
	if (!(l->s[l->n].path = strdup(path)))
		return nb_errorf(err, NB_ENOMEM,
				 "%s: out of memory listing images", where);
	l->s[l->n++].label = label;
	return 0;
}

static int has_jpeg_ext(const char *name)
{
	size_t l = strlen(name);
	return (l > 5 && !strcasecmp(name + l - 5, ".jpeg")) ||
	       (l > 4 && !strcasecmp(name + l - 4, ".jpg"));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Opens a directory (following a symlink to it, one step, no recursion). */
static DIR *open_dir(const char *path, const char *what, char *err, int *rc)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		*rc = e == ENOENT ? nb_errorf(err, NB_EIO, "%s: %s missing; %s",
					      path, what, ZIP_HINT)
				  : sys_error(err, NB_EIO, path,
					      "cannot open folder", e);
	}
	return d;
}

/*
 * Every folder in train/ must be a listed wnid: a folder wnids.txt lacks
 * means a damaged wnids.txt, and ImageFolder would make it a class. An
 * entry is stat()ed (one symlink hop at most; a loop gives ELOOP).
 */
static int check_train_folders(const char *train, const wnid *ids, int n,
			       char *err)
{
	int rc = 0;
	DIR *d = open_dir(train, "the train folder", err, &rc);
	if (!d)
		return rc;
	struct dirent *e;
	struct stat st;
	while (!rc && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (fstatat(dirfd(d), e->d_name, &st, 0) != 0) {
			char p[TINY_PATH];
			if (errno == ELOOP &&
			    !(rc = join(p, train, e->d_name, err)))
				rc = sys_error(err, NB_EIO, p, "cannot open",
					       ELOOP);
			continue; /* dangling link: not a folder */
		}
		if (S_ISDIR(st.st_mode) && (strlen(e->d_name) != WNID_LEN ||
					    find_class(ids, n, e->d_name) < 0)) {
			char show[48];
			rc = nb_errorf(err, NB_EFORMAT,
				       "%s/%s: a class folder that wnids.txt "
				       "does not list (damaged wnids.txt, or a "
				       "stray folder); %s",
				       train,
				       shown(show, sizeof show, e->d_name,
					     strlen(e->d_name)),
				       ZIP_HINT);
		}
	}
	closedir(d);
	return rc;
}

/* The JPEGs of train/<wnid>/images, sorted by name, as class k. */
static int list_class(const char *train, const char *id, int k, sample_list *l,
		      char *err)
{
	char cls[TINY_PATH], images[TINY_PATH], p[TINY_PATH];
	char **names = NULL;
	int rc = 0, n = 0, cap = 0;
	struct stat st;

	if ((rc = join(cls, train, id, err)) ||
	    (rc = join(images, cls, "images", err)))
		return rc;
	if (stat(cls, &st) != 0 || !S_ISDIR(st.st_mode))
		return errno == ELOOP
			   ? sys_error(err, NB_EIO, cls, "cannot open", ELOOP)
			   : nb_errorf(err, NB_EIO,
				       "%s: class folder missing (%s is "
				       "listed in wnids.txt); %s",
				       cls, id, ZIP_HINT);
	DIR *d = open_dir(images, "images folder", err, &rc);
	if (!d)
		return rc;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!has_jpeg_ext(e->d_name))
			continue;
		if (has_control(e->d_name, strlen(e->d_name))) {
			char show[48];
			rc = nb_errorf(err, NB_EFORMAT,
				       "%s: file name \"%s\" holds control "
				       "characters; %s",
				       images,
				       shown(show, sizeof show, e->d_name,
					     strlen(e->d_name)),
				       ZIP_HINT);
			break;
		}
		if (n == cap) {
			if (cap >= TINY_MAX_IMAGES) {
				rc = nb_errorf(err, NB_EFORMAT,
					       "%s: more than %d images",
					       images, TINY_MAX_IMAGES);
				break;
			}
			cap = cap ? 2 * cap : 512;
			char **nn = realloc(names, (size_t)cap * sizeof *nn);
			if (!nn) {
				rc = nb_errorf(err, NB_ENOMEM,
					       "%s: out of memory", images);
				break;
			}
			names = nn;
		}
		if (!(names[n] = strdup(e->d_name))) {
			rc = nb_errorf(err, NB_ENOMEM, "%s: out of memory",
				       images);
			break;
		}
		n++;
	}
	closedir(d);
	if (!rc && n == 0)
		rc = nb_errorf(err, NB_EFORMAT, "%s: no .JPEG images; %s",
			       images, ZIP_HINT);
	if (!rc)
		qsort(names, (size_t)n, sizeof *names, cmp_str);
	for (int i = 0; i < n && !rc; i++)
		if (!(rc = join(p, images, names[i], err)))
			rc = list_add(l, p, k, images, err);
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

static int list_train(const char *dir, const wnid *ids, int n, sample_list *l,
		      char *err)
{
	char train[TINY_PATH];
	int rc = join(train, dir, "train", err);
	if (!rc)
		rc = check_train_folders(train, ids, n, err);
	for (int k = 0; k < n && !rc; k++)
		rc = list_class(train, ids[k].id, k, l, err);
	return rc;
}

static int cmp_path(const void *a, const void *b)
{
	return strcmp(((const sample *)a)->path, ((const sample *)b)->path);
}

/* Orders val samples by (class, file name): the re-foldered val/. */
static int cmp_label_path(const void *a, const void *b)
{
	const sample *x = a, *y = b;
	if (x->label != y->label)
		return x->label < y->label ? -1 : 1;
	return strcmp(x->path, y->path);
}

/* A decimal integer field in [0, 100000) (a box coordinate). */
static int is_coord(const char *s, size_t len)
{
	if (len == 0 || len > 5)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!isdigit((unsigned char)s[i]))
			return 0;
	return 1;
}

/*
 * val/val_annotations.txt: per line 6 tab-separated fields, the file name
 * (in val/images, no '/'), a listed wnid and 4 box coordinates (checked,
 * not kept). A file named twice is an error.
 */
static int list_val(const char *dir, const wnid *ids, int nids, sample_list *l,
		    char *err)
{
	char val[TINY_PATH], images[TINY_PATH], ann[TINY_PATH], p[TINY_PATH];
	char show[64], id[WNID_LEN + 1];
	uint8_t *text = NULL;
	size_t cap = 0, len;
	int rc, line = 0;

	if ((rc = join(val, dir, "val", err)) ||
	    (rc = join(images, val, "images", err)) ||
	    (rc = join(ann, val, "val_annotations.txt", err)))
		return rc;
	if ((rc = read_all(ann, TINY_MAX_ANNOT_FILE, &text, &cap, &len, err)))
		goto out;
	for (char *s = (char *)text; s < (char *)text + len;) {
		char *e = memchr(s, '\n', (size_t)((char *)text + len - s));
		size_t ll =
		    e ? (size_t)(e - s) : (size_t)((char *)text + len - s);
		const char *f[7];
		size_t fl[7];
		int nf = 0;
		line++;
		if (ll > 0 && s[ll - 1] == '\r')
			ll--;
		if (ll == 0)
			goto next;
		for (size_t a = 0, b = 0; b <= ll; b++)
			if (b == ll || s[b] == '\t') {
				if (nf < 7) {
					f[nf] = s + a;
					fl[nf] = b - a;
				}
				nf++;
				a = b + 1;
			}
		int ok = nf == 6 && fl[0] > 0 && fl[0] < 256 &&
			 !memchr(f[0], '/', fl[0]) && !has_control(f[0], fl[0]) &&
			 !(f[0][0] == '.' &&
			   (fl[0] == 1 || (fl[0] == 2 && f[0][1] == '.'))) &&
			 is_wnid(f[1], fl[1]);
		for (int i = 2; ok && i < 6; i++)
			ok = is_coord(f[i], fl[i]);
		if (!ok) {
			rc = nb_errorf(
			    err, NB_EFORMAT,
			    "%s: line %d: \"%s\" is not 6 tab-separated "
			    "fields FILE, WNID, x0, y0, x1, y1; %s",
			    ann, line, shown(show, sizeof show, s, ll),
			    ZIP_HINT);
			goto out;
		}
		memcpy(id, f[1], WNID_LEN);
		id[WNID_LEN] = 0;
		int k = find_class(ids, nids, id);
		if (k < 0) {
			rc = nb_errorf(err, NB_EFORMAT,
				       "%s: line %d: wnid %s is not in "
				       "wnids.txt; %s",
				       ann, line, id, ZIP_HINT);
			goto out;
		}
		{
			char name[256];
			memcpy(name, f[0], fl[0]);
			name[fl[0]] = 0;
			if ((rc = join(p, images, name, err)) ||
			    (rc = list_add(l, p, k, ann, err)))
				goto out;
		}
	next:
		if (!e)
			break;
		s = e + 1;
	}
	if (l->n == 0) {
		rc = nb_errorf(err, NB_EFORMAT, "%s: no annotations; %s", ann,
			       ZIP_HINT);
		goto out;
	}
	qsort(l->s, (size_t)l->n, sizeof *l->s, cmp_path);
	for (int i = 1; i < l->n; i++)
		if (!strcmp(l->s[i].path, l->s[i - 1].path)) {
			rc = nb_errorf(
			    err, NB_EFORMAT, "%s: %s is listed twice; %s", ann,
			    strrchr(l->s[i].path, '/') + 1, ZIP_HINT);
			goto out;
		}
	qsort(l->s, (size_t)l->n, sizeof *l->s, cmp_label_path);
out:
	free(text);
	return rc;
}

/* ---- decoding ----------------------------------------------------------- */

/*
 * Decodes every listed file into ds->images, in parallel. Each image has
 * its own slot and its own libjpeg state, so the pixels do not depend on
 * the thread count; on failure the error of the first bad file in sample
 * order is returned (files after a known failure are skipped, never files
 * before it).
 */
static int decode_all(const sample_list *l, uint8_t *images, char *err)
{
	int first_bad = INT_MAX, first_rc = 0;

#pragma omp parallel
	{
		uint8_t *buf = NULL;
		size_t cap = 0, len;
		char terr[NB_ERR_LEN];
#pragma omp for schedule(dynamic, 32)
		for (int i = 0; i < l->n; i++) {
			int bad;
#pragma omp atomic read
			bad = first_bad;
			if (i > bad)
				continue;
			uint8_t *out = images + (size_t)i * TINY_PIXELS;
			int rc = read_all(l->s[i].path, TINY_MAX_JPEG, &buf,
					  &cap, &len, terr);
			if (!rc)
				rc = decode_jpeg(l->s[i].path, buf, len, out,
						 terr);
			if (rc) {
#pragma omp critical(nb_tiny_error)
				if (i < first_bad) {
#pragma omp atomic write
					first_bad = i;
					first_rc = rc;
					if (err)
						memcpy(err, terr, NB_ERR_LEN);
				}
			}
		}
		free(buf);
	}
	return first_rc;
}

int nb_tinyimagenet_load(const char *dir, enum nb_split split, nb_dataset *ds,
			 char *err)
{
	sample_list l = {0};
	wnid *ids = NULL;
	int nids = 0, rc;
	struct stat st;

	memset(ds, 0, sizeof *ds);
	if (!dir || !*dir)
		return nb_errorf(err, NB_EINVAL, "tiny-imagenet: no folder");
	if (split != NB_SPLIT_TRAIN && split != NB_SPLIT_TEST)
		return nb_errorf(err, NB_EINVAL, "%s: bad split %d", dir,
				 (int)split);
	if (strlen(dir) > 4000)
		return nb_errorf(err, NB_EINVAL, "%.60s...: path too long",
				 dir);
	if (stat(dir, &st) != 0)
		return sys_error(err, NB_EIO, dir,
				 "cannot open the Tiny-ImageNet folder", errno);
	if (!S_ISDIR(st.st_mode))
		return nb_errorf(err, NB_EIO,
				 "%s: not a folder (give the extracted "
				 "tiny-imagenet-200 folder)",
				 dir);
	if ((rc = read_wnids(dir, &ids, &nids, err)))
		return rc;
	rc = split == NB_SPLIT_TRAIN ? list_train(dir, ids, nids, &l, err)
				     : list_val(dir, ids, nids, &l, err);
	if (!rc) {
		/* l.n <= TINY_MAX_IMAGES, so this product fits an int. */
		ds->images = malloc((size_t)l.n * TINY_PIXELS);
		ds->labels = malloc((size_t)l.n * sizeof *ds->labels);
		if (!ds->images || !ds->labels)
			rc = nb_errorf(err, NB_ENOMEM,
				       "%s: out of memory for %d images of "
				       "64x64 (%zu MB)",
				       dir, l.n,
				       (size_t)l.n * TINY_PIXELS >> 20);
	}
	if (!rc)
		rc = decode_all(&l, ds->images, err);
	if (!rc) {
		for (int i = 0; i < l.n; i++)
			ds->labels[i] = l.s[i].label;
		ds->n = l.n;
		ds->c = 3;
		ds->h = ds->w = TINY_SIDE;
		ds->classes = nids;
	} else {
		nb_dataset_free(ds);
	}
	list_free(&l);
	free(ids);
	return rc;
}
