"""The compiled one-pass Sinkhorn iterations (geoalign/_sinkhorn.c) against the NumPy path and POT.

Every test that runs ``sinkhorn`` does it twice: with the extension and with it
removed (``_core._compiled = None``, as if built without a C compiler), which
is the NumPy-BLAS fallback; both must give the same plans, iteration counts
and convergence flags.
"""
import os

import numpy as np
import ot
import pytest
import torch
from hypothesis import given, settings, strategies as st

from geoalign.ot import _core, sinkhorn

HAVE = _core._compiled is not None
needs_kernel = pytest.mark.skipif(not HAVE, reason="geoalign._sinkhorn not built")
RTOL = {np.float64: 1e-12, np.float32: 1e-5}


def test_compiled_kernel_is_built_where_required():
    # CI sets GEOALIGN_REQUIRE_COMPILED=1: a silently failed build must not hide behind skips.
    if os.environ.get("GEOALIGN_REQUIRE_COMPILED") == "1":
        assert HAVE, "geoalign._sinkhorn was not built (C compiler or Python headers missing?)"


def _both(monkeypatch, fn):
    """``fn()`` with the compiled kernel, then with the fallback (extension removed)."""
    compiled = fn()
    monkeypatch.setattr(_core, "_compiled", None)
    fallback = fn()
    monkeypatch.undo()
    return compiled, fallback


def _problem(rng, n, m, dtype=np.float64, B=None, zero=False):
    shape = (n, m) if B is None else (B, n, m)
    X, Y = rng.normal(size=shape[:-1] + (3,)), rng.normal(size=shape[:-2] + (m, 3))
    C = ((X[..., :, None, :] - Y[..., None, :, :]) ** 2).sum(-1)
    C /= C.max()
    a = rng.random(shape[:-1]) + 0.1
    b = rng.random(shape[:-2] + (m,)) + 0.1
    if zero:
        a[..., 1] = 0.0
        b[..., -1] = 0.0
    a /= a.sum(-1, keepdims=True)
    b /= b.sum(-1, keepdims=True)
    return a.astype(dtype), b.astype(dtype), C.astype(dtype)


def _assert_plans_equal(P, Q, dtype):
    P, Q = np.asarray(P, np.float64), np.asarray(Q, np.float64)
    np.testing.assert_allclose(P, Q, rtol=RTOL[dtype], atol=RTOL[dtype] * np.abs(Q).max())


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n, m", [(60, 60), (37, 81), (81, 5), (1, 7), (6, 1), (603, 601)])  # last: > 1 MB, prefetching
def test_fixed_iterations_match_fallback_and_pot(rng, monkeypatch, dtype, n, m):
    a, b, C = _problem(rng, n, m, dtype)
    run = lambda: sinkhorn(a, b, C, 0.05, max_iter=57, tol=0.0)
    res, ref = _both(monkeypatch, run)
    assert res.plan.dtype == ref.plan.dtype == dtype
    assert res.n_iter == ref.n_iter == 57 and res.converged is ref.converged is None
    _assert_plans_equal(res.plan, ref.plan, dtype)
    pot = ot.sinkhorn(a.astype(np.float64), b.astype(np.float64), C.astype(np.float64), 0.05,
                      numItermax=57, stopThr=0.0, warn=False)
    scale = np.abs(pot).max()
    np.testing.assert_allclose(res.plan, pot, rtol=0, atol=(1e-12 if dtype == np.float64 else 1e-5) * scale)


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reg, tol", [(0.1, 1e-9), (0.01, 1e-6), (0.002, 1e-4)])
def test_tolerance_gives_same_iterations_and_flags(rng, monkeypatch, dtype, reg, tol):
    if dtype == np.float32:
        tol = max(tol, 1e-4)
    a, b, C = _problem(rng, 50, 40, dtype)
    run = lambda: sinkhorn(a, b, C, reg, max_iter=20000, tol=tol, warn=False)
    res, ref = _both(monkeypatch, run)
    assert res.n_iter == ref.n_iter and res.converged == ref.converged
    assert res.converged
    assert res.marginal_error == pytest.approx(ref.marginal_error, rel=1e-3, abs=RTOL[dtype])
    _assert_plans_equal(res.plan, ref.plan, dtype)
    # not converged within max_iter: the same flag and count on both paths
    run = lambda: sinkhorn(a, b, C, 0.002, max_iter=30, tol=1e-12, warn=False)
    res, ref = _both(monkeypatch, run)
    assert res.converged is ref.converged is False and res.n_iter == ref.n_iter == 30


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batched_equals_loop_and_fallback(rng, monkeypatch, dtype):
    A, Bm, C = _problem(rng, 33, 21, dtype, B=5)
    res, ref = _both(monkeypatch, lambda: sinkhorn(A, Bm, C, 0.02, max_iter=200, tol=0.0))
    _assert_plans_equal(res.plan, ref.plan, dtype)
    for k in range(5):
        single = sinkhorn(A[k], Bm[k], C[k], 0.02, max_iter=200, tol=0.0)
        _assert_plans_equal(res.plan[k], single.plan, dtype)
    # shared marginals for the whole batch
    res, ref = _both(monkeypatch, lambda: sinkhorn(A[0], Bm[0], C, 0.02, max_iter=100, tol=1e-7, warn=False))
    assert res.n_iter == ref.n_iter
    _assert_plans_equal(res.plan, ref.plan, dtype)


