/* safetensors reader: F32/F16/BF16 conversion, shape checks, and every malformed-header class
 * rejected with QD_ERR_DATA and a message naming the file and the tensor. Also the HF model
 * directory loader on a tiny generated checkpoint ("bert." prefix and none). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "qdrop/bert.h"

/* header JSON + data bytes -> file image */
static size_t build(const char *json, const void *data, size_t dn, unsigned char *out) {
    uint64_t hl = strlen(json);
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)(hl >> (8 * i));
    memcpy(out + 8, json, hl);
    if (dn) memcpy(out + 8 + hl, data, dn);
    return 8 + hl + dn;
}

static void expect_bad(const char *json, size_t dn, const char *must_contain, const char *what) {
    static unsigned char buf[1 << 14];
    unsigned char data[256] = {0};
    size_t n = build(json, data, dn, buf);
    qd_safetensors *st = NULL;
    qd_error_clear();
    qd_status rc = qd_st_open_mem(buf, n, "bad.safetensors", &st);
    const char *msg = qd_error_message();
    CHECK(rc == QD_ERR_DATA, "%s: status %d", what, rc);
    CHECK(st == NULL, "%s: returned a handle", what);
    CHECK(strstr(msg, "bad.safetensors") && strstr(msg, must_contain), "%s: message '%s' lacks '%s'", what, msg, must_contain);
    if (rc == QD_ERR_DATA) printf("rejected (%s): %s\n", what, msg);
    qd_st_close(st);
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) { printf("FAIL cannot write %s\n", path); exit(1); }
    fclose(f);
}

