/* src/cpu/cpu_spill.c: the CPU backend's unit caches under a host-memory budget (docs/memory.md).
 *
 * alloc_cache keeps a cache in ordinary memory while the caches held in memory stay within
 * qd_backend_options.host_memory_budget; a cache that would go over it lives in a file in the
 * spill directory (the run's output directory), mapped MAP_SHARED, so every op reads and writes
 * it through plain pointers and the training loop does not know the difference.
 *
 * Resident memory: the pages of a mapped file count in the process's RSS as long as they are
 * mapped in, however little memory the machine has left. So every op that touches a spilled
 * cache drops the pages it touched from the mapping afterwards (madvise MADV_DONTNEED: for a
 * shared file mapping the data stays in the file and the page cache, which the kernel reclaims
 * as it needs), and whole-buffer copies go in QD_SPILL_CHUNK pieces. The spilled pages resident
 * at any moment are those of one op: one calibration batch of a unit's input and output.
 *
 * The file: created with O_TMPFILE (no name at all) where the file system has it, else under a
 * fresh name with O_CREAT | O_EXCL | O_NOFOLLOW (never through a planted link) and unlinked at
 * once. Either way it has no name while the run uses it, is never published as an output, and
 * disappears when the mapping goes, however the process ends (error, signal, kill -9). Its
 * blocks are reserved up front (posix_fallocate): a full disk is an error at allocation (exit
 * 75 naming the bytes and the budget), never a SIGBUS in the middle of an iteration. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cpu/cpu_internal.h"

#define QD_SPILL_CHUNK ((size_t)4 << 20)  /* bytes copied between two releases of spilled pages */
/* A release covers the touched range widened to this alignment: a fault may map neighbouring
 * pages too (fault-around, large folios), never beyond the page-table page (2 MiB) it lands in. */
#define QD_SPILL_RELEASE_ALIGN ((uintptr_t)2 << 20)

static size_t page_size(void) {
    static size_t ps;
    if (!ps) {
        long p = sysconf(_SC_PAGESIZE);
        ps = p > 0 ? (size_t)p : 4096;
    }
    return ps;
}

static qd_cpu_cache *find_cache(qd_cpu_impl *c, const void *p) {
    for (int i = 0; i < c->ncaches; i++)
        if (c->caches[i].p == p) return &c->caches[i];
    return NULL;
}

/* The spilled cache whose mapping holds address p, or NULL. */
static qd_cpu_cache *spill_of(qd_cpu_impl *c, const void *p) {
    if (!p || c->nspilled == 0) return NULL;
    const char *a = (const char *)p;
    for (int i = 0; i < c->ncaches; i++) {
        qd_cpu_cache *k = &c->caches[i];
        if (k->spilled && a >= (const char *)k->p && a < (const char *)k->p + k->map_len) return k;
    }
    return NULL;
}

void qd_cpu_spill_release(qd_backend *b, const void *p, size_t bytes) {
    qd_cpu_impl *c = qd_cpu(b);
    qd_cpu_cache *k = spill_of(c, p);
    if (!k) return;
    const uintptr_t al = QD_SPILL_RELEASE_ALIGN;
    uintptr_t base = (uintptr_t)k->p, end_map = base + k->map_len;
    uintptr_t lo = (uintptr_t)p & ~(al - 1);
    uintptr_t hi = ((uintptr_t)p + bytes + al - 1) & ~(al - 1);
    if (bytes == 0 || hi > end_map) hi = end_map; /* bytes 0: the whole mapping from p on */
    if (lo < base) lo = base;
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

int qd_cpu_is_spilled(qd_backend *b, const void *p) { return spill_of(qd_cpu(b), p) != NULL; }

qd_status qd_cpu_spill_stage(qd_backend *b, const float *src, const int32_t *idx, int32_t batch, int64_t sample_numel,
                             float *dst) {
    qd_cpu_cache *k = spill_of(qd_cpu(b), src);
    size_t sb = sizeof(float) * (size_t)sample_numel;
    for (int32_t j = 0; j < batch; j++) {
        const float *s = src + (int64_t)idx[j] * sample_numel;
        char *d = (char *)(dst + (int64_t)j * sample_numel);
        if (!k) { memcpy(d, s, sb); continue; }
        off_t off = (off_t)((const char *)s - (const char *)k->p);
        for (size_t got = 0; got < sb;) {
            ssize_t r = pread(k->fd, d + got, sb - got, off + (off_t)got);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0)
                return qd_errorf(QD_ERR_IO, "cpu backend: reading a spilled cache back: %s",
                                 r < 0 ? strerror(errno) : "unexpected end of file");
            got += (size_t)r;
        }
    }
    return QD_OK;
}

