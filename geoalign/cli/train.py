"""``geoalign train`` and ``geoalign eval``: the training config and its command line.

:func:`load_config` reads a JSON/TOML training config; ``geoalign train CONFIG``
builds the model (:data:`geoalign.models.base.MODEL_REGISTRY`) and the data
(:data:`geoalign.data.sources.DATASETS`) it names and trains them with
:class:`geoalign.train.Trainer`; ``geoalign eval MODEL`` scores a saved model.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_json, read_config_file
from ..data.sources import load_dataset, resolve_path
from ..train import Trainer, content_hash, distributed_context

__all__ = ["load_config", "configure_train_parser", "run_train_cli", "configure_eval_parser",
           "run_eval_cli", "configure_parser", "run_cli"]


def load_config(path: Any) -> dict:
    """Read a JSON (``.json``) or TOML (``.toml``) training config.

    Layout (TOML)::

        output_dir = "runs/demo"          # optional; default: next to the config
        [model]
        name = "linear_contrastive"       # a key of geoalign.models.base.MODEL_REGISTRY
        dim = 16                          # constructor arguments of the model
        [data]
        source = "paired_file"            # a key of DATASETS
        path = "pairs.npz"                # relative to the config file
        [data.val]                        # optional validation data, same form
        source = "paired_file"
        path = "val.npz"
        [data.test]                       # optional: what ``geoalign eval --config`` scores
        source = "paired_file"
        path = "test.npz"
        [trainer]                         # Trainer / estimator training options
        max_epochs = 20
        batch_size = 128
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config {path} does not exist")
    if path.is_dir():
        raise ValueError(f"config {path} is a folder; give the .json or .toml file")
    if path.suffix not in (".json", ".toml"):
        raise ValueError(f"config {path} must end in .json or .toml")
    cfg = read_config_file(path, "config")
    if not isinstance(cfg, dict):
        raise ValueError(f"config {path} must be a table/object at top level")
    missing = [k for k in ("model", "data") if k not in cfg]
    if missing:
        raise ValueError(f"config {path} lacks section(s) {missing}")
    for section in ("model", "data", "trainer"):
        if section in cfg and not isinstance(cfg[section], dict):
            raise ValueError(f"config {path}: {section!r} must be a table ([{section}] in TOML, an "
                             f"object in JSON) of settings, got {type(cfg[section]).__name__} "
                             f"{cfg[section]!r}")
    if "name" not in cfg["model"]:
        raise ValueError(f"config {path}: [model] needs a 'name'")
    if not isinstance(cfg["model"]["name"], str):
        raise ValueError(f"config {path}: [model] name must be a string (a registered model), "
                         f"got {cfg['model']['name']!r}")
    for sub in ("val", "test"):
        if sub in cfg["data"] and not isinstance(cfg["data"][sub], dict):
            raise ValueError(f"config {path}: [data.{sub}] must be a table, got "
                             f"{type(cfg['data'][sub]).__name__}")
    if "output_dir" in cfg and not isinstance(cfg["output_dir"], str):
        raise ValueError(f"config {path}: output_dir must be a string path, got {cfg['output_dir']!r}")
    unknown = sorted(set(cfg) - {"model", "data", "trainer", "output_dir"})
    if unknown:
        raise ValueError(f"config {path}: unknown top-level key(s) {unknown}; "
                         "expected model, data, trainer, output_dir")
    return cfg


# ------------------------------------------------------------------------ CLI
_ESTIMATOR_TRAINING_KEYS = ("max_epochs", "batch_size", "lr", "weight_decay", "optimizer")


