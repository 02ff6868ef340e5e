/*
 * checkpoint.c - a network's state as a safetensors file that PyTorch loads
 * with load_state_dict(strict=True), and back.
 *
 * Save writes every parameter and buffer (BatchNorm running stats
 * included) as F32 under its state_dict name, in parameter-table order,
 * each BatchNorm's num_batches_tracked as a scalar I64 right after that
 * layer's running_var (where PyTorch's state_dict has it), and the
 * metadata (arch, classes, input "CxHxW", strategy, dataset, epochs, seed,
 * best_acc, nasty_bench_version, format "pt"). Load checks the whole file
 * against the network first - same names, same shapes, F32, finite values,
 * no missing and no extra tensors, metadata consistent with the network -
 * and only then copies, so a bad file leaves the network untouched.
 *
 * Deliberately not done: dtype conversion (an F16/BF16/F64 checkpoint is
 * refused by name; convert it in PyTorch with .float()), renaming or
 * partial loads (strict, like load_state_dict(strict=True)), big-endian
 * hosts (refused at compile time), and any knowledge of architectures: the
 * caller builds the network, this file only matches names and shapes.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#include "checkpoint.h"
#include "error.h"
#include "net.h"

/* Tensor bytes are little-endian in the file and used in place. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "checkpoint.c assumes a little-endian host");

#define SHAPE_TXT 160

static void param_shape(const nb_param *p, int64_t shape[NB_ST_MAX_DIMS])
{
	for (int d = 0; d < p->ndim; d++)
		shape[d] = p->shape[d];
}

/* Index of the first non-finite float in n unaligned floats, or -1. */
static long first_non_finite(const void *data, size_t n)
{
	const unsigned char *b = data;
	for (size_t i = 0; i < n; i++) {
		float v;
		memcpy(&v, b + 4 * i, 4);
		if (!isfinite(v))
			return (long)i;
	}
	return -1;
}

/* The counter of a BatchNorm whose running_var is p, or -1. */
static int counter_after(const nb_param *p, const nb_counter *c, int nc)
{
	static const char suffix[] = ".running_var";
	size_t len = strlen(p->name), sl = sizeof suffix - 1;
	if (len < sl || strcmp(p->name + len - sl, suffix) != 0)
		return -1;
	for (int i = 0; i < nc; i++)
		if (strncmp(c[i].name, p->name, len - sl) == 0 &&
		    strcmp(c[i].name + len - sl, ".num_batches_tracked") == 0)
			return i;
	return -1;
}

/* A double in the shortest of %.15g..%.17g that reads back exactly. */
static void format_double(char *out, size_t len, double v)
{
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(out, len, "%.*g", prec, v);
		if (strtod(out, NULL) == v)
			return;
	}
}

/* A C string field of nb_ckpt_meta must be terminated inside its array. */
static int meta_string(const char *path, const char *key, const char *field,
		       size_t size, char *err)
{
	if (memchr(field, '\0', size) == NULL)
		return nb_errorf(err, NB_EINVAL,
				 "%s: metadata field %s is not a terminated "
				 "string",
				 path, key);
	return 0;
}

