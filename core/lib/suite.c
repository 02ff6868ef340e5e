/*
 * suite.c - reads a suite INI file (suite.h) into an nb_suite, and finds
 * suite files by name.
 *
 * Two passes. inih's handler only records (section, key, value, line)
 * entries; then every section and key is checked against what is allowed,
 * tier overrides are turned into entries of their target sections, and
 * each value is looked up by precedence. So tiers need no special casing
 * and every error names file:line.
 *
 * Line numbers come from our own line reader (ini_parse_stream): Debian's
 * libinih is built without INI_HANDLER_LINENO. The reader also records
 * section headers (inih calls the handler for keys only, so an empty
 * [tier.paper] or a misspelt empty section would be invisible) and refuses
 * over-long lines (inih would silently split them in two).
 *
 * Not done here: loading data, building networks, planning or running
 * jobs (runner.c).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "error.h"
#include "suite.h"

#ifndef NB_SRC_DIR
#define NB_SRC_DIR ""
#endif
#ifndef NB_BUILD_DIR
#define NB_BUILD_DIR ""
#endif
#ifndef NB_DATADIR
#define NB_DATADIR "/usr/local/share/nasty-bench"
#endif

#define MAX_FILE_BYTES (1 << 20)

/* ---- dataset presets ------------------------------------------------------
 */

static const char *const dataset_names[] = {"fashion-mnist",   "mnist",
					    "cifar10",	       "cifar100",
					    "cifar100-coarse", "tiny-imagenet"};
#define N_DATASETS (sizeof dataset_names / sizeof *dataset_names)

void nb_dataset_preset(const char *name, nb_augment *aug)
{
	memset(aug, 0, sizeof *aug);
	for (int i = 0; i < 4; i++)
		aug->std[i] = 1.0f;
	if (!name)
		return;
	if (!strcmp(name, "fashion-mnist")) {
		aug->pad_to = 32; /* LeNet-5 expects 32x32 (DAFL) */
		aug->mean[0] = 0.2860f;
		aug->std[0] = 0.3530f;
	} else if (!strcmp(name, "mnist")) {
		aug->pad_to = 32; /* DAFL resizes MNIST to 32x32 */
		aug->mean[0] = 0.1307f;
		aug->std[0] = 0.3081f;
	} else if (!strcmp(name, "cifar10") || !strcmp(name, "cifar100") ||
		   !strcmp(name, "cifar100-coarse")) {
		/* the paper's code uses the CIFAR-10 constants for both */
		static const float mean[3] = {0.4914f, 0.4822f, 0.4465f};
		static const float std[3] = {0.247f, 0.243f, 0.261f};
		aug->crop_pad = 4;
		aug->flip = 1;
		for (int i = 0; i < 3; i++) {
			aug->mean[i] = mean[i];
			aug->std[i] = std[i];
		}
	} else if (!strcmp(name, "tiny-imagenet")) {
		/* The paper's code: RandomRotation(20), then horizontal
		 * flip, no crop. */
		static const float mean[3] = {0.4802f, 0.4481f, 0.3975f};
		static const float std[3] = {0.2302f, 0.2265f, 0.2262f};
		aug->rotate_deg = 20.0f;
		aug->flip = 1;
		for (int i = 0; i < 3; i++) {
			aug->mean[i] = mean[i];
			aug->std[i] = std[i];
		}
	}
}

/* ---- pass 1: recording entries --------------------------------------------
 */

typedef struct entry {
	char *section; /* the target section (for a tier: the overridden one),
			  with plugin and arch names made canonical */
	char *key;     /* the target key */
	char *value;
	char *raw_section; /* as written, for messages */
	char *raw_key;
	int line;
	int tier; /* -1: a base entry; else the index of its tier */
} entry;

typedef struct header {
	char *name;
	int line;
} header;

typedef struct ini {
	const char *path;
	/* the line reader */
	const char *cur, *end;
	int line;
	int cont;      /* the current line starts with white space */
	int have_prev; /* a key was read since the last section header */
	int long_line; /* first over-long line, 0 = none */
	int max_len;
	int oom;
	/* what was read */
	entry *e;
	int n, cap;
	header *h;
	int nh, hcap;
	/* tiers: names from the [tier.NAME] headers */
	char tiers[NB_SUITE_MAX][NB_SUITE_NAME];
	int n_tiers;
	int sel; /* the tier in force, -1 = none */
	/* notes already printed ("key=value"), to print each once */
	char noted[256][96];
	int n_noted;
	FILE *notes;
} ini;

static char *reader(char *str, int num, void *stream)
{
	ini *I = stream;
	if (I->cur >= I->end)
		return NULL;
	const char *nl = memchr(I->cur, '\n', (size_t)(I->end - I->cur));
	const char *stop = nl ? nl + 1 : I->end;
	size_t len = (size_t)(stop - I->cur);
	I->line++;
	I->cur = stop;
	if (num < 4 || len > (size_t)num - 1) {
		/* inih would read the rest as a new line: refuse instead */
		if (!I->long_line) {
			I->long_line = I->line;
			I->max_len = num - 3;
		}
		str[0] = '\n';
		str[1] = 0;
		I->cont = 0;
		return str;
	}
	memcpy(str, stop - len, len);
	str[len] = 0;
	I->cont = str[0] == ' ' || str[0] == '\t';
	/* a section header, exactly as inih reads one: after optional white
	 * space (and a BOM on line 1), '[' up to the first ']'; an indented
	 * line after a key is a continuation instead */
	const char *p = str;
	if (I->line == 1 && !strncmp(p, "\xEF\xBB\xBF", 3))
		p += 3;
	while (*p == ' ' || *p == '\t')
		p++;
	const char *close = *p == '[' ? strchr(p, ']') : NULL;
	if (close && !(I->cont && I->have_prev)) {
		if (I->nh == I->hcap) {
			int cap = I->hcap ? 2 * I->hcap : 16;
			header *h = realloc(I->h, (size_t)cap * sizeof *h);
			if (!h) {
				I->oom = 1;
				return NULL;
			}
			I->h = h;
			I->hcap = cap;
		}
		I->h[I->nh].name = strndup(p + 1, (size_t)(close - p - 1));
		I->h[I->nh].line = I->line;
		if (!I->h[I->nh].name) {
			I->oom = 1;
			return NULL;
		}
		I->nh++;
		I->have_prev = 0;
	}
	return str;
}

static int record(ini *I, const char *section, const char *name,
		  const char *value)
{
	if (I->oom)
		return 0;
	entry *last = I->n ? &I->e[I->n - 1] : NULL;
	if (I->cont && I->have_prev && last &&
	    !strcmp(last->section, section) && !strcmp(last->key, name)) {
		/* a continuation line: join with one space */
		size_t a = strlen(last->value), b = strlen(value);
		char *v = realloc(last->value, a + b + 2);
		if (!v) {
			I->oom = 1;
			return 0;
		}
		v[a] = ' ';
		memcpy(v + a + 1, value, b + 1);
		last->value = v;
		return 1;
	}
	if (I->n == I->cap) {
		int cap = I->cap ? 2 * I->cap : 32;
		entry *e = realloc(I->e, (size_t)cap * sizeof *e);
		if (!e) {
			I->oom = 1;
			return 0;
		}
		I->e = e;
		I->cap = cap;
	}
	entry *e = &I->e[I->n];
	memset(e, 0, sizeof *e);
	e->section = strdup(section);
	e->key = strdup(name);
	e->value = strdup(value);
	e->raw_section = strdup(section);
	e->raw_key = strdup(name);
	e->line = I->line;
	e->tier = -1;
	I->n++;
	I->have_prev = 1;
	if (!e->section || !e->key || !e->value || !e->raw_section ||
	    !e->raw_key) {
		I->oom = 1;
		return 0;
	}
	return 1;
}

#if INI_HANDLER_LINENO
static int on_entry(void *user, const char *section, const char *name,
		    const char *value, int lineno)
{
	(void)lineno; /* the reader counts lines */
	return record(user, section, name, value);
}
#else
static int on_entry(void *user, const char *section, const char *name,
		    const char *value)
{
	return record(user, section, name, value);
}
#endif

static void ini_free(ini *I)
{
	for (int i = 0; i < I->n; i++) {
		free(I->e[i].section);
		free(I->e[i].key);
		free(I->e[i].value);
		free(I->e[i].raw_section);
		free(I->e[i].raw_key);
	}
	free(I->e);
	for (int i = 0; i < I->nh; i++)
		free(I->h[i].name);
	free(I->h);
}

