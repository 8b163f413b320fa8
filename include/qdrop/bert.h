/* qdrop/bert.h: BERT from a HuggingFace model directory (config.json, model.safetensors,
 * vocab.txt, tokenizer_config.json), the WordPiece tokenizer, the FP32 encoder on the CPU
 * (OpenBLAS) with the backward pass of one encoder layer, pooling, STS-B evaluation and the
 * GLUE readers/metrics. Implemented in src/bert/. See docs/bert.md.
 *
 * Layouts: activations are row-major [tokens, features] with tokens = batch * seq (sequence
 * index fastest after batch); Linear weights are HuggingFace's [out, in] (y = x W^T + b).
 * Quantization hooks (§8.8): every activation quantizer position of a layer calls
 * qd_bert_act_hook in place, and a layer's Linear weight pointers can be swapped for
 * fake-quantized copies (qd_bert_layer holds plain pointers).
 */
#ifndef QDROP_BERT_H
#define QDROP_BERT_H

#include <stddef.h>
#include <stdint.h>
#include "qdrop/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------- */
/* safetensors                                                                                */
/* ---------------------------------------------------------------------------------------- */
typedef enum qd_st_dtype {
    QD_ST_BOOL, QD_ST_U8, QD_ST_I8, QD_ST_I16, QD_ST_U16, QD_ST_F16, QD_ST_BF16, QD_ST_I32,
    QD_ST_U32, QD_ST_F32, QD_ST_F64, QD_ST_I64, QD_ST_U64
} qd_st_dtype;

#define QD_ST_MAX_DIMS 8
typedef struct qd_st_tensor {
    char *name;
    qd_st_dtype dtype;
    int ndim;
    int64_t shape[QD_ST_MAX_DIMS];
    int64_t numel;
    size_t begin, end; /* byte offsets relative to the data section */
} qd_st_tensor;

typedef struct qd_safetensors {
    char *path;          /* for error messages */
    unsigned char *buf;  /* whole file */
    size_t size;
    size_t data_start;   /* 8 + header length */
    int n;
    qd_st_tensor *t;     /* sorted by begin offset */
} qd_safetensors;

/* Read and validate a .safetensors file: header length within the file, JSON object, every
 * tensor with dtype/shape/data_offsets, offsets in bounds, contiguous and non-overlapping,
 * byte size == numel * dtype size. QD_ERR_NOINPUT if unreadable, QD_ERR_DATA otherwise. */
QD_MUST_USE qd_status qd_st_open(const char *path, qd_safetensors **out);
/* Same on a memory buffer (copied); name is used in messages. */
QD_MUST_USE qd_status qd_st_open_mem(const void *buf, size_t n, const char *name, qd_safetensors **out);
const qd_st_tensor *qd_st_find(const qd_safetensors *st, const char *name);
/* Tensor converted to float32 (F32, F16, BF16, F64). If ndim > 0 the shape must match exactly
 * (QD_ERR_DATA naming file, tensor, expected and found). *out is malloc'ed. */
QD_MUST_USE qd_status qd_st_read_f32(const qd_safetensors *st, const char *name, int ndim,
                                     const int64_t *shape, float **out);
void qd_st_close(qd_safetensors *st);
size_t qd_st_dtype_size(qd_st_dtype d);

/* ---------------------------------------------------------------------------------------- */
/* WordPiece tokenizer (HuggingFace BertTokenizer semantics)                                  */
/* ---------------------------------------------------------------------------------------- */
typedef struct qd_wordpiece qd_wordpiece;

/* strip_accents: -1 = follow do_lower_case (HF's None), 0 = never, 1 = always. */
QD_MUST_USE qd_status qd_wp_load(const char *vocab_path, int do_lower_case, int strip_accents,
                                 qd_wordpiece **out);
void qd_wp_free(qd_wordpiece *wp);
int qd_wp_vocab_size(const qd_wordpiece *wp);
int qd_wp_token_id(const qd_wordpiece *wp, const char *token); /* -1 when absent */
/* Sub-word ids of text (no special tokens). *ids is malloc'ed. */
QD_MUST_USE qd_status qd_wp_tokenize(const qd_wordpiece *wp, const char *text, int **ids, int *n);

typedef struct qd_bert_encoding {
    int *ids, *type_ids, *mask; /* [max_len] each, caller-owned buffers */
    int len;                    /* tokens before padding */
} qd_bert_encoding;
/* [CLS] a [SEP] (b [SEP]); truncation longest_first to max_len; pad with [PAD]=id of "[PAD]"
 * to max_len when pad != 0. enc->ids/type_ids/mask must hold max_len ints. */
QD_MUST_USE qd_status qd_wp_encode(const qd_wordpiece *wp, const char *a, const char *b, int max_len,
                                   int pad, qd_bert_encoding *enc);

