/*
 * checkpoint_test.c - safetensors reading and writing, and checkpoints of
 * networks: round trips (parameters, buffers, counters, logits, metadata),
 * the exact bytes of a written file, a checkpoint written by PyTorch
 * (tests/fixtures/torch_small.safetensors, made by
 * make_checkpoint_fixture.py) loaded into the mirrored network, and a table
 * of hostile files: each must fail with a one-line message naming the file
 * and the problem, and leave the target network untouched.
 *
 * With NB_KEEP_CKPT set, two files written here are kept under $TMPDIR
 * (nb_ckpt_c_native.safetensors, nb_ckpt_torch_roundtrip.safetensors, each
 * with a .logits file) for tests/fixtures/check_torch_load.py.
 *
 * The network is built here with nb_net_add_* (no architecture plugin):
 * conv(3->4, 3x3, pad 1) -> BN2d -> ReLU -> maxpool 2 -> flatten ->
 * linear(36->8) -> BN1d -> ReLU -> linear(8->5), as in the fixture script.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dirent.h>
#include <sys/stat.h>

#include "config.h"

#include "checkpoint.h"
#include "error.h"
#include "net.h"
#include "testutil.h"

#include "../fixtures/golden_checkpoint.h"

/* ---- the network and its state ------------------------------------------- */

static nb_net *small_net(uint64_t seed)
{
	char err[NB_ERR_LEN] = "";
	nb_net *net = nb_net_new(GC_IN_C, GC_IN_H, GC_IN_W);
	int x = nb_net_add_conv2d(net, 0, "conv", 4, 3, 1, 1, 1, 1,
				  NB_INIT_DEFAULT, err);
	x = nb_net_add_batchnorm(net, x, "bn", 1e-5f, 0.1f, 1, err);
	x = nb_net_add_relu(net, x, err);
	x = nb_net_add_maxpool(net, x, 2, 2, 0, err);
	x = nb_net_add_flatten(net, x, err);
	x = nb_net_add_linear(net, x, "fc1", 8, 1, NB_INIT_DEFAULT, err);
	x = nb_net_add_batchnorm(net, x, "bn1", 1e-5f, 0.1f, 1, err);
	x = nb_net_add_relu(net, x, err);
	x = nb_net_add_linear(net, x, "fc2", GC_CLASSES, 1, NB_INIT_DEFAULT,
			      err);
	if (x < 0 || nb_net_finalize(net, seed, err) < 0) {
		fprintf(stderr, "small_net: %s\n", err);
		nb_net_free(net);
		return NULL;
	}
	return net;
}

/* A few training-mode forwards: running stats and counters move. */
static void train_forwards(nb_net *net, int steps, uint64_t seed)
{
	char err[NB_ERR_LEN];
	float x[8 * GC_IN_C * GC_IN_H * GC_IN_W];
	nb_net_set_training(net, 1);
	for (int s = 0; s < steps; s++) {
		tu_fill_normal(x, sizeof x / sizeof x[0], 1.0f, seed + s);
		CU_ASSERT_EQUAL(nb_net_forward(net, x, 8, err), 0);
	}
	nb_net_set_training(net, 0);
}

/* Evaluation logits for the fixed input, (GC_N, GC_CLASSES). */
static void eval_logits(nb_net *net, float *out)
{
	char err[NB_ERR_LEN];
	nb_net_set_training(net, 0);
	CU_ASSERT_EQUAL_FATAL(nb_net_forward(net, gc_input, GC_N, err), 0);
	memcpy(out, nb_net_output(net, nb_net_output_node(net)),
	       sizeof(float) * GC_N * GC_CLASSES);
}

typedef struct state {
	float *p;
	size_t n;
	int64_t c[16];
	int nc;
} state;

static state snapshot(const nb_net *net)
{
	state s = {0};
	nb_param **ps;
	int np = nb_net_params(net, &ps);
	for (int i = 0; i < np; i++)
		s.n += ps[i]->size;
	s.p = malloc(s.n * sizeof(float));
	size_t o = 0;
	for (int i = 0; i < np; i++) {
		memcpy(s.p + o, ps[i]->data, ps[i]->size * sizeof(float));
		o += ps[i]->size;
	}
	nb_counter *c;
	s.nc = nb_net_counters(net, &c);
	for (int i = 0; i < s.nc && i < 16; i++)
		s.c[i] = c[i].value;
	return s;
}

static int same_state(const state *a, const state *b)
{
	return a->n == b->n && a->nc == b->nc &&
	       memcmp(a->p, b->p, a->n * sizeof(float)) == 0 &&
	       memcmp(a->c, b->c, sizeof a->c) == 0;
}

/* ---- files --------------------------------------------------------------- */

static char *tmpdir;

static int suite_init(void)
{
	tmpdir = tu_mkdtemp();
	return tmpdir ? 0 : 1;
}

static int suite_clean(void)
{
	tu_rmtree(tmpdir);
	free(tmpdir);
	return 0;
}

static const char *tmp_path(const char *name)
{
	static char buf[4][4096];
	static int k;
	k = (k + 1) % 4;
	snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
	return buf[k];
}

static void write_bytes(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	if (len)
		CU_ASSERT_EQUAL(fwrite(data, 1, len, f), len);
	CU_ASSERT_EQUAL(fclose(f), 0);
}

static unsigned char *read_bytes(const char *path, size_t *len)
{
	*len = 0;
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *b = malloc(n > 0 ? (size_t)n : 1);
	*len = fread(b, 1, (size_t)n, f);
	fclose(f);
	return b;
}

/* With NB_KEEP_CKPT set: $TMPDIR/name (and name.logits) for
 * check_torch_load.py. */
static void keep_copy(const nb_net *net, const char *name, const float *logits)
{
	if (!getenv("NB_KEEP_CKPT"))
		return;
	const char *t = getenv("TMPDIR");
	char path[4096], lpath[4200], err[NB_ERR_LEN];
	snprintf(path, sizeof path, "%s/%s", t && *t ? t : "/tmp", name);
	nb_ckpt_meta m = {.best_acc = -1};
	snprintf(m.arch, sizeof m.arch, "checkpoint_test.small");
	CU_ASSERT_EQUAL(nb_checkpoint_save(net, &m, path, err), 0);
	snprintf(lpath, sizeof lpath, "%s.logits", path);
	FILE *f = fopen(lpath, "w");
	if (!f)
		return;
	for (int i = 0; i < GC_N * GC_CLASSES; i++)
		fprintf(f, "%.9g\n", logits[i]);
	fclose(f);
	fprintf(stderr, "\n  kept %s\n", path);
}

