"""``geoalign sweep``: run a registered study (:mod:`geoalign.studies`) with the sweep engine.

``geoalign sweep STUDY [--param NAME=V1,V2 ...] [--zip ...] [--seeds 0,1,2]
[--executor serial|processes|dask] [--scheduler tcp://HOST:PORT] [--out DIR]``;
``geoalign sweep --list`` lists the studies.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..studies import Study, get_study, list_studies, run_study
from ..sweep import EXECUTORS, Grid, SweepInterrupted

__all__ = ["configure_parser", "run_cli"]


def _parse_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


def _parse_assignment(text: str, option: str) -> tuple[str, list]:
    name, sep, values = text.partition("=")
    if not sep or not name.strip() or not values.strip():
        raise ValueError(f"{option} expects name=v1,v2,..., got {text!r}")
    return name.strip(), [_parse_value(v) for v in values.split(",")]


def _grid_from_args(args: argparse.Namespace, study: Study) -> Grid:
    base = Grid.from_file(args.grid) if args.grid else study.default_grid
    product, zipped = dict(base.product), dict(base.zipped)
    for option, target, other in (("--param", product, zipped), ("--zip", zipped, product)):
        for text in (args.param if option == "--param" else args.zip) or []:
            name, values = _parse_assignment(text, option)
            other.pop(name, None)
            target[name] = values
    seeds = base.seeds
    if args.seeds:
        try:
            seeds = [int(s) for s in args.seeds.split(",")]
        except ValueError:
            raise ValueError(f"--seeds expects comma-separated integers such as 0,1,2; got "
                             f"{args.seeds!r}") from None
    return Grid(product=product, zipped=zipped, seeds=seeds)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``geoalign sweep``."""
    parser.add_argument("study", nargs="?", help="registered study (see --list)")
    parser.add_argument("--list", action="store_true", help="list the registered studies and exit")
    parser.add_argument("--grid", help="grid file (.json or .toml) with product/zipped/seeds; "
                        "replaces the study's default grid")
    parser.add_argument("--param", action="append", metavar="NAME=V1,V2",
                        help="product axis (repeatable); overrides that axis of the grid")
    parser.add_argument("--zip", action="append", metavar="NAME=V1,V2",
                        help="zipped axis (repeatable; all zipped axes must have equal length)")
    parser.add_argument("--seeds", metavar="S1,S2", help="seeds, e.g. 0,1,2")
    parser.add_argument("--executor", choices=EXECUTORS, default=None,
                        help="default: dask (a LocalCluster unless --scheduler), "
                             "processes when dask.distributed is missing")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="running Dask scheduler")
    parser.add_argument("--workers", type=int, default=None, help="local workers (default: CPU count)")
    parser.add_argument("--out", default=None, help="output folder (default: sweep-results/STUDY)")
    parser.add_argument("--cache-dir", default=None, help="cell cache (default: OUT/cache)")
    parser.add_argument("--connect-timeout", type=float, default=5.0, help="seconds (default 5)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run_cli(args: argparse.Namespace) -> int:
    """``geoalign sweep``: run a registered study; exit 1 if any cell failed."""
    if args.list or not args.study:
        for name, study in list_studies().items():
            print(f"{name:<16} {len(study.default_grid):>5} cells  {study.description}")
        return 0 if args.list else 2
    try:
        study = get_study(args.study)
        grid = _grid_from_args(args, study)
    except (KeyError, ValueError, TypeError, FileNotFoundError) as exc:
        print(f"geoalign sweep: error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    executor = args.executor
    if executor is None:
        if args.scheduler:
            executor = "dask"
        else:
            try:
                import distributed  # noqa: F401

                executor = "dask"
            except ImportError:
                executor = "processes"
    out = Path(args.out) if args.out else Path("sweep-results") / args.study
    try:
        result = run_study(args.study, grid, executor=executor, n_workers=args.workers,
                           scheduler=args.scheduler, out=out, cache_dir=args.cache_dir,
                           progress=not args.no_progress, verbose=True,
                           connect_timeout=args.connect_timeout)
    except SweepInterrupted:
        return 130
    except (ValueError, TypeError, ConnectionError) as exc:
        print(f"geoalign sweep: error: {exc}", file=sys.stderr)
        return 2
    print(f"results: {result.path}")
    return 1 if result.summary.failed else 0
