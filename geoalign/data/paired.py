"""Paired embeddings of two modalities from .npy / .npz / .h5 files.

Row ``i`` of view a and row ``i`` of view b form a pair.  Supported layouts:

- two ``.npy`` files (``path`` for view a, ``path_b`` for view b);
- one ``.npz`` file with arrays under ``key_a`` / ``key_b`` (and ``labels_key``);
- one ``.h5`` / ``.hdf5`` file with datasets ``key_a`` / ``key_b`` (h5py, the
  ``io`` extra).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._io import atomic_path, load_npy, load_npz
from .._validation import check_array

__all__ = ["PairedEmbeddings", "load_paired", "save_paired"]

_H5 = (".h5", ".hdf5")


@dataclass(frozen=True)
class PairedEmbeddings:
    """Two aligned views (and optional labels).

    Attributes
    ----------
    a : ndarray, shape=[n, d_a]
    b : ndarray, shape=[n, d_b]
    labels : ndarray, shape=[n] or None
    source : str
        Where the data came from (for reports).
    """

    a: np.ndarray
    b: np.ndarray
    labels: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return self.a.shape[0]


def _from_mapping(keys, getter, path: Path, key: str, role: str):
    if key not in keys:
        raise KeyError(f"{path}: no {role} key {key!r}; available: {sorted(keys)}")
    return np.asarray(getter(key))


def _check_pair(a, b, labels, source: str) -> PairedEmbeddings:
    a = check_array(a, f"view a of {source}", ndim=2, allow_empty=False)
    b = check_array(b, f"view b of {source}", ndim=2, allow_empty=False)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{source}: views have different numbers of rows "
                         f"(a: {a.shape[0]}, b: {b.shape[0]}); rows must be paired")
    if labels is not None:
        labels = check_array(labels, f"labels of {source}", ndim=1)
        if labels.shape[0] != a.shape[0]:
            raise ValueError(f"{source}: labels have length {labels.shape[0]}, "
                             f"expected {a.shape[0]} (one per pair)")
    return PairedEmbeddings(a=a, b=b, labels=labels, source=source)


def load_paired(path, path_b=None, *, key_a: str = "a", key_b: str = "b",
                labels_key: str | None = None, labels_path=None,
                mmap: bool = False) -> PairedEmbeddings:
    """Load paired embeddings.

    Parameters
    ----------
    path : str or path
        ``.npy`` (view a; then ``path_b`` is required), ``.npz`` or ``.h5``/``.hdf5``.
    path_b : str or path, optional
        ``.npy`` file of view b (only with a ``.npy`` ``path``).
    key_a, key_b : str
        Array/dataset names of the two views in ``.npz`` / ``.h5`` files.
    labels_key : str, optional
        Name of a labels array in ``.npz`` / ``.h5`` files.
    labels_path : str or path, optional
        ``.npy`` file of labels (with ``.npy`` views).
    mmap : bool
        Memory-map ``.npy`` files instead of reading them.

    Returns
    -------
    PairedEmbeddings
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"paired embeddings file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if path_b is None:
            raise ValueError(f"{path} is a .npy file (view a): pass path_b, the .npy file of view b")
        files = {"path_b": Path(path_b)}
        if labels_path is not None:
            files["labels_path"] = Path(labels_path)
        for arg, p in files.items():
            if not p.is_file():
                raise FileNotFoundError(f"{arg} file not found: {p}")
            if p.suffix.lower() != ".npy":
                raise ValueError(f"{arg} must be a .npy file, got {p}")
        mode = "r" if mmap else None
        a = load_npy(path, mmap=mmap, what="view a file")
        b = load_npy(files["path_b"], mmap=mmap, what="path_b file")
        labels = (load_npy(files["labels_path"], what="labels_path file")
                  if "labels_path" in files else None)
        return _check_pair(a, b, labels, f"{path} + {path_b}")
    if path_b is not None or labels_path is not None:
        raise ValueError(f"path_b / labels_path only apply to .npy files; {path} holds both views "
                         f"(use key_a / key_b / labels_key)")
    if suffix == ".npz":
        roles = {"view a": key_a, "view b": key_b}
        if labels_key is not None:
            roles["labels"] = labels_key
        arrays = load_npz(path, roles, what="paired embeddings file")
        return _check_pair(arrays["view a"], arrays["view b"], arrays.get("labels"), str(path))
    if suffix in _H5:
        try:
            import h5py
        except ImportError as exc:  # pragma: no cover - h5py is in the io extra
            raise ImportError("reading .h5 files needs h5py (pip install 'geoalign[io]')") from exc
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise ValueError(f"{path} is not a readable HDF5 file (truncated or another format: "
                             f"{exc}); write it again, e.g. with save_paired") from None
        with f:
            keys = f  # membership accepts nested dataset paths such as "group/name"

            def get(k):
                node = f[k]
                if not isinstance(node, h5py.Dataset):
                    inside = sorted(node.keys()) if isinstance(node, h5py.Group) else []
                    raise ValueError(f"{path}: {k!r} is an HDF5 group, not a dataset (it holds "
                                     f"{inside}); give the path of a dataset, e.g. "
                                     f"'{k}/{inside[0] if inside else 'name'}'")
                try:
                    return node[()]
                except (OSError, RuntimeError, KeyError) as exc:
                    raise ValueError(f"{path}: dataset {k!r} cannot be read (truncated or "
                                     f"corrupt file: {exc})") from None

            a = _from_mapping(keys, get, path, key_a, "view a")
            b = _from_mapping(keys, get, path, key_b, "view b")
            labels = None if labels_key is None else _from_mapping(keys, get, path, labels_key, "labels")
        return _check_pair(a, b, labels, str(path))
    raise ValueError(f"unsupported paired-embeddings file type {suffix!r} ({path}); "
                     f"expected .npy, .npz, .h5 or .hdf5")


def save_paired(path, a, b, labels=None, *, key_a: str = "a", key_b: str = "b",
                labels_key: str = "labels") -> Path:
    """Save paired views (and labels) atomically to ``.npz`` or ``.h5``; returns the path."""
    from .._backend import to_numpy

    pair = _check_pair(to_numpy(a), to_numpy(b), None if labels is None else to_numpy(labels),
                       "save_paired input")
    names = [key_a, key_b] + ([labels_key] if pair.labels is not None else [])
    if len(set(names)) != len(names):
        raise ValueError(f"key names must differ, got {names}")
    path = Path(path)
    arrays = dict(zip(names, (pair.a, pair.b, pair.labels)))
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix == ".npz":
            np.savez(tmp, **arrays)
        elif suffix in _H5:
            import h5py

            with h5py.File(tmp, "w") as f:
                for k, v in arrays.items():
                    f.create_dataset(k, data=v)
        else:
            raise ValueError(f"save_paired writes .npz or .h5 files, got {path}")
    return path
