/*
 * checkpoint.h - models as safetensors files, readable by PyTorch.
 *
 * The safetensors format: an 8-byte little-endian header length N, N bytes
 * of UTF-8 JSON mapping each tensor name to {"dtype", "shape",
 * "data_offsets": [begin, end]} (offsets into the byte buffer that follows
 * the header) plus an optional "__metadata__" object of string values, then
 * the tensor bytes, little-endian, row-major.
 *
 * A network is saved under its PyTorch state_dict names: every parameter
 * and buffer as F32, every BatchNorm's num_batches_tracked as a scalar I64,
 * so that `model.load_state_dict(safetensors.torch.load_file(path),
 * strict=True)` accepts it. Loading checks that the file holds exactly the
 * network's tensors with the same shapes (num_batches_tracked may be
 * absent, as in old PyTorch checkpoints) and reports the first problem in
 * one line; nothing in the network is changed unless the whole file is
 * good. Writes are atomic (temporary file, fsync, rename).
 */
#ifndef NASTY_BENCH_CHECKPOINT_H
#define NASTY_BENCH_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "net.h"

/* ---- raw safetensors ---------------------------------------------------- */
enum nb_dtype {
	NB_DTYPE_F32 = 1,
	NB_DTYPE_F64,
	NB_DTYPE_F16,
	NB_DTYPE_BF16,
	NB_DTYPE_I64,
	NB_DTYPE_I32,
	NB_DTYPE_I16,
	NB_DTYPE_I8,
	NB_DTYPE_U8,
	NB_DTYPE_BOOL
};

#define NB_ST_MAX_DIMS 8

typedef struct nb_st_tensor {
	char *name;
	enum nb_dtype dtype;
	int ndim;
	int64_t shape[NB_ST_MAX_DIMS];
	size_t nbytes;
	const void *data; /* into the file's buffer (not aligned) */
} nb_st_tensor;

/* The name of a dtype ("F32", ...) and its size in bytes; NULL / 0 for a
 * value outside the enum. */
const char *nb_dtype_name(enum nb_dtype dtype);
size_t nb_dtype_size(enum nb_dtype dtype);

/*
 * An open, fully validated file. Ownership: nb_st_open allocates it, the
 * caller frees it with nb_st_close; every pointer handed out (tensors,
 * names, data, metadata strings) belongs to it and dies with it.
 */
typedef struct nb_st_file nb_st_file;

/*
 * Reads a whole file into memory once and validates it as the reference
 * implementation does: header length within the file and at most 100 MB
 * (refused before anything of that size is allocated), a JSON object in
 * UTF-8 without duplicate names, known dtypes, shapes of at most
 * NB_ST_MAX_DIMS non-negative integers whose byte size (computed with
 * overflow checks) equals end - begin, ranges inside the byte buffer that
 * neither overlap nor leave gaps nor trailing bytes, and a "__metadata__"
 * object of string values. Returns NULL with a one-line message naming the
 * file and the problem (nb_st_read also gives the error code).
 */
nb_st_file *nb_st_open(const char *path, char *err);
/* The same checks without reading the tensor bytes (ranges are checked
 * against the file size): for metadata and listings. Every tensor's data
 * is NULL. */
nb_st_file *nb_st_open_header(const char *path, char *err);
/* Either of the above, returning 0 or the negative NB_E* code (NB_EIO:
 * missing or unreadable, NB_EFORMAT: not a valid file, NB_ENOMEM). */
int nb_st_read(const char *path, int header_only, nb_st_file **out, char *err);
void nb_st_close(nb_st_file *f);
/* The path the file was opened with. */
const char *nb_st_path(const nb_st_file *f);
/* Tensors, in the order of their bytes in the file. */
int nb_st_count(const nb_st_file *f);
const nb_st_tensor *nb_st_get(const nb_st_file *f, int i);
/* By name (binary search), or NULL. */
const nb_st_tensor *nb_st_find(const nb_st_file *f, const char *name);
/* A "__metadata__" value, or NULL. */
const char *nb_st_meta(const nb_st_file *f, const char *key);
/* All metadata keys, in file order. */
int nb_st_meta_count(const nb_st_file *f);
const char *nb_st_meta_key(const nb_st_file *f, int i);
/* "[6,1,5,5]" into out (len bytes), for messages. */
void nb_st_format_shape(char *out, size_t len, const int64_t *shape, int ndim);

/* A tensor to write. */
typedef struct nb_st_out {
	const char *name;
	enum nb_dtype dtype;
	int ndim;
	int64_t shape[NB_ST_MAX_DIMS];
	const void *data;
	size_t nbytes;
} nb_st_out;

/*
 * Writes tensors (laid out in the order given) and metadata (n_meta
 * key/value UTF-8 string pairs, written as "__metadata__" first) to path
 * atomically: a temporary file in the same folder, fsync, rename; on
 * failure the old file, if any, is untouched. The header is padded with
 * spaces to a multiple of 8 bytes, as the reference writer does. Names
 * must be unique, non-empty, valid UTF-8 and not "__metadata__"; nbytes
 * must match shape and dtype. The data is written as given (little-endian
 * on the hosts nasty-bench supports). The caller keeps ownership of all
 * inputs.
 */
int nb_st_write(const char *path, const nb_st_out *tensors, int n,
		const char *const *meta_keys, const char *const *meta_values,
		int n_meta, char *err);

/* ---- models ------------------------------------------------------------- */

/*
 * What a checkpoint says about itself, stored as "__metadata__" strings:
 * arch, classes, input ("CxHxW"), strategy, dataset, epochs, seed,
 * best_acc (omitted when negative), nasty_bench_version and format "pt".
 */
typedef struct nb_ckpt_meta {
	char arch[64];
	int classes;
	int in_c, in_h, in_w;
	char strategy[64]; /* "normal", "nasty", ... or "" */
	char dataset[64];
	int epochs;
	uint64_t seed;
	double best_acc;  /* percent; negative when unknown */
	char version[32]; /* nasty-bench version that wrote it */
} nb_ckpt_meta;

/*
 * Saves net (parameters, buffers, counters) with meta (may be NULL) to
 * path, atomically. Tensors go in parameter-table order, each
 * num_batches_tracked right after its BatchNorm's running_var (the
 * state_dict order). classes and input are written from the network;
 * non-zero values in meta must agree with it (NB_EINVAL otherwise).
 * meta->version is ignored: the running version is written. A network
 * holding a NaN or Inf is not saved (NB_ENUMERIC), since it could not be
 * loaded back.
 */
int nb_checkpoint_save(const nb_net *net, const nb_ckpt_meta *meta,
		       const char *path, char *err);
/* Reads only the header and the metadata, fully validated (fields missing
 * from the file are left empty/0, best_acc -1; a malformed value is an
 * error). */
int nb_checkpoint_read_meta(const char *path, nb_ckpt_meta *meta, char *err);
/*
 * Loads the tensors into an already built and finalised net of the same
 * architecture: every parameter present as F32 with the network's shape
 * and finite values, no tensor the network does not have, each
 * num_batches_tracked a scalar I64 >= 0 or absent (then set to 0, as
 * PyTorch does for old checkpoints), and classes/input metadata, when
 * present, equal to the network's. The first problem is reported in one
 * line naming the file and the tensor; nothing (network or *meta) is
 * changed unless the whole file is good. meta may be NULL.
 */
int nb_checkpoint_load(nb_net *net, const char *path, nb_ckpt_meta *meta,
		       char *err);

#endif
