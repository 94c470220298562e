"""geoalign.fiber: exact agreement with brute force, result objects, bad input."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st
from scipy.spatial.distance import cdist

from geoalign.fiber import (
    FiberCounts, FiberProduct, estimate_density, fiber_counts, fiber_product, pair_distances,
)


def brute(X, Y, metric):
    """Independent float64 reference: the defining formulas on all n*m pairs."""
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    if metric == "euclidean":
        return cdist(X, Y)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    Yn = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    sq = ((Xn[:, None, :] - Yn[None, :, :]) ** 2).sum(-1)
    if metric == "cosine":
        return 0.5 * sq
    return 2 * np.arcsin(np.minimum(np.sqrt(sq) / 2, 1.0))


def truth_pairs(D, eps):
    return np.argwhere(D <= eps)


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "geodesic"])
@pytest.mark.parametrize("block_size", [None, 1, 7, (64, 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_agrees_with_brute_force(rng, metric, block_size, dtype):
    X = rng.normal(size=(83, 12)).astype(dtype)
    Y = rng.normal(size=(61, 12)).astype(dtype)
    D = brute(X, Y, metric)
    eps = float(np.quantile(D, 0.05))
    fp = fiber_product(X, Y, eps, metric, block_size=block_size)
    want = truth_pairs(D, eps)
    assert fp.pairs.dtype == np.int64 and fp.distances.dtype == np.float64
    np.testing.assert_array_equal(fp.pairs, want)
    np.testing.assert_allclose(fp.distances, D[want[:, 0], want[:, 1]], rtol=1e-13, atol=1e-15)
    assert fp.count == len(want) and fp.shape == (83, 61) and fp.metric == metric
    # and against scipy's cdist with its own formulas (distances agree to rounding)
    if metric == "cosine":
        ref = cdist(X.astype(np.float64), Y.astype(np.float64), "cosine")
        np.testing.assert_allclose(fp.distances, ref[want[:, 0], want[:, 1]], atol=1e-12)
    if metric == "geodesic":
        cos = 1 - cdist(X.astype(np.float64), Y.astype(np.float64), "cosine")
        ref = np.arccos(np.clip(cos, -1, 1))
        np.testing.assert_allclose(fp.distances, ref[want[:, 0], want[:, 1]], atol=1e-7)


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "geodesic"])
def test_torch_input_gives_torch_output(rng, metric):
    X = torch.from_numpy(rng.normal(size=(40, 6)))
    Y = torch.from_numpy(rng.normal(size=(30, 6))).float()
    fp = fiber_product(X, Y, 1.0 if metric == "euclidean" else 0.3, metric, block_size=(8, 8))
    assert isinstance(fp.pairs, torch.Tensor) and fp.pairs.dtype == torch.int64
    assert isinstance(fp.distances, torch.Tensor) and fp.distances.dtype == torch.float64
    D = brute(X.numpy(), Y.double().numpy(), metric)
    np.testing.assert_array_equal(fp.pairs.numpy(), truth_pairs(D, fp.eps))


def test_points_exactly_at_eps_are_included():
    # 3-4-5 triangles: distance exactly 5 in every arithmetic
    X = np.array([[0, 0], [1, 1], [10, 10]], dtype=np.float32)
    Y = np.array([[3, 4], [4, 5], [0, 5], [6, 8]], dtype=np.float32)
    fp = fiber_product(X, Y, 5)
    D = cdist(X.astype(np.float64), Y.astype(np.float64))
    np.testing.assert_array_equal(fp.pairs, np.argwhere(D <= 5))
    assert [0, 0] in fp.pairs.tolist() and [1, 1] in fp.pairs.tolist() and [0, 2] in fp.pairs.tolist()
    np.testing.assert_array_equal(fp.distances[fp.distances == 5], [5.0] * int((D == 5).sum()))
    # strictly below 5 excludes them
    assert fiber_product(X, Y, np.nextafter(5.0, 0)).count == int((D < 5).sum())


def test_ties_at_eps_in_high_dimension(rng):
    # integer data: every squared distance is an exact integer, so ties are exact
    X = rng.integers(-3, 4, size=(120, 64)).astype(np.float32)
    Y = rng.integers(-3, 4, size=(90, 64)).astype(np.float32)
    D = cdist(X.astype(np.float64), Y.astype(np.float64))
    for eps in np.unique(D)[[0, 3, 10]]:
        fp = fiber_product(X, Y, eps, block_size=(32, 16))
        np.testing.assert_array_equal(fp.pairs, np.argwhere(D <= eps))
        assert (D == eps).sum() >= 1


def test_cancellation_that_breaks_a_naive_float32_gemm(rng):
    # huge common offset, tiny differences: float32 ||x||^2+||y||^2-2<x,y> is pure noise here
    base = np.full(32, 3000.0)
    X = base + rng.normal(scale=0.01, size=(50, 32))
    Y = base + rng.normal(scale=0.01, size=(40, 32))
    X, Y = X.astype(np.float32), Y.astype(np.float32)
    D = cdist(X.astype(np.float64), Y.astype(np.float64))
    eps = float(np.median(D))
    x64, y64 = X.astype(np.float32), Y.astype(np.float32)
    naive = (x64 ** 2).sum(1)[:, None] + (y64 ** 2).sum(1)[None] - 2 * x64 @ y64.T
    assert not np.array_equal(np.argwhere(naive <= eps * eps), np.argwhere(D <= eps))
    fp = fiber_product(X, Y, eps)
    np.testing.assert_array_equal(fp.pairs, np.argwhere(D <= eps))


def test_duplicates_and_eps_zero(rng):
    Y = rng.normal(size=(20, 5))
    X = np.vstack([Y[[3, 3, 7]], rng.normal(size=(4, 5))])
    fp = fiber_product(X, Y, 0.0)
    np.testing.assert_array_equal(fp.pairs, [[0, 3], [1, 3], [2, 7]])
    np.testing.assert_array_equal(fp.distances, [0.0, 0.0, 0.0])
    # F_0 for the angular metrics: same direction (scaled copies), exactly distance 0
    Xs = np.vstack([2.0 * Y[3], 0.5 * Y[7]])
    for metric in ("cosine", "geodesic"):
        np.testing.assert_array_equal(fiber_product(Xs, Y, 0.0, metric).pairs, [[0, 3], [1, 7]])


def test_empty_inputs():
    Y = np.ones((4, 3))
    for X, Yy in [(np.empty((0, 3)), Y), (Y, np.empty((0, 3))), (np.empty((0, 3)), np.empty((0, 3)))]:
        fp = fiber_product(X, Yy, 1.0)
        assert fp.count == 0 and fp.pairs.shape == (0, 2) and fp.distances.shape == (0,)
        assert fp.shape == (len(X), len(Yy))
        assert fp.to_sparse().shape == fp.shape
        fc = fiber_counts(X, Yy, [0.5, 1.0])
        np.testing.assert_array_equal(fc.counts, [0, 0])
        assert fc.n_pairs == 0 and np.isnan(fc.rho).all()
    fpt = fiber_product(torch.empty(0, 3), torch.ones(2, 3), 1.0)
    assert isinstance(fpt.pairs, torch.Tensor) and fpt.pairs.shape == (0, 2)


def test_to_sparse_keeps_explicit_zeros(rng):
    Y = rng.normal(size=(6, 3))
    X = np.vstack([Y[2], Y[2] + 0.1])
    fp = fiber_product(X, Y, 0.5)
    for fmt in ("csr", "coo", "csc"):
        S = fp.to_sparse(fmt)
        assert S.format == fmt and S.shape == (2, 6)
        assert S.nnz == fp.count  # the zero distance of (0, 2) is stored
        C = S.tocoo()
        got = sorted(zip(C.row.tolist(), C.col.tolist(), C.data.tolist()))
        want = sorted(zip(fp.pairs[:, 0].tolist(), fp.pairs[:, 1].tolist(), fp.distances.tolist()))
        assert got == want
    assert 0.0 in fp.to_sparse("csr").data


def test_precision_recall():
    X = np.array([[0.0], [1.0], [2.0], [10.0]])
    Y = np.array([[0.0], [1.05], [5.0]])
    fp = fiber_product(X, Y, 0.1)  # pairs (0,0), (1,1)
    pr = fp.precision_recall(np.array([[0, 0], [2, 2], [2, 2]]))
    assert (pr.true_positives, pr.n_predicted, pr.n_true) == (1, 2, 2)
    assert pr.precision == 0.5 and pr.recall == 0.5 and math.isclose(pr.f1, 0.5)
    empty = fiber_product(X, Y, 0.0).precision_recall(np.empty((0, 2), int))
    assert math.isnan(empty.recall)
    with pytest.raises(ValueError, match="true_pairs"):
        fp.precision_recall(np.array([0, 1]))


def test_row_offsets_and_concatenate(rng):
    X, Y = rng.normal(size=(50, 4)), rng.normal(size=(30, 4))
    full = fiber_product(X, Y, 1.2)
    parts = [fiber_product(X[i0:i1], Y[j0:j1], 1.2, row_offset=i0, col_offset=j0)
             for i0, i1 in [(0, 17), (17, 50)] for j0, j1 in [(0, 10), (10, 30)]]
    merged = FiberProduct.concatenate(parts[::-1])
    np.testing.assert_array_equal(merged.pairs, full.pairs)
    np.testing.assert_array_equal(merged.distances, full.distances)
    assert merged.shape == (50, 30) and merged.offset == (0, 0)
    with pytest.raises(ValueError, match="overlap"):
        FiberProduct.concatenate([parts[0], parts[0]])
    with pytest.raises(ValueError, match="tile"):
        FiberProduct.concatenate(parts[:3])
    with pytest.raises(ValueError, match="eps"):
        FiberProduct.concatenate([parts[0], fiber_product(X[17:], Y[:10], 1.0, row_offset=17)])
    fcs = [fiber_counts(X[i0:i1], Y, [0.5, 1.2]) for i0, i1 in [(0, 20), (20, 50)]]
    comb = FiberCounts.combine(fcs)
    np.testing.assert_array_equal(comb.counts, fiber_counts(X, Y, [0.5, 1.2]).counts)
    assert comb.counts[1] == full.count and comb.n_pairs == 1500


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "geodesic"])
def test_counts_match_brute_force(rng, metric):
    X = rng.integers(-2, 3, size=(70, 9)).astype(np.float32)
    Y = rng.integers(-2, 3, size=(55, 9)).astype(np.float32)
    X[np.abs(X).sum(1) == 0, 0] = 1  # angular metrics need nonzero rows
    Y[np.abs(Y).sum(1) == 0, 0] = 1
    D = brute(X, Y, metric)
    # ties: take grid values from the defining float64 distances themselves (for the angular
    # metrics the last ulp depends on the summation order, so the independent brute force
    # must only agree to rounding)
    defining = pair_distances(np.repeat(X, len(Y), 0), np.tile(Y, (len(X), 1)), metric).reshape(D.shape)
    np.testing.assert_allclose(defining, D, rtol=0, atol=1e-15)
    D = defining
    grid = np.concatenate([np.unique(D)[:40:3], [0.0, D.max(), D.max() * 2]])[::-1]  # unsorted
    fc = fiber_counts(X, Y, grid, metric, block_size=(16, 16))
    np.testing.assert_array_equal(fc.counts, [(D <= e).sum() for e in grid])
    np.testing.assert_allclose(fc.rho, fc.counts / D.size)
    assert fc.counts.dtype == np.int64
    fct = fiber_counts(torch.from_numpy(X), torch.from_numpy(Y), grid, metric)
    assert isinstance(fct.counts, torch.Tensor)
    np.testing.assert_array_equal(fct.counts.numpy(), fc.counts)


def test_faiss_range_search_agrees_off_the_boundary(rng):
    faiss = pytest.importorskip("faiss")
    X = rng.normal(size=(300, 32)).astype(np.float32)
    Y = rng.normal(size=(250, 32)).astype(np.float32)
    D = cdist(X.astype(np.float64), Y.astype(np.float64))
    eps = float(np.quantile(D, 0.01))
    index = faiss.IndexFlatL2(32)
    index.add(Y)
    lims, _, I = index.range_search(X, eps * eps)  # squared radius, strict <
    faiss_pairs = {(i, int(j)) for i in range(len(X)) for j in I[lims[i]:lims[i + 1]]}
    ours = {tuple(p) for p in fiber_product(X, Y, eps).pairs.tolist()}
    near = {tuple(p) for p in np.argwhere(np.abs(D ** 2 - eps ** 2) <= 1e-4 * eps ** 2).tolist()}
    assert len(ours) > 100
    assert ours - near == faiss_pairs - near


def test_pair_distances_reference(rng):
    X, Y = rng.normal(size=(10, 4)), rng.normal(size=(10, 4))
    for metric in ("euclidean", "cosine", "geodesic"):
        np.testing.assert_allclose(pair_distances(X, Y, metric), np.diag(brute(X, Y, metric)), atol=1e-15)
    with pytest.raises(ValueError, match="same number of rows"):
        pair_distances(X, Y[:3])


# ----------------------------------------------------------------------------- bad input
def test_bad_input_errors(rng):
    X, Y = rng.normal(size=(5, 3)), rng.normal(size=(4, 3))
    with pytest.raises(ValueError, match="eps must be >= 0"):
        fiber_product(X, Y, -0.1)
    with pytest.raises(ValueError, match="eps must not be NaN"):
        fiber_product(X, Y, float("nan"))
    with pytest.raises(ValueError, match="eps must be finite"):
        fiber_product(X, Y, float("inf"))
    bad = X.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="X contains 1 NaN or Inf"):
        fiber_product(bad, Y, 1.0)
    bad[1, 1] = np.inf
    with pytest.raises(ValueError, match="Y contains 1 NaN or Inf"):
        fiber_product(X, bad, 1.0)
    with pytest.raises(ValueError, match="same dimension d"):
        fiber_product(X, rng.normal(size=(4, 2)), 1.0)
    with pytest.raises(ValueError, match="X must have 2 dimension"):
        fiber_product(X[0], Y, 1.0)
    with pytest.raises(ValueError, match="unknown metric 'manhattan'"):
        fiber_product(X, Y, 1.0, "manhattan")
    with pytest.raises(ValueError, match="same device"):
        fiber_product(torch.ones(2, 3), torch.ones(2, 3, device="meta"), 1.0)
    Z = Y.copy()
    Z[2] = 0
    with pytest.raises(ValueError, match="Y has 1 zero row.*first: 2.*cosine"):
        fiber_product(X, Z, 0.1, "cosine")
    with pytest.raises(ValueError, match="memory_budget"):
        fiber_product(np.ones((100, 3)), np.ones((100, 3)), 1.0, block_size=100, memory_budget=2048)
    with pytest.raises(ValueError, match="block_size must be >= 1"):
        fiber_product(X, Y, 1.0, block_size=0)
    with pytest.raises(ValueError, match="shared_projector must have 3 rows"):
        fiber_product(X, Y, 1.0, shared_projector=np.eye(4))
    with pytest.raises(ValueError, match="orthonormal basis"):
        fiber_product(X, Y, 1.0, shared_projector=np.ones((3, 2)))
    with pytest.raises(ValueError, match="eps_grid must be >= 0"):
        fiber_counts(X, Y, [0.1, -1])
    with pytest.raises(ValueError, match="eps_grid must contain"):
        fiber_counts(X, Y, [])
    with pytest.raises(ValueError, match="row_offset must be >= 0"):
        fiber_product(X, Y, 1.0, row_offset=-1)
    with pytest.raises(ValueError, match="confidence"):
        estimate_density(X, Y, 1.0, 10, confidence=1.5)
    with pytest.raises(ValueError, match="non-empty"):
        estimate_density(X[:0], Y, 1.0, 10)


# ----------------------------------------------------------------------------- properties
@st.composite
def point_sets(draw):
    d = draw(st.integers(1, 6))
    n = draw(st.integers(0, 12))
    m = draw(st.integers(0, 12))
    vals = st.integers(-3, 3)
    X = np.array(draw(st.lists(st.lists(vals, min_size=d, max_size=d), min_size=n, max_size=n)),
                 dtype=np.float64).reshape(n, d)
    Y = np.array(draw(st.lists(st.lists(vals, min_size=d, max_size=d), min_size=m, max_size=m)),
                 dtype=np.float64).reshape(m, d)
    return X, Y


@given(point_sets(), st.integers(0, 40), st.sampled_from([1, 3, None]), st.booleans())
def test_property_exact_join_on_integer_grids(sets, eps_sq, block, as32):
    X, Y = sets
    if as32:
        X, Y = X.astype(np.float32), Y.astype(np.float32)
    eps = math.sqrt(eps_sq)  # hits integer squared distances exactly when eps_sq is a square
    fp = fiber_product(X, Y, eps, block_size=block)
    D = cdist(X.astype(np.float64), Y.astype(np.float64)) if X.size and Y.size else np.zeros((len(X), len(Y)))
    np.testing.assert_array_equal(fp.pairs.reshape(-1, 2), np.argwhere(D <= eps))
    fc = fiber_counts(X, Y, [eps, eps / 2], block_size=block)
    np.testing.assert_array_equal(fc.counts, [(D <= eps).sum(), (D <= eps / 2).sum()])


@given(point_sets(), st.floats(0, 3), st.floats(0, 3))
def test_property_monotone_and_symmetric(sets, e1, e2):
    X, Y = sets
    lo, hi = sorted((e1, e2))
    a, b = fiber_product(X, Y, lo), fiber_product(X, Y, hi)
    assert {tuple(p) for p in a.pairs.tolist()} <= {tuple(p) for p in b.pairs.tolist()}
    swapped = fiber_product(Y, X, hi)
    assert sorted(map(tuple, swapped.pairs[:, ::-1].tolist())) == sorted(map(tuple, b.pairs.tolist()))


def test_threads_setting_restored_and_results_independent_of_threads(rng):
    from concurrent.futures import ThreadPoolExecutor

    X, Y = rng.normal(size=(700, 8)), rng.normal(size=(300, 8))
    before = torch.get_num_threads()
    ref = fiber_product(X, Y, 2.0, block_size=(64, 100))
    for k in (1, 3):
        fp = fiber_product(X, Y, 2.0, block_size=(64, 100), num_threads=k)
        np.testing.assert_array_equal(fp.pairs, ref.pairs)
    # concurrent callers (e.g. Dask worker threads) leave torch's thread count as it was
    with ThreadPoolExecutor(3) as pool:
        outs = list(pool.map(lambda i: fiber_counts(X, Y, [1.0, 2.0], block_size=(64, 100)).counts, range(6)))
    assert all((o == outs[0]).all() for o in outs) and outs[0][1] == ref.count
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="num_threads must be >= 1"):
        fiber_product(X, Y, 1.0, num_threads=0)


@pytest.mark.parametrize("scale", [1e-30, 1e20])
def test_extreme_scales_stay_exact(rng, scale):
    # 1e20: squared norms overflow float32 -> float64 filter; 1e-30: float32 underflow
    X, Y = rng.normal(size=(40, 16)) * scale, rng.normal(size=(30, 16)) * scale
    D = cdist(X, Y)
    eps = float(np.quantile(D, 0.1))
    np.testing.assert_array_equal(fiber_product(X, Y, eps).pairs, np.argwhere(D <= eps))


def test_lowered_matmul_precision_stays_exact(rng):
    X = rng.normal(size=(200, 64)).astype(np.float32)
    Y = rng.normal(size=(150, 64)).astype(np.float32)
    D = cdist(X.astype(np.float64), Y.astype(np.float64))
    eps = float(np.quantile(D, 0.02))
    before = torch.get_float32_matmul_precision()
    try:
        for precision in ("high", "medium"):
            torch.set_float32_matmul_precision(precision)
            np.testing.assert_array_equal(fiber_product(X, Y, eps).pairs, np.argwhere(D <= eps))
    finally:
        torch.set_float32_matmul_precision(before)


def test_default_cpu_blocks_and_exact_chunks_agree_with_brute_force(rng):
    # more rows and columns than one default CPU block (1024 x 512) and more candidates
    # per block than one exact-distance chunk (2^20 bytes of float64 rows: 512 at d = 256)
    X = rng.normal(size=(1300, 256)).astype(np.float32)
    Y = rng.normal(size=(1100, 256)).astype(np.float32)
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    D = np.concatenate([np.sqrt(((X64[s:s + 20, None, :] - Y64[None]) ** 2).sum(-1))
                        for s in range(0, len(X), 20)])  # brute force, 20 rows at a time
    eps = float(np.quantile(D, 0.01))
    fp = fiber_product(X, Y, eps, num_threads=1)
    want = truth_pairs(D, eps)
    assert len(want) > 10_000
    np.testing.assert_array_equal(fp.pairs, want)
    np.testing.assert_allclose(fp.distances, D[want[:, 0], want[:, 1]], rtol=1e-13)
    fc = fiber_counts(X, Y, [eps / 2, eps, 0.9 * eps], num_threads=2)
    np.testing.assert_array_equal(fc.counts, [(D <= e).sum() for e in (eps / 2, eps, 0.9 * eps)])
