/* report_plot: PNG plots of an evaluation, drawn by gnuplot.
 *
 * - PREFIX_<benchmark>_<protocol>_accuracy.png: accuracy vs KV budget
 *   (fractions, log x), one line per policy, `full` as a dashed level;
 *   budgets given in tokens go to ..._accuracy_tokens.png.
 * - PREFIX_<benchmark>_<protocol>_accuracy_achieved.png, with threshold
 *   runs: accuracy vs the fraction of the context kept (measured), each
 *   policy's fixed budgets and thresholds.
 * - PREFIX_niah_<protocol>_heatmap_<budget>.png: for benchmark "niah" only,
 *   accuracy over the (context length x needle depth) grid, one panel per
 *   policy at that budget label (first-appearance order) after a `full`
 *   panel to compare against, one shared colour scale. `full` gets no file
 *   of its own budget label unless it is the only policy.
 * One gnuplot script draws them all from data files in a mkdtemp
 * directory; each PNG is drawn to PATH.tmp and renamed once it is there. */
#define _GNU_SOURCE
#include "report.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tis_error.h"

extern char **environ;

/* ---- rows to cells ------------------------------------------------------ */

enum { P_FRAC, P_TOKENS, P_THRESH, P_NONE }; /* budget kinds, in plot order */

/* Rows with the same key: (benchmark, protocol, policy, budget) for the
 * accuracy lines, plus (context length, depth) for the heatmaps. */
typedef struct p_cell {
    int bench, proto, policy; /* first-appearance ranks in p_names */
    int bkind;                /* P_* */
    double bval;              /* fraction or tokens */
    int blab;                 /* rank of the budget's file label (heatmap cells) */
    int64_t len;              /* target_tokens; -1 in accuracy cells */
    double depth;             /* -1 in accuracy cells */
    int64_t n, n_correct;
    double kept_sum;          /* sum over rows of the achieved fraction kept (kept / context) */
} p_cell;

typedef struct p_names {
    char (*v)[64]; /* [cap] NUL-terminated names */
    int n;
} p_names;

static int p_rank(p_names *t, const char *s, size_t cap) {
    char name[64];
    size_t n = strnlen(s, cap);
    if (n > sizeof name - 1) n = sizeof name - 1;
    memcpy(name, s, n);
    name[n] = 0;
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->v[i], name) == 0) return i;
    memcpy(t->v[t->n], name, sizeof name);
    return t->n++;
}

static int p_cell_cmp(const void *pa, const void *pb) {
    const p_cell *a = pa, *b = pb;
#define P_CMP(f) \
    if (a->f != b->f) return a->f < b->f ? -1 : 1
    P_CMP(bench);
    P_CMP(proto);
    P_CMP(policy);
    P_CMP(bkind);
    P_CMP(bval);
    P_CMP(len);
    P_CMP(depth);
#undef P_CMP
    return 0;
}

static bool p_same_key(const p_cell *a, const p_cell *b) {
    return a->bench == b->bench && a->proto == b->proto && a->policy == b->policy &&
           a->bkind == b->bkind && a->bval == b->bval && a->len == b->len &&
           a->depth == b->depth;
}

/* Sorts cells by key and merges equal keys; returns the new count. */
static int64_t p_merge(p_cell *c, int64_t n) {
    qsort(c, (size_t)n, sizeof *c, p_cell_cmp);
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        if (m > 0 && p_same_key(&c[m - 1], &c[i])) {
            c[m - 1].n += c[i].n;
            c[m - 1].n_correct += c[i].n_correct;
            c[m - 1].kept_sum += c[i].kept_sum;
        } else {
            c[m++] = c[i];
        }
    }
    return m;
}

/* ---- small helpers ------------------------------------------------------ */

/* A file-name component: [A-Za-z0-9._-], the rest as '_'. */
static void p_sanitise(char *dst, size_t cap, const char *s) {
    size_t i = 0;
    for (; s[i] && i + 1 < cap; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        dst[i] = ok ? c : '_';
    }
    if (i == 0) dst[i++] = '_';
    dst[i] = 0;
}

/* A gnuplot single-quoted string of s + suffix: '' for ', line breaks
 * (which would end the command) as spaces. */
static void p_gp_str(FILE *f, const char *s, const char *suffix) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc(*s == '\n' || *s == '\r' ? ' ' : *s, f);
    }
    fprintf(f, "%s'", suffix);
}

