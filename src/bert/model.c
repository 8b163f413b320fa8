/* src/bert/model.c: HuggingFace BERT model directory -> qd_bert_model (config.json,
 * model.safetensors with or without the "bert." key prefix, vocab.txt, tokenizer_config.json). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bert/bert_internal.h"

static qd_status json_int(const cJSON *root, const char *path, const char *key, int def, int *out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!j) {
        if (def < 0) return qd_errorf(QD_ERR_DATA, "%s: missing integer '%s'", path, key);
        *out = def;
        return QD_OK;
    }
    if (!cJSON_IsNumber(j) || j->valuedouble != (double)(int)j->valuedouble || j->valuedouble < 1 || j->valuedouble > 1e7)
        return qd_errorf(QD_ERR_DATA, "%s: '%s' must be a positive integer", path, key);
    *out = (int)j->valuedouble;
    return QD_OK;
}

qd_status qd_bert_config_load(const char *dir, qd_bert_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *buf;
    size_t n;
    QD_TRY(qd_bert_read_file(path, &buf, &n));
    cJSON *root = cJSON_ParseWithLength(buf, n);
    free(buf);
    if (!cJSON_IsObject(root)) { cJSON_Delete(root); return qd_errorf(QD_ERR_DATA, "%s: not a JSON object", path); }
    qd_status rc = QD_OK;
    if (rc == QD_OK) rc = json_int(root, path, "hidden_size", -1, &cfg->hidden);
    if (rc == QD_OK) rc = json_int(root, path, "num_hidden_layers", -1, &cfg->layers);
    if (rc == QD_OK) rc = json_int(root, path, "num_attention_heads", -1, &cfg->heads);
    if (rc == QD_OK) rc = json_int(root, path, "intermediate_size", -1, &cfg->intermediate);
    if (rc == QD_OK) rc = json_int(root, path, "max_position_embeddings", 512, &cfg->max_pos);
    if (rc == QD_OK) rc = json_int(root, path, "type_vocab_size", 2, &cfg->type_vocab);
    if (rc == QD_OK) rc = json_int(root, path, "vocab_size", -1, &cfg->vocab);
    cfg->ln_eps = 1e-12f; /* BertConfig default */
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, "layer_norm_eps");
    if (rc == QD_OK && j) {
        if (!cJSON_IsNumber(j) || !(j->valuedouble > 0 && j->valuedouble < 1)) rc = qd_errorf(QD_ERR_DATA, "%s: bad 'layer_norm_eps'", path);
        else cfg->ln_eps = (float)j->valuedouble;
    }
    j = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (rc == QD_OK && j && (!cJSON_IsString(j) || strcmp(j->valuestring, "gelu") != 0))
        rc = qd_errorf(QD_ERR_UNSUPPORTED, "%s: hidden_act '%s' (only exact erf 'gelu' is implemented)", path,
                       cJSON_IsString(j) ? j->valuestring : "?");
    j = cJSON_GetObjectItemCaseSensitive(root, "position_embedding_type");
    if (rc == QD_OK && j && (!cJSON_IsString(j) || strcmp(j->valuestring, "absolute") != 0))
        rc = qd_errorf(QD_ERR_UNSUPPORTED, "%s: position_embedding_type must be 'absolute'", path);
    if (rc == QD_OK && cfg->hidden % cfg->heads != 0)
        rc = qd_errorf(QD_ERR_DATA, "%s: hidden_size %d not divisible by num_attention_heads %d", path, cfg->hidden, cfg->heads);
    cJSON_Delete(root);
    if (rc != QD_OK) return rc;
    /* tokenizer_config.json (optional): BertTokenizer defaults do_lower_case=True, strip None */
    cfg->do_lower_case = 1;
    cfg->strip_accents = -1;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    struct stat sb;
    if (stat(path, &sb) == 0) {
        QD_TRY(qd_bert_read_file(path, &buf, &n));
        root = cJSON_ParseWithLength(buf, n);
        free(buf);
        if (!cJSON_IsObject(root)) { cJSON_Delete(root); return qd_errorf(QD_ERR_DATA, "%s: not a JSON object", path); }
        j = cJSON_GetObjectItemCaseSensitive(root, "do_lower_case");
        if (cJSON_IsBool(j)) cfg->do_lower_case = cJSON_IsTrue(j);
        j = cJSON_GetObjectItemCaseSensitive(root, "strip_accents");
        if (cJSON_IsBool(j)) cfg->strip_accents = cJSON_IsTrue(j);
        cJSON_Delete(root);
    }
    return QD_OK;
}

