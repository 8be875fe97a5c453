/* test_http: the HTTP front of tis serve. Request bodies -> tis requests
 * (every field's type and range, the prompt's split, the error shape), the
 * answers' JSON, the Prometheus text, listen addresses; then `tis serve
 * --http` driven by curl: plain and streamed chat, a stop string, every
 * error case with its status code (400 bad JSON / wrong type / prompt over
 * the model's context, 404 model, 405, 413 body over the limit, 429 Busy
 * with Retry-After, 503 no worker alive), and a client that disconnects
 * mid-stream cancelling its request (the decode worker's slot comes back
 * long before the answer would have ended). The openai package and
 * prometheus_client talk to it in tests/http_clients.py. */
#include <cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "http_front.h"
#include "http_metrics.h"
#include "http_req.h"
#include "tt.h"

static const http_defaults DEF = {.model_id = "m1", .kv_policy = "snapkv", .kv_budget = 0.5, .query_aware = true,
                                  .max_tokens = 64};

/* Parses body as kind: 0 or the error's HTTP status (with its param). */
static int s_parse(http_kind kind, const char *body, http_req *r, http_err *e) {
    int rc = http_req_parse(kind, body, strlen(body), &DEF, r, e);
    if (rc) fprintf(stderr, "  refused (%d, %s): %s\n", e->status, e->param, e->message);
    return rc ? e->status : 0;
}

static void s_chat_ok(void) {
    TT_CASE("chat bodies");
    http_req r;
    http_err e;
    TT_CHECK(s_parse(HTTP_CHAT, "{\"model\":\"m1\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi there?\"}]}", &r,
                     &e) == 0);
    /* no blank line: the message is the context, the question empty (the prompt is the message as sent) */
    TT_CHECK(r.context && !strcmp(r.context, "Hi there?") && r.question && !*r.question && !r.prefix && !r.raw);
    TT_CHECK(!strcmp(r.kv_policy, "snapkv") && r.kv_budget == 0.5 && r.query_aware && r.max_tokens == 64);
    TT_CHECK(r.temperature == 0 && r.top_p == 1 && !r.stream && r.n_stop == 0);
    http_req_free(&r);
    const char *b = "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Doc line.\\n\\nMore doc.\"},"
                    "{\"type\":\"text\",\"text\":\"\\n\\nWhat is it?\"}]}],"
                    "\"max_tokens\":7,\"temperature\":0.5,\"top_p\":0.9,\"seed\":3,\"stop\":[\"x\",\"yz\"],"
                    "\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                    "\"kv_policy\":\"streaming\",\"kv_budget_tokens\":16,\"query_aware\":false,\"unknown\":[1]}";
    TT_CHECK(s_parse(HTTP_CHAT, b, &r, &e) == 0);
    /* split at the last blank line: context + "\n\n" + question is the message */
    TT_CHECK(!strcmp(r.prefix, "Be brief.") && !strcmp(r.context, "Doc line.\n\nMore doc.") &&
             !strcmp(r.question, "What is it?"));
    TT_CHECK(r.max_tokens == 7 && r.temperature == 0.5 && r.top_p == 0.9 && r.seed == 3 && r.n_stop == 2 &&
             !strcmp(r.stop[1], "yz") && r.stream && r.include_usage);
    TT_CHECK(!strcmp(r.kv_policy, "streaming") && r.kv_budget_tokens == 16 && !r.query_aware);
    http_req_free(&r);
    /* a union of two rankings travels as asked */
    TT_CHECK(s_parse(HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"kv_policy\":"
                                "\"kvzip+lpool5|tis+recent4\",\"kv_budget\":0.1}", &r, &e) == 0);
    TT_CHECK(!strcmp(r.kv_policy, "kvzip+lpool5|tis+recent4") && r.kv_budget == 0.1);
    http_req_free(&r);
    /* an adaptive budget: the threshold travels as asked */
    TT_CHECK(s_parse(HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"kv_policy\":\"kvzip\","
                                "\"kv_threshold\":0.02,\"query_aware\":false}", &r, &e) == 0);
    TT_CHECK(!strcmp(r.kv_policy, "kvzip") && r.kv_threshold == 0.02);
    http_req_free(&r);
    /* the context extension: the document apart, the user message is the question */
    TT_CHECK(s_parse(HTTP_CHAT, "{\"context\":\"A long doc.\",\"messages\":[{\"role\":\"user\",\"content\":\"Q?\"}],"
                                "\"kv_budget\":0.25,\"stop\":\"END\"}", &r, &e) == 0);
    TT_CHECK(!strcmp(r.context, "A long doc.") && !strcmp(r.question, "Q?") && r.kv_budget == 0.25 &&
             r.kv_budget_tokens == 0 && r.n_stop == 1);
    http_req_free(&r);
    /* a conversation: system first, earlier turns as sent, the last user message holds context + question */
    TT_CHECK(s_parse(HTTP_CHAT, "{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},"
                                "{\"role\":\"user\",\"content\":\"u1\"},{\"role\":\"assistant\",\"content\":\"a1\"},"
                                "{\"role\":\"user\",\"content\":\"doc\\n\\nq2?\"}]}", &r, &e) == 0);
    TT_CHECK(r.n_turns == 2 && !strcmp(r.turn_role[1], "assistant") && !strcmp(r.turn_text[0], "u1") &&
             !strcmp(r.prefix, "S") && !strcmp(r.context, "doc") && !strcmp(r.question, "q2?"));
    http_req_free(&r);
    /* a completion prompt: verbatim, its last words run after the compressed context */
    TT_CHECK(s_parse(HTTP_COMPLETION, "{\"prompt\":\"The capital of France is\"}", &r, &e) == 0);
    TT_CHECK(r.raw && !strcmp(r.context, "The capital") && !strcmp(r.question, " of France is"));
    http_req_free(&r);
    TT_CHECK(s_parse(HTTP_COMPLETION, "{\"prompt\":[\"Two words\"]}", &r, &e) == 0);
    TT_CHECK(!strcmp(r.context, "Two") && !strcmp(r.question, " words"));
    http_req_free(&r);
}

