r"""The unit sphere :math:`S^{d-1} = \{x \in \mathbb{R}^d : \|x\| = 1\}` (round metric).

``Sphere(dim=k)`` takes the **intrinsic** dimension ``k``, like geomstats'
``Hypersphere(dim=k)`` and like :class:`~geoalign.manifolds.hyperbolic.Hyperbolic`:
points are unit vectors of length ``d = k + 1``.  The older ``Sphere(d)`` (a
positional or ``d=`` argument: the **ambient** dimension) still works and warns
(:class:`~geoalign._warnings.GeoalignDeprecationWarning`); write ``Sphere(dim=d - 1)``.

Formulas (with :math:`\theta = d(x, y)`):

.. math::

    d(x, y) = 2\,\operatorname{atan2}(\|x - y\|, \|x + y\|), \qquad
    \exp_x(v) = \cos\|v\|\,x + \frac{\sin\|v\|}{\|v\|}\,v, \qquad
    \log_x(y) = \theta\,\frac{u}{\|u\|},\; u = y - \langle x, y\rangle x.

The ``atan2`` form of the distance is accurate both near 0 and near
:math:`\pi` (``arccos`` of the inner product loses half the digits there);
:math:`\sin t / t` uses its Taylor series near 0.

Cut locus: for antipodal points (:math:`y = -x`) the logarithm is not unique
(every unit tangent direction times :math:`\pi` works).  We do not raise (that
would need a host-device synchronisation inside batched code); we return the
deterministic choice :math:`\pi\,e/\|e\|` with
:math:`e = e_k - x_k x` and :math:`k = \arg\min_i |x_i|`.  It satisfies
:math:`\exp_x(\log_x(y)) = y` and :math:`\|\log_x y\| = \pi = d(x, y)`.
It is used when :math:`\|u\|` is below ``~10 eps`` of the dtype and
:math:`\theta > \pi/2`.
"""
from __future__ import annotations

import math

import torch

from .._validation import check_int
from .._warnings import warn_deprecated
from .base import Manifold

__all__ = ["Sphere"]


def _sinc(t: torch.Tensor) -> torch.Tensor:
    """sin(t)/t with the series 1 - t^2/6 + t^4/120 near 0."""
    small = t.abs() < 1e-3
    t_safe = torch.where(small, torch.ones_like(t), t)
    t2 = t * t
    return torch.where(small, 1 - t2 / 6 + t2 * t2 / 120, torch.sin(t_safe) / t_safe)


