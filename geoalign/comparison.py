r"""Method comparison on the zero-shot splits: QSMA, SSPC, CFSA, UniCode, CCA, ESZSL, LinearContrastive.

Every method is labelled by its class name (the labels ``"Uni-Code"`` and
``"CLIP-linear"`` of earlier versions still work, with a deprecation warning).

Every method is trained on the *seen* classes only and evaluated on the
*unseen* classes of the same data set:

* **digits** — scikit-learn's digits as two views (left half ↔ right half),
  classes 0–6 seen, 7–9 unseen (docs/design/data.md); **digits_tb** (top half ↔
  bottom half) and **digits_hog** (pixels ↔ orientation histograms) split the same
  images differently (:data:`DIGITS_PROBLEMS`);
* **planted** — :class:`geoalign.data.planted.PlantedAlignment` with 3 of 10
  classes held out.

Scores (:func:`geoalign.evaluation.retrieval_scores`, label-based relevance,
mean of both directions): mAP@all, R@1/5/10 on the unseen test pairs.  The
zero-shot classification accuracy column uses one protocol for every method:
the unseen test pairs are split in half; class prototypes are the normalised
mean view-b embeddings of the first half, and the view-a embeddings of the
second half are classified by the nearest prototype (cosine), scored by
:func:`geoalign.evaluation.per_class_accuracy` (per-class mean top-1).  No method sees
an unseen sample during training or model selection (the transductive regime of
:func:`select_and_compare` gives the unseen *inputs*, unlabeled and unpaired, and is
marked as such); hyperparameters are never tuned on the test classes (the oracle CCA
of :func:`select_and_compare` is, and is labelled an upper bound).

ESZSL needs class semantics: it is fitted once per view against the class
semantics (digits: rendered numerals, :func:`geoalign.models.cfsa.digit_glyph_semantics`;
planted: a fixed linear map of the class centres), and both views are compared
in the semantic space.  CFSA uses the same semantics.

Two protocols:

* :func:`compare_methods` — every method once with the fixed settings written here
  (a quick look; ``python -m geoalign.comparison [--quick] [--out table.csv]``);
* :func:`select_and_compare` — every method selected by the same
  :class:`~geoalign.model_selection.ClassDisjointSearchCV` budget around the library
  defaults, trained with several seeds, in the inductive, semi-paired (5 % of the pairs)
  and transductive regimes, with the library defaults and an oracle-tuned CCA for
  reference.  Its cells are stored as they finish (:class:`CellStore`), so an
  interrupted run resumes; the paper's cells are in :data:`STORED_CELLS`
  (``python -m geoalign.comparison --selected`` computes the missing ones).  The
  paper's table is the ``comparison`` entry of ``geoalign figures``
  (:mod:`geoalign.figures.comparison_figs`), built from those cells.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ._estimator import TwoViewEstimator
from ._registry import Registry

__all__ = ["ZeroShotData", "load_comparison_data", "METHODS", "QSMA_PAPER_PARAMS", "compare_methods", "main",
           "DIGITS_PROBLEMS", "orientation_histograms", "SEARCH_GRIDS", "REGIMES", "TwoViewESZSL",
           "select_and_compare", "CellStore", "STORED_CELLS", "COMPARISON_DATASETS", "UNPAIRED_METHODS",
           "ORACLE_CCA_GRID"]


@dataclasses.dataclass
class ZeroShotData:
    """Seen-class training pairs, unseen-class test pairs and class semantics.

    Attributes
    ----------
    name : str
    X_a_train, X_b_train : ndarray, shape=[n_train, d_a], [n_train, d_b]
    y_train : ndarray of int, shape=[n_train]
    X_a_test, X_b_test : ndarray, shape=[n_test, d_a], [n_test, d_b]
    y_test : ndarray of int, shape=[n_test]
    semantics : ndarray, shape=[n_classes, s]
        One semantic vector per class id (row = class id).
    unseen_classes : ndarray of int
    """

    name: str
    X_a_train: np.ndarray
    X_b_train: np.ndarray
    y_train: np.ndarray
    X_a_test: np.ndarray
    X_b_test: np.ndarray
    y_test: np.ndarray
    semantics: np.ndarray
    unseen_classes: np.ndarray


def orientation_histograms(images, n_bins: int = 6, cell: int = 2) -> np.ndarray:
    r"""HOG-style features of 8x8 images: gradient-orientation histograms per cell.

    Central-difference gradients :math:`(g_x, g_y)` of the image (values / 16),
    magnitude :math:`\|g\|` and unsigned orientation :math:`\theta \in [0, \pi)`;
    each pixel adds :math:`\|g\|` to its orientation bin (``n_bins`` equal bins) in
    its ``cell`` x ``cell`` cell; histograms are square-rooted (Hellinger map).  A
    non-linear feature map of the same image, used as the second view of the
    ``"digits_hog"`` problem.

    Parameters
    ----------
    images : array-like, shape=[n, 8, 8]

    Returns
    -------
    features : ndarray, shape=[n, (8 / cell)^2 * n_bins]
    """
    from ._validation import check_array

    img = np.asarray(check_array(images, "images", ndim=3), dtype=np.float64) / 16.0
    n, h, w = img.shape
    if h % cell or w % cell:
        raise ValueError(f"images of shape {(h, w)} are not a whole number of {cell}x{cell} cells")
    gy, gx = np.gradient(img, axis=(1, 2))
    mag = np.hypot(gx, gy)
    theta = np.mod(np.arctan2(gy, gx), np.pi)
    bins = np.minimum((theta / np.pi * n_bins).astype(np.int64), n_bins - 1)
    hist = np.zeros((n, h // cell, w // cell, n_bins))
    rows, cols = np.meshgrid(np.arange(h) // cell, np.arange(w) // cell, indexing="ij")
    for b in range(n_bins):
        contrib = np.where(bins == b, mag, 0.0)
        np.add.at(hist[..., b], (slice(None), rows, cols), contrib)
    return np.sqrt(hist.reshape(n, -1))


#: the digits two-view problems: name -> (view a, view b)
DIGITS_PROBLEMS = {"digits": "left half <-> right half",
                   "digits_tb": "top half <-> bottom half",
                   "digits_hog": "pixels <-> gradient-orientation histograms"}


def _digits_views(name: str, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = images.shape[0]
    unit = images.astype(np.float64) / 16.0
    if name == "digits":
        return unit[:, :, :4].reshape(n, 32), unit[:, :, 4:].reshape(n, 32)
    if name == "digits_tb":
        return unit[:, :4, :].reshape(n, 32), unit[:, 4:, :].reshape(n, 32)
    return unit.reshape(n, 64), orientation_histograms(images)


def load_comparison_data(name: str, seed: int = 0) -> ZeroShotData:
    """A zero-shot split used by :func:`compare_methods`.

    ``name`` is one of :data:`DIGITS_PROBLEMS` (``"digits"`` = left <-> right
    half, ``"digits_tb"`` = top <-> bottom half, ``"digits_hog"`` = the whole
    image <-> :func:`orientation_histograms`; classes 0-6 seen, 7-9 unseen; the
    split is fixed, ``seed`` is unused) or ``"planted"`` (drawn with ``seed``).
    """
    if name in DIGITS_PROBLEMS:
        from .data.digits import digits_images
        from .models.cfsa import digit_glyph_semantics

        images, labels = digits_images()
        seen = labels < 7
        X_a, X_b = _digits_views(name, images)
        return ZeroShotData(name, X_a[seen], X_b[seen], labels[seen], X_a[~seen], X_b[~seen],
                            labels[~seen], digit_glyph_semantics(), np.array([7, 8, 9]))
    if name == "planted":
        from .data.planted import PlantedAlignment

        gen = PlantedAlignment(dim=32, shared_rank=6, private_ranks=(3, 3), snr=3.0, n_classes=10,
                               between_class_fraction=0.8, random_state=seed)
        sample = gen.sample(3000)
        split = sample.zero_shot_split(3, random_state=seed)
        rng = np.random.default_rng(seed + 1)
        semantics = sample.class_centers @ rng.normal(size=(sample.class_centers.shape[1], 12))
        return ZeroShotData("planted", split.seen.U, split.seen.V, split.seen.labels,
                            split.unseen.U, split.unseen.V, split.unseen.labels, semantics,
                            np.asarray(split.unseen_classes))
    raise ValueError(f"unknown data set {name!r}; expected one of {[*DIGITS_PROBLEMS, 'planted']}")


def _trainer_options() -> dict:
    return {"progress": False}


# Each builder returns (fit_function, embed_function).  fit(data) trains on seen classes;
# embed(data, X_a, X_b) maps test inputs of both views into one space for retrieval.
def _estimator_method(factory: Callable[[ZeroShotData, bool, int], Any]):
    def run(data: ZeroShotData, quick: bool, seed: int):
        model = factory(data, quick, seed)
        model.fit(data.X_a_train, data.X_b_train, data.y_train)
        return lambda Xa, Xb: (np.asarray(model.transform_a(Xa)), np.asarray(model.transform_b(Xb)))
    return run


def _epochs(quick: bool, full: int) -> int:
    return max(3, full // 8) if quick else full


#: QSMA settings of the paper's experiments: the un-augmented MLP row of the validation grid of
#: benchmarks/qsma_evidence.py (class-disjoint folds of the digits seen classes, never the unseen
#: test classes).  The comparison gives every method the same un-augmented training pairs; the
#: configuration that grid chooses overall (conv encoder + augmented pairs) is in that script.
QSMA_PAPER_PARAMS = dict(dim=32, hidden=256, n_layers=2, dropout=0.2, use_labels=False)


def _qsma(data, quick, seed):
    from .models.qsma import QSMA

    return QSMA(**QSMA_PAPER_PARAMS, max_epochs=_epochs(quick, 30), random_state=seed,
                trainer_options=_trainer_options())


def _sspc(data, quick, seed):
    from .models.sspc import SSPC

    return SSPC(dim=32, queue_size=512, max_epochs=_epochs(quick, 60), random_state=seed,
                trainer_options=_trainer_options())


def _unicode(data, quick, seed):
    from .models.codebook import UniCode

    return UniCode(dim=32, n_codes=64, specific_dim=16, max_epochs=_epochs(quick, 60),
                   random_state=seed, trainer_options=_trainer_options())


def _cfsa(data, quick, seed):
    from .models.cfsa import CFSA

    return CFSA(class_semantics=data.semantics, dim=32, hidden=128, max_epochs=_epochs(quick, 40),
                random_state=seed, trainer_options=_trainer_options())


def _linear_contrastive(data, quick, seed):
    from .models.contrastive import LinearContrastive

    return LinearContrastive(dim=32, max_epochs=_epochs(quick, 60), random_state=seed,
                             trainer_options=_trainer_options())


def _cca(data, quick, seed):
    from .models.linear import CCA

    return CCA(dim=4, reg=1e-2)


def _eszsl(data: ZeroShotData, quick: bool, seed: int):
    from .models.linear import ESZSL

    # one ESZSL per view, both mapping into the semantic space
    ma = ESZSL(alpha=1.0, gamma=1.0).fit(data.X_a_train, data.semantics, data.y_train)
    mb = ESZSL(alpha=1.0, gamma=1.0).fit(data.X_b_train, data.semantics, data.y_train)
    return lambda Xa, Xb: (np.asarray(ma.transform_a(Xa)), np.asarray(mb.transform_a(Xb)))


#: method name -> ``method(data, quick, seed) -> embed(X_a, X_b) -> (Z_a, Z_b)``
METHODS = Registry("comparison method", {
    "QSMA": _estimator_method(_qsma),
    "SSPC": _estimator_method(_sspc),
    "CFSA": _estimator_method(_cfsa),
    "UniCode": _estimator_method(_unicode),
    "LinearContrastive": _estimator_method(_linear_contrastive),
    "CCA": _estimator_method(_cca),
    "ESZSL": _eszsl,
})
#: labels of earlier versions -> the class name that is now every method's label
_OLD_LABELS = {"Uni-Code": "UniCode", "CLIP-linear": "LinearContrastive"}


def _method_names(methods) -> list[str]:
    """``methods`` with the old labels of :data:`_OLD_LABELS` replaced (and a deprecation warning)."""
    from ._warnings import warn_deprecated

    if isinstance(methods, str):
        methods = [methods]
    names = []
    for m in methods:
        if m in _OLD_LABELS:
            warn_deprecated(f"the method label {m!r}", f"{_OLD_LABELS[m]!r} (the class name)", stacklevel=4)
            m = _OLD_LABELS[m]
        names.append(m)
    return names


def _prototype_zsl(Za, Zb, y, seed: int) -> float:
    """Nearest-prototype accuracy: prototypes from half the unseen view-b embeddings."""
    from .evaluation import per_class_accuracy

    rng = np.random.default_rng(seed)
    support = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        support[rng.choice(idx, size=len(idx) // 2, replace=False)] = True
    unit = lambda Z: Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)  # noqa: E731
    classes = np.unique(y)
    protos = np.stack([unit(Zb[support & (y == c)]).mean(0) for c in classes])
    pred = classes[np.argmax(unit(Za[~support]) @ unit(protos).T, axis=1)]
    return per_class_accuracy(y[~support], pred)


def compare_methods(datasets=("digits", "planted"), methods=None, quick: bool = False, seed: int = 0,
                    progress: bool = True):
    """Train every method on the seen classes and score it on the unseen classes.

    Returns
    -------
    pandas.DataFrame
        One row per (data set, method): ``map_all``, ``R@1``, ``R@5``, ``R@10``,
        ``zsl_acc`` (prototype protocol, module docstring), ``train_s``.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from .evaluation import retrieval_scores

    names = list(METHODS) if methods is None else _method_names(methods)
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; available: {list(METHODS)}")
    rows = []
    cells = [(d, m) for d in datasets for m in names]
    data_cache: dict[str, ZeroShotData] = {}
    for dname, mname in tqdm(cells, desc="methods", disable=not progress):
        data = data_cache.setdefault(dname, load_comparison_data(dname, seed=seed))
        t0 = time.perf_counter()
        embed = METHODS[mname](data, quick, seed)
        train_s = time.perf_counter() - t0
        Za, Zb = embed(data.X_a_test, data.X_b_test)
        res = retrieval_scores(Za, Zb, data.y_test, data.y_test)
        rows.append({"dataset": dname, "method": mname, "map_all": res.map_all,
                     "R@1": res.mean.recall[1], "R@5": res.mean.recall[5],
                     "R@10": res.mean.recall[10], "zsl_acc": _prototype_zsl(Za, Zb, data.y_test, seed),
                     "train_s": train_s})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- selected comparison
