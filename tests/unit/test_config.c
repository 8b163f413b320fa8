/* tests/unit/test_config.c: every rejection path of the config parser, --set typing, path
 * resolution, finalize rules, and the to_json -> load_text round trip. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, strtok_r, setrlimit: tests get no feature macros */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "qdrop/config.h"
#include "qdrop/fsutil.h"

/* text must be rejected with st and a message containing every needle */
static void expect_text(const char *text, qd_status st, const char *n1, const char *n2, int line) {
    qd_config c;
    qd_config_defaults(&c);
    qd_error_clear();
    qd_status got = qd_config_load_text(&c, text, "t.json");
    const char *m = qd_error_message();
    qd_test_checks++;
    if (got != st || (n1 && !strstr(m, n1)) || (n2 && !strstr(m, n2))) {
        fprintf(stderr, "line %d: text %s\n  got status %d msg '%s'\n  want status %d with '%s' '%s'\n", line, text, got, m,
                st, n1 ? n1 : "", n2 ? n2 : "");
        qd_test_failures++;
    }
}
#define REJECT(text, n1, n2) expect_text(text, QD_ERR_CONFIG, n1, n2, __LINE__)

static void expect_set(const char *assign, qd_status st, const char *n1, int line) {
    qd_config c;
    qd_config_defaults(&c);
    qd_error_clear();
    qd_status got = qd_config_set(&c, assign);
    const char *m = qd_error_message();
    qd_test_checks++;
    if (got != st || (n1 && !strstr(m, n1))) {
        fprintf(stderr, "line %d: --set %s\n  got status %d msg '%s'\n  want status %d with '%s'\n", line, assign, got, m, st,
                n1 ? n1 : "");
        qd_test_failures++;
    }
}
#define SET_REJECT(a, n1) expect_set(a, QD_ERR_CONFIG, n1, __LINE__)

static void test_defaults(void) {
    qd_config c;
    qd_config_defaults(&c);
    CHECK(c.recon.iters == 20000);
    CHECK(c.recon.batch_size == 32);
    CHECK(c.recon.scale_lr == 4e-5f);
    CHECK(c.recon.warm_up == 0.2f);
    CHECK(c.recon.weight == 0.01f);
    CHECK(c.recon.b_start == 20.0f && c.recon.b_end == 2.0f);
    CHECK(c.recon.drop_prob == 0.5f);
    CHECK(c.recon.keep_gpu == 1 && c.recon.lsq_grad_scale == 1 && c.recon.early_stop == 0);
    CHECK(c.recon.early_stop_window == 500 && c.recon.early_stop_min_delta == 1e-3f);
    CHECK(c.recon.log_every == 500 && c.recon.nan_retries == 0);
    CHECK(c.brecq.act_iters == 5000 && c.brecq.act_lr == 4e-4f);   /* §6.3 / §9 BRECQ stage 2 */
    CHECK(c.w_qconfig.bit == 4 && c.a_qconfig.bit == 4);
    CHECK(c.w_qconfig.ch_axis == 0 && c.a_qconfig.ch_axis == -1);
    CHECK(c.w_qconfig.symmetric == 0 && c.a_qconfig.symmetric == 0);
    CHECK(c.calibrate == 1024 && c.act_calib_samples == 0); /* 0 = min(256, calibrate), resolved by finalize */
    CHECK(c.first_last_8bit == 1 && c.brecq_setting == 0);
    CHECK(c.seed == 1005 && c.mode == QD_MODE_QDROP);
    CHECK(c.preprocess == QD_PRE_CIFAR);
    CHECK(c.mean[0] == 0.485f && c.mean[1] == 0.456f && c.mean[2] == 0.406f);
    CHECK(c.std[0] == 0.229f && c.std[1] == 0.224f && c.std[2] == 0.225f);
    CHECK(c.input_size == 224 && c.resize_size == 256);
    CHECK(c.device == QD_DEVICE_AUTO && c.deterministic == 1 && c.tf32 == 0);
    CHECK(c.eval_enabled == 1 && c.eval_batch_size == 250 && c.eval_fp32 == 1);
    CHECK(c.export_onnx == 1 && c.onnx_opset == 13 && c.plots == 1 && c.int4_weights == 0);
    CHECK(strcmp(c.model_type, "onnx") == 0 && strcmp(c.task, "classification") == 0 && c.max_seq_len == 128);
    CHECK(c.out_dir[0] == 0);
    CHECK(strcmp(qd_mode_name(QD_MODE_CASE3), "case3") == 0);
    CHECK(strcmp(qd_mode_name(QD_MODE_NEAREST), "nearest") == 0);
}

