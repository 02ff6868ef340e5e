/*
 * options.c - fills a plugin's options struct from text, using the
 * plugin's option table (name, type, offsetof, default, range). Every value
 * is parsed completely: trailing characters, out-of-range numbers, NaN and
 * over-long strings are errors naming the plugin, the key and what is
 * allowed.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "registry.h"

static const nb_option *find_option(const nb_plugin *p, const char *key)
{
	for (const nb_option *o = p->options; o && o->name; o++)
		if (!strcmp(o->name, key))
			return o;
	return NULL;
}

static int bounded(const nb_option *o)
{
	return o->min <= o->max;
}

static int parse_value(const nb_plugin *p, const nb_option *o, void *opts,
		       const char *v, char *err)
{
	char *field = (char *)opts + o->offset;
	char *end;
	switch (o->type) {
	case NB_OPT_INT: {
		errno = 0;
		long x = strtol(v, &end, 10);
		if (errno || end == v || *end || x < INT_MIN || x > INT_MAX)
			return nb_errorf(err, NB_EINVAL,
					 "%s: option '%s': '%s' is not a whole number",
					 p->name, o->name, v);
		if (bounded(o) && (x < o->min || x > o->max))
			return nb_errorf(err, NB_EINVAL,
					 "%s: option '%s': %ld is outside [%g, %g]",
					 p->name, o->name, x, o->min, o->max);
		int xi = (int)x;
		memcpy(field, &xi, sizeof xi);
		return 0;
	}
	case NB_OPT_FLOAT: {
		errno = 0;
		double x = strtod(v, &end);
		if (errno || end == v || *end || !isfinite(x))
			return nb_errorf(err, NB_EINVAL,
					 "%s: option '%s': '%s' is not a finite number",
					 p->name, o->name, v);
		if (bounded(o) && (x < o->min || x > o->max))
			return nb_errorf(err, NB_EINVAL,
					 "%s: option '%s': %g is outside [%g, %g]",
					 p->name, o->name, x, o->min, o->max);
		memcpy(field, &x, sizeof x);
		return 0;
	}
	case NB_OPT_BOOL: {
		static const char *const yes[] = {"1", "true", "yes", "on"};
		static const char *const no[] = {"0", "false", "no", "off"};
		int b = -1;
		for (int i = 0; i < 4; i++) {
			if (!strcasecmp(v, yes[i]))
				b = 1;
			if (!strcasecmp(v, no[i]))
				b = 0;
		}
		if (b < 0)
			return nb_errorf(err, NB_EINVAL,
					 "%s: option '%s': '%s' is not true/false, yes/no, on/off or 1/0",
					 p->name, o->name, v);
		memcpy(field, &b, sizeof b);
		return 0;
	}
	case NB_OPT_STRING:
		if (strlen(v) >= NB_OPT_STRING_LEN)
			return nb_errorf(err, NB_EINVAL,
					 "%s: option '%s': value longer than %d characters",
					 p->name, o->name, NB_OPT_STRING_LEN - 1);
		memset(field, 0, NB_OPT_STRING_LEN);
		memcpy(field, v, strlen(v));
		return 0;
	}
	return nb_errorf(err, NB_EINVAL, "%s: option '%s' has an unknown type",
			 p->name, o->name);
}

void *nb_options_new(const nb_plugin *p, char *err)
{
	void *opts = calloc(1, p->opts_size ? p->opts_size : 1);
	if (!opts) {
		nb_errorf(err, NB_ENOMEM, "out of memory");
		return NULL;
	}
	for (const nb_option *o = p->options; o && o->name; o++) {
		char e2[NB_ERR_LEN];
		if (parse_value(p, o, opts, o->def, e2) < 0) {
			nb_errorf(err, NB_EINVAL, "default of %s", e2);
			free(opts);
			return NULL;
		}
	}
	return opts;
}

int nb_options_set(const nb_plugin *p, void *opts, const char *key,
		   const char *value, char *err)
{
	const nb_option *o = find_option(p, key);
	if (!o) {
		char names[NB_ERR_LEN / 2] = "";
		size_t len = 0;
		for (const nb_option *q = p->options; q && q->name; q++) {
			int w = snprintf(names + len, sizeof names - len, "%s%s",
					 len ? ", " : "", q->name);
			if (w < 0 || (size_t)w >= sizeof names - len)
				break;
			len += (size_t)w;
		}
		return nb_errorf(err, NB_EINVAL,
				 "%s %s has no option '%s' (%s%s)",
				 nb_plugin_kind_name(p->kind), p->name, key,
				 len ? "options: " : "it takes none",
				 names);
	}
	return parse_value(p, o, opts, value, err);
}

/* Copies [b, e) without surrounding white space into dst (size n). */
static void trimmed(char *dst, size_t n, const char *b, const char *e)
{
	while (b < e && isspace((unsigned char)*b))
		b++;
	while (e > b && isspace((unsigned char)e[-1]))
		e--;
	size_t len = (size_t)(e - b) < n - 1 ? (size_t)(e - b) : n - 1;
	memcpy(dst, b, len);
	dst[len] = 0;
}

int nb_options_parse(const nb_plugin *p, void *opts, const char *list,
		     char *err)
{
	const char *s = list;
	while (*s) {
		const char *end = strchr(s, ',');
		if (!end)
			end = s + strlen(s);
		const char *eq = memchr(s, '=', (size_t)(end - s));
		char key[128], val[NB_OPT_STRING_LEN + 1];
		if (!eq) {
			trimmed(key, sizeof key, s, end);
			if (key[0])
				return nb_errorf(err, NB_EINVAL,
						 "%s: '%s' is not key=value",
						 p->name, key);
		} else {
			trimmed(key, sizeof key, s, eq);
			trimmed(val, sizeof val, eq + 1, end);
			int rc = nb_options_set(p, opts, key, val, err);
			if (rc < 0)
				return rc;
		}
		s = *end ? end + 1 : end;
	}
	return 0;
}

void nb_options_format(const nb_option *o, const void *opts, char *buf,
		       size_t len)
{
	const char *field = (const char *)opts + o->offset;
	switch (o->type) {
	case NB_OPT_INT:
	case NB_OPT_BOOL: {
		int x;
		memcpy(&x, field, sizeof x);
		if (o->type == NB_OPT_BOOL)
			snprintf(buf, len, "%s", x ? "true" : "false");
		else
			snprintf(buf, len, "%d", x);
		return;
	}
	case NB_OPT_FLOAT: {
		double x;
		memcpy(&x, field, sizeof x);
		snprintf(buf, len, "%g", x);
		return;
	}
	case NB_OPT_STRING:
		snprintf(buf, len, "%.*s", NB_OPT_STRING_LEN, field);
		return;
	}
	snprintf(buf, len, "?");
}
