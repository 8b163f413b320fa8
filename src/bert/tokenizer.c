/* src/bert/tokenizer.c: WordPiece tokenizer with HuggingFace BertTokenizer semantics (the
 * BertNormalizer + BertPreTokenizer + WordPiece pipeline of tokenizers' fast BertTokenizer,
 * which is what sentence-transformers runs):
 *   clean text: drop U+0000, U+FFFD and controls (Cc/Cf/Co/Cs except \t\n\r); whitespace -> ' '
 *   CJK ideographs get spaces around them
 *   strip accents (NFD, drop Mn) when strip_accents (None follows do_lower_case), lower-case
 *   split on whitespace and punctuation (ASCII punctuation or Unicode P*), punctuation alone
 *   greedy longest-match-first WordPiece with "##" continuation, [UNK] for words > 100 chars.
 * Unicode tables are generated in unicode_tables.c (tools/make_bert_fixtures.py unicode). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bert/bert_internal.h"

#define QD_WP_MAX_WORD_CHARS 100 /* HF max_input_chars_per_word */

struct qd_wordpiece {
    int n;
    char **tok;
    int *slot; /* open-addressing hash of token ids, size cap (power of 2) */
    unsigned cap;
    int lower, strip;
    int unk, cls, sep, pad;
};

static uint32_t fnv(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static int lookup(const qd_wordpiece *wp, const char *s, size_t n) {
    for (unsigned h = fnv(s, n) & (wp->cap - 1);; h = (h + 1) & (wp->cap - 1)) {
        int id = wp->slot[h];
        if (id < 0) return -1;
        if (strlen(wp->tok[id]) == n && memcmp(wp->tok[id], s, n) == 0) return id;
    }
}

int qd_wp_token_id(const qd_wordpiece *wp, const char *token) { return lookup(wp, token, strlen(token)); }
int qd_wp_vocab_size(const qd_wordpiece *wp) { return wp->n; }

void qd_wp_free(qd_wordpiece *wp) {
    if (!wp) return;
    if (wp->tok) free(wp->tok[0]); /* one block holds all tokens */
    free(wp->tok);
    free(wp->slot);
    free(wp);
}

qd_status qd_wp_load(const char *vocab_path, int do_lower_case, int strip_accents, qd_wordpiece **out) {
    *out = NULL;
    char *buf;
    size_t len;
    QD_TRY(qd_bert_read_file(vocab_path, &buf, &len));
    const char *nul = memchr(buf, 0, len);
    if (nul) {
        int line = 1;
        for (const char *q = buf; q < nul; q++) line += *q == '\n';
        free(buf);
        return qd_errorf(QD_ERR_DATA, "%s: line %d contains a NUL byte (a vocabulary is UTF-8 text, one token per line)",
                         vocab_path, line);
    }
    qd_wordpiece *wp = calloc(1, sizeof *wp);
    if (!wp) { free(buf); return qd_errorf(QD_ERR_INTERNAL, "%s: out of memory", vocab_path); }
    int lines = 0;
    for (size_t i = 0; i < len; i++) lines += buf[i] == '\n';
    if (len && buf[len - 1] != '\n') lines++;
    wp->tok = calloc((size_t)lines + 1, sizeof *wp->tok);
    wp->cap = 1;
    while (wp->cap < 2u * (unsigned)lines + 2) wp->cap <<= 1;
    wp->slot = malloc(wp->cap * sizeof *wp->slot);
    if (!wp->tok || !wp->slot) { free(buf); qd_wp_free(wp); return qd_errorf(QD_ERR_INTERNAL, "%s: out of memory", vocab_path); }
    wp->tok[0] = buf; /* freed through tok[0] even when the file is empty */
    for (unsigned i = 0; i < wp->cap; i++) wp->slot[i] = -1;
    char *p = buf;
    for (int id = 0; id < lines; id++) {
        char *e = strchr(p, '\n');
        if (e) *e = 0;
        size_t l = strlen(p);
        if (l && p[l - 1] == '\r') p[--l] = 0;
        wp->tok[id] = p;
        if (lookup(wp, p, l) < 0) { /* first occurrence wins, like a dict built in order... */
            unsigned h = fnv(p, l) & (wp->cap - 1);
            while (wp->slot[h] >= 0) h = (h + 1) & (wp->cap - 1);
            wp->slot[h] = id;
        }
        wp->n = id + 1;
        p = e ? e + 1 : p + l;
    }
    wp->lower = do_lower_case;
    wp->strip = strip_accents < 0 ? do_lower_case : strip_accents;
    wp->unk = qd_wp_token_id(wp, "[UNK]");
    wp->cls = qd_wp_token_id(wp, "[CLS]");
    wp->sep = qd_wp_token_id(wp, "[SEP]");
    wp->pad = qd_wp_token_id(wp, "[PAD]");
    if (wp->unk < 0 || wp->cls < 0 || wp->sep < 0 || wp->pad < 0) {
        qd_wp_free(wp);
        return qd_errorf(QD_ERR_DATA, "%s: vocabulary lacks one of [UNK] [CLS] [SEP] [PAD]", vocab_path);
    }
    *out = wp;
    return QD_OK;
}

/* ---- Unicode helpers ---- */
static int in_ranges(uint32_t c, const qd_u_range *r, int n) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int m = (lo + hi) / 2;
        if (c < r[m].lo) hi = m - 1;
        else if (c > r[m].hi) lo = m + 1;
        else return 1;
    }
    return 0;
}

