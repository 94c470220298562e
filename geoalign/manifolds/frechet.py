r"""Weighted Fréchet (Karcher) means on Riemannian manifolds, batched.

The Fréchet mean of points :math:`x_1, \dots, x_n` with weights :math:`w_i`
(non-negative, summing to one) is

.. math:: m^\star = \arg\min_m \sum_i w_i\, d(m, x_i)^2 .

It is computed by Riemannian gradient descent, i.e. the Karcher fixed-point
iteration

.. math::

    g_k = \sum_i w_i \log_{m_k}(x_i), \qquad m_{k+1} = \exp_{m_k}(\eta\, g_k),

where :math:`-2 g_k` is the Riemannian gradient of the objective and
:math:`\eta` the step size (1 is the classical Karcher step).  As in
geomstats, an element's step is halved whenever its residual grows (the
Karcher step overshoots for widely spread data in negative curvature, where
the Hessian of :math:`\tfrac12 d^2` exceeds the identity); this is elementwise
and needs no synchronisation.  The residual is
the Riemannian norm :math:`\|g_k\|_{m_k}`; a batch element has converged when it
is at most ``tol`` and is frozen from then on.  The SPD log-Euclidean metric
has the closed form :math:`\operatorname{expm}(\sum_i w_i \operatorname{logm} x_i)`.

Initial points: the normalised extrinsic mean (sphere), the Lorentzian centroid
(hyperbolic), the log-Euclidean mean (SPD), the chordal mean (Grassmann).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._backend import is_torch, like, to_numpy, to_torch
from .._validation import (
    check_array,
    check_int,
    check_nonnegative_scalar,
    check_positive_scalar,
    check_weights,
)
from .._warnings import ConvergenceWarning
from .base import Manifold

__all__ = ["FrechetMeanResult", "frechet_mean"]


@dataclass
class FrechetMeanResult:
    """Result of :func:`frechet_mean` (arrays of the kind of the input points).

    Attributes
    ----------
    mean : array-like, shape=[..., point_shape...]
        The weighted Fréchet means.
    n_iter : array-like of int, shape=[...]
        Karcher updates applied to each batch element (0 for a closed form).
    converged : array-like of bool, shape=[...]
        Whether the residual of each batch element is at most ``tol``.
    residual : array-like, shape=[...]
        Riemannian norm of :math:`\\sum_i w_i \\log_m(x_i)` at the returned mean
        (half the Riemannian gradient norm of the objective).
    """

    mean: Any
    n_iter: Any
    converged: Any
    residual: Any


def _default_tol(dtype: torch.dtype) -> float:
    return 1e-12 if dtype == torch.float64 else 1e-5


def _prepare_weights(weights: Any, n: int, batch_shape: tuple, ref: torch.Tensor) -> torch.Tensor:
    if weights is None:
        return torch.full((n,), 1.0 / n, dtype=ref.dtype, device=ref.device)
    w = check_array(weights, "weights", min_ndim=1)
    if w.ndim == 1:
        w = check_weights(w, "weights", n)
        return to_torch(w, device=ref.device, dtype=ref.dtype)
    shape = tuple(w.shape)
    if shape[-1] != n:
        raise ValueError(f"weights must have length {n} along the last axis, got shape {shape}")
    try:
        torch.broadcast_shapes(shape[:-1], batch_shape)
    except RuntimeError as exc:
        raise ValueError(
            f"weights of shape {shape} do not broadcast with the batch shape {batch_shape}"
        ) from exc
    wn = to_numpy(w, dtype=np.float64)
    if (wn < 0).any():
        raise ValueError(f"weights must be non-negative, got min {wn.min()}")
    sums = wn.sum(-1)
    if np.abs(sums - 1).max() > 1e-6:
        raise ValueError(f"weights must sum to 1 along the last axis, got sums in "
                         f"[{sums.min()}, {sums.max()}]")
    return to_torch(w, device=ref.device, dtype=ref.dtype)


def frechet_mean(
    x: Any,
    manifold: Manifold,
    weights: Any = None,
    max_iter: int = 100,
    tol: float | None = None,
    fixed_iterations: bool = False,
    step_size: float = 1.0,
) -> FrechetMeanResult:
    r"""Weighted Fréchet (Karcher) mean, batched over leading dimensions.

    .. math:: m^\star = \arg\min_m \sum_{i=1}^n w_i\, d(m, x_i)^2

    Parameters
    ----------
    x : array-like, shape=[..., n, point_shape...]
        ``n >= 1`` points per batch element, on ``manifold`` (checked once).
    manifold : Manifold
        A :class:`Sphere`, :class:`Hyperbolic`, :class:`SPD` or :class:`Grassmann`.
    weights : array-like, shape=[n] or [..., n], optional
        Non-negative, summing to one (uniform by default).
    max_iter : int, default 100
        Maximum number of Karcher updates.
    tol : float, optional
        Convergence threshold on the residual :math:`\|\sum_i w_i\log_m x_i\|_m`;
        default 1e-12 (float64) or 1e-5 (float32).
    fixed_iterations : bool, default False
        Run exactly ``max_iter`` iterations without any host-device
        synchronisation inside the loop (converged elements are still frozen
        by masking).  When False the loop stops once every batch element has
        converged (one synchronisation per iteration).
    step_size : float, default 1.0
        Step :math:`\eta` of the update :math:`m \leftarrow \exp_m(\eta g)`.

    Returns
    -------
    FrechetMeanResult
        ``mean`` (shape ``[..., *point_shape]``), ``n_iter``, ``converged`` and
        ``residual`` (shape ``[...]``), all of the kind of ``x``.

    Warns
    -----
    ConvergenceWarning
        When some batch element did not reach ``tol`` within ``max_iter``.

    Notes
    -----
    The mean is unique when the points lie in a geodesically convex ball of
    radius below the convexity radius (e.g. an open hemisphere's half on the
    sphere, anywhere on hyperbolic space and SPD).  Widely spread sphere data
    may converge to a local minimiser.
    """
    if not isinstance(manifold, Manifold):
        raise TypeError(f"manifold must be a geoalign Manifold, got {type(manifold).__name__}")
    pd = manifold.point_ndim
    x = check_array(x, "x", min_ndim=pd + 1, allow_empty=False, finite=False)  # finite: below
    (xt,), ref = manifold._prepare({"x": x}, min_ndims={"x": pd + 1})
    if tuple(xt.shape[xt.ndim - pd:]) != tuple(manifold.point_shape):
        want = "(..., n, " + ", ".join(map(str, manifold.point_shape)) + ")"
        raise ValueError(f"x must have shape {want} for {manifold!r}, got {tuple(xt.shape)}")
    manifold._check_point_tensor(xt, "x")
    max_iter = check_int(max_iter, "max_iter", minimum=0)
    tol = _default_tol(xt.dtype) if tol is None else check_nonnegative_scalar(tol, "tol")
    step_size = check_positive_scalar(step_size, "step_size")
    n = xt.shape[xt.ndim - pd - 1]
    batch_shape = tuple(xt.shape[: xt.ndim - pd - 1])
    w = _prepare_weights(weights, n, batch_shape, xt)
    w = w.expand(batch_shape + (n,)) if w.ndim == 1 else w
    if w.shape[:-1] != batch_shape:  # weights carry extra batch dims: broadcast the points too
        full = torch.broadcast_shapes(w.shape[:-1], batch_shape)
        xt = xt.expand(full + tuple(xt.shape[len(batch_shape):]))
        w = w.expand(full + (n,))
        batch_shape = full

    def tangent_mean(m):
        return manifold._tangent_mean(m, xt, w)

    closed = manifold._closed_form_mean(xt, w)
    if closed is not None:
        m = closed
        residual = manifold._norm(m, tangent_mean(m))
        n_iter = torch.zeros(batch_shape, dtype=torch.int64, device=xt.device)
        converged = residual <= max(tol, 1e3 * torch.finfo(xt.dtype).eps)
        return _finish(m, n_iter, converged, residual, ref, warn=False, max_iter=max_iter, tol=tol)

    m = manifold._initial_mean(xt, w)
    done = torch.zeros(batch_shape, dtype=torch.bool, device=xt.device)
    n_iter = torch.zeros(batch_shape, dtype=torch.int64, device=xt.device)
    eta = torch.full(batch_shape, step_size, dtype=xt.dtype, device=xt.device)
    previous = torch.full(batch_shape, float("inf"), dtype=xt.dtype, device=xt.device)
    for _ in range(max_iter):
        g = tangent_mean(m)
        residual = manifold._norm(m, g)
        done = done | (residual <= tol)
        if not fixed_iterations and bool(done.all()):  # the only synchronisation in the loop
            break
        # safeguard (as geomstats): halve an element's step when its residual grew, which
        # happens for spread data in negative curvature (Hessian > identity)
        eta = torch.where(residual > previous, eta / 2, eta)
        previous = residual
        step = manifold._exp(m, eta.reshape(batch_shape + (1,) * pd) * g)
        m = torch.where(done.reshape(batch_shape + (1,) * pd), m, step)  # freeze converged
        n_iter = n_iter + (~done).to(torch.int64)
    residual = manifold._norm(m, tangent_mean(m))
    converged = residual <= tol
    return _finish(m, n_iter, converged, residual, ref, warn=True, max_iter=max_iter, tol=tol)


def _finish(m, n_iter, converged, residual, ref, warn, max_iter, tol) -> FrechetMeanResult:
    if warn and converged.numel() and not bool(converged.all()):
        n_bad = int((~converged).sum())
        worst = float(residual.max())
        warnings.warn(
            f"frechet_mean did not converge for {n_bad} of {converged.numel()} batch element(s) "
            f"after max_iter={max_iter} iterations (max residual {worst:.3g} > tol {tol:.3g}); "
            "increase max_iter, loosen tol or lower step_size",
            ConvergenceWarning,
            stacklevel=3,
        )
    if is_torch(ref):
        return FrechetMeanResult(m, n_iter, converged, residual)
    return FrechetMeanResult(like(m, ref), like(n_iter, ref), like(converged, ref), like(residual, ref))
