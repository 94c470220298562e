"""Reliability and safety: one test (or more) per failure case found by probing as a new user.

1 stale training results, 2 code run from a model file, 3 unbounded join memory,
4 overflow/underflow, 5 a maximum returned as the Fréchet mean, 6 complex input,
7 integer dtypes, 8 leaked workers, 9 raw tracebacks, 10 messages without a file or
fix, 11 leftovers after a failed run, 12 file permissions, 13 small cases.
"""
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

import geoalign as ga
import geoalign.ot as ot
from geoalign._io import atomic_write_text, current_umask, remove_stale_temps
from geoalign._validation import check_array
from geoalign._warnings import ConvergenceWarning
from geoalign.cli import main
from geoalign.fiber import (FiberProduct, TooManyPairsError, fiber_counts, fiber_product,
                            iter_fiber_product, pair_distances)
from geoalign.models.base import SAVE_FORMAT, AlignmentEstimator
from geoalign.models.contrastive import LinearContrastive
from geoalign.train import Trainer

# ----------------------------------------------------------------------------- helpers


def sigint_as_in_a_terminal() -> None:
    """``preexec_fn``: give the child the default SIGINT disposition.

    A test runner started in the background by a shell inherits SIGINT *ignored*, and so
    would the CLI under test; a user pressing Ctrl-C in a terminal runs it with the default.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _pairs(n=64, d_a=5, d_b=4, seed=0):
    r = np.random.default_rng(seed)
    return r.normal(size=(n, d_a)), r.normal(size=(n, d_b))


def _train_config(tmp_path, temperature=0.1, data="d.npz", trainer="max_epochs = 2\nbatch_size = 32\n",
                  model_extra=""):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f'[model]\nname = "linear_contrastive"\ndim = 3\ntemperature = {temperature}\n'
                   f'random_state = 0\n{model_extra}'
                   f'[data]\nsource = "paired_file"\npath = "{data}"\n[trainer]\n{trainer}')
    return cfg


def _save_data(path, seed=0):
    X_a, X_b = _pairs(seed=seed)
    np.savez(path, X_a=X_a, X_b=X_b)
    return X_a, X_b


def _train(cfg, out, *extra):
    return main(["train", str(cfg), "--output", str(out), "--no-progress", *extra])


# ------------------------------------------------------------------ 1. stale training results


def test_1_changed_model_settings_are_never_served_from_old_weights(tmp_path, capsys):
    _save_data(tmp_path / "d.npz")
    out = tmp_path / "R"
    assert _train(_train_config(tmp_path, 0.1), out) == 0
    first = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    config_before = (out / "config.json").read_text()
    capsys.readouterr()
    # same tensor shapes, other loss temperature: refused, nothing overwritten
    assert _train(_train_config(tmp_path, 0.5), out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different model" in err and "--overwrite" in err
    assert (out / "config.json").read_text() == config_before
    # --overwrite trains afresh: the new model carries new weights, not the old ones
    assert _train(_train_config(tmp_path, 0.5), out, "--overwrite") == 0
    state = torch.load(out / "model.pt", weights_only=True)
    assert state["params"]["temperature"] == 0.5
    assert any(not torch.equal(state["state_dict"][k], v) for k, v in first.items())
    assert json.loads((out / "config.json").read_text())["run_key"]["model"]["temperature"] == 0.5


def test_1_replaced_data_of_the_same_shape_is_never_served_from_old_weights(tmp_path, capsys):
    _save_data(tmp_path / "d.npz", seed=0)
    cfg = _train_config(tmp_path)
    out = tmp_path / "R"
    assert _train(cfg, out) == 0
    assert _train(cfg, out) == 0  # unchanged: resumes the finished run
    capsys.readouterr()
    _save_data(tmp_path / "d.npz", seed=1)  # other values, same shapes
    assert _train(cfg, out) == 2
    assert "data_sha256" in capsys.readouterr().err


def test_1_trainer_checkpoints_are_keyed_by_model_identity_and_data(tmp_path):
    X_a, X_b = _pairs()
    opts = {"checkpoint_dir": str(tmp_path), "progress": False}
    LinearContrastive(dim=3, temperature=0.1, max_epochs=2, batch_size=32, random_state=0,
                      trainer_options=opts).fit(X_a, X_b)
    with pytest.raises(ValueError, match="different training configuration.*temperature"):
        LinearContrastive(dim=3, temperature=0.3, max_epochs=2, batch_size=32, random_state=0,
                          trainer_options=opts).fit(X_a, X_b)
    with pytest.raises(ValueError, match="train_data_sha256"):
        LinearContrastive(dim=3, temperature=0.1, max_epochs=2, batch_size=32, random_state=0,
                          trainer_options=opts).fit(X_a + 1e-9, X_b)
    # the identical run resumes
    LinearContrastive(dim=3, temperature=0.1, max_epochs=2, batch_size=32, random_state=0,
                      trainer_options=opts).fit(X_a, X_b)


# ------------------------------------------------------------ 2. code execution from a model file


def _crafted_model_file(path, marker, **fields):
    state = {"format": SAVE_FORMAT, "class": "subprocess:run",
             "params": {"args": ["touch", str(marker)]}, "n_features_a": 1, "n_features_b": 1,
             "seed": 0, "module_config": {}, "history": {}, "state_dict": {}}
    state.update(fields)
    torch.save(state, path)


def test_2_crafted_model_file_is_refused_and_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "pwned"
    f = tmp_path / "f.pt"
    _crafted_model_file(f, marker)
    with pytest.raises(ValueError, match="not a registered geoalign model.*refusing to import"):
        AlignmentEstimator.load(f)
    np.savez(tmp_path / "d.npz", X_a=np.ones((4, 1)), X_b=np.ones((4, 1)))
    assert main(["eval", str(f), "--data", str(tmp_path / "d.npz")]) == 2
    assert "refusing to import" in capsys.readouterr().err
    # a registry name that is not registered, and a registered class with foreign parameters
    _crafted_model_file(f, marker, model="subprocess")
    with pytest.raises(ValueError, match="not registered"):
        AlignmentEstimator.load(f)
    _crafted_model_file(f, marker, model="linear_contrastive")
    with pytest.raises(ValueError, match=r"\['args'\] are not arguments of LinearContrastive"):
        AlignmentEstimator.load(f)
    assert not marker.exists()


def test_2_saved_models_round_trip_by_registry_name(tmp_path):
    X_a, X_b = _pairs()
    model = LinearContrastive(dim=3, max_epochs=1, batch_size=32, random_state=0,
                              trainer_options={"progress": False}).fit(X_a, X_b)
    path = model.save(tmp_path / "m.pt")
    assert torch.load(path, weights_only=True)["model"] == "linear_contrastive"
    back = AlignmentEstimator.load(path)
    np.testing.assert_array_equal(back.transform_a(X_a), model.transform_a(X_a))


# ------------------------------------------------------------------- 3. unbounded join memory


def test_3_max_pairs_stops_a_join_that_would_not_fit(rng):
    X, Y = rng.normal(size=(500, 4)), rng.normal(size=(700, 4))
    with pytest.raises(TooManyPairsError, match="fiber_counts.*smaller eps.*iter_fiber_product.*Dask"):
        fiber_product(X, Y, 3.0, max_pairs=1000)  # refused from the sampled estimate
    exact = fiber_product(X, Y, 1.0, max_pairs=None)
    assert fiber_product(X, Y, 1.0, max_pairs=exact.count).count == exact.count
    with pytest.raises(TooManyPairsError, match="pairs found before stopping"):
        fiber_product(X, Y, 1.0, max_pairs=exact.count - 1)  # the running count is exact
    assert isinstance(TooManyPairsError("x"), MemoryError)


def test_3_default_max_pairs_follows_available_memory(rng, monkeypatch):
    import geoalign.fiber as fiber

    X, Y = rng.normal(size=(1100, 3)), rng.normal(size=(1000, 3))  # n*m above the 2^20 floor
    monkeypatch.setattr(fiber, "available_memory", lambda device=None: 0)
    with pytest.raises(TooManyPairsError, match="max_pairs=1048576"):
        fiber_product(X, Y, 100.0)  # all 1.1e6 pairs qualify; the floor allows 2^20
    monkeypatch.setattr(fiber, "available_memory", lambda device=None: 2**40)
    assert fiber_product(X, Y, 100.0).count == 1100 * 1000


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_3_iter_fiber_product_streams_the_same_pairs(rng, kind):
    X, Y = rng.normal(size=(230, 3)), rng.normal(size=(90, 3))
    if kind == "torch":
        X, Y = torch.as_tensor(X), torch.as_tensor(Y)
    full = fiber_product(X, Y, 0.9, row_offset=5, col_offset=7)
    blocks = list(iter_fiber_product(X, Y, 0.9, block_rows=64, row_offset=5, col_offset=7))
    assert [b.offset for b in blocks] == [(5, 7), (69, 7), (133, 7), (197, 7)]
    assert all(b.count <= 64 * 90 for b in blocks)
    merged = FiberProduct.concatenate(blocks)
    assert merged.shape == full.shape and merged.offset == full.offset
    assert np.array_equal(np.asarray(merged.pairs), np.asarray(full.pairs))
    assert np.array_equal(np.asarray(merged.distances), np.asarray(full.distances))
    with pytest.raises(ValueError, match="eps must be >= 0"):
        iter_fiber_product(X, Y, -1.0)  # bad arguments raise at the call, not at iteration
    assert "iter_fiber_product" in ga.__all__


def test_3_peak_memory_stays_bounded_when_max_pairs_stops_a_huge_join(tmp_path):
    """n = m = 3e4 with every pair within eps would need ~80 GB; the join stops at once."""
    code = textwrap.dedent("""
        import resource, sys
        import numpy as np
        import geoalign.fiber as fiber
        fiber.available_memory = lambda device=None: 200 * 2**20
        X = np.random.default_rng(0).normal(size=(30000, 8))
        try:
            fiber.fiber_product(X, X, 1e3)
        except fiber.TooManyPairsError as exc:
            print("stopped", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    kind, kib = out.stdout.split()
    assert kind == "stopped" and int(kib) < 1_500_000  # KiB: well under 1.5 GB


# ------------------------------------------------------------- 4. silent overflow and underflow


@pytest.mark.parametrize("scale", [1e150, 1e-150, 1e160, 1e-165, 1e200, 1e-200])
def test_4_extreme_magnitudes_give_the_scaled_reference(rng, scale):
    X, Y = rng.normal(size=(40, 5)), rng.normal(size=(50, 5))
    D = np.sort(cdist(X, Y).ravel())
    eps = (D[200] + D[201]) / 2  # mid-gap: no pair near the boundary
    ref = fiber_product(X, Y, eps)
    got = fiber_product(X * scale, Y * scale, eps * scale)
    assert got.count == ref.count == 201
    np.testing.assert_array_equal(got.pairs, ref.pairs)
    np.testing.assert_allclose(got.distances / scale, ref.distances, rtol=1e-13)
    np.testing.assert_array_equal(fiber_counts(X * scale, Y * scale, [eps * scale]).counts, [201])
    np.testing.assert_allclose(pair_distances(X[:5] * scale, Y[:5] * scale) / scale,
                               np.linalg.norm(X[:5] - Y[:5], axis=1), rtol=1e-13)
    for metric in ("cosine", "geodesic"):
        a, b = fiber_product(X * scale, Y * scale, 0.4, metric), fiber_product(X, Y, 0.4, metric)
        assert a.count > 0
        np.testing.assert_array_equal(a.pairs, b.pairs)
        np.testing.assert_allclose(a.distances, b.distances, rtol=1e-12)


# ------------------------------------------------------------- 5. a maximum returned as the mean


def test_5_antipodal_points_are_not_reported_as_a_converged_mean():
    S = ga.Sphere(dim=2)
    good = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    bad = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    with pytest.warns(ConvergenceWarning, match="not a minimum.*converged=False"):
        res = ga.frechet_mean(np.stack([good, bad]), S)
    assert res.converged.tolist() == [True, False]
    with pytest.warns(ConvergenceWarning, match="not a minimum"):
        assert not bool(ga.frechet_mean(torch.tensor(bad, dtype=torch.float32), S).converged)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bool(ga.frechet_mean(good, S).converged)


# ------------------------------------------------------------------------- 6. complex input


def test_6_complex_input_is_rejected_everywhere(rng):
    Z = rng.normal(size=(12, 3)) + 1j
    R = rng.normal(size=(10, 3))
    with pytest.raises(TypeError, match="X must be real, got complex"):
        check_array(Z, "X")
    with pytest.raises(TypeError, match="X must be real, got complex"):
        check_array(torch.as_tensor(Z), "X")
    calls = [lambda: ot.sliced_wasserstein(Z, R), lambda: ot.sinkhorn_divergence(Z, R, reg=1.0),
             lambda: ot.gaussian_barycenter(np.zeros((2, 2)) + 0j, np.stack([np.eye(2)] * 2)),
             lambda: ot.free_support_barycenter([Z, Z]), lambda: fiber_product(Z, R, 1.0),
             lambda: ga.Sphere(dim=2).dist(Z[:2], R[:2])]
    for call in calls:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # not a ComplexWarning: an error
            with pytest.raises(TypeError, match="must be real, got complex"):
                call()


# -------------------------------------------------------------------------- 7. integer dtypes


def test_7_scaling_loaders_refuse_integer_dtypes(tmp_path):
    with pytest.raises(TypeError, match="floating dtype.*truncate"):
        ga.load_xlsa17(tmp_path, "CUB", dtype=np.int32)  # refused before any file is read
    with pytest.raises(TypeError, match="floating dtype.*truncate"):
        ga.load_digits_two_view(dtype=np.int64)


# -------------------------------------------------------------------------- 8. leaked workers


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_8_process_workers_die_with_a_killed_parent(tmp_path):
    script = tmp_path / "sweep_script.py"
    script.write_text(textwrap.dedent("""
        import os, sys, time
        from geoalign.sweep import Grid, run_sweep
        def cell(k, seed):
            open(os.path.join(sys.argv[1], f"{os.getpid()}.pid"), "w").close()
            time.sleep(300)
            return {"k": k}
        if __name__ == "__main__":
            run_sweep(cell, Grid(product={"k": [1, 2]}), executor="processes", n_workers=2,
                      progress=False)
    """))
    pids = tmp_path / "pids"
    pids.mkdir()
    parent = subprocess.Popen([sys.executable, str(script), str(pids)], stderr=subprocess.DEVNULL,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = [int(p.stem) for p in pids.iterdir()]
        assert len(workers) == 2, "the workers did not start"
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()

    def alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        with open(f"/proc/{pid}/stat") as fh:  # a zombie waiting for its reaper is gone too
            return fh.read().split()[2] != "Z"

    deadline = time.monotonic() + 30
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [p for p in workers if alive(p)]
    for p in survivors:  # do not leak them from the test either
        os.kill(p, signal.SIGKILL)
    assert not survivors


# -------------------------------------------------------------------------- 9. raw tracebacks


def _one_line_error(capsys, command):
    err = capsys.readouterr().err
    assert err.startswith(f"geoalign {command}: error:") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_9_corrupt_model_files_give_one_line(tmp_path, capsys):
    X_a, X_b = _pairs()
    np.savez(tmp_path / "d.npz", X_a=X_a, X_b=X_b)
    good = LinearContrastive(dim=3, max_epochs=1, batch_size=32, random_state=0,
                             trainer_options={"progress": False}).fit(X_a, X_b).save(tmp_path / "m.pt")
    blob = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(blob[: len(blob) // 3])
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "noise.pt").write_bytes(os.urandom(500))
    torch.save({"obj": FiberProduct}, tmp_path / "pickled.pt")  # a non-tensor object inside
    for name in ("trunc.pt", "empty.pt", "noise.pt", "pickled.pt"):
        assert main(["eval", str(tmp_path / name), "--data", str(tmp_path / "d.npz")]) == 2, name
        err = _one_line_error(capsys, "eval")
        assert name in err and "weights_only=False" not in err
    from geoalign.models.linear import CCA
    from geoalign.models.qsma import QSMA

    cca = CCA(dim=2).fit(X_a, X_b).save(tmp_path / "cca.npz")
    with pytest.raises(ValueError, match="load_linear_model"):
        QSMA.load(cca)


def test_9_corrupt_data_files_give_clear_errors(tmp_path, capsys):
    (tmp_path / "bad.npz").write_text("not a zip")
    np.savez(tmp_path / "obj.npz", X_a=np.array([{"a": 1}], dtype=object), X_b=np.ones((1, 2)))
    for name in ("bad.npz", "obj.npz"):
        with pytest.raises(ValueError) as info:
            ga.load_paired(tmp_path / name, key_a="X_a", key_b="X_b")
        assert name in str(info.value) and "allow_pickle" not in str(info.value)
    h5py = pytest.importorskip("h5py")
    ga.data.paired.save_paired(tmp_path / "p.h5", np.ones((3, 2)), np.ones((3, 2)))
    blob = (tmp_path / "p.h5").read_bytes()
    (tmp_path / "trunc.h5").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="trunc.h5"):
        ga.load_paired(tmp_path / "trunc.h5")
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f.create_dataset("grp/a", data=np.ones((3, 2)))
        f.create_dataset("b", data=np.ones((3, 2)))
    with pytest.raises(ValueError, match="'grp' is an HDF5 group.*'grp/a'"):
        ga.load_paired(tmp_path / "g.h5", key_a="grp")
    assert ga.load_paired(tmp_path / "g.h5", key_a="grp/a").a.shape == (3, 2)
    (tmp_path / "m.pt").write_bytes(b"")
    assert main(["eval", str(tmp_path / "m.pt"), "--data", str(tmp_path / "bad.npz")]) == 2
    _one_line_error(capsys, "eval")


def test_9_bad_cli_arguments_give_one_line(tmp_path, capsys):
    _save_data(tmp_path / "d.npz")
    cfg = _train_config(tmp_path)
    assert main(["train", str(cfg), "--output", str(tmp_path / "R"), "--device", "bogus"]) == 2
    assert "'bogus' is not a torch device" in _one_line_error(capsys, "train")
    assert not (tmp_path / "R").exists()
    assert _train(cfg, tmp_path / "R") == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "R" / "model.pt"), "--data", str(tmp_path / "d.npz"),
                 "--output", str(tmp_path)]) == 2
    assert "is a folder" in _one_line_error(capsys, "eval")
    (tmp_path / "file").write_text("")
    assert main(["figures", "--out", str(tmp_path / "file"), "--quick", "--only", "fiber_curves"]) == 2
    assert "file" in _one_line_error(capsys, "figures")


