"""The same computations on every device of the ``device`` fixture agree with the CPU.

On a machine with CUDA these tests are the GPU check (``benchmarks/gpu_check.py``
runs them); here they run on ``"cpu"`` and, for shapes only, on ``"meta"``.

Tolerances (device result vs the float64 CPU result): exact for integer
results (ring products, fiber-product pairs, retrieval ranks); ``1e-10`` relative for
float64 kernels (manifolds, Sinkhorn); ``1e-5`` for float32 computations
(sliced Wasserstein, divergence); ``1e-3`` for trained QSMA embeddings (float32
training, different kernels and reduction orders on a GPU).
"""
import numpy as np
import pytest
import torch

from geoalign import fiber_product
from geoalign.manifolds import Hyperbolic, Sphere, frechet_mean
from geoalign.evaluation import retrieval_scores
from geoalign.models.qsma import QSMA
from geoalign.ot import sinkhorn, sinkhorn_divergence, sliced_wasserstein
from geoalign.rings import PolyRing


def _needs_values(device, why):
    if device == "meta":
        pytest.skip(f"meta tensors hold no values: {why}")


def _close(got, ref, device, rtol, atol=0.0):
    """Values agree within tolerance, or (meta) shapes and dtypes do."""
    assert tuple(got.shape) == tuple(ref.shape) and got.dtype == ref.dtype
    if device != "meta":
        torch.testing.assert_close(got.cpu(), ref, rtol=rtol, atol=atol)


@pytest.mark.parametrize("M", [Sphere(dim=5, validate=False), Hyperbolic(5, validate=False),
                               Hyperbolic(5, model="lorentz", validate=False)], ids=repr)
def test_manifold_kernels(device, M):
    x = torch.as_tensor(M.random(20, seed=0))
    y = torch.as_tensor(M.random(20, seed=1))
    xd, yd = x.to(device), y.to(device)
    v = M.log(xd, yd)
    _close(v, M.log(x, y), device, rtol=1e-10, atol=1e-12)
    _close(M.exp(xd, v), M.exp(x, M.log(x, y)), device, rtol=1e-10, atol=1e-12)
    _close(M.dist(xd, yd), M.dist(x, y), device, rtol=1e-10, atol=1e-12)
    _close(M.geodesic(xd, yd, 0.3), M.geodesic(x, y, 0.3), device, rtol=1e-10, atol=1e-12)
    assert v.device.type == device


def test_frechet_mean_fixed_iterations(device):
    S = Sphere(dim=7, validate=False)
    x = torch.nn.functional.normalize(torch.randn(4, 30, 8, generator=torch.Generator().manual_seed(0),
                                                  dtype=torch.float64) + 2.0, dim=-1)
    ref = frechet_mean(x, S, max_iter=30, fixed_iterations=True)
    got = frechet_mean(x.to(device), S, max_iter=30, fixed_iterations=True)
    _close(got.mean, ref.mean, device, rtol=1e-10, atol=1e-12)
    assert got.converged.shape == (4,) and got.converged.device.type == device


def _clouds(device, dtype=torch.float64, n=40, m=30):
    g = torch.Generator().manual_seed(0)
    X = torch.nn.functional.normalize(torch.randn(n, 5, generator=g, dtype=dtype), dim=1)
    Y = torch.nn.functional.normalize(torch.randn(m, 5, generator=g, dtype=dtype) + 0.5, dim=1)
    return X, Y, X.to(device), Y.to(device)


def test_sinkhorn_fixed_iterations(device):
    X, Y, Xd, Yd = _clouds(device)
    C, Cd = torch.cdist(X, Y) ** 2, torch.cdist(Xd, Yd) ** 2
    ref = sinkhorn(None, None, C, 0.05, max_iter=200, tol=0, validate=False)
    got = sinkhorn(None, None, Cd, 0.05, max_iter=200, tol=0, validate=False)
    _close(got.plan, ref.plan, device, rtol=1e-10, atol=1e-14)
    _close(got.value, ref.value, device, rtol=1e-10)
    assert got.converged is None and got.marginal_error.device.type == device


