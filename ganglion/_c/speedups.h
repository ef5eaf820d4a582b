/*
 * What the parts of ganglion._speedups share (see module.c for what the extension is).
 */
#ifndef GANGLION_SPEEDUPS_H
#define GANGLION_SPEEDUPS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <time.h>

/* Bumped whenever the Python side's expectations change; checked at import. */
#define SPEEDUPS_ABI 13

/* Wire format v1 (ganglion/wire). */
#define RECV_SIZE 65536 /* a read buffer no datagram overflows */
#define NAME_LEN_AT 24
#define NAME_AT 25
#define LONE_SIZE 20 /* a batch header of one message, its delta and length's first byte */
#define MAX_BATCH 0xFFFF /* most messages in one datagram */
#define HEAD_MAX 4 /* the longest per-message head: a two-byte delta and length */
#define SOL_UDP_ 17
#define UDP_GRO_ 104

/* The largest datagram the send lanes build (on the stack); larger ones go Python's way. */
#define SEND_BUF 2048

/* A plan: (cls, heads, kinds, npos, kwnames, names, construction);
 * _decodegen.native_plan. */
#define PLAN_SIZE 7
#define PLAN_MAX_FIELDS 64 /* _decodegen.PLAN_MAX_FIELDS */
/* How a plan builds its instance (_decodegen.CALL, SET, SET_FROZEN). */
enum { BUILD_CALL = 0, BUILD_SET = 1, BUILD_SET_FROZEN = 2 };
/* Field kinds of a plan (the order of _decodegen.PLAN_KINDS). */
enum { K_INT = 0, K_FLOAT = 1, K_BOOL = 2, K_STR = 3, K_BYTES = 4 };

/* Interned attribute and method names, and the int 1 (module.c makes them). */
extern PyObject *one;
extern PyObject *s_closed, *s_deliver_batch_py, *s_observe_run, *s_deliver,
    *s_decode_slow, *s_received, *s_queue, *s_sock, *s_seal, *s_count, *s_seq_attr,
    *s_prefix, *s_limit, *s_next_seq, *s_prev, *s_size, *s_body, *s_closed_attr,
    *s_callback, *s_delivered, *s_callback_failed, *s_boot, *s_resync, *s_highest,
    *s_newest_ts, *s_seen, *s_mask, *s_busy, *s_on_new, *s_on_known, *s_fields;

/* The fields of a MessageInfo, as the lane builds one (receive.c, hand_out). */
#define INFO_FIELDS 13

/* The slots of a SequenceTracker that the lane's observe_run uses (Lane.tracker_slots). */
enum { TS_BOOT, TS_HIGHEST, TS_RESYNC, TS_NEWEST_TS, TS_SEEN, TS_MASK, TS_RECEIVED, TS_COUNT };

typedef struct {
    PyObject_HEAD
    PyObject *incoming;   /* the Incoming: its _deliver_one, _decode_slow, received */
    PyObject *lanes;      /* Incoming._lanes: header bytes -> lane entry (a dict, never replaced) */
    PyObject *subs;       /* the endpoint's subscribers per type name (dict) */
    PyObject *by_name;    /* the registry's dict of types by name */
    PyObject *info_cls;   /* MessageInfo */
    PyObject *fallback;   /* _decodegen.FALLBACK */
    PyObject *sub_cls;    /* Subscription: its deliver() is done here for a callback */
    PyObject *tracker_cls; /* SequenceTracker: its observe_run() is done here */
    /* Where tracker_cls keeps each TS_ slot (slot_offsets); all 0 if it does not. */
    Py_ssize_t tracker_slots[TS_COUNT];
    PyObject *last_key;   /* the last stream key looked up in `lanes` (bytes), or NULL */
} Lane;

extern PyTypeObject LaneType, SendLaneType;

/* time.time_ns() */
static inline uint64_t
realtime_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static inline uint64_t
be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* 0 when a METH_FASTCALL function `name` got `want` arguments; -1 with TypeError if not. */
static inline int
check_nargs(const char *name, Py_ssize_t nargs, Py_ssize_t want)
{
    if (nargs == want)
        return 0;
    PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", name, want, nargs);
    return -1;
}

/* plan.c: small readers and the payload plan, both ways. */
int head_arg(const unsigned char *d, Py_ssize_t *p, Py_ssize_t end, uint64_t *out);
int attr_true(PyObject *obj, PyObject *name);
int attr_u64(PyObject *obj, PyObject *name, uint64_t *out);
Py_ssize_t slot_offset(PyObject *cls, PyObject *name);
int slot_offsets(PyObject *cls, PyObject **const *names, int n, Py_ssize_t *out);
PyObject *slots_dict(PyObject **const *names, int n, const Py_ssize_t *offsets);
int compare_u64(PyObject *v, uint64_t x);

/* The object in the slot at `offset` of `obj` (borrowed; NULL while unset). */
static inline PyObject *
slot_get(PyObject *obj, Py_ssize_t offset)
{
    return *(PyObject **)((char *)obj + offset);
}

/* Put `value` (a reference given away) in the slot at `offset` of `obj`. */
static inline void
slot_set(PyObject *obj, Py_ssize_t offset, PyObject *value)
{
    Py_XSETREF(*(PyObject **)((char *)obj + offset), value);
}
int check_plan(const char *fn, PyObject *plan);
int parse_plan(PyObject *plan, const unsigned char *d, Py_ssize_t end, PyObject **values,
               Py_ssize_t *nvalues);
PyObject *build(PyObject *plan, PyObject **values, Py_ssize_t n);
Py_ssize_t put_head(unsigned char *b, int major, uint64_t v);
int encode_plan(PyObject *plan, PyObject *msg, unsigned char *b, Py_ssize_t cap, Py_ssize_t *n);

/* receive.c, send.c: the module's functions. */
PyObject *drain(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs);
PyObject *send_lone(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs);
PyObject *batch_add(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs);
PyObject *plan_decode(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs);
PyObject *plan_encode(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs);
extern const char drain_doc[], send_lone_doc[], batch_add_doc[], plan_decode_doc[],
    plan_encode_doc[];

#endif
