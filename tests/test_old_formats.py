"""Files written before the "metric" -> "score" rename still load, with one warning each.

In geoalign a *metric* is a distance between points; evaluation results are *scores*.  The
rename touched keys and columns stored on disk: a sweep cell's ``"metrics"`` (now
``"scores"``), the saved sweep frame's ``metric`` column (now ``score``) and the trainer's
``best_metric`` (now ``best_score``) in checkpoints and model files.  Each test writes a small
file in the old format (the new writer's output with the old name put back, which is exactly
what the old writer produced) and loads it.
"""
import importlib
import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from geoalign._warnings import GeoalignDeprecationWarning
from geoalign.sweep import Grid, cell_key, load_results, run_sweep
from geoalign.train import Trainer, TrainingHistory


def affine(a, b, seed=0):
    return {"sum": a + b + seed, "prod": a * b}


def _to_old_cache(cache_dir):
    """Rewrite every cached record as the old writer did: rows hold ``"metrics"``."""
    files = sorted(cache_dir.glob("*.json"))
    for f in files:
        rec = json.loads(f.read_text())
        for row in rec["rows"]:
            row["metrics"] = row.pop("scores")
        f.write_text(json.dumps(rec))
    return files


def test_cell_key_is_unchanged_by_the_rename():
    # the value the key had before the rename (the stored name of the scores is not hashed)
    assert cell_key("m:f@version=1", {"a": 1, "b": 2.5}, 3) == "ecbcdf7746b7ebf55804f7dc8af94d42"


def test_old_sweep_cache_cells_stay_hits(tmp_path):
    grid = Grid(product={"a": [1, 2], "b": [3]}, seeds=[0, 1])
    first = run_sweep(affine, grid, cache_dir=tmp_path, progress=False, verbose=False)
    assert first.summary.done == 4
    files = _to_old_cache(tmp_path)
    assert len(files) == 4 and all('"metrics"' in f.read_text() for f in files)
    with pytest.warns(GeoalignDeprecationWarning, match="4 cached cell.*old key 'metrics'") as record:
        again = run_sweep(affine, grid, cache_dir=tmp_path, progress=False, verbose=False)
    assert len([w for w in record if issubclass(w.category, GeoalignDeprecationWarning)]) == 1
    assert again.summary.cached == 4 and again.summary.done == 0  # hits, not recomputed
    cols = ["a", "b", "seed", "score", "value"]

    def ordered(f):  # the cache stores each cell's scores with sorted keys
        return f[cols].sort_values(cols).reset_index(drop=True)

    pd.testing.assert_frame_equal(ordered(again.frame), ordered(first.frame))
    # a fresh cache warns about nothing
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_sweep(affine, grid, cache_dir=tmp_path / "new", progress=False, verbose=False)


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_old_sweep_results_file_loads(tmp_path, kind, monkeypatch):
    import sys

    with monkeypatch.context() as m:
        if kind == "csv":
            m.setitem(sys.modules, "pyarrow", None)  # run_sweep then writes CSV
        res = run_sweep(affine, Grid(product={"a": [1, 2], "b": [3]}), out=tmp_path, progress=False,
                        verbose=False)
    assert res.path.suffix == f".{kind}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = load_results(tmp_path)  # the folder: sweep.json names the file
    cols = ["a", "b", "seed", "score", "value"]
    pd.testing.assert_frame_equal(new[cols], res.frame[cols], check_dtype=False)
    # the old writer's file: the same frame with the column called "metric"
    old_path = tmp_path / f"old.{kind}"
    old = res.frame.rename(columns={"score": "metric"})
    old.to_csv(old_path, index=False) if kind == "csv" else old.to_parquet(old_path, index=False)
    with pytest.warns(GeoalignDeprecationWarning, match="old column name 'metric'"):
        back = load_results(old_path)
    assert "metric" not in back.columns
    pd.testing.assert_frame_equal(back[cols], res.frame[cols], check_dtype=False)


def test_load_results_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no sweep.json"):
        load_results(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_results(tmp_path / "results.parquet")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(ValueError, match="path must be"):
        load_results(tmp_path / "x.txt")


class _Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2).double()

    def training_loss(self, batch):
        return ((self.lin(batch[0]) - batch[1]) ** 2).sum(1).mean(), {}


