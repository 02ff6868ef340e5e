/*
 * bag.c - named tensors that carry a hook's own state through a state
 * file (see bag.h). A bag is a flat list; look-ups are linear, which is
 * fine for the few hundred entries a generator and its optimiser make.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bag.h"
#include "error.h"

typedef struct entry {
	char name[NB_BAG_NAME_LEN];
	int is_i64;
	const void *data;
	size_t n;
	void *owned; /* a copy this bag frees, or NULL */
	int read;
} entry;

struct nb_bag {
	entry *e;
	int n, cap;
};

nb_bag *nb_bag_new(void)
{
	return calloc(1, sizeof(nb_bag));
}

void nb_bag_free(nb_bag *b)
{
	if (!b)
		return;
	for (int i = 0; i < b->n; i++)
		free(b->e[i].owned);
	free(b->e);
	free(b);
}

int nb_bag_count(const nb_bag *b)
{
	return b->n;
}

void nb_bag_entry(const nb_bag *b, int i, const char **name, int *is_i64,
		  const void **data, size_t *n)
{
	const entry *e = &b->e[i];
	if (name)
		*name = e->name;
	if (is_i64)
		*is_i64 = e->is_i64;
	if (data)
		*data = e->data;
	if (n)
		*n = e->n;
}

const char *nb_bag_unread(const nb_bag *b)
{
	for (int i = 0; i < b->n; i++)
		if (!b->e[i].read)
			return b->e[i].name;
	return NULL;
}

static int valid_name(const char *s)
{
	if (!*s || strlen(s) >= NB_BAG_NAME_LEN)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '.' ||
		      *s == '-'))
			return 0;
	return 1;
}

static entry *find(const nb_bag *b, const char *name)
{
	for (int i = 0; i < b->n; i++)
		if (!strcmp(b->e[i].name, name))
			return &b->e[i];
	return NULL;
}

/* Adds an entry; owned (may be NULL) becomes the bag's even on failure. */
static int add(nb_bag *b, const char *name, int is_i64, const void *data,
	       size_t n, void *owned, char *err)
{
	if (!valid_name(name)) {
		free(owned);
		return nb_errorf(
		    err, NB_EINVAL,
		    "state entry name '%.*s' is empty, too long or "
		    "has characters outside [A-Za-z0-9_.-]",
		    NB_BAG_NAME_LEN, name);
	}
	if (find(b, name)) {
		free(owned);
		return nb_errorf(err, NB_EINVAL,
				 "state entry '%s' is put twice", name);
	}
	if (b->n == b->cap) {
		int cap = b->cap ? 2 * b->cap : 32;
		entry *e = realloc(b->e, (size_t)cap * sizeof *e);
		if (!e) {
			free(owned);
			return nb_errorf(err, NB_ENOMEM, "out of memory");
		}
		b->e = e;
		b->cap = cap;
	}
	entry *e = &b->e[b->n++];
	memset(e, 0, sizeof *e);
	snprintf(e->name, sizeof e->name, "%s", name);
	e->is_i64 = is_i64;
	e->data = data;
	e->n = n;
	e->owned = owned;
	return 0;
}

int nb_bag_put_f32(nb_bag *b, const char *name, const float *data, size_t n,
		   char *err)
{
	return add(b, name, 0, data, n, NULL, err);
}

int nb_bag_put_i64(nb_bag *b, const char *name, const int64_t *data, size_t n,
		   char *err)
{
	return add(b, name, 1, data, n, NULL, err);
}

static int joined(char *out, const char *prefix, const char *name, char *err)
{
	int len = snprintf(out, NB_BAG_NAME_LEN, "%s.%s", prefix, name);
	if (len < 0 || len >= NB_BAG_NAME_LEN)
		return nb_errorf(err, NB_EINVAL,
				 "state entry '%s.%s' has a name longer than "
				 "%d bytes",
				 prefix, name, NB_BAG_NAME_LEN - 1);
	return 0;
}

int nb_bag_put_net(nb_bag *b, const char *prefix, nb_net *net, char *err)
{
	nb_param **params;
	int np = nb_net_params(net, &params);
	nb_counter *counters;
	int nc = nb_net_counters(net, &counters);
	char name[NB_BAG_NAME_LEN];
	int rc;
	for (int i = 0; i < np; i++)
		if ((rc = joined(name, prefix, params[i]->name, err)) < 0 ||
		    (rc = add(b, name, 0, params[i]->data, params[i]->size,
			      NULL, err)) < 0)
			return rc;
	for (int i = 0; i < nc; i++) {
		int64_t *v = malloc(sizeof *v);
		if (!v)
			return nb_errorf(err, NB_ENOMEM, "out of memory");
		*v = counters[i].value;
		if ((rc = joined(name, prefix, counters[i].name, err)) < 0) {
			free(v);
			return rc;
		}
		if ((rc = add(b, name, 1, v, 1, v, err)) < 0)
			return rc;
	}
	return 0;
}

int nb_bag_put_optim(nb_bag *b, const char *prefix, const nb_optim *opt,
		     char *err)
{
	nb_optim_tensor *t = NULL;
	int n = nb_optim_export(opt, &t, err);
	if (n < 0)
		return n;
	char name[NB_BAG_NAME_LEN];
	int rc = 0;
	for (int i = 0; i < n && rc == 0; i++) {
		if ((rc = joined(name, prefix, t[i].name, err)) < 0)
			break;
		if (t[i].is_step) {
			int64_t *v = malloc(sizeof *v);
			if (!v) {
				rc = nb_errorf(err, NB_ENOMEM, "out of memory");
				break;
			}
			*v = t[i].step;
			rc = add(b, name, 1, v, 1, v, err);
		} else {
			rc = add(b, name, 0, t[i].data, t[i].size, NULL, err);
		}
	}
	free(t);
	return rc;
}

