/* WordPiece tokenizer vs HuggingFace: every sentence of the STS-B test set, pair encodings with
 * longest_first truncation + padding, and hand-written edge cases (fixtures from
 * tools/make_bert_fixtures.py tokens). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "qdrop/bert.h"

static int parse_ints(char *s, int *out, int cap) {
    int n = 0;
    char *e;
    while (n < cap) {
        long v = strtol(s, &e, 10);
        if (e == s) break;
        out[n++] = (int)v;
        s = e;
    }
    return n;
}

static void compare(const qd_wordpiece *wp, const char *text, char *expect_line, int idx) {
    int want[1024], nw = parse_ints(expect_line, want, 1024);
    qd_bert_encoding enc;
    int ids[1024], tt[1024], mk[1024];
    enc.ids = ids; enc.type_ids = tt; enc.mask = mk;
    qd_status rc = qd_wp_encode(wp, text, NULL, 1024, 0, &enc);
    CHECK(rc == QD_OK, "encode %d: %s", idx, qd_error_message());
    int same = enc.len == nw;
    for (int i = 0; same && i < nw; i++) same = ids[i] == want[i];
    if (!same) {
        CHECK(0, "sentence %d '%s': %d ids vs HF %d", idx, text, enc.len, nw);
        printf("  got:");
        for (int i = 0; i < enc.len; i++) printf(" %d", ids[i]);
        printf("\n  HF: %s\n", expect_line);
    }
}

int main(void) {
    qd_wordpiece *wp;
    if (qd_wp_load("tests/fixtures/bert/minilm_vocab.txt", 1, -1, &wp) != QD_OK) {
        printf("FAIL load: %s\n", qd_error_message());
        return 1;
    }
    CHECK(qd_wp_vocab_size(wp) == 30522, "vocab size %d", qd_wp_vocab_size(wp));
    CHECK(qd_wp_token_id(wp, "[CLS]") == 101 && qd_wp_token_id(wp, "[SEP]") == 102, "special ids");
    CHECK(qd_wp_token_id(wp, "##ing") > 0, "##ing");

    FILE *ft = fopen("assets/stsb/sts-test.tsv", "r"), *fx = fopen("tests/fixtures/bert/stsb_test_ids.txt", "r");
    if (!ft || !fx) { printf("FAIL: missing assets/stsb/sts-test.tsv or fixture\n"); return 1; }
    static char line[1 << 16], exp[1 << 16];
    int pairs = 0, sentences = 0, pair_checks = 0;
    if (!fgets(exp, sizeof exp, fx)) return 1; /* comment */
    while (fgets(line, sizeof line, ft)) {
        line[strcspn(line, "\r\n")] = 0;
        char *f[16];
        int nf = 0;
        for (char *p = line; nf < 16;) {
            f[nf++] = p;
            char *t = strchr(p, '\t');
            if (!t) break;
            *t = 0;
            p = t + 1;
        }
        CHECK(nf >= 7, "pair %d has %d fields", pairs, nf);
        if (nf < 7) continue;
        for (int s = 0; s < 2; s++) {
            CHECK(fgets(exp, sizeof exp, fx) && exp[0] == 'S', "fixture out of step at pair %d", pairs);
            compare(wp, f[5 + s], exp + 2, sentences++);
        }
        if (pairs % 50 == 0) {
            CHECK(fgets(exp, sizeof exp, fx) && exp[0] == 'P', "fixture pair line %d", pairs);
            int want[96], nw = parse_ints(exp + 2, want, 32);
            char *bar = strchr(exp, '|');
            nw += bar ? parse_ints(bar + 1, want + 32, 32) : 0;
            bar = bar ? strchr(bar + 1, '|') : NULL;
            nw += bar ? parse_ints(bar + 1, want + 64, 32) : 0;
            CHECK(nw == 96, "pair fixture fields %d", nw);
            int ids[32], tt[32], mk[32];
            qd_bert_encoding enc = {ids, tt, mk, 0};
            CHECK(qd_wp_encode(wp, f[5], f[6], 32, 1, &enc) == QD_OK, "pair encode");
            int same = 1;
            for (int i = 0; i < 32; i++) same &= ids[i] == want[i] && tt[i] == want[32 + i] && mk[i] == want[64 + i];
            CHECK(same, "pair %d encoding differs from HF (truncation/padding)", pairs);
            pair_checks++;
        }
        pairs++;
    }
    fclose(ft);
    fclose(fx);
    CHECK(pairs == 1379 && sentences == 2758, "pairs %d sentences %d", pairs, sentences);

    FILE *fe = fopen("tests/fixtures/bert/edge_ids.txt", "r");
    CHECK(fe != NULL, "edge fixture");
    int edges = 0;
    while (fe && fgets(line, sizeof line, fe)) {
        line[strcspn(line, "\n")] = 0;
        /* unescape \\ \t \n \0 -- \0 ends a C string, so it becomes a control char the
         * tokenizer drops just like NUL (U+0001, category Cc) */
        char text[4096];
        size_t k = 0;
        for (char *p = line + 2; *p && k < sizeof text - 1; p++) {
            if (*p == '\\' && p[1]) {
                p++;
                text[k++] = *p == 't' ? '\t' : *p == 'n' ? '\n' : *p == '0' ? '\x01' : *p;
            } else text[k++] = *p;
        }
        text[k] = 0;
        if (!fgets(exp, sizeof exp, fe)) break;
        compare(wp, text, exp + 2, 100000 + edges++);
    }
    if (fe) fclose(fe);
    CHECK(edges == 6, "edge cases %d", edges);
    qd_wp_free(wp);
    printf("%d STS-B test sentences, %d pair encodings, %d edge cases: %s\n", sentences, pair_checks, edges,
           qd_test_failures ? "FAIL" : "all identical to HuggingFace");
    return qd_test_summary("test_bert_tokenizer");
}
