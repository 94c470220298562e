import warnings

import numpy as np
import pandas as pd
import pytest

from geoalign.comparison import METHODS, compare_methods, load_comparison_data, main


def test_zero_shot_data_is_class_disjoint():
    for name in ("digits", "planted"):
        d = load_comparison_data(name)
        assert not set(np.unique(d.y_train)) & set(np.unique(d.y_test))
        assert set(np.unique(d.y_test)) == set(d.unseen_classes.tolist())
        assert d.semantics.shape[0] > d.y_test.max()


def test_compare_linear_methods_beats_chance():
    table = compare_methods(("planted",), ["CCA", "ESZSL"], quick=True, progress=False)
    assert list(table.method) == ["CCA", "ESZSL"]
    assert {"map_all", "R@1", "R@5", "R@10", "zsl_acc", "train_s"} <= set(table.columns)
    # 3 unseen classes: chance mAP@all ~ 1/3, chance accuracy 1/3
    assert (table.map_all > 0.45).all() and (table.zsl_acc > 0.5).all()
    assert (table["R@1"] <= table["R@5"]).all() and (table["R@5"] <= table["R@10"]).all()


def test_unknown_method_and_dataset():
    with pytest.raises(ValueError, match="unknown method"):
        compare_methods(("planted",), ["nope"], progress=False)
    with pytest.raises(ValueError, match="unknown data set"):
        load_comparison_data("imagenet")


def test_cli_writes_csv(tmp_path, capsys):
    out = tmp_path / "t.csv"
    assert main(["--quick", "--datasets", "planted", "--methods", "CCA", "--out", str(out)]) == 0
    assert "CCA" in capsys.readouterr().out and out.read_text().startswith("dataset,method")


def test_every_method_is_registered():
    assert {"QSMA", "SSPC", "CFSA", "UniCode", "CCA", "ESZSL"} <= set(METHODS)


def test_digits_problems_are_three_views_of_the_same_images():
    from geoalign.comparison import DIGITS_PROBLEMS
    from geoalign.data.digits import load_digits_two_view

    ref = load_digits_two_view(scale="unit")
    lr = load_comparison_data("digits")
    np.testing.assert_array_equal(lr.X_a_train, ref.X_a_train)
    np.testing.assert_array_equal(lr.X_b_test, ref.X_b_test)
    tb = load_comparison_data("digits_tb")
    img = np.concatenate([tb.X_a_train.reshape(-1, 4, 8), tb.X_b_train.reshape(-1, 4, 8)], axis=1)
    np.testing.assert_array_equal(img[:, :, :4].reshape(-1, 32), ref.X_a_train)
    hog = load_comparison_data("digits_hog")
    assert hog.X_a_train.shape[1] == 64 and hog.X_b_train.shape[1] == 96
    assert set(DIGITS_PROBLEMS) == {"digits", "digits_tb", "digits_hog"}
    for d in (tb, hog):
        np.testing.assert_array_equal(d.y_train, ref.y_train)


