"""The compiled kernels of geoalign.fiber (``geoalign._fiber``) and their NumPy fallback.

The join must give the same pairs and bit-identical distances with and without the
extension, and both must agree with brute force, ties at ``dist == eps`` included.
"""
import functools
import math
import operator
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import cdist

import geoalign.fiber as fiber
from geoalign.fiber import fiber_counts, fiber_product, pair_distances

needs_kernel = pytest.mark.skipif(fiber._fiber is None, reason="geoalign._fiber not built")


def with_and_without_kernel(monkeypatch, fn):
    """``fn()`` with the compiled kernels (when built) and with the NumPy fallback."""
    compiled = fn()
    with monkeypatch.context() as mp:
        mp.setattr(fiber, "_fiber", None)  # as if built without a C compiler
        fallback = fn()
    return compiled, fallback


def assert_same_join(a, b):
    np.testing.assert_array_equal(a.pairs, b.pairs)
    assert a.distances.tobytes() == b.distances.tobytes()  # bit for bit


def test_compiled_kernel_is_built_where_required():
    # CI sets GEOALIGN_REQUIRE_COMPILED=1: a silently failed build must not hide behind skips.
    if os.environ.get("GEOALIGN_REQUIRE_COMPILED") == "1":
        assert fiber._fiber is not None, "geoalign._fiber was not built (C compiler or Python headers missing?)"


# --------------------------------------------------------------------------- exact distances
@pytest.mark.parametrize("d", [0, 1, 5, 8, 13, 64, 67, 129, 256, 300, 1000])
@pytest.mark.parametrize("dtypes", [(np.float32, np.float32), (np.float32, np.float64),
                                    (np.float64, np.float32), (np.float64, np.float64)])
def test_squared_distances_are_numpys_pairwise_sums(rng, d, dtypes):
    # wide dynamic range, so that any other summation order would round differently
    ex = (rng.normal(size=(9, d)) * np.exp(rng.normal(size=(9, d)) * 4)).astype(dtypes[0])
    ey = (rng.normal(size=(7, d)) * np.exp(rng.normal(size=(7, d)) * 4)).astype(dtypes[1])
    ii, jj = rng.integers(0, 9, 40), rng.integers(0, 7, 40)
    diff = ex[ii].astype(np.float64) - ey[jj].astype(np.float64)
    want = np.add.reduce(diff * diff, axis=1)
    norms = np.linalg.norm(diff, axis=1)
    assert np.sqrt(want).tobytes() == norms.tobytes()
    got = np.full(40, np.nan)
    fiber._sqdist_numpy(ex, ey, ii, jj, got)
    assert got.tobytes() == want.tobytes()
    if fiber._fiber is not None:
        compiled = np.full(40, np.nan)
        fiber._fiber.sqdist(ex, ey, ii, jj, compiled)
        assert compiled.tobytes() == want.tobytes()
    if d > 16:  # the check can fail: a plain left-to-right sum differs somewhere
        seq = np.array([functools.reduce(operator.add, map(float, row)) for row in diff * diff])
        assert seq.tobytes() != want.tobytes()


@needs_kernel
def test_sqdist_bad_input():
    ex, ey = np.ones((3, 4), np.float32), np.ones((2, 4), np.float64)
    ii, jj, out = np.zeros(2, np.int64), np.zeros(2, np.int64), np.empty(2)
    with pytest.raises(IndexError, match="out of range"):
        fiber._fiber.sqdist(ex, ey, ii, np.array([0, 2]), out)
    with pytest.raises(IndexError, match="out of range"):
        fiber._fiber.sqdist(ex, ey, np.array([-1, 0]), jj, out)
    with pytest.raises(ValueError, match="same number of columns"):
        fiber._fiber.sqdist(ex, np.ones((2, 5)), ii, jj, out)
    with pytest.raises(ValueError, match="same length"):
        fiber._fiber.sqdist(ex, ey, ii, jj, np.empty(3))
    with pytest.raises(ValueError, match="ex must be a C-contiguous 2-d float32 or float64"):
        fiber._fiber.sqdist(ex.astype(np.int32), ey, ii, jj, out)
    with pytest.raises(ValueError, match="ii must be a C-contiguous 1-d int64"):
        fiber._fiber.sqdist(ex, ey, ii.astype(np.int32), jj, out)
    with pytest.raises(ValueError, match="ey must be a C-contiguous"):
        fiber._fiber.sqdist(ex, np.ones((4, 2)).T, ii, jj, out)
    readonly = np.empty(2)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="out must be a C-contiguous, writable 1-d float64"):
        fiber._fiber.sqdist(ex, ey, ii, jj, readonly)


