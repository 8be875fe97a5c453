/* cli: shared helpers of the tis subcommands (argument parsing, output). */
#ifndef TIS_CLI_H
#define TIS_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Subcommands: return the process exit code (0 ok, 1 runtime error, 2 usage). */
int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_label(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_worker(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_client(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_gen_model(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_selfinfo(int argc, char **argv);
int cmd_keygen(int argc, char **argv);

/* The default importance heads for the default model (committed). */
#define CLI_DEFAULT_HEAD "configs/heads/smollm2-135m-instruct.tis.safetensors"
#define CLI_DEFAULT_HEAD_QUERY "configs/heads/smollm2-135m-instruct.tis_query.safetensors"
/* A model's default head of `kind` ("tis", "tis_query"), relative to the
 * repository root: configs/heads/SLUG.KIND.safetensors, SLUG the model
 * file's name in lower case without .gguf and its quantisation suffix
 * (models/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf:
 * qwen2.5-coder-0.5b-instruct). */
void cli_default_head(const char *model_path, const char *kind, char *out, size_t cap);

/* "tis ARGS" as a shell reads it back: arguments single-quoted where a
 * shell would split or expand them (a union's '|', blanks, quotes, globs;
 * ' as '\''), argv[0] the command's name. Malloc'd; NULL when out of
 * memory. What reports and checkpoints record. */
char *cli_cmdline(int argc, char **argv);

/* --head_as NAME=PATH entries (press_head_as_check): 0, or TIS_EINVAL with
 * the message in tis_last_error(). */
int cli_check_head_as(const char *const *entries, int64_t n);

/* Parses a whole-string integer / float; false on junk or out of range. */
bool cli_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);
bool cli_parse_f32(const char *s, float lo, float hi, float *out);
/* An option table (terminated by a NULL name) for cli_parse_opts. */
typedef enum cli_opt_kind {
    CLI_OPT_STR,  /* dst: const char ** (points into argv) */
    CLI_OPT_I64,  /* dst: int64_t *, within [lo, hi] */
    CLI_OPT_F32,  /* dst: float *, finite, within [flo, fhi] */
    CLI_OPT_FLAG, /* dst: bool *, set; takes no value */
    CLI_OPT_KV_TYPE, /* no dst: f16|f32|bf16, the KV cache element type of every model
                        loaded afterwards here and in the workers started ($TIS_KV_TYPE) */
    /* Lists: the arguments after the option up to the next option (an
     * argument that starts with '-' and a letter or '-'; "-1" is a value).
     * A repeated option adds to the list; more than cap values in all is
     * an error. *n counts the values. */
    CLI_OPT_STRS, /* dst: const char *[cap] */
    CLI_OPT_I64S, /* dst: int64_t[cap], each within [lo, hi] */
    CLI_OPT_F32S, /* dst: double[cap], each parsed as a float (as every committed run
                     was) within [flo, fhi] */
} cli_opt_kind;

typedef struct cli_opt {
    const char *name;  /* "--front" */
    const char *alias; /* "-m", or NULL */
    cli_opt_kind kind;
    void *dst;
    int64_t lo, hi;
    float flo, fhi;
    int64_t *n, cap; /* lists */
} cli_opt;

#define CLI_STR(nm, al, p) {.name = (nm), .alias = (al), .kind = CLI_OPT_STR, .dst = (p)}
#define CLI_I64(nm, al, p, l, h) {.name = (nm), .alias = (al), .kind = CLI_OPT_I64, .dst = (p), .lo = (l), .hi = (h)}
#define CLI_F32(nm, al, p, l, h) {.name = (nm), .alias = (al), .kind = CLI_OPT_F32, .dst = (p), .flo = (l), .fhi = (h)}
#define CLI_FLAG(nm, al, p) {.name = (nm), .alias = (al), .kind = CLI_OPT_FLAG, .dst = (p)}
#define CLI_STRS(nm, al, p, cnt, c) {.name = (nm), .alias = (al), .kind = CLI_OPT_STRS, .dst = (p), .n = (cnt), .cap = (c)}
#define CLI_I64S(nm, al, p, cnt, c, l, h) \
    {.name = (nm), .alias = (al), .kind = CLI_OPT_I64S, .dst = (p), .n = (cnt), .cap = (c), .lo = (l), .hi = (h)}
#define CLI_F32S(nm, al, p, cnt, c, l, h) \
    {.name = (nm), .alias = (al), .kind = CLI_OPT_F32S, .dst = (p), .n = (cnt), .cap = (c), .flo = (l), .fhi = (h)}
#define CLI_KV_TYPE {.name = "--kv_type", .alias = NULL, .kind = CLI_OPT_KV_TYPE, .dst = NULL}
#define CLI_END {.name = NULL}
/* A connecting side's keys (tcp endpoints; serve/secure.h): --key FILE,
 * --server_key FILE, --insecure into the fields of (key, server_key, insecure). */
#define CLI_CONNECT_KEYS(k, sk, ins) CLI_STR("--key", NULL, (k)), CLI_STR("--server_key", NULL, (sk)), \
    CLI_FLAG("--insecure", NULL, (ins))
#define CLI_CONNECT_KEYS_USAGE \
    "      --key FILE           tcp: our key pair (tis keygen; its .pub on the coordinator's --allow)\n" \
    "      --server_key FILE    tcp: the coordinator's public key\n" \
    "      --insecure           tcp without keys (the coordinator must allow it too)\n"

enum { CLI_HELP = -1 };

/* Parses argv[1..argc) against opts. 0 when every argument was an option
 * of the table with a good value; CLI_HELP after printing usage to stdout
 * for -h / --help; 2 after printing the problem (unknown option, missing
 * or bad value, with the range allowed) and usage to stderr. */
int cli_parse_opts(const char *cmd, int argc, char **argv, const cli_opt *opts, void (*usage)(FILE *f));

/* The default model path (models/ beside the binary's source tree, or
 * $TIS_MODEL). */
const char *cli_default_model(void);
/* Sets the BLAS thread count when n > 0; returns the count in force. */
int cli_threads(int64_t n);
/* Loads only the tokenizer of a model file or directory. */
struct tokenizer;
int cli_load_tokenizer(const char *path, struct tokenizer **out);
/* Prints "tis: <what>: <tis_last_error()>" to stderr; returns 1. */
int cli_fail(const char *what);

/* --device (cli_device.c): "cpu" or "cuda:N" to the backend *be: 0, or the
 * exit status after printing the problem (2: not a device; 1: unusable
 * here: the CUDA probe's reason, or "tis was built without CUDA"). Then
 * cli_device_prepare puts the model's weights there (0, or 1 printed). */
#include "backend.h"
struct model;
int cli_device_backend(const char *cmd, const char *device, const tis_backend **be);
int cli_device_prepare(const char *cmd, struct model *m, const tis_backend *be);
/* For commands whose work cannot run on a device yet: cpu passes (0); a
 * usable GPU is refused with `why` (1), an unusable one as above. */
int cli_device_cpu_only(const char *cmd, const char *device, const char *why);
/* Why eval and label run on the cpu only (cli_device_cpu_only's why). */
#define CLI_DEVICE_PRESS_WHY                                                                             \
    "the press sessions observe attention probabilities while they prefill (press/press.c) and score " \
    "and compact host caches; the CUDA backend reports no attention probabilities and press scoring "  \
    "and compaction on the device are not built: run it on the cpu"

#endif
