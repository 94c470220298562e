"""ClassDisjointSearchCV: class-disjoint folds, scores against a hand computation, refit,
cache/resume, parallel = serial, never a test class, clone of every estimator, bad input."""
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from sklearn.base import clone
from sklearn.model_selection import GroupKFold

from geoalign.comparison import load_comparison_data
from geoalign.evaluation import retrieval_scores
from geoalign.model_selection import SCORERS, ClassDisjointSearchCV, zero_shot_score
from geoalign.models import CCA, CFSA, ESZSL, QSMA, SSPC, LinearContrastive, UniCode

QUIET = {"progress": False}


@pytest.fixture(scope="module")
def digits():
    return load_comparison_data("digits")


class Recorder:
    """Wraps CCA; records the labels of every fit and the rows of every transform."""

    log: list = []

    def __init__(self, dim=2, reg=1e-3):
        self.dim = dim
        self.reg = reg

    def get_params(self, deep=True):
        return {"dim": self.dim, "reg": self.reg}

    def set_params(self, **p):
        for k, v in p.items():
            setattr(self, k, v)
        return self

    def fit(self, X_a, X_b, y=None):
        Recorder.log.append(("fit", np.unique(y).tolist(), X_a.copy()))
        self.model_ = CCA(self.dim, self.reg).fit(X_a, X_b)
        return self

    def transform_a(self, X):
        Recorder.log.append(("transform", None, np.asarray(X).copy()))
        return self.model_.transform_a(X)

    def transform_b(self, X):
        Recorder.log.append(("transform", None, np.asarray(X).copy()))
        return self.model_.transform_b(X)


def _rows_to_labels(data):
    """Map each view-a/view-b row of every digits sample (seen and unseen) to its label."""
    table = {}
    for X, y in ((data.X_a_train, data.y_train), (data.X_b_train, data.y_train),
                 (data.X_a_test, data.y_test), (data.X_b_test, data.y_test)):
        for row, label in zip(X, y):
            table.setdefault(row.tobytes(), set()).add(int(label))
    return table


def test_scores_match_a_hand_computed_class_disjoint_cv(digits):
    grid = {"dim": [2, 4, 8], "reg": [1e-2, 1e-1]}
    search = ClassDisjointSearchCV(CCA(), grid, n_folds=3, progress=False)
    search.fit(digits.X_a_train, digits.X_b_train, digits.y_train)
    y = digits.y_train
    folds = list(GroupKFold(n_splits=3).split(y, y, groups=y))
    for i, params in enumerate(search.cv_results_["params"]):
        scores = []
        for tr, te in folds:
            assert not set(y[tr]) & set(y[te])  # whole classes held out
            m = CCA(**params).fit(digits.X_a_train[tr], digits.X_b_train[tr])
            scores.append(retrieval_scores(m.transform_a(digits.X_a_train[te]),
                                            m.transform_b(digits.X_b_train[te]), y[te], y[te]).map_all)
        np.testing.assert_allclose([search.cv_results_[f"split{k}_test_score"][i] for k in range(3)],
                                   scores, rtol=1e-12)
    mean = search.cv_results_["mean_test_score"]
    assert search.best_index_ == int(np.argmax(mean)) and search.best_score_ == mean.max()
    assert search.best_params_ == search.cv_results_["params"][search.best_index_]
    assert search.cv_results_["rank_test_score"][search.best_index_] == 1
    frame = pd.DataFrame(search.cv_results_)
    assert len(frame) == 6 and {"param_dim", "param_reg", "std_test_score"} <= set(frame.columns)
    # held-out classes of the folds partition the seen classes
    held = np.concatenate(search.folds_)
    assert sorted(held.tolist()) == list(range(7)) and len(set(held.tolist())) == 7
    # refit on all seen data with the best parameters
    ref = CCA(**search.best_params_).fit(digits.X_a_train, digits.X_b_train)
    np.testing.assert_allclose(search.transform_a(digits.X_a_test), ref.transform_a(digits.X_a_test))
    assert search.score(digits.X_a_test, digits.X_b_test, digits.y_test) == pytest.approx(
        retrieval_scores(ref.transform_a(digits.X_a_test), ref.transform_b(digits.X_b_test),
                          digits.y_test, digits.y_test).map_all)


