import numpy as np
import pytest
from scipy.io import savemat

from geoalign.data.xlsa17 import load_xlsa17

D, A, C = 6, 4, 6  # features, attributes, classes (classes 0-3 seen, 4-5 unseen)


def _make(root, name="CUB", *, n_per_class=10, mutate=None, seed=0):
    """Write res101.mat / att_splits.mat in the xlsa17 layout; return the arrays used."""
    rng = np.random.default_rng(seed)
    labels0 = np.repeat(np.arange(C), n_per_class)
    n = labels0.size
    features = rng.normal(size=(n, D)) + labels0[:, None]
    att = rng.normal(size=(A, C))
    idx = np.arange(n)
    seen = labels0 < 4
    seen_idx, unseen_idx = idx[seen], idx[~seen]
    test_seen = seen_idx[np.arange(seen_idx.size) % 5 == 0]
    trainval = np.setdiff1d(seen_idx, test_seen)
    train = trainval[labels0[trainval] < 3]
    val = trainval[labels0[trainval] == 3]
    res = {"features": features.T, "labels": (labels0 + 1)[:, None].astype(float)}
    splits = {"att": att, "trainval_loc": (trainval + 1)[:, None], "test_seen_loc": (test_seen + 1)[:, None],
              "test_unseen_loc": (unseen_idx + 1)[:, None], "train_loc": (train + 1)[:, None],
              "val_loc": (val + 1)[:, None]}
    if mutate is not None:
        mutate(res, splits)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    savemat(folder / "res101.mat", res)
    savemat(folder / "att_splits.mat", splits)
    return dict(features=features, labels=labels0, att=att, trainval=trainval, test_seen=test_seen,
                test_unseen=unseen_idx, train=train, val=val)


def test_proposed_split_test_mode(tmp_path):
    ref = _make(tmp_path)
    ds = load_xlsa17(tmp_path, "CUB", scaler="none", dtype=np.float64)
    np.testing.assert_allclose(ds.X_train, ref["features"][ref["trainval"]])
    np.testing.assert_array_equal(ds.y_train, ref["labels"][ref["trainval"]])
    np.testing.assert_allclose(ds.X_test_seen, ref["features"][ref["test_seen"]])
    np.testing.assert_array_equal(ds.y_test_unseen, ref["labels"][ref["test_unseen"]])
    np.testing.assert_allclose(ds.class_attributes, ref["att"].T)
    assert ds.seen_classes.tolist() == [0, 1, 2, 3] and ds.unseen_classes.tolist() == [4, 5]
    assert ds.seen_mask.tolist() == [True] * 4 + [False] * 2
    assert ds.X_train.shape[1] == D and ds.mode == "test"


@pytest.mark.parametrize("kind", ["minmax", "standard"])
def test_scaler_fitted_on_training_split_only(tmp_path, kind):
    ref = _make(tmp_path)
    ds = load_xlsa17(tmp_path, "CUB", scaler=kind, dtype=np.float64)
    tr = ref["features"][ref["trainval"]]
    if kind == "minmax":
        lo, hi = tr.min(0), tr.max(0)
        np.testing.assert_allclose(ds.X_train.min(0), 0, atol=1e-12)
        np.testing.assert_allclose(ds.X_train.max(0), 1, atol=1e-12)
        np.testing.assert_allclose(ds.X_test_unseen, (ref["features"][ref["test_unseen"]] - lo) / (hi - lo))
    else:
        np.testing.assert_allclose(ds.X_train.mean(0), 0, atol=1e-12)
        np.testing.assert_allclose(ds.X_test_seen,
                                   (ref["features"][ref["test_seen"]] - tr.mean(0)) / tr.std(0))
    # unseen features (shifted by their labels) are NOT mapped into [0, 1] / zero mean
    assert ds.X_test_unseen.mean() > ds.X_train.mean() + 0.1


def test_validation_mode_uses_no_test_samples(tmp_path):
    ref = _make(tmp_path)
    ds = load_xlsa17(tmp_path, "CUB", mode="validation", scaler="none", val_seen_fraction=0.25,
                     dtype=np.float64)
    assert ds.seen_classes.tolist() == [0, 1, 2] and ds.unseen_classes.tolist() == [3]
    feats = ref["features"]
    used = np.concatenate([ds.X_train, ds.X_test_seen, ds.X_test_unseen])
    allowed = feats[np.concatenate([ref["train"], ref["val"]])]
    assert all(np.any(np.all(np.isclose(allowed, row), axis=1)) for row in used)
    assert len(used) == len(ref["train"]) + len(ref["val"])
    assert set(ds.y_test_seen) == {0, 1, 2} and ds.n_overlap_dropped == 0