/* ---- round trips --------------------------------------------------------- */

static void roundtrip(void)
{
	char err[NB_ERR_LEN];
	nb_net *a = small_net(1), *b = small_net(2);
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	train_forwards(a, 3, 100);
	train_forwards(b, 1, 200);
	float la[GC_N * GC_CLASSES], lb[GC_N * GC_CLASSES];
	eval_logits(a, la);
	state sa = snapshot(a), sb = snapshot(b);
	CU_ASSERT_FALSE(same_state(&sa, &sb));
	CU_ASSERT_EQUAL(sa.c[0], 3);

	const char *path = tmp_path("rt.safetensors");
	nb_ckpt_meta m = {.classes = GC_CLASSES, .best_acc = 50};
	snprintf(m.arch, sizeof m.arch, "small");
	CU_ASSERT_EQUAL_FATAL(nb_checkpoint_save(a, &m, path, err), 0);
	int rc = nb_checkpoint_load(b, path, NULL, err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	if (rc)
		fprintf(stderr, "%s\n", err);
	state sb2 = snapshot(b);
	CU_ASSERT_TRUE(same_state(&sa, &sb2));
	eval_logits(b, lb);
	CU_ASSERT_EQUAL(memcmp(la, lb, sizeof la), 0);
	CU_ASSERT_EQUAL(tu_max_abs_diff(la, lb, GC_N * GC_CLASSES), 0.0);
	keep_copy(a, "nb_ckpt_c_native.safetensors", la);

	/* Saving over an existing file replaces it; no temporary is left. */
	train_forwards(a, 1, 300);
	CU_ASSERT_EQUAL(nb_checkpoint_save(a, &m, path, err), 0);
	CU_ASSERT_EQUAL(nb_checkpoint_load(b, path, NULL, err), 0);
	nb_counter *c;
	nb_net_counters(b, &c);
	CU_ASSERT_EQUAL(c[0].value, 4);
	CU_ASSERT_EQUAL(c[1].value, 4);
	DIR *d = opendir(tmpdir);
	struct dirent *e;
	while ((e = readdir(d)))
		CU_ASSERT_PTR_NULL(strstr(e->d_name, ".tmp"));
	closedir(d);
	free(sa.p);
	free(sb.p);
	free(sb2.p);
	nb_net_free(a);
	nb_net_free(b);
}

static void meta_roundtrip(void)
{
	char err[NB_ERR_LEN];
	nb_net *net = small_net(4);
	CU_ASSERT_PTR_NOT_NULL_FATAL(net);
	const char *path = tmp_path("meta.safetensors");
	nb_ckpt_meta m = {0}, r, r2;
	snprintf(m.arch, sizeof m.arch, "resnet18");
	snprintf(m.strategy, sizeof m.strategy, "nasty");
	snprintf(m.dataset, sizeof m.dataset, "cifar10 \"quoted\" \xc3\xa9");
	m.classes = GC_CLASSES;
	m.in_c = GC_IN_C;
	m.in_h = GC_IN_H;
	m.in_w = GC_IN_W;
	m.epochs = 200;
	m.seed = UINT64_MAX - 6;
	m.best_acc = 100.0 / 3.0;
	CU_ASSERT_EQUAL_FATAL(nb_checkpoint_save(net, &m, path, err), 0);
	CU_ASSERT_EQUAL_FATAL(nb_checkpoint_read_meta(path, &r, err), 0);
	CU_ASSERT_STRING_EQUAL(r.arch, "resnet18");
	CU_ASSERT_STRING_EQUAL(r.strategy, "nasty");
	CU_ASSERT_STRING_EQUAL(r.dataset, m.dataset);
	CU_ASSERT_STRING_EQUAL(r.version, PACKAGE_VERSION);
	CU_ASSERT_EQUAL(r.classes, GC_CLASSES);
	CU_ASSERT_EQUAL(r.in_c, GC_IN_C);
	CU_ASSERT_EQUAL(r.in_h, GC_IN_H);
	CU_ASSERT_EQUAL(r.in_w, GC_IN_W);
	CU_ASSERT_EQUAL(r.epochs, 200);
	CU_ASSERT_EQUAL(r.seed, UINT64_MAX - 6);
	CU_ASSERT_EQUAL(r.best_acc, 100.0 / 3.0); /* exact */
	CU_ASSERT_EQUAL(nb_checkpoint_load(net, path, &r2, err), 0);
	CU_ASSERT_EQUAL(memcmp(&r, &r2, sizeof r), 0);

	/* Unknown accuracy, no meta at all: best_acc stays unknown, the
	 * shapes come from the network. */
	CU_ASSERT_EQUAL(nb_checkpoint_save(net, NULL, path, err), 0);
	CU_ASSERT_EQUAL(nb_checkpoint_read_meta(path, &r, err), 0);
	CU_ASSERT_EQUAL(r.best_acc, -1);
	CU_ASSERT_STRING_EQUAL(r.arch, "");
	CU_ASSERT_EQUAL(r.classes, GC_CLASSES);
	CU_ASSERT_EQUAL(r.in_h, GC_IN_H);

	/* A file without metadata (PyTorch's): everything empty. */
	CU_ASSERT_EQUAL(
	    nb_checkpoint_read_meta(
		tu_srcpath("tests/fixtures/torch_small.safetensors"), &r, err),
	    0);
	CU_ASSERT_STRING_EQUAL(r.arch, "");
	CU_ASSERT_EQUAL(r.classes, 0);
	CU_ASSERT_EQUAL(r.best_acc, -1);

	/* Meta that contradicts the network is refused at save time. */
	m.classes = 10;
	CU_ASSERT_EQUAL(nb_checkpoint_save(net, &m, path, err), NB_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "10 classes"));
	m.classes = 0;
	m.in_h = 28;
	CU_ASSERT_EQUAL(nb_checkpoint_save(net, &m, path, err), NB_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "input"));
	nb_net_free(net);
}

/* ---- the bytes of a written file ----------------------------------------- */