int nb_bag_put_rng(nb_bag *b, const char *name, const nb_rng *r, char *err)
{
	int64_t *v = malloc(6 * sizeof *v);
	if (!v)
		return nb_errorf(err, NB_ENOMEM, "out of memory");
	memcpy(v, r->s, sizeof r->s);
	v[4] = r->has_spare;
	memcpy(&v[5], &r->spare, sizeof r->spare);
	return add(b, name, 1, v, 6, v, err);
}

static int get(nb_bag *b, const char *name, int is_i64, size_t n,
	       const entry **out, char *err)
{
	entry *e = find(b, name);
	if (!e)
		return nb_errorf(err, NB_EFORMAT, "state entry '%s' is missing",
				 name);
	if (e->is_i64 != is_i64 || e->n != n)
		return nb_errorf(err, NB_EFORMAT,
				 "state entry '%s' is %s [%zu], expected %s "
				 "[%zu]",
				 name, e->is_i64 ? "I64" : "F32", e->n,
				 is_i64 ? "I64" : "F32", n);
	e->read = 1;
	*out = e;
	return 0;
}

int nb_bag_get_f32(nb_bag *b, const char *name, float *data, size_t n,
		   char *err)
{
	const entry *e;
	int rc = get(b, name, 0, n, &e, err);
	if (rc == 0)
		memcpy(data, e->data, n * sizeof *data);
	return rc;
}

int nb_bag_get_i64(nb_bag *b, const char *name, int64_t *data, size_t n,
		   char *err)
{
	const entry *e;
	int rc = get(b, name, 1, n, &e, err);
	if (rc == 0)
		memcpy(data, e->data, n * sizeof *data);
	return rc;
}

int nb_bag_get_net(nb_bag *b, const char *prefix, nb_net *net, char *err)
{
	nb_param **params;
	int np = nb_net_params(net, &params);
	nb_counter *counters;
	int nc = nb_net_counters(net, &counters);
	char name[NB_BAG_NAME_LEN];
	const entry *e;
	int rc;
	/* check everything first, so a bad bag leaves the network alone */
	for (int i = 0; i < np; i++)
		if ((rc = joined(name, prefix, params[i]->name, err)) < 0 ||
		    (rc = get(b, name, 0, params[i]->size, &e, err)) < 0)
			return rc;
	for (int i = 0; i < nc; i++)
		if ((rc = joined(name, prefix, counters[i].name, err)) < 0 ||
		    (rc = get(b, name, 1, 1, &e, err)) < 0)
			return rc;
	for (int i = 0; i < np; i++) {
		joined(name, prefix, params[i]->name, err);
		get(b, name, 0, params[i]->size, &e, err);
		memcpy(params[i]->data, e->data,
		       params[i]->size * sizeof(float));
	}
	for (int i = 0; i < nc; i++) {
		joined(name, prefix, counters[i].name, err);
		get(b, name, 1, 1, &e, err);
		memcpy(&counters[i].value, e->data, sizeof(int64_t));
	}
	return 0;
}

int nb_bag_get_optim(nb_bag *b, const char *prefix, nb_optim *opt, char *err)
{
	size_t plen = strlen(prefix);
	nb_optim_tensor *t = calloc((size_t)b->n + 1, sizeof *t);
	if (!t)
		return nb_errorf(err, NB_ENOMEM, "out of memory");
	int n = 0, rc = 0;
	for (int i = 0; i < b->n; i++) {
		entry *e = &b->e[i];
		if (strncmp(e->name, prefix, plen) || e->name[plen] != '.')
			continue;
		nb_optim_tensor *o = &t[n++];
		if (snprintf(o->name, sizeof o->name, "%s",
			     e->name + plen + 1) >= (int)sizeof o->name) {
			rc = nb_errorf(err, NB_EFORMAT,
				       "state entry '%s': name too long",
				       e->name);
			break;
		}
		if (e->is_i64) {
			if (e->n != 1) {
				rc = nb_errorf(err, NB_EFORMAT,
					       "state entry '%s' is I64 [%zu], "
					       "not a step count",
					       e->name, e->n);
				break;
			}
			o->is_step = 1;
			memcpy(&o->step, e->data, sizeof o->step);
		} else {
			o->data = e->data;
			o->size = e->n;
		}
	}
	if (rc == 0)
		rc = nb_optim_import(opt, t, n, err);
	if (rc == 0)
		for (int i = 0; i < b->n; i++) {
			entry *e = &b->e[i];
			if (!strncmp(e->name, prefix, plen) &&
			    e->name[plen] == '.')
				e->read = 1;
		}
	free(t);
	return rc;
}

int nb_bag_get_rng(nb_bag *b, const char *name, nb_rng *r, char *err)
{
	int64_t v[6];
	int rc = nb_bag_get_i64(b, name, v, 6, err);
	if (rc < 0)
		return rc;
	if (v[4] != 0 && v[4] != 1)
		return nb_errorf(err, NB_EFORMAT,
				 "state entry '%s' is not a random stream",
				 name);
	memcpy(r->s, v, sizeof r->s);
	r->has_spare = (int)v[4];
	memcpy(&r->spare, &v[5], sizeof r->spare);
	return 0;
}