static void test_accept(void) {
    qd_config c;
    qd_config_defaults(&c);
    qd_error_clear();
    qd_status st = qd_config_load_text(&c,
        "{\"quant\":{\"w_qconfig\":{\"bit\":2},\"a_qconfig\":{\"bit\":3},\"mode\":\"case2\","
        "\"recon\":{\"iters\":7,\"b_range\":[10,1.5],\"drop_prob\":0.25,\"scale_lr\":1e-3}},"
        "\"data\":{\"mean\":[0.1,0.2,0.3],\"preprocess\":\"imagenet\"},\"process\":{\"seed\":42},"
        "\"device\":{\"type\":\"cpu\",\"memory_budget_mb\":4096},\"output\":{\"onnx_opset\":21,\"int4_weights\":true}}",
        "ok.json");
    CHECK(st == QD_OK);
    CHECK(c.w_qconfig.bit == 2 && c.a_qconfig.bit == 3 && c.mode == QD_MODE_CASE2);
    CHECK(c.recon.iters == 7 && c.recon.b_start == 10.0f && c.recon.b_end == 1.5f);
    CHECK(c.recon.drop_prob == 0.25f && c.recon.scale_lr == 1e-3f);
    CHECK(c.mean[2] == 0.3f && c.preprocess == QD_PRE_IMAGENET && c.seed == 42);
    CHECK(c.device == QD_DEVICE_CPU && c.device_memory_budget_mb == 4096);
    CHECK(c.onnx_opset == 21 && c.int4_weights == 1);
    /* untouched keys keep their defaults */
    CHECK(c.recon.batch_size == 32 && c.calibrate == 1024);
    /* empty object is fine */
    CHECK(qd_config_load_text(&c, "{}", "e.json") == QD_OK);
}