/* One refused body: its kind, the status and the param the error names. */
typedef struct refusal {
    http_kind k;
    const char *body;
    int status;
    const char *param;
} refusal;

static void s_check_refused(const refusal *C, size_t n) {
    for (size_t i = 0; i < n; i++) {
        http_req r;
        http_err e;
        int st = s_parse(C[i].k, C[i].body, &r, &e);
        TT_CHECK(st == C[i].status);
        if (st) TT_CHECK(!strcmp(e.param, C[i].param) && e.message[0]);
        if (st != C[i].status) fprintf(stderr, "  body %zu: %s\n", i, C[i].body);
        if (!st) http_req_free(&r);
    }
}

/* Bodies refused for their shape, messages, model or sampling fields. */
static void s_chat_refused(void) {
    TT_CASE("refused bodies");
    static const refusal C[] = {
        {HTTP_CHAT, "{bad json", 400, ""},
        {HTTP_CHAT, "[1,2]", 400, ""},
        {HTTP_CHAT, "{}", 400, "messages"},
        {HTTP_CHAT, "{\"messages\":\"hi\"}", 400, "messages"},
        {HTTP_CHAT, "{\"messages\":[{\"content\":\"hi\"}]}", 400, "messages"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":7}]}", 400, "messages"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"}]}",
         400, "messages"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"system\",\"content\":\"b\"},"
                    "{\"role\":\"user\",\"content\":\"c\"}]}", 400, "messages"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"tool\",\"content\":\"a\"},{\"role\":\"user\",\"content\":\"c\"}]}",
         400, "messages"},
        {HTTP_CHAT, "{\"context_id\":\"ctx-1\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
                    "{\"role\":\"assistant\",\"content\":\"b\"},{\"role\":\"user\",\"content\":\"c\"}]}", 400, "messages"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"\"}]}", 400, "messages"},
        {HTTP_CHAT, "{\"model\":\"gpt-4\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 404, "model"},
        {HTTP_CHAT, "{\"model\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 400, "model"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":\"hot\"}", 400, "temperature"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":3}", 400, "temperature"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"top_p\":0}", 400, "top_p"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":1.5}", 400, "max_tokens"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":5000}", 400, "max_tokens"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"seed\":-1}", 400, "seed"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"n\":2}", 400, "n"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":\"yes\"}", 400, "stream"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stop\":[1]}", 400, "stop"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}",
         400, "stop"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream_options\":3}", 400, "stream_options"},
    };
    s_check_refused(C, sizeof C / sizeof *C);
}

