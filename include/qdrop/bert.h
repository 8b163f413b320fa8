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
#include "qdrop/rng_key.h"

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
    float *probs_pre;      /* [B,NH,S,S] softmax output before the PROBS hook (softmax backward) */
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

/* Backward hook (quantizer backward, §2/§7): g holds the gradient w.r.t. the hooked tensor's
 * elements [offset, offset + n) (flat index in the forward hook's layout) after the hook; the
 * hook replaces it in place by the gradient w.r.t. the hook's input. Called for OUT_LN, GELU,
 * ATTN_LN, CTX, PROBS (once per batch*head block), Q, K, V, in this order. */
typedef void (*qd_bert_act_bhook)(void *ctx, int layer, qd_bert_site site, float *g, size_t offset, size_t n);
/* qd_bert_layer_backward with quantizer backward hooks (bhook NULL = identity); li = layer index
 * passed to the hook. */
QD_MUST_USE qd_status qd_bert_layer_backward_ex(const qd_bert_config *cfg, const qd_bert_layer *L, int li,
                                                const qd_bert_layer_cache *cache, const int *mask, const float *dy,
                                                float *dx, qd_bert_layer_grads *g, qd_bert_act_bhook bhook,
                                                void *bctx);

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

/* Classifier logits of n single sentences ([CLS] s [SEP], max_len tokens, batches of `batch`
 * sorted by length): encoder -> [CLS] -> pooler tanh -> classifier (qd_bert_classify); the hook
 * applies to the encoder only. out [n, num_labels]. QD_ERR_DATA when the model has no head. */
QD_MUST_USE qd_status qd_bert_classify_sentences(const qd_bert_model *m, const char *const *sent, int n,
                                                 int max_len, int batch, float *logits,
                                                 qd_bert_act_hook hook, void *hctx);

/* An encoder of padded token batches: hid [B*S, H] = last hidden state of ids/mask [B*S]. The host
 * encoder (qd_bert_encode) and the graph encoder (qd_bert_graph_encoder) both fit. */
/* What an external runtime needs to redo an evaluation (output.logits of a BERT run,
 * docs/bert.md "Encoder graph"): per sentence, in the evaluator's order (STS-B: the n first
 * sentences, then the n second ones; SST-2: the sentences), the encoder graph's input rows of its
 * valid tokens (the embeddings-LN output, from the tables of `emb`) and the host result (STS-B:
 * mean-pooled L2-normalised embedding, SST-2: the classifier logits). Filled by
 * qd_bert_sentences_enc when the encoder carries one; zero-initialise, set emb, free with
 * qd_bert_eval_record_free. */
typedef struct qd_bert_eval_record {
    const qd_bert_model *emb;  /* the tables the encoder embeds with */
    int n, cap;                /* sentences recorded (the next call's sentence 0 is index n) */
    int nout;                  /* result width: H or num_labels */
    int64_t ntok;              /* valid tokens recorded */
    int *len;                  /* [cap] valid tokens per sentence */
    float **tok;               /* [cap] -> [len, H] encoder input rows */
    float *out;                /* [cap, nout] host results */
} qd_bert_eval_record;
void qd_bert_eval_record_free(qd_bert_eval_record *r);

typedef struct qd_bert_encoder {
    qd_status (*encode)(void *ctx, const int *ids, const int *mask, int B, int S, float *hid);
    void *ctx;
    qd_bert_eval_record *rec;  /* optional: record the inputs and results (NULL: off) */
} qd_bert_encoder;
/* qd_bert_embed_sentences (classify 0, out [n, H]) / qd_bert_classify_sentences (classify 1, out
 * [n, num_labels]) with any encoder; m supplies the tokenizer and the head. */
QD_MUST_USE qd_status qd_bert_sentences_enc(const qd_bert_model *m, const char *const *sent, int n, int max_len,
                                            int batch, int classify, const qd_bert_encoder *enc, float *out);

