/*
 * Compiled kernels of the exact blocked eps-join (geoalign.fiber), both optional:
 * without them geoalign.fiber runs the same steps in NumPy with identical results.
 *
 * - select(g, ny, thr, out): one pass over a float32 GEMM block g[i, j] = <x_i, y_j>
 *   (written just before, so still in cache) that appends the flat index i*cb + j of
 *   every entry with
 *       ny[j] - 2 g[i, j] <= thr[i]
 *   to out, in row-major order.  -2 g is exact (a power of two), the subtraction
 *   rounds once in float32: the same operations as the GEMM epilogue
 *   ny - 2 <x, y> of torch.addmm, so geoalign.fiber's a-priori error bound (which
 *   counts that rounding) still covers it and no true pair is missed.  No mask is
 *   written and the block is read once: the comparison runs over 64 entries at a
 *   time with SIMD, and only a 64-entry chunk that holds a hit is scanned again.
 *   At most len(out) indices are written; the number of hits is returned, so a
 *   caller whose out was too short grows it and calls again.
 *
 * - sqdist(ex, ey, ii, jj, out): out[p] = sum_k (ex[ii[p], k] - ey[jj[p], k])^2
 *   in float64, rows float32 or float64 (converted exactly), summed in NumPy's
 *   pairwise order, so that out equals np.add.reduce(diff * diff, axis=1) (and its
 *   square root np.linalg.norm(x - y)) bit for bit: geoalign.fiber's fallback and
 *   the brute-force references agree with it exactly.  Built with -ffp-contract=off:
 *   every product and sum rounds exactly as NumPy's do.
 *
 * GCC vector extensions; on x86-64 with GCC, function multi-versioning picks AVX-512
 * or AVX2 at run time.  The GIL is released (geoalign.fiber runs row blocks on
 * worker threads).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define MULTIVERSION
#endif

#define CHUNK 64 /* entries compared before one branch on "any hit" */

MULTIVERSION
static Py_ssize_t select_block(const float *restrict g, Py_ssize_t rows, Py_ssize_t cols,
                               const float *restrict ny, const float *restrict thr,
                               int64_t *restrict out, Py_ssize_t cap)
{
    Py_ssize_t count = 0;
    for (Py_ssize_t i = 0; i < rows; i++) {
        const float *restrict row = g + i * cols;
        const float t = thr[i];
        Py_ssize_t j0 = 0;
        for (; j0 + CHUNK <= cols; j0 += CHUNK) {
            int any = 0;
            for (int k = 0; k < CHUNK; k++) any |= (ny[j0 + k] - 2.0f * row[j0 + k]) <= t;
            if (!any) continue;
            for (int k = 0; k < CHUNK; k++) {
                if ((ny[j0 + k] - 2.0f * row[j0 + k]) <= t) {
                    if (count < cap) out[count] = (int64_t)(i * cols + j0 + k);
                    count++;
                }
            }
        }
        for (Py_ssize_t j = j0; j < cols; j++) {
            if ((ny[j] - 2.0f * row[j]) <= t) {
                if (count < cap) out[count] = (int64_t)(i * cols + j);
                count++;
            }
        }
    }
    return count;
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi" /* vector values of inlined helpers only */
#endif

typedef double v8f64 __attribute__((vector_size(64)));
typedef float v8f32 __attribute__((vector_size(32)));

#define PW_BLOCKSIZE 128

/* Eight squared differences (x[k] - y[k])^2, k < 8, in float64 (the conversions are exact). */
#define SQ8(NAME, TX, TY, VX, VY)                                                          \
    static inline __attribute__((always_inline)) v8f64 NAME(const TX *x, const TY *y)      \
    {                                                                                      \
        VX a;                                                                              \
        VY b;                                                                              \
        memcpy(&a, x, sizeof a); /* unaligned vector loads */                              \
        memcpy(&b, y, sizeof b);                                                           \
        const v8f64 diff = __builtin_convertvector(a, v8f64) - __builtin_convertvector(b, v8f64); \
        return diff * diff;                                                                \
    }

/* NumPy's pairwise summation (numpy/_core/src/umath/loops_utils.h.src,
 * DOUBLE_pairwise_sum) of the n squared differences, operation for operation: below 8
 * terms a plain loop from 0; up to 128 terms eight partial sums r[j] += a[i + j],
 * combined as ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7)), then the rest added in order; beyond,
 * the two halves (the first a multiple of 8 long) summed recursively and added.  The
 * squares are formed on the fly (each rounds once, as NumPy's diff * diff does). */
#define DEFINE_SQDIST(NAME, TX, TY, VX, VY)                                                \
    SQ8(NAME##_sq8, TX, TY, VX, VY)                                                        \
    MULTIVERSION static double NAME##_pw(const TX *x, const TY *y, Py_ssize_t n)           \
    {                                                                                      \
        if (n < 8) {                                                                       \
            double res = 0.;                                                               \
            for (Py_ssize_t i = 0; i < n; i++) {                                           \
                const double diff = (double)x[i] - (double)y[i];                           \
                res += diff * diff;                                                        \
            }                                                                              \
            return res;                                                                    \
        }                                                                                  \
        if (n <= PW_BLOCKSIZE) {                                                           \
            v8f64 r = NAME##_sq8(x, y);                                                    \
            Py_ssize_t i;                                                                  \
            for (i = 8; i < n - (n % 8); i += 8) r += NAME##_sq8(x + i, y + i);            \
            double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7])); \
            for (; i < n; i++) {                                                           \
                const double diff = (double)x[i] - (double)y[i];                           \
                res += diff * diff;                                                        \
            }                                                                              \
            return res;                                                                    \
        }                                                                                  \
        Py_ssize_t n2 = n / 2;                                                             \
        n2 -= n2 % 8;                                                                      \
        return NAME##_pw(x, y, n2) + NAME##_pw(x + n2, y + n2, n - n2);                    \
    }                                                                                      \
    static void NAME(const TX *restrict ex, const TY *restrict ey, Py_ssize_t d,           \
                     const int64_t *restrict ii, const int64_t *restrict jj,               \
                     double *restrict out, Py_ssize_t count)                               \
    {                                                                                      \
        for (Py_ssize_t p = 0; p < count; p++)                                             \
            out[p] = NAME##_pw(ex + ii[p] * d, ey + jj[p] * d, d);                         \
    }
