/* press_spec: policy names with named heads and unions (press_spec.h). */
#include "press_spec.h"

#include <stdio.h>
#include <string.h>

#include "tis_error.h"

int64_t press_head_as_name_len(const char *entry) {
    const char *eq = strchr(entry, '=');
    return eq ? (int64_t)(eq - entry) : -1;
}

/* True for 1-31 characters of [a-z0-9_]. */
static bool s_head_name_ok(const char *s, size_t n) {
    if (n < 1 || n > 31) return false;
    for (size_t k = 0; k < n; k++)
        if (!((s[k] >= 'a' && s[k] <= 'z') || (s[k] >= '0' && s[k] <= '9') || s[k] == '_')) return false;
    return true;
}

int press_head_as_check(const char *const *entries, int64_t n, const char *flag) {
    for (int64_t i = 0; i < n; i++) {
        const char *e = entries[i];
        int64_t len = press_head_as_name_len(e);
        if (len < 0) return tis_error(TIS_EINVAL, "%s '%s': give NAME=PATH (e.g. tis_pos=h.safetensors)", flag, e);
        if (len < 1 || len > 31) return tis_error(TIS_EINVAL, "%s '%s': the name takes 1 to 31 characters", flag, e);
        if (!s_head_name_ok(e, (size_t)len))
            return tis_error(TIS_EINVAL, "%s '%s': a name is made of a-z, 0-9 and _", flag, e);
        if (!e[len + 1]) return tis_error(TIS_EINVAL, "%s '%s': no head path after '='", flag, e);
        char name[32];
        snprintf(name, sizeof name, "%.*s", (int)len, e);
        press pr;
        if (!strcmp(name, "full") || !strcmp(name, "all") || press_parse(name, &pr) == 0)
            return tis_error(TIS_EINVAL, "%s %s: '%s' is already a policy; name the head otherwise", flag, e, name);
        for (int64_t j = 0; j < i; j++)
            if (press_head_as_name_len(entries[j]) == len && !strncmp(entries[j], e, (size_t)len))
                return tis_error(TIS_EINVAL, "%s: '%s' is given twice", flag, name);
    }
    return 0;
}

int64_t press_head_as_find(const char *const *entries, int64_t n, const char *name) {
    for (int64_t i = 0; i < n; i++) {
        int64_t len = press_head_as_name_len(entries[i]);
        if (len > 0 && (size_t)len == strlen(name) && !strncmp(entries[i], name, (size_t)len)) return i;
    }
    return -1;
}

/* One member (no '|'): a named head's `tis` renamed, or press_parse's. */
static int s_member(const char *name, const char *const *head_as, int64_t n_head_as, press *out, int *head) {
    char base[64], as_tis[80];
    const char *suffix = press_split_name(name, base, sizeof base);
    int64_t idx = n_head_as > 0 ? press_head_as_find(head_as, n_head_as, base) : -1;
    press probe;
    bool named = idx >= 0;
    if (!named && n_head_as < 0 && s_head_name_ok(base, strlen(base)) && strcmp(base, "full") &&
        strcmp(base, "all") && press_parse(base, &probe) == TIS_ENOTFOUND) /* any head name: not looked up */
        named = true;
    if (named) snprintf(as_tis, sizeof as_tis, "tis%s", suffix);
    int rc = press_parse(named ? as_tis : name, out);
    if (rc == TIS_ENOTFOUND && !strncmp(base, "tis_", 4) && s_head_name_ok(base, strlen(base)))
        return tis_error(rc, "press: unknown policy '%s': a head of one's own is named with --head_as %s=PATH",
                         name, base);
    if (rc) return rc;
    if (named) {
        if (strlen(name) >= sizeof out->name)
            return tis_error(TIS_EINVAL, "press: bad policy name (%zu characters at most)", sizeof out->name - 1);
        snprintf(out->name, sizeof out->name, "%s", name);
        *head = idx >= 0 ? (int)idx : PRESS_HEAD_NAMED;
    } else {
        *head = !out->needs_head ? PRESS_HEAD_NONE : out->query_head ? PRESS_HEAD_QUERY : PRESS_HEAD_CTX;
    }
    return 0;
}

int press_spec_parse(const char *name, const char *const *head_as, int64_t n_head_as, press_spec *out) {
    memset(out, 0, sizeof *out);
    out->head[0] = out->head[1] = PRESS_HEAD_NONE;
    if (!name || !*name) return tis_error(TIS_EINVAL, "press: no policy name");
    if (strlen(name) >= sizeof out->name)
        return tis_error(TIS_EINVAL, "press: '%.40s...': a policy's name takes at most %zu characters", name,
                         sizeof out->name - 1);
    snprintf(out->name, sizeof out->name, "%s", name);
    char first[64];
    const char *second = press_union_split(name, first, sizeof first);
    if (!second) {
        out->n = 1;
        return s_member(name, head_as, n_head_as, &out->m[0], &out->head[0]);
    }
    if (strchr(second, '|')) return tis_error(TIS_EINVAL, "press: '%s': a union takes two policies", name);
    if (!*first || !*second) return tis_error(TIS_EINVAL, "press: '%s': a union is A|B, two policies", name);
    const char *mn[2] = {first, second};
    for (int i = 0; i < 2; i++) {
        int rc = s_member(mn[i], head_as, n_head_as, &out->m[i], &out->head[i]);
        if (rc) return rc;
        if (!out->m[i].score)
            return tis_error(TIS_EINVAL, "press: '%s': full keeps everything; a union takes two compressing policies",
                             name);
        if (out->m[i].attn_hook)
            return tis_error(TIS_EINVAL, "press: '%s': the attention hook (+hook) belongs to one policy, not a union",
                             name);
    }
    if (!strcmp(out->m[0].name, out->m[1].name))
        return tis_error(TIS_EINVAL, "press: '%s': a union of a policy with itself", name);
    out->n = 2;
    return 0;
}

void press_spec_row(const press_spec *sp, press *out) {
    *out = sp->m[0];
    if (sp->n < 2) return;
    const press *b = &sp->m[1];
    snprintf(out->name, sizeof out->name, "%s", sp->name);
    out->needs_obs |= b->needs_obs;
    out->needs_oracle |= b->needs_oracle;
    out->needs_recon |= b->needs_recon;
    out->needs_selfinfo |= b->needs_selfinfo;
    out->query_head |= b->query_head;
    out->needs_head = false;
    out->calib = PRESS_CALIB_NONE;
}

int press_spec_heads(const press_spec *sp, const struct head *ctx, const struct head *query,
                     struct head *const *named, const struct head *out[2]) {
    out[0] = out[1] = NULL;
    for (int i = 0; i < sp->n; i++) {
        if (!sp->m[i].needs_head) continue;
        int h = sp->head[i];
        out[i] = h >= 0 ? (named ? named[h] : NULL) : h == PRESS_HEAD_QUERY ? query : h == PRESS_HEAD_CTX ? ctx : NULL;
        if (!out[i]) return i;
    }
    return -1;
}

bool press_spec_needs_head(const press_spec *sp) {
    for (int i = 0; i < sp->n; i++)
        if (sp->m[i].needs_head) return true;
    return false;
}
