/*
 * Batched exact products in Z_n[x] (schoolbook), vectorised across the batch.
 *
 * Three kernels, all bit-exact by construction:
 *
 * - mul_pow2, power-of-two moduli n <= 2^16: arithmetic modulo 2^16 (uint16_t
 *   wrap-around) is exact modulo every n that divides 2^16, and casting an int64
 *   coefficient to uint16_t keeps its residue modulo 2^16 (two's complement), so
 *   inputs need no reduction and nothing is rounded.
 * - mul_mod, one limb, any 2 <= n < 2^31 with T (n-1)^2 <= 2^52, where
 *   T = min(La, Lb) is the largest number of terms of an output coefficient:
 *   residues are held in float64 and every product a_i b_j <= (n-1)^2 and every
 *   partial sum <= T (n-1)^2 is an integer below 2^52, hence exact (with or
 *   without fused multiply-add); each sum is reduced once at the end.
 *   Z_30522, degree 255: T (n-1)^2 = 256 * 30521^2 < 2^38.
 * - mul_mod, two limbs (Karatsuba), 2 <= n < 2^31 beyond that bound with
 *   T (2^17 - 2)^2 <= 2^52, i.e. T <= 2^18: a = a1 2^16 + a0 (a0 < 2^16,
 *   a1 < 2^15), three one-limb convolutions c0 = a0*b0, c2 = a1*b1 and
 *   cm = (a0+a1)*(b0+b1) (terms < 2^34, sums < 2^52: exact), c1 = cm - c0 - c2,
 *   and ab = c2 2^32 + c1 2^16 + c0, reduced modulo n in 64-bit integers.
 *
 * Vectorised *across the batch*: LANES polynomials are transposed into
 * coefficient-major buffers, so every multiply-add of the schoolbook product
 *     c_k = sum_i a_i b_{k-i}
 * is one vertical SIMD operation over the lanes (no horizontal sums).  The
 * convolution is register-blocked: R consecutive outputs c_k..c_{k+R-1} are
 * accumulated together, so each a_i is loaded once for R multiply-adds and the
 * window of b slides by one register per step (2 loads per R multiply-adds
 * instead of 2 per one).  Schoolbook costs La*Lb multiply-adds per product, so
 * geoalign.rings uses it for short factors and the FFT beyond.  GCC vector
 * extensions; on x86-64 with GCC, function multi-versioning picks AVX-512 or
 * AVX2 at run time.  The GIL is released: callers spread row blocks over threads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define MULTIVERSION
#endif

typedef uint16_t u16;
typedef u16 v32u16 __attribute__((vector_size(64)));
typedef double v8f64 __attribute__((vector_size(64)));
typedef int64_t v8i64 __attribute__((vector_size(64)));

/* Residues of 8 lanes at once (inlined into each multi-versioned caller). */
#define INLINE static inline __attribute__((always_inline))
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi" /* vector arguments of inlined helpers only */
#endif
#define MAGIC 6755399441055744.0 /* 1.5 * 2^52: x + MAGIC - MAGIC rounds |x| < 2^51 */

/* c mod n for integer-valued doubles 0 <= c <= 2^52: q = round(c / n) is within one of
 * the true quotient, c - q n is exact (|q n| < 2^53) and lies in (-n, n). */
INLINE v8i64 vmod_f64(v8f64 c, double n, double inv_n)
{
    const v8f64 q = (c * inv_n + MAGIC) - MAGIC;
    v8i64 r = __builtin_convertvector(c - q * n, v8i64);
    const v8i64 vn = (v8i64){0} + (int64_t)n;
    r += (r < 0) & vn;
    r -= (r >= vn) & vn;
    return r;
}

/* x y mod n for 0 <= x, y < n < 2^31: x y < 2^62 is exact in int64 and the truncated
 * double quotient is within one of floor(x y / n), so x y - q n lies in [-n, 2n). */
INLINE v8i64 vmulmod(v8i64 x, v8i64 y, int64_t n, double inv_n)
{
    const v8i64 q = __builtin_convertvector(
        __builtin_convertvector(x, v8f64) * __builtin_convertvector(y, v8f64) * inv_n, v8i64);
    const v8i64 vn = (v8i64){0} + n;
    v8i64 r = x * y - q * n;
    r += (r < 0) & vn;
    r -= (r >= vn) & vn;
    return r;
}

#define R 4 /* outputs accumulated together */

/*
 * Ct[k] = sum_i At[i] * Bp[k - i] for k in [0, La + Lb - 1).  Bp points at b_0 inside a
 * buffer with R zero vectors on either side (the sliding window reads b_{-R} ..
 * b_{Lb+R-2}).
 */
