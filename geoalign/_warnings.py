"""Warning classes shared by geoalign's iterative algorithms.

Kept in one small module so that every solver (Fréchet means, Sinkhorn, ...)
raises the same class and users can filter them with one line::

    warnings.simplefilter("ignore", geoalign.ConvergenceWarning)
"""
from __future__ import annotations

__all__ = ["GeoalignWarning", "ConvergenceWarning", "GeoalignDeprecationWarning", "warn_deprecated",
           "deprecated_aliases"]


class GeoalignWarning(UserWarning):
    """Base class of every warning geoalign emits."""


class ConvergenceWarning(GeoalignWarning):
    """An iterative algorithm stopped before reaching its tolerance.

    The result is still returned; its ``converged`` attribute says which
    (batch) elements reached the tolerance.
    """


class GeoalignDeprecationWarning(GeoalignWarning, FutureWarning):
    """A public name or argument meaning is deprecated; the message names its replacement.

    A :class:`FutureWarning` (shown to users by default), so that scripts see it.
    """


def warn_deprecated(old: str, new: str, stacklevel: int = 3) -> None:
    """Warn that ``old`` is deprecated in favour of ``new`` (:class:`GeoalignDeprecationWarning`)."""
    import warnings

    warnings.warn(f"{old} is deprecated; use {new} instead", GeoalignDeprecationWarning,
                  stacklevel=stacklevel)


def deprecated_aliases(module: str, aliases: dict, fallback=None):
    """A module ``__getattr__`` that serves deprecated names with a warning.

    ``aliases`` maps an old name to ``(replacement description, zero-argument
    callable returning the object)``; other names go to ``fallback`` (another
    module ``__getattr__``) or raise ``AttributeError``.
    """

    def __getattr__(name: str):
        if name in aliases:
            new, get = aliases[name]
            warn_deprecated(f"{module}.{name}", new)
            return get()
        if fallback is not None:
            return fallback(name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