static void test_reject(void) {
    /* unknown keys at every depth, naming the full path and the expected keys */
    REJECT("{\"modle\":{}}", "t.json: modle: unknown key", "expected one of: model, data, quant, process, device, eval, output");
    REJECT("{\"quant\":{\"recon\":{\"itres\":5}}}", "quant.recon.itres: unknown key", "did you mean 'iters'");
    REJECT("{\"quant\":{\"w_qconfig\":{\"bitt\":4}}}", "quant.w_qconfig.bitt: unknown key (expected one of: bit, symmetric, ch_axis)",
           NULL);
    REJECT("{\"data\":{\"foo\":1}}", "data.foo: unknown key", "calib_path");
    REJECT("{\"quant\":{\"round_mode\":\"x\"}}", "quant.round_mode: unknown key", NULL);
    /* a NUL smuggled into a path is refused, not truncated to "o_nul"; brackets and escapes in
     * strings do not confuse the scan */
    REJECT("{\"output\":{\"dir\":\"o_nul\\u0000/../../etc/evil\"}}", "t.json:1:", "\\u0000");
    REJECT("{\"model\":{\"path\":\"[[{\\\\u0000\"},\"output\":{\"dir\":\"\\u0000\"}}", "t.json:1:49:", "\\u0000");
    REJECT("{\"model\":{\"path\":\"m\xe9.onnx\"}}", "t.json:1:20: not valid UTF-8 (byte 0xe9)", NULL);
        /* 100,000-deep nesting: a clean message, not a recursion */
    {
        size_t n = 100000;
        char *deep = malloc(2 * n + 1);
        for (size_t i = 0; i < n; i++) { deep[i] = '['; deep[n + i] = ']'; }
        deep[2 * n] = 0;
        REJECT(deep, "t.json:1:33: JSON nested more than 32 levels deep", NULL);
        free(deep);
    }
    REJECT("{\"quant\":{\"w_qconfig\":{\"bit\":4,\"bit\":5}}}", "quant.w_qconfig.bit: duplicate key", NULL);
    /* wrong types, one per type class */
    REJECT("{\"quant\":{\"w_qconfig\":{\"bit\":\"4\"}}}", "quant.w_qconfig.bit: expected an integer in 2..8, got the string \"4\"", NULL);
    REJECT("{\"quant\":{\"w_qconfig\":{\"bit\":4.5}}}", "quant.w_qconfig.bit: expected an integer in 2..8, got 4.5", NULL);
    REJECT("{\"quant\":{\"recon\":{\"keep_gpu\":1}}}", "quant.recon.keep_gpu: expected true or false, got 1", NULL);
    REJECT("{\"quant\":{\"recon\":{\"warm_up\":\"0.2\"}}}", "quant.recon.warm_up: expected a number in [0, 1]", "got the string");
    REJECT("{\"quant\":{\"mode\":3}}", "quant.mode: expected one of \"qdrop\", \"nodrop\"", "got 3");
    REJECT("{\"model\":{\"path\":7}}", "model.path: expected a path string", "got 7");
    REJECT("{\"model\":{\"type\":\"pytorch\"}}", "model.type: expected one of \"onnx\", \"bert\"", "pytorch");
    REJECT("{\"data\":{\"mean\":[1,2]}}", "data.mean: expected an array of 3 numbers", "got [1,2]");
    REJECT("{\"data\":{\"std\":[1,0,1]}}", "data.std: expected an array of 3 numbers in (0, inf]", NULL);
    REJECT("{\"quant\":{\"recon\":{\"b_range\":20}}}", "quant.recon.b_range: expected an array [start, end]", "got 20");
    REJECT("{\"quant\":{\"recon\":{\"b_range\":[20,\"2\"]}}}", "quant.recon.b_range", NULL);
    REJECT("{\"quant\":{\"recon\":5}}", "quant.recon: expected an object with keys (iters, batch_size", "got 5");
    REJECT("{\"quant\":null}", "quant: expected an object", "got null");
    REJECT("[1,2]", "t.json: expected a JSON object at the top level", NULL);
    /* ranges */
    REJECT("{\"quant\":{\"w_qconfig\":{\"bit\":16}}}", "quant.w_qconfig.bit: expected an integer in 2..8, got 16", NULL);
    REJECT("{\"quant\":{\"a_qconfig\":{\"bit\":1}}}", "quant.a_qconfig.bit: expected an integer in 2..8, got 1", NULL);
    REJECT("{\"quant\":{\"recon\":{\"iters\":0}}}", "quant.recon.iters: expected an integer in 1..100000000, got 0", NULL);
    REJECT("{\"quant\":{\"recon\":{\"batch_size\":-1}}}", "quant.recon.batch_size: expected an integer in 1..65536, got -1", NULL);
    REJECT("{\"quant\":{\"recon\":{\"drop_prob\":1.5}}}", "quant.recon.drop_prob: expected a number in [0, 1], got 1.5", "KEEPING");
    REJECT("{\"quant\":{\"recon\":{\"warm_up\":-0.1}}}", "quant.recon.warm_up: expected a number in [0, 1], got -0.1", NULL);
    REJECT("{\"quant\":{\"brecq\":{\"act_iters\":0}}}", "quant.brecq.act_iters: expected an integer in 1..100000000, got 0", NULL);
    REJECT("{\"quant\":{\"brecq\":{\"act_lr\":2}}}", "quant.brecq.act_lr: expected a number in [0, 1], got 2", NULL);
    REJECT("{\"quant\":{\"brecq\":{\"act_itres\":5}}}", "quant.brecq.act_itres: unknown key", "did you mean 'act_iters'");
    REJECT("{\"output\":{\"onnx_opset\":12}}", "output.onnx_opset: expected an integer in 13..21, got 12", NULL);
    REJECT("{\"eval\":{\"max_images\":-5}}", "eval.max_images: expected an integer >= 0, got -5", NULL);
    REJECT("{\"output\":{\"onnx_opset\":22}}", "output.onnx_opset: expected an integer in 13..21, got 22", NULL);
    REJECT("{\"quant\":{\"w_qconfig\":{\"ch_axis\":1}}}", "quant.w_qconfig.ch_axis: expected the integer 0, got 1", "per output channel");
    REJECT("{\"process\":{\"seed\":-1}}", "process.seed: expected an integer in 0..9007199254740991, got -1", NULL);
    REJECT("{\"quant\":{\"recon\":{\"iters\":1e400}}}", "quant.recon.iters", "non-finite");
    /* unsupported switch */
    REJECT("{\"quant\":{\"a_qconfig\":{\"symmetric\":true}}}", "quant.a_qconfig.symmetric: symmetric quantization is not supported", NULL);
    /* malformed JSON: line and column */
    REJECT("{\n  \"quant\": {\n    \"calibrate\": 12,,\n  }\n}", "t.json:3:21: malformed JSON", NULL);
    REJECT("{\"a\":1} trailing", "t.json:1:9: malformed JSON near \"trailing\"", NULL);
    REJECT("", "t.json:1:1: malformed JSON", NULL);
    REJECT("{\"quant\": {", "t.json:1:12: malformed JSON (unexpected end of input)", NULL);
}

