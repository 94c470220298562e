"""Parameter sweeps at scale (see :mod:`geoalign.sweep.engine`)."""
from __future__ import annotations

from . import engine as _engine
from .engine import *  # noqa: F403
from .engine import EXECUTORS, LOCAL_CLUSTER_QUIET, RESERVED_NAMES, __all__, _check_signature  # noqa: F401


def __getattr__(name: str):
    return _engine.__getattr__(name)
