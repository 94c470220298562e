import numpy as np
import ot
import pytest
import torch
from hypothesis import given, strategies as st

from geoalign._warnings import ConvergenceWarning
from geoalign.ot import sinkhorn


def _problem(rng, n=12, m=9):
    C = rng.random((n, m))
    a = rng.random(n) + 0.1
    b = rng.random(m) + 0.1
    return a / a.sum(), b / b.sum(), C


@pytest.mark.parametrize("reg", [0.5, 0.05, 0.01])
def test_matches_pot_converged(rng, reg):
    a, b, C = _problem(rng)
    P = ot.sinkhorn(a, b, C, reg, method="sinkhorn_log", numItermax=20000, stopThr=1e-13)
    res = sinkhorn(a, b, C, reg, max_iter=20000, tol=1e-12)
    assert res.converged and res.marginal_error <= 1e-12
    np.testing.assert_allclose(res.plan, P, atol=1e-9)
    assert res.value == pytest.approx(float((C * P).sum()), abs=1e-9)


def test_matches_pot_fixed_iterations(rng):
    a, b, C = _problem(rng, 30, 20)
    with pytest.warns(UserWarning):  # POT warns that it did not converge
        P = ot.sinkhorn(a, b, C, 0.01, method="sinkhorn_log", numItermax=23, stopThr=0.0)
    res = sinkhorn(a, b, C, 0.01, max_iter=23, tol=0.0)
    assert res.n_iter == 23
    np.testing.assert_allclose(res.plan, P, atol=1e-12, rtol=1e-9)


def test_potentials_and_entropic_value(rng):
    a, b, C = _problem(rng)
    reg = 0.1
    res = sinkhorn(a, b, C, reg, tol=1e-12, max_iter=5000)
    f, g = res.potentials
    P = a[:, None] * b[None] * np.exp((f[:, None] + g[None] - C) / reg)
    np.testing.assert_allclose(P, res.plan, atol=1e-12)
    kl = np.sum(res.plan * np.log(res.plan / (a[:, None] * b[None])))
    assert res.entropic_value == pytest.approx(res.value + reg * kl, abs=1e-10)


def test_small_reg_stable_and_close_to_emd(rng):
    n = 40
    C = rng.random((n, n))
    a = b = np.full(n, 1.0 / n)
    exact = ot.emd2(a, b, C)
    res = sinkhorn(a, b, C, 1e-4, max_iter=3000, tol=1e-3, eps_scaling=0.5)
    assert np.isfinite(res.plan).all() and res.converged
    assert res.value == pytest.approx(exact, abs=2e-3)
    vals = [sinkhorn(a, b, C, r, max_iter=20000, tol=1e-6).value for r in (0.1, 0.03, 0.01)]
    assert vals[0] > vals[1] > vals[2] > exact - 1e-9


def test_batched_equals_loop(rng):
    probs = [_problem(rng, 7, 5) for _ in range(3)]
    A = np.stack([p[0] for p in probs])
    B = np.stack([p[1] for p in probs])
    C = np.stack([p[2] for p in probs])
    res = sinkhorn(A, B, C, 0.05, tol=1e-11, max_iter=5000)
    assert res.plan.shape == (3, 7, 5) and res.value.shape == (3,)
    for k, (a, b, c) in enumerate(probs):
        single = sinkhorn(a, b, c, 0.05, tol=1e-11, max_iter=5000)
        np.testing.assert_allclose(res.plan[k], single.plan, atol=1e-10)


def test_torch_in_torch_out_and_float32(rng):
    a, b, C = _problem(rng)
    res = sinkhorn(torch.tensor(a), torch.tensor(b), torch.tensor(C), 0.1, tol=1e-10)
    assert isinstance(res.plan, torch.Tensor) and res.plan.dtype == torch.float64
    res32 = sinkhorn(None, None, torch.tensor(C, dtype=torch.float32), 0.1, tol=1e-5)
    assert res32.plan.dtype == torch.float32
    ref = sinkhorn(None, None, C, 0.1, tol=1e-12)
    np.testing.assert_allclose(res32.plan.numpy(), ref.plan, atol=1e-6)


def test_envelope_gradient_gradcheck(rng):
    C = torch.tensor(rng.random((4, 3)), requires_grad=True)
    a = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    fn = lambda c: sinkhorn(a, None, c, 0.3, tol=1e-13, max_iter=10000).entropic_value
    assert torch.autograd.gradcheck(fn, (C,))
    res = sinkhorn(a, None, C, 0.3, tol=1e-13, max_iter=10000)
    (grad,) = torch.autograd.grad(res.value, C)
    torch.testing.assert_close(grad, res.plan.detach())


def test_nonconvergence_warns(rng):
    a, b, C = _problem(rng)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        res = sinkhorn(a, b, C, 0.001, max_iter=3, tol=1e-12)
    assert not res.converged and res.marginal_error > 1e-12


@given(st.integers(2, 8), st.integers(2, 8), st.floats(0.02, 1.0), st.integers(0, 2**16))
def test_marginals_property(n, m, reg, seed):
    r = np.random.default_rng(seed)
    a, b, C = _problem(r, n, m)
    res = sinkhorn(a, b, C, reg, tol=1e-10, max_iter=20000)
    np.testing.assert_allclose(res.plan.sum(1), a, atol=1e-12)
    np.testing.assert_allclose(res.plan.sum(0), b, atol=1e-9)
    assert (res.plan >= 0).all()


def test_zero_mass_points(rng):
    a = np.array([0.5, 0.0, 0.5])
    C = rng.random((3, 4))
    res = sinkhorn(a, None, C, 0.1, tol=1e-11)
    assert np.all(res.plan[1] == 0) and np.isfinite(res.potentials[0]).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(reg=0.0), "reg"), (dict(reg=-1.0), "reg"),
    (dict(a=np.array([0.5, -0.1, 0.6])), "a must be non-negative"),
    (dict(b=np.array([0.5, 0.6])), "b must have length 3"),
    (dict(a=np.array([0.2, 0.2, 0.2])), "same total mass"),
    (dict(C=np.array([[0.0, np.nan, 1], [1, 0, 1], [1, 1, 0]])), "C contains"),
    (dict(C=np.zeros((0, 3))), "C must not be empty"),
    (dict(eps_scaling=1.5), "eps_scaling"),
])
def test_bad_input(kwargs, match):
    args = dict(a=None, b=None, C=1 - np.eye(3), reg=0.1)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        sinkhorn(args["a"], args["b"], args["C"], args["reg"], **{k: v for k, v in args.items()
                                                                   if k not in ("a", "b", "C", "reg")})


def test_device_mismatch_message():
    C = torch.rand(3, 3)
    with pytest.raises(ValueError, match="device"):
        sinkhorn(torch.ones(3, device="meta") / 3, None, C, 0.1)
