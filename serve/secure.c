/* secure: ipc directory checks, CURVE keys, the ZAP handler thread. */
#include "secure.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "tis_error.h"

/* ---- key files ------------------------------------------------------------ */

static bool s_z85_ok(const char *z) {
    uint8_t bin[32];
    return strlen(z) == SEC_Z85 && zmq_z85_decode(bin, z) != NULL;
}

int sec_keygen(const char *prefix, char *pub_out) {
    if (!prefix || !*prefix || strlen(prefix) > 4000) return tis_error(TIS_EINVAL, "keygen: bad file prefix");
    if (!zmq_has("curve")) return tis_error(TIS_EUNSUPPORTED, "keygen: this libzmq is built without CURVE");
    char pub[SEC_Z85 + 1], sec[SEC_Z85 + 1], path[4100];
    if (zmq_curve_keypair(pub, sec)) return tis_error(TIS_EIO, "keygen: %s", zmq_strerror(zmq_errno()));
    snprintf(path, sizeof path, "%s.key", prefix);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
    if (fd < 0) return tis_error(TIS_EIO, "keygen: cannot create %s: %s", path, strerror(errno));
    char text[256];
    int n = snprintf(text, sizeof text, "# tis CURVE key pair (tis keygen): keep this file private\npublic %s\nsecret %s\n",
                     pub, sec);
    bool ok = fchmod(fd, 0600) == 0 && write(fd, text, (size_t)n) == n;
    ok = close(fd) == 0 && ok;
    memset(sec, 0, sizeof sec);
    memset(text, 0, sizeof text);
    if (!ok) {
        unlink(path);
        return tis_error(TIS_EIO, "keygen: cannot write %s", path);
    }
    snprintf(path, sizeof path, "%s.pub", prefix);
    FILE *f = fopen(path, "wx");
    if (!f) return tis_error(TIS_EIO, "keygen: cannot create %s: %s", path, strerror(errno));
    fprintf(f, "# tis CURVE public key (tis keygen)\npublic %s\n", pub);
    if (fclose(f)) return tis_error(TIS_EIO, "keygen: cannot write %s", path);
    if (pub_out) memcpy(pub_out, pub, SEC_Z85 + 1);
    return 0;
}

/* Calls on(line's key, is_secret, arg) for each "public Z85" / "secret Z85"
 * line (and bare Z85 lines, as public); other lines but comments and blank
 * ones are an error. */
static int s_key_lines(const char *path, int (*on)(const char *z, bool secret, void *arg), void *arg) {
    FILE *f = fopen(path, "r");
    if (!f) return tis_error(TIS_EIO, "cannot open key file %s: %s", path, strerror(errno));
    char line[512];
    int rc = 0, lineno = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        size_t n = strlen(p);
        while (n && (p[n - 1] == '\n' || p[n - 1] == '\r' || p[n - 1] == ' ')) p[--n] = 0;
        if (!*p || (*p == '#' && !s_z85_ok(p))) continue; /* a bare key may start with '#' (Z85 has it) */
        bool secret = false;
        if (!strncmp(p, "public ", 7)) p += 7;
        else if (!strncmp(p, "secret ", 7)) p += 7, secret = true;
        while (*p == ' ') p++;
        if (!s_z85_ok(p)) rc = tis_error(TIS_EFORMAT, "%s:%d: not a CURVE key (40 Z85 characters)", path, lineno);
        else rc = on(p, secret, arg);
    }
    memset(line, 0, sizeof line);
    fclose(f);
    return rc;
}

typedef struct key_pair {
    char pub[SEC_Z85 + 1], sec[SEC_Z85 + 1];
} key_pair;

static int s_on_pair(const char *z, bool secret, void *arg) {
    key_pair *k = arg;
    memcpy(secret ? k->sec : k->pub, z, SEC_Z85 + 1);
    return 0;
}

