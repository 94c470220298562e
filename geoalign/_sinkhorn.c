/*
 * Sinkhorn scaling iterations with one pass over the kernel per iteration.
 *
 * For a kernel K (n x m, row-major), marginals a, b and a row scaling u, one
 * iteration of geoalign.ot._core.scaling_iterations is
 *
 *     v = b / (u^T K)          (column update)
 *     u = a / (K v)            (row update),
 *
 * two matrix-vector products, i.e. two passes over K.  Here the column sums
 * w = u^T K of the *next* column update are accumulated during the row update:
 * as soon as row i of K v is known, u_i = a_i / (K v)_i is final and
 * w += u_i K_i. is added while the row is still in the L1 cache.  So each
 * iteration reads K from memory once; the first iteration of a call needs
 * w for the starting u (one more pass, skipped when the caller passes the w
 * returned by the previous call), and on return w = u^T K for the final u,
 * which is what the column marginal v * (u^T K) of the caller's check needs.
 *
 * Rows are processed four at a time, software-pipelined: one sweep over the
 * columns adds u_i K_i. of the four current rows (already in cache, their
 * u_i known) to w and computes the dot products K_i. v of the next four rows
 * (streamed from memory), so the loads of v and w are shared by four rows and
 * the memory stream never waits for a division.  Beyond 1 MB of kernel the
 * four rows after those are prefetched.  Arithmetic and accumulation are in
 * the working dtype (float32 or float64), one SIMD register of partial sums
 * per dot product, summed pairwise (the order of the sums differs from BLAS:
 * results agree to rounding).  Batches [B, n, m] are solved one problem after
 * the other, each for all k iterations, so a problem's kernel stays in cache
 * across its iterations.  Non-finite values are not checked here (the caller
 * checks them, as for the NumPy path); a zero denominator gives inf/NaN.
 * GCC vector extensions; on x86-64 Linux with GCC, function multi-versioning
 * picks AVX2+FMA (x86-64-v3) at run time.  Single-threaded; the GIL is
 * released while iterating.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MULTIVERSION __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define MULTIVERSION
#endif

typedef float v8f32 __attribute__((vector_size(32)));
typedef double v4f64 __attribute__((vector_size(32)));
/* unaligned views of the same vectors (rows of K start anywhere) */
typedef float v8f32u __attribute__((vector_size(32), aligned(4), may_alias));
typedef double v4f64u __attribute__((vector_size(32), aligned(8), may_alias));

/*
 * DEFINE_KERNEL(T, V, VU, L, NAME) defines
 *     NAME(K, n, m, a, b, u, v, w, scratch, k, have_w)
 * for one problem: k iterations from u (in/out), v (out), w = u^T K (in when
 * have_w, out always), scratch: m values.
 */
/* One step of NAME##_fused: 4 dot products (next rows) and the update of w (current rows). */
#define SK_FUSED_STEP(V, VU, q)                                               \
    {                                                                         \
        const V x = *(const VU *)(v + (q));                                   \
        s0 += *(const VU *)(Kn + (q)) * x; s1 += *(const VU *)(N1 + (q)) * x; \
        s2 += *(const VU *)(N2 + (q)) * x; s3 += *(const VU *)(N3 + (q)) * x; \
        V s = *(const VU *)(Kc + (q)) * c0 + *(const VU *)(C1 + (q)) * c1     \
            + *(const VU *)(C2 + (q)) * c2 + *(const VU *)(C3 + (q)) * c3;    \
        if (!init) s += *(const VU *)(w + (q));                               \
        *(VU *)(w + (q)) = s;                                                 \
    }

#ifndef SK_PF
#define SK_PF 1 /* software prefetch of the rows after the next ones */
#endif