static void p_budget_label(char *buf, size_t cap, int kind, double v, bool file) {
    if (kind == P_FRAC)
        snprintf(buf, cap, "%.4g", v);
    else if (kind == P_TOKENS)
        snprintf(buf, cap, file ? "%.0ftok" : "%.0f tok", v);
    else if (kind == P_THRESH)
        snprintf(buf, cap, file ? "t%.4g" : "score >= %.4g", v);
    else
        snprintf(buf, cap, "none");
}

static int p_dbl_cmp(const void *pa, const void *pb) {
    double a = *(const double *)pa, b = *(const double *)pb;
    return a < b ? -1 : a > b;
}

/* Sorts and removes duplicates; returns the new count. */
static int64_t p_unique(double *v, int64_t n) {
    qsort(v, (size_t)n, sizeof *v, p_dbl_cmp);
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (m == 0 || v[m - 1] != v[i]) v[m++] = v[i];
    return m;
}

/* The executable `name` on $PATH into buf, or false. */
static bool p_which(const char *name, char *buf, size_t cap) {
    const char *path = getenv("PATH");
    while (path && *path) {
        size_t len = strcspn(path, ":");
        /* an empty entry is the current directory */
        int w = snprintf(buf, cap, "%.*s/%s", (int)(len ? len : 1), len ? path : ".", name);
        struct stat st;
        if (w > 0 && (size_t)w < cap && stat(buf, &st) == 0 && S_ISREG(st.st_mode) &&
            access(buf, X_OK) == 0)
            return true;
        path += len + (path[len] == ':');
    }
    return false;
}

/* Removes the files in dir, then dir (only our own data files are there). */
static void p_rmdir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[4096];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
                unlink(p);
            }
        closedir(d);
    }
    rmdir(dir);
}

/* ---- the plot job ----------------------------------------------------- */

typedef struct p_job {
    char dir[4096];   /* mkdtemp directory of data files and the script */
    FILE *gp;         /* the script */
    const char *prefix;
    p_names bench, proto, policy, blab; /* blab: budget labels for file names */
    char **paths;     /* [n_paths] PNGs to be made (owned) */
    int64_t n_paths, cap_paths;
    int n_data;       /* data files written so far */
} p_job;

/* Adds PREFIX_a_b_c...png (components sanitised; _2, _3... when two names
 * come out the same) to the list and points the script at its .tmp, drawn
 * w x h pixels. */
static int p_add_output(p_job *j, const char *const *parts, int n_parts, int w, int h) {
    size_t len = strlen(j->prefix) + 40;
    for (int i = 0; i < n_parts; i++) len += strlen(parts[i]) + 1;
    char *p = malloc(len);
    if (!p) return tis_error(TIS_ENOMEM, "report: out of memory for a plot name");
    size_t at = (size_t)snprintf(p, len, "%s", j->prefix);
    for (int i = 0; i < n_parts; i++) {
        p[at++] = '_';
        p_sanitise(p + at, len - at, parts[i]);
        at += strlen(p + at);
    }
    for (int64_t dup = 1;; dup++) {
        if (dup == 1)
            snprintf(p + at, len - at, ".png");
        else
            snprintf(p + at, len - at, "_%lld.png", (long long)dup);
        bool taken = false;
        for (int64_t i = 0; i < j->n_paths && !taken; i++) taken = strcmp(j->paths[i], p) == 0;
        if (!taken) break;
    }
    if (j->n_paths == j->cap_paths) {
        int64_t cap = j->cap_paths ? 2 * j->cap_paths : 16;
        char **np = realloc(j->paths, (size_t)cap * sizeof *np);
        if (!np) {
            free(p);
            return tis_error(TIS_ENOMEM, "report: out of memory for plot names");
        }
        j->paths = np;
        j->cap_paths = cap;
    }
    j->paths[j->n_paths++] = p;
    fprintf(j->gp,
            "reset\nif (tis_cairo) {\n    set terminal pngcairo size %d,%d font 'sans,11'\n"
            "} else {\n    set terminal png size %d,%d\n}\n"
            "set termoption noenhanced\nset output ",
            w, h, w, h);
    p_gp_str(j->gp, p, ".tmp");
    fputc('\n', j->gp);
    return 0;
}

/* Opens the next data file; its path goes to name. */
static FILE *p_data(p_job *j, char *name, size_t cap) {
    snprintf(name, cap, "%s/d%d.dat", j->dir, j->n_data++);
    FILE *f = fopen(name, "w");
    if (!f) tis_error(TIS_EIO, "report: cannot write %s: %s", name, strerror(errno));
    return f;
}

