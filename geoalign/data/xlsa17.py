"""Loader for the xlsa17 zero-shot benchmarks (CUB, AWA2, SUN, APY, AWA1).

The data are read from a user-given folder in the layout of Xian et al.
(CVPR 2017 / TPAMI 2018), "proposed splits"::

    <root>/<NAME>/res101.mat      features  (D, N)  float  -- stored transposed
                                  labels    (N, 1)  int, 1-based class ids
    <root>/<NAME>/att_splits.mat  att              (A, C)  class attributes
                                  trainval_loc     (n, 1)  1-based sample indices
                                  test_seen_loc    (n, 1)
                                  test_unseen_loc  (n, 1)
                                  train_loc, val_loc (optional)

Nothing is downloaded.  Every key, shape and 1-based index range is checked and
errors name the file and key.  Scalers are fitted on the *training* split only.

Two modes give the same :class:`XLSA17Split` layout, so that hyper-parameters
(e.g. the calibrated-stacking ``gamma``) are chosen on one and reported on the
other:

- ``mode="test"``: train = ``trainval_loc``; seen test = ``test_seen_loc``;
  unseen test = ``test_unseen_loc``.
- ``mode="validation"``: needs ``train_loc``/``val_loc``.  Train = ``train_loc``
  minus a stratified held-out fraction that becomes the seen evaluation split;
  unseen evaluation = ``val_loc`` (classes disjoint from ``train_loc``'s).  No
  test sample is used.  Some copies of the files have ``train_loc`` overlapping
  ``test_seen_loc``; the overlap is reported and (by default) dropped.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._validation import check_choice, check_float_dtype

__all__ = ["XLSA17_NAMES", "XLSA17Split", "FeatureScaler", "load_xlsa17"]

XLSA17_NAMES = ("CUB", "AWA2", "SUN", "APY", "AWA1")


@dataclass(frozen=True)
class FeatureScaler:
    """Affine feature scaler ``(x - shift) / scale`` fitted on training features.

    Attributes
    ----------
    kind : {"none", "minmax", "standard"}
    shift, scale : ndarray, shape=[D]
    """

    kind: str
    shift: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray, kind: str) -> "FeatureScaler":
        """Fit on training features ``X`` (n, D); constant features get scale 1."""
        check_choice(kind, "scaler", ("none", "minmax", "standard"))
        d = X.shape[1]
        if kind == "none":
            return cls(kind, np.zeros(d), np.ones(d))
        if kind == "minmax":
            lo, hi = X.min(axis=0), X.max(axis=0)
            span = hi - lo
            return cls(kind, lo.astype(np.float64), np.where(span > 0, span, 1.0))
        mu, sd = X.mean(axis=0), X.std(axis=0)
        return cls(kind, mu.astype(np.float64), np.where(sd > 0, sd, 1.0))

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Apply the fitted scaling to ``X`` (n, D)."""
        return (X - self.shift) / self.scale


@dataclass(frozen=True)
class XLSA17Split:
    """One xlsa17 data set in the proposed split, with 0-based class ids.

    Attributes
    ----------
    name : str
    mode : {"test", "validation"}
    X_train, y_train : ndarray, shape=[n_train, D], [n_train]
    X_test_seen, y_test_seen : ndarray
        Seen-class evaluation samples (``test_seen_loc``, or the held-out part of
        ``train_loc`` in validation mode).
    X_test_unseen, y_test_unseen : ndarray
        Unseen-class evaluation samples (``test_unseen_loc``, or ``val_loc``).
    class_attributes : ndarray, shape=[C, A]
        Row ``c`` describes class ``c`` (``att`` transposed).
    seen_classes, unseen_classes : ndarray of int64
        Disjoint sets of class ids; only these classes are candidates in
        ZSL (unseen) and GZSL (seen + unseen) evaluation.
    scaler : FeatureScaler
        Fitted on ``X_train`` only.
    n_overlap_dropped : int
        ``train_loc`` samples that also appear in ``test_seen_loc`` (validation
        mode; dropped unless ``overlap="keep"``).
    """

    name: str
    mode: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test_seen: np.ndarray
    y_test_seen: np.ndarray
    X_test_unseen: np.ndarray
    y_test_unseen: np.ndarray
    class_attributes: np.ndarray
    seen_classes: np.ndarray
    unseen_classes: np.ndarray
    scaler: FeatureScaler
    n_overlap_dropped: int = 0
    info: dict = field(default_factory=dict)

    @property
    def seen_mask(self) -> np.ndarray:
        """Boolean (C,) mask of seen classes (for calibrated stacking)."""
        mask = np.zeros(self.class_attributes.shape[0], dtype=bool)
        mask[self.seen_classes] = True
        return mask


