"""LinearContrastive / AlignmentEstimator API and the `train` / `eval` CLI end to end."""
import argparse
import json

import numpy as np
import pytest
import torch

from geoalign.models.base import AlignmentEstimator, NotFittedError, get_model_class
from geoalign.models.contrastive import LinearContrastive, symmetric_info_nce
from geoalign.evaluation import retrieval_scores
from geoalign.cli.train import (configure_eval_parser, configure_train_parser, load_config,
                                run_eval_cli, run_train_cli)
from geoalign.data.sources import load_dataset


def planted(n=200, d_a=12, d_b=9, k=3, noise=0.05, seed=0, n_classes=4):
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n, k))
    X_a = s @ rng.normal(size=(k, d_a)) + noise * rng.normal(size=(n, d_a))
    X_b = s @ rng.normal(size=(k, d_b)) + noise * rng.normal(size=(n, d_b))
    return X_a, X_b, rng.integers(0, n_classes, size=n)


def small(**kw):
    base = dict(dim=6, max_epochs=12, batch_size=50, lr=0.02, random_state=0,
                trainer_options={"progress": False})
    return LinearContrastive(**{**base, **kw})


def test_info_nce_matches_manual_formula(rng):
    L = torch.as_tensor(rng.normal(size=(5, 5)))
    manual = 0.5 * (-(torch.diag(L) - torch.logsumexp(L, 1)).mean()
                    - (torch.diag(L) - torch.logsumexp(L, 0)).mean())
    torch.testing.assert_close(symmetric_info_nce(L), manual)
    # with all-distinct labels the label-aware loss is the plain one
    torch.testing.assert_close(symmetric_info_nce(L, torch.arange(5)), manual)


def test_linear_contrastive_learns_planted_pairs():
    X_a, X_b, _ = planted()
    model = small().fit(X_a, X_b)
    losses = [r["train_loss"] for r in model.history_.records]
    assert losses[-1] < 0.5 * losses[0]
    m = retrieval_scores(model.transform_a(X_a), model.transform_b(X_b)).as_dict()
    assert m["R@1_a2b"] > 0.8 and m["R@1_b2a"] > 0.8  # chance is 1/200
    Z = model.transform_a(X_a)
    assert isinstance(Z, np.ndarray) and Z.shape == (200, 6)
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1, rtol=1e-5)


def test_numpy_in_numpy_out_torch_in_torch_out():
    X_a, X_b, y = planted(n=60)
    model = small(max_epochs=2, use_labels=True, dtype="float64").fit(X_a, X_b, y)
    Zn = model.transform_b(X_b)
    Zt = model.transform_b(torch.as_tensor(X_b))
    assert isinstance(Zn, np.ndarray) and isinstance(Zt, torch.Tensor)
    np.testing.assert_array_equal(Zn, Zt.numpy())
    # fitting from tensors gives the same model as from arrays
    model_t = small(max_epochs=2, use_labels=True, dtype="float64").fit(
        torch.as_tensor(X_a), torch.as_tensor(X_b), torch.as_tensor(y))
    np.testing.assert_array_equal(model_t.transform_a(X_a), model.transform_a(X_a))


def test_save_load_roundtrip(tmp_path):
    X_a, X_b, _ = planted(n=60)
    model = small(max_epochs=2, trainer_options={"progress": False, "scheduler": "cosine"}).fit(X_a, X_b)
    path = model.save(tmp_path / "m.pt")
    for loader in (LinearContrastive, AlignmentEstimator):
        back = loader.load(path)
        assert type(back) is LinearContrastive
        assert back.get_params() == model.get_params()
        np.testing.assert_array_equal(back.transform_a(X_a), model.transform_a(X_a))
        assert back.history_.records == model.history_.records
    with pytest.raises(ValueError, match="not a saved geoalign model"):
        torch.save({"x": torch.zeros(1)}, tmp_path / "other.pt")
        LinearContrastive.load(tmp_path / "other.pt")


def test_estimator_input_errors():
    X_a, X_b, y = planted(n=30)
    with pytest.raises(ValueError, match="same number of samples"):
        small().fit(X_a, X_b[:-2])
    with pytest.raises(ValueError, match="one label per pair"):
        small().fit(X_a, X_b, y[:-1])
    bad = X_b.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="X_b contains 1 NaN or Inf"):
        small().fit(X_a, bad)
    with pytest.raises(ValueError, match="X_a must have 2 dimension"):
        small().fit(X_a[:, 0], X_b)
    with pytest.raises(ValueError, match="integer class labels"):
        small().fit(X_a, X_b, y + 0.5)
    with pytest.raises(NotFittedError):
        small().transform_a(X_a)
    with pytest.raises(ValueError, match="must not repeat"):
        small(trainer_options={"lr": 0.1}).fit(X_a, X_b)
    with pytest.raises(ValueError, match="dim must be >= 1"):
        small(dim=0).fit(X_a, X_b)
    model = small(max_epochs=1).fit(X_a, X_b)
    with pytest.raises(ValueError, match=r"X_a must have shape \(n, 12\)"):
        model.transform_a(X_b)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            small(device="cuda").fit(X_a, X_b)
    with pytest.raises(ValueError, match="unknown model"):
        get_model_class("nope")