class TwoViewESZSL(TwoViewEstimator):
    """ESZSL as a paired-view estimator: one ESZSL per view into the class-semantic space.

    ``fit(X_a, X_b, y)`` fits :class:`geoalign.models.ESZSL` on ``(X_a, semantics, y)``
    and on ``(X_b, semantics, y)``; ``transform_a``/``transform_b`` map each view
    into the semantic space, so :class:`~geoalign.model_selection.ClassDisjointSearchCV`
    can select it like any other method.
    """

    def __init__(self, semantics=None, alpha: float = 1.0, gamma: float = 1.0):
        self.semantics = semantics
        self.alpha = alpha
        self.gamma = gamma

    _fitted_attributes = ("model_a_", "model_b_")

    def fit(self, X_a, X_b, y=None) -> "TwoViewESZSL":
        from .models.linear import ESZSL

        if self.semantics is None:
            raise ValueError("TwoViewESZSL needs semantics (one row per class id)")
        self.model_a_ = ESZSL(alpha=self.alpha, gamma=self.gamma).fit(X_a, self.semantics, y)
        self.model_b_ = ESZSL(alpha=self.alpha, gamma=self.gamma).fit(X_b, self.semantics, y)
        return self

    def transform_a(self, X):
        """View a in the class-semantic space, shape=[n, s]."""
        self._check_fitted()
        return self.model_a_.transform_a(X)

    def transform_b(self, X):
        """View b in the class-semantic space, shape=[n, s]."""
        self._check_fitted()
        return self.model_b_.transform_a(X)


