"""Exact ring arithmetic over Z_n[x] (see :mod:`geoalign.rings.ring`)."""
from __future__ import annotations

from . import ring as _ring
from .ring import *  # noqa: F403
from .ring import __all__, _limb_plan  # noqa: F401


def __getattr__(name: str):
    return getattr(_ring, name)
