/* cli_opts: the option table every simple subcommand parses with. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kv.h"
#include "press_spec.h"

static const cli_opt *s_find(const cli_opt *opts, const char *a) {
    for (const cli_opt *o = opts; o->name; o++)
        if (!strcmp(a, o->name) || (o->alias && !strcmp(a, o->alias))) return o;
    return NULL;
}

static bool s_is_option(const char *a) {
    return a[0] == '-' && (a[1] == '-' || (a[1] >= 'a' && a[1] <= 'z') || (a[1] >= 'A' && a[1] <= 'Z'));
}

static void s_what(char *buf, size_t cap, const cli_opt *o) {
    switch (o->kind) {
    case CLI_OPT_I64:
    case CLI_OPT_I64S:
        snprintf(buf, cap, " (an integer in [%lld, %lld])", (long long)o->lo, (long long)o->hi);
        break;
    case CLI_OPT_F32:
    case CLI_OPT_F32S: snprintf(buf, cap, " (a number in [%g, %g])", (double)o->flo, (double)o->fhi); break;
    case CLI_OPT_KV_TYPE: snprintf(buf, cap, " (f16, f32, bf16, q8_0 or q4_0; KEYS,VALUES for two)"); break;
    default: buf[0] = 0; break;
    }
}

/* "bad value V for OPTION (the range)", usage; returns 2. */
static int s_bad(const char *cmd, const char *v, const char *a, const cli_opt *o, void (*usage)(FILE *)) {
    char what[96];
    s_what(what, sizeof what, o);
    fprintf(stderr, "tis %s: bad value '%s' for %s%s\n\n", cmd, v, a, what);
    usage(stderr);
    return 2;
}

int cli_parse_opts(const char *cmd, int argc, char **argv, const cli_opt *opts, void (*usage)(FILE *)) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return CLI_HELP;
        }
        const cli_opt *o = s_find(opts, a);
        if (!o) {
            fprintf(stderr, "tis %s: unknown option '%s'\n\n", cmd, a);
            usage(stderr);
            return 2;
        }
        if (o->kind == CLI_OPT_FLAG) {
            *(bool *)o->dst = true;
            continue;
        }
        if (o->kind == CLI_OPT_STRS || o->kind == CLI_OPT_I64S || o->kind == CLI_OPT_F32S) {
            int64_t got = 0;
            for (; i + 1 < argc && !s_is_option(argv[i + 1]); got++) {
                const char *v = argv[++i];
                if (*o->n >= o->cap) {
                    fprintf(stderr, "tis %s: %s takes at most %lld values\n\n", cmd, a, (long long)o->cap);
                    usage(stderr);
                    return 2;
                }
                bool ok = true;
                float f = 0;
                if (o->kind == CLI_OPT_STRS) ((const char **)o->dst)[*o->n] = v;
                else if (o->kind == CLI_OPT_I64S) ok = cli_parse_i64(v, o->lo, o->hi, (int64_t *)o->dst + *o->n);
                else if ((ok = cli_parse_f32(v, o->flo, o->fhi, &f))) ((double *)o->dst)[*o->n] = f;
                if (!ok) return s_bad(cmd, v, a, o, usage);
                ++*o->n;
            }
            if (!got) {
                fprintf(stderr, "tis %s: option '%s' needs values\n\n", cmd, a);
                usage(stderr);
                return 2;
            }
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "tis %s: option '%s' needs a value\n\n", cmd, a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        bool ok = true;
        switch (o->kind) {
        case CLI_OPT_STR: *(const char **)o->dst = v; break;
        case CLI_OPT_KV_TYPE: /* for every model this process and its workers load */
            ok = kv_types_parse(v, &(kv_types){0}) == 0 && setenv("TIS_KV_TYPE", v, 1) == 0;
            break;
        case CLI_OPT_I64: ok = cli_parse_i64(v, o->lo, o->hi, (int64_t *)o->dst); break;
        case CLI_OPT_F32: ok = cli_parse_f32(v, o->flo, o->fhi, (float *)o->dst); break;
        default: ok = false; break;
        }
        if (!ok) return s_bad(cmd, v, a, o, usage);
    }
    return 0;
}

char *cli_cmdline(int argc, char **argv) {
    size_t cap = 8;
    for (int i = 0; i < argc; i++) cap += 4 * strlen(argv[i]) + 3;
    char *s = malloc(cap), *p = s;
    if (!s) return NULL;
    p += sprintf(p, "tis");
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool quote = !*a || strpbrk(a, " \t\n\"'$`\\;&|<>()*?[]{}~#!") != NULL;
        *p++ = ' ';
        if (quote) *p++ = '\'';
        for (; *a; a++) {
            if (quote && *a == '\'') { /* ' -> '\'' */
                memcpy(p, "'\\''", 4);
                p += 4;
            } else {
                *p++ = *a;
            }
        }
        if (quote) *p++ = '\'';
    }
    *p = 0;
    return s;
}

int cli_check_head_as(const char *const *entries, int64_t n) { return press_head_as_check(entries, n, "--head_as"); }