int main(void) {
    /* valid: F32 [2,2], F16 [3], BF16 [2], I64 [1] */
    unsigned char data[16 + 6 + 4 + 8];
    float f32[4] = {1.5f, -2.0f, 0.25f, 3e-3f};
    uint16_t f16[3] = {0x3C00 /* 1 */, 0xC100 /* -2.5 */, 0x0001 /* 2^-24 */};
    uint16_t bf[2] = {0x3FC0 /* 1.5 */, 0xC040 /* -3 */};
    int64_t i64 = 7;
    memcpy(data, f32, 16);
    memcpy(data + 16, f16, 6);
    memcpy(data + 22, bf, 4);
    memcpy(data + 26, &i64, 8);
    const char *ok_json = "{\"__metadata__\":{\"format\":\"pt\"},"
                          "\"b\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[16,22]},"
                          "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                          "\"c\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[22,26]},"
                          "\"ids\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[26,34]}}";
    static unsigned char buf[1 << 14];
    size_t n = build(ok_json, data, sizeof data, buf);
    qd_safetensors *st;
    CHECK(qd_st_open_mem(buf, n, "ok.safetensors", &st) == QD_OK, "valid file: %s", qd_error_message());
    if (st) {
        CHECK(st->n == 4, "4 tensors, got %d", st->n);
        float *v;
        int64_t shp[2] = {2, 2};
        CHECK(qd_st_read_f32(st, "a", 2, shp, &v) == QD_OK && v[0] == 1.5f && v[1] == -2.0f && v[3] == 3e-3f, "F32 values");
        free(v);
        CHECK(qd_st_read_f32(st, "b", 0, NULL, &v) == QD_OK && v[0] == 1.0f && v[1] == -2.5f && v[2] == 5.9604644775390625e-08f, "F16 values");
        free(v);
        CHECK(qd_st_read_f32(st, "c", 0, NULL, &v) == QD_OK && v[0] == 1.5f && v[1] == -3.0f, "BF16 values");
        free(v);
        int64_t wrong[2] = {4, 1};
        qd_error_clear();
        CHECK(qd_st_read_f32(st, "a", 2, wrong, &v) == QD_ERR_DATA && strstr(qd_error_message(), "'a'") &&
              strstr(qd_error_message(), "[2,2]") && strstr(qd_error_message(), "[4,1]"), "shape mismatch message: %s", qd_error_message());
        qd_error_clear();
        CHECK(qd_st_read_f32(st, "zzz", 0, NULL, &v) == QD_ERR_DATA && strstr(qd_error_message(), "zzz"), "missing tensor");
        qd_error_clear();
        CHECK(qd_st_read_f32(st, "ids", 0, NULL, &v) == QD_ERR_UNSUPPORTED, "I64 to float refused");
        qd_st_close(st);
    }
    /* header length beyond the file */
    {
        unsigned char b2[16] = {0xFF, 0xFF, 0, 0, 0, 0, 0, 0, '{', '}'};
        qd_error_clear();
        CHECK(qd_st_open_mem(b2, 10, "bad.safetensors", &st) == QD_ERR_DATA && strstr(qd_error_message(), "beyond"), "length beyond file");
        qd_error_clear();
        CHECK(qd_st_open_mem(b2, 5, "bad.safetensors", &st) == QD_ERR_DATA, "file shorter than 8 bytes");
    }
    expect_bad("{not json", 0, "not a JSON object", "not JSON");
    expect_bad("[1,2]", 0, "not a JSON object", "JSON array");
    expect_bad("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'w'", "missing dtype");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "shape", "missing shape");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "data_offsets", "missing offsets");
    expect_bad("{\"w\":{\"dtype\":\"F99\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype", "unknown dtype");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}", 4, "beyond", "offsets out of bounds");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "needs 8", "dtype/shape size mismatch");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "begin <= end", "reversed offsets");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape[0]", "negative dim");
    expect_bad("{\"u\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlaps", "overlapping tensors");
    expect_bad("{\"u\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"v\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12, "hole", "hole between tensors");
    expect_bad("{\"u\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12, "cover 4 of 12", "trailing bytes");
    qd_error_clear();
    CHECK(qd_st_open("/nonexistent/model.safetensors", &st) == QD_ERR_NOINPUT, "missing file");

    /* tiny HF directory: H 4, 1 layer, 2 heads, FF 8, vocab 6, max_pos 8; with "bert." prefix */
    const char *dir = "build-bert-test-model";
    mkdir(dir, 0755);
    char path[512], json[16384], *names[64];
    int64_t sizes[64];
    int nt = 0;
    const char *lk[16] = {"attention.self.query.weight", "attention.self.query.bias", "attention.self.key.weight",
                          "attention.self.key.bias", "attention.self.value.weight", "attention.self.value.bias",
                          "attention.output.dense.weight", "attention.output.dense.bias", "attention.output.LayerNorm.weight",
                          "attention.output.LayerNorm.bias", "intermediate.dense.weight", "intermediate.dense.bias",
                          "output.dense.weight", "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias"};
    int64_t ls[16][2] = {{4, 4}, {4, 0}, {4, 4}, {4, 0}, {4, 4}, {4, 0}, {4, 4}, {4, 0}, {4, 0}, {4, 0}, {8, 4}, {8, 0}, {4, 8}, {4, 0}, {4, 0}, {4, 0}};
    static char nbuf[64][128];
    int64_t shapes[64][2];
    const char *ek[5] = {"embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                         "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"};
    int64_t es[5][2] = {{6, 4}, {8, 4}, {2, 4}, {4, 0}, {4, 0}};
    for (int i = 0; i < 5; i++) { snprintf(nbuf[nt], 128, "bert.%s", ek[i]); shapes[nt][0] = es[i][0]; shapes[nt][1] = es[i][1]; nt++; }
    for (int i = 0; i < 16; i++) { snprintf(nbuf[nt], 128, "bert.encoder.layer.0.%s", lk[i]); shapes[nt][0] = ls[i][0]; shapes[nt][1] = ls[i][1]; nt++; }
    snprintf(nbuf[nt], 128, "classifier.weight"); shapes[nt][0] = 3; shapes[nt][1] = 4; nt++;
    snprintf(nbuf[nt], 128, "classifier.bias"); shapes[nt][0] = 3; shapes[nt][1] = 0; nt++;
    snprintf(nbuf[nt], 128, "bert.pooler.dense.weight"); shapes[nt][0] = 4; shapes[nt][1] = 4; nt++;
    snprintf(nbuf[nt], 128, "bert.pooler.dense.bias"); shapes[nt][0] = 4; shapes[nt][1] = 0; nt++;
    size_t off = 0;
    strcpy(json, "{");
    for (int i = 0; i < nt; i++) {
        names[i] = nbuf[i];
        sizes[i] = shapes[i][0] * (shapes[i][1] ? shapes[i][1] : 1);
        char sh[64];
        if (shapes[i][1]) snprintf(sh, sizeof sh, "[%lld,%lld]", (long long)shapes[i][0], (long long)shapes[i][1]);
        else snprintf(sh, sizeof sh, "[%lld]", (long long)shapes[i][0]);
        snprintf(json + strlen(json), sizeof json - strlen(json), "%s\"%s\":{\"dtype\":\"F32\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                 i ? "," : "", names[i], sh, off, off + (size_t)sizes[i] * 4);
        off += (size_t)sizes[i] * 4;
    }
    strcat(json, "}");
    float *vals = malloc(off);
    for (size_t i = 0; i < off / 4; i++) vals[i] = (float)((int)(i % 13) - 6) * 0.05f;
    static unsigned char fbuf[1 << 16];
    size_t fn = build(json, vals, off, fbuf);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_file(path, fbuf, fn);
    snprintf(path, sizeof path, "%s/config.json", dir);
    const char *cfg = "{\"hidden_size\":4,\"num_hidden_layers\":1,\"num_attention_heads\":2,\"intermediate_size\":8,"
                      "\"max_position_embeddings\":8,\"type_vocab_size\":2,\"vocab_size\":6,\"layer_norm_eps\":1e-12,\"hidden_act\":\"gelu\"}";
    write_file(path, cfg, strlen(cfg));
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    const char *voc = "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n##s\n";
    write_file(path, voc, strlen(voc));
    qd_bert_model *m = NULL;
    CHECK(qd_bert_load(dir, &m) == QD_OK, "load tiny model: %s", qd_error_message());
    if (m) {
        CHECK(m->cfg.hidden == 4 && m->cfg.layers == 1 && m->cfg.num_labels == 3 && m->pool_w && m->tok, "tiny model fields");
        CHECK(m->layer[0].w1[0] == vals[6 * 4 + 8 * 4 + 2 * 4 + 4 + 4 + (4 * 4 + 4) * 4 + 4 + 4] , "w1[0] from the right offset");
        int ids[4] = {2, 4, 5, 3}, mask[4] = {1, 1, 1, 1};
        float hid[16], logits[3];
        CHECK(qd_bert_encode(m, ids, NULL, mask, 1, 4, hid, NULL, NULL) == QD_OK, "encode");
        CHECK(qd_bert_classify(m, hid, 1, 4, logits) == QD_OK, "classify");
        int bad[4] = {2, 9, 5, 3};
        qd_error_clear();
        CHECK(qd_bert_encode(m, bad, NULL, mask, 1, 4, hid, NULL, NULL) == QD_ERR_DATA, "token id out of range");
        int *tid, nti;
        CHECK(qd_wp_tokenize(m->tok, "Hellos hello!", &tid, &nti) == QD_OK && nti == 4 && tid[0] == 4 && tid[1] == 5 &&
              tid[2] == 4 && tid[3] == 1, "tiny tokenizer (lower-case, ##s, [UNK] for !)");
        free(tid);
        qd_bert_free(m);
    }
    /* config error: vocab.txt size disagrees with vocab_size */
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    write_file(path, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n", 24);
    qd_error_clear();
    CHECK(qd_bert_load(dir, &m) == QD_ERR_DATA && strstr(qd_error_message(), "vocab_size"), "vocab size mismatch: %s", qd_error_message());
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_file(path, "{\"hidden_size\":4}", 17);
    qd_error_clear();
    CHECK(qd_bert_load(dir, &m) == QD_ERR_DATA && strstr(qd_error_message(), "num_hidden_layers"), "missing config key: %s", qd_error_message());
    free(vals);
    const char *rm[] = {"model.safetensors", "config.json", "vocab.txt"};
    for (int i = 0; i < 3; i++) { snprintf(path, sizeof path, "%s/%s", dir, rm[i]); remove(path); }
    rmdir(dir);
    return qd_test_summary("test_bert_safetensors");
}
