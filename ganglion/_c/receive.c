/*
 * ganglion._speedups, the receive side: the socket drain and its lane (see module.c).
 */
#include "speedups.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* ---- Lane: what Incoming shares with the compiled path ----------------------- */


/* The TS_ slots, by name. */
static PyObject **const tracker_names[TS_COUNT] = {&s_boot, &s_highest, &s_resync, &s_newest_ts,
                                                   &s_seen, &s_mask, &s_received};

static int
Lane_init(Lane *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"incoming", "lanes", "subs", "by_name", "info_cls", "fallback",
                             "sub_cls", "tracker_cls", NULL};
    PyObject *incoming, *lanes, *subs, *by_name, *info_cls, *fallback, *sub_cls, *tracker_cls;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!O!O!O!OO!O!", kwlist, &incoming,
                                     &PyDict_Type, &lanes, &PyDict_Type, &subs,
                                     &PyDict_Type, &by_name, &PyType_Type, &info_cls,
                                     &fallback, &PyType_Type, &sub_cls, &PyType_Type,
                                     &tracker_cls))
        return -1;
    if (!PyType_IsSubtype((PyTypeObject *)info_cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "info_cls must be a tuple subclass");
        return -1;
    }
    /* hand_out fills a MessageInfo's fields by position: refuse one of another shape. */
    PyObject *fields = PyObject_GetAttr(info_cls, s_fields);
    Py_ssize_t nfields = fields == NULL ? -1 : PyObject_Size(fields);
    Py_XDECREF(fields);
    if (nfields != INFO_FIELDS) {
        if (nfields >= 0 || PyErr_ExceptionMatches(PyExc_AttributeError)
            || PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "info_cls must have the %d _fields the lane fills",
                         INFO_FIELDS);
        }
        return -1;
    }
    Py_XSETREF(self->incoming, Py_NewRef(incoming));
    Py_XSETREF(self->lanes, Py_NewRef(lanes));
    Py_XSETREF(self->subs, Py_NewRef(subs));
    Py_XSETREF(self->by_name, Py_NewRef(by_name));
    Py_XSETREF(self->info_cls, Py_NewRef(info_cls));
    Py_XSETREF(self->fallback, Py_NewRef(fallback));
    Py_XSETREF(self->sub_cls, Py_NewRef(sub_cls));
    Py_XSETREF(self->tracker_cls, Py_NewRef(tracker_cls));
    Py_CLEAR(self->last_key);
    /* Read and written in place by observe_run: only if every one is a slot. */
    slot_offsets(tracker_cls, tracker_names, TS_COUNT, self->tracker_slots);
    return 0;
}

static PyObject *
Lane_tracker_slots(Lane *self, void *Py_UNUSED(closure))
{
    return slots_dict(tracker_names, TS_COUNT, self->tracker_slots);
}