def test_9_ctrl_c_exits_130_with_rerun_advice(tmp_path, capsys, monkeypatch):
    import geoalign.figures
    import geoalign.train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    _save_data(tmp_path / "d.npz")
    monkeypatch.setattr(geoalign.train.Trainer, "fit", interrupted)
    assert _train(_train_config(tmp_path), tmp_path / "R") == 130
    err = capsys.readouterr().err
    assert "interrupted; rerun the same command to resume" in err and "Traceback" not in err
    monkeypatch.setattr(geoalign.figures, "run_cli", interrupted)
    assert main(["figures", "--out", str(tmp_path / "F")]) == 130
    assert "rerun" in capsys.readouterr().err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_9_real_sigint_during_train_exits_130_and_rerun_resumes(tmp_path):
    X_a, X_b = _pairs(n=512)
    np.savez(tmp_path / "d.npz", X_a=X_a, X_b=X_b)
    cfg = _train_config(tmp_path, trainer="max_epochs = 100000\nbatch_size = 8\n")
    out = tmp_path / "R"
    last = out / "checkpoints" / "last.pt"
    cmd = [sys.executable, "-m", "geoalign.cli", "train", str(cfg), "--output", str(out),
           "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}

    def epoch():
        try:
            return torch.load(last, weights_only=True)["state"]["epoch"]
        except (FileNotFoundError, RuntimeError, EOFError):
            return 0

    def run_until(condition):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env, preexec_fn=sigint_as_in_a_terminal)
        try:
            deadline = time.monotonic() + 120
            while not condition() and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return proc.returncode, err

    rc, err = run_until(lambda: epoch() >= 3)
    assert rc == 130, err
    assert "interrupted; rerun the same command to resume" in err and "Traceback" not in err
    done = epoch()
    assert done >= 3
    stamp = last.stat().st_mtime_ns
    # the same command again resumes: its first checkpoint continues the count (a fresh run
    # would write epoch 1 first)
    rc, err = run_until(lambda: last.stat().st_mtime_ns != stamp)
    assert rc == 130, err
    assert epoch() > done


