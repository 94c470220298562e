import numpy as np
import ot
import pytest
import torch
from hypothesis import given, strategies as st

from geoalign.ot import (barycenter, free_support_barycenter, gaussian_barycenter,
                         sinkhorn, sinkhorn_divergence, sliced_wasserstein)
from geoalign.ot import _free_support


# ---------------------------------------------------------------- divergence
def test_divergence_matches_three_sinkhorns(rng):
    X, Y = rng.normal(size=(15, 2)), rng.normal(size=(10, 2)) + 0.5
    reg = 0.5
    res = sinkhorn_divergence(X, Y, reg, tol=1e-10, max_iter=5000)
    ent = lambda A, B: sinkhorn(None, None, ot.dist(A, B) / 2, reg, tol=1e-12,
                                max_iter=20000).entropic_value
    expected = ent(X, Y) - 0.5 * ent(X, X) - 0.5 * ent(Y, Y)
    assert res.value == pytest.approx(expected, abs=1e-8)


@given(st.integers(2, 10), st.floats(0.05, 2.0), st.integers(0, 2**16))
def test_divergence_nonnegative_and_zero_on_diagonal(n, reg, seed):
    r = np.random.default_rng(seed)
    X, Y = r.normal(size=(n, 3)), r.normal(size=(n + 1, 3))
    # Some self-transport problems converge slowly (e.g. n=6, reg=0.1875, seed 0: 2751
    # updates to tol): the budget is generous so the test checks values, not the rate.
    assert sinkhorn_divergence(X, Y, reg, max_iter=20000, tol=1e-9).value >= -1e-9
    assert abs(sinkhorn_divergence(X, X, reg, max_iter=20000, tol=1e-9).value) < 1e-9


def test_divergence_gradcheck(rng):
    X = torch.tensor(rng.normal(size=(4, 2)), requires_grad=True)
    Y = torch.tensor(rng.normal(size=(3, 2)), requires_grad=True)
    fn = lambda x, y: sinkhorn_divergence(x, y, 0.5, tol=1e-13, max_iter=10000).value
    assert torch.autograd.gradcheck(fn, (X, Y))


def test_divergence_batched_torch(rng):
    X = torch.randn(2, 6, 3, dtype=torch.float64)
    Y = torch.randn(2, 5, 3, dtype=torch.float64)
    res = sinkhorn_divergence(X, Y, 0.3, tol=1e-9, max_iter=2000)
    assert res.value.shape == (2,)
    single = sinkhorn_divergence(X[1], Y[1], 0.3, tol=1e-9, max_iter=2000)
    torch.testing.assert_close(res.value[1], single.value)


# -------------------------------------------------------------------- sliced
def test_sliced_vs_pot_monte_carlo(rng):
    X, Y = rng.normal(size=(200, 4)), rng.normal(size=(150, 4)) + 0.7
    ours = sliced_wasserstein(X, Y, n_projections=1000, seed=1).value
    pots = [ot.sliced_wasserstein_distance(X, Y, n_projections=1000, seed=s) for s in range(5)]
    assert abs(ours - np.mean(pots)) < 4 * np.std(pots) + 0.02


@pytest.mark.parametrize("p", [1, 2, 3])
def test_sliced_exact_in_one_dimension(rng, p):
    x, y = rng.normal(size=(17, 1)), rng.normal(size=(11, 1))
    a = rng.random(17)
    a /= a.sum()
    ours = sliced_wasserstein(x, y, n_projections=3, p=p, a=a).value
    assert ours == pytest.approx(ot.wasserstein_1d(x[:, 0], y[:, 0], u_weights=a, p=p) ** (1 / p),
                                 rel=1e-10)


def test_sliced_sobol_reproducible_and_differentiable(rng):
    X = torch.tensor(rng.normal(size=(8, 3)), requires_grad=True)
    Y = torch.tensor(rng.normal(size=(8, 3)))
    r1 = sliced_wasserstein(X, Y, 16, seed=3)
    r2 = sliced_wasserstein(X, Y, 16, seed=3)
    assert r1.value.item() == r2.value.item()
    np.testing.assert_allclose(np.linalg.norm(r1.directions.numpy(), axis=1), 1.0)
    fn = lambda x: sliced_wasserstein(x, Y, 16, seed=3).value
    assert torch.autograd.gradcheck(fn, (X,))


