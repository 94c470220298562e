"""Sweeps and blocked ε-joins on a real dask.distributed LocalCluster (2 worker processes)."""
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")

from geoalign.fiber import FiberProduct  # noqa: E402
from geoalign.fiber_distributed import distributed_fiber_product  # noqa: E402
from geoalign.sweep import LOCAL_CLUSTER_QUIET, Grid, connect_client, run_sweep  # noqa: E402
from geoalign.studies import run_study  # noqa: E402


def affine(a, b, seed=0):
    return {"sum": a + b + seed, "prod": a * b}


def logged_cell(i, log_dir, kill_at=-1, sleep=0.0, seed=0):
    """Log the execution; SIGKILL the worker process running cell ``kill_at`` while 'armed' exists.

    With ``once`` in the folder the kill happens once only (the file is removed first).
    """
    log = Path(log_dir)
    with open(log / "executions.log", "a") as fh:
        fh.write(f"{i}\n")
    if i == kill_at and (log / "armed").exists():
        if (log / "once").exists():
            (log / "armed").unlink()
        os.kill(os.getpid(), signal.SIGKILL)
    if sleep:
        time.sleep(sleep)
    return {"square": float(i * i)}


def executions(log_dir):
    path = Path(log_dir) / "executions.log"
    return [int(v) for v in path.read_text().split()] if path.exists() else []


class _Join:
    def __init__(self, pairs, distances):
        self.pairs, self.distances, self.count = pairs, distances, len(distances)


def brute_join(X, Y, eps, metric="euclidean"):
    """Reference ε-join: every distance, closed ball, pairs sorted by (i, j)."""
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    if metric == "euclidean":
        dist = np.sqrt(np.maximum(((X[:, None, :] - Y[None, :, :]) ** 2).sum(-1), 0.0))
    else:
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        Yn = Y / np.linalg.norm(Y, axis=1, keepdims=True)
        dist = 1.0 - Xn @ Yn.T
    i, j = np.nonzero(dist <= eps)  # row-major: sorted by (i, j)
    return _Join(np.stack([i, j], axis=1).astype(np.int64), dist[i, j])


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       **LOCAL_CLUSTER_QUIET)  # dashboard off
    c = distributed.Client(cluster, set_as_default=False)
    yield c
    c.close()
    cluster.close()


def _wait_for_workers(client, n=2, timeout=60):
    client.wait_for_workers(n, timeout=timeout)


def test_dask_matches_serial(client, tmp_path):
    grid = Grid(product={"a": [1, 2, 3]}, zipped={"b": [0.5, 1.5]}, seeds=[0, 1])
    serial = run_sweep(affine, grid, progress=False, verbose=False)
    dask_res = run_sweep(affine, grid, scheduler=client, out=tmp_path, progress=False, verbose=False)
    assert dask_res.summary.executor == "dask" and dask_res.summary.done == len(grid)
    cols = ["a", "b", "seed", "score", "value"]
    pd.testing.assert_frame_equal(dask_res.frame[cols], serial.frame[cols])
    assert dask_res.config["dask"]["workers"] == 2
    assert len(list((tmp_path / "cache").glob("[!.]*.json"))) == len(grid)
    # also by address, and the built-in study
    res = run_study("concentration", Grid(product={"d": [4, 32], "sigma": [0.5]}, zipped={"n": [200]}),
                    scheduler=client.scheduler.address, progress=False, verbose=False)
    assert res.summary.done == 2 and res.frame["status"].eq("done").all()


def test_dask_executor_starts_its_own_local_cluster():
    res = run_sweep(affine, Grid(product={"a": [1, 2], "b": [3]}), executor="dask", n_workers=1,
                    progress=False, verbose=False)
    assert res.summary.done == 2 and res.config["dask"]["workers"] == 1
    assert sorted(res.wide()["prod"]) == [3, 6]


def test_killed_worker_cell_is_retried_and_nothing_completed_reruns(client, tmp_path):
    _wait_for_workers(client)
    log = tmp_path / "log"
    log.mkdir()
    (log / "armed").touch()
    (log / "once").touch()
    grid = Grid(product={"i": list(range(12)), "log_dir": [str(log)], "kill_at": [5], "sleep": [0.05]})
    res = run_sweep(logged_cell, grid, scheduler=client, out=tmp_path / "o", progress=False, verbose=False)
    # dask reschedules the cell that was running on the killed worker; nothing else runs twice
    assert res.summary.done == 12 and res.summary.failed == 0
    runs = executions(log)
    assert runs.count(5) == 2 and sorted(set(runs)) == list(range(12))
    assert all(runs.count(i) == 1 for i in range(12) if i != 5)


def test_killed_worker_loses_only_cells_in_flight_and_rerun_finishes(client, tmp_path):
    _wait_for_workers(client)
    # make the scheduler give up on a task at its first worker death (default: 3 retries)
    old = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
    client.run_on_scheduler(lambda dask_scheduler: setattr(dask_scheduler, "allowed_failures", 0))
    log = tmp_path / "log"
    log.mkdir()
    (log / "armed").touch()
    grid = Grid(product={"i": list(range(12)), "log_dir": [str(log)], "kill_at": [5], "sleep": [0.05]})
    try:
        res = run_sweep(logged_cell, grid, scheduler=client, out=tmp_path / "o", progress=False,
                        verbose=False)
    finally:
        client.run_on_scheduler(lambda dask_scheduler: setattr(dask_scheduler, "allowed_failures", old))
    s = res.summary
    assert 1 <= s.failed <= 2 and s.done == 12 - s.failed  # only what was in flight is lost
    assert 5 in set(res.failed["i"]) and res.failed["error"].str.contains("KilledWorker").all()
    assert len(list((tmp_path / "o" / "cache").glob("[!.]*.json"))) == s.done
    n_before = len(executions(log))
    (log / "armed").unlink()
    _wait_for_workers(client)
    again = run_sweep(logged_cell, grid, scheduler=client, out=tmp_path / "o", progress=False,
                      verbose=False)
    assert (again.summary.cached, again.summary.done, again.summary.failed) == (s.done, s.failed, 0)
    assert sorted(executions(log)[n_before:]) == sorted(res.failed["i"])


