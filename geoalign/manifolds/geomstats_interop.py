r"""Conversions between geoalign manifolds and geomstats spaces (NumPy backend).

=============================  ===============================================  ======================
geoalign                       geomstats                                        points
=============================  ===============================================  ======================
``Sphere(dim=k)``              ``Hypersphere(k)`` (both intrinsic)              same unit vectors
``Hyperbolic(d, "poincare")``  ``PoincareBall(d)``                              same ball points
``Hyperbolic(d, "lorentz")``   ``Hyperboloid(d)`` (extrinsic coordinates)       same ``d + 1`` vectors
``SPD(n, "affine")``           ``SPDMatrices(n)`` + ``SPDAffineMetric``         same matrices
``SPD(n, "log_euclidean")``    ``SPDMatrices(n)`` + ``SPDLogEuclideanMetric``   same matrices
``Grassmann(n, p)``            ``Grassmannian(n, p)``                           frame ``X`` <-> ``XX^T``
=============================  ===============================================  ======================

Grassmann: geomstats' projector metric gives distances :math:`\sqrt2` times
geoalign's (canonical, principal-angle) distances; tangent vectors convert as
:math:`V \mapsto VX^\top + XV^\top` and back :math:`\Delta \mapsto \Delta X`
(for horizontal :math:`V`).  Going back from a projector gives *a* frame of its
range (its top-p eigenvectors).

geomstats is imported only through :func:`geoalign._compat.import_geomstats`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .._backend import to_numpy
from .._compat import import_geomstats
from .base import Manifold
from .grassmann import Grassmann
from .hyperbolic import Hyperbolic
from .spd import SPD
from .sphere import Sphere

__all__ = [
    "to_geomstats",
    "to_geomstats_point",
    "from_geomstats_point",
    "to_geomstats_tangent",
    "from_geomstats_tangent",
]


def to_geomstats(manifold: Manifold):
    """Return the geomstats space (with its metric) matching ``manifold``.

    Parameters
    ----------
    manifold : Sphere, Hyperbolic, SPD or Grassmann

    Returns
    -------
    space : geomstats manifold, equipped with the matching metric
    """
    import_geomstats()
    if isinstance(manifold, Sphere):
        from geomstats.geometry.hypersphere import Hypersphere

        return Hypersphere(dim=manifold.dim)
    if isinstance(manifold, Hyperbolic):
        if manifold.model == "poincare":
            from geomstats.geometry.poincare_ball import PoincareBall

            return PoincareBall(dim=manifold.d)
        from geomstats.geometry.hyperboloid import Hyperboloid

        return Hyperboloid(dim=manifold.d)
    if isinstance(manifold, SPD):
        from geomstats.geometry.spd_matrices import (
            SPDAffineMetric,
            SPDLogEuclideanMetric,
            SPDMatrices,
        )

        space = SPDMatrices(manifold.n, equip=False)
        metric = SPDAffineMetric if manifold.metric == "affine" else SPDLogEuclideanMetric
        space.equip_with_metric(metric)
        return space
    if isinstance(manifold, Grassmann):
        from geomstats.geometry.grassmannian import Grassmannian

        return Grassmannian(manifold.n, manifold.p)
    raise TypeError(f"manifold must be a Sphere, Hyperbolic, SPD or Grassmann, got {manifold!r}")


def _as_points(manifold: Manifold, x: Any, name: str) -> np.ndarray:
    manifold.check_point(x, name)
    return to_numpy(x)


def to_geomstats_point(manifold: Manifold, x: Any) -> np.ndarray:
    """Points of ``manifold`` in geomstats' representation (NumPy).

    Parameters
    ----------
    x : array-like, shape=[..., *manifold.point_shape]

    Returns
    -------
    points : np.ndarray
        Same array except for Grassmann, where frames ``X`` (n x p) become
        projectors ``XX^T`` (n x n).
    """
    xn = _as_points(manifold, x, "x")
    if isinstance(manifold, Grassmann):
        return xn @ np.swapaxes(xn, -1, -2)
    return xn


def from_geomstats_point(manifold: Manifold, points: Any) -> np.ndarray:
    """Convert geomstats points back to ``manifold``'s representation (NumPy).

    For Grassmann, ``points`` are ``n x n`` rank-p orthogonal projectors and
    the result is the frame of their top-p eigenvectors.
    """
    pn = to_numpy(points)
    if isinstance(manifold, Grassmann):
        n = manifold.n
        if pn.shape[-2:] != (n, n):
            raise ValueError(f"points must have shape (..., {n}, {n}) projectors, got {pn.shape}")
        if not np.allclose(pn, np.swapaxes(pn, -1, -2), atol=1e-7) or not np.allclose(
            pn @ pn, pn, atol=1e-6
        ):
            raise ValueError("points must be symmetric idempotent matrices (orthogonal projectors)")
        _, vecs = np.linalg.eigh((pn + np.swapaxes(pn, -1, -2)) / 2)
        frames = vecs[..., -manifold.p:]
        manifold.check_point(frames, "frames")
        return frames
    manifold.check_point(pn, "points")
    return pn


def to_geomstats_tangent(manifold: Manifold, x: Any, v: Any) -> np.ndarray:
    """Tangent vectors ``v`` at ``x`` in geomstats' representation (NumPy).

    Grassmann: horizontal ``V`` at frame ``X`` becomes ``VX^T + XV^T`` at ``XX^T``.
    """
    xn = _as_points(manifold, x, "x")
    vn = to_numpy(v)
    if isinstance(manifold, Grassmann):
        manifold.check_tangent(xn, vn, "v")
        return vn @ np.swapaxes(xn, -1, -2) + xn @ np.swapaxes(vn, -1, -2)
    return vn


def from_geomstats_tangent(manifold: Manifold, x: Any, v: Any) -> np.ndarray:
    """Inverse of :func:`to_geomstats_tangent` (``x`` in geoalign's representation).

    Grassmann: ``Δ`` at ``XX^T`` becomes the horizontal vector ``ΔX`` at ``X``.
    """
    xn = _as_points(manifold, x, "x")
    vn = to_numpy(v)
    if isinstance(manifold, Grassmann):
        return vn @ xn
    return vn