def test_sliced_bad_input(rng):
    with pytest.raises(ValueError, match="same dimension"):
        sliced_wasserstein(rng.normal(size=(3, 2)), rng.normal(size=(3, 3)))
    with pytest.raises(ValueError, match="directions"):
        sliced_wasserstein(rng.normal(size=(3, 2)), rng.normal(size=(3, 2)), directions="halton")
    with pytest.raises(ValueError, match="sum to 1"):
        sliced_wasserstein(rng.normal(size=(3, 2)), rng.normal(size=(3, 2)), a=[0.5, 0.5, 0.5])


# --------------------------------------------------------------- barycentres
def test_fixed_support_matches_pot(rng):
    n = 25
    x = np.linspace(0, 1, n)
    C = (x[:, None] - x[None]) ** 2
    A = rng.random((3, n)) + 0.1
    A /= A.sum(1, keepdims=True)
    w = np.array([0.2, 0.3, 0.5])
    q = ot.bregman.barycenter(A.T, C, 0.02, weights=w, method="sinkhorn_log",
                              numItermax=5000, stopThr=1e-12)
    res = barycenter(A, C, 0.02, weights=w, tol=1e-12, max_iter=5000)
    np.testing.assert_allclose(res.barycenter, q, atol=1e-9)


def test_free_support_exact_matches_pot(rng):
    Ys = [rng.normal(size=(30, 2)) + k for k in range(3)]
    X0 = rng.normal(size=(15, 2))
    Xp = ot.lp.free_support_barycenter(Ys, [np.full(30, 1 / 30)] * 3, X0.copy())
    res = free_support_barycenter(Ys, init=X0)
    np.testing.assert_allclose(res.support, Xp, atol=1e-10)
    obj = np.mean([ot.emd2(np.full(15, 1 / 15), np.full(30, 1 / 30), ot.dist(Xp, Y)) for Y in Ys])
    assert res.value == pytest.approx(obj, rel=1e-10)


def test_free_support_entropic_objective_close(rng):
    Ys = np.stack([rng.normal(size=(30, 2)) + k for k in range(3)])
    X0 = Ys[0] + 0.05
    exact = free_support_barycenter(Ys, init=X0)
    ent = free_support_barycenter(Ys, init=X0, reg=0.005, tol=1e-6, polish=False)
    obj = lambda X: np.mean([ot.emd2(np.full(30, 1 / 30), np.full(30, 1 / 30), ot.dist(X, Y)) for Y in Ys])
    assert obj(ent.support) <= 1.02 * obj(exact.support)
    assert ent.n_exact == 0


def test_gaussian_barycenter_vs_pot_and_closed_forms(rng):
    d = 3
    m = rng.normal(size=(4, d))
    L = rng.normal(size=(4, d, d))
    S = L @ L.transpose(0, 2, 1) + 0.1 * np.eye(d)
    w = np.array([0.1, 0.2, 0.3, 0.4])
    res = gaussian_barycenter(m, S, w)
    mb, Sb = ot.gaussian.bures_wasserstein_barycenter(m, S, w, num_iter=2000, eps=1e-13)
    np.testing.assert_allclose(res.cov, Sb, atol=1e-8)
    np.testing.assert_allclose(res.mean, mb, atol=1e-12)
    # commuting (diagonal) covariances: sqrt of the barycentre = mean of sqrts
    D = rng.random((4, d)) + 0.5
    res_d = gaussian_barycenter(m, np.stack([np.diag(v) for v in D]), w)
    np.testing.assert_allclose(res_d.cov, np.diag((w[:, None] * np.sqrt(D)).sum(0) ** 2), atol=1e-10)


def test_barycenter_bad_input(rng):
    with pytest.raises(ValueError, match="weights must sum to 1"):
        gaussian_barycenter(np.zeros((2, 2)), np.stack([np.eye(2)] * 2), weights=[0.5, 0.6])
    with pytest.raises(ValueError, match="weights must be non-negative"):
        barycenter(np.full((2, 3), 1 / 3), np.ones((3, 3)), 0.1, weights=[1.5, -0.5])
    with pytest.raises(ValueError, match="reg"):
        barycenter(np.full((2, 3), 1 / 3), np.ones((3, 3)), 0.0)
    with pytest.raises(ValueError, match="measures\\[1\\] has dimension"):
        free_support_barycenter([np.zeros((3, 2)), np.zeros((3, 3))])
    with pytest.raises(ValueError, match="positive semi-definite"):
        gaussian_barycenter(np.zeros((1, 2)), -np.eye(2)[None])


