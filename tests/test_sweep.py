"""Tests of the sweep engine: grids, caching/resume, failures, serial and process executors, CLI."""
import argparse
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from geoalign.cli.sweep import configure_parser, run_cli
from geoalign.studies import concentration_study, get_study, list_studies, register_study, run_study
from geoalign.sweep import Grid, SweepInterrupted, cell_key, run_sweep

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent


# ---- study functions (module level so worker processes can import them)
def affine(a, b, seed=0):
    return {"sum": a + b + seed, "prod": a * b}


def logged_cell(i, log_dir, interrupt_at=-1, exit_at=-1, sleep=0.0, seed=0):
    """Append to an execution log; optionally interrupt (SIGINT) or kill its process while 'armed'."""
    log = Path(log_dir)
    with open(log / "executions.log", "a") as fh:
        fh.write(f"{i}:{seed}\n")
    armed = (log / "armed").exists()
    if armed and i == interrupt_at:
        signal.raise_signal(signal.SIGINT)
    if armed and i == exit_at:
        os._exit(3)  # the worker process dies without cleanup
    if sleep:
        time.sleep(sleep)
    return {"square": float(i * i)}


def executions(log_dir):
    path = Path(log_dir) / "executions.log"
    return path.read_text().split() if path.exists() else []


def flaky(x, seed=0):
    if x == 2:
        raise ValueError(f"x={x} is not allowed")
    return {"y": 10.0 * x}


def curve(n, seed=0):
    return [{"eps": e, "count": float(n * e), "frac": e} for e in (0.5, 1.0, 2.0)]


def returns_text(x):
    return {"y": "not a number"}


def needs_k(x, k):
    return {"y": x * k}


def no_seed(x):
    return {"y": float(x)}


# ---- grids
def test_grid_cells_product_zipped_seeds():
    g = Grid(product={"eps": [0.1, 0.2], "dim": [8, 16]}, zipped={"n": [100, 200], "batch": [10, 20]},
             seeds=[0, 1, 2])
    cells = list(g.cells())
    assert len(g) == len(cells) == 2 * 2 * 2 * 3
    assert g.names == ("eps", "dim", "n", "batch")
    # zipped axes stay aligned, product axes cover every combination
    assert {(p["n"], p["batch"]) for p, _ in cells} == {(100, 10), (200, 20)}
    assert {(p["eps"], p["dim"]) for p, _ in cells} == {(0.1, 8), (0.1, 16), (0.2, 8), (0.2, 16)}
    assert len({(tuple(sorted(p.items())), s) for p, s in cells}) == len(cells)
    assert Grid.from_dict(g.to_dict()) == g


@given(st.dictionaries(st.sampled_from(list("abcd")), st.lists(st.integers(-5, 5), min_size=1, max_size=3,
                                                               unique=True), max_size=3),
       st.integers(1, 3), st.lists(st.integers(0, 9), min_size=1, max_size=3, unique=True))
def test_grid_len_matches_cells(product, n_zip, seeds):
    g = Grid(product=product, zipped={"z": list(range(n_zip))}, seeds=seeds)
    cells = list(g.cells())
    assert len(cells) == len(g)
    assert len({json.dumps([p, s], sort_keys=True) for p, s in cells}) == len(g)