int nb_checkpoint_save(const nb_net *net, const nb_ckpt_meta *meta,
		       const char *path, char *err)
{
	nb_param **params;
	int np = nb_net_params(net, &params);
	if (!params)
		return nb_errorf(err, NB_EINVAL,
				 "%s: cannot save a network that is not "
				 "finalised",
				 path);
	nb_counter *counters;
	int nc = nb_net_counters(net, &counters);

	/* The network decides the shapes; the caller's meta may only agree. */
	int in_c, in_h, in_w, oc, oh, ow;
	nb_net_node_shape(net, 0, &in_c, &in_h, &in_w);
	nb_net_node_shape(net, nb_net_output_node(net), &oc, &oh, &ow);
	int classes = oc * oh * ow;
	nb_ckpt_meta none = {.best_acc = -1};
	if (!meta)
		meta = &none;
	if (meta->in_c &&
	    (meta->in_c != in_c || meta->in_h != in_h || meta->in_w != in_w))
		return nb_errorf(err, NB_EINVAL,
				 "%s: metadata says input %dx%dx%d but the "
				 "network's input is %dx%dx%d",
				 path, meta->in_c, meta->in_h, meta->in_w, in_c,
				 in_h, in_w);
	if (meta->classes && meta->classes != classes)
		return nb_errorf(err, NB_EINVAL,
				 "%s: metadata says %d classes but the network "
				 "has %d outputs",
				 path, meta->classes, classes);
	if (meta->epochs < 0)
		return nb_errorf(err, NB_EINVAL,
				 "%s: metadata epochs %d is negative", path,
				 meta->epochs);
	int rc;
	if ((rc = meta_string(path, "arch", meta->arch, sizeof meta->arch,
			      err)) < 0 ||
	    (rc = meta_string(path, "strategy", meta->strategy,
			      sizeof meta->strategy, err)) < 0 ||
	    (rc = meta_string(path, "dataset", meta->dataset,
			      sizeof meta->dataset, err)) < 0)
		return rc;

	/* A checkpoint that could not be loaded back is not written. */
	for (int i = 0; i < np; i++) {
		long bad = first_non_finite(params[i]->data, params[i]->size);
		if (bad >= 0)
			return nb_errorf(err, NB_ENUMERIC,
					 "%s: not saved: tensor '%s' element "
					 "%ld is %g (the model diverged)",
					 path, params[i]->name, bad,
					 (double)params[i]->data[bad]);
	}

	nb_st_out *out = calloc((size_t)(np + nc) + 1, sizeof *out);
	char *used = calloc((size_t)nc + 1, 1);
	if (!out || !used) {
		free(out);
		free(used);
		return nb_errorf(err, NB_ENOMEM, "%s: out of memory", path);
	}
	int n = 0;
	for (int i = 0; i < np; i++) {
		const nb_param *p = params[i];
		out[n].name = p->name;
		out[n].dtype = NB_DTYPE_F32;
		out[n].ndim = p->ndim;
		param_shape(p, out[n].shape);
		out[n].data = p->data;
		out[n].nbytes = p->size * sizeof(float);
		n++;
		int c = counter_after(p, counters, nc);
		if (c >= 0 && !used[c]) {
			used[c] = 1;
			out[n].name = counters[c].name;
			out[n].dtype = NB_DTYPE_I64;
			out[n].ndim = 0;
			out[n].data = &counters[c].value;
			out[n].nbytes = sizeof(int64_t);
			n++;
		}
	}
	for (int c = 0; c < nc; c++) /* BatchNorm without running_var? */
		if (!used[c]) {
			out[n].name = counters[c].name;
			out[n].dtype = NB_DTYPE_I64;
			out[n].ndim = 0;
			out[n].data = &counters[c].value;
			out[n].nbytes = sizeof(int64_t);
			n++;
		}

	char s_classes[24], s_input[48], s_epochs[24], s_seed[24], s_acc[40];
	snprintf(s_classes, sizeof s_classes, "%d", classes);
	snprintf(s_input, sizeof s_input, "%dx%dx%d", in_c, in_h, in_w);
	snprintf(s_epochs, sizeof s_epochs, "%d", meta->epochs);
	snprintf(s_seed, sizeof s_seed, "%" PRIu64, meta->seed);
	const char *pairs[][2] = {
	    {"format", "pt"}, /* what safetensors.torch writes */
	    {"nasty_bench_version", PACKAGE_VERSION},
	    {"arch", meta->arch},
	    {"classes", s_classes},
	    {"input", s_input},
	    {"strategy", meta->strategy},
	    {"dataset", meta->dataset},
	    {"epochs", s_epochs},
	    {"seed", s_seed},
	    {"best_acc", s_acc}, /* last: dropped when unknown */
	};
	int n_meta = (int)(sizeof pairs / sizeof pairs[0]);
	if (meta->best_acc >= 0 && isfinite(meta->best_acc))
		format_double(s_acc, sizeof s_acc, meta->best_acc);
	else
		n_meta--;
	const char *keys[sizeof pairs / sizeof pairs[0]];
	const char *vals[sizeof pairs / sizeof pairs[0]];
	for (int i = 0; i < n_meta; i++) {
		keys[i] = pairs[i][0];
		vals[i] = pairs[i][1];
	}
	rc = nb_st_write(path, out, n, keys, vals, n_meta, err);
	free(out);
	free(used);
	return rc;
}

