/* src/core/fsutil.c: directories, whole-file reads, atomic writes (see qdrop/fsutil.h). */
#include "qdrop/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

qd_status qd_mkdir_p(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0) return qd_errorf(QD_ERR_IO, "cannot create a directory with an empty name");
    if (n >= sizeof buf) return qd_errorf(QD_ERR_IO, "%s: path too long", path);
    memcpy(buf, path, n + 1);
    /* create each prefix ending before a '/', then the whole path */
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char saved = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0777) != 0) {
            int e = errno;
            struct stat sb;
            if (e == EEXIST || e == EISDIR) {
                if (stat(buf, &sb) != 0 && (errno == ELOOP || errno == ENOENT)) /* a symlink that leads nowhere */
                    return qd_errorf(QD_ERR_IO, "cannot create directory %s: %s is %s", path, buf,
                                     errno == ELOOP ? "a symbolic link loop (too many levels of symbolic links)"
                                                    : "a dangling symbolic link");
                if (stat(buf, &sb) != 0 || !S_ISDIR(sb.st_mode))
                    return qd_errorf(QD_ERR_IO, "cannot create directory %s: %s exists and is not a directory", path, buf);
            } else if (!(stat(buf, &sb) == 0 && S_ISDIR(sb.st_mode))) {
                return qd_errorf(QD_ERR_IO, "cannot create directory %s: %s", buf, strerror(e));
            }
        }
        buf[i] = saved;
    }
    return QD_OK;
}

