"""Paper figures: one function per figure, a registry, and ``geoalign figures``.

``geoalign figures [--only NAME ...] [--quick] [--out figures/]`` regenerates
every figure and table of the paper from embedded data, and writes
``numbers.tex`` (the numbers the paper quotes, one LaTeX macro each).
``geoalign figures --list`` shows which figures are current for the present code.  See
:mod:`geoalign.figures.registry` for the contract of a figure function.
"""
from __future__ import annotations

import argparse
import importlib

from .registry import FIGURES, FigureContext, FigureOutput, figure, make_figures

__all__ = ["FIGURES", "FigureContext", "FigureOutput", "figure", "make_figures", "load_all",
           "configure_parser", "run_cli"]

# Modules whose import registers figures (one per topic of the paper).
_FIGURE_MODULES: tuple[str, ...] = ("fiber_figs", "geometry", "transport_figs", "training_figs",
                                     "regimes_figs", "comparison_figs")


def load_all() -> dict:
    """Import every figure module so that the registry is complete."""
    for mod in _FIGURE_MODULES:
        importlib.import_module(f"{__name__}.{mod}")
    return FIGURES


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``geoalign figures``."""
    parser.add_argument("--only", nargs="+", metavar="NAME", help="figure names to regenerate")
    parser.add_argument("--quick", action="store_true", help="small setting (seconds per figure)")
    parser.add_argument("--out", default="figures", help="output folder (default: figures/)")
    parser.add_argument("--seed", type=int, default=0, help="base random seed")
    parser.add_argument("--device", default="cpu", help="torch device for training figures")
    parser.add_argument("--force", action="store_true", help="regenerate even if current")
    parser.add_argument("--list", action="store_true",
                        help="list the figures with their status in --out (current, stale, missing) and exit")


def run_cli(args: argparse.Namespace) -> int:
    """``geoalign figures``."""
    load_all()
    if args.list:
        from .registry import figure_status

        status = figure_status(args.out, quick=args.quick, seed=args.seed, device=args.device)
        for name, entry in FIGURES.items():
            print(f"{name:<24} {entry.kind:<7} {status[name]:<8} {entry.description}")
        return 0
    manifest = make_figures(args.out, only=args.only, quick=args.quick, seed=args.seed,
                            device=args.device, force=args.force)
    names = args.only or list(FIGURES)
    total = sum(manifest[n]["seconds"] for n in names if n in manifest)
    print(f"{len(names)} figure(s)/table(s) in {args.out}/ (manifest.json); compute time {total:.1f} s")
    return 0