/* Reads the whole file (at most MAX_FILE_BYTES, no NUL bytes) and runs
 * inih over it. */
static int ini_read(ini *I, const char *path, char *err)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return nb_errorf(err, NB_EIO,
				 "%s: cannot open the suite file: %s", path,
				 strerror(errno));
	char *buf = malloc(MAX_FILE_BYTES + 2); /* + 1 to detect a larger file, + 1 NUL */
	if (!buf) {
		fclose(f);
		return nb_errorf(err, NB_ENOMEM, "out of memory");
	}
	size_t n = fread(buf, 1, MAX_FILE_BYTES + 1, f);
	int bad = ferror(f);
	int e = errno;
	fclose(f);
	int rc = 0;
	if (bad)
		rc = nb_errorf(err, NB_EIO, "%s: cannot read: %s", path,
			       strerror(e));
	else if (n > MAX_FILE_BYTES)
		rc = nb_errorf(err, NB_EFORMAT,
			       "%s: larger than %d bytes: not a suite file",
			       path, MAX_FILE_BYTES);
	else if (memchr(buf, 0, n))
		rc = nb_errorf(err, NB_EFORMAT,
			       "%s: holds NUL bytes: not a text (INI) file",
			       path);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	buf[n] = 0;
	/* Control bytes (other than tab and line ends) would reach messages
	 * and terminals: refuse the file at the first one. A CR counts as a
	 * line end only before LF (CR LF files); alone, inside a line, it
	 * would reach a message with the rest of the line. */
	for (size_t i = 0, ln = 1; i < n; i++) {
		unsigned char c = (unsigned char)buf[i];
		int crlf = c == '\r' && (i + 1 == n || buf[i + 1] == '\n');
		if (c == '\n')
			ln++;
		else if ((c < 0x20 && c != '\t' && !crlf) || c == 0x7f) {
			free(buf);
			return nb_errorf(err, NB_EFORMAT,
					 "%s:%zu: control character 0x%02x",
					 path, ln, c);
		}
	}
	I->cur = buf;
	I->end = buf + n;
	int line = ini_parse_stream(reader, I, on_entry, I);
	free(buf);
	if (I->oom || line == -2)
		return nb_errorf(err, NB_ENOMEM, "out of memory");
	if (I->long_line && (line <= 0 || I->long_line <= line))
		return nb_errorf(
		    err, NB_EFORMAT,
		    "%s:%d: line longer than %d characters (continue "
		    "a long value on indented lines)",
		    path, I->long_line, I->max_len);
	if (line > 0)
		return nb_errorf(err, NB_EFORMAT,
				 "%s:%d: neither a [section] nor `key = value`",
				 path, line);
	if (line < 0)
		return nb_errorf(err, NB_EIO, "%s: cannot read", path);
	return 0;
}

/* ---- small helpers --------------------------------------------------------
 */

static int starts(const char *s, const char *prefix)
{
	return !strncmp(s, prefix, strlen(prefix));
}

/* "name, name, ..." of the plugins of a kind (except `skip`). */
static void known_plugins(const nb_registry *reg, enum nb_plugin_kind kind,
			  const char *skip, char *buf, size_t len)
{
	size_t used = 0;
	buf[0] = 0;
	for (int i = 0; i < nb_registry_count(reg); i++) {
		const nb_plugin *p = nb_registry_get(reg, i);
		if (p->kind != kind || (skip && !strcmp(p->name, skip)))
			continue;
		int w = snprintf(buf + used, len - used, "%s%s",
				 used ? ", " : "", p->name);
		if (w < 0 || (size_t)w >= len - used)
			break;
		used += (size_t)w;
	}
	if (!used)
		snprintf(buf, len, "none; is the plugin folder complete?");
}

static const char *const kind_word[] = {"", "architecture", "teacher strategy",
					"attack"};

/* The plugin of a kind called name, or an error listing the known ones. */
static const nb_plugin *find_plugin(const nb_registry *reg,
				    enum nb_plugin_kind kind, const char *name,
				    const char *where, char *err)
{
	const nb_plugin *p = nb_registry_find(reg, kind, name);
	if (p)
		return p;
	char list[NB_ERR_LEN / 2];
	known_plugins(reg, kind, NULL, list, sizeof list);
	nb_errorf(err, NB_EINVAL, "%s: unknown %s '%s' (known: %s)", where,
		  kind_word[kind], name, list);
	return NULL;
}

static void where_of(const ini *I, const entry *e, char *buf, size_t len)
{
	snprintf(buf, len, "%s:%d: [%s] %s", I->path, e->line, e->raw_section,
		 e->raw_key);
}

/* Prints a note once per (scope, key, value): scope is the section, or
 * "train" for every [train...] section, so that a default shared by all
 * architectures is reported once. */
static void note(ini *I, const char *section, const char *key,
		 const char *value)
{
	if (!I->notes)
		return;
	char id[96];
	snprintf(id, sizeof id, "%s %s=%s",
		 starts(section, "train") ? "train" : section, key, value);
	for (int i = 0; i < I->n_noted; i++)
		if (!strcmp(I->noted[i], id))
			return;
	if (I->n_noted < (int)(sizeof I->noted / sizeof *I->noted))
		snprintf(I->noted[I->n_noted++], sizeof *I->noted, "%s", id);
	fprintf(I->notes, "%s: [%s] %s not set: %s\n", I->path, section, key,
		value);
}

/* ---- the keys -------------------------------------------------------------
 */

static const char *const suite_keys[] = {
    "name",	      "description", "dataset",
    "data_dir",	      "seeds",	     "teachers",
    "students",	      "defenses",    "attacks",
    "default_tier",   "synthetic",   "synthetic_train",
    "synthetic_test", "data_parallel", NULL};

enum train_key {
	K_EPOCHS,
	K_BATCH,
	K_EVAL_BATCH,
	K_OPTIM,
	K_LR,
	K_MOMENTUM,
	K_WD,
	K_NESTEROV,
	K_SCHEDULE,
	K_TRAIN_LIMIT,
	K_TEST_LIMIT,
	N_TRAIN_KEYS
};
static const char *const train_keys[] = {
    "epochs", "batch",	  "eval_batch", "optim",       "lr",	     "momentum",
    "wd",     "nesterov", "schedule",	"train_limit", "test_limit", NULL};

static int key_index(const char *const *keys, const char *key)
{
	for (int i = 0; keys[i]; i++)
		if (!strcmp(keys[i], key))
			return i;
	return -1;
}

static void key_list(const char *const *keys, char *buf, size_t len)
{
	size_t used = 0;
	buf[0] = 0;
	for (int i = 0; keys[i]; i++) {
		int w = snprintf(buf + used, len - used, "%s%s",
				 used ? ", " : "", keys[i]);
		if (w < 0 || (size_t)w >= len - used)
			break;
		used += (size_t)w;
	}
}

static void option_list(const nb_plugin *p, int adversary, char *buf,
			size_t len)
{
	size_t used = 0;
	buf[0] = 0;
	for (const nb_option *o = p->options; o && o->name; o++) {
		int w = snprintf(buf + used, len - used, "%s%s",
				 used ? ", " : "", o->name);
		if (w < 0 || (size_t)w >= len - used)
			return;
		used += (size_t)w;
	}
	if (adversary)
		snprintf(buf + used, len - used, "%sadversary",
			 used ? ", " : "");
	else if (!used)
		snprintf(buf, len, "it takes none");
}

/* ---- value parsers --------------------------------------------------------
 */

static int parse_int(const char *v, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	if (!*v || isspace((unsigned char)*v))
		return -1;
	long x = strtol(v, &end, 10);
	if (errno || *end || x < lo || x > hi)
		return -1;
	*out = x;
	return 0;
}

static int parse_float(const char *v, double *out)
{
	char *end;
	errno = 0;
	if (!*v || isspace((unsigned char)*v))
		return -1;
	double x = strtod(v, &end);
	if (errno || *end || !isfinite(x))
		return -1;
	*out = x;
	return 0;
}

static int parse_bool(const char *v, int *out)
{
	static const char *const yes[] = {"1", "true", "yes", "on"};
	static const char *const no[] = {"0", "false", "no", "off"};
	for (int i = 0; i < 4; i++) {
		if (!strcasecmp(v, yes[i]))
			return *out = 1, 0;
		if (!strcasecmp(v, no[i]))
			return *out = 0, 0;
	}
	return -1;
}

