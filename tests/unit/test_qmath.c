/* tests/unit/test_qmath.c: the shared quantization math (src/core/qmath.h) against hand values
 * and the check values of docs/algorithm.md (§2, §4, §6.3, §7). */
#define _POSIX_C_SOURCE 200809L /* strdup, clock_gettime */
#include "test.h"
#include "cpu_test_util.h"
#include "core/qmath.h"

static void test_rounding_and_fq(void) {
    /* ties to even (torch.round), never half-away */
    CHECK(qd_fake_quant(2.5f, 1.0f, 0.0f, 0.0f, 255.0f) == 2.0f, "2.5 -> 2");
    CHECK(qd_fake_quant(3.5f, 1.0f, 0.0f, 0.0f, 255.0f) == 4.0f, "3.5 -> 4");
    CHECK(qd_fake_quant(-2.5f, 1.0f, 10.0f, 0.0f, 255.0f) == -2.0f, "-2.5 -> -2");
    CHECK(qd_fake_quant(0.5f, 1.0f, 0.0f, 0.0f, 255.0f) == 0.0f, "0.5 -> 0");
    CHECK(qd_quant_code(1.5f, 1.0f, 0.0f, 0.0f, 255.0f) == 2.0f, "code(1.5) = 2");
    /* hand values: s = 0.1, z = 2, 4-bit grid [0, 15] */
    int reg;
    CHECK(fabsf(qd_fake_quant_region(0.37f, 0.1f, 2.0f, 0.0f, 15.0f, &reg) - 0.4f) < 1e-7f && reg == QD_FQ_INSIDE, "0.37 -> 0.4");
    CHECK(fabsf(qd_fake_quant_region(2.0f, 0.1f, 2.0f, 0.0f, 15.0f, &reg) - 1.3f) < 1e-6f && reg == QD_FQ_HIGH, "2.0 -> 1.3 (high)");
    CHECK(fabsf(qd_fake_quant_region(-0.5f, 0.1f, 2.0f, 0.0f, 15.0f, &reg) + 0.2f) < 1e-7f && reg == QD_FQ_LOW, "-0.5 -> -0.2 (low)");
    /* boundary code qmax is inside (PyTorch clamp passes the gradient at equality) */
    CHECK(qd_fake_quant_region(1.3f, 0.1f, 2.0f, 0.0f, 15.0f, &reg) > 1.29f && reg == QD_FQ_INSIDE, "code == qmax is inside");
    CHECK(qd_fake_quant_dx(1.5f, QD_FQ_INSIDE) == 1.5f && qd_fake_quant_dx(1.5f, QD_FQ_LOW) == 0.0f &&
          qd_fake_quant_dx(1.5f, QD_FQ_DROPPED) == 1.5f, "STE dx rule");
    CHECK(qd_fake_quant_ds(1.0f, 0.37f, 0.1f, 2.0f, 0.0f, 15.0f, QD_FQ_LOW) == -2.0f, "ds low = qmin - z");
    CHECK(qd_fake_quant_ds(1.0f, 0.37f, 0.1f, 2.0f, 0.0f, 15.0f, QD_FQ_HIGH) == 13.0f, "ds high = qmax - z");
    CHECK(fabsf(qd_fake_quant_ds(1.0f, 0.37f, 0.1f, 2.0f, 0.0f, 15.0f, QD_FQ_INSIDE) - 0.3f) < 1e-5f, "ds inside = r - v");
    CHECK(qd_fake_quant_ds(1.0f, 0.37f, 0.1f, 2.0f, 0.0f, 15.0f, QD_FQ_DROPPED) == 0.0f, "ds dropped = 0");
    CHECK(fabsf(qd_lsq_grad_factor(1000.0, 15) - (float)(1.0 / sqrt(15000.0))) < 1e-9f, "LSQ grad factor");
    CHECK(qd_lsq_guard(-0.5f) == 0.5f && qd_lsq_guard(0.0f) == QD_LSQ_SCALE_FLOOR, "LSQ guard");
}

