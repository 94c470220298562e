r"""Method comparison on the zero-shot splits: QSMA, SSPC, CFSA, Uni-Code, CCA, ESZSL, CLIP-linear.

Every method is trained on the *seen* classes only and evaluated on the
*unseen* classes of the same data set:

* **digits** — scikit-learn's digits as two views (left half ↔ right half),
  classes 0–6 seen, 7–9 unseen (design.md §3);
* **planted** — :class:`geoalign.data.planted.PlantedAlignment` with 3 of 10
  classes held out.

Metrics (:func:`geoalign.metrics.retrieval_metrics`, label-based relevance,
mean of both directions): mAP@all, R@1/5/10 on the unseen test pairs.  The
zero-shot classification accuracy column uses one protocol for every method:
the unseen test pairs are split in half; class prototypes are the normalised
mean view-b embeddings of the first half, and the view-a embeddings of the
second half are classified by the nearest prototype (cosine), scored by
:func:`geoalign.metrics.per_class_accuracy` (per-class mean top-1).  No method sees
an unseen sample during training or model selection; hyperparameters are the
fixed defaults written here (not tuned on the test classes).

ESZSL needs class semantics: it is fitted once per view against the class
semantics (digits: rendered numerals, :func:`geoalign.models.cfsa.digit_glyph_semantics`;
planted: a fixed linear map of the class centres), and both views are compared
in the semantic space.  CFSA uses the same semantics.

Run ``python -m geoalign.comparison [--quick] [--out table.csv]``; the paper's
table is the ``comparison`` entry of ``geoalign figures``.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any, Callable

import numpy as np

__all__ = ["ZeroShotData", "load_comparison_data", "METHODS", "QSMA_PAPER_PARAMS", "compare_methods", "main"]


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


def _clip_linear(data, quick, seed):
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


METHODS: dict[str, Callable] = {
    "QSMA": _estimator_method(_qsma),
    "SSPC": _estimator_method(_sspc),
    "CFSA": _estimator_method(_cfsa),
    "Uni-Code": _estimator_method(_unicode),
    "CLIP-linear": _estimator_method(_clip_linear),
    "CCA": _estimator_method(_cca),
    "ESZSL": _eszsl,
}


def _prototype_zsl(Za, Zb, y, seed: int) -> float:
    """Nearest-prototype accuracy: prototypes from half the unseen view-b embeddings."""
    from .metrics import per_class_accuracy

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

    from .metrics import retrieval_metrics

    names = list(METHODS) if methods is None else list(methods)
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
        res = retrieval_metrics(Za, Zb, data.y_test, data.y_test)
        rows.append({"dataset": dname, "method": mname, "map_all": res.map_all,
                     "R@1": res.mean.recall[1], "R@5": res.mean.recall[5],
                     "R@10": res.mean.recall[10], "zsl_acc": _prototype_zsl(Za, Zb, data.y_test, seed),
                     "train_s": train_s})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    """``python -m geoalign.comparison [--quick] [--out FILE.csv] [--datasets ...] [--methods ...]``."""
    parser = argparse.ArgumentParser(prog="python -m geoalign.comparison", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", nargs="+", default=["digits", "planted"])
    parser.add_argument("--methods", nargs="+", default=None, choices=list(METHODS))
    parser.add_argument("--out", help="write the table as CSV (atomically)")
    args = parser.parse_args(argv)
    table = compare_methods(args.datasets, args.methods, quick=args.quick, seed=args.seed)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out:
        from ._io import atomic_write_text

        atomic_write_text(args.out, table.to_csv(index=False))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
