/* Nearest-centroid assignment for MGQE/DPQ on CPU, with the statistics the centroid loss needs.
 *
 * For rows x (n, dims, width) and codebooks book (dims, k, width), float32: codes[i, j] = the
 * centroid of book[j] nearest to x[i, j], chosen[i, j] = its value, and per centroid the summed
 * weight (counts) and weighted sum (sums) of the rows assigned to it. With those the loss and
 * its gradient need no per-value scatter (see _centroid_loss in mgqe.py). The loops run
 * subspace by subspace (one subspace's search tables stay in L1) over row-major arrays: a
 * subspace-major layout ran no faster here once the transposes around it were counted.
 *
 * - width 1 (the paper's D = d): sort each subspace's centroids and locate every value among
 *   the midpoints of neighbours through a uniform grid, O(1) per value for spread centroids.
 *   torch's sort, searchsorted and gathers cost about 100 ns per value here; this about 10.
 * - width > 1 (variable D's tail): sort the centroids by their first coordinate and search
 *   outwards from the value's place until that coordinate alone is farther than the best
 *   distance: about sqrt(k) distances in 2 dimensions instead of k.
 *
 * One thread: split between two, it ran slower, against torch's OpenMP threads spinning after
 * each parallel region. mgqe.py uses this when the install step built it and falls back to
 * torch ops otherwise (same codes).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Bins per midpoint of the lookup grid, and the most midpoints one bin may hold before a
 * subspace falls back to binary search. */
#define BINS_PER_MIDPOINT 4
#define MAX_PER_BIN 8

typedef struct {
    const float *x, *book, *weight;
    int64_t *codes;
    float *chosen, *counts, *sums;
    Py_ssize_t n, dims, k, width;
    double error;
    int failed;
} Job;

/* Order-preserving map of a float's bits to an unsigned key (negatives reversed). */
static uint32_t sortable(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits & 0x80000000u ? ~bits : bits | 0x80000000u;
}

/* Sort one subspace's centroids: values ascending, ties by index (a stable LSD radix sort of
 * key << 32 | index), writing the sorted values and the centroid index of each. */
static void sort_centroids(const float *book, Py_ssize_t k, uint64_t *keys, uint64_t *tmp,
                           float *values, Py_ssize_t *order) {
    for (Py_ssize_t c = 0; c < k; c++) keys[c] = (uint64_t)sortable(book[c]) << 32 | (uint64_t)c;
    for (int shift = 32; shift < 64; shift += 8) {
        Py_ssize_t start[257] = {0};
        for (Py_ssize_t c = 0; c < k; c++) start[((keys[c] >> shift) & 0xff) + 1]++;
        for (int d = 0; d < 256; d++) start[d + 1] += start[d];
        for (Py_ssize_t c = 0; c < k; c++) tmp[start[(keys[c] >> shift) & 0xff]++] = keys[c];
        uint64_t *swap = keys;
        keys = tmp;
        tmp = swap;
    }
    /* An even number of passes: the sorted keys are back in `keys`. */
    for (Py_ssize_t c = 0; c < k; c++) {
        order[c] = (Py_ssize_t)(keys[c] & 0xffffffffu);
        values[c] = book[order[c]];
    }
}

/* The count of the first n sorted floats that are < v: a branchless lower bound, whose trip
 * count depends only on n, so it never mispredicts. */
static Py_ssize_t lower_bound(const float *sorted, Py_ssize_t n, float v) {
    const float *base = sorted;
    for (Py_ssize_t len = n; len > 1; len -= len / 2)
        base = base[len / 2] < v ? base + len / 2 : base;
    return (base - sorted) + (n > 0 && *base < v);
}

/* The bin of v among `bins` equal bins from lo. The map is monotone (float subtraction and
 * multiplication by a positive scale round monotonically), which is all the exactness of the
 * grid rests on: a midpoint in a lower bin is < v, one in a higher bin is > v. */
