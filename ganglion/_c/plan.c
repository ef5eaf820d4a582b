/*
 * ganglion._speedups, the payload plan: small readers, and a type's plan read and
 * written (a subset of what the generated decoder reads and the generated encoder
 * writes, ganglion/types/_decodegen.py and _codegen.py, with the same values and
 * bytes).
 */
#include "speedups.h"

#include <structmember.h>

#include <math.h>
#include <string.h>

/* ---- small readers ------------------------------------------------------------ */


/* The argument of a CBOR head at p (additional info < 24 or 24..27); -1 if unread. */
int
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
int
attr_true(PyObject *obj, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    int t = PyObject_IsTrue(v);
    Py_DECREF(v);
    return t;
}

/* The offset of `name` in instances of `cls` when it is an object slot that __slots__
 * made (a writable member descriptor of type T_OBJECT_EX), so that it can be read and
 * written in place with slot_get and slot_set; 0 when it is anything else. */
Py_ssize_t
slot_offset(PyObject *cls, PyObject *name)
{
    PyObject *d = PyObject_GetAttr(cls, name);
    if (d == NULL) {
        PyErr_Clear();
        return 0;
    }
    Py_ssize_t off = 0;
    if (Py_IS_TYPE(d, &PyMemberDescr_Type)
        && PyType_IsSubtype((PyTypeObject *)cls, PyDescr_TYPE(d))) {
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        if (m->type == T_OBJECT_EX && !(m->flags & READONLY) && m->offset > 0)
            off = m->offset;
    }
    Py_DECREF(d);
    return off;
}

/* The offsets of `names` (each a pointer to an interned name) in instances of `cls`, as
 * slot_offset gives them, into `out`: 1 when every one is a slot, else 0 with `out` all
 * 0 (then they are all read by name). */
int
slot_offsets(PyObject *cls, PyObject **const *names, int n, Py_ssize_t *out)
{
    int all = 1;
    for (int i = 0; i < n; i++)
        all &= (out[i] = slot_offset(cls, *names[i])) > 0;
    if (!all)
        memset(out, 0, sizeof *out * (size_t)n);
    return all;
}

/* {name: offset} of `names` as slot_offsets resolved them into `offsets` (0: read by
 * name), for the lanes' getters that let tests see what was resolved. */
PyObject *
slots_dict(PyObject **const *names, int n, const Py_ssize_t *offsets)
{
    PyObject *d = PyDict_New();
    for (int i = 0; d != NULL && i < n; i++) {
        PyObject *off = PyLong_FromSsize_t(offsets[i]);
        if (off == NULL || PyDict_SetItem(d, *names[i], off) < 0)
            Py_CLEAR(d);
        Py_XDECREF(off);
    }
    return d;
}

/* Compare the int `v` with `x`: -1, 0 or 1 as it is smaller, equal or larger; -2 with
 * an error set if it is not an int. */
int
compare_u64(PyObject *v, uint64_t x)
{
    if (!PyLong_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "an int was expected");
        return -2;
    }
    int overflow;
    long long s = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (s == -1 && PyErr_Occurred())
        return -2;
    if (overflow < 0 || (!overflow && s < 0))
        return -1;
    uint64_t u;
    if (overflow) {
        u = PyLong_AsUnsignedLongLong(v);
        if (u == (uint64_t)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 1; /* past 2**64 */
        }
    }
    else
        u = (uint64_t)s;
    return u < x ? -1 : u > x;
}

/* ---- the payload plan ----------------------------------------------------------- */

/* Parse a payload with `plan` = (cls, heads, kinds, npos, kwnames) into `values` (new
 * references, `*nvalues` of them; the caller releases them). Returns 1 when the plan
 * reads these bytes, 0 when it does not (the Python path then decides; no error set),
 * -1 on an unexpected error (set). */
int
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

/* The message from parsed values, as cls(v0, .., vk-1, name_k=vk, ..) builds it. For a
 * dataclass whose __init__ is the generated one and does nothing else (the plan's
 * construction, _decodegen.construction), what that __init__ does is done here with no
 * Python frame: object.__new__(cls), then each field set in order, through the class's
 * __setattr__ (SET) or object.__setattr__ (SET_FROZEN, as a frozen dataclass's does). */
