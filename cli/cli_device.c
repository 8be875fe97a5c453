/* --device for the commands that run the model in this process (generate,
 * bench): "cpu" or "cuda:N", serve/devspec.h's syntax. */
#include <stdio.h>

#include "cli.h"
#include "devspec.h"
#include "model.h"
#include "tis_error.h"
#ifdef TIS_HAVE_CUDA
#include "cuda/backend_cuda.h"
#endif

int cli_device_backend(const char *cmd, const char *device, const tis_backend **be) {
    *be = backend_cpu();
    devspec d;
    if (devspec_parse(device, &d)) {
        fprintf(stderr, "tis %s: --device: %s\n", cmd, tis_last_error());
        return 2;
    }
    if (!d.cuda) return 0;
    /* the CUDA probe's reason where the device cannot be used; "tis was
     * built without CUDA" in a build without it */
    if (devspec_check(&d, NULL)) { /* its message names the device */
        fprintf(stderr, "tis %s: --device: %s\n", cmd, tis_last_error());
        return 1;
    }
#ifdef TIS_HAVE_CUDA
    *be = backend_cuda(d.index);
    if (!*be) {
        fprintf(stderr, "tis %s: --device %s: %s\n", cmd, device, tis_last_error());
        return 1;
    }
#endif
    return 0;
}

int cli_device_prepare(const char *cmd, struct model *m, const tis_backend *be) {
    if (!model_to_backend(m, be)) return 0;
    fprintf(stderr, "tis %s: preparing the weights for %s: %s\n", cmd, be->name, tis_last_error());
    return 1;
}

int cli_device_cpu_only(const char *cmd, const char *device, const char *why) {
    const tis_backend *be = NULL;
    int rc = cli_device_backend(cmd, device, &be);
    if (rc || backend_is_host(be)) return rc;
    fprintf(stderr, "tis %s: --device %s: %s\n", cmd, device, why);
    return 1;
}
