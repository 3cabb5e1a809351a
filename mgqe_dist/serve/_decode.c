/* Served-embedding decode for the codebook (MGQE/DPQ) and scalar-quantized (SQ) tables.
 *
 * The torch path of serve/tables.py decodes a batch in three passes over temporaries (gather
 * the codes, add the group offsets, gather the centroids); this is one pass: per id, read its
 * row of codes (one cache line at 64 byte-wide codes, against four for a float row) and write
 * the centroid values straight into the output. Code rows are first copied a block of ids
 * at a time, so the random reads of the code matrix overlap as they do in a row gather.
 *
 * Both functions map ids outside [0, n) to the OOV row n - 1, as ServingTable.known does, and
 * refuse a code that points outside the centroid table (a corrupt table) instead of reading
 * past it. Built by the install step (setup.py); tables.py falls back to torch ops (same
 * values, bit for bit) without it. Compiled with -ffp-contract=off: SQ's multiply and add
 * round separately, as torch's do.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* How many ids' code rows are gathered (gather_rows) before they are decoded. */
#define BLOCK_IDS 256

/* On x86-64, run_bytes is also compiled for AVX2 (its gathers vectorise there) and the loader
 * picks the version the CPU supports. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define AVX2_CLONE __attribute__((target_clones("avx2", "default")))
#else
#define AVX2_CLONE
#endif

static int64_t known_id(int64_t id, int64_t n) { return id >= 0 && id < n ? id : n - 1; }

static int64_t code_at(const char *row, Py_ssize_t g, Py_ssize_t code_size) {
    switch (code_size) {
    case 1: return ((const uint8_t *)row)[g];
    case 2: return ((const int16_t *)row)[g];
    default: return ((const int32_t *)row)[g];
    }
}

typedef struct {
    const char *codes;
    const int64_t *ids, *first;
    const float *centroids;
    const int32_t *offsets, *book_base;
    float *out;
    Py_ssize_t n, batch, groups, width, code_size, rows, tiers;
} Codebook;

/* The centroid-table base of an id's codes: its tier's book offset (separate books only). */
static int64_t book_of(const Codebook *t, int64_t id) {
    if (t->book_base == NULL) return 0;
    Py_ssize_t tier = 0;
    while (tier + 1 < t->tiers && t->first[tier + 1] <= id) tier++;
    return t->book_base[tier];
}

/* Copy the code rows of ids [start, stop) into block: a tight loop of row copies keeps many
 * reads of the (large, randomly read) code matrix in flight at once, where decoding id by id
 * waited for each row in turn. */
static void gather_rows(uint8_t *block, const uint8_t *codes, const int64_t *ids,
                        Py_ssize_t start, Py_ssize_t stop, Py_ssize_t row_bytes, int64_t n) {
    for (Py_ssize_t b = start; b < stop; b++)
        memcpy(block + (b - start) * row_bytes, codes + known_id(ids[b], n) * row_bytes,
               row_bytes);
}

/* The common case, byte codes and one dim per group, with no bounds check per code: the
 * caller checked that every byte value stays inside the table. */
AVX2_CLONE static void run_bytes(const Codebook *t, uint8_t *block) {
    const Py_ssize_t groups = t->groups;
    const uint8_t *codes = (const uint8_t *)t->codes;
    for (Py_ssize_t start = 0; start < t->batch; start += BLOCK_IDS) {
        const Py_ssize_t stop = start + BLOCK_IDS < t->batch ? start + BLOCK_IDS : t->batch;
        gather_rows(block, codes, t->ids, start, stop, groups, t->n);
        for (Py_ssize_t b = start; b < stop; b++) {
            const float *centroids = t->centroids + book_of(t, known_id(t->ids[b], t->n));
            const uint8_t *row = block + (b - start) * groups;
            float *out = t->out + b * groups;
            for (Py_ssize_t g = 0; g < groups; g++) out[g] = centroids[t->offsets[g] + row[g]];
        }
    }
}

/* Any code width and group width, every index checked. Returns 0, or -1 when a code points
 * outside the centroid table. */
static int run_general(const Codebook *t, uint8_t *block) {
    const Py_ssize_t row_bytes = t->groups * t->code_size, dim = t->groups * t->width;
    for (Py_ssize_t start = 0; start < t->batch; start += BLOCK_IDS) {
        const Py_ssize_t stop = start + BLOCK_IDS < t->batch ? start + BLOCK_IDS : t->batch;
        gather_rows(block, (const uint8_t *)t->codes, t->ids, start, stop, row_bytes, t->n);
        for (Py_ssize_t b = start; b < stop; b++) {
            const int64_t base = book_of(t, known_id(t->ids[b], t->n));
            const char *row = (const char *)block + (b - start) * row_bytes;
            float *out = t->out + b * dim;
            for (Py_ssize_t g = 0; g < t->groups; g++) {
                const int64_t index = base + t->offsets[g] + code_at(row, g, t->code_size);
                if (index < 0 || index >= t->rows) return -1;
                memcpy(out + g * t->width, t->centroids + index * t->width,
                       t->width * sizeof(float));
            }
        }
    }
    return 0;
}