def test_train_loc_overlap_with_test_seen_is_reported(tmp_path):
    def leak(res, splits):
        extra = splits["test_seen_loc"][:3]  # test-seen samples of classes 0 (in train classes)
        splits["train_loc"] = np.concatenate([splits["train_loc"], extra])
    _make(tmp_path, mutate=leak)
    with pytest.warns(UserWarning, match="train_loc shares 3 samples with test_seen_loc"):
        ds = load_xlsa17(tmp_path, "CUB", mode="validation")
    assert ds.n_overlap_dropped == 3 and ds.info["n_train_test_seen_overlap"] == 3
    with pytest.raises(ValueError, match="shares 3 samples"):
        load_xlsa17(tmp_path, "CUB", mode="validation", overlap="raise")
    with pytest.warns(UserWarning, match="kept"):
        kept = load_xlsa17(tmp_path, "CUB", mode="validation", overlap="keep")
    assert len(kept.X_train) + len(kept.X_test_seen) == len(ds.X_train) + len(ds.X_test_seen) + 3


def _set(key, value_fn):
    def mutate(res, splits):
        target = res if key in ("features", "labels") else splits
        if value_fn is None:
            del target[key]
        else:
            target[key] = value_fn(target[key])
    return mutate


@pytest.mark.parametrize("mutate, exc, match", [
    (_set("features", None), KeyError, r"res101.mat .*no key 'features'"),
    (_set("labels", None), KeyError, r"res101.mat .*no key 'labels'"),
    (_set("att", None), KeyError, r"att_splits.mat .*no key 'att'"),
    (_set("test_unseen_loc", None), KeyError, "no key 'test_unseen_loc'"),
    (_set("features", lambda f: f.T), ValueError, r"'features' must have shape \(D, N\).*transposed"),
    (_set("features", lambda f: f[:, :-1]), ValueError, "'features' must have shape"),
    (_set("labels", lambda y: y - 1), ValueError, "'labels' has minimum 0.*1-based"),
    (_set("labels", lambda y: y + C), ValueError, r"'labels' has maximum .* > 6"),
    (_set("test_seen_loc", lambda i: i - 1), ValueError, "'test_seen_loc' has minimum 0.*1-based"),
    (_set("test_seen_loc", lambda i: i + 1000), ValueError, "'test_seen_loc' has maximum"),
    (_set("att", lambda a: a[:, :-1]), ValueError, r"'labels' has maximum 6 > 5"),
    (_set("trainval_loc", lambda i: np.hstack([i, i])), ValueError, "column vector"),
    (_set("trainval_loc", lambda i: i + 0.5), ValueError, "must hold integers"),
    (_set("trainval_loc", lambda i: np.vstack([i, i[:1]])), ValueError, "repeated"),
    (_set("features", lambda f: np.where(np.arange(f.shape[1]) == 2, np.nan, f)), ValueError, "NaN"),
])
def test_validation_errors_name_file_and_key(tmp_path, mutate, exc, match):
    _make(tmp_path, mutate=mutate)
    with pytest.raises(exc, match=match):
        load_xlsa17(tmp_path, "CUB")


def test_split_leaks_are_rejected(tmp_path):
    def leak(res, splits):
        splits["trainval_loc"] = np.vstack([splits["trainval_loc"], splits["test_seen_loc"][:1]])
    _make(tmp_path, mutate=leak)
    with pytest.raises(ValueError, match="trainval_loc and test_seen_loc share 1 samples"):
        load_xlsa17(tmp_path, "CUB")

    def unseen_in_train(res, splits):
        splits["trainval_loc"] = np.vstack([splits["trainval_loc"], splits["test_unseen_loc"][:1]])
        splits["test_unseen_loc"] = splits["test_unseen_loc"][1:]
    _make(tmp_path / "b", mutate=unseen_in_train)
    with pytest.raises(ValueError, match="test_unseen_loc contains classes seen in trainval_loc"):
        load_xlsa17(tmp_path / "b", "CUB")


def test_missing_things(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder not found"):
        load_xlsa17(tmp_path, "AWA2")
    (tmp_path / "SUN").mkdir()
    with pytest.raises(FileNotFoundError, match="res101.mat"):
        load_xlsa17(tmp_path, "SUN")
    _make(tmp_path, name="APY", mutate=_set("val_loc", None))
    assert load_xlsa17(tmp_path, "APY").X_train.shape[0] > 0  # test mode does not need val_loc
    with pytest.raises(KeyError, match=r"no key\(s\) \['val_loc'\].*validation"):
        load_xlsa17(tmp_path, "APY", mode="validation")
    with pytest.raises(ValueError, match="scaler"):
        load_xlsa17(tmp_path, "APY", scaler="robust")


def test_normalized_attributes(tmp_path):
    _make(tmp_path)
    ds = load_xlsa17(tmp_path, "CUB", normalize_attributes=True)
    np.testing.assert_allclose(np.linalg.norm(ds.class_attributes, axis=1), 1.0)
    assert ds.X_train.dtype == np.float32
