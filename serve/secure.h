/* secure: who may connect to the pipeline's sockets (docs/pipeline.md,
 * "Who may connect").
 *
 *   ipc://PATH  the socket file is made 0600, in a directory that is ours
 *               and private (0700; created so when missing): only our user
 *               can connect. A directory others can enter is refused.
 *   tcp://...   libzmq CURVE (over libsodium): the binding side (the
 *               coordinator) has a key pair and an allow-list of public
 *               keys, answered by a ZAP handler thread (inproc://
 *               zeromq.zap.01, RFC 27) that accepts only keys on the list;
 *               a connecting side (worker, client) has its own key pair and
 *               the coordinator's public key. A tcp endpoint without keys
 *               is refused unless insecure is set.
 *   inproc://   in one process: always allowed.
 *
 * Key files (tis keygen, sec_keygen): PREFIX.key holds the pair, one
 * "public Z85" and one "secret Z85" line, mode 0600 (a secret file others
 * can read is refused); PREFIX.pub holds the "public Z85" line. An
 * allow-list is any number of such public lines (cat a.pub b.pub > allow);
 * a file with a public line (a .pub, or a .key) names a server's key. */
#ifndef TIS_SECURE_H
#define TIS_SECURE_H

#include <stdbool.h>
#include <stdint.h>

enum { SEC_Z85 = 40 }; /* a CURVE key in Z85 text */

/* Borrowed paths (none owned). */
typedef struct sec_opts {
    const char *key;        /* our key pair (.key file), or NULL */
    const char *server_key; /* connecting: the coordinator's public key (a file with a public line) */
    const char *allow;      /* binding: the allow-list of public keys (our own public key is always
                               on it: local workers and the HTTP front use the coordinator's pair) */
    bool insecure;          /* accept a tcp endpoint without keys, an ipc one in a shared directory */
} sec_opts;

/* Writes PREFIX.key (0600, created exclusively: an existing file is an
 * error) and PREFIX.pub (0644) with a fresh key pair; pub_out (41 bytes,
 * NUL-terminated) gets the public key when not NULL. */
int sec_keygen(const char *prefix, char *pub_out);

/* Reads a key file: its public key (pub, 41 bytes) and, when sec is not
 * NULL, its secret key (an error when it has none or others can read the
 * file). Either may be NULL. */
int sec_key_read(const char *path, char *pub, char *sec);

/* Sets up sock for ep by the rules above, then binds / connects. The error
 * says what is missing (and --insecure where that would let it through). */
int sec_bind(void *sock, const char *ep, const sec_opts *o);
int sec_connect(void *sock, const char *ep, const sec_opts *o);

/* The ZAP handler of a context (one per context, before its first bind):
 * a thread answering inproc://zeromq.zap.01. It accepts the NULL mechanism
 * (ipc sockets, guarded by their file modes; tcp only with insecure), and
 * CURVE clients whose key is on o->allow or is o->key's; it refuses every
 * other (and PLAIN). Refusals are counted and logged to stderr with the
 * peer's address and key. */
typedef struct sec_zap sec_zap;
int sec_zap_start(sec_zap **out, void *zmq_ctx, const sec_opts *o);
int64_t sec_zap_refused(const sec_zap *z);
void sec_zap_stop(sec_zap **p);

/* The default endpoints: ipc:///tmp/tis-<uid>/front and .../back (a
 * directory of our own, made 0700 by the coordinator's bind). which:
 * "front" or "back"; returns buf. */
const char *sec_default_endpoint(char *buf, int cap, const char *which);

#endif
