"""Host-device synchronisation budgets of the hot paths, counted on the CPU.

:class:`geoalign._testing.SyncCounter` counts every operation that would make a GPU
wait for the host (``.item()``, ``bool(t)``, data-dependent shapes, copies to the
CPU).  Budgets: 0 per training step (QSMA in five configurations, SSPC,
UniCode); at most 1 per Trainer epoch; 0 for the fixed-iteration solvers; one
per ``check_every`` iterations for the tolerance-based ones.

Steps use fused Adam: torch's default (foreach) Adam reads its step counters with
``.item()``; those live on the CPU by design (no GPU synchronisation), but a CPU
run cannot tell them from device tensors.

Sinkhorn on a CPU tensor takes a host fast path (NumPy BLAS, checked blocks: reading a
value in host memory waits for nothing); the budgets here are those of the
device-generic code that accelerators run, so the fast path is switched off.
"""
import math

import numpy as np
import pytest
import torch

from geoalign._testing import SyncCounter, count_syncs
from geoalign.manifolds import Hyperbolic, Sphere, frechet_mean
from geoalign.models.codebook import UniCode
from geoalign.models.qsma import QSMA
from geoalign.models.sspc import SSPC, SSPCRegularizer
from geoalign.ot import (barycenter, gaussian_barycenter, sinkhorn, sinkhorn_divergence,
                         sliced_wasserstein)
from geoalign.ot import _core
from geoalign.train import Trainer


@pytest.fixture(autouse=True)
def _device_generic_sinkhorn(monkeypatch):
    monkeypatch.setattr(_core, "_HOST_FAST_PATH", False)


def _data(n=128, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    S = torch.randn(n, 4, generator=g)
    X_a = S @ torch.randn(4, d, generator=g) + 0.3 * torch.randn(n, d, generator=g)
    X_b = S @ torch.randn(4, d, generator=g) + 0.3 * torch.randn(n, d, generator=g)
    return X_a, X_b, torch.arange(n) % 4


def _step_syncs(estimator):
    X_a, X_b, y = _data()
    module = estimator.fit(X_a, X_b, y).module_
    module.train()
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=1e-3, fused=True)
    batch = (X_a[:64], X_b[:64], y[:64])
    counts = []
    for _ in range(3):  # the first step creates the optimiser state: counted too
        with SyncCounter(stacks=True) as sc:
            opt.zero_grad(set_to_none=True)
            loss, metrics = module.training_loss(batch)
            loss.backward()
            opt.step()
        counts.append(sc)
    assert all(torch.isfinite(v).all() for v in metrics.values() if isinstance(v, torch.Tensor))
    return counts


QSMA_BASE = dict(dim=8, hidden=32, n_layers=1, max_epochs=1, batch_size=64, random_state=0,
                 trainer_options={"progress": False})


@pytest.mark.parametrize("config", [
    {}, dict(latent="poincare"), dict(alignment="sinkhorn"), dict(private_dim=4),
    dict(latent="poincare", alignment="sinkhorn", ot_reg=0.01),  # Sinkhorn fallback, both terms
], ids=["sphere-default", "poincare", "sinkhorn-alignment", "private-heads", "poincare-sinkhorn"])
def test_qsma_step_has_no_sync(config):
    for sc in _step_syncs(QSMA(**QSMA_BASE, **config)):
        assert sc.count == 0, sc.stacks


def test_qsma_step_with_sspc_consistency_has_no_sync():
    hook = SSPCRegularizer(8, n_anchors=8, queue_size=64, start_when_full=True)
    for sc in _step_syncs(QSMA(**QSMA_BASE, consistency=hook)):  # queue fills, then active
        assert sc.count == 0, sc.stacks
    assert hook.queue_full and int(hook.queue_count) == 64


def test_sspc_and_unicode_steps_have_no_sync():
    common = dict(max_epochs=1, batch_size=64, random_state=0, trainer_options={"progress": False})
    for est in (SSPC(dim=8, hidden=16, n_anchors=8, queue_size=64, start_when_full=False, **common),
                UniCode(dim=8, n_codes=16, specific_dim=4, hidden=16, **common)):
        for sc in _step_syncs(est):
            assert sc.count == 0, (type(est).__name__, sc.stacks)


def test_sspc_host_queue_follows_load_state_dict():
    reg = SSPCRegularizer(4, n_anchors=4, queue_size=10)
    reg.loss(torch.randn(6, 4), torch.randn(6, 4))
    other = SSPCRegularizer(4, n_anchors=4, queue_size=10)
    other.load_state_dict(reg.state_dict())
    assert other._queue_state() == (6, 6) and not other.queue_full
    other.loss(torch.randn(6, 4), torch.randn(6, 4))
    assert other.queue_full and int(other.queue_ptr) == 2 and int(other.queue_count) == 10


