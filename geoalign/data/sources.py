"""Data sources of training configs: the ``[data]`` table's ``source`` -> a loader.

A loader has the signature ``loader(spec: dict, base_dir: Path) -> {"X_a", "X_b"[, "y"]}``:
``spec`` is the ``[data]`` table of a config (its ``source`` key names the loader)
and relative paths in it are relative to ``base_dir`` (the config's folder).
Sources are kept in :data:`DATASETS`, a :class:`~geoalign._registry.Registry`
(built-in loaders are imported only when used); add one with
:func:`register_dataset` (a call or a decorator).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from .._io import load_npz
from .._registry import Registry

__all__ = ["DATASETS", "register_dataset", "load_dataset", "resolve_path", "paired_file_source"]

#: data-set source name -> loader(spec: dict, base_dir: Path) -> dict with X_a, X_b[, y]
DATASETS = Registry("data source", {
    "paired_file": "geoalign.data.sources:paired_file_source",
    "digits": "geoalign.data.digits:digits_training_source",
    "planted": "geoalign.data.planted:planted_training_source",
})


def register_dataset(name: str, loader: Callable | str | None = None):
    """Register ``loader(spec, base_dir) -> {"X_a", "X_b"[, "y"]}`` under ``name``.

    ``loader`` is a function or a lazy ``"module:function"``; without it, a
    decorator.  Registering a name again replaces it.
    """
    return DATASETS.register(name, loader, replace=True)


def resolve_path(path: Any, base_dir: Path) -> Path:
    """``path`` with ``~`` expanded, relative to ``base_dir`` unless absolute."""
    p = Path(os.path.expanduser(str(path)))
    return p if p.is_absolute() else base_dir / p


def paired_file_source(spec: dict, base_dir: Path) -> dict:
    """``.npz`` with arrays ``X_a``, ``X_b`` and optionally ``y`` (key names configurable)."""
    if "path" not in spec:
        raise ValueError("data source 'paired_file' needs a 'path' to an .npz file")
    path = resolve_path(spec["path"], base_dir)
    if not path.exists():
        raise FileNotFoundError(f"paired file {path} does not exist")
    if path.suffix != ".npz":
        raise ValueError(f"paired file {path} must be an .npz archive with arrays X_a, X_b[, y]")
    keys = {"X_a": spec.get("key_a", "X_a"), "X_b": spec.get("key_b", "X_b"),
            "y": spec.get("key_y", "y")}
    return load_npz(path, keys, optional=("y",), what="paired file", missing_error=ValueError)


def load_dataset(spec: dict, base_dir: Any = ".") -> dict:
    """Load the data set a config's ``[data]`` table describes (dispatch on ``source``)."""
    if not isinstance(spec, dict) or "source" not in spec:
        raise ValueError("data spec must be a table with a 'source' key; sources: "
                         + ", ".join(sorted(DATASETS)))
    from ..train import as_paired_tensors

    source = spec["source"]
    data = DATASETS[source](spec, Path(base_dir))
    as_paired_tensors(data, f"data set {source!r}")  # validate early, with a clear message
    return data
