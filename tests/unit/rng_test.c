/* rng_test.c - the seeded streams: reproducible, independent, unbiased. */
#include <math.h>
#include <stdlib.h>

#include "rng.h"
#include "testutil.h"

static void same_seed_same_stream(void)
{
	nb_rng a, b;
	nb_rng_seed(&a, 42, NB_RNG_INIT);
	nb_rng_seed(&b, 42, NB_RNG_INIT);
	for (int i = 0; i < 1000; i++)
		CU_ASSERT_EQUAL_FATAL(nb_rng_u64(&a), nb_rng_u64(&b));
}

static void purposes_differ(void)
{
	nb_rng a, b;
	nb_rng_seed(&a, 42, NB_RNG_INIT);
	nb_rng_seed(&b, 42, NB_RNG_ORDER);
	int same = 0;
	for (int i = 0; i < 100; i++)
		same += nb_rng_u64(&a) == nb_rng_u64(&b);
	CU_ASSERT_EQUAL(same, 0);
}

static void normal_moments(void)
{
	nb_rng r;
	nb_rng_seed(&r, 7, NB_RNG_NOISE);
	double s = 0, s2 = 0;
	int n = 200000;
	for (int i = 0; i < n; i++) {
		double x = nb_rng_normal(&r);
		s += x;
		s2 += x * x;
	}
	double mean = s / n, var = s2 / n - mean * mean;
	CU_ASSERT(fabs(mean) < 0.01);
	CU_ASSERT(fabs(var - 1.0) < 0.02);
}

static void below_is_uniform(void)
{
	nb_rng r;
	nb_rng_seed(&r, 9, NB_RNG_AUGMENT);
	int count[7] = {0};
	for (int i = 0; i < 70000; i++) {
		uint64_t v = nb_rng_below(&r, 7);
		CU_ASSERT_FATAL(v < 7);
		count[v]++;
	}
	for (int k = 0; k < 7; k++)
		CU_ASSERT(abs(count[k] - 10000) < 400);
}

static void shuffle_is_permutation(void)
{
	nb_rng r;
	nb_rng_seed(&r, 3, NB_RNG_ORDER);
	int idx[100], seen[100] = {0};
	for (int i = 0; i < 100; i++)
		idx[i] = i;
	nb_rng_shuffle(&r, idx, 100);
	int moved = 0;
	for (int i = 0; i < 100; i++) {
		seen[idx[i]]++;
		moved += idx[i] != i;
	}
	for (int i = 0; i < 100; i++)
		CU_ASSERT_EQUAL(seen[i], 1);
	CU_ASSERT(moved > 80);
}

static const nb_test_entry tests[] = {
	{"same seed, same stream", same_seed_same_stream},
	{"purposes give different streams", purposes_differ},
	{"normal has mean 0 and variance 1", normal_moments},
	{"below(n) is uniform", below_is_uniform},
	{"shuffle is a permutation", shuffle_is_permutation},
	{NULL, NULL}};

void nb_test_rng(void)
{
	nb_test_add_suite("rng", tests);
}