void qd_cpu_spill_copy(qd_backend *b, void *dst, const void *src, size_t bytes) {
    qd_cpu_impl *c = qd_cpu(b);
    if (!bytes || dst == src) return;
    if (!spill_of(c, dst) && !spill_of(c, src)) {
        memmove(dst, src, bytes);
        return;
    }
    for (size_t o = 0; o < bytes; o += QD_SPILL_CHUNK) {
        size_t n = bytes - o < QD_SPILL_CHUNK ? bytes - o : QD_SPILL_CHUNK;
        memmove((char *)dst + o, (const char *)src + o, n);
        qd_cpu_spill_release(b, (char *)dst + o, n);
        qd_cpu_spill_release(b, (const char *)src + o, n);
    }
}

static int record(qd_cpu_impl *c, void *p, size_t bytes, size_t map_len, int spilled, int fd) {
    if (c->ncaches == c->caches_cap) {
        int cap = c->caches_cap ? 2 * c->caches_cap : 16;
        qd_cpu_cache *r = realloc(c->caches, (size_t)cap * sizeof *r);
        if (!r) return -1;
        c->caches = r;
        c->caches_cap = cap;
    }
    qd_cpu_cache *k = &c->caches[c->ncaches++];
    k->p = p;
    k->bytes = bytes;
    k->map_len = map_len;
    k->spilled = spilled;
    k->fd = fd;
    if (spilled) {
        c->nspilled++;
        c->spill_bytes += (int64_t)map_len;
        if (c->spill_bytes > c->spill_peak) c->spill_peak = c->spill_bytes;
    } else {
        c->mem_bytes += (int64_t)bytes;
        if (c->mem_bytes > c->mem_peak) c->mem_peak = c->mem_bytes;
    }
    return 0;
}

/* A new, nameless, zero-filled file of map_len bytes in dir; -1 with qd_errorf set. */
static int spill_file(qd_cpu_impl *c, size_t map_len, size_t want) {
    const char *dir = c->spill_dir;
    int fd = -1;
#ifdef O_TMPFILE
    fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
#endif
    if (fd < 0) {
        /* no O_TMPFILE here: a fresh name, created exclusively and removed at once */
        char path[4200];
        for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
            snprintf(path, sizeof path, "%s/.qdrop-spill-%ld-%d.tmp", dir, (long)getpid(), c->spill_seq++);
            fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
            if (fd < 0 && errno != EEXIST) break;
        }
        if (fd < 0) {
            qd_errorf(QD_ERR_IO, "cpu backend: cannot create a cache spill file in %s: %s", dir, strerror(errno));
            return -1;
        }
        (void)unlink(path);
    }
    int e = posix_fallocate(fd, 0, (off_t)map_len);
    if (e == EOPNOTSUPP || e == EINVAL) e = ftruncate(fd, (off_t)map_len) == 0 ? 0 : errno;
    if (e != 0) {
        close(fd);
        qd_errorf(e == ENOSPC || e == EDQUOT || e == EFBIG ? QD_ERR_DEVICE_OOM : QD_ERR_IO,
                  "cpu backend: cannot spill a %zu-byte cache to %s: %s (process.host_memory_budget %lld bytes, %lld "
                  "bytes of caches in memory, %lld already spilled)", want, dir, strerror(e),
                  (long long)c->cache_budget, (long long)c->mem_bytes, (long long)c->spill_bytes);
        return -1;
    }
    return fd;
}

