"""Tests for geoalign.rings: arithmetic in Z_n[x] against python-flint and SymPy.

python-flint is only asked for +, -, * with composite moduli (its division and gcd
can abort the interpreter for composite n); division/gcd references use prime n.
"""
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import geoalign.rings as rings
from geoalign.rings import HAVE_COMPILED_KERNEL, MAX_MODULUS, PolyDivMod, PolyRing, fft_error_bound
from geoalign.rings.kernels import _limb_plan

flint = pytest.importorskip("flint")
sympy = pytest.importorskip("sympy")

SPECIAL_MODULI = [2, 3, 17, 256, 30522, 65536, 65537, 2**30, 2**31 - 1, 2**31 - 2]
moduli = st.one_of(st.sampled_from(SPECIAL_MODULI), st.integers(2, MAX_MODULUS - 1))
PRIMES = [2, 3, 17, 65537, 2**31 - 1]
needs_kernel = pytest.mark.skipif(not HAVE_COMPILED_KERNEL, reason="geoalign._ringmul not built")


def simd_applies(n):
    return HAVE_COMPILED_KERNEL  # every modulus n < 2^31 since the general-modulus kernel


def flint_mul(a, b, n):
    c = flint.nmod_poly([int(v) for v in a], n) * flint.nmod_poly([int(v) for v in b], n)
    return [int(v) for v in c.coeffs()]


def as_list(P):
    """Coefficient list without trailing zeros (flint's convention)."""
    v = [int(x) for x in np.asarray(P)]
    while v and v[-1] == 0:
        v.pop()
    return v


def sympy_poly(coeffs, n):
    x = sympy.Symbol("x")
    return sympy.Poly([int(c) for c in reversed(list(coeffs))], x, modulus=n)


def sympy_coeffs(p, n, length):
    """Coefficients of a SymPy Poly mod n (SymPy shows symmetric representatives), lowest first."""
    c = [int(v) % n for v in reversed(p.all_coeffs())]
    return c + [0] * (length - len(c))


# --------------------------------------------------------------------------- construction
def test_modulus_validation():
    for bad in (0, 1, -5, 2**31, 2**40):
        with pytest.raises(ValueError, match="modulus"):
            PolyRing(bad)
    for bad in (2.0, "256", None, True):
        with pytest.raises(TypeError, match="modulus"):
            PolyRing(bad)
    assert PolyRing(2**31 - 1).n == 2**31 - 1
    assert PolyRing(17).is_prime and PolyRing(17).is_field
    assert not PolyRing(256).is_prime and not PolyRing(30522).is_field
    assert PolyRing(2**31 - 1).is_prime and not PolyRing(2**31 - 2).is_prime


def test_is_prime_matches_sympy():
    rng = np.random.default_rng(0)
    for n in list(range(2, 400)) + [int(v) for v in rng.integers(2, MAX_MODULUS, 200)]:
        assert PolyRing(n).is_prime == sympy.isprime(n), n


def test_element_validation():
    R = PolyRing(256)
    np.testing.assert_array_equal(R.element([[1, 255]]), [[1, 255]])
    assert R.validate(np.array([3], dtype=np.uint8)).dtype == np.int64
    with pytest.raises(ValueError, match=r"\[0, 256\).*256 at index \(1,\)"):
        R.element([0, 256])
    with pytest.raises(ValueError, match="-1"):
        R.element(torch.tensor([[-1, 2]]))
    with pytest.raises(TypeError, match="integer dtype, got float64"):
        R.element(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="NaN"):
        R.mul(np.array([1.0, np.nan]), [1])
    with pytest.raises(TypeError, match="Q must have an integer dtype"):
        R.add([1], torch.tensor([1.5]))
    with pytest.raises(TypeError, match="integer dtype"):
        R.mul(np.array([True, False]), [1])
    with pytest.raises(ValueError, match="at least 1 dimension"):
        R.mul(np.int64(3), [1])
    with pytest.raises(ValueError, match="at least one coefficient"):
        R.add(np.zeros((2, 0), dtype=np.int64), [1])


def test_device_mismatch_is_reported():
    R = PolyRing(17)
    a = torch.zeros(2, 3, dtype=torch.int64)
    b = torch.zeros(2, 3, dtype=torch.int64, device="meta")
    with pytest.raises(ValueError, match="same device"):
        R.mul(a, b)


