/* test_report_plot: gnuplot PNGs from evaluation rows: accuracy-vs-budget
 * files, the NIAH heatmaps' files and panels read from the script, a
 * missing or failing gnuplot, unwritable paths, the temp dir cleaned. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eval_rows.h"
#include "report.h"
#include "tt.h"

static bool s_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static bool s_is_png(const char *path) {
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    size_t len = 0;
    char *d = tt_read_file(path, &len);
    bool ok = d && len > 8 && memcmp(d, sig, 8) == 0;
    free(d);
    return ok;
}

/* Width and height from the IHDR chunk; false if not a PNG. */
static bool s_png_size(const char *path, uint32_t *w, uint32_t *h) {
    size_t len = 0;
    unsigned char *d = (unsigned char *)tt_read_file(path, &len);
    bool ok = d && len >= 24 && memcmp(d + 12, "IHDR", 4) == 0;
    if (ok) {
        *w = (uint32_t)d[16] << 24 | (uint32_t)d[17] << 16 | (uint32_t)d[18] << 8 | d[19];
        *h = (uint32_t)d[20] << 24 | (uint32_t)d[21] << 16 | (uint32_t)d[22] << 8 | d[23];
    }
    free(d);
    return ok;
}

/* The part of a gnuplot script that draws `png` (from its set output to
 * the next unset output), malloc'd, or NULL. */
static char *s_section(const char *script, const char *png) {
    char key[2048];
    snprintf(key, sizeof key, "set output '%s.tmp'", png);
    const char *a = strstr(script, key);
    const char *b = a ? strstr(a, "unset output") : NULL;
    return b ? strndup(a, (size_t)(b - a)) : NULL;
}

static int s_count(const char *text, const char *what) {
    int n = 0;
    for (const char *p = text; (p = strstr(p, what)); p += strlen(what)) n++;
    return n;
}

/* The panel titles of a heatmap section in order, e.g. "full|a/b c|". */
static void s_panels(const char *sec, char *out, size_t cap) {
    out[0] = 0;
    for (const char *p = sec; (p = strstr(p, "\nset title '")); ) {
        p += strlen("\nset title '");
        const char *e = strchr(p, '\'');
        if (!e) break;
        size_t at = strlen(out);
        snprintf(out + at, cap - at, "%.*s|", (int)(e - p), p);
        p = e;
    }
}

static bool s_has_path(char **paths, int64_t n, const char *want) {
    for (int64_t i = 0; i < n; i++)
        if (strcmp(paths[i], want) == 0) return true;
    return false;
}

static void s_free_paths(char **paths, int64_t n) {
    for (int64_t i = 0; i < n; i++) free(paths[i]);
    free(paths);
}

static int s_dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* A fake gnuplot in its own directory, for PATH. */
static const char *s_fake_gnuplot(const char *dir, const char *body) {
    mkdir(dir, 0700);
    static char exe[512];
    snprintf(exe, sizeof exe, "%s/gnuplot", dir);
    TT_CHECK(tt_write_file(exe, body, strlen(body)) == 0);
    chmod(exe, 0700);
    return dir;
}