static void file_bytes(void)
{
	char err[NB_ERR_LEN];
	nb_net *net = small_net(5);
	CU_ASSERT_PTR_NOT_NULL_FATAL(net);
	train_forwards(net, 2, 400);
	const char *path = tmp_path("bytes.safetensors");
	nb_ckpt_meta m = {.best_acc = 12.5};
	snprintf(m.arch, sizeof m.arch, "small");
	CU_ASSERT_EQUAL_FATAL(nb_checkpoint_save(net, &m, path, err), 0);
	size_t len;
	unsigned char *b = read_bytes(path, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	CU_ASSERT_FATAL(len >= 8);
	uint64_t n = 0;
	for (int i = 7; i >= 0; i--)
		n = n << 8 | b[i];
	CU_ASSERT_FATAL(n <= len - 8);
	CU_ASSERT_EQUAL((8 + n) % 8, 0); /* data starts 8-byte aligned */
	const char *h = (const char *)b + 8;

	/* Padding: spaces only, fewer than 8, after the closing brace. */
	size_t end = n;
	while (end > 0 && h[end - 1] == ' ')
		end--;
	CU_ASSERT(n - end < 8);
	CU_ASSERT_FATAL(end > 0 && h[end - 1] == '}');
	CU_ASSERT_PTR_NULL(memchr(h, '\0', n));

	/* The tensor part, exactly as the reference lays it out, in
	 * state_dict order with num_batches_tracked after running_var. */
	char *want = malloc(1 << 16);
	size_t w = 0, off = 0;
	nb_param **ps;
	int np = nb_net_params(net, &ps);
	unsigned char *data = malloc(len);
	size_t dlen = 0;
	for (int i = 0; i < np; i++) {
		w += (size_t)snprintf(want + w, 4096,
				      ",\"%s\":{\"dtype\":\"F32\",\"shape\":[",
				      ps[i]->name);
		for (int d = 0; d < ps[i]->ndim; d++)
			w += (size_t)snprintf(want + w, 64, "%s%d",
					      d ? "," : "", ps[i]->shape[d]);
		size_t nb = ps[i]->size * 4;
		w += (size_t)snprintf(want + w, 128,
				      "],\"data_offsets\":[%zu,%zu]}", off,
				      off + nb);
		memcpy(data + dlen, ps[i]->data, nb);
		dlen += nb;
		off += nb;
		const char *rv = strstr(ps[i]->name, ".running_var");
		if (rv && rv[12] == '\0') {
			nb_counter *c;
			int nc = nb_net_counters(net, &c);
			for (int k = 0; k < nc; k++)
				if (strncmp(c[k].name, ps[i]->name,
					    (size_t)(rv - ps[i]->name)) == 0 &&
				    strcmp(c[k].name + (rv - ps[i]->name),
					   ".num_batches_tracked") == 0) {
					w += (size_t)snprintf(
					    want + w, 4096,
					    ",\"%s\":{\"dtype\":\"I64\","
					    "\"shape\":[],\"data_offsets\":"
					    "[%zu,%zu]}",
					    c[k].name, off, off + 8);
					memcpy(data + dlen, &c[k].value, 8);
					dlen += 8;
					off += 8;
				}
		}
	}
	w += (size_t)snprintf(want + w, 8, "}");
	CU_ASSERT_FATAL(end >= w);
	CU_ASSERT_EQUAL(memcmp(h + end - w, want, w), 0);
	if (memcmp(h + end - w, want, w) != 0)
		fprintf(stderr, "\n got: %.*s\nwant: %s\n", (int)end, h, want);

	/* The metadata object comes first and holds every key. */
	const char *head = "{\"__metadata__\":{";
	CU_ASSERT_EQUAL(strncmp(h, head, strlen(head)), 0);
	char meta[4096];
	size_t mlen = end - w - strlen(head);
	CU_ASSERT_FATAL(mlen < sizeof meta);
	memcpy(meta, h + strlen(head), mlen);
	meta[mlen] = '\0';
	static const char *const pairs[] = {
	    "\"format\":\"pt\"",
	    "\"nasty_bench_version\":\"" PACKAGE_VERSION "\"",
	    "\"arch\":\"small\"",
	    "\"classes\":\"5\"",
	    "\"input\":\"3x6x6\"",
	    "\"strategy\":\"\"",
	    "\"dataset\":\"\"",
	    "\"epochs\":\"0\"",
	    "\"seed\":\"0\"",
	    "\"best_acc\":\"12.5\""};
	for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
		CU_ASSERT_PTR_NOT_NULL(strstr(meta, pairs[i]));
	CU_ASSERT_EQUAL(meta[mlen - 1], '}');

	/* The data: exactly the tensors' bytes, nothing after them. */
	CU_ASSERT_EQUAL(len, 8 + n + dlen);
	CU_ASSERT_EQUAL(memcmp(b + 8 + n, data, dlen), 0);
	free(data);
	free(want);
	free(b);
	nb_net_free(net);
}

/* The raw layer: every dtype, scalars, empty tensors, lookups. */
static void raw_write_read(void)
{
	char err[NB_ERR_LEN];
	const char *path = tmp_path("raw.safetensors");
	int8_t i8[3] = {-1, 2, -3};
	double f64[2] = {1.5, -2.25};
	int64_t i64 = -42;
	uint16_t f16[4] = {0x3c00, 0, 1, 2};
	nb_st_out t[] = {
	    {"b/int8", NB_DTYPE_I8, 1, {3}, i8, 3},
	    {"a.f64", NB_DTYPE_F64, 2, {1, 2}, f64, 16},
	    {"empty", NB_DTYPE_F32, 2, {0, 7}, NULL, 0},
	    {"scalar", NB_DTYPE_I64, 0, {0}, &i64, 8},
	    {"\xc3\xa9t\xc3\xa9", NB_DTYPE_F16, 1, {4}, f16, 8},
	};
	const char *keys[] = {"k", "unicode"};
	const char *vals[] = {"v", "\xe2\x9c\x93"};
	CU_ASSERT_EQUAL_FATAL(nb_st_write(path, t, 5, keys, vals, 2, err), 0);
	nb_st_file *f = nb_st_open(path, err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	CU_ASSERT_EQUAL(nb_st_count(f), 5);
	for (int i = 0; i < 5; i++) {
		const nb_st_tensor *g = nb_st_get(f, i);
		CU_ASSERT_STRING_EQUAL(g->name, t[i].name); /* file order */
		CU_ASSERT_EQUAL(g->dtype, t[i].dtype);
		CU_ASSERT_EQUAL(g->ndim, t[i].ndim);
		CU_ASSERT_EQUAL(g->nbytes, t[i].nbytes);
		CU_ASSERT(g->nbytes == 0 ||
			  memcmp(g->data, t[i].data, g->nbytes) == 0);
		CU_ASSERT_PTR_EQUAL(nb_st_find(f, t[i].name), g);
	}
	CU_ASSERT_EQUAL(nb_st_get(f, 1)->shape[1], 2);
	CU_ASSERT_PTR_NULL(nb_st_get(f, 5));
	CU_ASSERT_PTR_NULL(nb_st_find(f, "nope"));
	CU_ASSERT_PTR_NULL(nb_st_find(f, "__metadata__"));
	CU_ASSERT_STRING_EQUAL(nb_st_meta(f, "unicode"), "\xe2\x9c\x93");
	CU_ASSERT_PTR_NULL(nb_st_meta(f, "absent"));
	CU_ASSERT_EQUAL(nb_st_meta_count(f), 2);
	nb_st_close(f);
	f = nb_st_open_header(path, err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	CU_ASSERT_EQUAL(nb_st_count(f), 5);
	CU_ASSERT_PTR_NULL(nb_st_get(f, 0)->data);
	nb_st_close(f);

	/* The writer refuses what the reader would refuse. */
	nb_st_out dup[2] = {t[0], t[0]};
	CU_ASSERT_EQUAL(nb_st_write(path, dup, 2, NULL, NULL, 0, err),
			NB_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "twice"));
	nb_st_out bad = t[1];
	bad.nbytes = 12;
	CU_ASSERT_EQUAL(nb_st_write(path, &bad, 1, NULL, NULL, 0, err),
			NB_EINVAL);
	bad = t[1];
	bad.name = "__metadata__";
	CU_ASSERT_EQUAL(nb_st_write(path, &bad, 1, NULL, NULL, 0, err),
			NB_EINVAL);
	bad = t[1];
	bad.name = "\xff";
	CU_ASSERT_EQUAL(nb_st_write(path, &bad, 1, NULL, NULL, 0, err),
			NB_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "UTF-8"));
	const char *badv[] = {"\xc3"};
	CU_ASSERT_EQUAL(nb_st_write(path, t, 1, keys, badv, 1, err), NB_EINVAL);
	/* ... and a failed write leaves the old file in place. */
	f = nb_st_open(path, err);
	CU_ASSERT_PTR_NOT_NULL(f);
	CU_ASSERT_EQUAL(f ? nb_st_count(f) : 0, 5);
	nb_st_close(f);
	CU_ASSERT_EQUAL(nb_st_write(tmp_path("no/such/dir/x.safetensors"), t, 1,
				    NULL, NULL, 0, err),
			NB_EIO);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "no/such/dir/x.safetensors"));

	/* Zero tensors, no metadata: the smallest valid file. */
	CU_ASSERT_EQUAL(nb_st_write(path, NULL, 0, NULL, NULL, 0, err), 0);
	size_t len;
	unsigned char *b = read_bytes(path, &len);
	CU_ASSERT_EQUAL(len, 16);
	CU_ASSERT(b && b[0] == 8 && memcmp(b + 8, "{}      ", 8) == 0);
	free(b);
}