def test_arithmetic_reduces_any_integers():
    R = PolyRing(7)
    np.testing.assert_array_equal(R.reduce([-1, 7, 15, -15]), [6, 0, 1, 6])
    np.testing.assert_array_equal(R.add([-1, 20], [1]), [0, 6])
    big = np.array([2**64 - 1], dtype=np.uint64)  # reduced in uint64 before the int64 cast
    assert int(R.reduce(big)[0]) == (2**64 - 1) % 7


# --------------------------------------------------------------------------- multiplication
@given(n=moduli, la=st.integers(1, 301), lb=st.integers(1, 301), batch=st.integers(1, 3),
       seed=st.integers(0, 2**32 - 1), method=st.sampled_from(["auto", "simd", "fft", "direct"]))
def test_mul_matches_flint(n, la, lb, batch, seed, method):
    R = PolyRing(n)
    rng = np.random.default_rng(seed)
    A = rng.integers(0, n, (batch, la))
    B = rng.integers(0, n, (batch, lb))
    if method == "simd" and not simd_applies(n):
        with pytest.raises(ValueError, match="method='simd' is not available"):
            R.mul(A, B, method=method)
        return
    C = R.mul(A, B, method=method)
    assert C.shape == (batch, la + lb - 1) and C.dtype == np.int64
    for i in range(batch):
        assert as_list(C[i]) == flint_mul(A[i], B[i], n)


@pytest.mark.parametrize("n", [256, 30522, 2**31 - 1, 2**31 - 2, 3])
@pytest.mark.parametrize("length", [256, 2048])
def test_mul_worst_case_magnitudes_exact(n, length):
    # All coefficients n-1 maximise every convolution sum: the hardest case for rounding.
    R = PolyRing(n)
    A = np.full((2, length), n - 1)
    A[1, ::3] = n // 2
    B = np.full((1, length), n - 1)
    C = R.mul(A, B, method="fft")
    for i in range(2):
        assert as_list(C[i]) == flint_mul(A[i], B[0], n)


@settings(max_examples=10)
@given(n=moduli, la=st.integers(1, 120), lb=st.integers(1, 120), seed=st.integers(0, 2**32 - 1))
def test_mul_matches_sympy(n, la, lb, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, n, la), rng.integers(0, n, lb)
    ref = sympy_poly(a, n) * sympy_poly(b, n)
    np.testing.assert_array_equal(PolyRing(n).mul(a, b), sympy_coeffs(ref, n, la + lb - 1))


def test_mul_broadcasting_and_one_to_many():
    R = PolyRing(2**31 - 1)
    A = R.random((3, 1), 40, seed=1)
    B = R.random((1, 4), 25, seed=2)
    C = R.mul(A, B)
    assert C.shape == (3, 4, 66)
    for i in range(3):
        for j in range(4):
            assert as_list(C[i, j]) == flint_mul(A[i, 0], B[0, j], R.n)
    single = R.random((), 30, seed=3)
    many = R.random((50,), 30, seed=4)
    np.testing.assert_array_equal(R.mul(single, many), R.mul(np.broadcast_to(single, many.shape), many))
    np.testing.assert_array_equal(R.mul(many, single, method="fft"), R.mul(many, single, method="direct"))


# --------------------------------------------------------------------------- compiled kernel
def test_compiled_kernel_is_built_where_required():
    # CI sets GEOALIGN_REQUIRE_COMPILED=1: a silently failed build must not hide behind skips.
    if os.environ.get("GEOALIGN_REQUIRE_COMPILED") == "1":
        assert HAVE_COMPILED_KERNEL, "geoalign._ringmul was not built (C compiler or Python headers missing?)"


@needs_kernel
@settings(max_examples=40)
@given(e=st.integers(1, 16), la=st.integers(1, 300), lb=st.integers(1, 300), batch=st.integers(1, 70),
       seed=st.integers(0, 2**32 - 1))
