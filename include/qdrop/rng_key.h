/* qdrop/rng_key.h: key of the counter-based generator (src/core/qmath.h). Shared by the public
 * backend interface and the math header compiled by gcc and nvcc. */
#ifndef QDROP_RNG_KEY_H
#define QDROP_RNG_KEY_H
#include <stdint.h>
typedef struct qd_rng_key {
    uint32_t seed_lo, seed_hi; /* process.seed */
    uint32_t unit;             /* reconstruction unit */
    uint32_t tensor;           /* masked tensor id within the unit (QD_RNG_T_* or quantizer j) */
} qd_rng_key;
#endif
