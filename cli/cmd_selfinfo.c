/* tis selfinfo: what the selfinfo press sees in a text: each token's
 * self-information -ln p(token | before) and its word's sum, the score the
 * press ranks by (press/selfinfo.h). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eval_job.h"
#include "forward.h"
#include "model.h"
#include "selfinfo.h"
#include "tis_error.h"
#include "tokenizer.h"

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: tis selfinfo [-m MODEL] -f FILE [-t THREADS]\n"
            "  -m, --model PATH   .gguf file or HF directory (default %s)\n"
            "  -f, --file PATH    the text (read as one context, after BOS when the model adds one)\n"
            "  -t, --threads N    compute threads (default: all cores)\n"
            "      --device D     cpu (default) or cuda:N\n"
            "Prints one line per token, tab-separated: position, id, its bytes (C-escaped),\n"
            "-ln p(token | before) in nats, and its word's sum (what `--baseline selfinfo` ranks\n"
            "by; a text that starts the prompt gives its first token the largest of the others).\n",
            cli_default_model());
}

/* The token's bytes, printable: \\n, \\t, \\\\ and \\xHH for the others. */
static void s_bytes(FILE *f, const tokenizer *tok, int32_t id) {
    char buf[256];
    int64_t n = tokenizer_token_bytes(tok, id, buf, sizeof buf);
    if (n > (int64_t)sizeof buf) n = sizeof buf;
    for (int64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c == '\\') fputs("\\\\", f);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c);
        else fputc(c, f);
    }
}

int cmd_selfinfo(int argc, char **argv) {
    const char *model_path = cli_default_model(), *file = NULL, *device = "cpu";
    int64_t threads = 0;
    const cli_opt opts[] = {
        CLI_STR("--model", "-m", &model_path), CLI_STR("--file", "-f", &file),
        CLI_I64("--threads", "-t", &threads, 1, 1024), CLI_STR("--device", NULL, &device), CLI_END,
    };
    int prc = cli_parse_opts("selfinfo", argc, argv, opts, s_usage);
    if (prc) return prc == CLI_HELP ? 0 : prc;
    const tis_backend *be = NULL;
    if ((prc = cli_device_backend("selfinfo", device, &be))) return prc;
    if (!file) {
        fprintf(stderr, "tis selfinfo: a text file is required (-f)\n\n");
        s_usage(stderr);
        return 2;
    }
    char *text = eval_job_slurp(file, (size_t)64 << 20);
    if (!text) return cli_fail("selfinfo");
    cli_threads(threads);
    model *m = NULL;
    forward_state *st = NULL;
    int32_t *body = NULL, *ids = NULL;
    float *nll = NULL, *word = NULL;
    int64_t nb = 0;
    int rc = model_load(&m, model_path) ? cli_fail("loading the model") : 0;
    if (!rc) rc = cli_device_prepare("selfinfo", m, be);
    if (!rc && forward_state_new(&st, m, be, 512)) rc = cli_fail("setting up");
    if (!rc && tokenizer_encode(m->tok, text, strlen(text), false, &body, &nb)) rc = cli_fail("tokenizing");
    if (!rc && nb == 0) rc = (fprintf(stderr, "tis selfinfo: %s has no tokens\n", file), 1);
    bool bos = !rc && tokenizer_add_bos(m->tok) && tokenizer_bos(m->tok) >= 0;
    if (!rc && (!(ids = malloc((size_t)(nb + 1) * sizeof *ids)) || !(nll = malloc((size_t)nb * sizeof *nll)) ||
                !(word = malloc((size_t)nb * sizeof *word))))
        rc = (fprintf(stderr, "tis selfinfo: out of memory for %" PRId64 " tokens\n", nb), 1);
    if (!rc) {
        if (bos) ids[0] = tokenizer_bos(m->tok);
        memcpy(ids + bos, body, (size_t)nb * sizeof *ids);
        if (selfinfo_compute(st, NULL, ids, bos, nb, nll)) rc = cli_fail("selfinfo");
    }
    if (!rc) {
        memcpy(word, nll, (size_t)nb * sizeof *word);
        selfinfo_words(m->tok, body, nb, word);
        printf("position\tid\tbytes\tnll\tword\n");
        for (int64_t j = 0; j < nb; j++) {
            printf("%" PRId64 "\t%d\t", j, body[j]);
            s_bytes(stdout, m->tok, body[j]);
            printf("\t%.4f\t%.4f\n", nll[j], word[j]);
        }
        if (fflush(stdout) != 0) rc = (fprintf(stderr, "tis selfinfo: cannot write the output\n"), 1);
    }
    free(body);
    free(ids);
    free(nll);
    free(word);
    free(text);
    forward_state_destroy(&st);
    model_destroy(&m);
    return rc;
}
