/* src/core/escape.h: printing untrusted strings (node and value names from a model file, paths)
 * to a terminal without letting them drive it.
 *
 * Well-formed UTF-8 that is not a control character passes through unchanged. Everything else
 * is written as C-style escapes: \n \r \t, \xNN for other C0 controls, DEL,
 * the C1 controls U+0080..U+009F (byte by byte, e.g. U+009B CSI -> \xc2\x9b) and every byte that
 * is not part of well-formed UTF-8. So an ESC sequence or a newline in a node name cannot move
 * the cursor, retitle the window or forge an extra output line, and the output stays valid UTF-8.
 * A backslash is printed as is (messages quote JSON escapes such as \u0000 verbatim), so the
 * escaping is for safety, not a reversible encoding.
 */
#ifndef QD_CORE_ESCAPE_H
#define QD_CORE_ESCAPE_H

#include <stddef.h>
#include <stdio.h>

/* Length of the well-formed, printable UTF-8 sequence at s (1..4), or 0 when s[0] must be escaped. */
static inline int qd_utf8_printable_len(const unsigned char *s) {
    unsigned c = s[0];
    if (c >= 0x20 && c < 0x7f) return 1;
    if (c < 0xc2 || c > 0xf4) return 0; /* controls, DEL, continuation bytes, overlong leads */
    int n = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    unsigned cp = n == 2 ? ((c & 0x1fu) << 6) | (s[1] & 0x3fu)
                : n == 3 ? ((c & 0x0fu) << 12) | ((s[1] & 0x3fu) << 6) | (s[2] & 0x3fu)
                         : ((c & 0x07u) << 18) | ((s[1] & 0x3fu) << 12) | ((s[2] & 0x3fu) << 6) | (s[3] & 0x3fu);
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff))) return 0; /* overlong / range */
    if (cp >= 0xd800 && cp <= 0xdfff) return 0;                                       /* surrogates */
    if (cp >= 0x80 && cp <= 0x9f) return 0;                                           /* C1 controls */
    return n;
}

/* Escape of the byte at s when qd_utf8_printable_len(s) == 0 (at most 5 bytes incl. NUL). */
static inline void qd_escape_byte(unsigned char c, char out[5]) {
    switch (c) {
    case '\n': snprintf(out, 5, "\\n"); break;
    case '\r': snprintf(out, 5, "\\r"); break;
    case '\t': snprintf(out, 5, "\\t"); break;
    default: snprintf(out, 5, "\\x%02x", c); break;
    }
}

/* Writes s escaped to f. */
static inline void qd_fputs_escaped(const char *s, FILE *f) {
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        int n = qd_utf8_printable_len(p);
        if (n > 0) {
            fwrite(p, 1, (size_t)n, f);
            p += n;
        } else {
            char e[5];
            qd_escape_byte(*p++, e);
            fputs(e, f);
        }
    }
}

/* s escaped into out (capacity cap >= 1, always NUL-terminated; truncated at a whole escape). */
static inline char *qd_escape_text(const char *s, char *out, size_t cap) {
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t o = 0;
    while (*p) {
        char e[5];
        int n = qd_utf8_printable_len(p);
        const char *src = (const char *)p;
        size_t len = (size_t)n;
        if (n == 0) {
            qd_escape_byte(*p, e);
            src = e;
            for (len = 0; e[len]; len++) {}
            n = 1;
        }
        if (o + len + 1 > cap) break;
        for (size_t i = 0; i < len; i++) out[o++] = src[i];
        p += n;
    }
    out[o] = 0;
    return out;
}

#endif
