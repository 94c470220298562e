"""Host-device synchronisations of the hot paths, counted on any device.

Counts, with :class:`geoalign._testing.SyncCounter`, the operations that make a
GPU wait for the host (``.item()``/``bool()``/``float()``, data-dependent shapes,
copies to the CPU) in one training step of each model configuration, one
Trainer epoch and one call of each solver.  Solver calls pass the sync-free
options (``validate=False``, ``diameter=...``) when the installed version has
them, so the same script measures the code before and after they existed.

    python benchmarks/sync_counts.py [--device cpu|cuda] [--json out.json]
"""
from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geoalign._testing import SyncCounter  # noqa: E402


def _kw(fn, **options):
    """The options ``fn`` accepts (older versions lack the sync-free ones)."""
    params = inspect.signature(fn).parameters
    return {k: v for k, v in options.items() if k in params}


def _data(n, d, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    S = torch.randn(n, 4, generator=g)
    X_a = S @ torch.randn(4, d, generator=g) + 0.3 * torch.randn(n, d, generator=g)
    X_b = S @ torch.randn(4, d, generator=g) + 0.3 * torch.randn(n, d, generator=g)
    y = torch.arange(n) % 4
    return X_a.to(device), X_b.to(device), y.to(device)


def _step_counter(estimator, device, n=128, d=12):
    """Fit ``estimator`` for one epoch, then count one more training step (loss, backward, Adam)."""
    X_a, X_b, y = _data(n, d, device)
    estimator.fit(X_a, X_b, y)
    module = estimator.module_
    module.train()
    # fused Adam: the default (foreach) Adam reads its step counters with .item(); they live on
    # the CPU by design (no GPU sync), but a CPU run cannot tell them from device tensors
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=1e-3,
                           fused=True)
    batch = (X_a[:64], X_b[:64], y[:64])
    for _ in range(2):  # warm up (lazy optimiser state), then count the second step
        with SyncCounter() as sc:
            opt.zero_grad(set_to_none=True)
            loss, _ = module.training_loss(batch)
            loss.backward()
            opt.step()
    return sc


def qsma_steps(device):
    from geoalign.models.qsma import QSMA

    base = dict(dim=8, hidden=32, n_layers=1, max_epochs=1, batch_size=64, random_state=0,
                device=device, trainer_options={"progress": False})
    configs = {
        "QSMA step, sphere default": {},
        "QSMA step, poincare latent": dict(latent="poincare"),
        "QSMA step, sinkhorn alignment": dict(alignment="sinkhorn"),
        "QSMA step, private heads": dict(private_dim=4),
    }
    out = {name: _step_counter(QSMA(**base, **cfg), device) for name, cfg in configs.items()}
    from geoalign.models.sspc import SSPCRegularizer

    hook = SSPCRegularizer(8, n_anchors=8, queue_size=64, start_when_full=False).to(device)
    out["QSMA step, SSPC consistency"] = _step_counter(QSMA(**base, consistency=hook), device)
    return out


def model_steps(device):
    from geoalign.models.codebook import UniCode
    from geoalign.models.sspc import SSPC

    common = dict(max_epochs=1, batch_size=64, random_state=0, device=device,
                  trainer_options={"progress": False})
    return {
        "SSPC step": _step_counter(SSPC(dim=8, hidden=16, n_anchors=8, queue_size=64,
                                        start_when_full=False, **common), device),
        "UniCode step": _step_counter(UniCode(dim=8, n_codes=16, specific_dim=4, hidden=16,
                                              **common), device),
    }


def trainer_epoch(device):
    from geoalign.models.qsma import QSMAModule  # noqa: F401  (import cost outside the count)
    from geoalign.models.qsma import QSMA
    from geoalign.train import Trainer

    X_a, X_b, y = _data(256, 12, device)
    est = QSMA(dim=8, hidden=32, n_layers=1, max_epochs=1, batch_size=64, random_state=0,
               device=device, trainer_options={"progress": False}).fit(X_a, X_b, y)
    out = {}
    for epochs in (1, 3):  # SGD: Adam's step counters are CPU tensors (see _step_counter)
        trainer = Trainer(max_epochs=epochs, batch_size=64, device=device, progress=False,
                          optimizer="sgd")
        with SyncCounter() as sc:
            trainer.fit(est.module_, (X_a, X_b, y))
        out[epochs] = sc
    # per-epoch cost = difference of the two runs / 2 (the constant set-up cost cancels)
    per_epoch = SyncCounter()
    per_epoch.ops.update({k: (out[3].ops[k] - out[1].ops[k]) / 2 for k in out[3].ops})
    return {"Trainer fit (SGD), set-up + 1 epoch": out[1],
            "Trainer (SGD), per extra epoch": per_epoch}


def solvers(device):
    from geoalign.manifolds import Sphere, frechet_mean
    from geoalign.ot import (barycenter, gaussian_barycenter, sinkhorn, sinkhorn_divergence,
                             sliced_wasserstein)

    g = torch.Generator().manual_seed(0)
    X = torch.nn.functional.normalize(torch.randn(64, 8, generator=g), dim=1).to(device)
    Y = torch.nn.functional.normalize(torch.randn(64, 8, generator=g) + 0.3, dim=1).to(device)
    C = torch.cdist(X, Y) ** 2 / 2
    out = {}

    def count(name, fn, *args, **kwargs):
        with SyncCounter() as sc:
            fn(*args, **kwargs)
        out[name] = sc

    count("sinkhorn(tol=0, 50 iterations)", sinkhorn, None, None, C, 0.05, max_iter=50, tol=0,
          **_kw(sinkhorn, validate=False))
    count("sinkhorn(tol unreachable, check_every=10): 200 it.", sinkhorn, None, None, C, 0.001,
          max_iter=200, tol=1e-30, warn=False)
    count("sinkhorn_divergence fixed updates", sinkhorn_divergence, X, Y, 0.05,
          **_kw(sinkhorn_divergence, validate=False, diameter=2.0))
    count("sliced_wasserstein", sliced_wasserstein, X, Y, n_projections=32, seed=0,
          **_kw(sliced_wasserstein, validate=False))
    S = Sphere(dim=7, validate=False)
    pts = torch.nn.functional.normalize(X.reshape(8, 8, 8).to(torch.float64), dim=-1)
    count("frechet_mean(fixed_iterations=True, 20 iterations)", frechet_mean, pts, S,
          max_iter=20, fixed_iterations=True)
    A = torch.softmax(torch.randn(3, 16, generator=g, dtype=torch.float64), 1).to(device)
    M = (torch.arange(16.0, dtype=torch.float64)[:, None] - torch.arange(16.0)[None]).abs().to(device) / 16
    count("barycenter(tol=1e-30): 100 iterations", barycenter, A, M, 0.05, max_iter=100,
          tol=1e-30, warn=False)
    R = torch.randn(3, 4, 4, generator=g, dtype=torch.float64)
    covs = (R @ R.transpose(1, 2) + torch.eye(4, dtype=torch.float64)).to(device)
    count("gaussian_barycenter(tol=0): 20 iterations", gaussian_barycenter,
          torch.zeros(3, 4, dtype=torch.float64, device=device), covs, max_iter=20, tol=0,
          warn=False)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device} requested but CUDA is not available")
    torch.set_num_threads(1)
    results = {}
    for part in (qsma_steps, model_steps, trainer_epoch, solvers):
        for name, sc in part(args.device).items():
            results[name] = {"count": sc.count, "ops": dict(sc.ops)}
            print(f"{name:58s} {sc.count:6g}  {dict(sc.ops)}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
