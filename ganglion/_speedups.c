/*
 * ganglion._speedups: the light-traffic paths of publish and receive, compiled (optional).
 *
 * Theory of operation: at light traffic both processes sleep between messages, and
 * on a wake-up every line of Python they run is slow (its code and data are no longer
 * in the CPU caches). On the test machine, reading a datagram and handing its one
 * message to the subscribers took about 30 us more in Python than a bare socket read,
 * and encoding and sending one message alone about 10-20 us more than a bare
 * `sendto`; done here, both are within a few us of the bare calls.
 *
 * drain() reads a socket until EAGAIN, exactly as MulticastReceiver._drain does
 * (ganglion/runtime/transport.py, the pure-Python reference): a coalesced run goes to
 * on_run (or, with a lane, datagram by datagram as below), every other datagram first
 * to the lane and, unless the lane took it, to on_datagram. The lane takes a datagram
 * of a known, unsigned stream (Incoming._lanes, ganglion/runtime/_incoming.py): one
 * message at the base time, as Incoming._deliver_one delivers it, or a batch, as
 * Incoming._deliver does, calling the same Python methods for everything but the
 * header, the payloads and the hand-out.
 * The payload is parsed with the stream's *plan* (ganglion/types/_decodegen.py,
 * native_plan), which reads a subset of what the generated decoder reads and gives
 * the same values; anything else is left to the Python methods, unchanged.
 *
 * send_lone() is the other direction, for Endpoint.publish while idle: it encodes a
 * message with its type's plan (a subset of what the generated encoder writes, to the
 * same bytes), builds the lone datagram as Packer.build_one does and sends it, or does
 * nothing at all and lets the Python path do everything. batch_add() is publish under
 * load: the message encoded the same way straight into the datagram being filled, as
 * Packer.add appends it, or nothing at all.
 *
 * Nothing here decides anything the Python path does not: every refusal falls back
 * to the Python path on the same bytes, so the two give the same deliveries, datagrams,
 * counts and errors (tests/runtime/test_speedups.py compares them).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* Bumped whenever the Python side's expectations change; checked at import. */
#define SPEEDUPS_ABI 5

#define RECV_SIZE 65536
#define NAME_LEN_AT 24
#define NAME_AT 25
#define LONE_SIZE 20
#define SOL_UDP_ 17
#define UDP_GRO_ 104

/* A plan: (cls, heads, kinds, npos, kwnames, names); _decodegen.native_plan. */
#define PLAN_SIZE 6
/* Field kinds of a plan (the order of _decodegen.PLAN_KINDS). */
enum { K_INT = 0, K_FLOAT = 1, K_BOOL = 2, K_STR = 3, K_BYTES = 4 };

static PyObject *one;
static PyObject *s_closed, *s_deliver_batch_py,
    *s_observe_run, *s_deliver, *s_deliver_one, *s_decode_slow, *s_received;

/* ---- Lane: what Incoming shares with the compiled path ----------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *incoming;   /* the Incoming: its _deliver_one, _decode_slow, received */
    PyObject *lanes;      /* Incoming._lanes: header bytes -> lane entry (a dict, never replaced) */
    PyObject *subs;       /* the endpoint's subscribers per type name (dict) */
    PyObject *by_name;    /* the registry's dict of types by name */
    PyObject *info_cls;   /* MessageInfo */
    PyObject *fallback;   /* _decodegen.FALLBACK */
} Lane;

static int
Lane_init(Lane *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"incoming", "lanes", "subs", "by_name", "info_cls", "fallback",
                             NULL};
    PyObject *incoming, *lanes, *subs, *by_name, *info_cls, *fallback;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!O!O!O!O", kwlist, &incoming,
                                     &PyDict_Type, &lanes, &PyDict_Type, &subs,
                                     &PyDict_Type, &by_name, &PyType_Type, &info_cls,
                                     &fallback))
        return -1;
    if (!PyType_IsSubtype((PyTypeObject *)info_cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "info_cls must be a tuple subclass");
        return -1;
    }
    Py_XSETREF(self->incoming, Py_NewRef(incoming));
    Py_XSETREF(self->lanes, Py_NewRef(lanes));
    Py_XSETREF(self->subs, Py_NewRef(subs));
    Py_XSETREF(self->by_name, Py_NewRef(by_name));
    Py_XSETREF(self->info_cls, Py_NewRef(info_cls));
    Py_XSETREF(self->fallback, Py_NewRef(fallback));
    return 0;
}

static int
Lane_traverse(Lane *self, visitproc visit, void *arg)
{
    Py_VISIT(self->incoming);
    Py_VISIT(self->lanes);
    Py_VISIT(self->subs);
    Py_VISIT(self->by_name);
    Py_VISIT(self->info_cls);
    Py_VISIT(self->fallback);
    return 0;
}

static int
Lane_clear(Lane *self)
{
    Py_CLEAR(self->incoming);
    Py_CLEAR(self->lanes);
    Py_CLEAR(self->subs);
    Py_CLEAR(self->by_name);
    Py_CLEAR(self->info_cls);
    Py_CLEAR(self->fallback);
    return 0;
}

static void
Lane_dealloc(Lane *self)
{
    PyObject_GC_UnTrack(self);
    Lane_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject LaneType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ganglion._speedups.Lane",
    .tp_doc = PyDoc_STR("Lane(incoming, lanes, subs, by_name, info_cls, fallback): what "
                        "drain() needs to deliver a known stream's lone messages itself."),
    .tp_basicsize = sizeof(Lane),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Lane_init,
    .tp_traverse = (traverseproc)Lane_traverse,
    .tp_clear = (inquiry)Lane_clear,
    .tp_dealloc = (destructor)Lane_dealloc,
};

/* ---- small readers ------------------------------------------------------------ */

