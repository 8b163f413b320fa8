/* src/data/imagefolder.c: torchvision ImageFolder listing (docs/algorithm.md §11).
 * Classes = sub-folders of root sorted by name (strcmp = Python's code-point order for UTF-8);
 * label = index in that order. Images = JPEG files anywhere below a class folder, sorted like
 * torchvision's make_dataset: sorted(os.walk(class_dir)) then sorted(file names) — i.e. by
 * (directory path, file name). Symlinks are followed (os.walk(followlinks=True)). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "data/data_internal.h"

/* Bounds of a walk (symlinks are followed, so a tree can be a graph): folders nested deeper than
 * this below a class folder, a folder that is its own ancestor (a symlink back up the tree: three
 * links to "." would otherwise give 3^16 folders), and more folders or images in total than a
 * dataset has are errors that name the folder. */
#define QD_IMAGEFOLDER_MAX_DEPTH 16
#define QD_IMAGEFOLDER_MAX_DIRS 100000
#define QD_IMAGEFOLDER_MAX_FILES 50000000

typedef struct strvec {
    int n, cap;
    char **v;
} strvec;

static int strvec_push(strvec *s, char *str) {
    if (!str) return -1;
    if (s->n == s->cap) {
        int nc = s->cap ? s->cap * 2 : 64;
        char **nv = realloc(s->v, sizeof(char *) * (size_t)nc);
        if (!nv) { free(str); return -1; }
        s->v = nv; s->cap = nc;
    }
    s->v[s->n++] = str;
    return 0;
}