def test_cli_train_and_eval_end_to_end(tmp_path, capsys):
    X_a, X_b, y = planted(n=120)
    np.savez(tmp_path / "pairs.npz", X_a=X_a[:100], X_b=X_b[:100], y=y[:100])
    np.savez(tmp_path / "test.npz", X_a=X_a[100:], X_b=X_b[100:])
    (tmp_path / "run.toml").write_text(
        '[model]\nname = "linear_contrastive"\ndim = 6\nrandom_state = 1\n'
        '[data]\nsource = "paired_file"\npath = "pairs.npz"\n'
        '[data.test]\nsource = "paired_file"\npath = "test.npz"\n'
        '[trainer]\nmax_epochs = 8\nbatch_size = 25\nlr = 0.02\nval_fraction = 0.2\n'
        'scheduler = "cosine"\nwarmup = 2\n')

    def run(configure, runner, argv):
        p = argparse.ArgumentParser()
        configure(p)
        return runner(p.parse_args(argv))

    assert run(configure_train_parser, run_train_cli, [str(tmp_path / "run.toml"), "--no-progress"]) == 0
    out_dir = tmp_path / "run"
    summary = json.loads(capsys.readouterr().out)
    assert summary["epochs"] == 8 and summary["best_val_loss"] is not None
    for name in ("model.pt", "metrics.csv", "config.json", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (out_dir / name).exists(), name
    assert run(configure_eval_parser, run_eval_cli,
               [str(out_dir / "model.pt"), "--config", str(tmp_path / "run.toml"),
                "--output", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["n"] == 20 and metrics["R@5_a2b"] > 0.5  # chance 0.25
    model = LinearContrastive.load(out_dir / "model.pt")
    assert metrics == retrieval_scores(model.transform_a(X_a[100:]), model.transform_b(X_b[100:])).as_dict()
    capsys.readouterr()
    assert run(configure_eval_parser, run_eval_cli,
               [str(out_dir / "model.pt"), "--data", str(tmp_path / "test.npz")]) == 0
    assert json.loads(capsys.readouterr().out) == metrics
    # running the same config again resumes from the finished checkpoint: same weights
    before = model.transform_a(X_a)
    assert run(configure_train_parser, run_train_cli, [str(tmp_path / "run.toml"), "--no-progress"]) == 0
    np.testing.assert_array_equal(LinearContrastive.load(out_dir / "model.pt").transform_a(X_a), before)


def test_config_and_dataset_errors(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"model": {"dim": 3}, "data": {}}))
    with pytest.raises(ValueError, match="needs a 'name'"):
        load_config(tmp_path / "c.json")
    (tmp_path / "c.yaml").write_text("x: 1")
    with pytest.raises(ValueError, match=".json or .toml"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "d.json").write_text(json.dumps({"model": {"name": "x"}}))
    with pytest.raises(ValueError, match=r"lacks section\(s\) \['data'\]"):
        load_config(tmp_path / "d.json")
    with pytest.raises(ValueError, match="unknown data source"):
        load_dataset({"source": "nope"}, tmp_path)
    np.savez(tmp_path / "p.npz", X_a=np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"lacks array\(s\) \['X_b'\]"):
        load_dataset({"source": "paired_file", "path": "p.npz"}, tmp_path)
    np.savez(tmp_path / "q.npz", X_a=np.zeros((3, 2)), X_b=np.zeros((4, 2)))
    with pytest.raises(ValueError, match="same number of samples"):
        load_dataset({"source": "paired_file", "path": "q.npz"}, tmp_path)
    with pytest.raises(FileNotFoundError):
        load_dataset({"source": "paired_file", "path": "missing.npz"}, tmp_path)


def test_validation_pairs_are_checked_and_used():
    X_a, X_b, y = planted(n=80)
    with pytest.raises(ValueError, match="val_X_b contains"):
        bad = X_b[:20].copy()
        bad[1, 1] = np.nan
        small().fit(X_a, X_b, val_data=(X_a[:20], bad))
    with pytest.raises(ValueError, match="val_data must be"):
        small().fit(X_a, X_b, val_data=(X_a[:20],))
    model = small(max_epochs=2, device=torch.device("cpu")).fit(X_a[20:], X_b[20:],
                                                                 val_data=(X_a[:20], X_b[:20]))
    assert model.history_.monitor == "val_loss"
    assert all(r["val_loss"] > 0 for r in model.history_.records)