/* Splits a comma-separated list, trimming white space around items. An
 * empty value is an empty list; an empty item, an item of NB_SUITE_NAME
 * characters or more, a duplicate or more than NB_SUITE_MAX items is an
 * error (what is wrong goes into why). */
static int split_list(const char *v, char items[][NB_SUITE_NAME], int *n,
		      char *why, size_t wlen)
{
	*n = 0;
	const char *p = v;
	while (isspace((unsigned char)*p))
		p++;
	if (!*p)
		return 0;
	for (;;) {
		const char *comma = strchr(p, ',');
		const char *e = comma ? comma : p + strlen(p);
		const char *b = p;
		while (b < e && isspace((unsigned char)*b))
			b++;
		while (e > b && isspace((unsigned char)e[-1]))
			e--;
		if (e == b)
			return snprintf(why, wlen, "an empty item"), -1;
		if ((size_t)(e - b) >= NB_SUITE_NAME)
			return snprintf(why, wlen,
					"an item longer than %d "
					"characters",
					NB_SUITE_NAME - 1),
			       -1;
		if (*n == NB_SUITE_MAX)
			return snprintf(why, wlen, "more than %d items",
					NB_SUITE_MAX),
			       -1;
		memcpy(items[*n], b, (size_t)(e - b));
		items[*n][e - b] = 0;
		for (int i = 0; i < *n; i++)
			if (!strcmp(items[i], items[*n]))
				return snprintf(why, wlen, "'%s' twice",
						items[i]),
				       -1;
		(*n)++;
		if (!comma)
			return 0;
		p = comma + 1;
	}
}

/*
 * constant | step:M1,M2,...:GAMMA | cosine[:ETA_MIN]. epochs sets cosine's
 * t_max (0 when only the syntax is checked).
 */
static int parse_schedule(const char *v, int epochs, nb_schedule *s, char *why,
			  size_t wlen)
{
	memset(s, 0, sizeof *s);
	if (!strcmp(v, "constant")) {
		s->kind = NB_SCHED_CONSTANT;
		return 0;
	}
	if (!strcmp(v, "cosine") || starts(v, "cosine:")) {
		s->kind = NB_SCHED_COSINE;
		s->t_max = epochs;
		double eta = 0;
		if (v[6] == ':' && (parse_float(v + 7, &eta) < 0 || eta < 0))
			return snprintf(
				   why, wlen,
				   "cosine's ETA_MIN must be a number >= 0"),
			       -1;
		s->eta_min = (float)eta;
		return 0;
	}
	if (starts(v, "step:")) {
		s->kind = NB_SCHED_STEP;
		const char *ms = v + 5;
		const char *colon = strrchr(ms, ':');
		double gamma;
		if (!colon || parse_float(colon + 1, &gamma) < 0 ||
		    !(gamma > 0))
			return snprintf(
				   why, wlen,
				   "step needs milestones and a GAMMA > 0: "
				   "step:M1,M2,...:GAMMA"),
			       -1;
		s->gamma = (float)gamma;
		char list[NB_SUITE_NAME * 2];
		size_t len = (size_t)(colon - ms);
		if (len == 0 || len >= sizeof list)
			return snprintf(why, wlen,
					"step needs milestones: "
					"step:M1,M2,...:GAMMA"),
			       -1;
		memcpy(list, ms, len);
		list[len] = 0;
		char *save = NULL;
		for (char *t = strtok_r(list, ",", &save); t;
		     t = strtok_r(NULL, ",", &save)) {
			while (isspace((unsigned char)*t))
				t++;
			char *e = t + strlen(t);
			while (e > t && isspace((unsigned char)e[-1]))
				*--e = 0;
			long m;
			if (parse_int(t, 1, 1000000, &m) < 0)
				return snprintf(
					   why, wlen,
					   "milestone '%s' is not an epoch "
					   ">= 1",
					   t),
				       -1;
			if (s->n_milestones == NB_SCHED_MAX_MILESTONES)
				return snprintf(why, wlen,
						"more than %d milestones",
						NB_SCHED_MAX_MILESTONES),
				       -1;
			if (s->n_milestones &&
			    m <= s->milestones[s->n_milestones - 1])
				return snprintf(why, wlen,
						"milestones must increase"),
				       -1;
			s->milestones[s->n_milestones++] = (int)m;
		}
		if (!s->n_milestones)
			return snprintf(why, wlen, "step needs milestones"), -1;
		return 0;
	}
	return snprintf(
		   why, wlen,
		   "not constant, step:M1,M2,...:GAMMA or cosine[:ETA_MIN]"),
	       -1;
}

/* Checks one value of a train key (syntax and range). */
static int check_train_value(const ini *I, const entry *e, int k, char *err)
{
	char where[NB_ERR_LEN / 2];
	where_of(I, e, where, sizeof where);
	const char *v = e->value;
	long x;
	double d;
	int b;
	char why[160];
	nb_schedule s;
	switch (k) {
	case K_EPOCHS:
		if (parse_int(v, 1, 1000000, &x) < 0)
			goto bad_int;
		return 0;
	case K_BATCH:
	case K_EVAL_BATCH:
		if (parse_int(v, 1, 1 << 20, &x) < 0)
			goto bad_int;
		return 0;
	case K_TRAIN_LIMIT:
	case K_TEST_LIMIT:
		if (parse_int(v, 0, INT_MAX, &x) < 0)
			return nb_errorf(err, NB_EINVAL,
					 "%s: '%s' is not a whole number >= 0 "
					 "(0 = the whole split)",
					 where, v);
		return 0;
	case K_OPTIM:
		if (strcmp(v, "sgd") && strcmp(v, "adam"))
			return nb_errorf(err, NB_EINVAL,
					 "%s: '%s' is not sgd or adam", where,
					 v);
		return 0;
	case K_LR:
		if (parse_float(v, &d) < 0 || !(d > 0))
			return nb_errorf(err, NB_EINVAL,
					 "%s: '%s' is not a number > 0", where,
					 v);
		return 0;
	case K_MOMENTUM:
		if (parse_float(v, &d) < 0 || d < 0 || d >= 1)
			return nb_errorf(err, NB_EINVAL,
					 "%s: '%s' is not a number in [0, 1)",
					 where, v);
		return 0;
	case K_WD:
		if (parse_float(v, &d) < 0 || d < 0 || d > 1)
			return nb_errorf(err, NB_EINVAL,
					 "%s: '%s' is not a number in [0, 1]",
					 where, v);
		return 0;
	case K_NESTEROV:
		if (parse_bool(v, &b) < 0)
			return nb_errorf(err, NB_EINVAL,
					 "%s: '%s' is not true/false, yes/no, "
					 "on/off or 1/0",
					 where, v);
		return 0;
	case K_SCHEDULE:
		if (strlen(v) >= sizeof((nb_train_spec *)0)->schedule)
			return nb_errorf(err, NB_EINVAL, "%s: too long", where);
		if (parse_schedule(v, 0, &s, why, sizeof why) < 0)
			return nb_errorf(err, NB_EINVAL, "%s: '%s': %s", where,
					 v, why);
		return 0;
	}
	return 0;
bad_int:
	return nb_errorf(err, NB_EINVAL,
			 "%s: '%s' is not a whole number in "
			 "[1, %d]",
			 where, v, k == K_EPOCHS ? 1000000 : 1 << 20);
}

/* ---- pass 2: sections and keys --------------------------------------------
 */

enum sec_kind { SEC_SUITE, SEC_TRAIN, SEC_TEACHER, SEC_ATTACK, SEC_TIER };

/*
 * Classifies a section name; writes the canonical name (plugin and arch
 * aliases replaced by the plugin's name) into canon and the plugin of a
 * [teacher.X] / [attack.X] into *plugin. where names the place for errors.
 */