# ------------------------------------------------------- fast (training) modes
def test_divergence_fixed_updates_close_to_converged_float32():
    g = torch.Generator().manual_seed(0)
    X = torch.nn.functional.normalize(torch.randn(64, 16, generator=g), dim=1)
    Y = torch.nn.functional.normalize(torch.randn(64, 16, generator=g) + 0.3, dim=1)
    ref = sinkhorn_divergence(X.double(), Y.double(), 0.05, tol=1e-10, max_iter=20000).value.item()
    Xg = X.clone().requires_grad_()
    res = sinkhorn_divergence(Xg, Y, 0.05)  # defaults: fixed updates, no warning
    # fixed updates test nothing (converged is None); the last update's move is reported
    assert res.converged is None and res.value.dtype == torch.float32
    assert isinstance(res.change, torch.Tensor) and 0 < float(res.change) < 0.1
    assert res.value.item() == pytest.approx(ref, rel=1e-3)
    res.value.backward()
    assert torch.isfinite(Xg.grad).all()


def test_divergence_kernel_path_matches_log_path(rng, monkeypatch):
    from geoalign.ot import _divergence

    X, Y = rng.normal(size=(12, 3)), rng.normal(size=(9, 3)) + 0.4
    kernel = sinkhorn_divergence(X, Y, 1.0, max_iter=20)
    monkeypatch.setattr(_divergence, "_KERNEL_RANGE", 0.0)
    log = sinkhorn_divergence(X, Y, 1.0, max_iter=20)
    assert kernel.value == pytest.approx(log.value, rel=1e-10)


@pytest.mark.parametrize("polish", [False, True])
def test_free_support_entropic_padded_weighted_and_bad_input(rng, polish):
    Ys = [rng.normal(size=(20, 2)), rng.normal(size=(14, 2)) + 1.0]
    X0 = rng.normal(size=(10, 2))
    exact = free_support_barycenter(Ys, init=X0)
    ent = free_support_barycenter(Ys, init=X0, reg=0.01, tol=1e-8, polish=polish)
    obj = lambda X: 0.5 * sum(ot.emd2(np.full(10, 0.1), np.full(len(Y), 1 / len(Y)), ot.dist(X, Y))
                              for Y in Ys)
    assert ent.converged and np.isfinite(ent.support).all()
    assert obj(ent.support) <= 1.02 * obj(exact.support)
    with pytest.raises(ValueError, match="relaxation"):
        free_support_barycenter(Ys, reg=0.1, relaxation=2.5)
    with pytest.raises(ValueError, match="eps_scaling"):
        free_support_barycenter(Ys, reg=0.1, eps_scaling=1.0)
    with pytest.raises(TypeError, match="polish must be a bool"):
        free_support_barycenter(Ys, reg=0.1, polish="yes")
    with pytest.raises(ValueError, match="polish_max_iter"):
        free_support_barycenter(Ys, reg=0.1, polish_max_iter=0)


# ------------------------------------------------------------- exact polish
def _exact_objective(X, Ys):
    X = np.asarray(X, dtype=np.float64)
    q = np.full(len(X), 1 / len(X))
    return np.mean([ot.emd2(q, np.full(len(Y), 1 / len(Y)), ot.dist(X, Y)) for Y in Ys])


@pytest.mark.parametrize("reg", [0.05, 0.3])
def test_free_support_polish_reaches_pot_fixed_point(rng, reg):
    # uniform masses, n_k = support size: the assignment path
    K, n, d = 4, 40, 3
    Ys = np.stack([rng.normal(size=(n, d)) * rng.uniform(0.5, 1.5, d) + 2 * rng.normal(size=d)
                   for _ in range(K)])
    X0 = Ys[0] + 0.1 * rng.normal(size=(n, d))
    obj_pot = _exact_objective(ot.lp.free_support_barycenter(list(Ys), [np.full(n, 1 / n)] * K, X0.copy()), Ys)
    scale = np.median(ot.dist(Ys[0], Ys[1]))
    blurred = free_support_barycenter(Ys, init=X0, reg=reg * scale, polish=False, warn=False)
    res = free_support_barycenter(Ys, init=X0, reg=reg * scale)
    assert res.converged and 1 <= res.n_exact < res.n_iter
    obj = _exact_objective(res.support, Ys)
    assert obj <= 1.01 * obj_pot
    assert obj < _exact_objective(blurred.support, Ys)  # the polish removes the entropic blur
    assert res.value == pytest.approx(obj, rel=1e-10)  # value is the exact objective
    # an exact fixed point: every support point is the weighted mean of its matches
    perms = _free_support.assignments(torch.as_tensor(res.support), torch.as_tensor(Ys))
    np.testing.assert_allclose(res.support, Ys[np.arange(K)[:, None], perms].mean(0), atol=1e-12)