static uint32_t to_lower(uint32_t c) {
    if (c < 128) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
    int lo = 0, hi = qd_u_lower_n - 1;
    while (lo <= hi) {
        int m = (lo + hi) / 2;
        if (c < qd_u_lower[m].from) hi = m - 1;
        else if (c > qd_u_lower[m].from) lo = m + 1;
        else return qd_u_lower[m].to;
    }
    return c;
}

static const qd_u_map3 *strip_entry(uint32_t c) {
    int lo = 0, hi = qd_u_strip_n - 1;
    while (lo <= hi) {
        int m = (lo + hi) / 2;
        if (c < qd_u_strip[m].from) hi = m - 1;
        else if (c > qd_u_strip[m].from) lo = m + 1;
        else return &qd_u_strip[m];
    }
    return NULL;
}

static int is_cjk(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}
static int is_ws(uint32_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || in_ranges(c, qd_u_zs, qd_u_zs_n); }
static int is_control(uint32_t c) {
    if (c == '\t' || c == '\n' || c == '\r') return 0;
    return in_ranges(c, qd_u_control, qd_u_control_n);
}
static int is_punct(uint32_t c) {
    if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return 1;
    return in_ranges(c, qd_u_punct, qd_u_punct_n);
}

/* Decode UTF-8; malformed sequences become U+FFFD (which cleaning drops). Returns count. */
static size_t utf8_decode(const char *s, uint32_t *out) {
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0;
    while (*p) {
        uint32_t c = *p;
        int extra = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
        if (extra < 0) { out[n++] = 0xFFFD; p++; continue; }
        if (extra) c &= 0x3F >> extra;
        int ok = 1;
        for (int i = 1; i <= extra; i++) {
            if ((p[i] & 0xC0) != 0x80) { ok = 0; break; }
            c = (c << 6) | (p[i] & 0x3F);
        }
        if (!ok) { out[n++] = 0xFFFD; p++; continue; }
        out[n++] = c;
        p += extra + 1;
    }
    return n;
}

static size_t utf8_encode(uint32_t c, char *o) {
    if (c < 0x80) { o[0] = (char)c; return 1; }
    if (c < 0x800) { o[0] = (char)(0xC0 | (c >> 6)); o[1] = (char)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | (c >> 12)); o[1] = (char)(0x80 | ((c >> 6) & 0x3F)); o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (c >> 18)); o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F)); o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

typedef struct { int *v; int n, cap; } ivec;
static int ivec_push(ivec *a, int x) {
    if (a->n == a->cap) {
        int nc = a->cap ? 2 * a->cap : 64;
        int *nv = realloc(a->v, (size_t)nc * sizeof *nv);
        if (!nv) return 0;
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n++] = x;
    return 1;
}

/* WordPiece of one word (code points w[0..n)). */
static int wordpiece(const qd_wordpiece *wp, const uint32_t *w, int n, ivec *out, char *scratch) {
    if (n > QD_WP_MAX_WORD_CHARS) return ivec_push(out, wp->unk);
    /* byte offset of every char boundary */
    size_t off[QD_WP_MAX_WORD_CHARS + 1];
    char *u = scratch + 2; /* room for "##" before any start */
    off[0] = 0;
    for (int i = 0; i < n; i++) off[i + 1] = off[i] + utf8_encode(w[i], u + off[i]);
    int start = 0, first = out->n;
    while (start < n) {
        int end = n, found = -1;
        while (start < end) {
            size_t len = off[end] - off[start];
            if (start > 0) {
                /* "##" + substring: copy into a temp so the lookup sees a contiguous key */
                char key[4 * QD_WP_MAX_WORD_CHARS + 3];
                key[0] = '#'; key[1] = '#';
                memcpy(key + 2, u + off[start], len);
                found = lookup(wp, key, len + 2);
            } else {
                found = lookup(wp, u + off[start], len);
            }
            if (found >= 0) break;
            end--;
        }
        if (found < 0) { out->n = first; return ivec_push(out, wp->unk); }
        if (!ivec_push(out, found)) return 0;
        start = end;
    }
    return 1;
}

