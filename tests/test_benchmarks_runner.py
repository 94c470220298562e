"""benchmarks/run.py: the JSON it writes, and its one-line messages for bad names and missing anchors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "run.py"


def _run(args, tmp_path, extra_path=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = ":".join(p for p in (str(extra_path) if extra_path else "", str(ROOT)) if p)
    return subprocess.run([sys.executable, str(RUN), *args, "--out", str(tmp_path)], capture_output=True,
                          text=True, env=env, timeout=600, cwd=ROOT)


@pytest.fixture(scope="module")
def quick_spd(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    # an unknown name is reported in one line and the known ones still run
    proc = _run(["--quick", "--only", "nope", "--only", "spd_frechet", "--repeats", "2"], out)
    return proc, out


def test_quick_run_writes_the_schema(quick_spd):
    pytest.importorskip("pyriemann")
    proc, out = quick_spd
    assert proc.returncode == 2, proc.stdout + proc.stderr  # 2: the unknown name
    doc = json.loads((out / "spd_frechet.json").read_text())
    assert doc["schema"] == 1 and doc["benchmark"] == "spd_frechet" and doc["quick"] is True
    assert doc["threads"] == [1] and doc["repeats"] == 2
    assert {"cpu", "cpus_available", "platform"} <= set(doc["machine"])
    assert doc["versions"]["torch"] and doc["versions"]["pyriemann"]
    (case,) = doc["cases"]
    assert {"p", "points", "means", "dtype"} <= set(case["params"])
    assert case["geoalign"] == "geoalign" and case["anchor"] == "pyriemann mean_riemann"
    times = case["threads"]["1"]
    for name in ("geoalign", "pyriemann mean_riemann"):
        t = times[name]
        assert len(t["times"]) == 2 and t["min"] == min(t["times"]) and t["min"] <= t["median"]
        assert case["contenders"][name]["agrees"] and case["contenders"][name]["error"] <= 1e-8
    r = case["ratios"]["1"]
    assert r["of_median"] == pytest.approx(times[case["anchor"]]["median"] / times["geoalign"]["median"])
    assert r["paired_min"] <= r["paired_median"]
    assert case["status"] in ("met", "missed")
    assert "spd_frechet" in proc.stdout and "pyriemann mean_riemann" in proc.stdout  # the table


def test_readme_table_is_generated_from_the_results(quick_spd, tmp_path):
    pytest.importorskip("pyriemann")
    _, out = quick_spd
    sys.path.insert(0, str(RUN.parent))
    try:
        import run
    finally:
        sys.path.remove(str(RUN.parent))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{run.MARK_START}\nold\n{run.MARK_END}\nafter\n")
    run.write_readme(run.load_results(out), readme)
    text = readme.read_text()
    assert "old" not in text and text.startswith("intro\n") and text.endswith("after\n")
    assert "| spd_frechet | 1 mean(s) of 50 SPD(8) |" in text
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="markers"):
        run.write_readme(run.load_results(out), readme)


def test_unknown_name_is_one_line(quick_spd):
    pytest.importorskip("pyriemann")
    proc, _ = quick_spd
    lines = [line for line in proc.stdout.splitlines() if "nope" in line]
    assert lines == ["unknown benchmark 'nope'; choose from: sinkhorn, divergence, barycenter, "
                     "spd_frechet, sphere_frechet, rings, fiber"]


def test_missing_anchor_names_the_extra(tmp_path):
    shadow = tmp_path / "shadow"
    (shadow / "pyriemann").mkdir(parents=True)
    (shadow / "pyriemann" / "__init__.py").write_text("raise ImportError('pyriemann hidden by the test')\n")
    out = tmp_path / "out"
    proc = _run(["--quick", "--only", "spd_frechet", "--repeats", "1"], out, extra_path=shadow)
    msg = [line for line in proc.stdout.splitlines() if "pyriemann" in line and "install" in line]
    assert msg and 'pip install "geoalign[bench]"' in msg[0]
    assert "skipped, no anchor installed" in proc.stdout
    assert proc.returncode == 3
    assert not (out / "spd_frechet.json").exists()
