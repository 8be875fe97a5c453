/* tis train: fits the importance head on `tis label` shards (in C: forward,
 * backward, Adam over OpenBLAS), split by sample, early stopping on the
 * validation loss, metrics per epoch to CSV and a PNG curve: the options of
 * eval/train_job.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ert_job.h"
#include "train_job.h"

enum { MAX_DIRS = 16 };

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: tis train --labels DIR... --output HEAD.safetensors [options]\n"
            "      --labels DIR...      directories written by tis label (same model and layer)\n"
            "      --head linear|mlp    (default linear)\n"
            "      --hidden N           mlp width (default 256)\n"
            "      --query_aware        add the question's pooled feature (for tis_query)\n"
            "      --rank N             bilinear rank of the query term (default 32)\n"
            "      --loss listwise|bce_topk   (default listwise; a per-head recon head: recon_mse, or\n"
            "                           recon_rank = recon_mse + the listwise loss pooled over streams)\n"
            "      --target answer|recon|selfinfo  the labels' kind (tis label --target; default answer;\n"
            "                           ert: below); a selfinfo head has one output (the selfinfo press's\n"
            "                           ranking without its second pass)\n"
            "      --positions           the token's place in the context as two more inputs (10 j/n,\n"
            "                            ln(1 + j)); not with --query_aware\n"
            "      --repeats             whether the text around the token occurs earlier / later in the\n"
            "                            context, two more inputs (HEAD_REP_K-token windows of ids)\n"
            "      --stream_weights none|inv_sd|inv_var  per_head: weigh each stream's squared errors by\n"
            "                           1 / sd (1 / variance) of its targets, mean 1 (default none)\n"
            "      --label_lpool N       train on targets max-pooled over each token and the N-1 after it\n"
            "                            (2..63): the head learns the span press's +lpoolN gives a score\n"
            "      --calibrate           per_head: a monotone map per stream fitted on the training samples,\n"
            "                            for the selection pooled over streams at small budgets (docs/head.md)\n"
            "      --streams A:B         recon, per_head: streams [A, B) only (stream = layer * n_kv_head + kv\n"
            "                            head): a partial head, to measure one layer's features on some streams\n"
            "      --outputs per_head|single  recon: one output per (layer, kv head) stream (default),\n"
            "                           or one score per token trained on the streams' mean\n"
            "      --topk F             bce_topk: positives are the top F of each sample (default 0.1)\n"
            "      --epochs N           at most (default 20)\n"
            "      --lr LR              Adam learning rate (default 1e-3)\n"
            "      --weight_decay W     decoupled weight decay (default 0)\n"
            "      --batch N            samples per Adam step (default 4)\n"
            "      --val_frac F         validation share, by sample (default 0.2)\n"
            "      --val_labels DIR...  validate on these samples instead (every --labels sample trains):\n"
            "                           heads trained on different sets compared on the same samples\n"
            "      --patience N         stop after N epochs without a better validation loss (default 3)\n"
            "      --seed S             split, order and initial weights (default 42)\n"
            "      --metrics PATH.csv   per-epoch metrics (default HEAD_metrics.csv; + .png curve)\n"
            "  -t, --threads N          compute threads\n"
            "\n"
            "usage: tis train --target ert -m MODEL --init HEAD --benchmark NAME... --output HEAD [options]\n"
            "  end-to-end fine-tuning: lowers KL(full cache || cache the head compresses) on the answer\n"
            "  tokens of generated samples, through a soft eviction (docs/head.md)\n"
            "      --init HEAD          the query-agnostic head to start from (one score, or per head)\n"
            "      --benchmark NAME...  generated training benchmarks (passkey niah niah_multikey litm_kv litm_qa)\n"
            "      --context_tokens N   (default 1024)    --n_samples N  per benchmark (default 24)\n"
            "      --seed S             generators, split, order (default 2001; keep it off the evaluation's)\n"
            "      --haystack FILE      --phrasing 0|1    the generators' text (defaults: theirs)\n"
            "      --budgets F...       fractions the steps cycle over (default 0.02 0.1)\n"
            "      --beta B             soft eviction sharpness (default 4)\n"
            "      --lr LR  --epochs N  --batch N  --patience N  --val_frac F  --weight_decay W\n"
            "                           (defaults 1e-4, 6, 4, 2, 0.25, 0)\n"
            "      --max_answer N       answer tokens per sample (default 16)\n"
            "      --metrics PATH.csv   per-epoch metrics (default HEAD_metrics.csv)\n");
}

/* "tis ARGS" as the checkpoint records it (quoted as a shell reads it;
 * cut at cap). */