#define DEFINE_KERNEL(T, V, VU, L, NAME)                                                                                \
    static inline __attribute__((always_inline)) T NAME##_hsum(V x)                                                     \
    {                                                                                                                   \
        T s[L];                           /* pairwise: depth log2(L), not L - 1 */                                      \
        memcpy(s, &x, sizeof(s));                                                                                       \
        for (int h = L / 2; h >= 1; h /= 2)                                                                             \
            for (int l = 0; l < h; l++) s[l] += s[l + h];                                                               \
        return s[0];                                                                                                    \
    }                                                                                                                   \
                                                                                                                        \
    /* d[r] = K_r . v for the 4 rows K0, K0 + ld, K0 + 2 ld, K0 + 3 ld */                                               \
    static inline __attribute__((always_inline)) void NAME##_dot4(                                                      \
        const T *restrict K0, Py_ssize_t ld, const T *restrict v, Py_ssize_t m, T *d)                                   \
    {                                                                                                                   \
        const T *K1 = K0 + ld, *K2 = K1 + ld, *K3 = K2 + ld;                                                            \
        V s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};                                                                       \
        Py_ssize_t j = 0;                                                                                               \
        for (; j + L <= m; j += L) {                                                                                    \
            const V x = *(const VU *)(v + j);                                                                           \
            s0 += *(const VU *)(K0 + j) * x; s1 += *(const VU *)(K1 + j) * x;                                           \
            s2 += *(const VU *)(K2 + j) * x; s3 += *(const VU *)(K3 + j) * x;                                           \
        }                                                                                                               \
        T d0 = NAME##_hsum(s0), d1 = NAME##_hsum(s1), d2 = NAME##_hsum(s2), d3 = NAME##_hsum(s3);                       \
        for (; j < m; j++) {                                                                                            \
            d0 += K0[j] * v[j]; d1 += K1[j] * v[j]; d2 += K2[j] * v[j]; d3 += K3[j] * v[j];                             \
        }                                                                                                               \
        d[0] = d0; d[1] = d1; d[2] = d2; d[3] = d3;                                                                     \
    }                                                                                                                   \
                                                                                                                        \
    /* One sweep over the columns: w (+)= sum_r c[r] Kc_r (4 rows, already in cache) and,                               \
     * when Kn is not NULL, d[r] = Kn_r . v for the next 4 rows (streamed from memory). */                              \
    static inline __attribute__((always_inline)) void NAME##_fused(                                                     \
        T *restrict w, const T *restrict Kc, const T *restrict Kn, Py_ssize_t ld, const T *c,                           \
        const T *restrict v, Py_ssize_t m, int init, T *d, const T *pf)                                                 \
    {                                                                                                                   \
        const T *C1 = Kc + ld, *C2 = C1 + ld, *C3 = C2 + ld;                                                            \
        const T c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3];                                                             \
        Py_ssize_t j = 0;                                                                                               \
        if (Kn == NULL) {                                                                                               \
            for (; j + L <= m; j += L) {                                                                                \
                V s = *(const VU *)(Kc + j) * c0 + *(const VU *)(C1 + j) * c1                                           \
                    + *(const VU *)(C2 + j) * c2 + *(const VU *)(C3 + j) * c3;                                          \
                if (!init) s += *(const VU *)(w + j);                                                                   \
                *(VU *)(w + j) = s;                                                                                     \
            }                                                                                                           \
            for (; j < m; j++) {                                                                                        \
                const T s = Kc[j] * c0 + C1[j] * c1 + C2[j] * c2 + C3[j] * c3;                                          \
                w[j] = init ? s : w[j] + s;                                                                             \
            }                                                                                                           \
            return;                                                                                                     \
        }                                                                                                               \
        const T *N1 = Kn + ld, *N2 = N1 + ld, *N3 = N2 + ld;                                                            \
        V s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};                                                                       \
        if (pf != NULL) /* the 4 rows after the next ones: one cache line of each per 2 steps */                        \
            for (; j + 2 * L <= m; j += 2 * L) {                                                                        \
                __builtin_prefetch(pf + j, 0, 3); __builtin_prefetch(pf + ld + j, 0, 3);                                \
                __builtin_prefetch(pf + 2 * ld + j, 0, 3); __builtin_prefetch(pf + 3 * ld + j, 0, 3);                   \
                SK_FUSED_STEP(V, VU, j)                                                                                 \
                SK_FUSED_STEP(V, VU, j + L)                                                                             \
            }                                                                                                           \
        for (; j + L <= m; j += L) SK_FUSED_STEP(V, VU, j)                                                              \
        T d0 = NAME##_hsum(s0), d1 = NAME##_hsum(s1), d2 = NAME##_hsum(s2), d3 = NAME##_hsum(s3);                       \
        for (; j < m; j++) {                                                                                            \
            d0 += Kn[j] * v[j]; d1 += N1[j] * v[j]; d2 += N2[j] * v[j]; d3 += N3[j] * v[j];                             \
            const T s = Kc[j] * c0 + C1[j] * c1 + C2[j] * c2 + C3[j] * c3;                                              \
            w[j] = init ? s : w[j] + s;                                                                                 \
        }                                                                                                               \
        d[0] = d0; d[1] = d1; d[2] = d2; d[3] = d3;                                                                     \
    }                                                                                                                   \
                                                                                                                        \
    /* One row: returns K0 . v, then w (+)= (a_i / K0 . v) K0 into w; *u_i written. */                                  \
    static inline __attribute__((always_inline)) void NAME##_row(                                                       \
        T *restrict w, const T *restrict K0, const T *restrict v, T ai, T *ui, Py_ssize_t m,                            \
        int init, int update)                                                                                           \
    {                                                                                                                   \
        Py_ssize_t j = 0;                                                                                               \
        if (update) {                                                                                                   \
            V s0 = {0};                                                                                                 \
            for (; j + L <= m; j += L) s0 += *(const VU *)(K0 + j) * *(const VU *)(v + j);                              \
            T d0 = NAME##_hsum(s0);                                                                                     \
            for (; j < m; j++) d0 += K0[j] * v[j];                                                                      \
            *ui = ai / d0;                                                                                              \
        }                                                                                                               \
        const T c0 = *ui;                                                                                               \
        for (j = 0; j + L <= m; j += L) {                                                                               \
            V s = *(const VU *)(K0 + j) * c0;                                                                           \
            if (!init) s += *(const VU *)(w + j);                                                                       \
            *(VU *)(w + j) = s;                                                                                         \
        }                                                                                                               \
        for (; j < m; j++) w[j] = init ? K0[j] * c0 : w[j] + K0[j] * c0;                                                \
    }                                                                                                                   \
                                                                                                                        \
    /* w = u^T K (one pass) */                                                                                          \
    static inline __attribute__((always_inline)) void NAME##_colsums(                                                   \
        const T *restrict K, Py_ssize_t n, Py_ssize_t m, T *u, T *restrict w)                                           \
    {                                                                                                                   \
        const Py_ssize_t n4 = n - n % 4;                                                                                \
        for (Py_ssize_t i = 0; i < n4; i += 4) NAME##_fused(w, K + i * m, NULL, m, u + i, NULL, m, i == 0, NULL, NULL); \
        for (Py_ssize_t i = n4; i < n; i++) NAME##_row(w, K + i * m, NULL, 0, u + i, m, i == 0, 0);                     \
        if (n == 0)                                                                                                     \
            for (Py_ssize_t j = 0; j < m; j++) w[j] = 0;                                                                \
    }                                                                                                                   \
                                                                                                                        \
    MULTIVERSION static void NAME(const T *restrict K, Py_ssize_t n, Py_ssize_t m,                                      \
                                  const T *restrict a, const T *restrict b, T *restrict u,                              \
                                  T *restrict v, T *w, T *scratch, long k, int have_w)                                  \
    {                                                                                                                   \
        T *cur = w, *nxt = scratch;                                                                                     \
        const Py_ssize_t n4 = n - n % 4;                                                                                \
        /* beyond the L2 cache, prefetch the rows after the next ones (in cache it only costs) */                       \
        const int pf = SK_PF && (size_t)n * (size_t)m * sizeof(T) > ((size_t)1 << 20);                                  \
        T d[4];                                                                                                         \
        if (!have_w) NAME##_colsums(K, n, m, u, cur);                                                                   \
        for (long it = 0; it < k; it++) {                                                                               \
            for (Py_ssize_t j = 0; j < m; j++) v[j] = b[j] / cur[j];                                                    \
            if (n4 > 0) {                                                                                               \
                NAME##_dot4(K, m, v, m, d);                                                                             \
                for (int r = 0; r < 4; r++) u[r] = a[r] / d[r];                                                         \
            }                                                                                                           \
            /* rows i..i+3 (cached) update w while rows i+4..i+7 stream in for their dot products */                    \
            for (Py_ssize_t i = 0; i < n4; i += 4) {                                                                    \
                const T *Kn = i + 4 < n4 ? K + (i + 4) * m : NULL;                                                      \
                NAME##_fused(nxt, K + i * m, Kn, m, u + i, v, m, i == 0, d,                                             \
                              pf && i + 8 < n4 ? K + (i + 8) * m : NULL);                                               \
                if (Kn != NULL)                                                                                         \
                    for (int r = 0; r < 4; r++) u[i + 4 + r] = a[i + 4 + r] / d[r];                                     \
            }                                                                                                           \
            for (Py_ssize_t i = n4; i < n; i++) NAME##_row(nxt, K + i * m, v, a[i], u + i, m, i == 0, 1);               \
            if (n == 0)                                                                                                 \
                for (Py_ssize_t j = 0; j < m; j++) nxt[j] = 0;                                                          \
            T *tmp = cur; cur = nxt; nxt = tmp;                                                                         \
        }                                                                                                               \
        if (cur != w) memcpy(w, cur, (size_t)m * sizeof(T));                                                            \
    }

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi" /* vector arguments of inlined helpers only */
#endif
DEFINE_KERNEL(float, v8f32, v8f32u, 8, iterate_f32)
DEFINE_KERNEL(double, v4f64, v4f64u, 4, iterate_f64)