/* Bodies refused for tis's own fields (policy, budget, protocol, kept
 * contexts) and completion prompts. */
static void s_kv_refused(void) {
    TT_CASE("refused kv fields");
    static const refusal C[] = {
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"kv_policy\":\"nope\"}", 400, "kv_policy"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"kv_policy\":3}", 400, "kv_policy"},
        /* a union: of a head this server was not given; of unions; with a threshold */
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"kv_policy\":\"tis_x|tis\"}", 400,
         "kv_policy"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"kv_policy\":\"h2o|snapkv|tova\"}", 400,
         "kv_policy"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"kv_policy\":\"kvzip|tis\","
                    "\"kv_threshold\":0.1}", 400, "kv_threshold"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"kv_budget\":1.5}", 400, "kv_budget"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"kv_budget_tokens\":0}", 400,
         "kv_budget_tokens"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"query_aware\":1}", 400, "query_aware"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"kv_policy\":\"full\",\"kv_threshold\":0.5}",
         400, "kv_threshold"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"kv_policy\":\"kvzip\",\"kv_threshold\":1.5}",
         400, "kv_threshold"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"kv_policy\":\"snapkv\",\"kv_threshold\":0.1}",
         400, "kv_threshold"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"kv_policy\":\"tis_query\","
                    "\"query_aware\":false}", 400, "query_aware"},
        {HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"context_id\":\"c1\"}", 400, "context_id"},
        {HTTP_COMPLETION, "{\"prompt\":\"Oneword\"}", 400, "prompt"},
        {HTTP_COMPLETION, "{\"prompt\":[\"a b\",\"c d\"]}", 400, "prompt"},
        {HTTP_COMPLETION, "{\"prompt\":12}", 400, "prompt"},
    };
    s_check_refused(C, sizeof C / sizeof *C);
}

/* An error's JSON: OpenAI's shape. */
static void s_error_json(void) {
    TT_CASE("error json");
    http_err e;
    http_err_set(&e, 429, "rate_limit_error", "server_busy", NULL, "full: %d", 3);
    char *j = http_err_json(&e);
    cJSON *o = cJSON_Parse(j);
    const cJSON *x = cJSON_GetObjectItem(o, "error");
    TT_CHECK(x && !strcmp(cJSON_GetObjectItem(x, "message")->valuestring, "full: 3") &&
             !strcmp(cJSON_GetObjectItem(x, "type")->valuestring, "rate_limit_error") &&
             !strcmp(cJSON_GetObjectItem(x, "code")->valuestring, "server_busy") &&
             cJSON_IsNull(cJSON_GetObjectItem(x, "param")));
    cJSON_Delete(o);
    free(j);
}

