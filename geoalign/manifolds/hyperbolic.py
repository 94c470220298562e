r"""Hyperbolic space :math:`\mathbb{H}^d` (curvature -1) in the Poincaré ball or Lorentz model.

``Hyperbolic(d, model)`` takes the **intrinsic** dimension ``d`` (as geomstats'
``PoincareBall(d)`` and ``Hyperboloid(d)`` do):

* ``model="poincare"``: points are vectors of length ``d`` with
  :math:`\|x\| < 1`, metric :math:`\lambda_x^2 \langle\cdot,\cdot\rangle`,
  :math:`\lambda_x = 2 / (1 - \|x\|^2)`;
* ``model="lorentz"``: points are vectors of length ``d + 1`` on the upper
  sheet :math:`\langle x, x\rangle_L = -1, x_0 > 0` with
  :math:`\langle x, y\rangle_L = -x_0 y_0 + \sum_{i \ge 1} x_i y_i`.

The two are isometric through :func:`poincare_to_lorentz` /
:func:`lorentz_to_poincare`.

Poincaré formulas (Möbius addition :math:`\oplus`):

.. math::

    d(x, y) = 2\operatorname{asinh}\sqrt{\frac{\|x - y\|^2}{(1 - \|x\|^2)(1 - \|y\|^2)}},\quad
    \exp_x(v) = x \oplus \tanh\!\Bigl(\frac{\|v\|}{1 - \|x\|^2}\Bigr)\frac{v}{\|v\|},\quad
    \log_x(y) = (1 - \|x\|^2)\operatorname{artanh}(\|u\|)\frac{u}{\|u\|},\; u = (-x) \oplus y.

Lorentz formulas:

.. math::

    d(x, y) = 2\operatorname{asinh}\bigl(\tfrac12\|x - y\|_L\bigr),\quad
    \exp_x(v) = \cosh\|v\|_L\,x + \frac{\sinh\|v\|_L}{\|v\|_L} v,\quad
    \log_x(y) = \frac{\theta}{\sinh\theta}\bigl(y - x - 2\sinh^2(\theta/2)\,x\bigr).

The ``asinh`` forms are accurate for small distances (``arcosh(1 + z)`` loses
half the digits when ``z`` is small); ``tanh(s)/s``, ``artanh(r)/r`` and
``sinh(s)/s`` use Taylor series near 0.

Boundary: Poincaré points are clamped to :math:`\|x\| \le 1 - \epsilon_b` after
``exp``/``projx`` with :math:`\epsilon_b` = 4e-3 (float32) or 1e-5 (float64)
(the values of geoopt); beyond that the conformal factor is not representable
with useful precision.  ``belongs`` accepts every point with :math:`\|x\| < 1`.
Lorentz tangent norms are clamped to 50 (float32) / 500 (float64) in ``exp``
so that ``cosh`` does not overflow.
"""
from __future__ import annotations

from typing import Any

import torch

from .._adapter import compute_dtype
from .._backend import like
from .._validation import check_array, check_choice, check_int
from .._warnings import warn_deprecated
from .base import Manifold

__all__ = ["Hyperbolic", "poincare_to_lorentz", "lorentz_to_poincare", "boundary_eps"]


def boundary_eps(dtype: torch.dtype) -> float:
    """Distance from the Poincaré boundary at which points are clamped (1e-5 float64, 4e-3 else)."""
    return 1e-5 if dtype == torch.float64 else 4e-3


def _series_where(t, small_thr, series, exact):
    small = t.abs() < small_thr
    t_safe = torch.where(small, torch.full_like(t, 0.5), t)
    return torch.where(small, series(t), exact(t_safe))


def _tanhc(t):  # tanh(t)/t
    return _series_where(t, 1e-3, lambda s: 1 - s * s / 3, lambda s: torch.tanh(s) / s)


def _artanhc(t):  # artanh(t)/t
    return _series_where(t, 1e-3, lambda s: 1 + s * s / 3, lambda s: torch.atanh(s) / s)


def _sinhc(t):  # sinh(t)/t
    return _series_where(t, 1e-3, lambda s: 1 + s * s / 6, lambda s: torch.sinh(s) / s)


def _mobius_add(x, y):
    xy = (x * y).sum(-1, keepdim=True)
    x2 = (x * x).sum(-1, keepdim=True)
    y2 = (y * y).sum(-1, keepdim=True)
    num = (1 + 2 * xy + y2) * x + (1 - x2) * y
    den = 1 + 2 * xy + x2 * y2
    return num / den.clamp(min=torch.finfo(x.dtype).tiny)


