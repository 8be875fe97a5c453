/* test_api: a program that sees only include/tis.h and libtis.so answers
 * requests in process with every kind of policy, gets clear errors for bad
 * requests, and finds nothing but the public tis_ functions exported by the
 * library (nm -D). Runs on the default model; skipped without it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tis.h"

static int s_fail, s_checks;
#define CHECK(c)                                                                   \
    do {                                                                           \
        s_checks++;                                                                \
        if (!(c)) {                                                                \
            s_fail++;                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s (%s)\n", __FILE__, __LINE__, #c, \
                    tis_last_error());                                             \
        }                                                                          \
    } while (0)

static const char *s_doc =
    "The meeting notes are long and mostly about the garden. The tomatoes need water every morning. "
    "The roses were planted in April. The secret password is BLUEBIRD-42, and nobody should forget it. "
    "The fence on the north side is broken and will be fixed next week. The shed holds three rakes, "
    "two shovels and a wheelbarrow with a flat tire. Lunch is served at noon in the kitchen.";

/* Exported dynamic symbols of the library: each must be a public tis_ one. */
static void s_exports(void) {
    const char *lib = getenv("TIS_LIB");
    if (!lib) {
        fprintf(stderr, "  TIS_LIB not set: the export check is skipped\n");
        return;
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "nm -D --defined-only '%s'", lib);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    if (!p) return;
    char line[512];
    int n = 0, bad = 0;
    while (fgets(line, sizeof line, p)) {
        char addr[64], type[8], name[400];
        if (sscanf(line, "%63s %7s %399s", addr, type, name) != 3) continue;
        if (type[0] != 'T') continue; /* functions only (data: none is exported) */
        n++;
        if (strncmp(name, "tis_", 4)) {
            bad++;
            fprintf(stderr, "  exported but not public: %s\n", name);
        }
    }
    CHECK(pclose(p) == 0);
    fprintf(stderr, "  libtis.so exports %d functions, %d outside the tis_ API\n", n, bad);
    CHECK(n >= 10 && bad == 0);
}

/* Named heads and unions of two policies through the public API: the
 * committed default head also as "hr"; a union compresses to its budget,
 * and at the whole budget answers as full; a head of another layer in the
 * same union, a head not given, a threshold and a bad entry are refused. */
static void s_unions(const char *model, const char *doc) {
    const char *src = getenv("TIS_SOURCE_DIR");
    char hp[1024], hr[1100], rc[1100];
    snprintf(hp, sizeof hp, "%s/configs/heads/smollm2-135m-instruct.tis.safetensors", src ? src : ".");
    snprintf(hr, sizeof hr, "hr=%s", hp);
    snprintf(rc, sizeof rc, "rc=%s/configs/heads/smollm2-135m-instruct.recon.safetensors", src ? src : ".");
    const char *as[] = {hr, rc}, *bad_as[] = {"snapkv=x"};
    tis_engine *e = NULL;
    tis_engine_opts bad = {.model = model, .head = hp, .head_as = bad_as, .n_head_as = 1};
    CHECK(tis_engine_open(&bad, &e) == TIS_E_INVAL && e == NULL && strstr(tis_last_error(), "already a policy"));
    tis_engine_opts eo = {.model = model, .head = hp, .head_as = as, .n_head_as = 2};
    CHECK(tis_engine_open(&eo, &e) == 0 && e);
    if (!e) return;
    tis_request rq = {.context = doc, .question = "What is the secret password?", .max_new = 12,
                      .policy = "hr+lpool3|tis+recent8", .budget = 0.2};
    tis_answer u, t, f;
    CHECK(tis_engine_answer(e, &rq, &u) == 0);
    rq.policy = "tis+lpool3";
    CHECK(tis_engine_answer(e, &rq, &t) == 0);
    CHECK(u.kept_tokens > 0 && u.kept_tokens < u.n_ctx && u.kv_bytes < u.full_kv_bytes);
    fprintf(stderr, "  union at 0.2: '%s' (%u of %u kept); tis+lpool3: '%s' (%u)\n", u.text ? u.text : "",
            u.kept_tokens, u.n_ctx, t.text ? t.text : "", t.kept_tokens);
    tis_answer_free(&u);
    tis_answer_free(&t);
    rq.policy = NULL;
    rq.budget = 0;
    CHECK(tis_engine_answer(e, &rq, &f) == 0);
    rq.policy = "snapkv|hr";
    rq.budget = 1.0;
    rq.query_aware = true; /* as full decodes */
    CHECK(tis_engine_answer(e, &rq, &u) == 0);
    CHECK(u.kept_tokens == u.n_ctx && f.text && u.text && !strcmp(u.text, f.text));
    tis_answer_free(&u);
    tis_answer_free(&f);
    tis_answer a;
    rq.budget = 0.2;
    rq.query_aware = false;
    rq.policy = "rc|tis"; /* layers 15 and 30: the prefill keeps one layer */
    CHECK(tis_engine_answer(e, &rq, &a) == TIS_E_INVAL && strstr(tis_last_error(), "different layers"));
    rq.policy = "tis_si|tis";
    CHECK(tis_engine_answer(e, &rq, &a) == TIS_E_NOTFOUND);
    rq.policy = "hr|tis";
    rq.threshold = 0.1;
    CHECK(tis_engine_answer(e, &rq, &a) == TIS_E_INVAL && strstr(tis_last_error(), "threshold"));
    tis_engine_close(e);
}

