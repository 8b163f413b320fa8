/* tests/fuzz/fuzz_config.c: libFuzzer target for the JSON config parser.
 * Input: config text parsed over the defaults with qd_config_load_text, then qd_config_finalize.
 * Property checked besides memory safety: a config that loads and finalizes serialises with
 * qd_config_to_json into text that loads again (resolved_config.json is reusable with --config,
 * README "Outputs"). */
#include "fuzz_common.h"
#include "qdrop/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 16) return 0;
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;

    qd_config c;
    qd_config_defaults(&c);
    qd_error_clear();
    qd_status st = qd_config_load_text(&c, text, "fuzz.json");
    qd_fuzz_check_error(st);
    if (st == QD_OK) {
        qd_error_clear();
        st = qd_config_finalize(&c);
        qd_fuzz_check_error(st);
    }
    if (st == QD_OK) {
        char *js = qd_config_to_json(&c);
        if (!js) { fprintf(stderr, "fuzz: qd_config_to_json returned NULL\n"); abort(); }
        qd_config c2;
        qd_config_defaults(&c2);
        qd_error_clear();
        qd_status st2 = qd_config_load_text(&c2, js, "resolved.json");
        if (st2 != QD_OK) {
            fprintf(stderr, "fuzz: resolved config does not load again: %s\n%s\n", qd_error_message(), js);
            abort();
        }
        free(js);
    }
    /* the same text as a --set value for a few keys of each type */
    static const char *keys[] = {"quant.w_qconfig.bit", "quant.recon.drop_prob", "quant.mode", "quant.recon.b_range",
                                 "data.mean", "process.seed"};
    size_t cap = size + 64;
    char *assign = malloc(cap);
    if (assign) {
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            qd_config c3;
            qd_config_defaults(&c3);
            snprintf(assign, cap, "%s=%s", keys[k], text);
            qd_error_clear();
            qd_fuzz_check_error(qd_config_set(&c3, assign));
        }
        free(assign);
    }
    free(text);
    return 0;
}
