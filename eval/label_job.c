/* label_job: a dataset labelled into resumable shards (tis label). */
#include "label_job.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "eval_job.h"
#include "tis_error.h"

static int s_fail(const char *what) {
    fprintf(stderr, "tis: %s: %s\n", what, tis_last_error());
    return 1;
}

/* ---- the output directory ----------------------------------------------- */

/* DIR/label_config.json pins the settings (want, which this frees): written
 * when absent, else it must hold the same (a resumed run). */
static int s_pin_config(const char *dir, cJSON *want) {
    char path[1100];
    snprintf(path, sizeof path, "%s/label_config.json", dir);
    int rc = 0;
    if (access(path, F_OK) == 0) {
        char *txt = eval_job_slurp(path, 1 << 16);
        cJSON *have = txt ? cJSON_Parse(txt) : NULL;
        free(txt);
        if (!have || !cJSON_Compare(have, want, true))
            rc = tis_error(TIS_EINVAL, "%s holds labels made with other settings (%s); use another --output",
                           dir, path);
        cJSON_Delete(have);
    } else {
        char *txt = cJSON_Print(want);
        FILE *f = txt ? fopen(path, "wb") : NULL;
        if (!f || fputs(txt, f) < 0 || fclose(f) != 0)
            rc = tis_error(TIS_EIO, "cannot write %s: %s", path, strerror(errno));
        free(txt);
    }
    cJSON_Delete(want);
    return rc;
}

static int s_check_config(const char *dir, const char *model_name, const label_config *cfg) {
    cJSON *want = cJSON_CreateObject();
    cJSON_AddStringToObject(want, "format", "tis-labels-1");
    cJSON_AddStringToObject(want, "model", model_name);
    cJSON_AddNumberToObject(want, "layer", (double)cfg->layer);
    cJSON_AddBoolToObject(want, "per_head", cfg->per_head);
    cJSON_AddBoolToObject(want, "use_model_answer", cfg->use_model_answer);
    cJSON_AddBoolToObject(want, "chat", cfg->chat);
    /* the target joined later: answer labels keep the file they always had */
    if (cfg->target != HEAD_TARGET_ANSWER) cJSON_AddStringToObject(want, "target", head_target_name(cfg->target));
    return s_pin_config(dir, want);
}

int label_manifest_read(const char *path, char ***ids, int64_t *n_ids, int64_t *next_shard) {
    *ids = NULL;
    *n_ids = 0;
    *next_shard = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return errno == ENOENT ? 0 : tis_error(TIS_EIO, "cannot read %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    int64_t lineno = 0, cap_ids = 0;
    int rc = 0;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        cJSON *o = cJSON_Parse(line);
        const cJSON *id = o ? cJSON_GetObjectItemCaseSensitive(o, "id") : NULL;
        if (!cJSON_IsString(id)) {
            cJSON_Delete(o);
            rc = tis_error(TIS_EFORMAT, "%s:%lld: not a manifest line", path, (long long)lineno);
            break;
        }
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(o, "shard_index");
        double si = cJSON_IsNumber(sh) ? sh->valuedouble : 0;
        if (sh && (!cJSON_IsNumber(sh) || !(si >= 0 && si < 1e9) || si != (double)(int64_t)si)) {
            cJSON_Delete(o); /* (a huge one was cast to int64_t: undefined) */
            rc = tis_error(TIS_EFORMAT, "%s:%lld: shard_index is not a shard number", path, (long long)lineno);
            break;
        }
        if (sh && (int64_t)si + 1 > *next_shard) *next_shard = (int64_t)si + 1;
        if (*n_ids == cap_ids) {
            cap_ids = cap_ids ? 2 * cap_ids : 64;
            char **p = realloc(*ids, (size_t)cap_ids * sizeof *p);
            if (!p) {
                cJSON_Delete(o);
                rc = tis_error(TIS_ENOMEM, "out of memory");
                break;
            }
            *ids = p;
        }
        char *dup = strdup(id->valuestring);
        cJSON_Delete(o);
        if (!dup) {
            rc = tis_error(TIS_ENOMEM, "out of memory");
            break;
        }
        (*ids)[(*n_ids)++] = dup;
    }
    free(line);
    fclose(f);
    return rc;
}