static void s_answers(void) {
    TT_CASE("answer json");
    http_req r;
    http_err e;
    TT_CHECK(s_parse(HTTP_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &r, &e) == 0);
    http_usage u = {.prompt_tokens = 30, .completion_tokens = 7, .kv_bytes = 1000, .full_kv_bytes = 4000};
    char *j = http_answer_json(&r, "chatcmpl-1", 5, "m1", "Paris \"x\"", "stop", &u);
    cJSON *o = cJSON_Parse(j);
    const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    TT_CHECK(o && !strcmp(cJSON_GetObjectItem(o, "object")->valuestring, "chat.completion"));
    TT_CHECK(c0 && !strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "message"), "content")->valuestring, "Paris \"x\""));
    TT_CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "usage"), "total_tokens")->valuedouble == 37);
    TT_CHECK(cJSON_GetObjectItem(o, "compression")->valuedouble == 4 &&
             !strcmp(cJSON_GetObjectItem(o, "kv_policy")->valuestring, "snapkv"));
    cJSON_Delete(o);
    free(j);
    j = http_chunk_json(&r, "chatcmpl-1", 5, "m1", "Par", true, NULL, NULL);
    o = cJSON_Parse(j);
    const cJSON *d = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0), "delta");
    TT_CHECK(d && !strcmp(cJSON_GetObjectItem(d, "role")->valuestring, "assistant") &&
             !strcmp(cJSON_GetObjectItem(d, "content")->valuestring, "Par"));
    cJSON_Delete(o);
    free(j);
    j = http_chunk_json(&r, "chatcmpl-1", 5, "m1", NULL, false, NULL, &u); /* the usage chunk */
    o = cJSON_Parse(j);
    TT_CHECK(o && cJSON_GetArraySize(cJSON_GetObjectItem(o, "choices")) == 0 &&
             cJSON_GetObjectItem(cJSON_GetObjectItem(o, "usage"), "prompt_tokens")->valuedouble == 30);
    cJSON_Delete(o);
    free(j);
    http_req_free(&r);
}

static void s_metrics_text(void) {
    TT_CASE("metrics text");
    http_metrics *m = NULL;
    TT_OK(http_metrics_new(&m));
    if (!m) return;
    double st[HS_N] = {0.001, 0.2, 0.01, 0, 0.001, 0.7, 0.3, 0.9};
    http_metrics_request(m, 0, HTTP_OK);
    http_metrics_request(m, 0, HTTP_BUSY);
    http_metrics_reply(m, st, 30, 7, 1000, 4000);
    http_metrics_reply(m, st, 30, 5, 1000, 1000);
    http_coord_view v = {.up = true, .alive = {1, 0, 2}, .waiting = {3, 0, 0}, .handoff_bytes = 2000};
    char *t = http_metrics_render(m, &v);
    TT_CHECK(t && strstr(t, "tis_http_requests_total{endpoint=\"chat.completions\",outcome=\"busy\"} 1\n"));
    TT_CHECK(t && strstr(t, "tis_stage_seconds_bucket{stage=\"prefill\",le=\"0.1\"} 0\n"));
    TT_CHECK(t && strstr(t, "tis_stage_seconds_bucket{stage=\"prefill\",le=\"0.25\"} 2\n")); /* cumulative */
    TT_CHECK(t && strstr(t, "tis_stage_seconds_count{stage=\"decode\"} 2\n") &&
             strstr(t, "tis_stage_seconds_bucket{stage=\"compress\",le=\"0.01\"} 2\n"));
    TT_CHECK(t && strstr(t, "tis_kv_compression_ratio_bucket{le=\"1\"} 1\n") &&
             strstr(t, "tis_kv_compression_ratio_bucket{le=\"4\"} 2\n"));
    TT_CHECK(t && strstr(t, "tis_generated_tokens_total 12\n") && strstr(t, "tis_workers_alive{role=\"decode\"} 2\n") &&
             strstr(t, "tis_queue_depth{role=\"prefill\",state=\"waiting\"} 3\n") &&
             strstr(t, "tis_kv_handoff_bytes_total 2000\n") && strstr(t, "# TYPE tis_stage_seconds histogram\n"));
    free(t);
    http_metrics_destroy(&m);
    TT_CHECK(m == NULL);
}

