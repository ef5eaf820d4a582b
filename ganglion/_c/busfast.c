/*
 * ganglion._busfast: the plugin bus's hot loop, compiled (optional).
 *
 * Theory of operation: the plugin bus (ganglion/runtime/bus.py) reads what plugins
 * publish on its XSUB socket, checks each message and sends the good ones on to the
 * plugins subscribed to their type on its XPUB socket, adding the meta frame. In
 * Python that costs about ten microseconds a message, twenty times what libzmq's own
 * proxy needs; here the same loop runs in C on the same libzmq sockets (pyzmq's
 * ``Socket.underlying`` is the libzmq socket pointer, the documented way to share a
 * socket with another binding). libzmq is not linked: load() opens the very library
 * pyzmq already loaded (its path comes from /proc/self/maps) and resolves the few
 * functions used, so building needs neither libzmq's headers nor its package.
 *
 * drain() does exactly what PluginBus._drain_python does, for the messages it is sure
 * of, and stops at the first one it is not sure of, which it returns for the Python
 * path to handle (in order) before drain() is called again:
 *
 * - a message of two frames whose type name is in ``names`` (names the Python side has
 *   already checked, with what to do with them) and whose payload is a CBOR map in the
 *   plain subset check_payload() accepts, is sent on to plugin subscribers (flag 1)
 *   with its meta frame, and/or appended to the list for the node (flag 2);
 * - anything else (another number of frames, a name not yet in ``names``, a payload
 *   with something outside the subset: tags, indefinite lengths, deep nesting, big
 *   maps, trailing bytes, text that is not UTF-8...) is returned as it came, with what
 *   libzmq knows of its sender, and the Python path decides (and counts, and logs).
 *
 * check_payload() accepts only payloads the Python check (cbor2's strict decoder and
 * the plain-data rule, ganglion/types/_payload.py) accepts: it is a subset, so the
 * compiled path never lets through a message the Python path would drop
 * (tests/runtime/test_bus_fast.py checks both message by message and on mutated bytes).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define BUSFAST_ABI 3
#define Z_DONTWAIT 1
#define Z_SNDMORE 2
#define MAX_DEPTH 16   /* deeper is left to Python (which allows 32) */
#define MAX_KEYS 64    /* larger maps are left to Python (duplicate-key check) */
#define MAX_FRAMES 8   /* frames kept of a message returned to Python */

typedef struct { unsigned char _[64]; } __attribute__((aligned(8))) zmsg;

static int (*z_msg_init)(zmsg *);
static int (*z_msg_recv)(zmsg *, void *, int);
static int (*z_msg_close)(zmsg *);
static void *(*z_msg_data)(zmsg *);
static size_t (*z_msg_size)(const zmsg *);
static int (*z_msg_more)(const zmsg *);
static const char *(*z_msg_gets)(const zmsg *, const char *);
static int (*z_send)(void *, const void *, size_t, int);
static int (*z_errno)(void);
static int loaded;

/* ---- CBOR: the plain subset ------------------------------------------------ */

typedef struct { const unsigned char *p, *end; } cur;

/* Read an item's head; return 0 and the major type and argument, or -1 (unsure). */
static int head(cur *c, int *major, uint64_t *arg)
{
    if (c->p >= c->end)
        return -1;
    unsigned char b = *c->p++;
    int info = b & 31;
    *major = b >> 5;
    if (info < 24) {
        *arg = (uint64_t)info;
        return 0;
    }
    int n = info == 24 ? 1 : info == 25 ? 2 : info == 26 ? 4 : info == 27 ? 8 : 0;
    if (n == 0 || c->end - c->p < n)
        return -1;  /* indefinite lengths, reserved values, truncation: Python decides */
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | *c->p++;
    *arg = v;
    return n;
}