/* Accuracy vs budget of one kind for the cells c[0..n) of one (benchmark,
 * protocol), sorted by policy then budget. */
static int p_accuracy(p_job *j, const p_cell *c, int64_t n, int kind) {
    int full = -1;
    for (int i = 0; i < j->policy.n; i++)
        if (strcmp(j->policy.v[i], "full") == 0) full = i;
    int64_t fn = 0, fc = 0, n_pts = 0;
    for (int64_t i = 0; i < n; i++) {
        if (c[i].policy == full) {
            fn += c[i].n;
            fc += c[i].n_correct;
        } else if (c[i].bkind == kind && c[i].bval > 0) {
            n_pts++;
        }
    }
    if (n_pts == 0) return 0;
    double *xs = malloc((size_t)n_pts * sizeof *xs);
    if (!xs) return tis_error(TIS_ENOMEM, "report: out of memory for a plot");
    int64_t nx = 0;
    for (int64_t i = 0; i < n; i++)
        if (c[i].policy != full && c[i].bkind == kind && c[i].bval > 0) xs[nx++] = c[i].bval;
    nx = p_unique(xs, nx);

    const char *bench = j->bench.v[c[0].bench], *proto = j->proto.v[c[0].proto];
    const char *parts[] = {bench, proto, kind == P_FRAC ? "accuracy" : "accuracy_tokens"};
    int rc = p_add_output(j, parts, 3, 960, 600);
    if (rc) {
        free(xs);
        return rc;
    }
    FILE *gp = j->gp;
    char title[160];
    snprintf(title, sizeof title, "%s (%s): accuracy vs KV budget", bench, proto);
    fputs("set title ", gp);
    p_gp_str(gp, title, "");
    fprintf(gp, "\nset xlabel '%s'\nset ylabel 'accuracy'\n",
            kind == P_FRAC ? "KV budget (fraction of the context kept)"
                           : "KV budget (context tokens kept)");
    fprintf(gp, "set logscale x\nset xrange [%.9g:%.9g]\nset yrange [-0.02:1.02]\n"
                "set ytics 0,0.1,1\nset grid\nset key outside right top\n",
            xs[0] / 1.25, xs[nx - 1] * 1.25);
    if (nx <= 24) {
        fputs("set xtics (", gp);
        for (int64_t i = 0; i < nx; i++) {
            char lab[32];
            p_budget_label(lab, sizeof lab, kind, xs[i], false);
            fprintf(gp, "%s'%s' %.9g", i ? ", " : "", lab, xs[i]);
        }
        fputs(")\n", gp);
    }
    free(xs);
    fputs("plot ", gp);
    int n_lines = 0;
    for (int64_t i = 0; i < n;) {
        int64_t e = i;
        while (e < n && c[e].policy == c[i].policy) e++;
        char name[4200];
        FILE *d = NULL;
        for (int64_t k = i; k < e; k++) {
            if (c[k].policy == full || c[k].bkind != kind || !(c[k].bval > 0)) continue;
            if (!d && !(d = p_data(j, name, sizeof name))) return TIS_EIO;
            fprintf(d, "%.9g %.9g %lld\n", c[k].bval, (double)c[k].n_correct / (double)c[k].n,
                    (long long)c[k].n);
        }
        if (d) {
            if (fclose(d) != 0)
                return tis_error(TIS_EIO, "report: cannot write %s: %s", name, strerror(errno));
            fputs(n_lines++ ? ", \\\n     " : "", gp);
            p_gp_str(gp, name, "");
            /* 14 distinct colours and a point type per policy: more than
             * gnuplot's default cycle of 8, so no two policies look alike. */
            static const char *const colours[] = {
                "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                "#7f7f7f", "#bcbd22", "#17becf", "#000080", "#808000", "#800000", "#008080"};
            int ci = (n_lines - 1) % (int)(sizeof colours / sizeof colours[0]);
            fprintf(gp, " using 1:2 with linespoints lw 2 pt %d ps 1.2 lc rgb '%s' title ",
                    5 + (n_lines - 1) % 9, colours[ci]);
            p_gp_str(gp, j->policy.v[c[i].policy], "");
        }
        i = e;
    }
    if (fn > 0)
        fprintf(gp, ", \\\n     %.9g with lines dt 2 lw 2 lc rgb 'black' title 'full (%.3f)'",
                (double)fc / (double)fn, (double)fc / (double)fn);
    fputs("\nunset output\n", gp);
    return 0;
}

/* Accuracy vs the compression achieved, for a (benchmark, protocol) with
 * threshold runs: each policy's fixed fractions and its thresholds (a
 * series "POLICY (threshold)") at the fraction of the context they kept
 * on average. Nothing without threshold cells. */
static int p_achieved(p_job *j, const p_cell *c, int64_t n) {
    int64_t n_thr = 0;
    double lo = 1, hi = 0;
    for (int64_t i = 0; i < n; i++) {
        n_thr += c[i].bkind == P_THRESH;
        if ((c[i].bkind == P_THRESH || c[i].bkind == P_FRAC) && c[i].kept_sum > 0) {
            double x = c[i].kept_sum / (double)c[i].n;
            lo = x < lo ? x : lo;
            hi = x > hi ? x : hi;
        }
    }
    if (n_thr == 0 || !(hi > 0)) return 0;
    const char *bench = j->bench.v[c[0].bench], *proto = j->proto.v[c[0].proto];
    const char *parts[] = {bench, proto, "accuracy_achieved"};
    int rc = p_add_output(j, parts, 3, 960, 600);
    if (rc) return rc;
    FILE *gp = j->gp;
    char title[160];
    snprintf(title, sizeof title, "%s (%s): accuracy vs compression achieved", bench, proto);
    fputs("set title ", gp);
    p_gp_str(gp, title, "");
    fprintf(gp, "\nset xlabel 'context kept (mean fraction per kv head, measured)'\nset ylabel 'accuracy'\n"
                "set logscale x\nset xrange [%.9g:%.9g]\nset yrange [-0.02:1.02]\n"
                "set ytics 0,0.1,1\nset grid\nset key outside right top\nplot ",
            lo / 1.25, hi * 1.25);
    int n_lines = 0;
    for (int64_t i = 0; i < n;) {
        int64_t e = i;
        while (e < n && c[e].policy == c[i].policy) e++;
        for (int kind = P_FRAC; kind <= P_THRESH; kind += P_THRESH - P_FRAC) {
            char name[4200];
            FILE *d = NULL;
            for (int64_t k = i; k < e; k++) {
                if (c[k].bkind != kind || !(c[k].kept_sum > 0)) continue;
                if (!d && !(d = p_data(j, name, sizeof name))) return TIS_EIO;
                fprintf(d, "%.9g %.9g %lld\n", c[k].kept_sum / (double)c[k].n,
                        (double)c[k].n_correct / (double)c[k].n, (long long)c[k].n);
            }
            if (!d) continue;
            if (fclose(d) != 0) return tis_error(TIS_EIO, "report: cannot write %s: %s", name, strerror(errno));
            fputs(n_lines++ ? ", \\\n     " : "", gp);
            p_gp_str(gp, name, "");
            fprintf(gp, " using 1:2 with linespoints lw 2 pt %d ps 1.2 %stitle ", 5 + (n_lines - 1) % 9,
                    kind == P_THRESH ? "dt 2 " : "");
            p_gp_str(gp, j->policy.v[c[i].policy], kind == P_THRESH ? " (threshold)" : "");
        }
        i = e;
    }
    fputs("\nunset output\n", gp);
    return 0;
}

/* A panel of a heatmap file: the cells c[0..n) of one policy, of those
 * the ones with budget label blab (-1: all; budgets add up cell by cell). */
typedef struct p_panel {
    const p_cell *c;
    int64_t n;
    int blab;
} p_panel;

static bool p_in_panel(const p_panel *p, int64_t i) {
    return p->blab < 0 || p->c[i].blab == p->blab;
}

static int64_t p_index(const double *v, int64_t n, double x) {
    int64_t i = 0;
    while (i < n - 1 && v[i] != x) i++;
    return i;
}

/* One NIAH heatmap PNG for one (protocol, budget label): a multiplot with
 * a panel per policy (title = policy), x = context length, y = depth,
 * colour = accuracy on one [0,1] scale, the numbers in the cells. All
 * panels share the grid of every (length, depth) seen; a cell a policy has
 * no rows for stays grey. */
static int p_heatmap(p_job *j, int proto, const char *bfile, const char *blab, const p_panel *pan,
                     int n_pan) {
    int64_t n_all = 0;
    for (int k = 0; k < n_pan; k++) n_all += pan[k].n;
    double *ax = malloc(2 * (size_t)n_all * sizeof *ax);
    int64_t *acc = NULL;
    if (!ax) return tis_error(TIS_ENOMEM, "report: out of memory for a heatmap");
    double *ay = ax + n_all;
    int64_t m = 0;
    for (int k = 0; k < n_pan; k++)
        for (int64_t i = 0; i < pan[k].n; i++)
            if (p_in_panel(&pan[k], i)) {
                ax[m] = (double)pan[k].c[i].len;
                ay[m++] = pan[k].c[i].depth;
            }
    if (m == 0) { /* no panel has a cell: nothing to draw */
        free(ax);
        return 0;
    }
    int64_t nx = p_unique(ax, m), ny = p_unique(ay, m);
    acc = calloc(2 * (size_t)(nx * ny), sizeof *acc); /* [n | n_correct] per cell */
    if (!acc) {
        free(ax);
        return tis_error(TIS_ENOMEM, "report: out of memory for a heatmap");
    }

    /* Layout: up to 5 panels a row; sizes in pixels, margins in screen
     * fractions of them. */
    int rows = (n_pan + 4) / 5, cols = (n_pan + rows - 1) / rows;
    const int pw = 240, ph = 240, ml = 80, mr = 120, mt = 84, mb = 84, sx = 50, sy = 88;
    int w = ml + mr + cols * pw + (cols - 1) * sx, h = mt + mb + rows * ph + (rows - 1) * sy;
    const char *proto_s = j->proto.v[proto];
    char title[200];
    snprintf(title, sizeof title,
             "niah (%s): accuracy by context length (x) and needle depth (y), KV budget %s",
             proto_s, blab);
    int w_title = 8 * (int)strlen(title) + 60; /* the title fits */
    if (w < w_title) w = w_title;
    const char *parts[] = {"niah", proto_s, "heatmap", bfile};
    int rc = p_add_output(j, parts, 4, w, h);
    FILE *gp = j->gp;
    if (rc == 0) {
        fputs("set multiplot title ", gp);
        p_gp_str(gp, title, "");
        fprintf(gp, " layout %d,%d margins %.5f,%.5f,%.5f,%.5f spacing %.5f,%.5f\n", rows, cols,
                (double)ml / w, 1.0 - (double)mr / w, (double)mb / h, 1.0 - (double)mt / h,
                (double)sx / w, (double)sy / h);
        /* a cell about cw pixels wide: smaller numbers in small cells */
        double cw = (double)(w - ml - mr - (cols - 1) * sx) / cols / (double)nx;
        fprintf(gp, "set xrange [-0.5:%lld.5]\nset yrange [%lld.5:-0.5]\nset cbrange [0:1]\n"
                    "set palette defined (0 '#d73027', 0.5 '#fee08b', 1 '#1a9850')\n"
                    "set tics out nomirror font ',9'\nunset key\nunset colorbox\n"
                    "set object 1 rectangle from graph 0, graph 0 to graph 1, graph 1 behind "
                    "fillcolor rgb '#d9d9d9' fillstyle solid 1.0 noborder\n"
                    "set xtics %s(",
                (long long)nx - 1, (long long)ny - 1,
                nx > 3 && cw < 60 ? "rotate by 45 right " : "");
        for (int64_t i = 0; i < nx; i++)
            fprintf(gp, "%s'%.0f' %lld", i ? ", " : "", ax[i], (long long)i);
        fputs(")\nset ytics (", gp);
        for (int64_t i = 0; i < ny; i++)
            fprintf(gp, "%s'%.4g' %lld", i ? ", " : "", ay[i], (long long)i);
        fputs(")\n", gp);
        int font = cw >= 40 ? 9 : cw >= 28 ? 8 : 7;
        for (int k = 0; k < n_pan && rc == 0; k++) {
            memset(acc, 0, 2 * (size_t)(nx * ny) * sizeof *acc);
            for (int64_t i = 0; i < pan[k].n; i++) {
                if (!p_in_panel(&pan[k], i)) continue;
                const p_cell *c = &pan[k].c[i];
                int64_t at = p_index(ay, ny, c->depth) * nx + p_index(ax, nx, (double)c->len);
                acc[at] += c->n;
                acc[nx * ny + at] += c->n_correct;
            }
            char name[4200];
            FILE *d = p_data(j, name, sizeof name);
            if (!d) {
                rc = TIS_EIO;
                break;
            }
            for (int64_t at = 0; at < nx * ny; at++)
                if (acc[at] > 0)
                    fprintf(d, "%lld %lld %.6g %lld\n", (long long)(at % nx), (long long)(at / nx),
                            (double)acc[nx * ny + at] / (double)acc[at], (long long)acc[at]);
            if (fclose(d) != 0) {
                rc = tis_error(TIS_EIO, "report: cannot write %s: %s", name, strerror(errno));
                break;
            }
            fputs("set title ", gp);
            p_gp_str(gp, j->policy.v[pan[k].c[0].policy], "");
            /* depth named on the left column, length under the lowest panels */
            fprintf(gp, "\nset ylabel %s\nset xlabel %s\n",
                    k % cols == 0 ? "'needle depth'" : "''",
                    k + cols >= n_pan ? "'context length (tokens)'" : "''");
            if (k == n_pan - 1) /* the one colour scale, right of the panels */
                fprintf(gp,
                        "set colorbox user origin screen %.5f, screen %.5f size screen %.5f, "
                        "screen %.5f\nset cbtics 0,0.2,1\nset cblabel 'accuracy'\n",
                        1.0 - (mr - 25.0) / w, (double)mb / h, 16.0 / w,
                        1.0 - (double)(mt + mb) / h);
            fputs("plot ", gp);
            p_gp_str(gp, name, "");
            fprintf(gp,
                    " using 1:2:(0.5):(0.5):3 with boxxyerror fs solid 1.0 noborder lc palette, "
                    "\\\n     '' using 1:2:(sprintf('%%.2f', $3)) with labels font ',%d' "
                    "tc rgb 'black'\n",
                    font);
        }
        if (rc == 0) fputs("unset multiplot\nunset output\n", gp);
    }
    free(acc);
    free(ax);
    return rc;
}

/* Runs `gnuplot script`, output to log; a message from the log on failure. */
static int p_run(const char *gnuplot, const char *script, const char *log) {
    posix_spawn_file_actions_t fa;
    if (posix_spawn_file_actions_init(&fa) != 0)
        return tis_error(TIS_ENOMEM, "report: cannot start gnuplot");
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    char arg0[] = "gnuplot";
    char *argv[] = {arg0, (char *)script, NULL};
    pid_t pid;
    int e = posix_spawn(&pid, gnuplot, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e != 0) return tis_error(TIS_EIO, "report: cannot run %s: %s", gnuplot, strerror(e));
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return tis_error(TIS_EIO, "report: waitpid: %s", strerror(errno));
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
    char msg[512] = "";
    FILE *f = fopen(log, "r");
    if (f) {
        size_t got = fread(msg, 1, sizeof msg - 1, f);
        msg[got] = 0;
        fclose(f);
        /* one line: whitespace runs (the caret line, line breaks) as one space */
        char *w = msg;
        for (const char *s = msg; *s; s++) {
            bool sp = *s == ' ' || *s == '\t' || *s == '\n' || *s == '\r';
            if (!sp || (w > msg && w[-1] != ' ')) *w++ = sp ? ' ' : *s;
        }
        while (w > msg && w[-1] == ' ') w--;
        *w = 0;
    }
    return tis_error(TIS_EIO, "report: gnuplot failed (%s %d): %s",
                     WIFEXITED(st) ? "exit" : "signal",
                     WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), msg);
}