static void test_qparams(void) {
    float s, z;
    qd_range_to_qparams(-1.0f, 3.0f, 0, 255, &s, &z);
    CHECK(fabsf(s - 4.0f / 255.0f) < 1e-9f && z == 64.0f, "[-1,3] 8-bit: s=%g z=%g (want 4/255, 64)", s, z);
    qd_range_to_qparams(0.5f, 2.0f, 0, 255, &s, &z);
    CHECK(fabsf(s - 2.0f / 255.0f) < 1e-9f && z == 0.0f, "[0.5,2]: 0 forced in, z=0 (s=%g z=%g)", s, z);
    qd_range_to_qparams(-2.0f, -1.0f, 0, 15, &s, &z);
    CHECK(fabsf(s - 2.0f / 15.0f) < 1e-8f && z == 15.0f, "[-2,-1] 4-bit: z = qmax (s=%g z=%g)", s, z);
    qd_range_to_qparams(0.0f, 0.0f, 0, 15, &s, &z);
    CHECK(s == 1e-8f && z == 0.0f, "empty range: s floored at 1e-8 (s=%g z=%g)", s, z);
    CHECK(qd_qmax_for_bits(2) == 3 && qd_qmax_for_bits(4) == 15 && qd_qmax_for_bits(8) == 255, "qmax_for_bits");
}

static void test_schedules(void) {
    /* §4: T = 20000, warm-up 0.2 -> T_w = 4000, beta 20 -> 2 */
    CHECK(qd_beta_at(1, 20000, 0.2f, 20, 2) == 20.0f && qd_beta_at(3999, 20000, 0.2f, 20, 2) == 20.0f, "beta = 20 before T_w");
    float b4500 = qd_beta_at(4500, 20000, 0.2f, 20, 2);
    CHECK(fabsf(b4500 - 19.44f) < 0.005f, "beta(4500) = %g, spec check value 19.44", b4500);
    CHECK(qd_beta_at(4000, 20000, 0.2f, 20, 2) == 20.0f, "beta(T_w) = 20");
    CHECK(fabsf(qd_beta_at(20000, 20000, 0.2f, 20, 2) - 2.0f) < 1e-6f, "beta(T) = 2");
    CHECK(qd_beta_at(25000, 20000, 0.2f, 20, 2) == 2.0f, "beta past T = 2");
    CHECK(!qd_reg_active(3999, 20000, 0.2f) && qd_reg_active(4000, 20000, 0.2f), "regulariser on from c = 4000");
    CHECK(qd_warmup_iters(20000, 0.2f) == 4000, "T_w = 4000");
    /* §6.3 cosine: iteration t = c - 1 uses base * (1 + cos(pi t / T)) / 2 */
    CHECK(qd_cosine_lr(4e-5f, 1, 20000) == 4e-5f, "cosine lr at t = 0 is the base");
    CHECK(fabsf(qd_cosine_lr(4e-5f, 10001, 20000) - 2e-5f) < 1e-12f, "cosine lr at T/2 is base/2");
    CHECK(qd_cosine_lr(4e-5f, 20001, 20000) < 1e-15f, "cosine lr at T is 0");
}

static void test_adam(void) {
    /* PyTorch Adam, two steps, hand-derived in double: p=1, g=0.5 then -0.25, lr=0.1 */
    float p = 1.0f, m = 0.0f, v = 0.0f;
    double pm = 0, pv = 0, pp = 1.0, g[2] = {0.5, -0.25};
    for (int step = 1; step <= 2; step++) {
        p = qd_adam_update(p, (float)g[step - 1], &m, &v, 0.1f, step);
        pm = 0.9 * pm + 0.1 * g[step - 1];
        pv = 0.999 * pv + 0.001 * g[step - 1] * g[step - 1];
        double mh = pm / (1 - pow(0.9, step)), vh = pv / (1 - pow(0.999, step));
        pp = pp - 0.1 * mh / (sqrt(vh) + 1e-8);
        CHECK(fabs(p - pp) < 2e-6, "Adam step %d: %.7f vs %.7f", step, p, pp);
    }
    CHECK(fabs(pp - 0.873366) < 1e-5, "hand value after two steps: %.6f", pp);
}