static void strvec_free(strvec *s) {
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char *join(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    int slash = la > 0 && a[la - 1] == '/';
    char *r = malloc(la + lb + 2);
    if (!r) return NULL;
    memcpy(r, a, la);
    if (!slash) r[la++] = '/';
    memcpy(r + la, b, lb + 1);
    return r;
}

static int is_jpeg_name(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    return strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Sorted names of the entries of dir (hidden ones skipped) that are directories (want_dirs) or
 * regular files. */
static qd_status list_dir(const char *dir, int want_dirs, strvec *out) {
    DIR *d = opendir(dir);
    if (!d) return qd_errorf(QD_ERR_NOINPUT, "%s: cannot open folder: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char *full = join(dir, e->d_name);
        if (!full) break;
        int ok = want_dirs ? is_dir(full) : (is_file(full) && is_jpeg_name(e->d_name));
        free(full);
        if (ok && strvec_push(out, strdup(e->d_name)) != 0) {
            closedir(d);
            return qd_errorf(QD_ERR_INTERNAL, "out of host memory listing %s", dir);
        }
    }
    closedir(d);
    if (out->n > 1) qsort(out->v, (size_t)out->n, sizeof(char *), cmp_str);
    return QD_OK;
}

typedef struct dir_id { dev_t dev; ino_t ino; } dir_id;

/* Collect all walk directories below (and including) dir, then sort them: sorted(os.walk()).
 * anc[0..nanc) are the (device, inode) pairs of the folders above dir, root included. */
static qd_status collect_dirs(const char *dir, int depth, dir_id *anc, int nanc, strvec *dirs) {
    struct stat sb;
    if (stat(dir, &sb) != 0) return qd_errorf(QD_ERR_NOINPUT, "%s: cannot open folder: %s", dir, strerror(errno));
    for (int i = 0; i < nanc; i++)
        if (anc[i].dev == sb.st_dev && anc[i].ino == sb.st_ino)
            return qd_errorf(QD_ERR_DATA, "%s: folder cycle: it is the same folder as one above it (a symbolic link back "
                             "up the tree); remove the link", dir);
    if (depth > QD_IMAGEFOLDER_MAX_DEPTH)
        return qd_errorf(QD_ERR_DATA, "%s: nested more than %d folders deep below its class folder", dir,
                         QD_IMAGEFOLDER_MAX_DEPTH);
    if (dirs->n >= QD_IMAGEFOLDER_MAX_DIRS)
        return qd_errorf(QD_ERR_DATA, "%s: more than %d folders below one class folder (symbolic links repeating "
                         "parts of the tree?)", dir, QD_IMAGEFOLDER_MAX_DIRS);
    if (strvec_push(dirs, strdup(dir)) != 0) return qd_errorf(QD_ERR_INTERNAL, "out of host memory");
    anc[nanc].dev = sb.st_dev;
    anc[nanc].ino = sb.st_ino;
    strvec sub = {0};
    qd_status st = list_dir(dir, 1, &sub);
    for (int i = 0; i < sub.n && st == QD_OK; i++) {
        char *p = join(dir, sub.v[i]);
        if (!p) { st = qd_errorf(QD_ERR_INTERNAL, "out of host memory"); break; }
        st = collect_dirs(p, depth + 1, anc, nanc + 1, dirs);
        free(p);
    }
    strvec_free(&sub);
    return st;
}

void qd_image_list_free(qd_image_list *l) {
    if (!l) return;
    for (int i = 0; i < l->n; i++) free(l->paths[i]);
    for (int i = 0; i < l->nclasses; i++) free(l->class_names[i]);
    free(l->paths);
    free(l->labels);
    free(l->class_names);
    memset(l, 0, sizeof *l);
}

qd_status qd_imagefolder_list(const char *root, qd_image_list *list) {
    memset(list, 0, sizeof *list);
    struct stat sb;
    if (stat(root, &sb) != 0) return qd_errorf(QD_ERR_NOINPUT, "%s: image folder not found: %s", root, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return qd_errorf(QD_ERR_NOINPUT, "%s: not a folder (expected an ImageFolder of JPEGs or a .npy file)", root);
    strvec classes = {0}, files = {0};
    int *labels = NULL;
    int nlab = 0, labcap = 0;
    qd_status st = list_dir(root, 1, &classes);
    for (int ci = 0; ci < classes.n && st == QD_OK; ci++) {
        char *cdir = join(root, classes.v[ci]);
        strvec dirs = {0};
        dir_id anc[QD_IMAGEFOLDER_MAX_DEPTH + 3] = {{sb.st_dev, sb.st_ino}};
        st = cdir ? collect_dirs(cdir, 0, anc, 1, &dirs) : qd_errorf(QD_ERR_INTERNAL, "out of host memory");
        if (st == QD_OK && dirs.n > 1) qsort(dirs.v, (size_t)dirs.n, sizeof(char *), cmp_str);
        for (int di = 0; di < dirs.n && st == QD_OK; di++) {
            strvec names = {0};
            st = list_dir(dirs.v[di], 0, &names);
            if (st == QD_OK && files.n + names.n > QD_IMAGEFOLDER_MAX_FILES)
                st = qd_errorf(QD_ERR_DATA, "%s: more than %d images in the folder tree", root, QD_IMAGEFOLDER_MAX_FILES);
            for (int fi = 0; fi < names.n && st == QD_OK; fi++) {
                if (strvec_push(&files, join(dirs.v[di], names.v[fi])) != 0) {
                    st = qd_errorf(QD_ERR_INTERNAL, "out of host memory");
                    break;
                }
                if (nlab == labcap) {
                    int nc = labcap ? labcap * 2 : 256;
                    int *nl = realloc(labels, sizeof(int) * (size_t)nc);
                    if (!nl) { st = qd_errorf(QD_ERR_INTERNAL, "out of host memory"); break; }
                    labels = nl; labcap = nc;
                }
                labels[nlab++] = ci;
            }
            strvec_free(&names);
        }
        strvec_free(&dirs);
        free(cdir);
    }
    if (st == QD_OK && files.n == 0)
        st = qd_errorf(QD_ERR_DATA, "%s: no JPEG images found (expected class sub-folders)", root);
    if (st != QD_OK) {
        strvec_free(&classes);
        strvec_free(&files);
        free(labels);
        return st;
    }
    list->n = files.n;
    list->paths = files.v;
    list->labels = labels;
    list->nclasses = classes.n;
    list->class_names = classes.v;
    return QD_OK;
}