def configure_train_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``geoalign train CONFIG``."""
    parser.add_argument("config", help="training config (.json or .toml): [model], [data], [trainer]")
    parser.add_argument("--output", default=None,
                        help="output folder (default: the config's output_dir, else "
                             "<config folder>/<config stem>)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:k, mps or auto")
    parser.add_argument("--max-epochs", type=int, default=None, help="override trainer.max_epochs")
    parser.add_argument("--no-resume", action="store_true", help="start fresh even if a checkpoint exists")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a run of a different config or data in the output folder "
                             "(default: refuse)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


#: files of a run folder that belong to one run (removed by ``--overwrite``)
_RUN_FILES = ("config.json", "model.pt", "metrics.csv", "checkpoints/last.pt", "checkpoints/best.pt")
# trainer options that do not change the result (where it is written, how it is shown)
_UNKEYED_TRAINER = ("checkpoint_dir", "log_dir", "progress", "resume", "callbacks")


def _run_key(model_name: str, model_cfg: dict, est_training: dict, trainer_cfg: dict,
             data: dict, val: Any) -> dict:
    """Everything that defines a training run's result, and its hash."""
    from .. import __version__

    trainer = {**est_training, **{k: v for k, v in trainer_cfg.items() if k not in _UNKEYED_TRAINER}}
    key = {"model": {"name": model_name,
                     **{k: v for k, v in model_cfg.items() if k != "device"}},
           "trainer": trainer,
           "data_sha256": content_hash([data["X_a"], data["X_b"], data.get("y")]),
           "val_data_sha256": None if val is None else content_hash(list(val)),
           "geoalign_version": __version__}
    blob = json.dumps(key, sort_keys=True, default=str)
    return {**key, "sha256": hashlib.sha256(blob.encode()).hexdigest()[:16]}


def _check_run_folder(out: Path, key: dict, overwrite: bool) -> None:
    """Refuse (or with ``overwrite`` clear) an output folder holding another run."""
    present = [f for f in _RUN_FILES if (out / f).exists()]
    if not present:
        return
    old_key = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        old_key = json.loads((out / "config.json").read_text()).get("run_key")
    if isinstance(old_key, dict) and old_key.get("sha256") == key["sha256"]:
        return  # the same run: resume / reuse
    if not overwrite:
        if isinstance(old_key, dict):
            changed = sorted(k for k in set(key) | set(old_key)
                             if k != "sha256" and old_key.get(k) != key.get(k))
            what = f"a run with different {', '.join(changed)}"
        else:
            what = f"files of an unidentified run ({', '.join(present)})"
        raise ValueError(f"output folder {out} holds {what}; pass --overwrite to replace it or "
                         "choose another --output (its weights are never reused for other "
                         "settings or data)")
    for f in present:
        with contextlib.suppress(FileNotFoundError):
            (out / f).unlink()


