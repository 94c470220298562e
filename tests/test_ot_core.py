"""The Sinkhorn core (geoalign/ot/_core.py) and the callers that share it.

``tests/data/ot_core_reference.npz`` holds the outputs of the five Sinkhorn loops
as they were before they were merged into the core (written by
``tests/data/make_ot_core_reference.py`` at commit 27f22df), at fixed iteration
counts in float64: the merged code must reproduce them to rtol 1e-10.
"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from geoalign.ot import _core

DATA = Path(__file__).parent / "data"


def _maker():
    spec = importlib.util.spec_from_file_location("make_ot_core_reference", DATA / "make_ot_core_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def reference():
    with np.load(DATA / "ot_core_reference.npz") as z:
        return dict(z)


@pytest.mark.parametrize("host", [True, False])
def test_merged_loops_reproduce_the_old_ones(reference, host, monkeypatch):
    monkeypatch.setattr(_core, "_HOST_FAST_PATH", host)
    mk = _maker()
    new = mk.outputs(mk.inputs())
    assert sorted(new) == sorted(reference)
    for key, ref in reference.items():
        got = np.asarray(new[key])
        assert got.shape == ref.shape, key
        if key.endswith("n_iter"):
            assert int(got) == int(ref), key
            continue
        scale = max(float(np.abs(ref[np.isfinite(ref)]).max(initial=0.0)), 1e-300)
        # rtol 1e-10 relative to each array's scale (entries near 0 have no relative precision)
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10 * scale, err_msg=key)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("omega", [1.0, 1.5])
def test_host_and_device_scaling_iterations_agree(dtype, omega, monkeypatch):
    g = torch.Generator().manual_seed(3)
    K = torch.rand(5, 30, 40, generator=g, dtype=torch.float64).to(dtype)
    a = torch.full((5, 1, 30), 1 / 30, dtype=dtype)
    b = torch.rand(5, 1, 40, generator=g, dtype=torch.float64).to(dtype)
    b[:, :, 3] = 0  # a zero-mass column (over-relaxation gives 0^(1-w) * 0 there)
    b = b / b.sum(-1, keepdim=True)
    u0 = torch.ones_like(a)
    monkeypatch.setattr(_core, "_HOST_FAST_PATH", False)
    ud, vd = _core.scaling_iterations(u0, K, a, b, 25, omega=omega)
    monkeypatch.setattr(_core, "_HOST_FAST_PATH", True)
    uh, vh = _core.scaling_iterations(u0, K, a, b, 25, omega=omega)
    tol = dict(rtol=1e-12, atol=0) if dtype == torch.float64 else dict(rtol=1e-5, atol=0)
    torch.testing.assert_close(uh, ud, **tol)
    torch.testing.assert_close(vh, vd, **tol)
    assert bool((vh[:, :, 3] == 0).all())
    if omega == 1:  # rows exact after the row update (over-relaxed: only in the limit)
        torch.testing.assert_close((uh.transpose(1, 2) * K * vh).sum(2), a[:, 0], **tol)


def test_scaling_iterations_converge_to_pot():
    ot = pytest.importorskip("ot")
    rng = np.random.default_rng(0)
    C = rng.uniform(size=(20, 30))
    a, b = rng.dirichlet(np.ones(20)), rng.dirichlet(np.ones(30))
    K = torch.as_tensor(np.exp(-C / 0.1))[None]
    u, v = _core.scaling_iterations(torch.ones(1, 1, 20, dtype=torch.float64), K,
                                    torch.as_tensor(a)[None, None], torch.as_tensor(b)[None, None], 500)
    plan = (u.transpose(1, 2) * K * v)[0].numpy()
    np.testing.assert_allclose(plan, ot.sinkhorn(a, b, C, 0.1, numItermax=500, stopThr=0, warn=False), rtol=1e-9,
                               atol=1e-15)


def test_multi_marginal_scalings_meet_their_three_marginals():
    g = torch.Generator().manual_seed(0)
    S = torch.tanh(torch.randn(16, 6, generator=g, dtype=torch.float64))
    n_low = 3
    e_low, e_high = torch.exp(0.25 * S / 0.5), torch.exp(S / 0.5)
    alpha, beta, gamma = _core.multi_marginal_scalings(e_low, e_high, n_low, 500)
    kernel = torch.cat([e_low[:, None, :].expand(16, n_low, 6), e_high[:, None, :].expand(16, 3, 6)], dim=1)
    Q = kernel * alpha[None] * beta[:, None, :] * gamma[:, :, None]
    torch.testing.assert_close(Q.sum(0), torch.full((6, 6), 16 / 6, dtype=torch.float64), rtol=1e-8, atol=0)
    torch.testing.assert_close(Q.sum(1), torch.ones(16, 6, dtype=torch.float64), rtol=1e-8, atol=0)
    torch.testing.assert_close(Q.sum(2), torch.ones(16, 6, dtype=torch.float64), rtol=1e-8, atol=0)


def test_log_kernel_apply_is_the_softmin():
    g = torch.Generator().manual_seed(1)
    C = torch.rand(2, 7, 9, generator=g, dtype=torch.float64)
    h = torch.randn(2, 9, generator=g, dtype=torch.float64)
    ref = -0.05 * torch.log((torch.exp(-C / 0.05) * torch.exp(h)[:, None, :]).sum(2))
    torch.testing.assert_close(_core.softmin(0.05, C, h), ref, rtol=1e-12, atol=0)
    K = torch.exp(-C / 0.05)
    logw = torch.log(torch.full((2, 9), 1 / 9, dtype=torch.float64))
    torch.testing.assert_close(_core.kernel_softmin(0.05, K, logw, h), _core.softmin(0.05, C, logw + h),
                               rtol=1e-12, atol=0)


# --------------------------------------------------------------------------- #
# Permutation plans of the free-support barycentre: certificates and POT's fixed point
# --------------------------------------------------------------------------- #
def test_dual_potentials_certify_exactly_the_optimal_permutations():
    from scipy.optimize import linear_sum_assignment

    from geoalign.ot import _free_support

    rng = np.random.default_rng(5)
    for n in (5, 40):
        C = rng.uniform(size=(n, n))
        perm = linear_sum_assignment(C)[1]
        v, ok = _free_support.dual_potentials(C, perm, np.zeros(n), n + 1)
        assert ok
        u = C[np.arange(n), perm] - v[perm]
        assert (u[:, None] + v[None] <= C + 1e-12).all()  # dual feasible, tight on perm: optimal
        worse = perm.copy()
        worse[[0, 1]] = worse[[1, 0]]
        if C[np.arange(n), worse].sum() > C[np.arange(n), perm].sum() + 1e-9:
            assert not _free_support.dual_potentials(C, worse, np.zeros(n), n + 1)[1]


@pytest.mark.parametrize("K,d,start", [(2, 2, "cloud"), (4, 8, "random"), (3, 32, "cloud")])
def test_assignment_fixed_point_is_pots(K, d, start):
    ot = pytest.importorskip("ot")
    from geoalign.ot import free_support_barycenter

    rng = np.random.default_rng(K * 100 + d)
    n = 40
    clouds = np.stack([rng.normal(size=(n, d)) + rng.normal(scale=2, size=d) for _ in range(K)])
    X0 = clouds[0] + 0.1 * rng.normal(size=(n, d)) if start == "cloud" else 2 * rng.normal(size=(n, d))
    Xp = ot.lp.free_support_barycenter(list(clouds), [np.full(n, 1 / n)] * K, X0.copy())
    res = free_support_barycenter(clouds, init=X0)
    assert res.converged and res.n_exact == res.n_iter
    np.testing.assert_allclose(res.support, Xp, rtol=0, atol=1e-12)
    w = np.full(n, 1 / n)
    obj = np.mean([ot.emd2(w, w, ot.dist(res.support, Y)) for Y in clouds])
    np.testing.assert_allclose(res.value, obj, rtol=1e-12)


def test_divergence_envelope_gradient_batched_and_one_sided():
    from geoalign.ot import sinkhorn_divergence

    g = torch.Generator().manual_seed(7)
    X = torch.randn(2, 12, 3, generator=g, dtype=torch.float64)
    Y = torch.randn(2, 15, 3, generator=g, dtype=torch.float64) + 0.5
    Xb, Yb = X.clone().requires_grad_(), Y.clone().requires_grad_()
    (sinkhorn_divergence(Xb, Yb, 0.2, max_iter=30, diameter=40.0).value * torch.tensor([1.0, 3.0])).sum().backward()
    for k, w in enumerate((1.0, 3.0)):
        Xk = X[k].clone().requires_grad_()
        (w * sinkhorn_divergence(Xk, Y[k], 0.2, max_iter=30, diameter=40.0).value).backward()  # Y constant
        torch.testing.assert_close(Xb.grad[k], Xk.grad, rtol=1e-10, atol=1e-14)
    # p != 2 keeps autograd through the soft-min passes; p -> 2 gives the same gradient
    Xp = X[0].clone().requires_grad_()
    sinkhorn_divergence(Xp, Y[0], 0.2, max_iter=30, p=2 + 1e-9, diameter=40.0).value.backward()
    torch.testing.assert_close(Xp.grad, Xb.grad[0], rtol=1e-6, atol=1e-9)