/* ---------------------------------------------------------------- Python interface */

/* A C-contiguous float32 ('f') or float64 ('d') buffer of ndim dimensions; kind 'f'/'d'. */
static int get_array(PyObject *obj, Py_buffer *view, const char *name, int ndim, int writable,
                     char *kind)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    const char *f = view->format ? view->format : "";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    char k = (strcmp(f, "f") == 0 && view->itemsize == 4) ? 'f'
           : (strcmp(f, "d") == 0 && view->itemsize == 8) ? 'd' : 0;
    if (view->ndim != ndim || k == 0) {
        PyErr_Format(PyExc_ValueError, "%s must be a C-contiguous %d-d float32 or float64 array%s",
                     name, ndim, writable ? " (writable)" : "");
        PyBuffer_Release(view);
        return -1;
    }
    if (*kind != 0 && k != *kind) {
        PyErr_Format(PyExc_ValueError, "%s must have the dtype of K (%s)", name,
                     *kind == 'f' ? "float32" : "float64");
        PyBuffer_Release(view);
        return -1;
    }
    *kind = k;
    return 0;
}

PyDoc_STRVAR(iterate_doc,
"iterate(K, a, b, u, v, w, k, have_w)\n--\n\n"
"k Sinkhorn iterations v = b / (u^T K), u = a / (K v) for each problem of the batch,\n"
"one pass over K per iteration.  K (B, n, m); a (1 or B, n); b (1 or B, m);\n"
"u (B, n): the starting row scalings, overwritten by the final ones; v (B, m): the final\n"
"column scalings (written); w (B, m): u^T K for the starting u when have_w is true\n"
"(otherwise computed, one more pass), overwritten by u^T K for the final u.\n"
"All C-contiguous, all float32 or all float64.  Returns None.");

