/*
 * fuzz_safetensors.c - the safetensors reader (core/lib/safetensors.c):
 * nb_st_read of the whole file and of the header only, and every accessor.
 *
 * Input layout: the file itself (the corpus is plain .safetensors files).
 *
 * Checked:
 *  - the full read and the header-only read agree (both fail, or both
 *    succeed with the same tensors and metadata), as checkpoint.h promises
 *    "the same checks";
 *  - on success, the tensors cover the data exactly in file order, each
 *    tensor's bytes are the file's bytes at its place, nbytes = dtype size
 *    x product of the shape, every name is found by nb_st_find, every
 *    metadata key by nb_st_meta, and nb_st_format_shape stays within its
 *    buffer however small.
 */
#include <stdint.h>
#include <string.h>

#include "checkpoint.h"
#include "error.h"
#include "fuzz_util.h"

static void check_file(const nb_st_file *f, const nb_st_file *h,
		       const uint8_t *data, size_t size)
{
	/* a valid file has its 8-byte header length within the file */
	uint64_t hlen = 0;
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | data[i];
	NB_FUZZ_CHECK(size >= 8 && hlen <= size - 8, "hlen %llu, size %zu",
		      (unsigned long long)hlen, size);
	const uint8_t *bytes = data + 8 + hlen;
	size_t data_len = size - 8 - (size_t)hlen;

	int n = nb_st_count(f);
	NB_FUZZ_CHECK(n >= 0 && n == nb_st_count(h), "counts %d and %d", n,
		      nb_st_count(h));
	NB_FUZZ_CHECK(nb_st_get(f, -1) == NULL && nb_st_get(f, n) == NULL,
		      "nb_st_get out of range");
	size_t at = 0;
	for (int i = 0; i < n; i++) {
		const nb_st_tensor *t = nb_st_get(f, i), *u = nb_st_get(h, i);
		NB_FUZZ_CHECK(t && u && t->name && u->name, "tensor %d", i);
		NB_FUZZ_CHECK(
		    !strcmp(t->name, u->name) && t->dtype == u->dtype &&
			t->ndim == u->ndim && t->nbytes == u->nbytes,
		    "tensor %d differs between full and header reads", i);
		NB_FUZZ_CHECK(u->data == NULL, "header-only data of tensor %d",
			      i);
		NB_FUZZ_CHECK(t->ndim >= 0 && t->ndim <= NB_ST_MAX_DIMS,
			      "ndim %d", t->ndim);
		size_t dsize = nb_dtype_size(t->dtype);
		NB_FUZZ_CHECK(dsize > 0 && nb_dtype_name(t->dtype), "dtype %d",
			      (int)t->dtype);
		uint64_t elems = 1;
		for (int d = 0; d < t->ndim; d++) {
			NB_FUZZ_CHECK(
			    t->shape[d] >= 0 && t->shape[d] == u->shape[d],
			    "shape[%d] = %lld", d, (long long)t->shape[d]);
			elems *= (uint64_t)t->shape[d];
		}
		NB_FUZZ_CHECK(
		    elems * dsize == t->nbytes,
		    "tensor %d: %llu elements of %zu bytes but nbytes "
		    "%zu",
		    i, (unsigned long long)elems, dsize, t->nbytes);
		NB_FUZZ_CHECK(t->nbytes <= data_len - at,
			      "tensor %d runs past the data", i);
		NB_FUZZ_CHECK(t->nbytes == 0 || t->data != NULL,
			      "tensor %d has no data", i);
		NB_FUZZ_CHECK(t->nbytes == 0 ||
				  !memcmp(t->data, bytes + at, t->nbytes),
			      "tensor %d: bytes differ from the file's", i);
		at += t->nbytes;
		NB_FUZZ_CHECK(nb_st_find(f, t->name) == t &&
				  nb_st_find(h, t->name) == u,
			      "nb_st_find misses tensor %d", i);
		char small[5], big[8 * 24 + 4];
		nb_st_format_shape(small, sizeof small, t->shape, t->ndim);
		nb_st_format_shape(big, sizeof big, t->shape, t->ndim);
		NB_FUZZ_CHECK(memchr(small, '\0', sizeof small) &&
				  memchr(big, '\0', sizeof big),
			      "shape text not terminated");
	}
	NB_FUZZ_CHECK(at == data_len, "tensors cover %zu of %zu data bytes", at,
		      data_len);
	int m = nb_st_meta_count(f);
	NB_FUZZ_CHECK(m >= 0 && m == nb_st_meta_count(h), "meta counts %d, %d",
		      m, nb_st_meta_count(h));
	NB_FUZZ_CHECK(nb_st_meta_key(f, m) == NULL, "meta key out of range");
	for (int i = 0; i < m; i++) {
		const char *k = nb_st_meta_key(f, i);
		NB_FUZZ_CHECK(k && !strcmp(k, nb_st_meta_key(h, i)), "key %d",
			      i);
		const char *v = nb_st_meta(f, k), *w = nb_st_meta(h, k);
		NB_FUZZ_CHECK(v && w && !strcmp(v, w), "value of key %d", i);
	}
}

int nb_fuzz_safetensors(const uint8_t *data, size_t size)
{
	if (!data) /* an empty input may come as NULL */
		data = (const uint8_t *)"";
	nb_fuzz_put("t.safetensors", data, size);
	char path[4096], err[NB_ERR_LEN], err2[NB_ERR_LEN];
	nb_fuzz_path(path, sizeof path, "t.safetensors");

	nb_st_file *f = (nb_st_file *)1, *h = (nb_st_file *)1;
	err[0] = err2[0] = '\0';
	int rc = nb_st_read(path, 0, &f, err);
	int rh = nb_st_read(path, 1, &h, err2);
	nb_fuzz_note("safetensors: %d %s", rc, rc ? err : "read");
	NB_FUZZ_CHECK((rc == 0) == (rh == 0),
		      "full read %d (%s) but header-only read %d (%s)", rc, err,
		      rh, err2);
	if (rc < 0) {
		NB_FUZZ_CHECK(f == NULL && h == NULL,
			      "file handed out on failure");
		nb_fuzz_failed(rc, err);
		nb_fuzz_failed(rh, err2);
		NB_FUZZ_CHECK(!strcmp(err, err2),
			      "different messages: '%s' and '%s'", err, err2);
		return 0;
	}
	NB_FUZZ_CHECK(f && h, "success without a file");
	NB_FUZZ_CHECK(!strcmp(nb_st_path(f), path), "path");
	check_file(f, h, data, size);
	nb_st_close(f);
	nb_st_close(h);
	return 0;
}

NB_FUZZ_TARGET(nb_fuzz_safetensors)
