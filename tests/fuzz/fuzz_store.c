/*
 * fuzz_store.c - the artefact store's summary.ini parser, through
 * nb_store_lookup (core/lib/store.c).
 *
 * One store per process under the scratch folder, with one artefact
 * folder (key NB_FUZZ_STORE_KEY_DESC's SHA-256) holding fixed
 * best.safetensors and log.csv files (NB_FUZZ_STORE_BEST / _LOG), written
 * once; each input only rewrites or removes summary.ini.
 *
 * Input layout:
 *   byte 0     bit 0: append "check = <SHA-256 of the text>" as the last
 *              line, so that the fuzzer gets past the checksum into the
 *              field parser; bit 1: no summary.ini at all; bit 2: look up
 *              with sum NULL
 *   the rest   summary.ini (or the text before its check line)
 *
 * Checked: the state is one of the enum's; ERROR and CORRUPT come with a
 * message; no summary means PARTIAL; *sum is only written for DONE, and
 * then holds terminated strings, this folder's key, a known status, both
 * checksums when the status is ok, and best_epoch <= epochs.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fuzz_util.h"
#include "store.h"

static nb_store *store;
static char key[65];

static void release(void)
{
	nb_store_close(store);
	store = NULL;
}

static void setup(void)
{
	if (store)
		return;
	char root[4096], err[NB_ERR_LEN], path[4096];
	nb_fuzz_path(root, sizeof root, "root");
	store = nb_store_open(root, err);
	if (!store) {
		fprintf(stderr, "fuzz_store: %s\n", err);
		abort();
	}
	atexit(release);
	nb_store_key(NB_FUZZ_STORE_KEY_DESC, key);
	if (nb_store_path(store, key, "best.safetensors", 1, path, sizeof path,
			  err) < 0) {
		fprintf(stderr, "fuzz_store: %s\n", err);
		abort();
	}
	/* the artefact's files, as names relative to the scratch folder */
	char rel[512];
	snprintf(rel, sizeof rel, "root/store/%s/best.safetensors", key);
	nb_fuzz_put(rel, NB_FUZZ_STORE_BEST, strlen(NB_FUZZ_STORE_BEST));
	snprintf(rel, sizeof rel, "root/store/%s/log.csv", key);
	nb_fuzz_put(rel, NB_FUZZ_STORE_LOG, strlen(NB_FUZZ_STORE_LOG));
}

static int terminated(const char *s, size_t size)
{
	return memchr(s, '\0', size) != NULL;
}

int nb_fuzz_store(const uint8_t *data, size_t size)
{
	if (!data) /* an empty input may come as NULL */
		data = (const uint8_t *)"";
	setup();
	unsigned flags = size > 0 ? data[0] : 0;
	const uint8_t *text = size > 0 ? data + 1 : data;
	size_t len = size > 0 ? size - 1 : 0;
	char rel[512];
	snprintf(rel, sizeof rel, "root/store/%s/summary.ini", key);
	if (flags & 2) {
		nb_fuzz_remove(rel);
	} else if (flags & 1) {
		char sum[65], line[80];
		nb_sha256_hex(text, len, sum);
		int k = snprintf(line, sizeof line, "check = %s\n", sum);
		uint8_t *buf = malloc(len + (size_t)k + 1);
		if (!buf)
			abort();
		memcpy(buf, text, len);
		memcpy(buf + len, line, (size_t)k);
		nb_fuzz_put(rel, buf, len + (size_t)k);
		free(buf);
	} else {
		nb_fuzz_put(rel, text, len);
	}

	nb_model_summary sum, sentinel;
	memset(&sentinel, 0x5a, sizeof sentinel);
	sum = sentinel;
	char err[NB_ERR_LEN] = "";
	enum nb_store_state st =
	    nb_store_lookup(store, key, (flags & 4) ? NULL : &sum, err);
	nb_fuzz_note("store: state %d %s", (int)st, err);
	NB_FUZZ_CHECK(st == NB_STORE_ERROR || st == NB_STORE_NONE ||
			  st == NB_STORE_PARTIAL || st == NB_STORE_DONE ||
			  st == NB_STORE_CORRUPT,
		      "state %d", (int)st);
	if (st == NB_STORE_ERROR || st == NB_STORE_CORRUPT)
		nb_fuzz_message(err);
	if (flags & 2)
		NB_FUZZ_CHECK(st == NB_STORE_PARTIAL,
			      "no summary.ini gave state %d", (int)st);
	if (st != NB_STORE_DONE || (flags & 4)) {
		NB_FUZZ_CHECK(!memcmp(&sum, &sentinel, sizeof sum),
			      "*sum written in state %d", (int)st);
		return 0;
	}
	NB_FUZZ_CHECK(terminated(sum.key, sizeof sum.key) &&
			  terminated(sum.status, sizeof sum.status) &&
			  terminated(sum.best_sha256, sizeof sum.best_sha256) &&
			  terminated(sum.log_sha256, sizeof sum.log_sha256) &&
			  terminated(sum.desc, sizeof sum.desc),
		      "a string of the summary is not terminated");
	NB_FUZZ_CHECK(!strcmp(sum.key, key), "key %s", sum.key);
	NB_FUZZ_CHECK(!strcmp(sum.status, "ok") ||
			  !strcmp(sum.status, "diverged") ||
			  !strcmp(sum.status, "failed"),
		      "status '%s'", sum.status);
	NB_FUZZ_CHECK(strcmp(sum.status, "ok") ||
			  (sum.best_sha256[0] && sum.log_sha256[0]),
		      "an ok model without checksums");
	NB_FUZZ_CHECK(sum.epochs >= 0 && sum.best_epoch >= 0 &&
			  sum.best_epoch <= sum.epochs,
		      "epochs %d, best_epoch %d", sum.epochs, sum.best_epoch);
	return 0;
}

NB_FUZZ_TARGET(nb_fuzz_store)