static inline uint64_t
be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* The argument of a CBOR head at p (additional info < 24 or 24..27); -1 if unread. */
static int
head_arg(const unsigned char *d, Py_ssize_t *p, Py_ssize_t end, uint64_t *out)
{
    unsigned info = d[*p] & 0x1F;
    if (info < 24) {
        *out = info;
        *p += 1;
        return 0;
    }
    if (info > 27)
        return -1;
    int n = 1 << (info - 24);
    if (*p + 1 + n > end)
        return -1;
    *out = be(d + *p + 1, n);
    *p += 1 + n;
    return 0;
}

/* Is attribute `name` of `obj` true? -1 on error. */
static int
attr_true(PyObject *obj, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    int t = PyObject_IsTrue(v);
    Py_DECREF(v);
    return t;
}

/* ---- the payload plan ----------------------------------------------------------- */

/* Parse a payload with `plan` = (cls, heads, kinds, npos, kwnames) into `values` (new
 * references, `*nvalues` of them; the caller releases them). Returns 1 when the plan
 * reads these bytes, 0 when it does not (the Python path then decides; no error set),
 * -1 on an unexpected error (set). */
static int
parse_plan(PyObject *plan, const unsigned char *d, Py_ssize_t end, PyObject **values,
           Py_ssize_t *nvalues)
{
    PyObject *heads = PyTuple_GET_ITEM(plan, 1);
    PyObject *kinds = PyTuple_GET_ITEM(plan, 2);
    Py_ssize_t n = PyTuple_GET_SIZE(heads);
    const char *kind = PyBytes_AS_STRING(kinds);
    Py_ssize_t p = 0;
    *nvalues = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *head = PyTuple_GET_ITEM(heads, i);
        Py_ssize_t hl = PyBytes_GET_SIZE(head);
        if (p + hl >= end || memcmp(d + p, PyBytes_AS_STRING(head), hl) != 0)
            return 0;
        p += hl;
        unsigned char b = d[p];
        uint64_t arg;
        PyObject *v = NULL;
        switch (kind[i]) {
        case K_INT:
            if (b >> 5 > 1 || head_arg(d, &p, end, &arg) < 0)
                return 0;
            if (b >> 5 == 0)
                v = PyLong_FromUnsignedLongLong(arg);
            else if (arg <= (uint64_t)INT64_MAX)
                v = PyLong_FromLongLong(-1 - (long long)arg);
            else
                return 0; /* below -2**63: left to Python */
            break;
        case K_FLOAT:
            if (b != 0xFB || p + 9 > end)
                return 0;
            {
                double x = PyFloat_Unpack8((const char *)d + p + 1, 0);
                if (x == -1.0 && PyErr_Occurred())
                    return -1;
                v = PyFloat_FromDouble(x);
            }
            p += 9;
            break;
        case K_BOOL:
            if (b != 0xF5 && b != 0xF4)
                return 0;
            v = Py_NewRef(b == 0xF5 ? Py_True : Py_False);
            p += 1;
            break;
        case K_STR:
        case K_BYTES:
            /* Definite lengths up to two bytes, as the generated decoder reads. */
            if (b >> 5 != (kind[i] == K_STR ? 3 : 2) || (b & 0x1F) > 25
                || head_arg(d, &p, end, &arg) < 0 || arg > (uint64_t)(end - p))
                return 0;
            if (kind[i] == K_STR) {
                v = PyUnicode_DecodeUTF8((const char *)d + p, (Py_ssize_t)arg, NULL);
                if (v == NULL) {
                    if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
                        return -1;
                    PyErr_Clear();
                    return 0; /* not UTF-8: the Python path counts the error */
                }
            }
            else
                v = PyBytes_FromStringAndSize((const char *)d + p, (Py_ssize_t)arg);
            p += (Py_ssize_t)arg;
            break;
        default:
            return 0;
        }
        if (v == NULL)
            return -1;
        values[(*nvalues)++] = v;
    }
    return p == end;
}

/* The message from parsed values: cls(v0, .., vk-1, name_k=vk, ..). */
static PyObject *
build(PyObject *plan, PyObject **values, Py_ssize_t n)
{
    PyObject *cls = PyTuple_GET_ITEM(plan, 0);
    Py_ssize_t npos = PyLong_AsSsize_t(PyTuple_GET_ITEM(plan, 3));
    PyObject *kwnames = PyTuple_GET_ITEM(plan, 4);
    if (npos < 0 && PyErr_Occurred())
        return NULL;
    return PyObject_Vectorcall(cls, values, (size_t)npos,
                               PyTuple_GET_SIZE(kwnames) ? kwnames : NULL);
}

/* ---- the lane -------------------------------------------------------------------- */

/* A lane entry (Incoming._lanes, one per stream the lane may deliver): the stream and
 * what every datagram of it shares, so that nothing is looked up on the stream. */
enum { E_STREAM, E_POS, E_TYPE, E_BOOT, E_NODE, E_SYNCED, E_REPLAYED, E_FINGERPRINT, E_PLAN,
       E_TRACKER, E_KNOWN, E_SIZE };

