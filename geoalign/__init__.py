"""geoalign: geometry of multimodal embedding alignment.

The public API is re-exported here.  Submodules are imported lazily on first
attribute access (so ``import geoalign`` does not import torch), and
:data:`__all__` lists every public name.
"""
from __future__ import annotations

from ._lazy import lazy_exports

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {}

__all__ = sorted(["__version__", *_EXPORTS])
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