/* Strict UTF-8 (no overlongs, no surrogates, at most U+10FFFF), as Python decodes it. */
static int utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char b = s[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (b >= 0xC2 && b <= 0xDF) { len = 2; cp = b & 0x1F; }
        else if (b >= 0xE0 && b <= 0xEF) { len = 3; cp = b & 0x0F; }
        else if (b >= 0xF0 && b <= 0xF4) { len = 4; cp = b & 0x07; }
        else return 0;
        if (n - i < len)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF
            || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

static int item(cur *c, int depth);

/* A map's entries: text keys, no duplicates, plain values. 0 ok, -1 unsure. */
static int map_body(cur *c, uint64_t count, int depth)
{
    const unsigned char *kp[MAX_KEYS];
    size_t kn[MAX_KEYS];
    if (count > MAX_KEYS)
        return -1;
    for (uint64_t i = 0; i < count; i++) {
        int major;
        uint64_t len;
        if (head(c, &major, &len) < 0 || major != 3 || (uint64_t)(c->end - c->p) < len)
            return -1;
        if (!utf8_ok(c->p, (size_t)len))
            return -1;
        for (uint64_t j = 0; j < i; j++)
            if (kn[j] == len && memcmp(kp[j], c->p, (size_t)len) == 0)
                return -1;
        kp[i] = c->p;
        kn[i] = (size_t)len;
        c->p += len;
        if (item(c, depth + 1) < 0)
            return -1;
    }
    return 0;
}

/* One plain value at nesting ``depth``. 0 ok, -1 unsure. */
static int item(cur *c, int depth)
{
    int major;
    uint64_t arg;
    int n = head(c, &major, &arg);
    if (n < 0)
        return -1;
    switch (major) {
    case 0: case 1:
        return 0;  /* any size: Python ints are unbounded */
    case 2:
        if ((uint64_t)(c->end - c->p) < arg)
            return -1;
        c->p += arg;
        return 0;
    case 3:
        if ((uint64_t)(c->end - c->p) < arg || !utf8_ok(c->p, (size_t)arg))
            return -1;
        c->p += arg;
        return 0;
    case 4:
        if (depth >= MAX_DEPTH || arg > (uint64_t)(c->end - c->p))
            return -1;
        for (uint64_t i = 0; i < arg; i++)
            if (item(c, depth + 1) < 0)
                return -1;
        return 0;
    case 5:
        if (depth >= MAX_DEPTH)
            return -1;
        return map_body(c, arg, depth);
    case 6:
        return -1;  /* tags (datetimes, bignums) are checked by Python */
    default:  /* 7: false, true, null and floats; other simple values are Python's */
        if (n == 0)
            return (arg >= 20 && arg <= 22) ? 0 : -1;
        return (n >= 2) ? 0 : -1;  /* half, single, double floats */
    }
}

/* 1 when the payload is one plain CBOR map with nothing after it. */
static int payload_ok(const unsigned char *p, size_t n)
{
    cur c = {p, p + n};
    int major;
    uint64_t count;
    if (head(&c, &major, &count) < 0 || major != 5)
        return 0;
    if (map_body(&c, count, 0) < 0)
        return 0;
    return c.p == c.end;
}

static PyObject *check_payload(PyObject *Py_UNUSED(self), PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    int ok = payload_ok(view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyBool_FromLong(ok);
}

/* ---- the meta frame --------------------------------------------------------- */

static unsigned char *put_uint(unsigned char *o, unsigned char major, uint64_t v)
{
    major <<= 5;
    if (v < 24) { *o++ = major | (unsigned char)v; return o; }
    int n = v <= 0xFF ? 1 : v <= 0xFFFF ? 2 : v <= 0xFFFFFFFFu ? 4 : 8;
    *o++ = major | (n == 1 ? 24 : n == 2 ? 25 : n == 4 ? 26 : 27);
    for (int i = n - 1; i >= 0; i--)
        *o++ = (unsigned char)(v >> (8 * i));
    return o;
}

/* {"sender": id, "seq": seq, "sent_ns": ns, "local": local}, as PluginMeta.encode writes it. */
static size_t build_meta(unsigned char *o, const unsigned char *sender, uint64_t seq,
                         uint64_t ns, int local)
{
    unsigned char *s = o;
    *o++ = 0xA4;
    *o++ = 0x66; memcpy(o, "sender", 6); o += 6;
    *o++ = 0x48; memcpy(o, sender, 8); o += 8;
    *o++ = 0x63; memcpy(o, "seq", 3); o += 3;
    o = put_uint(o, 0, seq);
    *o++ = 0x67; memcpy(o, "sent_ns", 7); o += 7;
    o = put_uint(o, 0, ns);
    *o++ = 0x65; memcpy(o, "local", 5); o += 5;
    *o++ = local ? 0xF5 : 0xF4;
    return (size_t)(o - s);
}

static PyObject *meta(PyObject *Py_UNUSED(self), PyObject *args)
{
    const char *sender;
    Py_ssize_t slen;
    unsigned long long seq, ns;
    int local = 1;
    unsigned char buf[64];
    if (!PyArg_ParseTuple(args, "y#KK|p", &sender, &slen, &seq, &ns, &local))
        return NULL;
    if (slen != 8) {
        PyErr_SetString(PyExc_ValueError, "sender must be 8 bytes");
        return NULL;
    }
    return PyBytes_FromStringAndSize((char *)buf,
                                     (Py_ssize_t)build_meta(buf, (const unsigned char *)sender,
                                                            seq, ns, local));
}

/* ---- libzmq ------------------------------------------------------------------- */

static PyObject *load(PyObject *Py_UNUSED(self), PyObject *arg)
{
    const char *path = PyUnicode_AsUTF8(arg);
    if (path == NULL)
        return NULL;
    /* RTLD_NOLOAD: only the copy pyzmq already loaded, never a second libzmq. */
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (h == NULL) {
        PyErr_Format(PyExc_OSError, "libzmq %s is not loaded in this process", path);
        return NULL;
    }
#define SYM(var, name) \
    if ((*(void **)&var = dlsym(h, name)) == NULL) { \
        PyErr_Format(PyExc_OSError, "libzmq %s has no %s", path, name); \
        return NULL; \
    }
    SYM(z_msg_init, "zmq_msg_init")
    SYM(z_msg_recv, "zmq_msg_recv")
    SYM(z_msg_close, "zmq_msg_close")
    SYM(z_msg_data, "zmq_msg_data")
    SYM(z_msg_size, "zmq_msg_size")
    SYM(z_msg_more, "zmq_msg_more")
    SYM(z_msg_gets, "zmq_msg_gets")
    SYM(z_send, "zmq_send")
    SYM(z_errno, "zmq_errno")
#undef SYM
    loaded = 1;
    Py_RETURN_NONE;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* What libzmq knows of a frame's sender (a ZAP user id, else the peer's address). */
static PyObject *peer_of(zmsg *m)
{
    const char *props[2] = {"User-Id", "Peer-Address"};
    for (int i = 0; i < 2; i++) {
        const char *v = z_msg_gets(m, props[i]);
        if (v != NULL && *v)
            return PyUnicode_DecodeUTF8(v, (Py_ssize_t)strlen(v), "replace");
    }
    Py_RETURN_NONE;
}

/* Read the rest of a message after its ``count`` frames so far (``last`` the latest)
 * into ``frames`` (at most MAX_FRAMES kept); return the number of frames in all, or -1
 * with an exception set. */
static Py_ssize_t rest_of(void *sock, zmsg *last, Py_ssize_t count, PyObject *frames)
{
    int more = z_msg_more(last);
    while (more) {
        zmsg m;
        z_msg_init(&m);
        if (z_msg_recv(&m, sock, Z_DONTWAIT) < 0) {  /* cannot happen: parts come together */
            z_msg_close(&m);
            break;
        }
        more = z_msg_more(&m);
        if (count < MAX_FRAMES) {
            PyObject *b = PyBytes_FromStringAndSize(z_msg_data(&m), (Py_ssize_t)z_msg_size(&m));
            if (b == NULL || PyList_Append(frames, b) < 0) {
                Py_XDECREF(b);
                z_msg_close(&m);
                return -1;
            }
            Py_DECREF(b);
        }
        count++;
        z_msg_close(&m);
    }
    return count;
}

PyDoc_STRVAR(drain_doc,
"drain(xsub, xpub, names, seqs, sender, limit) -> (to_node, other, received, forwarded, dropped)\n\n"
"Read up to ``limit`` messages from the XSUB socket (its ``underlying`` address) without\n"
"waiting, as PluginBus._drain_python does. ``names`` maps a checked raw type name to\n"
"``(name, flags)``: flag 1 sends it on to the XPUB with a meta frame from ``sender`` and\n"
"``seqs`` (raw name -> last forward number, updated); flag 2 appends ``(name, payload)``\n"
"to ``to_node``. Stops at the first message it is not sure of and returns it in ``other``\n"
"as ``(frame count, frames, peer)``; None when the socket ran dry or ``limit`` was read.");

static PyObject *drain(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "drain() takes 6 arguments");
        return NULL;
    }
    if (!loaded) {
        PyErr_SetString(PyExc_RuntimeError, "_busfast.load() was not called");
        return NULL;
    }
    void *xsub = PyLong_AsVoidPtr(args[0]);
    void *xpub = PyLong_AsVoidPtr(args[1]);
    PyObject *names = args[2], *seqs = args[3];
    Py_ssize_t limit = PyLong_AsSsize_t(args[5]);
    if (PyErr_Occurred())
        return NULL;
    if (!PyDict_Check(names) || !PyDict_Check(seqs) || !PyBytes_Check(args[4])
        || PyBytes_GET_SIZE(args[4]) != 8) {
        PyErr_SetString(PyExc_TypeError, "drain(): names and seqs must be dicts, sender 8 bytes");
        return NULL;
    }
    const unsigned char *sender = (const unsigned char *)PyBytes_AS_STRING(args[4]);
    PyObject *to_node = PyList_New(0);
    if (to_node == NULL)
        return NULL;
    PyObject *other = NULL;
    Py_ssize_t received = 0, forwarded = 0, dropped = 0;
    unsigned char mbuf[64];
    while (received < limit) {
        zmsg f0;
        z_msg_init(&f0);
        if (z_msg_recv(&f0, xsub, Z_DONTWAIT) < 0) {
            z_msg_close(&f0);
            break;  /* EAGAIN: dry (or the socket closed: the caller sees that itself) */
        }
        received++;
        if (z_msg_more(&f0)) {
            zmsg f1;
            z_msg_init(&f1);
            if (z_msg_recv(&f1, xsub, Z_DONTWAIT) < 0) {  /* cannot happen: parts come together */
                z_msg_close(&f1);
                z_msg_close(&f0);
                break;
            }
            if (!z_msg_more(&f1)) {
                PyObject *key = PyBytes_FromStringAndSize(z_msg_data(&f0),
                                                          (Py_ssize_t)z_msg_size(&f0));
                if (key == NULL)
                    goto fail2;
                PyObject *entry = PyDict_GetItemWithError(names, key);  /* borrowed */
                const unsigned char *p = z_msg_data(&f1);
                size_t n = z_msg_size(&f1);
                if (entry != NULL && PyTuple_Check(entry) && PyTuple_GET_SIZE(entry) == 2
                    && payload_ok(p, n)) {
                    long flags = PyLong_AsLong(PyTuple_GET_ITEM(entry, 1));
                    if (flags == -1 && PyErr_Occurred()) {
                        Py_DECREF(key);
                        goto fail2;
                    }
                    Py_INCREF(entry);  /* held while seqs changes (which runs no Python) */
                    if (flags & 1) {
                        PyObject *last = PyDict_GetItemWithError(seqs, key);
                        unsigned long long seq = last == NULL ? 1
                            : PyLong_AsUnsignedLongLong(last) + 1;
                        PyObject *seqobj = PyErr_Occurred() ? NULL
                            : PyLong_FromUnsignedLongLong(seq);
                        if (seqobj == NULL || PyDict_SetItem(seqs, key, seqobj) < 0) {
                            Py_XDECREF(seqobj);
                            Py_DECREF(entry);
                            Py_DECREF(key);
                            goto fail2;
                        }
                        Py_DECREF(seqobj);
                        size_t mlen = build_meta(mbuf, sender, seq, now_ns(), 1);
                        /* XPUB_NODROP: a full queue refuses the first frame (EAGAIN);
                         * once it is taken, the others are too (a message is atomic). */
                        if (z_send(xpub, z_msg_data(&f0), z_msg_size(&f0),
                                   Z_SNDMORE | Z_DONTWAIT) < 0) {
                            dropped++;
                        } else {
                            z_send(xpub, p, n, Z_SNDMORE | Z_DONTWAIT);
                            z_send(xpub, mbuf, mlen, Z_DONTWAIT);
                            forwarded++;
                        }
                    }
                    if (flags & 2) {
                        PyObject *payload = PyBytes_FromStringAndSize((const char *)p,
                                                                      (Py_ssize_t)n);
                        PyObject *pair = payload == NULL ? NULL
                            : PyTuple_Pack(2, PyTuple_GET_ITEM(entry, 0), payload);
                        Py_XDECREF(payload);
                        if (pair == NULL || PyList_Append(to_node, pair) < 0) {
                            Py_XDECREF(pair);
                            Py_DECREF(entry);
                            Py_DECREF(key);
                            goto fail2;
                        }
                        Py_DECREF(pair);
                    }
                    Py_DECREF(entry);
                    Py_DECREF(key);
                    z_msg_close(&f1);
                    z_msg_close(&f0);
                    continue;
                }
                Py_DECREF(key);
                if (PyErr_Occurred())
                    goto fail2;
                /* Not sure of it: hand the two frames to Python as they came. */
                other = Py_BuildValue("(n[y#y#]N)", (Py_ssize_t)2,
                                      z_msg_data(&f0), (Py_ssize_t)z_msg_size(&f0),
                                      p, (Py_ssize_t)n, peer_of(&f0));
                z_msg_close(&f1);
                z_msg_close(&f0);
                if (other == NULL)
                    goto fail;
                break;
fail2:
                z_msg_close(&f1);
                z_msg_close(&f0);
                goto fail;
            }
            /* three frames or more: f1 has more parts after it */
            PyObject *frames = Py_BuildValue("[y#y#]", z_msg_data(&f0),
                                             (Py_ssize_t)z_msg_size(&f0), z_msg_data(&f1),
                                             (Py_ssize_t)z_msg_size(&f1));
            Py_ssize_t count = frames == NULL ? -1 : 2;
            if (count > 0 && z_msg_more(&f1))
                count = rest_of(xsub, &f1, 2, frames);
            PyObject *peer = count < 0 ? NULL : peer_of(&f0);
            z_msg_close(&f1);
            z_msg_close(&f0);
            if (peer == NULL) {
                Py_XDECREF(frames);
                goto fail;
            }
            other = Py_BuildValue("(nNN)", count, frames, peer);
            if (other == NULL)
                goto fail;
            break;
        }
        /* one frame */
        other = Py_BuildValue("(n[y#]N)", (Py_ssize_t)1, z_msg_data(&f0),
                              (Py_ssize_t)z_msg_size(&f0), peer_of(&f0));
        z_msg_close(&f0);
        if (other == NULL)
            goto fail;
        break;
    }
    if (other == NULL) {
        other = Py_None;
        Py_INCREF(other);
    }
    return Py_BuildValue("(NNnnn)", to_node, other, received, forwarded, dropped);
fail:
    Py_DECREF(to_node);
    return NULL;
}

