"""Fréchet means: geomstats reference, closed forms, batching, convergence reporting, bad input."""
import warnings

import numpy as np
import pytest
import torch
from scipy.linalg import expm, logm

from geoalign._compat import import_geomstats
from geoalign._warnings import ConvergenceWarning
from geoalign.manifolds import SPD, FrechetMeanResult, Grassmann, Hyperbolic, Sphere, frechet_mean
from geoalign.manifolds.geomstats_interop import to_geomstats, to_geomstats_point
from manifold_cases import IDS, MANIFOLDS




def cluster(M, n, seed, spread=0.4, batch=()):
    """n points around a random centre (batch shape `batch`), geodesic spread ~`spread`."""
    rng = np.random.default_rng(seed)
    c = M.random(batch + (1,), seed=seed)
    c = np.broadcast_to(c, batch + (n,) + M.point_shape).copy()
    v = M.proju(c, rng.normal(size=c.shape))
    v = v / np.sqrt(M.inner(c, v, v))[(...,) + (None,) * M.point_ndim]
    r = spread * rng.random(batch + (n,))[(...,) + (None,) * M.point_ndim]
    return M.exp(c, r * v)


def geomstats_mean(M, x, w):
    import_geomstats()
    from geomstats.learning.frechet_mean import FrechetMean

    est = FrechetMean(to_geomstats(M))
    est.set(max_iter=300, epsilon=1e-26)  # defaults (32, 1e-4) are far too loose
    return est.fit(to_geomstats_point(M, x), weights=w).estimate_


@pytest.mark.parametrize("M", MANIFOLDS, ids=IDS)
def test_matches_geomstats(M):
    x = cluster(M, 8, seed=1, spread=0.8)
    w = np.random.default_rng(2).random(8)
    w /= w.sum()
    res = frechet_mean(x, M, weights=w)
    assert isinstance(res, FrechetMeanResult)
    assert res.converged and res.residual <= 1e-12
    ref = geomstats_mean(M, x, w)
    np.testing.assert_allclose(to_geomstats_point(M, res.mean), ref, atol=1e-6)
    # first-order optimality: the weighted tangent mean vanishes
    logs = M.log(np.broadcast_to(res.mean, x.shape), x)
    np.testing.assert_allclose(np.tensordot(w, logs, axes=1), 0, atol=1e-9)


def test_sphere_symmetric_set_gives_centre():
    S = Sphere(dim=5)
    p = S.random(1, seed=3)[0]
    v = S.proju(p, np.random.default_rng(4).normal(size=(4, 6)))
    v = 0.5 * v / np.linalg.norm(v, axis=-1, keepdims=True)
    x = S.exp(p, np.concatenate([v, -v]))  # symmetric about p
    res = frechet_mean(x, S)
    np.testing.assert_allclose(res.mean, p, atol=1e-12)


def test_log_euclidean_closed_form():
    M = SPD(4, "log_euclidean")
    x = M.random(7, seed=5)
    w = np.arange(1, 8) / 28
    res = frechet_mean(x, M, weights=w)
    expected = expm(sum(wi * logm(xi).real for wi, xi in zip(w, x)))
    np.testing.assert_allclose(res.mean, expected, atol=1e-12)
    assert res.n_iter == 0 and res.converged


@pytest.mark.parametrize("M", [Sphere(dim=7), SPD(3), Grassmann(6, 2), Hyperbolic(2, "poincare")],
                         ids=repr)
def test_batched_equals_loop_and_fixed_iterations(M):
    x = cluster(M, 9, seed=6, batch=(2, 3))
    res = frechet_mean(x, M)
    assert res.mean.shape == (2, 3) + M.point_shape
    assert res.n_iter.shape == res.converged.shape == res.residual.shape == (2, 3)
    assert res.converged.all()
    for i in range(2):
        for j in range(3):
            single = frechet_mean(x[i, j], M)
            np.testing.assert_allclose(res.mean[i, j], single.mean, atol=1e-12)
            assert single.n_iter == res.n_iter[i, j]
    fixed = frechet_mean(x, M, max_iter=int(res.n_iter.max()) + 3, fixed_iterations=True)
    np.testing.assert_allclose(fixed.mean, res.mean, atol=1e-12)
    np.testing.assert_array_equal(fixed.n_iter, res.n_iter)  # converged elements are frozen