static void free_layer(qd_bert_layer *L) {
    float **p[] = {&L->wq, &L->bq, &L->wk, &L->bk, &L->wv, &L->bv, &L->wo, &L->bo,
                   &L->ln1_g, &L->ln1_b, &L->w1, &L->b1, &L->w2, &L->b2, &L->ln2_g, &L->ln2_b};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) { free(*p[i]); *p[i] = NULL; }
}

void qd_bert_free(qd_bert_model *m) {
    if (!m) return;
    free(m->word_emb); free(m->pos_emb); free(m->type_emb); free(m->emb_ln_g); free(m->emb_ln_b);
    if (m->layer)
        for (int i = 0; i < m->cfg.layers; i++) free_layer(&m->layer[i]);
    free(m->layer);
    free(m->pool_w); free(m->pool_b); free(m->cls_w); free(m->cls_b);
    qd_wp_free(m->tok);
    free(m);
}

static qd_status get(const qd_safetensors *st, const char *pre, const char *key, int64_t d0, int64_t d1, float **out) {
    char name[320];
    snprintf(name, sizeof name, "%s%s", pre, key);
    int64_t shape[2] = {d0, d1};
    return qd_st_read_f32(st, name, d1 ? 2 : 1, shape, out);
}

qd_status qd_bert_load(const char *dir, qd_bert_model **out) {
    *out = NULL;
    qd_bert_model *m = calloc(1, sizeof *m);
    if (!m) return qd_errorf(QD_ERR_INTERNAL, "%s: out of memory", dir);
    qd_status rc = qd_bert_config_load(dir, &m->cfg);
    if (rc != QD_OK) { free(m); return rc; }
    const qd_bert_config *c = &m->cfg;
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    qd_safetensors *st;
    rc = qd_st_open(path, &st);
    if (rc != QD_OK) { free(m); return rc; }
    const char *pre = qd_st_find(st, "bert.embeddings.word_embeddings.weight") ? "bert." : "";
    int H = c->hidden, FF = c->intermediate;
    m->layer = calloc((size_t)c->layers, sizeof *m->layer);
    if (!m->layer) rc = qd_errorf(QD_ERR_INTERNAL, "%s: out of memory", dir);
    if (rc == QD_OK) rc = get(st, pre, "embeddings.word_embeddings.weight", c->vocab, H, &m->word_emb);
    if (rc == QD_OK) rc = get(st, pre, "embeddings.position_embeddings.weight", c->max_pos, H, &m->pos_emb);
    if (rc == QD_OK) rc = get(st, pre, "embeddings.token_type_embeddings.weight", c->type_vocab, H, &m->type_emb);
    if (rc == QD_OK) rc = get(st, pre, "embeddings.LayerNorm.weight", H, 0, &m->emb_ln_g);
    if (rc == QD_OK) rc = get(st, pre, "embeddings.LayerNorm.bias", H, 0, &m->emb_ln_b);
    for (int i = 0; rc == QD_OK && i < c->layers; i++) {
        qd_bert_layer *L = &m->layer[i];
        struct { const char *k; float **p; int64_t d0, d1; } t[] = {
            {"attention.self.query.weight", &L->wq, H, H}, {"attention.self.query.bias", &L->bq, H, 0},
            {"attention.self.key.weight", &L->wk, H, H},   {"attention.self.key.bias", &L->bk, H, 0},
            {"attention.self.value.weight", &L->wv, H, H}, {"attention.self.value.bias", &L->bv, H, 0},
            {"attention.output.dense.weight", &L->wo, H, H}, {"attention.output.dense.bias", &L->bo, H, 0},
            {"attention.output.LayerNorm.weight", &L->ln1_g, H, 0}, {"attention.output.LayerNorm.bias", &L->ln1_b, H, 0},
            {"intermediate.dense.weight", &L->w1, FF, H}, {"intermediate.dense.bias", &L->b1, FF, 0},
            {"output.dense.weight", &L->w2, H, FF},       {"output.dense.bias", &L->b2, H, 0},
            {"output.LayerNorm.weight", &L->ln2_g, H, 0}, {"output.LayerNorm.bias", &L->ln2_b, H, 0},
        };
        for (size_t k = 0; rc == QD_OK && k < sizeof t / sizeof t[0]; k++) {
            char key[256];
            snprintf(key, sizeof key, "encoder.layer.%d.%s", i, t[k].k);
            rc = get(st, pre, key, t[k].d0, t[k].d1, t[k].p);
        }
    }
    if (rc == QD_OK && qd_st_find(st, "bert.pooler.dense.weight") != NULL) pre = "bert.";
    char key[256];
    snprintf(key, sizeof key, "%spooler.dense.weight", pre);
    if (rc == QD_OK && qd_st_find(st, key)) {
        rc = get(st, pre, "pooler.dense.weight", H, H, &m->pool_w);
        if (rc == QD_OK) rc = get(st, pre, "pooler.dense.bias", H, 0, &m->pool_b);
    }
    const qd_st_tensor *ct = qd_st_find(st, "classifier.weight");
    if (rc == QD_OK && ct) {
        if (ct->ndim != 2 || ct->shape[1] != H || ct->shape[0] < 1 || ct->shape[0] > 1000)
            rc = qd_errorf(QD_ERR_DATA, "%s: tensor 'classifier.weight' must be [num_labels, %d]", path, H);
        else {
            m->cfg.num_labels = (int)ct->shape[0];
            rc = get(st, "", "classifier.weight", ct->shape[0], H, &m->cls_w);
            if (rc == QD_OK) rc = get(st, "", "classifier.bias", ct->shape[0], 0, &m->cls_b);
        }
    }
    qd_st_close(st);
    /* vocab.txt is required: without it no text can be encoded, and a missing file is a missing
     * input (66) now rather than a data error at calibration */
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    if (rc == QD_OK) {
        rc = qd_wp_load(path, c->do_lower_case, c->strip_accents, &m->tok);
        if (rc == QD_OK && qd_wp_vocab_size(m->tok) != c->vocab)
            rc = qd_errorf(QD_ERR_DATA, "%s: %d tokens but config.json vocab_size is %d", path, qd_wp_vocab_size(m->tok), c->vocab);
    }
    if (rc != QD_OK) { qd_bert_free(m); return rc; }
    *out = m;
    return QD_OK;
}

