"""Distributed data parallel: 2 CPU processes under torchrun (gloo) == single-process training."""
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

WORKER = textwrap.dedent('''
    import os, sys
    import numpy as np, torch
    from torch import nn
    from geoalign.train import Trainer

    class Regression(nn.Module):
        """Per-sample squared error: its batch mean is what DDP must reproduce exactly."""
        def __init__(self):
            super().__init__()
            torch.manual_seed(3)
            self.lin = nn.Linear(5, 3).double()
        def training_loss(self, batch):
            per = ((self.lin(batch[0]) - batch[1]) ** 2).sum(dim=1)
            return per.mean(), {"mse": per.mean().detach()}

    rng = np.random.default_rng(0)
    X_a = rng.normal(size=(37, 5))
    X_b = X_a @ rng.normal(size=(5, 3)) + 0.1 * rng.normal(size=(37, 3))
    model = Regression()
    trainer = Trainer(max_epochs=3, batch_size=int(sys.argv[2]), lr=0.05, optimizer="sgd",
                      momentum=0.9, grad_clip=5.0, scheduler="cosine", warmup=2, seed=1,
                      progress=False, checkpoint_dir=sys.argv[3], log_dir=sys.argv[3])
    history = trainer.fit(model, (X_a, X_b))
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save({"state": model.state_dict(), "records": history.records,
                    "world": int(os.environ.get("WORLD_SIZE", "1"))}, sys.argv[1])
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_processes_equal_single_process(tmp_path):
    # 37 rows in global batches of 9: shards of 5 and 4 rows, and a last batch of one row
    # that leaves rank 1 empty; the gradient average must still match exactly
    batch_size = 9
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    ddp_out, single_out = tmp_path / "ddp.pt", tmp_path / "single.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(script), str(ddp_out),
           str(batch_size), str(tmp_path / "ddp_run")]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    res = subprocess.run([sys.executable, str(script), str(single_out), str(batch_size),
                          str(tmp_path / "single_run")], env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    ddp = torch.load(ddp_out, weights_only=True)
    single = torch.load(single_out, weights_only=True)
    assert ddp["world"] == 2 and single["world"] == 1
    for k, v in single["state"].items():
        torch.testing.assert_close(ddp["state"][k], v, rtol=0, atol=1e-12)
    assert single["records"][-1]["train_loss"] < 0.5 * single["records"][0]["train_loss"]
    for r_ddp, r_single in zip(ddp["records"], single["records"], strict=True):
        assert r_ddp["step"] == r_single["step"]
        assert r_ddp["train_loss"] == pytest.approx(r_single["train_loss"], rel=1e-12)
    # only rank 0 wrote: one log and one checkpoint folder
    assert (tmp_path / "ddp_run" / "metrics.csv").exists()
    assert (tmp_path / "ddp_run" / "last.pt").exists()