/* ---- reading ------------------------------------------------------------- */

/* A whole non-negative decimal number no larger than max: digits only. */
static int parse_uint(const char *s, unsigned long long max,
		      unsigned long long *v)
{
	if (!*s)
		return -1;
	unsigned long long x = 0;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		unsigned d = (unsigned)(*s - '0');
		if (x > (max - d) / 10)
			return -1;
		x = x * 10 + d;
	}
	*v = x;
	return 0;
}

/* s with control bytes shown as \xNN and cut at 64 bytes (out: 264
 * bytes), so a value from a file cannot break a one-line message. */
static const char *quote(const char *s, char *out)
{
	size_t o = 0, i;
	for (i = 0; s[i] && i < 64; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			o += (size_t)sprintf(out + o, "\\x%02x", c);
		else
			out[o++] = (char)c;
	}
	strcpy(out + o, s[i] ? "..." : "");
	return out;
}

static int meta_int(const nb_st_file *f, const char *key, int *out, char *err)
{
	char q[264];
	const char *s = nb_st_meta(f, key);
	unsigned long long v;
	if (!s)
		return 0;
	if (parse_uint(s, INT_MAX, &v) < 0)
		return nb_errorf(err, NB_EFORMAT,
				 "%s: metadata '%s' is \"%s\", not a "
				 "whole number",
				 nb_st_path(f), key, quote(s, q));
	*out = (int)v;
	return 0;
}

static int meta_str(const nb_st_file *f, const char *key, char *out,
		    size_t size, char *err)
{
	const char *s = nb_st_meta(f, key);
	if (!s)
		return 0;
	if (strlen(s) >= size)
		return nb_errorf(err, NB_EFORMAT,
				 "%s: metadata '%s' is longer than %zu bytes",
				 nb_st_path(f), key, size - 1);
	memcpy(out, s, strlen(s) + 1);
	return 0;
}

/* "CxHxW", each a whole positive number. */
static int meta_input(const nb_st_file *f, nb_ckpt_meta *m, char *err)
{
	char q[264];
	const char *s = nb_st_meta(f, "input");
	if (!s)
		return 0;
	char buf[64];
	int dims[3], k = 0;
	if (strlen(s) < sizeof buf) {
		memcpy(buf, s, strlen(s) + 1);
		char *save = NULL;
		for (char *tok = strtok_r(buf, "x", &save); tok;
		     tok = strtok_r(NULL, "x", &save)) {
			unsigned long long v;
			if (k == 3 || parse_uint(tok, INT_MAX, &v) < 0 ||
			    v == 0) {
				k = -1;
				break;
			}
			dims[k++] = (int)v;
		}
	}
	/* strtok_r skips empty fields: "1xx28x28" must fail too. */
	if (k != 3 || strstr(s, "xx") || s[0] == 'x' || s[strlen(s) - 1] == 'x')
		return nb_errorf(err, NB_EFORMAT,
				 "%s: metadata 'input' is \"%s\", not "
				 "CxHxW",
				 nb_st_path(f), quote(s, q));
	m->in_c = dims[0];
	m->in_h = dims[1];
	m->in_w = dims[2];
	return 0;
}

