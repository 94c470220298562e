"""Evaluation scores: zero-shot (ZSL / GZSL) accuracy and cross-modal retrieval.

(This module was ``geoalign.metrics``; in geoalign a *metric* is a distance between
points, e.g. ``metric="cosine"``, and what evaluates a model is a *score*.)

All functions accept NumPy arrays and torch tensors (any device); scores are
reduced on the input's device and results are Python floats in result objects.

ZSL / GZSL (Xian et al. 2018 protocol)
--------------------------------------
Per-class mean top-1 accuracy over the classes :math:`\\mathcal{Y}` present in
the labels,

.. math::  \\mathrm{acc} = \\frac{1}{|\\mathcal{Y}|}\\sum_{c\\in\\mathcal{Y}}
           \\frac{\\#\\{i : y_i = c,\\ \\hat y_i = c\\}}{\\#\\{i : y_i = c\\}} .

GZSL scores every sample against all classes; :math:`U` is that accuracy on
unseen-class samples, :math:`S` on seen-class samples and
:math:`H = 2US/(U+S)`.  Calibrated stacking (Chao et al. 2016) predicts
:math:`\\arg\\max_c\\, s_c - \\gamma\\,\\mathbb 1[c\\ \\text{seen}]`.  ``gamma`` is chosen
by :func:`select_gamma` on *validation* data only; :func:`evaluate_gzsl` takes
the validation and test data as separate arguments and never accepts a gamma,
so calibration cannot be tuned on the test split through this API.

Retrieval
---------
For every query the whole database is ranked by similarity (ties broken by
database order); an item is relevant when its label equals the query's.
R@K is the fraction of queries with a relevant item in the top K, MedR the
median rank (1-based) of the first relevant item and mAP@all the mean over
queries of average precision over the entire ranked list,

.. math::  \\mathrm{AP} = \\frac{1}{R}\\sum_{k=1}^{n} \\mathrm{rel}_k\\,
           \\frac{\\sum_{j\\le k}\\mathrm{rel}_j}{k}.

Queries without any relevant database item are skipped (counted in
``n_skipped``).  Without labels, row ``i`` of view a and row ``i`` of view b are
the only relevant pair (instance retrieval).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ._backend import check_same_device, is_torch, namespace, to_numpy, to_torch
from ._validation import check_array, check_choice, check_int

__all__ = [
    "per_class_accuracy",
    "zsl_accuracy",
    "calibrated_stacking",
    "GZSLResult",
    "GammaSelection",
    "select_gamma",
    "evaluate_gzsl",
    "DirectionalRetrieval",
    "RetrievalResult",
    "retrieval_scores",
]


# ----------------------------------------------------------------------------- ZSL / GZSL

def _labels(labels: Any, name: str, n: int | None = None, n_classes: int | None = None) -> np.ndarray:
    labels = check_array(labels, name, ndim=1)
    arr = to_numpy(labels)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.array_equal(arr, np.rint(arr)):
            raise ValueError(f"{name} must hold integer class ids, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} must have length {n} (one label per row of scores), got {arr.shape[0]}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must be non-negative class ids, got minimum {arr.min()}")
    if n_classes is not None and arr.size and arr.max() >= n_classes:
        raise ValueError(f"{name} has class id {arr.max()} but scores have only {n_classes} columns")
    return arr


def _scores(scores: Any, name: str):
    return check_array(scores, name, ndim=2, allow_empty=False)


def _argmax_rows(scores) -> np.ndarray:
    if is_torch(scores):
        return to_numpy(scores.argmax(dim=1)).astype(np.int64)
    return np.asarray(scores).argmax(axis=1).astype(np.int64)


def per_class_accuracy(y_true: Any, y_pred: Any) -> float:
    """Mean over the classes present in ``y_true`` of each class's top-1 accuracy.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape=[n]
    """
    t = _labels(y_true, "y_true")
    p = _labels(y_pred, "y_pred", n=t.shape[0])
    if t.size == 0:
        raise ValueError("y_true must not be empty")
    classes, inverse = np.unique(t, return_inverse=True)
    correct = np.bincount(inverse, weights=(t == p).astype(np.float64), minlength=classes.size)
    counts = np.bincount(inverse, minlength=classes.size)
    return float(np.mean(correct / counts))


def zsl_accuracy(scores: Any, labels: Any, classes: Sequence[int] | Any | None = None) -> float:
    """ZSL per-class mean top-1 accuracy with ``classes`` as the only candidates.

    Parameters
    ----------
    scores : array-like, shape=[n, C]
        Compatibility of each sample with every class id ``0..C-1``.
    labels : array-like of int, shape=[n]
        True class ids (must be among ``classes``).
    classes : array-like of int, optional
        Candidate class ids (e.g. the unseen classes); default: all ``C``.
    """
    scores = _scores(scores, "scores")
    n, c = scores.shape
    y = _labels(labels, "labels", n=n, n_classes=c)
    if classes is None:
        cand = np.arange(c)
    else:
        cand = _labels(classes, "classes", n_classes=c)
        if cand.size == 0:
            raise ValueError("classes must not be empty")
        outside = np.setdiff1d(y, cand)
        if outside.size:
            raise ValueError(f"labels contain class ids not among classes: {outside[:10].tolist()}")
    if is_torch(scores):
        sub = scores[:, to_torch(cand, device=scores.device)]
    else:
        sub = np.asarray(scores)[:, cand]
    return per_class_accuracy(y, cand[_argmax_rows(sub)])


def _seen_mask(seen_mask: Any, n_classes: int) -> np.ndarray:
    m = check_array(seen_mask, "seen_mask", ndim=1)
    m = to_numpy(m)
    if m.dtype != np.bool_:
        raise TypeError(f"seen_mask must be a boolean array of length {n_classes}, got dtype {m.dtype}")
    if m.shape[0] != n_classes:
        raise ValueError(f"seen_mask must have length {n_classes} (one entry per score column), "
                         f"got {m.shape[0]}")
    if m.all() or not m.any():
        raise ValueError("seen_mask must mark some classes seen and some unseen")
    return m


def calibrated_stacking(scores: Any, seen_mask: Any, gamma: float):
    """Subtract ``gamma`` from the scores of seen classes.

    Parameters
    ----------
    scores : array-like, shape=[n, C]
    seen_mask : bool array-like, shape=[C]
    gamma : float

    Returns
    -------
    calibrated : same kind as ``scores``, shape=[n, C]
        :math:`s_{ic} - \\gamma\\,\\mathbb 1[c\\ \\text{seen}]`.
    """
    scores = _scores(scores, "scores")
    m = _seen_mask(seen_mask, scores.shape[1])
    gamma = float(gamma)
    if not np.isfinite(gamma):
        raise ValueError(f"gamma must be finite, got {gamma}")
    if is_torch(scores):
        shift = to_torch(m, device=scores.device, dtype=scores.dtype if scores.is_floating_point() else None)
        return scores - gamma * shift
    return np.asarray(scores) - gamma * m.astype(np.result_type(np.asarray(scores).dtype, np.float32))


@dataclass(frozen=True)
class GZSLResult:
    """GZSL accuracies on the test split with the gamma chosen on validation.

    Attributes
    ----------
    unseen, seen, harmonic : float
        U, S and H = 2US/(U+S) on the test split.
    gamma : float
        Calibration chosen on the validation split.
    val_harmonic : float
        H reached on the validation split at that gamma.
    """

    unseen: float
    seen: float
    harmonic: float
    gamma: float
    val_harmonic: float


@dataclass(frozen=True)
class GammaSelection:
    """Result of :func:`select_gamma`: the chosen gamma and the whole validation curve."""

    gamma: float
    unseen: float
    seen: float
    harmonic: float
    gammas: np.ndarray
    harmonics: np.ndarray


def _harmonic(u: float, s: float) -> float:
    return 0.0 if u + s == 0 else 2.0 * u * s / (u + s)


def _us(scores_np: np.ndarray, y: np.ndarray, m: np.ndarray, gamma: float) -> tuple[float, float]:
    pred = (scores_np - gamma * m).argmax(axis=1)
    is_seen = m[y]
    u = per_class_accuracy(y[~is_seen], pred[~is_seen])
    s = per_class_accuracy(y[is_seen], pred[is_seen])
    return u, s


def _gzsl_inputs(scores, labels, seen_mask, what: str):
    scores = _scores(scores, f"{what}_scores")
    n, c = scores.shape
    y = _labels(labels, f"{what}_labels", n=n, n_classes=c)
    m = _seen_mask(seen_mask, c)
    if m[y].all() or not m[y].any():
        raise ValueError(f"{what}_labels must contain samples of both seen and unseen classes "
                         f"(GZSL needs U and S)")
    return to_numpy(scores).astype(np.float64), y, m


def select_gamma(val_scores: Any, val_labels: Any, seen_mask: Any,
                 gammas: Sequence[float] | None = None) -> GammaSelection:
    """Choose the calibrated-stacking gamma maximising H on VALIDATION data.

    Parameters
    ----------
    val_scores : array-like, shape=[n_val, C]
        Validation scores against all classes (samples of seen and unseen
        validation classes; e.g. ``load_xlsa17(..., mode="validation")``).
    val_labels : array-like of int, shape=[n_val]
    seen_mask : bool array-like, shape=[C]
    gammas : sequence of float, optional
        Candidate values; default: 201 values evenly spaced in
        ``[-r, r]`` with ``r`` the spread of ``val_scores``.  Ties go to the
        smallest ``|gamma|``.
    """
    s, y, m = _gzsl_inputs(val_scores, val_labels, seen_mask, "val")
    if gammas is None:
        spread = float(s.max() - s.min()) or 1.0
        grid = np.linspace(-spread, spread, 201)
    else:
        grid = np.asarray(list(gammas), dtype=np.float64).reshape(-1)
        if grid.size == 0 or not np.all(np.isfinite(grid)):
            raise ValueError("gammas must be a non-empty sequence of finite numbers")
    grid = grid[np.argsort(np.abs(grid), kind="stable")]
    curves = np.array([_us(s, y, m, g) for g in grid])
    harmonics = np.array([_harmonic(u, v) for u, v in curves])
    best = int(np.argmax(harmonics))
    return GammaSelection(gamma=float(grid[best]), unseen=float(curves[best, 0]),
                          seen=float(curves[best, 1]), harmonic=float(harmonics[best]),
                          gammas=grid, harmonics=harmonics)


def evaluate_gzsl(val_scores: Any, val_labels: Any, test_scores: Any, test_labels: Any,
                  seen_mask: Any, gammas: Sequence[float] | None = None) -> GZSLResult:
    """GZSL U/S/H on the test split, with gamma selected on the validation split.

    The test data never influence gamma: :func:`select_gamma` sees only
    ``val_scores``/``val_labels``.  Passing the test split as validation (the
    same array twice) raises ``ValueError``.

    Parameters
    ----------
    val_scores, test_scores : array-like, shape=[n_val, C], [n_test, C]
    val_labels, test_labels : array-like of int
    seen_mask : bool array-like, shape=[C]
    gammas : sequence of float, optional
        Candidate gammas (see :func:`select_gamma`).
    """
    val_scores = _scores(val_scores, "val_scores")
    test_scores = _scores(test_scores, "test_scores")
    check_same_device(val_scores=val_scores, test_scores=test_scores)
    if val_scores is test_scores or (
            tuple(val_scores.shape) == tuple(test_scores.shape)
            and np.array_equal(to_numpy(val_scores), to_numpy(test_scores))):
        raise ValueError("val_scores and test_scores are identical: gamma must be chosen on a "
                         "held-out validation split, not on the test split")
    sel = select_gamma(val_scores, val_labels, seen_mask, gammas)
    s, y, m = _gzsl_inputs(test_scores, test_labels, seen_mask, "test")
    u, v = _us(s, y, m, sel.gamma)
    return GZSLResult(unseen=u, seen=v, harmonic=_harmonic(u, v), gamma=sel.gamma,
                      val_harmonic=sel.harmonic)


# ----------------------------------------------------------------------------- retrieval

@dataclass(frozen=True)
class DirectionalRetrieval:
    """Retrieval quality in one direction (queries from one view, database the other).

    Attributes
    ----------
    recall : dict[int, float]
        R@K for each requested K.
    median_rank : float
        MedR, median 1-based rank of the first relevant item.
    map_all : float
        mAP over the whole ranked list.
    n_queries : int
        Queries with at least one relevant item (those averaged).
    n_skipped : int
        Queries without any relevant item.
    """

    recall: dict
    median_rank: float
    map_all: float
    n_queries: int
    n_skipped: int = 0

    def __getitem__(self, key: str) -> float:
        """``result["R@5"]``, ``result["MedR"]``, ``result["mAP"]``."""
        if key.startswith("R@"):
            return self.recall[int(key[2:])]
        return {"MedR": self.median_rank, "mAP": self.map_all}[key]


@dataclass(frozen=True)
class RetrievalResult:
    """Retrieval a->b, b->a and their mean (the mean averages every field)."""

    a_to_b: DirectionalRetrieval
    b_to_a: DirectionalRetrieval
    mean: DirectionalRetrieval

    @property
    def map_all(self) -> float:
        """mAP@all averaged over both directions (the usual ZS-CMR headline number)."""
        return self.mean.map_all

    def as_dict(self) -> dict:
        """Flat ``{"R@1_a2b": ..., "medr_b2a": ..., "map_all": ...}`` for logs and JSON."""
        out: dict = {"n": self.a_to_b.n_queries + self.a_to_b.n_skipped, "map_all": self.map_all}
        for tag, r in (("a2b", self.a_to_b), ("b2a", self.b_to_a)):
            out.update({f"R@{k}_{tag}": v for k, v in r.recall.items()})
            out[f"medr_{tag}"] = r.median_rank
            out[f"map_all_{tag}"] = r.map_all
        return out


def _normalize_rows(x):
    if is_torch(x):
        return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _one_direction(q, d, lq, ld, ks, metric: str, block_size: int | None) -> DirectionalRetrieval:
    torch_in = is_torch(q)
    n_q, n_d = q.shape[0], d.shape[0]
    if block_size is None:
        block_size = max(1, min(n_q, (1 << 22) // max(n_d, 1)))  # ~4M entries per block
    first, ap = [], []
    if torch_in:
        import torch

        lq_t = to_torch(lq, device=q.device)
        ld_t = to_torch(ld, device=q.device)
        pos = torch.arange(1, n_d + 1, device=q.device, dtype=torch.float64)
    else:
        pos = np.arange(1, n_d + 1, dtype=np.float64)
    if metric == "cosine":
        d = _normalize_rows(d)
    # ranking by -||q - d||^2 equals ranking by 2 q.d - ||d||^2 (||q||^2 is constant per row)
    sq_d = (d * d).sum(1) if metric == "euclidean" else None
    for start in range(0, n_q, block_size):
        qb = q[start:start + block_size]
        if metric == "cosine":
            qb = _normalize_rows(qb)
        sim = qb @ d.T
        if sq_d is not None:
            sim = 2.0 * sim - sq_d[None, :]
        if torch_in:
            order = torch.argsort(-sim, dim=1, stable=True)
            rel = ld_t[order] == lq_t[start:start + block_size, None]
            relf = rel.to(torch.float64)
            n_rel = relf.sum(1)
            prec = relf.cumsum(1) / pos
            ap_b = (prec * relf).sum(1) / n_rel.clamp_min(1)
            first_b = relf.argmax(1) + 1
            valid = n_rel > 0
            first.append(to_numpy(first_b[valid]))
            ap.append(to_numpy(ap_b[valid]))
        else:
            order = np.argsort(-sim, axis=1, kind="stable")
            rel = ld[order] == lq[start:start + block_size, None]
            relf = rel.astype(np.float64)
            n_rel = relf.sum(1)
            prec = np.cumsum(relf, axis=1) / pos
            ap_b = (prec * relf).sum(1) / np.maximum(n_rel, 1)
            first_b = relf.argmax(1) + 1
            valid = n_rel > 0
            first.append(first_b[valid])
            ap.append(ap_b[valid])
    first_all = np.concatenate(first).astype(np.float64)
    ap_all = np.concatenate(ap)
    if first_all.size == 0:
        raise ValueError("no query has a relevant item in the database (no shared labels)")
    recall = {k: float(np.mean(first_all <= k)) for k in ks}
    return DirectionalRetrieval(recall=recall, median_rank=float(np.median(first_all)),
                                map_all=float(ap_all.mean()), n_queries=int(first_all.size),
                                n_skipped=int(n_q - first_all.size))


def retrieval_scores(emb_a: Any, emb_b: Any, labels_a: Any = None, labels_b: Any = None,
                     metric: str = "cosine", ks: Sequence[int] = (1, 5, 10),
                     block_size: int | None = None) -> RetrievalResult:
    """R@K, MedR and mAP@all for a->b, b->a and their mean.

    Parameters
    ----------
    emb_a : array-like, shape=[n_a, d]
    emb_b : array-like, shape=[n_b, d]
    labels_a, labels_b : array-like of int, shape=[n_a], [n_b], optional
        Label-based relevance; omit both for instance pairs (requires n_a = n_b).
    metric : {"cosine", "dot", "euclidean"}
        Similarity used for ranking.
    ks : sequence of int
        Cut-offs for R@K.
    block_size : int, optional
        Queries ranked at once (bounds memory to ``block_size * n_db``); default
        keeps a block near 4M entries.

    Returns
    -------
    RetrievalResult
    """
    check_choice(metric, "metric", ("cosine", "dot", "euclidean"))
    emb_a = check_array(emb_a, "emb_a", ndim=2, allow_empty=False)
    emb_b = check_array(emb_b, "emb_b", ndim=2, allow_empty=False)
    check_same_device(emb_a=emb_a, emb_b=emb_b)
    if emb_a.shape[1] != emb_b.shape[1]:
        raise ValueError(f"emb_a and emb_b must have the same dimension, got {emb_a.shape[1]} and "
                         f"{emb_b.shape[1]}")
    ks = tuple(check_int(k, "ks entry", minimum=1) for k in ks)
    if block_size is not None:
        block_size = check_int(block_size, "block_size", minimum=1)
    if (labels_a is None) != (labels_b is None):
        raise ValueError("pass both labels_a and labels_b, or neither (instance pairs)")
    if labels_a is None:
        if emb_a.shape[0] != emb_b.shape[0]:
            raise ValueError(f"without labels, row i of emb_a pairs with row i of emb_b: need equal "
                             f"counts, got {emb_a.shape[0]} and {emb_b.shape[0]}")
        la = lb = np.arange(emb_a.shape[0])
    else:
        la = _labels(labels_a, "labels_a", n=emb_a.shape[0])
        lb = _labels(labels_b, "labels_b", n=emb_b.shape[0])
    xp = namespace(emb_a, emb_b)
    if xp is np:
        a = np.asarray(emb_a, dtype=np.float64)
        b = np.asarray(emb_b, dtype=np.float64)
    else:
        dev = emb_a.device if is_torch(emb_a) else emb_b.device
        ref = emb_a if is_torch(emb_a) else emb_b
        dtype = ref.dtype if ref.is_floating_point() else xp.float32
        a, b = to_torch(emb_a, device=dev, dtype=dtype), to_torch(emb_b, device=dev, dtype=dtype)
    ab = _one_direction(a, b, la, lb, ks, metric, block_size)
    ba = _one_direction(b, a, lb, la, ks, metric, block_size)
    mean = DirectionalRetrieval(
        recall={k: 0.5 * (ab.recall[k] + ba.recall[k]) for k in ks},
        median_rank=0.5 * (ab.median_rank + ba.median_rank),
        map_all=0.5 * (ab.map_all + ba.map_all),
        n_queries=ab.n_queries + ba.n_queries, n_skipped=ab.n_skipped + ba.n_skipped)
    return RetrievalResult(a_to_b=ab, b_to_a=ba, mean=mean)
