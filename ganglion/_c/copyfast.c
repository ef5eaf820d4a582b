/*
 * ganglion._copyfast: the forwarder's batch encoder, compiled (optional).
 *
 * Theory of operation: the forwarder (ganglion/forward/forwarder.py) sends each batch
 * of readings to PostgreSQL as one binary COPY stream. In Python the log renders the
 * tuples itself (ganglion/forward/pgcopy.py: SQLite's printf and hex, then
 * bytes.fromhex), some 2.5 microseconds a reading, as much CPU as the server's whole
 * work on it. Here a Reader steps the plain row query (pgcopy.READ_ROWS) on a
 * read-only connection of its own and writes each row's binary COPY tuple straight
 * into one buffer, the GIL released: no value becomes a Python object or a hex digit.
 * SQLite is not linked: load() opens the very library the sqlite3 module loaded (its
 * path comes from /proc/self/maps) and resolves the few functions used, so building
 * needs neither SQLite's headers nor its package.
 *
 * The bytes are exactly what pgcopy.payload() makes of pgcopy.SELECT_TUPLES (the
 * Python path stays the reference; tests/forward/test_copy_fast.py compares the two
 * byte for byte). A batch with a value the Python path renders but this one is not
 * sure of (a NULL or a value of another storage class where the log has an integer or
 * a text) is left whole to the Python path: read() returns None.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

#define COPYFAST_ABI 1
#define COLUMNS 12
#define S_OK 0
#define S_ROW 100
#define S_DONE 101
#define S_INTEGER 1
#define S_TEXT 3
#define S_NULL 5
#define S_OPEN_READONLY 0x00000001
#define S_OPEN_URI 0x00000040
#define S_OPEN_NOMUTEX 0x00008000
/* 2000-01-01 (PostgreSQL's epoch) in microseconds since 1970-01-01. */
#define PG_EPOCH_US 946684800000000LL
/* A tuple's bytes besides its texts: the field count, 14 lengths, five int64, the
 * jsonb version byte, five booleans. */
#define FIXED (2 + 14 * 4 + 5 * 8 + 1 + 5)

typedef struct s_db s_db;
typedef struct s_stmt s_stmt;

static int (*s_open)(const char *, s_db **, int, const char *);
static int (*s_close)(s_db *);
static int (*s_prepare)(s_db *, const char *, int, s_stmt **, const char **);
static int (*s_bind_int64)(s_stmt *, int, long long);
static int (*s_step)(s_stmt *);
static int (*s_reset)(s_stmt *);
static int (*s_finalize)(s_stmt *);
static int (*s_column_count)(s_stmt *);
static int (*s_column_type)(s_stmt *, int);
static long long (*s_column_int64)(s_stmt *, int);
static const unsigned char *(*s_column_text)(s_stmt *, int);
static int (*s_column_bytes)(s_stmt *, int);
static const char *(*s_errmsg)(s_db *);
static int (*s_busy_timeout)(s_db *, int);
static int loaded;

static PyObject *load(PyObject *Py_UNUSED(self), PyObject *arg)
{
    const char *path = PyUnicode_AsUTF8(arg);
    if (path == NULL)
        return NULL;
    /* RTLD_NOLOAD: only the copy the sqlite3 module already loaded, never a second one. */
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (h == NULL) {
        PyErr_Format(PyExc_OSError, "SQLite %s is not loaded in this process", path);
        return NULL;
    }
#define SYM(var, name) \
    if ((*(void **)&var = dlsym(h, name)) == NULL) { \
        PyErr_Format(PyExc_OSError, "SQLite %s has no %s", path, name); \
        return NULL; \
    }
    SYM(s_open, "sqlite3_open_v2")
    SYM(s_close, "sqlite3_close_v2")
    SYM(s_prepare, "sqlite3_prepare_v2")
    SYM(s_bind_int64, "sqlite3_bind_int64")
    SYM(s_step, "sqlite3_step")
    SYM(s_reset, "sqlite3_reset")
    SYM(s_finalize, "sqlite3_finalize")
    SYM(s_column_count, "sqlite3_column_count")
    SYM(s_column_type, "sqlite3_column_type")
    SYM(s_column_int64, "sqlite3_column_int64")
    SYM(s_column_text, "sqlite3_column_text")
    SYM(s_column_bytes, "sqlite3_column_bytes")
    SYM(s_errmsg, "sqlite3_errmsg")
    SYM(s_busy_timeout, "sqlite3_busy_timeout")
#undef SYM
    loaded = 1;
    Py_RETURN_NONE;
}