static void test_files(void) {
    char dir[] = "/tmp/qd_test_config_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char p[512], sub[512];
    qd_config c;
    /* missing file -> NOINPUT naming it */
    snprintf(p, sizeof p, "%s/missing.json", dir);
    qd_config_defaults(&c);
    qd_error_clear();
    CHECK(qd_config_load_file(&c, p) == QD_ERR_NOINPUT);
    CHECK(strstr(qd_error_message(), p) != NULL);
    CHECK(qd_status_exit_code(QD_ERR_NOINPUT) == 66);
    /* relative paths resolve against the config file's directory */
    snprintf(sub, sizeof sub, "%s/cfg", dir);
    CHECK(qd_mkdir_p(sub) == QD_OK);
    snprintf(p, sizeof p, "%s/cfg/run.json", dir);
    const char *txt = "{\"model\":{\"path\":\"../models/m.onnx\"},\"data\":{\"calib_path\":\"/abs/calib\"},"
                      "\"output\":{\"dir\":\"./out/x\"}}\n";
    CHECK(qd_write_file_atomic(p, txt, strlen(txt)) == QD_OK);
    qd_config_defaults(&c);
    qd_error_clear();
    CHECK(qd_config_load_file(&c, p) == QD_OK);
    char want[600];
    snprintf(want, sizeof want, "%s/models/m.onnx", dir);
    CHECK(strcmp(c.model_path, want) == 0);
    CHECK(strcmp(c.calib_path, "/abs/calib") == 0);
    snprintf(want, sizeof want, "%s/cfg/out/x", dir);
    CHECK(strcmp(c.out_dir, want) == 0);
    CHECK(strcmp(c.config_path, p) == 0);
    /* malformed file names the file with line:col */
    const char *bad = "{\n\"quant\": {\"bit\" 4}}";
    CHECK(qd_write_file_atomic(p, bad, strlen(bad)) == QD_OK);
    qd_error_clear();
    CHECK(qd_config_load_file(&c, p) == QD_ERR_CONFIG);
    snprintf(want, sizeof want, "%s:2:17: malformed JSON near \"4}}\"", p);
    CHECK(strstr(qd_error_message(), want) != NULL);
    unlink(p);
    rmdir(sub);
    rmdir(dir);
}