def test_sinkhorn_divergence_and_sliced(device):
    X, Y, Xd, Yd = _clouds(device, torch.float32)
    ref = sinkhorn_divergence(X, Y, 0.05, diameter=2.0, validate=False)
    got = sinkhorn_divergence(Xd, Yd, 0.05, diameter=2.0, validate=False)
    _close(got.value, ref.value, device, rtol=1e-5, atol=1e-6)
    ref = sliced_wasserstein(X, Y, n_projections=16, seed=0, validate=False)
    got = sliced_wasserstein(Xd, Yd, n_projections=16, seed=0, validate=False)
    _close(got.value, ref.value, device, rtol=1e-5)


def test_ring_fft_product(device):
    _needs_values(device, "ring products are validated (reduced mod n) on their values")
    R = PolyRing(257)
    P = R.random((6,), degree=40, seed=0, device="cpu")
    Q = R.random((6,), degree=50, seed=1, device="cpu")
    ref = R.mul(P, Q, method="direct")
    got = R.mul(P.to(device), Q.to(device), method="fft")
    assert got.device.type == device and torch.equal(got.cpu(), ref)


def test_fiber_product(device):
    _needs_values(device, "the number of pairs depends on the data")
    X, Y, _, _ = _clouds("cpu", n=60, m=50)
    ref = fiber_product(X.numpy(), Y.numpy(), 0.6, progress=False)
    got = fiber_product(X.to(device), Y.to(device), 0.6, progress=False)
    assert isinstance(got.pairs, torch.Tensor) and got.pairs.device.type == device
    np.testing.assert_array_equal(got.pairs.cpu().numpy(), ref.pairs)
    np.testing.assert_allclose(got.distances.cpu().numpy(), ref.distances, rtol=1e-12)


def test_retrieval_scores(device):
    _needs_values(device, "ranks are counted from values")
    X, Y, Xd, Yd = _clouds(device, n=50, m=50)
    ref = retrieval_scores(X.numpy(), Y.numpy())
    got = retrieval_scores(Xd, Yd)
    assert got.as_dict() == pytest.approx(ref.as_dict(), rel=1e-12)


FAST = dict(dim=8, hidden=32, n_layers=1, max_epochs=2, batch_size=64, random_state=0,
            trainer_options={"progress": False})


def _pairs(n=192, d=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    S = torch.randn(n, 3, generator=g)
    return (S @ torch.randn(3, d, generator=g) + 0.2 * torch.randn(n, d, generator=g),
            S @ torch.randn(3, d, generator=g) + 0.2 * torch.randn(n, d, generator=g))


def test_qsma_training_on_device(device):
    X_a, X_b = _pairs()
    if device == "meta":  # one training step, shapes only (the Trainer reads the loss values)
        est = QSMA(**{**FAST, "max_epochs": 1}).fit(X_a, X_b)
        module = est.module_.to("meta")
        loss, metrics = module.training_loss((X_a[:64].to("meta"), X_b[:64].to("meta")))
        loss.backward()
        assert loss.shape == () and all(p.grad is None or p.grad.device.type == "meta"
                                        for p in module.parameters())
        return
    ref = QSMA(**FAST).fit(X_a, X_b)
    est = QSMA(**FAST).fit(X_a.to(device), X_b.to(device))  # device-resident data
    assert next(est.module_.parameters()).device.type == device
    Z = est.transform_a(X_a.to(device))
    assert Z.device.type == device
    torch.testing.assert_close(Z.cpu(), ref.transform_a(X_a), rtol=1e-3, atol=1e-3)
    # host data for a device estimator: streamed through (pinned) memory, same result
    host = QSMA(**FAST, device=device).fit(X_a.numpy(), X_b.numpy())
    torch.testing.assert_close(host.transform_a(X_a.to(device)).cpu(), Z.cpu(), rtol=1e-3, atol=1e-3)
