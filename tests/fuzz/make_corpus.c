/*
 * make_corpus.c - writes the seed corpora of the fuzz harnesses with the
 * project's own writers, in each harness's input layout (see the comment
 * at the top of tests/fuzz/fuzz_PARSER.c):
 *
 *   make-corpus OUTDIR     (make fuzz-corpus: OUTDIR = tests/fuzz/corpus)
 *
 * writes OUTDIR/PARSER/NAME for idx, cifar10, cifar100 (nb_synth_write
 * with a handful of samples), safetensors (nb_st_write), checkpoint
 * (nb_checkpoint_save of fuzz_checkpoint.c's network), store
 * (nb_store_finish) and tinyimagenet (the annotation files of
 * fuzz_tinyimagenet.c's tree, nb_synth_write). Every seed is a few KB at most, except the CIFAR-10
 * training split, which needs five records of 3073 bytes. The output is
 * deterministic (fixed seeds), so re-running it changes no committed file.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint.h"
#include "data.h"
#include "error.h"
#include "fuzz_util.h"
#include "net.h"
#include "store.h"

static const char *outdir;

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "make-corpus: %s: %s\n", what, msg);
	exit(1);
}

/* The scratch file NAME (relative to the scratch folder) read whole. */
static uint8_t *slurp(const char *name, size_t *len)
{
	char path[4096];
	nb_fuzz_path(path, sizeof path, name);
	FILE *f = fopen(path, "rb");
	if (!f)
		die(path, strerror(errno));
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
	if (!buf || n < 0 || fread(buf, 1, (size_t)n, f) != (size_t)n)
		die(path, "cannot read");
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* A growing byte string. */
typedef struct seed {
	uint8_t *b;
	size_t n;
} seed;

static void add(seed *s, const void *p, size_t len)
{
	s->b = realloc(s->b, s->n + len + 1);
	if (!s->b)
		die("seed", "out of memory");
	memcpy(s->b + s->n, p, len);
	s->n += len;
}

static void add_byte(seed *s, unsigned v)
{
	uint8_t b = (uint8_t)v;
	add(s, &b, 1);
}

static void add_le32(seed *s, size_t v)
{
	uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16),
			(uint8_t)(v >> 24)};
	add(s, b, 4);
}

static void add_file(seed *s, const char *name)
{
	size_t len;
	uint8_t *b = slurp(name, &len);
	add(s, b, len);
	free(b);
}

/* Writes OUTDIR/PARSER/NAME and frees the seed. */
static void emit(const char *parser, const char *name, seed *s)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", outdir, parser);
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		die(path, strerror(errno));
	snprintf(path, sizeof path, "%s/%s/%s", outdir, parser, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(s->b, 1, s->n, f) != s->n || fclose(f) != 0)
		die(path, "cannot write");
	printf("%s (%zu bytes)\n", path, s->n);
	free(s->b);
	s->b = NULL;
	s->n = 0;
}

static void synth(const char *format, int n_train, int n_test, int gz)
{
	char err[NB_ERR_LEN];
	if (nb_synth_write(nb_fuzz_dir(), format, n_train, n_test, gz, 42,
			   err) < 0)
		die(format, err);
}