PyObject *
build(PyObject *plan, PyObject **values, Py_ssize_t n)
{
    PyObject *cls = PyTuple_GET_ITEM(plan, 0);
    long how = PyLong_AsLong(PyTuple_GET_ITEM(plan, 6));
    if (how == -1 && PyErr_Occurred())
        return NULL;
    PyObject *names = PyTuple_GET_ITEM(plan, 5);
    if ((how == BUILD_SET || how == BUILD_SET_FROZEN) && PyType_Check(cls)
        && PyTuple_GET_SIZE(names) == n) {
        PyTypeObject *tp = (PyTypeObject *)cls;
        PyObject *noargs = PyTuple_New(0);
        PyObject *obj = noargs == NULL ? NULL : tp->tp_new(tp, noargs, NULL);
        Py_XDECREF(noargs);
        for (Py_ssize_t i = 0; obj != NULL && i < n; i++) {
            PyObject *name = PyTuple_GET_ITEM(names, i);
            if ((how == BUILD_SET ? PyObject_SetAttr(obj, name, values[i])
                                  : PyObject_GenericSetAttr(obj, name, values[i])) < 0)
                Py_CLEAR(obj);
        }
        return obj;
    }
    Py_ssize_t npos = PyLong_AsSsize_t(PyTuple_GET_ITEM(plan, 3));
    PyObject *kwnames = PyTuple_GET_ITEM(plan, 4);
    if (npos < 0 && PyErr_Occurred())
        return NULL;
    return PyObject_Vectorcall(cls, values, (size_t)npos,
                               PyTuple_GET_SIZE(kwnames) ? kwnames : NULL);
}

/* Append the shortest CBOR head of `major` with argument `v` at `b`; its length. */
Py_ssize_t
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
int
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

/* ---- the plan from Python: the same readers, one payload at a time ---------------- */

/* 0 when `plan` has the shape _decodegen.native_plan gives every plan (what the readers
 * and writers index without checking); -1 with TypeError naming `fn` if not. */
int
check_plan(const char *fn, PyObject *plan)
{
    if (!PyTuple_CheckExact(plan) || PyTuple_GET_SIZE(plan) != PLAN_SIZE)
        goto bad;
    PyObject *heads = PyTuple_GET_ITEM(plan, 1), *kinds = PyTuple_GET_ITEM(plan, 2),
             *kwnames = PyTuple_GET_ITEM(plan, 4), *names = PyTuple_GET_ITEM(plan, 5);
    if (!PyTuple_CheckExact(heads) || !PyBytes_CheckExact(kinds) || !PyTuple_CheckExact(kwnames)
        || !PyTuple_CheckExact(names) || !PyLong_CheckExact(PyTuple_GET_ITEM(plan, 3))
        || !PyLong_CheckExact(PyTuple_GET_ITEM(plan, 6)))
        goto bad;
    Py_ssize_t n = PyTuple_GET_SIZE(heads);
    if (n > PLAN_MAX_FIELDS || PyBytes_GET_SIZE(kinds) != n || PyTuple_GET_SIZE(names) != n
        || PyTuple_GET_SIZE(kwnames) > n)
        goto bad;
    for (Py_ssize_t i = 0; i < n; i++)
        if (!PyBytes_CheckExact(PyTuple_GET_ITEM(heads, i))
            || !PyUnicode_CheckExact(PyTuple_GET_ITEM(names, i)))
            goto bad;
    return 0;
bad:
    PyErr_Format(PyExc_TypeError, "%s: not a plan", fn);
    return -1;
}

const char plan_decode_doc[] = PyDoc_STR(
"plan_decode(plan, payload)\n--\n\n"
"The message the receive lane builds from `payload` with `plan` (the same reader and\n"
"the same construction), or None where the lane leaves the payload to the Python\n"
"decoders. An exception the class raises is raised.");

PyObject *
plan_decode(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (check_nargs("plan_decode", nargs, 2) < 0 || check_plan("plan_decode", args[0]) < 0)
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *values[PLAN_MAX_FIELDS], *msg = NULL;
    Py_ssize_t n = 0;
    int parsed = parse_plan(args[0], view.buf, view.len, values, &n);
    if (parsed > 0)
        msg = build(args[0], values, n);
    for (Py_ssize_t i = 0; i < n; i++)
        Py_DECREF(values[i]);
    PyBuffer_Release(&view);
    if (parsed == 0)
        Py_RETURN_NONE;
    return msg;
}

const char plan_encode_doc[] = PyDoc_STR(
"plan_encode(plan, msg)\n--\n\n"
"The payload the send lanes write for `msg` with `plan` (the generated encoder's bytes),\n"
"or None where they leave the message to the Python encoders.");

PyObject *
plan_encode(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (check_nargs("plan_encode", nargs, 2) < 0 || check_plan("plan_encode", args[0]) < 0)
        return NULL;
    unsigned char buf[SEND_BUF];
    Py_ssize_t n;
    int enc = encode_plan(args[0], args[1], buf, sizeof buf, &n);
    if (enc <= 0)
        return enc < 0 ? NULL : Py_NewRef(Py_None);
    return PyBytes_FromStringAndSize((const char *)buf, n);
}

/* Read attribute `name` of `obj` as a non-negative integer that fits `*out`. */
int
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