static void test_set(void) {
    qd_config c;
    qd_config_defaults(&c);
    qd_error_clear();
    CHECK(qd_config_set(&c, "quant.w_qconfig.bit=2") == QD_OK && c.w_qconfig.bit == 2);
    CHECK(qd_config_set(&c, "quant.brecq.act_iters=300") == QD_OK && c.brecq.act_iters == 300);
    CHECK(qd_config_set(&c, "quant.brecq.act_lr=1e-3") == QD_OK && c.brecq.act_lr == 1e-3f);
    CHECK(qd_config_set(&c, "quant.recon.b_range=[15,3]") == QD_OK && c.recon.b_start == 15.0f && c.recon.b_end == 3.0f);
    CHECK(qd_config_set(&c, "quant.recon.b_range=12,4") == QD_OK && c.recon.b_start == 12.0f && c.recon.b_end == 4.0f);
    CHECK(qd_config_set(&c, "data.std=[0.5,0.5,0.5]") == QD_OK && c.std[1] == 0.5f);
    CHECK(qd_config_set(&c, "quant.recon.keep_gpu=false") == QD_OK && c.recon.keep_gpu == 0);
    CHECK(qd_config_set(&c, "quant.mode=nodrop") == QD_OK && c.mode == QD_MODE_NODROP);
    CHECK(qd_config_set(&c, "quant.mode=\"brecq\"") == QD_OK && c.mode == QD_MODE_BRECQ);
    CHECK(qd_config_set(&c, "model.path=some dir/m.onnx") == QD_OK && strcmp(c.model_path, "some dir/m.onnx") == 0);
    CHECK(qd_config_set(&c, "data.val_labels_path=") == QD_OK && c.val_labels_path[0] == 0);
    CHECK(qd_config_set(&c, "quant.recon.scale_lr=1e-4") == QD_OK && c.recon.scale_lr == 1e-4f);
    CHECK(qd_config_set(&c, "process.seed=123456789012") == QD_OK && c.seed == 123456789012ULL);
    CHECK(qd_config_set(&c, "device.type=cuda") == QD_OK && c.device == QD_DEVICE_CUDA);
    SET_REJECT("quant.w_qconfig.bit=9", "--set: quant.w_qconfig.bit: expected an integer in 2..8, got 9");
    SET_REJECT("quant.w_qconfig.bit=four", "expected an integer in 2..8, got the string \"four\"");
    /* the whole value must parse; the message quotes the value as typed */
    SET_REJECT("quant.recon.iters=5abc", "quant.recon.iters: expected an integer in 1..100000000, got the string \"5abc\"");
    SET_REJECT("quant.w_qconfig.bit=4,8", "got the string \"4,8\"");
    SET_REJECT("eval.enabled=truefalse", "eval.enabled: expected true or false, got the string \"truefalse\"");
    SET_REJECT("quant.recon.iters=1=2", "got the string \"1=2\"");
    SET_REJECT("quant.mode=\"nodrop\"xyz", "got the string \"\"nodrop\"xyz\"");
    SET_REJECT("quant.recon.iters=0x10", "got the string \"0x10\"");
    SET_REJECT("quant.recon.iters=1e12", "expected an integer in 1..100000000, got 1e12");
    SET_REJECT("quant.recon.drop_prob=0.50000000001e1", "got 0.50000000001e1");
    SET_REJECT("quant.recon.b_range=20,2x", "got the string \"20,2x\"");
    SET_REJECT("output.dir=\"o_nul\\u0000/../../etc/evil\"", "\\u0000");
    CHECK(qd_config_set(&c, "quant.recon.iters= 7 ") == QD_OK && c.recon.iters == 7);
    SET_REJECT("quant.w_qconfig.bitt=4", "quant.w_qconfig.bitt: unknown key (expected one of: bit, symmetric, ch_axis)");
    SET_REJECT("quant.w_qconfig.bit.x=4", "quant.w_qconfig.bit");
    SET_REJECT("nosuch.key=1", "nosuch: unknown key (expected one of: model, data");
    SET_REJECT("quant.recon=1", "quant.recon is a section");
    SET_REJECT("quant.recon.keep_gpu=yes", "quant.recon.keep_gpu: expected true or false, got the string \"yes\"");
    SET_REJECT("quant.recon.keep_gpu=1", "expected true or false, got 1");
    SET_REJECT("quant.recon.b_range=[20]", "quant.recon.b_range: expected an array [start, end]");
    SET_REJECT("quant.recon.b_range=a,b", "quant.recon.b_range");
    SET_REJECT("quant.mode=fast", "quant.mode: expected one of");
    SET_REJECT("quant.recon.drop_prob=2", "expected a number in [0, 1], got 2");
    SET_REJECT("no_equals_sign", "expected key.path=value");
    SET_REJECT("=5", "expected key.path=value");
    SET_REJECT("output.onnx_opset=99", "output.onnx_opset: expected an integer in 13..21, got 99");
    SET_REJECT("quant.w_qconfig.symmetric=true", "not supported");
}

