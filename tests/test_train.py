"""Trainer: learning, exact resume, checkpoints, logs, early stopping, clipping, errors, devices."""
import csv

import numpy as np
import pytest
import torch
from torch import nn

from geoalign.train import Trainer, TrainingHistory, as_paired_tensors


class Regression(nn.Module):
    """Predict view b from view a; per-sample squared error (float64), optional dropout."""

    def __init__(self, d_a=6, d_b=4, hidden=8, dropout=0.0, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(d_a, hidden), nn.Tanh(), nn.Dropout(dropout),
                                 nn.Linear(hidden, d_b)).double()
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))

    def training_loss(self, batch):
        per = ((self.net(batch[0]) - batch[1]) ** 2).sum(dim=1)
        return per.mean(), {"rmse": per.mean().sqrt()}


def planted(n=120, d_a=6, d_b=4, k=2, noise=0.05, seed=0):
    """Two random linear views of a shared latent."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n, k))
    X_a = s @ rng.normal(size=(k, d_a)) + noise * rng.normal(size=(n, d_a))
    X_b = s @ rng.normal(size=(k, d_b)) + noise * rng.normal(size=(n, d_b))
    return X_a, X_b


def fast(**kw):
    base = dict(max_epochs=4, batch_size=16, lr=0.01, progress=False)
    return Trainer(**{**base, **kw})


def test_loss_decreases_on_planted_problem():
    X_a, X_b = planted()
    h = fast(max_epochs=15).fit(Regression(), (X_a, X_b))
    assert isinstance(h, TrainingHistory)
    losses = [r["train_loss"] for r in h.records]
    assert losses[-1] < 0.2 * losses[0]
    assert h.epochs_run == 15 and h.monitor == "train_loss" and not h.stopped_early
    frame = h.to_frame()
    assert list(frame.index) == list(range(1, 16)) and "train_rmse" in frame


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("optimizer,scheduler", [("adamw", "cosine"), ("sgd", "plateau")])
def test_exact_resume_after_interruption(tmp_path, optimizer, scheduler):
    X_a, X_b = planted(n=90)
    opts = dict(max_epochs=6, optimizer=optimizer, scheduler=scheduler, warmup=3, momentum=0.9,
                weight_decay=1e-3, val_fraction=0.2, grad_clip=1.0, plateau_patience=0)

    full = Regression(dropout=0.3)  # dropout draws from the global torch RNG: must be restored
    h_full = fast(**opts, checkpoint_dir=tmp_path / "full").fit(full, (X_a, X_b))

    class Interrupt(Exception):
        pass

    def stop_after_3(trainer, epoch, record):
        if epoch == 3:
            raise Interrupt

    run_dir = tmp_path / "interrupted"
    with pytest.raises(Interrupt):
        fast(**opts, checkpoint_dir=run_dir, log_dir=run_dir, callbacks=[stop_after_3]).fit(
            Regression(dropout=0.3), (X_a, X_b))
    torch.manual_seed(999)  # disturb global RNG state in between: resume must restore it
    np.random.seed(999)
    resumed = Regression(dropout=0.3)
    h_res = fast(**opts, checkpoint_dir=run_dir, log_dir=run_dir).fit(resumed, (X_a, X_b))
    assert h_res.resumed_from_epoch == 3
    for k, v in _weights(full).items():
        assert torch.equal(resumed.state_dict()[k], v), k
    assert [r["train_loss"] for r in h_res.records] == [r["train_loss"] for r in h_full.records]
    assert [r["val_loss"] for r in h_res.records] == [r["val_loss"] for r in h_full.records]
    with open(run_dir / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5, 6]


def test_resume_refuses_incompatible_checkpoint(tmp_path):
    X_a, X_b = planted(n=40)
    fast(max_epochs=2, checkpoint_dir=tmp_path, log_dir=tmp_path).fit(Regression(), (X_a, X_b))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(ValueError, match="net.0.weight.*shape"):
        fast(max_epochs=4, checkpoint_dir=tmp_path, log_dir=tmp_path).fit(
            Regression(hidden=5), (X_a, X_b))
    with pytest.raises(ValueError, match="different training configuration.*lr"):
        fast(max_epochs=2, lr=0.5, checkpoint_dir=tmp_path, log_dir=tmp_path).fit(
            Regression(), (X_a, X_b))
    with pytest.raises(ValueError, match="different training configuration"):
        fast(max_epochs=2, checkpoint_dir=tmp_path, log_dir=tmp_path).fit(
            Regression(), (X_a[:30], X_b[:30]))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    # resume=False starts over (and may then overwrite)
    h = fast(max_epochs=2, lr=0.5, checkpoint_dir=tmp_path, resume=False).fit(Regression(), (X_a, X_b))
    assert h.resumed_from_epoch == 0 and h.epochs_run == 2


def test_finished_checkpoint_resumes_to_same_weights(tmp_path):
    X_a, X_b = planted(n=40)
    first = Regression()
    fast(checkpoint_dir=tmp_path).fit(first, (X_a, X_b))
    again = Regression(seed=5)
    h = fast(checkpoint_dir=tmp_path).fit(again, (X_a, X_b))
    assert h.resumed_from_epoch == 4 and h.epochs_run == 4
    for k, v in first.state_dict().items():
        assert torch.equal(again.state_dict()[k], v)
    assert (tmp_path / "best.pt").exists()


def test_csv_log_written_each_epoch(tmp_path):
    X_a, X_b = planted(n=50)
    seen = []

    def count_rows(trainer, epoch, record):
        with open(tmp_path / "metrics.csv") as fh:
            seen.append(len(list(csv.DictReader(fh))))

    fast(max_epochs=3, log_dir=tmp_path, callbacks=[count_rows]).fit(
        Regression(), (X_a, X_b), val_data=planted(n=20, seed=1))
    assert seen == [1, 2, 3]
    with open(tmp_path / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {"epoch", "step", "lr", "train_loss", "val_loss", "val_rmse"} <= set(rows[0])
    assert int(rows[-1]["step"]) == 3 * 4  # 50 rows / batch 16 -> 4 steps per epoch


def test_early_stopping_triggers():
    X_a, X_b = planted(n=60)
    rng = np.random.default_rng(3)
    val = (rng.normal(size=(30, 6)), rng.normal(size=(30, 4)))  # unrelated: val loss soon stalls
    h = fast(max_epochs=200, lr=0.05, early_stopping_patience=3).fit(Regression(), (X_a, X_b), val)
    assert h.stopped_early and h.epochs_run < 200
    assert h.monitor == "val_loss"
    assert h.epochs_run == h.best_epoch + 3
    assert h.best_score == min(r["val_loss"] for r in h.records)


def test_grad_clipping_bounds_the_update():
    X_a, X_b = planted(n=32)
    X_b = 100 * X_b  # huge gradients
    model = Regression()
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    h = Trainer(max_epochs=1, batch_size=32, lr=1.0, optimizer="sgd", grad_clip=0.01,
                progress=False).fit(model, (X_a, X_b))
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert h.records[0]["train_grad_norm"] > 1.0  # logged norm is before clipping
    assert torch.linalg.vector_norm(after - before) == pytest.approx(0.01, rel=1e-6)


def test_warmup_and_step_schedule_set_lr():
    X_a, X_b = planted(n=32)
    lrs = []
    t = Trainer(max_epochs=4, batch_size=16, lr=0.1, scheduler="step", lr_step_size=2, lr_gamma=0.5,
                warmup=2, progress=False, callbacks=[lambda tr, e, r: lrs.append(r["lr"])])
    t.fit(Regression(), (X_a, X_b))
    # lr logged is the last step's: warm-up done after step 2; halves every 2 epochs
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.05])
    assert t._lr_factor(0, 0, 8, 0) == pytest.approx(0.5)


def test_bf16_autocast_runs_on_cpu():
    X_a, X_b = planted(n=32)
    model = Regression()
    model.float()
    h = fast(max_epochs=2, amp="bf16").fit(model, (X_a, X_b))
    assert np.isfinite(h.records[-1]["train_loss"])


def test_device_argument():
    X_a, X_b = planted(n=32)
    model = Regression()
    fast(max_epochs=1, device="cpu").fit(model, (X_a, X_b))
    assert next(model.parameters()).device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            fast(device="cuda").fit(Regression(), (X_a, X_b))
        with pytest.raises(ValueError, match="fp16.*CUDA"):
            fast(amp="fp16").fit(Regression(), (X_a, X_b))
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        with pytest.raises(ValueError, match="MPS is not available"):
            fast(device="mps").fit(Regression(), (X_a, X_b))


def test_bad_trainer_options():
    with pytest.raises(ValueError, match="optimizer"):
        Trainer(optimizer="lbfgs")
    with pytest.raises(ValueError, match="scheduler"):
        Trainer(scheduler="linear")
    with pytest.raises(ValueError, match="lr"):
        Trainer(lr=-1)
    with pytest.raises(ValueError, match="amp"):
        Trainer(amp="int8")
    with pytest.raises(ValueError, match="val_fraction"):
        Trainer(val_fraction=1.0)
    with pytest.raises(TypeError, match="batch_size"):
        Trainer(batch_size=2.5)


def test_bad_data_errors():
    X_a, X_b = planted(n=20)
    t = fast(max_epochs=1)
    with pytest.raises(ValueError, match="same number of samples"):
        t.fit(Regression(), (X_a, X_b[:-1]))
    bad = X_a.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"train_data\[X_a\] contains 1 NaN"):
        t.fit(Regression(), (bad, X_b))
    with pytest.raises(ValueError, match="missing key"):
        t.fit(Regression(), {"X_a": X_a})
    with pytest.raises(ValueError, match="one of each|leaves"):
        fast(val_fraction=0.01).fit(Regression(), (X_a, X_b))
    with pytest.raises(ValueError, match="integer class labels"):
        as_paired_tensors((X_a, X_b, np.full(20, 0.5)))
    with pytest.raises(ValueError, match="row shape"):
        t.fit(Regression(), (X_a, X_b), val_data=(X_a[:, :3], X_b))
    with pytest.raises(TypeError, match="training_loss"):
        t.fit(nn.Linear(2, 2), (X_a, X_b))
    with pytest.raises(FloatingPointError, match="training loss became"):
        fast(max_epochs=1, lr=1e300, optimizer="sgd").fit(Regression(), (X_a, 1e200 * X_b))


def test_tensor_dataset_and_dict_inputs_agree():
    X_a, X_b = planted(n=40)
    m1, m2 = Regression(), Regression()
    fast(max_epochs=2).fit(m1, {"X_a": X_a, "X_b": X_b})
    fast(max_epochs=2).fit(m2, torch.utils.data.TensorDataset(torch.as_tensor(X_a), torch.as_tensor(X_b)))
    for k, v in m1.state_dict().items():
        assert torch.equal(m2.state_dict()[k], v)


