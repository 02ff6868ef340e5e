/* testutil.c - see testutil.h. */
#define _GNU_SOURCE
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "registry.h"
#include "testutil.h"

void nb_test_add_suite(const char *name, const nb_test_entry *tests)
{
	CU_pSuite s = CU_add_suite(name, NULL, NULL);
	if (!s)
		return;
	for (const nb_test_entry *t = tests; t->name; t++)
		CU_add_test(s, t->name, t->fn);
}

void tu_fill_uniform(float *x, size_t n, float lo, float hi, uint64_t seed)
{
	nb_rng r;
	nb_rng_seed(&r, seed, 1000);
	for (size_t i = 0; i < n; i++)
		x[i] = lo + (hi - lo) * (float)nb_rng_uniform(&r);
}

void tu_fill_normal(float *x, size_t n, float std, uint64_t seed)
{
	nb_rng r;
	nb_rng_seed(&r, seed, 1001);
	for (size_t i = 0; i < n; i++)
		x[i] = std * (float)nb_rng_normal(&r);
}

void tu_push_away(float *x, size_t n, const float *kinks, int nk, float gap)
{
	for (size_t i = 0; i < n; i++)
		for (int k = 0; k < nk; k++) {
			float d = x[i] - kinks[k];
			if (fabsf(d) < gap)
				x[i] = kinks[k] + (d >= 0 ? gap : -gap);
		}
}

double tu_dot(const float *w, const float *y, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)w[i] * (double)y[i];
	return s;
}

double tu_max_abs_diff(const float *a, const float *b, size_t n)
{
	double m = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - (double)b[i]);
		if (d > m || isnan(d))
			m = isnan(d) ? INFINITY : d;
	}
	return m;
}

int tu_gradcheck(const char *what, tu_scalar_fn f, void *ctx, float *x,
		 const float *analytic, size_t n, size_t max_points,
		 double eps, double atol, double rtol)
{
	size_t step = n <= max_points ? 1 : (n + max_points - 1) / max_points;
	int fails = 0;
	double worst = 0;
	size_t worst_i = 0;
	double worst_a = 0, worst_fd = 0;
	for (size_t i = 0; i < n; i += step) {
		float keep = x[i];
		x[i] = keep + (float)eps;
		double fp = f(ctx);
		x[i] = keep - (float)eps;
		double fm = f(ctx);
		x[i] = keep;
		/* divide by the step actually taken in float */
		double h = (double)(keep + (float)eps) - (double)(keep - (float)eps);
		double fd = (fp - fm) / h;
		double a = analytic[i];
		double err = fabs(a - fd);
		double lim = atol + rtol * fmax(fabs(a), fabs(fd));
		if (!(err <= lim)) {
			fails++;
			if (err / lim > worst || isnan(err)) {
				worst = isnan(err) ? INFINITY : err / lim;
				worst_i = i;
				worst_a = a;
				worst_fd = fd;
			}
		}
	}
	if (fails) {
		char msg[256];
		snprintf(msg, sizeof msg,
			 "%s: %d gradient mismatches, worst at %zu: analytic %.6g vs numeric %.6g",
			 what, fails, worst_i, worst_a, worst_fd);
		fprintf(stderr, "\n  %s\n", msg);
		CU_assertImplementation(CU_FALSE, __LINE__, msg, __FILE__, "",
					CU_FALSE);
		return fails;
	}
	CU_PASS(what);
	return fails;
}

const char *tu_srcpath(const char *rel)
{
	static char buf[4096];
	const char *root = getenv("NB_TEST_SRCDIR");
	snprintf(buf, sizeof buf, "%s/%s", root && *root ? root : ".", rel);
	return buf;
}

char *tu_mkdtemp(void)
{
	const char *base = getenv("TMPDIR");
	char tmpl[4096];
	snprintf(tmpl, sizeof tmpl, "%s/nbtest.XXXXXX", base && *base ? base : "/tmp");
	char *d = mkdtemp(tmpl);
	return d ? strdup(d) : NULL;
}

static int rm_one(const char *path, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void tu_rmtree(const char *dir)
{
	if (dir)
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static nb_registry *registry;

static void free_registry(void)
{
	nb_registry_free(registry);
	registry = NULL;
}

nb_registry *tu_registry(void)
{
	if (registry)
		return registry;
	char err[NB_ERR_LEN];
	nb_registry *r = nb_registry_new();
	char *dirs = strdup(nb_registry_build_dirs()), *save = NULL;
	for (char *d = strtok_r(dirs, ":", &save); d;
	     d = strtok_r(NULL, ":", &save)) {
		if (access(d, F_OK) != 0)
			continue;
		if (nb_registry_load_dir(r, d, err) < 0) {
			fprintf(stderr, "\n  plugins: %s\n", err);
			break;
		}
	}
	free(dirs);
	registry = r;
	atexit(free_registry);
	return registry;
}

const nb_plugin *tu_arch(const char *name)
{
	return nb_registry_find(tu_registry(), NB_PLUGIN_ARCH, name);
}
