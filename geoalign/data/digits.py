"""scikit-learn's bundled 8x8 digits as a two-view zero-shot task and as polynomials over Z_17.

View a is the left half of each image (columns 0-3), view b the right half
(columns 4-7); each half is flattened row-major into 32 features.  Classes 0-6
are *seen* (training, optional validation) and 7-9 *unseen* (zero-shot test) by
default.  Nothing is downloaded: ``sklearn.datasets.load_digits`` ships with
scikit-learn.

Pixel values are integers 0..16, so each half is also a polynomial over
:math:`\\mathbb{Z}_{17}`,

.. math::  P(x) = \\sum_{i=0}^{31} a_i x^i, \\qquad a_{4r + c} = \\text{image}[r, c]

(left half; the right half uses ``image[r, 4 + c]``), lowest degree first, which
is exactly the row-major feature order of the two views.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .._validation import check_array, check_choice

__all__ = [
    "DIGITS_MODULUS",
    "DigitsTwoView",
    "load_digits_two_view",
    "digits_images",
    "images_to_half_polynomials",
    "half_polynomials_to_images",
    "digits_training_source",
]

#: Pixel values of the sklearn digits lie in 0..16, hence coefficients in Z_17.
DIGITS_MODULUS = 17
_SIDE = 8
_HALF = 4


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits images as ``int64`` (n, 8, 8) with values 0..16, and labels (n,)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images).astype(np.int64)
    return images, np.asarray(bunch.target, dtype=np.int64)


def images_to_half_polynomials(images) -> tuple[np.ndarray, np.ndarray]:
    """Left/right halves of 8x8 images as coefficient arrays over Z_17.

    Parameters
    ----------
    images : array-like, shape=[n, 8, 8]
        Integer pixel values in ``[0, 17)``.

    Returns
    -------
    left, right : ndarray of int64, shape=[n, 32]
        Coefficients, lowest degree first; ``left[:, 4 * r + c] = images[:, r, c]``
        and ``right[:, 4 * r + c] = images[:, r, 4 + c]`` (row-major order).
    """
    images = check_array(images, "images", ndim=3, shape=(_SIDE, _SIDE))
    arr = np.asarray(images)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.array_equal(arr, np.rint(arr)):
            raise ValueError("images must hold integer pixel values, got non-integer entries")
        arr = np.rint(arr)
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= DIGITS_MODULUS):
        raise ValueError(f"images must have values in [0, {DIGITS_MODULUS}), "
                         f"got range [{arr.min()}, {arr.max()}]")
    n = arr.shape[0]
    left = np.ascontiguousarray(arr[:, :, :_HALF]).reshape(n, _SIDE * _HALF)
    right = np.ascontiguousarray(arr[:, :, _HALF:]).reshape(n, _SIDE * _HALF)
    return left, right


def half_polynomials_to_images(left, right) -> np.ndarray:
    """Inverse of :func:`images_to_half_polynomials`: (n, 32) x 2 -> (n, 8, 8) int64."""
    left = np.asarray(check_array(left, "left", ndim=2, shape=(_SIDE * _HALF,)))
    right = np.asarray(check_array(right, "right", ndim=2, shape=(_SIDE * _HALF,)))
    if left.shape[0] != right.shape[0]:
        raise ValueError(f"left and right must have the same number of rows, "
                         f"got {left.shape[0]} and {right.shape[0]}")
    n = left.shape[0]
    out = np.empty((n, _SIDE, _SIDE), dtype=np.int64)
    out[:, :, :_HALF] = left.reshape(n, _SIDE, _HALF)
    out[:, :, _HALF:] = right.reshape(n, _SIDE, _HALF)
    return out


@dataclass(frozen=True)
class DigitsTwoView:
    """Left-half / right-half digits split into seen and unseen classes.

    Attributes
    ----------
    X_a_train, X_b_train : ndarray, shape=[n_train, 32]
        Left / right halves of seen-class training images (pixel values 0..16, or
        divided by 16 when ``scale="unit"``).
    y_train : ndarray of int64, shape=[n_train]
        Digit labels (seen classes only).
    X_a_val, X_b_val, y_val : ndarray
        Validation split of seen classes (zero rows if ``val_fraction=0``).
    X_a_test, X_b_test, y_test : ndarray
        Unseen-class images (the zero-shot test split).
    seen_classes, unseen_classes : ndarray of int64
    train_index, val_index, test_index : ndarray of int64
        Rows of :func:`digits_images` each split came from.
    """

    X_a_train: np.ndarray
    X_b_train: np.ndarray
    y_train: np.ndarray
    X_a_val: np.ndarray
    X_b_val: np.ndarray
    y_val: np.ndarray
    X_a_test: np.ndarray
    X_b_test: np.ndarray
    y_test: np.ndarray
    seen_classes: np.ndarray
    unseen_classes: np.ndarray
    train_index: np.ndarray
    val_index: np.ndarray
    test_index: np.ndarray
    scale: str = field(default="none")

    def polynomials(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients over Z_17 of the left/right halves of ``split``.

        Parameters
        ----------
        split : {"train", "val", "test"}

        Returns
        -------
        left, right : ndarray of int64, shape=[n_split, 32], values in [0, 17)
        """
        check_choice(split, "split", ("train", "val", "test"))
        index = {"train": self.train_index, "val": self.val_index, "test": self.test_index}[split]
        images, _ = digits_images()
        return images_to_half_polynomials(images[index])