static void test_plots(void) {
    TT_CASE("plots: rows");
    eval_row r[64];
    int n = 0;
    static const double budgets[3] = {0.1, 0.25, 0.5};
    for (int b = 0; b < 3; b++)
        for (int i = 0; i < 2; i++)
            r[n++] = tt_eval_row("passkey", "agnostic", "snapkv", budgets[b], -1, i <= b, 100, 1000, 50);
    r[n++] = tt_eval_row("passkey", "agnostic", "a/b c", 0.1, -1, true, 100, 1000, 50);
    r[n++] = tt_eval_row("passkey", "agnostic", "full", 1.0, -1, true, 1000, 1000, 50);
    r[n++] = tt_eval_row("passkey", "agnostic", "snapkv", -1, 128, true, 128, 1000, 50);
    /* depths outside "niah": accuracy lines, no heatmaps */
    r[n] = tt_eval_row("passkey", "agnostic", "snapkv", 0.1, -1, true, 100, 1000, 50);
    r[n].target_tokens = 2048;
    r[n++].depth = 0.5;
    for (int i = 0; i < 2; i++) {
        r[n] = tt_eval_row("niah_multikey", "agnostic", "snapkv", 0.1, -1, i == 0, 100, 1000, 50);
        r[n].target_tokens = 1024;
        r[n++].depth = 0.25 * i;
    }
    /* niah, query_aware: full (ranked after "a/b c" by the passkey rows),
     * "a/b c" at 0.1, snapkv at 128 tokens, knorm at 0.1 on part of the
     * grid; agnostic: full alone */
    static const int64_t lens[3] = {512, 1024, 2048};
    static const double depths[2] = {0.0, 0.5};
    for (int l = 0; l < 3; l++)
        for (int d = 0; d < 2; d++)
            for (int p = 0; p < 4; p++) {
                if (p == 3 && l > 0) continue;
                static const char *const pols[4] = {"full", "a/b c", "snapkv", "knorm"};
                r[n] = tt_eval_row("niah", "query_aware", pols[p], p == 0 ? 1.0 : p == 2 ? -1 : 0.1,
                             p == 2 ? 128 : -1, (l + d + p) % 2 == 0, 100, 1000, 50);
                r[n].target_tokens = lens[l];
                r[n++].depth = depths[d];
            }
    for (int l = 0; l < 3; l++)
        for (int d = 0; d < 2; d++) {
            r[n] = tt_eval_row("niah", "agnostic", "full", 1.0, -1, d == 0, 1000, 1000, 50);
            r[n].target_tokens = lens[l];
            r[n++].depth = depths[d];
        }
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s", tt_path("run"));
    char **paths = NULL;
    int64_t np = -1;

    const char *old = getenv("PATH");
    char *saved = old ? strdup(old) : NULL;
    /* no gnuplot on PATH */
    TT_CASE("plots: no gnuplot");
    const char *empty = tt_path("emptybin");
    mkdir(empty, 0700);
    setenv("PATH", empty, 1);
    TT_FAILS(report_plots(prefix, r, n, &paths, &np), TIS_EUNSUPPORTED);
    TT_CHECK(paths == NULL && np == 0);
    /* a gnuplot that fails, and one that draws nothing: errors, no files */
    TT_CASE("plots: gnuplot fails or draws nothing");
    char tmpd[512];
    snprintf(tmpd, sizeof tmpd, "%s", tt_path("plottmp"));
    mkdir(tmpd, 0700);
    setenv("TMPDIR", tmpd, 1);
    setenv("PATH",
           s_fake_gnuplot(tt_path("badbin"), "#!/bin/sh\necho 'line 3: boom' >&2\nexit 3\n"),
           1);
    TT_FAILS(report_plots(prefix, r, n, &paths, &np), TIS_EIO);
    TT_CHECK(strstr(tis_last_error(), "boom") != NULL);
    setenv("PATH", s_fake_gnuplot(tt_path("lazybin"), "#!/bin/sh\nexit 0\n"), 1);
    TT_FAILS(report_plots(prefix, r, n, &paths, &np), TIS_EIO);
    TT_CHECK(paths == NULL && np == 0);
    TT_CHECK(!s_exists(tt_path("run_passkey_agnostic_accuracy.png")));

    /* the script, kept by a gnuplot that copies it: which heatmaps, which
     * panels in which order (checked with or without a real gnuplot) */
    TT_CASE("plots: the script's heatmaps and panels");
    char heat[3][600], body[1200];
    snprintf(heat[0], 600, "%s_niah_query_aware_heatmap_0.1.png", prefix);
    snprintf(heat[1], 600, "%s_niah_query_aware_heatmap_128tok.png", prefix);
    snprintf(heat[2], 600, "%s_niah_agnostic_heatmap_1.png", prefix);
    const char *kept = tt_path("kept.gp");
    snprintf(body, sizeof body, "#!/bin/sh\n/bin/cp \"$1\" '%s'\nexit 0\n", kept);
    setenv("PATH", s_fake_gnuplot(tt_path("copybin"), body), 1);
    TT_FAILS(report_plots(prefix, r, n, &paths, &np), TIS_EIO);
    char *gp = tt_read_file(kept, NULL);
    TT_CHECK(gp != NULL);
    if (gp) {
        TT_CHECK(s_count(gp, "\nset output") == 8);
        TT_CHECK(s_count(gp, "_heatmap_") == 3);                /* only niah ones */
        TT_CHECK(!strstr(gp, "_niah_query_aware_heatmap_1.png")); /* full's own budget */
        TT_CHECK(!strstr(gp, "passkey_heatmap") && !strstr(gp, "multikey_heatmap"));
        static const char *const want_panels[3] = {"full|a/b c|knorm|", "full|snapkv|", "full|"};
        for (int k = 0; k < 3; k++) {
            char *sec = s_section(gp, heat[k]), got[256] = "";
            TT_CHECK(sec != NULL);
            if (!sec) {
                fprintf(stderr, "  no section for %s\n", heat[k]);
                continue;
            }
            s_panels(sec, got, sizeof got);
            if (strcmp(got, want_panels[k]) != 0)
                fprintf(stderr, "  %s: panels %s, not %s\n", heat[k], got, want_panels[k]);
            TT_CHECK(strcmp(got, want_panels[k]) == 0);
            TT_CHECK(s_count(sec, "\nset multiplot") == 1 && strstr(sec, "\nunset multiplot"));
            TT_CHECK(s_count(sec, "\nplot ") == s_count(want_panels[k], "|"));
            TT_CHECK(s_count(sec, "set cbrange [0:1]") == 1);    /* set once: shared */
            TT_CHECK(s_count(sec, "set colorbox user") == 1);    /* one colour scale */
            TT_CHECK(s_count(sec, "with labels") == s_count(want_panels[k], "|"));
            free(sec);
        }
        free(gp);
    }
    if (saved) setenv("PATH", saved, 1);
    free(saved);

    TT_CASE("plots: real gnuplot PNGs");
    int rc = report_plots(prefix, r, n, &paths, &np);
    if (rc == TIS_EUNSUPPORTED) {
        fprintf(stderr, "  gnuplot not installed: %s (PNG checks skipped)\n", tis_last_error());
        TT_CHECK(paths == NULL);
    } else {
        TT_OK(rc);
        char want[8][600];
        snprintf(want[0], 600, "%s_passkey_agnostic_accuracy.png", prefix);
        snprintf(want[1], 600, "%s_passkey_agnostic_accuracy_tokens.png", prefix);
        snprintf(want[2], 600, "%s_niah_multikey_agnostic_accuracy.png", prefix);
        snprintf(want[3], 600, "%s_niah_query_aware_accuracy.png", prefix);
        snprintf(want[4], 600, "%s_niah_query_aware_accuracy_tokens.png", prefix);
        for (int k = 0; k < 3; k++) memcpy(want[5 + k], heat[k], sizeof heat[k]);
        TT_CHECK(np == 8);
        for (int i = 0; i < 8; i++) {
            bool ok = s_has_path(paths, np, want[i]) && s_is_png(want[i]);
            if (!ok) fprintf(stderr, "  missing or not a PNG: %s\n", want[i]);
            TT_CHECK(ok);
        }
        for (int64_t i = 0; i < np; i++) TT_CHECK(s_is_png(paths[i]));
        char gone[600];
        snprintf(gone, sizeof gone, "%s_niah_query_aware_heatmap_1.png", prefix);
        TT_CHECK(!s_exists(gone));
        /* three panels side by side are wider than full alone, same height */
        uint32_t w3 = 0, h3 = 0, w1 = 0, h1 = 0;
        TT_CHECK(s_png_size(heat[0], &w3, &h3) && s_png_size(heat[2], &w1, &h1));
        fprintf(stderr, "  heatmaps: 3 panels %ux%u, 1 panel %ux%u\n", w3, h3, w1, h1);
        TT_CHECK(w3 > w1 + 200 && h3 == h1 && h1 >= 300);
        s_free_paths(paths, np);
    }
    TT_CHECK(s_dir_entries(tmpd) == 0); /* the temp dirs are gone */
    unsetenv("TMPDIR");

    /* rows with nothing to plot against a budget: no files, no error */
    TT_CASE("plots: nothing to plot, bad output");
    if (rc == 0) {
        eval_row one = tt_eval_row("jsonl", "agnostic", "full", -1, -1, true, 10, 10, 1);
        TT_OK(report_plots(prefix, &one, 1, &paths, &np));
        TT_CHECK(np == 0);
        s_free_paths(paths, np);
    }
    if (rc == 0) /* gnuplot cannot open the output */
        TT_FAILS(report_plots("/nonexistent-tis-dir/run", r, n, &paths, &np), TIS_EIO);
    TT_FAILS(report_plots(NULL, r, n, &paths, &np), TIS_EINVAL);
}

int main(void) {
    test_plots();
    return tt_done("test_report_plot");
}