#: the grid every method is selected from: 4 candidates each (the same budget for all), each axis
#: holding the library default of that parameter, so the search can keep the defaults
SEARCH_GRIDS: dict[str, dict] = {
    "QSMA": {"dropout": [0.0, 0.2], "lambda_alignment": [0.1, 1.0]},
    "SSPC": {"dim": [16, 32], "consistency_weight": [0.0, 1.0]},
    "CFSA": {"dim": [32, 64], "align_weight": [0.5, 1.0]},
    "UniCode": {"dim": [32, 256], "n_codes": [64, 400]},
    "LinearContrastive": {"dim": [32, 64], "lr": [1e-3, 1e-2]},
    "CCA": {"dim": [2, 8], "reg": [1e-3, 1e-1]},
    "ESZSL": {"alpha": [0.1, 1.0], "gamma": [0.1, 1.0]},
}
#: CCA tuned on the unseen test classes (an upper bound, never a selection): the grid it may pick from
ORACLE_CCA_GRID = {"dim": [2, 4, 8, 16, 32], "reg": [1e-3, 1e-2, 1e-1, 1.0]}
#: training regimes of the selected comparison; the last two are marked in the table
REGIMES = ("inductive", "semi-paired 5%", "transductive")
#: methods whose ``fit`` takes unpaired samples of each view (``unpaired_a``/``unpaired_b``)
UNPAIRED_METHODS = ("QSMA",)
#: data sets of the paper's table
COMPARISON_DATASETS = ("digits", "digits_tb", "planted")
#: where the stored cells of the paper's table live (JSON, one file per data set and method)
STORED_CELLS = Path(__file__).resolve().parents[1] / "figures" / "data" / "comparison"