def test_torch_in_torch_out_and_float32():
    S = Sphere(dim=3)
    x = cluster(S, 10, seed=7, batch=(3,))
    res_np = frechet_mean(x, S)
    res_t = frechet_mean(torch.as_tensor(x), S)
    assert isinstance(res_t.mean, torch.Tensor) and isinstance(res_t.converged, torch.Tensor)
    assert isinstance(res_np.mean, np.ndarray) and res_np.n_iter.dtype == np.int64
    np.testing.assert_allclose(res_t.mean.numpy(), res_np.mean, atol=1e-14)
    res32 = frechet_mean(x.astype(np.float32), S)
    assert res32.mean.dtype == np.float32 and res32.converged.all()
    np.testing.assert_allclose(res32.mean, res_np.mean, atol=1e-5)
    # batched weights, one row per batch element
    w = np.random.default_rng(0).random((3, 10))
    w /= w.sum(-1, keepdims=True)
    res_w = frechet_mean(x, S, weights=w)
    np.testing.assert_allclose(res_w.mean[1], frechet_mean(x[1], S, weights=w[1]).mean, atol=1e-12)


def test_degenerate_weights_and_single_point():
    M = SPD(3)
    x = M.random(5, seed=8)
    w = np.zeros(5)
    w[2] = 1.0
    np.testing.assert_allclose(frechet_mean(x, M, weights=w).mean, x[2], atol=1e-10)
    np.testing.assert_allclose(frechet_mean(x[:1], M).mean, x[0], atol=1e-10)


def test_spread_hyperbolic_data_converges():
    # Karcher step 1 overshoots here (Hessian of d^2/2 >> identity); step halving rescues it
    L = Hyperbolic(3, "lorentz")
    x = cluster(L, 10, seed=1, spread=4.0)
    res = frechet_mean(x, L)
    assert res.converged
    np.testing.assert_allclose(res.mean, geomstats_mean(L, x, np.full(10, 0.1)), rtol=1e-6)


def test_non_convergence_is_reported_and_warned():
    S = Sphere(dim=4)
    x = cluster(S, 10, seed=9, batch=(4,), spread=1.0)
    with pytest.warns(ConvergenceWarning, match=r"did not converge for \d of 4"):
        res = frechet_mean(x, S, max_iter=1, tol=1e-14)
    assert not res.converged.all() and (res.residual > 1e-14).any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert frechet_mean(x, S).converged.all()


def count_host_reads(monkeypatch):
    """Count Tensor -> Python conversions (host-device synchronisations) in ``calls["n"]``."""
    calls = {"n": 0}
    for meth in ("__bool__", "item", "__float__", "__int__", "tolist"):
        orig = getattr(torch.Tensor, meth)

        def counting(self, *a, _orig=orig, **k):
            calls["n"] += 1
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, meth, counting)
    return calls


def test_fixed_iterations_do_not_synchronise(monkeypatch):
    """No Tensor -> Python conversion inside the loop: the count must not grow with max_iter."""
    S = Sphere(dim=4)
    x = torch.as_tensor(cluster(S, 10, seed=10, batch=(3,)))
    calls = count_host_reads(monkeypatch)
    counts = []
    for max_iter in (40, 80):
        calls["n"] = 0
        frechet_mean(x, S, max_iter=max_iter, fixed_iterations=True)
        counts.append(calls["n"])
    assert counts[0] == counts[1]
    calls["n"] = 0
    frechet_mean(x, S, max_iter=80)  # adaptive mode: one sync per iteration, stops early
    assert 0 < calls["n"] < 80


def test_bad_input():
    S = Sphere(dim=2)
    x = cluster(S, 4, seed=11)
    with pytest.raises(ValueError, match="weights must be non-negative"):
        frechet_mean(x, S, weights=[0.5, 0.7, -0.2, 0.0])
    with pytest.raises(ValueError, match="weights must sum to 1"):
        frechet_mean(x, S, weights=[0.5, 0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="weights must have length 4"):
        frechet_mean(x, S, weights=[0.5, 0.5])
    with pytest.raises(ValueError, match="sum to 1 along the last axis"):
        frechet_mean(x[None].repeat(2, 0), S, weights=np.full((2, 4), 0.3))
    with pytest.raises(ValueError, match="x is not on Sphere"):
        frechet_mean(2 * x, S)
    bad = x.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="x contains 1 NaN or Inf"):
        frechet_mean(bad, S)
    with pytest.raises(ValueError, match="positive definite"):
        frechet_mean(np.stack([np.eye(2), -np.eye(2)]), SPD(2))
    with pytest.raises(ValueError, match="at least 2 dimension"):
        frechet_mean(x[0], S)
    with pytest.raises(ValueError, match="must not be empty"):
        frechet_mean(np.zeros((0, 3)), S)
    with pytest.raises(TypeError, match="manifold must be a geoalign Manifold"):
        frechet_mean(x, "sphere")
    with pytest.raises(ValueError, match="step_size must be a finite number > 0"):
        frechet_mean(x, S, step_size=0)
    with pytest.raises(ValueError, match="tol must be >= 0"):
        frechet_mean(x, S, tol=-1)
    with pytest.raises(ValueError, match="max_iter must be >= 0"):
        frechet_mean(x, S, max_iter=-1)


