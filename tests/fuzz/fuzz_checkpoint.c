/* tests/fuzz/fuzz_checkpoint.c: libFuzzer target for the checkpoint reader (src/recon/ckpt.c,
 * qd_ckpt_parse), the file --resume trusts least.
 * Input: a checkpoint body WITHOUT its trailing checksum; the target appends a valid FNV-1a sum
 * and takes the config/model hashes from the input itself, so the fuzzer explores the fields
 * behind the checksum (an attacker can always recompute it). The raw input is also parsed as a
 * whole file, for the checksum/magic path. The graph is the tiny one of tests/unit/test_ckpt.c
 * (two weight quantizers of 2x3 and 3x2 elements, two activation quantizers, at most 2 units).
 * Checks: a failure leaves a message, zero reports and no memory; a success has units_done and
 * the report count in range and finite, non-negative scales. */
#include "fuzz_common.h"
#include "../unit/ckpt_test_graph.h"
#include "recon/ckpt.h"

#include <math.h>

static void run_one(const uint8_t *buf, size_t n, uint64_t cfg_hash, uint64_t model_hash) {
    qd_graph *g = ckpt_test_graph();
    if (!g) return;
    qd_unit_report reps[3];
    memset(reps, 0, sizeof reps);
    int done = -1, nreps = -1;
    qd_error_clear();
    qd_status st = qd_ckpt_parse(buf, n, "fuzz.ckpt", g, cfg_hash, model_hash, &done, reps, 2, &nreps);
    qd_fuzz_check_error(st);
    if (st != QD_OK) {
        if (nreps != 0 || done != 0) { fprintf(stderr, "fuzz: failed parse left nreps %d done %d\n", nreps, done); abort(); }
        for (int i = 0; i < 3; i++)
            if (reps[i].curve || reps[i].curve_iter) { fprintf(stderr, "fuzz: failed parse left a curve\n"); abort(); }
    } else {
        if (done < 0 || done > 2 || nreps != done) { fprintf(stderr, "fuzz: units_done %d nreps %d\n", done, nreps); abort(); }
        for (int k = 0; k < g->nwq; k++)
            for (int c = 0; c < g->wq[k].channels; c++)
                if (!isfinite(g->wq[k].scale[c]) || g->wq[k].scale[c] < 0) { fprintf(stderr, "fuzz: bad scale accepted\n"); abort(); }
        for (int i = 0; i < nreps; i++) {
            volatile double s = 0;
            for (int c = 0; c < reps[i].ncurve; c++) s += reps[i].curve[c] + reps[i].curve_iter[c];
            (void)s;
            free(reps[i].curve);
            free(reps[i].curve_iter);
        }
    }
    qd_graph_free(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 16) return 0;
    uint64_t ch = 0, mh = 0;
    if (size >= 24) { memcpy(&ch, data + 8, 8); memcpy(&mh, data + 16, 8); }
    /* as a whole file: magic, length and checksum checks */
    run_one(data, size, ch, mh);
    /* resealed: the fields behind the checksum */
    uint8_t *b = malloc(size + 8);
    if (!b) return 0;
    memcpy(b, data, size);
    uint64_t h = qd_fnv1a64(b, size, 0);
    memcpy(b + size, &h, 8);
    run_one(b, size + 8, ch, mh);
    free(b);
    return 0;
}