static Py_ssize_t bin_of(float v, float lo, float scale, Py_ssize_t bins) {
    const float position = (v - lo) * scale;
    if (!(position > 0)) return 0;
    return position >= (float)(bins - 1) ? bins - 1 : (Py_ssize_t)position;
}

/* slots[i] = the count of midpoints < x[i, j] (as searchsorted gives it; NaN goes past every
 * midpoint). A uniform grid gives each value the midpoints of its own bin, compared without
 * branches; a subspace whose midpoints crowd one bin is binary-searched instead. `mid` has
 * room for MAX_PER_BIN more floats. */
static void locate(const float *x, Py_ssize_t n, Py_ssize_t dims, Py_ssize_t j, float *mid,
                   Py_ssize_t num_mid, Py_ssize_t *grid, Py_ssize_t *slots) {
    const Py_ssize_t bins = BINS_PER_MIDPOINT * (num_mid + 1);
    Py_ssize_t finite = num_mid; /* the grid spans the finite midpoints */
    while (finite > 0 && mid[finite - 1] == INFINITY) finite--;
    const float lo = finite ? mid[0] : 0, hi = finite ? mid[finite - 1] : 0;
    const float scale = hi > lo ? (float)bins / (hi - lo) : 0;
    memset(grid, 0, (bins + 1) * sizeof *grid);
    for (Py_ssize_t c = 0; c < num_mid; c++) grid[bin_of(mid[c], lo, scale, bins) + 1]++;
    Py_ssize_t crowd = 0;
    for (Py_ssize_t b = 0; b < bins; b++) {
        crowd = grid[b + 1] > crowd ? grid[b + 1] : crowd;
        grid[b + 1] += grid[b];
    }
    for (Py_ssize_t c = num_mid; c < num_mid + MAX_PER_BIN; c++) mid[c] = INFINITY;
    for (Py_ssize_t i = 0; i < n; i++) {
        const float value = x[i * dims + j];
        Py_ssize_t slot;
        if (value != value) {
            slot = num_mid;
        } else if (crowd <= MAX_PER_BIN) {
            slot = grid[bin_of(value, lo, scale, bins)];
            const float *next = mid + slot;
            for (Py_ssize_t t = 0; t < crowd; t++) slot += next[t] < value;
        } else {
            slot = lower_bound(mid, num_mid, value);
        }
        slots[i] = slot;
    }
}

/* Record that row i's subspace j is assigned to centroid `code`; returns the row's weighted
 * squared error (the caller sums it locally: through job->error every add waited on the
 * last one's store). */
static double assign_one(const Job *job, Py_ssize_t i, Py_ssize_t j, Py_ssize_t code) {
    const Py_ssize_t width = job->width, at = (i * job->dims + j) * width;
    const Py_ssize_t centroid = j * job->k + code;
    const float *centre = job->book + centroid * width;
    const float w = job->weight[i];
    double error = 0;
    job->codes[i * job->dims + j] = code;
    job->counts[centroid] += w;
    for (Py_ssize_t t = 0; t < width; t++) {
        const float value = job->x[at + t], gap = value - centre[t];
        job->chosen[at + t] = centre[t];
        job->sums[centroid * width + t] += w * value;
        error += (double)w * gap * gap;
    }
    return error;
}

/* mid[c] = the midpoint of sorted values c and c + 1, where a value past it goes to c + 1.
 * Of equal values only the first (lowest index, as torch.argmin picks) may be reached: a
 * duplicate's midpoint is replaced by the next real one (+inf at the end), keeping mid sorted
 * and leaving the duplicate an empty range. */
static void midpoints(const float *values, Py_ssize_t k, float *mid) {
    for (Py_ssize_t c = k - 2; c >= 0; c--)
        mid[c] = values[c + 1] != values[c] ? (values[c] + values[c + 1]) / 2
                 : c + 2 < k              ? mid[c + 1]
                                          : INFINITY;
}