# ------------------------------------------------------------ 10. messages name the file and fix


def test_10_messages_name_the_file_and_the_fix(tmp_path, capsys):
    (tmp_path / "F").mkdir()
    (tmp_path / "F" / "manifest.json").write_text("{broken")
    assert main(["figures", "--out", str(tmp_path / "F"), "--quick", "--only", "fiber_curves"]) == 2
    err = _one_line_error(capsys, "figures")
    assert "manifest.json" in err and "is corrupt" in err and "--force" in err
    (tmp_path / "m5.toml").write_text('model = 5\n[data]\nsource = "digits"\n')
    assert main(["train", str(tmp_path / "m5.toml")]) == 2
    assert "m5.toml" in _one_line_error(capsys, "train")
    (tmp_path / "g.json").write_text('{"product": ')
    assert main(["sweep", "concentration", "--grid", str(tmp_path / "g.json")]) == 2
    assert "g.json is not valid JSON" in capsys.readouterr().err
    assert main(["sweep", "concentration", "--seeds", "a,b"]) == 2
    assert "--seeds expects comma-separated integers" in capsys.readouterr().err


# ---------------------------------------------------------------- 11. leftovers after a failure


def test_11_failed_runs_leave_no_partial_output(tmp_path, capsys, monkeypatch):
    _save_data(tmp_path / "d.npz")
    out = tmp_path / "R"
    assert _train(_train_config(tmp_path, trainer="max_epochs = 2\nbogus_option = 1\n"), out) == 2
    assert "bogus_option" in capsys.readouterr().err and not out.exists()
    assert _train(_train_config(tmp_path, trainer="max_epochs = 2\nlr = -1\n"), out) == 2
    assert not out.exists()
    assert _train(_train_config(tmp_path, model_extra="no_such_arg = 1\n"), out) == 2
    assert not out.exists()
    assert _train(_train_config(tmp_path, model_extra="max_logit_scale = 0.0\n"),
                  out) == 2
    assert not out.exists()
    # an error only found while fitting (after config.json was written) removes what was written

    def failing_build(self, *args, **kwargs):
        raise ValueError("rejected by the model")

    monkeypatch.setattr(LinearContrastive, "_build_module", failing_build)
    capsys.readouterr()
    assert _train(_train_config(tmp_path), out) == 2
    assert "rejected by the model" in capsys.readouterr().err and not out.exists()


