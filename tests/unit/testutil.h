/*
 * testutil.h - helpers shared by the unit tests: random fills, a
 * finite-difference gradient checker, fixture and temporary paths.
 */
#ifndef NB_TESTUTIL_H
#define NB_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include <CUnit/CUnit.h>

#include "rng.h"

/* One CUnit test in a NULL-terminated table. */
typedef struct nb_test_entry {
	const char *name;
	void (*fn)(void);
} nb_test_entry;

/* Registers a suite from a table; used by each nb_test_<module>(). */
void nb_test_add_suite(const char *name, const nb_test_entry *tests);

/* Uniform fill in [lo, hi) from a fixed test stream. */
void tu_fill_uniform(float *x, size_t n, float lo, float hi, uint64_t seed);
/* Normal fill, mean 0, std `std`. */
void tu_fill_normal(float *x, size_t n, float std, uint64_t seed);
/* Keeps every value at least `gap` away from each point in kinks[0..nk)
 * (for ReLU-like ops: values near a kink break finite differences). */
void tu_push_away(float *x, size_t n, const float *kinks, int nk, float gap);

/* A scalar function of the current contents of some buffers. */
typedef double (*tu_scalar_fn)(void *ctx);

/*
 * Compares analytic[i] with the central difference (f(x+e) - f(x-e)) / 2e
 * at up to max_points positions of x (all if n <= max_points, else an even
 * spread). Passes when |a - fd| <= atol + rtol * max(|a|, |fd|) everywhere.
 * Restores x. Reports the worst position through CUnit on failure and
 * returns the number of failures.
 */
int tu_gradcheck(const char *what, tu_scalar_fn f, void *ctx, float *x,
		 const float *analytic, size_t n, size_t max_points,
		 double eps, double atol, double rtol);

/* sum_i w[i] * y[i] in double: the usual probe loss for an op's output. */
double tu_dot(const float *w, const float *y, size_t n);

/* max |a[i] - b[i]| */
double tu_max_abs_diff(const float *a, const float *b, size_t n);

/* The registry of the plugins built in this tree (loaded once, freed at
 * exit), and its architecture plugin called name (NULL if missing; the
 * load error, if any, is printed). */
struct nb_registry;
struct nb_registry *tu_registry(void);
const struct nb_plugin *tu_arch(const char *name);

/* $NB_TEST_SRCDIR/rel (or ./rel), in a static buffer. */
const char *tu_srcpath(const char *rel);
/* A fresh temporary directory (removed by tu_rmtree). */
char *tu_mkdtemp(void);
void tu_rmtree(const char *dir);

#endif
