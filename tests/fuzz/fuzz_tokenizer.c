/* tests/fuzz/fuzz_tokenizer.c: libFuzzer target for the WordPiece tokenizer (src/bert).
 * Input byte 0 selects the mode:
 *   even: the rest is text, tokenized with a fixed small vocabulary (BERT specials, ASCII words,
 *         ## pieces, accented and CJK entries) and encoded as a pair split at the first TAB;
 *   odd:  the rest is a vocab.txt, loaded (through a temp file) and used on a fixed sentence.
 * Checks: ids within [0, vocab size); an encoding never longer than max_len, starts with [CLS],
 * padding masked. */
#include "fuzz_common.h"
#include "qdrop/bert.h"

static const char *k_vocab =
    "[PAD]\n[unused0]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n!\n,\n.\n?\na\nthe\nquick\nbrown\nfox\njump\n##s\n##ed\n##ing\n"
    "un\n##aff\n##able\ncafe\ncaf\n##\xc3\xa9\n\xc3\xa9\n\xe4\xb8\xad\n\xe6\x96\x87\nhello\nworld\n##ly\nx\n##x\n";

static qd_wordpiece *g_wp[2];

static void check_ids(const qd_wordpiece *wp, const int *ids, int n) {
    int v = qd_wp_vocab_size(wp);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= v) { fprintf(stderr, "fuzz: token id %d outside [0, %d)\n", ids[i], v); abort(); }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    const char *p = qd_fuzz_write_tmp((const uint8_t *)k_vocab, strlen(k_vocab), ".vocab.txt");
    if (!p || qd_wp_load(p, 1, -1, &g_wp[0]) != QD_OK || qd_wp_load(p, 0, 0, &g_wp[1]) != QD_OK) {
        fprintf(stderr, "fuzz_tokenizer: cannot load the built-in vocabulary: %s\n", qd_error_message());
        abort();
    }
    return 0;
}

static void encode(const qd_wordpiece *wp, const char *a, const char *b) {
    enum { MAXLEN = 24 };
    int ids[MAXLEN], type_ids[MAXLEN], mask[MAXLEN];
    qd_bert_encoding enc = {ids, type_ids, mask, 0};
    qd_error_clear();
    qd_status s = qd_wp_encode(wp, a, b, MAXLEN, 1, &enc);
    qd_fuzz_check_error(s);
    if (s != QD_OK) return;
    if (enc.len < 2 || enc.len > MAXLEN) { fprintf(stderr, "fuzz: encoding length %d\n", enc.len); abort(); }
    check_ids(wp, ids, MAXLEN);
    if (ids[0] != qd_wp_token_id(wp, "[CLS]")) { fprintf(stderr, "fuzz: encoding does not start with [CLS]\n"); abort(); }
    for (int i = 0; i < MAXLEN; i++)
        if (mask[i] != (i < enc.len)) { fprintf(stderr, "fuzz: mask[%d] = %d with len %d\n", i, mask[i], enc.len); abort(); }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 1 << 16) return 0;
    if ((data[0] & 1) == 0) {
        char *text = malloc(size);
        if (!text) return 0;
        memcpy(text, data + 1, size - 1);
        text[size - 1] = 0;
        const qd_wordpiece *wp = g_wp[(data[0] >> 1) & 1];
        int *ids = NULL, n = 0;
        qd_error_clear();
        qd_status s = qd_wp_tokenize(wp, text, &ids, &n);
        qd_fuzz_check_error(s);
        if (s == QD_OK) {
            if (n < 0) abort();
            check_ids(wp, ids, n);
        }
        free(ids);
        char *tab = strchr(text, '\t');
        if (tab) *tab = 0;
        encode(wp, text, tab ? tab + 1 : NULL);
        free(text);
    } else {
        const char *p = qd_fuzz_write_tmp(data + 1, size - 1, ".vocab.txt");
        if (!p) return 0;
        qd_wordpiece *wp = NULL;
        qd_error_clear();
        qd_status s = qd_wp_load(p, data[0] & 2 ? 1 : 0, -1, &wp);
        qd_fuzz_check_error(s);
        if (s == QD_OK) {
            int *ids = NULL, n = 0;
            qd_error_clear();
            s = qd_wp_tokenize(wp, "The quick brown fox jumped, unaffable caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87!", &ids, &n);
            qd_fuzz_check_error(s);
            if (s == QD_OK) check_ids(wp, ids, n);
            free(ids);
            encode(wp, "hello world", "x x x x x x x x x x x x x x x x x x x x x x x x x x x");
            qd_wp_free(wp);
        }
    }
    return 0;
}