/* Best effort: make the rename itself durable. Failure here does not lose data already renamed. */
static void fsync_dir_of(const char *path) {
    char dir[4096];
    qd_path_dirname(path, dir, sizeof dir);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

static int tmp_name(char *out, size_t n, const char *path) {
    return (size_t)snprintf(out, n, "%s.tmp.%ld", path, (long)getpid()) < n ? 0 : -1;
}

/* Create the temporary file new: a leftover of an earlier process with the same pid (containers
 * reuse pids) is removed first, and O_EXCL never follows a symlink planted under that name. */
static int open_tmp(const char *tmp) {
    (void)unlink(tmp);
    return open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
}

qd_status qd_write_file_atomic(const char *path, const void *data, size_t len) {
    char tmp[4096 + 32];
    if (tmp_name(tmp, sizeof tmp, path) != 0) return qd_errorf(QD_ERR_IO, "%s: path too long", path);
    int fd = open_tmp(tmp);
    if (fd < 0) return qd_errorf(QD_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = w < 0 ? errno : ENOSPC;
            close(fd);
            unlink(tmp);
            return qd_errorf(QD_ERR_IO, "cannot write %s: %s", path, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 && errno != EINVAL) { /* EINVAL: special files (e.g. /dev/full) cannot sync */
        int e = errno;
        close(fd);
        unlink(tmp);
        return qd_errorf(QD_ERR_IO, "cannot write %s: %s", path, strerror(e));
    }
    if (close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return qd_errorf(QD_ERR_IO, "cannot write %s: %s", path, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return qd_errorf(QD_ERR_IO, "cannot write %s: %s", path, strerror(e));
    }
    fsync_dir_of(path);
    return QD_OK;
}

qd_status qd_read_file(const char *path, void **data, size_t *len) {
    return qd_read_input(path, NULL, QD_INPUT_MAX_BYTES, data, len);
}

int qd_file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && (S_ISREG(sb.st_mode) || S_ISDIR(sb.st_mode));
}

qd_status qd_path_join(char *out, size_t n, const char *dir, const char *name) {
    int w;
    if (!dir[0] || name[0] == '/') w = snprintf(out, n, "%s", name);
    else {
        size_t dl = strlen(dir);
        w = snprintf(out, n, "%s%s%s", dir, dir[dl - 1] == '/' ? "" : "/", name);
    }
    if (w < 0 || (size_t)w >= n) return qd_errorf(QD_ERR_IO, "path too long: %s/%s", dir, name);
    return QD_OK;
}

void qd_path_stem(const char *path, char *out, size_t n) {
    if (n == 0) return;
    size_t end = strlen(path);
    while (end > 1 && path[end - 1] == '/') end--;
    size_t start = end;
    while (start > 0 && path[start - 1] != '/') start--;
    size_t stop = end;
    for (size_t i = end; i > start + 1; i--) /* last '.', not a leading one (".hidden") */
        if (path[i - 1] == '.') { stop = i - 1; break; }
    size_t len = stop - start;
    if (len >= n) len = n - 1;
    memcpy(out, path + start, len);
    out[len] = 0;
}

void qd_path_dirname(const char *path, char *out, size_t n) {
    if (n == 0) return;
    size_t end = strlen(path);
    while (end > 1 && path[end - 1] == '/') end--;
    while (end > 0 && path[end - 1] != '/') end--;
    while (end > 1 && path[end - 1] == '/') end--;
    if (end == 0) { snprintf(out, n, "."); return; }
    size_t len = end < n ? end : n - 1;
    memcpy(out, path, len);
    out[len] = 0;
}

qd_status qd_afile_open(qd_afile *af, const char *path) {
    memset(af, 0, sizeof *af);
    if ((size_t)snprintf(af->path, sizeof af->path, "%s", path) >= sizeof af->path ||
        tmp_name(af->tmp, sizeof af->tmp, path) != 0)
        return qd_errorf(QD_ERR_IO, "%s: path too long", path);
    int fd = open_tmp(af->tmp);
    if (fd < 0) return qd_errorf(QD_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    af->f = fdopen(fd, "wb");
    if (!af->f) {
        int e = errno;
        close(fd);
        unlink(af->tmp);
        return qd_errorf(QD_ERR_IO, "cannot write %s: %s", path, strerror(e));
    }
    return QD_OK;
}

qd_status qd_afile_commit(qd_afile *af) {
    if (!af->f) return qd_errorf(QD_ERR_INTERNAL, "%s: atomic file committed twice or never opened", af->path);
    int bad = ferror(af->f);
    int e = bad ? (errno ? errno : EIO) : 0;
    if (!bad && fflush(af->f) != 0) bad = 1, e = errno;
    if (!bad && fsync(fileno(af->f)) != 0 && errno != EINVAL) bad = 1, e = errno;
    if (fclose(af->f) != 0 && !bad) bad = 1, e = errno;
    af->f = NULL;
    if (!bad && rename(af->tmp, af->path) != 0) bad = 1, e = errno;
    if (bad) {
        unlink(af->tmp);
        return qd_errorf(QD_ERR_IO, "cannot write %s: %s", af->path, strerror(e));
    }
    fsync_dir_of(af->path);
    return QD_OK;
}

void qd_afile_abort(qd_afile *af) {
    if (af->f) {
        fclose(af->f);
        af->f = NULL;
        unlink(af->tmp);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Untrusted input files (configs, models, checkpoints, data): see qdrop/fsutil.h.            */

static const char *file_kind(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISFIFO(m)) return "a FIFO (named pipe)";
    if (S_ISSOCK(m)) return "a socket";
    return "not a regular file";
}

int qd_open_input_r(const char *path, const char *what, size_t max_bytes, int *fd_out, size_t *size_out, char *err,
                    size_t errlen) {
    *fd_out = -1;
    *size_out = 0;
    if (!what) what = "input file";
    if (!path || !path[0]) {
        snprintf(err, errlen, "no %s path given", what);
        return QD_ERR_NOINPUT;
    }
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever. It is
     * cleared again before any read; regular files ignore it anyway. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP) snprintf(err, errlen, "%s: cannot open %s: too many levels of symbolic links (a symlink loop?)", path, what);
        else snprintf(err, errlen, "%s: cannot open %s: %s", path, what, strerror(e));
        return QD_ERR_NOINPUT;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        snprintf(err, errlen, "%s: cannot read %s: %s", path, what, strerror(e));
        return QD_ERR_NOINPUT;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        snprintf(err, errlen, "%s: is %s, expected a regular file (%s)", path, file_kind(sb.st_mode), what);
        return QD_ERR_NOINPUT;
    }
    if (sb.st_size < 0 || (unsigned long long)sb.st_size > (unsigned long long)max_bytes) {
        close(fd);
        snprintf(err, errlen, "%s: %lld bytes, more than the %zu-byte limit for a %s", path, (long long)sb.st_size,
                 max_bytes, what);
        return QD_ERR_DATA;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    *fd_out = fd;
    *size_out = (size_t)sb.st_size;
    return QD_OK;
}

qd_status qd_open_input(const char *path, const char *what, size_t max_bytes, int *fd, size_t *size) {
    char err[1024 + 256];
    int st = qd_open_input_r(path, what, max_bytes, fd, size, err, sizeof err);
    if (st != QD_OK) return qd_errorf((qd_status)st, "%s", err);
    return QD_OK;
}

qd_status qd_fopen_input(const char *path, const char *what, size_t max_bytes, FILE **f, size_t *size) {
    int fd = -1;
    *f = NULL;
    QD_TRY(qd_open_input(path, what, max_bytes, &fd, size));
    *f = fdopen(fd, "rb");
    if (!*f) {
        int e = errno;
        close(fd);
        return qd_errorf(QD_ERR_INTERNAL, "%s: cannot open a stream: %s", path, strerror(e));
    }
    return QD_OK;
}

int qd_read_input_r(const char *path, const char *what, size_t max_bytes, void **data, size_t *len, char *err,
                    size_t errlen) {
    *data = NULL;
    *len = 0;
    int fd = -1;
    size_t size = 0;
    int st = qd_open_input_r(path, what, max_bytes, &fd, &size, err, errlen);
    if (st != QD_OK) return st;
    if (!what) what = "input file";
    /* size + 1: the trailing NUL; one byte more than the limit tells a file that grew past it */
    size_t cap = size + 2, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        snprintf(err, errlen, "%s: out of host memory reading %zu bytes", path, size);
        return QD_ERR_INTERNAL;
    }
    for (;;) {
        if (n + 1 >= cap) { /* the file grew while we read it */
            if (cap - 1 > max_bytes) {
                free(buf);
                close(fd);
                snprintf(err, errlen, "%s: grew past the %zu-byte limit for a %s while being read", path, max_bytes, what);
                return QD_ERR_DATA;
            }
            size_t nc = cap * 2 > max_bytes + 2 ? max_bytes + 2 : cap * 2;
            char *nb = realloc(buf, nc);
            if (!nb) {
                free(buf);
                close(fd);
                snprintf(err, errlen, "%s: out of host memory", path);
                return QD_ERR_INTERNAL;
            }
            buf = nb;
            cap = nc;
        }
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            snprintf(err, errlen, "%s: read error: %s", path, strerror(e));
            return e == EISDIR ? QD_ERR_NOINPUT : QD_ERR_IO;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    if (n > max_bytes) {
        free(buf);
        snprintf(err, errlen, "%s: grew past the %zu-byte limit for a %s while being read", path, max_bytes, what);
        return QD_ERR_DATA;
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return QD_OK;
}

qd_status qd_read_input(const char *path, const char *what, size_t max_bytes, void **data, size_t *len) {
    char err[1024 + 256];
    int st = qd_read_input_r(path, what, max_bytes, data, len, err, sizeof err);
    if (st != QD_OK) return qd_errorf((qd_status)st, "%s", err);
    return QD_OK;
}

/* ---- output directory: lock, tree removal, publication (qdrop/fsutil.h) ---- */

qd_status qd_dir_lock(const char *dir, const char *name, int *fd_out) {
    char path[4096];
    *fd_out = -1;
    QD_TRY(qd_path_join(path, sizeof path, dir, name));
    int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0666);
    if (fd < 0) {
        int e = errno;
        return qd_errorf(QD_ERR_IO, "cannot create the lock file %s: %s", path,
                         e == ELOOP ? "it is a symbolic link (not followed; remove it)" : strerror(e));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return qd_errorf(QD_ERR_IO, "cannot lock %s: the lock file %s is not a regular file", dir, path);
    }
    /* flock: released by the kernel when the process ends, however it ends (kill -9 included),
     * so a stale lock never needs removing by hand */
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (e == ENOLCK || e == EOPNOTSUPP || e == ENOSYS) {
            /* a file system without locks (some FUSE and network mounts): run unprotected rather
             * than not at all, and say so */
            fprintf(stderr, "qdrop-gpu: warning: %s: the file system does not support locks (%s); "
                            "make sure no other run writes into this directory\n", dir, strerror(e));
            *fd_out = fd;
            return QD_OK;
        }
        close(fd);
        if (e == EWOULDBLOCK)
            return qd_errorf(QD_ERR_IO, "output directory %s is in use by another qdrop-gpu run (lock %s held); "
                             "wait for it to finish or choose another --out", dir, path);
        return qd_errorf(QD_ERR_IO, "cannot lock %s (%s): %s", dir, path, strerror(e));
    }
    *fd_out = fd;
    return QD_OK;
}

void qd_dir_unlock(int fd) {
    if (fd >= 0) close(fd); /* closing the last descriptor releases the flock */
}

/* Remove the entries of the open directory dfd (then the caller removes the directory itself),
 * never following a symlink: a link is removed as a link. depth bounds a hostile tree. */
static int remove_contents_at(int dfd, int depth) {
    DIR *d = fdopendir(dfd);
    if (!d) { close(dfd); return -1; }
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0) continue;
        struct stat sb;
        if (fstatat(dirfd(d), n, &sb, AT_SYMLINK_NOFOLLOW) != 0) { if (errno != ENOENT) rc = -1; continue; }
        if (S_ISDIR(sb.st_mode)) {
            if (depth <= 0) { rc = -1; errno = ELOOP; continue; }
            int sub = openat(dirfd(d), n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0 || remove_contents_at(sub, depth - 1) != 0) rc = -1;
            if (unlinkat(dirfd(d), n, AT_REMOVEDIR) != 0 && errno != ENOENT) rc = -1;
        } else if (unlinkat(dirfd(d), n, 0) != 0 && errno != ENOENT) {
            rc = -1;
        }
    }
    int e = errno;
    closedir(d);
    errno = e;
    return rc;
}

