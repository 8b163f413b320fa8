/* qdrop/utf8.h: keep JSON outputs valid UTF-8.
 *
 * Paths and ONNX names are bytes on Linux; cJSON copies a string's bytes into its output
 * unchanged, so a path holding a byte like 0xff would make results.json, resolved_config.json,
 * encodings.json or a run.log line invalid JSON for any strict reader. Every JSON text the tool
 * writes goes through qd_utf8_valid_dup first: each byte that is not part of a well-formed UTF-8
 * sequence (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF) is replaced by
 * U+FFFD, the Unicode replacement character. Valid text is returned byte for byte unchanged.
 */
#ifndef QDROP_UTF8_H
#define QDROP_UTF8_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Length of the well-formed UTF-8 sequence starting at s (1..4), or 0 when s[0] does not start
 * one within the n bytes available. */
size_t qd_utf8_seq_len(const unsigned char *s, size_t n);

/* 1 when the NUL-terminated s is well-formed UTF-8. */
int qd_utf8_valid(const char *s);

/* malloc'd copy of s with every ill-formed byte replaced by U+FFFD (EF BF BD); NULL when out of
 * memory. The caller frees it. */
char *qd_utf8_valid_dup(const char *s);

#ifdef __cplusplus
}
#endif
#endif