static void s_listen(void) {
    TT_CASE("listen addresses");
    uint32_t a;
    int port, lo;
    TT_OK(http_parse_listen("8080", &a, &port, &lo));
    TT_CHECK(port == 8080 && lo);
    TT_OK(http_parse_listen("localhost:0", &a, &port, &lo));
    TT_CHECK(port == 0 && lo);
    TT_OK(http_parse_listen("0.0.0.0:9", &a, &port, &lo));
    TT_CHECK(port == 9 && !lo);
    TT_FAILS(http_parse_listen("example.com:80", &a, &port, &lo), TIS_EINVAL);
    TT_FAILS(http_parse_listen("127.0.0.1:99999", &a, &port, &lo), TIS_EINVAL);
    TT_FAILS(http_parse_listen(":80", &a, &port, &lo), TIS_EINVAL);
    TT_FAILS(http_parse_listen("", &a, &port, &lo), TIS_EINVAL);
}

/* ---- tis serve --http, driven by curl ------------------------------------------- */

static char s_out[1 << 16];
static int s_port;

/* curl ARGS against the server (URL path after ARGS); the body in s_out,
 * the HTTP status returned (-1: curl failed). */
static int s_curl(const char *args, const char *path) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "curl -s -m 120 -o '%s' -w '%%{http_code}' %s 'http://127.0.0.1:%d%s' > '%s'",
             tt_path("body"), args, s_port, path, tt_path("code"));
    if (tt_sh(cmd, s_out, sizeof s_out)) return -1;
    char *code = tt_read_file(tt_path("code"), NULL), *body = tt_read_file(tt_path("body"), NULL);
    int st = code ? atoi(code) : -1;
    snprintf(s_out, sizeof s_out, "%s", body ? body : "");
    free(code);
    free(body);
    return st;
}

/* Starts tis serve --http on any free port; its pid (the port in s_port). */
static pid_t s_serve(const char *tag, const char *decode, const char *config) {
    const char *bin = getenv("TIS_BIN");
    char front[256], back[256], log[256];
    snprintf(front, sizeof front, "ipc://%s", tt_path(tag));
    snprintf(back, sizeof back, "ipc://%s-back", tt_path(tag));
    snprintf(log, sizeof log, "%s.log", tt_path(tag));
    const char *argv[] = {bin, "serve", "--config", config, "--front", front, "--back", back, "--decode", decode,
                          "-m", tt_model(), "--http", "127.0.0.1:0", NULL};
    /* the engine's default numerics: the decoder marks the last prompt token, which runs alone in
     * the decode worker, as a prompt step (f32 activations), so the first token is tis generate's */
    const char *env[] = {NULL};
    pid_t pid = tt_spawn(argv, log, env);
    s_port = 0;
    for (int t = 0; t < 300 && !s_port; t++) { /* the port is printed once it listens */
        usleep(100000);
        char *l = tt_read_file(log, NULL);
        const char *p = l ? strstr(l, "listening on http://127.0.0.1:") : NULL;
        if (p) s_port = atoi(p + strlen("listening on http://127.0.0.1:"));
        free(l);
    }
    TT_CHECK(s_port > 0);
    return pid;
}

static void s_stop(pid_t pid) {
    kill(pid, SIGTERM);
    TT_CHECK(tt_wait(pid, 30) == 0);
}

/* Waits for GET /health to say 200. */
static bool s_ready(void) {
    for (int t = 0; t < 600; t++) {
        if (s_curl("", "/health") == 200) return true;
        usleep(100000);
    }
    return false;
}

