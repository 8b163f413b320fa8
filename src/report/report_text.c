/* src/report/report_text.c: the report's text buffer and escaping. Everything a report shows
 * comes from files a run wrote, which may hold any bytes (node names come from the model file,
 * paths from the command line): every string goes through one of the escapes below. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/report_internal.h"

static int sb_reserve(qd_sbuf *b, size_t extra) {
    if (b->oom) return 0;
    if (b->len + extra + 1 <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) { b->oom = 1; return 0; }
    b->p = p;
    b->cap = cap;
    return 1;
}

void qd_sb_putn(qd_sbuf *b, const char *s, size_t n) {
    if (!sb_reserve(b, n)) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void qd_sb_put(qd_sbuf *b, const char *s) { qd_sb_putn(b, s, strlen(s)); }

void qd_sb_printf(qd_sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char small[512];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof small) { qd_sb_putn(b, small, (size_t)n); return; }
    if (!sb_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void qd_sb_free(qd_sbuf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when it is not one (overlong forms,
 * surrogates and code points above U+10FFFF are invalid). */
static int utf8_len(const unsigned char *s) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int n;
    unsigned cp;
    if ((c & 0xE0) == 0xC0) { n = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { n = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { n = 4; cp = c & 0x07; }
    else return 0;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000)) return 0;
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

static const char REPLACEMENT[] = "\xEF\xBF\xBD";   /* U+FFFD */

void qd_sb_html(qd_sbuf *b, const char *str) {
    const unsigned char *s = (const unsigned char *)(str ? str : "");
    while (*s) {
        unsigned c = *s;
        if (c == '&') qd_sb_put(b, "&amp;");
        else if (c == '<') qd_sb_put(b, "&lt;");
        else if (c == '>') qd_sb_put(b, "&gt;");
        else if (c == '"') qd_sb_put(b, "&quot;");
        else if (c == '\'') qd_sb_put(b, "&#39;");
        else if (c == '\n' || c == '\t') qd_sb_putn(b, (const char *)s, 1);
        else if (c < 0x20 || c == 0x7F) qd_sb_put(b, REPLACEMENT);
        else {
            int n = utf8_len(s);
            if (n == 0) { qd_sb_put(b, REPLACEMENT); s++; continue; }
            qd_sb_putn(b, (const char *)s, (size_t)n);
            s += n;
            continue;
        }
        s++;
    }
}

/* Markdown text with HTML meaning neutralised too (renderers of report.md may pass raw HTML
 * through): the same UTF-8/control clean-up as HTML, then the characters that matter inside a
 * code span in a table. */
static void md_literal(qd_sbuf *b, const char *str, int in_table) {
    const unsigned char *s = (const unsigned char *)(str ? str : "");
    while (*s) {
        unsigned c = *s;
        if (c == '|' && in_table) qd_sb_put(b, "\\|");
        else if ((c == '\n' || c == '\r' || c == '\t') && in_table) qd_sb_put(b, " ");
        else if (c == '\n' || c == '\t') qd_sb_putn(b, (const char *)s, 1);
        else if (c < 0x20 || c == 0x7F) qd_sb_put(b, REPLACEMENT);
        else {
            int n = utf8_len(s);
            if (n == 0) { qd_sb_put(b, REPLACEMENT); s++; continue; }
            qd_sb_putn(b, (const char *)s, (size_t)n);
            s += n;
            continue;
        }
        s++;
    }
}

static int longest_backtick_run(const char *s) {
    int best = 0, run = 0;
    for (; s && *s; s++) {
        run = *s == '`' ? run + 1 : 0;
        if (run > best) best = run;
    }
    return best;
}

void qd_sb_md_code(qd_sbuf *b, const char *s) {
    int fence = longest_backtick_run(s) + 1;
    for (int i = 0; i < fence; i++) qd_sb_put(b, "`");
    /* CommonMark strips one space on each side: needed when the content starts or ends with ` */
    size_t l = s ? strlen(s) : 0;
    int pad = l > 0 && (s[0] == '`' || s[l - 1] == '`');
    if (pad) qd_sb_put(b, " ");
    md_literal(b, s, 1);
    if (pad) qd_sb_put(b, " ");
    for (int i = 0; i < fence; i++) qd_sb_put(b, "`");
}

void qd_sb_md_block(qd_sbuf *b, const char *s) {
    int fence = longest_backtick_run(s) + 1;
    if (fence < 3) fence = 3;
    for (int i = 0; i < fence; i++) qd_sb_put(b, "`");
    qd_sb_put(b, "\n");
    md_literal(b, s, 0);
    if (b->len && b->p[b->len - 1] != '\n') qd_sb_put(b, "\n");
    for (int i = 0; i < fence; i++) qd_sb_put(b, "`");
    qd_sb_put(b, "\n");
}

void qd_sb_base64(qd_sbuf *b, const unsigned char *d, size_t n) {
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (!sb_reserve(b, (n + 2) / 3 * 4)) return;
    char *o = b->p + b->len;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)d[i] << 16 | (unsigned)d[i + 1] << 8 | d[i + 2];
        *o++ = A[v >> 18]; *o++ = A[(v >> 12) & 63]; *o++ = A[(v >> 6) & 63]; *o++ = A[v & 63];
    }
    if (i < n) {
        unsigned v = (unsigned)d[i] << 16 | (i + 1 < n ? (unsigned)d[i + 1] << 8 : 0);
        *o++ = A[v >> 18]; *o++ = A[(v >> 12) & 63];
        *o++ = i + 1 < n ? A[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    b->len = (size_t)(o - b->p);
    b->p[b->len] = 0;
}

void qd_chart_title(char *out, size_t n, const char *s) {
    size_t k = 0;
    for (; s && *s && k + 1 < n; s++) out[k++] = (*s >= 0x20 && *s < 0x7F) ? *s : '?';
    if (n) out[k] = 0;
}

void qd_chart_token(char *out, size_t n, const char *s) {
    size_t k = 0;
    for (; s && *s && k + 1 < n; s++) {
        char c = *s;
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
                 c == ':' || c == '+' || c == '-';
        out[k++] = ok ? c : '_';
    }
    if (k == 0 && n > 1) out[k++] = '_';
    if (n) out[k] = 0;
}
