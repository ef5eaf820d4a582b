/*
 * ganglion._speedups, the publish side: a message sent alone while idle, and one
 * encoded into the datagram being filled under load, each as a function of its own
 * and through a route's SendLane, which resolves what they need once (see module.c).
 */
#include "speedups.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>

/* ---- the send lane ------------------------------------------------------------------ */

/* How the cores below reach a packer's attributes: in place where its class keeps them
 * in slots (a SendLane resolves that once, P_ indexes into its offsets), else by name. */
enum { P_SEAL, P_COUNT, P_SEQ, P_NEXT_SEQ, P_LIMIT, P_PREFIX, P_PREV, P_SIZE, P_BODY, P_N };
static PyObject **const packer_names[P_N] = {&s_seal, &s_count, &s_seq_attr, &s_next_seq, &s_limit,
                                       &s_prefix, &s_prev, &s_size, &s_body};

/* The packer's attribute `i` (a new reference; NULL with an error if it has none). */
static PyObject *
p_get(PyObject *packer, const Py_ssize_t *at, int i)
{
    PyObject *v = at != NULL ? slot_get(packer, at[i]) : NULL;
    return v != NULL ? Py_NewRef(v) : PyObject_GetAttr(packer, *packer_names[i]);
}

/* The packer's attribute `i` as a non-negative integer that fits `*out`: 1, or 0 when it
 * is not one, -1 on error (attr_u64's answers). */