static void s_e2e_answers(void) {
    TT_CASE("curl: answers");
    const char *q = "-d '{\"messages\":[{\"role\":\"user\",\"content\":\"What is the capital of France?\"}]";
    char a[512];
    snprintf(a, sizeof a, "%s}'", q);
    TT_CHECK(s_curl(a, "/v1/chat/completions") == 200 && strstr(s_out, "Paris") &&
             strstr(s_out, "\"finish_reason\":\"stop\"") && strstr(s_out, "\"prompt_tokens\":"));
    fprintf(stderr, "  %s\n", s_out);
    snprintf(a, sizeof a, "-N %s,\"stream\":true}'", q);
    TT_CHECK(s_curl(a, "/v1/chat/completions") == 200 && strstr(s_out, "data: {") && strstr(s_out, "\" Paris\"") &&
             strstr(s_out, "data: [DONE]\n\n"));
    snprintf(a, sizeof a, "%s,\"stop\":[\"Paris\"]}'", q); /* cut where the stop string begins */
    TT_CHECK(s_curl(a, "/v1/chat/completions") == 200 && strstr(s_out, "\"content\":\"The capital of France is \""));
    TT_CHECK(s_curl("-d '{\"prompt\":\"The capital of France is\",\"max_tokens\":3}'", "/v1/completions") == 200 &&
             strstr(s_out, "\"text_completion\"") && strstr(s_out, "\"finish_reason\":\"length\""));
    snprintf(a, sizeof a, "%s,\"kv_policy\":\"snapkv\",\"kv_budget_tokens\":4}'", q);
    TT_CHECK(s_curl(a, "/v1/chat/completions") == 200 && strstr(s_out, "\"kv_policy\":\"snapkv\"") &&
             strstr(s_out, "\"kv_budget_tokens\":4"));
    cJSON *o = cJSON_Parse(s_out);
    const cJSON *cp = o ? cJSON_GetObjectItem(o, "compression") : NULL;
    TT_CHECK(cp && cp->valuedouble > 1); /* measured: the full cache over the compressed one */
    cJSON_Delete(o);
    TT_CHECK(s_curl("", "/v1/models") == 200 && strstr(s_out, "SmolLM2-135M-Instruct.Q4_1"));
    /* a conversation: the earlier turns are in the prompt (rendered by the chat template) */
    TT_CHECK(s_curl("-d '{\"messages\":[{\"role\":\"user\",\"content\":\"My name is Ada.\"},{\"role\":"
                    "\"assistant\",\"content\":\"Hello Ada.\"},{\"role\":\"user\",\"content\":\"What is the capital "
                    "of France?\"}]}'", "/v1/chat/completions") == 200 && strstr(s_out, "\"prompt_tokens\":5"));
}

/* One compressed context, several questions: the first request keeps it
 * (context_id), later ones name it and skip the prefill. */
static void s_e2e_context(void) {
    TT_CASE("curl: a kept context");
    const char *first = "-d '{\"context\":\"Marie keeps her bicycle in the blue shed. Tom keeps his car in the "
                        "garage. The cat sleeps on the red sofa.\",\"messages\":[{\"role\":\"user\",\"content\":"
                        "\"Where does Marie keep her bicycle?\"}],\"kv_policy\":\"snapkv\",\"kv_budget\":0.5,"
                        "\"query_aware\":false,\"keep_context\":true}'";
    TT_CHECK(s_curl(first, "/v1/chat/completions") == 200);
    cJSON *o = cJSON_Parse(s_out);
    const cJSON *id = cJSON_GetObjectItem(o, "context_id");
    char cid[64] = "";
    if (cJSON_IsString(id)) snprintf(cid, sizeof cid, "%s", id->valuestring);
    TT_CHECK(!strncmp(cid, "ctx-", 4));
    double kv0 = o ? cJSON_GetObjectItem(o, "kv_bytes")->valuedouble : 0;
    cJSON_Delete(o);
    char a[512];
    snprintf(a, sizeof a, "-d '{\"context_id\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":"
             "\"Where does the cat sleep?\"}]}'", cid);
    TT_CHECK(s_curl(a, "/v1/chat/completions") == 200 && strstr(s_out, "sofa"));
    fprintf(stderr, "  %s\n", s_out);
    o = cJSON_Parse(s_out);
    const cJSON *t = o ? cJSON_GetObjectItem(o, "timings") : NULL;
    TT_CHECK(t && cJSON_GetObjectItem(t, "prefill_s")->valuedouble == 0); /* no prefill: the kept block */
    TT_CHECK(o && cJSON_GetObjectItem(o, "kv_bytes")->valuedouble >= kv0 * 0.9); /* that block (+ the new question) */
    cJSON_Delete(o);
    TT_CHECK(s_curl("-d '{\"context_id\":\"ctx-999\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}'",
                    "/v1/chat/completions") == 404 && strstr(s_out, "context_not_found"));
    TT_CHECK(s_curl("-d '{\"context\":\"doc\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],"
                    "\"kv_policy\":\"full\",\"keep_context\":true}'", "/v1/chat/completions") == 400 &&
             strstr(s_out, "\"param\":\"keep_context\""));
}