int main(void) {
    const char *model = getenv("TIS_MODEL");
    FILE *f = model ? fopen(model, "rb") : NULL;
    if (!f) {
        fprintf(stderr, "skip: the default model is not there (TIS_MODEL=%s)\n", model ? model : "");
        return 77;
    }
    fclose(f);
    s_exports();
    tis_engine *e = NULL;
    tis_engine_opts bad = {.model = "/nonexistent.gguf"};
    CHECK(tis_engine_open(&bad, &e) < 0 && e == NULL && tis_last_error()[0]);
    tis_engine_opts eo = {.model = model};
    CHECK(tis_engine_open(&eo, &e) == 0 && e);
    if (!e) return 1;
    CHECK(strlen(tis_engine_model(e)) > 0);
    size_t np = 0;
    while (tis_policy_name(np)) np++;
    CHECK(np >= 10);

    tis_request rq = {.context = s_doc, .question = "What is the secret password?", .max_new = 12};
    tis_answer full, snap, stream;
    CHECK(tis_engine_answer(e, &rq, &full) == 0);
    fprintf(stderr, "  full: '%s' (%zu tokens, %llu KV bytes)\n", full.text ? full.text : "",
            full.n_ids, (unsigned long long)full.kv_bytes);
    CHECK(full.text && full.text[0] && full.n_ids > 0);
    CHECK(full.n_ctx > 50 && full.kept_tokens == full.n_ctx && full.kv_bytes == full.full_kv_bytes);
    /* the whole budget keeps everything: the same answer as full */
    rq.policy = "snapkv";
    rq.budget = 1.0;
    rq.query_aware = true;
    CHECK(tis_engine_answer(e, &rq, &snap) == 0);
    CHECK(snap.text && full.text && !strcmp(snap.text, full.text) && snap.kv_bytes == full.kv_bytes);
    tis_answer_free(&snap);
    rq.budget = 0.5;
    CHECK(tis_engine_answer(e, &rq, &snap) == 0);
    CHECK(snap.kv_bytes < snap.full_kv_bytes && snap.kept_tokens < snap.n_ctx);
    rq.policy = "streaming";
    rq.budget = 0;
    rq.budget_tokens = 16;
    rq.query_aware = false;
    CHECK(tis_engine_answer(e, &rq, &stream) == 0);
    CHECK(stream.kept_tokens == 16 && stream.kv_bytes < snap.kv_bytes);
    fprintf(stderr, "  snapkv 0.5: '%s' %llu B; streaming 16: '%s' %llu B\n", snap.text ? snap.text : "",
            (unsigned long long)snap.kv_bytes, stream.text ? stream.text : "", (unsigned long long)stream.kv_bytes);
    tis_answer_free(&full);
    tis_answer_free(&snap);
    tis_answer_free(&stream);

    /* bad requests: clear errors, the engine keeps working */
    tis_answer a;
    rq.policy = "nosuchpolicy";
    CHECK(tis_engine_answer(e, &rq, &a) == TIS_E_NOTFOUND && strstr(tis_last_error(), "nosuchpolicy"));
    rq.policy = "tis";
    CHECK(tis_engine_answer(e, &rq, &a) == TIS_E_INVAL && strstr(tis_last_error(), "head"));
    rq.policy = "snapkv";
    rq.budget_tokens = 0;
    CHECK(tis_engine_answer(e, &rq, &a) == TIS_E_INVAL && strstr(tis_last_error(), "budget"));
    tis_request empty = {.context = "", .question = "?"};
    CHECK(tis_engine_answer(e, &empty, &a) == TIS_E_INVAL);
    CHECK(strcmp(tis_status_name(TIS_E_FORMAT), "EFORMAT") == 0);

    s_unions(model, s_doc);

    char *text = NULL;
    tis_gen_opts go = {.chat = true, .max_new = 12};
    CHECK(tis_engine_generate(e, "What is the capital of France?", &go, &text) == 0);
    fprintf(stderr, "  generate: '%s'\n", text ? text : "");
    CHECK(text && strstr(text, "Paris"));
    free(text);
    tis_engine_close(e);
    fprintf(stderr, "test_api: %d passed, %d failed\n", s_checks - s_fail, s_fail);
    return s_fail ? 1 : 0;
}