static void run_scalar(Job *job) {
    const Py_ssize_t k = job->k, n = job->n, grid_size = BINS_PER_MIDPOINT * k + 1;
    char *scratch = malloc(k * (2 * sizeof(uint64_t) + sizeof(Py_ssize_t) + 2 * sizeof(float))
                           + MAX_PER_BIN * sizeof(float) + (grid_size + n) * sizeof(Py_ssize_t));
    if (scratch == NULL) {
        job->failed = 1;
        return;
    }
    uint64_t *keys = (uint64_t *)scratch, *tmp = keys + k;
    Py_ssize_t *order = (Py_ssize_t *)(tmp + k), *grid = order + k, *slots = grid + grid_size;
    float *values = (float *)(slots + n), *mid = values + k;
    for (Py_ssize_t j = 0; j < job->dims; j++) {
        sort_centroids(job->book + j * k, k, keys, tmp, values, order);
        midpoints(values, k, mid);
        locate(job->x, n, job->dims, j, mid, k - 1, grid, slots);
        double error = 0;
        for (Py_ssize_t i = 0; i < n; i++) error += assign_one(job, i, j, order[slots[i]]);
        job->error += error;
    }
    free(scratch);
}

/* Squared distance between two width-long vectors, summed over t in order (as torch's
 * (x - c).pow(2).sum(-1)); in float the sum is never below its first term. */
static float distance(const float *value, const float *centre, Py_ssize_t width) {
    float total = 0;
    for (Py_ssize_t t = 0; t < width; t++) {
        const float gap = value[t] - centre[t];
        total += gap * gap;
    }
    return total;
}

/* torch.argmin over squared distances to all k centroids (book_j: k x width, row-major): the
 * first minimum, a NaN distance counting as smallest. For the rare rows or subspaces holding
 * a NaN. */
static Py_ssize_t nearest_brute(const float *value, const float *book_j, Py_ssize_t k,
                                Py_ssize_t width) {
    Py_ssize_t best = 0;
    float best_distance = distance(value, book_j, width);
    for (Py_ssize_t c = 1; c < k && best_distance == best_distance; c++) {
        const float d = distance(value, book_j + c * width, width);
        if (d < best_distance || d != d) {
            best = c;
            best_distance = d;
        }
    }
    return best;
}

/* The centroid nearest to `value` among a subspace's centroids sorted by their first
 * coordinate (first[c], rows[c * width + t], original index order[c]): start where value[0]
 * falls and widen to both sides while the first coordinate alone is no farther than the best
 * distance found (a centroid beyond cannot be nearer, nor tie). Ties go to the lowest
 * original index, as torch.argmin does. For spread centroids in 2 dimensions this examines
 * about sqrt(k) centroids instead of k. */
static Py_ssize_t nearest_sorted(const float *value, const float *first, const float *rows,
                                 const Py_ssize_t *order, Py_ssize_t k, Py_ssize_t width) {
    Py_ssize_t up = lower_bound(first, k, value[0]), down = up - 1;
    Py_ssize_t best = k;
    float best_distance = INFINITY;
    while (down >= 0 || up < k) {
        const float below = down >= 0 ? (value[0] - first[down]) * (value[0] - first[down])
                                       : INFINITY;
        const float above = up < k ? (value[0] - first[up]) * (value[0] - first[up]) : INFINITY;
        const int take_up = up < k && (down < 0 || above <= below);
        const float gap = take_up ? above : below;
        if (gap > best_distance) break;
        const Py_ssize_t c = take_up ? up++ : down--;
        const float d = distance(value, rows + c * width, width);
        if (d < best_distance || (d == best_distance && order[c] < best)) {
            best_distance = d;
            best = order[c];
        }
    }
    return best;
}

static int has_nan(const float *values, Py_ssize_t count) {
    for (Py_ssize_t c = 0; c < count; c++)
        if (values[c] != values[c]) return 1;
    return 0;
}