static void test_finalize(void) {
    qd_config c;
    qd_config_defaults(&c);
    qd_error_clear();
    /* model.path is required */
    CHECK(qd_config_finalize(&c) == QD_ERR_CONFIG && strstr(qd_error_message(), "model.path"));

    qd_config_defaults(&c);
    qd_error_clear();
    CHECK(qd_config_set(&c, "model.path=models/resnet20_cifar10.onnx") == QD_OK);
    CHECK(qd_config_finalize(&c) == QD_OK);
    char cwd[1024], want[1200];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    snprintf(want, sizeof want, "%s/runs/resnet20_cifar10", strcmp(cwd, "/") ? cwd : "");
    CHECK(strcmp(c.out_dir, want) == 0);
    snprintf(want, sizeof want, "%s/models/resnet20_cifar10.onnx", strcmp(cwd, "/") ? cwd : "");
    CHECK(strcmp(c.model_path, want) == 0);
    CHECK(c.recon.drop_prob == 0.5f);

    /* nodrop (and every mode but qdrop) forces keep probability 1 */
    qd_config_defaults(&c);
    CHECK(qd_config_set(&c, "model.path=/m.onnx") == QD_OK);
    CHECK(qd_config_set(&c, "quant.mode=nodrop") == QD_OK);
    CHECK(qd_config_finalize(&c) == QD_OK && c.recon.drop_prob == 1.0f);
    qd_config_defaults(&c);
    CHECK(qd_config_set(&c, "model.path=/m.onnx") == QD_OK && qd_config_set(&c, "quant.mode=case3") == QD_OK);
    CHECK(qd_config_finalize(&c) == QD_OK && c.recon.drop_prob == 1.0f);

#define FIN_REJECT(stmt, needle)                                                   \
    do {                                                                           \
        qd_config_defaults(&c);                                                    \
        snprintf(c.model_path, sizeof c.model_path, "/m.onnx");                    \
        stmt;                                                                      \
        qd_error_clear();                                                          \
        CHECK(qd_config_finalize(&c) == QD_ERR_CONFIG);                            \
        if (!strstr(qd_error_message(), needle)) {                                 \
            fprintf(stderr, "finalize: '%s' lacks '%s'\n", qd_error_message(), needle); \
            qd_test_failures++;                                                    \
        }                                                                          \
    } while (0)
    FIN_REJECT(c.int4_weights = 1, "output.int4_weights: INT4");
    FIN_REJECT((c.int4_weights = 1, c.onnx_opset = 19), "needs output.onnx_opset >= 21, got 19");
    FIN_REJECT(c.recon.iters = 0, "quant.recon.iters: must be >= 1, got 0");
    FIN_REJECT(c.recon.batch_size = 0, "quant.recon.batch_size: must be >= 1");
    FIN_REJECT(c.calibrate = 16, "quant.calibrate: must be >= quant.recon.batch_size (32), got 16");
    FIN_REJECT(c.act_calib_samples = 2000, "quant.act_calib_samples: must be <= quant.calibrate (1024)");
    FIN_REJECT((c.calibrate = 64, c.act_calib_samples = 100), "quant.act_calib_samples: must be <= quant.calibrate (64), got 100");
    /* the default follows a small calibration set: min(256, calibrate) */
    qd_config_defaults(&c);
    snprintf(c.model_path, sizeof c.model_path, "/m.onnx");
    CHECK(qd_config_set(&c, "quant.calibrate=64") == QD_OK && qd_config_finalize(&c) == QD_OK && c.act_calib_samples == 64);
    qd_config_defaults(&c);
    snprintf(c.model_path, sizeof c.model_path, "/m.onnx");
    CHECK(qd_config_finalize(&c) == QD_OK && c.act_calib_samples == 256);
    qd_config_defaults(&c);
    snprintf(c.model_path, sizeof c.model_path, "/m.onnx");
    CHECK(qd_config_set(&c, "quant.act_calib_samples=100") == QD_OK && qd_config_finalize(&c) == QD_OK &&
          c.act_calib_samples == 100);
    FIN_REJECT((c.preprocess = QD_PRE_IMAGENET, c.resize_size = 200), "data.resize_size: must be >= data.input_size (224)");
    FIN_REJECT(c.w_qconfig.bit = 9, "quant.w_qconfig.bit: expected an integer in 2..8, got 9");
    FIN_REJECT(c.recon.drop_prob = 1.5f, "quant.recon.drop_prob");
    FIN_REJECT(c.onnx_opset = 12, "output.onnx_opset");
    /* int4 with opset 21 is fine */
    qd_config_defaults(&c);
    snprintf(c.model_path, sizeof c.model_path, "/m.onnx");
    c.int4_weights = 1;
    c.onnx_opset = 21;
    CHECK(qd_config_finalize(&c) == QD_OK);
}