static int classify(const nb_registry *reg, const char *name, int in_tier,
		    const char *where, enum sec_kind *kind,
		    const nb_plugin **plugin, char *canon, size_t clen,
		    char *err)
{
	*plugin = NULL;
	snprintf(canon, clen, "%s", name);
	if (!strcmp(name, "suite")) {
		*kind = SEC_SUITE;
		return 0;
	}
	if (!strcmp(name, "train") || !strcmp(name, "train.teacher") ||
	    !strcmp(name, "train.student")) {
		*kind = SEC_TRAIN;
		return 0;
	}
	if (starts(name, "train.") && name[6]) {
		const nb_plugin *p =
		    find_plugin(reg, NB_PLUGIN_ARCH, name + 6, where, err);
		if (!p)
			return NB_EINVAL;
		*kind = SEC_TRAIN;
		snprintf(canon, clen, "train.%s", p->name);
		return 0;
	}
	if (starts(name, "teacher.") && name[8]) {
		const nb_plugin *p =
		    find_plugin(reg, NB_PLUGIN_TEACHER, name + 8, where, err);
		if (!p)
			return NB_EINVAL;
		*kind = SEC_TEACHER;
		*plugin = p;
		snprintf(canon, clen, "teacher.%s", p->name);
		return 0;
	}
	if (starts(name, "attack.") && name[7]) {
		if (!strcmp(name + 7, "scratch"))
			return nb_errorf(err, NB_EINVAL,
					 "%s: scratch (the student trained "
					 "alone) is no plugin and takes no "
					 "options",
					 where);
		const nb_plugin *p =
		    find_plugin(reg, NB_PLUGIN_ATTACK, name + 7, where, err);
		if (!p)
			return NB_EINVAL;
		*kind = SEC_ATTACK;
		*plugin = p;
		snprintf(canon, clen, "attack.%s", p->name);
		return 0;
	}
	if (!in_tier && starts(name, "tier.") && name[5]) {
		for (const char *c = name + 5; *c; c++)
			if (!isalnum((unsigned char)*c) && *c != '-' &&
			    *c != '_')
				return nb_errorf(err, NB_EINVAL,
						 "%s: a tier name is letters, "
						 "digits, '-' and '_'",
						 where);
		if (strlen(name + 5) >= NB_SUITE_NAME)
			return nb_errorf(err, NB_EINVAL,
					 "%s: tier name too long", where);
		*kind = SEC_TIER;
		return 0;
	}
	return nb_errorf(err, NB_EINVAL,
			 "%s: unknown section [%s] (sections: suite, train, "
			 "train.teacher, train.student, train.ARCH, "
			 "teacher.STRATEGY, attack.NAME%s)",
			 where, name, in_tier ? "" : ", tier.NAME");
}

/* Checks the key of an entry of a classified section (name only, and for
 * suite and train keys the value's syntax too). */
static int check_key(const ini *I, const entry *e, enum sec_kind kind,
		     const nb_plugin *p, char *err)
{
	char where[NB_ERR_LEN / 2], list[NB_ERR_LEN / 2];
	where_of(I, e, where, sizeof where);
	const char *key = e->key;
	int k;
	switch (kind) {
	case SEC_SUITE:
		if (key_index(suite_keys, key) < 0) {
			key_list(suite_keys, list, sizeof list);
			return nb_errorf(
			    err, NB_EINVAL,
			    "%s: unknown key (keys of [suite]: %s)", where,
			    list);
		}
		if (e->tier >= 0 && !strcmp(key, "default_tier"))
			return nb_errorf(err, NB_EINVAL,
					 "%s: a tier cannot set the default "
					 "tier",
					 where);
		return 0;
	case SEC_TRAIN:
		if ((k = key_index(train_keys, key)) < 0) {
			key_list(train_keys, list, sizeof list);
			return nb_errorf(err, NB_EINVAL,
					 "%s: unknown key (keys of [train...]: "
					 "%s)",
					 where, list);
		}
		return check_train_value(I, e, k, err);
	case SEC_TEACHER:
	case SEC_ATTACK: {
		int adv = kind == SEC_TEACHER && p->teacher &&
			  p->teacher->needs_adversary;
		if (adv && !strcmp(key, "adversary"))
			return 0;
		for (const nb_option *o = p->options; o && o->name; o++)
			if (!strcmp(o->name, key))
				return 0;
		option_list(p, adv, list, sizeof list);
		if (kind == SEC_TEACHER && !strcmp(key, "adversary"))
			return nb_errorf(
			    err, NB_EINVAL,
			    "%s: teacher strategy %s trains "
			    "against no adversary (%s%s)",
			    where, p->name, p->options ? "its keys: " : "",
			    p->options ? list : "it takes no keys");
		return nb_errorf(
		    err, NB_EINVAL, "%s: %s %s has no option '%s' (%s%s)",
		    where, kind_word[p->kind], p->name, key,
		    strcmp(list, "it takes none") ? "options: " : "", list);
	}
	case SEC_TIER:
		break;
	}
	return 0;
}

static int replace(char **dst, const char *src)
{
	char *c = strdup(src);
	if (!c)
		return NB_ENOMEM;
	free(*dst);
	*dst = c;
	return 0;
}

/* Checks every header and entry; turns tier entries into entries of their
 * target sections; collects the tier names. */
static int validate(ini *I, const nb_registry *reg, char *err)
{
	char where[NB_ERR_LEN / 2], canon[NB_SUITE_NAME * 2];
	enum sec_kind kind;
	const nb_plugin *p;
	int rc;
	for (int i = 0; i < I->nh; i++) {
		snprintf(where, sizeof where, "%s:%d", I->path, I->h[i].line);
		if ((rc = classify(reg, I->h[i].name, 0, where, &kind, &p,
				   canon, sizeof canon, err)) < 0)
			return rc;
		if (kind != SEC_TIER)
			continue;
		const char *t = I->h[i].name + 5;
		int dup = 0;
		for (int j = 0; j < I->n_tiers; j++)
			dup |= !strcmp(I->tiers[j], t);
		if (dup)
			continue;
		if (I->n_tiers == NB_SUITE_MAX)
			return nb_errorf(err, NB_EINVAL,
					 "%s: more than %d tiers", where,
					 NB_SUITE_MAX);
		snprintf(I->tiers[I->n_tiers++], NB_SUITE_NAME, "%s", t);
	}
	for (int i = 0; i < I->n; i++) {
		entry *e = &I->e[i];
		snprintf(where, sizeof where, "%s:%d", I->path, e->line);
		if (!e->section[0])
			return nb_errorf(err, NB_EINVAL,
					 "%s: '%s' is outside any section (a "
					 "suite starts with [suite])",
					 where, e->key);
		if ((rc = classify(reg, e->section, 0, where, &kind, &p, canon,
				   sizeof canon, err)) < 0)
			return rc;
		if (kind == SEC_TIER) {
			const char *t = e->section + 5;
			for (int j = 0; j < I->n_tiers; j++)
				if (!strcmp(I->tiers[j], t))
					e->tier = j;
			if (e->tier < 0) /* cannot happen: headers come first */
				return nb_errorf(err, NB_EINVAL,
						 "%s: [%s] without a header",
						 where, e->section);
			const char *dot = strrchr(e->key, '.');
			if (!dot || dot == e->key || !dot[1])
				return nb_errorf(err, NB_EINVAL,
						 "%s: [%s] '%s': a tier sets "
						 "SECTION.KEY = VALUE (e.g. "
						 "train.epochs = 1)",
						 where, e->section, e->key);
			char sec[NB_SUITE_NAME * 2];
			size_t len = (size_t)(dot - e->key);
			if (len >= sizeof sec)
				return nb_errorf(err, NB_EINVAL,
						 "%s: [%s] '%s': section name "
						 "too long",
						 where, e->section, e->key);
			memcpy(sec, e->key, len);
			sec[len] = 0;
			char w2[NB_ERR_LEN / 2];
			where_of(I, e, w2, sizeof w2);
			if ((rc = classify(reg, sec, 1, w2, &kind, &p, canon,
					   sizeof canon, err)) < 0)
				return rc;
			if (replace(&e->key, dot + 1) < 0)
				return nb_errorf(err, NB_ENOMEM,
						 "out of memory");
		}
		if (replace(&e->section, canon) < 0)
			return nb_errorf(err, NB_ENOMEM, "out of memory");
		if ((rc = check_key(I, e, kind, p, err)) < 0)
			return rc;
	}
	/* a key set twice in the same place (after aliases are resolved) */
	for (int i = 0; i < I->n; i++)
		for (int j = 0; j < i; j++)
			if (I->e[i].tier == I->e[j].tier &&
			    !strcmp(I->e[i].section, I->e[j].section) &&
			    !strcmp(I->e[i].key, I->e[j].key)) {
				where_of(I, &I->e[i], where, sizeof where);
				return nb_errorf(err, NB_EINVAL,
						 "%s: set twice (first at line "
						 "%d)",
						 where, I->e[j].line);
			}
	return 0;
}