qd_status qd_remove_tree(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0) {
        if (errno == ENOENT) return QD_OK;
        return qd_errorf(QD_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
    }
    if (!S_ISDIR(sb.st_mode)) {
        if (unlink(path) != 0 && errno != ENOENT) return qd_errorf(QD_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
        return QD_OK;
    }
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || remove_contents_at(fd, 16) != 0 || (rmdir(path) != 0 && errno != ENOENT))
        return qd_errorf(QD_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
    return QD_OK;
}

/* Publication: every file under stage moves to the same relative path under dest (rename in
 * the same file system: no copy, no partial file). */
typedef struct pub_list { char (*rel)[512]; int n, cap; } pub_list;

static int pub_add(pub_list *L, const char *rel) {
    if (L->n == L->cap) {
        int nc = L->cap ? 2 * L->cap : 16;
        char (*np)[512] = realloc(L->rel, sizeof *L->rel * (size_t)nc);
        if (!np) return -1;
        L->rel = np;
        L->cap = nc;
    }
    snprintf(L->rel[L->n++], sizeof *L->rel, "%s", rel);
    return 0;
}

/* Collect the regular files under stage/rel (depth-first, names sorted by readdir order). */
static qd_status pub_collect(const char *stage, const char *rel, pub_list *L, int depth) {
    char dir[4096];
    if ((size_t)snprintf(dir, sizeof dir, "%s%s%s", stage, rel[0] ? "/" : "", rel) >= sizeof dir)
        return qd_errorf(QD_ERR_IO, "%s/%s: path too long", stage, rel);
    DIR *d = opendir(dir);
    if (!d) return qd_errorf(QD_ERR_IO, "cannot read %s: %s", dir, strerror(errno));
    qd_status st = QD_OK;
    struct dirent *de;
    while (st == QD_OK && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        char r[512];
        if ((size_t)snprintf(r, sizeof r, "%s%s%s", rel, rel[0] ? "/" : "", de->d_name) >= sizeof r) {
            st = qd_errorf(QD_ERR_IO, "%s/%s: name too long", dir, de->d_name);
            break;
        }
        struct stat sb;
        char full[4096 + 512];
        snprintf(full, sizeof full, "%s/%s", dir, de->d_name);
        if (lstat(full, &sb) != 0) { st = qd_errorf(QD_ERR_IO, "cannot stat %s: %s", full, strerror(errno)); break; }
        if (S_ISDIR(sb.st_mode)) {
            st = depth > 0 ? pub_collect(stage, r, L, depth - 1) : qd_errorf(QD_ERR_IO, "%s: nested too deep", full);
        } else if (S_ISREG(sb.st_mode)) {
            if (pub_add(L, r) != 0) st = qd_errorf(QD_ERR_INTERNAL, "out of host memory");
        }
        /* anything else (a link, a FIFO) was not written by the run: left in stage, removed with it */
    }
    closedir(d);
    return st;
}

static qd_status pub_mkdirs(const char *dest, const char *rel) {
    /* the directories of rel below dest, refusing a symlink where a directory is expected */
    char part[512];
    snprintf(part, sizeof part, "%s", rel);
    for (char *p = part; (p = strchr(p, '/')) != NULL; p++) {
        *p = 0;
        char d[4096 + 512];
        snprintf(d, sizeof d, "%s/%s", dest, part);
        struct stat sb;
        if (mkdir(d, 0777) != 0 && errno != EEXIST) return qd_errorf(QD_ERR_IO, "cannot create directory %s: %s", d, strerror(errno));
        if (lstat(d, &sb) != 0 || !S_ISDIR(sb.st_mode))
            return qd_errorf(QD_ERR_IO, "cannot write into %s: not a directory (a symbolic link is not followed)", d);
        *p = '/';
    }
    return QD_OK;
}

qd_status qd_publish_dir(const char *stage, const char *dest, const char *last) {
    pub_list L = {0};
    qd_status st = pub_collect(stage, "", &L, 4);
    /* the file named last goes last: its presence says the whole set is there */
    for (int i = 0; st == QD_OK && last && i < L.n - 1; i++) {
        if (strcmp(L.rel[i], last) != 0) continue;
        char t[512];
        memcpy(t, L.rel[i], sizeof t);
        memcpy(L.rel[i], L.rel[L.n - 1], sizeof t);
        memcpy(L.rel[L.n - 1], t, sizeof t);
        break;
    }
    int done = 0;
    char from[4096 + 512], to[4096 + 512];
    for (int k = 0; st == QD_OK && k < L.n; k++) {
        snprintf(from, sizeof from, "%s/%s", stage, L.rel[k]);
        snprintf(to, sizeof to, "%s/%s", dest, L.rel[k]);
        if ((st = pub_mkdirs(dest, L.rel[k])) != QD_OK) break;
        if (rename(from, to) != 0) { st = qd_errorf(QD_ERR_IO, "cannot publish %s: %s", to, strerror(errno)); break; }
        done = k + 1;
    }
    if (st != QD_OK) {
        /* all or nothing: take back what was already moved */
        for (int k = 0; k < done; k++) {
            snprintf(to, sizeof to, "%s/%s", dest, L.rel[k]);
            (void)unlink(to);
        }
    } else {
        int fd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) { (void)fsync(fd); close(fd); }
    }
    free(L.rel);
    return st;
}

qd_status qd_path_within(const char *path, const char *dir, int *within) {
    *within = 0;
    char rp[PATH_MAX], rd[PATH_MAX];
    if (!realpath(path, rp) || !realpath(dir, rd)) return QD_OK; /* missing: nothing can be inside */
    size_t n = strlen(rd);
    if (strcmp(rd, "/") == 0) { *within = 1; return QD_OK; }
    if (strncmp(rp, rd, n) == 0 && (rp[n] == 0 || rp[n] == '/')) *within = 1;
    return QD_OK;
}
