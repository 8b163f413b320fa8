/* src/core/simd.h: function multi-versioning for the host element-wise loops (CPU backend, range search).
 *
 * The hot loops (fake-quant + drop, input mixing, Philox tiles, range-search scores) are written
 * as plain branch-free C over the functions of src/core/qmath.h; gcc vectorises them. Building
 * with -mavx2 would make the binary unusable on older x86-64 machines (and in Docker images built
 * elsewhere), so each hot function is compiled several times with target_clones and the loader
 * picks the widest the CPU supports. Every clone computes the same IEEE operations element by
 * element (no FMA: -ffp-contract=off; reductions in an order fixed by the source), so results are
 * bit-identical whichever clone runs (tests/unit/test_cpu_threads.c, determinism tests).
 * Set QD_NO_CLONES (or build with a compiler/target without ifunc) to get one generic version. */
#ifndef QD_CORE_SIMD_H
#define QD_CORE_SIMD_H

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && !defined(QD_NO_CLONES)
#define QD_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
/* Hand-written AVX-512 Philox (cpu_recon.c): integer-only, so bit-identical to the C version by
 * construction; chosen at run time with __builtin_cpu_supports. Off with QD_NO_CLONES, so the
 * simd_clones test compares it against the generic C. */
#define QD_AVX512_RNG 1
#else
#define QD_SIMD_CLONES
#endif

/* Elements per tile of the tiled loops: the Philox words / per-element temporaries of one tile
 * live on the stack. A multiple of 4 (one Philox block = 4 elements) and of 16 (SIMD width). */
#define QD_CPU_TILE 512

#endif