int sec_key_read(const char *path, char *pub, char *sec) {
    if (!path) return tis_error(TIS_EINVAL, "no key file");
    key_pair k = {{0}, {0}};
    int rc = s_key_lines(path, s_on_pair, &k);
    if (!rc && sec) {
        struct stat sb;
        if (!k.sec[0]) rc = tis_error(TIS_EINVAL, "%s has no secret key (a .key file of tis keygen)", path);
        else if (stat(path, &sb) || (sb.st_mode & 077))
            rc = tis_error(TIS_EINVAL, "%s holds a secret key and others can read it: chmod 600 it", path);
    }
    if (!rc && !k.pub[0] && k.sec[0]) { /* derive it */
        if (zmq_curve_public(k.pub, k.sec)) rc = tis_error(TIS_EFORMAT, "%s: bad secret key", path);
    }
    if (!rc && !k.pub[0]) rc = tis_error(TIS_EINVAL, "%s holds no public key", path);
    if (!rc && pub) memcpy(pub, k.pub, SEC_Z85 + 1);
    if (!rc && sec) memcpy(sec, k.sec, SEC_Z85 + 1);
    memset(&k, 0, sizeof k);
    return rc;
}

/* ---- binding and connecting ----------------------------------------------- */

/* The directory of an ipc socket path is ours and private: made 0700 when
 * missing (its parent must exist). */
static int s_ipc_dir(const char *ep, const char *path, bool insecure) {
    if (path[0] == '@') {
        if (insecure) return 0;
        return tis_error(TIS_EINVAL, "%s: an abstract ipc socket has no file mode: anyone on the host can connect "
                         "(use a path, or --insecure)", ep);
    }
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (insecure) return 0;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return tis_error(TIS_EIO, "%s: cannot make the directory %s: %s", ep, dir, strerror(errno));
    struct stat sb;
    if (lstat(dir, &sb) != 0) return tis_error(TIS_EIO, "%s: %s: %s", ep, dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode) || sb.st_uid != geteuid() || (sb.st_mode & 077))
        return tis_error(TIS_EINVAL,
                         "%s: the directory %s is not private (mode %04o, owner uid %u; needed: a directory of uid "
                         "%u with mode 0700, made so when missing, e.g. ipc:///tmp/tis-%u/front): other users could "
                         "connect; give such a directory, or --insecure",
                         ep, dir, (unsigned)(sb.st_mode & 07777), (unsigned)sb.st_uid, (unsigned)geteuid(),
                         (unsigned)geteuid());
    return 0;
}

static int s_zerr(const char *what, const char *ep) {
    return tis_error(TIS_EIO, "cannot %s %s: %s", what, ep, zmq_strerror(zmq_errno()));
}

int sec_bind(void *sock, const char *ep, const sec_opts *o) {
    static const sec_opts none = {0};
    if (!o) o = &none;
    if (!ep) return tis_error(TIS_EINVAL, "no endpoint");
    if (!strncmp(ep, "ipc://", 6)) {
        int rc = s_ipc_dir(ep, ep + 6, o->insecure);
        if (rc) return rc;
        if (zmq_bind(sock, ep)) return s_zerr("bind", ep);
        if (ep[6] != '@' && chmod(ep + 6, 0600) != 0)
            return tis_error(TIS_EIO, "%s: cannot make the socket 0600: %s", ep, strerror(errno));
        return 0;
    }
    if (!strncmp(ep, "tcp://", 6)) {
        if (o->key) {
            char pub[SEC_Z85 + 1], sec[SEC_Z85 + 1];
            int rc = sec_key_read(o->key, pub, sec), one = 1;
            if (!rc && (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) ||
                        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, sec, SEC_Z85 + 1) ||
                        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, "tis", 3)))
                rc = s_zerr("set CURVE keys for", ep);
            memset(sec, 0, sizeof sec);
            if (rc) return rc;
        } else if (!o->insecure) {
            return tis_error(TIS_EINVAL, "refusing to bind %s without CURVE keys: anyone who can reach it could "
                             "connect. Give --key FILE (tis keygen) and --allow FILE (the public keys of the workers "
                             "and clients), or --insecure to accept anyone", ep);
        }
        return zmq_bind(sock, ep) ? s_zerr("bind", ep) : 0;
    }
    if (!strncmp(ep, "inproc://", 9) || o->insecure) return zmq_bind(sock, ep) ? s_zerr("bind", ep) : 0;
    return tis_error(TIS_EINVAL, "%s: only ipc:// and tcp:// endpoints are checked here (or --insecure)", ep);
}