@pytest.mark.parametrize("val", [False, True])
def test_trainer_syncs_once_per_epoch(val):
    """Set-up checks are constant; every further epoch adds exactly one synchronisation
    (two with validation: its means are read separately)."""
    X_a, X_b, y = _data(256)
    module = QSMA(**QSMA_BASE).fit(X_a, X_b, y).module_
    counts = []
    for epochs in (1, 3):
        trainer = Trainer(max_epochs=epochs, batch_size=64, optimizer="sgd", progress=False,
                          val_fraction=0.25 if val else 0.0)
        with SyncCounter(stacks=True) as sc:
            history = trainer.fit(module, (X_a, X_b, y))
        counts.append(sc.count)
    assert (counts[1] - counts[0]) / 2 == (2 if val else 1)
    assert counts[0] <= 3 + (2 if val else 1)  # finiteness checks of the data + the epoch(s)
    assert math.isfinite(history.records[-1]["train_loss"])


def test_fixed_iteration_solvers_have_no_sync():
    g = torch.Generator().manual_seed(0)
    X = torch.nn.functional.normalize(torch.randn(48, 6, generator=g), dim=1)
    Y = torch.nn.functional.normalize(torch.randn(40, 6, generator=g) + 0.3, dim=1)
    C = torch.cdist(X, Y).double() ** 2
    res, sc = count_syncs(sinkhorn, None, None, C, 0.05, max_iter=60, tol=0, validate=False)
    assert sc.count == 0, sc.ops
    # the same 60 iterations as the host-checked solver (absorbing only when needed)
    checked = sinkhorn(None, None, C, 0.05, max_iter=60, tol=1e-300, check_every=60, warn=False)
    assert res.converged is None and checked.converged is False
    torch.testing.assert_close(res.plan, checked.plan, rtol=1e-9, atol=1e-15)
    assert float(res.marginal_error) == pytest.approx(checked.marginal_error, rel=1e-6)
    res, sc = count_syncs(sinkhorn_divergence, X, Y, 0.05, diameter=2.0, validate=False)
    assert sc.count == 0, sc.ops
    assert res.converged is None and math.isfinite(float(res.value))
    res, sc = count_syncs(sliced_wasserstein, X, Y, n_projections=16, seed=0, validate=False)
    assert sc.count == 0, sc.ops
    S = Sphere(dim=5, validate=False)
    pts = torch.nn.functional.normalize(X.double().reshape(8, 6, 6) + 1.0, dim=-1)
    res, sc = count_syncs(frechet_mean, pts, S, max_iter=25, fixed_iterations=True)
    assert sc.count == 0, sc.ops
    assert res.converged.all()
    H = Hyperbolic(4, validate=False)
    x, z = torch.as_tensor(H.random(5, seed=0)), torch.as_tensor(H.random(5, seed=1))
    _, sc = count_syncs(lambda: (H.geodesic(x, z, 0.5), H.projx(2 * x), H.dist(x, z)))
    assert sc.count == 0, sc.ops


def test_validation_is_what_synchronises():
    """The same calls with validation on do read values (the counter is not blind)."""
    X = torch.nn.functional.normalize(torch.randn(20, 4), dim=1)
    C = torch.cdist(X, X) ** 2
    assert count_syncs(sinkhorn, None, None, C, 0.05, max_iter=20, tol=0)[1].count > 0
    assert count_syncs(Sphere(dim=3).geodesic, X, X.flip(0), 0.5)[1].count > 0
    assert count_syncs(sinkhorn_divergence, X, X, 0.05)[1].count > 0


@pytest.mark.parametrize("check_every", [5, 10])
def test_tolerance_based_solvers_sync_once_per_check(check_every):
    g = torch.Generator().manual_seed(1)
    X = torch.nn.functional.normalize(torch.randn(30, 4, generator=g, dtype=torch.float64), dim=1)
    Y = torch.nn.functional.normalize(torch.randn(25, 4, generator=g, dtype=torch.float64), dim=1)
    C = torch.cdist(X, Y) ** 2
    counts = {}
    for iters in (100, 200):  # unreachable tol: every block is checked
        _, sc = count_syncs(sinkhorn, None, None, C, 0.01, max_iter=iters, tol=1e-300,
                            check_every=check_every, warn=False, validate=False)
        counts[iters] = sc.count
    assert counts[200] - counts[100] == 100 // check_every
    R = torch.randn(3, 4, 4, generator=g, dtype=torch.float64)
    covs = R @ R.transpose(1, 2) + torch.eye(4, dtype=torch.float64)
    counts = {}
    for iters in (40, 80):
        _, sc = count_syncs(gaussian_barycenter, torch.zeros(3, 4, dtype=torch.float64), covs,
                            max_iter=iters, tol=0, warn=False, check_every=check_every)
        counts[iters] = sc.count
    assert counts[80] - counts[40] == 40 // check_every
    A = torch.softmax(torch.randn(3, 16, generator=g, dtype=torch.float64), 1)
    M = (torch.arange(16.0, dtype=torch.float64)[:, None] - torch.arange(16.0)[None]).abs() / 16
    counts = {}
    for iters in (100, 200):
        _, sc = count_syncs(barycenter, A, M, 0.05, max_iter=iters, tol=1e-300, warn=False)
        counts[iters] = sc.count
    assert counts[200] - counts[100] == 10  # checked every 10 iterations