typedef struct p_bkey {
    int bkind;
    double bval;
    int blab;
} p_bkey;

static int p_bkey_cmp(const void *pa, const void *pb) {
    const p_bkey *a = pa, *b = pb;
    if (a->bkind != b->bkind) return a->bkind < b->bkind ? -1 : 1;
    return a->bval < b->bval ? -1 : a->bval > b->bval;
}

/* The heatmaps of one protocol, cells c[0..n) sorted by policy then
 * budget: a file per budget label of the policies other than `full`, with
 * `full` (all its cells) as the first panel of each; `full` alone gets a
 * file per label of its own only when it is the only policy. */
static int p_heatmaps(p_job *j, const p_cell *c, int64_t n) {
    int full = -1;
    for (int i = 0; i < j->policy.n; i++)
        if (strcmp(j->policy.v[i], "full") == 0) full = i;
    p_bkey *keys = malloc((size_t)n * sizeof *keys);
    p_panel *pan = malloc(((size_t)j->policy.n + 1) * sizeof *pan);
    if (!keys || !pan) {
        free(keys);
        free(pan);
        return tis_error(TIS_ENOMEM, "report: out of memory for heatmaps");
    }
    int64_t nk = 0;
    for (int64_t i = 0; i < n; i++)
        if (c[i].policy != full) keys[nk++] = (p_bkey){c[i].bkind, c[i].bval, c[i].blab};
    bool only_full = nk == 0;
    if (only_full)
        for (int64_t i = 0; i < n; i++) keys[nk++] = (p_bkey){c[i].bkind, c[i].bval, c[i].blab};
    qsort(keys, (size_t)nk, sizeof *keys, p_bkey_cmp);
    int64_t nu = 0; /* one per label, in budget order */
    for (int64_t i = 0; i < nk; i++) {
        bool seen = false;
        for (int64_t k = 0; k < nu && !seen; k++) seen = keys[k].blab == keys[i].blab;
        if (!seen) keys[nu++] = keys[i];
    }
    int rc = 0;
    for (int64_t b = 0; b < nu && rc == 0; b++) {
        int n_pan = 0;
        for (int64_t i = 0; i < n;) { /* per policy */
            int64_t e = i;
            while (e < n && c[e].policy == c[i].policy) e++;
            p_panel p = {c + i, e - i, keys[b].blab};
            bool any = false;
            if (c[i].policy == full && !only_full) {
                p.blab = -1; /* full's own cells, whatever its budget label */
                any = true;
            }
            for (int64_t k = 0; k < p.n && !any; k++) any = p_in_panel(&p, k);
            if (any) {
                if (c[i].policy == full && n_pan > 0) { /* full first */
                    memmove(pan + 1, pan, (size_t)n_pan * sizeof *pan);
                    pan[0] = p;
                    n_pan++;
                } else {
                    pan[n_pan++] = p;
                }
            }
            i = e;
        }
        char blab[32];
        p_budget_label(blab, sizeof blab, keys[b].bkind, keys[b].bval, false);
        rc = p_heatmap(j, c[0].proto, j->blab.v[keys[b].blab], blab, pan, n_pan);
    }
    free(keys);
    free(pan);
    return rc;
}