int sec_connect(void *sock, const char *ep, const sec_opts *o) {
    static const sec_opts none = {0};
    if (!o) o = &none;
    if (!ep) return tis_error(TIS_EINVAL, "no endpoint");
    if (!strncmp(ep, "tcp://", 6) && (o->key || o->server_key)) {
        if (!o->key || !o->server_key)
            return tis_error(TIS_EINVAL, "%s: CURVE needs both our key pair (--key) and the coordinator's public "
                             "key (--server_key)", ep);
        char pub[SEC_Z85 + 1], sec[SEC_Z85 + 1], srv[SEC_Z85 + 1];
        int rc = sec_key_read(o->key, pub, sec);
        if (!rc) rc = sec_key_read(o->server_key, srv, NULL);
        if (!rc && (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, srv, SEC_Z85 + 1) ||
                    zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, pub, SEC_Z85 + 1) ||
                    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, sec, SEC_Z85 + 1)))
            rc = s_zerr("set CURVE keys for", ep);
        memset(sec, 0, sizeof sec);
        if (rc) return rc;
    } else if (!strncmp(ep, "tcp://", 6) && !o->insecure) {
        return tis_error(TIS_EINVAL, "refusing to connect to %s without CURVE keys: give --key FILE (ours, tis "
                         "keygen) and --server_key FILE (the coordinator's public key), or --insecure", ep);
    } else if (strncmp(ep, "tcp://", 6) && strncmp(ep, "ipc://", 6) && strncmp(ep, "inproc://", 9) && !o->insecure) {
        return tis_error(TIS_EINVAL, "%s: only ipc:// and tcp:// endpoints are checked here (or --insecure)", ep);
    }
    return zmq_connect(sock, ep) ? s_zerr("connect to", ep) : 0;
}

const char *sec_default_endpoint(char *buf, int cap, const char *which) {
    snprintf(buf, (size_t)cap, "ipc:///tmp/tis-%u/%s", (unsigned)geteuid(), which);
    return buf;
}

/* ---- the ZAP handler ------------------------------------------------------ */

struct sec_zap {
    void *rep;               /* REP on inproc://zeromq.zap.01 (used by the thread only once started) */
    pthread_t th;
    bool running;
    atomic_int stop;
    atomic_llong refused;
    uint8_t (*keys)[32];     /* the allowed public keys [n_keys] (owned) */
    int n_keys, cap_keys;
};

static int s_on_allow(const char *z, bool secret, void *arg) {
    sec_zap *zp = arg;
    if (secret) return 0; /* a .key file on the list: its public line counts */
    if (zp->n_keys == zp->cap_keys) {
        int nc = zp->cap_keys ? 2 * zp->cap_keys : 16;
        if (nc > 100000) return tis_error(TIS_ERANGE, "allow-list: more than 100000 keys");
        void *k = realloc(zp->keys, (size_t)nc * sizeof *zp->keys);
        if (!k) return tis_error(TIS_ENOMEM, "allow-list: out of memory");
        zp->keys = k;
        zp->cap_keys = nc;
    }
    zmq_z85_decode(zp->keys[zp->n_keys++], z);
    return 0;
}

static bool s_allowed(const sec_zap *z, const uint8_t *key) {
    for (int i = 0; i < z->n_keys; i++)
        if (!memcmp(z->keys[i], key, 32)) return true;
    return false;
}

enum { ZAP_FRAMES = 8 };

/* One request (RFC 27: version, request id, domain, address, identity,
 * mechanism, credentials...) -> one reply (version, request id, status
 * code, status text, user id, metadata). */
