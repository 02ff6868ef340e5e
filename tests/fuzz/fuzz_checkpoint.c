/*
 * fuzz_checkpoint.c - the model loader nb_checkpoint_load and
 * nb_checkpoint_read_meta (core/lib/checkpoint.c) with a small fixed
 * network: conv(3->4, 3x3, pad 1) -> BN2d -> ReLU -> maxpool 2 -> flatten
 * -> linear(36->8) -> BN1d -> ReLU -> linear(8->5) on 3x6x6 inputs, the
 * network of tests/unit/checkpoint_test.c (so its PyTorch fixture
 * tests/fixtures/torch_small.safetensors is a seed too).
 *
 * Input layout: the file itself.
 *
 * The network is built once per process; its parameters and counters are
 * copied right after, checked against after every failed load and put
 * back after every successful one, so no input sees another's state.
 *
 * Checked: a failed load changes nothing (parameters, counters, *meta),
 * as checkpoint.h promises; a successful load leaves only finite values,
 * gives the same metadata as nb_checkpoint_read_meta, and the values are
 * the file's; nb_checkpoint_read_meta leaves *meta alone when it fails.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "error.h"
#include "fuzz_util.h"
#include "net.h"

static nb_net *net;
static float *saved;	 /* every parameter, in table order */
static int64_t *saved_c; /* every counter */

nb_net *nb_fuzz_checkpoint_net(void)
{
	char err[NB_ERR_LEN] = "";
	nb_net *n = nb_net_new(3, 6, 6);
	int x = nb_net_add_conv2d(n, 0, "conv", 4, 3, 1, 1, 1, 1,
				  NB_INIT_DEFAULT, err);
	x = nb_net_add_batchnorm(n, x, "bn", 1e-5f, 0.1f, 1, err);
	x = nb_net_add_relu(n, x, err);
	x = nb_net_add_maxpool(n, x, 2, 2, 0, err);
	x = nb_net_add_flatten(n, x, err);
	x = nb_net_add_linear(n, x, "fc1", 8, 1, NB_INIT_DEFAULT, err);
	x = nb_net_add_batchnorm(n, x, "bn1", 1e-5f, 0.1f, 1, err);
	x = nb_net_add_relu(n, x, err);
	x = nb_net_add_linear(n, x, "fc2", 5, 1, NB_INIT_DEFAULT, err);
	if (x < 0 || nb_net_finalize(n, 1, err) < 0) {
		fprintf(stderr,
			"fuzz_checkpoint: cannot build the network: "
			"%s\n",
			err);
		abort();
	}
	return n;
}

static void release(void)
{
	nb_net_free(net);
	free(saved);
	free(saved_c);
	net = NULL;
	saved = NULL;
	saved_c = NULL;
}

static void setup(void)
{
	if (net)
		return;
	net = nb_fuzz_checkpoint_net();
	nb_param **p;
	nb_counter *c;
	int np = nb_net_params(net, &p), nc = nb_net_counters(net, &c);
	size_t total = 0;
	for (int i = 0; i < np; i++)
		total += p[i]->size;
	saved = malloc(total * sizeof *saved);
	saved_c = malloc((nc ? nc : 1) * sizeof *saved_c);
	if (!saved || !saved_c)
		abort();
	size_t at = 0;
	for (int i = 0; i < np; i++) {
		memcpy(saved + at, p[i]->data, p[i]->size * sizeof(float));
		at += p[i]->size;
	}
	for (int i = 0; i < nc; i++)
		saved_c[i] = c[i].value;
	atexit(release);
}

/* 1 when the network holds the saved state; restore puts it back. */
static int unchanged(int restore)
{
	nb_param **p;
	nb_counter *c;
	int np = nb_net_params(net, &p), nc = nb_net_counters(net, &c);
	int same = 1;
	size_t at = 0;
	for (int i = 0; i < np; i++) {
		size_t bytes = p[i]->size * sizeof(float);
		if (memcmp(saved + at, p[i]->data, bytes))
			same = 0;
		if (restore)
			memcpy(p[i]->data, saved + at, bytes);
		at += p[i]->size;
	}
	for (int i = 0; i < nc; i++) {
		if (c[i].value != saved_c[i])
			same = 0;
		if (restore)
			c[i].value = saved_c[i];
	}
	return same;
}

