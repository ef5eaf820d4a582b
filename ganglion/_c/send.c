/*
 * ganglion._speedups, the publish side: a message sent alone while idle, and one
 * encoded into the datagram being filled under load (see module.c).
 */
#include "speedups.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>

/* ---- the send lane ------------------------------------------------------------------ */

const char send_lone_doc[] = PyDoc_STR(
"send_lone(sender, host, port, packer, ts_ns, msg, plan, max_payload, yield_cpu)\n--\n\n"
"Send `msg` alone in one datagram now, as Packer.build_one(encode(msg), ts_ns) and\n"
"MulticastSender.send would, when that is the common case: an unsigned packer with\n"
"nothing waiting, a sender with nothing queued, values `plan` encodes, a payload of\n"
"at most `max_payload` bytes, and a kernel that takes the datagram at once. Then the\n"
"CPU is yielded right after the send (sched_yield) if `yield_cpu` is true, the\n"
"packer's numbers move on and (payload, datagram length) is returned. Otherwise\n"
"nothing at all happened and None is returned: the Python path does it.");

PyObject *
send_lone(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
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
    if (!PyTuple_CheckExact(plan) || PyTuple_GET_SIZE(plan) != PLAN_SIZE || !PyUnicode_Check(host)) {
        PyErr_SetString(PyExc_TypeError, "send_lone: bad plan or host");
        return NULL;
    }
    /* The state the short path needs: nothing queued, no key, nothing waiting. */
    PyObject *queue = PyObject_GetAttr(sender, s_queue);
    if (queue == NULL)
        return NULL;
    Py_ssize_t queued = PyObject_Size(queue);
    Py_DECREF(queue);
    if (queued != 0)
        return queued < 0 ? NULL : Py_NewRef(Py_None);
    PyObject *key = PyObject_GetAttr(packer, s_key);
    if (key == NULL)
        return NULL;
    Py_DECREF(key);
    uint64_t count, seq, next_seq, limit;
    int r;
    if (key != Py_None || (r = attr_u64(packer, s_count, &count)) <= 0 || count
        || (r = attr_u64(packer, s_seq_attr, &seq)) <= 0
        || (r = attr_u64(packer, s_next_seq, &next_seq)) <= 0
        || (r = attr_u64(packer, s_limit, &limit)) <= 0 || seq == UINT64_MAX) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *prefix = PyObject_GetAttr(packer, s_prefix);
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
    Py_ssize_t at = pl + LONE_SIZE + 1, n;
    int enc = encode_plan(plan, msg, buf + at, SEND_BUF - at, &n);
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
        memmove(buf + start, buf + at, n);
    }
    else {
        h[19] = (unsigned char)((n & 0x7F) | 0x80);
        h[20] = (unsigned char)(n >> 7);
        start = at;
    }
    Py_ssize_t total = start + n;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    const char *text = PyUnicode_AsUTF8(host);
    if (text == NULL)
        return NULL;
    if (port <= 0 || port > 65535 || inet_pton(AF_INET, text, &sa.sin_addr) != 1)
        Py_RETURN_NONE;
    PyObject *sock = PyObject_GetAttr(sender, s_sock);
    if (sock == NULL)
        return NULL;
    int fd = sock == Py_None ? -1 : PyObject_AsFileDescriptor(sock);
    Py_DECREF(sock);
    if (fd < 0) {
        PyErr_Clear();
        Py_RETURN_NONE; /* closed: the Python path raises */
    }
    if (sendto(fd, buf, total, MSG_DONTWAIT, (struct sockaddr *)&sa, sizeof sa) != total)
        Py_RETURN_NONE; /* pushed back or failed: the Python path queues or reports it */
    /* The subscriber this datagram woke may be queued on this CPU: let it run now,
     * before anything else here (Outgoing's YIELD_CPU, moved here from after the
     * Python bookkeeping that follows). */
    if (yield_cpu)
        sched_yield();
    /* Sent: number it as build_one does. */
    PyObject *s1 = PyLong_FromUnsignedLongLong(seq + 1);
    PyObject *s2 = PyLong_FromUnsignedLongLong(next_seq + 1);
    PyObject *payload = PyBytes_FromStringAndSize((const char *)buf + start, n);
    PyObject *result = NULL;
    if (s1 && s2 && payload && PyObject_SetAttr(packer, s_seq_attr, s1) == 0
        && PyObject_SetAttr(packer, s_next_seq, s2) == 0)
        result = Py_BuildValue("(On)", payload, total);
    Py_XDECREF(s1);
    Py_XDECREF(s2);
    Py_XDECREF(payload);
    return result;
}

/* ---- the batch lane ------------------------------------------------------------------ */

const char batch_add_doc[] = PyDoc_STR(
"batch_add(packer, ts_ns, msg, plan, max_payload)\n--\n\n"
"Encode `msg` with `plan` and append it to the datagram `packer` holds, as\n"
"packer.add(encode(msg), ts_ns) would in its common case: messages already waiting, a\n"
"delta and a length of at most two bytes, room left. Then (payload, full) is returned,\n"
"full being packer.add's FULL (another as large would not fit). Otherwise nothing at\n"
"all happened and None is returned: the Python path does it.");

PyObject *
batch_add(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
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
    if (!PyTuple_CheckExact(plan) || PyTuple_GET_SIZE(plan) != PLAN_SIZE) {
        PyErr_SetString(PyExc_TypeError, "batch_add: bad plan");
        return NULL;
    }
    uint64_t count, prev, size, limit, seq, next_seq;
    if (attr_u64(packer, s_count, &count) <= 0 || !count || count >= MAX_BATCH
        || attr_u64(packer, s_prev, &prev) <= 0 || attr_u64(packer, s_size, &size) <= 0
        || attr_u64(packer, s_limit, &limit) <= 0 || attr_u64(packer, s_seq_attr, &seq) <= 0
        || attr_u64(packer, s_next_seq, &next_seq) <= 0 || seq + count < seq) {
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
    PyObject *body = PyObject_GetAttr(packer, s_body);
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
    PyObject *v_size = PyLong_FromUnsignedLongLong(grown);
    PyObject *v_count = PyLong_FromUnsignedLongLong(count + 1);
    PyObject *v_next = PyLong_FromUnsignedLongLong(next_seq + 1);
    PyObject *v_prev = PyLong_FromUnsignedLongLong(ts);
    PyObject *result = NULL;
    Py_ssize_t old = PyByteArray_GET_SIZE(body);
    if (payload && v_size && v_count && v_next && v_prev
        && PyByteArray_Resize(body, old + h + n) == 0) {
        char *at = PyByteArray_AS_STRING(body) + old;
        memcpy(at, head, h);
        memcpy(at + h, buf, n);
        if (PyObject_SetAttr(packer, s_size, v_size) == 0
            && PyObject_SetAttr(packer, s_count, v_count) == 0
            && PyObject_SetAttr(packer, s_next_seq, v_next) == 0
            && PyObject_SetAttr(packer, s_prev, v_prev) == 0)
            result = Py_BuildValue("(OO)", payload,
                                   limit - grown < (uint64_t)n + HEAD_MAX ? Py_True : Py_False);
    }
    Py_DECREF(body);
    Py_XDECREF(payload);
    Py_XDECREF(v_size);
    Py_XDECREF(v_count);
    Py_XDECREF(v_next);
    Py_XDECREF(v_prev);
    return result;
}
