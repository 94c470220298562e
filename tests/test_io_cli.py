import json
import os
import subprocess
import sys

import numpy as np
import pytest

from geoalign._compat import import_geomstats
from geoalign._io import atomic_path, atomic_write_json
from geoalign.cli import main


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "result.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("interrupted")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temp left over


def test_geomstats_imports_through_shim():
    gs = import_geomstats()
    from geomstats.geometry.hypersphere import Hypersphere

    sphere = Hypersphere(dim=2)
    assert sphere.belongs(np.array([0.0, 0.0, 1.0]))
    assert gs.__version__


def test_cli_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "geoalign" in out and "numpy" in out and "cpu threads" in out and "compiled ring kernel" in out


def test_cli_unknown_command():
    with pytest.raises(SystemExit):
        main(["no-such-command"])


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "geoalign.cli", "info"], capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert "torch" in out.stdout


def test_import_geoalign_does_not_import_torch():
    code = "import sys, geoalign; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_bad_input_is_one_line_and_status_2(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("geoalign train: error:") and "does not exist" in err
    bad = tmp_path / "bad.toml"
    bad.write_text('[model]\nname = "qsma"\n[data]\nsource = "digits"\n[training]\nmax_epochs = 1\n')
    assert main(["train", str(bad)]) == 2
    assert "unknown top-level key(s) ['training']" in capsys.readouterr().err