def _class_list(classes, name: str) -> np.ndarray:
    arr = np.asarray(list(classes), dtype=np.int64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty sequence of digit classes, got {classes!r}")
    if arr.min() < 0 or arr.max() > 9:
        raise ValueError(f"{name} must contain digits 0..9, got {arr.tolist()}")
    if len(np.unique(arr)) != arr.size:
        raise ValueError(f"{name} contains duplicates: {arr.tolist()}")
    return np.sort(arr)


def load_digits_two_view(
    seen_classes: Sequence[int] = (0, 1, 2, 3, 4, 5, 6),
    unseen_classes: Sequence[int] | None = None,
    val_fraction: float = 0.0,
    scale: str = "none",
    seed: int = 0,
    dtype=np.float64,
) -> DigitsTwoView:
    """Two-view digits (left half <-> right half) with class-disjoint seen/unseen splits.

    Parameters
    ----------
    seen_classes : sequence of int
        Classes used for training (and validation).
    unseen_classes : sequence of int, optional
        Zero-shot test classes; default: every digit not in ``seen_classes``.
        Must be disjoint from ``seen_classes``.
    val_fraction : float in [0, 1)
        Fraction of each seen class held out (stratified) as validation.
    scale : {"none", "unit"}
        ``"unit"`` divides pixel values by 16 (a fixed constant, so no statistic
        of any split leaks into another).
    seed : int
        Seed of the validation split.
    dtype : numpy dtype
        Floating dtype of the feature arrays.

    Returns
    -------
    DigitsTwoView
    """
    check_choice(scale, "scale", ("none", "unit"))
    if not (0.0 <= float(val_fraction) < 1.0):
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    seen = _class_list(seen_classes, "seen_classes")
    unseen = (np.setdiff1d(np.arange(10), seen) if unseen_classes is None
              else _class_list(unseen_classes, "unseen_classes"))
    if unseen.size == 0:
        raise ValueError("unseen_classes is empty: every digit class is seen")
    overlap = np.intersect1d(seen, unseen)
    if overlap.size:
        raise ValueError(f"seen_classes and unseen_classes overlap in {overlap.tolist()}")

    images, labels = digits_images()
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for c in seen:
        idx = np.flatnonzero(labels == c)
        n_val = int(round(val_fraction * idx.size))
        perm = rng.permutation(idx)
        val_idx.append(np.sort(perm[:n_val]))
        train_idx.append(np.sort(perm[n_val:]))
    train_index = np.sort(np.concatenate(train_idx))
    val_index = np.sort(np.concatenate(val_idx)).astype(np.int64)
    test_index = np.flatnonzero(np.isin(labels, unseen)).astype(np.int64)

    left, right = images_to_half_polynomials(images)
    factor = 16.0 if scale == "unit" else 1.0

    def view(arr, idx):
        return (arr[idx] / factor).astype(dtype)

    return DigitsTwoView(
        X_a_train=view(left, train_index), X_b_train=view(right, train_index),
        y_train=labels[train_index],
        X_a_val=view(left, val_index), X_b_val=view(right, val_index), y_val=labels[val_index],
        X_a_test=view(left, test_index), X_b_test=view(right, test_index),
        y_test=labels[test_index],
        seen_classes=seen, unseen_classes=unseen,
        train_index=train_index.astype(np.int64), val_index=val_index, test_index=test_index,
        scale=scale,
    )


def digits_training_source(spec: dict, base_dir=None) -> dict:
    """``geoalign train`` data source ``"digits"``: left/right halves of sklearn digits.

    ``spec`` keys (all optional): ``split`` ("train", "val" or "test"; default
    "train"), ``seen_classes`` (default 0-6), ``unseen_classes``,
    ``val_fraction`` (default 0.2), ``seed`` (0), ``scale`` ("none"/"unit"),
    ``representation`` ("features": float pixel halves, or "polynomials":
    int64 coefficients over Z_17 for attention encoders with ``vocab_size=17``).
    """
    allowed = {"source", "split", "seen_classes", "unseen_classes", "val_fraction", "seed", "scale",
               "representation"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"data source 'digits' got unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    split = check_choice(spec.get("split", "train"), "digits split", ("train", "val", "test"))
    rep = check_choice(spec.get("representation", "features"), "digits representation",
                       ("features", "polynomials"))
    data = load_digits_two_view(seen_classes=spec.get("seen_classes", (0, 1, 2, 3, 4, 5, 6)),
                                unseen_classes=spec.get("unseen_classes"),
                                val_fraction=spec.get("val_fraction", 0.2),
                                scale=spec.get("scale", "none"), seed=spec.get("seed", 0))
    y = getattr(data, f"y_{split}")
    if y.size == 0:
        raise ValueError(f"digits split {split!r} is empty (val_fraction=0?)")
    if rep == "polynomials":
        X_a, X_b = data.polynomials(split)
    else:
        X_a, X_b = getattr(data, f"X_a_{split}"), getattr(data, f"X_b_{split}")
    return {"X_a": X_a, "X_b": X_b, "y": y}
