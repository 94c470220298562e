"""Deprecated name of :mod:`geoalign.evaluation` (evaluation scores).

In geoalign a *metric* is a distance between points (``metric="cosine"``); what
evaluates a model is a *score*, so the scores moved to :mod:`geoalign.evaluation`
and ``retrieval_metrics`` became :func:`~geoalign.evaluation.retrieval_scores`.
Every old name still resolves here, with a
:class:`~geoalign._warnings.GeoalignDeprecationWarning` on every access.
"""
from __future__ import annotations

import functools

from ._registry import resolve_target
from ._warnings import deprecated_aliases

__all__: list[str] = []  # nothing new is defined here

_OLD_NAMES = ("per_class_accuracy", "zsl_accuracy", "calibrated_stacking", "GZSLResult",
              "GammaSelection", "select_gamma", "evaluate_gzsl", "DirectionalRetrieval",
              "RetrievalResult")
_RENAMED = {**{name: name for name in _OLD_NAMES}, "retrieval_metrics": "retrieval_scores"}

__getattr__ = deprecated_aliases(__name__, {
    old: (f"geoalign.evaluation.{new}", functools.partial(resolve_target, f"geoalign.evaluation:{new}"))
    for old, new in _RENAMED.items()})