void *qd_cpu_cache_alloc(qd_backend *b, size_t bytes) {
    qd_cpu_impl *c = qd_cpu(b);
    size_t ps = page_size();
    size_t want = bytes ? bytes : 4;
    if (c->cache_budget <= 0 || c->mem_bytes + (int64_t)want <= c->cache_budget) {
        size_t sz = (want + 63) / 64 * 64;
        void *p = aligned_alloc(64, sz);
        if (!p) {
            qd_errorf(QD_ERR_DEVICE_OOM, "cpu backend: out of memory allocating a %zu-byte cache", bytes);
            return NULL;
        }
        if (record(c, p, want, 0, 0, -1) != 0) {
            free(p);
            qd_errorf(QD_ERR_INTERNAL, "cpu backend: out of host memory recording a cache");
            return NULL;
        }
        return p;
    }
    if (!c->spill_dir[0]) {
        qd_errorf(QD_ERR_DEVICE_OOM,
                  "cpu backend: a %zu-byte cache does not fit in process.host_memory_budget (%lld bytes, %lld in use) "
                  "and no spill directory was given", bytes, (long long)c->cache_budget, (long long)c->mem_bytes);
        return NULL;
    }
    size_t map_len = (want + ps - 1) / ps * ps;
    int fd = spill_file(c, map_len, want);
    if (fd < 0) return NULL;
    void *p = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int me = errno;
    if (p == MAP_FAILED) {
        close(fd);
        qd_errorf(QD_ERR_DEVICE_OOM, "cpu backend: cannot map a %zu-byte cache spill file: %s", bytes, strerror(me));
        return NULL;
    }
    /* no readahead: it would bring (and, with large folios, map) whole neighbourhoods of the
     * file for every sample a batch gather reads */
    (void)madvise(p, map_len, MADV_RANDOM);
    if (record(c, p, want, map_len, 1, fd) != 0) {
        munmap(p, map_len);
        close(fd);
        qd_errorf(QD_ERR_INTERNAL, "cpu backend: out of host memory recording a cache");
        return NULL;
    }
    c->spill_files++;
    return p;
}

static void release(qd_cpu_impl *c, qd_cpu_cache *k) {
    if (k->spilled) {
        munmap(k->p, k->map_len);
        close(k->fd);
        c->nspilled--;
        c->spill_bytes -= (int64_t)k->map_len;
    } else {
        free(k->p);
        c->mem_bytes -= (int64_t)k->bytes;
    }
}

void qd_cpu_cache_free(qd_backend *b, void *p) {
    qd_cpu_impl *c = qd_cpu(b);
    if (!p) return;
    qd_cpu_cache *k = find_cache(c, p);
    if (!k) { free(p); return; } /* not a cache: plain backend memory */
    release(c, k);
    *k = c->caches[--c->ncaches];
}

void qd_cpu_cache_release_all(qd_cpu_impl *c) {
    for (int i = 0; i < c->ncaches; i++) release(c, &c->caches[i]);
    c->ncaches = 0;
    free(c->gather_stage);
    free(c->gather_ident);
    c->gather_stage = NULL;
    c->gather_ident = NULL;
    free(c->caches);
    c->caches = NULL;
    c->caches_cap = 0;
}

void qd_backend_cache_stats(const qd_backend *b, qd_cache_stats *out) {
    memset(out, 0, sizeof *out);
    if (!b || !b->ops || strcmp(b->ops->name, "cpu") != 0) return;
    const qd_cpu_impl *c = (const qd_cpu_impl *)b->impl;
    out->mem_peak = c->mem_peak;
    out->spill_peak = c->spill_peak;
    out->spill_files = c->spill_files;
}