/* Hand `msg` to every subscriber of the entry's type: Incoming._hand_out. */
static int
hand_out(Lane *lane, PyObject *entry, PyObject *msg, PyObject *seq, PyObject *ts,
         PyObject *received_ns, PyObject *source)
{
    PyObject *type_name = PyTuple_GET_ITEM(entry, E_TYPE);
    PyObject *fields = NULL, *info = NULL, *received = NULL, *total = NULL, *targets = NULL;
    int rc = -1;
    fields = PyTuple_Pack(12, type_name, PyTuple_GET_ITEM(entry, E_NODE), seq, ts, received_ns,
                          PyTuple_GET_ITEM(entry, E_BOOT), Py_False, source,
                          PyTuple_GET_ITEM(entry, E_SYNCED), Py_False,
                          PyTuple_GET_ITEM(entry, E_REPLAYED),
                          PyTuple_GET_ITEM(entry, E_FINGERPRINT));
    if (fields == NULL)
        goto done;
    /* tuple.__new__(MessageInfo, fields), as Incoming's _new_info. */
    {
        PyObject *args = PyTuple_Pack(1, fields);
        if (args == NULL)
            goto done;
        info = PyTuple_Type.tp_new((PyTypeObject *)lane->info_cls, args, NULL);
        Py_DECREF(args);
    }
    if (info == NULL)
        goto done;
    if (!(received = PyObject_GetAttr(lane->incoming, s_received)))
        goto done;
    if (!(total = PyNumber_Add(received, one))
        || PyObject_SetAttr(lane->incoming, s_received, total) < 0)
        goto done;
    PyObject *subs = PyDict_GetItemWithError(lane->subs, type_name); /* borrowed */
    if (subs == NULL) {
        rc = PyErr_Occurred() ? -1 : 0;
        goto done;
    }
    /* Several are iterated over a copy: a callback may subscribe or unsubscribe. */
    if (!(targets = PySequence_Tuple(subs)))
        goto done;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(targets); i++) {
        PyObject *args[3] = {PyTuple_GET_ITEM(targets, i), msg, info};
        PyObject *r = PyObject_VectorcallMethod(
            s_deliver, args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        if (r == NULL)
            goto done;
        Py_DECREF(r);
    }
    rc = 0;
done:
    Py_XDECREF(fields);
    Py_XDECREF(info);
    Py_XDECREF(received);
    Py_XDECREF(total);
    Py_XDECREF(targets);
    return rc;
}

/* A lone message at `pos` of a datagram of `end` bytes (wire format v1, as
 * _incoming._read_lone): 1 with seq, ts and the payload's start set, 0 otherwise. */
static int
read_lone(const unsigned char *d, Py_ssize_t pos, Py_ssize_t end, uint64_t *seq,
          uint64_t *ts, Py_ssize_t *start)
{
    if (end - pos <= LONE_SIZE)
        return 0;
    const unsigned char *h = d + pos;
    uint64_t count = be(h + 16, 2);
    unsigned delta = h[18];
    uint64_t size = h[19];
    Py_ssize_t at = pos + LONE_SIZE;
    if (size >= 0x80) {
        unsigned high = d[at];
        size = (high > 0 && high < 0x80) ? ((size & 0x7F) | (uint64_t)high << 7) : 0;
        at += 1;
    }
    if (count != 1 || delta || !size || at + (Py_ssize_t)size != end)
        return 0;
    *seq = be(h, 8);
    *ts = be(h + 8, 8);
    *start = at;
    return 1;
}

static PyObject *
time_ns_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return PyLong_FromLongLong((long long)t.tv_sec * 1000000000LL + t.tv_nsec);
}