def test_free_support_polish_general_case_uses_exact_plans(rng):
    # unequal sizes and non-uniform weights: network simplex plans
    Ys = [rng.normal(size=(25, 2)), rng.normal(size=(18, 2)) + [2.0, 0.0], rng.normal(size=(30, 2)) + 1.0]
    w = np.array([0.5, 0.3, 0.2])
    X0 = rng.normal(size=(12, 2))
    exact = free_support_barycenter(Ys, weights=w, init=X0)
    res = free_support_barycenter(Ys, weights=w, init=X0, reg=0.05)
    obj = lambda X: sum(wk * ot.emd2(np.full(12, 1 / 12), np.full(len(Y), 1 / len(Y)), ot.dist(X, Y))
                        for wk, Y in zip(w, Ys))
    assert res.converged and res.n_exact >= 1
    assert obj(res.support) <= 1.01 * obj(exact.support)
    assert res.value == pytest.approx(obj(res.support), rel=1e-8)


@given(st.integers(1, 30), st.integers(1, 4), st.integers(0, 2**16), st.booleans())
def test_assignments_are_optimal_bijections(s, K, seed, warm):
    r = np.random.default_rng(seed)
    X = torch.as_tensor(r.normal(size=(s, 3)))
    Ys = torch.as_tensor(r.normal(size=(K, s, 3)))
    beta = torch.as_tensor(r.normal(size=(K, s)) * 5) if warm else None
    perms = _free_support.assignments(X, Ys, beta)
    assert perms.shape == (K, s)
    np.testing.assert_array_equal(_free_support.assignments(X, Ys, beta, workers=3), perms)
    q = np.full(s, 1 / s)
    for k in range(K):
        assert sorted(perms[k].tolist()) == list(range(s))  # a bijection
        C = ot.dist(X.numpy(), Ys[k].numpy())
        # optimal: its cost equals the exact transport cost (potentials never change the answer)
        assert C[np.arange(s), perms[k]].mean() == pytest.approx(ot.emd2(q, q, C), rel=1e-9, abs=1e-12)


def test_free_support_polish_torch_float32(rng):
    Ys = torch.as_tensor(rng.normal(size=(3, 20, 2)), dtype=torch.float32)
    res = free_support_barycenter(Ys, reg=0.1, seed=1)
    assert isinstance(res.support, torch.Tensor) and res.support.dtype == torch.float32
    assert res.converged and res.n_exact >= 1
    assert res.value == pytest.approx(_exact_objective(res.support.numpy(), Ys.numpy()), rel=1e-5)


def test_is_assignment_problem():
    q = torch.full((4,), 0.25, dtype=torch.float64)
    assert _free_support.is_assignment_problem(q.expand(2, 4), q, [4, 4])
    assert not _free_support.is_assignment_problem(q.expand(2, 4), q, [4, 3])
    b = torch.tensor([[0.25, 0.25, 0.3, 0.2]] * 2, dtype=torch.float64)
    assert not _free_support.is_assignment_problem(b, q, [4, 4])


def test_free_support_auto_reg_is_scale_free(rng):
    Ys = np.stack([rng.normal(size=(30, 3)) + 2 * rng.normal(size=3) for _ in range(3)])
    X0 = Ys[1] + 0.1 * rng.normal(size=(30, 3))
    res = free_support_barycenter(Ys, init=X0, reg="auto")
    scaled = free_support_barycenter(10 * Ys, init=10 * X0, reg="auto")
    np.testing.assert_allclose(scaled.support, 10 * res.support, rtol=1e-9, atol=1e-9)
    exact = free_support_barycenter(Ys, init=X0)
    assert res.converged and _exact_objective(res.support, Ys) <= 1.01 * _exact_objective(exact.support, Ys)
    with pytest.raises(ValueError, match='"auto"'):
        free_support_barycenter(Ys, reg="fast")