/* ---- PyTorch's file ------------------------------------------------------ */

static void torch_fixture(void)
{
	char err[NB_ERR_LEN];
	nb_net *net = small_net(9);
	CU_ASSERT_PTR_NOT_NULL_FATAL(net);
	const char *path = tu_srcpath("tests/fixtures/torch_small.safetensors");
	nb_ckpt_meta m;
	int rc = nb_checkpoint_load(net, path, &m, err);
	if (rc)
		fprintf(stderr, "\n%s\n", err);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	nb_counter *c;
	int nc = nb_net_counters(net, &c);
	CU_ASSERT_EQUAL(nc, 2);
	for (int i = 0; i < nc; i++)
		CU_ASSERT_EQUAL(c[i].value, GC_NUM_BATCHES_TRACKED);
	nb_param *rv = nb_net_param(net, "bn.running_var");
	CU_ASSERT_EQUAL(
	    memcmp(rv->data, gc_bn_running_var, sizeof gc_bn_running_var), 0);
	float l[GC_N * GC_CLASSES];
	eval_logits(net, l);
	double diff = tu_max_abs_diff(l, gc_logits, GC_N * GC_CLASSES);
	CU_ASSERT(diff <= 1e-5);
	if (!(diff <= 1e-5))
		fprintf(stderr, "\n  logits differ from PyTorch by %g\n", diff);
	keep_copy(net, "nb_ckpt_torch_roundtrip.safetensors", l);

	/* Old PyTorch files have no num_batches_tracked: loaded as 0. */
	nb_st_file *f = nb_st_open(path, err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	CU_ASSERT_EQUAL(nb_st_count(f), GC_N_TENSORS);
	nb_st_out out[GC_N_TENSORS];
	int n = 0;
	for (int i = 0; i < nb_st_count(f); i++) {
		const nb_st_tensor *t = nb_st_get(f, i);
		if (strstr(t->name, "num_batches_tracked"))
			continue;
		out[n] = (nb_st_out){t->name, t->dtype, t->ndim,
				     {0},     t->data,	t->nbytes};
		memcpy(out[n].shape, t->shape, sizeof t->shape);
		n++;
	}
	const char *old = tmp_path("old.safetensors");
	CU_ASSERT_EQUAL(nb_st_write(old, out, n, NULL, NULL, 0, err), 0);
	nb_st_close(f);
	CU_ASSERT_EQUAL(nb_checkpoint_load(net, old, NULL, err), 0);
	CU_ASSERT_EQUAL(c[0].value, 0);
	float l2[GC_N * GC_CLASSES];
	eval_logits(net, l2);
	CU_ASSERT_EQUAL(memcmp(l, l2, sizeof l), 0);
	nb_net_free(net);
}

/* ---- hostile files ------------------------------------------------------- */

/* One tensor of a header being built: JSON fragments, byte range. */
typedef struct ent {
	char name[160];
	char dtype[24];
	char shape[160]; /* JSON, e.g. "[4,3,3,3]" */
	size_t size;	 /* bytes */
	unsigned long long b, e;
} ent;

typedef struct spec {
	ent e[40];
	int n;
	char meta[512]; /* "__metadata__" object text, or "" */
	size_t extra;	/* bytes after the last tensor */
	long patch_at;	/* byte offset in the data to overwrite, or -1 */
	unsigned char patch[8];
	int patch_len;
} spec;

static void relayout(spec *s)
{
	unsigned long long off = 0;
	for (int i = 0; i < s->n; i++) {
		s->e[i].b = off;
		s->e[i].e = off + s->e[i].size;
		off = s->e[i].e;
	}
}

/* The layout nb_checkpoint_save would write, with zero data. */
static void spec_from_net(const nb_net *net, spec *s)
{
	memset(s, 0, sizeof *s);
	s->patch_at = -1;
	nb_param **ps;
	int np = nb_net_params(net, &ps);
	nb_counter *c;
	int nc = nb_net_counters(net, &c);
	for (int i = 0; i < np; i++) {
		ent *e = &s->e[s->n++];
		snprintf(e->name, sizeof e->name, "%s", ps[i]->name);
		snprintf(e->dtype, sizeof e->dtype, "F32");
		size_t o = (size_t)snprintf(e->shape, sizeof e->shape, "[");
		for (int d = 0; d < ps[i]->ndim; d++)
			o += (size_t)snprintf(e->shape + o, sizeof e->shape - o,
					      "%s%d", d ? "," : "",
					      ps[i]->shape[d]);
		snprintf(e->shape + o, sizeof e->shape - o, "]");
		e->size = ps[i]->size * 4;
	}
	for (int i = 0; i < nc; i++) {
		ent *e = &s->e[s->n++];
		snprintf(e->name, sizeof e->name, "%s", c[i].name);
		snprintf(e->dtype, sizeof e->dtype, "I64");
		snprintf(e->shape, sizeof e->shape, "[]");
		e->size = 8;
	}
	relayout(s);
}

static ent *find_ent(spec *s, const char *name)
{
	for (int i = 0; i < s->n; i++)
		if (strcmp(s->e[i].name, name) == 0)
			return &s->e[i];
	CU_FAIL("find_ent");
	return &s->e[0];
}

static void drop_ent(spec *s, const char *name)
{
	ent *e = find_ent(s, name);
	int i = (int)(e - s->e);
	memmove(&s->e[i], &s->e[i + 1], (size_t)(s->n - i - 1) * sizeof *e);
	s->n--;
}

/* 8-byte length + header (padded) + data_len bytes (zeros). */
static unsigned char *assemble(const char *json, size_t data_len, size_t *len)
{
	size_t h = strlen(json), ph = (h + 7) & ~(size_t)7;
	unsigned char *b = calloc(1, 8 + ph + data_len + 1);
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)((uint64_t)ph >> (8 * i));
	memcpy(b + 8, json, h);
	memset(b + 8 + h, ' ', ph - h);
	*len = 8 + ph + data_len;
	return b;
}