def _loadmat(path: Path) -> dict:
    from scipy.io import loadmat

    if not path.is_file():
        raise FileNotFoundError(f"xlsa17 file not found: {path}")
    try:
        return loadmat(str(path))
    except NotImplementedError as exc:  # MATLAB v7.3 (HDF5) files
        raise ValueError(f"{path}: MATLAB v7.3 files are not supported; "
                         f"re-save as v7 or earlier ({exc})") from exc
    except Exception as exc:
        raise ValueError(f"{path}: not a readable .mat file ({exc})") from exc


def _get(mat: dict, key: str, path: Path) -> np.ndarray:
    if key not in mat:
        present = sorted(k for k in mat if not k.startswith("__"))
        raise KeyError(f"{path.name} ({path}) has no key {key!r}; keys present: {present}")
    return np.asarray(mat[key])


def _vector(arr: np.ndarray, key: str, path: Path) -> np.ndarray:
    """Flatten an (n, 1) or (1, n) MATLAB vector of integers."""
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise ValueError(f"{path.name}: key {key!r} must be a column vector (n, 1), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{path.name}: key {key!r} is empty")
    if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)) \
            or not np.array_equal(arr, np.rint(arr)):
        raise ValueError(f"{path.name}: key {key!r} must hold integers")
    return np.rint(arr).astype(np.int64)


def _one_based(arr: np.ndarray, key: str, path: Path, upper: int, what: str) -> np.ndarray:
    """Check a 1-based vector lies in [1, upper] and convert it to 0-based."""
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 1:
        raise ValueError(f"{path.name}: key {key!r} has minimum {lo}; {what} must be 1-based "
                         f"(MATLAB), in [1, {upper}] (0 present: were they saved 0-based?)")
    if hi > upper:
        raise ValueError(f"{path.name}: key {key!r} has maximum {hi} > {upper}; "
                         f"{what} must be 1-based and in [1, {upper}]")
    return arr - 1