def _lorentz_inner(x, y, keepdim=False):
    p = x * y
    return p[..., 1:].sum(-1, keepdim=keepdim) - (p[..., :1] if keepdim else p[..., 0])


def _p2l(p):
    p2 = (p * p).sum(-1, keepdim=True)
    den = (1 - p2).clamp(min=torch.finfo(p.dtype).tiny)
    return torch.cat([(1 + p2) / den, 2 * p / den], dim=-1)


def _l2p(x):
    return x[..., 1:] / (1 + x[..., :1])


def poincare_to_lorentz(p: Any):
    r"""Map Poincaré-ball points to the hyperboloid: :math:`x = (1 + \|p\|^2, 2p) / (1 - \|p\|^2)`.

    Parameters
    ----------
    p : array-like, shape=[..., d], with :math:`\|p\| < 1`

    Returns
    -------
    x : array-like, shape=[..., d + 1]
    """
    p = check_array(p, "p", min_ndim=1)
    pt = torch.as_tensor(p) if not isinstance(p, torch.Tensor) else p
    pt = pt.to(compute_dtype(p))
    if bool(((pt * pt).sum(-1) >= 1).any()):
        raise ValueError("p must lie in the open unit ball (||p|| < 1)")
    return like(_p2l(pt), p)


def lorentz_to_poincare(x: Any):
    r"""Map hyperboloid points to the Poincaré ball: :math:`p = x_{1:} / (1 + x_0)`.

    Parameters
    ----------
    x : array-like, shape=[..., d + 1], on the upper sheet (:math:`x_0 > 0`)

    Returns
    -------
    p : array-like, shape=[..., d]
    """
    x = check_array(x, "x", min_ndim=1)
    xt = torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x
    xt = xt.to(compute_dtype(x))
    if xt.shape[-1] < 2:
        raise ValueError(f"x must have at least 2 coordinates, got shape {tuple(xt.shape)}")
    if bool((xt[..., 0] <= 0).any()):
        raise ValueError("x must lie on the upper sheet of the hyperboloid (x_0 > 0)")
    return like(_l2p(xt), x)


