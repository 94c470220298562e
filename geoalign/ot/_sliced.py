r"""Sliced Wasserstein distance with quasi-Monte-Carlo (Sobol) directions.

.. math::

    \mathrm{SW}_p(\mu, \nu) = \Big(\int_{S^{d-1}} W_p^p(\theta_\#\mu, \theta_\#\nu)\,
    d\sigma(\theta)\Big)^{1/p}
    \approx \Big(\frac1L \sum_{l=1}^L W_p^p(\langle\theta_l, X\rangle, \langle\theta_l, Y\rangle)\Big)^{1/p}.

Directions :math:`\theta_l = z_l/\|z_l\|` with :math:`z_l = \Phi^{-1}(u_l)` for
scrambled Sobol points :math:`u_l \in (0,1)^d` (``"sobol"``, lower variance than
i.i.d.) or i.i.d. Gaussian :math:`z_l` (``"random"``).  Each 1-D distance is the
integral of :math:`|F^{-1}_\mu(t) - F^{-1}_\nu(t)|^p` over quantile levels,
exact for weighted point clouds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .._validation import check_array, check_choice, check_int, check_positive_scalar
from . import _common

__all__ = ["SlicedWassersteinResult", "sliced_wasserstein", "projection_directions"]


@dataclass
class SlicedWassersteinResult:
    """Result of :func:`sliced_wasserstein`.

    Attributes
    ----------
    value : float or tensor, shape=[]
        :math:`\\mathrm{SW}_p` estimate (differentiable w.r.t. the points for tensors).
    directions : array, shape=[n_projections, d]
        Unit directions used.
    projected : array, shape=[n_projections]
        :math:`W_p^p` along each direction (its mean is ``value ** p``).
    """

    value: Any
    directions: Any
    projected: Any


def projection_directions(d, n_projections, directions="sobol", seed=None, device="cpu",
                          dtype=torch.float64):
    r"""Unit vectors on :math:`S^{d-1}`, shape [n_projections, d].

    ``"sobol"``: scrambled Sobol points mapped through the inverse normal CDF and
    normalised (quasi-Monte-Carlo); ``"random"``: i.i.d. Gaussian, normalised.
    ``seed=None`` draws the scramble/seed from torch's global generator, so
    ``torch.manual_seed`` makes runs reproducible.
    """
    d = check_int(d, "d", minimum=1)
    n_projections = check_int(n_projections, "n_projections", minimum=1)
    check_choice(directions, "directions", ("sobol", "random"))
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
    seed = check_int(seed, "seed", minimum=0)
    if directions == "sobol":
        engine = torch.quasirandom.SobolEngine(d, scramble=True, seed=seed)
        u = engine.draw(n_projections, dtype=torch.float64)
        lo = 1e-12
        z = torch.special.ndtri(u.clamp(lo, 1 - lo))
    else:
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(n_projections, d, generator=gen, dtype=torch.float64)
    norms = z.norm(dim=1, keepdim=True)
    z = torch.where(norms > 0, z / norms.clamp_min(1e-300), torch.full_like(z, d ** -0.5))
    return z.to(device=device, dtype=dtype)


def _wasserstein_1d_pp(x, y, a, b, p):
    """W_p^p between weighted 1-D samples along the last axis; x [L, n], y [L, m]."""
    xs, ix = torch.sort(x, dim=-1)
    ys, iy = torch.sort(y, dim=-1)
    if a is None and b is None and x.shape[-1] == y.shape[-1]:
        return (xs - ys).abs().pow(p).mean(-1)
    n, m = x.shape[-1], y.shape[-1]
    wa = a[ix] if a is not None else torch.full_like(xs, 1.0 / n)
    wb = b[iy] if b is not None else torch.full_like(ys, 1.0 / m)
    ca = torch.cumsum(wa, -1)
    cb = torch.cumsum(wb, -1)
    levels, _ = torch.sort(torch.cat([ca, cb], -1), dim=-1)
    levels = levels.clamp(0, 1)
    widths = torch.diff(levels, dim=-1, prepend=torch.zeros_like(levels[..., :1]))
    # quantile functions evaluated on each interval (right-continuous inverse cdf)
    qa = torch.searchsorted(ca.contiguous(), levels.contiguous(), right=False).clamp_max(n - 1)
    qb = torch.searchsorted(cb.contiguous(), levels.contiguous(), right=False).clamp_max(m - 1)
    diff = (torch.gather(xs, -1, qa) - torch.gather(ys, -1, qb)).abs().pow(p)
    return (diff * widths).sum(-1)


def sliced_wasserstein(X, Y, n_projections=128, p=2, directions="sobol", seed=None,
                       a=None, b=None, *, validate=True):
    r"""Sliced :math:`p`-Wasserstein distance between two point clouds.

    Parameters
    ----------
    X : array-like, shape=[n, d]
    Y : array-like, shape=[m, d]
    n_projections : int
        Number of directions :math:`L`.
    p : float >= 1
    directions : {"sobol", "random"}
        Quasi-Monte-Carlo (scrambled Sobol through :math:`\Phi^{-1}`) or i.i.d. directions.
    seed : int, optional
        Seed of the scramble / Gaussian draws (``None``: from torch's generator).
    a, b : array-like, shape=[n], [m], optional
        Probability weights of the points (default uniform).
    validate : bool, default True
        Reject NaN/Inf points (host synchronisations).  ``False`` trusts the
        values (shapes are still checked); with ``seed`` given and no weights
        the call then makes no host synchronisation (counted in
        ``tests/test_syncs.py``).

    Returns
    -------
    SlicedWassersteinResult
        ``.value`` is differentiable w.r.t. ``X`` and ``Y`` for tensor inputs.
        For ``d = 1`` it equals the exact 1-D :math:`W_p`.
    """
    X = check_array(X, "X", ndim=2, allow_empty=False, finite=validate)
    Y = check_array(Y, "Y", ndim=2, allow_empty=False, finite=validate)
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"X and Y must have the same dimension d, got {X.shape[1]} and {Y.shape[1]}")
    p = check_positive_scalar(p, "p")
    if p < 1:
        raise ValueError(f"p must be >= 1, got {p}")
    ref = _common.reference(X, Y, a, b)
    dev = _common.device_for(X=X, Y=Y, a=a, b=b)
    dtype = _common.compute_dtype(X, Y)
    Xt = _common.as_tensor(X, dev, dtype)
    Yt = _common.as_tensor(Y, dev, dtype)
    at = None if a is None else _common.probability(a, "a", Xt.shape[0], dev, dtype)
    bt = None if b is None else _common.probability(b, "b", Yt.shape[0], dev, dtype)
    theta = projection_directions(Xt.shape[1], n_projections, directions, seed, dev, dtype)
    per_dir = _wasserstein_1d_pp(theta @ Xt.T, theta @ Yt.T, at, bt, p)
    value = per_dir.mean().clamp_min(0) ** (1.0 / p)
    out = _common.output
    return SlicedWassersteinResult(value=out(value, ref), directions=out(theta, ref),
                                   projected=out(per_dir.detach(), ref))
