"""Execute the notebooks in their full setting and store the executed copies for the docs.

``python docs/run_gallery.py [NN ...]`` runs each ``notebooks/NN_*.ipynb`` as a JupyterLab user
would (``GEOALIGN_QUICK`` unset), in the notebook's folder, and writes

* ``docs/gallery/NN_name.ipynb`` — the executed notebook with its outputs (figures included),
  which the documentation renders without executing it again;
* ``docs/gallery/timings.json`` — per notebook: wall time of the full setting in seconds, the CPU
  time of its kernel (user + system, all threads), the SHA-256 of the notebook's jupytext source
  it was measured on, the CPU count and the date.

The CPU time is what the budget is checked against: on a machine that other jobs share, wall time
measures the load as much as the notebook, while the kernel's CPU time bounds the wall time of a
dedicated machine for a notebook that keeps at least one core busy (spin-waiting threads on an
oversubscribed machine only make it larger).

Both are written atomically, one notebook at a time, so an interrupted run keeps what finished.
``--quick`` runs the small setting instead (for a preview; the timings are then marked quick).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
GALLERY = ROOT / "docs" / "gallery"
TIMINGS = GALLERY / "timings.json"


def source_hash(ipynb: Path) -> str:
    """SHA-256 (first 16 hex digits) of the notebook's jupytext ``.py`` source."""
    return hashlib.sha256(ipynb.with_suffix(".py").read_bytes()).hexdigest()[:16]


INDEX = GALLERY / "index.md"
START, END = "<!-- timings:start -->", "<!-- timings:end -->"


def timings_table(timings: dict) -> str:
    """Markdown table of ``timings`` (the block of ``docs/gallery/index.md`` between the markers)."""
    lines = ["| notebook | setting | kernel CPU time (s) | wall time (s) | CPUs | measured |",
             "|---|---|---|---|---|---|"]
    for stem, t in sorted(timings.items()):
        cpu = f"{t['cpu_seconds']:.0f}" if "cpu_seconds" in t else "not measured"
        lines.append(f"| [{stem}]({stem}.ipynb) | {t['setting']} | {cpu} | {t['seconds']:.0f} "
                     f"| {t['cpus']} | {t['date']} |")
    return "\n".join(lines)


def write_index(timings: dict) -> None:
    """Replace the timings block of ``docs/gallery/index.md`` by :func:`timings_table`."""
    from geoalign._io import atomic_write_text

    text = INDEX.read_text(encoding="utf-8")
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    atomic_write_text(INDEX, f"{head}{START}\n{timings_table(timings)}\n{END}{tail}")


def run(names: list[str], quick: bool, timeout: int) -> dict:
    import nbformat
    from nbclient import NotebookClient

    from geoalign._io import atomic_write_text

    GALLERY.mkdir(parents=True, exist_ok=True)
    timings = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if names:
        paths = [p for p in paths if p.name[:2] in names]
    env_quick = os.environ.pop("GEOALIGN_QUICK", None)
    # the kernel must use its inline backend so that figures are stored in the outputs
    env_backend = os.environ.pop("MPLBACKEND", None)
    if quick:
        os.environ["GEOALIGN_QUICK"] = "1"
    try:
        for path in paths:
            source = source_hash(path)  # of the source that is executed, read before the run
            nb = nbformat.read(path, as_version=4)
            client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                    resources={"metadata": {"path": str(NOTEBOOKS)}})
            print(f"{path.name}: running ({'quick' if quick else 'full'} setting) ...", flush=True)
            t0 = time.perf_counter()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            client.execute()  # starts the kernel, runs every cell, shuts the kernel down (and reaps it)
            seconds = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            print(f"{path.name}: {seconds:.1f} s", flush=True)
            atomic_write_text(GALLERY / path.name, nbformat.writes(nb))
            timings[path.stem] = {"seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
                                  "setting": "quick" if quick else "full",
                                  "source_sha256": source, "cpus": os.cpu_count(),
                                  "date": time.strftime("%Y-%m-%d")}
            atomic_write_text(TIMINGS, json.dumps(timings, indent=1, sort_keys=True) + "\n")
            write_index(timings)
    finally:
        os.environ.pop("GEOALIGN_QUICK", None)
        if env_quick is not None:
            os.environ["GEOALIGN_QUICK"] = env_quick
        if env_backend is not None:
            os.environ["MPLBACKEND"] = env_backend
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("numbers", nargs="*", help="two-digit notebook numbers (default: all)")
    parser.add_argument("--quick", action="store_true", help="small setting (GEOALIGN_QUICK=1)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    run(args.numbers, args.quick, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
