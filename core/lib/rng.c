/*
 * rng.c - xoshiro256** streams seeded through splitmix64 from
 * (seed, purpose). Box-Muller for normals. Not cryptographic.
 */
#include <math.h>

#include "rng.h"

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

void nb_rng_seed(nb_rng *rng, uint64_t seed, uint64_t purpose)
{
	/* Mix the purpose in through its own splitmix step so that nearby
	 * (seed, purpose) pairs give unrelated streams. */
	uint64_t p = purpose;
	uint64_t x = seed ^ splitmix64(&p);
	for (int i = 0; i < 4; i++)
		rng->s[i] = splitmix64(&x);
	rng->has_spare = 0;
	rng->spare = 0;
}

uint64_t nb_rng_u64(nb_rng *rng)
{
	uint64_t *s = rng->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

double nb_rng_uniform(nb_rng *rng)
{
	return (double)(nb_rng_u64(rng) >> 11) * 0x1.0p-53;
}

uint64_t nb_rng_below(nb_rng *rng, uint64_t n)
{
	/* Rejection from the top of the range keeps it unbiased. */
	uint64_t limit = UINT64_MAX - UINT64_MAX % n;
	uint64_t r;
	do
		r = nb_rng_u64(rng);
	while (r >= limit);
	return r % n;
}

double nb_rng_normal(nb_rng *rng)
{
	if (rng->has_spare) {
		rng->has_spare = 0;
		return rng->spare;
	}
	double u1, u2;
	do
		u1 = nb_rng_uniform(rng);
	while (u1 <= 0.0);
	u2 = nb_rng_uniform(rng);
	double r = sqrt(-2.0 * log(u1));
	rng->spare = r * sin(2.0 * M_PI * u2);
	rng->has_spare = 1;
	return r * cos(2.0 * M_PI * u2);
}

void nb_rng_shuffle(nb_rng *rng, int *idx, int n)
{
	for (int i = n - 1; i > 0; i--) {
		int j = (int)nb_rng_below(rng, (uint64_t)i + 1);
		int t = idx[i];
		idx[i] = idx[j];
		idx[j] = t;
	}
}
