"""Compatibility shims for third-party packages (one place, documented).

geomstats 2.8 (its latest release) calls ``numpy.trapz``, which NumPy 2.4
removed in favour of ``numpy.trapezoid`` (identical semantics).  Rather than cap
NumPy for the whole toolkit, :func:`import_geomstats` restores the alias just
before geomstats is imported.  Nothing else in geoalign patches NumPy; modules
that need geomstats must import it through this function.
"""
from __future__ import annotations

import os
import warnings
from types import ModuleType

import numpy as np

__all__ = ["import_geomstats", "patch_numpy_trapz"]


def patch_numpy_trapz() -> bool:
    """Alias ``numpy.trapz`` to ``numpy.trapezoid`` if NumPy lacks it.

    Returns True when the alias was added, False when NumPy already has it.
    """
    if hasattr(np, "trapz"):
        return False
    np.trapz = np.trapezoid  # type: ignore[attr-defined]
    return True


def import_geomstats() -> ModuleType:
    """Import geomstats (NumPy backend unless ``GEOMSTATS_BACKEND`` says otherwise).

    Applies :func:`patch_numpy_trapz` first.  Raises ``ImportError`` with an
    explanation if geomstats is not installed.
    """
    patch_numpy_trapz()
    os.environ.setdefault("GEOMSTATS_BACKEND", "numpy")
    try:
        with warnings.catch_warnings():
            # geomstats' backend importer predates PEP 451 (ImportWarning on 3.11+).
            warnings.simplefilter("ignore", ImportWarning)
            import geomstats
            import geomstats.backend  # noqa: F401  (fails on numpy>=2.4 without the shim)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "geomstats is required for this function: pip install geomstats"
        ) from exc
    return geomstats