static int same_meta(const nb_ckpt_meta *a, const nb_ckpt_meta *b)
{
	return !strcmp(a->arch, b->arch) && a->classes == b->classes &&
	       a->in_c == b->in_c && a->in_h == b->in_h && a->in_w == b->in_w &&
	       !strcmp(a->strategy, b->strategy) &&
	       !strcmp(a->dataset, b->dataset) && a->epochs == b->epochs &&
	       a->seed == b->seed && a->best_acc == b->best_acc &&
	       !strcmp(a->version, b->version);
}

/* After a successful load: the values are the file's and finite. */
static void check_loaded(const char *path)
{
	char err[NB_ERR_LEN];
	nb_st_file *f = nb_st_open(path, err);
	NB_FUZZ_CHECK(f != NULL, "loaded, but nb_st_open fails: %s", err);
	nb_param **p;
	nb_counter *c;
	int np = nb_net_params(net, &p), nc = nb_net_counters(net, &c);
	for (int i = 0; i < np; i++) {
		const nb_st_tensor *t = nb_st_find(f, p[i]->name);
		NB_FUZZ_CHECK(t && t->nbytes == p[i]->size * sizeof(float) &&
				  !memcmp(t->data, p[i]->data, t->nbytes),
			      "parameter %s is not the file's", p[i]->name);
		for (size_t k = 0; k < p[i]->size; k++)
			NB_FUZZ_CHECK(isfinite(p[i]->data[k]),
				      "%s[%zu] not finite", p[i]->name, k);
	}
	for (int i = 0; i < nc; i++) {
		const nb_st_tensor *t = nb_st_find(f, c[i].name);
		int64_t v = 0;
		if (t) {
			NB_FUZZ_CHECK(t->nbytes == sizeof v, "counter %s size",
				      c[i].name);
			memcpy(&v, t->data, sizeof v);
		}
		NB_FUZZ_CHECK(c[i].value == v && v >= 0,
			      "counter %s is %lld, file %lld", c[i].name,
			      (long long)c[i].value, (long long)v);
	}
	nb_st_close(f);
}

int nb_fuzz_checkpoint(const uint8_t *data, size_t size)
{
	if (!data) /* an empty input may come as NULL */
		data = (const uint8_t *)"";
	setup();
	nb_fuzz_put("m.safetensors", data, size);
	char path[4096], err[NB_ERR_LEN];
	nb_fuzz_path(path, sizeof path, "m.safetensors");

	nb_ckpt_meta meta, sentinel, rmeta;
	memset(&sentinel, 0x5a, sizeof sentinel);
	sentinel.arch[0] = sentinel.strategy[0] = sentinel.dataset[0] =
	    sentinel.version[0] = '\0';
	sentinel.best_acc = 0.5;
	meta = sentinel;
	rmeta = sentinel;
	err[0] = '\0';
	int rc = nb_checkpoint_load(net, path, &meta, err);
	nb_fuzz_note("checkpoint: %d %s", rc, rc ? err : "loaded");
	if (rc < 0) {
		nb_fuzz_failed(rc, err);
		NB_FUZZ_CHECK(unchanged(1),
			      "failed load changed the network: "
			      "%s",
			      err);
		NB_FUZZ_CHECK(same_meta(&meta, &sentinel),
			      "failed load changed *meta: %s", err);
	} else {
		NB_FUZZ_CHECK(rc == 0, "rc %d", rc);
		check_loaded(path);
		unchanged(1);
	}

	err[0] = '\0';
	int rm = nb_checkpoint_read_meta(path, &rmeta, err);
	if (rm < 0) {
		nb_fuzz_failed(rm, err);
		NB_FUZZ_CHECK(rc < 0, "loaded, but read_meta fails: %s", err);
		NB_FUZZ_CHECK(same_meta(&rmeta, &sentinel),
			      "failed read_meta changed *meta: %s", err);
	} else if (rc == 0) {
		NB_FUZZ_CHECK(same_meta(&meta, &rmeta),
			      "load and read_meta disagree on the metadata");
	}
	return 0;
}

NB_FUZZ_TARGET(nb_fuzz_checkpoint)