static void test_roundtrip(void) {
    qd_config a, b;
    qd_config_defaults(&a);
    qd_error_clear();
    CHECK(qd_config_load_text(&a,
        "{\"model\":{\"path\":\"/x/m.onnx\",\"type\":\"bert\"},\"data\":{\"task\":\"stsb\",\"max_seq_len\":64,"
        "\"mean\":[0.1,-0.2,3.5e-3],\"skip_corrupt\":true,\"val_labels_path\":\"/l.npy\"},"
        "\"quant\":{\"w_qconfig\":{\"bit\":3},\"mode\":\"adaround\",\"brecq_setting\":true,"
        "\"recon\":{\"scale_lr\":4e-5,\"warm_up\":0.3,\"weight\":0.1,\"b_range\":[18.5,2.25],\"early_stop\":true,"
        "\"early_stop_min_delta\":0.0007,\"nan_retries\":2}},\"process\":{\"seed\":77,\"threads\":3},"
        "\"device\":{\"type\":\"cuda\",\"tf32\":true,\"memory_budget_mb\":12000},"
        "\"eval\":{\"enabled\":false,\"batch_size\":100,\"max_images\":500,\"fp32\":false},"
        "\"output\":{\"dir\":\"/tmp/o\",\"export_onnx\":false,\"onnx_opset\":21,\"int4_weights\":true,\"plots\":false}}",
        "rt.json") == QD_OK);
    CHECK(qd_config_finalize(&a) == QD_OK);
    char *js = qd_config_to_json(&a);
    CHECK(js != NULL);
    if (!js) return;
    qd_config_defaults(&b);
    qd_error_clear();
    qd_status st = qd_config_load_text(&b, js, "resolved");
    if (st != QD_OK) fprintf(stderr, "roundtrip parse: %s\n", qd_error_message());
    CHECK(st == QD_OK);
    /* config_path is bookkeeping, not a schema key */
    memset(a.config_path, 0, sizeof a.config_path);
    memset(b.config_path, 0, sizeof b.config_path);
    CHECK(memcmp(&a, &b, sizeof a) == 0);
    CHECK(a.recon.scale_lr == b.recon.scale_lr && a.mean[2] == b.mean[2] && a.recon.b_end == b.recon.b_end);
    CHECK(strstr(js, "\"scale_lr\":\t4e-05") != NULL);
    CHECK(strstr(js, "\"mode\":\t\"adaround\"") != NULL);
    char *js2 = qd_config_to_json(&b);
    CHECK(js2 && strcmp(js, js2) == 0);
    CHECK(qd_config_hash(&a) == qd_config_hash(&b));
    b.recon.iters++;
    CHECK(qd_config_hash(&a) != qd_config_hash(&b));
    /* the defaults round-trip too, and keys appear in schema order */
    qd_config d, e;
    qd_config_defaults(&d);
    char *jd = qd_config_to_json(&d);
    qd_config_defaults(&e);
    e.recon.iters = 1;
    CHECK(jd && qd_config_load_text(&e, jd, "defaults") == QD_OK && memcmp(&d, &e, sizeof d) == 0);
    CHECK(jd && strstr(jd, "\"model\"") < strstr(jd, "\"data\"") && strstr(jd, "\"quant\"") < strstr(jd, "\"output\""));
    free(jd);
    free(js);
    free(js2);
}

int main(void) {
    test_defaults();
    test_accept();
    test_reject();
    test_files();
    test_set();
    test_finalize();
    test_roundtrip();
    return qd_test_summary("test_config");
}
