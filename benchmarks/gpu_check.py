"""The GPU check: device tests, then CUDA-vs-CPU timings written to a JSON file.

    python benchmarks/gpu_check.py --device cuda [--out gpu_check.json]
    python benchmarks/gpu_check.py --device cpu          # dry run of the script

1. Runs the device-parametrised tests (``tests/test_devices.py``: CPU vs device
   agreement in fiber, ot, manifolds, rings FFT, QSMA/Trainer, metrics) and the
   synchronisation budgets (``tests/test_syncs.py``).  With CUDA present the
   ``device`` fixture includes ``"cuda"``.
2. Times each workload on the device and on the CPU (same inputs, results
   compared):

   * QSMA training, n = 50 000 pairs, d = 512 features, one epoch (the CPU time
     is that of one epoch on n/10 pairs, scaled by 10);
   * the fiber join (:func:`geoalign.fiber_product`), n = m = 200 000, d = 256,
     float32 filter (the join has no float16 filter: the float16 row of the
     JSON says so instead of timing something else); the CPU time is that of
     one eighth of the rows of X, scaled by 8;
   * batched Sinkhorn, B = 64 problems of n = 1024 points, 100 iterations;
   * Fréchet means of 10^4 batches of 50 points on S^63, 50 fixed iterations.

On one GPU the whole check is meant to take under 5 minutes (the CPU side of
the timings dominates).  ``--device cuda`` without CUDA fails at once with an
error: the check never skips silently.  ``--device cpu`` is a dry run: every
stage at 1/100 of the sizes, CPU against CPU (it checks the script, it
measures nothing about a GPU).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from geoalign._io import atomic_write_json  # noqa: E402

TESTS = ["tests/test_devices.py", "tests/test_syncs.py"]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _timed(fn, device: str, repeats: int):
    """Best wall time of ``fn()`` over ``repeats`` runs after one warm-up; returns (s, result)."""
    out = fn()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return best, out


def _compare(name: str, sizes: dict, device: str, make, agree, repeats: int) -> dict:
    """Time ``make(dev)`` on the CPU and on ``device``; ``agree(cpu_out, dev_out)`` -> float."""
    t_cpu, out_cpu = _timed(lambda: make("cpu"), "cpu", 1)
    t_dev, out_dev = _timed(lambda: make(device), device, repeats)
    row = {"workload": name, **sizes, "cpu_s": t_cpu, "device_s": t_dev,
           "speedup": t_cpu / t_dev if t_dev > 0 else None, "max_abs_difference": agree(out_cpu, out_dev)}
    print(f"  {name:34s} cpu {t_cpu:8.3f} s   {device} {t_dev:8.3f} s   "
          f"x{row['speedup']:.2f}   max |diff| {row['max_abs_difference']:.3g}", flush=True)
    return row


def _qsma(n: int, d: int, device: str, repeats: int) -> dict:
    """One epoch on the device; on the CPU, one epoch on n/10 pairs, its time scaled by 10
    (an epoch's cost is linear in n), so the check stays short."""
    from geoalign.models.qsma import QSMA

    g = torch.Generator().manual_seed(0)
    S = torch.randn(n, 16, generator=g)
    X_a = S @ torch.randn(16, d, generator=g) + 0.5 * torch.randn(n, d, generator=g)
    X_b = S @ torch.randn(16, d, generator=g) + 0.5 * torch.randn(n, d, generator=g)

    def make(dev, rows):
        est = QSMA(dim=64, hidden=1024, n_layers=2, max_epochs=1, batch_size=256, random_state=0,
                   use_labels=False, trainer_options={"progress": False})
        est.fit(X_a[:rows].to(dev), X_b[:rows].to(dev))  # device-resident data
        return est.history_.records[-1]["train_loss"]

    rows = max(256, n // 10)
    t_cpu, loss_cpu = _timed(lambda: make("cpu", rows), "cpu", 1)
    t_cpu *= n / rows
    t_dev, loss_dev = _timed(lambda: make(device, n), device, repeats)
    row = {"workload": "QSMA training (1 epoch)", "n": n, "d": d, "cpu_s": t_cpu,
           "cpu_s_note": f"{rows} pairs timed, scaled by {n / rows:g}", "device_s": t_dev,
           "speedup": t_cpu / t_dev if t_dev > 0 else None, "train_loss_device": loss_dev,
           "train_loss_cpu_subset": loss_cpu}
    print(f"  {row['workload']:34s} cpu {t_cpu:8.3f} s*  {device} {t_dev:8.3f} s   "
          f"x{row['speedup']:.2f}   loss {loss_dev:.4g}   (*{row['cpu_s_note']})", flush=True)
    return row


def _fiber(n: int, d: int, device: str, repeats: int) -> list:
    """The join on the device; on the CPU, a block of n/8 rows of X against all of Y, its time
    scaled by 8 (the join's cost is linear in the rows of X), so the check stays short."""
    from geoalign import fiber_product

    g = torch.Generator().manual_seed(1)
    X = torch.randn(n, d, generator=g)
    Y = X + 0.01 * torch.randn(n, d, generator=g)  # one planted partner per row
    rows = max(1, n // 8)
    t_cpu, cpu = _timed(lambda: fiber_product(X[:rows], Y, 0.3, progress=False).pairs, "cpu", 1)
    t_cpu *= n / rows
    t_dev, dev = _timed(lambda: fiber_product(X.to(device), Y.to(device), 0.3, progress=False).pairs,
                        device, repeats)
    dev = dev.cpu()
    same = torch.equal(dev[dev[:, 0] < rows], cpu)
    row = {"workload": "fiber join, float32 filter", "n": n, "m": n, "d": d, "cpu_s": t_cpu,
           "cpu_s_note": f"rows 0..{rows} of X timed, scaled by {n / rows:g}", "device_s": t_dev,
           "speedup": t_cpu / t_dev if t_dev > 0 else None, "pairs": int(dev.shape[0]),
           "max_abs_difference": 0.0 if same else float("inf")}
    print(f"  {row['workload']:34s} cpu {t_cpu:8.3f} s*  {device} {t_dev:8.3f} s   "
          f"x{row['speedup']:.2f}   pairs equal: {same}   (*{row['cpu_s_note']})", flush=True)
    f16 = {"workload": "fiber join, float16 filter", "n": n, "m": n, "d": d,
           "skipped": "fiber_product has no float16 filter (float32, float64 fallback); "
                      "float16 inputs are filtered in float32"}
    print(f"  {f16['workload']:34s} not timed: {f16['skipped']}")
    return [row, f16]


def _sinkhorn(B: int, n: int, device: str, repeats: int) -> dict:
    from geoalign.ot import sinkhorn

    g = torch.Generator().manual_seed(2)
    X = torch.nn.functional.normalize(torch.randn(B, n, 16, generator=g), dim=-1)
    Y = torch.nn.functional.normalize(torch.randn(B, n, 16, generator=g) + 0.2, dim=-1)
    C = (1 - X @ Y.transpose(1, 2))

    def make(dev):
        return sinkhorn(None, None, C.to(dev), 0.05, max_iter=100, tol=0, validate=False).value.cpu()

    return _compare("Sinkhorn (100 iterations, tol=0)", {"B": B, "n": n}, device, make,
                    lambda a, b: float((a - b).abs().max()), repeats)


def _frechet(batch: int, n: int, d: int, device: str, repeats: int) -> dict:
    from geoalign.manifolds import Sphere, frechet_mean

    S = Sphere(dim=d - 1, validate=False)
    g = torch.Generator().manual_seed(3)
    x = torch.nn.functional.normalize(torch.randn(batch, n, d, generator=g) + 2.0, dim=-1)

    def make(dev):
        return frechet_mean(x.to(dev), S, max_iter=50, fixed_iterations=True).mean.cpu()

    return _compare(f"Frechet means on S^{d - 1} (50 it.)", {"batch": batch, "n": n, "d": d}, device,
                    make, lambda a, b: float((a - b).abs().max()), repeats)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:k, or cpu (dry run)")
    ap.add_argument("--out", default="gpu_check.json", help="JSON file of the results")
    ap.add_argument("--skip-tests", action="store_true", help="timings only")
    ap.add_argument("--repeats", type=int, default=3, help="device timings: best of this many")
    args = ap.parse_args(argv)
    device = str(args.device)
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SystemExit(f"gpu_check: --device {device} requested but CUDA is not available "
                             f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
                             "nothing was checked")
        torch.cuda.get_device_properties(torch.device(device))  # unknown index: fails here
        name = torch.cuda.get_device_name(torch.device(device))
    elif device == "cpu":
        name = "cpu (dry run: 1/100 of the sizes, CPU against CPU)"
    else:
        raise SystemExit(f"gpu_check: --device must be 'cuda', 'cuda:k' or 'cpu', got {device!r}")
    scale = 1.0 if device != "cpu" else 0.01
    print(f"gpu_check on {name}; torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    t0 = time.perf_counter()
    report = {"device": device, "device_name": name, "torch": torch.__version__,
              "cpu_threads": torch.get_num_threads(), "dry_run": device == "cpu"}
    failed = False
    if not args.skip_tests:
        print("device tests:", " ".join(TESTS), flush=True)
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
                              cwd=ROOT, capture_output=True, text=True)
        summary = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
        print("  " + summary, flush=True)
        report["tests"] = {"returncode": proc.returncode, "summary": summary}
        if proc.returncode != 0:
            failed = True
            print(proc.stdout[-4000:], proc.stderr[-2000:], sep="\n")
    print("timings (best of %d on the device, one CPU run):" % args.repeats, flush=True)
    n_q, n_f, n_b = (max(512, int(v * scale)) for v in (50_000, 200_000, 10_000))
    rows = [_qsma(n_q, 512, device, args.repeats)]
    rows += _fiber(n_f, 256, device, args.repeats)
    rows.append(_sinkhorn(64 if scale == 1 else 4, max(64, int(1024 * (scale * 10))), device,
                          args.repeats))
    rows.append(_frechet(n_b, 50, 64, device, args.repeats))
    report["timings"] = rows
    report["total_s"] = time.perf_counter() - t0
    atomic_write_json(args.out, report)
    print(f"wrote {args.out} ({report['total_s']:.0f} s)")
    if failed:
        print("gpu_check: the device tests FAILED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
