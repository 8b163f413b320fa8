/* src/core/checked.h: overflow-checked integer arithmetic for sizes and int64 values that come
 * from untrusted files (ONNX shapes, attributes, constant folding).
 *
 * Every helper returns 1 and stores the result when it is exact, 0 (leaving *out untouched)
 * when it would overflow or is undefined (division by zero, INT64_MIN / -1). Callers turn a 0
 * into a data error naming the node or tensor; nothing here reports errors itself.
 *
 * QD_MAX_TENSOR_NUMEL caps the element count of any one tensor the graph holds (activation of
 * one sample as declared in the file, weight or folded constant): 2^31 - 1 elements (8 GiB of
 * float32). Below it, every element count, dimension and flat index fits an int, which the
 * backends and kernels rely on; above it a model is rejected at load (docs/reliability.md,
 * "Model files").
 */
#ifndef QD_CORE_CHECKED_H
#define QD_CORE_CHECKED_H

#include <stdint.h>

#define QD_MAX_TENSOR_NUMEL ((int64_t)INT32_MAX)

static inline int qd_add_i64_checked(int64_t a, int64_t b, int64_t *out) {
    int64_t r;
    if (__builtin_add_overflow(a, b, &r)) return 0;
    *out = r;
    return 1;
}

static inline int qd_sub_i64_checked(int64_t a, int64_t b, int64_t *out) {
    int64_t r;
    if (__builtin_sub_overflow(a, b, &r)) return 0;
    *out = r;
    return 1;
}

static inline int qd_mul_i64_checked(int64_t a, int64_t b, int64_t *out) {
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r)) return 0;
    *out = r;
    return 1;
}

/* C division (truncating toward zero); fails on b == 0 and on INT64_MIN / -1. */
static inline int qd_div_i64_checked(int64_t a, int64_t b, int64_t *out) {
    if (b == 0 || (a == INT64_MIN && b == -1)) return 0;
    *out = a / b;
    return 1;
}

/* double -> int64 without undefined behaviour: fails for NaN, +-Inf and values outside
 * [-2^63, 2^63). Truncates toward zero like a C cast (ONNX Cast from float to int). */
static inline int qd_f64_to_i64_checked(double x, int64_t *out) {
    if (!(x >= -9223372036854775808.0 && x < 9223372036854775808.0)) return 0;
    *out = (int64_t)x;
    return 1;
}

/* int64 -> int: fails outside [INT32_MIN, INT32_MAX] (attributes stored as int in qd_attrs). */
static inline int qd_i64_to_int_checked(int64_t x, int *out) {
    if (x < INT32_MIN || x > INT32_MAX) return 0;
    *out = (int)x;
    return 1;
}

/* Element count of a shape: every dimension must be >= 0 and the product <= cap (pass
 * QD_MAX_TENSOR_NUMEL unless a tighter bound applies). Fails on a negative dimension or when the
 * product exceeds cap (a zero dimension anywhere gives 0, whatever the others are, but each must
 * still be <= cap). */
static inline int qd_shape_numel_checked(int ndim, const int64_t *dims, int64_t cap, int64_t *out) {
    int64_t n = 1;
    int zero = 0;
    for (int d = 0; d < ndim; d++) {
        if (dims[d] < 0 || dims[d] > cap) return 0;
        if (dims[d] == 0) zero = 1;
        else if (!zero && (!qd_mul_i64_checked(n, dims[d], &n) || n > cap)) return 0;
    }
    *out = zero ? 0 : n;
    return 1;
}

#endif