static unsigned char *render(const spec *s, size_t *len)
{
	char *j = malloc(1 << 16);
	size_t o = 0;
	unsigned long long end = 0;
	o += (size_t)snprintf(j + o, 64, "{");
	if (s->meta[0])
		o += (size_t)snprintf(j + o, 600, "\"__metadata__\":%s",
				      s->meta);
	for (int i = 0; i < s->n; i++) {
		const ent *e = &s->e[i];
		o += (size_t)snprintf(j + o, 1024,
				      "%s\"%s\":{\"dtype\":\"%s\",\"shape\":%s,"
				      "\"data_offsets\":[%llu,%llu]}",
				      o > 1 ? "," : "", e->name, e->dtype,
				      e->shape, e->b, e->e);
		if (e->e > end)
			end = e->e;
	}
	snprintf(j + o, 8, "}");
	unsigned char *b = assemble(j, (size_t)end + s->extra, len);
	free(j);
	if (s->patch_at >= 0)
		memcpy(b + *len - ((size_t)end + s->extra) + s->patch_at,
		       s->patch, (size_t)s->patch_len);
	return b;
}

/*
 * Writes bytes to a fresh file and checks that loading it into a trained
 * network fails with code (any error if 0), a one-line message naming the
 * file and containing want, and leaves the network as it was; with
 * meta_fails, nb_checkpoint_read_meta must fail in the same way.
 */
static void expect_rejected(const char *tag, const unsigned char *bytes,
			    size_t len, const char *want, int code,
			    int meta_fails)
{
	static int serial;
	char name[64], err[NB_ERR_LEN] = "";
	snprintf(name, sizeof name, "hostile%03d.safetensors", serial++);
	const char *path = tmp_path(name);
	if (bytes)
		write_bytes(path, bytes, len);
	nb_net *net = small_net(3);
	CU_ASSERT_PTR_NOT_NULL_FATAL(net);
	train_forwards(net, 2, 500);
	state before = snapshot(net);
	nb_ckpt_meta m;
	memset(&m, 0x5a, sizeof m);
	int rc = nb_checkpoint_load(net, path, &m, err);
	int ok = rc < 0 && (!code || rc == code) && strstr(err, path) &&
		 strstr(err, want) && !strchr(err, '\n');
	if (!ok)
		fprintf(stderr, "\n  [%s] rc %d, want \"%s\": %s\n", tag, rc,
			want, err);
	else if (getenv("NB_TEST_VERBOSE"))
		fprintf(stderr, "\n  [%s] %s", tag, err);
	CU_ASSERT(ok);
	state after = snapshot(net);
	CU_ASSERT(same_state(&before, &after));
	CU_ASSERT_EQUAL(((unsigned char *)&m)[0], 0x5a); /* meta untouched */
	if (meta_fails) {
		char err2[NB_ERR_LEN] = "";
		rc = nb_checkpoint_read_meta(path, &m, err2);
		ok = rc < 0 && strstr(err2, path) && strstr(err2, want);
		if (!ok)
			fprintf(stderr, "\n  [%s] read_meta rc %d: %s\n", tag,
				rc, err2);
		CU_ASSERT(ok);
	}
	free(before.p);
	free(after.p);
	nb_net_free(net);
	remove(path);
}

/* A whole raw header with data_len zero bytes after it. */
typedef struct raw_case {
	const char *tag;
	const char *json;
	size_t data_len;
	const char *want;
} raw_case;