#define DEFINE_CONV(NAME, VT)                                                              \
    static inline __attribute__((always_inline)) void NAME(                                \
        const VT *restrict At, const VT *restrict Bp, VT *restrict Ct,                     \
        Py_ssize_t La, Py_ssize_t Lb)                                                      \
    {                                                                                      \
        const Py_ssize_t L = La + Lb - 1;                                                  \
        for (Py_ssize_t k0 = 0; k0 < L; k0 += R) {                                         \
            const Py_ssize_t i0 = k0 - (Lb - 1) > 0 ? k0 - (Lb - 1) : 0;                   \
            const Py_ssize_t i1 = k0 + R - 1 < La - 1 ? k0 + R - 1 : La - 1;               \
            VT acc[R], w[R];                                                               \
            for (int r = 0; r < R; r++) {                                                  \
                acc[r] = (VT){0};                                                          \
                w[r] = Bp[k0 + r - i0]; /* w[r] = b_{k0 + r - i} */                        \
            }                                                                              \
            for (Py_ssize_t i = i0; i <= i1; i++) {                                        \
                const VT x = At[i];                                                        \
                for (int r = 0; r < R; r++) acc[r] += x * w[r];                            \
                for (int r = R - 1; r > 0; r--) w[r] = w[r - 1];                           \
                w[0] = Bp[k0 - i - 1];                                                     \
            }                                                                              \
            for (int r = 0; r < R && k0 + r < L; r++) Ct[k0 + r] = acc[r];                 \
        }                                                                                  \
    }

DEFINE_CONV(conv_u16, v32u16)
DEFINE_CONV(conv_f64, v8f64)

/*
 * Karatsuba over the polynomial halves, `depth` levels, schoolbook below:
 *     (A0 + x^h A1)(B0 + x^h B1) = P0 + x^h (M - P0 - P2) + x^2h P2,
 *     P0 = A0 B0, P2 = A1 B1, M = (A0 + A1)(B0 + B1),
 * three half-size products instead of four (work 3/4 per level).  Exactness: a level
 * doubles the operands' coefficients and halves the number of terms of a sum, so with
 * coefficients <= v and T terms the float64 sums stay below T 2^depth v^2 (the caller
 * checks it is <= 2^52); modulo 2^16 every step is a ring operation, exact at any depth.
 * C gets La + Lb - 1 vectors; tmp holds at least 4 max(La, Lb) + 4 R + 8 vectors.
 */
#define DEFINE_KARA(NAME, CONV, VT)                                                        \
    static MULTIVERSION void NAME(const VT *A, const VT *B, VT *C, Py_ssize_t La,           \
                                  Py_ssize_t Lb, int depth, VT *tmp)                       \
    {                                                                                      \
        if (depth == 0 || La != Lb) { /* schoolbook on a zero-padded copy of B */           \
            for (int r = 0; r < R; r++) tmp[r] = tmp[R + Lb + r] = (VT){0};                 \
            memcpy(tmp + R, B, (size_t)Lb * sizeof(VT));                                   \
            CONV(A, tmp + R, C, La, Lb);                                                   \
            return;                                                                        \
        }                                                                                  \
        const Py_ssize_t len = La, h = len / 2, g = len - h; /* halves h <= g */          \
        NAME(A, B, C, h, h, depth - 1, tmp);                   /* P0 -> C[0, 2h-1) */       \
        C[2 * h - 1] = (VT){0};                                                            \
        NAME(A + h, B + h, C + 2 * h, g, g, depth - 1, tmp);   /* P2 -> C[2h, 2len-1) */   \
        VT *sa = tmp, *sb = tmp + g, *m = tmp + 2 * g;         /* m: 2g - 1 vectors */     \
        for (Py_ssize_t i = 0; i < g; i++) {                                               \
            sa[i] = A[h + i] + (i < h ? A[i] : (VT){0});                                   \
            sb[i] = B[h + i] + (i < h ? B[i] : (VT){0});                                   \
        }                                                                                  \
        NAME(sa, sb, m, g, g, depth - 1, tmp + 4 * g);                                     \
        for (Py_ssize_t i = 0; i < 2 * g - 1; i++) {  /* m - P0 - P2 before C changes */   \
            m[i] -= C[2 * h + i];                                                          \
            if (i < 2 * h - 1) m[i] -= C[i];                                               \
        }                                                                                  \
        for (Py_ssize_t i = 0; i < 2 * g - 1; i++) C[h + i] += m[i];                       \
    }