static void s_command(int argc, char **argv, char *buf, size_t cap) {
    char *c = cli_cmdline(argc, argv);
    snprintf(buf, cap, "%s", c ? c : "tis train");
    free(c);
}

enum { MAX_BENCH = 8 };

/* tis train --target ert (eval/ert_job.h). */
static int s_train_ert(int argc, char **argv) {
    ert_config c;
    ert_config_defaults(&c);
    const char *bench[MAX_BENCH], *target = NULL;
    float budgets[16];
    int64_t n_budgets = 0, threads = 0, phrasing = 0;
    int64_t seed = (int64_t)c.seed;
    const cli_opt opts[] = {
        CLI_STR("--target", NULL, &target),
        CLI_STR("--model", "-m", &c.model_path),
        CLI_STR("--init", NULL, &c.init_head),
        CLI_STR("--output", NULL, &c.output),
        CLI_STR("--metrics", NULL, &c.metrics),
        CLI_STRS("--benchmark", NULL, bench, &c.n_benchmarks, MAX_BENCH),
        CLI_I64("--context_tokens", NULL, &c.context_tokens, 16, 1 << 20),
        CLI_I64("--n_samples", NULL, &c.n_samples, 1, 100000),
        CLI_I64("--seed", NULL, &seed, 0, INT64_MAX),
        CLI_STR("--haystack", NULL, &c.haystack),
        CLI_I64("--phrasing", NULL, &phrasing, 0, 1),
        CLI_F32S("--budgets", NULL, budgets, &n_budgets, 16, 1e-4f, 1.0f),
        CLI_F32("--beta", NULL, &c.beta, 1e-3f, 1e3f),
        CLI_F32("--lr", NULL, &c.lr, 1e-8f, 10.0f),
        CLI_F32("--weight_decay", NULL, &c.weight_decay, 0.0f, 1.0f),
        CLI_I64("--epochs", NULL, &c.epochs, 1, 100000),
        CLI_I64("--batch", NULL, &c.batch, 1, 1 << 20),
        CLI_I64("--patience", NULL, &c.patience, 1, 100000),
        CLI_F32("--val_frac", NULL, &c.val_frac, 0.0f, 0.9f),
        CLI_I64("--max_answer", NULL, &c.max_answer, 1, 256),
        CLI_I64("--threads", "-t", &threads, 1, 1024),
        CLI_END,
    };
    int prc = cli_parse_opts("train", argc, argv, opts, s_usage);
    if (prc) return prc == CLI_HELP ? 0 : prc;
    if (!c.model_path || !c.init_head || !c.output || !c.n_benchmarks) {
        fprintf(stderr, "tis train: --target ert needs -m MODEL, --init HEAD, --benchmark NAME... and --output\n\n");
        s_usage(stderr);
        return 2;
    }
    cli_threads(threads);
    char command[sizeof ((head *)0)->train_command];
    s_command(argc, argv, command, sizeof command);
    c.benchmarks = bench;
    c.seed = (uint64_t)seed;
    c.phrasing = (int)phrasing;
    if (n_budgets) c.budgets = budgets, c.n_budgets = n_budgets;
    c.command = command;
    return ert_job_run(&c);
}

/* The index of val in names (NULL-terminated), or -1 after saying what
 * option opt takes (hint). */
static int s_pick(const char *opt, const char *val, const char *const *names, const char *hint) {
    for (int i = 0; names[i]; i++)
        if (!strcmp(val, names[i])) return i;
    fprintf(stderr, "tis train: bad value '%s' for %s (%s)\n\n", val, opt, hint);
    s_usage(stderr);
    return -1;
}