def test_orientation_histograms_against_a_pixel_loop():
    from geoalign.comparison import orientation_histograms

    rng = np.random.default_rng(0)
    images = rng.integers(0, 17, size=(3, 8, 8))
    got = orientation_histograms(images, n_bins=6, cell=2)
    img = images / 16.0
    for n in range(3):
        hist = np.zeros((4, 4, 6))
        for i in range(8):
            for j in range(8):
                gy = (img[n, min(i + 1, 7), j] - img[n, max(i - 1, 0), j]) / (2 if 0 < i < 7 else 1)
                gx = (img[n, i, min(j + 1, 7)] - img[n, i, max(j - 1, 0)]) / (2 if 0 < j < 7 else 1)
                theta = np.arctan2(gy, gx) % np.pi
                b = min(int(theta / np.pi * 6), 5)
                hist[i // 2, j // 2, b] += np.hypot(gx, gy)
        np.testing.assert_allclose(got[n], np.sqrt(hist.ravel()), atol=1e-12)
    with pytest.raises(ValueError, match="cells"):
        orientation_histograms(images, cell=3)


def test_select_and_compare_selects_then_scores_over_seeds():
    from geoalign.comparison import SEARCH_GRIDS, TwoViewESZSL, select_and_compare
    from geoalign.model_selection import ClassDisjointSearchCV
    from geoalign.models import CCA

    table = select_and_compare(("planted",), ["CCA", "ESZSL"], seeds=(0, 1),
                               regimes=("inductive", "semi-paired 5%", "transductive"), progress=False)
    assert len(table) == 6 and (table.n_seeds == 2).all()
    assert {"map_all", "map_all_std", "R@1", "R@1_std", "R@10", "R@10_std", "val_map_all"} <= set(table.columns)
    assert all(len(SEARCH_GRIDS[m]) and all(len(v) == 2 for v in SEARCH_GRIDS[m].values()) for m in SEARCH_GRIDS)
    data = load_comparison_data("planted")
    search = ClassDisjointSearchCV(CCA(dim=4, reg=1e-2), SEARCH_GRIDS["CCA"], progress=False, refit=False)
    search.fit(data.X_a_train, data.X_b_train, data.y_train)
    cca = table[(table.method == "CCA") & (table.regime == "inductive")].iloc[0]
    assert cca.params == search.best_params_ and cca.val_map_all == pytest.approx(search.best_score_)
    from geoalign.evaluation import retrieval_scores

    m = CCA(**search.best_params_).fit(data.X_a_train, data.X_b_train)
    assert cca.map_all == pytest.approx(retrieval_scores(m.transform_a(data.X_a_test), m.transform_b(data.X_b_test),
                                                          data.y_test, data.y_test).map_all)
    # CCA cannot use unpaired data: transductive = inductive; from 5% of the pairs it finds
    # the true partners less often
    trans = table[(table.method == "CCA") & (table.regime == "transductive")].iloc[0]
    semi = table[(table.method == "CCA") & (table.regime == "semi-paired 5%")].iloc[0]
    assert trans.map_all == cca.map_all and semi["R@10"] < cca["R@10"]
    with pytest.raises(ValueError, match="TwoViewESZSL needs semantics"):
        TwoViewESZSL().fit(data.X_a_train, data.X_b_train, data.y_train)
    with pytest.raises(ValueError, match="unknown regime"):
        select_and_compare(("planted",), ["CCA"], regimes=("online",), progress=False)
    with pytest.raises(ValueError, match="unknown method"):
        select_and_compare(("planted",), ["PCA"], progress=False)


def _counting_cca_fit(monkeypatch, fail_at=None):
    """Count CCA fits (and raise on call number ``fail_at``: an interrupted run)."""
    from geoalign.models.linear import CCA

    calls = {"n": 0}
    original = CCA.fit

    def fit(self, *args, **kwargs):
        calls["n"] += 1
        if fail_at is not None and calls["n"] == fail_at:
            raise KeyboardInterrupt("interrupted")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CCA, "fit", fit)
    return calls


def test_select_and_compare_stores_cells_and_resumes(tmp_path, monkeypatch):
    import json

    import pandas as pd

    from geoalign import __version__
    from geoalign.comparison import select_and_compare

    import geoalign.comparison

    monkeypatch.setattr(geoalign.comparison, "ORACLE_CCA_GRID", {"dim": [2, 8], "reg": [1e-3, 1e-1]})  # the search grid
    kw = dict(datasets=("planted",), methods=["CCA"], seeds=(0, 1), regimes=("inductive", "transductive"),
              progress=False)
    with monkeypatch.context() as m:
        calls = _counting_cca_fit(m)
        reference = select_and_compare(store=tmp_path / "fresh", **kw)
        n_total = calls["n"]
    # interrupted after the search (12 fits) and the first trained model: those are kept
    with monkeypatch.context() as m:
        _counting_cca_fit(m, fail_at=14)
        with pytest.raises(KeyboardInterrupt):
            select_and_compare(store=tmp_path / "cells", **kw)
    stored = json.loads((tmp_path / "cells" / "planted" / "CCA.json").read_text())
    assert stored["selection"]["best_params"] and len(stored["cells"]) == 1
    for entry in [stored["selection"], *stored["cells"].values()]:
        assert entry["version"] == __version__ and len(entry["settings_sha256"]) == 16
    assert stored["settings"]["grid"] == {"dim": [2, 8], "reg": [0.001, 0.1]}
    with monkeypatch.context() as m:
        calls = _counting_cca_fit(m)
        resumed = select_and_compare(store=tmp_path / "cells", **kw)
        assert calls["n"] == n_total - 13  # only the missing cells
    timing = ["search_s", "fit_s"]
    pd.testing.assert_frame_equal(resumed.drop(columns=timing), reference.drop(columns=timing))
    with monkeypatch.context() as m:
        calls = _counting_cca_fit(m)
        again = select_and_compare(store=tmp_path / "cells", **kw)
        assert calls["n"] == 0  # everything stored
        select_and_compare(store=tmp_path / "cells", force=True, **kw)
        assert calls["n"] == n_total  # force: recomputed
        # other settings (the quick grid) do not reuse cells made with the full grid
        select_and_compare(store=tmp_path / "cells", quick=True, **kw)
        assert calls["n"] > n_total
    pd.testing.assert_frame_equal(again.drop(columns=timing), reference.drop(columns=timing))
    row = reference[reference.regime == "inductive"].iloc[0]
    # the oracle CCA is tuned on the test classes: at least as good there as the selection
    assert row.oracle_map_all >= row.map_all and row.default_params == {"dim": 2, "reg": 1e-3}
    assert row.map_all_defaults_std == 0.0  # CCA is deterministic


