/* tests/fuzz/fuzz_safetensors.c: libFuzzer target for the safetensors reader (src/bert), through
 * its in-memory entry point qd_st_open_mem. On success every tensor is converted with
 * qd_st_read_f32 (F32/F16/BF16/F64; other dtypes must fail cleanly) and the invariants the reader
 * promises are checked: offsets inside the data section, byte size == numel * dtype size. */
#include "fuzz_common.h"
#include "qdrop/bert.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 20) return 0;
    qd_safetensors *st = NULL;
    qd_error_clear();
    qd_status s = qd_st_open_mem(data, size, "fuzz.safetensors", &st);
    qd_fuzz_check_error(s);
    if (s != QD_OK) {
        if (st) { fprintf(stderr, "fuzz: failed open returned a handle\n"); abort(); }
        return 0;
    }
    for (int i = 0; i < st->n; i++) {
        const qd_st_tensor *t = &st->t[i];
        if (t->begin > t->end || st->data_start + t->end > st->size ||
            t->end - t->begin != (size_t)t->numel * qd_st_dtype_size(t->dtype)) {
            fprintf(stderr, "fuzz: tensor '%s' offsets [%zu, %zu) numel %lld break the reader's invariants\n", t->name,
                    t->begin, t->end, (long long)t->numel);
            abort();
        }
        if (qd_st_find(st, t->name) == NULL) { fprintf(stderr, "fuzz: qd_st_find misses '%s'\n", t->name); abort(); }
        float *f = NULL;
        qd_error_clear();
        s = qd_st_read_f32(st, t->name, 0, NULL, &f);
        qd_fuzz_check_error(s);
        if (s == QD_OK && t->numel > 0) {
            /* read every element: ASan checks the buffer holds numel floats */
            float acc = 0;
            for (int64_t k = 0; k < t->numel; k++) acc += f[k];
            qd_fuzz_sink = acc;
        }
        free(f);
    }
    qd_st_close(st);
    return 0;
}
