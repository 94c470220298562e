"""Riemannian manifolds (sphere, hyperbolic, SPD, Grassmann) and Fréchet means.

All classes are torch-based (any device) and accept NumPy inputs (NumPy in ->
NumPy out).  Names are imported lazily.
"""
from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "Manifold": "base",
    "default_atol": "base",
    "Sphere": "sphere",
    "Hyperbolic": "hyperbolic",
    "poincare_to_lorentz": "hyperbolic",
    "lorentz_to_poincare": "hyperbolic",
    "SPD": "spd",
    "Grassmann": "grassmann",
    "FrechetMeanResult": "frechet",
    "frechet_mean": "frechet",
    "to_geomstats": "geomstats_interop",
    "to_geomstats_point": "geomstats_interop",
    "from_geomstats_point": "geomstats_interop",
    "to_geomstats_tangent": "geomstats_interop",
    "from_geomstats_tangent": "geomstats_interop",
}

from .._warnings import ConvergenceWarning  # noqa: E402  (light module, no torch)

__all__ = sorted([*_EXPORTS, "ConvergenceWarning"])
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