/* ---- lookups --------------------------------------------------------------
 */

/* The entry of section/key in a tier (-1 = the base file), or NULL. */
static const entry *lookup_in(const ini *I, int tier, const char *section,
			      const char *key)
{
	for (int i = 0; i < I->n; i++)
		if (I->e[i].tier == tier && !strcmp(I->e[i].section, section) &&
		    !strcmp(I->e[i].key, key))
			return &I->e[i];
	return NULL;
}

/* The tier's entry if it has one, else the base file's. */
static const entry *lookup(const ini *I, const char *section, const char *key)
{
	const entry *e =
	    I->sel >= 0 ? lookup_in(I, I->sel, section, key) : NULL;
	return e ? e : lookup_in(I, -1, section, key);
}

/* ---- the [suite] section --------------------------------------------------
 */

static int suite_string(ini *I, const char *key, char *dst, size_t len,
			char *err)
{
	const entry *e = lookup(I, "suite", key);
	if (!e)
		return 0;
	if (strlen(e->value) >= len) {
		char where[NB_ERR_LEN / 2];
		where_of(I, e, where, sizeof where);
		return nb_errorf(err, NB_EINVAL,
				 "%s: longer than %zu characters", where,
				 len - 1);
	}
	snprintf(dst, len, "%s", e->value);
	return 1;
}

static int suite_list(ini *I, const char *key, char items[][NB_SUITE_NAME],
		      int *n, const entry **out, char *err)
{
	const entry *e = lookup(I, "suite", key);
	*n = 0;
	*out = e;
	if (!e)
		return 0;
	char why[160];
	if (split_list(e->value, items, n, why, sizeof why) < 0) {
		char where[NB_ERR_LEN / 2];
		where_of(I, e, where, sizeof where);
		return nb_errorf(err, NB_EINVAL, "%s: %s", where, why);
	}
	return 0;
}

static int resolve_archs(ini *I, const nb_registry *reg, const entry *e,
			 char items[][NB_SUITE_NAME], int n, int *self,
			 char *err)
{
	char where[NB_ERR_LEN / 2];
	where_of(I, e, where, sizeof where);
	for (int i = 0; i < n; i++) {
		if (self && !strcmp(items[i], "self")) {
			*self = 1;
			memmove(items[i], items[i + 1],
				(size_t)(n - i - 1) * NB_SUITE_NAME);
			n--;
			i--;
			continue;
		}
		const nb_plugin *p =
		    find_plugin(reg, NB_PLUGIN_ARCH, items[i], where, err);
		if (!p)
			return NB_EINVAL;
		snprintf(items[i], NB_SUITE_NAME, "%s", p->name);
		for (int j = 0; j < i; j++)
			if (!strcmp(items[j], items[i]))
				return nb_errorf(err, NB_EINVAL,
						 "%s: %s listed twice", where,
						 p->name);
	}
	return n;
}

static int load_suite_section(ini *I, const nb_registry *reg, nb_suite *s,
			      char *err)
{
	char where[NB_ERR_LEN / 2];
	int rc;
	const entry *e;
	/* name: default the file name without its folder and .ini */
	if ((rc = suite_string(I, "name", s->name, sizeof s->name, err)) < 0)
		return rc;
	if (!rc) {
		const char *b = strrchr(I->path, '/');
		b = b ? b + 1 : I->path;
		size_t len = strlen(b);
		if (len > 4 && !strcmp(b + len - 4, ".ini"))
			len -= 4;
		if (len >= sizeof s->name)
			len = sizeof s->name - 1;
		memcpy(s->name, b, len);
		s->name[len] = 0;
		note(I, "suite", "name", s->name);
	}
	if ((rc = suite_string(I, "description", s->description,
			       sizeof s->description, err)) < 0)
		return rc;
	/* dataset */
	if ((rc = suite_string(I, "dataset", s->dataset, sizeof s->dataset,
			       err)) < 0)
		return rc;
	if (!rc)
		return nb_errorf(err, NB_EINVAL,
				 "%s: [suite] has no dataset (one of "
				 "fashion-mnist, mnist, cifar10, cifar100, "
				 "cifar100-coarse, tiny-imagenet)",
				 I->path);
	int known = 0;
	for (size_t i = 0; i < N_DATASETS; i++)
		known |= !strcmp(dataset_names[i], s->dataset);
	if (!known) {
		where_of(I, lookup(I, "suite", "dataset"), where, sizeof where);
		return nb_errorf(err, NB_EINVAL,
				 "%s: unknown dataset '%s' (known: "
				 "fashion-mnist, mnist, cifar10, cifar100, "
				 "cifar100-coarse, tiny-imagenet)",
				 where, s->dataset);
	}
	nb_dataset_preset(s->dataset, &s->aug);
	if ((rc = suite_string(I, "data_dir", s->data_dir, sizeof s->data_dir,
			       err)) < 0)
		return rc;
	/* synthetic data */
	if ((rc = suite_string(I, "synthetic", s->synthetic,
			       sizeof s->synthetic, err)) < 0)
		return rc;
	if (rc) {
		e = lookup(I, "suite", "synthetic");
		where_of(I, e, where, sizeof where);
		const char *fmt = s->synthetic;
		int fits = (!strcmp(fmt, "idx") &&
			    (!strcmp(s->dataset, "mnist") ||
			     !strcmp(s->dataset, "fashion-mnist"))) ||
			   (!strcmp(fmt, "cifar10") &&
			    !strcmp(s->dataset, "cifar10")) ||
			   (!strcmp(fmt, "cifar100") &&
			    starts(s->dataset, "cifar100"));
		if (strcmp(fmt, "idx") && strcmp(fmt, "cifar10") &&
		    strcmp(fmt, "cifar100"))
			return nb_errorf(err, NB_EINVAL,
					 "%s: '%s' is not idx, cifar10 or "
					 "cifar100",
					 where, fmt);
		if (!fits)
			return nb_errorf(err, NB_EINVAL,
					 "%s: synthetic %s data does not fit "
					 "dataset %s",
					 where, fmt, s->dataset);
		if (s->data_dir[0])
			return nb_errorf(err, NB_EINVAL,
					 "%s: synthetic data goes to the run's "
					 "own folder: do not set data_dir too",
					 where);
	} else if (!s->data_dir[0]) {
		note(I, "suite", "data_dir", "the dataset's default folder");
	}
	static const char *const counts[2] = {"synthetic_train",
					      "synthetic_test"};
	int *cval[2] = {&s->synthetic_train, &s->synthetic_test};
	static const int cdef[2] = {2000, 500};
	for (int i = 0; i < 2; i++) {
		*cval[i] = cdef[i];
		e = lookup(I, "suite", counts[i]);
		if (!e) {
			if (s->synthetic[0]) {
				char v[16];
				snprintf(v, sizeof v, "%d", cdef[i]);
				note(I, "suite", counts[i], v);
			}
			continue;
		}
		where_of(I, e, where, sizeof where);
		long x;
		if (parse_int(e->value, 1, 1000000, &x) < 0)
			return nb_errorf(err, NB_EINVAL,
					 "%s: '%s' is not a whole number in "
					 "[1, 1000000]",
					 where, e->value);
		if (!s->synthetic[0])
			return nb_errorf(err, NB_EINVAL,
					 "%s: only used with synthetic = ...",
					 where);
		*cval[i] = (int)x;
	}
	/* data_parallel: the largest group of MPI ranks for one job */
	s->data_parallel = 0;
	if ((e = lookup(I, "suite", "data_parallel"))) {
		where_of(I, e, where, sizeof where);
		long x;
		if (parse_int(e->value, 0, 1 << 20, &x) < 0)
			return nb_errorf(err, NB_EINVAL,
					 "%s: '%s' is not a whole number in "
					 "[0, 1048576]",
					 where, e->value);
		s->data_parallel = (int)x;
	}
	/* seeds */
	char items[NB_SUITE_MAX][NB_SUITE_NAME];
	int n;
	if ((rc = suite_list(I, "seeds", items, &n, &e, err)) < 0)
		return rc;
	if (!e) {
		s->seeds[0] = 0;
		s->n_seeds = 1;
		note(I, "suite", "seeds", "0");
	} else {
		where_of(I, e, where, sizeof where);
		if (!n)
			return nb_errorf(err, NB_EINVAL, "%s: no seeds", where);
		for (int i = 0; i < n; i++) {
			char *end;
			errno = 0;
			unsigned long long x = strtoull(items[i], &end, 10);
			if (!isdigit((unsigned char)items[i][0]) || *end ||
			    errno)
				return nb_errorf(err, NB_EINVAL,
						 "%s: seed '%s' is not a "
						 "non-negative integer",
						 where, items[i]);
			s->seeds[i] = (uint64_t)x;
			for (int j = 0; j < i; j++)
				if (s->seeds[j] == s->seeds[i])
					return nb_errorf(err, NB_EINVAL,
							 "%s: seed %llu twice",
							 where, x);
		}
		s->n_seeds = n;
	}
	/* teachers and students */
	if ((rc = suite_list(I, "teachers", s->teachers, &s->n_teachers, &e,
			     err)) < 0)
		return rc;
	if (!e || !s->n_teachers)
		return nb_errorf(
		    err, NB_EINVAL,
		    "%s: [suite] lists no teachers (architectures)", I->path);
	if ((rc = resolve_archs(I, reg, e, s->teachers, s->n_teachers, NULL,
				err)) < 0)
		return rc;
	if ((rc = suite_list(I, "students", s->students, &s->n_students, &e,
			     err)) < 0)
		return rc;
	if (!e || !s->n_students)
		return nb_errorf(
		    err, NB_EINVAL,
		    "%s: [suite] lists no students (architectures, "
		    "or self)",
		    I->path);
	if ((rc = resolve_archs(I, reg, e, s->students, s->n_students,
				&s->students_self, err)) < 0)
		return rc;
	s->n_students = rc;
	return 0;
}