/* Whether every byte code of every book stays inside the table, so run_bytes needs no check. */
static int bytes_fit(const Codebook *t) {
    int64_t top = 0;
    for (Py_ssize_t g = 0; g < t->groups; g++) {
        if (t->offsets[g] < 0) return 0;
        if (t->offsets[g] > top) top = t->offsets[g];
    }
    int64_t book = 0;
    for (Py_ssize_t i = 0; t->book_base != NULL && i < t->tiers; i++) {
        if (t->book_base[i] < 0) return 0;
        if (t->book_base[i] > book) book = t->book_base[i];
    }
    return book + top + UINT8_MAX < t->rows;
}

/* Returns 0, -1 for a code outside the table, -2 when out of memory. */
static int run_codebook(const Codebook *t) {
    uint8_t *block = malloc(BLOCK_IDS * t->groups * t->code_size);
    if (block == NULL) return -2;
    int failed = 0;
    if (t->code_size == 1 && t->width == 1 && bytes_fit(t))
        run_bytes(t, block);
    else
        failed = run_general(t, block);
    free(block);
    return failed;
}

static int sized(const Py_buffer *buffer, Py_ssize_t count, Py_ssize_t item) {
    return buffer->len == count * item;
}

static PyObject *codebook(PyObject *self, PyObject *args) {
    Py_buffer codes, ids, centroids, offsets, book_base, first, out;
    Codebook t = {0};
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*w*nnn", &codes, &ids, &centroids, &offsets,
                          &book_base, &first, &out, &t.n, &t.width, &t.code_size))
        return NULL;
    PyObject *result = NULL;
    t.batch = ids.len / (Py_ssize_t)sizeof(int64_t);
    t.tiers = first.len / (Py_ssize_t)sizeof(int64_t);
    t.groups = offsets.len / (Py_ssize_t)sizeof(int32_t);
    t.rows = t.width > 0 ? centroids.len / (Py_ssize_t)sizeof(float) / t.width : 0;
    if (t.n < 1 || t.width < 1 || t.tiers < 1 || t.groups < 1
        || !(t.code_size == 1 || t.code_size == 2 || t.code_size == 4)
        || !sized(&codes, t.n * t.groups, t.code_size)
        || !(book_base.len == 0 || sized(&book_base, t.tiers, sizeof(int32_t)))
        || !sized(&out, t.batch * t.groups * t.width, sizeof(float))) {
        PyErr_SetString(PyExc_ValueError, "codebook: buffer sizes do not match the shape");
        goto done;
    }
    t.codes = codes.buf;
    t.ids = ids.buf;
    t.centroids = centroids.buf;
    t.offsets = offsets.buf;
    t.book_base = book_base.len ? book_base.buf : NULL;
    t.first = first.buf;
    t.out = out.buf;
    int failed;
    Py_BEGIN_ALLOW_THREADS
    failed = run_codebook(&t);
    Py_END_ALLOW_THREADS
    if (failed == -2)
        PyErr_NoMemory();
    else if (failed)
        PyErr_SetString(PyExc_ValueError,
                        "codebook: a stored code points outside the centroid table");
    else
        result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&codes);
    PyBuffer_Release(&ids);
    PyBuffer_Release(&centroids);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&book_base);
    PyBuffer_Release(&first);
    PyBuffer_Release(&out);
    return result;
}

AVX2_CLONE static void run_scalar(const uint8_t *codes, const int64_t *ids, const float *step,
                                  const float *minimum, float *out, Py_ssize_t n,
                                  Py_ssize_t batch, Py_ssize_t dim, uint8_t *block) {
    for (Py_ssize_t start = 0; start < batch; start += BLOCK_IDS) {
        const Py_ssize_t stop = start + BLOCK_IDS < batch ? start + BLOCK_IDS : batch;
        gather_rows(block, codes, ids, start, stop, dim, n);
        for (Py_ssize_t b = start; b < stop; b++) {
            const uint8_t *row = block + (b - start) * dim;
            float *values = out + b * dim;
            for (Py_ssize_t j = 0; j < dim; j++)
                values[j] = (float)row[j] * step[j] + minimum[j];
        }
    }
}

static PyObject *scalar(PyObject *self, PyObject *args) {
    Py_buffer codes, ids, step, minimum, out;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*n", &codes, &ids, &step, &minimum, &out, &n))
        return NULL;
    PyObject *result = NULL;
    const Py_ssize_t batch = ids.len / (Py_ssize_t)sizeof(int64_t);
    const Py_ssize_t dim = step.len / (Py_ssize_t)sizeof(float);
    if (n < 1 || dim < 1 || !sized(&codes, n * dim, 1) || !sized(&minimum, dim, sizeof(float))
        || !sized(&out, batch * dim, sizeof(float))) {
        PyErr_SetString(PyExc_ValueError, "scalar: buffer sizes do not match the shape");
        goto done;
    }
    uint8_t *block = malloc(BLOCK_IDS * dim);
    if (block == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    run_scalar(codes.buf, ids.buf, step.buf, minimum.buf, out.buf, n, batch, dim, block);
    Py_END_ALLOW_THREADS
    free(block);
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&codes);
    PyBuffer_Release(&ids);
    PyBuffer_Release(&step);
    PyBuffer_Release(&minimum);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"codebook", codebook, METH_VARARGS,
     "codebook(codes, ids, centroids, offsets, book_base, first, out, n, width, code_size): "
     "fills out with the centroid rows of each id's codes (see the module comment)."},
    {"scalar", scalar, METH_VARARGS,
     "scalar(codes, ids, step, minimum, out, n): out = code * step + minimum per id row."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_decode", NULL, -1, methods};

PyMODINIT_FUNC PyInit__decode(void) { return PyModule_Create(&module); }
