"""geoalign.models (public names re-exported lazily; see :data:`__all__`)."""
from __future__ import annotations

from .._lazy import lazy_exports

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    "CCA": "linear",
    "ESZSL": "linear",
    "load_linear_model": "linear",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
