/* test_eval_pipeline: `tis eval --workers N` and `tis eval --connect EP`
 * spread the samples over pipeline workers and give the in-process run's
 * rows (same order, same answers, scores and KV bytes; only timings
 * differ); a job that fails on a worker is a clear error and the worker
 * serves the next job. `tis label --workers N` writes the in-process
 * run's shards and manifest, byte for byte (labels cross by arena handle). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "head.h"
#include "model.h"
#include "eval_rows.h"
#include "report.h"
#include "tiny_model.h"
#include "tt.h"

enum { N_SAMPLES = 7 };

/* Every column but the timings and the RSS. */
static int s_same_rows(const char *a_csv, const char *b_csv) {
    eval_row *a = NULL, *b = NULL;
    int64_t na = 0, nb = 0;
    int bad = 0;
    if (report_read_csv(a_csv, &a, &na) || report_read_csv(b_csv, &b, &nb)) return 1;
    if (na != nb || na == 0) bad++;
    for (int64_t i = 0; !bad && i < na; i++) {
        const eval_row *x = &a[i], *y = &b[i];
        if (strcmp(x->sample_id, y->sample_id) || strcmp(x->policy, y->policy) ||
            strcmp(x->protocol, y->protocol) || strcmp(x->benchmark, y->benchmark) ||
            strcmp(x->answer, y->answer) || strcmp(x->expected, y->expected) || x->budget != y->budget ||
            x->budget_tokens != y->budget_tokens || x->correct != y->correct || x->exact != y->exact ||
            x->hallucinated != y->hallucinated || x->kept_tokens != y->kept_tokens || x->kv_bytes != y->kv_bytes ||
            x->full_kv_bytes != y->full_kv_bytes || x->context_tokens != y->context_tokens ||
            x->n_generated != y->n_generated || strcmp(x->kv_type, y->kv_type) || !x->kv_type[0]) {
            fprintf(stderr, "row %lld differs: %s/%s/%s '%s' vs %s/%s/%s '%s'\n", (long long)i, x->sample_id,
                    x->policy, x->protocol, x->answer, y->sample_id, y->policy, y->protocol, y->answer);
            bad++;
        }
    }
    free(a);
    free(b);
    return bad;
}

/* What every case shares: the binary, the tiny model, the dataset, the
 * in-process reference rows (a.csv) and the serve endpoints. */
static struct {
    const char *bin;
    char tiny[512], data[512], a_csv[512], front[600], back[600];
} g;
static const char *const s_common = "--baseline full streaming snapkv tova knorm --cache_budgets 0.3 0.6 "
                                    "--protocol both --max_new 6 --no_chat --no_plots";
static char s_out[1 << 16];

/* Runs cmd; it must succeed (its output shown when it does not). */
static void s_ok(const char *cmd) {
    int rc = tt_sh(cmd, s_out, sizeof s_out);
    TT_CHECK(rc == 0);
    if (rc) fprintf(stderr, "%s\n", s_out);
}

static void s_workers_same(void) {
    char cmd[4096], b_csv[512];
    snprintf(b_csv, sizeof b_csv, "%s", tt_path("b.csv"));
    snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' %s --output '%s'", g.bin, g.tiny, g.data, s_common,
             g.a_csv);
    TT_CHECK(tt_sh(cmd, s_out, sizeof s_out) == 0);
    snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' %s --workers 2 --output '%s'", g.bin, g.tiny, g.data,
             s_common, b_csv);
    int rc = tt_sh(cmd, s_out, sizeof s_out);
    TT_CHECK(rc == 0 && strstr(s_out, "2 workers"));
    if (rc) fprintf(stderr, "%s\n", s_out);
    TT_CHECK(s_same_rows(g.a_csv, b_csv) == 0);
}

static void s_named_heads(void) {
    TT_CASE("named heads and unions: the same rows through the workers");
    /* the spec carries the --head_as entries (paths made absolute) and the
     * union's name; the workers' eval runner reads them as in process */
    char cmd[4096], hp[512], hb[600], u_csv[512], v_csv[512];
    snprintf(hp, sizeof hp, "%s", tt_path("hb.safetensors"));
    snprintf(hb, sizeof hb, "hb=%s", hp);
    snprintf(u_csv, sizeof u_csv, "%s", tt_path("u.csv"));
    snprintf(v_csv, sizeof v_csv, "%s", tt_path("v.csv"));
    model *m = NULL; /* a random head of the tiny model */
    head *h = NULL;
    TT_OK(model_load(&m, g.tiny));
    if (m) {
        head_config hc = {.kind = HEAD_LINEAR, .d_model = m->config.d_model, .layer = 1};
        snprintf(hc.base_model, sizeof hc.base_model, "%s", m->config.name);
        TT_OK(head_new(&h, &hc, 5));
        if (h) TT_OK(head_save(h, hp));
    }
    head_destroy(&h);
    model_destroy(&m);
    const char *uni = "--baseline full 'hb+lpool3|snapkv' hb 'streaming|knorm' --cache_budgets 0.3 --protocol both "
                      "--max_new 6 --no_chat --no_plots";
    for (int pass = 0; pass < 2; pass++) {
        snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' %s --head_as '%s' %s --output '%s'", g.bin, g.tiny,
                 g.data, uni, hb, pass ? "--workers 2" : "", pass ? v_csv : u_csv);
        s_ok(cmd);
    }
    TT_CHECK(s_same_rows(u_csv, v_csv) == 0);
}