static int meta_from_file(const nb_st_file *f, nb_ckpt_meta *m, char *err)
{
	char q[264];
	memset(m, 0, sizeof *m);
	m->best_acc = -1;
	int rc;
	if ((rc = meta_str(f, "arch", m->arch, sizeof m->arch, err)) < 0 ||
	    (rc = meta_str(f, "strategy", m->strategy, sizeof m->strategy,
			   err)) < 0 ||
	    (rc = meta_str(f, "dataset", m->dataset, sizeof m->dataset, err)) <
		0 ||
	    (rc = meta_str(f, "nasty_bench_version", m->version,
			   sizeof m->version, err)) < 0 ||
	    (rc = meta_int(f, "classes", &m->classes, err)) < 0 ||
	    (rc = meta_int(f, "epochs", &m->epochs, err)) < 0 ||
	    (rc = meta_input(f, m, err)) < 0)
		return rc;
	const char *s = nb_st_meta(f, "seed");
	if (s) {
		unsigned long long v;
		if (parse_uint(s, UINT64_MAX, &v) < 0)
			return nb_errorf(err, NB_EFORMAT,
					 "%s: metadata 'seed' is \"%s\", "
					 "not a whole number",
					 nb_st_path(f), quote(s, q));
		m->seed = v;
	}
	s = nb_st_meta(f, "best_acc");
	if (s) {
		char *end;
		errno = 0;
		double v = strtod(s, &end);
		if (end == s || *end || errno || !isfinite(v))
			return nb_errorf(err, NB_EFORMAT,
					 "%s: metadata 'best_acc' is "
					 "\"%s\", not a number",
					 nb_st_path(f), quote(s, q));
		m->best_acc = v;
	}
	return 0;
}

int nb_checkpoint_read_meta(const char *path, nb_ckpt_meta *meta, char *err)
{
	nb_st_file *f;
	int rc = nb_st_read(path, 1, &f, err);
	if (rc < 0)
		return rc;
	nb_ckpt_meta m;
	rc = meta_from_file(f, &m, err);
	nb_st_close(f);
	if (rc == 0 && meta)
		*meta = m;
	return rc;
}

/* Checks that tensor t (found under p's name) can be loaded into p. */
static int check_param(const char *path, const nb_st_tensor *t,
		       const nb_param *p, char *err)
{
	int64_t want[NB_ST_MAX_DIMS];
	param_shape(p, want);
	if (t->dtype != NB_DTYPE_F32)
		return nb_errorf(err, NB_EFORMAT,
				 "%s: tensor '%s' is %s but nasty-bench needs "
				 "F32 (convert the model with .float() before "
				 "saving)",
				 path, p->name, nb_dtype_name(t->dtype));
	int same = t->ndim == p->ndim;
	for (int d = 0; same && d < p->ndim; d++)
		same = t->shape[d] == want[d];
	if (!same) {
		char a[SHAPE_TXT], b[SHAPE_TXT];
		nb_st_format_shape(a, sizeof a, t->shape, t->ndim);
		nb_st_format_shape(b, sizeof b, want, p->ndim);
		return nb_errorf(err, NB_EFORMAT,
				 "%s: tensor '%s' has shape %s but the "
				 "network expects %s (a different "
				 "architecture or number of classes?)",
				 path, p->name, a, b);
	}
	long bad = first_non_finite(t->data, p->size);
	if (bad >= 0)
		return nb_errorf(err, NB_ENUMERIC,
				 "%s: tensor '%s' element %ld is not finite "
				 "(a diverged model or a corrupt file)",
				 path, p->name, bad);
	return 0;
}

static int check_counter(const char *path, const nb_st_tensor *t,
			 const nb_counter *c, char *err)
{
	if (t->dtype != NB_DTYPE_I64 || t->ndim != 0)
		return nb_errorf(err, NB_EFORMAT,
				 "%s: tensor '%s' must be a scalar I64 (shape "
				 "[]), not %s with %d dimensions",
				 path, c->name, nb_dtype_name(t->dtype),
				 t->ndim);
	int64_t v;
	memcpy(&v, t->data, sizeof v);
	if (v < 0)
		return nb_errorf(err, NB_EFORMAT,
				 "%s: tensor '%s' is %" PRId64
				 ", a negative count",
				 path, c->name, v);
	return 0;
}