PyDoc_STRVAR(deliver_doc,
"deliver(xpub, name, payload, sender, seq, sent_ns, local) -> bool\n\n"
"Send ``[name, payload, meta]`` on the XPUB socket (its ``underlying`` address) without\n"
"waiting, as PluginBus._send does; False when the queue refused it (EAGAIN).");

static PyObject *deliver(PyObject *Py_UNUSED(self), PyObject *args)
{
    unsigned long long xpub_addr, seq, ns;
    Py_buffer name, payload;
    const char *sender;
    Py_ssize_t slen;
    int local;
    unsigned char mbuf[64];
    if (!loaded) {
        PyErr_SetString(PyExc_RuntimeError, "_busfast.load() was not called");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "Ky*y*y#KKp", &xpub_addr, &name, &payload, &sender, &slen,
                          &seq, &ns, &local))
        return NULL;
    int ok = 0;
    if (slen != 8) {
        PyErr_SetString(PyExc_ValueError, "sender must be 8 bytes");
    } else {
        void *xpub = (void *)(uintptr_t)xpub_addr;
        size_t mlen = build_meta(mbuf, (const unsigned char *)sender, seq, ns, local);
        if (z_send(xpub, name.buf, (size_t)name.len, Z_SNDMORE | Z_DONTWAIT) >= 0) {
            z_send(xpub, payload.buf, (size_t)payload.len, Z_SNDMORE | Z_DONTWAIT);
            z_send(xpub, mbuf, mlen, Z_DONTWAIT);
            ok = 1;
        }
    }
    PyBuffer_Release(&name);
    PyBuffer_Release(&payload);
    if (PyErr_Occurred())
        return NULL;
    return PyBool_FromLong(ok);
}