def test_11_stale_temp_files_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".fig.png.tmp-{dead_pid}-abc123.png"
    live = tmp_path / f".fig.png.tmp-{os.getpid()}-def456.png"
    other = tmp_path / ".notes.tmp-keep"  # not a name atomic_path writes
    legacy_old = tmp_path / ".fig.pdf.tmp-a1b2c3d4.pdf"  # earlier versions: no pid
    legacy_new = tmp_path / ".fig.csv.tmp-e5f6g7h8.csv"
    for p in (stale, live, other, legacy_old, legacy_new):
        p.write_text("")
    hours_ago = time.time() - 2 * 3600
    os.utime(legacy_old, (hours_ago, hours_ago))
    atomic_write_text(tmp_path / "table.csv", "a\n")  # first write into the folder cleans it
    assert not stale.exists() and not legacy_old.exists()
    assert live.exists() and other.exists() and legacy_new.exists()  # may belong to a live run
    assert remove_stale_temps(tmp_path) == []


# ------------------------------------------------------------------------ 12. file permissions


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_12_written_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        assert current_umask() == umask
        path = atomic_write_text(tmp_path / "x.json", "{}")
        assert stat.S_IMODE(path.stat().st_mode) == mode
        X_a, X_b = _pairs()
        model = LinearContrastive(dim=3, max_epochs=1, batch_size=32, random_state=0,
                                  trainer_options={"progress": False,
                                                   "checkpoint_dir": str(tmp_path / "ck")})
        saved = model.fit(X_a, X_b).save(tmp_path / "m.pt")
        for p in (saved, tmp_path / "ck" / "last.pt"):
            assert stat.S_IMODE(p.stat().st_mode) == mode, p
    finally:
        os.umask(old)


# ------------------------------------------------------------------------- 13. small cases


def test_13_small_cases_get_clear_errors(rng):
    ring = ga.PolyRing(8)
    with pytest.raises(ValueError, match=r"batch shapes \(2,\) and \(3,\) do not broadcast"):
        ring.mul(np.ones((2, 5), dtype=np.int64), np.ones((3, 5), dtype=np.int64))
    S = ga.Sphere(dim=2)
    with pytest.raises(ValueError, match=r"x has batch shape \(2,\), y has batch shape \(3,\)"):
        S.dist(S.random(2, seed=0), S.random(3, seed=1))
    fp = fiber_product(rng.normal(size=(4, 2)), rng.normal(size=(5, 2)), 10.0)
    assert fp.precision_recall([[0, 0], [3, 4]]).true_positives == 2
    with pytest.raises(ValueError, match=r"true_pairs\[1\] = \[4, 0\] lies outside"):
        fp.precision_recall([[0, 0], [4, 0]])
    with pytest.raises(ValueError, match="outside"):
        fp.precision_recall([[0, 5]])