class Sphere(Manifold):
    r"""Unit sphere :math:`S^{k} \subset \mathbb{R}^{k+1}` of intrinsic dimension ``k = dim``.

    Parameters
    ----------
    d : int, optional
        Deprecated: the **ambient** dimension (>= 2), ``Sphere(d) == Sphere(dim=d - 1)``;
        warns.  Give ``dim`` instead.
    validate : bool, default True
        Check inputs in public methods (see :class:`~geoalign.manifolds.base.Manifold`).
    dim : int
        Intrinsic dimension ``k >= 1`` (keyword): points have shape ``(..., k + 1)``.

    Attributes
    ----------
    dim : int
        Intrinsic dimension.
    d : int
        Ambient dimension ``dim + 1`` (the length of a point).

    Notes
    -----
    ``belongs``/``check_point`` test :math:`|\|x\| - 1| \le` atol (1e-4 float32,
    1e-7 float64); tangent vectors need :math:`|\langle x, v\rangle| \le`
    atol :math:`\cdot \max(1, \|v\|)`.  ``projx`` normalises (the zero vector is
    mapped to :math:`e_1`); ``proju(x, u) = u - \langle x, u\rangle x``.
    """

    name = "sphere"

    def __init__(self, d: int | None = None, validate: bool = True, *, dim: int | None = None):
        super().__init__(validate=validate)
        if (d is None) == (dim is None):
            raise TypeError("Sphere needs its intrinsic dimension as dim=k (S^k in R^(k+1)), "
                            f"got {'neither d nor dim' if d is None else 'both d and dim'}")
        if d is not None:
            d = check_int(d, "d", minimum=2)
            warn_deprecated(f"Sphere({d}) with the ambient dimension",
                            f"Sphere(dim={d - 1}) (the intrinsic dimension, as geomstats' Hypersphere)")
            dim = d - 1
        self.dim = check_int(dim, "dim", minimum=1)  # intrinsic dimension
        self.d = self.dim + 1  # ambient dimension
        self.point_shape = (self.d,)

    def _repr_args(self) -> str:
        return f"dim={self.dim}"

    def _constraint(self) -> str:
        return "||x|| = 1"

    def _tangent_constraint(self) -> str:
        return "<x, v> = 0"

    # kernels ----------------------------------------------------------------
    def _violation(self, x):
        return (torch.linalg.vector_norm(x, dim=-1) - 1).abs()

    def _tangent_violation(self, x, v):
        vn = torch.linalg.vector_norm(v, dim=-1).clamp(min=1)
        return (x * v).sum(-1).abs() / vn

    def _inner(self, x, u, v):
        return (u * v).sum(-1) + torch.zeros_like(x[..., 0])

    def _norm(self, x, v):
        return torch.linalg.vector_norm(v, dim=-1) + torch.zeros_like(x[..., 0])

    def _projx(self, x):
        n = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        e1 = torch.zeros_like(x)
        e1[..., 0] = 1
        return torch.where(n > 0, x / torch.where(n > 0, n, torch.ones_like(n)), e1)

    def _proju(self, x, u):
        return u - (x * u).sum(-1, keepdim=True) * x

    def _exp(self, x, v):
        nv = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
        y = torch.cos(nv) * x + _sinc(nv) * v
        # renormalise: removes the O(eps) drift so repeated steps stay on the sphere
        return y / torch.linalg.vector_norm(y, dim=-1, keepdim=True)

    def _dist(self, x, y):
        return 2 * torch.atan2(torch.linalg.vector_norm(x - y, dim=-1),
                               torch.linalg.vector_norm(x + y, dim=-1))

    def _log(self, x, y):
        x, y = torch.broadcast_tensors(x, y)
        theta = self._dist(x, y).unsqueeze(-1)
        diff = y - x
        u = diff - (x * diff).sum(-1, keepdim=True) * x  # = y - <x,y> x, computed stably
        # second projection: near antipodes ||u|| ~ sin(theta) is tiny and the rounding of the
        # first one would leave a normal component of relative size eps/||u||
        u = u - (x * u).sum(-1, keepdim=True) * x
        nu = torch.linalg.vector_norm(u, dim=-1, keepdim=True)
        tiny = 10 * torch.finfo(x.dtype).eps
        nu_safe = torch.where(nu > tiny, nu, torch.ones_like(nu))
        # theta/||u|| -> 1 as y -> x (||u|| = sin theta)
        v = torch.where(nu > tiny, theta / nu_safe, torch.ones_like(nu)) * u
        # antipodal fallback: deterministic direction (see module docstring)
        k = x.abs().argmin(dim=-1, keepdim=True)
        e = torch.zeros_like(x).scatter_(-1, k, 1.0)
        e = e - torch.gather(x, -1, k) * x
        e = e / torch.linalg.vector_norm(e, dim=-1, keepdim=True)
        antipodal = (nu <= tiny) & (theta > math.pi / 2)
        return torch.where(antipodal, math.pi * e, v)

    def _random(self, shape, gen, dtype):
        x = torch.randn(shape + (self.d,), generator=gen, dtype=dtype)
        return self._projx(x)

    def _tangent_mean(self, m, x, w):
        # sum_i w_i theta_i/sin(theta_i) (x_i - c_i m) with c_i = <m, x_i>, as two batched
        # mat-vecs (memory traffic O(n d) per iteration instead of ~30 passes in _log).
        # theta/sin(theta) = arccos(c)/sqrt(1 - c^2) is smooth at c = 1 (series there), so
        # computing it from c loses no accuracy; c = -1 (a point antipodal to the iterate,
        # where the Fréchet function is not differentiable) is clamped to stay finite.
        c = (x * m.unsqueeze(-2)).sum(-1).clamp(-1 + torch.finfo(x.dtype).eps, 1)
        u = 1 - c
        small = u < 1e-5
        c_safe = torch.where(small, torch.zeros_like(c), c)
        ratio = torch.where(small, 1 + u / 3 + 2 * u * u / 15,
                            torch.acos(c_safe) / torch.sqrt(1 - c_safe * c_safe))
        coef = w * ratio
        g = (coef.unsqueeze(-2) @ x).squeeze(-2) - (coef * c).sum(-1, keepdim=True) * m
        return self._proju(m, g)

    def _initial_mean(self, x, w):
        # normalised weighted extrinsic mean; first point if it (almost) vanishes
        m = (w.unsqueeze(-1) * x).sum(-2)
        nm = torch.linalg.vector_norm(m, dim=-1, keepdim=True)
        ok = nm > 1e-3
        return torch.where(ok, m / torch.where(ok, nm, torch.ones_like(nm)), x[..., 0, :])