/* ---- a plugin's end: reading deliveries ------------------------------------------ */

/* Parse a meta frame written exactly as build_meta() writes it (any width of the two
 * integers). Return (sender, seq, sent_ns, local), or a new reference to Py_None when
 * it has any other layout (then PluginMeta.decode, the reference, reads it). */
static PyObject *parse_meta(const unsigned char *p, size_t n)
{
    static const unsigned char k_sender[] = {0xA4, 0x66, 's', 'e', 'n', 'd', 'e', 'r', 0x48};
    cur c = {p, p + n};
    int major;
    uint64_t seq, ns;
    if (n < sizeof k_sender + 8 || memcmp(p, k_sender, sizeof k_sender) != 0)
        Py_RETURN_NONE;
    const unsigned char *sender = p + sizeof k_sender;
    c.p = sender + 8;
    if (c.end - c.p < 4 || memcmp(c.p, "\x63seq", 4) != 0)
        Py_RETURN_NONE;
    c.p += 4;
    if (head(&c, &major, &seq) < 0 || major != 0)
        Py_RETURN_NONE;
    if (c.end - c.p < 8 || memcmp(c.p, "\x67sent_ns", 8) != 0)
        Py_RETURN_NONE;
    c.p += 8;
    if (head(&c, &major, &ns) < 0 || major != 0)
        Py_RETURN_NONE;
    if (c.end - c.p != 7 || memcmp(c.p, "\x65local", 6) != 0 || (c.p[6] != 0xF4 && c.p[6] != 0xF5))
        Py_RETURN_NONE;
    return Py_BuildValue("(y#KKO)", (const char *)sender, (Py_ssize_t)8,
                         (unsigned long long)seq, (unsigned long long)ns,
                         c.p[6] == 0xF5 ? Py_True : Py_False);
}