def test_stored_cells_of_the_paper_are_complete_and_consistent():
    """The repository's stored comparison: every cell, 5 seeds, settings and versions recorded."""
    import json

    from geoalign.comparison import COMPARISON_DATASETS, SEARCH_GRIDS, STORED_CELLS

    for dataset in COMPARISON_DATASETS:
        for method in SEARCH_GRIDS:
            path = STORED_CELLS / dataset / f"{method}.json"
            assert path.exists(), f"missing stored cells {path}: run python -m geoalign.comparison --selected"
            content = json.loads(path.read_text())
            assert content["settings"]["grid"] == json.loads(json.dumps(SEARCH_GRIDS[method]))
            assert not content["settings"]["quick"]
            sel = content["selection"]
            assert len(sel["cv_results"]["params"]) == 4 and sel["best_params"] in sel["cv_results"]["params"]
            seeds = {c["seed"] for c in content["cells"].values() if "seed" in c}
            assert seeds == {0, 1, 2, 3, 4}
            for cell in content["cells"].values():
                assert 0.0 <= cell["map_all"] <= 1.0 and cell["R@1"] <= cell["R@10"]


def test_old_method_labels_and_old_cell_files_still_work(tmp_path, monkeypatch):
    """Methods are labelled by class name; "CLIP-linear"/"Uni-Code" (and stores holding
    CLIP-linear.json) still work with a deprecation warning, and the stored cells stay hits."""
    import shutil

    from geoalign._warnings import GeoalignDeprecationWarning
    from geoalign.comparison import STORED_CELLS, _method_names, select_and_compare
    from geoalign.models.contrastive import LinearContrastive

    def refuse(self, *args, **kwargs):
        raise AssertionError("a stored cell was not found: LinearContrastive.fit called")

    monkeypatch.setattr(LinearContrastive, "fit", refuse)
    for name in ("old", "new"):
        (tmp_path / name / "planted").mkdir(parents=True)
    shutil.copy(STORED_CELLS / "planted" / "LinearContrastive.json", tmp_path / "old" / "planted" / "CLIP-linear.json")
    shutil.copy(STORED_CELLS / "planted" / "LinearContrastive.json", tmp_path / "new" / "planted")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = select_and_compare(("planted",), ["LinearContrastive"], store=tmp_path / "new", progress=False)
    with pytest.warns(GeoalignDeprecationWarning) as record:
        old = select_and_compare(("planted",), ["CLIP-linear"], store=tmp_path / "old", progress=False)
    messages = [str(w.message) for w in record]
    assert any("the method label 'CLIP-linear' is deprecated; use 'LinearContrastive'" in m for m in messages)
    assert any("CLIP-linear.json (the file name of the old label" in m for m in messages)
    assert set(old.method) == {"LinearContrastive"}
    pd.testing.assert_frame_equal(old, new)
    with pytest.warns(GeoalignDeprecationWarning, match="'Uni-Code' is deprecated; use 'UniCode'"):
        assert _method_names(["QSMA", "Uni-Code"]) == ["QSMA", "UniCode"]