def _base_estimator(method: str, data: ZeroShotData, quick: bool):
    """``method`` with the library defaults (CFSA and ESZSL given the class semantics).

    Quick setting: a tenth of the default epochs (at least 2).
    """
    from .models.cfsa import CFSA
    from .models.codebook import UniCode
    from .models.contrastive import LinearContrastive
    from .models.linear import CCA
    from .models.qsma import QSMA
    from .models.sspc import SSPC

    if method == "ESZSL":
        return TwoViewESZSL(semantics=data.semantics)
    if method == "CCA":
        return CCA()
    cls = {"QSMA": QSMA, "SSPC": SSPC, "CFSA": CFSA, "UniCode": UniCode, "LinearContrastive": LinearContrastive}[method]
    model = cls(class_semantics=data.semantics) if method == "CFSA" else cls()
    model.set_params(trainer_options=_trainer_options(), random_state=0)
    if quick:
        model.set_params(max_epochs=max(2, model.get_params()["max_epochs"] // 10))
    return model


def _regime_data(data: ZeroShotData, regime: str, seed: int):
    """Training pairs and unpaired samples of one regime (see :func:`select_and_compare`)."""
    if regime == "inductive":
        return data.X_a_train, data.X_b_train, data.y_train, None
    rng = np.random.default_rng([seed, 6])
    if regime == "semi-paired 5%":
        perm = rng.permutation(data.X_a_train.shape[0])
        k = max(4, int(round(0.05 * perm.size)))
        rest = perm[k:]
        half = rest.size // 2
        return (data.X_a_train[perm[:k]], data.X_b_train[perm[:k]], data.y_train[perm[:k]],
                (data.X_a_train[rest[:half]], data.X_b_train[rest[half:]]))
    perm = rng.permutation(data.X_a_test.shape[0])
    half = perm.size // 2
    return (data.X_a_train, data.X_b_train, data.y_train,
            (data.X_a_test[perm[:half]], data.X_b_test[perm[half:]]))


def _test_scores(model, data: ZeroShotData) -> dict:
    """Class-level mAP@all and instance-level R@1/R@10 of the true partner on the unseen test pairs."""
    from .evaluation import retrieval_scores

    za = np.asarray(model.transform_a(data.X_a_test), dtype=np.float64)
    zb = np.asarray(model.transform_b(data.X_b_test), dtype=np.float64)
    cls = retrieval_scores(za, zb, data.y_test, data.y_test, ks=(1,))
    inst = retrieval_scores(za, zb, ks=(1, 10))
    return {"map_all": float(cls.map_all), "R@1": float(inst.mean.recall[1]),
            "R@10": float(inst.mean.recall[10])}


def _jsonable(obj):
    """``obj`` as plain JSON (arrays by content fingerprint), for settings and cell keys."""
    from .model_selection import _key_value

    if isinstance(obj, dict):
        return {str(k): _jsonable(_key_value(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    return json.loads(json.dumps(obj, default=repr))


class CellStore:
    """Stored cells of :func:`select_and_compare` for one (data set, method): a resumable result.

    One JSON file ``<root>/<dataset>/<method>.json`` holds the ``settings`` (grid,
    folds, scoring, base parameters, quick flag), the ``selection`` (the search's
    ``cv_results_``, choice and time) and one ``cells`` entry per trained model
    (regime, seed and effective parameters -> scores, fit time).  Every entry records
    the library version, torch threads, creation time and the SHA-256 of the settings
    (``settings_sha256``, the first 16 hex digits).  The file is
    rewritten atomically after every finished cell, so an interrupted run resumes
    there; a file whose settings differ from the present ones is ignored (and then
    replaced), as is every file with ``force=True``.  A store written before methods
    were labelled by class name holds ``Uni-Code.json``/``CLIP-linear.json``: when the
    new file is absent the old one is read (a deprecation warning says so; its cells
    stay hits, since the settings do not hold the label) and the next write goes to
    the new name.
    """

    def __init__(self, root, dataset: str, method: str, settings: dict, force: bool = False):
        self.path = None if root is None else Path(root) / dataset / f"{method.replace(' ', '_')}.json"
        self.settings = _jsonable(settings)
        self.settings_sha = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:16]
        self.content = {"dataset": dataset, "method": method, "settings": self.settings,
                        "selection": None, "cells": {}}
        source = self.path
        if source is not None and not source.exists() and not force:
            source = self._old_label_file(source, method)
        if source is not None and source.exists() and not force:
            try:
                old = json.loads(source.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError):
                old = None  # unreadable: recomputed (written atomically, so only by another writer)
            if isinstance(old, dict) and old.get("settings") == self.settings:
                self.content.update({"selection": old.get("selection"), "cells": old.get("cells") or {}})

    @staticmethod
    def _old_label_file(path: Path, method: str) -> Path:
        """The file an earlier version wrote for ``method`` (under its old label), else ``path``."""
        import warnings

        from ._warnings import GeoalignDeprecationWarning

        for old, new in _OLD_LABELS.items():
            candidate = path.with_name(f"{old}.json")
            if new == method and candidate.exists():
                warnings.warn(f"reading the stored cells of {method} from {candidate} (the file name of "
                              f"the old label {old!r}); they are written to {path.name} from now on",
                              GeoalignDeprecationWarning, stacklevel=4)
                return candidate
        return path

    def _stamp(self) -> dict:
        import torch

        from . import __version__

        return {"version": __version__, "torch_threads": torch.get_num_threads(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings_sha256": self.settings_sha}

    def put(self, key: str | None, value: dict) -> dict:
        """Record ``value`` (the selection when ``key`` is None) and write the file atomically."""
        from ._io import atomic_write_json

        value = {**_jsonable(value), **self._stamp()}
        if key is None:
            self.content["selection"] = value
        else:
            self.content["cells"][key] = value
        if self.path is not None:
            atomic_write_json(self.path, self.content)
        return value

    def get(self, key: str | None) -> dict | None:
        """The stored selection (``key`` None) or cell, or None."""
        return self.content["selection"] if key is None else self.content["cells"].get(key)

    @property
    def missing(self) -> bool:
        """Whether nothing is stored yet."""
        return self.content["selection"] is None


def _cell_key(regime: str, seed: int, params: dict) -> str:
    return f"{regime}|{seed}|{json.dumps(_jsonable(params), sort_keys=True)}"


def _summarize(cells: list[dict], suffix: str = "") -> dict:
    """``<score><suffix>`` (mean over the cells) and ``<score><suffix>_std`` (sample std)."""
    out = {}
    for score in ("map_all", "R@1", "R@10"):
        v = np.array([c[score] for c in cells], dtype=np.float64)
        out[f"{score}{suffix}"] = float(v.mean())
        out[f"{score}{suffix}_std"] = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return out


def select_and_compare(datasets=COMPARISON_DATASETS, methods=None, seeds=(0, 1, 2, 3, 4),
                       regimes=REGIMES, quick: bool = False, cache_dir=None, store=None,
                       force: bool = False, progress: bool = True):
    r"""Every method selected by the same class-disjoint search, then scored over seeds.

    For each data set and method, :class:`geoalign.model_selection.ClassDisjointSearchCV`
    (3 class-disjoint folds of the seen classes, score = held-out-class mAP@all,
    estimator seed 0) picks the best of the method's :data:`SEARCH_GRIDS` (4
    candidates each; every axis holds the library default, and the other parameters
    are the library defaults).  The chosen setting is then trained once per seed in
    each regime and scored on the unseen classes:

    * ``"inductive"`` — every seen pair;
    * ``"semi-paired 5%"`` — 5 % of the seen pairs; the other seen samples are split
      into two disjoint halves given as ``unpaired_a``/``unpaired_b`` (methods of
      :data:`UNPAIRED_METHODS` only: the others cannot use unpaired data and train on
      the 5 % alone);
    * ``"transductive"`` — every seen pair plus the unseen inputs as unpaired data
      (disjoint halves of the unseen samples, so no partner is present; methods of
      :data:`UNPAIRED_METHODS` only, the others are their inductive selves and are
      marked ``uses_unpaired=False``).

    The non-inductive regimes reuse the inductive selection.  In the inductive regime
    the library defaults are also trained over the same seeds (``*_defaults``
    columns), and CCA tuned on the unseen test classes over :data:`ORACLE_CCA_GRID`
    (``oracle_*`` columns of the CCA rows: an upper bound, not a selection).
    Scores: class-level ``map_all`` and instance-level ``R@1``/``R@10`` of the true
    partner (mean of both directions), each as ``<score>`` (mean over seeds) and
    ``<score>_std`` (sample standard deviation).

    Parameters
    ----------
    datasets : sequence of str
        Names for :func:`load_comparison_data`.
    methods : sequence of str, optional
        Keys of :data:`SEARCH_GRIDS` (default all).
    seeds : sequence of int
    regimes : sequence of str
        Members of :data:`REGIMES`.
    quick : bool
        One candidate per method (the first grid value of every axis) and a tenth of
        the epochs: a check that everything runs, not a result.
    cache_dir : path, optional
        ``cache_dir`` of the searches (one folder per data set and method): finished
        search folds survive an interruption.
    store : path, optional
        Folder of :class:`CellStore` files: every selection and trained model is
        stored there as it finishes (atomically), and a rerun with the same settings
        computes only the missing cells.  :data:`STORED_CELLS` holds the paper's.
    force : bool
        Ignore stored cells and recompute (they are then overwritten).
    progress : bool
        tqdm bar over the (data set, method) pairs, with the current step.

    Returns
    -------
    pandas.DataFrame
        One row per (data set, regime, method), with ``params`` (the selection),
        ``default_params`` (the library defaults on the same grid axes), ``val_map_all`` (its validation score), ``default_val_map_all`` (the
        defaults' validation score, when they are a candidate), ``uses_unpaired``,
        ``n_seeds``, the scores, ``search_s`` and ``fit_s`` (mean training time).
    """
    import pandas as pd
    from sklearn.base import clone
    from tqdm.auto import tqdm

    from .model_selection import ClassDisjointSearchCV

    names = list(SEARCH_GRIDS) if methods is None else _method_names(methods)
    unknown = [m for m in names if m not in SEARCH_GRIDS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; available: {list(SEARCH_GRIDS)}")
    bad = [r for r in regimes if r not in REGIMES]
    if bad:
        raise ValueError(f"unknown regime(s) {bad}; available: {list(REGIMES)}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    rows = []
    pairs = [(d, m) for d in datasets for m in names]
    bar = tqdm(pairs, desc="select and compare", disable=not progress)
    loaded: dict[str, ZeroShotData] = {}
    for dname, mname in bar:
        data = loaded.setdefault(dname, load_comparison_data(dname, seed=0))
        base = _base_estimator(mname, data, quick)
        grid = SEARCH_GRIDS[mname] if not quick else {k: v[:1] for k, v in SEARCH_GRIDS[mname].items()}
        base_params = base.get_params(deep=False)
        settings = {"grid": grid, "n_folds": 3, "scoring": "map_all", "quick": quick,
                    "estimator": type(base).__name__, "base_params": base_params}
        cells = CellStore(store, dname, mname, settings, force=force)

        selection = cells.get(None)
        if selection is None:
            bar.set_postfix_str(f"{dname} {mname}: search")
            search = ClassDisjointSearchCV(
                base, grid, refit=False, progress=False,
                cache_dir=None if cache_dir is None else Path(cache_dir) / dname / mname)
            search.fit(data.X_a_train, data.X_b_train, data.y_train)
            cv = search.cv_results_
            selection = cells.put(None, {
                "best_params": search.best_params_, "best_score": search.best_score_,
                "search_s": search.search_time_,
                "cv_results": {"params": cv["params"], "mean_test_score": cv["mean_test_score"].tolist(),
                               "std_test_score": cv["std_test_score"].tolist(),
                               "mean_fit_time": cv["mean_fit_time"].tolist()},
                "folds": [f.tolist() for f in search.folds_]})
        chosen = dict(selection["best_params"])
        defaults = {k: base_params[k] for k in grid}
        cv = selection["cv_results"]
        default_val = next((s for p, s in zip(cv["params"], cv["mean_test_score"])
                            if _jsonable(p) == _jsonable(defaults)), float("nan"))

        def scored(regime: str, seed: int, params: dict) -> dict:
            key = _cell_key(regime, seed, params)
            cell = cells.get(key)
            if cell is None:
                bar.set_postfix_str(f"{dname} {mname}: {regime} seed {seed}")
                X_a, X_b, y, unpaired = _regime_data(data, regime, seed)
                model = clone(base).set_params(**params)
                if "random_state" in model.get_params():
                    model.set_params(random_state=seed)
                extra = ({"unpaired_a": unpaired[0], "unpaired_b": unpaired[1]}
                         if unpaired is not None and mname in UNPAIRED_METHODS else {})
                t0 = time.perf_counter()
                model.fit(X_a, X_b, y, **extra)
                fit_s = time.perf_counter() - t0
                cell = cells.put(key, {"regime": regime, "seed": seed, "params": params, "fit_s": fit_s,
                                       **_test_scores(model, data)})
            return cell

        done: dict = {}
        for regime in regimes:
            uses_unpaired = regime == "inductive" or mname in UNPAIRED_METHODS
            if regime == "transductive" and not uses_unpaired:
                # no unpaired data can enter: the same models as the inductive regime
                results = [scored("inductive", s, chosen) for s in seeds]
            else:
                results = [scored(regime, s, chosen) for s in seeds]
            row = {"dataset": dname, "regime": regime, "method": mname, "params": chosen,
                   "default_params": defaults, "val_map_all": selection["best_score"], "default_val_map_all": default_val,
                   "uses_unpaired": uses_unpaired, "n_seeds": len(seeds), **_summarize(results),
                   "search_s": selection["search_s"],
                   "fit_s": float(np.mean([c["fit_s"] for c in results]))}
            if regime == "inductive":
                row.update(_summarize([scored("inductive", s, defaults) for s in seeds], "_defaults"))
                if mname == "CCA":
                    row.update(_oracle_cca(data, cells))
            rows.append(row)
            done[regime] = row
    bar.close()
    return pd.DataFrame(rows)


def _oracle_cca(data: ZeroShotData, cells: CellStore) -> dict:
    """CCA tuned on the unseen test classes over :data:`ORACLE_CCA_GRID` (stored as one cell)."""
    from sklearn.model_selection import ParameterGrid

    from .models.linear import CCA

    cell = cells.get("oracle")
    if cell is None:
        best = None
        for params in ParameterGrid(ORACLE_CCA_GRID):
            scores = _test_scores(CCA(**params).fit(data.X_a_train, data.X_b_train), data)
            if best is None or scores["map_all"] > best["map_all"]:
                best = {**scores, "params": params}
        cell = cells.put("oracle", {**best, "grid": ORACLE_CCA_GRID})
    return {"oracle_params": cell["params"], **{f"oracle_{k}": cell[k] for k in ("map_all", "R@1", "R@10")}}


def main(argv=None) -> int:
    """``python -m geoalign.comparison [--quick] [--out FILE.csv] [--datasets ...] [--methods ...]``.

    With ``--selected`` it runs :func:`select_and_compare` instead, storing its cells in
    ``--store`` (default :data:`STORED_CELLS`, the paper's): an interrupted run resumes.
    """
    parser = argparse.ArgumentParser(prog="python -m geoalign.comparison", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", nargs="+", default=None)
    parser.add_argument("--methods", nargs="+", default=None, choices=[*METHODS, *_OLD_LABELS])
    parser.add_argument("--out", help="write the table as CSV (atomically)")
    parser.add_argument("--selected", action="store_true",
                        help="every method selected by the same class-disjoint search (select_and_compare)")
    parser.add_argument("--store", default=None, help="folder of the stored cells (--selected)")
    parser.add_argument("--force", action="store_true", help="recompute stored cells (--selected)")
    args = parser.parse_args(argv)
    if args.selected:
        store = None if args.quick and args.store is None else (args.store or STORED_CELLS)
        table = select_and_compare(args.datasets or COMPARISON_DATASETS, args.methods, quick=args.quick,
                                   store=store, force=args.force,
                                   cache_dir=Path(".sweep_cache") / "comparison_search")
    else:
        table = compare_methods(args.datasets or ("digits", "planted"), args.methods, quick=args.quick,
                                seed=args.seed)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out:
        from ._io import atomic_write_text

        atomic_write_text(args.out, table.to_csv(index=False))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
