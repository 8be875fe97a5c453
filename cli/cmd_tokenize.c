/* tis tokenize: token ids and pieces of a text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "gguf.h"
#include "tis_error.h"
#include "tokenizer.h"

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: tis tokenize [-m MODEL] [--no-special] [--ids] TEXT\n"
            "  -m, --model PATH   .gguf file or HF directory (default %s)\n"
            "      --no-special   encode special-token text (<|im_start|>) as plain text\n"
            "      --ids          print only the ids, on one line\n",
            cli_default_model());
}

/* Loads only the tokenizer (no weights). */
int cli_load_tokenizer(const char *path, tokenizer **out) {
    struct stat sb;
    if (stat(path, &sb) != 0) return tis_error(TIS_EIO, "cannot open '%s'", path);
    if (S_ISDIR(sb.st_mode)) {
        char p[1100];
        snprintf(p, sizeof p, "%s/tokenizer.json", path);
        return tokenizer_from_json(out, p);
    }
    gguf_file *g = NULL;
    int rc = gguf_open(&g, path);
    if (rc) return rc;
    rc = tokenizer_from_gguf(out, g);
    gguf_destroy(&g);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model_path = cli_default_model(), *text = NULL;
    bool special = true, only_ids = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            s_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--no-special")) {
            special = false;
        } else if (!strcmp(a, "--ids")) {
            only_ids = true;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "tis tokenize: %s needs a value\n\n", a);
                s_usage(stderr);
                return 2;
            }
            model_path = argv[++i];
        } else if (a[0] == '-' && a[1] == '-' && text == NULL && strcmp(a, "--") != 0) {
            fprintf(stderr, "tis tokenize: unknown option '%s'\n\n", a);
            s_usage(stderr);
            return 2;
        } else if (!text) {
            if (!strcmp(a, "--") && i + 1 < argc) a = argv[++i];
            text = a;
        } else {
            fprintf(stderr, "tis tokenize: one TEXT argument expected (quote it)\n\n");
            s_usage(stderr);
            return 2;
        }
    }
    if (!text) {
        fprintf(stderr, "tis tokenize: TEXT is required\n\n");
        s_usage(stderr);
        return 2;
    }
    tokenizer *tok = NULL;
    if (cli_load_tokenizer(model_path, &tok)) return cli_fail("loading the tokenizer");
    int32_t *ids = NULL;
    int64_t n = 0;
    if (tokenizer_encode(tok, text, strlen(text), special, &ids, &n)) {
        tokenizer_destroy(&tok);
        return cli_fail("tokenizing");
    }
    if (only_ids) {
        for (int64_t i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
        printf("\n");
    } else {
        for (int64_t i = 0; i < n; i++) {
            char buf[256];
            int64_t nb = tokenizer_token_bytes(tok, ids[i], buf, sizeof buf - 1);
            if (nb < 0) nb = 0;
            if (nb > (int64_t)sizeof buf - 1) nb = sizeof buf - 1;
            buf[nb] = 0;
            /* Show the raw vocabulary piece and the bytes it stands for,
             * escaped so whitespace is visible. */
            printf("%6d  %-24s  \"", ids[i], tokenizer_piece(tok, ids[i]));
            for (int64_t j = 0; j < nb; j++) {
                unsigned char ch = (unsigned char)buf[j];
                if (ch == '\n') printf("\\n");
                else if (ch == '\t') printf("\\t");
                else if (ch == '"') printf("\\\"");
                else if (ch < 0x20) printf("\\x%02x", ch);
                else putchar(ch);
            }
            printf("\"\n");
        }
        printf("%lld tokens\n", (long long)n);
    }
    free(ids);
    tokenizer_destroy(&tok);
    return 0;
}