/* splitmix64 + Box-Muller: a reproducible N(0, std) fill for benchmarks and tests. */
static uint64_t sm64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float *randn(size_t n, float std, float mean, uint64_t *s) {
    float *p = malloc(n * sizeof *p);
    if (!p) return NULL;
    for (size_t i = 0; i < n; i++) {
        double u1 = ((double)(sm64(s) >> 11) + 1.0) / 9007199254740993.0, u2 = (double)(sm64(s) >> 11) / 9007199254740992.0;
        p[i] = mean + std * (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
    return p;
}

qd_status qd_bert_random(const qd_bert_config *cfg, uint64_t seed, qd_bert_model **out) {
    *out = NULL;
    qd_bert_model *m = calloc(1, sizeof *m);
    if (!m) return qd_errorf(QD_ERR_INTERNAL, "random BERT: out of memory");
    m->cfg = *cfg;
    size_t H = (size_t)cfg->hidden, FF = (size_t)cfg->intermediate;
    m->layer = calloc((size_t)cfg->layers, sizeof *m->layer);
    int ok = m->layer != NULL;
    const float sd = 0.02f; /* BERT initializer_range */
    if (ok) {
        ok = (m->word_emb = randn((size_t)cfg->vocab * H, sd, 0, &seed)) && (m->pos_emb = randn((size_t)cfg->max_pos * H, sd, 0, &seed)) &&
             (m->type_emb = randn((size_t)cfg->type_vocab * H, sd, 0, &seed)) && (m->emb_ln_g = randn(H, 0, 1, &seed)) &&
             (m->emb_ln_b = randn(H, 0, 0, &seed));
    }
    for (int i = 0; ok && i < cfg->layers; i++) {
        qd_bert_layer *L = &m->layer[i];
        ok = (L->wq = randn(H * H, sd, 0, &seed)) && (L->bq = randn(H, sd, 0, &seed)) && (L->wk = randn(H * H, sd, 0, &seed)) &&
             (L->bk = randn(H, sd, 0, &seed)) && (L->wv = randn(H * H, sd, 0, &seed)) && (L->bv = randn(H, sd, 0, &seed)) &&
             (L->wo = randn(H * H, sd, 0, &seed)) && (L->bo = randn(H, sd, 0, &seed)) && (L->ln1_g = randn(H, 0, 1, &seed)) &&
             (L->ln1_b = randn(H, 0, 0, &seed)) && (L->w1 = randn(FF * H, sd, 0, &seed)) && (L->b1 = randn(FF, sd, 0, &seed)) &&
             (L->w2 = randn(H * FF, sd, 0, &seed)) && (L->b2 = randn(H, sd, 0, &seed)) && (L->ln2_g = randn(H, 0, 1, &seed)) &&
             (L->ln2_b = randn(H, 0, 0, &seed));
    }
    if (!ok) { qd_bert_free(m); return qd_errorf(QD_ERR_INTERNAL, "random BERT: out of memory"); }
    *out = m;
    return QD_OK;
}