def test_simd_matches_flint_for_any_integers(e, la, lb, batch, seed):
    # Any int64 inputs (negative, >= n): residues mod 2^16 wrap exactly; batch sizes cross
    # the 32 SIMD lanes (partial last block).
    n = 2**e
    rng = np.random.default_rng(seed)
    A = rng.integers(-2**62, 2**62, (batch, la))
    B = rng.integers(-2**62, 2**62, (batch, lb))
    C = PolyRing(n).mul(A, B, method="simd")
    assert C.shape == (batch, la + lb - 1) and C.dtype == np.int64
    for i in range(0, batch, 7):
        assert as_list(C[i]) == flint_mul(A[i] % n, B[i] % n, n)
    np.testing.assert_array_equal(C, PolyRing(n).mul(A, B, method="fft"))


@needs_kernel
@pytest.mark.parametrize("n", [2, 256, 65536])
def test_simd_worst_case_and_dtypes(n):
    R = PolyRing(n)
    A = np.full((40, 256), n - 1)  # every product and sum at its largest
    ref = [flint_mul(A[0], A[0], n)]
    C = R.mul(A, A, method="simd")
    assert all(as_list(c) == ref[0] for c in C)
    u8 = np.random.default_rng(0).integers(0, 256, (33, 64)).astype(np.uint8)  # images' dtype
    np.testing.assert_array_equal(R.mul(u8, u8, method="simd"), R.mul(u8.astype(np.int64), u8, method="direct"))


@needs_kernel
def test_simd_broadcasting_threads_and_torch():
    R1, R3 = PolyRing(256, num_threads=1), PolyRing(256, num_threads=3)
    A = R1.random((3, 1), 40, seed=1)
    B = R1.random((1, 4), 25, seed=2)
    C = R1.mul(A, B, method="simd")
    assert C.shape == (3, 4, 66)
    np.testing.assert_array_equal(C, R1.mul(A, B, method="direct"))
    single, many = R1.random((), 300, seed=3), R1.random((1000,), 200, seed=4)
    ref = R1.mul(many, single, method="fft")
    np.testing.assert_array_equal(R1.mul(many, single, method="simd"), ref)
    np.testing.assert_array_equal(R3.mul(single, many, method="simd"), ref)  # row chunks on threads
    got = R3.mul(torch.from_numpy(many), torch.from_numpy(single))
    assert isinstance(got, torch.Tensor) and got.dtype == torch.int64
    np.testing.assert_array_equal(got.numpy(), ref)
    assert R1.mul(np.zeros((0, 5), np.int64), np.ones((0, 3), np.int64), method="simd").shape == (0, 7)


@pytest.mark.parametrize("n", [256, 30522, 2**31 - 1])
def test_simd_unavailable_is_explained(monkeypatch, n):
    R = PolyRing(n)
    A = R.random(5, 40, seed=0)
    if HAVE_COMPILED_KERNEL:  # an extension built before the general-modulus kernel
        monkeypatch.setattr(rings.ring, "_ringmul", type("Old", (), {"mul_pow2": rings.ring._ringmul.mul_pow2}))
        if n == 256:
            np.testing.assert_array_equal(R.mul(A, A, method="simd"), R.mul(A, A, method="direct"))
        else:
            with pytest.raises(ValueError, match="predates its general-modulus kernel"):
                R.mul(A, A, method="simd")
            np.testing.assert_array_equal(R.mul(A, A), R.mul(A, A, method="fft"))
    monkeypatch.setattr(rings.ring, "_ringmul", None)  # as if built without a C compiler
    with pytest.raises(ValueError, match="was not built"):
        R.mul([1, 2], [3, 4], method="simd")
    # the fallback (FFT / direct) still multiplies exactly
    np.testing.assert_array_equal(R.mul(A, A), [flint_mul(a, a, n) + [0] * (79 - len(flint_mul(a, a, n)))
                                                for a in A])


@needs_kernel
@settings(max_examples=60)
@given(n=moduli, la=st.integers(1, 300), lb=st.integers(1, 300), batch=st.integers(1, 20),
       seed=st.integers(0, 2**32 - 1), equal=st.booleans(), wild=st.booleans())