/* Builds the cells and writes the script; the caller runs it. */
static int p_script(p_job *j, const eval_row *rows, int64_t n) {
    p_cell *acc = calloc((size_t)n, sizeof *acc), *heat = calloc((size_t)n, sizeof *heat);
    if (!acc || !heat) {
        free(acc);
        free(heat);
        return tis_error(TIS_ENOMEM, "report: out of memory for %lld rows", (long long)n);
    }
    int64_t n_heat = 0;
    for (int64_t i = 0; i < n; i++) {
        const eval_row *r = &rows[i];
        p_cell *a = &acc[i];
        a->bench = p_rank(&j->bench, r->benchmark, sizeof r->benchmark);
        a->proto = p_rank(&j->proto, r->protocol, sizeof r->protocol);
        a->policy = p_rank(&j->policy, r->policy, sizeof r->policy);
        if (isfinite(r->threshold) && r->threshold > 0) {
            a->bkind = P_THRESH;
            a->bval = r->threshold;
        } else if (isfinite(r->budget) && r->budget >= 0) {
            a->bkind = P_FRAC;
            a->bval = r->budget;
        } else if (r->budget_tokens >= 0) {
            a->bkind = P_TOKENS;
            a->bval = (double)r->budget_tokens;
        } else {
            a->bkind = P_NONE;
        }
        a->kept_sum = r->context_tokens > 0 ? (double)r->kept_tokens / (double)r->context_tokens : 0;
        a->len = -1;
        a->depth = -1;
        a->n = 1;
        a->n_correct = r->correct;
        /* the NIAH grid: benchmark exactly "niah" */
        bool niah = strnlen(r->benchmark, sizeof r->benchmark) == 4 &&
                    memcmp(r->benchmark, "niah", 4) == 0;
        if (niah && isfinite(r->depth) && r->depth >= 0 && r->target_tokens > 0) {
            char bfile[32];
            p_budget_label(bfile, sizeof bfile, a->bkind, a->bval, true);
            heat[n_heat] = *a;
            heat[n_heat].blab = p_rank(&j->blab, bfile, sizeof bfile);
            heat[n_heat].len = r->target_tokens;
            heat[n_heat++].depth = r->depth;
        }
    }
    int64_t n_acc = p_merge(acc, n);
    n_heat = p_merge(heat, n_heat);
    fputs("set encoding utf8\n"
          "tis_cairo = strstrt(GPVAL_TERMINALS, 'pngcairo') > 0\n",
          j->gp);
    int rc = 0;
    for (int64_t i = 0; i < n_acc && rc == 0;) { /* per (benchmark, protocol) */
        int64_t e = i;
        while (e < n_acc && acc[e].bench == acc[i].bench && acc[e].proto == acc[i].proto) e++;
        rc = p_accuracy(j, acc + i, e - i, P_FRAC);
        if (rc == 0) rc = p_accuracy(j, acc + i, e - i, P_TOKENS);
        if (rc == 0) rc = p_achieved(j, acc + i, e - i);
        i = e;
    }
    for (int64_t i = 0; i < n_heat && rc == 0;) { /* per protocol (all niah) */
        int64_t e = i;
        while (e < n_heat && heat[e].proto == heat[i].proto) e++;
        rc = p_heatmaps(j, heat + i, e - i);
        i = e;
    }
    free(acc);
    free(heat);
    return rc;
}

