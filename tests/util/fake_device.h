/* fake_device: a test-only backend with "its own memory", wrapping the CPU
 * reference backend, so the engine's device residency is tested on any
 * machine.
 *
 * Its alloc returns pointers the host cannot dereference: the real (host)
 * address plus FAKE_DEVICE_TAG (bit 52), which is outside every mapping
 * (non-canonical on x86-64 with 4-level paging, past the 48-bit user space
 * elsewhere), so any direct read or write by engine code - a memcpy into
 * the cache, a hook handed a backend pointer - faults at once. Pointer
 * arithmetic on them still works, as on device pointers. Each op removes
 * the tag of the arguments the vtable says live in backend memory (a host
 * pointer passed there aborts with a message), then runs the CPU op:
 * results are the CPU backend's, bit for bit. Counts allocations, bytes
 * moved and ops, for the tests to check. */
#ifndef TIS_FAKE_DEVICE_H
#define TIS_FAKE_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

#define FAKE_DEVICE_TAG ((uintptr_t)1 << 52)

typedef struct fake_device_stats {
    int64_t live_allocs;         /* alloc - free */
    int64_t uploads, downloads;  /* calls */
    size_t up_bytes, down_bytes;
    int64_t kv_appends, weight_prepares, syncs;
} fake_device_stats;

/* The backend (a static table). cannot_observe: the variant that refuses
 * attention observers like cuda does (same memory, same counters). */
const tis_backend *fake_device(void);
const tis_backend *fake_device_no_observe(void);
fake_device_stats *fake_device_stats_get(void);

#endif
