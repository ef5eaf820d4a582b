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
    *s_newest_ts, *s_seen, *s_mask, *s_busy, *s_on_new, *s_on_known;

static PyMethodDef methods[] = {
    {"drain", (PyCFunction)(void (*)(void))drain, METH_FASTCALL, drain_doc},
    {"send_lone", (PyCFunction)(void (*)(void))send_lone, METH_FASTCALL, send_lone_doc},
    {"batch_add", (PyCFunction)(void (*)(void))batch_add, METH_FASTCALL, batch_add_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "ganglion._speedups",
    PyDoc_STR("The common cases of publish and receive, compiled (see ganglion/_c/)."), -1,
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
    INTERN(s_deliver_batch_py, "_deliver");
    INTERN(s_decode_slow, "_decode_slow");
    INTERN(s_received, "received");
    INTERN(s_queue, "_queue");
    INTERN(s_sock, "_sock");
    INTERN(s_seal, "_seal");
    INTERN(s_count, "count");
    INTERN(s_seq_attr, "_seq");
    INTERN(s_prefix, "_prefix");
    INTERN(s_limit, "_limit");
    INTERN(s_next_seq, "next_seq");
    INTERN(s_prev, "_prev");
    INTERN(s_size, "_size");
    INTERN(s_body, "_body");
    INTERN(s_closed_attr, "_closed");
    INTERN(s_callback, "_callback");
    INTERN(s_delivered, "delivered");
    INTERN(s_callback_failed, "_callback_failed");
    INTERN(s_boot, "_boot");
    INTERN(s_resync, "_resync");
    INTERN(s_highest, "_highest");
    INTERN(s_newest_ts, "_newest_ts");
    INTERN(s_seen, "_seen");
    INTERN(s_mask, "_mask");
    INTERN(s_busy, "busy");
    INTERN(s_on_new, "_on_new");
    INTERN(s_on_known, "_on_known");
    if (!(one = PyLong_FromLong(1)))
        return NULL;
    if (PyType_Ready(&LaneType) < 0 || PyType_Ready(&SendLaneType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Lane", (PyObject *)&LaneType) < 0
        || PyModule_AddObjectRef(m, "SendLane", (PyObject *)&SendLaneType) < 0
        || PyModule_AddIntConstant(m, "ABI", SPEEDUPS_ABI) < 0
        || PyModule_AddIntConstant(m, "RECV_SIZE", RECV_SIZE) < 0
        || PyModule_AddIntConstant(m, "MAX_BATCH", MAX_BATCH) < 0
        || PyModule_AddIntConstant(m, "HEAD_MAX", HEAD_MAX) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