/* ---- plugins --------------------------------------------------------------
 */

/* Applies the base and tier entries of a plugin's section to u->opts. */
static int apply_plugin(ini *I, const nb_registry *reg, nb_plugin_use *u,
			const char *section, char *err)
{
	char where[NB_ERR_LEN / 2], e2[NB_ERR_LEN];
	const nb_plugin *p = u->plugin;
	for (int pass = 0; pass < 2; pass++) {
		int tier = pass ? I->sel : -1;
		if (pass && tier < 0)
			break;
		for (int i = 0; i < I->n; i++) {
			const entry *e = &I->e[i];
			if (e->tier != tier || strcmp(e->section, section))
				continue;
			snprintf(where, sizeof where, "%s:%d", I->path,
				 e->line);
			if (!strcmp(e->key, "adversary") && p->teacher &&
			    p->teacher->needs_adversary) {
				const nb_plugin *a = find_plugin(
				    reg, NB_PLUGIN_ARCH, e->value, where, err);
				if (!a)
					return NB_EINVAL;
				snprintf(u->adversary, sizeof u->adversary,
					 "%s", a->name);
				continue;
			}
			if (nb_options_set(p, u->opts, e->key, e->value, e2) <
			    0)
				return nb_errorf(err, NB_EINVAL, "%s: %s",
						 where, e2);
		}
	}
	return 0;
}

static int use_plugin(ini *I, const nb_registry *reg, const nb_plugin *p,
		      nb_plugin_use *u, char *err)
{
	char e2[NB_ERR_LEN], section[NB_SUITE_NAME * 2];
	u->plugin = p;
	u->adversary[0] = 0;
	u->opts = nb_options_new(p, e2);
	if (!u->opts)
		return nb_errorf(err, NB_EINVAL, "%s: %s", I->path, e2);
	snprintf(section, sizeof section, "%s.%s",
		 p->kind == NB_PLUGIN_TEACHER ? "teacher" : "attack", p->name);
	int rc = apply_plugin(I, reg, u, section, err);
	if (rc < 0)
		return rc;
	for (const nb_option *o = p->options; o && o->name; o++)
		if (!lookup(I, section, o->name)) {
			char v[NB_OPT_STRING_LEN + 8];
			nb_options_format(o, u->opts, v, sizeof v);
			note(I, section, o->name, v);
		}
	if (p->teacher && p->teacher->needs_adversary && !u->adversary[0])
		note(I, section, "adversary", "the teacher's own architecture");
	return 0;
}

