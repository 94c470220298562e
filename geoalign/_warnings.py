"""Warning classes shared by geoalign's iterative algorithms.

Kept in one small module so that every solver (Fréchet means, Sinkhorn, ...)
raises the same class and users can filter them with one line::

    warnings.simplefilter("ignore", geoalign.ConvergenceWarning)
"""
from __future__ import annotations

__all__ = ["GeoalignWarning", "ConvergenceWarning"]


class GeoalignWarning(UserWarning):
    """Base class of every warning geoalign emits."""


class ConvergenceWarning(GeoalignWarning):
    """An iterative algorithm stopped before reaching its tolerance.

    The result is still returned; its ``converged`` attribute says which
    (batch) elements reached the tolerance.
    """