@pytest.mark.parametrize("kwargs, match", [
    ({"product": {"a": []}}, "empty"),
    ({"seeds": []}, "seeds is empty"),
    ({"zipped": {"a": [1, 2], "b": [1]}}, "same length"),
    ({"product": {"a": [1]}, "zipped": {"a": [1]}}, "both"),
    ({"product": {"seed": [1]}}, "reserved"),
    ({"product": {"value": [1]}}, "reserved"),
    ({"product": {"a": [[1, 2]]}}, "JSON scalar"),
    ({"product": {"a": [float("nan")]}}, "finite"),
    ({"product": {"a": "abc"}}, "list of values"),
    ({"seeds": [0, 0]}, "distinct"),
    ({"seeds": [0.5]}, "integer"),
])
def test_grid_rejects_bad_specs(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Grid(**kwargs)


def test_grid_from_files(tmp_path):
    spec = {"product": {"d": [2, 4]}, "zipped": {"n": [10]}, "seeds": [0, 1]}
    (tmp_path / "g.json").write_text(json.dumps(spec))
    (tmp_path / "g.toml").write_text('seeds = [0, 1]\n[product]\nd = [2, 4]\n[zipped]\nn = [10]\n')
    assert Grid.from_file(tmp_path / "g.json") == Grid.from_file(tmp_path / "g.toml") == Grid.from_dict(spec)
    (tmp_path / "g.yaml").write_text("")
    with pytest.raises(ValueError, match=".json or .toml"):
        Grid.from_file(tmp_path / "g.yaml")
    with pytest.raises(FileNotFoundError):
        Grid.from_file(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="unknown grid keys"):
        Grid.from_dict({"prodcut": {"d": [1]}})


# ---- argument checks before anything runs
def test_signature_errors(tmp_path):
    with pytest.raises(ValueError, match=r"\['c'\] are not accepted by affine"):
        run_sweep(affine, Grid(product={"a": [1], "b": [2], "c": [3]}), progress=False, verbose=False)
    with pytest.raises(ValueError, match=r"requires \['k'\]"):
        run_sweep(needs_k, Grid(product={"x": [1]}), progress=False, verbose=False)
    with pytest.raises(ValueError, match="takes no 'seed'"):
        run_sweep(no_seed, Grid(product={"x": [1]}, seeds=[0, 1]), progress=False, verbose=False)
    with pytest.raises(ValueError, match="unknown executor"):
        run_sweep(affine, Grid(product={"a": [1], "b": [2]}), executor="threads", progress=False)
    with pytest.raises(ValueError, match="scheduler= is only used"):
        run_sweep(affine, Grid(product={"a": [1], "b": [2]}), executor="serial",
                  scheduler="tcp://127.0.0.1:1", progress=False)
    with pytest.raises(ValueError, match="empty"):
        run_sweep(affine, {"product": {"a": [], "b": [1]}}, progress=False)
    # one seed and no seed parameter is fine
    res = run_sweep(no_seed, Grid(product={"x": [1, 2]}), progress=False, verbose=False)
    assert res.frame["value"].tolist() == [1.0, 2.0]


# ---- serial runs, tidy frame, saving
def test_serial_frame_is_tidy_and_saved(tmp_path, capsys):
    grid = Grid(product={"a": [1, 2]}, zipped={"b": [10, 20]}, seeds=[0, 5])
    res = run_sweep(affine, grid, out=tmp_path / "out", name="affine", progress=False)
    f = res.frame
    assert list(f.columns[:5]) == ["a", "b", "seed", "score", "value"]
    assert len(f) == len(grid) * 2 and (f["status"] == "done").all() and not f["cached"].any()
    for _, row in f.iterrows():
        want = row.a + row.b + row.seed if row.score == "sum" else row.a * row.b
        assert row.value == want
    assert res.summary.done == len(grid) and res.summary.failed == 0 and res.failed.empty
    assert "8 cells - 8 done, 0 cached, 0 failed" in capsys.readouterr().out
    # saved: parquet round trip + configuration with versions and timing
    assert res.path == tmp_path / "out" / "results.parquet"
    back = pd.read_parquet(res.path)
    pd.testing.assert_frame_equal(back[["a", "b", "seed", "score", "value"]],
                                  f[["a", "b", "seed", "score", "value"]], check_dtype=False)
    cfg = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert cfg["grid"] == grid.to_dict() and cfg["name"] == "affine"
    assert cfg["versions"]["numpy"] == np.__version__ and cfg["finished_at"] >= cfg["started_at"]
    assert cfg["summary"]["done"] == 8 and cfg["results_file"] == "results.parquet"
    assert not list((tmp_path / "out").glob(".*tmp*"))  # atomic writes leave no temporaries
    # wide view: scores as columns
    wide = res.wide()
    assert len(wide) == len(grid) and {"sum", "prod"} <= set(wide.columns)


def test_mixed_parameter_types_and_none_are_saved(tmp_path):
    res = run_sweep(no_seed, Grid(product={"x": [1, 2.5, "s", None]}), out=tmp_path, progress=False,
                    verbose=False)
    assert res.summary.done == 2 and res.summary.failed == 2  # float("s") and float(None) raise
    back = pd.read_parquet(res.path)
    assert list(back["x"][:3]) == ["1", "2.5", "s"] and pd.isna(back["x"][3])
    assert sorted(res.wide()["y"]) == [1.0, 2.5]


def test_csv_when_pyarrow_is_missing(tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
        res = run_sweep(affine, Grid(product={"a": [1], "b": [2]}), out=tmp_path, progress=False,
                        verbose=False)
    assert res.path == tmp_path / "results.csv"
    back = pd.read_csv(res.path)
    assert sorted(back["score"]) == ["prod", "sum"]


def test_rerun_skips_completed_cells(tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    grid = Grid(product={"i": [0, 1, 2], "log_dir": [str(log)]}, seeds=[0, 1])
    first = run_sweep(logged_cell, grid, out=tmp_path / "o", progress=False, verbose=False)
    assert first.summary.done == 6 and len(executions(log)) == 6
    second = run_sweep(logged_cell, grid, out=tmp_path / "o", progress=False, verbose=False)
    assert second.summary.cached == 6 and second.summary.done == 0 and len(executions(log)) == 6
    assert second.frame["cached"].all()
    pd.testing.assert_series_equal(first.frame["value"], second.frame["value"])
    # a larger grid computes only the new cells
    bigger = Grid(product={"i": [0, 1, 2, 3], "log_dir": [str(log)]}, seeds=[0, 1])
    third = run_sweep(logged_cell, bigger, out=tmp_path / "o", progress=False, verbose=False)
    assert (third.summary.cached, third.summary.done) == (6, 2) and len(executions(log)) == 8
    # another version of the function does not reuse the cache
    fourth = run_sweep(logged_cell, grid, out=tmp_path / "o", version="v2", progress=False, verbose=False)
    assert fourth.summary.done == 6


def test_cell_key_depends_on_function_params_and_seed():
    k = cell_key("f@1", {"a": 1, "b": 2.0}, 0)
    assert k == cell_key("f@1", {"b": 2.0, "a": 1}, 0)  # order of parameters does not matter
    assert len({k, cell_key("f@2", {"a": 1, "b": 2.0}, 0), cell_key("f@1", {"a": 1, "b": 2.5}, 0),
                cell_key("f@1", {"a": 1, "b": 2.0}, 1)}) == 4


def test_failed_cells_are_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    grid = Grid(product={"x": [1, 2, 3]}, seeds=[0, 1])
    res = run_sweep(flaky, grid, out=tmp_path, progress=False)
    s = res.summary
    assert (s.done, s.failed, s.cached) == (4, 2, 0)
    assert len(res.failed) == 2 and (res.failed["x"] == 2).all()
    assert res.failed["error"].str.contains("ValueError: x=2 is not allowed").all()
    assert res.failed["traceback"].str.contains("Traceback").all()
    bad = res.frame[res.frame["status"] == "failed"]
    assert len(bad) == 2 and bad["value"].isna().all() and bad["score"].isna().all()
    out = capsys.readouterr().out
    assert "2 failed" in out and "FAILED {'x': 2} seed=0: ValueError: x=2 is not allowed" in out
    cfg = json.loads((tmp_path / "sweep.json").read_text())
    assert len(cfg["failed"]) == 2
    # failed cells are retried on a rerun, completed ones are not
    again = run_sweep(flaky, grid, out=tmp_path, progress=False, verbose=False)
    assert (again.summary.cached, again.summary.failed, again.summary.done) == (4, 2, 0)
    kept = run_sweep(flaky, grid, out=tmp_path, retry_failed=False, progress=False, verbose=False)
    assert kept.summary.cached == 6 and kept.summary.failed == 2


def test_bad_return_values_fail_the_cell_with_a_clear_error():
    res = run_sweep(returns_text, Grid(product={"x": [1]}), progress=False, verbose=False)
    assert "score 'y' must be a real number" in res.failed["error"].iloc[0]


def test_multi_row_cells_with_labels():
    res = run_sweep(curve, Grid(product={"n": [10, 20]}), labels=("eps",), progress=False, verbose=False)
    f = res.frame
    assert list(f.columns[:5]) == ["n", "seed", "eps", "row", "score"]
    assert len(f) == 2 * 3 * 2
    got = f[(f.score == "count")].set_index(["n", "eps"])["value"]
    assert got[(20, 2.0)] == 40.0 and got[(10, 0.5)] == 5.0
    with pytest.raises(ValueError, match="clash"):
        run_sweep(curve, Grid(product={"n": [10]}), labels=("n",), progress=False)


def test_serial_interrupt_keeps_completed_cells(tmp_path, capsys, default_sigint):
    log = tmp_path / "log"
    log.mkdir()
    (log / "armed").touch()
    grid = Grid(product={"i": list(range(6)), "log_dir": [str(log)], "interrupt_at": [3]})
    with pytest.raises(SweepInterrupted) as info:
        run_sweep(logged_cell, grid, out=tmp_path / "o", progress=True)
    partial = info.value.result
    assert (partial.summary.done, partial.summary.not_run) == (3, 3)
    assert isinstance(info.value, KeyboardInterrupt)
    assert "rerun to resume" in str(info.value) and "interrupted" in capsys.readouterr().out
    assert len(list((tmp_path / "o" / "cache").glob("[!.]*.json"))) == 3
    (log / "armed").unlink()
    res = run_sweep(logged_cell, grid, out=tmp_path / "o", progress=False, verbose=False)
    assert (res.summary.cached, res.summary.done, res.summary.failed) == (3, 3, 0)
    assert executions(log) == [f"{i}:0" for i in (0, 1, 2, 3, 3, 4, 5)]  # only cell 3 ran twice
    assert sorted(res.wide()["square"]) == [float(i * i) for i in range(6)]


def test_killing_the_whole_run_loses_only_cells_in_flight(tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    out = tmp_path / "o"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS_DIR)!r})
        from test_sweep import logged_cell
        from geoalign.sweep import Grid, run_sweep
        grid = Grid(product={{"i": list(range(40)), "log_dir": [{str(log)!r}], "sleep": [0.05]}})
        run_sweep(logged_cell, grid, out={str(out)!r}, progress=False, verbose=False)
    """)
    grid = Grid(product={"i": list(range(40)), "log_dir": [str(log)], "sleep": [0.05]})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 60
        while len(list((out / "cache").glob("[!.]*.json"))) < 5:
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # the kill may leave the temporary file of an unfinished write (a dot file): not a result
    finished = {json.loads(p.read_text())["params"]["i"] for p in (out / "cache").glob("[!.]*.json")}
    ran_before = executions(log)
    assert 5 <= len(finished) < 40 and len(ran_before) <= len(finished) + 1  # at most one in flight
    resumed = run_sweep(logged_cell, grid, out=out, progress=False, verbose=False)
    assert resumed.summary.cached == len(finished)
    assert resumed.summary.done == 40 - len(finished) and resumed.summary.failed == 0
    rerun = {int(k.split(":")[0]) for k in executions(log)[len(ran_before):]}
    assert rerun == set(range(40)) - finished  # completed cells never ran again


# ---- local process pool
def test_processes_match_serial_and_resume(tmp_path):
    grid = Grid(product={"a": [1, 2, 3]}, zipped={"b": [0.5, 1.5]}, seeds=[0, 1])
    serial = run_sweep(affine, grid, progress=False, verbose=False)
    par = run_sweep(affine, grid, executor="processes", n_workers=2, out=tmp_path, progress=False,
                    verbose=False)
    assert par.summary.done == len(grid) and par.config["threads_per_cell"] == 1
    pd.testing.assert_frame_equal(par.frame[["a", "b", "seed", "score", "value"]],
                                  serial.frame[["a", "b", "seed", "score", "value"]])


def test_processes_survive_a_dying_worker(tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    (log / "armed").touch()
    grid = Grid(product={"i": list(range(8)), "log_dir": [str(log)], "exit_at": [2]})
    res = run_sweep(logged_cell, grid, executor="processes", n_workers=2, out=tmp_path / "o",
                    progress=False, verbose=False)
    s = res.summary
    # the cells in flight when the worker died (at most n_workers) fail; the rest run
    assert 1 <= s.failed <= 2 and s.done == 8 - s.failed
    assert res.failed["error"].str.contains("BrokenProcessPool").all()
    assert 2 in set(res.failed["i"])
    (log / "armed").unlink()
    again = run_sweep(logged_cell, grid, executor="processes", n_workers=2, out=tmp_path / "o",
                      progress=False, verbose=False)
    assert (again.summary.cached, again.summary.done, again.summary.failed) == (s.done, s.failed, 0)


# ---- studies and CLI
def test_concentration_study_matches_chi_moments():
    for d, sigma in [(1, 1.0), (16, 0.5), (512, 0.1)]:
        m = concentration_study(d=d, sigma=sigma, n=4000, seed=1)
        # mean of sigma*sqrt(2)*chi_d within 5 standard errors; sd(chi_d) < 1 so sd < sigma*sqrt(2)
        assert abs(m["mean_distance"] - m["predicted_mean"]) < 5 * sigma * math.sqrt(2) / math.sqrt(4000)
        assert m["std_distance"] < sigma * math.sqrt(2) * 1.05
        assert abs(m["impostor_mean_distance"] - m["impostor_predicted"]) < 0.05 * m["impostor_predicted"]
    big = concentration_study(d=2048, sigma=0.3, n=500, seed=0)
    assert abs(big["ratio_to_sqrt_2d"] - 1) < 0.01 and big["relative_std"] < 0.03
    assert concentration_study(d=4, sigma=0.0, n=10)["mean_distance"] == 0.0
    with pytest.raises(ValueError, match="sigma"):
        concentration_study(d=4, sigma=-1.0)


def test_concentration_relative_spread_shrinks_with_dimension():
    res = run_study("concentration", Grid(product={"d": [4, 64, 1024], "sigma": [0.5]},
                                          zipped={"n": [1000]}), progress=False, verbose=False)
    wide = res.wide().sort_values("d")
    rel = wide["relative_std"].to_numpy()
    assert rel[0] > rel[1] > rel[2]
    np.testing.assert_allclose(rel * np.sqrt(2 * wide["d"].to_numpy()), 1.0, rtol=0.15)


def test_registry():
    assert "concentration" in list_studies()
    with pytest.raises(ValueError, match="already registered"):
        register_study("concentration", affine, Grid(product={"a": [1], "b": [2]}))
    with pytest.raises(KeyError, match="unknown study 'nope'"):
        get_study("nope")
    with pytest.raises(ValueError, match="not accepted"):
        register_study("bad-grid", affine, Grid(product={"a": [1], "zz": [2]}))
    study = register_study("affine-test", affine, {"product": {"a": [1, 2], "b": [3]}})
    try:
        assert run_study("affine-test", progress=False, verbose=False).summary.done == 2
        assert study.description == ""
    finally:
        from geoalign.studies import STUDIES

        STUDIES.pop("affine-test")


def _cli(argv):
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    return run_cli(parser.parse_args(argv))


def test_cli_runs_a_study(tmp_path, capsys):
    rc = _cli(["concentration", "--param", "d=4,16", "--param", "sigma=0.5", "--zip", "n=200",
               "--seeds", "0,1", "--executor", "serial", "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "4 cells - 4 done" in out and "results.parquet" in out
    frame = pd.read_parquet(tmp_path / "results.parquet")
    assert set(frame["d"]) == {4, 16} and set(frame["seed"]) == {0, 1} and set(frame["n"]) == {200}
    # rerun resumes from the cache
    assert _cli(["concentration", "--param", "d=4,16", "--param", "sigma=0.5", "--zip", "n=200",
                 "--seeds", "0,1", "--executor", "serial", "--out", str(tmp_path), "--no-progress"]) == 0
    assert "0 done, 4 cached" in capsys.readouterr().out
    # grid file
    (tmp_path / "g.toml").write_text("seeds = [3]\n[product]\nd = [8]\nsigma = [0.2]\n[zipped]\nn = [50]\n")
    assert _cli(["concentration", "--grid", str(tmp_path / "g.toml"), "--executor", "serial",
                 "--out", str(tmp_path / "t"), "--no-progress"]) == 0
    assert set(pd.read_parquet(tmp_path / "t" / "results.parquet")["seed"]) == {3}


def test_cli_errors_and_list(tmp_path, capsys):
    assert _cli(["--list"]) == 0
    assert "concentration" in capsys.readouterr().out
    assert _cli(["nope", "--out", str(tmp_path)]) == 2
    assert "unknown study 'nope'" in capsys.readouterr().err
    assert _cli(["concentration", "--param", "dims", "--out", str(tmp_path)]) == 2
    assert "--param expects name=v1,v2" in capsys.readouterr().err
    assert _cli(["concentration", "--param", "bogus=1", "--executor", "serial", "--out", str(tmp_path)]) == 2
    assert "not accepted" in capsys.readouterr().err
