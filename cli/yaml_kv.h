/* yaml_kv: a YAML config (libyaml) read as flat dotted keys.
 *
 *   coordinator:            ->  "coordinator.max_queue" = "64"
 *     max_queue: 64
 *
 * Only mappings of scalars are configs here, and lists of plain values
 * (`devices: [0, 1]` is the value "[0,1]"); a nested list, a list of
 * mappings, an alias or a repeated key is an error with its line. A reader takes keys with
 * yaml_kv_get; yaml_kv_unused then names any key nobody asked for, so a
 * misspelt option is an error, never silently ignored. */
#ifndef TIS_YAML_KV_H
#define TIS_YAML_KV_H

#include <stdbool.h>
#include <stdint.h>

typedef struct yaml_kv {
    char **key, **val;
    int *line;
    bool *used;
    int n, cap;
    char *path;
} yaml_kv;

int yaml_kv_load(yaml_kv *kv, const char *path);
void yaml_kv_free(yaml_kv *kv);

/* The value of `key` (marked used), or NULL. */
const char *yaml_kv_get(yaml_kv *kv, const char *key);
/* Typed getters: 0 when absent (out untouched) or read; TIS_EINVAL naming
 * the file, line and key when the value is not one. */
int yaml_kv_i64(yaml_kv *kv, const char *key, int64_t lo, int64_t hi, int64_t *out);
int yaml_kv_str(yaml_kv *kv, const char *key, const char **out);
/* TIS_EINVAL naming the first key no getter asked for; 0 when none. */
int yaml_kv_unused(const yaml_kv *kv);

#endif