static int
p_u64(PyObject *packer, const Py_ssize_t *at, int i, uint64_t *out)
{
    PyObject *v = at != NULL ? slot_get(packer, at[i]) : NULL;
    if (v == NULL)
        return attr_u64(packer, *packer_names[i], out);
    *out = PyLong_AsUnsignedLongLong(v);
    if (*out == (uint64_t)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* Set the packer's attribute `i` to a new int `value`; -1 on error. */
static int
p_set_u64(PyObject *packer, const Py_ssize_t *at, int i, uint64_t value)
{
    PyObject *v = PyLong_FromUnsignedLongLong(value);
    if (v == NULL)
        return -1;
    if (at != NULL) {
        slot_set(packer, at[i], v);
        return 0;
    }
    int rc = PyObject_SetAttr(packer, *packer_names[i], v);
    Py_DECREF(v);
    return rc;
}

/* The sender's socket descriptor, or -1 if it has none (closed); -2 on error. `cache`
 * (or NULL) keeps the socket object last seen, held, and its descriptor: a
 * MulticastSender sets its _sock to None before it closes it, so a socket it still
 * holds is open and keeps its descriptor. */
static int
sender_fd(PyObject *sender, PyObject **cache_sock, int *cache_fd)
{
    PyObject *sock = PyObject_GetAttr(sender, s_sock);
    if (sock == NULL)
        return -2;
    int fd;
    if (cache_sock != NULL && sock == *cache_sock)
        fd = *cache_fd;
    else if (sock == Py_None)
        fd = -1;
    else {
        fd = PyObject_AsFileDescriptor(sock);
        if (fd < 0)
            PyErr_Clear(); /* closed: the Python path raises */
        else if (cache_sock != NULL) {
            Py_XSETREF(*cache_sock, Py_NewRef(sock)); /* held: its address is not reused */
            *cache_fd = fd;
        }
    }
    Py_DECREF(sock);
    return fd;
}

/* send_lone's work, its arguments read (`at`: the packer's slot offsets, or NULL):
 * (payload, datagram length), None, or NULL with an error. */
static PyObject *
lone(PyObject *sender, const struct sockaddr_in *to, PyObject **cache_sock, int *cache_fd,
     PyObject *packer, const Py_ssize_t *at, uint64_t ts, PyObject *msg, PyObject *plan,
     Py_ssize_t max_payload, int yield_cpu)
{
    /* The state the short path needs: nothing queued, nothing waiting. */
    PyObject *queue = PyObject_GetAttr(sender, s_queue);
    if (queue == NULL)
        return NULL;
    Py_ssize_t queued = PyObject_Size(queue);
    Py_DECREF(queue);
    if (queued != 0)
        return queued < 0 ? NULL : Py_NewRef(Py_None);
    uint64_t count, seq, next_seq, limit;
    int r;
    if ((r = p_u64(packer, at, P_COUNT, &count)) <= 0 || count
        || (r = p_u64(packer, at, P_SEQ, &seq)) <= 0
        || (r = p_u64(packer, at, P_NEXT_SEQ, &next_seq)) <= 0
        || (r = p_u64(packer, at, P_LIMIT, &limit)) <= 0 || seq == UINT64_MAX) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *prefix = p_get(packer, at, P_PREFIX);
    if (prefix == NULL)
        return NULL;
    if (!PyBytes_CheckExact(prefix) || PyBytes_GET_SIZE(prefix) > SEND_BUF / 2) {
        Py_DECREF(prefix);
        Py_RETURN_NONE;
    }
    unsigned char buf[SEND_BUF];
    Py_ssize_t pl = PyBytes_GET_SIZE(prefix);
    memcpy(buf, PyBytes_AS_STRING(prefix), pl);
    Py_DECREF(prefix);
    /* The payload goes after the longest lone header; moved down if its length is short. */
    Py_ssize_t at_payload = pl + LONE_SIZE + 1, n;
    int enc = encode_plan(plan, msg, buf + at_payload, SEND_BUF - at_payload, &n);
    if (enc <= 0)
        return enc < 0 ? NULL : Py_NewRef(Py_None);
    if (n <= 0 || n > max_payload || n >= 0x4000 || (uint64_t)n + (n < 0x80 ? 2 : 3) > limit)
        Py_RETURN_NONE; /* too large (or empty): the Python path says so */
    unsigned char *h = buf + pl;
    for (int i = 0; i < 8; i++) {
        h[i] = (unsigned char)(seq >> (56 - 8 * i));
        h[8 + i] = (unsigned char)(ts >> (56 - 8 * i));
    }
    h[16] = 0;
    h[17] = 1; /* one message */
    h[18] = 0; /* at the base time */
    Py_ssize_t start;
    if (n < 0x80) {
        h[19] = (unsigned char)n;
        start = pl + LONE_SIZE;
        memmove(buf + start, buf + at_payload, n);
    }
    else {
        h[19] = (unsigned char)((n & 0x7F) | 0x80);
        h[20] = (unsigned char)(n >> 7);
        start = at_payload;
    }
    Py_ssize_t total = start + n;
    int fd = sender_fd(sender, cache_sock, cache_fd);
    if (fd < 0)
        return fd == -2 ? NULL : Py_NewRef(Py_None); /* closed: the Python path raises */
    /* A keyed packer: the datagram built in clear (its header already has the MAC or
     * encrypted flag) goes through the packer's sealer once, which signs or encrypts it
     * as build_one would (Packer._seal; None: no key). */
    PyObject *seal = p_get(packer, at, P_SEAL), *wire = NULL;
    if (seal == NULL)
        return NULL;
    const unsigned char *out = buf;
    if (seal != Py_None) {
        PyObject *clear = PyBytes_FromStringAndSize((const char *)buf, total);
        if (clear != NULL) {
            wire = PyObject_CallOneArg(seal, clear);
            Py_DECREF(clear);
        }
        Py_DECREF(seal);
        if (wire == NULL)
            return NULL;
        if (!PyBytes_CheckExact(wire)) {
            Py_DECREF(wire);
            PyErr_SetString(PyExc_TypeError, "a packer's _seal must return bytes");
            return NULL;
        }
        out = (const unsigned char *)PyBytes_AS_STRING(wire);
        total = PyBytes_GET_SIZE(wire);
    }
    else
        Py_DECREF(seal);
    /* Not taken (pushed back or failed): the Python path builds the datagram again under
     * the same first seq. An encrypted one is then sealed twice under one nonce, but only
     * the second ever leaves this host: no one sees two tags under one key and nonce. */
    ssize_t put = sendto(fd, out, total, MSG_DONTWAIT, (const struct sockaddr *)to, sizeof *to);
    Py_XDECREF(wire);
    if (put != total)
        Py_RETURN_NONE; /* pushed back or failed: the Python path queues or reports it */
    /* The subscriber this datagram woke may be queued on this CPU: let it run now,
     * before anything else here (Outgoing's YIELD_CPU, moved here from after the
     * Python bookkeeping that follows). */
    if (yield_cpu)
        sched_yield();
    /* Sent: number it as build_one does. */
    PyObject *payload = PyBytes_FromStringAndSize((const char *)buf + start, n);
    PyObject *result = NULL;
    if (payload != NULL && p_set_u64(packer, at, P_SEQ, seq + 1) == 0
        && p_set_u64(packer, at, P_NEXT_SEQ, next_seq + 1) == 0)
        result = Py_BuildValue("(On)", payload, total);
    Py_XDECREF(payload);
    return result;
}

/* The destination `host`:`port` (an IPv4 address in text): 1, or 0 if it is not one. */
static int
destination(PyObject *host, long port, struct sockaddr_in *to)
{
    memset(to, 0, sizeof *to);
    to->sin_family = AF_INET;
    to->sin_port = htons((uint16_t)port);
    const char *text = PyUnicode_AsUTF8(host);
    if (text == NULL)
        return -1;
    return port > 0 && port <= 65535 && inet_pton(AF_INET, text, &to->sin_addr) == 1;
}

const char send_lone_doc[] = PyDoc_STR(
"send_lone(sender, host, port, packer, ts_ns, msg, plan, max_payload, yield_cpu)\n--\n\n"
"Send `msg` alone in one datagram now, as Packer.build_one(encode(msg), ts_ns) and\n"
"MulticastSender.send would, when that is the common case: a packer with nothing\n"
"waiting (a keyed packer's datagram is built in clear, then signed or encrypted by its\n"
"_seal), a sender with nothing queued, values `plan` encodes, a payload of at most\n"
"`max_payload` bytes, and a kernel that takes the datagram at once. Then the CPU is\n"
"yielded right after the send (sched_yield) if `yield_cpu` is true, the packer's\n"
"numbers move on and (payload, datagram length) is returned. Otherwise\n"
"nothing at all happened and None is returned: the Python path does it.");

PyObject *
send_lone(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (check_nargs("send_lone", nargs, 9) < 0)
        return NULL;
    int yield_cpu = PyObject_IsTrue(args[8]);
    if (yield_cpu < 0)
        return NULL;
    PyObject *sender = args[0], *host = args[1], *packer = args[3], *msg = args[5],
             *plan = args[6];
    long port = PyLong_AsLong(args[2]);
    uint64_t ts = PyLong_AsUnsignedLongLong(args[4]);
    Py_ssize_t max_payload = PyLong_AsSsize_t(args[7]);
    if (PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return NULL;
        PyErr_Clear();
        Py_RETURN_NONE; /* a timestamp outside the u64 range: Python's error */
    }
    if (check_plan("send_lone", plan) < 0)
        return NULL;
    if (!PyUnicode_Check(host)) {
        PyErr_SetString(PyExc_TypeError, "send_lone: the host must be a str");
        return NULL;
    }
    struct sockaddr_in to;
    int ok = destination(host, port, &to);
    if (ok <= 0)
        return ok < 0 ? NULL : Py_NewRef(Py_None);
    return lone(sender, &to, NULL, NULL, packer, NULL, ts, msg, plan, max_payload, yield_cpu);
}

/* ---- the batch lane ------------------------------------------------------------------ */

const char batch_add_doc[] = PyDoc_STR(
"batch_add(packer, ts_ns, msg, plan, max_payload)\n--\n\n"
"Encode `msg` with `plan` and append it to the datagram `packer` holds, as\n"
"packer.add(encode(msg), ts_ns) would in its common case: messages already waiting, a\n"
"delta and a length of at most two bytes, room left. Then (payload, full) is returned,\n"
"full being packer.add's FULL (another as large would not fit). Otherwise nothing at\n"
"all happened and None is returned: the Python path does it.");

/* batch_add's work, its arguments read (`at`: the packer's slot offsets, or NULL):
 * (payload, full), None, or NULL with an error. */
static PyObject *
add(PyObject *packer, const Py_ssize_t *at, uint64_t ts, PyObject *msg, PyObject *plan,
    Py_ssize_t max_payload)
{
    uint64_t count, prev, size, limit, seq, next_seq;
    if (p_u64(packer, at, P_COUNT, &count) <= 0 || !count || count >= MAX_BATCH
        || p_u64(packer, at, P_PREV, &prev) <= 0 || p_u64(packer, at, P_SIZE, &size) <= 0
        || p_u64(packer, at, P_LIMIT, &limit) <= 0 || p_u64(packer, at, P_SEQ, &seq) <= 0
        || p_u64(packer, at, P_NEXT_SEQ, &next_seq) <= 0 || seq + count < seq) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    if (ts < prev || ts - prev >= 0x2000)
        Py_RETURN_NONE; /* a delta of more than two bytes: Python's */
    unsigned char buf[SEND_BUF];
    Py_ssize_t n;
    int enc = encode_plan(plan, msg, buf, sizeof buf, &n);
    if (enc <= 0)
        return enc < 0 ? NULL : Py_NewRef(Py_None);
    uint64_t delta = ts - prev;
    uint64_t grown = size + (delta >= 0x40) + (n >= 0x80) + 2 + (uint64_t)n;
    if (n <= 0 || n > max_payload || n >= 0x4000 || grown > limit)
        Py_RETURN_NONE; /* empty, too large, or the datagram is full: Python's */
    PyObject *body = p_get(packer, at, P_BODY);
    if (body == NULL)
        return NULL;
    if (!PyByteArray_CheckExact(body)) {
        Py_DECREF(body);
        Py_RETURN_NONE;
    }
    unsigned char head[HEAD_MAX];
    int h = 0;
    uint64_t dz = delta << 1;
    if (dz < 0x80)
        head[h++] = (unsigned char)dz;
    else {
        head[h++] = (unsigned char)((dz & 0x7F) | 0x80);
        head[h++] = (unsigned char)(dz >> 7);
    }
    if (n < 0x80)
        head[h++] = (unsigned char)n;
    else {
        head[h++] = (unsigned char)((n & 0x7F) | 0x80);
        head[h++] = (unsigned char)(n >> 7);
    }
    PyObject *payload = PyBytes_FromStringAndSize((const char *)buf, n);
    PyObject *result = NULL;
    Py_ssize_t old = PyByteArray_GET_SIZE(body);
    if (payload && PyByteArray_Resize(body, old + h + n) == 0) {
        char *to = PyByteArray_AS_STRING(body) + old;
        memcpy(to, head, h);
        memcpy(to + h, buf, n);
        if (p_set_u64(packer, at, P_SIZE, grown) == 0
            && p_set_u64(packer, at, P_COUNT, count + 1) == 0
            && p_set_u64(packer, at, P_NEXT_SEQ, next_seq + 1) == 0
            && p_set_u64(packer, at, P_PREV, ts) == 0)
            result = Py_BuildValue("(OO)", payload,
                                   limit - grown < (uint64_t)n + HEAD_MAX ? Py_True : Py_False);
    }
    Py_DECREF(body);
    Py_XDECREF(payload);
    return result;
}

PyObject *
batch_add(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (check_nargs("batch_add", nargs, 5) < 0)
        return NULL;
    PyObject *packer = args[0], *msg = args[2], *plan = args[3];
    uint64_t ts = PyLong_AsUnsignedLongLong(args[1]);
    Py_ssize_t max_payload = PyLong_AsSsize_t(args[4]);
    if (PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return NULL;
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    if (check_plan("batch_add", plan) < 0)
        return NULL;
    return add(packer, NULL, ts, msg, plan, max_payload);
}

/* ---- a route's lane: Publisher.publish's compiled front ----------------------------- */

/* A keep buffer is a list [index, payloads]: a bytearray and a list (the history puts
 * fresh ones in when it seals them, so they are read from the list at every message):
 * 0, or -1 with a TypeError. */
static int
kept_shape(PyObject *kept)
{
    if (PyList_CheckExact(kept) && PyList_GET_SIZE(kept) == 2
        && PyByteArray_CheckExact(PyList_GET_ITEM(kept, 0))
        && PyList_CheckExact(PyList_GET_ITEM(kept, 1)))
        return 0;
    PyErr_SetString(PyExc_TypeError,
                    "SendLane: kept must be [index, payloads], a bytearray and a list");
    return -1;
}


typedef struct {
    PyObject_HEAD
    PyObject *next_seq;  /* the endpoint's next sequence number per type name (a dict) */
    PyObject *name;      /* the route's type name */
    PyObject *sender;    /* the endpoint's MulticastSender */
    PyObject *out;       /* the endpoint's Outgoing: its `busy` */
    PyObject *packer;    /* the type's Packer */
    PyObject *plan;      /* the type's plan */
    Py_ssize_t max_payload;
    int yield_cpu;
    struct sockaddr_in to; /* the type's group and the endpoint's port */
    PyObject *packer_type; /* the packer's class when the lane was made, and where */
    Py_ssize_t packer_slots[P_N]; /* it keeps each P_ attribute (all 0: by name) */
    PyObject *sock;      /* the sender's socket last seen, held, and its descriptor */
    int fd;
    PyObject *kept;      /* the type's keep buffer in the history, [index, blob], or NULL */
} SendLane;

static int
SendLane_init(SendLane *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"next_seq", "name", "sender", "out", "packer", "group", "port",
                             "plan", "max_payload", "yield_cpu", "kept", NULL};
    PyObject *next_seq, *name, *sender, *out, *packer, *group, *plan, *kept = Py_None;
    long port;
    Py_ssize_t max_payload;
    int yield_cpu;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!UOOOUlO!np|O", kwlist, &PyDict_Type,
                                     &next_seq, &name, &sender, &out, &packer, &group, &port,
                                     &PyTuple_Type, &plan, &max_payload, &yield_cpu, &kept))
        return -1;
    if (kept != Py_None && kept_shape(kept) < 0)
        return -1;
    if (check_plan("SendLane", plan) < 0) {
        PyErr_SetString(PyExc_ValueError, "SendLane: not a plan");
        return -1;
    }
    int ok = destination(group, port, &self->to);
    if (ok <= 0) {
        if (ok == 0)
            PyErr_Format(PyExc_ValueError, "SendLane: %R port %ld is not an IPv4 destination",
                         group, port);
        return -1;
    }
    Py_XSETREF(self->next_seq, Py_NewRef(next_seq));
    Py_XSETREF(self->name, Py_NewRef(name));
    Py_XSETREF(self->sender, Py_NewRef(sender));
    Py_XSETREF(self->out, Py_NewRef(out));
    Py_XSETREF(self->packer, Py_NewRef(packer));
    Py_XSETREF(self->plan, Py_NewRef(plan));
    Py_CLEAR(self->sock);
    self->fd = -1;
    self->max_payload = max_payload;
    self->yield_cpu = yield_cpu;
    Py_XSETREF(self->kept, kept == Py_None ? NULL : Py_NewRef(kept));
    Py_XSETREF(self->packer_type, Py_NewRef((PyObject *)Py_TYPE(packer)));
    slot_offsets(self->packer_type, packer_names, P_N, self->packer_slots);
    return 0;
}