# --------------------------------------------------------------------------- #
# SPD (affine metric): the Riemannian Newton iteration
# --------------------------------------------------------------------------- #
def spd_data(p, n, seed, scale=0.5, batch=()):
    g = torch.Generator().manual_seed(seed)
    return SPD(p)._random(batch + (n,), g, torch.float64, scale=scale).numpy()


@pytest.mark.parametrize("p,n,scale", [(2, 5, 0.3), (5, 40, 0.5), (16, 30, 0.5), (6, 12, 1.5)])
def test_spd_newton_matches_pyriemann(p, n, scale):
    pyriemann_mean = pytest.importorskip("pyriemann.geometry.mean").mean_riemann
    x = spd_data(p, n, seed=p + n, scale=scale)
    w = np.random.default_rng(p).random(n)
    w /= w.sum()
    ref = pyriemann_mean(x, tol=1e-14, maxiter=2000, sample_weight=w)
    res = frechet_mean(x, SPD(p), weights=w, tol=1e-11)
    assert res.converged and res.residual <= 1e-11
    M = SPD(p)
    assert M.dist(res.mean, ref) <= 1e-9
    # the gradient (Karcher) iteration reaches the same point, in many more passes
    slow = frechet_mean(x, M, weights=w, tol=1e-11, max_iter=2000, method="gradient")
    assert M.dist(res.mean, slow.mean) <= 1e-9
    assert res.n_iter <= 8 and res.n_iter < slow.n_iter


def test_spd_newton_hessian_is_the_second_derivative():
    """<v, H v> of the closed-form Hessian equals F''(0) along exp_I(t v) (central differences)."""
    import geoalign.manifolds.spd as spd_mod

    p, n = 5, 7
    M = SPD(p)
    x = torch.as_tensor(spd_data(p, n, seed=3, scale=0.8))
    w = torch.as_tensor(np.random.default_rng(4).dirichlet(np.ones(n)))
    _, frame, mu, g = M._karcher_state(None, x, w)
    c = w[:, None, None] * spd_mod._tcoth((mu.unsqueeze(-1) - mu.unsqueeze(-2)) / 2)
    rng = np.random.default_rng(5)
    for _ in range(3):
        v = torch.as_tensor(rng.normal(size=(p, p)))
        v = (v + v.T) / 2
        hv = frame.hessian(c, v)

        def F(t):
            m = M._whitened_exp(None, t * v)
            d = M._dist(m.expand(n, p, p), x)
            return 0.5 * float((w * d * d).sum())

        h = 1e-4
        second = (F(h) - 2 * F(0) + F(-h)) / h**2
        first = (F(h) - F(-h)) / (2 * h)
        np.testing.assert_allclose(float((v * hv).sum()), second, rtol=1e-5)
        np.testing.assert_allclose(-float((v * g).sum()), first, rtol=1e-6)  # the gradient is -g


def test_spd_newton_batched_weights_float32_and_torch():
    x = spd_data(4, 10, seed=7, batch=(3,))
    w = np.random.default_rng(8).random((3, 10))
    w /= w.sum(-1, keepdims=True)
    res = frechet_mean(x, SPD(4), weights=w)
    for i in range(3):
        single = frechet_mean(x[i], SPD(4), weights=w[i])
        np.testing.assert_allclose(res.mean[i], single.mean, atol=1e-12)
        assert res.n_iter[i] == single.n_iter
    res32 = frechet_mean(x.astype(np.float32), SPD(4), weights=w.astype(np.float32))
    assert res32.mean.dtype == np.float32 and res32.converged.all()
    np.testing.assert_allclose(res32.mean, res.mean, atol=1e-4)
    rt = frechet_mean(torch.as_tensor(x), SPD(4), weights=torch.as_tensor(w))
    assert isinstance(rt.mean, torch.Tensor)
    np.testing.assert_allclose(rt.mean.numpy(), res.mean, atol=1e-14)