static void s_kv_types(void) {
    TT_CASE("q8_0 values, and q8_0 keys with their channel scales: the same rows through the workers");
    /* the block's value type crosses with it (KvLayout.v_dtype1), q8_0 keys'
     * scales in it; head_dim 32 holds q8_0 blocks */
    char cmd[4096], t32[512], m_csv[512], n_csv[512];
    snprintf(t32, sizeof t32, "%s", tt_path("tiny32.gguf"));
    snprintf(m_csv, sizeof m_csv, "%s", tt_path("m.csv"));
    snprintf(n_csv, sizeof n_csv, "%s", tt_path("n.csv"));
    tiny_spec s32 = tiny_spec_default();
    s32.d_model = 128;
    TT_OK(tiny_model_write(t32, &s32));
    const char *types[2] = {"f16,q8_0", "q8_0"};
    for (int t = 0; t < 2; t++) {
        for (int pass = 0; pass < 2; pass++) {
            snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' %s --kv_type %s %s --output '%s'", g.bin, t32,
                     g.data, s_common, types[t], pass ? "--workers 2" : "", pass ? n_csv : m_csv);
            s_ok(cmd);
        }
        TT_CHECK(s_same_rows(m_csv, n_csv) == 0);
        eval_row *m = NULL; /* each row names its cache, through the workers too */
        int64_t nm = 0;
        TT_OK(report_read_csv(n_csv, &m, &nm));
        TT_CHECK(nm > 0 && m && !strcmp(m[0].kv_type, types[t]) && !strcmp(m[nm - 1].kv_type, types[t]));
        free(m);
    }
}

static void s_answer_cap(void) {
    TT_CASE("the answer cap from the task");
    /* no --max_new: each sample's cap goes with its job; the same rows and
     * truncated flags as in process */
    char cmd[4096], d_csv[512], e_csv[512];
    snprintf(d_csv, sizeof d_csv, "%s", tt_path("d.csv"));
    snprintf(e_csv, sizeof e_csv, "%s", tt_path("e.csv"));
    const char *auto_cap = "--baseline full snapkv --cache_budgets 0.3 --protocol both --no_chat --no_plots";
    snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' %s --output '%s'", g.bin, g.tiny, g.data, auto_cap,
             d_csv);
    TT_CHECK(tt_sh(cmd, s_out, sizeof s_out) == 0);
    snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' %s --workers 2 --output '%s'", g.bin, g.tiny, g.data,
             auto_cap, e_csv);
    s_ok(cmd);
    TT_CHECK(s_same_rows(d_csv, e_csv) == 0);
    eval_row *d = NULL, *e = NULL;
    int64_t nd = 0, ne = 0, n_trunc = 0, longest = 0;
    TT_OK(report_read_csv(d_csv, &d, &nd));
    TT_OK(report_read_csv(e_csv, &e, &ne));
    for (int64_t i = 0; i < nd && i < ne; i++) {
        TT_CHECK(d[i].truncated == e[i].truncated);
        n_trunc += d[i].truncated == 1;
        if (d[i].n_generated > longest) longest = d[i].n_generated;
    }
    TT_CHECK(nd == ne && n_trunc > 0 && longest > 6); /* past the old 6, up to answer + 32 */
    free(d);
    free(e);
}

/* --resume after a run stopped after 3 samples: the rest is run, the rows
 * are the uninterrupted run's (in process and through workers). all:
 * the reference rows, per of them a sample. */
