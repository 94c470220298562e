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

**Augmentation of the pairs.**  :func:`augment_images` (random small
rotations, scalings and sub-pixel shifts) and :func:`splice_images` (the top
rows of one digit joined to the bottom rows of another) act on *whole* images
before they are cut into halves (:func:`augmented_digits_halves`), so the two
views of every augmented row are still a true pair.  Splices are glyphs of no
training class; on the zero-shot split they are what lets a cross-view model
(QSMA, and CCA too) carry over to the unseen digits 7-9 (see
``benchmarks/qsma_evidence.py`` for the measured effect).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .._validation import check_array, check_choice, check_float_dtype

__all__ = [
    "DIGITS_MODULUS",
    "DigitsTwoView",
    "load_digits_two_view",
    "digits_images",
    "images_to_half_polynomials",
    "half_polynomials_to_images",
    "image_halves",
    "augment_images",
    "splice_images",
    "augmented_digits_halves",
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


def image_halves(images, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Left/right halves of 8x8 images (any real pixel values) as float features.

    Like :func:`images_to_half_polynomials` (same row-major order) but for
    real-valued images, e.g. the interpolated ones of :func:`augment_images`.

    Returns
    -------
    left, right : ndarray, shape=[n, 32]
    """
    arr = np.asarray(check_array(images, "images", ndim=3, shape=(_SIDE, _SIDE)), dtype=dtype)
    n = arr.shape[0]
    return (np.ascontiguousarray(arr[:, :, :_HALF]).reshape(n, _SIDE * _HALF),
            np.ascontiguousarray(arr[:, :, _HALF:]).reshape(n, _SIDE * _HALF))


def augment_images(images, n_copies: int = 4, max_shift: float = 1.0, max_rotation: float = 10.0,
                   max_scale: float = 0.0, include_original: bool = True,
                   random_state: int | None = None) -> np.ndarray:
    r"""Label-preserving random affine copies of whole images (before they are cut into views).

    Each copy of an image is rotated by an angle uniform in
    :math:`[-\theta, \theta]` degrees (``max_rotation``), scaled by a factor
    uniform in :math:`[1 - s, 1 + s]` (``max_scale``) about the image centre,
    and translated by a shift uniform in :math:`[-t, t]^2` pixels
    (``max_shift``, sub-pixel), with bilinear interpolation and zero fill,
    clipped to the original value range.  Because the *whole* image is
    transformed, its two halves stay a true pair: augmenting
    before :func:`image_halves` gives more paired training views of the same
    classes (a digit rotated by a few degrees is still that digit).

    Parameters
    ----------
    images : array-like, shape=[n, H, W]
    n_copies : int
        Random copies per image.
    max_shift, max_rotation, max_scale : float
        Ranges of the random translation (pixels), rotation (degrees) and
        relative scale change (all >= 0).
    include_original : bool
        Put the untouched images first.
    random_state : int or None

    Returns
    -------
    ndarray of float64, shape=[n * (n_copies + include_original), H, W]
        Block ``k`` (of ``n`` rows) is copy ``k`` of every image, in order, so
        ``np.tile(labels, n_copies + include_original)`` labels the result.
    """
    from scipy.ndimage import affine_transform

    from .._validation import check_int, check_nonnegative_scalar

    arr = np.asarray(check_array(images, "images", ndim=3), dtype=np.float64)
    n_copies = check_int(n_copies, "n_copies", minimum=0)
    shift = check_nonnegative_scalar(max_shift, "max_shift")
    rot = check_nonnegative_scalar(max_rotation, "max_rotation")
    scale = check_nonnegative_scalar(max_scale, "max_scale")
    if scale >= 1:
        raise ValueError(f"max_scale must be in [0, 1), got {max_scale}")
    if n_copies == 0 and not include_original:
        raise ValueError("n_copies=0 with include_original=False leaves no images")
    rng = np.random.default_rng(random_state)
    n, H, W = arr.shape
    centre = np.array([(H - 1) / 2.0, (W - 1) / 2.0])
    lo, hi = (arr.min(), arr.max()) if arr.size else (0.0, 0.0)
    blocks = [arr] if include_original else []
    for _ in range(n_copies):
        theta = np.radians(rng.uniform(-rot, rot, n))
        factor = rng.uniform(1 - scale, 1 + scale, n)
        offset = rng.uniform(-shift, shift, (n, 2))
        out = np.empty_like(arr)
        for i in range(n):
            c, s_ = np.cos(theta[i]), np.sin(theta[i])
            # output pixel p samples the input at M p + o (inverse map: rotate back, unscale, unshift)
            M = np.array([[c, -s_], [s_, c]]) / factor[i]
            o = centre - M @ (centre + offset[i])
            out[i] = affine_transform(arr[i], M, offset=o, order=1, mode="constant", cval=0.0)
        blocks.append(np.clip(out, lo, hi))
    return np.concatenate(blocks)


def splice_images(images, n_copies: int = 2, cut_rows=(3, 5), include_original: bool = True,
                  random_state: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """New glyphs from the top of one image and the bottom of another (row splices).

    Copy ``k`` of image ``i`` takes rows ``[0, r)`` from image ``i`` and rows
    ``[r, H)`` from a random partner ``j`` (a fresh permutation per copy), with
    the cut row ``r`` uniform in ``cut_rows`` (inclusive).  The cut is
    horizontal, so each *half* (left or right columns) of the splice is the
    splice of the halves: the two views of a spliced image are still a true
    pair.  Splices are shapes of no training class, which teaches an alignment
    model features that carry over to unseen classes rather than ones that only
    separate the training classes.

    Returns
    -------
    images : ndarray, shape=[n * (n_copies + include_original), H, W]
        Originals first (if included), then block ``k`` = copy ``k`` of every image.
    partners : ndarray of int64, same length
        Index of the image the bottom rows came from (``i`` itself for originals),
        so spliced rows are recognisable: ``partners != tile(arange(n))``.
    """
    from .._validation import check_int

    arr = np.asarray(check_array(images, "images", ndim=3))
    n_copies = check_int(n_copies, "n_copies", minimum=0)
    n, H = arr.shape[:2]
    lo, hi = (check_int(r, "cut_rows", minimum=1, maximum=H - 1) for r in cut_rows)
    if lo > hi:
        raise ValueError(f"cut_rows must be (low, high) with low <= high, got {cut_rows!r}")
    rng = np.random.default_rng(random_state)
    blocks = [arr] if include_original else []
    partners = [np.arange(n)] if include_original else []
    rows = np.arange(H)[None, :, None]
    for _ in range(n_copies):
        j = rng.permutation(n)
        r = rng.integers(lo, hi + 1, n)[:, None, None]
        blocks.append(np.where(rows < r, arr, arr[j]))
        partners.append(j)
    return np.concatenate(blocks), np.concatenate(partners).astype(np.int64)


def augmented_digits_halves(images, labels, n_copies: int = 4, max_shift: float = 1.0,
                            max_rotation: float = 10.0, max_scale: float = 0.0, n_splices: int = 0,
                            random_state: int | None = None, dtype=np.float64):
    """Paired left/right halves of augmented whole images, and their labels.

    The images are first extended by ``n_splices`` row splices per image
    (:func:`splice_images`), then every image (original or spliced) gets
    ``n_copies`` random affine copies (:func:`augment_images`, originals kept);
    only then are they cut into halves, so every row is a true pair.

    Returns
    -------
    left, right : ndarray, shape=[n * (n_splices + 1) * (n_copies + 1), 32]
    labels : ndarray of int64, same length
        The digit of each row, or ``-1`` for rows derived from a splice of two
        different images (no class).
    """
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (np.shape(images)[0],):
        raise ValueError(f"labels must have shape ({np.shape(images)[0]},), got {labels.shape}")
    rng = np.random.default_rng(random_state)
    spliced, partners = splice_images(images, n_splices, random_state=rng)
    top = np.tile(labels, n_splices + 1)
    lab = np.where(top == labels[partners], top, -1)
    aug = augment_images(spliced, n_copies, max_shift, max_rotation, max_scale, random_state=rng)
    left, right = image_halves(aug, dtype)
    return left, right, np.tile(lab, n_copies + 1)


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
    dtype : numpy floating dtype
        Dtype of the feature arrays (integer dtypes raise ``TypeError``).

    Returns
    -------
    DigitsTwoView
    """
    check_choice(scale, "scale", ("none", "unit"))
    dtype = check_float_dtype(dtype)
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
