"""The ``geoalign`` command line.

Subcommands are registered in :data:`COMMANDS` (a
:class:`~geoalign._registry.Registry`) as ``name -> (module, help)`` or ``name ->
(module, help, configure_function, run_function)``; add one with
:func:`register_command`.  The module is imported only when its subcommand runs,
and defines ``configure_parser(parser)`` (add its arguments) and ``run_cli(args)
-> int`` unless other names are given.
Bad input raised as ValueError/TypeError/KeyError/OSError (a missing, unreadable or
unwritable path) is printed as one line and exits with status 2; Ctrl-C exits with
status 130 and "rerun the same command to resume" (set ``GEOALIGN_DEBUG=1`` for
the traceback).
This keeps ``geoalign info`` fast and lets each concept own its own options.
"""
from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys

from .._registry import Registry, resolve_target

__all__ = ["main", "COMMANDS", "USER_ERRORS", "register_command"]

COMMANDS = Registry("command", {
    "info": ("geoalign.cli", "print versions, devices and threads"),
    "figures": ("geoalign.figures", "regenerate the paper's figures and tables"),
    "sweep": ("geoalign.cli.sweep", "parameter sweeps: local processes or a Dask cluster"),
    "train": ("geoalign.cli.train", "train a model from a JSON/TOML config",
              "configure_train_parser", "run_train_cli"),
    "eval": ("geoalign.cli.train", "evaluate a saved model on paired data (retrieval scores)",
             "configure_eval_parser", "run_eval_cli"),
})


def register_command(name: str, module: str, help_text: str, configure: str = "configure_parser",
                     run: str = "run_cli") -> None:
    """Add ``geoalign NAME``: ``module`` defines ``configure(parser)`` and ``run(args) -> int``."""
    COMMANDS.register(name, (module, help_text, configure, run), replace=True)


#: exceptions that mean bad input (exit status 2 with one line); OSError covers unreadable or
#: unwritable paths (a folder given for a file, a file for a folder, no permission, disk full)
USER_ERRORS = (ValueError, TypeError, KeyError, OSError)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) if str(exc) else type(exc).__name__
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        text = exc.args[0]  # KeyError quotes its message
    if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) not in text:
        text += f": {exc.filename}"
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
        text += " (check the path, its type -- file or folder -- and its permissions)"
    return text


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``geoalign info`` (none)."""


def _version(mod: str) -> str:
    try:
        m = importlib.import_module(mod)
    except Exception as exc:  # noqa: BLE001 - report any import failure
        return f"not importable ({type(exc).__name__})"
    return str(getattr(m, "__version__", "unknown"))


def run_cli(args: argparse.Namespace) -> int:
    """``geoalign info``: versions, devices and threads."""
    from .. import __version__
    from .._backend import default_num_threads
    from .._compat import patch_numpy_trapz

    patch_numpy_trapz()  # so geomstats reports a version instead of an import error
    print(f"geoalign {__version__}")
    print(f"python {platform.python_version()} ({platform.platform()})")
    for mod in ("numpy", "scipy", "sympy", "torch", "ot", "geomstats", "matplotlib",
                "pandas", "tqdm", "dask", "distributed", "flint", "faiss"):
        print(f"  {mod:<11} {_version(mod)}")
    print(f"cpu threads available: {default_num_threads()}")
    from ..rings import HAVE_COMPILED_KERNEL

    print(f"compiled ring kernel (Z_2^k products): {'built' if HAVE_COMPILED_KERNEL else 'not built (FFT only)'}")
    try:
        import torch

        print(f"torch threads: {torch.get_num_threads()}")
        print(f"cuda available: {torch.cuda.is_available()}"
              + (f" ({torch.cuda.device_count()} device(s): "
                 + ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
                 + ")" if torch.cuda.is_available() else ""))
        mps = getattr(torch.backends, "mps", None)
        print(f"mps available: {bool(mps is not None and mps.is_available())}")
    except ImportError:
        print("torch: not installed")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``geoalign`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    top = argparse.ArgumentParser(
        prog="geoalign",
        description="Geometry of multimodal embedding alignment.",
        epilog="Run 'geoalign COMMAND --help' for the options of a command.",
    )
    top.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND",
                     help="; ".join(f"{k}: {v[1]}" for k, v in sorted(COMMANDS.items())))
    top.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0 if argv else 2
    ns = top.parse_args(argv[:1])
    module_name, help_text, *functions = COMMANDS[ns.command]
    configure_name, run_name = functions or ("configure_parser", "run_cli")
    sub = argparse.ArgumentParser(prog=f"geoalign {ns.command}", description=help_text)
    resolve_target(f"{module_name}:{configure_name}")(sub)
    args = sub.parse_args(argv[1:])
    run = resolve_target(f"{module_name}:{run_name}")
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        # Ctrl-C: finished work is saved atomically (checkpoints, sweep cells, figures)
        if os.environ.get("GEOALIGN_DEBUG"):
            raise
        print(f"geoalign {ns.command}: interrupted; rerun the same command to resume",
              file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        # bad input (config, data, arguments, paths): a one-line message, not a traceback
        if os.environ.get("GEOALIGN_DEBUG"):
            raise
        print(f"geoalign {ns.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2

