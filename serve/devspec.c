/* devspec: "cpu" / "cuda:N", a role's device list, the worker's check. */
#include "devspec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tis_error.h"
#ifdef TIS_HAVE_CUDA
#include "cuda_probe.h"
#endif

bool devspec_have_cuda(void) {
#ifdef TIS_HAVE_CUDA
    return true;
#else
    return false;
#endif
}

bool devspec_standin(void) {
    const char *v = getenv("TIS_DEVMEM");
    return v && !strcmp(v, "host");
}

static int s_index(const char *t, int *out) {
    char *end = NULL;
    errno = 0;
    long x = strtol(t, &end, 10);
    if (!*t || *t == '-' || *t == '+' || *t == ' ' || errno || *end || x < 0 || x > DEVSPEC_MAX_INDEX) return -1;
    *out = (int)x;
    return 0;
}

int devspec_parse(const char *text, devspec *out) {
    *out = (devspec){0};
    if (text && !strcmp(text, "cpu")) return 0;
    if (text && !strcmp(text, "cuda")) return out->cuda = true, 0;
    if (text && !strncmp(text, "cuda:", 5) && !s_index(text + 5, &out->index)) return out->cuda = true, 0;
    return tis_error(TIS_EINVAL, "device '%s': cpu, cuda or cuda:N (N in 0..%d)", text ? text : "",
                     DEVSPEC_MAX_INDEX);
}

const char *devspec_str(const devspec *d, char *buf, size_t cap) {
    if (d->cuda) snprintf(buf, cap, "cuda:%d", d->index);
    else snprintf(buf, cap, "cpu");
    return buf;
}

/* "[0,1]" (the config reader's form of a list) into idx[DEVSPEC_MAX_LIST]. */
static int s_list(const char *role, const char *devices, int *idx, int *n) {
    *n = 0;
    size_t len = strlen(devices);
    if (len < 2 || devices[0] != '[' || devices[len - 1] != ']')
        return tis_error(TIS_EINVAL, "%s.devices '%s': a list of GPU numbers, e.g. [0, 1]", role, devices);
    if (len == 2) return tis_error(TIS_EINVAL, "%s.devices is empty: list GPUs, or use %s.device", role, role);
    char one[32];
    for (const char *p = devices + 1; p < devices + len - 1;) {
        size_t k = strcspn(p, ",]");
        snprintf(one, sizeof one, "%.*s", (int)(k < 31 ? k : 31), p);
        int x = 0;
        if (k >= 31 || s_index(one, &x))
            return tis_error(TIS_EINVAL, "%s.devices: '%s' is not a GPU number in 0..%d", role, one,
                             DEVSPEC_MAX_INDEX);
        for (int i = 0; i < *n; i++)
            if (idx[i] == x) return tis_error(TIS_EINVAL, "%s.devices lists GPU %d twice", role, x);
        if (*n == DEVSPEC_MAX_LIST)
            return tis_error(TIS_EINVAL, "%s.devices: more than %d GPUs", role, DEVSPEC_MAX_LIST);
        idx[(*n)++] = x;
        p += k + (p[k] == ',');
    }
    return 0;
}

int devspec_expand(const char *role, int64_t n_workers, const char *device, const char *devices, devspec *out,
                   int64_t cap, int64_t *n) {
    *n = 0;
    if (device && devices)
        return tis_error(TIS_EINVAL, "%s: give device or devices, not both (devices: [0, 1] starts %s.workers "
                         "workers on each listed GPU)", role, role);
    devspec one = {0};
    int idx[DEVSPEC_MAX_LIST], n_idx = 1;
    int rc = devices ? s_list(role, devices, idx, &n_idx) : device ? devspec_parse(device, &one) : 0;
    if (rc && device && !devices) {
        char why[256];
        snprintf(why, sizeof why, "%s", tis_last_error());
        return tis_error(TIS_EINVAL, "%s.device: %s", role, why);
    }
    if (rc) return rc;
    if (devices && n_workers < 1)
        return tis_error(TIS_EINVAL, "%s.devices lists %d GPU%s but %s.workers is %lld: workers counts the "
                         "workers on each listed GPU (1 or more), or remove devices", role, n_idx,
                         n_idx > 1 ? "s" : "", role, (long long)n_workers);
    if ((devices || one.cuda) && !devspec_have_cuda() && !devspec_standin())
        return tis_error(TIS_EUNSUPPORTED, "%s on %s: tis was built without CUDA (configure with nvcc present, "
                         "TIS_CUDA=ON), so only cpu workers exist", role, devices ? devices : device);
    if (n_workers * n_idx > cap)
        return tis_error(TIS_ERANGE, "%s: %lld workers x %d devices is over %lld worker processes", role,
                         (long long)n_workers, n_idx, (long long)cap);
    for (int d = 0; d < n_idx; d++)
        for (int64_t w = 0; w < n_workers; w++)
            out[(*n)++] = devices ? (devspec){.cuda = true, .index = idx[d]} : one;
    return 0;
}

int devspec_check(const devspec *d, const char *worker_name) {
    const char *fault = getenv("TIS_FAULT_DEVICE"); /* any device: the CPU build tests tis serve's side too */
    char dn[16];
    if (fault && *fault && worker_name && strstr(worker_name, fault))
        return tis_error(TIS_EUNSUPPORTED, "%s: unusable: TIS_FAULT_DEVICE=%s (a test)",
                         devspec_str(d, dn, sizeof dn), fault);
    if (!d->cuda || devspec_standin()) return 0;
#ifdef TIS_HAVE_CUDA
    char why[1024] = "";
    int n = cuda_probe(why, sizeof why);
    if (n <= 0) return tis_error(TIS_EUNSUPPORTED, "cuda:%d: %s", d->index, why[0] ? why : "no CUDA device");
    if (d->index >= n)
        return tis_error(TIS_EUNSUPPORTED, "cuda:%d: only %d CUDA device%s here (cuda:0..cuda:%d)", d->index, n,
                         n > 1 ? "s" : "", n - 1);
    return 0;
#else
    return tis_error(TIS_EUNSUPPORTED, "cuda:%d: tis was built without CUDA (TIS_CUDA=OFF)", d->index);
#endif
}