DEFINE_SQDIST(sqdist_ff, float, float, v8f32, v8f32)
DEFINE_SQDIST(sqdist_fd, float, double, v8f32, v8f64)
DEFINE_SQDIST(sqdist_df, double, float, v8f64, v8f32)
DEFINE_SQDIST(sqdist_dd, double, double, v8f64, v8f64)

/* ------------------------------------------------------------------ argument checks */
static int is_float_format(const char *f, char want)
{
    if (f == NULL) return want == 'B';
    if (f[0] == '<' || f[0] == '=' || f[0] == '@') f++;
    return f[0] == want && f[1] == '\0';
}

/* C-contiguous buffer of `ndim` dimensions whose format is one of `formats` (e.g. "fd"). */
static int get_buffer(PyObject *obj, Py_buffer *view, const char *name, int ndim,
                      const char *formats, int writable)
{
    const char *what = strcmp(formats, "f") == 0   ? "float32"
                       : strcmp(formats, "d") == 0 ? "float64"
                       : strcmp(formats, "q") == 0 ? "int64"
                                                   : "float32 or float64";
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) {
        /* name the argument (the buffer protocol's own message does not) */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyObject *msg = value ? PyObject_Str(value) : NULL;
        PyErr_Clear(); /* PyObject_Str may have failed */
        PyErr_Format(PyExc_ValueError, "%s must be a C-contiguous%s %d-d %s array (%s)", name,
                     writable ? ", writable" : "", ndim, what, msg ? PyUnicode_AsUTF8(msg) : "");
        Py_XDECREF(msg);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return -1;
    }
    int ok = view->ndim == ndim;
    if (ok) {
        ok = 0;
        for (const char *f = formats; *f; f++) {
            if (*f == 'q' ? (view->itemsize == 8 && (is_float_format(view->format, 'q') ||
                                                      is_float_format(view->format, 'l')))
                          : is_float_format(view->format, *f))
                ok = 1;
        }
    }
    if (!ok) {
        PyErr_Format(PyExc_ValueError, "%s must be a C-contiguous %d-d %s array", name, ndim, what);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(select_doc,
"select(g, ny, thr, out) -> int\n--\n\n"
"Flat indices i*cb + j of the entries of the float32 block g (rb, cb) with\n"
"ny[j] - 2*g[i, j] <= thr[i] (float32 arithmetic), in row-major order.  ny (cb,) and\n"
"thr (rb,) are float32, out a 1-d int64 buffer: the first len(out) hits are written\n"
"there and the number of hits is returned.");

static PyObject *select_py(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *og, *on, *ot, *oo;
    if (!PyArg_ParseTuple(args, "OOOO", &og, &on, &ot, &oo)) return NULL;
    Py_buffer vg, vn, vt, vo;
    if (get_buffer(og, &vg, "g", 2, "f", 0) < 0) return NULL;
    if (get_buffer(on, &vn, "ny", 1, "f", 0) < 0) { PyBuffer_Release(&vg); return NULL; }
    if (get_buffer(ot, &vt, "thr", 1, "f", 0) < 0) {
        PyBuffer_Release(&vg); PyBuffer_Release(&vn); return NULL;
    }
    if (get_buffer(oo, &vo, "out", 1, "q", 1) < 0) {
        PyBuffer_Release(&vg); PyBuffer_Release(&vn); PyBuffer_Release(&vt); return NULL;
    }
    PyObject *result = NULL;
    const Py_ssize_t rows = vg.shape[0], cols = vg.shape[1];
    if (vn.shape[0] != cols || vt.shape[0] != rows) {
        PyErr_Format(PyExc_ValueError, "g has shape (%zd, %zd): ny needs %zd and thr %zd entries, "
                     "got %zd and %zd", rows, cols, cols, rows, vn.shape[0], vt.shape[0]);
    } else {
        Py_ssize_t count;
        Py_BEGIN_ALLOW_THREADS
        count = select_block((const float *)vg.buf, rows, cols, (const float *)vn.buf,
                             (const float *)vt.buf, (int64_t *)vo.buf, vo.shape[0]);
        Py_END_ALLOW_THREADS
        result = PyLong_FromSsize_t(count);
    }
    PyBuffer_Release(&vg);
    PyBuffer_Release(&vn);
    PyBuffer_Release(&vt);
    PyBuffer_Release(&vo);
    return result;
}

PyDoc_STRVAR(sqdist_doc,
"sqdist(ex, ey, ii, jj, out)\n--\n\n"
"out[p] = sum_k (ex[ii[p], k] - ey[jj[p], k])**2 in float64 (fixed 8-lane summation\n"
"order, see the module source).  ex (n, d) and ey (m, d) are float32 or float64; ii, jj\n"
"int64 indices (checked against n and m); out float64, all 1-d of the same length.");

static PyObject *sqdist_py(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *ox, *oy, *oi, *oj, *oo;
    if (!PyArg_ParseTuple(args, "OOOOO", &ox, &oy, &oi, &oj, &oo)) return NULL;
    Py_buffer v[5];
    const char *names[5] = {"ex", "ey", "ii", "jj", "out"};
    const char *formats[5] = {"fd", "fd", "q", "q", "d"};
    const int ndims[5] = {2, 2, 1, 1, 1};
    PyObject *objs[5] = {ox, oy, oi, oj, oo};
    int got = 0;
    for (; got < 5; got++)
        if (get_buffer(objs[got], &v[got], names[got], ndims[got], formats[got], got == 4) < 0) break;
    PyObject *result = NULL;
    if (got == 5) {
        const Py_ssize_t n = v[0].shape[0], m = v[1].shape[0], d = v[0].shape[1];
        const Py_ssize_t count = v[4].shape[0];
        const int64_t *ii = (const int64_t *)v[2].buf, *jj = (const int64_t *)v[3].buf;
        int bad = v[1].shape[1] != d || v[2].shape[0] != count || v[3].shape[0] != count;
        if (bad) {
            PyErr_SetString(PyExc_ValueError, "sqdist: ex and ey need the same number of columns, "
                            "ii, jj and out the same length");
        } else {
            for (Py_ssize_t p = 0; p < count && !bad; p++)
                bad = ii[p] < 0 || ii[p] >= n || jj[p] < 0 || jj[p] >= m;
            if (bad) PyErr_SetString(PyExc_IndexError, "sqdist: an index in ii or jj is out of range");
        }
        if (!bad) {
            const int fx = v[0].itemsize == 4, fy = v[1].itemsize == 4;
            double *o = (double *)v[4].buf;
            Py_BEGIN_ALLOW_THREADS
            if (fx && fy)
                sqdist_ff((const float *)v[0].buf, (const float *)v[1].buf, d, ii, jj, o, count);
            else if (fx)
                sqdist_fd((const float *)v[0].buf, (const double *)v[1].buf, d, ii, jj, o, count);
            else if (fy)
                sqdist_df((const double *)v[0].buf, (const float *)v[1].buf, d, ii, jj, o, count);
            else
                sqdist_dd((const double *)v[0].buf, (const double *)v[1].buf, d, ii, jj, o, count);
            Py_END_ALLOW_THREADS
            result = Py_NewRef(Py_None);
        }
    }
    for (int k = 0; k < got; k++) PyBuffer_Release(&v[k]);
    return result;
}

static PyMethodDef methods[] = {
    {"select", select_py, METH_VARARGS, select_doc},
    {"sqdist", sqdist_py, METH_VARARGS, sqdist_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fiber",
    "Compiled threshold selection and exact float64 distances of the eps-join (see geoalign.fiber).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fiber(void) { return PyModule_Create(&module); }