static int load_plugins(ini *I, const nb_registry *reg, nb_suite *s, char *err)
{
	char where[NB_ERR_LEN / 2], list[NB_ERR_LEN / 2];
	char items[NB_SUITE_MAX][NB_SUITE_NAME];
	const entry *e;
	int n, rc;
	const nb_plugin *normal =
	    nb_registry_find(reg, NB_PLUGIN_TEACHER, "normal");
	if (!normal) {
		known_plugins(reg, NB_PLUGIN_TEACHER, NULL, list, sizeof list);
		return nb_errorf(err, NB_EINVAL,
				 "%s: the 'normal' teacher strategy plugin is "
				 "not loaded (loaded strategies: %s)",
				 I->path, list);
	}
	if ((rc = use_plugin(I, reg, normal, &s->normal, err)) < 0)
		return rc;
	/* defences */
	if ((rc = suite_list(I, "defenses", items, &n, &e, err)) < 0)
		return rc;
	if (!e)
		note(I, "suite", "defenses", "none");
	for (int i = 0; i < n; i++) {
		where_of(I, e, where, sizeof where);
		if (!strcmp(items[i], "normal"))
			return nb_errorf(err, NB_EINVAL,
					 "%s: 'normal' is implicit (every "
					 "teacher is trained normally as the "
					 "reference): list only defences",
					 where);
		const nb_plugin *p =
		    nb_registry_find(reg, NB_PLUGIN_TEACHER, items[i]);
		if (!p || p == normal) {
			known_plugins(reg, NB_PLUGIN_TEACHER, "normal", list,
				      sizeof list);
			return nb_errorf(err, NB_EINVAL,
					 "%s: unknown teacher strategy '%s' "
					 "(known defences: %s)",
					 where, items[i], list);
		}
		for (int j = 0; j < i; j++)
			if (s->defenses[j].plugin == p)
				return nb_errorf(err, NB_EINVAL,
						 "%s: %s listed twice", where,
						 p->name);
		s->n_defenses = i + 1;
		if ((rc = use_plugin(I, reg, p, &s->defenses[i], err)) < 0)
			return rc;
	}
	/* attacks */
	if ((rc = suite_list(I, "attacks", items, &n, &e, err)) < 0)
		return rc;
	if (!e)
		note(I, "suite", "attacks", "none (only scratch baselines)");
	for (int i = 0; i < n; i++) {
		where_of(I, e, where, sizeof where);
		if (!strcmp(items[i], "scratch"))
			return nb_errorf(err, NB_EINVAL,
					 "%s: 'scratch' (the student trained "
					 "alone) is implicit and always run: "
					 "list only attacks",
					 where);
		const nb_plugin *p =
		    find_plugin(reg, NB_PLUGIN_ATTACK, items[i], where, err);
		if (!p)
			return NB_EINVAL;
		for (int j = 0; j < i; j++)
			if (s->attacks[j].plugin == p)
				return nb_errorf(err, NB_EINVAL,
						 "%s: %s listed twice", where,
						 p->name);
		s->n_attacks = i + 1;
		if ((rc = use_plugin(I, reg, p, &s->attacks[i], err)) < 0)
			return rc;
	}
	/* the values in sections of plugins this tier does not use are
	 * checked too (a typo there would surface only later) */
	for (int i = 0; i < I->n; i++) {
		const entry *x = &I->e[i];
		if ((x->tier != -1 && x->tier != I->sel) ||
		    !(starts(x->section, "teacher.") ||
		      starts(x->section, "attack.")))
			continue;
		int teacher = starts(x->section, "teacher.");
		const nb_plugin *p = nb_registry_find(
		    reg, teacher ? NB_PLUGIN_TEACHER : NB_PLUGIN_ATTACK,
		    x->section + (teacher ? 8 : 7));
		int used = p == normal;
		for (int j = 0; j < s->n_defenses; j++)
			used |= s->defenses[j].plugin == p;
		for (int j = 0; j < s->n_attacks; j++)
			used |= s->attacks[j].plugin == p;
		if (used || !p)
			continue;
		nb_plugin_use scratch = {.plugin = p};
		char e2[NB_ERR_LEN];
		scratch.opts = nb_options_new(p, e2);
		if (!scratch.opts)
			return nb_errorf(err, NB_EINVAL, "%s: %s", I->path, e2);
		rc = apply_plugin(I, reg, &scratch, x->section, err);
		free(scratch.opts);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ---- training specs -------------------------------------------------------
 */

/* The spec of role (and arch, or NULL for the role's own). Layers, lowest
 * first: [train], [train.ROLE], [train.ARCH], then the same in the tier. */
static int resolve_spec(ini *I, enum nb_role role, const char *arch,
			nb_train_spec *sp, char *err)
{
	char secs[3][NB_SUITE_NAME + 8];
	snprintf(secs[0], sizeof secs[0], "train");
	snprintf(secs[1], sizeof secs[1], "train.%s",
		 role == NB_ROLE_TEACHER ? "teacher" : "student");
	snprintf(secs[2], sizeof secs[2], "train.%s", arch ? arch : "");
	const int nlayers = arch ? 3 : 2;
	const entry *v[N_TRAIN_KEYS];
	int lv[N_TRAIN_KEYS];
	for (int k = 0; k < N_TRAIN_KEYS; k++) {
		v[k] = NULL;
		lv[k] = -1;
		for (int L = 5; L >= 0 && !v[k]; L--) {
			int tier = L >= 3 ? I->sel : -1;
			if ((L >= 3 && tier < 0) || L % 3 >= nlayers)
				continue;
			v[k] = lookup_in(I, tier, secs[L % 3], train_keys[k]);
			lv[k] = L;
		}
	}
	memset(sp, 0, sizeof *sp);
	int adam = v[K_OPTIM] && !strcmp(v[K_OPTIM]->value, "adam");
	sp->optim = adam ? nb_optim_adam_default() : nb_optim_sgd_default();
	/* the layer that chose the optimiser resets its keys */
	static const int okeys[] = {K_LR, K_MOMENTUM, K_WD, K_NESTEROV};
	for (int i = 0; i < 4; i++)
		if (v[okeys[i]] && v[K_OPTIM] && lv[okeys[i]] < lv[K_OPTIM])
			v[okeys[i]] = NULL;
	char where[NB_ERR_LEN / 2], why[160];
	double d;
	long x;
	sp->epochs =
	    v[K_EPOCHS] && !parse_int(v[K_EPOCHS]->value, 1, 1000000, &x)
		? (int)x
		: 10;
	sp->batch = v[K_BATCH] && !parse_int(v[K_BATCH]->value, 1, 1 << 20, &x)
			? (int)x
			: 128;
	sp->eval_batch = v[K_EVAL_BATCH] && !parse_int(v[K_EVAL_BATCH]->value,
						       1, 1 << 20, &x)
			     ? (int)x
			     : 500;
	sp->train_limit =
	    v[K_TRAIN_LIMIT] &&
		    !parse_int(v[K_TRAIN_LIMIT]->value, 0, INT_MAX, &x)
		? (int)x
		: 0;
	sp->test_limit = v[K_TEST_LIMIT] && !parse_int(v[K_TEST_LIMIT]->value,
						       0, INT_MAX, &x)
			     ? (int)x
			     : 0;
	if (v[K_LR] && !parse_float(v[K_LR]->value, &d))
		sp->optim.lr = (float)d;
	if (v[K_WD] && !parse_float(v[K_WD]->value, &d))
		sp->optim.weight_decay = (float)d;
	static const int sgd_only[] = {K_MOMENTUM, K_NESTEROV};
	for (int i = 0; i < 2; i++) {
		int k = sgd_only[i];
		if (v[k] && adam) {
			where_of(I, v[k], where, sizeof where);
			return nb_errorf(
			    err, NB_EINVAL,
			    "%s: applies to sgd only (the optimiser "
			    "is adam, from %s:%d)",
			    where, I->path, v[K_OPTIM]->line);
		}
	}
	if (v[K_MOMENTUM] && !parse_float(v[K_MOMENTUM]->value, &d))
		sp->optim.momentum = (float)d;
	int b;
	if (v[K_NESTEROV] && !parse_bool(v[K_NESTEROV]->value, &b))
		sp->optim.nesterov = b;
	if (sp->optim.nesterov && !(sp->optim.momentum > 0)) {
		where_of(I, v[K_NESTEROV], where, sizeof where);
		return nb_errorf(err, NB_EINVAL,
				 "%s: Nesterov needs a momentum > 0", where);
	}
	const char *sched = v[K_SCHEDULE] ? v[K_SCHEDULE]->value : "constant";
	snprintf(sp->schedule, sizeof sp->schedule, "%s", sched);
	if (parse_schedule(sched, sp->epochs, &sp->sched, why, sizeof why) <
	    0) {
		where_of(I, v[K_SCHEDULE], where, sizeof where);
		return nb_errorf(err, NB_EINVAL, "%s: '%s': %s", where, sched,
				 why);
	}
	sp->sched.base_lr = sp->optim.lr;
	/* notes for what no layer set */
	const char *scope = arch ? secs[2] : "train";
	const char *oname = adam ? "adam" : "sgd";
	char val[64];
	for (int k = 0; k < N_TRAIN_KEYS; k++) {
		if (v[k] || (adam && (k == K_MOMENTUM || k == K_NESTEROV)))
			continue;
		switch (k) {
		case K_EPOCHS:
			snprintf(val, sizeof val, "%d", sp->epochs);
			break;
		case K_BATCH:
			snprintf(val, sizeof val, "%d", sp->batch);
			break;
		case K_EVAL_BATCH:
			snprintf(val, sizeof val, "%d", sp->eval_batch);
			break;
		case K_OPTIM:
			snprintf(val, sizeof val, "sgd");
			break;
		case K_LR:
			snprintf(val, sizeof val, "%g (%s default)",
				 sp->optim.lr, oname);
			break;
		case K_MOMENTUM:
			snprintf(val, sizeof val, "%g (%s default)",
				 sp->optim.momentum, oname);
			break;
		case K_WD:
			snprintf(val, sizeof val, "%g (%s default)",
				 sp->optim.weight_decay, oname);
			break;
		case K_NESTEROV:
			snprintf(val, sizeof val, "false");
			break;
		case K_SCHEDULE:
			snprintf(val, sizeof val, "constant");
			break;
		default:
			snprintf(val, sizeof val, "0 (the whole split)");
		}
		note(I, scope, train_keys[k], val);
	}
	return 0;
}

static int add_arch(nb_suite *s, const char *arch, const char *path, char *err)
{
	for (int i = 0; i < s->n_arch_train; i++)
		if (!strcmp(s->arch_train[i].arch, arch))
			return 0;
	if (s->n_arch_train == NB_SUITE_MAX)
		return nb_errorf(err, NB_EINVAL,
				 "%s: more than %d architectures in one suite",
				 path, NB_SUITE_MAX);
	snprintf(s->arch_train[s->n_arch_train++].arch, NB_SUITE_NAME, "%s",
		 arch);
	return 0;
}

static int load_train(ini *I, nb_suite *s, char *err)
{
	int rc;
	for (int r = 0; r < 2; r++)
		if ((rc = resolve_spec(I, (enum nb_role)r, NULL, &s->train[r],
				       err)) < 0)
			return rc;
	for (int i = 0; i < s->n_teachers; i++)
		if ((rc = add_arch(s, s->teachers[i], I->path, err)) < 0)
			return rc;
	for (int i = 0; i < s->n_students; i++)
		if ((rc = add_arch(s, s->students[i], I->path, err)) < 0)
			return rc;
	for (int i = 0; i < s->n_defenses; i++)
		if (s->defenses[i].adversary[0] &&
		    (rc = add_arch(s, s->defenses[i].adversary, I->path, err)) <
			0)
			return rc;
	for (int i = 0; i < s->n_arch_train; i++)
		for (int r = 0; r < 2; r++)
			if ((rc = resolve_spec(
				 I, (enum nb_role)r, s->arch_train[i].arch,
				 &s->arch_train[i].spec[r], err)) < 0)
				return rc;
	/* [train.ARCH] sections of architectures this tier does not use */
	for (int i = 0; i < I->n && I->notes; i++) {
		const entry *e = &I->e[i];
		if ((e->tier != -1 && e->tier != I->sel) ||
		    !starts(e->section, "train.") ||
		    !strcmp(e->section, "train.teacher") ||
		    !strcmp(e->section, "train.student"))
			continue;
		int used = 0;
		for (int j = 0; j < s->n_arch_train; j++)
			used |= !strcmp(s->arch_train[j].arch, e->section + 6);
		if (used)
			continue;
		char id[sizeof *I->noted];
		snprintf(id, sizeof id, "[%.80s] unused", e->section);
		int seen = 0;
		for (int j = 0; j < I->n_noted; j++)
			seen |= !strcmp(I->noted[j], id);
		if (seen)
			continue;
		if (I->n_noted < (int)(sizeof I->noted / sizeof *I->noted))
			memcpy(I->noted[I->n_noted++], id, sizeof id);
		fprintf(I->notes,
			"%s: [%s] not used: %s is not an architecture of "
			"this suite%s%s\n",
			I->path, e->section, e->section + 6,
			s->tier[0] ? " in tier " : "", s->tier);
	}
	return 0;
}

/* ---- the tier -------------------------------------------------------------
 */

static void tier_list(const ini *I, char *buf, size_t len)
{
	size_t used = 0;
	buf[0] = 0;
	for (int i = 0; i < I->n_tiers; i++) {
		int w = snprintf(buf + used, len - used, "%s%s",
				 used ? ", " : "", I->tiers[i]);
		if (w < 0 || (size_t)w >= len - used)
			break;
		used += (size_t)w;
	}
}

static int select_tier(ini *I, const char *tier, nb_suite *s, char *err)
{
	char list[NB_ERR_LEN / 2];
	tier_list(I, list, sizeof list);
	I->sel = -1;
	const entry *def = lookup_in(I, -1, "suite", "default_tier");
	if (def) { /* checked even when another tier is asked for */
		int found = 0;
		for (int i = 0; i < I->n_tiers; i++)
			found |= !strcmp(I->tiers[i], def->value);
		if (!found) {
			char where[NB_ERR_LEN / 2];
			where_of(I, def, where, sizeof where);
			return nb_errorf(
			    err, NB_EINVAL, "%s: no tier '%s' (%s%s)", where,
			    def->value,
			    I->n_tiers ? "tiers: " : "the suite has no tiers",
			    list);
		}
	}
	const char *want = tier && *tier ? tier : def ? def->value : NULL;
	if (want) {
		for (int i = 0; i < I->n_tiers; i++)
			if (!strcmp(I->tiers[i], want))
				I->sel = i;
		if (I->sel < 0) {
			char where[NB_ERR_LEN / 2];
			if (tier && *tier)
				snprintf(where, sizeof where, "%s", I->path);
			else
				where_of(I, def, where, sizeof where);
			return nb_errorf(err, NB_EINVAL,
					 "%s: no tier '%s' (%s%s)", where, want,
					 I->n_tiers ? "tiers: "
						    : "the suite has no tiers",
					 list);
		}
		snprintf(s->tier, sizeof s->tier, "%s", want);
	}
	for (int i = 0; i < I->n_tiers; i++)
		snprintf(s->tiers[i], NB_SUITE_NAME, "%s", I->tiers[i]);
	s->n_tiers = I->n_tiers;
	return 0;
}

/* ---- the API --------------------------------------------------------------
 */

int nb_suite_load(const char *path, const char *tier, nb_registry *reg,
		  nb_suite *s, FILE *notes, char *err)
{
	memset(s, 0, sizeof *s);
	if (!path || !reg)
		return nb_errorf(err, NB_EINVAL,
				 "nb_suite_load: no path or registry");
	if (strlen(path) >= sizeof s->path)
		return nb_errorf(err, NB_EINVAL, "%s: path too long", path);
	snprintf(s->path, sizeof s->path, "%s", path);
	ini *I = calloc(1, sizeof *I);
	if (!I)
		return nb_errorf(err, NB_ENOMEM, "out of memory");
	I->path = path;
	I->sel = -1;
	I->notes = notes;
	int rc = ini_read(I, path, err);
	if (rc == 0)
		rc = validate(I, reg, err);
	if (rc == 0)
		rc = select_tier(I, tier, s, err);
	if (rc == 0)
		rc = load_suite_section(I, reg, s, err);
	if (rc == 0)
		rc = load_plugins(I, reg, s, err);
	if (rc == 0)
		rc = load_train(I, s, err);
	ini_free(I);
	free(I);
	if (rc < 0)
		nb_suite_free(s);
	return rc;
}

void nb_suite_free(nb_suite *s)
{
	if (!s)
		return;
	free(s->normal.opts);
	for (int i = 0; i < s->n_defenses && i < NB_SUITE_MAX; i++)
		free(s->defenses[i].opts);
	for (int i = 0; i < s->n_attacks && i < NB_SUITE_MAX; i++)
		free(s->attacks[i].opts);
	memset(s, 0, sizeof *s);
}

const nb_train_spec *nb_suite_train_for(const nb_suite *s, const char *arch,
					enum nb_role role)
{
	int r = role == NB_ROLE_STUDENT ? 1 : 0;
	for (int i = 0; arch && i < s->n_arch_train; i++)
		if (!strcmp(s->arch_train[i].arch, arch))
			return &s->arch_train[i].spec[r];
	return &s->train[r];
}

/* ---- finding suites -------------------------------------------------------
 */

/* The program (or test) runs from the build tree. */
static int running_uninstalled(void)
{
	char exe[PATH_MAX], build[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0 || !NB_BUILD_DIR[0] || !realpath(NB_BUILD_DIR, build))
		return 0;
	exe[n] = 0;
	size_t bl = strlen(build);
	return !strncmp(exe, build, bl) && exe[bl] == '/';
}

/* Appends "a, b" (the *.ini names in dir, without .ini) to buf. */
static void list_suites(const char *dir, char *buf, size_t len)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	size_t used = strlen(buf);
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);
		if (n <= 4 || strcmp(de->d_name + n - 4, ".ini"))
			continue;
		int w = snprintf(buf + used, len - used, "%s%.*s",
				 used ? ", " : "", (int)(n - 4), de->d_name);
		if (w < 0 || (size_t)w >= len - used)
			break;
		used += (size_t)w;
	}
	closedir(d);
}

