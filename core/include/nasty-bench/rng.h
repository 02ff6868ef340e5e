/*
 * rng.h - seeded random numbers, one independent stream per purpose.
 *
 * A run derives every stream from (seed, purpose), so drawing more numbers
 * for one purpose (say, augmentation) never shifts another (say, the data
 * order). The generator is xoshiro256** seeded through splitmix64; it does
 * not reproduce PyTorch's streams, only its distributions.
 */
#ifndef NASTY_BENCH_RNG_H
#define NASTY_BENCH_RNG_H

#include <stdint.h>

enum nb_rng_purpose {
	NB_RNG_INIT = 1,    /* parameter initialisation */
	NB_RNG_ORDER = 2,   /* data order (shuffling) */
	NB_RNG_AUGMENT = 3, /* crops, flips */
	NB_RNG_DROPOUT = 4, /* dropout masks */
	NB_RNG_NOISE = 5,   /* generator noise, synthetic inputs */
	NB_RNG_DATA = 6     /* synthetic datasets */
};

typedef struct nb_rng {
	uint64_t s[4];
	int has_spare; /* Box-Muller keeps its second value */
	double spare;
} nb_rng;

/* Seeds rng for (seed, purpose). Same arguments, same stream. */
void nb_rng_seed(nb_rng *rng, uint64_t seed, uint64_t purpose);
uint64_t nb_rng_u64(nb_rng *rng);
/* Uniform double in [0, 1) with 53 random bits. */
double nb_rng_uniform(nb_rng *rng);
/* Uniform integer in [0, n), unbiased. n > 0. */
uint64_t nb_rng_below(nb_rng *rng, uint64_t n);
/* Standard normal (Box-Muller). */
double nb_rng_normal(nb_rng *rng);
/* Fisher-Yates shuffle of idx[0..n). */
void nb_rng_shuffle(nb_rng *rng, int *idx, int n);

#endif