/* ---- the output buffer (raw allocator: used with the GIL released) ------------- */

typedef struct {
    unsigned char *data;
    size_t len, cap;
} buffer;

static int reserve(buffer *b, size_t more)
{
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 1 << 16;
    while (cap < b->len + more)
        cap *= 2;
    unsigned char *grown = PyMem_RawRealloc(b->data, cap);
    if (grown == NULL)
        return -1;
    b->data = grown;
    b->cap = cap;
    return 0;
}

static inline unsigned char *put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
    return p + 4;
}

static inline unsigned char *put_int8(unsigned char *p, int64_t v)
{
    uint64_t u = (uint64_t)v;
    p = put32(p, 8);
    p = put32(p, (uint32_t)(u >> 32));
    return put32(p, (uint32_t)u);
}

static inline unsigned char *put_bool(unsigned char *p, int v)
{
    p = put32(p, 1);
    *p = (unsigned char)(v != 0);
    return p + 1;
}

/* ---- Reader ------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    s_db *db;
    s_stmt *stmt;
    buffer out;
    int busy;
} Reader;

static void reader_close_handles(Reader *self)
{
    if (self->stmt != NULL) {
        s_finalize(self->stmt);
        self->stmt = NULL;
    }
    if (self->db != NULL) {
        s_close(self->db);
        self->db = NULL;
    }
}

static int reader_init(Reader *self, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"uri", "sql", "busy_ms", NULL};
    const char *uri, *sql;
    int busy_ms = 5000;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "ss|i", keywords, &uri, &sql, &busy_ms))
        return -1;
    if (!loaded) {
        PyErr_SetString(PyExc_RuntimeError, "ganglion._copyfast: load() SQLite first");
        return -1;
    }
    reader_close_handles(self);
    int rc = s_open(uri, &self->db, S_OPEN_READONLY | S_OPEN_URI | S_OPEN_NOMUTEX, NULL);
    if (rc == S_OK) {
        s_busy_timeout(self->db, busy_ms);
        rc = s_prepare(self->db, sql, -1, &self->stmt, NULL);
    }
    if (rc != S_OK || self->stmt == NULL) {
        PyErr_Format(PyExc_OSError, "cannot read %s: %s", uri,
                     self->db != NULL ? s_errmsg(self->db) : "out of memory");
        reader_close_handles(self);
        return -1;
    }
    if (s_column_count(self->stmt) != COLUMNS) {
        PyErr_Format(PyExc_ValueError, "the query gives %d columns, not %d",
                     s_column_count(self->stmt), COLUMNS);
        reader_close_handles(self);
        return -1;
    }
    return 0;
}

static void reader_dealloc(Reader *self)
{
    reader_close_handles(self);
    PyMem_RawFree(self->out.data);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* What one read did, with the GIL released. */
enum outcome { DONE, UNSURE, FAILED, NOMEM };

/* A batch's senders: node id -> first and last receive time (open addressing). */
typedef struct {
    int64_t id, first, last;
    int used;
} sender;

typedef struct {
    const int64_t *skip;
    Py_ssize_t nskip;
    int64_t *types;      /* the type ids encoded, each once */
    Py_ssize_t ntypes, captypes;
    sender *nodes;
    size_t nnodes, capnodes;  /* capnodes: a power of two, or 0 */
    Py_ssize_t rows, encoded;
    int64_t last_id;
} batch;