static const raw_case raw_cases[] = {
    {"empty header", "", 0, "not valid JSON"},
    {"bad JSON", "{\"a\":{\"dtype\":", 0, "not valid JSON"},
    {"trailing JSON", "{} x", 0, "not valid JSON"},
    {"array header", "[1,2,3]", 0, "is an array, not a JSON object"},
    {"string header", "\"x\"", 0, "not valid JSON"},
    {"binary header", "\x01\x02\x03", 0, "not valid JSON"},
    {"duplicate names",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
     8, "duplicate name '\"a\"' in the header"},
    {"non-UTF-8 name",
     "{\"\xff\xfe\":{\"dtype\":\"F32\",\"shape\":[1],"
     "\"data_offsets\":[0,4]}}",
     4, "not valid JSON"},
    {"overlong UTF-8 name",
     "{\"\xc0\xaf\":{\"dtype\":\"F32\",\"shape\":[1],"
     "\"data_offsets\":[0,4]}}",
     4, "not valid JSON"},
    {"NUL in name",
     "{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],"
     "\"data_offsets\":[0,4]}}",
     4, "not valid JSON"},
    {"lone surrogate in name",
     "{\"\\ud800\":{\"dtype\":\"F32\",\"shape\":[1],"
     "\"data_offsets\":[0,4]}}",
     4, "not valid JSON"},
    {"control bytes in a name",
     "{\"a\\nb\\u0001\":{\"dtype\":\"Q4\",\"shape\":[1],"
     "\"data_offsets\":[0,1]}}",
     1, "tensor 'a\\x0ab\\x01': unsupported dtype 'Q4'"},
    {"unknown dtype",
     "{\"x\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
     "unsupported dtype 'Q4'"},
    {"dtype not a string",
     "{\"x\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "dtype is an integer"},
    {"description not an object", "{\"x\":5}", 0,
     "tensor 'x': description is an integer"},
    {"no dtype", "{\"x\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "no \"dtype\" field"},
    {"no shape", "{\"x\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4,
     "no \"shape\" field"},
    {"no data_offsets", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4,
     "no \"data_offsets\" field"},
    {"shape not an array",
     "{\"x\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}}", 16,
     "shape is an integer, not an array"},
    {"negative shape entry",
     "{\"x\":{\"dtype\":\"F32\",\"shape\":[-1,4],\"data_offsets\":[0,0]}}", 0,
     "shape entry 0 is a negative integer"},
    {"fractional shape entry",
     "{\"x\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,10]}}", 10,
     "shape entry 0 is a non-integer number"},
    {"exponent shape entry",
     "{\"x\":{\"dtype\":\"F32\",\"shape\":[1e1],\"data_offsets\":[0,40]}}", 40,
     "non-integer"},
    {"string shape entry",
     "{\"x\":{\"dtype\":\"F32\",\"shape\":[2,\"4\"],\"data_offsets\":[0,"
     "32]}}",
     32, "shape entry 1 is a string"},
    {"too many dimensions",
     "{\"x\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],"
     "\"data_offsets\":[0,1]}}",
     1, "9 dimensions"},
    {"element count overflows int64",
     "{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],"
     "\"data_offsets\":[0,0]}}",
     0, "overflow"},
    {"byte count overflows",
     "{\"x\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],"
     "\"data_offsets\":[0,0]}}",
     0, "overflow"},
    {"overflow before a zero dimension",
     "{\"x\":{\"dtype\":\"U8\",\"shape\":[9223372036854775807,2,0],"
     "\"data_offsets\":[0,0]}}",
     0, "overflow"},
    {"shape entry beyond int64",
     "{\"x\":{\"dtype\":\"U8\",\"shape\":[18446744073709551617],"
     "\"data_offsets\":[0,1]}}",
     1, "not valid JSON"},
    {"data_offsets not a pair",
     "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
     "data_offsets is not an array"},
    {"negative data_offsets",
     "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
     "non-negative"},
    {"end before begin",
     "{\"x\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8,
     "end before begin"},
    {"range does not match the shape",
     "{\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[6,1,5,5],"
     "\"data_offsets\":[0,100]}}",
     100,
     "tensor 'conv1.weight': data_offsets [0, 100] but shape [6,1,5,5] "
     "F32 needs 600 bytes"},
    {"range past the end",
     "{\"x\":{\"dtype\":\"F32\",\"shape\":[100],\"data_offsets\":[0,400]}}",
     200, "truncated"},
    {"overlapping ranges",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
     12, "tensors 'a' and 'b' overlap"},
    {"identical ranges",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
     8, "overlap"},
    {"gap between tensors",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
     20, "bytes [8, 12) of the data belong to no tensor"},
    {"gap at the start",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
     "bytes [0, 4)"},
    {"trailing bytes",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 11,
     "3 trailing bytes"},
    {"data without tensors", "{}", 5, "5 trailing bytes"},
    {"metadata not an object", "{\"__metadata__\":[\"a\"]}", 0,
     "\"__metadata__\" is an array"},
    {"non-string metadata", "{\"__metadata__\":{\"epochs\":5}}", 0,
     "value of 'epochs' is an integer, not a string"},
    {"metadata not a number", "{\"__metadata__\":{\"classes\":\"ten\"}}", 0,
     "metadata 'classes' is \"ten\", not a whole number"},
    {"metadata negative", "{\"__metadata__\":{\"epochs\":\"-3\"}}", 0,
     "not a whole number"},
    {"metadata seed overflow",
     "{\"__metadata__\":{\"seed\":\"18446744073709551616\"}}", 0,
     "metadata 'seed'"},
    {"metadata bad input", "{\"__metadata__\":{\"input\":\"3xx6x6\"}}", 0,
     "not CxHxW"},
    {"metadata bad input 2", "{\"__metadata__\":{\"input\":\"3x6\"}}", 0,
     "not CxHxW"},
    {"metadata accuracy not a number",
     "{\"__metadata__\":{\"best_acc\":\"nan\"}}", 0, "not a number"},
    {"metadata string too long",
     "{\"__metadata__\":{\"arch\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}}",
     0, "longer than 63 bytes"},
    {NULL, NULL, 0, NULL}};

static void hostile_headers(void)
{
	size_t len;
	for (const raw_case *c = raw_cases; c->tag; c++) {
		unsigned char *b = assemble(c->json, c->data_len, &len);
		expect_rejected(c->tag, b, len, c->want, NB_EFORMAT, 1);
		free(b);
	}
	/* Nesting far deeper than any parser stack should follow. */
	size_t depth = 100000;
	char *j = malloc(2 * depth + 16);
	size_t o = (size_t)sprintf(j, "{\"a\":");
	memset(j + o, '[', depth);
	memset(j + o + depth, ']', depth);
	strcpy(j + o + 2 * depth, "}");
	unsigned char *b = assemble(j, 0, &len);
	expect_rejected("deep nesting", b, len, "not valid JSON", NB_EFORMAT,
			1);
	free(b);
	free(j);
}

/* Files laid out like the network's own checkpoint, with one thing
 * wrong that only the comparison with the network can see. */
typedef struct net_case {
	const char *tag;
	void (*mutate)(spec *s);
	const char *want;
	int code;
} net_case;

static void mut_f64(spec *s)
{
	ent *e = find_ent(s, "conv.weight");
	snprintf(e->dtype, sizeof e->dtype, "F64");
	e->size *= 2;
	relayout(s);
}
static void mut_f16(spec *s)
{
	ent *e = find_ent(s, "fc1.weight");
	snprintf(e->dtype, sizeof e->dtype, "F16");
	e->size /= 2;
	relayout(s);
}
static void mut_counter_f32(spec *s)
{
	ent *e = find_ent(s, "bn1.num_batches_tracked");
	snprintf(e->dtype, sizeof e->dtype, "F32");
	e->size = 4;
	relayout(s);
}
static void mut_counter_shape(spec *s)
{
	ent *e = find_ent(s, "bn.num_batches_tracked");
	snprintf(e->shape, sizeof e->shape, "[1]");
}
static void mut_counter_negative(spec *s)
{
	ent *e = find_ent(s, "bn.num_batches_tracked");
	s->patch_at = (long)e->b;
	memset(s->patch, 0xff, 8);
	s->patch_len = 8;
}
static void mut_transposed(spec *s)
{
	snprintf(find_ent(s, "fc2.weight")->shape, 160, "[8,5]");
}
static void mut_flat(spec *s)
{
	snprintf(find_ent(s, "fc1.weight")->shape, 160, "[288]");
}
static void mut_more_classes(spec *s)
{
	ent *e = find_ent(s, "fc2.bias");
	snprintf(e->shape, sizeof e->shape, "[6]");
	e->size = 24;
	relayout(s);
}
static void mut_missing(spec *s)
{
	drop_ent(s, "bn.running_mean");
	relayout(s);
}
static void mut_extra(spec *s)
{
	ent *e = &s->e[s->n++];
	snprintf(e->name, sizeof e->name, "head.weight");
	snprintf(e->dtype, sizeof e->dtype, "F32");
	snprintf(e->shape, sizeof e->shape, "[3]");
	e->size = 12;
	relayout(s);
}
static void mut_extra_first(spec *s)
{
	memmove(&s->e[1], &s->e[0], (size_t)s->n * sizeof s->e[0]);
	s->n++;
	snprintf(s->e[0].name, sizeof s->e[0].name, "module.conv.weight");
	relayout(s);
}
static void mut_nan(spec *s)
{
	ent *e = find_ent(s, "fc1.bias");
	float v = NAN;
	s->patch_at = (long)e->b + 8;
	memcpy(s->patch, &v, 4);
	s->patch_len = 4;
}
static void mut_inf(spec *s)
{
	ent *e = find_ent(s, "bn.running_var");
	float v = -INFINITY;
	s->patch_at = (long)e->b;
	memcpy(s->patch, &v, 4);
	s->patch_len = 4;
}
static void mut_classes(spec *s)
{
	snprintf(s->meta, sizeof s->meta, "{\"classes\":\"7\"}");
}
static void mut_input(spec *s)
{
	snprintf(s->meta, sizeof s->meta,
		 "{\"input\":\"1x28x28\",\"format\":\"pt\"}");
}
static void mut_overlap(spec *s)
{
	ent *e = find_ent(s, "fc2.bias");
	e->b -= 4;
	e->e -= 4;
	s->extra = 4;
}
static void mut_gap(spec *s)
{
	ent *e = find_ent(s, "fc2.bias");
	e->b += 4;
	e->e += 4;
}
static void mut_trailing(spec *s)
{
	s->extra = 1;
}
static void mut_name_newline(spec *s)
{
	mut_extra(s);
	snprintf(s->e[s->n - 1].name, 160, "evil\\nERROR: x");
}

static const net_case net_cases[] = {
    {"F64 parameter", mut_f64,
     "tensor 'conv.weight' is F64 but nasty-bench needs F32", NB_EFORMAT},
    {"F16 parameter", mut_f16, "tensor 'fc1.weight' is F16", NB_EFORMAT},
    {"F32 counter", mut_counter_f32,
     "tensor 'bn1.num_batches_tracked' must be a scalar I64", NB_EFORMAT},
    {"counter with shape [1]", mut_counter_shape,
     "'bn.num_batches_tracked' must be a scalar I64", NB_EFORMAT},
    {"negative counter", mut_counter_negative, "is -1, a negative count",
     NB_EFORMAT},
    {"transposed weight", mut_transposed,
     "tensor 'fc2.weight' has shape [8,5] but the network expects [5,8]",
     NB_EFORMAT},
    {"flattened weight", mut_flat, "has shape [288] but", NB_EFORMAT},
    {"more classes", mut_more_classes,
     "'fc2.bias' has shape [6] but the network expects [5]", NB_EFORMAT},
    {"missing tensor", mut_missing, "tensor 'bn.running_mean' is missing",
     NB_EFORMAT},
    {"extra tensor", mut_extra, "unexpected tensor 'head.weight'", NB_EFORMAT},
    {"extra tensor first", mut_extra_first,
     "unexpected tensor 'module.conv.weight'", NB_EFORMAT},
    {"NaN weight", mut_nan, "tensor 'fc1.bias' element 2 is not finite",
     NB_ENUMERIC},
    {"Inf running_var", mut_inf, "'bn.running_var' element 0 is not",
     NB_ENUMERIC},
    {"metadata classes", mut_classes, "for 7 classes but", NB_EFORMAT},
    {"metadata input", mut_input, "for input 1x28x28 but", NB_EFORMAT},
    {"overlap", mut_overlap, "tensors 'fc2.weight' and 'fc2.bias' overlap",
     NB_EFORMAT},
    {"gap", mut_gap, "belong to no tensor (gap before 'fc2.bias')", NB_EFORMAT},
    {"trailing byte", mut_trailing, "1 trailing byte after", NB_EFORMAT},
    {"newline in a name", mut_name_newline,
     "unexpected tensor 'evil\\x0aERROR: x'", NB_EFORMAT},
    {NULL, NULL, NULL, 0}};

static void hostile_against_net(void)
{
	nb_net *net = small_net(3);
	CU_ASSERT_PTR_NOT_NULL_FATAL(net);
	spec *s = malloc(sizeof *s);
	/* The unmutated layout loads (the cases test one thing each). */
	char err[NB_ERR_LEN];
	size_t len;
	spec_from_net(net, s);
	unsigned char *b = render(s, &len);
	write_bytes(tmp_path("layout.safetensors"), b, len);
	free(b);
	CU_ASSERT_EQUAL(
	    nb_checkpoint_load(net, tmp_path("layout.safetensors"), NULL, err),
	    0);
	for (const net_case *c = net_cases; c->tag; c++) {
		spec_from_net(net, s);
		c->mutate(s);
		b = render(s, &len);
		int header_problem =
		    c->mutate == mut_overlap || c->mutate == mut_gap ||
		    c->mutate == mut_trailing || c->mutate == mut_input ||
		    c->mutate == mut_classes;
		/* metadata classes/input are fine for read_meta */
		header_problem &=
		    c->mutate != mut_input && c->mutate != mut_classes;
		expect_rejected(c->tag, b, len, c->want, c->code,
				header_problem);
		free(b);
	}
	free(s);
	nb_net_free(net);
}

/* Byte-level damage to a real checkpoint: cuts and header lengths. */
static void hostile_bytes(void)
{
	char err[NB_ERR_LEN];
	nb_net *net = small_net(6);
	CU_ASSERT_PTR_NOT_NULL_FATAL(net);
	const char *path = tmp_path("good.safetensors");
	CU_ASSERT_EQUAL_FATAL(nb_checkpoint_save(net, NULL, path, err), 0);
	nb_net_free(net);
	size_t len;
	unsigned char *good = read_bytes(path, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(good);
	uint64_t n = 0;
	for (int i = 7; i >= 0; i--)
		n = n << 8 | good[i];
	unsigned char *b = malloc(len + 16);

	/* Truncations at several points. */
	const struct {
		size_t at;
		const char *want;
	} cuts[] = {
	    {0, "empty file"},
	    {3, "3 bytes, too short"},
	    {8, "runs past the end of the file (8 bytes)"},
	    {8 + (size_t)n / 2, "runs past the end"},
	    {8 + (size_t)n - 1, "runs past the end"},
	    {8 + (size_t)n, "truncated"},
	    {8 + (size_t)n + 1, "truncated"},
	    {8 + (size_t)n + (len - 8 - (size_t)n) / 2, "truncated"},
	    {len - 1, "truncated"},
	};
	for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
		char tag[64];
		snprintf(tag, sizeof tag, "cut at %zu of %zu", cuts[i].at, len);
		expect_rejected(tag, good, cuts[i].at, cuts[i].want, NB_EFORMAT,
				1);
	}

	/* Declared header lengths. */
	const struct {
		uint64_t n;
		const char *want;
	} lens[] = {
	    {(uint64_t)len, "runs past the end"},
	    {(uint64_t)len - 8 + 1, "runs past the end"},
	    {100000001ull, "exceeds the 100000000 byte limit"},
	    {UINT64_MAX, "declared header length 18446744073709551615 "
			 "exceeds"},
	    {(uint64_t)1 << 63, "exceeds"},
	    {n - 8, "not valid JSON"}, /* cuts the JSON */
	    {n + 8, "not valid JSON"}, /* swallows tensor bytes */
	    {0, "not valid JSON"},
	};
	for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
		char tag[64];
		memcpy(b, good, len);
		for (int k = 0; k < 8; k++)
			b[k] = (unsigned char)(lens[i].n >> (8 * k));
		snprintf(tag, sizeof tag, "header length %llu",
			 (unsigned long long)lens[i].n);
		expect_rejected(tag, b, len, lens[i].want, NB_EFORMAT, 1);
	}

	/* A byte of the JSON replaced by an invalid UTF-8 byte. */
	memcpy(b, good, len);
	char *q = memchr(b + 8, 'c', (size_t)n); /* in "conv..." */
	CU_ASSERT_PTR_NOT_NULL_FATAL(q);
	*q = (char)0xff;
	expect_rejected("non-UTF-8 byte", b, len, "not valid JSON", NB_EFORMAT,
			1);

	/* Missing file, a directory. */
	expect_rejected("missing file", NULL, 0, "cannot open", NB_EIO, 1);
	char err2[NB_ERR_LEN];
	nb_net *t = small_net(3);
	CU_ASSERT_EQUAL(nb_checkpoint_load(t, tmpdir, NULL, err2), NB_EIO);
	CU_ASSERT_PTR_NOT_NULL(strstr(err2, "not a regular file"));
	/* A FIFO must not block waiting for a writer. */
	const char *fifo = tmp_path("fifo.safetensors");
	CU_ASSERT_EQUAL_FATAL(mkfifo(fifo, 0600), 0);
	CU_ASSERT_EQUAL(nb_checkpoint_load(t, fifo, NULL, err2), NB_EIO);
	CU_ASSERT_PTR_NOT_NULL(strstr(err2, "not a regular file"));
	CU_ASSERT_EQUAL(nb_checkpoint_read_meta(fifo, NULL, err2), NB_EIO);
	remove(fifo);
	nb_net_free(t);
	free(b);
	free(good);
}

