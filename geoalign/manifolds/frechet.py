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

For SPD with the affine-invariant metric the default is a damped Riemannian
Newton iteration (``method="newton"``), :math:`m_{k+1} = \exp_{m_k}(\eta_k
\mathcal H_k^{-1} g_k)`: the Hessian :math:`\mathcal H_k` of the objective has a
closed form in the eigendecompositions of the whitened data
:math:`m_k^{-1/2} x_i m_k^{-1/2}` that :math:`g_k` needs anyway (one batched
``eigh`` per pass), so each step costs about one Karcher step plus a few
conjugate-gradient products, and convergence is quadratic (three Newton steps,
four passes over the data, to 1e-9 on the three ``spd_frechet`` benchmark
instances, where the Karcher step with its step rule needs 10 to 43 steps).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._backend import is_torch, like, to_numpy, to_torch
from .._validation import (
    check_array,
    check_choice,
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
    method: str = "auto",
) -> FrechetMeanResult:
    r"""Weighted Fréchet (Karcher) mean, batched over leading dimensions.

    .. math:: m^\star = \arg\min_m \sum_{i=1}^n w_i\, d(m, x_i)^2

    Parameters
    ----------
    x : array-like, shape=[..., n, point_shape...]
        ``n >= 1`` points per batch element, on ``manifold`` (checked once,
        unless the manifold has ``validate=False``).
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
        by masking) and without the convergence warning: read ``converged``.
        With a ``validate=False`` manifold the whole call is then free of
        synchronisations (counted in ``tests/test_syncs.py``).  When False the
        loop stops once every batch element has converged (one
        synchronisation per iteration).
    step_size : float, default 1.0
        Step :math:`\eta` of the update :math:`m \leftarrow \exp_m(\eta g)`
        (``method="newton"``: the damping of the Newton step :math:`v`).
    method : {"auto", "gradient", "newton"}, default "auto"
        ``"gradient"``: the Karcher iteration above.  ``"newton"`` (SPD with the
        affine metric only): the Riemannian Newton iteration
        :math:`m \leftarrow \exp_m(\eta\, \mathcal H^{-1} g)`, with the exact Hessian
        :math:`\mathcal H` of :math:`\tfrac12\sum_i w_i d(\cdot, x_i)^2` applied in
        closed form from the eigendecompositions that :math:`g` already needs and
        inverted by conjugate gradients (relative tolerance
        :math:`\min(0.1, \|g\|)`, at most 16 iterations); it converges
        quadratically where the Karcher step converges linearly with a rate that
        grows with the spread of the data.  It starts at the identity, whose
        first pass computes the log-Euclidean mean :math:`\exp(\sum_i w_i \log x_i)`
        (returned when ``max_iter=0``).  ``"auto"``: ``"newton"`` where
        available, ``"gradient"`` otherwise.

    Returns
    -------
    FrechetMeanResult
        ``mean`` (shape ``[..., *point_shape]``), ``n_iter``, ``converged`` and
        ``residual`` (shape ``[...]``), all of the kind of ``x``.

    Warns
    -----
    ConvergenceWarning
        When some batch element did not reach ``tol`` within ``max_iter``, or
        (sphere, Grassmann) stopped at a point that is not a minimum: data on
        the cut locus of the iterate, e.g. two antipodal points, make the
        residual vanish at a maximum.  Such elements are reported with
        ``converged=False`` (with ``fixed_iterations=True`` they are reported
        but no warning is issued, which would read ``converged`` on the host).

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
    if manifold.validate:
        manifold._check_point_tensor(xt, "x")
    max_iter = check_int(max_iter, "max_iter", minimum=0)
    tol = _default_tol(xt.dtype) if tol is None else check_nonnegative_scalar(tol, "tol")
    step_size = check_positive_scalar(step_size, "step_size")
    method = check_choice(method, "method", ("auto", "gradient", "newton"))
    has_newton = bool(getattr(manifold, "_karcher_newton", False))
    if method == "newton" and not has_newton:
        raise ValueError(f"method='newton' needs SPD with metric='affine', got {manifold!r}; "
                         "use method='gradient' or 'auto'")
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

    if has_newton and method != "gradient":
        m, n_iter, converged, residual = _karcher_newton(manifold, xt, w, batch_shape, max_iter, tol,
                                                         fixed_iterations, step_size)
        return _finish(m, n_iter, converged, residual, ref, warn=not fixed_iterations,
                       max_iter=max_iter, tol=tol)

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
    not_min = _not_a_minimum(manifold, m, xt, w, residual)
    if not_min is not None:
        not_min = not_min & converged  # elements short of tol get the usual warning below
        converged = converged & ~not_min
    if fixed_iterations:
        # no warning, which would read `converged` on the host
        return _finish(m, n_iter, converged, residual, ref, warn=False, max_iter=max_iter, tol=tol)
    if not_min is not None and bool(not_min.any()):
        warnings.warn(
            f"frechet_mean: {int(not_min.sum())} of {not_min.numel()} batch element(s) stopped at "
            "a point that is not a minimum of the Fréchet function (a descent direction exists): "
            "data on the cut locus of the iterate (e.g. antipodal points on the sphere) make the "
            "mean non-unique or the iteration stall at a maximum/saddle; reported converged=False",
            ConvergenceWarning, stacklevel=2)
        return _finish(m, n_iter, converged, residual, ref, warn=False,
                       max_iter=max_iter, tol=tol)
    return _finish(m, n_iter, converged, residual, ref, warn=True, max_iter=max_iter, tol=tol)


#: conjugate-gradient iterations per Newton step, at most (fixed_iterations runs them all)
_NEWTON_CG_ITER = 16


def _karcher_newton(manifold, xt, w, batch_shape, max_iter, tol, fixed_iterations, step_size):
    r"""Damped Riemannian Newton iteration for the Fréchet mean (manifolds with ``_karcher_newton``).

    One pass over the data per step: at a trial point :math:`m'` the whitened data give
    the tangent mean :math:`g'`, the residual :math:`\|g'\|` and the objective
    :math:`F' = \tfrac12 \sum_i w_i d(m', x_i)^2` (from the same eigenvalues).  The trial is
    accepted when :math:`F` or the residual did not grow (the residual test keeps
    quadratic convergence where differences of :math:`F`, of order :math:`\|g\|^2`, are
    below rounding); then the Newton direction :math:`v = \mathcal H^{-1} g'` is solved by
    conjugate gradients to relative tolerance :math:`\min(0.1, \|g'\|^{3/2})` and the step
    is reset to ``step_size``.  A rejected trial halves the step along the previous
    direction from the previous point (backtracking; :math:`F` is geodesically convex and
    :math:`v` a descent direction).  Converged elements are frozen; everything is
    elementwise, so a batch returns what a loop over its elements returns.
    Returns ``(m, n_iter, converged, residual)``; ``n_iter`` counts trial steps.
    """
    opts = dict(dtype=xt.dtype, device=xt.device)
    p = manifold.n
    eye = torch.eye(p, **opts).expand(batch_shape + (p, p))
    done = torch.zeros(batch_shape, dtype=torch.bool, device=xt.device)
    n_iter = torch.zeros(batch_shape, dtype=torch.int64, device=xt.device)
    eta = torch.full(batch_shape, step_size, **opts)
    if max_iter == 0:  # the documented starting point: the log-Euclidean mean
        trial = manifold._whitened_exp(None, manifold._karcher_state(None, xt, w)[3])
    else:
        trial = None  # the identity, where the data need no whitening
    base = base_chol = v = base_f = base_res = None
    for k in range(max_iter + 1):
        chol, u, mu, g = manifold._karcher_state(trial, xt, w)
        chol = eye if chol is None else chol
        res = torch.linalg.matrix_norm(g)
        f = 0.5 * (w * (mu * mu).sum(-1)).sum(-1)
        if base is None:
            accept = torch.ones(batch_shape, dtype=torch.bool, device=xt.device)
            base, base_chol, base_f, base_res = (eye if trial is None else trial), chol, f, res
        else:
            accept = (f <= base_f) | (res <= base_res)
            keep = accept[..., None, None]
            base, base_chol = torch.where(keep, trial, base), torch.where(keep, chol, base_chol)
            base_f, base_res = torch.where(accept, f, base_f), torch.where(accept, res, base_res)
            eta = torch.where(accept, torch.full_like(eta, step_size), eta / 2)
        done = done | (base_res <= tol)
        if k >= max_iter or (not fixed_iterations and bool(done.all())):  # the loop's sync
            break
        # a new direction where the trial was accepted (rtol inf: no CG work for the others)
        rtol = torch.where(accept & ~done, res.pow(1.5).clamp(max=0.1), torch.inf)
        v_new = manifold._newton_direction(u, mu, w, g, rtol, _NEWTON_CG_ITER,
                                           adaptive=not fixed_iterations)
        v = v_new if v is None else torch.where(accept[..., None, None], v_new, v)
        step = manifold._whitened_exp(base_chol, eta[..., None, None] * v)
        trial = torch.where(done[..., None, None], base, step)
        n_iter = n_iter + (~done).to(torch.int64)
    return base, n_iter, base_res <= tol, base_res


def _frechet_function(manifold: Manifold, m: torch.Tensor, x: torch.Tensor, w: torch.Tensor):
    r""":math:`\sum_i w_i d(m, x_i)^2`, shape=[...]."""
    d = manifold._dist(m.unsqueeze(-manifold.point_ndim - 1), x)
    return (w * d * d).sum(-1)


def _not_a_minimum(manifold: Manifold, m: torch.Tensor, x: torch.Tensor, w: torch.Tensor,
                   residual: torch.Tensor):
    r"""Batch mask of iterates with a descent direction of the Fréchet function, or None.

    Only on manifolds with positive curvature (sphere, Grassmann), where data on the cut
    locus make the function non-smooth and the Karcher residual can vanish at a maximum
    (two antipodal points: the residual is 0 at either point).  The function is compared
    at ``m`` and at ``exp_m(delta v)`` for seeded random unit tangent directions ``+-v``;
    at a minimum it can only grow, by :math:`O(\delta^2)`, while at a cut-locus kink
    or a maximum it drops by :math:`O(\delta)`.  Hadamard manifolds (hyperbolic, SPD)
    have a unique mean and are not checked.
    """
    from .grassmann import Grassmann
    from .sphere import Sphere

    if not isinstance(manifold, (Sphere, Grassmann)):
        return None
    pd = manifold.point_ndim
    eps = torch.finfo(m.dtype).eps
    delta = eps ** 0.25  # first-order drops ~delta dominate rounding ~eps and curvature ~delta^2
    gen = torch.Generator(device="cpu").manual_seed(0)
    directions = []
    for _ in range(8):
        noise = torch.randn(m.shape, generator=gen, dtype=m.dtype).to(m.device)
        v = manifold._proju(m, noise)
        directions.append(v / manifold._norm(m, v).clamp_min(eps).reshape(m.shape[: m.ndim - pd] + (1,) * pd))
    if isinstance(manifold, Sphere):
        f0, f1 = _sphere_perturbed_frechet(m, x, w, torch.stack(directions, -1), delta)
        worst = (f1 - f0.unsqueeze(-1)).amin(-1).clamp_max(0)
    else:
        f0 = _frechet_function(manifold, m, x, w)
        worst = torch.zeros_like(f0)
        for v in directions:
            for sign in (1.0, -1.0):
                f1 = _frechet_function(manifold, manifold._exp(m, sign * delta * v), x, w)
                worst = torch.minimum(worst, f1 - f0)
    # a drop beyond a rounding margin (relative 1e3 eps of f) and beyond what the residual can
    # explain at first order (the gradient is -2 g, |g| = residual) is a descent direction
    return worst < -(1e3 * eps * f0.abs() + 1e2 * eps + 4 * delta * residual)


def _sphere_perturbed_frechet(m: torch.Tensor, x: torch.Tensor, w: torch.Tensor, V: torch.Tensor,
                              delta: float):
    r"""Fréchet function at ``m`` and at :math:`m' = \cos\delta\, m \pm \sin\delta\, v_k` (sphere).

    ``V`` holds unit tangent directions at ``m``, shape=[..., d, K]; returns ``f0``,
    shape=[...], and ``f1``, shape=[..., 2K].  Expanding :math:`|x \mp m'|^2` around
    :math:`|x \mp m|^2` (exact algebra: :math:`m \perp v_k`, both unit) needs only the
    inner products :math:`\langle x_i, v_k\rangle`, one matrix product, instead of 2K
    passes over the data; every term is small where the result is small, so the
    distances keep the accuracy of the direct formula.
    """
    dm, sm = x - m.unsqueeze(-2), x + m.unsqueeze(-2)
    a2, b2 = (dm * dm).sum(-1), (sm * sm).sum(-1)  # shape=[..., n]
    f0 = (w * (2 * torch.atan2(a2.sqrt(), b2.sqrt())) ** 2).sum(-1)
    c1 = 2 * math.sin(delta / 2) ** 2  # 1 - cos(delta)
    s = math.sin(delta)
    xv = x @ V  # <x_i, v_k> = <x_i -+ m, v_k>, shape=[..., n, K]
    base_a = (a2 + 2 * c1 + 2 * c1 * (dm * m.unsqueeze(-2)).sum(-1)).unsqueeze(-1)
    base_b = (b2 + 2 * c1 - 2 * c1 * (sm * m.unsqueeze(-2)).sum(-1)).unsqueeze(-1)
    f1 = []
    for sign in (1.0, -1.0):
        A = (base_a - 2 * sign * s * xv).clamp_min(0)
        B = (base_b + 2 * sign * s * xv).clamp_min(0)
        f1.append((w.unsqueeze(-1) * (2 * torch.atan2(A.sqrt(), B.sqrt())) ** 2).sum(-2))
    return f0, torch.cat(f1, -1)


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
