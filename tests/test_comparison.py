import numpy as np
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
    assert {"QSMA", "SSPC", "CFSA", "Uni-Code", "CCA", "ESZSL"} <= set(METHODS)