/* Refusals on the way out: a diverged network, an unfinished one. */
static void save_refusals(void)
{
	char err[NB_ERR_LEN];
	nb_net *net = small_net(8);
	CU_ASSERT_PTR_NOT_NULL_FATAL(net);
	const char *path = tmp_path("refused.safetensors");
	nb_param *p = nb_net_param(net, "fc1.weight");
	float keep = p->data[3];
	p->data[3] = NAN;
	CU_ASSERT_EQUAL(nb_checkpoint_save(net, NULL, path, err), NB_ENUMERIC);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "'fc1.weight' element 3"));
	struct stat st;
	CU_ASSERT_NOT_EQUAL(stat(path, &st), 0); /* nothing written */
	p->data[3] = keep;
	nb_net_free(net);

	nb_net *raw = nb_net_new(1, 2, 2);
	nb_net_add_linear(raw, 0, "fc", 2, 1, NB_INIT_DEFAULT, err);
	CU_ASSERT_EQUAL(nb_checkpoint_save(raw, NULL, path, err), NB_EINVAL);
	CU_ASSERT_EQUAL(nb_checkpoint_load(raw, path, NULL, err), NB_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "not finalised"));
	nb_net_free(raw);
}

static const nb_test_entry tests[] = {
    {"round trip: parameters, buffers, counters, logits", roundtrip},
    {"metadata round trip", meta_roundtrip},
    {"written bytes are canonical safetensors", file_bytes},
    {"raw safetensors: dtypes, scalars, empty tensors", raw_write_read},
    {"PyTorch-written checkpoint gives PyTorch's logits", torch_fixture},
    {"hostile headers", hostile_headers},
    {"hostile files for this network", hostile_against_net},
    {"truncated files and bad header lengths", hostile_bytes},
    {"save refuses NaN and unfinished networks", save_refusals},
    {NULL, NULL}};

void nb_test_checkpoint(void)
{
	CU_pSuite s = CU_add_suite("checkpoint", suite_init, suite_clean);
	if (!s)
		return;
	for (const nb_test_entry *t = tests; t->name; t++)
		CU_add_test(s, t->name, t->fn);
}