static size_t slot(const sender *table, size_t cap, int64_t id)
{
    size_t i = ((uint64_t)id * 0x9E3779B97F4A7C15ull) >> 32;
    for (i &= cap - 1; table[i].used && table[i].id != id; i = (i + 1) & (cap - 1))
        ;
    return i;
}

/* Count a reading of node ``id`` received at ``received``. */
static int saw(batch *bt, int64_t id, int64_t received)
{
    if (2 * (bt->nnodes + 1) > bt->capnodes) {
        size_t cap = bt->capnodes ? bt->capnodes * 2 : 64;
        sender *grown = PyMem_RawCalloc(cap, sizeof(sender));
        if (grown == NULL)
            return -1;
        for (size_t i = 0; i < bt->capnodes; i++)
            if (bt->nodes[i].used)
                grown[slot(grown, cap, bt->nodes[i].id)] = bt->nodes[i];
        PyMem_RawFree(bt->nodes);
        bt->nodes = grown;
        bt->capnodes = cap;
    }
    sender *s = &bt->nodes[slot(bt->nodes, bt->capnodes, id)];
    if (!s->used) {
        s->used = 1;
        s->id = id;
        s->first = s->last = received;
        bt->nnodes++;
    } else if (received < s->first) {
        s->first = received;
    } else if (received > s->last) {
        s->last = received;
    }
    return 0;
}

static int in(const int64_t *ids, Py_ssize_t n, int64_t id)
{
    for (Py_ssize_t i = 0; i < n; i++)
        if (ids[i] == id)
            return 1;
    return 0;
}

/* Columns of pgcopy.READ_ROWS: id, type_id, type name, node, seq, sent_ns, received_ns,
 * data, boot, fingerprint, flags, node_id. */
static enum outcome encode_rows(Reader *self, batch *bt)
{
    s_stmt *st = self->stmt;
    buffer *b = &self->out;
    int rc;
    while ((rc = s_step(st)) == S_ROW) {
        for (int c = 0; c < COLUMNS; c++) {
            int t = s_column_type(st, c);
            int want = (c == 2 || c == 3 || c == 7 || c == 9) ? S_TEXT : S_INTEGER;
            if (t != want && !(c == 9 && t == S_NULL))
                return UNSURE;
        }
        bt->rows++;
        bt->last_id = s_column_int64(st, 0);
        int64_t type_id = s_column_int64(st, 1);
        if (bt->nskip && in(bt->skip, bt->nskip, type_id))
            continue;
        if (!in(bt->types, bt->ntypes, type_id)) {
            if (bt->ntypes == bt->captypes) {
                Py_ssize_t cap = bt->captypes ? bt->captypes * 2 : 16;
                int64_t *grown = PyMem_RawRealloc(bt->types, (size_t)cap * sizeof(int64_t));
                if (grown == NULL)
                    return NOMEM;
                bt->types = grown;
                bt->captypes = cap;
            }
            bt->types[bt->ntypes++] = type_id;
        }
        const unsigned char *name = s_column_text(st, 2);
        size_t name_len = (size_t)s_column_bytes(st, 2);
        const unsigned char *node = s_column_text(st, 3);
        size_t node_len = (size_t)s_column_bytes(st, 3);
        const unsigned char *data = s_column_text(st, 7);
        size_t data_len = (size_t)s_column_bytes(st, 7);
        const unsigned char *fp = NULL;
        size_t fp_len = 0;
        int has_fp = s_column_type(st, 9) == S_TEXT;
        if (has_fp) {
            fp = s_column_text(st, 9);
            fp_len = (size_t)s_column_bytes(st, 9);
        }
        if (name == NULL || node == NULL || data == NULL || (has_fp && fp == NULL))
            return NOMEM;
        if (data_len >= INT32_MAX)
            return UNSURE;
        int64_t sent = s_column_int64(st, 5);
        if (saw(bt, s_column_int64(st, 11), s_column_int64(st, 6)) < 0)
            return NOMEM;
        uint64_t flags = (uint64_t)s_column_int64(st, 10);
        if (reserve(b, FIXED + name_len + node_len + data_len + fp_len) < 0)
            return NOMEM;
        unsigned char *p = b->data + b->len;
        *p++ = 0;
        *p++ = 14;
        /* sent_ns / 1000 truncates toward zero in C as in SQLite */
        p = put_int8(p, sent / 1000 - PG_EPOCH_US);
        p = put32(p, (uint32_t)name_len);
        memcpy(p, name, name_len);
        p += name_len;
        p = put32(p, (uint32_t)node_len);
        memcpy(p, node, node_len);
        p += node_len;
        p = put_int8(p, s_column_int64(st, 4));
        p = put_int8(p, sent);
        p = put_int8(p, s_column_int64(st, 6));
        p = put32(p, (uint32_t)data_len + 1);
        *p++ = 1;
        memcpy(p, data, data_len);
        p += data_len;
        p = put_int8(p, s_column_int64(st, 8));
        if (!has_fp) {
            p = put32(p, 0xffffffffu);  /* NULL */
        } else {
            p = put32(p, (uint32_t)fp_len);
            memcpy(p, fp, fp_len);
            p += fp_len;
        }
        p = put_bool(p, flags & 1);            /* last_value */
        p = put_bool(p, flags & 2);            /* replayed */
        p = put_bool(p, !(flags & 4));         /* clock_synced: 4 is "not synced" */
        p = put_bool(p, flags & 8);            /* local */
        p = put_bool(p, flags & 16);           /* repaired */
        b->len = (size_t)(p - b->data);
        bt->encoded++;
    }
    return rc == S_DONE ? DONE : FAILED;
}