def test_never_touches_test_classes(digits):
    Recorder.log = []
    search = ClassDisjointSearchCV(Recorder(), {"dim": [2, 4]}, n_folds=3, progress=False)
    search.fit(digits.X_a_train, digits.X_b_train, digits.y_train)
    table = _rows_to_labels(digits)
    unseen = set(digits.unseen_classes.tolist())
    fits = [entry for entry in Recorder.log if entry[0] == "fit"]
    assert len(fits) == 2 * 3 + 1  # candidates x folds + refit
    for kind, labels, X in Recorder.log:
        if kind == "fit":
            assert not set(labels) & unseen
        row_labels = set().union(*(table[r.tobytes()] for r in X))
        assert not row_labels & unseen, f"{kind} saw rows of unseen classes {row_labels & unseen}"
    # in every fold, the classes scored were not among the classes trained on
    fold_fits = fits[:-1]
    for (_, trained, _), held in zip(fold_fits, search.folds_ * 2):
        assert not set(trained) & set(held.tolist())


def test_cache_keeps_finished_folds_and_resumes(digits, tmp_path):
    calls = {"n": 0}

    class Interrupting(Recorder):
        def fit(self, X_a, X_b, y=None):
            calls["n"] += 1
            if calls["n"] == 4:
                raise KeyboardInterrupt
            return super().fit(X_a, X_b, y)

    grid = {"dim": [2, 4]}
    with pytest.raises(KeyboardInterrupt):
        ClassDisjointSearchCV(Interrupting(), grid, cache_dir=tmp_path, progress=False).fit(
            digits.X_a_train, digits.X_b_train, digits.y_train)
    assert len(list(tmp_path.glob("*.json"))) == 3  # the 3 finished folds were kept
    calls["n"] = 100
    search = ClassDisjointSearchCV(Interrupting(), grid, cache_dir=tmp_path, progress=False).fit(
        digits.X_a_train, digits.X_b_train, digits.y_train)
    assert calls["n"] == 100 + 3 + 1  # only the 3 missing folds and the refit ran
    assert search.cv_results_["cached"].tolist() == [3, 0]
    fresh = ClassDisjointSearchCV(Recorder(), grid, progress=False).fit(
        digits.X_a_train, digits.X_b_train, digits.y_train)
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], fresh.cv_results_["mean_test_score"])
    # another grid value or other data -> other cache entries
    other = ClassDisjointSearchCV(Recorder(), {"dim": [3]}, cache_dir=tmp_path, progress=False).fit(
        digits.X_a_train, digits.X_b_train, digits.y_train)
    assert other.cv_results_["cached"].tolist() == [0]


def test_parallel_equals_serial_and_sampler(digits):
    import joblib

    dists = {"dim": [2, 4, 8], "reg": stats.loguniform(1e-3, 1.0)}
    kw = dict(param_distributions=dists, n_iter=4, random_state=3, progress=False, refit=False)
    serial = ClassDisjointSearchCV(CCA(), **kw).fit(digits.X_a_train, digits.X_b_train, digits.y_train)
    with joblib.parallel_config(backend="threading"):
        par = ClassDisjointSearchCV(CCA(), n_jobs=2, **kw).fit(digits.X_a_train, digits.X_b_train,
                                                                digits.y_train)
    assert len(serial.cv_results_["params"]) == 4
    assert serial.cv_results_["params"] == par.cv_results_["params"]
    np.testing.assert_allclose(serial.cv_results_["mean_test_score"], par.cv_results_["mean_test_score"])
    assert not hasattr(serial, "best_estimator_")
    # all-list spaces are sampled without replacement, n_iter capped at the space size
    small = ClassDisjointSearchCV(CCA(), param_distributions={"dim": [2, 4]}, n_iter=10,
                                  progress=False, refit=False).fit(digits.X_a_train, digits.X_b_train,
                                                                   digits.y_train)
    assert sorted(p["dim"] for p in small.cv_results_["params"]) == [2, 4]


@pytest.mark.parametrize("scoring", sorted(SCORERS))
def test_every_scoring(digits, scoring):
    m = CCA(dim=4, reg=0.1).fit(digits.X_a_train, digits.X_b_train)
    v = zero_shot_score(m, digits.X_a_test, digits.X_b_test, digits.y_test, scoring)
    za, zb = m.transform_a(digits.X_a_test), m.transform_b(digits.X_b_test)
    relevance, field = SCORERS[scoring]
    labels = (digits.y_test, digits.y_test) if relevance == "class" else (None, None)
    r = retrieval_scores(za, zb, *labels, ks=(1, 10))
    assert v == pytest.approx(r.map_all if field == "map_all" else r.mean.recall[int(field[2:])])