static void test_rng(void) {
    qd_rng_key k = {12345u, 0u, 3u, 1u};
    CHECK(qd_rng_u32(k, 7, 99) == qd_rng_u32(k, 7, 99), "same key/iter/elem -> same value");
    qd_rng_key k2 = k; k2.tensor = 2;
    qd_rng_key k3 = k; k3.unit = 4;
    int diff_t = 0, diff_u = 0, diff_i = 0, diff_s = 0;
    qd_rng_key k4 = k; k4.seed_lo = 12346u;
    for (uint64_t e = 0; e < 1000; e++) {
        diff_t += qd_rng_u32(k, 7, e) != qd_rng_u32(k2, 7, e);
        diff_u += qd_rng_u32(k, 7, e) != qd_rng_u32(k3, 7, e);
        diff_i += qd_rng_u32(k, 7, e) != qd_rng_u32(k, 8, e);
        diff_s += qd_rng_u32(k, 7, e) != qd_rng_u32(k4, 7, e);
    }
    CHECK(diff_t > 990 && diff_u > 990 && diff_i > 990 && diff_s > 990, "streams differ: tensor %d unit %d iter %d seed %d",
          diff_t, diff_u, diff_i, diff_s);
    double sum = 0.0;
    int64_t keep = 0, N = 1000000;
    float umin = 1.0f, umax = 0.0f;
    for (int64_t e = 0; e < N; e++) {
        float u = qd_rng_uniform(k, 11, (uint64_t)e);
        sum += u;
        if (u < umin) umin = u;
        if (u > umax) umax = u;
        keep += qd_keep_quant(k, 11, (uint64_t)e, 0.5f);
    }
    CHECK(fabs(sum / (double)N - 0.5) < 1e-3, "mean of 1e6 uniforms %.5f", sum / (double)N);
    CHECK(umin >= 0.0f && umax < 1.0f, "uniform range [%g, %g]", umin, umax);
    CHECK(fabs((double)keep / (double)N - 0.5) < 0.005, "keep fraction for p = 0.5: %.4f", (double)keep / (double)N);
    CHECK(qd_keep_quant(k, 11, 5, 1.0f) == 1, "p = 1 keeps everything");
    int64_t keep3 = 0;
    for (int64_t e = 0; e < 200000; e++) keep3 += qd_keep_quant(k, 12, (uint64_t)e, 0.3f);
    CHECK(fabs((double)keep3 / 200000.0 - 0.3) < 0.005, "keep fraction for p = 0.3: %.4f", (double)keep3 / 200000.0);
    /* batch draws: in range, roughly uniform */
    int hist[10] = {0};
    int bad = 0;
    for (uint32_t it = 1; it <= 3125; it++)
        for (uint32_t slot = 0; slot < 32; slot++) {
            uint32_t d = qd_draw_index(k, it, slot, 10);
            if (d >= 10) bad++;
            else hist[d]++;
        }
    CHECK(bad == 0, "draw_index out of range %d times", bad);
    for (int i = 0; i < 10; i++) CHECK(abs(hist[i] - 10000) < 400, "draw histogram bucket %d = %d (want ~10000)", i, hist[i]);
    CHECK(qd_draw_index(k, 1, 0, 1024) == qd_draw_index(k, 1, 0, 1024), "draw determinism");
    /* the mask depends only on the logical element index (4 lanes of one Philox block) */
    uint32_t ctr[4] = {0, (k.unit << 16), k.tensor, 9};
    qd_philox4x32_10(ctr, k.seed_lo ^ (k.unit * 0x85EBCA6Bu), k.seed_hi);
    for (int l = 0; l < 4; l++) CHECK(qd_rng_u32(k, 9, (uint64_t)l) == ctr[l], "lane %d of the Philox block", l);
}

static void test_adaround_math(void) {
    /* init: rest = 0 -> V = -ln 11 (§4); h(V_init) = rest */
    CHECK(fabsf(qd_adaround_init_v(0.3f, 0.1f) - (-logf(11.0f))) < 2e-3f || fabsf(qd_adaround_hraw(qd_adaround_init_v(0.3f, 0.1f)) - (0.3f / 0.1f - floorf(0.3f / 0.1f))) < 1e-5f,
          "init at rest 0");
    CHECK(fabsf(qd_adaround_init_v(0.0f, 0.1f) + logf(11.0f)) < 1e-5f, "V(rest=0) = -ln 11");
    float V = qd_adaround_init_v(0.27f, 0.1f);
    CHECK(fabsf(qd_adaround_hraw(V) - 0.7f) < 1e-5f, "h(V_init) = rest 0.7 (%g)", qd_adaround_hraw(V));
    /* soft/hard: w = 0.27, s = 0.1, z = 1: floor 2; soft = (2 + 0.7 + 1 - 1) * 0.1; hard rounds up */
    CHECK(fabsf(qd_adaround_weight(0.27f, V, 0.1f, 1.0f, 0.0f, 15.0f, 0, NULL) - 0.27f) < 1e-6f, "soft weight at init = w");
    CHECK(fabsf(qd_adaround_weight(0.27f, V, 0.1f, 1.0f, 0.0f, 15.0f, 1, NULL) - 0.3f) < 1e-6f, "hard weight rounds up");
    CHECK(fabsf(qd_adaround_weight(0.22f, qd_adaround_init_v(0.22f, 0.1f), 0.1f, 1.0f, 0.0f, 15.0f, 1, NULL) - 0.2f) < 1e-6f,
          "hard weight rounds down");
    CHECK(qd_adaround_weight(5.0f, 0.0f, 0.1f, 1.0f, 0.0f, 15.0f, 1, NULL) == (15.0f - 1.0f) * 0.1f, "hard weight clamps");
    CHECK(qd_adaround_reg(10.0f, 2.0f) == 0.0f && fabsf(qd_adaround_reg(0.0f, 2.0f) - 1.0f) < 1e-4f, "regulariser values");
}

