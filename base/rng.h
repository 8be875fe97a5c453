/* rng: splitmix64, the one pseudo-random generator (head initialisation,
 * benchmark generators, random models, shuffles, the random press). Every
 * stream is a plain uint64_t state, so runs are reproducible by seed. */
#ifndef TIS_RNG_H
#define TIS_RNG_H

#include <stdint.h>

#define TIS_GOLDEN64 0x9e3779b97f4a7c15ull

/* splitmix64's output function: a bijective 64-bit mix (also a hash). */
static inline uint64_t tis_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The next value of the stream *state. */
static inline uint64_t tis_rng_next(uint64_t *state) { return tis_mix64(*state += TIS_GOLDEN64); }

/* Uniform in [0, 1) with 53 random bits. */
static inline double tis_rng_unit(uint64_t *state) { return (double)(tis_rng_next(state) >> 11) * 0x1.0p-53; }

#endif