def test_general_modulus_kernel_matches_flint(n, la, lb, batch, seed, equal, wild):
    # Both limb regimes (n below / above 2^22 at these lengths), Karatsuba depths 0-3 (equal
    # lengths), partial last blocks of the 8 float64 lanes, and any int64 inputs (wild).
    lb = la if equal else lb
    rng = np.random.default_rng(seed)
    lo, hi = (-2**62, 2**62) if wild else (0, n)
    A, B = rng.integers(lo, hi, (batch, la)), rng.integers(lo, hi, (batch, lb))
    A[0], B[-1] = n - 1, n - 1  # worst-case magnitudes in some rows
    out = np.empty((batch, la + lb - 1), np.int64)
    rings.ring._ringmul.mul_mod(A, B, out, n)
    for i in range(batch):
        assert as_list(out[i]) == flint_mul(A[i] % n, B[i] % n, n)


@needs_kernel
@pytest.mark.parametrize("n", [3, 30522, 2**22 + 1, 2**22 + 2, 2**31 - 1, 2**31 - 2])
@pytest.mark.parametrize("length", [255, 256, 1024])
def test_general_modulus_kernel_worst_case(n, length):
    # All coefficients n - 1 maximise every float64 sum: 2^22 + 1 is the largest modulus with
    # one limb at length 256 (256 (n-1)^2 = 2^52), 2^22 + 2 the smallest with two.
    A = np.full((9, length), n - 1)
    A[1, ::3] = n // 2
    C = PolyRing(n).mul(A, A, method="simd")
    for i in (0, 1, 8):
        assert as_list(C[i]) == flint_mul(A[i], A[i], n)


@needs_kernel
@settings(max_examples=10)
@given(n=moduli, la=st.integers(1, 80), seed=st.integers(0, 2**32 - 1))
def test_general_modulus_kernel_matches_sympy(n, la, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, n, la), rng.integers(0, n, la)
    ref = sympy_poly(a, n) * sympy_poly(b, n)
    np.testing.assert_array_equal(PolyRing(n).mul(a, b, method="simd"), sympy_coeffs(ref, n, 2 * la - 1))


@needs_kernel
def test_kernel_checks_its_arguments():
    from geoalign import _ringmul

    a, out = np.zeros((4, 3), np.int64), np.zeros((4, 5), np.int64)
    _ringmul.mul_pow2(a, a, out, 256)
    with pytest.raises(ValueError, match="power of two"):
        _ringmul.mul_pow2(a, a, out, 255)
    with pytest.raises(ValueError, match="int64"):
        _ringmul.mul_pow2(a.astype(np.int32), a, out, 256)
    with pytest.raises(ValueError, match="do not match"):
        _ringmul.mul_pow2(a, a, np.zeros((4, 6), np.int64), 256)
    with pytest.raises(ValueError, match="do not match"):
        _ringmul.mul_pow2(a[:2], a, out, 256)
    _ringmul.mul_mod(a, a, out, 30522)
    for bad in (1, 2**31):
        with pytest.raises(ValueError, match=r"modulus must be in \[2, 2\^31\)"):
            _ringmul.mul_mod(a, a, out, bad)
    with pytest.raises(ValueError, match="do not match"):
        _ringmul.mul_mod(a, a, np.zeros((4, 6), np.int64), 30522)
    with pytest.raises(ValueError, match="int64"):
        _ringmul.mul_mod(a, a.astype(np.float64), out, 30522)
    long = np.zeros((1, 2**18 + 1), np.int64)
    with pytest.raises(ValueError, match="2\\^18 coefficients"):
        _ringmul.mul_mod(long, long, np.zeros((1, 2**19 + 1), np.int64), 2**31 - 1)


def test_mul_blocks_and_threads_agree():
    R1, R2 = PolyRing(30522, num_threads=1), PolyRing(30522, num_threads=2)
    A, B = R1.random(700, 255, seed=5), R1.random(700, 200, seed=6)  # several blocks
    C = R1.mul(A, B, method="fft")
    np.testing.assert_array_equal(C, R2.mul(A, B, method="fft"))
    np.testing.assert_array_equal(C[:20], R1.mul(A[:20], B[:20], method="direct"))


def test_zero_divisors_composite():
    R = PolyRing(256)
    np.testing.assert_array_equal(R.mul([16], [16]), [0])
    np.testing.assert_array_equal(R.mul([0, 16], [0, 0, 16]), [0, 0, 0, 0])  # 16x * 16x^2 = 0
    assert as_list(R.mul([2, 128], [128])) == []  # (2 + 128x) * 128 = 0
    assert not R.is_unit(np.array([16])).any()