# --------------------------------------------------------------------------- threshold pass
@needs_kernel
@pytest.mark.parametrize("shape", [(0, 5), (3, 0), (1, 1), (7, 63), (5, 64), (4, 200), (33, 129)])
def test_select_matches_numpy(rng, shape):
    rb, cb = shape
    g = rng.normal(size=shape).astype(np.float32)
    ny = rng.uniform(0, 2, size=cb).astype(np.float32)
    thr = rng.normal(size=rb).astype(np.float32)
    if rb and cb:  # exact ties: thr[i] equal to an entry of its row
        i, j = rng.integers(0, rb), rng.integers(0, cb)
        thr[i] = ny[j] - np.float32(2) * g[i, j]
    value = ny[None, :] - np.float32(2) * g  # float32 arithmetic: 2 g exact, one rounding
    assert value.dtype == np.float32
    want = np.flatnonzero(value <= thr[:, None])
    out = np.full(rb * cb + 1, -1, np.int64)
    k = fiber._fiber.select(g, ny, thr, out)
    assert k == len(want)
    np.testing.assert_array_equal(out[:k], want)
    # too short an output: the first len(out) hits are written, the total is returned
    short = np.full(max(0, k // 2), -1, np.int64)
    assert fiber._fiber.select(g, ny, thr, short) == k
    np.testing.assert_array_equal(short, want[:len(short)])


@needs_kernel
def test_select_bad_input():
    g, ny, thr, out = np.zeros((2, 3), np.float32), np.zeros(3, np.float32), np.zeros(2, np.float32), \
        np.empty(6, np.int64)
    with pytest.raises(ValueError, match="ny needs 3 and thr 2 entries"):
        fiber._fiber.select(g, ny[:2], thr, out)
    with pytest.raises(ValueError, match="ny needs 3 and thr 2 entries"):
        fiber._fiber.select(g, ny, thr[:1], out)
    with pytest.raises(ValueError, match="g must be a C-contiguous 2-d float32"):
        fiber._fiber.select(g.astype(np.float64), ny, thr, out)
    with pytest.raises(ValueError, match="g must be a C-contiguous"):
        fiber._fiber.select(np.zeros((3, 2), np.float32).T, ny, thr, out)
    with pytest.raises(ValueError, match="out must be a C-contiguous 1-d int64"):
        fiber._fiber.select(g, ny, thr, out.astype(np.int32))
    with pytest.raises(TypeError):
        fiber._fiber.select(g, ny, thr)


# --------------------------------------------------------------------------- joins
@pytest.mark.parametrize("metric", ["euclidean", "cosine", "geodesic"])
@pytest.mark.parametrize("dtypes", [(np.float32, np.float32), (np.float32, np.float64),
                                    (np.float64, np.float64)])
@pytest.mark.parametrize("block_size", [None, (7, 65), (64, 5)])
def test_join_identical_without_the_kernel(rng, monkeypatch, metric, dtypes, block_size):
    X = rng.normal(size=(150, 20)).astype(dtypes[0])
    Y = rng.normal(size=(130, 20)).astype(dtypes[1])
    idx = np.arange(len(X))
    D = np.stack([pair_distances(X[idx], np.broadcast_to(Y[j], X.shape), metric) for j in range(len(Y))], 1)
    eps = float(np.quantile(D, 0.03))
    a, b = with_and_without_kernel(monkeypatch, lambda: fiber_product(X, Y, eps, metric, block_size=block_size))
    assert_same_join(a, b)
    np.testing.assert_array_equal(a.pairs, np.argwhere(D <= eps))
    assert a.distances.tobytes() == D[D <= eps].tobytes()  # the defining distances, bit for bit
    ref = cdist(X.astype(np.float64), Y.astype(np.float64)) if metric == "euclidean" else None
    if ref is not None:
        np.testing.assert_allclose(a.distances, ref[D <= eps], rtol=1e-13)


def test_near_ties_under_float32_rounding(rng, monkeypatch):
    # a large common offset makes the float32 expansion ||x||^2 + ||y||^2 - 2<x, y> noise at the
    # scale of eps: the filter must still keep every pair with dist <= eps, and the exact
    # distances decide ties.  eps is set to the exact distance of chosen pairs.
    base = np.full(48, 500.0)
    X = (base + rng.normal(scale=0.02, size=(90, 48))).astype(np.float32)
    Y = (base + rng.normal(scale=0.02, size=(80, 48))).astype(np.float32)
    D = cdist(X.astype(np.float64), Y.astype(np.float64))
    for q in (0.01, 0.2, 0.5):
        i, j = np.argwhere(D == np.quantile(D, q, method="nearest"))[0]
        eps = float(pair_distances(X[i:i + 1], Y[j:j + 1])[0])
        for e in (eps, np.nextafter(eps, 0), np.nextafter(eps, 1)):
            a, b = with_and_without_kernel(monkeypatch, lambda e=e: fiber_product(X, Y, e, block_size=(32, 70)))
            assert_same_join(a, b)
            full = np.stack([pair_distances(X, np.broadcast_to(Y[c], X.shape)) for c in range(len(Y))], 1)
            np.testing.assert_array_equal(a.pairs, np.argwhere(full <= e))
            assert ([i, j] in a.pairs.tolist()) == (e >= eps)
        # float32 noise of the expansion is far above the spacing of the distances here
        x32, y32 = X.astype(np.float32), Y.astype(np.float32)
        naive = (x32 ** 2).sum(1)[:, None] + (y32 ** 2).sum(1)[None] - 2 * x32 @ y32.T
        assert np.abs(naive - D ** 2).max() > 1e-3 * eps ** 2


def test_exact_ties_on_integer_points(rng, monkeypatch):
    X = rng.integers(-3, 4, size=(140, 40)).astype(np.float32)
    Y = rng.integers(-3, 4, size=(100, 40)).astype(np.float32)
    D = cdist(X.astype(np.float64), Y.astype(np.float64))
    for eps in np.unique(D)[[0, 2, 9]]:
        assert (D == eps).sum() >= 1
        a, b = with_and_without_kernel(monkeypatch, lambda eps=eps: fiber_product(X, Y, eps, block_size=(64, 64)))
        assert_same_join(a, b)
        np.testing.assert_array_equal(a.pairs, np.argwhere(D <= eps))
        assert a.distances.tobytes() == D[D <= eps].tobytes()  # integer sums: exact in any order


@pytest.mark.parametrize("metric", ["euclidean", "geodesic"])
def test_counts_match_brute_force_with_and_without_kernel(rng, monkeypatch, metric):
    X = rng.normal(size=(200, 16)).astype(np.float32)
    Y = rng.normal(size=(170, 16)).astype(np.float32)
    idx = np.arange(len(X))
    D = np.stack([pair_distances(X[idx], np.broadcast_to(Y[j], X.shape), metric) for j in range(len(Y))], 1)
    grid = [float(np.quantile(D, q)) for q in (0.0, 0.001, 0.02, 0.3)] + [0.0, float(D.max())]
    a, b = with_and_without_kernel(monkeypatch, lambda: fiber_counts(X, Y, grid, metric, block_size=(50, 40)))
    np.testing.assert_array_equal(a.counts, b.counts)
    np.testing.assert_array_equal(a.counts, [(D <= e).sum() for e in grid])


def test_empty_results(rng, monkeypatch):
    X = rng.normal(size=(30, 8)).astype(np.float32)
    Y = X + 1.0
    for args in ((X, Y, 0.5), (X[:0], Y, 3.0), (X, Y[:0], 3.0)):
        a, b = with_and_without_kernel(monkeypatch, lambda args=args: fiber_product(*args))
        assert a.count == b.count == 0 and a.pairs.shape == (0, 2) and a.distances.shape == (0,)
        c, d = with_and_without_kernel(monkeypatch, lambda args=args: fiber_counts(*args))
        assert c.counts.tolist() == d.counts.tolist() == [0]


@needs_kernel
def test_every_pair_a_hit_stays_within_the_block_buffers(rng, monkeypatch):
    # eps above the diameter: every entry of every block is a hit, so the index buffer must
    # grow -- but never beyond one block (memory bounded by block_size, not by n*m)
    X = rng.normal(size=(120, 10)).astype(np.float32)
    Y = rng.normal(size=(110, 10)).astype(np.float32)
    calls = []
    real = fiber._fiber

    class Spy:
        sqdist = staticmethod(real.sqdist)

        @staticmethod
        def select(g, ny, thr, out):
            calls.append((g.size, out.size))
            return real.select(g, ny, thr, out)

    monkeypatch.setattr(fiber, "_fiber", Spy)
    fp = fiber_product(X, Y, 100.0, block_size=(64, 96), num_threads=1)
    assert fp.count == 120 * 110
    np.testing.assert_array_equal(fp.pairs, np.argwhere(np.ones((120, 110), bool)))
    assert calls and max(g for g, _ in calls) <= 64 * 96
    assert max(o for _, o in calls) <= max(1 << 12, 2 * 64 * 96)  # grown to a power of two
    assert any(o >= g for g, o in calls)


@st.composite
def grids(draw):
    d = draw(st.integers(1, 9))
    n, m = draw(st.integers(0, 40)), draw(st.integers(0, 70))
    small = st.integers(-2, 2).map(float)
    return draw(arrays(np.float32, (n, d), elements=small)), draw(arrays(np.float32, (m, d), elements=small))


@settings(max_examples=60, deadline=None)
@given(grids(), st.integers(0, 30), st.sampled_from([None, (3, 7), (16, 64)]))
def test_property_kernel_and_fallback_agree_with_brute_force(sets, eps_sq, block):
    X, Y = sets
    eps = math.sqrt(eps_sq)  # hits integer squared distances exactly when eps_sq is a square
    D = cdist(X.astype(np.float64), Y.astype(np.float64)) if X.size and Y.size else np.zeros((len(X), len(Y)))
    with pytest.MonkeyPatch.context() as mp:
        a, b = with_and_without_kernel(mp, lambda: fiber_product(X, Y, eps, block_size=block))
        c, e = with_and_without_kernel(mp, lambda: fiber_counts(X, Y, [eps, eps / 2], block_size=block))
    assert_same_join(a, b)
    np.testing.assert_array_equal(a.pairs.reshape(-1, 2), np.argwhere(D <= eps))
    np.testing.assert_array_equal(c.counts, e.counts)
    np.testing.assert_array_equal(c.counts, [(D <= eps).sum(), (D <= eps / 2).sum()])
