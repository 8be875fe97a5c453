/* yaml_kv: libyaml's event parser folded into dotted keys. */
#include "yaml_kv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "tis_error.h"

enum { MAX_DEPTH = 8 };

static int s_add(yaml_kv *kv, const char *key, const char *val, int line) {
    for (int i = 0; i < kv->n; i++)
        if (!strcmp(kv->key[i], key))
            return tis_error(TIS_EFORMAT, "%s:%d: '%s' is given twice (first on line %d)", kv->path, line, key,
                             kv->line[i]);
    if (kv->n == kv->cap) {
        int nc = kv->cap ? 2 * kv->cap : 16;
        char **k = realloc(kv->key, (size_t)nc * sizeof *k);
        if (k) kv->key = k;
        char **v = realloc(kv->val, (size_t)nc * sizeof *v);
        if (v) kv->val = v;
        int *l = realloc(kv->line, (size_t)nc * sizeof *l);
        if (l) kv->line = l;
        bool *u = realloc(kv->used, (size_t)nc * sizeof *u);
        if (u) kv->used = u;
        if (!k || !v || !l || !u) return tis_error(TIS_ENOMEM, "config: out of memory");
        kv->cap = nc;
    }
    kv->key[kv->n] = strdup(key);
    kv->val[kv->n] = strdup(val);
    if (!kv->key[kv->n] || !kv->val[kv->n]) {
        free(kv->key[kv->n]);
        free(kv->val[kv->n]);
        return tis_error(TIS_ENOMEM, "config: out of memory");
    }
    kv->line[kv->n] = line;
    kv->used[kv->n] = false;
    kv->n++;
    return 0;
}

int yaml_kv_load(yaml_kv *kv, const char *path) {
    memset(kv, 0, sizeof *kv);
    kv->path = strdup(path);
    if (!kv->path) return tis_error(TIS_ENOMEM, "config: out of memory");
    FILE *f = fopen(path, "rb");
    if (!f) {
        int rc = tis_error(TIS_EIO, "cannot open config '%s': %s", path, strerror(errno));
        yaml_kv_free(kv);
        return rc;
    }
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        fclose(f);
        yaml_kv_free(kv);
        return tis_error(TIS_ENOMEM, "config: cannot start the YAML parser");
    }
    yaml_parser_set_input_file(&p, f);
    /* prefix[d]: the dotted key of the mapping at depth d; expect_key[d]:
     * the next scalar in that mapping is a key (else a value) */
    char prefix[MAX_DEPTH + 1][512], key[512] = "";
    bool expect_key[MAX_DEPTH + 1] = {0};
    int depth = -1, rc = 0;
    bool done = false, in_list = false;
    char list[512] = ""; /* a list value being read: "[a,b" */
    while (!rc && !done) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            rc = tis_error(TIS_EFORMAT, "%s:%zu: YAML error: %s", path, p.problem_mark.line + 1,
                           p.problem ? p.problem : "malformed");
            break;
        }
        int line = (int)ev.start_mark.line + 1;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT: done = true; break;
        case YAML_MAPPING_START_EVENT:
            if (in_list) {
                rc = tis_error(TIS_EFORMAT, "%s:%d: '%s': a list of plain values only", path, line, key);
                break;
            }
            if (depth + 1 > MAX_DEPTH) {
                rc = tis_error(TIS_EFORMAT, "%s:%d: nested too deep", path, line);
                break;
            }
            if (depth >= 0 && expect_key[depth]) {
                rc = tis_error(TIS_EFORMAT, "%s:%d: a mapping cannot be a key", path, line);
                break;
            }
            if (depth >= 0) {
                expect_key[depth] = true; /* the mapping is this key's value */
                snprintf(prefix[depth + 1], sizeof prefix[0], "%s", key);
            } else {
                prefix[0][0] = 0;
            }
            depth++;
            expect_key[depth] = true;
            break;
        case YAML_MAPPING_END_EVENT: depth--; break;
        case YAML_SCALAR_EVENT: {
            const char *v = (const char *)ev.data.scalar.value;
            if (in_list) {
                size_t used = strlen(list);
                if (!*v || strpbrk(v, ",[]"))
                    rc = tis_error(TIS_EFORMAT, "%s:%d: '%s': a list item '%s'", path, line, key, v);
                else if (snprintf(list + used, sizeof list - used, "%s%s", used > 1 ? "," : "", v) >=
                         (int)(sizeof list - used))
                    rc = tis_error(TIS_EFORMAT, "%s:%d: '%s': the list is too long", path, line, key);
            } else if (depth < 0) {
                rc = tis_error(TIS_EFORMAT, "%s:%d: a config is a mapping of 'key: value' lines", path, line);
            } else if (expect_key[depth]) {
                if (!*v || strchr(v, '.'))
                    rc = tis_error(TIS_EFORMAT, "%s:%d: bad key '%s'", path, line, v);
                else if (snprintf(key, sizeof key, "%s%s%s", prefix[depth], *prefix[depth] ? "." : "", v) >=
                         (int)sizeof key)
                    rc = tis_error(TIS_EFORMAT, "%s:%d: key too long", path, line);
                expect_key[depth] = false;
            } else {
                rc = s_add(kv, key, v, line);
                expect_key[depth] = true;
            }
            break;
        }
        case YAML_SEQUENCE_START_EVENT: /* a list of plain values (devices: [0, 1]): the value "[0,1]" */
            if (in_list || depth < 0 || expect_key[depth])
                rc = tis_error(TIS_EFORMAT, "%s:%d: a list is only the value of a key, of plain values", path, line);
            in_list = true;
            snprintf(list, sizeof list, "[");
            break;
        case YAML_SEQUENCE_END_EVENT:
            in_list = false;
            snprintf(list + strlen(list), sizeof list - strlen(list), "]");
            rc = s_add(kv, key, list, line);
            expect_key[depth] = true;
            break;
        case YAML_ALIAS_EVENT:
            rc = tis_error(TIS_EFORMAT, "%s:%d: aliases are not used in tis configs", path, line);
            break;
        default: break; /* stream / document start and end */
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    fclose(f);
    if (rc) yaml_kv_free(kv);
    return rc;
}