def test_limb_plan_and_error_bound():
    assert _limb_plan(256, 256, 256, 512) == (8, 1)
    assert _limb_plan(30522, 256, 256, 512) == (15, 1)
    assert _limb_plan(2**31 - 1, 256, 256, 512) == (16, 2)
    b, k = _limb_plan(2**31 - 1, 50_000, 50_000, 131072)
    assert k >= 3 and fft_error_bound(k, 50_000, 50_000, b, 131072) <= 0.125
    assert fft_error_bound(1, 256, 256, 31, 512) > 0.5  # one 31-bit limb would not be exact


# --------------------------------------------------------------------------- ring axioms
@given(n=moduli, seed=st.integers(0, 2**32 - 1), la=st.integers(1, 40), lb=st.integers(1, 40),
       lc=st.integers(1, 40))
def test_ring_axioms(n, seed, la, lb, lc):
    R = PolyRing(n)
    rng = np.random.default_rng(seed)
    P, Q, S = (rng.integers(0, n, (2, L)) for L in (la, lb, lc))

    def eq(X, Y):
        L = max(X.shape[-1], Y.shape[-1])
        np.testing.assert_array_equal(R.truncate(X, L), R.truncate(Y, L))

    eq(R.add(P, Q), R.add(Q, P))
    eq(R.add(R.add(P, Q), S), R.add(P, R.add(Q, S)))
    eq(R.mul(P, Q), R.mul(Q, P))
    eq(R.mul(R.mul(P, Q), S), R.mul(P, R.mul(Q, S)))
    eq(R.mul(P, R.add(Q, S)), R.add(R.mul(P, Q), R.mul(P, S)))
    eq(R.mul(P, [1]), P)
    eq(R.add(P, [0]), P)
    eq(R.add(P, R.neg(P)), np.zeros((2, 1), dtype=np.int64))
    eq(R.sub(P, Q), R.add(P, R.neg(Q)))
    c = rng.integers(0, n, 2)
    eq(R.scalar_mul(c, P), R.mul(P, c[:, None]))


# --------------------------------------------------------------------------- other operations
def test_evaluate_horner():
    rng = np.random.default_rng(1)
    for n in (256, 30522, 2**31 - 1):
        R = PolyRing(n)
        P = R.random((4,), 30, seed=int(rng.integers(1 << 30)))
        x = rng.integers(0, n, (4,))
        vals = R.evaluate(P, x)
        for i in range(4):
            assert int(vals[i]) == sum(int(c) * pow(int(x[i]), j, n) for j, c in enumerate(P[i])) % n
        grid = R.evaluate(P[:, None, :], np.arange(5))  # broadcast: (4, 1) with (5,)
        assert grid.shape == (4, 5)
        assert int(grid[2, 3]) == int(R.evaluate(P[2], 3))


def test_truncate_and_cyclic():
    R = PolyRing(10)
    P = np.array([1, 2, 3, 4, 5, 6, 7])
    np.testing.assert_array_equal(R.truncate(P, 3), [1, 2, 3])
    np.testing.assert_array_equal(R.truncate(P, 9), [1, 2, 3, 4, 5, 6, 7, 0, 0])
    np.testing.assert_array_equal(R.cyclic(P, 3), [(1 + 4 + 7) % 10, (2 + 5) % 10, (3 + 6) % 10])
    # cyclic multiplication agrees with SymPy's reduction mod x^N - 1
    rng = np.random.default_rng(2)
    N = 16
    x = sympy.Symbol("x")
    for n in (2**31 - 1, 2**31 - 2):
        R = PolyRing(n)
        a, b = rng.integers(0, n, 40), rng.integers(0, n, 33)
        if R.is_prime:  # SymPy's rem needs a field
            ref = sympy_coeffs((sympy_poly(a, n) * sympy_poly(b, n)).rem(
                sympy.Poly(x**N - 1, x, modulus=n)), n, N)
        else:  # fold flint's product by hand: x^i -> x^(i mod N)
            ref = [0] * N
            for i, c in enumerate(flint_mul(a, b, n)):
                ref[i % N] = (ref[i % N] + c) % n
        np.testing.assert_array_equal(R.cyclic_mul(a, b, N), ref)
        np.testing.assert_array_equal(R.mul_truncated(a, b, N), R.mul(a, b)[:N])


