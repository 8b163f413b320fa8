/* src/graph/resize_math.h: the sampling positions of ONNX Resize (2-D, per axis), shared by the CPU
 * and CUDA kernels so both compute the same taps. Follows ONNX Runtime's float arithmetic
 * (upsamplebase.h): the output coordinate maps to the input through the coordinate
 * transformation with the scale ONNX defines (the given scale, or output/input size); nearest
 * rounds it by nearest_mode and clamps to the input; linear clamps it to [0, in - 1] and blends
 * its two neighbours (both weights 1/2 when they coincide at the border). */
#ifndef QD_RESIZE_MATH_H
#define QD_RESIZE_MATH_H

#include <math.h>
#include <stdint.h>

#include "core/qmath.h" /* QD_HD */
#include "qdrop/graph.h"

typedef struct qd_resize_tap {
    int64_t i0, i1; /* input indices */
    float w0, w1;   /* their weights (nearest: w1 = 0, i1 = i0) */
} qd_resize_tap;

QD_HD float qd_resize_coord(int coord, float o, float scale, int64_t in_len, int64_t out_len) {
    switch (coord) {
    case QD_RESIZE_ASYMMETRIC: return o / scale;
    case QD_RESIZE_ALIGN_CORNERS:
        return out_len == 1 ? 0.0f : o * (float)(in_len - 1) / (float)(out_len - 1);
    case QD_RESIZE_PYTORCH_HALF_PIXEL: return out_len > 1 ? (o + 0.5f) / scale - 0.5f : 0.0f;
    default: return (o + 0.5f) / scale - 0.5f; /* half_pixel */
    }
}

QD_HD qd_resize_tap qd_resize_tap_at(int mode, int coord, int nearest, float scale, int64_t in_len, int64_t out_len,
                                     int64_t o) {
    qd_resize_tap t;
    float x = qd_resize_coord(coord, (float)o, scale, in_len, out_len);
    if (mode == QD_RESIZE_NEAREST) {
        float f = floorf(x);
        float r;
        /* ONNX nearest_mode, not quantization: the exact .5 tie goes the way the mode names, and
         * roundf only ever sees non-ties, where every rounding rule agrees */
        switch (nearest) {
        case QD_RESIZE_FLOOR: r = f; break;
        case QD_RESIZE_CEIL: r = ceilf(x); break;
        case QD_RESIZE_ROUND_PREFER_CEIL: r = (x == f + 0.5f) ? f + 1.0f : roundf(x); break;
        default: r = (x == f + 0.5f) ? f : roundf(x); break; /* round_prefer_floor */
        }
        int64_t i = r < 0.0f ? 0 : (r > (float)(in_len - 1) ? in_len - 1 : (int64_t)r);
        t.i0 = t.i1 = i;
        t.w0 = 1.0f;
        t.w1 = 0.0f;
        return t;
    }
    x = x < 0.0f ? 0.0f : (x > (float)(in_len - 1) ? (float)(in_len - 1) : x);
    int64_t i0 = (int64_t)x;
    if (i0 > in_len - 1) i0 = in_len - 1;
    int64_t i1 = i0 + 1 < in_len ? i0 + 1 : in_len - 1;
    t.i0 = i0;
    t.i1 = i1;
    if (i0 == i1) {
        t.w0 = t.w1 = 0.5f;
    } else {
        t.w1 = fabsf(x - (float)i0); /* ONNX Runtime: dx1 weighs the upper neighbour */
        t.w0 = fabsf(x - (float)i1);
    }
    return t;
}

#endif
