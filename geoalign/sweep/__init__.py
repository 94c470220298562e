"""Parameter sweeps at scale: a function plus a grid, run serially, on local processes or on a
Dask cluster, resumable cell by cell (:func:`run_sweep`).

The package follows the seams of the work:

=====================================  ==================================================
:mod:`geoalign.sweep.grid`             :class:`Grid`, the cells (axes, zipped axes, seeds)
:mod:`geoalign.sweep.cache`            cell identity (:func:`cell_key`) and the cell cache
:mod:`geoalign.sweep.results`          :class:`SweepResult`, :class:`SweepSummary`, saving, loading
:mod:`geoalign.sweep.executors`        serial, local processes, Dask (:func:`connect_client`)
:mod:`geoalign.sweep.engine`           :func:`run_sweep`
=====================================  ==================================================

Studies (registered sweeps) live in :mod:`geoalign.studies`, the ``geoalign sweep``
command in :mod:`geoalign.cli.sweep` and the distributed ε-join in
:mod:`geoalign.fiber_distributed`; their old names here still work, with a
:class:`~geoalign._warnings.GeoalignDeprecationWarning`.
"""
from __future__ import annotations

import functools

from .._registry import resolve_target
from .._warnings import deprecated_aliases
from .cache import cell_key
from .engine import run_sweep
from .executors import EXECUTORS, LOCAL_CLUSTER_QUIET, connect_client
from .grid import RESERVED_NAMES, Grid
from .results import SweepInterrupted, SweepResult, SweepSummary, load_results

__all__ = ["Grid", "SweepSummary", "SweepResult", "SweepInterrupted", "run_sweep", "load_results", "cell_key",
           "connect_client", "EXECUTORS", "LOCAL_CLUSTER_QUIET", "RESERVED_NAMES"]


# moved out of this package (issue 13): old name -> "module:attr" of the new one
_MOVED = {
    **{name: f"geoalign.studies:{name}" for name in ("Study", "register_study", "get_study",
                                                     "list_studies", "run_study", "concentration_study")},
    **{name: f"geoalign.cli.sweep:{name}" for name in ("configure_parser", "run_cli")},
    "distributed_fiber_product": "geoalign.fiber_distributed:distributed_fiber_product",
    "BlockedFiberProduct": "geoalign.fiber:FiberProduct",
}
__getattr__ = deprecated_aliases(__name__, {
    name: (target.replace(":", "."), functools.partial(resolve_target, target))
    for name, target in _MOVED.items()})