int nb_suite_find(const char *name, char *out, size_t len, char *err)
{
	if (!name || !*name)
		return nb_errorf(err, NB_EINVAL, "no suite name");
	size_t n = strlen(name);
	if (strchr(name, '/') || (n > 4 && !strcmp(name + n - 4, ".ini"))) {
		if (access(name, R_OK) != 0)
			return nb_errorf(err, NB_EIO,
					 "%s: cannot read the suite file: %s",
					 name, strerror(errno));
		if (n >= len)
			return nb_errorf(err, NB_EINVAL, "%s: path too long",
					 name);
		memcpy(out, name, n + 1);
		return 0;
	}
	char dirs[4 * PATH_MAX] = "";
	const char *env = getenv("NASTY_BENCH_SUITES");
	if (env && *env)
		snprintf(dirs, sizeof dirs, "%s", env);
	if (running_uninstalled() && NB_SRC_DIR[0]) {
		size_t u = strlen(dirs);
		snprintf(dirs + u, sizeof dirs - u, "%s%s/suites", u ? ":" : "",
			 NB_SRC_DIR);
	}
	size_t u = strlen(dirs);
	snprintf(dirs + u, sizeof dirs - u, "%s%s/suites", u ? ":" : "",
		 NB_DATADIR);
	char looked[NB_ERR_LEN / 2] = "", found[NB_ERR_LEN / 4] = "";
	char *save = NULL;
	for (char *d = strtok_r(dirs, ":", &save); d;
	     d = strtok_r(NULL, ":", &save)) {
		char path[PATH_MAX];
		int w = snprintf(path, sizeof path, "%s/%s.ini", d, name);
		if (w > 0 && (size_t)w < sizeof path &&
		    access(path, R_OK) == 0) {
			if ((size_t)w >= len)
				return nb_errorf(err, NB_EINVAL,
						 "%s: path too long", path);
			memcpy(out, path, (size_t)w + 1);
			return 0;
		}
		size_t lu = strlen(looked);
		snprintf(looked + lu, sizeof looked - lu, "%s%s",
			 lu ? ", " : "", d);
		list_suites(d, found, sizeof found);
	}
	return nb_errorf(err, NB_EIO,
			 "no suite '%s' (looked in %s; suites there: %s; or "
			 "give a path to an .ini file)",
			 name, looked, found[0] ? found : "none");
}