/* Incoming._deliver_one(stream, seq, ts, payload, source): the Python path. */
static int
deliver_one_py(Lane *lane, PyObject *stream, PyObject *seq, PyObject *ts,
               const unsigned char *d, Py_ssize_t start, Py_ssize_t end, PyObject *source)
{
    PyObject *payload = PyBytes_FromStringAndSize((const char *)d + start, end - start);
    if (payload == NULL)
        return -1;
    PyObject *args[6] = {lane->incoming, stream, seq, ts, payload, source};
    PyObject *r = PyObject_VectorcallMethod(s_deliver_one, args,
                                            6 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(payload);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* A lone message of a stream with a lane entry: Incoming._deliver_one, compiled where
 * the type is still the one registered and the message simply continues its stream. */
static int
deliver_lone(Lane *lane, PyObject *entry, uint64_t seq_v, uint64_t ts_v,
             const unsigned char *d, Py_ssize_t start, Py_ssize_t end, PyObject *source)
{
    PyObject *stream = PyTuple_GET_ITEM(entry, E_STREAM);
    PyObject *type_name = PyTuple_GET_ITEM(entry, E_TYPE);
    PyObject *plan = PyTuple_GET_ITEM(entry, E_PLAN);
    PyObject *tracker = PyTuple_GET_ITEM(entry, E_TRACKER);
    PyObject *seq = NULL, *ts = NULL, *received_ns = NULL, *ok = NULL, *msg = NULL;
    PyObject *values[64];
    Py_ssize_t nvalues = 0;
    int rc = -1;
    if (!(seq = PyLong_FromUnsignedLongLong(seq_v)) || !(ts = PyLong_FromUnsignedLongLong(ts_v)))
        goto done;
    PyObject *current = PyDict_GetItemWithError(lane->by_name, type_name); /* borrowed */
    if (current == NULL && PyErr_Occurred())
        goto done;
    if (PyTuple_GET_ITEM(entry, E_KNOWN) != current || !PyTuple_CheckExact(plan)
        || PyTuple_GET_SIZE(plan) != PLAN_SIZE
        || PyTuple_GET_SIZE(PyTuple_GET_ITEM(plan, 1)) > 64) {
        /* Registered again meanwhile: the Python path makes the decoders anew. */
        rc = deliver_one_py(lane, stream, seq, ts, d, start, end, source);
        goto done;
    }
    if (!(received_ns = time_ns_now()))
        goto done;
    int parsed = parse_plan(plan, d + start, end - start, values, &nvalues);
    if (parsed < 0)
        goto done;
    if (parsed == 0) {
        rc = deliver_one_py(lane, stream, seq, ts, d, start, end, source);
        goto done;
    }
    {
        PyObject *args[5] = {tracker, seq, one, PyTuple_GET_ITEM(entry, E_BOOT), ts};
        ok = PyObject_VectorcallMethod(s_observe_run, args,
                                       5 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    }
    if (ok == NULL)
        goto done;
    if (ok != Py_True) {
        /* Not a simple continuation (nothing was recorded): the Python path judges it. */
        rc = deliver_one_py(lane, stream, seq, ts, d, start, end, source);
        goto done;
    }
    msg = build(plan, values, nvalues);
    if (msg == NULL) {
        /* The class refused the values: the generic decoder says why (and counts it). */
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            goto done;
        PyErr_Clear();
        PyObject *payload = PyBytes_FromStringAndSize((const char *)d + start, end - start);
        if (payload == NULL)
            goto done;
        PyObject *args[5] = {lane->incoming, stream, tracker, payload, source};
        msg = PyObject_VectorcallMethod(s_decode_slow, args,
                                        5 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        Py_DECREF(payload);
        if (msg == NULL)
            goto done;
        if (msg == lane->fallback) {
            rc = 0;
            goto done;
        }
    }
    rc = hand_out(lane, entry, msg, seq, ts, received_ns, source);
done:
    for (Py_ssize_t i = 0; i < nvalues; i++)
        Py_DECREF(values[i]);
    Py_XDECREF(seq);
    Py_XDECREF(ts);
    Py_XDECREF(received_ns);
    Py_XDECREF(ok);
    Py_XDECREF(msg);
    return rc;
}

/* The most messages of one datagram the lane reads itself (more: the Python path). */
#define LANE_BATCH 512

/* A varint of one or two bytes at `*p` (the lane reads no longer ones); -1 if not. */
static int
short_varint(const unsigned char *d, Py_ssize_t *p, Py_ssize_t end, uint64_t *out)
{
    if (*p >= end)
        return -1;
    if (d[*p] < 0x80) {
        *out = d[*p];
        *p += 1;
        return 0;
    }
    if (*p + 1 >= end || d[*p + 1] >= 0x80 || d[*p + 1] == 0)
        return -1;
    *out = (uint64_t)(d[*p] & 0x7F) | (uint64_t)d[*p + 1] << 7;
    *p += 2;
    return 0;
}

/* The batch at `pos` (wire format v1, as wire.decode_batch reads it), when it is well
 * formed with short varints and at most LANE_BATCH messages: its count, with each
 * message's timestamp, start and size; 0 otherwise (decode_batch then judges it). */
static Py_ssize_t
read_batch(const unsigned char *d, Py_ssize_t pos, Py_ssize_t end, uint64_t *first_seq,
           uint64_t *tss, Py_ssize_t *starts, Py_ssize_t *sizes)
{
    if (pos + 18 > end)
        return 0;
    uint64_t first = be(d + pos, 8), ts = be(d + pos + 8, 8), count = be(d + pos + 16, 2);
    pos += 18;
    if (count == 0 || count > LANE_BATCH || first + count < first)
        return 0; /* (first + count wrapping: numbers past 2**64) */
    for (uint64_t i = 0; i < count; i++) {
        uint64_t delta, size;
        if (short_varint(d, &pos, end, &delta) < 0)
            return 0;
        if (delta & 1) {
            uint64_t back = (delta + 1) >> 1;
            if (back > ts)
                return 0;
            ts -= back;
        }
        else {
            if (ts + (delta >> 1) < ts)
                return 0;
            ts += delta >> 1;
        }
        if (short_varint(d, &pos, end, &size) < 0 || size == 0 || (uint64_t)(end - pos) < size)
            return 0;
        tss[i] = ts;
        starts[i] = pos;
        sizes[i] = (Py_ssize_t)size;
        pos += (Py_ssize_t)size;
    }
    if (pos != end)
        return 0;
    *first_seq = first;
    return (Py_ssize_t)count;
}

/* Incoming._deliver(stream, first_seq, timestamps, payloads, source): the Python path. */
static int
deliver_py(Lane *lane, PyObject *stream, PyObject *first, const unsigned char *d,
           Py_ssize_t count, const uint64_t *tss, const Py_ssize_t *starts,
           const Py_ssize_t *sizes, PyObject *source)
{
    PyObject *timestamps = PyList_New(count), *payloads = PyList_New(count), *r = NULL;
    if (timestamps == NULL || payloads == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *t = PyLong_FromUnsignedLongLong(tss[i]);
        PyObject *b = PyBytes_FromStringAndSize((const char *)d + starts[i], sizes[i]);
        if (t == NULL || b == NULL) {
            Py_XDECREF(t);
            Py_XDECREF(b);
            goto done;
        }
        PyList_SET_ITEM(timestamps, i, t);
        PyList_SET_ITEM(payloads, i, b);
    }
    {
        PyObject *args[6] = {lane->incoming, stream, first, timestamps, payloads, source};
        r = PyObject_VectorcallMethod(s_deliver_batch_py, args,
                                      6 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    }
done:
    Py_XDECREF(timestamps);
    Py_XDECREF(payloads);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* The messages of a batch of a stream with a lane entry: Incoming._deliver, compiled
 * where the type is still the one registered and the batch simply continues its
 * stream. */
static int
deliver_batch(Lane *lane, PyObject *entry, const unsigned char *d, uint64_t first_v,
              Py_ssize_t count, const uint64_t *tss, const Py_ssize_t *starts,
              const Py_ssize_t *sizes, PyObject *source)
{
    PyObject *stream = PyTuple_GET_ITEM(entry, E_STREAM);
    PyObject *type_name = PyTuple_GET_ITEM(entry, E_TYPE);
    PyObject *plan = PyTuple_GET_ITEM(entry, E_PLAN);
    PyObject *tracker = PyTuple_GET_ITEM(entry, E_TRACKER);
    PyObject *first = NULL, *n_o = NULL, *newest_o = NULL, *received_ns = NULL, *ok = NULL;
    int rc = -1;
    if (!(first = PyLong_FromUnsignedLongLong(first_v)))
        goto done;
    PyObject *current = PyDict_GetItemWithError(lane->by_name, type_name); /* borrowed */
    if (current == NULL && PyErr_Occurred())
        goto done;
    if (PyTuple_GET_ITEM(entry, E_KNOWN) != current || !PyTuple_CheckExact(plan)
        || PyTuple_GET_SIZE(plan) != PLAN_SIZE
        || PyTuple_GET_SIZE(PyTuple_GET_ITEM(plan, 1)) > 64) {
        rc = deliver_py(lane, stream, first, d, count, tss, starts, sizes, source);
        goto done;
    }
    if (!(received_ns = time_ns_now()))
        goto done;
    uint64_t newest = tss[0];
    for (Py_ssize_t i = 1; i < count; i++)
        if (tss[i] > newest)
            newest = tss[i];
    if (!(n_o = PyLong_FromSsize_t(count)) || !(newest_o = PyLong_FromUnsignedLongLong(newest)))
        goto done;
    {
        PyObject *args[5] = {tracker, first, n_o, PyTuple_GET_ITEM(entry, E_BOOT), newest_o};
        ok = PyObject_VectorcallMethod(s_observe_run, args,
                                       5 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    }
    if (ok == NULL)
        goto done;
    if (ok != Py_True) {
        /* Not a simple continuation (nothing was recorded): the Python path judges each. */
        rc = deliver_py(lane, stream, first, d, count, tss, starts, sizes, source);
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *values[64];
        Py_ssize_t nvalues = 0;
        PyObject *msg = NULL, *seq = NULL, *ts = NULL;
        int parsed = parse_plan(plan, d + starts[i], sizes[i], values, &nvalues);
        if (parsed > 0)
            msg = build(plan, values, nvalues);
        for (Py_ssize_t k = 0; k < nvalues; k++)
            Py_DECREF(values[k]);
        if (msg == NULL && (parsed < 0 || (parsed > 0 && !PyErr_ExceptionMatches(PyExc_Exception))))
            goto done;
        if (msg == NULL) {
            /* Not read here, or refused by the class: the full decoder decides (and counts). */
            PyErr_Clear();
            PyObject *payload = PyBytes_FromStringAndSize((const char *)d + starts[i], sizes[i]);
            if (payload == NULL)
                goto done;
            PyObject *args[5] = {lane->incoming, stream, tracker, payload, source};
            msg = PyObject_VectorcallMethod(s_decode_slow, args,
                                            5 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
            Py_DECREF(payload);
            if (msg == NULL)
                goto done;
            if (msg == lane->fallback) {
                Py_DECREF(msg);
                continue;
            }
        }
        seq = PyLong_FromUnsignedLongLong(first_v + (uint64_t)i);
        ts = PyLong_FromUnsignedLongLong(tss[i]);
        int h = seq && ts ? hand_out(lane, entry, msg, seq, ts, received_ns, source) : -1;
        Py_DECREF(msg);
        Py_XDECREF(seq);
        Py_XDECREF(ts);
        if (h < 0)
            goto done;
    }
    rc = 0;
done:
    Py_XDECREF(first);
    Py_XDECREF(n_o);
    Py_XDECREF(newest_o);
    Py_XDECREF(received_ns);
    Py_XDECREF(ok);
    return rc;
}

/* Incoming.on_datagram's short path for one datagram in `d`: 1 when it was handled
 * (delivered, or nothing to do), 0 when on_datagram must have it, -1 on error. */
static int
lane_datagram(Lane *lane, const unsigned char *d, Py_ssize_t n, PyObject *source)
{
    if (n <= NAME_LEN_AT || NAME_AT + d[NAME_LEN_AT] > n)
        return 0;
    PyObject *key = PyBytes_FromStringAndSize((const char *)d, NAME_AT + d[NAME_LEN_AT]);
    if (key == NULL)
        return -1;
    PyObject *entry = PyDict_GetItemWithError(lane->lanes, key); /* borrowed */
    Py_DECREF(key);
    if (entry == NULL)
        return PyErr_Occurred() ? -1 : 0; /* not a stream the lane takes: Python's */
    if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != E_SIZE) {
        PyErr_SetString(PyExc_TypeError, "a lane entry is not a tuple of its fields");
        return -1;
    }
    Py_INCREF(entry); /* a callback may clear the lanes */
    int rc = -1;
    Py_ssize_t pos = PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, E_POS));
    uint64_t seq = 0, ts = 0;
    Py_ssize_t start = 0;
    if (pos < 0) {
        rc = PyErr_Occurred() ? -1 : 0;
        goto done;
    }
    uint64_t tss[LANE_BATCH];
    Py_ssize_t starts[LANE_BATCH], sizes[LANE_BATCH], count = 0;
    int lone = read_lone(d, pos, n, &seq, &ts, &start);
    if (!lone && !(count = read_batch(d, pos, n, &seq, tss, starts, sizes))) {
        rc = 0;
        goto done;
    }
    PyObject *subs = PyDict_GetItemWithError(lane->subs, PyTuple_GET_ITEM(entry, E_TYPE));
    if (subs == NULL) {
        rc = PyErr_Occurred() ? -1 : 1;
        goto done;
    }
    int t = PyObject_IsTrue(subs);
    if (t <= 0) {
        rc = t < 0 ? -1 : 1;
        goto done;
    }
    if (lone)
        rc = deliver_lone(lane, entry, seq, ts, d, start, n, source) < 0 ? -1 : 1;
    else
        rc = deliver_batch(lane, entry, d, seq, count, tss, starts, sizes, source) < 0 ? -1 : 1;
done:
    Py_DECREF(entry);
    return rc;
}

/* ---- drain ----------------------------------------------------------------------- */

/* (ip, port) of the sender; the last one is reused while it does not change. */
static PyObject *last_source;
static struct sockaddr_in last_addr;

static PyObject *
source_of(const struct sockaddr_in *a)
{
    if (last_source != NULL && a->sin_addr.s_addr == last_addr.sin_addr.s_addr
        && a->sin_port == last_addr.sin_port)
        return Py_NewRef(last_source);
    char text[INET_ADDRSTRLEN];
    if (inet_ntop(AF_INET, &a->sin_addr, text, sizeof text) == NULL)
        return PyErr_SetFromErrno(PyExc_OSError);
    PyObject *src = Py_BuildValue("(si)", text, (int)ntohs(a->sin_port));
    if (src == NULL)
        return NULL;
    Py_XSETREF(last_source, Py_NewRef(src));
    last_addr = *a;
    return src;
}

/* Report a caught exception to `report(kind, exc)` (which counts and logs it), as the
 * Python drain's `except Exception`; anything else (KeyboardInterrupt...) propagates. */
static int
report_exception(PyObject *report, const char *kind)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return -1;
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (exc != NULL && tb != NULL)
        PyException_SetTraceback(exc, tb);
    PyObject *r = PyObject_CallFunction(report, "sO", kind, exc ? exc : Py_None);
    Py_XDECREF(type);
    Py_XDECREF(exc);
    Py_XDECREF(tb);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

enum { C_DATAGRAMS, C_BYTES, C_DRAINS, C_MAX_SEEN, C_FULL_DRAINS, C_COALESCED, C_COUNT };

static int
count_add(PyObject *counts, Py_ssize_t i, long long v, int as_max)
{
    PyObject *old = PyList_GET_ITEM(counts, i);
    long long cur = PyLong_AsLongLong(old);
    if (cur == -1 && PyErr_Occurred())
        return -1;
    long long nv = as_max ? (v > cur ? v : cur) : cur + v;
    if (nv == cur)
        return 0;
    PyObject *o = PyLong_FromLongLong(nv);
    if (o == NULL)
        return -1;
    PyList_SET_ITEM(counts, i, o);
    Py_DECREF(old);
    return 0;
}

/* One datagram the lane did not take: on_datagram(bytes, source, now), its exceptions
 * reported as the Python drain reports them. -1 only for what must propagate. */
static int
to_python(PyObject *on_datagram, const unsigned char *d, Py_ssize_t n, PyObject *source,
          PyObject *now_fn, PyObject **now, PyObject *report)
{
    PyObject *data = PyBytes_FromStringAndSize((const char *)d, n);
    PyObject *r = NULL;
    if (data != NULL && (*now != NULL || (*now = PyObject_CallNoArgs(now_fn)) != NULL)) {
        PyObject *cargs[3] = {data, source, *now};
        r = PyObject_Vectorcall(on_datagram, cargs, 3, NULL);
    }
    Py_XDECREF(data);
    if (r == NULL)
        return report_exception(report, "callback");
    Py_DECREF(r);
    return 0;
}

/* A coalesced run with a lane: each datagram of it in turn, to the lane or else to
 * on_datagram (what Incoming.on_run delivers and counts for it, datagram by datagram:
 * tests/runtime/test_incoming.py shows the two give the same). */
static int
run_in_lane(Lane *lane, const unsigned char *d, Py_ssize_t n, Py_ssize_t size,
            PyObject *source, PyObject *on_datagram, PyObject *now_fn, PyObject **now,
            PyObject *report)
{
    for (Py_ssize_t at = 0; at < n; at += size) {
        Py_ssize_t len = n - at < size ? n - at : size;
        int handled = lane_datagram(lane, d + at, len, source);
        if (handled < 0 && report_exception(report, "callback") < 0)
            return -1;
        if (handled == 0
            && to_python(on_datagram, d + at, len, source, now_fn, now, report) < 0)
            return -1;
    }
    return 0;
}

PyDoc_STRVAR(drain_doc,
"drain(fd, slot, limit, buffer, lane, on_datagram, on_run, now, report, counts)\n--\n\n"
"Read the socket `fd` until EAGAIN or `limit` datagrams, as MulticastReceiver._drain:\n"
"each datagram to the lane (a Lane or None) and otherwise on_datagram(data, source,\n"
"now); a coalesced run datagram by datagram the same way with a lane, whole to\n"
"on_run(data, size, source, now) without one. `buffer` is a bytearray\n"
"of 65536 bytes; now() is called once, when a callback first needs it. Errors go to\n"
"report(kind, detail) with kind 'receive' (an OSError), 'truncated' (the length) or\n"
"'callback' (the exception). `counts` (a list) gets datagrams, bytes, drains,\n"
"max_seen, full_drains and coalesced added.");

static PyObject *
drain(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "drain() takes 10 arguments");
        return NULL;
    }
    int fd = (int)PyLong_AsLong(args[0]);
    PyObject *slot = args[1];
    Py_ssize_t limit = PyLong_AsSsize_t(args[2]);
    PyObject *buffer = args[3], *lane_o = args[4], *on_datagram = args[5], *on_run = args[6],
             *now_fn = args[7], *report = args[8], *counts = args[9];
    if (PyErr_Occurred())
        return NULL;
    if (!PyByteArray_CheckExact(buffer) || PyByteArray_GET_SIZE(buffer) < RECV_SIZE) {
        PyErr_SetString(PyExc_ValueError, "buffer must be a bytearray of 65536 bytes");
        return NULL;
    }
    if (!PyList_CheckExact(counts) || PyList_GET_SIZE(counts) < C_COUNT) {
        PyErr_SetString(PyExc_ValueError, "counts must be a list of 6 ints");
        return NULL;
    }
    if (lane_o != Py_None && !PyObject_TypeCheck(lane_o, &LaneType)) {
        PyErr_SetString(PyExc_TypeError, "lane must be a Lane or None");
        return NULL;
    }
    Lane *lane = lane_o == Py_None ? NULL : (Lane *)lane_o;
    unsigned char *d = (unsigned char *)PyByteArray_AS_STRING(buffer);
    PyObject *now = NULL;
    long long count = 0, nbytes = 0, coalesced = 0;
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    while (count < limit) {
        struct sockaddr_in addr;
        struct iovec iov = {d, RECV_SIZE};
        struct msghdr mh = {0};
        mh.msg_name = &addr;
        mh.msg_namelen = sizeof addr;
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = control.buf;
        mh.msg_controllen = sizeof control.buf;
        ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                break;
            PyErr_SetFromErrno(PyExc_OSError);
            if (report_exception(report, "receive") < 0)
                goto error;
            break;
        }
        nbytes += n;
        int size = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
            if (c->cmsg_level == SOL_UDP_ && c->cmsg_type == UDP_GRO_
                && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
                memcpy(&size, CMSG_DATA(c), sizeof size);
                break;
            }
        }
        if (mh.msg_flags & MSG_TRUNC) {
            /* Larger than any datagram; nothing of it can be trusted. */
            PyObject *r = PyObject_CallFunction(report, "sn", "truncated", (Py_ssize_t)n);
            if (r == NULL)
                goto error;
            Py_DECREF(r);
            continue;
        }
        PyObject *source = mh.msg_namelen >= sizeof addr && addr.sin_family == AF_INET
                               ? source_of(&addr) : Py_BuildValue("(si)", "", 0);
        if (source == NULL)
            goto error;
        int run = size > 0 && size < n;
        int handled = 0;
        if (run) {
            long long k = (n + size - 1) / size;
            count += k;
            coalesced += k;
            if (lane != NULL) {
                handled = 1;
                if (run_in_lane(lane, d, n, size, source, on_datagram, now_fn, &now,
                                report) < 0) {
                    Py_DECREF(source);
                    goto error;
                }
            }
        }
        else {
            count += 1;
            if (lane != NULL) {
                handled = lane_datagram(lane, d, n, source);
                if (handled < 0) {
                    handled = 1;
                    if (report_exception(report, "callback") < 0) {
                        Py_DECREF(source);
                        goto error;
                    }
                }
            }
        }
        if (!handled) {
            PyObject *data = PyBytes_FromStringAndSize((const char *)d, n);
            PyObject *r = NULL;
            if (data != NULL && (now != NULL || (now = PyObject_CallNoArgs(now_fn)) != NULL)) {
                if (run) {
                    PyObject *sz = PyLong_FromLong(size);
                    if (sz != NULL) {
                        PyObject *cargs[4] = {data, sz, source, now};
                        r = PyObject_Vectorcall(on_run, cargs, 4, NULL);
                        Py_DECREF(sz);
                    }
                }
                else {
                    PyObject *cargs[3] = {data, source, now};
                    r = PyObject_Vectorcall(on_datagram, cargs, 3, NULL);
                }
            }
            Py_XDECREF(data);
            if (r == NULL) {
                if (report_exception(report, run ? "run" : "callback") < 0) {
                    Py_DECREF(source);
                    goto error;
                }
            }
            else
                Py_DECREF(r);
        }
        Py_DECREF(source);
        int closed = attr_true(slot, s_closed);
        if (closed < 0)
            goto error;
        if (closed)
            break;
    }
    if (count) {
        if (count_add(counts, C_DRAINS, 1, 0) < 0 || count_add(counts, C_DATAGRAMS, count, 0) < 0
            || count_add(counts, C_BYTES, nbytes, 0) < 0
            || count_add(counts, C_MAX_SEEN, count, 1) < 0
            || count_add(counts, C_COALESCED, coalesced, 0) < 0
            || (count >= limit && count_add(counts, C_FULL_DRAINS, 1, 0) < 0))
            goto error;
    }
    Py_XDECREF(now);
    Py_RETURN_NONE;
error:
    Py_XDECREF(now);
    return NULL;
}

/* ---- the send lane ------------------------------------------------------------------ */

static PyObject *s_queue, *s_sock, *s_key, *s_count, *s_seq_attr, *s_prefix, *s_limit,
    *s_next_seq;

/* Append the shortest CBOR head of `major` with argument `v` at `b`; its length. */
static Py_ssize_t
put_head(unsigned char *b, int major, uint64_t v)
{
    unsigned char mt = (unsigned char)(major << 5);
    int n = v < 24 ? 0 : v < 0x100 ? 1 : v < 0x10000 ? 2 : v < 0x100000000ULL ? 4 : 8;
    b[0] = mt | (n == 0 ? (unsigned char)v : n == 1 ? 24 : n == 2 ? 25 : n == 4 ? 26 : 27);
    for (int i = 0; i < n; i++)
        b[1 + i] = (unsigned char)(v >> (8 * (n - 1 - i)));
    return 1 + n;
}

/* Encode `msg` with `plan` into `b` (room for `cap` bytes), as the generated encoder
 * (ganglion/types/_codegen.py) writes its common case: 1 with `*n` set, 0 when a value
 * is not that case (the Python encoder then writes or refuses it), -1 on error. */
static int
encode_plan(PyObject *plan, PyObject *msg, unsigned char *b, Py_ssize_t cap, Py_ssize_t *n)
{
    PyObject *heads = PyTuple_GET_ITEM(plan, 1);
    const char *kind = PyBytes_AS_STRING(PyTuple_GET_ITEM(plan, 2));
    PyObject *names = PyTuple_GET_ITEM(plan, 5);
    Py_ssize_t p = 0;
    if (Py_TYPE(msg) != (PyTypeObject *)PyTuple_GET_ITEM(plan, 0))
        return 0; /* a subclass: the generic encoder */
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(heads); i++) {
        PyObject *head = PyTuple_GET_ITEM(heads, i);
        Py_ssize_t hl = PyBytes_GET_SIZE(head);
        if (p + hl + 9 > cap)
            return 0;
        memcpy(b + p, PyBytes_AS_STRING(head), hl);
        p += hl;
        PyObject *v = PyObject_GetAttr(msg, PyTuple_GET_ITEM(names, i));
        if (v == NULL)
            return -1;
        int ok = 1;
        switch (kind[i]) {
        case K_INT:
            if (!PyLong_CheckExact(v))
                ok = 0;
            else {
                int overflow;
                long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
                if (overflow > 0) {
                    unsigned long long u = PyLong_AsUnsignedLongLong(v);
                    if (u == (unsigned long long)-1 && PyErr_Occurred()) {
                        PyErr_Clear(); /* 2**64 or more: a bignum, Python's */
                        ok = 0;
                    }
                    else
                        p += put_head(b + p, 0, u);
                }
                else if (overflow < 0)
                    ok = 0; /* below -2**63: Python's */
                else if (x == -1 && PyErr_Occurred())
                    ok = -1;
                else if (x >= 0)
                    p += put_head(b + p, 0, (uint64_t)x);
                else
                    p += put_head(b + p, 1, (uint64_t)(-1 - x));
            }
            break;
        case K_FLOAT:
            if (!PyFloat_CheckExact(v) || !isfinite(PyFloat_AS_DOUBLE(v)))
                ok = 0; /* NaN and infinities go the generic way (half precision) */
            else {
                b[p] = 0xFB;
                if (PyFloat_Pack8(PyFloat_AS_DOUBLE(v), (char *)b + p + 1, 0) < 0)
                    ok = -1;
                p += 9;
            }
            break;
        case K_BOOL:
            if (v == Py_True || v == Py_False)
                b[p++] = v == Py_True ? 0xF5 : 0xF4;
            else
                ok = 0;
            break;
        case K_STR:
        case K_BYTES: {
            const char *data;
            Py_ssize_t len;
            if (kind[i] == K_STR) {
                if (!PyUnicode_CheckExact(v)) {
                    ok = 0;
                    break;
                }
                data = PyUnicode_AsUTF8AndSize(v, &len);
                if (data == NULL) {
                    PyErr_Clear(); /* lone surrogates: Python's error */
                    ok = 0;
                    break;
                }
            }
            else {
                if (!PyBytes_CheckExact(v)) {
                    ok = 0;
                    break;
                }
                data = PyBytes_AS_STRING(v);
                len = PyBytes_GET_SIZE(v);
            }
            if (p + 9 + len > cap) {
                ok = 0;
                break;
            }
            p += put_head(b + p, kind[i] == K_STR ? 3 : 2, (uint64_t)len);
            memcpy(b + p, data, len);
            p += len;
            break;
        }
        default:
            ok = 0;
        }
        Py_DECREF(v);
        if (ok <= 0)
            return ok;
    }
    *n = p;
    return 1;
}