def test_degree_and_trim():
    R = PolyRing(5)
    P = np.array([[1, 0, 5, 0], [0, 0, 0, 10], [3, 2, 0, 0]])
    np.testing.assert_array_equal(R.degree(P), [0, -1, 1])
    np.testing.assert_array_equal(R.trim(P), [[1, 0], [0, 0], [3, 2]])
    np.testing.assert_array_equal(R.trim(np.zeros((2, 3), dtype=np.int64)), [[0], [0]])


def test_units_and_inverse():
    R = PolyRing(256)
    a = np.arange(256)
    np.testing.assert_array_equal(R.is_unit(a), a % 2 == 1)
    odd = a[1::2]
    np.testing.assert_array_equal(R.inverse(odd), [pow(int(v), -1, 256) for v in odd])
    with pytest.raises(ValueError, match=r"element 16 .*not a unit of Z_256: gcd\(16, 256\) = 16"):
        R.inverse(np.array([3, 16, 5]))
    with pytest.raises(ValueError, match="element 0"):
        PolyRing(17).inverse(0)
    R = PolyRing(30522)
    vals = np.random.default_rng(3).integers(0, 30522, 500)
    units = vals[np.gcd(vals, 30522) == 1]
    np.testing.assert_array_equal(R.is_unit(vals), np.gcd(vals, 30522) == 1)
    np.testing.assert_array_equal(R.mul(R.inverse(units)[:, None], units[:, None])[:, 0], 1)
    assert int(PolyRing(2**31 - 1).inverse(np.int64(2**31 - 2))) == 2**31 - 2


@settings(max_examples=25)
@given(n=moduli, seed=st.integers(0, 2**32 - 1), la=st.integers(1, 60), lb=st.integers(1, 30))
def test_divmod_identity_any_modulus(n, seed, la, lb):
    R = PolyRing(n)
    rng = np.random.default_rng(seed)
    A = rng.integers(0, n, (3, la))
    B = rng.integers(0, n, (3, lb))
    B[:, -1] = 1  # unit leading coefficient; rows get different degrees below
    B[1, -1] = 0
    B[1, max(lb - 2, 0)] = n - 1
    B[2, :] = 0
    B[2, 0] = 1 if n == 2 else 3 - (n % 3 == 0)  # a unit constant
    if int(np.gcd(B[2, 0], n)) != 1:
        B[2, 0] = 1
    res = R.divmod(A, B)
    assert isinstance(res, PolyDivMod)
    q, r = res
    degB = R.degree(B)
    for i in range(3):
        if degB[i] == 0:
            assert as_list(r[i]) == []
        else:
            assert R.degree(r[i]) < degB[i]
    recon = R.add(R.mul(q, B), r)
    L = max(recon.shape[-1], la)
    np.testing.assert_array_equal(R.truncate(recon, L), R.truncate(A, L))


@pytest.mark.parametrize("n", PRIMES)
def test_divmod_and_gcd_match_flint_prime(n):
    R = PolyRing(n)
    rng = np.random.default_rng(n % 1000)
    for _ in range(6):
        la, lb = int(rng.integers(1, 50)), int(rng.integers(1, 30))
        a, b = rng.integers(0, n, la), rng.integers(0, n, lb)
        b[-1] = int(rng.integers(1, n))
        fa, fb = flint.nmod_poly([int(v) for v in a], n), flint.nmod_poly([int(v) for v in b], n)
        fq, fr = divmod(fa, fb)
        q, r = R.divmod(a, b)
        assert as_list(q) == [int(v) for v in fq.coeffs()]
        assert as_list(r) == [int(v) for v in fr.coeffs()]
        # gcd with a planted common factor
        c = rng.integers(0, n, 4)
        c[-1] = 1
        g = R.gcd(R.mul(a, c), R.mul(b, c))
        ref = (fa * flint.nmod_poly([int(v) for v in c], n)).gcd(fb * flint.nmod_poly([int(v) for v in c], n))
        assert as_list(g) == [int(v) for v in ref.coeffs()]