void yaml_kv_free(yaml_kv *kv) {
    for (int i = 0; i < kv->n; i++) {
        free(kv->key[i]);
        free(kv->val[i]);
    }
    free(kv->key);
    free(kv->val);
    free(kv->line);
    free(kv->used);
    free(kv->path);
    memset(kv, 0, sizeof *kv);
}

static int s_find(const yaml_kv *kv, const char *key) {
    for (int i = 0; i < kv->n; i++)
        if (!strcmp(kv->key[i], key)) return i;
    return -1;
}

const char *yaml_kv_get(yaml_kv *kv, const char *key) {
    int i = s_find(kv, key);
    if (i < 0) return NULL;
    kv->used[i] = true;
    return kv->val[i];
}

int yaml_kv_str(yaml_kv *kv, const char *key, const char **out) {
    const char *v = yaml_kv_get(kv, key);
    if (v && *v && strcmp(v, "~") && strcmp(v, "null")) *out = v; /* `key:` alone: not set */
    return 0;
}

int yaml_kv_i64(yaml_kv *kv, const char *key, int64_t lo, int64_t hi, int64_t *out) {
    const char *v = yaml_kv_get(kv, key);
    if (!v) return 0;
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return tis_error(TIS_EINVAL, "%s:%d: %s: '%s' is not an integer in [%lld, %lld]", kv->path,
                         kv->line[s_find(kv, key)], key, v, (long long)lo, (long long)hi);
    *out = x;
    return 0;
}

int yaml_kv_unused(const yaml_kv *kv) {
    for (int i = 0; i < kv->n; i++)
        if (!kv->used[i])
            return tis_error(TIS_EINVAL, "%s:%d: unknown key '%s'", kv->path, kv->line[i], kv->key[i]);
    return 0;
}