/* Manifest lines go after their shard is in place, in one write + fsync. */
static int s_append(const char *path, const char *text) {
    FILE *f = fopen(path, "ab");
    if (!f) return tis_error(TIS_EIO, "cannot open %s: %s", path, strerror(errno));
    bool ok = fputs(text, f) >= 0 && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (fclose(f) != 0) ok = false;
    return ok ? 0 : tis_error(TIS_EIO, "cannot write %s: %s", path, strerror(errno));
}

static char *s_cat(char *a, const char *b) {
    size_t la = a ? strlen(a) : 0, lb = strlen(b);
    char *s = realloc(a, la + lb + 1);
    if (!s) {
        free(a);
        return NULL;
    }
    memcpy(s + la, b, lb + 1);
    return s;
}

/* ---- the in-process runner ---------------------------------------------- */

typedef struct local_runner {
    forward_state *st;
    chat_template ct;
    label_config cfg;
    const bench_sample *const *todo;
    int64_t n, next;
} local_runner;

static int s_local_open(void *ctx, const model *m, const label_config *cfg, const bench_sample *const *todo,
                        int64_t n) {
    local_runner *r = ctx;
    r->cfg = *cfg;
    r->todo = todo;
    r->n = n;
    if (forward_state_new(&r->st, m, backend_cpu(), 512) ||
        (cfg->chat && chat_template_init(&r->ct, tokenizer_chat_template(m->tok))))
        return -s_fail("setting up");
    return 0;
}

static int s_local_next(void *ctx, label_sample *ls, char *why, size_t why_cap) {
    local_runner *r = ctx;
    TIS_ASSERT(r->next < r->n); /* the job asks for as many as it gave */
    const bench_sample *s = r->todo[r->next++];
    const chat_template *ct = r->cfg.chat ? &r->ct : NULL;
    int rc = r->cfg.target == HEAD_TARGET_RECON      ? label_run_recon(r->st, ct, &r->cfg, s, ls)
             : r->cfg.target == HEAD_TARGET_SELFINFO ? label_run_selfinfo(r->st, ct, &r->cfg, s, ls)
                                                     : label_run(r->st, ct, &r->cfg, s, ls);
    if (rc == 0) return 0;
    snprintf(why, why_cap, "%s", tis_last_error());
    return 1;
}

static void s_local_close(void *ctx) {
    local_runner *r = ctx;
    chat_template_free(&r->ct);
    forward_state_destroy(&r->st);
}

/* ---- the job ------------------------------------------------------------ */

typedef struct labeller {
    const label_job_config *c;
    const model *m;
    label_config cfg;             /* c->label resolved against the model */
    bench_set *sets;
    int n_sets;
    char manifest[1100];
    char **done_ids;              /* [n_done] ids in the manifest */
    int64_t n_done, next_shard;
    label_sample *pending;        /* [shard_size] labelled, not yet in a shard */
    int64_t n_pending;
    char *pending_lines;          /* their manifest lines (and skipped samples') */
    int64_t shards_written, labelled, todo;
} labeller;

static bool s_done(const labeller *L, const char *id) {
    for (int64_t i = 0; i < L->n_done; i++)
        if (!strcmp(L->done_ids[i], id)) return true;
    return false;
}

/* The manifest line of a sample: where its labels are, or why it was skipped. */
static bool s_note(labeller *L, const char *bench, const bench_sample *smp, const label_sample *ls, const char *why) {
    cJSON *line = cJSON_CreateObject();
    cJSON_AddStringToObject(line, "id", smp->id);
    cJSON_AddStringToObject(line, "benchmark", bench);
    if (why) {
        cJSON_AddStringToObject(line, "skipped", why);
    } else {
        char shard[64];
        snprintf(shard, sizeof shard, "shard-%05lld.safetensors", (long long)L->next_shard);
        cJSON_AddStringToObject(line, "shard", shard);
        cJSON_AddNumberToObject(line, "shard_index", (double)L->next_shard);
        cJSON_AddNumberToObject(line, "index", (double)L->n_pending);
        cJSON_AddNumberToObject(line, "n_tokens", (double)ls->n_tokens);
        cJSON_AddNumberToObject(line, "n_ctx", (double)ls->n_ctx);
        cJSON_AddStringToObject(line, "answer", ls->answer ? ls->answer : "");
        if (L->cfg.target != HEAD_TARGET_ANSWER) {
            cJSON_AddStringToObject(line, "target", head_target_name(L->cfg.target));
            cJSON_AddNumberToObject(line, "seconds", round(ls->seconds * 1000) / 1000);
        } else {
            cJSON_AddStringToObject(line, "answer", ls->answer ? ls->answer : "");
            cJSON_AddStringToObject(line, "answer_source", ls->answer_from_model ? "model" : "given");
        }
    }
    char *txt = cJSON_PrintUnformatted(line);
    cJSON_Delete(line);
    L->pending_lines = txt ? s_cat(s_cat(L->pending_lines, txt), "\n") : (free(L->pending_lines), NULL);
    free(txt);
    return L->pending_lines != NULL;
}