static PyObject *iterate(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *oK, *oa, *ob, *ou, *ov, *ow;
    long k;
    int have_w;
    if (!PyArg_ParseTuple(args, "OOOOOOlp", &oK, &oa, &ob, &ou, &ov, &ow, &k, &have_w)) return NULL;
    if (k < 0) {
        PyErr_Format(PyExc_ValueError, "k must be >= 0, got %ld", k);
        return NULL;
    }
    Py_buffer vK, va, vb, vu, vv, vw;
    Py_buffer *views[6] = {&vK, &va, &vb, &vu, &vv, &vw};
    PyObject *objs[6] = {oK, oa, ob, ou, ov, ow};
    const char *names[6] = {"K", "a", "b", "u", "v", "w"};
    const int ndims[6] = {3, 2, 2, 2, 2, 2}, writable[6] = {0, 0, 0, 1, 1, 1};
    char kind = 0;
    int got = 0;
    for (; got < 6; got++)
        if (get_array(objs[got], views[got], names[got], ndims[got], writable[got], &kind) < 0) break;
    PyObject *result = NULL;
    if (got == 6) {
        const Py_ssize_t B = vK.shape[0], n = vK.shape[1], m = vK.shape[2];
        const Py_ssize_t Ba = va.shape[0], Bb = vb.shape[0];
        if ((Ba != B && Ba != 1) || va.shape[1] != n || (Bb != B && Bb != 1) || vb.shape[1] != m ||
            vu.shape[0] != B || vu.shape[1] != n || vv.shape[0] != B || vv.shape[1] != m ||
            vw.shape[0] != B || vw.shape[1] != m) {
            PyErr_SetString(PyExc_ValueError, "shapes of K (B, n, m), a (1|B, n), b (1|B, m), u (B, n), "
                                              "v (B, m) and w (B, m) do not match");
        } else {
            const size_t item = kind == 'f' ? 4 : 8;
            void *scratch = malloc((size_t)(m > 0 ? m : 1) * item);
            if (scratch == NULL) {
                PyErr_NoMemory();
            } else {
                Py_BEGIN_ALLOW_THREADS
                for (Py_ssize_t p = 0; p < B; p++) {
                    if (kind == 'f') {
                        iterate_f32((const float *)vK.buf + p * n * m, n, m,
                                    (const float *)va.buf + (Ba == 1 ? 0 : p * n),
                                    (const float *)vb.buf + (Bb == 1 ? 0 : p * m),
                                    (float *)vu.buf + p * n, (float *)vv.buf + p * m,
                                    (float *)vw.buf + p * m, (float *)scratch, k, have_w);
                    } else {
                        iterate_f64((const double *)vK.buf + p * n * m, n, m,
                                    (const double *)va.buf + (Ba == 1 ? 0 : p * n),
                                    (const double *)vb.buf + (Bb == 1 ? 0 : p * m),
                                    (double *)vu.buf + p * n, (double *)vv.buf + p * m,
                                    (double *)vw.buf + p * m, (double *)scratch, k, have_w);
                    }
                }
                Py_END_ALLOW_THREADS
                free(scratch);
                result = Py_NewRef(Py_None);
            }
        }
    }
    for (int i = 0; i < got; i++) PyBuffer_Release(views[i]);
    return result;
}

static PyMethodDef methods[] = {
    {"iterate", iterate, METH_VARARGS, iterate_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_sinkhorn",
    "Compiled one-pass Sinkhorn scaling iterations (see geoalign.ot._core.scaling_iterations).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__sinkhorn(void) { return PyModule_Create(&module); }