/* Min/max baseline (no reconstruction, src/bert/quant.c): fake-quantize every Linear weight per
 * output channel to w_bits and the embedding tables per row to emb_bits, in place. */
QD_MUST_USE qd_status qd_bert_quantize_weights_minmax(qd_bert_model *m, int w_bits, int emb_bits);
/* Hook fake-quantizing each §8.8 activation per tensor with its own min/max (dynamic ranges);
 * ctx points to an int holding the activation bits. */
void qd_bert_dynamic_act_hook(void *ctx, int layer, qd_bert_site site, float *x, size_t n);

/* ---------------------------------------------------------------------------------------- */
/* Quantization state and calibration helpers (src/bert/bert_calib.c, §8.8)                  */
/* ---------------------------------------------------------------------------------------- */
#define QD_BERT_LAYER_SITES 8   /* Q K V PROBS CTX ATTN_LN GELU OUT_LN: site s -> slot s - 1 */
#define QD_BERT_NLINEAR 6       /* Q, K, V, attention output, FFN in, FFN out */

/* One per-tensor activation quantizer (§6): unsigned grid [0, qmax], fixed zero point. */
typedef struct qd_bert_aq {
    float scale, zp;
    int bits;
} qd_bert_aq;

/* Quantization state of a model: per-output-channel weight qparams of every Linear (§3.1) and
 * the activation quantizers (emb_ln + layers * QD_BERT_LAYER_SITES). */
typedef struct qd_bert_quant {
    int layers, w_bits, a_bits, emb_bits;
    int last_out_8bit;          /* last layer's OUT_LN quantizer at 8 bits (§6.1, §8.7) */
    qd_bert_aq emb_ln;
    qd_bert_aq *act;            /* [layers * QD_BERT_LAYER_SITES] */
    float *ws, *wz;             /* [layers * QD_BERT_NLINEAR][rows] via w_off */
    int64_t *w_off;             /* [layers * QD_BERT_NLINEAR] offset into ws/wz */
} qd_bert_quant;

/* Weight i (0..5) of a layer and its shape [rows = out, cols = in]. */
float *qd_bert_linear_weight(const qd_bert_layer *L, int i);
void qd_bert_linear_shape(const qd_bert_config *cfg, int i, int *rows, int *cols);

/* Weight ranges by the §3.1 MSE search on the FP weights of m (threads for the search). */
QD_MUST_USE qd_status qd_bert_quant_create(const qd_bert_model *m, int w_bits, int a_bits, int last_out_8bit,
                                           int threads, qd_bert_quant **out);
void qd_bert_quant_free(qd_bert_quant *q);

/* Calibration sentences as packed token ids (no padding). */
typedef struct qd_bert_calib {
    int n;
    int *len;        /* [n] tokens incl. [CLS]/[SEP] */
    int64_t *off;    /* [n] first token of sentence i */
    int *ids;        /* [ntok] */
    int64_t ntok;
} qd_bert_calib;
/* Tokenize sentences (max_len tokens each). */
QD_MUST_USE qd_status qd_bert_calib_build(const qd_bert_model *m, const char *const *sent, int n, int max_len,
                                          qd_bert_calib *out);
void qd_bert_calib_free(qd_bert_calib *c);

/* Activation ranges (§6.2): one FP forward of the first nsamples calibration sentences
 * (model fp, no quantizer), values of each site over valid (non-padding) tokens (PROBS: valid
 * query x valid key), evenly strided sample of at most max_elems per site, qd_act_range_search. */
QD_MUST_USE qd_status qd_bert_quant_act_ranges(qd_bert_quant *q, const qd_bert_model *fp, const qd_bert_calib *cal,
                                               int nsamples, int64_t max_elems, int threads);


/* ---------------------------------------------------------------------------------------- */
/* The encoder as a qd_graph (src/bert/bert_graph.c; docs/bert.md "Encoder graph")             */
/* ---------------------------------------------------------------------------------------- */
struct qd_graph;
/* Graph of the encoder layers of m for sequences padded to S tokens: inputs "embeddings"
 * [N,S,H] (qd_bert_embed output) and "attention_mask" [N,1,1,S] (qd_bert_additive_mask), output
 * the last hidden state [N,S,H]; one unit per encoder layer (units marked, shapes inferred;
 * weights copied). */