def load_xlsa17(
    root,
    name: str,
    mode: str = "test",
    scaler: str = "minmax",
    normalize_attributes: bool = False,
    overlap: str = "drop",
    val_seen_fraction: float = 0.2,
    seed: int = 0,
    dtype=np.float32,
) -> XLSA17Split:
    """Load ``<root>/<name>/res101.mat`` and ``att_splits.mat`` in the proposed split.

    Parameters
    ----------
    root : str or path
        Folder holding one sub-folder per data set (``CUB``, ``AWA2``, ...).
    name : str
        Data-set folder name (any of :data:`XLSA17_NAMES` or another folder in
        the same layout).
    mode : {"test", "validation"}
        See the module docstring.
    scaler : {"minmax", "standard", "none"}
        Feature scaling, fitted on the training split only.
    normalize_attributes : bool
        L2-normalise each class-attribute row.
    overlap : {"drop", "keep", "raise"}
        Validation mode: what to do with ``train_loc`` samples that are also in
        ``test_seen_loc`` (reported as a ``UserWarning`` and in
        ``n_overlap_dropped``).
    val_seen_fraction : float in (0, 1)
        Validation mode: fraction of each ``train_loc`` class held out as the
        seen evaluation split.
    seed : int
        Seed of that held-out split.
    dtype : numpy floating dtype
        Dtype of the returned features; integer dtypes raise ``TypeError``
        (they would truncate the scaled features).

    Returns
    -------
    XLSA17Split
    """
    check_choice(mode, "mode", ("test", "validation"))
    check_choice(scaler, "scaler", ("minmax", "standard", "none"))
    check_choice(overlap, "overlap", ("drop", "keep", "raise"))
    out_dtype = check_float_dtype(dtype)
    folder = Path(root) / name
    if not folder.is_dir():
        raise FileNotFoundError(f"xlsa17 folder not found: {folder} (expected <root>/<NAME>/ "
                                f"with res101.mat and att_splits.mat)")
    res_path, att_path = folder / "res101.mat", folder / "att_splits.mat"
    res, att = _loadmat(res_path), _loadmat(att_path)

    labels_raw = _vector(_get(res, "labels", res_path), "labels", res_path)
    n = labels_raw.size
    features = _get(res, "features", res_path)
    if features.ndim != 2 or not np.issubdtype(features.dtype, np.number):
        raise ValueError(f"{res_path.name}: key 'features' must be a 2-D numeric (D, N) array, "
                         f"got shape {features.shape} dtype {features.dtype}")
    if features.shape[1] != n:
        hint = " (it looks stored as (N, D): xlsa17 stores features transposed, (D, N))" \
            if features.shape[0] == n else ""
        raise ValueError(f"{res_path.name}: key 'features' must have shape (D, N) with N = "
                         f"{n} labels, got {features.shape}{hint}")
    if np.iscomplexobj(features):
        raise ValueError(f"{res_path.name}: key 'features' is complex ({features.dtype}); expected real values")
    if not np.all(np.isfinite(features)):
        raise ValueError(f"{res_path.name}: key 'features' contains NaN or Inf")
    X = np.ascontiguousarray(features.T, dtype=np.float64)

    attributes = _get(att, "att", att_path)
    if attributes.ndim != 2 or not np.issubdtype(attributes.dtype, np.number):
        raise ValueError(f"{att_path.name}: key 'att' must be a 2-D numeric (A, C) array, "
                         f"got shape {attributes.shape}")
    if np.iscomplexobj(attributes):
        raise ValueError(f"{att_path.name}: key 'att' is complex ({attributes.dtype}); expected real values")
    if not np.all(np.isfinite(attributes)):
        raise ValueError(f"{att_path.name}: key 'att' contains NaN or Inf")
    n_classes = attributes.shape[1]
    y = _one_based(labels_raw, "labels", res_path, n_classes,
                   f"class labels (att has C={n_classes} columns)")
    class_attributes = np.ascontiguousarray(attributes.T, dtype=np.float64)
    if normalize_attributes:
        norms = np.linalg.norm(class_attributes, axis=1, keepdims=True)
        class_attributes = class_attributes / np.where(norms > 0, norms, 1.0)

    def loc(key: str, required: bool = True):
        if key not in att and not required:
            return None
        arr = _vector(_get(att, key, att_path), key, att_path)
        idx = _one_based(arr, key, att_path, n, f"sample indices (res101.mat has N={n})")
        if len(np.unique(idx)) != idx.size:
            raise ValueError(f"{att_path.name}: key {key!r} contains repeated indices")
        return idx

    trainval, test_seen, test_unseen = loc("trainval_loc"), loc("test_seen_loc"), loc("test_unseen_loc")
    train, val = loc("train_loc", required=False), loc("val_loc", required=False)
    for a_key, a, b_key, b in (("trainval_loc", trainval, "test_seen_loc", test_seen),
                               ("trainval_loc", trainval, "test_unseen_loc", test_unseen),
                               ("test_seen_loc", test_seen, "test_unseen_loc", test_unseen)):
        common = np.intersect1d(a, b)
        if common.size:
            raise ValueError(f"{att_path.name}: {a_key} and {b_key} share {common.size} samples "
                             f"(e.g. 1-based index {int(common[0]) + 1}); evaluation would leak")
    seen = np.unique(y[trainval])
    unseen_test = np.unique(y[test_unseen])
    if np.intersect1d(seen, unseen_test).size:
        raise ValueError(f"{att_path.name}: test_unseen_loc contains classes seen in trainval_loc: "
                         f"{np.intersect1d(seen, unseen_test)[:10].tolist()} (0-based)")
    stray = np.setdiff1d(np.unique(y[test_seen]), seen)
    if stray.size:
        raise ValueError(f"{att_path.name}: test_seen_loc contains classes absent from trainval_loc: "
                         f"{stray[:10].tolist()} (0-based)")

    info = {"n_samples": n, "n_classes": n_classes, "n_attributes": class_attributes.shape[1]}
    n_dropped = 0
    if mode == "test":
        tr, ev_seen, ev_unseen = trainval, test_seen, test_unseen
        seen_classes, unseen_classes = seen, unseen_test
    else:
        if train is None or val is None:
            missing = [k for k, v in (("train_loc", train), ("val_loc", val)) if v is None]
            raise KeyError(f"{att_path.name} has no key(s) {missing}: mode='validation' needs "
                           f"train_loc and val_loc (use mode='test', or a copy of the files "
                           f"that has them)")
        common = np.intersect1d(train, test_seen)
        info["n_train_test_seen_overlap"] = int(common.size)
        if common.size:
            msg = (f"{att_path.name}: train_loc shares {common.size} samples with test_seen_loc")
            if overlap == "raise":
                raise ValueError(msg + " (pass overlap='drop' to remove them)")
            if overlap == "drop":
                train = np.setdiff1d(train, common)
                n_dropped = int(common.size)
                warnings.warn(msg + "; they were dropped from the training split", UserWarning,
                              stacklevel=2)
            else:
                warnings.warn(msg + "; kept (overlap='keep'): test-seen results would be optimistic",
                              UserWarning, stacklevel=2)
        if np.intersect1d(train, val).size:
            raise ValueError(f"{att_path.name}: train_loc and val_loc share samples")
        train_classes, val_classes = np.unique(y[train]), np.unique(y[val])
        both = np.intersect1d(train_classes, val_classes)
        if both.size:
            raise ValueError(f"{att_path.name}: val_loc classes must be disjoint from train_loc "
                             f"classes (proposed split), shared: {both[:10].tolist()} (0-based)")
        if not (0.0 < val_seen_fraction < 1.0):
            raise ValueError(f"val_seen_fraction must be in (0, 1), got {val_seen_fraction}")
        rng = np.random.default_rng(seed)
        keep, held = [], []
        for c in train_classes:
            idx = rng.permutation(train[y[train] == c])
            k = int(round(val_seen_fraction * idx.size)) if idx.size > 1 else 0
            held.append(idx[:k])
            keep.append(idx[k:])
        tr, ev_seen, ev_unseen = np.sort(np.concatenate(keep)), np.sort(np.concatenate(held)), val
        seen_classes, unseen_classes = train_classes, val_classes

    fitted = FeatureScaler.fit(X[tr], scaler)

    def feats(idx):
        return fitted.transform(X[idx]).astype(out_dtype)

    return XLSA17Split(
        name=name, mode=mode,
        X_train=feats(tr), y_train=y[tr],
        X_test_seen=feats(ev_seen), y_test_seen=y[ev_seen],
        X_test_unseen=feats(ev_unseen), y_test_unseen=y[ev_unseen],
        class_attributes=class_attributes, seen_classes=seen_classes.astype(np.int64),
        unseen_classes=unseen_classes.astype(np.int64), scaler=fitted,
        n_overlap_dropped=n_dropped, info=info,
    )