static int
SendLane_traverse(SendLane *self, visitproc visit, void *arg)
{
    Py_VISIT(self->next_seq);
    Py_VISIT(self->name);
    Py_VISIT(self->sender);
    Py_VISIT(self->out);
    Py_VISIT(self->packer);
    Py_VISIT(self->plan);
    Py_VISIT(self->packer_type);
    Py_VISIT(self->sock);
    Py_VISIT(self->kept);
    return 0;
}

static int
SendLane_clear(SendLane *self)
{
    Py_CLEAR(self->next_seq);
    Py_CLEAR(self->name);
    Py_CLEAR(self->sender);
    Py_CLEAR(self->out);
    Py_CLEAR(self->packer);
    Py_CLEAR(self->plan);
    Py_CLEAR(self->packer_type);
    Py_CLEAR(self->sock);
    Py_CLEAR(self->kept);
    return 0;
}

static void
SendLane_dealloc(SendLane *self)
{
    PyObject_GC_UnTrack(self);
    SendLane_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

PyDoc_STRVAR(SendLane_publish_doc,
"publish(msg)\n--\n\n"
"Publisher.publish's steps for a message of this route where the compiled lanes take\n"
"it: numbered as the endpoint's next number for the type (when the packer's agrees),\n"
"stamped now, then sent alone (send_lone) while the endpoint is idle, or added to the\n"
"datagram being filled (batch_add) under load. Returns (payload, seq, now_ns, sent,\n"
"full): sent is the datagram's length when it was sent alone, else 0, and full is\n"
"batch_add's answer; the caller does the bookkeeping. With a keep buffer (kept), the\n"
"payload is also appended to its payloads and (seq, now_ns, end) to its index\n"
"(native =QQQ), what ganglion.repair.history.keep_append does on the Python path.\n"
"Otherwise nothing at all happened and None is returned: the Python path does it.");

/* Append a published message to the history's keep buffer: the payload object to
 * `payloads`, then (seq, ts, end) to `index` as three native uint64, end being the
 * previous entry's plus the payload's length (ganglion.repair.history's ENTRY, "=QQQ";
 * keep_append does the same in Python). -1 on error (nothing appended). */
static int
keep(PyObject *index, PyObject *payloads, uint64_t seq, uint64_t ts, PyObject *payload)
{
    Py_ssize_t at = PyByteArray_GET_SIZE(index);
    uint64_t end = 0;
    if (at >= 24)
        memcpy(&end, PyByteArray_AS_STRING(index) + at - 8, sizeof end);
    end += (uint64_t)PyBytes_GET_SIZE(payload);
    if (PyByteArray_Resize(index, at + 24) < 0)
        return -1;
    uint64_t entry[3] = {seq, ts, end};
    memcpy(PyByteArray_AS_STRING(index) + at, entry, sizeof entry);
    if (PyList_Append(payloads, payload) < 0) {
        PyByteArray_Resize(index, at); /* shrinking never fails */
        return -1;
    }
    return 0;
}

/* SendLane.publish once the endpoint's next number for the type (`seq_o`) is known. */
static PyObject *
publish_numbered(SendLane *self, PyObject *msg, PyObject *seq_o)
{
    const Py_ssize_t *at = self->packer_slots[0] > 0
                           && (PyObject *)Py_TYPE(self->packer) == self->packer_type
                               ? self->packer_slots : NULL;
    uint64_t seq, packer_next;
    int r = PyLong_CheckExact(seq_o) ? p_u64(self->packer, at, P_NEXT_SEQ, &packer_next) : 0;
    if (r <= 0)
        return r < 0 ? NULL : Py_NewRef(Py_None);
    seq = PyLong_AsUnsignedLongLong(seq_o);
    if (seq == (uint64_t)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    if (seq != packer_next)
        Py_RETURN_NONE; /* numbers taken that were never sent: Python's */
    uint64_t now = realtime_ns();
    int busy = attr_true(self->out, s_busy);
    if (busy < 0)
        return NULL;
    /* Idle: alone. Busy: into the open datagram (add does nothing if none is open). */
    PyObject *done = !busy
        ? lone(self->sender, &self->to, &self->sock, &self->fd, self->packer, at, now, msg,
               self->plan, self->max_payload, self->yield_cpu)
        : add(self->packer, at, now, msg, self->plan, self->max_payload);
    if (done == NULL || done == Py_None)
        return done;
    PyObject *now_o = PyLong_FromUnsignedLongLong(now), *result = NULL;
    if (now_o == NULL)
        goto out;
    PyObject *payload = PyTuple_GET_ITEM(done, 0);
    if (self->kept != NULL && (kept_shape(self->kept) < 0
                               || keep(PyList_GET_ITEM(self->kept, 0),
                                       PyList_GET_ITEM(self->kept, 1), seq, now, payload) < 0))
        goto out;
    result = busy
        ? Py_BuildValue("(OOOiO)", payload, seq_o, now_o, 0, PyTuple_GET_ITEM(done, 1))
        : Py_BuildValue("(OOOOO)", payload, seq_o, now_o, PyTuple_GET_ITEM(done, 1), Py_False);
out:
    Py_XDECREF(now_o);
    Py_DECREF(done);
    return result;
}

static PyObject *
SendLane_publish(SendLane *self, PyObject *msg)
{
    if (self->packer == NULL) {
        PyErr_SetString(PyExc_ValueError, "SendLane: not initialised");
        return NULL;
    }
    PyObject *seq_o = PyDict_GetItemWithError(self->next_seq, self->name);
    if (seq_o == NULL)
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    Py_INCREF(seq_o); /* held: reading the sender's attributes may run Python code */
    PyObject *result = publish_numbered(self, msg, seq_o);
    Py_DECREF(seq_o);
    return result;
}

static PyMethodDef SendLane_methods[] = {
    {"publish", (PyCFunction)SendLane_publish, METH_O, SendLane_publish_doc},
    {NULL, NULL, 0, NULL},
};

static PyObject *
SendLane_yields_cpu(SendLane *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->yield_cpu);
}

static PyObject *
SendLane_packer_slots(SendLane *self, void *Py_UNUSED(closure))
{
    return slots_dict(packer_names, P_N, self->packer_slots);
}

static PyGetSetDef SendLane_getset[] = {
    {"yields_cpu", (getter)SendLane_yields_cpu, NULL,
     PyDoc_STR("Whether publish yields the CPU right after a lone send."), NULL},
    {"packer_slots", (getter)SendLane_packer_slots, NULL,
     PyDoc_STR("{name: offset} of the Packer slots the lane reads and writes in place; all "
               "0 when the packer's class does not keep every one in a slot (then they are "
               "reached by name, more slowly)."), NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject SendLaneType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ganglion._speedups.SendLane",
    .tp_doc = PyDoc_STR("SendLane(next_seq, name, sender, out, packer, group, port, plan, "
                        "max_payload, yield_cpu, kept=None): what an endpoint's route needs "
                        "to publish its messages through the compiled lanes, resolved once; "
                        "kept: the type's keep buffer in the history."),
    .tp_basicsize = sizeof(SendLane),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)SendLane_init,
    .tp_traverse = (traverseproc)SendLane_traverse,
    .tp_clear = (inquiry)SendLane_clear,
    .tp_dealloc = (destructor)SendLane_dealloc,
    .tp_methods = SendLane_methods,
    .tp_getset = SendLane_getset,
};