def test_unreachable_scheduler_fails_fast():
    t0 = time.perf_counter()
    with pytest.raises(ConnectionError, match="could not reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        run_sweep(affine, Grid(product={"a": [1], "b": [2]}), scheduler="tcp://127.0.0.1:9",
                  connect_timeout=1.0, progress=False, verbose=False)
    assert time.perf_counter() - t0 < 30
    with pytest.raises(TypeError, match="scheduler must be an address"):
        connect_client(8786)


@pytest.mark.parametrize("block_rows", [1, 7, 64, 1000])
def test_distributed_join_matches_brute_force(client, rng, block_rows):
    X = rng.standard_normal((53, 6))
    Y = rng.standard_normal((41, 6))
    eps = 2.5
    ref = brute_join(X, Y, eps)
    got = distributed_fiber_product(X, Y, eps, client, block_rows=block_rows, join=brute_join)
    assert isinstance(got, FiberProduct)
    assert got.count == ref.count > 0 and got.shape == (53, 41)
    assert got.n_blocks == -(-53 // block_rows)
    assert len(got) == got.count and got.rho == pytest.approx(ref.count / (53 * 41))
    np.testing.assert_array_equal(got.pairs, ref.pairs)
    np.testing.assert_allclose(got.distances, ref.distances, rtol=1e-12)
    assert got.pairs.dtype == np.int64


def test_distributed_join_options_and_errors(client, rng):
    X = rng.standard_normal((20, 3))
    Y = rng.standard_normal((15, 3))
    got = distributed_fiber_product(X, Y, 0.3, client.scheduler.address, block_rows=6, join=brute_join,
                                    metric="cosine")
    ref = brute_join(X, Y, 0.3, metric="cosine")
    np.testing.assert_array_equal(got.pairs, ref.pairs)
    empty = distributed_fiber_product(X[:0], Y, 1.0, client, join=brute_join)
    assert empty.count == 0 and empty.pairs.shape == (0, 2)
    with pytest.raises(ValueError, match="same dimension"):
        distributed_fiber_product(X, Y[:, :2], 1.0, client, join=brute_join)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        distributed_fiber_product(X, Y, -1.0, client, join=brute_join)
    with pytest.raises(ValueError, match="NaN"):
        distributed_fiber_product(np.full((2, 3), np.nan), Y, 1.0, client, join=brute_join)


def test_distributed_join_with_geoalign_fiber(client, rng):
    fiber = pytest.importorskip("geoalign.fiber")
    X = rng.standard_normal((300, 8)).astype(np.float64)
    Y = rng.standard_normal((250, 8)).astype(np.float64)
    eps = 3.0
    ref = brute_join(X, Y, eps)
    got = distributed_fiber_product(X, Y, eps, client, block_rows=64)
    np.testing.assert_array_equal(got.pairs, ref.pairs)
    np.testing.assert_allclose(got.distances, ref.distances, rtol=1e-6, atol=1e-6)
    whole = fiber.fiber_product(X, Y, eps)
    assert got.count == whole.count
    # the blocked result answers like the single-machine one
    truth = np.c_[np.arange(250), np.arange(250)]
    assert got.precision_recall(truth) == whole.precision_recall(truth)
    a, b = got.to_sparse(), whole.to_sparse()
    assert a.shape == b.shape == (300, 250) and a.nnz == b.nnz == whole.count
    np.testing.assert_allclose(a.toarray(), b.toarray(), rtol=1e-6, atol=1e-6)
    cos = distributed_fiber_product(X, Y, 0.5, client, block_rows=64, metric="cosine")
    assert cos.metric == "cosine" and cos.to_sparse().nnz == cos.count
    assert cos.count == fiber.fiber_product(X, Y, 0.5, metric="cosine").count


def test_distributed_join_accepts_torch_tensors(client, rng):
    torch = pytest.importorskip("torch")
    X = rng.standard_normal((30, 4))
    Y = rng.standard_normal((20, 4))
    got = distributed_fiber_product(torch.from_numpy(X), torch.from_numpy(Y), 2.0, client, block_rows=8,
                                    join=brute_join)
    np.testing.assert_array_equal(got.pairs, brute_join(X, Y, 2.0).pairs)


def test_cli_on_a_running_scheduler(client, tmp_path, capsys):
    import argparse

    from geoalign.cli.sweep import configure_parser, run_cli

    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(["concentration", "--param", "d=4,8", "--param", "sigma=1.0", "--zip", "n=100",
                              "--seeds", "0", "--scheduler", client.scheduler.address,
                              "--out", str(tmp_path), "--no-progress"])
    assert run_cli(args) == 0
    assert "2 cells - 2 done" in capsys.readouterr().out
    cfg = json.loads((tmp_path / "sweep.json").read_text())
    assert cfg["executor"] == "dask" and cfg["dask"]["scheduler"] == client.scheduler.address
    args = parser.parse_args(["concentration", "--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "0.5",
                              "--out", str(tmp_path / "x"), "--no-progress"])
    assert run_cli(args) == 2
    assert "could not reach the Dask scheduler" in capsys.readouterr().err