static void s_e2e_errors(void) {
    TT_CASE("curl: errors");
    TT_CHECK(s_curl("-d '{not json'", "/v1/chat/completions") == 400 && strstr(s_out, "\"error\""));
    TT_CHECK(s_curl("-d '{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":\"ten\"}'",
                    "/v1/chat/completions") == 400 && strstr(s_out, "\"param\":\"max_tokens\""));
    TT_CHECK(s_curl("-d '{\"model\":\"nope\",\"prompt\":\"a b c\"}'", "/v1/completions") == 404);
    TT_CHECK(s_curl("-X DELETE", "/v1/models") == 405);
    TT_CHECK(s_curl("", "/v2/none") == 404);
    /* a prompt over the model's context (8192 tokens): refused by the prefill worker before any compute */
    FILE *f = fopen(tt_path("long.json"), "w");
    fputs("{\"messages\":[{\"role\":\"user\",\"content\":\"", f);
    for (int i = 0; i < 9000; i++) fputs("word ", f);
    fputs("\"}]}", f);
    fclose(f);
    char a[512];
    snprintf(a, sizeof a, "-d @'%s'", tt_path("long.json"));
    TT_CHECK(s_curl(a, "/v1/chat/completions") == 400 && strstr(s_out, "context_length_exceeded"));
    /* over http.max_body_kb (64 in this test's config): 413, announced or not */
    f = fopen(tt_path("big.json"), "w");
    fputs("{\"prompt\":\"", f);
    for (int i = 0; i < 20000; i++) fputs("long ", f);
    fputs("\"}", f);
    fclose(f);
    snprintf(a, sizeof a, "--data-binary @'%s'", tt_path("big.json"));
    TT_CHECK(s_curl(a, "/v1/completions") == 413 && strstr(s_out, "request_too_large"));
    snprintf(a, sizeof a, "-H 'Transfer-Encoding: chunked' --data-binary @'%s'", tt_path("big.json"));
    TT_CHECK(s_curl(a, "/v1/completions") == 413);
}

/* A decode worker's free slots and the coordinator's cancelled count, from tis status --json. */
static void s_decode_state(const char *front, int64_t *free_slots, int64_t *cancelled) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "'%s' status --connect %s --json", getenv("TIS_BIN"), front);
    *free_slots = *cancelled = -1;
    if (tt_sh(cmd, s_out, sizeof s_out)) return;
    cJSON *o = cJSON_Parse(strchr(s_out, '{') ? strchr(s_out, '{') : s_out);
    const cJSON *w;
    cJSON_ArrayForEach(w, cJSON_GetObjectItem(o, "workers"))
        if (!strcmp(cJSON_GetObjectItem(w, "role")->valuestring, "decode"))
            *free_slots = (int64_t)cJSON_GetObjectItem(w, "free_slots")->valuedouble;
    const cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "requests"), "cancelled");
    if (c) *cancelled = (int64_t)c->valuedouble;
    cJSON_Delete(o);
}

/* With max_queue 1, a second request while one streams is Busy (429 +
 * Retry-After); the streaming client then goes away: its request is
 * cancelled and the decode worker's slot comes back at once (the answer
 * had up to 2000 tokens to go: minutes on this model). */