static void run_dense(Job *job) {
    const Py_ssize_t k = job->k, width = job->width;
    char *scratch =
        malloc(k * (2 * sizeof(uint64_t) + sizeof(Py_ssize_t) + (width + 2) * sizeof(float)));
    if (scratch == NULL) {
        job->failed = 1;
        return;
    }
    uint64_t *keys = (uint64_t *)scratch, *tmp = keys + k;
    Py_ssize_t *order = (Py_ssize_t *)(tmp + k);
    float *first = (float *)(order + k), *column = first + k, *rows = column + k;
    for (Py_ssize_t j = 0; j < job->dims; j++) {
        const float *book_j = job->book + j * k * width;
        for (Py_ssize_t c = 0; c < k; c++) column[c] = book_j[c * width];
        sort_centroids(column, k, keys, tmp, first, order);
        for (Py_ssize_t c = 0; c < k; c++)
            memcpy(rows + c * width, book_j + order[c] * width, width * sizeof(float));
        const int broken = has_nan(book_j, k * width);
        double error = 0;
        for (Py_ssize_t i = 0; i < job->n; i++) {
            const float *value = job->x + (i * job->dims + j) * width;
            const Py_ssize_t code = broken || has_nan(value, width)
                                        ? nearest_brute(value, book_j, k, width)
                                        : nearest_sorted(value, first, rows, order, k, width);
            error += assign_one(job, i, j, code);
        }
        job->error += error;
    }
    free(scratch);
}

static int sizes_match(const Py_buffer *buffer, Py_ssize_t count, size_t item) {
    return buffer->len == (Py_ssize_t)(count * item);
}

static PyObject *assign(PyObject *self, PyObject *args) {
    Py_buffer x, book, weight, codes, chosen, counts, sums;
    Job job = {0};
    if (!PyArg_ParseTuple(args, "y*y*y*w*w*w*w*nnnn", &x, &book, &weight, &codes, &chosen,
                          &counts, &sums, &job.n, &job.dims, &job.k, &job.width))
        return NULL;
    PyObject *result = NULL;
    const Py_ssize_t n = job.n, dims = job.dims, k = job.k, width = job.width;
    if (n < 0 || dims < 1 || k < 1 || width < 1
        || !sizes_match(&x, n * dims * width, sizeof(float))
        || !sizes_match(&book, dims * k * width, sizeof(float))
        || !sizes_match(&weight, n, sizeof(float))
        || !sizes_match(&codes, n * dims, sizeof(int64_t))
        || !sizes_match(&chosen, n * dims * width, sizeof(float))
        || !sizes_match(&counts, dims * k, sizeof(float))
        || !sizes_match(&sums, dims * k * width, sizeof(float))) {
        PyErr_SetString(PyExc_ValueError, "assign: buffer sizes do not match the shape");
        goto done;
    }
    job.x = x.buf;
    job.book = book.buf;
    job.weight = weight.buf;
    job.codes = codes.buf;
    job.chosen = chosen.buf;
    job.counts = counts.buf;
    job.sums = sums.buf;
    Py_BEGIN_ALLOW_THREADS
    memset(counts.buf, 0, counts.len);
    memset(sums.buf, 0, sums.len);
    if (width == 1)
        run_scalar(&job);
    else
        run_dense(&job);
    Py_END_ALLOW_THREADS
    result = job.failed ? PyErr_NoMemory() : PyFloat_FromDouble(job.error);
done:
    PyBuffer_Release(&x);
    PyBuffer_Release(&book);
    PyBuffer_Release(&weight);
    PyBuffer_Release(&codes);
    PyBuffer_Release(&chosen);
    PyBuffer_Release(&counts);
    PyBuffer_Release(&sums);
    return result;
}

static PyMethodDef methods[] = {
    {"assign", assign, METH_VARARGS,
     "assign(x, book, weight, codes, chosen, counts, sums, n, dims, k, width) -> "
     "weighted squared error; fills codes, chosen, counts and sums (see the module comment)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_search", NULL, -1, methods};

PyMODINIT_FUNC PyInit__search(void) { return PyModule_Create(&module); }