DEFINE_KARA(kara_u16, conv_u16, v32u16)
DEFINE_KARA(kara_f64, conv_f64, v8f64)

/* Karatsuba levels for equal lengths: halves of at least `min_half` coefficients, and
 * T 2^depth v^2 <= 2^52 for float64 (v2 = v^2; 0 for the exact modulo-2^16 kernel).
 * Measured (degree 255, 10^4 products): the float64 kernel gains 20% with halves down to
 * 32; the 16-bit one, bound by its transpositions, loses 10-15%, so it starts at 512. */
static int kara_depth(Py_ssize_t La, Py_ssize_t Lb, double v2, Py_ssize_t min_half)
{
    int d = 0;
    if (La != Lb) return 0;
    for (Py_ssize_t len = La; len / 2 >= min_half && d < 8; len = len - len / 2) {
        if (v2 > 0 && (double)La * (double)(2 << d) * v2 > 4503599627370496.0) break;
        d++;
    }
    return d;
}

/* Returns -1 when the workspace cannot be allocated. */
static size_t workspace(Py_ssize_t La, Py_ssize_t Lb) /* vectors: A, B, C, Karatsuba scratch */
{
    const Py_ssize_t L = La > Lb ? La : Lb;
    return (size_t)(La + Lb + (La + Lb - 1) + 4 * L + 4 * R + 8);
}

/* Row pointers of the block of `lanes` rows starting at r0 (idle lanes of a last, partial
 * block read `zeros`); returns the number of real rows. */
static Py_ssize_t lane_rows(const int64_t *a, Py_ssize_t a_stride, const int64_t *b,
                            Py_ssize_t b_stride, Py_ssize_t r0, Py_ssize_t rows, int lanes,
                            const int64_t *zeros, const int64_t **ra, const int64_t **rb)
{
    const Py_ssize_t nl = rows - r0 < lanes ? rows - r0 : lanes;
    for (Py_ssize_t l = 0; l < lanes; l++) {
        ra[l] = l < nl ? a + (r0 + l) * a_stride : zeros;
        rb[l] = l < nl ? b + (r0 + l) * b_stride : zeros;
    }
    return nl;
}

/* Returns -1 when the workspace cannot be allocated. */
static MULTIVERSION int mul_rows_u16(const int64_t *a, Py_ssize_t a_stride, const int64_t *b,
                                     Py_ssize_t b_stride, int64_t *out, Py_ssize_t rows,
                                     Py_ssize_t La, Py_ssize_t Lb, int64_t mask)
{
    enum { LANES = 32 };
    const Py_ssize_t L = La + Lb - 1;
    const int depth = kara_depth(La, Lb, 0, 256);
    v32u16 *work = aligned_alloc(64, workspace(La, Lb) * sizeof(v32u16));
    int64_t *zeros = calloc((size_t)(La > Lb ? La : Lb), sizeof(int64_t)); /* idle lanes' rows */
    if (work == NULL || zeros == NULL) { free(work); free(zeros); return -1; }
    v32u16 *At = work, *Bt = work + La, *Ct = Bt + Lb, *tmp = Ct + L;
    const int64_t *ra[LANES], *rb[LANES];
    for (Py_ssize_t r0 = 0; r0 < rows; r0 += LANES) {
        const Py_ssize_t nl = lane_rows(a, a_stride, b, b_stride, r0, rows, LANES, zeros, ra, rb);
        /* coefficient-major: one whole vector (cache line) written per coefficient */
        for (Py_ssize_t i = 0; i < La; i++)
            for (int l = 0; l < LANES; l++) At[i][l] = (u16)ra[l][i];
        for (Py_ssize_t j = 0; j < Lb; j++)
            for (int l = 0; l < LANES; l++) Bt[j][l] = (u16)rb[l][j];
        kara_u16(At, Bt, Ct, La, Lb, depth, tmp);
        for (Py_ssize_t k = 0; k < L; k++)
            for (Py_ssize_t l = 0; l < nl; l++) out[(r0 + l) * L + k] = Ct[k][l] & mask;
    }
    free(work);
    free(zeros);
    return 0;
}

static inline int64_t residue(int64_t v, int64_t n) /* v mod n in [0, n), any int64 v */
{
    v %= n;
    return v < 0 ? v + n : v;
}

/*
 * limbs == 1: one float64 convolution of the residues; limbs == 2: three (Karatsuba on
 * 16-bit limbs).  Returns -1 when the workspace cannot be allocated.
 */
