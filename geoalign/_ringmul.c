/*
 * Batched exact products in Z_n[x] for power-of-two moduli n <= 2^16.
 *
 * Arithmetic modulo 2^16 (uint16_t wrap-around) is exact modulo every n that
 * divides 2^16, and casting an int64 coefficient to uint16_t keeps its residue
 * modulo 2^16 (two's complement), so inputs need no reduction and no rounding
 * happens anywhere: the results are bit-exact by construction.
 *
 * Vectorised *across the batch*: LANES polynomials are transposed into
 * coefficient-major buffers, so every multiply-add of the schoolbook product
 *     c_k = sum_i a_i b_{k-i}
 * is one vertical SIMD operation over LANES polynomials (no horizontal sums, no
 * stores in the inner loop).  Schoolbook costs La*Lb multiply-adds per product,
 * so geoalign.rings uses it for short factors and the FFT beyond.  The C compiler vectorises the fixed-length lane
 * loops; on x86-64 with GCC, function multi-versioning picks AVX-512BW or AVX2
 * at run time.  The GIL is released: callers spread row blocks over threads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LANES 32

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define MULTIVERSION
#endif

typedef uint16_t u16;

/* Returns -1 when the workspace cannot be allocated. */
static MULTIVERSION int mul_rows_u16(const int64_t *a, Py_ssize_t a_stride, const int64_t *b,
                                     Py_ssize_t b_stride, int64_t *out, Py_ssize_t rows,
                                     Py_ssize_t La, Py_ssize_t Lb, int64_t mask)
{
    const Py_ssize_t L = La + Lb - 1;
    /* coefficient-major workspaces, row c of X at X + c*LANES: [coefficient][lane] */
    u16 *work = aligned_alloc(64, (size_t)(La + Lb + L) * LANES * sizeof(u16));
    if (work == NULL) return -1;
    u16 *At = work, *Bt = work + La * LANES, *Ct = work + (La + Lb) * LANES;
    for (Py_ssize_t r0 = 0; r0 < rows; r0 += LANES) {
        const Py_ssize_t nl = rows - r0 < LANES ? rows - r0 : LANES;
        for (Py_ssize_t l = 0; l < LANES; l++) {
            if (l < nl) {
                const int64_t *ar = a + (r0 + l) * a_stride, *br = b + (r0 + l) * b_stride;
                for (Py_ssize_t i = 0; i < La; i++) At[i * LANES + l] = (u16)ar[i];
                for (Py_ssize_t j = 0; j < Lb; j++) Bt[j * LANES + l] = (u16)br[j];
            } else { /* a partial last block: idle lanes multiply zeros */
                for (Py_ssize_t i = 0; i < La; i++) At[i * LANES + l] = 0;
                for (Py_ssize_t j = 0; j < Lb; j++) Bt[j * LANES + l] = 0;
            }
        }
        for (Py_ssize_t k = 0; k < L; k++) {
            const Py_ssize_t i0 = k - (Lb - 1) > 0 ? k - (Lb - 1) : 0;
            const Py_ssize_t i1 = k < La - 1 ? k : La - 1;
            u16 acc[LANES] = {0};
            for (Py_ssize_t i = i0; i <= i1; i++) {
                const u16 *x = At + i * LANES, *y = Bt + (k - i) * LANES;
                for (int l = 0; l < LANES; l++) acc[l] += (u16)(x[l] * y[l]);
            }
            memcpy(Ct + k * LANES, acc, sizeof acc);
        }
        for (Py_ssize_t l = 0; l < nl; l++) {
            int64_t *o = out + (r0 + l) * L;
            for (Py_ssize_t k = 0; k < L; k++) o[k] = Ct[k * LANES + l] & mask;
        }
    }
    free(work);
    return 0;
}

static int get_rows(PyObject *obj, Py_buffer *view, const char *name, int writable)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    if (view->ndim != 2 || view->itemsize != 8 || view->format == NULL ||
        (strcmp(view->format, "l") != 0 && strcmp(view->format, "q") != 0 &&
         strcmp(view->format, "<q") != 0 && strcmp(view->format, "<l") != 0 &&
         strcmp(view->format, "=q") != 0 && strcmp(view->format, "=l") != 0)) {
        PyErr_Format(PyExc_ValueError, "%s must be a C-contiguous 2-d int64 array", name);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(mul_pow2_doc,
"mul_pow2(a, b, out, modulus)\n--\n\n"
"Write the products of the rows of a (ra, La) and b (rb, Lb) modulo a power-of-two\n"
"modulus <= 2^16 into out (rows, La+Lb-1); ra and rb equal rows or 1 (broadcast).\n"
"All three are C-contiguous int64 arrays; inputs may be any integers.");

static PyObject *mul_pow2(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *oa, *ob, *oo;
    long long modulus;
    if (!PyArg_ParseTuple(args, "OOOL", &oa, &ob, &oo, &modulus)) return NULL;
    if (modulus < 2 || modulus > 65536 || (modulus & (modulus - 1)) != 0) {
        PyErr_Format(PyExc_ValueError, "modulus must be a power of two in [2, 65536], got %lld", modulus);
        return NULL;
    }
    Py_buffer va, vb, vo;
    if (get_rows(oa, &va, "a", 0) < 0) return NULL;
    if (get_rows(ob, &vb, "b", 0) < 0) { PyBuffer_Release(&va); return NULL; }
    if (get_rows(oo, &vo, "out", 1) < 0) { PyBuffer_Release(&va); PyBuffer_Release(&vb); return NULL; }
    const Py_ssize_t rows = vo.shape[0], La = va.shape[1], Lb = vb.shape[1];
    const Py_ssize_t ra = va.shape[0], rb = vb.shape[0];
    PyObject *result = NULL;
    if (La < 1 || Lb < 1)
        PyErr_SetString(PyExc_ValueError, "factors must have at least one coefficient");
    else if (vo.shape[1] != La + Lb - 1 || (ra != rows && ra != 1) || (rb != rows && rb != 1))
        PyErr_SetString(PyExc_ValueError, "shapes of a, b and out do not match");
    else {
        const int64_t *pa = (const int64_t *)va.buf, *pb = (const int64_t *)vb.buf;
        int64_t *po = (int64_t *)vo.buf;
        int status;
        Py_BEGIN_ALLOW_THREADS
        status = mul_rows_u16(pa, ra == 1 ? 0 : La, pb, rb == 1 ? 0 : Lb, po, rows, La, Lb,
                              (int64_t)(modulus - 1));
        Py_END_ALLOW_THREADS
        if (status < 0)
            PyErr_NoMemory();
        else
            result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&va);
    PyBuffer_Release(&vb);
    PyBuffer_Release(&vo);
    return result;
}

static PyMethodDef methods[] = {
    {"mul_pow2", mul_pow2, METH_VARARGS, mul_pow2_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_ringmul",
    "Compiled batched products in Z_n[x] for power-of-two moduli (see geoalign.rings).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__ringmul(void) { return PyModule_Create(&module); }