@pytest.mark.parametrize("batched,weighted", [(False, False), (True, True)])
def test_divergence_factored_kernel_path_matches_old_log_path(batched, weighted, monkeypatch):
    """The kernel path (in-place costs, reused kernel buffers, factored final weights and
    gradient) against the previous implementation: every cost from ``pairwise_cost``,
    every soft-min in the log domain with explicit weights; float64, to 1e-10."""
    from geoalign.ot import _common, _divergence

    g = torch.Generator().manual_seed(11 + batched)
    shape = (3,) if batched else ()
    X = torch.nn.functional.normalize(torch.randn(*shape, 40, 16, generator=g, dtype=torch.float64), dim=-1)
    Y = torch.nn.functional.normalize(torch.randn(*shape, 33, 16, generator=g, dtype=torch.float64) + 0.3,
                                      dim=-1)
    a = torch.rand(*shape, 40, generator=g, dtype=torch.float64) + 0.1 if weighted else None
    b = torch.rand(*shape, 33, generator=g, dtype=torch.float64) + 0.1 if weighted else None
    a, b = (None if w is None else w / w.sum(-1, keepdim=True) for w in (a, b))

    def run(**kw):
        Xg, Yg = X.clone().requires_grad_(), Y.clone().requires_grad_()
        res = sinkhorn_divergence(Xg, Yg, 0.01, a, b, **kw)
        res.value.sum().backward()
        return res, Xg.grad, Yg.grad

    modes = [dict(scaling=0.05, max_iter=0), dict(scaling=0.25, max_iter=30), dict(max_iter=10)]
    new = [run(**kw) for kw in modes]
    monkeypatch.setattr(_divergence, "_KERNEL_RANGE", 0.0)
    monkeypatch.setattr(_divergence, "_sq_costs", lambda X, Y: [
        _common.pairwise_cost(A, B, 2) for A, B in ((X, Y), (X, X), (Y, Y))])
    for (res, gx, gy), (ref, rx, ry) in zip(new, [run(**kw) for kw in modes]):
        assert res.n_iter == ref.n_iter
        for u, v in ((res.value, ref.value), (res.ot_xy, ref.ot_xy), (res.ot_xx, ref.ot_xx),
                     (res.potentials[0], ref.potentials[0]), (gx, rx), (gy, ry)):
            torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-13)


def test_divergence_costs_in_place_match_pairwise_cost(rng):
    from geoalign.ot import _common, _divergence

    X = torch.tensor(rng.normal(size=(2, 30, 7)))
    Y = torch.tensor(rng.normal(size=(2, 20, 7)) + 1.0)
    for C, (A, B) in zip(_divergence._sq_costs(X, Y), ((X, Y), (X, X), (Y, Y))):
        torch.testing.assert_close(C, _common.pairwise_cost(A, B, 2), rtol=1e-12, atol=1e-12)
        assert (C >= 0).all()


def test_divergence_host_exp_matches_torch_exp(monkeypatch):
    """The CPU kernels by NumPy's exp against the device-generic torch path (float64 and float32)."""
    from geoalign.ot import _core

    g = torch.Generator().manual_seed(5)
    for dtype, rtol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        X = torch.nn.functional.normalize(torch.randn(2, 30, 8, generator=g, dtype=dtype), dim=-1)
        Y = torch.nn.functional.normalize(torch.randn(2, 25, 8, generator=g, dtype=dtype) + 0.3, dim=-1)
        reg = 0.01 if dtype == torch.float64 else 0.1
        runs = []
        for host in (True, False):
            monkeypatch.setattr(_core, "_HOST_FAST_PATH", host)
            Xg = X.clone().requires_grad_()
            res = sinkhorn_divergence(Xg, Y, reg, scaling=0.25, max_iter=5)
            res.value.sum().backward()
            runs.append((res.value, Xg.grad))
        for u, v in zip(*runs):
            torch.testing.assert_close(u, v, rtol=rtol, atol=rtol * 1e-3)


def test_divergence_lean_kernel_softmin_is_cores():
    from geoalign.ot import _core, _divergence

    g = torch.Generator().manual_seed(3)
    K = torch.rand(2, 20, 17, generator=g, dtype=torch.float64)
    logw, h = torch.rand(2, 17, generator=g, dtype=torch.float64).log(), 30 * torch.randn(2, 17, generator=g,
                                                                                          dtype=torch.float64)
    for M in (K, K.transpose(1, 2)[:, :17, :17]):
        ref = _core.kernel_softmin(0.1, M, logw, h)
        assert torch.equal(_divergence._kernel_softmin(0.1, M, logw, h), ref)
        f, (M2, u, s) = _divergence._kernel_softmin(0.1, M, logw, h, parts=True)
        assert torch.equal(f, ref) and M2 is M
        P = M * u[:, None, :] / s[:, :, None]  # the weights: rows sum to one
        torch.testing.assert_close(P.sum(-1), torch.ones_like(s), rtol=1e-14, atol=1e-14)
