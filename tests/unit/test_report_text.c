/* tests/unit/test_report_text.c: the report's escaping (HTML, Markdown, chart labels), base64,
 * and the gnuplot runner's refusal to see untrusted text as script (src/report/). */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, setenv */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "report/report_internal.h"

static int same(qd_sbuf *b, const char *want) {
    int ok = b->p && strcmp(b->p, want) == 0;
    if (!ok) fprintf(stderr, "  got  [%s]\n  want [%s]\n", b->p ? b->p : "(null)", want);
    qd_sb_free(b);
    return ok;
}

static void test_html(void) {
    qd_sbuf b = {0};
    qd_sb_html(&b, "<script>a&b</script> \"q\" 'x'");
    CHECK(same(&b, "&lt;script&gt;a&amp;b&lt;/script&gt; &quot;q&quot; &#39;x&#39;"));
    qd_sb_html(&b, "esc\x1b[31m tab\tnl\n del\x7f");
    CHECK(same(&b, "esc\xEF\xBF\xBD[31m tab\tnl\n del\xEF\xBF\xBD"));
    /* valid UTF-8 kept; invalid bytes, overlong forms and surrogates replaced one byte at a time */
    qd_sb_html(&b, "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
    CHECK(same(&b, "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"));
    qd_sb_html(&b, "a\xFF" "b");
    CHECK(same(&b, "a\xEF\xBF\xBD" "b"));
    qd_sb_html(&b, "\xC0\xAF");   /* overlong '/' */
    CHECK(same(&b, "\xEF\xBF\xBD\xEF\xBF\xBD"));
    qd_sb_html(&b, "\xED\xA0\x80");   /* U+D800 */
    CHECK(same(&b, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"));
    qd_sb_html(&b, NULL);
    CHECK(b.len == 0);
    qd_sb_free(&b);
}

static void test_markdown(void) {
    qd_sbuf b = {0};
    qd_sb_md_code(&b, "layer1.0_conv");
    CHECK(same(&b, "`layer1.0_conv`"));
    qd_sb_md_code(&b, "a|b\nc");
    CHECK(same(&b, "`a\\|b c`"));
    qd_sb_md_code(&b, "x``y");          /* longest backtick run 2: fence of 3 */
    CHECK(same(&b, "```x``y```"));
    qd_sb_md_code(&b, "`edge`");        /* content starting with a backtick gets the padding */
    CHECK(same(&b, "`` `edge` ``"));
    qd_sb_md_block(&b, "line1\n````\n");
    CHECK(same(&b, "`````\nline1\n````\n`````\n"));
    qd_sb_md_block(&b, "x");
    CHECK(same(&b, "```\nx\n```\n"));
}

static void test_base64(void) {
    static const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};   /* RFC 4648 §10 */
    for (int i = 0; i < 7; i++) {
        qd_sbuf b = {0};
        qd_sb_base64(&b, (const unsigned char *)in[i], strlen(in[i]));
        if (i == 0) { CHECK(b.len == 0); qd_sb_free(&b); continue; }
        CHECK(same(&b, out[i]));
    }
    unsigned char bin[3] = {0xFF, 0xFE, 0x00};
    qd_sbuf b = {0};
    qd_sb_base64(&b, bin, 3);
    CHECK(same(&b, "//4A"));
}

static void test_chart_text(void) {
    char t[16];
    qd_chart_title(t, sizeof t, "a'\nsystem \"x\"");
    CHECK(strcmp(t, "a'?system \"x\"") == 0);
    qd_chart_title(t, sizeof t, "0123456789abcdefghij");
    CHECK(strcmp(t, "0123456789abcde") == 0);
    qd_chart_token(t, sizeof t, "A: run #1 \"x\"");
    CHECK(strcmp(t, "A:_run__1__x_") == 0);
    qd_chart_token(t, sizeof t, "");
    CHECK(strcmp(t, "_") == 0);
    qd_sbuf b = {0};
    qd_sb_printf(&b, "%s-%d", "n", 7);
    for (int i = 0; i < 300; i++) qd_sb_put(&b, "0123456789");   /* grows past the first allocation */
    CHECK(b.len == 3 + 3000 && !b.oom && b.p[b.len] == 0 && strncmp(b.p, "n-7012", 6) == 0);
    qd_sb_free(&b);
}

/* A chart whose title is a gnuplot/shell payload: drawn, and no command runs. */
static void test_plotter(void) {
    char dir[] = "/tmp/qd_report_text_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    qd_plotter p;
    if (qd_plotter_open(&p, dir) != 0) {
        fprintf(stderr, "  plotter: %s\n", p.note);
        CHECK(!"gnuplot is a dependency (scripts/install_deps.sh): the plotter must open");
        return;
    }
    char pwned[128];
    snprintf(pwned, sizeof pwned, "%s/PWNED", dir);
    char title[512];
    snprintf(title, sizeof title, "t'\nsystem \"touch %s\"\n'\"; system(\"touch %s\"); \"$(touch %s)", pwned, pwned, pwned);
    unsigned char *png = NULL;
    size_t n = 0;
    int rc = qd_plotter_draw(&p, "loss", "1 0.5\n2 0.25\n3 0.2\n", title, "loss", "log", &png, &n);
    CHECK(rc == 0 && n > 1000 && png && memcmp(png, "\x89PNG", 4) == 0);
    free(png);
    CHECK(access(pwned, F_OK) != 0);
    /* a failing chart reports gnuplot's message instead of failing silently */
    rc = qd_plotter_draw(&p, "time", "a x\n", "x", "", "", &png, &n);
    CHECK(rc != 0 && png == NULL && strstr(p.note, "gnuplot failed") != NULL);
    rc = qd_plotter_draw(&p, "../evil", "1 2\n", "x", "", "", &png, &n);   /* only the script's kinds */
    CHECK(rc != 0 && png == NULL && strstr(p.note, "unknown chart kind") != NULL);
    qd_plotter_close(&p);
    CHECK(rmdir(dir) == 0);   /* the working directory and everything in it are gone */

    /* without gnuplot on PATH: a note, no working directory */
    const char *path = getenv("PATH");
    char *saved = path ? strdup(path) : NULL;
    setenv("PATH", "/nonexistent", 1);
    CHECK(qd_plotter_open(&p, "/tmp") != 0 && strstr(p.note, "gnuplot not found") != NULL && p.work[0] == 0);
    if (saved) { setenv("PATH", saved, 1); free(saved); }
}

int main(void) {
    test_html();
    test_markdown();
    test_base64();
    test_chart_text();
    test_plotter();
    return qd_test_summary("test_report_text");
}