/* Read attribute `name` of `obj` as a non-negative integer that fits `*out`. */
static int
attr_u64(PyObject *obj, PyObject *name, uint64_t *out)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    *out = PyLong_AsUnsignedLongLong(v);
    Py_DECREF(v);
    if (*out == (uint64_t)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

PyDoc_STRVAR(send_lone_doc,
"send_lone(sender, host, port, packer, ts_ns, msg, plan, max_payload)\n--\n\n"
"Send `msg` alone in one datagram now, as Packer.build_one(encode(msg), ts_ns) and\n"
"MulticastSender.send would, when that is the common case: an unsigned packer with\n"
"nothing waiting, a sender with nothing queued, values `plan` encodes, a payload of\n"
"at most `max_payload` bytes, and a kernel that takes the datagram at once. Then the\n"
"packer's numbers move on and (payload, datagram length) is returned. Otherwise\n"
"nothing at all happened and None is returned: the Python path does it.");

/* The largest datagram the send lane builds (on the stack); larger ones go Python's way. */
#define SEND_BUF 2048

static PyObject *
send_lone(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "send_lone() takes 8 arguments");
        return NULL;
    }
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

static PyObject *s_prev, *s_size, *s_body;

/* Wire format v1 (ganglion/wire): most messages in one datagram, and the longest
 * per-message head (a two-byte delta and a two-byte length). */