def test_old_checkpoint_resumes(tmp_path):
    rng = np.random.default_rng(0)
    X_a, X_b = rng.normal(size=(40, 3)), rng.normal(size=(40, 2))
    opts = dict(max_epochs=4, batch_size=8, lr=0.05, progress=False)
    torch.manual_seed(0)
    full = Trainer(**opts).fit(_Linear(), (X_a, X_b))

    class Interrupt(Exception):
        pass

    def stop_after_2(trainer, epoch, record):
        if epoch == 2:
            raise Interrupt

    torch.manual_seed(0)
    with pytest.raises(Interrupt):
        Trainer(**opts, checkpoint_dir=tmp_path, callbacks=[stop_after_2]).fit(_Linear(), (X_a, X_b))
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    ckpt["state"]["best_metric"] = ckpt["state"].pop("best_score")
    torch.save(ckpt, tmp_path / "last.pt")
    torch.manual_seed(0)
    with pytest.warns(GeoalignDeprecationWarning, match="old key 'best_metric'"):
        h4 = Trainer(**opts, checkpoint_dir=tmp_path).fit(_Linear(), (X_a, X_b))
    assert h4.resumed_from_epoch == 2 and h4.epochs_run == 4
    assert h4.best_score == min(r["train_loss"] for r in h4.records) == full.best_score
    assert [r["train_loss"] for r in h4.records] == [r["train_loss"] for r in full.records]


def test_old_model_file_loads(tmp_path):
    from geoalign.models import LinearContrastive

    rng = np.random.default_rng(0)
    X_a, X_b = rng.normal(size=(30, 5)), rng.normal(size=(30, 4))
    model = LinearContrastive(dim=3, max_epochs=2, batch_size=10,
                              trainer_options={"progress": False}).fit(X_a, X_b)
    path = model.save(tmp_path / "m.pt")
    state = torch.load(path, weights_only=True)
    state["history"]["best_metric"] = state["history"].pop("best_score")
    torch.save(state, path)
    with pytest.warns(GeoalignDeprecationWarning, match="old key 'best_metric'"):
        back = LinearContrastive.load(path)
    assert back.history_.best_score == model.history_.best_score is not None
    np.testing.assert_array_equal(back.transform_a(X_a), model.transform_a(X_a))


def test_training_history_best_metric_is_a_deprecated_alias():
    h = TrainingHistory(best_score=0.5)
    with pytest.warns(GeoalignDeprecationWarning, match="TrainingHistory.best_metric is deprecated; "
                                                        "use TrainingHistory.best_score"):
        assert h.best_metric == 0.5
    with pytest.warns(GeoalignDeprecationWarning):
        h.best_metric = 0.25
    assert h.best_score == 0.25


# ----------------------------------------------------------------------------- geoalign.metrics
OLD_METRICS_NAMES = ["per_class_accuracy", "zsl_accuracy", "calibrated_stacking", "GZSLResult",
                     "GammaSelection", "select_gamma", "evaluate_gzsl", "DirectionalRetrieval",
                     "RetrievalResult", "retrieval_metrics"]


@pytest.mark.parametrize("name", OLD_METRICS_NAMES)
def test_geoalign_metrics_module_is_a_deprecated_alias(name):
    old = importlib.import_module("geoalign.metrics")
    import geoalign.evaluation as new

    new_name = "retrieval_scores" if name == "retrieval_metrics" else name
    with pytest.warns(GeoalignDeprecationWarning,
                      match=f"geoalign.metrics.{name} is deprecated; use geoalign.evaluation.{new_name}"):
        obj = getattr(old, name)
    assert obj is getattr(new, new_name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError, match="no attribute 'nope'"):
            old.nope  # noqa: B018


def test_top_level_retrieval_metrics_is_a_deprecated_alias():
    import geoalign

    with pytest.warns(GeoalignDeprecationWarning, match="geoalign.retrieval_metrics is deprecated; "
                                                        "use geoalign.retrieval_scores"):
        f = geoalign.retrieval_metrics
    assert f is geoalign.retrieval_scores
    assert "retrieval_metrics" not in geoalign.__all__ and "retrieval_scores" in geoalign.__all__
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 4))
    assert f(a, a).mean.recall[1] == 1.0