def run_train_cli(args: argparse.Namespace) -> int:
    """``geoalign train``: build the model and data from a config, train, save ``model.pt``.

    Writes into the output folder: ``config.json`` (the resolved config and
    its ``run_key``: the model config, trainer options, SHA-256 content hashes
    of the data and the geoalign version), ``checkpoints/last.pt`` and
    ``best.pt``, ``metrics.csv`` and ``model.pt`` (the fitted estimator, for
    ``geoalign eval``).  Rerunning the same command resumes; a folder holding a
    run with another key is refused unless ``--overwrite``.  Everything
    (config, data, model arguments, trainer options, device) is validated
    before anything is written.  Under ``torchrun`` only rank 0 writes.
    """
    from ..models.base import get_model_class

    cfg_path = Path(args.config)
    cfg = load_config(cfg_path)
    base_dir = cfg_path.resolve().parent
    out = Path(args.output) if args.output else (
        resolve_path(cfg["output_dir"], base_dir) if "output_dir" in cfg else base_dir / cfg_path.stem)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output {out} is a file; give a folder for the run")
    if args.max_epochs is not None and args.max_epochs < 1:
        raise ValueError(f"--max-epochs must be >= 1, got {args.max_epochs}")
    data_spec = dict(cfg["data"])
    val_spec = data_spec.pop("val", None)
    data_spec.pop("test", None)  # [data.test] is for ``geoalign eval``
    data = load_dataset(data_spec, base_dir)
    val = None
    if val_spec is not None:
        v = load_dataset(val_spec, base_dir)
        val = (v["X_a"], v["X_b"]) + ((v["y"],) if "y" in v else ())
    model_cfg = dict(cfg["model"])
    model_name = model_cfg.pop("name")
    klass = get_model_class(model_name)
    trainer_cfg = dict(cfg.get("trainer", {}))
    if args.max_epochs is not None:
        trainer_cfg["max_epochs"] = args.max_epochs
    if args.device is not None:
        model_cfg["device"] = args.device
    est_training = {k: trainer_cfg.pop(k) for k in _ESTIMATOR_TRAINING_KEYS if k in trainer_cfg}
    if "seed" in trainer_cfg:
        model_cfg.setdefault("random_state", trainer_cfg.pop("seed"))
    bad = sorted(set(model_cfg) - set(klass._param_names()))
    if bad:
        raise ValueError(f"config {cfg_path}: [model] key(s) {bad} are not arguments of "
                         f"{klass.__name__}; valid: {sorted(set(klass._param_names()) - {'trainer_options'})}")
    # validate the trainer options and the device now, before anything is written
    probe = {k: v for k, v in trainer_cfg.items() if k not in _UNKEYED_TRAINER}
    try:
        Trainer(**est_training, **probe,
                device=model_cfg.get("device"))._resolve_device(distributed_context())
    except TypeError as exc:
        raise ValueError(f"config {cfg_path}: [trainer] {exc}") from None
    key = _run_key(model_name, model_cfg, est_training, trainer_cfg, data, val)
    trainer_cfg.setdefault("checkpoint_dir", str(out / "checkpoints"))
    trainer_cfg.setdefault("log_dir", str(out))
    if args.no_resume:
        trainer_cfg["resume"] = False
    if args.no_progress:
        trainer_cfg["progress"] = False
    estimator = klass(**model_cfg, **est_training, trainer_options=trainer_cfg)
    ctx = distributed_context()
    fresh = not out.exists() or not any((out / f).exists() for f in _RUN_FILES)
    if ctx.is_main:
        _check_run_folder(out, key, args.overwrite)
        atomic_write_json(out / "config.json", {**cfg, "output_dir": str(out), "run_key": key})
    try:
        estimator.fit(data["X_a"], data["X_b"], data.get("y"), val_data=val)
    except Exception:
        # a run that failed before its first checkpoint leaves nothing behind (an interrupted
        # one keeps its checkpoint and config.json, so that rerunning resumes)
        if ctx.is_main and fresh and not (out / "checkpoints" / "last.pt").exists():
            for f in _RUN_FILES:
                with contextlib.suppress(FileNotFoundError):
                    (out / f).unlink()
            for folder in (out / "checkpoints", out):
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only if empty
        raise
    if ctx.is_main:
        estimator.save(out / "model.pt")
        h = estimator.history_
        last = h.records[-1] if h.records else {}
        print(json.dumps({"model": str(out / "model.pt"), "epochs": h.epochs_run,
                          "best_epoch": h.best_epoch, "best_" + h.monitor: h.best_score,
                          "stopped_early": h.stopped_early,
                          "train_loss": last.get("train_loss")}, indent=2))
    return 0


def configure_eval_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``geoalign eval MODEL``."""
    parser.add_argument("model", help="model.pt written by 'geoalign train' (or estimator.save)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="paired .npz file (arrays X_a, X_b[, y]) to evaluate on")
    src.add_argument("--config", help="config whose [data.test] (else [data]) table names the data")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 5, 10], help="recall cut-offs")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:k, mps or auto")
    parser.add_argument("--output", default=None, help="also write the scores as JSON here")


def run_eval_cli(args: argparse.Namespace) -> int:
    """``geoalign eval``: cross-view retrieval scores (R@K, median rank) of a saved model."""
    from ..models.base import AlignmentEstimator

    if args.output and Path(args.output).is_dir():
        raise ValueError(f"--output {args.output} is a folder; give a file name such as "
                         f"{Path(args.output) / 'scores.json'}")
    est = AlignmentEstimator.load(args.model, device=args.device)
    if args.data is not None:
        data = load_dataset({"source": "paired_file", "path": args.data}, Path.cwd())
    else:
        cfg_path = Path(args.config)
        cfg = load_config(cfg_path)
        spec = dict(cfg["data"])
        spec = spec.pop("test", None) or {k: v for k, v in spec.items() if k not in ("val", "test")}
        data = load_dataset(spec, cfg_path.resolve().parent)
    Z_a = est.transform_a(np.asarray(data["X_a"]))
    Z_b = est.transform_b(np.asarray(data["X_b"]))
    from ..evaluation import retrieval_scores

    y = data.get("y")
    scores = retrieval_scores(Z_a, Z_b, y, y, ks=args.ks).as_dict()
    print(json.dumps(scores, indent=2))
    if args.output:
        atomic_write_json(args.output, scores)
    return 0


# ``geoalign train`` follows the geoalign.cli contract (configure_parser / run_cli) directly;
# ``geoalign eval`` needs its own entry, configure_eval_parser / run_eval_cli.
configure_parser = configure_train_parser
run_cli = run_train_cli
