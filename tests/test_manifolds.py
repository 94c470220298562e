"""Manifold operations: geomstats reference, closed forms, properties, stability, bad input."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from geoalign.manifolds import SPD, Grassmann, Hyperbolic, Sphere
from geoalign.manifolds.geomstats_interop import (
    from_geomstats_point,
    from_geomstats_tangent,
    to_geomstats,
    to_geomstats_point,
    to_geomstats_tangent,
)
from geoalign.manifolds.hyperbolic import lorentz_to_poincare, poincare_to_lorentz
from manifold_cases import IDS, MANIFOLDS



def points(M, n, seed):
    if isinstance(M, Hyperbolic):
        return M.random(n, seed=seed, scale=0.7)
    return M.random(n, seed=seed)


def tangent(M, x, seed, scale=0.5):
    g = np.random.default_rng(seed).normal(size=x.shape) * scale
    if isinstance(M, Hyperbolic) and M.model == "poincare":
        # keep Euclidean size comparable to the conformal factor near the boundary
        g = g * (1 - (x * x).sum(-1, keepdims=True))
    return M.proju(x, g)


def geomstats_factor(M):
    return math.sqrt(2) if isinstance(M, Grassmann) else 1.0


# ---------------------------------------------------------------- geomstats reference
@pytest.mark.parametrize("M", MANIFOLDS, ids=IDS)
def test_exp_log_dist_match_geomstats(M):
    gs = to_geomstats(M)
    x, y = points(M, 6, 0), points(M, 6, 1)
    xg, yg = to_geomstats_point(M, x), to_geomstats_point(M, y)
    np.testing.assert_allclose(M.dist(x, y) * geomstats_factor(M), gs.metric.dist(xg, yg),
                               rtol=1e-6, atol=1e-6)
    v = M.log(x, y)
    np.testing.assert_allclose(to_geomstats_tangent(M, x, v), gs.metric.log(yg, xg),
                               rtol=1e-6, atol=1e-6)
    u = tangent(M, x, 2)
    np.testing.assert_allclose(to_geomstats_point(M, M.exp(x, u)),
                               gs.metric.exp(to_geomstats_tangent(M, x, u), xg),
                               rtol=1e-6, atol=1e-6)
    # inner product (Grassmann: geomstats' projector metric is twice ours)
    w = tangent(M, x, 3)
    np.testing.assert_allclose(
        M.inner(x, u, w) * geomstats_factor(M) ** 2,
        gs.metric.inner_product(to_geomstats_tangent(M, x, u), to_geomstats_tangent(M, x, w), xg),
        rtol=1e-6, atol=1e-8)
    assert gs.belongs(xg).all()


@pytest.mark.parametrize("M", MANIFOLDS, ids=IDS)
def test_geomstats_point_and_tangent_roundtrip(M):
    x = points(M, 4, 5)
    back = from_geomstats_point(M, to_geomstats_point(M, x))
    np.testing.assert_allclose(M.dist(back, x), 0, atol=1e-7)
    v = tangent(M, x, 6)
    np.testing.assert_allclose(from_geomstats_tangent(M, x, to_geomstats_tangent(M, x, v)), v,
                               atol=1e-12)


def test_poincare_lorentz_isometry():
    P, L = Hyperbolic(4, "poincare"), Hyperbolic(4, "lorentz")
    x, y = P.random(10, seed=1), P.random(10, seed=2)
    xl, yl = poincare_to_lorentz(x), poincare_to_lorentz(y)
    assert L.belongs(xl).all()
    np.testing.assert_allclose(L.dist(xl, yl), P.dist(x, y), rtol=1e-10)
    np.testing.assert_allclose(lorentz_to_poincare(xl), x, atol=1e-12)
    with pytest.raises(ValueError, match="open unit ball"):
        poincare_to_lorentz(np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="upper sheet"):
        lorentz_to_poincare(np.array([-1.0, 0.0]))


# ------------------------------------------------------------------- properties
@pytest.mark.parametrize("M", MANIFOLDS, ids=IDS)
@settings(max_examples=20)  # x 6 manifolds; each example checks 10 identities
@given(seed=st.integers(0, 2**20), t=st.floats(0, 1))
def test_properties(M, seed, t):
    x, y = points(M, 2, seed), points(M, 2, seed + 1)
    d = M.dist(x, y)
    # exp(x, log(x, y)) = y and |log| = dist
    v = M.log(x, y)
    np.testing.assert_allclose(M.dist(M.exp(x, v), y), 0, atol=1e-7)
    np.testing.assert_allclose(M.norm(x, v), d, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(M.dist(y, x), d, rtol=1e-9, atol=1e-9)  # symmetry
    np.testing.assert_allclose(M.dist(x, x), 0, atol=1e-7)
    g = M.geodesic(x, y, np.array([0.0, t, 1.0]))
    np.testing.assert_allclose(M.dist(g[0], x), 0, atol=1e-7)
    np.testing.assert_allclose(M.dist(g[2], y), 0, atol=1e-7)
    np.testing.assert_allclose(M.dist(x, g[1]), t * d, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(M.dist(g[1], y), (1 - t) * d, rtol=1e-7, atol=1e-7)
    assert M.belongs(M.exp(x, tangent(M, x, seed))).all()


@pytest.mark.parametrize("M", MANIFOLDS, ids=IDS)
def test_projections(M):
    rng = np.random.default_rng(0)
    amb = rng.normal(size=(5,) + M.point_shape) * 0.3
    if isinstance(M, SPD):
        amb = amb @ np.swapaxes(amb, -1, -2) + 0.1 * np.eye(M.n)
    p = M.projx(amb)
    assert M.belongs(p).all()
    np.testing.assert_allclose(M.projx(p), p, atol=1e-10)  # idempotent on the manifold
    u = M.proju(p, rng.normal(size=p.shape))
    M.check_tangent(p, u)
    np.testing.assert_allclose(M.proju(p, u), u, atol=1e-10)
    assert M.to_tangent == M.proju


# ---------------------------------------------------------------- backends / shapes
@pytest.mark.parametrize("M", MANIFOLDS, ids=IDS)
def test_backends_dtypes_and_broadcasting(M):
    x, y = points(M, 3, 0), points(M, 4, 1)
    d_np = M.dist(x[:, None], y[None])  # broadcast (3, 1) x (1, 4)
    assert isinstance(d_np, np.ndarray) and d_np.shape == (3, 4)
    d_t = M.dist(torch.as_tensor(x)[:, None], torch.as_tensor(y))
    assert isinstance(d_t, torch.Tensor) and d_t.dtype == torch.float64
    np.testing.assert_allclose(d_t.numpy(), d_np, atol=1e-12)
    # mixed numpy / torch -> torch
    assert isinstance(M.log(x[:1], torch.as_tensor(y[:1])), torch.Tensor)
    # float32 stays float32 and agrees to float32 precision
    d32 = M.dist(x.astype(np.float32)[:, None], y.astype(np.float32)[None])
    assert d32.dtype == np.float32
    np.testing.assert_allclose(d32, d_np, atol=2e-3, rtol=2e-3)
    # geodesic: scalar t keeps the shape, array t prepends its shape
    assert M.geodesic(x, y[:3], 0.5).shape == x.shape
    assert M.geodesic(x, y[:3], np.linspace(0, 1, 7)).shape == (7,) + x.shape
    assert M.belongs(x).shape == (3,)
    r = M.random((2, 3), seed=0)
    assert r.shape == (2, 3) + M.point_shape
    np.testing.assert_array_equal(r, M.random((2, 3), seed=0))  # reproducible
    assert M.random(2, seed=0, device="cpu", dtype="float32").dtype == torch.float32


# -------------------------------------------------------------------- stability
def test_sphere_small_distances_and_antipodes():
    S = Sphere(dim=3)
    x = S.random(3, seed=0)
    v = S.proju(x, np.random.default_rng(1).normal(size=x.shape))
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    for eps in (1e-3, 1e-7, 1e-10):
        y = S.exp(x, eps * v)
        np.testing.assert_allclose(S.dist(x, y), eps, rtol=1e-6)
        np.testing.assert_allclose(S.log(x, y), eps * v, rtol=1e-5, atol=1e-15)
    np.testing.assert_array_equal(S.log(x, x), 0)
    # antipodes: deterministic log of length pi, exp returns -x
    lg = S.log(x, -x)
    np.testing.assert_allclose(np.linalg.norm(lg, axis=-1), math.pi, rtol=1e-12)
    np.testing.assert_allclose(S.exp(x, lg), -x, atol=1e-12)
    np.testing.assert_allclose(S.dist(x, -x), math.pi, rtol=1e-12)
    # nearly antipodal: still the short geodesic, exp(log) = y
    y = S.exp(x, (math.pi - 1e-9) * v)
    np.testing.assert_allclose(S.exp(x, S.log(x, y)), y, atol=1e-8)


def test_poincare_boundary():
    P = Hyperbolic(2, "poincare")
    x = np.array([[1 - 1e-9, 0.0], [0.0, 0.5]])
    assert P.belongs(x).all()
    y = np.array([[0.0, 0.0], [0.0, 0.0]])
    d = P.dist(x, y)
    np.testing.assert_allclose(d[0], 2 * np.arctanh(1 - 1e-9), rtol=1e-6)
    # exp towards the boundary is clamped inside the ball
    far = P.exp(y, np.array([[100.0, 0.0], [0.0, 100.0]]))
    n = np.linalg.norm(far, axis=-1)
    assert (n < 1).all() and np.allclose(n, 1 - 1e-5)
    p32 = P.projx(np.array([[2.0, 0.0]], dtype=np.float32))
    np.testing.assert_allclose(np.linalg.norm(p32), 1 - 4e-3, rtol=1e-6)
    # tiny distances keep full relative precision (asinh form)
    z = np.array([0.3, 0.1])
    zz = z + [1e-12, 0]
    np.testing.assert_allclose(P.dist(z, zz), 2 * (zz[0] - z[0]) / (1 - 0.1), rtol=1e-6)


def test_lorentz_small_distances():
    L = Hyperbolic(3, "lorentz")
    x = L.random(2, seed=3)
    v = L.proju(x, np.random.default_rng(0).normal(size=x.shape))
    v = v / L.norm(x, v)[..., None]
    y = L.exp(x, 1e-9 * v)
    np.testing.assert_allclose(L.dist(x, y), 1e-9, rtol=1e-5)
    np.testing.assert_allclose(L.log(x, y), 1e-9 * v, rtol=1e-4, atol=1e-16)


def test_spd_repeated_eigenvalues_log_euclidean():
    M = SPD(3, "log_euclidean")
    eye = np.eye(3)
    y = M.random(2, seed=0)
    from scipy.linalg import expm, logm

    np.testing.assert_allclose(M.log(eye, y[0]), logm(y[0]).real, atol=1e-12)
    v = np.array([[0.2, 0.1, 0.0], [0.1, -0.3, 0.05], [0.0, 0.05, 0.1]])
    np.testing.assert_allclose(M.exp(2 * eye, v), expm(np.log(2) * eye + v / 2), atol=1e-12)
    # nearly repeated eigenvalues: still matches geomstats
    x = np.diag([1.0, 1.0 + 1e-9, 2.0])
    gs = to_geomstats(M)
    np.testing.assert_allclose(M.log(x, y[1]), gs.metric.log(y[1], x), atol=1e-8)


def test_grassmann_small_angles_and_frames():
    G = Grassmann(6, 2)
    x = G.random(1, seed=0)[0]
    v = G.proju(x, np.random.default_rng(0).normal(size=x.shape))
    v = v / np.linalg.norm(v)
    y = G.exp(x, 1e-9 * v)
    np.testing.assert_allclose(G.dist(x, y), 1e-9, rtol=1e-5)
    # a rotated frame is the same point
    q = np.linalg.qr(np.random.default_rng(1).normal(size=(2, 2)))[0]
    np.testing.assert_allclose(G.dist(x, x @ q), 0, atol=1e-7)
    np.testing.assert_allclose(G.log(x, x @ q), 0, atol=1e-7)
    # orthogonal subspaces: distance sqrt(2) * pi/2
    e = np.eye(6)
    np.testing.assert_allclose(G.dist(e[:, :2], e[:, 2:4]), math.sqrt(2) * math.pi / 2)


# -------------------------------------------------------------------- bad input
def test_off_manifold_points_raise():
    with pytest.raises(ValueError, match=r"x is not on Sphere\(dim=2\).*\|\|x\|\| = 1"):
        Sphere(dim=2).dist(np.array([1.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="y is not on"):
        Hyperbolic(2).log(np.zeros(2), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="positive definite"):
        SPD(2).dist(np.eye(2), np.array([[1.0, 0.0], [0.0, -1.0]]))
    with pytest.raises(ValueError, match="x is not on"):
        SPD(2).log(np.array([[1.0, 0.5], [0.0, 1.0]]), np.eye(2))  # not symmetric
    with pytest.raises(ValueError, match=r"X\^T X = I_p"):
        Grassmann(3, 2).dist(np.ones((3, 2)), np.eye(3)[:, :2])
    with pytest.raises(ValueError, match="x_0 > 0"):
        Hyperbolic(2, "lorentz").dist(np.array([-1.0, 0, 0]), np.array([1.0, 0, 0]))
    with pytest.raises(ValueError, match="not a tangent vector"):
        Sphere(dim=2).exp(np.array([1.0, 0, 0]), np.array([0.5, 0, 0]))
    with pytest.raises(ValueError, match="NaN or Inf"):
        Sphere(dim=2).dist(np.array([np.nan, 0, 0]), np.array([1.0, 0, 0]))
    with pytest.raises(ValueError, match="NaN or Inf"):
        SPD(2).exp(np.eye(2), np.array([[np.inf, 0], [0, 0]]))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 3\)"):
        Sphere(dim=2).dist(np.array([1.0, 0]), np.array([1.0, 0]))
    with pytest.raises(ValueError, match="unknown model"):
        Hyperbolic(2, model="klein")
    with pytest.raises(ValueError, match="unknown metric"):
        SPD(2, metric="bures")
    with pytest.raises(ValueError, match="p must be <= 3"):
        Grassmann(3, 4)
    with pytest.raises(ValueError, match="dim must be >= 1"):
        Sphere(dim=0)
    with pytest.raises(TypeError, match="intrinsic dimension as dim=k"):
        Sphere()


def test_old_sphere_and_hyperbolic_arguments_warn():
    from geoalign._warnings import GeoalignDeprecationWarning

    with pytest.warns(GeoalignDeprecationWarning, match=r"Sphere\(3\) with the ambient dimension is "
                                                        r"deprecated; use Sphere\(dim=2\)"):
        old = Sphere(3)
    assert old == Sphere(dim=2) and old.point_shape == (3,) and old.d == 3 and old.dim == 2
    with pytest.raises(ValueError, match="d must be >= 2"):
        Sphere(1)  # checked before the warning
    with pytest.warns(GeoalignDeprecationWarning, match=r"Hyperbolic\(d=...\) is deprecated"):
        assert Hyperbolic(d=3) == Hyperbolic(3) == Hyperbolic(dim=3)
    assert repr(Sphere(dim=2)) == "Sphere(dim=2)" and repr(Hyperbolic(2)) == "Hyperbolic(dim=2, model='poincare')"


def test_tolerances_are_dtype_keyed():
    S = Sphere(dim=2)
    off = np.array([1 + 1e-5, 0.0, 0.0])
    assert not S.belongs(off)  # float64: atol 1e-7
    assert S.belongs(off.astype(np.float32))  # float32: atol 1e-4
    S.check_point(off.astype(np.float32))
    with pytest.raises(ValueError, match="atol 1e-07"):
        S.check_point(off)
    assert S.belongs(off, atol=1e-4)
    assert not S.belongs(np.array([np.nan, 0, 0]))  # NaN is reported, not raised
    with pytest.raises(ValueError, match="atol must be >= 0"):
        S.belongs(off, atol=-1)
    lenient = Sphere(dim=2, validate=False)
    assert np.isfinite(lenient.dist(off, off))  # validation off: trusted input