/* The fused per-parameter step (qd_adaround_grad, qd_adam_update_bc: one sigmoid, bias
 * corrections once per step) must give the bits of the separate functions it replaces. */
static void test_adaround_fused(void) {
    uint64_t st = 0x9e3779b97f4a7c15ull;
    int bad = 0, n = 0;
    for (int i = 0; i < 200000; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        float V = ((float)((st >> 40) & 0xffffff) / 16777216.0f - 0.5f) * 24.0f;  /* covers both clamps */
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        float w = ((float)((st >> 40) & 0xffffff) / 16777216.0f - 0.5f) * 2.0f;
        float dW = ((float)((st >> 16) & 0xffff) / 65536.0f - 0.5f) * 1e-2f;
        float s = 0.05f + (float)(i % 7) * 0.01f, z = (float)(i % 3), qmin = 0.0f, qmax = (i % 2) ? 3.0f : 15.0f;
        int on = i % 3 != 0, step = 1 + i % 5000;
        float beta = 2.0f + (float)(i % 19);
        float ref = dW * qd_adaround_dw_dv(w, V, s, z, qmin, qmax), ref_term = 0.0f, term = 0.0f;
        if (on) { ref += qd_adaround_reg_dv(V, beta, 0.01f); ref_term = qd_adaround_reg(V, beta); }
        float g = qd_adaround_grad(dW, w, V, s, z, qmin, qmax, on, beta, 0.01f, &term);
        float m0 = 1e-3f, v0 = 1e-6f, m1 = m0, v1 = v0;
        float a = qd_adam_update(V, ref, &m0, &v0, 1e-3f, step);
        float b = qd_adam_update_bc(V, g, &m1, &v1, 1e-3f, qd_adam_bias_correction(step));
        if (memcmp(&g, &ref, 4) || memcmp(&term, &ref_term, 4) || memcmp(&a, &b, 4) || m0 != m1 || v0 != v1) bad++;
        n++;
    }
    CHECK(bad == 0, "fused AdaRound/Adam step differs from the separate functions in %d of %d cases", bad, n);
}

/* |e|^2.4 of the range search (qd_pow_lp24) against pow in double over the whole range where the
 * result is a normal float, plus the special values. */
static void test_pow_lp24(void) {
    double worst = 0.0;
    float worst_x = 0.0f;
    for (uint32_t u = 0x26000000u; u < 0x5A000000u; u += 977u) {
        union { uint32_t u; float f; } c = {u};
        double ref = pow((double)c.f, (double)QD_MSE_P);
        if (ref < 1.2e-38 || ref > 3e38) continue;
        double rel = fabs((double)qd_pow_lp24(c.f) - ref) / ref;
        if (rel > worst) { worst = rel; worst_x = c.f; }
        if (qd_pow_lp24(-c.f) != qd_pow_lp24(c.f)) { CHECK(0, "pow_lp24 is even"); break; }
    }
    printf("pow_lp24: worst relative error %.3g at %g\n", worst, (double)worst_x);
    CHECK(worst < 2.5e-7, "pow_lp24 within 2.5e-7 of pow(x, 2.4) in double");
    CHECK(qd_pow_lp24(0.0f) == 0.0f && qd_pow_lp24(1e-30f) == 0.0f, "pow_lp24 of 0 and tiny values is 0");
    CHECK(qd_pow_lp24(1.0f) == 1.0f, "pow_lp24(1) = 1");
    CHECK(isinf(qd_pow_lp24(INFINITY)) && isnan(qd_pow_lp24(NAN)) && isinf(qd_pow_lp24(1e30f)), "pow_lp24 inf/NaN/overflow");
}

int main(void) {
    test_pow_lp24();
    test_rounding_and_fq();
    test_qparams();
    test_schedules();
    test_adam();
    test_rng();
    test_adaround_math();
    test_adaround_fused();
    return qd_test_summary("test_qmath");
}