class Hyperbolic(Manifold):
    r"""Hyperbolic space of intrinsic dimension ``dim`` (curvature -1).

    Parameters
    ----------
    dim : int
        Intrinsic dimension (>= 1), as geomstats' ``PoincareBall(dim)``.  Points
        have shape ``(..., dim)`` in the Poincaré model and ``(..., dim + 1)`` in
        the Lorentz model.
    model : {"poincare", "lorentz"}
    validate : bool, default True
    d : int, optional
        Deprecated keyword spelling of ``dim`` (same meaning); warns.

    Notes
    -----
    Membership: Poincaré :math:`\|x\| < 1` (strict; the tolerance is unused);
    Lorentz :math:`|\langle x, x\rangle_L + 1| \le \mathrm{atol}\,(1 + \|x\|^2)`
    and :math:`x_0 > 0`.  ``projx``: Poincaré clamps the norm to
    :math:`1 - \epsilon_b`; Lorentz recomputes
    :math:`x_0 = \sqrt{1 + \|x_{1:}\|^2}`.  ``proju``: identity (Poincaré),
    :math:`u + \langle x, u\rangle_L x` (Lorentz).
    """

    name = "hyperbolic"

    def __init__(self, dim: int | None = None, model: str = "poincare", validate: bool = True, *,
                 d: int | None = None):
        super().__init__(validate=validate)
        if (d is None) == (dim is None):
            raise TypeError("Hyperbolic needs its intrinsic dimension dim, "
                            f"got {'neither d nor dim' if d is None else 'both d and dim'}")
        if d is not None:
            warn_deprecated("Hyperbolic(d=...)", "Hyperbolic(dim=...) (same meaning: the intrinsic dimension)")
            dim = d
        self.dim = check_int(dim, "dim", minimum=1)
        self.d = self.dim  # the length of a Poincaré point
        self.model = check_choice(model, "model", ("poincare", "lorentz"))
        self.point_shape = (self.d,) if self.model == "poincare" else (self.d + 1,)

    def _repr_args(self) -> str:
        return f"dim={self.dim}, model={self.model!r}"

    def _constraint(self) -> str:
        return "||x|| < 1" if self.model == "poincare" else "<x, x>_L = -1, x_0 > 0"

    def _tangent_constraint(self) -> str:
        return "<x, v>_L = 0"

    # kernels ----------------------------------------------------------------
    def _violation(self, x):
        if self.model == "poincare":
            n = torch.linalg.vector_norm(x, dim=-1)
            # 0 inside the open ball, inf on or outside it (no tolerance outside the ball)
            return torch.where(n < 1, torch.zeros_like(n), torch.full_like(n, float("inf")))
        q = _lorentz_inner(x, x)
        viol = (q + 1).abs() / (1 + (x * x).sum(-1))
        return torch.where(x[..., 0] > 0, viol, torch.full_like(viol, float("inf")))

    def _tangent_violation(self, x, v):
        if self.model == "poincare":
            return super()._tangent_violation(x, v)
        scale = (torch.linalg.vector_norm(x, dim=-1) * torch.linalg.vector_norm(v, dim=-1)).clamp(min=1)
        return _lorentz_inner(x, v).abs() / scale

    def _inner(self, x, u, v):
        if self.model == "poincare":
            lam = 2 / (1 - (x * x).sum(-1)).clamp(min=torch.finfo(x.dtype).tiny)
            return lam * lam * (u * v).sum(-1)
        return _lorentz_inner(u, v) + torch.zeros_like(x[..., 0])

    def _projx(self, x):
        if self.model == "poincare":
            maxn = 1 - boundary_eps(x.dtype)
            n = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
            return torch.where(n > maxn, x * (maxn / n.clamp(min=maxn)), x)
        s = x[..., 1:]
        return torch.cat([torch.sqrt(1 + (s * s).sum(-1, keepdim=True)), s], dim=-1)

    def _proju(self, x, u):
        if self.model == "poincare":
            return u + torch.zeros_like(x)
        return u + _lorentz_inner(x, u, keepdim=True) * x

    def _exp(self, x, v):
        if self.model == "poincare":
            x2 = (x * x).sum(-1, keepdim=True)
            conf = (1 - x2).clamp(min=torch.finfo(x.dtype).tiny)
            nv = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
            s = nv / conf
            # tanh(s) * v/|v| = tanh(s)/s * v / (1 - |x|^2)
            return self._projx(_mobius_add(x, _tanhc(s) * v / conf))
        nv = torch.sqrt(_lorentz_inner(v, v, keepdim=True).clamp(min=0))
        nv = nv.clamp(max=500.0 if x.dtype == torch.float64 else 50.0)
        return self._projx(torch.cosh(nv) * x + _sinhc(nv) * v)

    def _dist(self, x, y):
        if self.model == "poincare":
            tiny = torch.finfo(x.dtype).tiny
            dx = (1 - (x * x).sum(-1)).clamp(min=tiny)
            dy = (1 - (y * y).sum(-1)).clamp(min=tiny)
            d2 = ((x - y) ** 2).sum(-1)
            return 2 * torch.asinh(torch.sqrt(d2 / (dx * dy)))
        diff = x - y
        q = _lorentz_inner(diff, diff).clamp(min=0)  # = 4 sinh^2(d/2) >= 0 on the hyperboloid
        return 2 * torch.asinh(torch.sqrt(q) / 2)

    def _log(self, x, y):
        if self.model == "poincare":
            x, y = torch.broadcast_tensors(x, y)
            u = _mobius_add(-x, y)
            nu = torch.linalg.vector_norm(u, dim=-1, keepdim=True)
            nu = nu.clamp(max=1 - torch.finfo(x.dtype).eps)
            conf = 1 - (x * x).sum(-1, keepdim=True)
            return conf * _artanhc(nu) * u
        theta = self._dist(x, y).unsqueeze(-1)
        u = (y - x) - 2 * torch.sinh(theta / 2) ** 2 * x  # = y + <x, y>_L x, without cancellation
        return u / _sinhc(theta)

    def _random(self, shape, gen, dtype, scale: float = 1.0):
        v = scale * torch.randn(shape + (self.d,), generator=gen, dtype=dtype)
        nv = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
        # wrapped normal at the origin: exp_0(v) on the hyperboloid
        x = torch.cat([torch.cosh(nv), _sinhc(nv) * v], dim=-1)
        x = torch.cat([torch.sqrt(1 + (x[..., 1:] ** 2).sum(-1, keepdim=True)), x[..., 1:]], dim=-1)
        return x if self.model == "lorentz" else self._projx(_l2p(x))

    def _initial_mean(self, x, w):
        # Lorentzian centroid (a future-timelike combination, normalised onto the sheet)
        xl = x if self.model == "lorentz" else _p2l(x)
        m = (w.unsqueeze(-1) * xl).sum(-2)
        m = m / torch.sqrt((-_lorentz_inner(m, m, keepdim=True)).clamp(min=torch.finfo(m.dtype).tiny))
        return self._projx(m) if self.model == "lorentz" else self._projx(_l2p(m))
