r"""Class-disjoint model selection for zero-shot cross-view retrieval.

A zero-shot model is scored on classes it never saw, so its hyperparameters
must be chosen the same way: :class:`ClassDisjointSearchCV` splits the *seen
classes* (never the samples of one class) into ``n_folds`` groups with
scikit-learn's :class:`~sklearn.model_selection.GroupKFold` (groups = labels),
trains every candidate on the other classes and scores zero-shot cross-view
retrieval on the held-out ones.  With folds :math:`F_1, \dots, F_k` of the
seen classes :math:`S`, a candidate :math:`\theta` scores

.. math:: \mathrm{score}(\theta) = \frac1k \sum_{j=1}^k
          \mathrm{mAP}_{\mathrm{all}}\bigl(f_\theta^{(S \setminus F_j)};\ F_j\bigr),

the mean over folds of the cross-view mAP@all (mean of both directions,
:func:`geoalign.evaluation.retrieval_scores`, same-class relevance) of the
model trained on :math:`S \setminus F_j` and evaluated on the classes of
:math:`F_j`.  The best candidate is refitted on all seen data.  Test classes
are never passed in, so they cannot be touched.

Candidates come from :class:`~sklearn.model_selection.ParameterGrid`
(``param_grid``) or :class:`~sklearn.model_selection.ParameterSampler`
(``param_distributions`` with ``n_iter``).  Every (candidate, fold) fit is an
independent job run by :class:`joblib.Parallel` (``n_jobs``; under
``joblib.parallel_config(backend="dask")`` the jobs go to a Dask cluster) and
shown by a tqdm bar; with ``cache_dir`` each finished job is written
atomically as one JSON file, so an interrupted search resumes where it
stopped.

The estimator needs ``fit(X_a, X_b, y, **fit_params)``, ``transform_a``,
``transform_b`` and scikit-learn's ``get_params``/``set_params`` (every
:mod:`geoalign.models` estimator with a paired-view ``fit``, CCA included).
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ._backend import to_numpy
from ._estimator import TwoViewEstimator
from ._validation import check_array, check_int, check_same_length

__all__ = ["ClassDisjointSearchCV", "SCORERS", "zero_shot_score"]

#: scoring name -> (relevance, field): "class" = same-class relevance, "instance" = the true partner
SCORERS: dict[str, tuple[str, str]] = {
    "map_all": ("class", "map_all"),
    "R@1": ("class", "R@1"),
    "R@10": ("class", "R@10"),
    "instance_map_all": ("instance", "map_all"),
    "instance_R@1": ("instance", "R@1"),
    "instance_R@10": ("instance", "R@10"),
}


def zero_shot_score(estimator, X_a, X_b, y, scoring: str | Callable = "map_all") -> float:
    """Cross-view retrieval score of a fitted ``estimator`` on ``(X_a, X_b, y)``.

    Parameters
    ----------
    estimator : fitted alignment estimator (``transform_a``, ``transform_b``)
    X_a, X_b : array-like, shape=[n, d_a], [n, d_b]
        Held-out pairs (row ``i`` of each view is one sample).
    y : array-like of int, shape=[n]
    scoring : str or callable
        A key of :data:`SCORERS` — ``"map_all"`` (class-level mAP@all, mean of
        both directions), ``"R@1"``, ``"R@10"`` (class-level recall),
        ``"instance_map_all"``, ``"instance_R@1"``, ``"instance_R@10"`` (the
        true partner is the only relevant item) — or ``scoring(estimator, X_a,
        X_b, y) -> float``.

    Returns
    -------
    float
    """
    from .evaluation import retrieval_scores

    if callable(scoring):
        return float(scoring(estimator, X_a, X_b, y))
    relevance, field = SCORERS[_check_scoring(scoring)]
    za = to_numpy(estimator.transform_a(X_a)).astype(np.float64)
    zb = to_numpy(estimator.transform_b(X_b)).astype(np.float64)
    labels = (y, y) if relevance == "class" else (None, None)
    res = retrieval_scores(za, zb, *labels, ks=(1, 10))
    return float(res.map_all if field == "map_all" else res.mean.recall[int(field[2:])])


def _check_scoring(scoring: Any) -> Any:
    if callable(scoring):
        return scoring
    if not isinstance(scoring, str) or scoring not in SCORERS:
        raise ValueError(f"scoring must be one of {sorted(SCORERS)} or a callable "
                         f"scoring(estimator, X_a, X_b, y) -> float, got {scoring!r}")
    return scoring


def _fingerprint(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _key_value(v: Any) -> Any:
    """A cache-key stand-in for a parameter value: arrays by content, not by their (elided) repr."""
    if hasattr(v, "shape") and hasattr(v, "dtype"):
        return {"array": _fingerprint(to_numpy(v))}
    return v


def _fit_and_score(estimator, params: dict, X_a, X_b, y, train, test, scoring, fit_params) -> dict:
    """One (candidate, fold) job: clone, set, fit on ``train`` rows, score on ``test`` rows."""
    from sklearn.base import clone

    model = clone(estimator).set_params(**params)
    t0 = time.perf_counter()
    model.fit(X_a[train], X_b[train], y[train], **fit_params)
    fit_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    score = zero_shot_score(model, X_a[test], X_b[test], y[test], scoring)
    return {"score": score, "fit_time": fit_time, "score_time": time.perf_counter() - t0}


class ClassDisjointSearchCV(TwoViewEstimator):
    r"""Hyperparameter search with class-disjoint folds, scored by zero-shot cross-view retrieval.

    Parameters
    ----------
    estimator : alignment estimator
        Cloned for every fit (:func:`sklearn.base.clone`), never fitted itself.
    param_grid : dict or list of dicts, optional
        Exhaustive candidates (:class:`~sklearn.model_selection.ParameterGrid`).
    param_distributions : dict or list of dicts, optional
        Lists or ``scipy.stats`` distributions sampled ``n_iter`` times
        (:class:`~sklearn.model_selection.ParameterSampler`).  Exactly one of
        ``param_grid`` and ``param_distributions`` is given.
    n_folds : int
        Class-disjoint folds (>= 2); ``y`` needs at least ``n_folds + 1`` classes.
    n_iter : int, optional
        Candidates drawn from ``param_distributions`` (default 10; capped at the
        size of the space when every value is a list).  Not used with ``param_grid``.
    scoring : str or callable
        See :func:`zero_shot_score`; default ``"map_all"``.
    n_jobs : int, optional
        Parallel (candidate, fold) jobs through :class:`joblib.Parallel`
        (``None``: one, unless a ``joblib.parallel_config`` says otherwise).
    random_state : int, optional
        Seeds :class:`~sklearn.model_selection.ParameterSampler`.  Folds are
        deterministic (GroupKFold).  The estimator's own ``random_state`` is
        kept, so every candidate trains from the same seed.
    refit : bool
        Refit the best candidate on all the data given to :meth:`fit`.
    cache_dir : str or path, optional
        Keep each finished (candidate, fold) score as a JSON file there
        (written atomically); a rerun with the same estimator, candidates,
        data and scoring loads them instead of refitting.
    progress : bool
        tqdm bar over the jobs.

    Attributes
    ----------
    best_params_ : dict
    best_score_ : float
        Mean held-out-fold score of the best candidate.
    best_index_ : int
    best_estimator_ : estimator
        Refitted on all the data (with ``refit=True``).
    cv_results_ : dict of lists/arrays
        ``params``, ``param_<name>``, ``split<k>_test_score``,
        ``mean_test_score``, ``std_test_score``, ``rank_test_score``,
        ``mean_fit_time``, ``mean_score_time``, ``cached`` (jobs loaded from
        ``cache_dir`` per candidate): ``pandas.DataFrame(search.cv_results_)``.
    folds_ : list of ndarray
        Held-out classes of each fold.
    n_splits_ : int
    refit_time_ : float
    search_time_ : float
        Wall time of :meth:`fit`, refit included.

    Examples
    --------
    >>> from geoalign.models import CCA
    >>> from geoalign.data.digits import load_digits_two_view
    >>> d = load_digits_two_view(scale="unit")
    >>> search = ClassDisjointSearchCV(CCA(), {"dim": [2, 4, 8], "reg": [1e-2, 1e-1]},
    ...                                progress=False).fit(d.X_a_train, d.X_b_train, d.y_train)
    >>> sorted(search.best_params_)
    ['dim', 'reg']
    """

    def __init__(self, estimator, param_grid=None, *, param_distributions=None, n_folds: int = 3,
                 n_iter: int | None = None, scoring: str | Callable = "map_all",
                 n_jobs: int | None = None, random_state: int | None = None, refit: bool = True,
                 cache_dir=None, progress: bool = True):
        self.estimator = estimator
        self.param_grid = param_grid
        self.param_distributions = param_distributions
        self.n_folds = n_folds
        self.n_iter = n_iter
        self.scoring = scoring
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.refit = refit
        self.cache_dir = cache_dir
        self.progress = progress

    _fitted_attributes = ("best_estimator_",)
    _fit_hint = "fit(...) with refit=True"

    # -- candidates -----------------------------------------------------------------------
    def _candidates(self) -> list[dict]:
        from sklearn.model_selection import ParameterGrid, ParameterSampler

        if (self.param_grid is None) == (self.param_distributions is None):
            raise ValueError("give exactly one of param_grid and param_distributions")
        if self.param_grid is not None:
            if self.n_iter is not None:
                raise ValueError("n_iter is only used with param_distributions (param_grid is exhaustive)")
            spaces, name = self.param_grid, "param_grid"
        else:
            spaces, name = self.param_distributions, "param_distributions"
        spaces_list = [spaces] if isinstance(spaces, Mapping) else list(spaces)
        if not spaces_list or not all(isinstance(s, Mapping) for s in spaces_list):
            raise TypeError(f"{name} must be a dict or a non-empty list of dicts, got {type(spaces).__name__}")
        valid = set(self.estimator.get_params(deep=False))
        for space in spaces_list:
            unknown = sorted(set(space) - valid)
            if unknown:
                raise ValueError(f"{name} has keys {unknown} that {type(self.estimator).__name__} does "
                                 f"not have; its parameters are {sorted(valid)}")
            for k, v in space.items():
                if isinstance(v, (str, bytes)) or not (hasattr(v, "__len__") or hasattr(v, "rvs")):
                    raise TypeError(f"{name}[{k!r}] must be a list of values"
                                    f"{' or a distribution' if name == 'param_distributions' else ''}, "
                                    f"got {v!r}")
                if hasattr(v, "__len__") and len(v) == 0:
                    raise ValueError(f"{name}[{k!r}] is empty")
        if self.param_grid is not None:
            return [dict(p) for p in ParameterGrid(spaces_list)]
        n_iter = 10 if self.n_iter is None else check_int(self.n_iter, "n_iter", minimum=1)
        if all(hasattr(v, "__len__") for s in spaces_list for v in s.values()):
            n_iter = min(n_iter, len(ParameterGrid(spaces_list)))  # sampling without replacement
        return [dict(p) for p in ParameterSampler(spaces_list, n_iter, random_state=self.random_state)]

    # -- data -------------------------------------------------------------------------------
    def _folds(self, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        from sklearn.model_selection import GroupKFold

        n_folds = check_int(self.n_folds, "n_folds", minimum=2)
        classes = np.unique(y)
        if classes.size < n_folds + 1:
            raise ValueError(f"y has {classes.size} classes; class-disjoint search with n_folds={n_folds} "
                             f"needs at least n_folds + 1 = {n_folds + 1} (each fold holds out whole "
                             "classes and trains on the rest)")
        return [(tr, te) for tr, te in GroupKFold(n_splits=n_folds).split(y, y, groups=y)]

    def _cache_file(self, key_parts: dict) -> Path | None:
        if self.cache_dir is None:
            return None
        blob = json.dumps(key_parts, sort_keys=True, default=repr).encode()
        return Path(self.cache_dir) / f"{hashlib.sha256(blob).hexdigest()[:24]}.json"

    # -- fit --------------------------------------------------------------------------------
    def fit(self, X_a, X_b, y, **fit_params) -> "ClassDisjointSearchCV":
        """Search on seen-class pairs ``(X_a, X_b)`` with labels ``y``; refit the best.

        Parameters
        ----------
        X_a : array-like, shape=[n, d_a]
        X_b : array-like, shape=[n, d_b]
        y : array-like of int, shape=[n]
            Class of each pair: folds hold out whole classes.
        **fit_params
            Passed to every ``estimator.fit`` (e.g. ``unpaired_a=``, ``unpaired_b=``
            of :class:`geoalign.models.QSMA`), unchanged for every fold.

        Returns
        -------
        self
        """
        from joblib import Parallel, delayed
        from tqdm.auto import tqdm

        from ._io import atomic_write_json

        t_start = time.perf_counter()
        scoring = _check_scoring(self.scoring)
        if not (hasattr(self.estimator, "get_params") and hasattr(self.estimator, "set_params")
                and hasattr(self.estimator, "fit")):
            raise TypeError(f"estimator must have fit, get_params and set_params, got "
                            f"{type(self.estimator).__name__}")
        candidates = self._candidates()
        X_a = to_numpy(check_array(X_a, "X_a", ndim=2, allow_empty=False))
        X_b = to_numpy(check_array(X_b, "X_b", ndim=2, allow_empty=False))
        if y is None:
            raise ValueError("y (the class of each pair) is required: folds hold out whole classes")
        y = to_numpy(check_array(y, "y", ndim=1))
        check_same_length(X_a=X_a, X_b=X_b, y=y)
        if not (np.issubdtype(y.dtype, np.integer) or np.all(y == np.round(y))):
            raise ValueError(f"y must hold integer class labels, got dtype {y.dtype}")
        y = y.astype(np.int64)
        folds = self._folds(y)
        self.folds_ = [np.unique(y[te]) for _, te in folds]
        self.n_splits_ = len(folds)

        base = {"estimator": type(self.estimator).__qualname__,
                "estimator_params": {k: _key_value(v) for k, v in
                                     self.estimator.get_params(deep=False).items()},
                "data": _fingerprint(X_a, X_b, y),
                "fit_params": {k: _key_value(v) for k, v in fit_params.items()},
                "scoring": scoring if isinstance(scoring, str) else getattr(scoring, "__qualname__", "")}
        jobs, results = [], {}
        for ci, params in enumerate(candidates):
            for fi, (_, te) in enumerate(folds):
                path = self._cache_file({**base, "params": {k: _key_value(v) for k, v in params.items()},
                                         "held_out": self.folds_[fi].tolist()})
                if path is not None and path.exists():
                    try:
                        results[ci, fi] = {**json.loads(path.read_text()), "cached": True}
                        continue
                    except (json.JSONDecodeError, OSError):
                        pass  # unreadable: recompute (written atomically, so only by another writer)
                jobs.append((ci, fi, path))

        bar = tqdm(total=len(candidates) * len(folds), initial=len(results), disable=not self.progress,
                   desc=f"{type(self.estimator).__name__} class-disjoint search")
        try:
            runner = Parallel(n_jobs=self.n_jobs, return_as="generator")
            outs = runner(delayed(_fit_and_score)(self.estimator, candidates[ci], X_a, X_b, y,
                                                  folds[fi][0], folds[fi][1], scoring, fit_params)
                          for ci, fi, _ in jobs)
            for (ci, fi, path), out in zip(jobs, outs):
                results[ci, fi] = {**out, "cached": False}
                if path is not None:
                    atomic_write_json(path, out)
                bar.update(1)
        finally:
            bar.close()

        self._collect(candidates, results)
        if self.refit:
            from sklearn.base import clone

            t0 = time.perf_counter()
            self.best_estimator_ = clone(self.estimator).set_params(**self.best_params_)
            self.best_estimator_.fit(X_a, X_b, y, **fit_params)
            self.refit_time_ = time.perf_counter() - t0
        self.search_time_ = time.perf_counter() - t_start
        return self

    def _collect(self, candidates: list[dict], results: dict) -> None:
        from scipy.stats import rankdata

        k = self.n_splits_
        scores = np.array([[results[ci, fi]["score"] for fi in range(k)] for ci in range(len(candidates))])
        mean = scores.mean(axis=1)
        if not np.all(np.isfinite(mean)):
            bad = [candidates[i] for i in np.flatnonzero(~np.isfinite(mean))]
            raise ValueError(f"non-finite scores for candidates {bad}")
        cv: dict[str, Any] = {"params": candidates}
        names = sorted({n for p in candidates for n in p})
        for n in names:
            cv[f"param_{n}"] = [p.get(n) for p in candidates]
        for fi in range(k):
            cv[f"split{fi}_test_score"] = scores[:, fi]
        cv["mean_test_score"] = mean
        cv["std_test_score"] = scores.std(axis=1)
        cv["rank_test_score"] = rankdata(-mean, method="min").astype(np.int64)
        cv["mean_fit_time"] = np.array([np.mean([results[ci, fi]["fit_time"] for fi in range(k)])
                                        for ci in range(len(candidates))])
        cv["mean_score_time"] = np.array([np.mean([results[ci, fi]["score_time"] for fi in range(k)])
                                          for ci in range(len(candidates))])
        cv["cached"] = np.array([sum(results[ci, fi]["cached"] for fi in range(k))
                                 for ci in range(len(candidates))], dtype=np.int64)
        self.cv_results_ = cv
        self.best_index_ = int(np.argmax(mean))  # first of ties: candidate order decides
        self.best_params_ = dict(candidates[self.best_index_])
        self.best_score_ = float(mean[self.best_index_])

    # -- fitted use -------------------------------------------------------------------------
    def _fitted(self):
        self._check_fitted()
        return self.best_estimator_

    def transform_a(self, X):
        """``best_estimator_.transform_a``."""
        return self._fitted().transform_a(X)

    def transform_b(self, X):
        """``best_estimator_.transform_b``."""
        return self._fitted().transform_b(X)

    def score(self, X_a, X_b, y) -> float:
        """:func:`zero_shot_score` of ``best_estimator_`` on ``(X_a, X_b, y)`` with this search's scoring."""
        return zero_shot_score(self._fitted(), X_a, X_b, y, self.scoring)

    def __repr__(self) -> str:
        grid = "param_grid" if self.param_grid is not None else "param_distributions"
        return (f"ClassDisjointSearchCV({self.estimator!r}, {grid}=..., n_folds={self.n_folds}, "
                f"scoring={self.scoring!r})")