int cmd_train(int argc, char **argv) {
    for (int i = 0; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--target") && !strcmp(argv[i + 1], "ert")) return s_train_ert(argc, argv);
    train_job_config c;
    train_job_defaults(&c);
    const char *dirs[MAX_DIRS], *vdirs[MAX_DIRS], *kind = "linear", *loss = "listwise", *target = "answer", *outputs = "per_head", *streams = NULL,
               *weights = "none";
    int64_t threads = 0;
    const cli_opt opts[] = {
        CLI_STRS("--labels", NULL, dirs, &c.n_label_dirs, MAX_DIRS),
        CLI_STRS("--val_labels", NULL, vdirs, &c.n_val_dirs, MAX_DIRS),
        CLI_STR("--output", NULL, &c.output),
        CLI_STR("--metrics", NULL, &c.metrics),
        CLI_STR("--head", NULL, &kind),
        CLI_STR("--loss", NULL, &loss),
        CLI_STR("--target", NULL, &target),
        CLI_STR("--outputs", NULL, &outputs),
        CLI_STR("--streams", NULL, &streams),
        CLI_STR("--stream_weights", NULL, &weights),
        CLI_FLAG("--positions", NULL, &c.positions),
        CLI_FLAG("--repeats", NULL, &c.repeats),
        CLI_FLAG("--calibrate", NULL, &c.calibrate),
        CLI_FLAG("--query_aware", NULL, &c.query_aware),
        CLI_I64("--hidden", NULL, &c.hidden, 1, 4096),
        CLI_I64("--label_lpool", NULL, &c.label_lpool, 2, 63),
        CLI_I64("--rank", NULL, &c.rank, 1, 1024),
        CLI_I64("--epochs", NULL, &c.epochs, 1, 100000),
        CLI_I64("--batch", NULL, &c.batch, 1, 1 << 20),
        CLI_I64("--patience", NULL, &c.patience, 1, 100000),
        CLI_I64("--seed", NULL, &c.seed, 0, INT64_MAX),
        CLI_F32("--lr", NULL, &c.lr, 1e-8f, 10.0f),
        CLI_F32("--weight_decay", NULL, &c.weight_decay, 0.0f, 1.0f),
        CLI_F32("--topk", NULL, &c.topk, 1e-4f, 1.0f),
        CLI_F32("--val_frac", NULL, &c.val_frac, 0.0f, 0.9f),
        CLI_I64("--threads", "-t", &threads, 1, 1024),
        CLI_END,
    };
    int prc = cli_parse_opts("train", argc, argv, opts, s_usage);
    if (prc) return prc == CLI_HELP ? 0 : prc;
    static const char *const kinds[] = {"linear", "mlp", NULL}, *const losses[] = {"listwise", "bce_topk", "recon_rank", NULL},
                             *const targets[] = {"answer", "recon", "selfinfo", NULL}, *const outs[] = {"per_head", "single", NULL},
                             *const ws[] = {"none", "inv_sd", "inv_var", NULL};
    static const head_loss loss_of[] = {LOSS_LISTWISE, LOSS_BCE_TOPK, LOSS_RECON_RANK};
    static const head_stream_weights ws_of[] = {STREAM_WEIGHTS_NONE, STREAM_WEIGHTS_INV_SD, STREAM_WEIGHTS_INV_VAR};
    int ik = s_pick("--head", kind, kinds, "linear or mlp"),
        il = s_pick("--loss", loss, losses, "listwise, bce_topk; per-head recon: recon_rank"),
        it = s_pick("--target", target, targets, "answer, recon, selfinfo or ert"),
        iw = s_pick("--stream_weights", weights, ws, "none, inv_sd or inv_var"),
        io = s_pick("--outputs", outputs, outs, "per_head or single");
    if (ik < 0 || il < 0 || it < 0 || iw < 0 || io < 0) return 2;
    if (!c.n_label_dirs || !c.output) {
        fprintf(stderr, "tis train: --labels DIR and --output HEAD.safetensors are required\n\n");
        s_usage(stderr);
        return 2;
    }
    cli_threads(threads);
    char command[sizeof ((head *)0)->train_command];
    s_command(argc, argv, command, sizeof command);
    c.label_dirs = dirs;
    c.val_dirs = vdirs;
    c.kind = ik ? HEAD_MLP : HEAD_LINEAR;
    c.loss = loss_of[il];
    c.command = command;
    head_target_parse(targets[it], &c.target); /* s_pick took one of its names */
    c.stream_weights = ws_of[iw];
    c.per_head = io == 0;
    if (streams) {
        char tail = 0;
        long long a = 0, b = 0;
        if (sscanf(streams, "%lld:%lld%c", &a, &b, &tail) != 2 || a < 0 || b <= a) {
            fprintf(stderr, "tis train: bad value '%s' for --streams (A:B, 0 <= A < B)\n\n", streams);
            s_usage(stderr);
            return 2;
        }
        c.stream_begin = a;
        c.stream_end = b;
    }
    return train_job_run(&c);
}