QD_MUST_USE qd_status qd_bert_build_graph(const qd_bert_model *m, int S, struct qd_graph **out);
/* Change the padded length of a graph from qd_bert_build_graph (shapes re-inferred; an executor
 * created for a larger S keeps working). */
QD_MUST_USE qd_status qd_bert_graph_set_seq(struct qd_graph *g, int S);
int qd_bert_graph_seq_len(const struct qd_graph *g);
/* §8.8 quantizers: per output channel on the 6 Gemms of every layer (w_bits), per tensor at
 * EMB_LN (no unit) and the 8 sites of each layer (a_bits; the last layer's output 8-bit with
 * last_out_8bit). Activation quantizer k: 0 = EMB_LN, 1 + l * 8 + (site - 1) = layer l. */
QD_MUST_USE qd_status qd_bert_graph_place_quantizers(struct qd_graph *g, int w_bits, int a_bits, int last_out_8bit);
/* 1/0 token mask [B*S] -> additive key mask (0 / -inf) [B*S]. */
void qd_bert_additive_mask(const int *mask, int B, int S, float *out);

/* The graph as a qd_bert_encoder: host embeddings of emb (its tables: FP, or the 8-bit tables
 * of a quantized run), then the graph on backend b in `mode` (exec.h), padded lengths up to
 * max_S, batches up to max_batch. The graph's length is restored by _free. */
typedef struct qd_bert_graph_encoder {
    const qd_bert_model *emb;
    struct qd_graph *g;
    struct qd_backend *b;
    struct qd_exec *ex;
    int mode;                  /* qd_exec_mode */
    int max_batch, max_S, restore_S;
    float *h_in, *h_mask;      /* host staging */
    float *d_in, *d_mask, *d_out;
} qd_bert_graph_encoder;
QD_MUST_USE qd_status qd_bert_graph_encoder_init(qd_bert_graph_encoder *e, const qd_bert_model *emb, struct qd_graph *g,
                                                 struct qd_backend *b, int mode, int max_batch, int max_S);
void qd_bert_graph_encoder_free(qd_bert_graph_encoder *e);
/* qd_bert_encoder callback (ctx = qd_bert_graph_encoder *). */
QD_MUST_USE qd_status qd_bert_graph_encode(void *ctx, const int *ids, const int *mask, int B, int S, float *hid);


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
/* ... with any encoder; cos_out [set->n] (may be NULL) receives each pair's cosine similarity. */
QD_MUST_USE qd_status qd_bert_eval_stsb_enc(const qd_bert_model *m, const qd_sts_set *set, const qd_bert_encoder *enc,
                                            double *spearman, double *cos_out);

/* Single-sentence classification TSV with a header (SST-2: sentence<TAB>label). */
typedef struct qd_glue_set {
    int n;
    char **a, **b;  /* b NULL entries for single-sentence tasks */
    int *label;
} qd_glue_set;
QD_MUST_USE qd_status qd_glue_read_sst2(const char *path, qd_glue_set *out);
void qd_glue_free(qd_glue_set *s);
/* SST-2 accuracy of argmax(logits) (qd_bert_classify_sentences, max_len tokens) vs the labels of
 * set; pred [n] receives the predictions when not NULL. */
QD_MUST_USE qd_status qd_bert_eval_sst2_model(const qd_bert_model *m, const qd_glue_set *set, int max_len,
                                              qd_bert_act_hook hook, void *hctx, double *accuracy, int *pred);
QD_MUST_USE qd_status qd_bert_eval_sst2_enc(const qd_bert_model *m, const qd_glue_set *set, int max_len,
                                            const qd_bert_encoder *enc, double *accuracy, int *pred);

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