static void s_e2e_busy_cancel(const char *front) {
    TT_CASE("curl: busy, cancel");
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "exec curl -sN -m 600 http://127.0.0.1:%d/v1/chat/completions -d '{\"messages\":[{\"role\":\"user\","
             "\"content\":\"Write a very long story about a dragon.\"}],\"stream\":true,\"max_tokens\":2000}' > '%s'",
             s_port, tt_path("stream.txt"));
    const char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    pid_t cu = tt_spawn(argv, NULL, NULL);
    bool streaming = false;
    for (int t = 0; t < 600 && !streaming; t++) {
        usleep(100000);
        char *s = tt_read_file(tt_path("stream.txt"), NULL);
        streaming = s && strstr(s, "\"content\":\" ");
        free(s);
    }
    TT_CHECK(streaming);
    TT_CHECK(s_curl("-d '{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'", "/v1/chat/completions") == 429 &&
             strstr(s_out, "server_busy"));
    snprintf(cmd, sizeof cmd, "curl -s -o /dev/null -D - -d '{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}' "
             "http://127.0.0.1:%d/v1/chat/completions", s_port);
    TT_CHECK(tt_sh(cmd, s_out, sizeof s_out) == 0 && strstr(s_out, "429") && strstr(s_out, "Retry-After: 1"));
    int64_t slots = -1, cancelled = -1;
    s_decode_state(front, &slots, &cancelled);
    TT_CHECK(slots == 7 && cancelled == 0); /* one of its 8 slots generates the story */
    kill(cu, SIGKILL); /* the client goes away mid-stream */
    tt_wait(cu, 10);
    for (int t = 0; t < 100 && !(slots == 8 && cancelled == 1); t++) {
        usleep(100000);
        s_decode_state(front, &slots, &cancelled);
    }
    TT_CHECK(slots == 8 && cancelled == 1);
    char *s = tt_read_file(tt_path("stream.txt"), NULL);
    TT_CHECK(s && !strstr(s, "[DONE]"));
    free(s);
    TT_CHECK(s_curl("", "/metrics") == 200 &&
             strstr(s_out, "tis_http_requests_total{endpoint=\"chat.completions\",outcome=\"cancelled\"} 1\n") &&
             strstr(s_out, "tis_http_requests_total{endpoint=\"chat.completions\",outcome=\"busy\"} 2\n"));
}

static void s_e2e(void) {
    const char *model = tt_model();
    if (!model || !getenv("TIS_BIN") || tt_sh("curl --version", s_out, sizeof s_out)) {
        fprintf(stderr, "test_http: no model, TIS_BIN or curl: the server part is skipped\n");
        return;
    }
    char cfg[512]; /* (tt_path's buffers are reused) */
    snprintf(cfg, sizeof cfg, "%s", tt_path("serve.yaml"));
    const char *yaml = "coordinator:\n  max_queue: 1\n  heartbeat_ms: 200\nhttp:\n  max_body_kb: 64\n"
                       "  kv_policy: full\n  max_tokens: 32\n";
    TT_CHECK(tt_write_file(cfg, yaml, strlen(yaml)) == 0);
    pid_t srv = s_serve("a", "1", cfg);
    TT_CHECK(s_ready());
    s_e2e_answers();
    s_e2e_context();
    s_e2e_errors();
    char front[256];
    snprintf(front, sizeof front, "ipc://%s", tt_path("a"));
    s_e2e_busy_cancel(front);
    s_stop(srv);
    TT_CASE("curl: no decode worker");
    srv = s_serve("b", "0", cfg);
    int st = 0;
    bool decode_missing = false; /* 503 at once (the prefill worker is alive by then: the reason is decode) */
    for (int t = 0; t < 600 && !decode_missing; t++) {
        st = s_curl("-d '{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'", "/v1/chat/completions");
        decode_missing = st == 503 && strstr(s_out, "no decode worker is alive");
        if (!decode_missing) usleep(100000);
    }
    TT_CHECK(decode_missing);
    TT_CHECK(s_curl("", "/health") == 503 && strstr(s_out, "unavailable"));
    s_stop(srv);
}

int main(void) {
    s_chat_ok();
    s_chat_refused();
    s_kv_refused();
    s_error_json();
    s_answers();
    s_metrics_text();
    s_listen();
    s_e2e();
    return tt_done("test_http");
}
