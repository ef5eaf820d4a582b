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
 * of a known stream (Incoming._lanes, ganglion/runtime/_incoming.py), a lone message
 * being a batch of one, and delivers it as Incoming._deliver does. A keyed stream's
 * datagram is first handed to the stream's opener (a Python callable: the MAC checked,
 * or the datagram decrypted, once per datagram); what it returns in clear is read as
 * an unsigned datagram, and a refusal goes to Incoming._on_new, which counts it.
 * Besides the header, the payloads and the hand-out, it does the steps of three small Python
 * methods itself, for objects of exactly their class (else it calls them): the
 * sequence step (SequenceTracker.observe_run), a plain dataclass's generated __init__
 * (_decodegen.construction says when) and Subscription.deliver to a callback. So no
 * Python frame runs before the subscriber's callback; everything else is the same
 * Python methods Incoming._deliver calls.
 * The payload is parsed with the stream's *plan* (ganglion/types/_decodegen.py,
 * native_plan), which reads a subset of what the generated decoder reads and gives
 * the same values; anything else is left to the Python methods, unchanged.
 *
 * send_lone() is the other direction, for Endpoint.publish while idle: it encodes a
 * message with its type's plan (a subset of what the generated encoder writes, to the
 * same bytes), builds the lone datagram as Packer.build_one does (a keyed packer's in
 * clear, then signed or encrypted by the packer's _seal), sends it and yields
 * the CPU (Outgoing's YIELD_CPU, done before any Python runs), or does nothing at all
 * and lets the Python path do everything. batch_add() is publish under
 * load: the message encoded the same way straight into the datagram being filled, as
 * Packer.add appends it, or nothing at all. A SendLane (one per Route of an endpoint's
 * Publisher, ganglion/runtime/_publishing.py) is what Publisher.publish calls first on a
 * route that sends: it takes the endpoint's next number for the
 * type, then does send_lone's or batch_add's work with the destination, the socket's
 * descriptor and the packer's slots resolved once, so that only a few lines of Python
 * run before the send.
 *
 * Where an object's class keeps an attribute in a slot (__slots__: SequenceTracker,
 * Packer), it is read and written in place at the offset its member descriptor gives,
 * resolved once per class (slot_offset); anything else is reached by name.
 *
 * Nothing here decides anything the Python path does not: every refusal falls back
 * to the Python path on the same bytes, so the two give the same deliveries, datagrams,
 * counts and errors (tests/runtime/test_speedups.py compares them).
 */
#include "speedups.h"

PyObject *one;
PyObject *s_closed, *s_deliver_batch_py, *s_observe_run, *s_deliver,
    *s_decode_slow, *s_received, *s_queue, *s_sock, *s_seal, *s_count, *s_seq_attr,
    *s_prefix, *s_limit, *s_next_seq, *s_prev, *s_size, *s_body, *s_closed_attr,
    *s_callback, *s_delivered, *s_callback_failed, *s_boot, *s_resync, *s_highest,
    *s_newest_ts, *s_seen, *s_mask, *s_busy, *s_on_new, *s_on_known, *s_fields;

/* Every attribute the extension reads or calls by name, with the class that must have
 * it ("module:Class"). The names are interned from this table, and it is exported as
 * NAMES, so that tests/runtime/test_speedups_guard.py checks each one against the
 * Python class: a renamed attribute then fails a test instead of sending a path
 * quietly back to Python (or to an AttributeError at run time). A name two classes
 * share has a row for each. */
#define INCOMING "ganglion.runtime._incoming:Incoming"
#define TRACKER "ganglion.sequence:SequenceTracker"
#define SUBSCRIPTION "ganglion.runtime.subscription:Subscription"
#define PACKER "ganglion.wire._packer:Packer"
#define SENDER "ganglion.runtime._sender:MulticastSender"
#define OUTGOING "ganglion.runtime._outgoing:Outgoing"
#define SLOT "ganglion.runtime.transport:_Slot"
static const struct {
    PyObject **var;
    const char *text;
    const char *owner;
} names[] = {
    {&s_closed, "closed", SLOT},
    {&s_deliver_batch_py, "_deliver", INCOMING},
    {&s_decode_slow, "_decode_slow", INCOMING},
    {&s_received, "received", INCOMING},
    {&s_on_new, "_on_new", INCOMING},
    {&s_on_known, "_on_known", INCOMING},
    {&s_observe_run, "observe_run", TRACKER},
    {&s_boot, "_boot", TRACKER},
    {&s_highest, "_highest", TRACKER},
    {&s_resync, "_resync", TRACKER},
    {&s_newest_ts, "_newest_ts", TRACKER},
    {&s_seen, "_seen", TRACKER},
    {&s_mask, "_mask", TRACKER},
    {&s_received, "received", TRACKER},
    {&s_deliver, "deliver", SUBSCRIPTION},
    {&s_closed_attr, "_closed", SUBSCRIPTION},
    {&s_callback, "_callback", SUBSCRIPTION},
    {&s_delivered, "delivered", SUBSCRIPTION},
    {&s_callback_failed, "_callback_failed", SUBSCRIPTION},
    {&s_queue, "_queue", SENDER},
    {&s_sock, "_sock", SENDER},
    {&s_busy, "busy", OUTGOING},
    {&s_seal, "_seal", PACKER},
    {&s_count, "count", PACKER},
    {&s_seq_attr, "_seq", PACKER},
    {&s_next_seq, "next_seq", PACKER},
    {&s_limit, "_limit", PACKER},
    {&s_prefix, "_prefix", PACKER},
    {&s_prev, "_prev", PACKER},
    {&s_size, "_size", PACKER},
    {&s_body, "_body", PACKER},
    {&s_fields, "_fields", "ganglion.runtime.subscription:MessageInfo"},
};
#define N_NAMES ((Py_ssize_t)(sizeof names / sizeof names[0]))

/* NAMES: ((owner, name), ...), from the table above. */
static PyObject *
names_tuple(void)
{
    PyObject *t = PyTuple_New(N_NAMES);
    for (Py_ssize_t i = 0; t != NULL && i < N_NAMES; i++) {
        PyObject *row = Py_BuildValue("(sO)", names[i].owner, *names[i].var);
        if (row == NULL)
            Py_CLEAR(t);
        else
            PyTuple_SET_ITEM(t, i, row);
    }
    return t;
}

static PyMethodDef methods[] = {
    {"drain", (PyCFunction)(void (*)(void))drain, METH_FASTCALL, drain_doc},
    {"send_lone", (PyCFunction)(void (*)(void))send_lone, METH_FASTCALL, send_lone_doc},
    {"batch_add", (PyCFunction)(void (*)(void))batch_add, METH_FASTCALL, batch_add_doc},
    {"plan_decode", (PyCFunction)(void (*)(void))plan_decode, METH_FASTCALL, plan_decode_doc},
    {"plan_encode", (PyCFunction)(void (*)(void))plan_encode, METH_FASTCALL, plan_encode_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "ganglion._speedups",
    .m_doc = PyDoc_STR("The common cases of publish and receive, compiled (see ganglion/_c/)."),
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    for (Py_ssize_t i = 0; i < N_NAMES; i++)
        if (*names[i].var == NULL && !(*names[i].var = PyUnicode_InternFromString(names[i].text)))
            return NULL;
    if (!(one = PyLong_FromLong(1)))
        return NULL;
    if (PyType_Ready(&LaneType) < 0 || PyType_Ready(&SendLaneType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module), *table = NULL;
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Lane", (PyObject *)&LaneType) < 0
        || PyModule_AddObjectRef(m, "SendLane", (PyObject *)&SendLaneType) < 0
        || PyModule_AddIntConstant(m, "ABI", SPEEDUPS_ABI) < 0
        || PyModule_AddIntConstant(m, "RECV_SIZE", RECV_SIZE) < 0
        || PyModule_AddIntConstant(m, "MAX_BATCH", MAX_BATCH) < 0
        || PyModule_AddIntConstant(m, "HEAD_MAX", HEAD_MAX) < 0
        || (table = names_tuple()) == NULL
        || PyModule_AddObjectRef(m, "NAMES", table) < 0) {
        Py_XDECREF(table);
        Py_DECREF(m);
        return NULL;
    }
    Py_DECREF(table);
    return m;
}
