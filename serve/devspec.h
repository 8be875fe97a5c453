/* devspec: where a pipeline worker computes and keeps its blocks:
 * "cpu" or "cuda:N" (serve.yaml's <role>.device / <role>.devices, tis
 * worker --device). docs/pipeline.md "Workers on GPUs".
 *
 * Config rules (devspec_expand), per role:
 *   device: cpu | cuda | cuda:N   every worker of the role there (cuda = cuda:0)
 *   devices: [0, 1]               `workers` workers on EACH listed GPU, in list
 *                                 order (workers: 2, devices: [0, 1] -> 4 workers:
 *                                 cuda:0, cuda:0, cuda:1, cuda:1)
 * Both device and devices, an empty or repeated list, or devices with
 * workers: 0, are refused with a message naming the role. Without a CUDA
 * build a cuda device is refused when the config is read. */
#ifndef TIS_DEVSPEC_H
#define TIS_DEVSPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { DEVSPEC_MAX_INDEX = 63, DEVSPEC_MAX_LIST = 16 };

typedef struct devspec {
    bool cuda;       /* else the CPU */
    int index;       /* cuda:index (0..DEVSPEC_MAX_INDEX) */
} devspec;

/* "cpu", "cuda" (cuda:0) or "cuda:N": 0, or TIS_EINVAL quoting the text. */
int devspec_parse(const char *text, devspec *out);
/* "cpu" / "cuda:N" into buf[cap] (16 bytes suffice); returns buf. */
const char *devspec_str(const devspec *d, char *buf, size_t cap);
/* Whether this build has CUDA (TIS_CUDA: kernels/cuda compiled in). */
bool devspec_have_cuda(void);
/* TIS_DEVMEM=host: cuda:N workers are accepted without CUDA or a GPU, their
 * device memory stood in by shared memory (devpool.h devmem_host) and their
 * forward pass on the CPU. For tests of the workers' device path on the CPU
 * (tests/test_devpipe.c); it runs nothing on a GPU. */
bool devspec_standin(void);

/* The devices of a role's `n_workers` worker processes into out[cap]
 * (*n of them; none when n_workers is 0 and no list is given). device:
 * the role's device (NULL: cpu); devices: its list as the config reader
 * gives it ("[0,1]", NULL: none). Refuses a cuda device in a build without
 * CUDA ("tis was built without CUDA"). */
int devspec_expand(const char *role, int64_t n_workers, const char *device, const char *devices, devspec *out,
                   int64_t cap, int64_t *n);

/* Worker side, at start: whether this process can use d. The CPU always;
 * cuda:N only in a CUDA build and when the CUDA probe sees device N; else
 * TIS_EUNSUPPORTED with the probe's reason ("no CUDA device: ...", "cuda:3:
 * only 2 CUDA devices here"). TIS_FAULT_DEVICE=PART makes a worker whose
 * name contains PART fail this check whatever its device, as on a machine
 * without its GPU (tests; the CPU build has no other way to reach it). */
int devspec_check(const devspec *d, const char *worker_name);

/* The exit status of a worker that cannot use its device: tis serve stops
 * and says so instead of running without the role. */
enum { DEVSPEC_EXIT_DEVICE = 3 };

#endif