def test_gaussian_barycenter_checks_do_not_change_the_result():
    g = torch.Generator().manual_seed(2)
    R = torch.randn(4, 3, 3, generator=g, dtype=torch.float64)
    covs = (R @ R.transpose(1, 2) + 0.5 * torch.eye(3, dtype=torch.float64)).numpy()
    a = gaussian_barycenter(np.zeros((4, 3)), covs, check_every=1)
    b = gaussian_barycenter(np.zeros((4, 3)), covs, check_every=7)
    assert a.converged and b.converged and b.n_iter >= a.n_iter
    np.testing.assert_allclose(b.cov, a.cov, rtol=1e-9, atol=1e-12)


def test_counter_counts_what_it_says():
    x = torch.randn(6)
    with SyncCounter() as sc:
        float(x.sum())
        bool((x > 0).any())
        x[x > 0]
        torch.nonzero(x)
        torch.unique(x)
        x.tolist()
        np.asarray(x)
        (x * 2 + 1).sum()  # stays on the device: not counted
    assert sc.ops == {"aten._local_scalar_dense": 2, "aten.index (boolean mask)": 1,
                      "aten.nonzero": 1, "aten._unique2": 1, "Tensor.tolist": 1,
                      "Tensor.__array__": 1}
    with SyncCounter() as sc:
        m = torch.randn(3, device="meta")
        with pytest.raises(RuntimeError):
            m.sum().item()  # counted before the meta kernel refuses
    assert sc.count == 1


@pytest.mark.parametrize("reg", [0.05, 1e-3])
def test_fixed_iteration_sinkhorn_matches_the_checked_solver(reg):
    """tol=0 (absorbing on the device after every block) gives the checked solver's plan,
    batched, with zero-mass points, and without validation (zero masses handled on the device)."""
    g = torch.Generator().manual_seed(3)
    X = torch.rand(2, 12, 3, generator=g, dtype=torch.float64)
    Y = torch.rand(2, 9, 3, generator=g, dtype=torch.float64)
    C = torch.cdist(X, Y) ** 2
    a = torch.rand(2, 12, generator=g, dtype=torch.float64)
    a[:, 0] = 0
    a = a / a.sum(1, keepdim=True)
    b = torch.rand(2, 9, generator=g, dtype=torch.float64)
    b[:, 3] = 0
    b = b / b.sum(1, keepdim=True)
    checked = sinkhorn(a, b, C, reg, max_iter=300, tol=1e-300, warn=False)
    fixed = sinkhorn(a, b, C, reg, max_iter=300, tol=0)
    trusted, sc = count_syncs(sinkhorn, a, b, C, reg, max_iter=300, tol=0, validate=False)
    assert sc.count == 0, sc.ops
    for res in (fixed, trusted):
        torch.testing.assert_close(res.plan, checked.plan, rtol=1e-8, atol=1e-13)
        torch.testing.assert_close(res.potentials[1], checked.potentials[1], rtol=1e-8, atol=1e-10)
        assert res.n_iter == checked.n_iter == 300 and res.converged is None


@pytest.mark.parametrize("reg", [0.05, 0.001])
def test_host_fast_path_matches_the_device_generic_loop(reg, monkeypatch):
    """The CPU fast path (checked NumPy-BLAS blocks) and the sync-free loop agree."""
    g = torch.Generator().manual_seed(1)
    C = torch.cdist(torch.randn(40, 3, generator=g, dtype=torch.float64),
                    torch.randn(50, 3, generator=g, dtype=torch.float64)) ** 2
    generic = sinkhorn(None, None, C, reg, max_iter=300, tol=0)
    monkeypatch.setattr(_core, "_HOST_FAST_PATH", True)
    fast = sinkhorn(None, None, C, reg, max_iter=300, tol=0)
    torch.testing.assert_close(fast.plan, generic.plan, rtol=1e-9, atol=1e-15)
    torch.testing.assert_close(fast.value, generic.value, rtol=1e-10, atol=0)