static void s_resume_passes(const eval_row *all, int64_t per, const char *r_csv) {
    char cmd[4096];
    for (int pass = 0; pass < 3 && per > 1; pass++) {
        TT_OK(report_write_csv(r_csv, all, 3 * per));
        if (pass == 2) {
            /* killed while appending: a part of the 4th sample's rows, the
             * last of them cut mid-line; that sample is run again */
            TT_OK(report_append_csv(r_csv, all + 3 * per, per / 2));
            FILE *f = fopen(r_csv, "ab");
            TT_CHECK(f && fputs("s3,snapkv,agnos", f) >= 0);
            if (f) fclose(f);
        }
        snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' %s --resume %s --output '%s'", g.bin, g.tiny,
                 g.data, s_common, pass == 1 ? "--workers 2" : "", r_csv);
        int rc = tt_sh(cmd, s_out, sizeof s_out);
        TT_CHECK(rc == 0 && strstr(s_out, "of 3 samples already in"));
        if (pass == 2)
            TT_CHECK(strstr(s_out, "the last sample, cut short, runs again") && strstr(s_out, "unfinished last line"));
        if (rc) fprintf(stderr, "%s\n", s_out);
        TT_CHECK(s_same_rows(g.a_csv, r_csv) == 0);
        /* the summary's history: one resumption more each pass, the
         * earlier ones carried (the first had no summary before it) */
        char *js = tt_read_file(tt_path("r.json"), NULL), *md = tt_read_file(tt_path("r.md"), NULL);
        int n_res = 0;
        for (const char *p = js; p && (p = strstr(p, "resumed (--resume): the rows of 3 samples kept")); p++) n_res++;
        TT_CHECK(n_res == pass + 1);
        TT_CHECK(js && strstr(js, "\"changes\":") && strstr(js, "kept, from an earlier run (no summary of it)"));
        TT_CHECK(js && (pass == 0) == !strstr(js, "kept, made by `"));
        TT_CHECK(md && strstr(md, "Changed since:\n\n- ") && strstr(md, "(no summary of it)"));
        free(js);
        free(md);
    }
}

/* Resumed with other options: an error, the rows stay. */
static void s_resume_refused(const eval_row *all, int64_t per, const char *r_csv) {
    char cmd[4096];
    /* a budget more */
    TT_OK(report_write_csv(r_csv, all, 3 * per));
    char *before = tt_read_file(r_csv, NULL);
    snprintf(cmd, sizeof cmd,
             "'%s' eval -m '%s' --dataset '%s' --baseline full streaming snapkv tova knorm --cache_budgets 0.3 "
             "0.6 0.9 --protocol both --max_new 6 --no_chat --no_plots --resume --output '%s'", g.bin, g.tiny, g.data,
             r_csv);
    int rc = tt_sh(cmd, s_out, sizeof s_out);
    TT_CHECK(rc == 1 && strstr(s_out, "sample s0 has") && strstr(s_out, "resume with the options"));
    char *after = tt_read_file(r_csv, NULL);
    TT_CHECK(before && after && !strcmp(before, after));
    free(before);
    free(after);
    /* ... or another policy */
    snprintf(cmd, sizeof cmd,
             "'%s' eval -m '%s' --dataset '%s' --baseline full streaming snapkv tova random --cache_budgets 0.3 "
             "0.6 --protocol both --max_new 6 --no_chat --no_plots --resume --output '%s'", g.bin, g.tiny, g.data,
             r_csv);
    rc = tt_sh(cmd, s_out, sizeof s_out);
    TT_CHECK(rc == 1 && strstr(s_out, "policy 'knorm'"));
    /* ... or another cache: its rows say which they ran with */
    before = tt_read_file(r_csv, NULL);
    snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' %s --kv_type f32 --resume --output '%s'", g.bin,
             g.tiny, g.data, s_common, r_csv);
    rc = tt_sh(cmd, s_out, sizeof s_out);
    TT_CHECK(rc == 1 && strstr(s_out, "ran with a f16 KV cache and this run's is f32") &&
             strstr(s_out, "--kv_type f16"));
    if (rc != 1) fprintf(stderr, "%s\n", s_out);
    after = tt_read_file(r_csv, NULL);
    TT_CHECK(before && after && !strcmp(before, after));
    free(before);
    free(after);
}

static void s_resume(void) {
    TT_CASE("resume");
    eval_row *all = NULL;
    int64_t n_all = 0, per = 0;
    TT_OK(report_read_csv(g.a_csv, &all, &n_all));
    for (int64_t i = 0; i < n_all; i++) per += !strcmp(all[i].sample_id, "s0");
    char r_csv[512];
    snprintf(r_csv, sizeof r_csv, "%s", tt_path("r.csv"));
    s_resume_passes(all, per, r_csv);
    TT_CHECK(per > 1);
    s_resume_refused(all, per, r_csv);
    free(all);
}

/* Through a running serve: a failing job is an Error, then the worker
 * serves on. */
