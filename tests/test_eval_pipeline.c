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

int main(void) {
    const char *bin = tt_bin("test_eval_pipeline");
    char tiny[512], data[512], a_csv[512], b_csv[512], c_csv[512], front[600], back[600], cmd[4096];
    static char out[1 << 16];
    snprintf(tiny, sizeof tiny, "%s", tt_path("tiny.gguf"));
    snprintf(data, sizeof data, "%s", tt_path("data.jsonl"));
    snprintf(a_csv, sizeof a_csv, "%s", tt_path("a.csv"));
    snprintf(b_csv, sizeof b_csv, "%s", tt_path("b.csv"));
    snprintf(c_csv, sizeof c_csv, "%s", tt_path("c.csv"));
    snprintf(front, sizeof front, "ipc://%s", tt_path("front.sock"));
    snprintf(back, sizeof back, "ipc://%s", tt_path("back.sock"));
    tiny_spec sp = tiny_spec_default();
    TT_OK(tiny_model_write(tiny, &sp));
    TT_OK(tt_write_qa_dataset(data, N_SAMPLES));
    const char *common = "--baseline full streaming snapkv tova knorm --cache_budgets 0.3 0.6 --protocol both "
                         "--max_new 6 --no_chat --no_plots";

    snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' %s --output '%s'", bin, tiny, data, common, a_csv);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
    snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' %s --workers 2 --output '%s'", bin, tiny, data,
             common, b_csv);
    int rc = tt_sh(cmd, out, sizeof out);
    TT_CHECK(rc == 0 && strstr(out, "2 workers"));
    if (rc) fprintf(stderr, "%s\n", out);
    TT_CHECK(s_same_rows(a_csv, b_csv) == 0);

    TT_CASE("named heads and unions: the same rows through the workers");
    /* the spec carries the --head_as entries (paths made absolute) and the
     * union's name; the workers' eval runner reads them as in process */
    {
        char hp[512], hb[600], u_csv[512], v_csv[512];
        snprintf(hp, sizeof hp, "%s", tt_path("hb.safetensors"));
        snprintf(hb, sizeof hb, "hb=%s", hp);
        snprintf(u_csv, sizeof u_csv, "%s", tt_path("u.csv"));
        snprintf(v_csv, sizeof v_csv, "%s", tt_path("v.csv"));
        model *m = NULL; /* a random head of the tiny model */
        head *h = NULL;
        TT_OK(model_load(&m, tiny));
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
            snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' %s --head_as '%s' %s --output '%s'", bin, tiny,
                     data, uni, hb, pass ? "--workers 2" : "", pass ? v_csv : u_csv);
            rc = tt_sh(cmd, out, sizeof out);
            TT_CHECK(rc == 0);
            if (rc) fprintf(stderr, "%s\n", out);
        }
        TT_CHECK(s_same_rows(u_csv, v_csv) == 0);
    }

    TT_CASE("q8_0 values, and q8_0 keys with their channel scales: the same rows through the workers");
    /* the block's value type crosses with it (KvLayout.v_dtype1), q8_0 keys'
     * scales in it; head_dim 32 holds q8_0 blocks */
    {
        char t32[512], m_csv[512], n_csv[512];
        snprintf(t32, sizeof t32, "%s", tt_path("tiny32.gguf"));
        snprintf(m_csv, sizeof m_csv, "%s", tt_path("m.csv"));
        snprintf(n_csv, sizeof n_csv, "%s", tt_path("n.csv"));
        tiny_spec s32 = tiny_spec_default();
        s32.d_model = 128;
        TT_OK(tiny_model_write(t32, &s32));
        const char *types[2] = {"f16,q8_0", "q8_0"};
        for (int t = 0; t < 2; t++) {
            for (int pass = 0; pass < 2; pass++) {
                snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' %s --kv_type %s %s --output '%s'", bin,
                         t32, data, common, types[t], pass ? "--workers 2" : "", pass ? n_csv : m_csv);
                rc = tt_sh(cmd, out, sizeof out);
                TT_CHECK(rc == 0);
                if (rc) fprintf(stderr, "%s\n", out);
            }
            TT_CHECK(s_same_rows(m_csv, n_csv) == 0);
            eval_row *m = NULL; /* each row names its cache, through the workers too */
            int64_t nm = 0;
            TT_OK(report_read_csv(n_csv, &m, &nm));
            TT_CHECK(nm > 0 && m && !strcmp(m[0].kv_type, types[t]) && !strcmp(m[nm - 1].kv_type, types[t]));
            free(m);
        }
    }

    TT_CASE("the answer cap from the task");
    /* no --max_new: each sample's cap goes with its job; the same rows and
     * truncated flags as in process */
    {
        char d_csv[512], e_csv[512];
        snprintf(d_csv, sizeof d_csv, "%s", tt_path("d.csv"));
        snprintf(e_csv, sizeof e_csv, "%s", tt_path("e.csv"));
        const char *auto_cap = "--baseline full snapkv --cache_budgets 0.3 --protocol both --no_chat --no_plots";
        snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' %s --output '%s'", bin, tiny, data, auto_cap,
                 d_csv);
        TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
        snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' %s --workers 2 --output '%s'", bin, tiny, data,
                 auto_cap, e_csv);
        rc = tt_sh(cmd, out, sizeof out);
        TT_CHECK(rc == 0);
        if (rc) fprintf(stderr, "%s\n", out);
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

    TT_CASE("resume");
    /* --resume after a run stopped after 3 samples: the rest is run, the
     * rows are the uninterrupted run's (in process and through workers) */
    {
        eval_row *all = NULL;
        int64_t n_all = 0, per = 0;
        TT_OK(report_read_csv(a_csv, &all, &n_all));
        for (int64_t i = 0; i < n_all; i++) per += !strcmp(all[i].sample_id, "s0");
        char r_csv[512];
        snprintf(r_csv, sizeof r_csv, "%s", tt_path("r.csv"));
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
            snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' %s --resume %s --output '%s'", bin, tiny,
                     data, common, pass == 1 ? "--workers 2" : "", r_csv);
            rc = tt_sh(cmd, out, sizeof out);
            TT_CHECK(rc == 0 && strstr(out, "of 3 samples already in"));
            if (pass == 2) TT_CHECK(strstr(out, "the last sample, cut short, runs again") && strstr(out, "unfinished last line"));
            if (rc) fprintf(stderr, "%s\n", out);
            TT_CHECK(s_same_rows(a_csv, r_csv) == 0);
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
        TT_CHECK(per > 1);
        /* resumed with other options (a budget more): an error, the rows stay */
        TT_OK(report_write_csv(r_csv, all, 3 * per));
        char *before = tt_read_file(r_csv, NULL);
        snprintf(cmd, sizeof cmd,
                 "'%s' eval -m '%s' --dataset '%s' --baseline full streaming snapkv tova knorm --cache_budgets 0.3 "
                 "0.6 0.9 --protocol both --max_new 6 --no_chat --no_plots --resume --output '%s'", bin, tiny, data,
                 r_csv);
        rc = tt_sh(cmd, out, sizeof out);
        TT_CHECK(rc == 1 && strstr(out, "sample s0 has") && strstr(out, "resume with the options"));
        char *after = tt_read_file(r_csv, NULL);
        TT_CHECK(before && after && !strcmp(before, after));
        free(before);
        free(after);
        /* ... or another policy */
        snprintf(cmd, sizeof cmd,
                 "'%s' eval -m '%s' --dataset '%s' --baseline full streaming snapkv tova random --cache_budgets 0.3 "
                 "0.6 --protocol both --max_new 6 --no_chat --no_plots --resume --output '%s'", bin, tiny, data, r_csv);
        rc = tt_sh(cmd, out, sizeof out);
        TT_CHECK(rc == 1 && strstr(out, "policy 'knorm'"));
        /* ... or another cache: its rows say which they ran with */
        before = tt_read_file(r_csv, NULL);
        snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' %s --kv_type f32 --resume --output '%s'", bin,
                 tiny, data, common, r_csv);
        rc = tt_sh(cmd, out, sizeof out);
        TT_CHECK(rc == 1 && strstr(out, "ran with a f16 KV cache and this run's is f32") &&
                 strstr(out, "--kv_type f16"));
        if (rc != 1) fprintf(stderr, "%s\n", out);
        after = tt_read_file(r_csv, NULL);
        TT_CHECK(before && after && !strcmp(before, after));
        free(before);
        free(after);
        free(all);
    }

    TT_CASE("a failing job");
    /* a running serve: a failing job is an Error, then the worker serves on */
    const char *sa[] = {bin, "serve", "--front", front, "--back", back, "--prefill", "1", "--decode", "0", "-m", tiny,
                        "--arena_mb", "8", "--heartbeat_ms", "200", NULL};
    pid_t srv = tt_spawn(sa, "/dev/null", NULL);
    snprintf(cmd, sizeof cmd,
             "'%s' eval -m '%s' --dataset '%s' --baseline tis --head /nonexistent/head.safetensors --no_chat "
             "--no_plots --connect '%s' --output '%s'",
             bin, tiny, data, front, c_csv);
    rc = tt_sh(cmd, out, sizeof out);
    TT_CHECK(rc == 1 && strstr(out, "/nonexistent/head.safetensors"));
    if (rc != 1) fprintf(stderr, "%s\n", out);
    snprintf(cmd, sizeof cmd, "'%s' eval -m '%s' --dataset '%s' %s --connect '%s' --output '%s'", bin, tiny, data,
             common, front, c_csv);
    rc = tt_sh(cmd, out, sizeof out);
    TT_CHECK(rc == 0);
    if (rc) fprintf(stderr, "%s\n", out);
    TT_CHECK(s_same_rows(a_csv, c_csv) == 0);
    TT_CASE("label through serve");
    /* tis label through the running serve's worker: the in-process shards */
    char l1[512], l2[512], l3[512];
    snprintf(l1, sizeof l1, "%s", tt_path("labels1"));
    snprintf(l2, sizeof l2, "%s", tt_path("labels2"));
    snprintf(l3, sizeof l3, "%s", tt_path("labels3"));
    const char *lab = "--layer 1 --per_head --shard_size 3 --max_new 4 --no_chat";
    snprintf(cmd, sizeof cmd, "'%s' label -m '%s' --dataset '%s' %s --output '%s'", bin, tiny, data, lab, l1);
    TT_CHECK(tt_sh(cmd, out, sizeof out) == 0);
    snprintf(cmd, sizeof cmd, "'%s' label -m '%s' --dataset '%s' %s --connect '%s' --output '%s'", bin, tiny, data,
             lab, front, l2);
    rc = tt_sh(cmd, out, sizeof out);
    TT_CHECK(rc == 0);
    if (rc) fprintf(stderr, "%s\n", out);
    snprintf(cmd, sizeof cmd, "'%s' label -m '%s' --dataset '%s' %s --workers 2 --output '%s'", bin, tiny, data,
             lab, l3);
    rc = tt_sh(cmd, out, sizeof out);
    TT_CHECK(rc == 0);
    if (rc) fprintf(stderr, "%s\n", out);
    TT_CASE("a worker killed");
    /* and with a worker killed (-9) at its second job: retried on the other,
     * every id once, the same shards */
    char l4[512];
    snprintf(l4, sizeof l4, "%s", tt_path("labels4"));
    snprintf(cmd, sizeof cmd, "TIS_FAULT_EXIT=prefill-0:2 '%s' label -m '%s' --dataset '%s' %s --workers 2 --output '%s'",
             bin, tiny, data, lab, l4);
    rc = tt_sh(cmd, out, sizeof out);
    TT_CHECK(rc == 0);
    if (rc) fprintf(stderr, "%s\n", out);
    const char *files[] = {"manifest.jsonl", "shard-00000.safetensors", "shard-00001.safetensors",
                           "shard-00002.safetensors"};
    const char *dirs[3] = {l2, l3, l4};
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
        char p1[700];
        snprintf(p1, sizeof p1, "%s/%s", l1, files[f]);
        size_t n1 = 0;
        char *a = tt_read_file(p1, &n1);
        TT_CHECK(a && n1 > 0);
        for (int d = 0; d < 3; d++) {
            char p2[700];
            snprintf(p2, sizeof p2, "%s/%s", dirs[d], files[f]);
            size_t n2 = 0;
            char *b = tt_read_file(p2, &n2);
            bool same = a && b && n1 == n2 && !memcmp(a, b, n1);
            TT_CHECK(same);
            if (!same) fprintf(stderr, "%s: %zu vs %zu bytes (run %d)\n", files[f], n1, n2, d + 2);
            free(b);
        }
        free(a);
    }

    kill(srv, SIGTERM);
    TT_CHECK(tt_wait(srv, 30) == 0);
    return tt_done("test_eval_pipeline");
}