/* A full shard (or the last one) to disk, then the manifest lines waiting. */
static int s_flush(labeller *L) {
    const label_job_config *c = L->c;
    bool last = L->labelled == L->todo;
    if (L->n_pending == c->shard_size || (last && L->n_pending > 0)) {
        char path[1200];
        snprintf(path, sizeof path, "%s/shard-%05lld.safetensors", c->outdir, (long long)L->next_shard);
        if (label_shard_write(path, L->m, &L->cfg, L->pending, L->n_pending)) return s_fail("writing a shard");
        L->shards_written++;
        if (c->on_shard) c->on_shard(c->on_shard_user, L->shards_written); /* before the manifest: the worst moment */
        for (int64_t k = 0; k < L->n_pending; k++) label_sample_free(&L->pending[k]);
        L->n_pending = 0;
        L->next_shard++;
    }
    if (L->n_pending == 0 && L->pending_lines) {
        if (s_append(L->manifest, L->pending_lines)) return s_fail("writing the manifest");
        free(L->pending_lines);
        L->pending_lines = NULL;
    }
    return 0;
}

/* Every sample not in the manifest, in order, through the runner. */
static int s_label_all(labeller *L, const label_job_runner *r) {
    double t0 = tis_now();
    for (int s = 0; s < L->n_sets; s++) {
        for (int64_t i = 0; i < L->sets[s].n; i++) {
            const bench_sample *smp = &L->sets[s].s[i];
            if (s_done(L, smp->id)) continue;
            label_sample *ls = &L->pending[L->n_pending];
            char why[512] = "";
            int lrc = r->next(r->ctx, ls, why, sizeof why);
            if (lrc < 0) return 1;
            if (lrc) fprintf(stderr, "\ntis label: sample %s skipped: %s\n", smp->id, why);
            if (!s_note(L, L->sets[s].name, smp, ls, lrc ? why : NULL)) {
                fprintf(stderr, "tis label: out of memory\n");
                return 1;
            }
            if (!lrc) L->n_pending++;
            L->labelled++;
            if (s_flush(L)) return 1;
            double el = tis_now() - t0, rate = (double)L->labelled / (el > 0 ? el : 1e-9);
            fprintf(stderr, "\r[label] %lld/%lld  %.2f samples/s  ETA %.0fs   ", (long long)L->labelled,
                    (long long)L->todo, rate, (double)(L->todo - L->labelled) / (rate > 0 ? rate : 1e-9));
        }
    }
    fprintf(stderr, "\n[label] done: %lld labelled in %.1f s, %lld shards in %s\n", (long long)L->labelled,
            tis_now() - t0, (long long)L->next_shard, L->c->outdir);
    return 0;
}

/* The output directory checked and its manifest read; the samples made. */
static int s_prepare(labeller *L) {
    const label_job_config *c = L->c;
    if (eval_job_mkdirs(c->outdir) != 0) {
        fprintf(stderr, "tis label: cannot create %s: %s\n", c->outdir, strerror(errno));
        return 1;
    }
    snprintf(L->manifest, sizeof L->manifest, "%s/manifest.jsonl", c->outdir);
    if (s_check_config(c->outdir, L->m->config.name, &L->cfg) ||
        label_manifest_read(L->manifest, &L->done_ids, &L->n_done, &L->next_shard))
        return s_fail("output directory");
    if (c->n_corpus > 0) {
        if (!(L->sets = calloc(1, sizeof *L->sets))) return s_fail("out of memory");
        L->n_sets = 1;
        if (label_corpus_samples(c->corpus, c->n_corpus, L->m->tok, c->corpus_tokens, c->corpus_max, &L->sets[0]))
            return s_fail("reading the corpus");
        return 0;
    }
    return eval_job_samples(c->dataset, c->benchmarks, c->n_benchmarks, &c->spec, L->m->tok, &L->sets, &L->n_sets);
}