/* ---------------------------------------------------------------------------------------- */
/* Model                                                                                      */
/* ---------------------------------------------------------------------------------------- */
typedef struct qd_bert_config {
    int hidden, layers, heads, intermediate, max_pos, type_vocab, vocab;
    float ln_eps;
    int do_lower_case, strip_accents; /* tokenizer_config.json; strip -1 = follow lower case */
    int num_labels;                   /* classifier rows, 0 when no head in the checkpoint */
} qd_bert_config;

typedef struct qd_bert_layer {
    float *wq, *bq, *wk, *bk, *wv, *bv; /* [H,H], [H] */
    float *wo, *bo, *ln1_g, *ln1_b;     /* attention output dense + LayerNorm */
    float *w1, *b1;                     /* [FF,H], [FF] */
    float *w2, *b2, *ln2_g, *ln2_b;     /* [H,FF], [H] */
} qd_bert_layer;

typedef struct qd_bert_model {
    qd_bert_config cfg;
    float *word_emb, *pos_emb, *type_emb, *emb_ln_g, *emb_ln_b;
    qd_bert_layer *layer;             /* [cfg.layers] */
    float *pool_w, *pool_b;           /* pooler dense (NULL when absent) */
    float *cls_w, *cls_b;             /* classifier [num_labels,H] (NULL when absent) */
    qd_wordpiece *tok;                /* NULL when the directory has no vocab.txt */
} qd_bert_model;

QD_MUST_USE qd_status qd_bert_config_load(const char *dir, qd_bert_config *cfg);
/* Loads dir/config.json, dir/model.safetensors (keys with or without the "bert." prefix),
 * dir/vocab.txt and dir/tokenizer_config.json when present. */
QD_MUST_USE qd_status qd_bert_load(const char *dir, qd_bert_model **out);
void qd_bert_free(qd_bert_model *m);
/* Random model with the given shape (weights N(0, 0.02), LN gamma 1, beta 0); no tokenizer. */
QD_MUST_USE qd_status qd_bert_random(const qd_bert_config *cfg, uint64_t seed, qd_bert_model **out);

/* Activation quantizer positions (§8.8). */
typedef enum qd_bert_site {
    QD_BERT_SITE_EMB_LN = 0, /* embeddings LayerNorm output (layer = -1) */
    QD_BERT_SITE_Q, QD_BERT_SITE_K, QD_BERT_SITE_V, /* after the head split */
    QD_BERT_SITE_PROBS,      /* softmax probabilities */
    QD_BERT_SITE_CTX,        /* attention context (heads merged) */
    QD_BERT_SITE_ATTN_LN,    /* attention output LayerNorm */
    QD_BERT_SITE_GELU,       /* FFN GELU output */
    QD_BERT_SITE_OUT_LN,     /* layer output LayerNorm */
    QD_BERT_SITE_COUNT
} qd_bert_site;
/* Called in place on the tensor at site; n elements. Layout of Q/K/V/PROBS: [B, heads, S, d] /
 * [B, heads, S, S]; others [B*S, features]. */
typedef void (*qd_bert_act_hook)(void *ctx, int layer, qd_bert_site site, float *x, size_t n);

/* Per-layer saved activations for the backward pass. Owned by the caller; sized by
 * qd_bert_cache_alloc for (B, S). */
typedef struct qd_bert_layer_cache {
    int B, S;
    float *x;              /* layer input [T,H] */
    float *q, *k, *v;      /* [B,NH,S,d] (after hooks) */
    float *probs;          /* [B,NH,S,S] (after hooks) */
    float *ctx;            /* [T,H] (after hooks) */
    float *ln1_xhat, *ln1_rstd; /* [T,H], [T] */
    float *h1;             /* [T,H] attention LN output (after hooks) */
    float *pre;            /* [T,FF] FFN pre-activation */
    float *inter;          /* [T,FF] GELU output (after hooks) */
    float *ln2_xhat, *ln2_rstd;
} qd_bert_layer_cache;
QD_MUST_USE qd_status qd_bert_cache_alloc(const qd_bert_config *cfg, int B, int S, qd_bert_layer_cache *c);
void qd_bert_cache_free(qd_bert_layer_cache *c);

/* Embeddings + LayerNorm: out [B*S, H]. */
void qd_bert_embed(const qd_bert_model *m, const int *ids, const int *type_ids, int B, int S, float *out,
                   qd_bert_act_hook hook, void *hctx);
/* One encoder layer. mask [B*S] (1 keep, 0 pad). y may alias nothing. cache may be NULL
 * (inference; then scratch is allocated internally). Returns QD_ERR_INTERNAL on OOM. */