def test_gcd_matches_sympy_and_edge_cases():
    n = 17
    R = PolyRing(n)
    x = sympy.Symbol("x")
    a, b = [1, 0, 0, 1], [16, 0, 1]  # x^3 + 1 and x^2 - 1 share x + 1
    ref = sympy.gcd(sympy_poly(a, n), sympy_poly(b, n))
    np.testing.assert_array_equal(R.gcd(a, b)[:2], sympy_coeffs(ref, n, 2))
    np.testing.assert_array_equal(R.gcd(a, b), [1, 1, 0, 0])
    np.testing.assert_array_equal(R.gcd([0], [0, 0]), [0, 0])
    np.testing.assert_array_equal(R.gcd([0, 0, 5], [0]), [0, 0, 1])  # monic
    batch = R.gcd(np.array([a, a]), np.array([b, [3, 0, 0]]))
    np.testing.assert_array_equal(batch, [[1, 1, 0, 0], [1, 0, 0, 0]])
    assert sympy.Poly(x + 1, x, modulus=n) == ref


def test_division_errors():
    R = PolyRing(256)
    with pytest.raises(ValueError, match="leading coefficient 2 of divisor B.*not a unit of Z_256"):
        R.divmod([1, 2, 3], [1, 2])
    with pytest.raises(ZeroDivisionError, match="zero polynomial"):
        R.divmod([1, 2, 3], [0, 256])
    with pytest.raises(ValueError, match="gcd requires a prime modulus.*not a Euclidean domain"):
        R.gcd([1, 2], [3, 4])
    q, r = R.divmod([5, 0, 0, 1], [0, 3, 255])  # leading 255 = -1 is a unit
    np.testing.assert_array_equal(R.add(R.mul(q, [0, 3, 255]), r)[:4], [5, 0, 0, 1])


def test_random_reproducible_and_in_range():
    R = PolyRing(30522)
    P = R.random((3, 4), 10, seed=7)
    assert P.shape == (3, 4, 11) and P.dtype == np.int64
    assert P.min() >= 0 and P.max() < 30522
    np.testing.assert_array_equal(P, R.random((3, 4), 10, seed=7))
    T = R.random((3, 4), 10, seed=7, device="cpu")
    assert isinstance(T, torch.Tensor)
    np.testing.assert_array_equal(T.numpy(), P)
    with pytest.raises(ValueError, match="degree"):
        R.random(3, -1)


# --------------------------------------------------------------------------- torch == numpy
@pytest.mark.parametrize("n", [256, 30522, 2**31 - 1])
def test_torch_matches_numpy(n):
    R = PolyRing(n)
    A, B = R.random((5,), 70, seed=1), R.random((5,), 33, seed=2)
    At, Bt = torch.from_numpy(A), torch.from_numpy(B)
    x = np.arange(5) * 12345
    pairs = [
        (R.mul(A, B), R.mul(At, Bt)),
        (R.mul(A, B, method="direct"), R.mul(At, Bt, method="direct")),
        (R.mul(A, B), R.mul(At, B)),  # mixed kinds -> torch
        (R.add(A, B), R.add(At, Bt)),
        (R.sub(A, B), R.sub(At, Bt)),
        (R.neg(A), R.neg(At)),
        (R.scalar_mul(x, A), R.scalar_mul(torch.from_numpy(x), At)),
        (R.evaluate(A, x), R.evaluate(At, torch.from_numpy(x))),
        (R.truncate(A, 10), R.truncate(At, 10)),
        (R.cyclic(A, 9), R.cyclic(At, 9)),
        (R.cyclic_mul(A, B, 9), R.cyclic_mul(At, Bt, 9)),
        (R.degree(A), R.degree(At)),
        (R.trim(A), R.trim(At)),
        (R.reduce(A - n), R.reduce(At - n)),
        (R.is_unit(A[:, 0]), R.is_unit(At[:, 0])),
    ]
    B[:, -1] = 1  # unit leading coefficient for division
    Bt = torch.from_numpy(B)
    pairs.append((R.divmod(A, B).quotient, R.divmod(At, Bt).quotient))
    pairs.append((R.divmod(A, B).remainder, R.divmod(At, Bt).remainder))
    if R.is_prime:
        pairs.append((R.gcd(A, B), R.gcd(At, Bt)))
    for ref, got in pairs:
        assert isinstance(got, torch.Tensor)
        np.testing.assert_array_equal(got.cpu().numpy(), ref)