/* The samples to do, in order (borrowed from the sets). */
static const bench_sample **s_todo(labeller *L, int64_t *total) {
    *total = 0;
    L->todo = 0;
    for (int s = 0; s < L->n_sets; s++)
        for (int64_t i = 0; i < L->sets[s].n; i++, ++*total) L->todo += !s_done(L, L->sets[s].s[i].id);
    const bench_sample **todo = malloc((size_t)(L->todo ? L->todo : 1) * sizeof *todo);
    for (int64_t s = 0, k = 0; todo && s < L->n_sets; s++)
        for (int64_t i = 0; i < L->sets[s].n; i++)
            if (!s_done(L, L->sets[s].s[i].id)) todo[k++] = &L->sets[s].s[i];
    return todo;
}

static void s_labeller_free(labeller *L) {
    for (int64_t k = 0; L->pending && k < L->c->shard_size; k++) label_sample_free(&L->pending[k]);
    free(L->pending);
    free(L->pending_lines);
    for (int64_t k = 0; k < L->n_done; k++) free(L->done_ids[k]);
    free(L->done_ids);
    eval_job_samples_free(&L->sets, L->n_sets);
}

/* Everything after the model is loaded. */
static int s_run(labeller *L) {
    const label_job_config *c = L->c;
    const model_config *mc = &L->m->config;
    L->cfg = c->label;
    if (L->cfg.layer < 0) L->cfg.layer = mc->n_layer;
    if (L->cfg.layer > mc->n_layer) {
        fprintf(stderr, "tis label: --layer %lld: the model has %lld layers\n", (long long)L->cfg.layer,
                (long long)mc->n_layer);
        return 2;
    }
    L->cfg.chat = L->cfg.chat && tokenizer_chat_template(L->m->tok) != NULL;
    if (L->cfg.target == HEAD_TARGET_RECON) L->cfg.per_head = true; /* the per-stream scores are the labels */
    if (L->cfg.target == HEAD_TARGET_SELFINFO && L->cfg.per_head) {
        fprintf(stderr, "tis label: --target selfinfo labels one score per token (no --per_head)\n");
        return 2;
    }
    if (L->cfg.target != HEAD_TARGET_ANSWER && c->runner) {
        fprintf(stderr, "tis label: --target %s labels in this process only (no --workers / --connect)\n",
                head_target_name(L->cfg.target));
        return 2;
    }
    if (!(L->pending = calloc((size_t)c->shard_size, sizeof *L->pending))) {
        fprintf(stderr, "tis label: out of memory\n");
        return 1;
    }
    int rc = s_prepare(L);
    if (rc) return rc;
    int64_t total = 0;
    const bench_sample **todo = s_todo(L, &total);
    if (!todo) {
        fprintf(stderr, "tis label: out of memory\n");
        return 1;
    }
    local_runner local = {0};
    label_job_runner in_process = {.open = s_local_open, .next = s_local_next, .close = s_local_close, .ctx = &local};
    const label_job_runner *r = c->runner ? c->runner : &in_process;
    fprintf(stderr, "[label] %s | %lld samples, %lld already in %s | layer %lld%s | shards of %lld%s\n", mc->name,
            (long long)total, (long long)(total - L->todo), c->outdir, (long long)L->cfg.layer,
            L->cfg.target == HEAD_TARGET_RECON      ? " | reconstruction labels (per kv head)"
            : L->cfg.target == HEAD_TARGET_SELFINFO ? " | self-information labels"
            : L->cfg.per_head                      ? " | per-head labels"
                                                   : "", (long long)c->shard_size, r->about ? r->about : "");
    rc = r->open(r->ctx, L->m, &L->cfg, todo, L->todo) ? 1 : s_label_all(L, r);
    if (r->close) r->close(r->ctx);
    free(todo);
    return rc;
}

int label_job_run(const label_job_config *c) {
    model *m = NULL;
    if (model_load(&m, c->model_path)) return s_fail("loading the model");
    labeller L = {.c = c, .m = m};
    int rc = s_run(&L);
    s_labeller_free(&L);
    model_destroy(&m);
    return rc;
}

/* ---- tis label --refeature ------------------------------------------------ */

/* DST/label_config.json: SRC's with the new layer; a resumed run must find
 * the same there. */