/* A name from the file for a one-line message: at most 64 bytes, control
 * bytes as \xNN (as safetensors.c quotes them). out: 4 * 64 + 4 bytes. */
static int is_counter(const char *name, const nb_counter *c, int nc)
{
	for (int i = 0; i < nc; i++)
		if (strcmp(c[i].name, name) == 0)
			return 1;
	return 0;
}

int nb_checkpoint_load(nb_net *net, const char *path, nb_ckpt_meta *meta,
		       char *err)
{
	nb_param **params;
	int np = nb_net_params(net, &params);
	if (!params)
		return nb_errorf(err, NB_EINVAL,
				 "%s: cannot load into a network that is not "
				 "finalised",
				 path);
	nb_counter *counters;
	int nc = nb_net_counters(net, &counters);
	nb_st_file *f;
	int rc = nb_st_read(path, 0, &f, err);
	if (rc < 0)
		return rc;
	nb_ckpt_meta m;
	if ((rc = meta_from_file(f, &m, err)) < 0)
		goto out;
	/* Metadata, when present, must describe this network. */
	int in_c, in_h, in_w, oc, oh, ow;
	nb_net_node_shape(net, 0, &in_c, &in_h, &in_w);
	nb_net_node_shape(net, nb_net_output_node(net), &oc, &oh, &ow);
	if (m.in_c && (m.in_c != in_c || m.in_h != in_h || m.in_w != in_w)) {
		rc = nb_errorf(err, NB_EFORMAT,
			       "%s: the checkpoint is for input %dx%dx%d but "
			       "the network takes %dx%dx%d",
			       path, m.in_c, m.in_h, m.in_w, in_c, in_h, in_w);
		goto out;
	}
	if (m.classes && m.classes != oc * oh * ow) {
		rc = nb_errorf(err, NB_EFORMAT,
			       "%s: the checkpoint is for %d classes but the "
			       "network has %d outputs",
			       path, m.classes, oc * oh * ow);
		goto out;
	}

	/* Everything is checked before anything is copied. */
	int matched = 0;
	for (int i = 0; i < np; i++) {
		const nb_st_tensor *t = nb_st_find(f, params[i]->name);
		if (!t) {
			rc = nb_errorf(err, NB_EFORMAT,
				       "%s: tensor '%s' is missing (a "
				       "checkpoint of another architecture?)",
				       path, params[i]->name);
			goto out;
		}
		if ((rc = check_param(path, t, params[i], err)) < 0)
			goto out;
		matched++;
	}
	for (int i = 0; i < nc; i++) {
		const nb_st_tensor *t = nb_st_find(f, counters[i].name);
		if (!t)
			continue; /* optional, as in old PyTorch files */
		if ((rc = check_counter(path, t, &counters[i], err)) < 0)
			goto out;
		matched++;
	}
	if (matched != nb_st_count(f)) {
		for (int i = 0; i < nb_st_count(f); i++) {
			const char *name = nb_st_get(f, i)->name;
			if (!nb_net_param(net, name) &&
			    !is_counter(name, counters, nc)) {
				char q[4 * 64 + 4];
				rc =
				    nb_errorf(err, NB_EFORMAT,
					      "%s: unexpected tensor '%s' (not "
					      "part of this network: another "
					      "architecture?)",
					      path, quote(name, q));
				goto out;
			}
		}
	}

	for (int i = 0; i < np; i++) {
		const nb_st_tensor *t = nb_st_find(f, params[i]->name);
		memcpy(params[i]->data, t->data,
		       params[i]->size * sizeof(float));
	}
	for (int i = 0; i < nc; i++) {
		const nb_st_tensor *t = nb_st_find(f, counters[i].name);
		/* Absent: 0, as PyTorch does for checkpoints without it. */
		counters[i].value = 0;
		if (t)
			memcpy(&counters[i].value, t->data, sizeof(int64_t));
	}
	if (meta)
		*meta = m;
	rc = 0;
out:
	nb_st_close(f);
	return rc;
}