qd_status qd_wp_tokenize(const qd_wordpiece *wp, const char *text, int **ids, int *n) {
    *ids = NULL;
    *n = 0;
    size_t len = strlen(text);
    /* Each input code point yields at most 3 normalised code points plus 2 spaces. */
    uint32_t *cp = malloc((len + 1) * sizeof *cp), *nm = malloc((5 * len + 1) * sizeof *nm);
    char *scratch = malloc(4 * QD_WP_MAX_WORD_CHARS + 8);
    ivec out = {0};
    if (!cp || !nm || !scratch) { free(cp); free(nm); free(scratch); return qd_errorf(QD_ERR_INTERNAL, "tokenizer: out of memory"); }
    size_t ncp = utf8_decode(text, cp), k = 0;
    for (size_t i = 0; i < ncp; i++) {
        uint32_t c = cp[i];
        if (c == 0 || c == 0xFFFD || is_control(c)) continue;
        if (is_ws(c)) { nm[k++] = ' '; continue; }
        if (is_cjk(c)) { nm[k++] = ' '; nm[k++] = c; nm[k++] = ' '; continue; }
        uint32_t part[3] = {c, 0, 0};
        int np = 1;
        if (wp->strip) {
            if (c >= 0xAC00 && c <= 0xD7A3) { /* Hangul syllable: algorithmic NFD (L V [T]) */
                uint32_t si = c - 0xAC00;
                part[0] = 0x1100 + si / 588;
                part[1] = 0x1161 + (si % 588) / 28;
                np = 2;
                if (si % 28) { part[2] = 0x11A7 + si % 28; np = 3; }
            } else if (in_ranges(c, qd_u_mn, qd_u_mn_n)) {
                np = 0;
            } else {
                const qd_u_map3 *e = strip_entry(c);
                if (e) {
                    np = 0;
                    for (int j = 0; j < 3 && e->to[j]; j++) part[np++] = e->to[j];
                }
            }
        }
        for (int j = 0; j < np; j++) {
            uint32_t d = part[j];
            if (wp->lower) {
                if (d == 0x130) { /* U+0130 lower-cases to "i" + U+0307 */
                    nm[k++] = 'i';
                    if (!wp->strip) nm[k++] = 0x307;
                    continue;
                }
                d = to_lower(d);
            }
            nm[k++] = d;
        }
    }
    /* split on whitespace and punctuation, WordPiece each word */
    size_t i = 0;
    int ok = 1;
    while (i < k && ok) {
        if (nm[i] == ' ' || is_ws(nm[i])) { i++; continue; }
        if (is_punct(nm[i])) { ok = wordpiece(wp, &nm[i], 1, &out, scratch); i++; continue; }
        size_t j = i;
        while (j < k && !(nm[j] == ' ' || is_ws(nm[j])) && !is_punct(nm[j])) j++;
        ok = wordpiece(wp, &nm[i], (int)(j - i), &out, scratch);
        i = j;
    }
    free(cp);
    free(nm);
    free(scratch);
    if (!ok) { free(out.v); return qd_errorf(QD_ERR_INTERNAL, "tokenizer: out of memory"); }
    *ids = out.v;
    *n = out.n;
    return QD_OK;
}

qd_status qd_wp_encode(const qd_wordpiece *wp, const char *a, const char *b, int max_len, int pad,
                       qd_bert_encoding *enc) {
    int specials = b ? 3 : 2;
    if (max_len < specials) return qd_errorf(QD_ERR_CONFIG, "tokenizer: max_len %d below the %d special tokens", max_len, specials);
    int *ia = NULL, *ib = NULL, na = 0, nb = 0;
    QD_TRY(qd_wp_tokenize(wp, a, &ia, &na));
    if (b) {
        qd_status rc = qd_wp_tokenize(wp, b, &ib, &nb);
        if (rc != QD_OK) { free(ia); return rc; }
    }
    /* longest_first as in tokenizers (utils/truncation.rs): with n1 the shorter length, the
     * longer keeps max(n1, budget - n1); when both are too long the shorter keeps budget/2 and
     * the longer budget/2 + budget%2 (on equal lengths the first is "shorter"). */
    int budget = max_len - specials;
    if (b && na + nb > budget) {
        int swap = na > nb, n1 = swap ? nb : na, n2;
        if (n1 > budget) n2 = n1;
        else n2 = n1 > budget - n1 ? n1 : budget - n1;
        if (n1 + n2 > budget) { n1 = budget / 2; n2 = n1 + budget % 2; }
        int ta = swap ? n2 : n1, tb = swap ? n1 : n2;
        if (na > ta) na = ta;
        if (nb > tb) nb = tb;
    } else if (!b && na > budget) {
        na = budget;
    }
    int t = 0;
    enc->ids[t] = wp->cls; enc->type_ids[t] = 0; t++;
    for (int i = 0; i < na; i++, t++) { enc->ids[t] = ia[i]; enc->type_ids[t] = 0; }
    enc->ids[t] = wp->sep; enc->type_ids[t] = 0; t++;
    if (b) {
        for (int i = 0; i < nb; i++, t++) { enc->ids[t] = ib[i]; enc->type_ids[t] = 1; }
        enc->ids[t] = wp->sep; enc->type_ids[t] = 1; t++;
    }
    enc->len = t;
    for (int i = 0; i < t; i++) enc->mask[i] = 1;
    if (pad)
        for (; t < max_len; t++) { enc->ids[t] = wp->pad; enc->type_ids[t] = 0; enc->mask[t] = 0; }
    free(ia);
    free(ib);
    return QD_OK;
}