static PyGetSetDef Lane_getset[] = {
    {"tracker_slots", (getter)Lane_tracker_slots, NULL,
     PyDoc_STR("{name: offset} of the SequenceTracker slots observe_run reads and writes in "
               "place; all 0 when tracker_cls does not keep every one in a slot (then "
               "observe_run is called by name, more slowly)."), NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static int
Lane_traverse(Lane *self, visitproc visit, void *arg)
{
    Py_VISIT(self->incoming);
    Py_VISIT(self->lanes);
    Py_VISIT(self->subs);
    Py_VISIT(self->by_name);
    Py_VISIT(self->info_cls);
    Py_VISIT(self->fallback);
    Py_VISIT(self->sub_cls);
    Py_VISIT(self->tracker_cls);
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
    Py_CLEAR(self->sub_cls);
    Py_CLEAR(self->tracker_cls);
    Py_CLEAR(self->last_key);
    return 0;
}

static void
Lane_dealloc(Lane *self)
{
    PyObject_GC_UnTrack(self);
    Lane_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

PyTypeObject LaneType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ganglion._speedups.Lane",
    .tp_doc = PyDoc_STR("Lane(incoming, lanes, subs, by_name, info_cls, fallback, sub_cls, "
                        "tracker_cls): what drain() needs to deliver a known stream's "
                        "datagrams itself."),
    .tp_basicsize = sizeof(Lane),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Lane_init,
    .tp_traverse = (traverseproc)Lane_traverse,
    .tp_clear = (inquiry)Lane_clear,
    .tp_dealloc = (destructor)Lane_dealloc,
    .tp_getset = Lane_getset,
};

/* ---- the lane -------------------------------------------------------------------- */

/* A lane entry (Incoming._lanes, one per stream the lane may deliver): the stream and
 * what every datagram of it shares, so that nothing is looked up on the stream. E_OPEN
 * is None for an unsigned stream, else what verifies (and decrypts) one of its
 * datagrams: open(data, pos, node_id, name) -> the datagram in clear, or None. */
enum { E_STREAM, E_POS, E_TYPE, E_BOOT, E_NODE, E_SYNCED, E_REPLAYED, E_FINGERPRINT, E_PLAN,
       E_TRACKER, E_KNOWN, E_NAME, E_OPEN, E_SIZE };

/* Add `n` to the int attribute `name` of `obj`; -1 on error. */
static int
attr_add(PyObject *obj, PyObject *name, PyObject *n)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    PyObject *total = PyNumber_Add(v, n);
    Py_DECREF(v);
    if (total == NULL)
        return -1;
    int rc = PyObject_SetAttr(obj, name, total);
    Py_DECREF(total);
    return rc;
}

/* The exception being raised, taken (normalised, with its traceback); NULL if none. */
static PyObject *
take_exception(void)
{
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (exc != NULL && tb != NULL)
        PyException_SetTraceback(exc, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return exc;
}

/* sub.deliver(msg, info). For a Subscription (exactly) with a callback, its steps are
 * done here, with no Python frame before the callback: nothing when closed, else
 * `delivered` counted, the callback called, and an exception it raises (an Exception;
 * anything else propagates) handed to sub._callback_failed. */
static int
deliver_to(Lane *lane, PyObject *sub, PyObject *msg, PyObject *info)
{
    PyObject *cb = NULL, *r = NULL;
    if ((PyObject *)Py_TYPE(sub) == lane->sub_cls) {
        int closed = attr_true(sub, s_closed_attr);
        if (closed != 0)
            return closed < 0 ? -1 : 0;
        if (!(cb = PyObject_GetAttr(sub, s_callback)))
            return -1;
    }
    if (cb == NULL || cb == Py_None) {
        Py_XDECREF(cb);
        PyObject *args[3] = {sub, msg, info};
        r = PyObject_VectorcallMethod(s_deliver, args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        Py_XDECREF(r);
        return r == NULL ? -1 : 0;
    }
    if (attr_add(sub, s_delivered, one) < 0) {
        Py_DECREF(cb);
        return -1;
    }
    PyObject *args[2] = {msg, info};
    r = PyObject_Vectorcall(cb, args, 2, NULL);
    Py_DECREF(cb);
    if (r != NULL) {
        Py_DECREF(r);
        return 0;
    }
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return -1;
    PyObject *exc = take_exception();
    PyObject *fargs[2] = {sub, exc ? exc : Py_None};
    r = PyObject_VectorcallMethod(s_callback_failed, fargs, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                  NULL);
    Py_XDECREF(exc);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* observe_run's steps on a tracker's slots `at`, whose values `v` the caller holds. */
static int
observe_in_place(PyObject *tracker, const Py_ssize_t *at, PyObject **v, uint64_t first,
                 PyObject *first_o, Py_ssize_t count, PyObject *boot, uint64_t newest)
{
    /* boot != self._boot or first_seq != self._highest + 1 or self._resync: not simple. */
    int same = PyObject_RichCompareBool(boot, v[TS_BOOT], Py_EQ);
    if (same <= 0)
        return same;
    if (first > 0 && PyLong_CheckExact(v[TS_HIGHEST]))
        same = compare_u64(v[TS_HIGHEST], first - 1) == 0;
    else {
        PyObject *next = PyNumber_Add(v[TS_HIGHEST], one);
        same = next == NULL ? -1 : PyObject_RichCompareBool(first_o, next, Py_EQ);
        Py_XDECREF(next);
    }
    if (same <= 0)
        return same;
    int resync = v[TS_RESYNC] == Py_False ? 0 : PyObject_IsTrue(v[TS_RESYNC]);
    if (resync != 0)
        return resync < 0 ? -1 : 0;
    /* Every new value is made before any is stored: a failure changes nothing. */
    PyObject *newest_o = NULL, *highest = NULL, *received = NULL, *seen = NULL, *n_o = NULL;
    int newer;
    if (PyLong_CheckExact(v[TS_NEWEST_TS]))
        newer = compare_u64(v[TS_NEWEST_TS], newest) < 0;
    else if (!(newest_o = PyLong_FromUnsignedLongLong(newest))
             || (newer = PyObject_RichCompareBool(newest_o, v[TS_NEWEST_TS], Py_GT)) < 0)
        goto error;
    if ((newer && newest_o == NULL && !(newest_o = PyLong_FromUnsignedLongLong(newest)))
        || !(highest = PyLong_FromUnsignedLongLong(first + (uint64_t)count - 1))
        || !(n_o = PyLong_FromSsize_t(count))
        || !(received = PyNumber_Add(v[TS_RECEIVED], n_o)))
        goto error;
    /* _seen = ((_seen << count) | ((1 << count) - 1)) & _mask. Once every number in the
     * window has arrived (a stream's steady state) it stays _mask itself, and nothing
     * is computed. */
    if (v[TS_SEEN] == v[TS_MASK])
        seen = Py_NewRef(v[TS_MASK]);
    else {
        PyObject *ones = PyNumber_Lshift(one, n_o), *x = NULL;
        if (ones != NULL)
            Py_SETREF(ones, PyNumber_Subtract(ones, one));
        if (ones != NULL && (x = PyNumber_Lshift(v[TS_SEEN], n_o)) != NULL)
            Py_SETREF(x, PyNumber_Or(x, ones));
        if (x != NULL)
            seen = PyNumber_And(x, v[TS_MASK]);
        Py_XDECREF(ones);
        Py_XDECREF(x);
        int full = seen == NULL ? -1 : PyObject_RichCompareBool(seen, v[TS_MASK], Py_EQ);
        if (full < 0)
            goto error;
        if (full)
            Py_SETREF(seen, Py_NewRef(v[TS_MASK]));
    }
    Py_DECREF(n_o);
    if (newer)
        slot_set(tracker, at[TS_NEWEST_TS], newest_o);
    else
        Py_XDECREF(newest_o);
    slot_set(tracker, at[TS_SEEN], seen);
    slot_set(tracker, at[TS_HIGHEST], highest);
    slot_set(tracker, at[TS_RECEIVED], received);
    return 1;
error:
    Py_XDECREF(newest_o);
    Py_XDECREF(highest);
    Py_XDECREF(received);
    Py_XDECREF(seen);
    Py_XDECREF(n_o);
    return -1;
}

/* SequenceTracker.observe_run(first, count, boot, newest) (ganglion/sequence.py), its
 * steps done here, on the tracker's slots in place, for a tracker of exactly that class
 * whose slots are all set (`first` given both as a number and as the caller's int
 * object): 1 when the run simply continued the stream and was recorded, 0 when nothing
 * was done, -1 on error. */
static int
observe_run(Lane *lane, PyObject *tracker, uint64_t first, PyObject *first_o, Py_ssize_t count,
            PyObject *boot, uint64_t newest)
{
    const Py_ssize_t *at = lane->tracker_slots;
    PyObject *v[TS_COUNT];
    int slots = (PyObject *)Py_TYPE(tracker) == lane->tracker_cls && at[0] > 0;
    for (int i = 0; slots && i < TS_COUNT; i++)
        slots = (v[i] = slot_get(tracker, at[i])) != NULL;
    if (slots) {
        /* Held while it works (comparing and adding may run Python code). */
        for (int i = 0; i < TS_COUNT; i++)
            Py_INCREF(v[i]);
        int rc = observe_in_place(tracker, at, v, first, first_o, count, boot, newest);
        for (int i = 0; i < TS_COUNT; i++)
            Py_DECREF(v[i]);
        return rc;
    }
    PyObject *n_o = PyLong_FromSsize_t(count), *newest_o = PyLong_FromUnsignedLongLong(newest);
    PyObject *r = NULL;
    if (n_o != NULL && newest_o != NULL) {
        PyObject *args[5] = {tracker, first_o, n_o, boot, newest_o};
        r = PyObject_VectorcallMethod(s_observe_run, args, 5 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                      NULL);
    }
    Py_XDECREF(n_o);
    Py_XDECREF(newest_o);
    Py_XDECREF(r);
    return r == NULL ? -1 : r == Py_True;
}

/* Hand `msg` to every subscriber of the entry's type: Incoming._hand_out. */
static int
hand_out(Lane *lane, PyObject *entry, PyObject *msg, PyObject *seq, PyObject *ts,
         PyObject *received_ns, PyObject *source)
{
    PyObject *type_name = PyTuple_GET_ITEM(entry, E_TYPE);
    PyObject *info = NULL, *targets = NULL;
    int rc = -1;
    /* tuple.__new__(MessageInfo, fields), as Incoming's _new_info: the instance made as
     * tuple's __new__ makes it (tp_alloc), its fields put in place. */
    PyObject *fields[INFO_FIELDS] = {type_name, PyTuple_GET_ITEM(entry, E_NODE), seq, ts, received_ns,
                            PyTuple_GET_ITEM(entry, E_BOOT), Py_False, source,
                            PyTuple_GET_ITEM(entry, E_SYNCED), Py_False,
                            PyTuple_GET_ITEM(entry, E_REPLAYED),
                            PyTuple_GET_ITEM(entry, E_FINGERPRINT), Py_False};
    PyTypeObject *info_type = (PyTypeObject *)lane->info_cls;
    if (!(info = info_type->tp_alloc(info_type, INFO_FIELDS)))
        goto done;
    for (Py_ssize_t i = 0; i < INFO_FIELDS; i++)
        PyTuple_SET_ITEM(info, i, Py_NewRef(fields[i]));
    if (attr_add(lane->incoming, s_received, one) < 0)
        goto done;
    PyObject *subs = PyDict_GetItemWithError(lane->subs, type_name); /* borrowed */
    if (subs == NULL) {
        rc = PyErr_Occurred() ? -1 : 0;
        goto done;
    }
    /* Iterated over a copy: a callback may subscribe or unsubscribe. One (a list of
     * one, the common case) is its own copy. */
    if (PyList_CheckExact(subs) && PyList_GET_SIZE(subs) == 1) {
        PyObject *sub = Py_NewRef(PyList_GET_ITEM(subs, 0));
        rc = deliver_to(lane, sub, msg, info);
        Py_DECREF(sub);
        goto done;
    }
    if (!(targets = PySequence_Tuple(subs)))
        goto done;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(targets); i++)
        if (deliver_to(lane, PyTuple_GET_ITEM(targets, i), msg, info) < 0)
            goto done;
    rc = 0;
done:
    Py_XDECREF(info);
    Py_XDECREF(targets);
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
    PyObject *first = NULL, *received_ns = NULL;
    int rc = -1;
    if (!(first = PyLong_FromUnsignedLongLong(first_v)))
        goto done;
    PyObject *current = PyDict_GetItemWithError(lane->by_name, type_name); /* borrowed */
    if (current == NULL && PyErr_Occurred())
        goto done;
    if (PyTuple_GET_ITEM(entry, E_KNOWN) != current || !PyTuple_CheckExact(plan)
        || PyTuple_GET_SIZE(plan) != PLAN_SIZE
        || PyTuple_GET_SIZE(PyTuple_GET_ITEM(plan, 1)) > PLAN_MAX_FIELDS) {
        rc = deliver_py(lane, stream, first, d, count, tss, starts, sizes, source);
        goto done;
    }
    if (!(received_ns = PyLong_FromUnsignedLongLong(realtime_ns())))
        goto done;
    uint64_t newest = tss[0];
    for (Py_ssize_t i = 1; i < count; i++)
        if (tss[i] > newest)
            newest = tss[i];
    int ok = observe_run(lane, tracker, first_v, first, count, PyTuple_GET_ITEM(entry, E_BOOT),
                         newest);
    if (ok < 0)
        goto done;
    if (!ok) {
        /* Not a simple continuation (nothing was recorded): the Python path judges each. */
        rc = deliver_py(lane, stream, first, d, count, tss, starts, sizes, source);
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *values[PLAN_MAX_FIELDS];
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
    Py_XDECREF(received_ns);
    return rc;
}

/* Incoming.on_datagram's short path for one datagram in `d`: 1 when it was handled
 * (delivered, or nothing to do), 0 when on_datagram must have it, -1 on error. */
static int
lane_datagram(Lane *lane, const unsigned char *d, Py_ssize_t n, PyObject *source)
{
    if (n <= NAME_LEN_AT || NAME_AT + d[NAME_LEN_AT] > n)
        return 0;
    /* The stream's key: the header up to the type name. The last one made is used again
     * while datagrams keep its bytes (with its hash already computed). */
    Py_ssize_t klen = NAME_AT + d[NAME_LEN_AT];
    PyObject *key = lane->last_key;
    if (key == NULL || PyBytes_GET_SIZE(key) != klen || memcmp(PyBytes_AS_STRING(key), d, klen)) {
        if (!(key = PyBytes_FromStringAndSize((const char *)d, klen)))
            return -1;
        Py_XSETREF(lane->last_key, key);
    }
    PyObject *entry = PyDict_GetItemWithError(lane->lanes, key); /* borrowed */
    if (entry == NULL)
        return PyErr_Occurred() ? -1 : 0; /* not a stream the lane takes: Python's */
    if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != E_SIZE) {
        PyErr_SetString(PyExc_TypeError, "a lane entry is not a tuple of its fields");
        return -1;
    }
    Py_INCREF(entry); /* a callback may clear the lanes */
    int rc = -1;
    PyObject *raw = NULL, *clear = NULL;
    PyObject *pos_o = PyTuple_GET_ITEM(entry, E_POS), *open = PyTuple_GET_ITEM(entry, E_OPEN);
    Py_ssize_t pos = PyLong_AsSsize_t(pos_o);
    uint64_t first = 0, tss[LANE_BATCH];
    Py_ssize_t starts[LANE_BATCH], sizes[LANE_BATCH], count;
    if (pos < 0) {
        rc = PyErr_Occurred() ? -1 : 0;
        goto done;
    }
    if (open != Py_None) {
        /* A keyed stream: verified (and decrypted) once per datagram, as on_datagram
         * does, before anything past the header is read. What comes out is the datagram
         * as an unsigned one would be, read below exactly as one. */
        if (!(raw = PyBytes_FromStringAndSize((const char *)d, n)))
            goto done;
        PyObject *oargs[4] = {raw, pos_o, PyTuple_GET_ITEM(entry, E_NODE),
                              PyTuple_GET_ITEM(entry, E_NAME)};
        if (!(clear = PyObject_Vectorcall(open, oargs, 4, NULL)))
            goto done;
        if (clear == Py_None) {
            /* Refused (a bad MAC or tag, an unknown key id, too short): the full decoder
             * says why and counts it, as on_datagram does, without opening it again. */
            PyObject *args[3] = {lane->incoming, raw, source};
            PyObject *r = PyObject_VectorcallMethod(s_on_new, args,
                                                    3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
            Py_XDECREF(r);
            rc = r == NULL ? -1 : 1;
            goto done;
        }
        if (!PyBytes_CheckExact(clear)) {
            PyErr_SetString(PyExc_TypeError, "a lane's opener must return bytes or None");
            goto done;
        }
        d = (const unsigned char *)PyBytes_AS_STRING(clear);
        n = PyBytes_GET_SIZE(clear);
    }
    if (!(count = read_batch(d, pos, n, &first, tss, starts, sizes))) {
        if (clear == NULL) {
            rc = 0;
            goto done;
        }
        /* Opened, but a batch the lane does not read: on_datagram's steps after opening,
         * on the clear datagram (the raw one for the full decoder if it refuses it). */
        PyObject *end = PyLong_FromSsize_t(n);
        if (end == NULL)
            goto done;
        PyObject *args[6] = {lane->incoming, PyTuple_GET_ITEM(entry, E_STREAM), clear, end, raw,
                             source};
        PyObject *r = PyObject_VectorcallMethod(s_on_known, args,
                                                6 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        Py_DECREF(end);
        Py_XDECREF(r);
        rc = r == NULL ? -1 : 1;
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
    rc = deliver_batch(lane, entry, d, first, count, tss, starts, sizes, source) < 0 ? -1 : 1;
done:
    Py_XDECREF(raw);
    Py_XDECREF(clear);
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
    PyObject *exc = take_exception();
    PyObject *r = PyObject_CallFunction(report, "sO", kind, exc ? exc : Py_None);
    Py_XDECREF(exc);
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

const char drain_doc[] = PyDoc_STR(
"drain(fd, slot, limit, buffer, lane, on_datagram, on_run, now, report, counts, max_size,\n"
"      ifindex)\n--\n\n"
"Read the socket `fd` until EAGAIN or `limit` datagrams, as MulticastReceiver._drain:\n"
"each datagram to the lane (a Lane or None) and otherwise on_datagram(data, source,\n"
"now); a coalesced run datagram by datagram the same way with a lane, whole to\n"
"on_run(data, size, source, now) without one. `buffer` is a bytearray\n"
"of 65536 bytes; now() is called once, when a callback first needs it. Errors go to\n"
"report(kind, detail) with kind 'receive' (an OSError), 'truncated' (the length) or\n"
"'callback' (the exception). `counts` (a list) gets datagrams, bytes, drains,\n"
"max_seen, full_drains and coalesced added. A datagram (or a run's segment) larger\n"
"than `max_size` bytes is dropped and reported as 'oversize' (its length). With `ifindex`\n"
"not 0, a datagram whose IP_PKTINFO names another arrival interface is dropped first and\n"
"reported as 'wrong_interface' (that interface's index).");

PyObject *
drain(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (check_nargs("drain", nargs, 12) < 0)
        return NULL;
    int fd = (int)PyLong_AsLong(args[0]);
    PyObject *slot = args[1];
    Py_ssize_t limit = PyLong_AsSsize_t(args[2]);
    PyObject *buffer = args[3], *lane_o = args[4], *on_datagram = args[5], *on_run = args[6],
             *now_fn = args[7], *report = args[8], *counts = args[9];
    Py_ssize_t max_size = PyLong_AsSsize_t(args[10]);
    int ifindex = (int)PyLong_AsLong(args[11]);
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
    long long count = 0, nbytes = 0, coalesced = 0, skipped = 0; /* skipped: dropped unread */
    union {
        char buf[CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(struct in_pktinfo))];
        struct cmsghdr align;
    } control;
    while (count + skipped < limit) {
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
        int size = 0, arrived = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
            if (c->cmsg_level == SOL_UDP_ && c->cmsg_type == UDP_GRO_
                && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
                memcpy(&size, CMSG_DATA(c), sizeof size);
            }
            else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO
                     && c->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
                struct in_pktinfo info;
                memcpy(&info, CMSG_DATA(c), sizeof info);
                arrived = info.ipi_ifindex;
            }
        }
        if (ifindex != 0 && arrived != 0 && arrived != ifindex) {
            /* Arrived on another interface (a unicast to the port there): not ours. */
            skipped += 1;
            PyObject *r = PyObject_CallFunction(report, "si", "wrong_interface", arrived);
            if (r == NULL)
                goto error;
            Py_DECREF(r);
            continue;
        }
        if (mh.msg_flags & MSG_TRUNC) {
            /* Larger than any datagram; nothing of it can be trusted. */
            skipped += 1;
            PyObject *r = PyObject_CallFunction(report, "sn", "truncated", (Py_ssize_t)n);
            if (r == NULL)
                goto error;
            Py_DECREF(r);
            continue;
        }
        if ((size > 0 && size < n ? size : n) > max_size) {
            /* Above the configured budget: no valid sender makes it (a forged or
             * fragmented one), so it is dropped before any decoding. */
            skipped += 1;
            PyObject *r = PyObject_CallFunction(report, "sn", "oversize", (Py_ssize_t)n);
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
        if (!handled && !run
            && to_python(on_datagram, d, n, source, now_fn, &now, report) < 0) {
            Py_DECREF(source);
            goto error;
        }
        if (!handled && run) {
            /* No lane: the run goes whole to on_run, as the Python drain hands it. */
            PyObject *data = PyBytes_FromStringAndSize((const char *)d, n);
            PyObject *sz = PyLong_FromLong(size), *r = NULL;
            if (data != NULL && sz != NULL
                && (now != NULL || (now = PyObject_CallNoArgs(now_fn)) != NULL)) {
                PyObject *cargs[4] = {data, sz, source, now};
                r = PyObject_Vectorcall(on_run, cargs, 4, NULL);
            }
            Py_XDECREF(data);
            Py_XDECREF(sz);
            if (r == NULL && report_exception(report, "run") < 0) {
                Py_DECREF(source);
                goto error;
            }
            Py_XDECREF(r);
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