def _estimators(semantics):
    tiny = dict(max_epochs=1, batch_size=64, random_state=0, trainer_options=QUIET)
    return [QSMA(dim=4, hidden=8, n_layers=1, **tiny), SSPC(dim=4, hidden=8, queue_size=64, **tiny),
            UniCode(dim=4, n_codes=8, specific_dim=2, hidden=8, **tiny),
            LinearContrastive(dim=4, **tiny), CFSA(class_semantics=semantics, dim=4, hidden=8, **tiny),
            CCA(dim=2)]


def test_clone_and_search_every_alignment_estimator():
    from geoalign.data.planted import PlantedAlignment

    torch.set_num_threads(1)
    sample = PlantedAlignment(dim=8, shared_rank=2, private_ranks=(1, 1), n_classes=5,
                              random_state=0).sample(150)
    semantics = np.random.default_rng(0).normal(size=(5, 3))
    for est in _estimators(semantics):
        twin = clone(est)
        assert type(twin) is type(est) and twin is not est
        for k, v in est.get_params(deep=False).items():
            w = twin.get_params(deep=False)[k]
            assert (np.array_equal(v, w) if isinstance(v, np.ndarray) else v == w), (type(est), k)
        key = "dim"
        search = ClassDisjointSearchCV(est, {key: [2, 3]}, n_folds=2, progress=False)
        search.fit(sample.U, sample.V, sample.labels)
        assert search.best_params_[key] in (2, 3)
        assert search.transform_a(sample.U[:5]).shape == (5, search.best_params_[key])
    eszsl = clone(ESZSL(alpha=2.0))
    assert eszsl.get_params() == {"alpha": 2.0, "gamma": 1.0}
    with pytest.raises(ValueError, match="invalid parameter 'beta'"):
        eszsl.set_params(beta=1)


def test_bad_input(digits):
    X_a, X_b, y = digits.X_a_train, digits.X_b_train, digits.y_train
    few = np.isin(y, [0, 1, 2])
    with pytest.raises(ValueError, match=r"3 classes.*n_folds=3.*at least n_folds \+ 1 = 4"):
        ClassDisjointSearchCV(CCA(), {"dim": [2]}, progress=False).fit(X_a[few], X_b[few], y[few])
    with pytest.raises(ValueError, match=r"param_grid has keys \['width'\] that CCA does not have"):
        ClassDisjointSearchCV(CCA(), {"width": [2]}, progress=False).fit(X_a, X_b, y)
    with pytest.raises(ValueError, match=r"param_distributions has keys \['width'\]"):
        ClassDisjointSearchCV(CCA(), param_distributions={"width": [2]}, progress=False).fit(X_a, X_b, y)
    with pytest.raises(ValueError, match="scoring must be one of"):
        ClassDisjointSearchCV(CCA(), {"dim": [2]}, scoring="accuracy", progress=False).fit(X_a, X_b, y)
    with pytest.raises(ValueError, match="exactly one of param_grid and param_distributions"):
        ClassDisjointSearchCV(CCA(), progress=False).fit(X_a, X_b, y)
    with pytest.raises(ValueError, match="n_iter is only used with param_distributions"):
        ClassDisjointSearchCV(CCA(), {"dim": [2]}, n_iter=3, progress=False).fit(X_a, X_b, y)
    with pytest.raises(ValueError, match=r"param_grid\['dim'\] is empty"):
        ClassDisjointSearchCV(CCA(), {"dim": []}, progress=False).fit(X_a, X_b, y)
    with pytest.raises(ValueError, match="n_folds must be"):
        ClassDisjointSearchCV(CCA(), {"dim": [2]}, n_folds=1, progress=False).fit(X_a, X_b, y)
    with pytest.raises(ValueError, match="y .* is required"):
        ClassDisjointSearchCV(CCA(), {"dim": [2]}, progress=False).fit(X_a, X_b, None)
    with pytest.raises(ValueError, match="same number of samples: X_a has 1264, X_b has 1263"):
        ClassDisjointSearchCV(CCA(), {"dim": [2]}, progress=False).fit(X_a, X_b[:-1], y)
    bad = X_a.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="X_a contains 1 NaN"):
        ClassDisjointSearchCV(CCA(), {"dim": [2]}, progress=False).fit(bad, X_b, y)
    with pytest.raises(ValueError, match="integer class labels"):
        ClassDisjointSearchCV(CCA(), {"dim": [2]}, progress=False).fit(X_a, X_b, y + 0.5)
    with pytest.raises(RuntimeError, match="call fit"):
        ClassDisjointSearchCV(CCA(), {"dim": [2]}).transform_a(X_a)