static void idx_seeds(void)
{
	static const char *const sets[2][2] = {
	    {"train-images-idx3-ubyte", "train-labels-idx1-ubyte"},
	    {"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}};
	for (int gz = 0; gz < 2; gz++) {
		synth("idx", 2, 1, gz);
		for (int t = 0; t < 2; t++) {
			char img[64], lab[64], name[32];
			snprintf(img, sizeof img, "%s%s", sets[t][0],
				 gz ? ".gz" : "");
			snprintf(lab, sizeof lab, "%s%s", sets[t][1],
				 gz ? ".gz" : "");
			size_t ilen;
			uint8_t *ib = slurp(img, &ilen);
			seed s = {0};
			add_byte(&s, 10 - 1);
			add_le32(&s, ilen);
			add(&s, ib, ilen);
			add_file(&s, lab);
			free(ib);
			snprintf(name, sizeof name, "%s-%s",
				 t ? "test" : "train", gz ? "gz" : "plain");
			emit("idx", name, &s);
		}
	}
}

static void cifar_seeds(void)
{
	seed s = {0};
	synth("cifar10", 5, 2, 0);
	add_byte(&s, 0); /* train */
	for (int i = 0; i < 4; i++)
		add_le32(&s, 3073);
	for (int i = 1; i <= 5; i++) {
		char name[32];
		snprintf(name, sizeof name, "data_batch_%d.bin", i);
		add_file(&s, name);
	}
	emit("cifar10", "train-5x1", &s);
	add_byte(&s, 1); /* test */
	add_file(&s, "test_batch.bin");
	emit("cifar10", "test-2", &s);

	synth("cifar100", 1, 2, 0);
	add_byte(&s, 0); /* train, fine */
	add_file(&s, "train.bin");
	emit("cifar100", "train-fine-1", &s);
	add_byte(&s, 1 | 2); /* test, coarse */
	add_file(&s, "test.bin");
	emit("cifar100", "test-coarse-2", &s);
}

static void safetensors_seeds(void)
{
	char path[4096], err[NB_ERR_LEN];
	nb_fuzz_path(path, sizeof path, "t.safetensors");
	float f32[6] = {1, -2, 3.5f, 0, 1e-3f, -7};
	int64_t i64 = 12345;
	uint16_t bf16[4] = {0x3f80, 0x4000, 0xbf80, 0};
	uint8_t u8[3] = {1, 2, 255};
	nb_st_out t[] = {
	    {"weight", NB_DTYPE_F32, 2, {2, 3}, f32, sizeof f32},
	    {"count", NB_DTYPE_I64, 0, {0}, &i64, sizeof i64},
	    {"empty", NB_DTYPE_U8, 1, {0}, u8, 0},
	    {"half", NB_DTYPE_BF16, 1, {4}, bf16, sizeof bf16},
	    {"bytes", NB_DTYPE_U8, 3, {1, 3, 1}, u8, sizeof u8},
	};
	const char *keys[] = {"format", "note"};
	const char *values[] = {"pt", "fuzz seed"};
	seed s = {0};
	if (nb_st_write(path, t, 5, keys, values, 2, err) < 0)
		die("safetensors", err);
	add_file(&s, "t.safetensors");
	emit("safetensors", "dtypes-meta", &s);
	if (nb_st_write(path, t, 1, NULL, NULL, 0, err) < 0)
		die("safetensors", err);
	add_file(&s, "t.safetensors");
	emit("safetensors", "one-tensor", &s);
	if (nb_st_write(path, NULL, 0, keys, values, 2, err) < 0)
		die("safetensors", err);
	add_file(&s, "t.safetensors");
	emit("safetensors", "meta-only", &s);
	if (nb_st_write(path, NULL, 0, NULL, NULL, 0, err) < 0)
		die("safetensors", err);
	add_file(&s, "t.safetensors");
	emit("safetensors", "empty", &s);
}

static void checkpoint_seeds(void)
{
	char path[4096], err[NB_ERR_LEN];
	nb_fuzz_path(path, sizeof path, "m.safetensors");
	nb_net *net = nb_fuzz_checkpoint_net();
	nb_ckpt_meta meta = {0};
	snprintf(meta.arch, sizeof meta.arch, "fuzz-small");
	snprintf(meta.strategy, sizeof meta.strategy, "nasty");
	snprintf(meta.dataset, sizeof meta.dataset, "cifar10");
	meta.epochs = 3;
	meta.seed = 7;
	meta.best_acc = 42.5;
	seed s = {0};
	if (nb_checkpoint_save(net, &meta, path, err) < 0)
		die("checkpoint", err);
	add_file(&s, "m.safetensors");
	emit("checkpoint", "with-meta", &s);
	if (nb_checkpoint_save(net, NULL, path, err) < 0)
		die("checkpoint", err);
	add_file(&s, "m.safetensors");
	emit("checkpoint", "no-meta", &s);
	/* a valid checkpoint is a valid safetensors file too */
	add_file(&s, "m.safetensors");
	emit("safetensors", "checkpoint", &s);
	nb_net_free(net);
}

static void store_seeds(void)
{
	char root[4096], err[NB_ERR_LEN], key[65], rel[512];
	nb_fuzz_path(root, sizeof root, "root");
	nb_store *st = nb_store_open(root, err);
	if (!st)
		die("store", err);
	nb_store_key(NB_FUZZ_STORE_KEY_DESC, key);
	char path[4096];
	if (nb_store_path(st, key, "best.safetensors", 1, path, sizeof path,
			  err) < 0)
		die("store", err);
	snprintf(rel, sizeof rel, "root/store/%s/best.safetensors", key);
	nb_fuzz_put(rel, NB_FUZZ_STORE_BEST, strlen(NB_FUZZ_STORE_BEST));
	snprintf(rel, sizeof rel, "root/store/%s/log.csv", key);
	nb_fuzz_put(rel, NB_FUZZ_STORE_LOG, strlen(NB_FUZZ_STORE_LOG));
	snprintf(rel, sizeof rel, "root/store/%s/summary.ini", key);

	static const char *const statuses[] = {"ok", "diverged"};
	for (int i = 0; i < 2; i++) {
		nb_model_summary sum = {0};
		snprintf(sum.status, sizeof sum.status, "%s", statuses[i]);
		sum.epochs = 3;
		sum.best_epoch = 2;
		sum.best_acc = 41.25;
		sum.last_acc = 40.5;
		sum.wall_s = 1.5;
		sum.final_loss = 0.75;
		sum.final_ce = 0.5;
		sum.final_kl = 0.25;
		snprintf(sum.desc, sizeof sum.desc, "%s",
			 NB_FUZZ_STORE_KEY_DESC);
		if (nb_store_finish(st, key, &sum, err) < 0)
			die("store", err);
		size_t len;
		uint8_t *text = slurp(rel, &len);
		seed s = {0};
		char name[32];
		/* as written, checksum and all */
		add_byte(&s, 0);
		add(&s, text, len);
		snprintf(name, sizeof name, "%s-raw", statuses[i]);
		emit("store", name, &s);
		/* without the check line: the harness appends it */
		size_t body = len;
		while (body > 0 && text[body - 1] == '\n')
			body--;
		while (body > 0 && text[body - 1] != '\n')
			body--;
		add_byte(&s, 1);
		add(&s, text, body);
		snprintf(name, sizeof name, "%s-body", statuses[i]);
		emit("store", name, &s);
		free(text);
	}
	seed s = {0};
	add_byte(&s, 2); /* no summary.ini */
	emit("store", "partial", &s);
	nb_store_close(st);
}

/* One Tiny-ImageNet input (fuzz_tinyimagenet.c's layout). */
static void tiny_seed(const char *name, int val, const uint8_t *wnids,
		      size_t w, const uint8_t *ann, size_t a,
		      const uint8_t *jpeg, size_t j)
{
	seed s = {0};
	add_byte(&s, (unsigned)val);
	add_byte(&s, (unsigned)(w & 0xff));
	add_byte(&s, (unsigned)(w >> 8));
	add_byte(&s, (unsigned)(a & 0xff));
	add_byte(&s, (unsigned)(a >> 8));
	add(&s, wnids, w);
	add(&s, ann, a);
	if (j)
		add(&s, jpeg, j);
	emit("tinyimagenet", name, &s);
}

static void tinyimagenet_seeds(void)
{
	nb_fuzz_tiny_tree();
	size_t w, a, j;
	uint8_t *wnids = slurp("tiny/wnids.txt", &w);
	uint8_t *ann = slurp("tiny/val/val_annotations.txt", &a);
	uint8_t *jpeg = slurp("tiny/val/images/val_1.JPEG", &j);
	if (w > 0xffff || a > 0xffff)
		die("tinyimagenet", "annotation files over 64 KB");
	tiny_seed("train", 0, wnids, w, ann, a, NULL, 0);
	tiny_seed("val", 1, wnids, w, ann, a, NULL, 0);
	/* the first annotation line again, for the extra JPEG */
	const uint8_t *tab = memchr(ann, '\t', a);
	const uint8_t *nl = memchr(ann, '\n', a);
	if (!tab || !nl || nl < tab)
		die("tinyimagenet", "unexpected val_annotations.txt");
	seed more = {0};
	add(&more, ann, a);
	add(&more, "val_fuzz.JPEG", 13);
	add(&more, tab, (size_t)(nl - tab) + 1);
	tiny_seed("val-extra-jpeg", 1, wnids, w, more.b, more.n, jpeg, j);
	/* CR LF line ends and blank lines */
	seed crlf = {0}, acrlf = {0};
	for (size_t i = 0; i < w; i++) {
		if (wnids[i] == '\n')
			add(&crlf, "\r", 1);
		add(&crlf, wnids + i, 1);
	}
	add(&crlf, "\r\n\r\n", 4);
	for (size_t i = 0; i < a; i++) {
		if (ann[i] == '\n')
			add(&acrlf, "\r", 1);
		add(&acrlf, ann + i, 1);
	}
	tiny_seed("val-crlf", 1, crlf.b, crlf.n, acrlf.b, acrlf.n, NULL, 0);
	free(more.b);
	free(crlf.b);
	free(acrlf.b);
	free(wnids);
	free(ann);
	free(jpeg);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: make-corpus OUTDIR\n");
		return 2;
	}
	outdir = argv[1];
	if (mkdir(outdir, 0755) != 0 && errno != EEXIST)
		die(outdir, strerror(errno));
	idx_seeds();
	cifar_seeds();
	safetensors_seeds();
	checkpoint_seeds();
	store_seeds();
	tinyimagenet_seeds();
	return 0;
}
