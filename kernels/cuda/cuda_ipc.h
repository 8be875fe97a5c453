/* cuda_ipc: the GPU data plane of the pipeline (docs/design.md §9). One device
 * memory pool per worker, allocated once (size rounded up to 2 MiB) and
 * exported once as a cudaIpcMemHandle; a peer opens it once and caches it;
 * blocks inside are named by offset (the same BlockRef as the CPU arena:
 * offset + length, bounds-checked here). Readiness crosses processes as an
 * interprocess CUDA event: the producer records it after the writes on its
 * stream, the consumer's stream waits on it before reading.
 *
 * Handles are opaque bytes (CUDA_IPC_HANDLE_BYTES) that travel in
 * BlockRef.ipc_handle / event_handle. Nothing here runs without a GPU: every
 * call returns a negative tis_error code with the CUDA error's text. */
#ifndef TIS_CUDA_IPC_H
#define TIS_CUDA_IPC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { CUDA_IPC_HANDLE_BYTES = 64, CUDA_POOL_ALIGN = 2 << 20 };

typedef struct cuda_pool cuda_pool;
typedef struct cuda_ipc_event cuda_ipc_event;

/* The creator: `bytes` (rounded up to 2 MiB) of device memory on `device`,
 * exported; handle_out gets CUDA_IPC_HANDLE_BYTES. */
int cuda_pool_create(cuda_pool **out, int device, size_t bytes, uint8_t *handle_out);
/* A peer: the creator's pool from its handle (size as the creator said). */
int cuda_pool_open(cuda_pool **out, int device, const uint8_t *handle, size_t bytes);
void cuda_pool_destroy(cuda_pool **p);   /* creator: frees; peer: closes */
size_t cuda_pool_size(const cuda_pool *p);
/* The device address of [off, off + len), or NULL (and an error) outside. */
void *cuda_pool_at(const cuda_pool *p, uint64_t off, uint64_t len);

/* Host <-> pool copies on the default stream (tests, small transfers). */
int cuda_pool_write(cuda_pool *p, uint64_t off, const void *src, size_t len);
int cuda_pool_read(const cuda_pool *p, uint64_t off, void *dst, size_t len);

/* [off, off + len) of pool p into dst, device memory of dst_device: a plain
 * device copy when the pool sits on dst_device, cudaMemcpyPeer (through
 * the host when the two devices have no peer access) when it is on
 * another. On the default stream, after a cuda_ipc_event_wait. For the
 * decode worker once its KV cache lives on its device (not yet: it copies
 * the block to the host with cuda_pool_read). Not called yet, so not run;
 * the rest of this file ran on an H200 (test_cuda_ipc). */
int cuda_pool_copy_to_device(void *dst, int dst_device, const cuda_pool *p, uint64_t off, size_t len);

/* Interprocess events: create + export (producer), open (consumer). */
int cuda_ipc_event_create(cuda_ipc_event **out, int device, uint8_t *handle_out);
int cuda_ipc_event_open(cuda_ipc_event **out, int device, const uint8_t *handle);
void cuda_ipc_event_destroy(cuda_ipc_event **p);
/* Producer: after the writes on the default stream. Consumer: the default
 * stream waits (device side) / the host waits. */
int cuda_ipc_event_record(cuda_ipc_event *e);
int cuda_ipc_event_wait(cuda_ipc_event *e);
int cuda_ipc_event_sync(cuda_ipc_event *e);

#ifdef __cplusplus
}
#endif

#endif