int report_plots(const char *prefix, const eval_row *rows, int64_t n, char ***paths,
                 int64_t *n_paths) {
    if (paths) *paths = NULL;
    if (n_paths) *n_paths = 0;
    if (!prefix || !prefix[0] || !paths || !n_paths || n < 0 || (n > 0 && !rows))
        return tis_error(TIS_EINVAL, "report: bad arguments to report_plots");
    if (strpbrk(prefix, "\r\n"))
        return tis_error(TIS_EINVAL, "report: plot prefix has a line break");
    char gnuplot[4096];
    if (!p_which("gnuplot", gnuplot, sizeof gnuplot))
        return tis_error(TIS_EUNSUPPORTED,
                         "report: gnuplot is not on PATH, no plots (apt-get install "
                         "gnuplot-nox)");
    if (n == 0) return 0;

    p_job j = {.prefix = prefix};
    j.bench.v = calloc((size_t)n * 4, sizeof *j.bench.v);
    if (!j.bench.v)
        return tis_error(TIS_ENOMEM, "report: out of memory for %lld rows", (long long)n);
    j.proto.v = j.bench.v + n;
    j.policy.v = j.bench.v + 2 * n;
    j.blab.v = j.bench.v + 3 * n;
    const char *tmp = getenv("TMPDIR");
    snprintf(j.dir, sizeof j.dir, "%s/tis-plot-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    int rc = 0;
    if (!mkdtemp(j.dir)) {
        rc = tis_error(TIS_EIO, "report: cannot make a temp dir %s: %s", j.dir, strerror(errno));
        j.dir[0] = 0;
    }
    char script[4200], log[4200];
    snprintf(script, sizeof script, "%s/plots.gp", j.dir);
    snprintf(log, sizeof log, "%s/gnuplot.log", j.dir);
    if (rc == 0 && !(j.gp = fopen(script, "w")))
        rc = tis_error(TIS_EIO, "report: cannot write %s: %s", script, strerror(errno));
    if (rc == 0) rc = p_script(&j, rows, n);
    if (j.gp && fclose(j.gp) != 0 && rc == 0)
        rc = tis_error(TIS_EIO, "report: cannot write %s: %s", script, strerror(errno));
    if (rc == 0 && j.n_paths > 0) rc = p_run(gnuplot, script, log);
    /* every PNG there and non-empty, then renamed into place */
    for (int64_t i = 0; i < j.n_paths; i++) {
        char t[4200];
        snprintf(t, sizeof t, "%s.tmp", j.paths[i]);
        struct stat st;
        if (rc == 0 && (stat(t, &st) != 0 || st.st_size <= 0))
            rc = tis_error(TIS_EIO, "report: gnuplot did not write %s", j.paths[i]);
        if (rc == 0 && rename(t, j.paths[i]) != 0)
            rc = tis_error(TIS_EIO, "report: cannot write %s: %s", j.paths[i], strerror(errno));
        if (rc != 0) unlink(t);
    }
    if (j.dir[0]) p_rmdir(j.dir);
    free(j.bench.v);
    if (rc != 0) {
        for (int64_t i = 0; i < j.n_paths; i++) free(j.paths[i]);
        free(j.paths);
        return rc;
    }
    *paths = j.paths;
    *n_paths = j.n_paths;
    return 0;
}