static MULTIVERSION int mul_rows_mod(const int64_t *a, Py_ssize_t a_stride, const int64_t *b,
                                     Py_ssize_t b_stride, int64_t *out, Py_ssize_t rows,
                                     Py_ssize_t La, Py_ssize_t Lb, int64_t n, int limbs)
{
    enum { LANES = 8 };
    const Py_ssize_t L = La + Lb - 1, P = (Py_ssize_t)workspace(La, Lb);
    const int convs = limbs == 1 ? 1 : 3;
    const double dn = (double)n, inv_n = 1.0 / (double)n;
    const double v = limbs == 1 ? (double)(n - 1) : 131070.0; /* largest operand: n-1 or lo+hi */
    const int depth = kara_depth(La, Lb, v * v, 32);
    const int64_t t16 = ((int64_t)1 << 16) % n, t32 = (t16 * t16) % n;
    v8f64 *work = aligned_alloc(64, (size_t)(convs * P) * sizeof(v8f64));
    int64_t *zeros = calloc((size_t)(La > Lb ? La : Lb), sizeof(int64_t)); /* idle lanes' rows */
    if (work == NULL || zeros == NULL) { free(work); free(zeros); return -1; }
    const int64_t *ra[LANES], *rb[LANES];
    for (Py_ssize_t r0 = 0; r0 < rows; r0 += LANES) {
        const Py_ssize_t nl = lane_rows(a, a_stride, b, b_stride, r0, rows, LANES, zeros, ra, rb);
        for (int part = 0; part < 2; part++) { /* coefficient-major, one vector at a time */
            const int64_t *const *src = part ? rb : ra;
            const Py_ssize_t len = part ? Lb : La, off = part ? La : 0;
            for (Py_ssize_t i = 0; i < len; i++) {
                int64_t x[LANES], bad = 0;
                for (int l = 0; l < LANES; l++) {
                    x[l] = src[l][i];
                    bad |= (x[l] < 0) | (x[l] >= n);
                }
                if (bad) /* rare: callers usually pass residues already */
                    for (int l = 0; l < LANES; l++) x[l] = residue(x[l], n);
                if (limbs == 1) {
                    for (int l = 0; l < LANES; l++) work[off + i][l] = (double)x[l];
                } else { /* limbs x0, x1 and x0 + x1 in three workspaces */
                    for (int l = 0; l < LANES; l++) {
                        const int64_t lo = x[l] & 0xFFFF, hi = x[l] >> 16;
                        work[off + i][l] = (double)lo;
                        work[P + off + i][l] = (double)hi;
                        work[2 * P + off + i][l] = (double)(lo + hi);
                    }
                }
            }
        }
        for (int c = 0; c < convs; c++) {
            v8f64 *w = work + c * P;
            kara_f64(w, w + La, w + La + Lb, La, Lb, depth, w + La + Lb + L);
        }
        const v8f64 *C0 = work + La + Lb, *C2 = C0 + P, *Cm = C0 + 2 * P;
        for (Py_ssize_t k = 0; k < L; k++) {
            v8i64 y;
            if (limbs == 1) {
                y = vmod_f64(C0[k], dn, inv_n);
            } else { /* c2 2^32 + (cm - c0 - c2) 2^16 + c0, each part reduced first */
                const v8i64 q0 = vmod_f64(C0[k], dn, inv_n), q2 = vmod_f64(C2[k], dn, inv_n);
                const v8i64 q1 = vmod_f64(Cm[k] - C0[k] - C2[k], dn, inv_n); /* exact, >= 0 */
                const v8i64 vn = (v8i64){0} + n;
                y = vmulmod(q2, (v8i64){0} + t32, n, inv_n) + vmulmod(q1, (v8i64){0} + t16, n, inv_n) + q0;
                y -= (y >= vn) & vn; /* three residues: < 3n < 2^33 */
                y -= (y >= vn) & vn;
            }
            for (Py_ssize_t l = 0; l < nl; l++) out[(r0 + l) * L + k] = y[l];
        }
    }
    free(work);
    free(zeros);
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

/* Parse (a, b, out, modulus), check the shapes, run kernel(...) without the GIL. */
typedef int (*rows_kernel)(const int64_t *, Py_ssize_t, const int64_t *, Py_ssize_t, int64_t *,
                           Py_ssize_t, Py_ssize_t, Py_ssize_t, int64_t, int);

static int kernel_pow2(const int64_t *a, Py_ssize_t as, const int64_t *b, Py_ssize_t bs, int64_t *o,
                       Py_ssize_t rows, Py_ssize_t La, Py_ssize_t Lb, int64_t n, int limbs)
{
    (void)limbs;
    return mul_rows_u16(a, as, b, bs, o, rows, La, Lb, n - 1);
}

static PyObject *run_rows(PyObject *args, int pow2)
{
    PyObject *oa, *ob, *oo;
    long long modulus;
    if (!PyArg_ParseTuple(args, "OOOL", &oa, &ob, &oo, &modulus)) return NULL;
    if (pow2 && (modulus < 2 || modulus > 65536 || (modulus & (modulus - 1)) != 0)) {
        PyErr_Format(PyExc_ValueError, "modulus must be a power of two in [2, 65536], got %lld", modulus);
        return NULL;
    }
    if (!pow2 && (modulus < 2 || modulus >= 2147483648LL)) {
        PyErr_Format(PyExc_ValueError, "modulus must be in [2, 2^31), got %lld", modulus);
        return NULL;
    }
    Py_buffer va, vb, vo;
    if (get_rows(oa, &va, "a", 0) < 0) return NULL;
    if (get_rows(ob, &vb, "b", 0) < 0) { PyBuffer_Release(&va); return NULL; }
    if (get_rows(oo, &vo, "out", 1) < 0) { PyBuffer_Release(&va); PyBuffer_Release(&vb); return NULL; }
    const Py_ssize_t rows = vo.shape[0], La = va.shape[1], Lb = vb.shape[1];
    const Py_ssize_t ra = va.shape[0], rb = vb.shape[0];
    const double terms = (double)(La < Lb ? La : Lb), m1 = (double)(modulus - 1);
    const int limbs = terms * m1 * m1 <= 4503599627370496.0 ? 1 : 2; /* 2^52 */
    PyObject *result = NULL;
    if (La < 1 || Lb < 1)
        PyErr_SetString(PyExc_ValueError, "factors must have at least one coefficient");
    else if (vo.shape[1] != La + Lb - 1 || (ra != rows && ra != 1) || (rb != rows && rb != 1))
        PyErr_SetString(PyExc_ValueError, "shapes of a, b and out do not match");
    else if (!pow2 && limbs == 2 && terms > 262144.0)
        PyErr_Format(PyExc_ValueError, "the shorter factor has %zd > 2^18 coefficients: float64 "
                     "sums would not be exact (use the FFT)", La < Lb ? La : Lb);
    else {
        const int64_t *pa = (const int64_t *)va.buf, *pb = (const int64_t *)vb.buf;
        int64_t *po = (int64_t *)vo.buf;
        rows_kernel kernel = pow2 ? kernel_pow2 : mul_rows_mod;
        int status;
        Py_BEGIN_ALLOW_THREADS
        status = kernel(pa, ra == 1 ? 0 : La, pb, rb == 1 ? 0 : Lb, po, rows, La, Lb,
                        (int64_t)modulus, limbs);
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

PyDoc_STRVAR(mul_pow2_doc,
"mul_pow2(a, b, out, modulus)\n--\n\n"
"Write the products of the rows of a (ra, La) and b (rb, Lb) modulo a power-of-two\n"
"modulus <= 2^16 into out (rows, La+Lb-1); ra and rb equal rows or 1 (broadcast).\n"
"All three are C-contiguous int64 arrays; inputs may be any integers.");

static PyObject *mul_pow2(PyObject *self, PyObject *args) { (void)self; return run_rows(args, 1); }

PyDoc_STRVAR(mul_mod_doc,
"mul_mod(a, b, out, modulus)\n--\n\n"
"Write the products of the rows of a (ra, La) and b (rb, Lb) modulo any modulus in\n"
"[2, 2^31) into out (rows, La+Lb-1), as residues in [0, modulus); ra and rb equal rows\n"
"or 1 (broadcast).  Exact float64 sums: one limb when min(La, Lb) (modulus-1)^2 <= 2^52,\n"
"else Karatsuba on 16-bit limbs (min(La, Lb) <= 2^18).  C-contiguous int64 arrays;\n"
"inputs may be any integers.");

static PyObject *mul_mod(PyObject *self, PyObject *args) { (void)self; return run_rows(args, 0); }

static PyMethodDef methods[] = {
    {"mul_pow2", mul_pow2, METH_VARARGS, mul_pow2_doc},
    {"mul_mod", mul_mod, METH_VARARGS, mul_mod_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_ringmul",
    "Compiled batched exact products in Z_n[x], n < 2^31 (see geoalign.rings).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__ringmul(void) { return PyModule_Create(&module); }
