/* qdrop/fsutil.h: directories, whole-file reads, and atomic writes of every output file.
 *
 * Every output of a run is written to "<path>.tmp.<pid>" in the same directory (created with
 * O_EXCL | O_NOFOLLOW: never through a planted symlink), flushed with fsync and renamed over
 * <path>, so a killed run never leaves a truncated file behind. On any failure the temporary
 * file is removed and QD_ERR_IO names the path and strerror (disk full...).
 */
#ifndef QDROP_FSUTIL_H
#define QDROP_FSUTIL_H

#include <stddef.h>
#include <stdio.h>

#include "qdrop/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* mkdir -p: creates every missing component (mode 0777 & ~umask). QD_ERR_IO when a component
 * exists and is not a directory, or cannot be created. */
QD_MUST_USE qd_status qd_mkdir_p(const char *path);

/* Write len bytes to path atomically (temporary file, fsync, rename). */
QD_MUST_USE qd_status qd_write_file_atomic(const char *path, const void *data, size_t len);

/* Read a whole file into a malloc'd buffer (caller frees *data). The buffer holds one extra NUL
 * byte after the data so text can be parsed in place; *len excludes it. QD_ERR_NOINPUT naming
 * the file when it is missing, unreadable, a directory or not a regular file; QD_ERR_DATA when
 * larger than QD_INPUT_MAX_BYTES; QD_ERR_IO on a read error. Same as qd_read_input(path, NULL,
 * QD_INPUT_MAX_BYTES, ...). */
QD_MUST_USE qd_status qd_read_file(const char *path, void **data, size_t *len);

/* 1 when path exists and is a regular file or a directory, else 0. */
int qd_file_exists(const char *path);

/* out = dir + "/" + name (or name alone when dir is "" or name is absolute).
 * QD_ERR_IO when the result does not fit in n bytes. */
QD_MUST_USE qd_status qd_path_join(char *out, size_t n, const char *dir, const char *name);

/* "a/b/resnet20.onnx" -> "resnet20"; "a/bert-base/" -> "bert-base". Truncates to n bytes. */
void qd_path_stem(const char *path, char *out, size_t n);

/* "a/b/c.json" -> "a/b"; "c.json" -> "."; "/c" -> "/". Truncates to n bytes. */
void qd_path_dirname(const char *path, char *out, size_t n);

/* Streaming atomic file, for outputs too big to build in memory (ONNX models, caches):
 *   qd_afile af;
 *   QD_TRY(qd_afile_open(&af, path));
 *   fwrite(..., af.f);            // write through af.f
 *   QD_TRY(qd_afile_commit(&af)); // or qd_afile_abort(&af) on an error of your own
 * commit checks every write (ferror), flushes, fsyncs and renames; on failure it removes the
 * temporary file. abort closes and removes it. Both are safe to call once after open. */
typedef struct qd_afile {
    FILE *f;             /* write here */
    char path[1088];     /* final path */
    char tmp[1120];      /* temporary path in the same directory */
} qd_afile;

QD_MUST_USE qd_status qd_afile_open(qd_afile *af, const char *path);
QD_MUST_USE qd_status qd_afile_commit(qd_afile *af);
void qd_afile_abort(qd_afile *af);

/* ---- Untrusted input files ----
 * Every reader of a config, model, checkpoint, vocabulary or data file opens it through these,
 * so a path that names /dev/zero, /dev/urandom, a FIFO, a socket or a directory is refused before
 * a single byte is read (exit 66 naming the file and what it is), and a regular file larger than
 * the reader's limit is refused from its size (exit 65) instead of being read until memory runs
 * out. Symlinks are followed: the target must be a regular file.
 * The _r variants are for worker threads (qd_errorf's buffer is thread-local): they write the
 * message into err and return the qd_status as an int. */

/* Default size limit of qd_read_file (protobuf's own limit for an ONNX model is 2 GiB). */
#define QD_INPUT_MAX_BYTES ((size_t)16 << 30)

/* Open a regular file for reading: *fd (caller closes), *size its size in bytes. `what` names the
 * file's role in messages ("config file", "checkpoint"; NULL = "input file"). */
QD_MUST_USE qd_status qd_open_input(const char *path, const char *what, size_t max_bytes, int *fd, size_t *size);
int qd_open_input_r(const char *path, const char *what, size_t max_bytes, int *fd, size_t *size, char *err,
                    size_t errlen);
/* Same as a stdio stream (caller fcloses *f). */
QD_MUST_USE qd_status qd_fopen_input(const char *path, const char *what, size_t max_bytes, FILE **f, size_t *size);
/* Read all of it, like qd_read_file, with its own limit. */
QD_MUST_USE qd_status qd_read_input(const char *path, const char *what, size_t max_bytes, void **data, size_t *len);
int qd_read_input_r(const char *path, const char *what, size_t max_bytes, void **data, size_t *len, char *err,
                    size_t errlen);

/* ---- output directory ---- */

/* Exclusive lock on dir: flock(LOCK_EX | LOCK_NB) on dir/name (created, never followed when it is
 * a symlink). *fd holds the lock until qd_dir_unlock (or process exit, however it ends).
 * QD_ERR_IO "output directory ... is in use by another qdrop-gpu run" when another process holds
 * it. */
QD_MUST_USE qd_status qd_dir_lock(const char *dir, const char *name, int *fd);
void qd_dir_unlock(int fd);

/* rm -r that never follows a symlink (a link is removed as a link); a missing path is fine. */
QD_MUST_USE qd_status qd_remove_tree(const char *path);

/* Move every regular file under stage to the same relative path under dest (rename, same file
 * system), the file whose relative path is `last` (may be NULL) after all others. All or
 * nothing: when a rename fails, the files already moved are removed from dest again. Symlinks
 * are not followed where dest needs a directory. */
QD_MUST_USE qd_status qd_publish_dir(const char *stage, const char *dest, const char *last);

/* *within = 1 when path, after resolving links, is dir or lies below it (both must exist;
 * otherwise 0). */
QD_MUST_USE qd_status qd_path_within(const char *path, const char *dir, int *within);

#ifdef __cplusplus
}
#endif
#endif