static void s_failing_job(void) {
    TT_CASE("a failing job");
    char cmd[4096], c_csv[512];
    snprintf(c_csv, sizeof c_csv, "%s", tt_path("c.csv"));
    snprintf(cmd, sizeof cmd,
             "'%s' eval -m '%s' --dataset '%s' --baseline tis --head /nonexistent/head.safetensors --no_chat "
             "--no_plots --connect '%s' --output '%s'",
             g.bin, g.tiny, g.data, g.front, c_csv);
    int rc = tt_sh(cmd, s_out, sizeof s_out);
    TT_CHECK(rc == 1 && strstr(s_out, "/nonexistent/head.safetensors"));
    if (rc != 1) fprintf(stderr, "%s\n", s_out);
    snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' %s --connect '%s' --output '%s'", g.bin, g.tiny,
             g.data, s_common, g.front, c_csv);
    s_ok(cmd);
    TT_CHECK(s_same_rows(g.a_csv, c_csv) == 0);
}

/* tis label in process, through the running serve's worker, through
 * workers of its own, and with one of them killed (-9) at its second job
 * (retried on the other, every id once): the same shards, byte for byte. */
static void s_label(void) {
    TT_CASE("label through serve");
    static const char *const names[4] = {"labels1", "labels2", "labels3", "labels4"};
    char cmd[4096], dirs[4][512];
    for (int d = 0; d < 4; d++) snprintf(dirs[d], sizeof dirs[d], "%s", tt_path(names[d]));
    const char *lab = "--layer 1 --per_head --shard_size 3 --max_new 4 --no_chat";
    snprintf(cmd, sizeof cmd, "'%s' label -m '%s' --dataset '%s' %s --output '%s'", g.bin, g.tiny, g.data, lab,
             dirs[0]);
    TT_CHECK(tt_sh(cmd, s_out, sizeof s_out) == 0);
    snprintf(cmd, sizeof cmd, "'%s' label -m '%s' --dataset '%s' %s --connect '%s' --output '%s'", g.bin, g.tiny,
             g.data, lab, g.front, dirs[1]);
    s_ok(cmd);
    snprintf(cmd, sizeof cmd, "'%s' label -m '%s' --dataset '%s' %s --workers 2 --output '%s'", g.bin, g.tiny, g.data,
             lab, dirs[2]);
    s_ok(cmd);
    TT_CASE("a worker killed");
    snprintf(cmd, sizeof cmd, "TIS_FAULT_EXIT=prefill-0:2 '%s' label -m '%s' --dataset '%s' %s --workers 2 --output '%s'",
             g.bin, g.tiny, g.data, lab, dirs[3]);
    s_ok(cmd);
    const char *files[] = {"manifest.jsonl", "shard-00000.safetensors", "shard-00001.safetensors",
                           "shard-00002.safetensors"};
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
        char p1[700];
        snprintf(p1, sizeof p1, "%s/%s", dirs[0], files[f]);
        size_t n1 = 0;
        char *a = tt_read_file(p1, &n1);
        TT_CHECK(a && n1 > 0);
        for (int d = 1; d < 4; d++) {
            char p2[700];
            snprintf(p2, sizeof p2, "%s/%s", dirs[d], files[f]);
            size_t n2 = 0;
            char *b = tt_read_file(p2, &n2);
            bool same = a && b && n1 == n2 && !memcmp(a, b, n1);
            TT_CHECK(same);
            if (!same) fprintf(stderr, "%s: %zu vs %zu bytes (run %d)\n", files[f], n1, n2, d + 1);
            free(b);
        }
        free(a);
    }
}

int main(void) {
    g.bin = tt_bin("test_eval_pipeline");
    snprintf(g.tiny, sizeof g.tiny, "%s", tt_path("tiny.gguf"));
    snprintf(g.data, sizeof g.data, "%s", tt_path("data.jsonl"));
    snprintf(g.a_csv, sizeof g.a_csv, "%s", tt_path("a.csv"));
    snprintf(g.front, sizeof g.front, "ipc://%s", tt_path("front.sock"));
    snprintf(g.back, sizeof g.back, "ipc://%s", tt_path("back.sock"));
    tiny_spec sp = tiny_spec_default();
    TT_OK(tiny_model_write(g.tiny, &sp));
    TT_OK(tt_write_qa_dataset(g.data, N_SAMPLES));

    s_workers_same();
    s_named_heads();
    s_kv_types();
    s_answer_cap();
    s_resume();
    const char *sa[] = {g.bin, "serve", "--front", g.front, "--back", g.back, "--prefill", "1", "--decode", "0", "-m",
                        g.tiny, "--arena_mb", "8", "--heartbeat_ms", "200", NULL};
    pid_t srv = tt_spawn(sa, "/dev/null", NULL);
    s_failing_job();
    s_label();
    kill(srv, SIGTERM);
    TT_CHECK(tt_wait(srv, 30) == 0);
    return tt_done("test_eval_pipeline");
}