static void s_zap_one(sec_zap *z) {
    zmq_msg_t f[ZAP_FRAMES];
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, z->rep, 0) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < ZAP_FRAMES) f[n++] = m;
        else zmq_msg_close(&m);
    }
    const char *code = "400", *text = "refused";
    char mech[16] = "", addr[64] = "", key[SEC_Z85 + 1] = "";
    if (n >= 6 && zmq_msg_size(&f[0]) == 3 && !memcmp(zmq_msg_data(&f[0]), "1.0", 3)) {
        snprintf(mech, sizeof mech, "%.*s", (int)zmq_msg_size(&f[5]), (const char *)zmq_msg_data(&f[5]));
        snprintf(addr, sizeof addr, "%.*s", (int)zmq_msg_size(&f[3]), (const char *)zmq_msg_data(&f[3]));
        if (!strcmp(mech, "NULL")) {
            code = "200", text = "OK";
        } else if (!strcmp(mech, "CURVE") && n >= 7 && zmq_msg_size(&f[6]) == 32) {
            zmq_z85_encode(key, zmq_msg_data(&f[6]), 32);
            if (s_allowed(z, zmq_msg_data(&f[6]))) code = "200", text = "OK";
            else text = "key not on the allow-list";
        } else {
            text = "mechanism not accepted";
        }
    } else {
        code = "500", text = "malformed ZAP request";
    }
    if (code[0] != '2') {
        atomic_fetch_add(&z->refused, 1);
        fprintf(stderr, "[secure] refused a %s peer from %s%s%s: %s\n", mech[0] ? mech : "?", addr[0] ? addr : "?",
                key[0] ? " with key " : "", key, text);
    }
    const void *id = n >= 2 ? zmq_msg_data(&f[1]) : "";
    size_t id_len = n >= 2 ? zmq_msg_size(&f[1]) : 0;
    zmq_send(z->rep, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(z->rep, id, id_len, ZMQ_SNDMORE);
    zmq_send(z->rep, code, 3, ZMQ_SNDMORE);
    zmq_send(z->rep, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(z->rep, "", 0, ZMQ_SNDMORE);
    zmq_send(z->rep, "", 0, 0);
    for (int i = 0; i < n; i++) zmq_msg_close(&f[i]);
}

static void *s_zap_thread(void *arg) {
    sec_zap *z = arg;
    while (!atomic_load(&z->stop)) {
        zmq_pollitem_t it = {z->rep, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 100) > 0 && (it.revents & ZMQ_POLLIN)) s_zap_one(z);
    }
    return NULL;
}

int sec_zap_start(sec_zap **out, void *ctx, const sec_opts *o) {
    *out = NULL;
    sec_zap *z = calloc(1, sizeof *z);
    if (!z) return tis_error(TIS_ENOMEM, "zap: out of memory");
    int rc = 0;
    if (o && o->allow) rc = s_key_lines(o->allow, s_on_allow, z);
    if (!rc && o && o->key) {
        char pub[SEC_Z85 + 1];
        rc = sec_key_read(o->key, pub, NULL);
        if (!rc) rc = s_on_allow(pub, false, z);
    }
    if (!rc) {
        int linger = 0;
        z->rep = zmq_socket(ctx, ZMQ_REP);
        if (!z->rep || zmq_setsockopt(z->rep, ZMQ_LINGER, &linger, sizeof linger) ||
            zmq_bind(z->rep, "inproc://zeromq.zap.01"))
            rc = tis_error(TIS_EIO, "zap: cannot bind inproc://zeromq.zap.01: %s", zmq_strerror(zmq_errno()));
    }
    if (!rc && pthread_create(&z->th, NULL, s_zap_thread, z) != 0) rc = tis_error(TIS_EIO, "zap: cannot start thread");
    if (rc) {
        sec_zap_stop(&z);
        return rc;
    }
    z->running = true;
    *out = z;
    return 0;
}

int64_t sec_zap_refused(const sec_zap *z) { return z ? (int64_t)atomic_load(&((sec_zap *)z)->refused) : 0; }

void sec_zap_stop(sec_zap **p) {
    if (!p || !*p) return;
    sec_zap *z = *p;
    if (z->running) {
        atomic_store(&z->stop, 1);
        pthread_join(z->th, NULL);
    }
    if (z->rep) zmq_close(z->rep);
    free(z->keys);
    free(z);
    *p = NULL;
}
