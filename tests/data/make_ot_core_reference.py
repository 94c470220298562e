"""Regenerate ``ot_core_reference.npz``: outputs of every Sinkhorn loop at fixed iterations.

The stored file was written by the code *before* the loops were merged into
``geoalign/ot/_core.py`` (commit 27f22df); ``tests/test_ot_core.py`` checks that
the merged code reproduces it to rtol 1e-10 in float64.  Run from the repository
root: ``python tests/data/make_ot_core_reference.py``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def inputs():
    rng = np.random.default_rng(20261130)
    X, Y = rng.normal(size=(40, 3)), rng.normal(size=(50, 3)) + 0.3
    C = ((X[:, None] - Y[None]) ** 2).sum(-1)
    a = rng.uniform(0.5, 1.5, 40)
    a /= a.sum()
    b = rng.uniform(0.5, 1.5, 50)
    b[7] = 0.0
    b /= b.sum()
    Cb = rng.uniform(0, 1, size=(3, 30, 20))
    S = np.tanh(rng.normal(size=(24, 8)))
    Xd = rng.normal(size=(30, 5))
    Yd = rng.normal(size=(35, 5)) + 0.5
    A = rng.uniform(0.1, 1.0, size=(3, 25))
    A /= A.sum(1, keepdims=True)
    grid = np.linspace(0, 1, 25)
    Cg = (grid[:, None] - grid[None]) ** 2
    clouds = rng.normal(size=(3, 20, 4)) + rng.normal(size=(3, 1, 4))
    X0 = rng.normal(size=(20, 4))
    Za = rng.normal(size=(30, 6))
    Zb = rng.normal(size=(36, 6)) + 0.2
    return dict(C=C, a=a, b=b, Cb=Cb, S=S, Xd=Xd, Yd=Yd, A=A, Cg=Cg, clouds=clouds, X0=X0, Za=Za, Zb=Zb)


def outputs(d, host_fast_path=True):
    import torch

    import geoalign  # noqa: F401  (the compatibility shims first)
    from geoalign.models.qsma import QSMAModule
    from geoalign.models.sspc import multi_assignment_sinkhorn
    from geoalign.ot import barycenter, free_support_barycenter, sinkhorn, sinkhorn_divergence

    out = {}
    for reg in (0.05, 1e-3):
        for tol, it in ((0.0, 300), (1e-9, 2000)):
            r = sinkhorn(d["a"], d["b"], d["C"], reg, max_iter=it, tol=tol, warn=False)
            key = f"sinkhorn_{reg:g}_{tol:g}"
            out[key + "_plan"], out[key + "_f"], out[key + "_g"] = r.plan, *r.potentials
            out[key + "_n_iter"] = np.array(r.n_iter)
            Ct = torch.as_tensor(d["C"])
            r = sinkhorn(torch.as_tensor(d["a"]), torch.as_tensor(d["b"]), Ct, reg, max_iter=it, tol=tol,
                         warn=False)
            out[key + "_torch_plan"] = r.plan.numpy()
    r = sinkhorn(None, None, d["C"], 1e-3, max_iter=500, tol=1e-9, eps_scaling=0.5, warn=False)
    out["sinkhorn_scaling_plan"], out["sinkhorn_scaling_n_iter"] = r.plan, np.array(r.n_iter)
    r = sinkhorn(None, None, d["Cb"], 0.02, max_iter=200, tol=0)
    out["sinkhorn_batched_plan"] = r.plan
    for reg in (0.1, 1e-3):  # kernel path, log-sum-exp path
        r = sinkhorn_divergence(d["Xd"], d["Yd"], reg, max_iter=15)
        out[f"divergence_{reg:g}_value"] = np.array(r.value)
        out[f"divergence_{reg:g}_f"], out[f"divergence_{reg:g}_g"] = r.potentials
    Xt = torch.tensor(d["Xd"], requires_grad=True)
    sinkhorn_divergence(Xt, torch.as_tensor(d["Yd"]), 0.1, max_iter=15).value.backward()
    out["divergence_grad"] = Xt.grad.numpy()
    r = barycenter(d["A"], d["Cg"], 0.01, max_iter=50, tol=0, warn=False)
    out["barycenter_fixed"], out["barycenter_fixed_value"] = r.barycenter, np.array(r.value)
    r = free_support_barycenter(d["clouds"], init=d["X0"], reg=0.05, max_iter=8, tol=0, rtol=0,
                                polish=False, warn=False)
    out["free_support_entropic"], out["free_support_entropic_value"] = r.support, np.array(r.value)
    r = free_support_barycenter(d["clouds"], init=d["X0"], reg=0.05, max_iter=8, tol=0, rtol=0,
                                relaxation=1.0, polish=False, warn=False)
    out["free_support_plain"] = r.support
    for latent, reg in (("sphere", 0.05), ("hyperbolic", 0.05)):
        torch.manual_seed(0)
        enc = torch.nn.Identity()
        enc.out_features = 6
        mod = QSMAModule(enc, enc, 6, 6, 6, latent=latent, ot_reg=reg, sinkhorn_iters=40,
                         n_samples=0).double()
        ma = mod.to_manifold(torch.as_tensor(d["Za"]) * 0.3)
        mb = mod.to_manifold(torch.as_tensor(d["Zb"]) * 0.3)
        mid_a, mid_b, plan = mod.barycentric_midpoints(ma, mb)
        out[f"qsma_{latent}_plan"], out[f"qsma_{latent}_mid_a"] = plan.numpy(), mid_a.numpy()
    r = multi_assignment_sinkhorn(d["S"], n_positive=3, n_iters=20)
    out["multi_sk_plan"], out["multi_sk_targets"] = r.plan, r.targets
    return out


if __name__ == "__main__":
    path = Path(__file__).with_name("ot_core_reference.npz")
    np.savez_compressed(path, **outputs(inputs()))
    print("wrote", path)