static PyObject *meta_fields(PyObject *Py_UNUSED(self), PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *out = parse_meta(view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return out;
}

PyDoc_STRVAR(recv_many_doc,
"recv_many(sub, limit) -> list\n\n"
"Read up to ``limit`` queued messages from a SUB socket (its ``underlying`` address)\n"
"without waiting, as PluginClient's Python path reads them one by one. Each is\n"
"``(name, payload, meta)`` for three frames or more (the rest are read and dropped),\n"
"``meta`` being ``(sender, seq, sent_ns, local)`` when the frame has the layout the\n"
"bus writes and the frame's bytes otherwise; a message of fewer frames is the tuple\n"
"of its frames. An empty list: nothing was queued.");

static PyObject *recv_many(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "recv_many() takes 2 arguments");
        return NULL;
    }
    if (!loaded) {
        PyErr_SetString(PyExc_RuntimeError, "_busfast.load() was not called");
        return NULL;
    }
    void *sock = PyLong_AsVoidPtr(args[0]);
    Py_ssize_t limit = PyLong_AsSsize_t(args[1]);
    if (PyErr_Occurred())
        return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t got = 0; got < limit; got++) {
        PyObject *parts[3] = {NULL, NULL, NULL};
        Py_ssize_t count = 0;
        int more = 1, failed = 0;
        while (more) {
            zmsg m;
            z_msg_init(&m);
            if (z_msg_recv(&m, sock, Z_DONTWAIT) < 0) {
                z_msg_close(&m);
                break;  /* EAGAIN before a first frame: nothing queued (later: cannot happen) */
            }
            more = z_msg_more(&m);
            if (count < 3 && !failed) {
                const unsigned char *p = z_msg_data(&m);
                size_t n = z_msg_size(&m);
                if (count == 2) {
                    parts[2] = parse_meta(p, n);
                    if (parts[2] == Py_None) {
                        Py_DECREF(parts[2]);
                        parts[2] = PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)n);
                    }
                } else {
                    parts[count] = PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)n);
                }
                failed = parts[count] == NULL;
            }
            count++;
            z_msg_close(&m);
        }
        PyObject *item = NULL;
        if (count == 0)
            break;
        if (!failed)
            item = count >= 3 ? PyTuple_Pack(3, parts[0], parts[1], parts[2])
                 : count == 2 ? PyTuple_Pack(2, parts[0], parts[1]) : PyTuple_Pack(1, parts[0]);
        for (int i = 0; i < 3; i++)
            Py_XDECREF(parts[i]);
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(item);
    }
    return out;
}

static PyMethodDef methods[] = {
    {"drain", (PyCFunction)(void (*)(void))drain, METH_FASTCALL, drain_doc},
    {"deliver", deliver, METH_VARARGS, deliver_doc},
    {"check_payload", check_payload, METH_O,
     "check_payload(payload) -> True if it is a CBOR map in the plain subset drain() passes."},
    {"meta", meta, METH_VARARGS,
     "meta(sender, seq, sent_ns, local=True) -> the meta frame drain() and deliver() send (PluginMeta.encode's bytes)."},
    {"recv_many", (PyCFunction)(void (*)(void))recv_many, METH_FASTCALL, recv_many_doc},
    {"meta_fields", meta_fields, METH_O,
     "meta_fields(frame) -> (sender, seq, sent_ns, local) if the frame has the layout meta() writes, else None."},
    {"load", load, METH_O, "load(path) -> resolve libzmq's functions from the loaded library."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "ganglion._busfast",
    "The plugin bus's compiled drain loop (see ganglion/_c/busfast.c).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__busfast(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "ABI", BUSFAST_ABI) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