def test_spd_newton_edge_cases():
    M = SPD(3)
    x = spd_data(3, 6, seed=9)
    # max_iter=0: the log-Euclidean mean, the documented starting point
    start = frechet_mean(x, M, max_iter=0, fixed_iterations=True)
    np.testing.assert_allclose(start.mean, expm(sum(logm(xi).real for xi in x) / 6), atol=1e-12)
    assert start.n_iter == 0
    # identical points: the mean is that point, reached by the first Newton step
    same = frechet_mean(np.repeat(x[:1], 4, 0), M)
    np.testing.assert_allclose(same.mean, x[0], atol=1e-10)
    # data symmetric about the identity: converged at the first pass, no update
    a = logm(x[0]).real
    pair = np.stack([expm(a), expm(-a)])
    sym_res = frechet_mean(pair, M)
    np.testing.assert_allclose(sym_res.mean, np.eye(3), atol=1e-12)
    assert sym_res.n_iter == 0
    # badly scaled data (entries ~1e6) converge like well-scaled ones
    big = frechet_mean(1e6 * x, M)
    np.testing.assert_allclose(big.mean / 1e6, frechet_mean(x, M).mean, rtol=1e-9)


def test_spd_method_bad_input():
    x = spd_data(3, 4, seed=10)
    with pytest.raises(ValueError, match="unknown method .bfgs.; expected one of"):
        frechet_mean(x, SPD(3), method="bfgs")
    with pytest.raises(ValueError, match="method='newton' needs SPD with metric='affine'"):
        frechet_mean(x, SPD(3, "log_euclidean"), method="newton")
    with pytest.raises(ValueError, match="method='newton' needs SPD"):
        frechet_mean(cluster(Sphere(dim=2), 4, seed=1), Sphere(dim=2), method="newton")


def test_spd_newton_fixed_iterations_do_not_synchronise(monkeypatch):
    x = torch.as_tensor(spd_data(4, 10, seed=11, batch=(3,)))
    M = SPD(4, validate=False)
    calls = count_host_reads(monkeypatch)
    counts = []
    for max_iter in (3, 9):
        calls["n"] = 0
        res = frechet_mean(x, M, max_iter=max_iter, fixed_iterations=True)
        counts.append(calls["n"])
    assert counts[0] == counts[1] == 0
    adaptive = frechet_mean(x, M)
    np.testing.assert_allclose(res.mean.numpy(), adaptive.mean.numpy(), atol=1e-12)


@pytest.mark.parametrize("d", [3, 5, 64])
def test_sphere_perturbed_frechet_matches_direct_evaluation(d):
    """The one-matrix-product form of the not-a-minimum check equals 2K direct evaluations,
    antipodal and coincident points included."""
    from geoalign.manifolds.frechet import _frechet_function, _sphere_perturbed_frechet

    S = Sphere(dim=d - 1)
    gen = torch.Generator().manual_seed(d)
    m = torch.randn(4, d, generator=gen, dtype=torch.float64)
    m = m / m.norm(dim=-1, keepdim=True)
    x = torch.randn(4, 30, d, generator=gen, dtype=torch.float64)
    x = x / x.norm(dim=-1, keepdim=True)
    x[:, 0], x[:, 1] = -m, m
    w = torch.rand(4, 30, generator=gen, dtype=torch.float64)
    w = w / w.sum(-1, keepdim=True)
    V = torch.randn(4, d, 8, generator=gen, dtype=torch.float64)
    V = V - (m.unsqueeze(-1) * V).sum(-2, keepdim=True) * m.unsqueeze(-1)
    V = V / V.norm(dim=-2, keepdim=True)
    delta = torch.finfo(torch.float64).eps ** 0.25
    f0, f1 = _sphere_perturbed_frechet(m, x, w, V, delta)
    g0 = _frechet_function(S, m, x, w)
    g1 = torch.cat([torch.stack([_frechet_function(S, S._exp(m, sign * delta * V[..., k]), x, w)
                                 for k in range(8)], -1) for sign in (1.0, -1.0)], -1)
    torch.testing.assert_close(f0, g0, rtol=0, atol=1e-14)
    torch.testing.assert_close(f1 - f0[..., None], g1 - g0[..., None], rtol=0, atol=1e-14)