@needs_kernel
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_zero_mass_entries(rng, monkeypatch, dtype):
    a, b, C = _problem(rng, 20, 15, dtype, zero=True)
    res, ref = _both(monkeypatch, lambda: sinkhorn(a, b, C, 0.05, max_iter=5000, tol=1e-5))
    assert res.n_iter == ref.n_iter and res.converged and ref.converged
    assert np.all(res.plan[1] == 0) and np.all(res.plan[:, -1] == 0)
    _assert_plans_equal(res.plan, ref.plan, dtype)
    assert all(np.isfinite(f).all() for f in res.potentials)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_cost_errors_unchanged(monkeypatch, bad):
    C = 1 - np.eye(3)
    C[0, 1] = bad
    errors = []
    for compiled in (True, False):
        if not compiled:
            monkeypatch.setattr(_core, "_compiled", None)
        with pytest.raises(ValueError, match="C contains") as info:
            sinkhorn(None, None, C, 0.1)
        errors.append(str(info.value))
    assert errors[0] == errors[1]


def test_fallback_without_extension_solves(rng, monkeypatch):
    a, b, C = _problem(rng, 12, 9)
    monkeypatch.setattr(_core, "_compiled", None)  # as if built without a C compiler
    res = sinkhorn(a, b, C, 0.05, tol=1e-10, max_iter=5000)
    P = ot.sinkhorn(a, b, C, 0.05, numItermax=5000, stopThr=1e-12)
    np.testing.assert_allclose(res.plan, P, atol=1e-9)


@needs_kernel
@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 3), n=st.integers(1, 40), m=st.integers(1, 40), k=st.integers(0, 12),
       f32=st.booleans(), shared=st.booleans(), warm=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_iterations_match_numpy(B, n, m, k, f32, shared, warm, seed):
    # u, v after k iterations and u^T K for the final u, against the NumPy path; u^T K passed
    # in (warm) or computed; row counts around the 4-row blocks, columns around the SIMD width
    dtype = torch.float32 if f32 else torch.float64
    g = torch.Generator().manual_seed(seed)
    K = torch.rand(B, n, m, generator=g, dtype=torch.float64).add_(0.05).to(dtype)
    at = torch.rand(1 if shared else B, 1, n, generator=g, dtype=torch.float64).add_(0.1).to(dtype)
    bt = torch.rand(1 if shared else B, 1, m, generator=g, dtype=torch.float64).add_(0.1).to(dtype)
    u0 = torch.rand(B, 1, n, generator=g, dtype=torch.float64).add_(0.5).to(dtype)
    uK = (u0 @ K) if warm else None
    u, v, w = _core.compiled_iterations(u0, K, at, bt, k, uK)
    saved, _core._compiled = _core._compiled, None
    try:
        ur, vr = _core.scaling_iterations(u0, K, at, bt, k) if k else (u0, None)
    finally:
        _core._compiled = saved
    rtol = 2e-12 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(u, ur, rtol=rtol, atol=0)
    if k:
        torch.testing.assert_close(v, vr, rtol=rtol, atol=0)
    torch.testing.assert_close(w, ur @ K, rtol=rtol, atol=0)
    assert u0.data_ptr() != u.data_ptr()  # the input is not overwritten


@needs_kernel
def test_compiled_entry_point_rejects_bad_buffers():
    from geoalign import _sinkhorn

    K = np.ones((2, 3, 4))
    a, b = np.ones((1, 3)), np.ones((2, 4))
    u, v, w = np.ones((2, 3)), np.empty((2, 4)), np.empty((2, 4))
    _sinkhorn.iterate(K, a, b, u, v, w, 2, False)
    np.testing.assert_allclose(w, u @ K[0])
    with pytest.raises(ValueError, match="dtype of K"):
        _sinkhorn.iterate(K, a.astype(np.float32), b, u, v, w, 1, False)
    with pytest.raises(ValueError, match="float32 or float64"):
        _sinkhorn.iterate(K.astype(np.int64), a, b, u, v, w, 1, False)
    with pytest.raises(ValueError, match="C-contiguous 3-d"):
        _sinkhorn.iterate(K[0], a, b, u, v, w, 1, False)
    with pytest.raises((ValueError, BufferError)):
        _sinkhorn.iterate(np.ones((2, 4, 3)).transpose(0, 2, 1), a, b, u, v, w, 1, False)
    with pytest.raises(ValueError, match="shapes"):
        _sinkhorn.iterate(K, a, b, np.ones((2, 4)), v, w, 1, False)
    with pytest.raises(ValueError, match="k must be"):
        _sinkhorn.iterate(K, a, b, u, v, w, -1, False)
    u.setflags(write=False)
    with pytest.raises((ValueError, BufferError)):
        _sinkhorn.iterate(K, a, b, u, v, w, 1, False)


def test_build_names_a_skipped_optional_extension(tmp_path):
    # No working compiler: the build still succeeds (the extensions are optional) and says which
    # extension it skipped, instead of building nothing silently.
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, CC="false")
    out = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "-b", str(tmp_path / "lib"),
                          "-t", str(tmp_path / "tmp")], cwd=root, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    for name in ("geoalign._sinkhorn", "geoalign._ringmul", "geoalign._fiber"):
        assert f"WARNING: the optional extension {name} was not built" in out.stderr
    assert not list(tmp_path.rglob("*.so"))