QD_MUST_USE qd_status qd_bert_layer_forward(const qd_bert_config *cfg, const qd_bert_layer *L, int li,
                                            const float *x, const int *mask, int B, int S, float *y,
                                            qd_bert_layer_cache *cache, qd_bert_act_hook hook, void *hctx);
/* Gradients of one layer given the cache of its forward and dy [T,H]. Gradient buffers are
 * ACCUMULATED into (zero them first); any may be NULL except dx. Activation hooks are treated
 * as identity (straight-through) in this pass. */
typedef struct qd_bert_layer_grads {
    float *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo, *ln1_g, *ln1_b, *w1, *b1, *w2, *b2, *ln2_g, *ln2_b;
} qd_bert_layer_grads;
QD_MUST_USE qd_status qd_bert_layer_backward(const qd_bert_config *cfg, const qd_bert_layer *L,
                                             const qd_bert_layer_cache *cache, const int *mask,
                                             const float *dy, float *dx, qd_bert_layer_grads *g);

/* Full encoder: out [B*S, H] last hidden state. */
QD_MUST_USE qd_status qd_bert_encode(const qd_bert_model *m, const int *ids, const int *type_ids,
                                     const int *mask, int B, int S, float *out, qd_bert_act_hook hook,
                                     void *hctx);
/* Mean over attention-masked tokens (sentence-transformers), optional L2 normalisation. */
void qd_bert_mean_pool(const float *hid, const int *mask, int B, int S, int H, int l2norm, float *out);
/* [CLS] -> pooler tanh -> classifier: logits [B, num_labels]. QD_ERR_DATA if no head. */
QD_MUST_USE qd_status qd_bert_classify(const qd_bert_model *m, const float *hid, int B, int S, float *logits);

/* Sentence embeddings (mean pooled, L2-normalised) of n sentences, batches of `batch`,
 * max_len tokens (sentence-transformers all-MiniLM: 256). out [n, H]. */
QD_MUST_USE qd_status qd_bert_embed_sentences(const qd_bert_model *m, const char *const *sent, int n,
                                              int max_len, int batch, float *out,
                                              qd_bert_act_hook hook, void *hctx);

/* Min/max baseline (no reconstruction, src/bert/quant.c): fake-quantize every Linear weight per
 * output channel to w_bits and the embedding tables per row to emb_bits, in place. */
QD_MUST_USE qd_status qd_bert_quantize_weights_minmax(qd_bert_model *m, int w_bits, int emb_bits);
/* Hook fake-quantizing each §8.8 activation per tensor with its own min/max (dynamic ranges);
 * ctx points to an int holding the activation bits. */
void qd_bert_dynamic_act_hook(void *ctx, int layer, qd_bert_site site, float *x, size_t n);

/* ---------------------------------------------------------------------------------------- */
/* STS-B and GLUE                                                                             */
/* ---------------------------------------------------------------------------------------- */
typedef struct qd_sts_set {
    int n;
    char **a, **b;
    float *score;
} qd_sts_set;
/* Original STSb TSV (genre file year id score s1 s2 [extra...]), or GLUE STS-B TSV with a
 * header (index ... sentence1 sentence2 score) — chosen by the header line. */
QD_MUST_USE qd_status qd_sts_read(const char *path, qd_sts_set *out);
void qd_sts_free(qd_sts_set *s);

/* Spearman of cosine(embed(a), embed(b)) vs gold for stsb_dir/original/sts-test.tsv (or
 * stsb_dir itself when it is a file). max_n > 0 limits the pairs (tests). */
QD_MUST_USE qd_status qd_bert_eval_stsb(const char *model_dir, const char *stsb_path, int max_n,
                                        double *spearman, int *n_pairs);
QD_MUST_USE qd_status qd_bert_eval_stsb_model(const qd_bert_model *m, const qd_sts_set *set,
                                              qd_bert_act_hook hook, void *hctx, double *spearman);

/* Single-sentence classification TSV with a header (SST-2: sentence<TAB>label). */
typedef struct qd_glue_set {
    int n;
    char **a, **b;  /* b NULL entries for single-sentence tasks */
    int *label;
} qd_glue_set;
QD_MUST_USE qd_status qd_glue_read_sst2(const char *path, qd_glue_set *out);
void qd_glue_free(qd_glue_set *s);

/* Metrics (n >= 1; QD_ERR_DATA on n < 2 for correlations or constant input). */
double qd_metric_accuracy(const int *pred, const int *gold, int n);
double qd_metric_f1(const int *pred, const int *gold, int n); /* positive class 1 */
double qd_metric_matthews(const int *pred, const int *gold, int n);
QD_MUST_USE qd_status qd_metric_pearson(const double *x, const double *y, int n, double *r);
/* Average ranks for ties. */
QD_MUST_USE qd_status qd_metric_spearman(const double *x, const double *y, int n, double *rho);

#ifdef __cplusplus
}
#endif
#endif