static const unsigned char SIGNATURE[19] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r',
                                            '\n', 0, 0, 0, 0, 0, 0, 0, 0, 0};

PyDoc_STRVAR(read_doc,
"read(after, limit, skip) -> (data, rows, encoded, last_id, type_ids, nodes) | None\n\n"
"Encode the rows after samples.id ``after`` (at most ``limit``), leaving out those\n"
"whose type id is in ``skip``: the binary COPY stream of the encoded rows (b'' when\n"
"none), the rows read, the rows encoded, the id read through (``after`` when none),\n"
"the type ids encoded, and ``(node id, first, last received_ns)`` of their senders.\n"
"None: a row the compiled path is not sure of (use the Python path).");

static PyObject *reader_read(Reader *self, PyObject *args)
{
    long long after, limit;
    PyObject *skip_arg;
    if (!PyArg_ParseTuple(args, "LLO", &after, &limit, &skip_arg))
        return NULL;
    if (self->stmt == NULL) {
        PyErr_SetString(PyExc_ValueError, "the reader is closed");
        return NULL;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the reader is in use by another thread");
        return NULL;
    }
    PyObject *skip_seq = PySequence_Fast(skip_arg, "skip must be an iterable of type ids");
    if (skip_seq == NULL)
        return NULL;
    Py_ssize_t nskip = PySequence_Fast_GET_SIZE(skip_seq);
    int64_t *skip = PyMem_Malloc((size_t)(nskip ? nskip : 1) * sizeof(int64_t));
    if (skip == NULL) {
        Py_DECREF(skip_seq);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < nskip; i++) {
        skip[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(skip_seq, i));
        if (skip[i] == -1 && PyErr_Occurred()) {
            PyMem_Free(skip);
            Py_DECREF(skip_seq);
            return NULL;
        }
    }
    Py_DECREF(skip_seq);

    batch bt = {skip, nskip, NULL, 0, 0, NULL, 0, 0, 0, 0, after};
    enum outcome outcome;
    self->busy = 1;
    self->out.len = 0;
    Py_BEGIN_ALLOW_THREADS
    s_bind_int64(self->stmt, 1, after);
    s_bind_int64(self->stmt, 2, limit);
    if (reserve(&self->out, sizeof SIGNATURE) < 0) {
        outcome = NOMEM;
    } else {
        memcpy(self->out.data, SIGNATURE, sizeof SIGNATURE);
        self->out.len = sizeof SIGNATURE;
        outcome = encode_rows(self, &bt);
        if (outcome == DONE && reserve(&self->out, 2) < 0)
            outcome = NOMEM;
    }
    Py_END_ALLOW_THREADS
    PyObject *result = NULL;
    if (outcome == FAILED)
        PyErr_Format(PyExc_OSError, "cannot read the log: %s", s_errmsg(self->db));
    s_reset(self->stmt);  /* ends the read transaction: the writer may checkpoint */
    self->busy = 0;
    PyMem_Free(skip);
    if (outcome == NOMEM) {
        PyErr_NoMemory();
    } else if (outcome == UNSURE) {
        result = Py_NewRef(Py_None);
    } else if (outcome == DONE) {
        PyObject *data, *types = PyList_New(bt.ntypes), *nodes = PyList_New(0);
        if (bt.encoded) {
            self->out.data[self->out.len++] = 0xff;  /* the trailer: a field count of -1 */
            self->out.data[self->out.len++] = 0xff;
            data = PyBytes_FromStringAndSize((const char *)self->out.data,
                                             (Py_ssize_t)self->out.len);
        } else {
            data = PyBytes_FromStringAndSize(NULL, 0);
        }
        for (Py_ssize_t i = 0; types != NULL && i < bt.ntypes; i++) {
            PyObject *id = PyLong_FromLongLong(bt.types[i]);
            if (id == NULL)
                Py_CLEAR(types);
            else
                PyList_SET_ITEM(types, i, id);
        }
        for (size_t i = 0; nodes != NULL && i < bt.capnodes; i++) {
            if (!bt.nodes[i].used)
                continue;
            PyObject *node = Py_BuildValue("(LLL)", (long long)bt.nodes[i].id,
                                           (long long)bt.nodes[i].first,
                                           (long long)bt.nodes[i].last);
            if (node == NULL || PyList_Append(nodes, node) < 0)
                Py_CLEAR(nodes);
            Py_XDECREF(node);
        }
        if (data != NULL && types != NULL && nodes != NULL)
            result = Py_BuildValue("(NnnLNN)", data, bt.rows, bt.encoded,
                                   (long long)bt.last_id, types, nodes);
        else {
            Py_XDECREF(data);
            Py_XDECREF(types);
            Py_XDECREF(nodes);
        }
    }
    PyMem_RawFree(bt.types);
    PyMem_RawFree(bt.nodes);
    if (self->out.cap > ((size_t)64 << 20)) {  /* one huge batch does not keep its memory */
        PyMem_RawFree(self->out.data);
        self->out.data = NULL;
        self->out.cap = self->out.len = 0;
    }
    return result;
}

static PyObject *reader_close(Reader *self, PyObject *Py_UNUSED(ignored))
{
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the reader is in use by another thread");
        return NULL;
    }
    reader_close_handles(self);
    Py_RETURN_NONE;
}

static PyMethodDef reader_methods[] = {
    {"read", (PyCFunction)reader_read, METH_VARARGS, read_doc},
    {"close", (PyCFunction)reader_close, METH_NOARGS, "Close the connection."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ganglion._copyfast.Reader",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = PyDoc_STR("Reader(uri, sql, busy_ms=5000): a log read-only, and its row query."),
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)reader_init,
    .tp_dealloc = (destructor)reader_dealloc,
    .tp_methods = reader_methods,
};

static PyMethodDef functions[] = {
    {"load", load, METH_O, "Resolve SQLite's functions in the library at this path."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "ganglion._copyfast",
    "The forwarder's binary COPY encoder (see ganglion/forward/_copy_accel.py).", -1,
    functions, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__copyfast(void)
{
    if (PyType_Ready(&ReaderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "ABI", COPYFAST_ABI) < 0
        || PyModule_AddObjectRef(m, "Reader", (PyObject *)&ReaderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