#define MAX_BATCH 0xFFFF
#define HEAD_MAX 4

PyDoc_STRVAR(batch_add_doc,
"batch_add(packer, ts_ns, msg, plan, max_payload)\n--\n\n"
"Encode `msg` with `plan` and append it to the datagram `packer` holds, as\n"
"packer.add(encode(msg), ts_ns) would in its common case: messages already waiting, a\n"
"delta and a length of at most two bytes, room left. Then (payload, full) is returned,\n"
"full being packer.add's FULL (another as large would not fit). Otherwise nothing at\n"
"all happened and None is returned: the Python path does it.");

static PyObject *
batch_add(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "batch_add() takes 5 arguments");
        return NULL;
    }
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

static PyMethodDef methods[] = {
    {"drain", (PyCFunction)(void (*)(void))drain, METH_FASTCALL, drain_doc},
    {"send_lone", (PyCFunction)(void (*)(void))send_lone, METH_FASTCALL, send_lone_doc},
    {"batch_add", (PyCFunction)(void (*)(void))batch_add, METH_FASTCALL, batch_add_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "ganglion._speedups",
    PyDoc_STR("The receive path's common case, compiled (see ganglion/_speedups.c)."), -1,
    methods,
};

#define INTERN(var, text) \
    if (!(var = PyUnicode_InternFromString(text))) \
        return NULL

PyMODINIT_FUNC
PyInit__speedups(void)
{
    INTERN(s_closed, "closed");
    INTERN(s_observe_run, "observe_run");
    INTERN(s_deliver, "deliver");
    INTERN(s_deliver_one, "_deliver_one");
    INTERN(s_deliver_batch_py, "_deliver");
    INTERN(s_decode_slow, "_decode_slow");
    INTERN(s_received, "received");
    INTERN(s_queue, "_queue");
    INTERN(s_sock, "_sock");
    INTERN(s_key, "_key");
    INTERN(s_count, "count");
    INTERN(s_seq_attr, "_seq");
    INTERN(s_prefix, "_prefix");
    INTERN(s_limit, "_limit");
    INTERN(s_next_seq, "next_seq");
    INTERN(s_prev, "_prev");
    INTERN(s_size, "_size");
    INTERN(s_body, "_body");
    if (!(one = PyLong_FromLong(1)))
        return NULL;
    if (PyType_Ready(&LaneType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Lane", (PyObject *)&LaneType) < 0
        || PyModule_AddIntConstant(m, "ABI", SPEEDUPS_ABI) < 0
        || PyModule_AddIntConstant(m, "RECV_SIZE", RECV_SIZE) < 0
        || PyModule_AddIntConstant(m, "MAX_BATCH", MAX_BATCH) < 0
        || PyModule_AddIntConstant(m, "HEAD_MAX", HEAD_MAX) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