static int s_refeature_config(const char *src_dir, const char *dst_dir, int64_t layer) {
    char sp[1100];
    snprintf(sp, sizeof sp, "%s/label_config.json", src_dir);
    char *txt = eval_job_slurp(sp, 1 << 16);
    if (!txt) return TIS_EIO;
    cJSON *want = cJSON_Parse(txt);
    free(txt);
    if (!want || !cJSON_IsObject(want) || !cJSON_IsNumber(cJSON_GetObjectItem(want, "layer"))) {
        cJSON_Delete(want);
        return tis_error(TIS_EFORMAT, "%s: not a label configuration (an object with a layer)", sp);
    }
    cJSON_ReplaceItemInObject(want, "layer", cJSON_CreateNumber((double)layer));
    return s_pin_config(dst_dir, want);
}

/* SRC/manifest.jsonl copied as it is (the same samples in the same shards). */
static int s_copy_manifest(const char *src_dir, const char *dst_dir) {
    char sp[1100], dp[1100], tmp[1200];
    snprintf(sp, sizeof sp, "%s/manifest.jsonl", src_dir);
    snprintf(dp, sizeof dp, "%s/manifest.jsonl", dst_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", dp);
    FILE *in = fopen(sp, "rb");
    if (!in) return errno == ENOENT ? 0 : tis_error(TIS_EIO, "cannot open %s: %s", sp, strerror(errno));
    FILE *out = fopen(tmp, "wb");
    int rc = out ? 0 : tis_error(TIS_EIO, "cannot write %s: %s", tmp, strerror(errno));
    char buf[65536];
    for (size_t n; !rc && (n = fread(buf, 1, sizeof buf, in)) > 0;)
        if (fwrite(buf, 1, n, out) != n) rc = tis_error(TIS_EIO, "cannot write %s: %s", tmp, strerror(errno));
    fclose(in);
    if (out && fclose(out) != 0 && !rc) rc = tis_error(TIS_EIO, "cannot write %s: %s", tmp, strerror(errno));
    if (!rc && rename(tmp, dp) != 0) rc = tis_error(TIS_EIO, "cannot rename %s: %s", tmp, strerror(errno));
    return rc;
}

int label_refeature_run(const char *model_path, const char *src_dir, const char *outdir, int64_t layer) {
    char rs[4096], ro[4096];
    if (eval_job_mkdirs(outdir) != 0) {
        fprintf(stderr, "tis label: cannot create %s: %s\n", outdir, strerror(errno));
        return 1;
    }
    if (realpath(src_dir, rs) && realpath(outdir, ro) && !strcmp(rs, ro)) {
        fprintf(stderr, "tis label: --output is the --refeature directory itself; give another one\n");
        return 2;
    }
    model *m = NULL;
    if (model_load(&m, model_path)) return s_fail("loading the model");
    if (layer < 0) layer = m->config.n_layer;
    forward_state *st = NULL;
    char **names = NULL;
    int64_t n = 0, done = 0;
    int rc = 0;
    if (layer > m->config.n_layer) {
        rc = tis_error(TIS_EINVAL, "--layer %lld: the model has %lld layers (n_layer: after the last)",
                       (long long)layer, (long long)m->config.n_layer);
        goto fail;
    }
    if ((rc = label_dir_shards(src_dir, &names, &n)) || (rc = s_refeature_config(src_dir, outdir, layer)) ||
        (rc = forward_state_new(&st, m, backend_cpu(), 512)))
        goto fail;
    fprintf(stderr, "[label] refeature: %lld shards of %s -> %s, features of layer %lld\n", (long long)n, src_dir,
            outdir, (long long)layer);
    double t0 = tis_now();
    for (int64_t i = 0; i < n && !rc; i++) {
        char sp[2048], dp[2048];
        snprintf(sp, sizeof sp, "%s/%s", src_dir, names[i]);
        snprintf(dp, sizeof dp, "%s/%s", outdir, names[i]);
        if (access(dp, F_OK) == 0) continue; /* written whole (atomically) by an earlier run */
        double t1 = tis_now();
        rc = label_shard_refeature(st, sp, dp, layer);
        if (!rc)
            fprintf(stderr, "[label] %lld/%lld %s (%.1f s)\n", (long long)i + 1, (long long)n, names[i],
                    tis_now() - t1);
        done += !rc;
    }
    if (!rc) rc = s_copy_manifest(src_dir, outdir);
    if (!rc)
        fprintf(stderr, "[label] refeatured %lld shards (%lld already there) in %.1f s -> %s\n", (long long)done,
                (long long)(n - done), tis_now() - t0, outdir);
fail:
    for (int64_t i = 0; i < n; i++) free(names[i]);
    free(names);
    forward_state_destroy(&st);
    model_destroy(&m);
    return rc ? s_fail("refeature") : 0;
}
