r"""Training machinery: a generic :class:`Trainer` for torch alignment models.

Every trainable model of geoalign (LinearContrastive, QSMA, SSPC,
CFSA, UniCode) is trained by this one loop, so that devices, mixed precision,
checkpoints, exact resume, logging, early stopping and distributed data
parallel behave the same everywhere.

The model contract
------------------
A model is a ``torch.nn.Module`` with

``training_loss(batch) -> (loss, terms)``
    ``batch`` is a tuple of tensors already on the training device, in the
    order the data were given: ``(x_a, x_b)`` or ``(x_a, x_b, y)``.  Floating
    tensors have the dtype of the model's first floating parameter, labels are
    ``int64``.  ``loss`` is a scalar tensor, the **mean over the batch** of a
    per-sample loss where possible (see "Distributed" below); ``terms`` maps
    names to floats or scalar tensors that are averaged over the epoch
    (weighted by batch size) and logged as ``train_<name>``.

``validation_loss(batch) -> (loss, terms)``  *(optional)*
    Used on validation data (logged as ``val_loss``, ``val_<name>``); defaults
    to ``training_loss`` run in ``eval()`` mode under ``torch.no_grad()``.

``param_groups() -> list[dict]``  *(optional)*
    Optimizer parameter groups (e.g. no weight decay on a temperature);
    defaults to all parameters in one group.

The data contract
-----------------
``train_data`` and ``val_data`` are paired views with the same number of rows:
a tuple/list ``(X_a, X_b)`` or ``(X_a, X_b, y)`` of NumPy arrays or tensors, a
``dict`` with keys ``"X_a"``, ``"X_b"`` and optionally ``"y"``, or a
``torch.utils.data.TensorDataset``.  They are held in memory (on the CPU) and
batches are moved to the device one at a time.

Batches and distributed data parallel
-------------------------------------
Each epoch draws one permutation of the training rows from a generator seeded
by ``(seed, epoch)`` and cuts it into *global* batches of ``batch_size`` rows.
Under ``torchrun`` (``WORLD_SIZE > 1``) the Trainer initialises the process
group (gloo on CPU, NCCL on GPU), wraps the model in
``DistributedDataParallel`` and gives rank ``r`` the rows ``r, r+W, ...`` of
every global batch -- the same shard a ``DistributedSampler`` would produce, but
per global batch, so that the union of the ranks' batches *is* the
single-process batch.  Each rank's loss is weighted by
``n_local * W / n_global`` so that DDP's gradient average equals the gradient
of the global batch mean, also for a short last batch.  Hence for a per-sample
mean loss, DDP training equals single-process training up to floating-point
summation order.  Losses that couple the samples of a batch (InfoNCE) see only
the local shard under DDP, as in CLIP without an all-gather.  Validation runs
on the full validation set on every rank (all ranks take the same early
stopping decision); only rank 0 writes logs and checkpoints.

Checkpoints and exact resume
----------------------------
``checkpoint_dir/last.pt`` (every ``checkpoint_every`` epochs and at the end)
and ``checkpoint_dir/best.pt`` (whenever the monitored value improves) are
written atomically and hold the model, optimizer, learning-rate schedule and
gradient-scaler states, the RNG states of python, numpy and torch, the epoch,
step, best monitored value, early-stopping counter, the history and a hash of
everything that defines the result: the trainer options, the tensor shapes,
the model's ``identity`` (an estimator's class and constructor arguments), a
SHA-256 content hash of the training and validation data and the geoalign
version.  With ``resume=True`` a later ``fit`` continues from ``last.pt``; the
final weights are bit-identical to an uninterrupted run.  A checkpoint of a
different configuration, model, data or version raises a ``ValueError``
before anything is written -- old weights are never reused silently.
``geoalign train`` keys its output folder the same way (``run_key`` in
``config.json``) and refuses a folder holding another run unless ``--overwrite``.
"""
from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import json
import math
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ._backend import check_same_device, resolve_device, to_numpy
from ._io import atomic_path, atomic_write_text
from ._registry import resolve_target
from ._warnings import GeoalignDeprecationWarning, deprecated_aliases, warn_deprecated
from ._validation import (check_array, check_choice, check_int, check_nonnegative_scalar,
                          check_positive_scalar, check_same_length)

__all__ = [
    "Trainer",
    "TrainingHistory",
    "as_paired_tensors",
    "content_hash",
    "distributed_context",
]

# moved out of this module (issue 13): the data sources to geoalign.data.sources, the config
# loader and the train/eval command line to geoalign.cli.train; the old names still work
_MOVED = {**{name: "geoalign.data.sources" for name in ("register_dataset", "load_dataset", "DATASETS")},
          **{name: "geoalign.cli.train" for name in ("load_config", "configure_train_parser",
                                                     "run_train_cli", "configure_eval_parser",
                                                     "run_eval_cli", "configure_parser", "run_cli")}}
__getattr__ = deprecated_aliases(__name__, {
    name: (f"{module}.{name}", functools.partial(resolve_target, f"{module}:{name}"))
    for name, module in _MOVED.items()})

CHECKPOINT_FORMAT = "geoalign.train/1"
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = (None, "cosine", "step", "plateau")
AMP_MODES = (False, "bf16", "fp16")


# --------------------------------------------------------------------------- data
def as_paired_tensors(data: Any, name: str = "train_data") -> tuple[torch.Tensor, ...]:
    """Validate paired data and return it as a tuple of tensors ``(x_a, x_b[, y])``.

    Tensors stay on their device (no NumPy round trip); NumPy arrays become CPU
    tensors.  All tensors must share one device.

    Parameters
    ----------
    data : tuple, list, dict or TensorDataset
        ``(X_a, X_b)`` or ``(X_a, X_b, y)`` with ``X_a : shape=[n, ...]``,
        ``X_b : shape=[n, ...]``, ``y : shape=[n]`` (integer labels); or a dict
        with keys ``"X_a"``, ``"X_b"`` and optionally ``"y"``.

    Raises
    ------
    ValueError
        Missing keys, wrong number of arrays, empty, NaN/Inf, mismatched
        numbers of rows, labels that are not one integer per row, tensors on
        different devices.
    """
    if isinstance(data, torch.utils.data.TensorDataset):
        parts = list(data.tensors)
    elif isinstance(data, dict):
        missing = [k for k in ("X_a", "X_b") if k not in data]
        if missing:
            raise ValueError(f"{name} is missing key(s) {missing}; expected 'X_a', 'X_b' and optionally 'y'")
        parts = [data["X_a"], data["X_b"]] + ([data["y"]] if data.get("y") is not None else [])
    elif isinstance(data, (tuple, list)):
        parts = [p for p in data]
        if len(parts) == 3 and parts[2] is None:
            parts = parts[:2]
    else:
        raise TypeError(f"{name} must be a tuple (X_a, X_b[, y]), a dict or a TensorDataset, "
                        f"got {type(data).__name__}")
    if len(parts) not in (2, 3):
        raise ValueError(f"{name} must hold 2 arrays (X_a, X_b) or 3 (X_a, X_b, y), got {len(parts)}")
    names = [f"{name}[X_a]", f"{name}[X_b]", f"{name}[y]"]
    check_same_device(**{nm: p for nm, p in zip(names, parts) if isinstance(p, torch.Tensor)})
    out = []
    for i, (p, nm) in enumerate(zip(parts, names)):
        p = check_array(p, nm, min_ndim=1, allow_empty=False, finite=True)
        t = p.detach() if isinstance(p, torch.Tensor) else torch.as_tensor(np.ascontiguousarray(p))
        if i == 2:
            if t.ndim != 1:
                raise ValueError(f"{nm} must have shape (n,), got {tuple(t.shape)}")
            if t.is_floating_point():
                if not bool((t == t.round()).all()):
                    raise ValueError(f"{nm} must hold integer class labels, got non-integer values")
            elif t.dtype == torch.bool or t.is_complex():
                raise TypeError(f"{nm} must hold integer class labels, got dtype {t.dtype}")
            t = t.to(torch.int64)
        out.append(t)
    check_same_length(**{nm: t for nm, t in zip(names, out)})
    return tuple(out)


def content_hash(arrays: Sequence[Any]) -> str:
    """SHA-256 (hex, 16 digits) of the dtypes, shapes and bytes of a sequence of arrays/tensors.

    Two data sets hash equal only if every array has the same dtype, shape and
    values, so a checkpoint or run folder keyed by it is never reused for other data.
    """
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none;")
            continue
        arr = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
        arr = np.ascontiguousarray(arr)
        h.update(f"{arr.dtype.str}{arr.shape};".encode())
        h.update(memoryview(arr.reshape(-1).view(np.uint8)))
    return h.hexdigest()[:16]


def _cast_floats(tensors: Sequence[torch.Tensor], dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    # integer views (ring coefficients, token ids) stay integer for the model to embed
    return tuple(t.to(dtype) if t.is_floating_point() else t for t in tensors)


class _DeviceBatches:
    """The rows ``idx`` of paired tensors, delivered on ``device`` without stalling it.

    * Host data for a CUDA device is gathered on the host into pinned (page-locked)
      memory and copied with ``non_blocking=True`` on a side stream, one batch
      ahead (:meth:`prefetch`), so the copy overlaps the previous step's compute.
    * Otherwise the data is moved to ``device`` once (nothing moves when it is
      already there) and gathered there: no host round trip, no synchronisation.
    """

    def __init__(self, tensors: Sequence[torch.Tensor], device: torch.device):
        self.device = device
        self.resident = not (device.type == "cuda" and all(t.device.type == "cpu" for t in tensors))
        if self.resident:
            tensors = [t if t.device.type == device.type and device.index in (None, t.device.index)
                       else t.to(device) for t in tensors]
        self.tensors = tuple(tensors)
        self.stream = None if self.resident else torch.cuda.Stream(device)
        self._pending: tuple | None = None

    def _load(self, idx: torch.Tensor) -> tuple:
        if self.resident:
            idx = idx.to(self.tensors[0].device, non_blocking=True)
            return tuple(t.index_select(0, idx) for t in self.tensors)
        rows = tuple(t.index_select(0, idx).pin_memory() for t in self.tensors)
        with torch.cuda.stream(self.stream):
            return tuple(r.to(self.device, non_blocking=True) for r in rows)

    def prefetch(self, idx: torch.Tensor) -> None:
        """Start loading rows ``idx`` (returned by the next :meth:`get` of the same ``idx``)."""
        self._pending = (idx, self._load(idx))

    def get(self, idx: torch.Tensor) -> tuple:
        """Rows ``idx`` on the device, ready for the current stream."""
        if self._pending is not None and self._pending[0] is idx:
            batch = self._pending[1]
        else:
            batch = self._load(idx)
        self._pending = None
        if self.stream is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(self.stream)
            for t in batch:
                t.record_stream(current)  # the caching allocator must not reuse them early
        return batch


def _stack64(values: Sequence[Any], device) -> torch.Tensor:
    """Tensors and Python numbers as one float64 vector on ``device`` (no synchronisation)."""
    return torch.stack([v.detach().to(device=device, dtype=torch.float64) if isinstance(v, torch.Tensor)
                        else torch.tensor(float(v), dtype=torch.float64, device=device)
                        for v in values])


def _host_values(values: Sequence[Any], device) -> list[float]:
    """``values`` (tensors on the device, numbers) as Python floats: one synchronisation."""
    return _stack64(values, device).tolist() if values else []


# ------------------------------------------------------------------- distributed
@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a ``torchrun`` job (world of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def distributed_context() -> DistributedContext:
    """Read ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` as set by ``torchrun``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"invalid distributed environment: RANK={rank}, WORLD_SIZE={world}")
    return DistributedContext(rank=rank, world_size=world, local_rank=local)


class _LossForward(nn.Module):
    """Routes ``forward`` to ``training_loss`` so DDP sees a forward pass (and syncs gradients)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return self.model.training_loss(batch)


# ----------------------------------------------------------------------- history
def _renamed_best(saved: dict, where: Any) -> dict:
    """``saved`` (a checkpoint's trainer state or a model file's history) with ``best_score``.

    Files written before the rename hold ``best_metric``: it is read as ``best_score``,
    with one :class:`~geoalign._warnings.GeoalignDeprecationWarning` per file.
    """
    if "best_metric" not in saved or "best_score" in saved:
        return dict(saved)
    warnings.warn(f"{where} was written with the old key 'best_metric'; it is read as 'best_score' "
                  "(the file is unchanged)", GeoalignDeprecationWarning, stacklevel=3)
    out = {k: v for k, v in saved.items() if k != "best_metric"}
    out["best_score"] = saved["best_metric"]
    return out


@dataclass
class TrainingHistory:
    """What :meth:`Trainer.fit` returns.

    Attributes
    ----------
    records : list of dict
        One row per completed epoch: ``epoch`` (1-based), ``step``, ``lr``,
        ``train_loss``, ``train_<term>``, ``val_loss``, ``val_<term>``,
        ``time_s``.
    monitor : str
        The logged value used for early stopping and ``best.pt`` (``val_loss`` when
        validation data exist, else ``train_loss``).
    best_epoch, best_score : int or None, float or None
        Epoch and value of the best ``monitor`` so far (lower is better).
        ``best_metric`` is the deprecated name of ``best_score``.
    stopped_early : bool
    resumed_from_epoch : int
        Epochs already done in the checkpoint this run resumed from (0 if fresh).
    checkpoint_path : str or None
        Path of ``last.pt`` when checkpoints are written.
    """

    records: list = field(default_factory=list)
    monitor: str = "train_loss"
    best_epoch: int | None = None
    best_score: float | None = None
    stopped_early: bool = False
    resumed_from_epoch: int = 0
    checkpoint_path: str | None = None

    @property
    def best_metric(self) -> float | None:
        """Deprecated name of :attr:`best_score`."""
        warn_deprecated("TrainingHistory.best_metric", "TrainingHistory.best_score")
        return self.best_score

    @best_metric.setter
    def best_metric(self, value: float | None) -> None:
        warn_deprecated("TrainingHistory.best_metric", "TrainingHistory.best_score")
        self.best_score = value

    @classmethod
    def _from_saved(cls, saved: dict, where: Any) -> "TrainingHistory":
        """Rebuild a history saved with a model; files from before the rename hold ``best_metric``."""
        return cls(**_renamed_best(saved, where))

    @property
    def epochs_run(self) -> int:
        return len(self.records)

    def to_frame(self):
        """The records as a ``pandas.DataFrame`` indexed by epoch."""
        import pandas as pd

        return pd.DataFrame.from_records(self.records).set_index("epoch") if self.records \
            else pd.DataFrame()


# ------------------------------------------------------------------------ trainer
def _numpy_rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"kind": kind, "keys": [int(k) for k in keys], "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _set_numpy_rng_state(s: dict) -> None:
    np.random.set_state((s["kind"], np.asarray(s["keys"], dtype=np.uint32), s["pos"],
                         s["has_gauss"], s["cached"]))


def _module_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


class Trainer:
    r"""Generic training loop for geoalign models (see the module docstring for the contract).

    Parameters
    ----------
    max_epochs : int
    batch_size : int
        Global batch size (split over ranks under DDP).
    lr, weight_decay : float
    optimizer : {"adam", "adamw", "sgd"}
    momentum : float
        SGD momentum.
    scheduler : {None, "cosine", "step", "plateau"}
        Learning-rate factor after warm-up: cosine decay over all steps to
        ``min_lr``, ``lr_gamma ** (epoch // lr_step_size)``, or multiplied by
        ``plateau_factor`` whenever the monitored value has not improved for
        ``plateau_patience`` epochs.
    warmup : int
        Linear warm-up over this many optimizer steps: factor ``(s+1)/warmup``.
    grad_clip : float or None
        Clip the global gradient 2-norm to this value (logged ``train_grad_norm``
        is the norm before clipping).
    device : None, "auto", "cpu", "cuda", "cuda:k", "mps"
        None: CPU (or ``cuda:LOCAL_RANK`` under DDP when CUDA is available and
        ``"auto"``).  A device that does not exist raises ``ValueError``.
    amp : {False, "bf16", "fp16"}
        Mixed precision autocast; ``"fp16"`` (with a gradient scaler) needs CUDA.
    seed : int
        Seeds python, numpy and torch at the start of a fresh run and the
        per-epoch shuffling.
    deterministic : bool, default False
        On CUDA/MPS, use ``torch.use_deterministic_algorithms`` (and no cuDNN
        benchmarking) during ``fit``, restored after: a choice (bitwise
        reproducible runs, some kernels slower), not the default.  CPU kernels
        are already deterministic for a fixed number of threads.
    compile : bool, str or callable, default False
        Run the loss (forward and backward) through ``torch.compile``: ``True``
        with the default backend (inductor), a string or callable is the
        backend (e.g. ``"aot_eager"``).  If compilation fails, a
        :class:`~geoalign._warnings.GeoalignWarning` says why and training goes
        on in eager mode.
    early_stopping_patience : int or None
        Stop when the monitored value has not improved by more than
        ``min_delta`` for this many epochs.
    val_fraction : float
        Fraction of the training rows held out for validation when no
        ``val_data`` is given (a seeded random split).
    log_dir : path or None
        ``metrics.csv`` rewritten atomically after every epoch (and TensorBoard
        events if ``tensorboard`` is installed).
    checkpoint_dir : path or None
    checkpoint_every : int
    resume : bool or path
        ``True``: continue from ``checkpoint_dir/last.pt`` if it exists; a path:
        continue from that checkpoint.
    progress : bool
        tqdm progress bar over epochs (rank 0 only).
    callbacks : sequence of callables
        ``callback(trainer, epoch, record)`` after every epoch, after the
        checkpoint is written; raising stops training.
    drop_last : bool
        Drop a last incomplete global batch.
    identity : dict, optional
        Whatever else defines the result and is not visible in the module's
        tensor shapes (the estimator passes its class and constructor
        arguments, e.g. loss weights and temperatures).  It is hashed into the
        checkpoints together with these options, the shapes, a SHA-256 content
        hash of the training and validation data and the geoalign version, so
        that a checkpoint of another model config or other data is never
        resumed: it raises ``ValueError`` instead.
    """

    def __init__(self, max_epochs: int = 10, batch_size: int = 256, lr: float = 1e-3,
                 weight_decay: float = 0.0, optimizer: str = "adam", momentum: float = 0.0,
                 scheduler: str | None = None, warmup: int = 0, min_lr: float = 0.0,
                 lr_step_size: int = 10, lr_gamma: float = 0.1, plateau_patience: int = 5,
                 plateau_factor: float = 0.1, grad_clip: float | None = None,
                 device: Any = None, amp: Any = False, seed: int = 0, deterministic: bool = False,
                 early_stopping_patience: int | None = None, min_delta: float = 0.0,
                 val_fraction: float = 0.0, log_dir: Any = None, checkpoint_dir: Any = None,
                 checkpoint_every: int = 1, resume: Any = True, progress: bool = True,
                 callbacks: Iterable[Callable] = (), drop_last: bool = False,
                 identity: dict | None = None,
                 compile: bool | str | Callable = False):
        self.max_epochs = check_int(max_epochs, "max_epochs", minimum=1)
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        self.lr = check_positive_scalar(lr, "lr")
        self.weight_decay = check_nonnegative_scalar(weight_decay, "weight_decay")
        self.optimizer = check_choice(optimizer, "optimizer", OPTIMIZERS)
        self.momentum = check_nonnegative_scalar(momentum, "momentum")
        self.scheduler = check_choice(scheduler, "scheduler", SCHEDULERS)
        self.warmup = check_int(warmup, "warmup", minimum=0)
        self.min_lr = check_nonnegative_scalar(min_lr, "min_lr")
        self.lr_step_size = check_int(lr_step_size, "lr_step_size", minimum=1)
        self.lr_gamma = check_positive_scalar(lr_gamma, "lr_gamma")
        self.plateau_patience = check_int(plateau_patience, "plateau_patience", minimum=0)
        self.plateau_factor = check_positive_scalar(plateau_factor, "plateau_factor")
        self.grad_clip = None if grad_clip is None else check_positive_scalar(grad_clip, "grad_clip")
        self.device = device
        if amp not in AMP_MODES:
            raise ValueError(f"unknown amp {amp!r}; expected one of False, 'bf16', 'fp16'")
        self.amp = amp
        self.seed = check_int(seed, "seed", minimum=0)
        self.deterministic = bool(deterministic)
        self.early_stopping_patience = (None if early_stopping_patience is None else
                                        check_int(early_stopping_patience, "early_stopping_patience",
                                                  minimum=1))
        self.min_delta = check_nonnegative_scalar(min_delta, "min_delta")
        self.val_fraction = check_nonnegative_scalar(val_fraction, "val_fraction")
        if self.val_fraction >= 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.checkpoint_every = check_int(checkpoint_every, "checkpoint_every", minimum=1)
        self.resume = resume
        self.progress = bool(progress)
        self.callbacks = list(callbacks)
        self.drop_last = bool(drop_last)
        if identity is not None and not isinstance(identity, dict):
            raise TypeError(f"identity must be a dict (what else defines the run, e.g. the model "
                            f"config), got {type(identity).__name__}")
        self.identity = identity
        if not (isinstance(compile, (bool, str)) or callable(compile)) or compile == "":
            raise TypeError(f"compile must be True, False or a torch.compile backend (name or "
                            f"callable), got {compile!r}")
        self.compile = compile

    # -- configuration identity ------------------------------------------------
    _HASHED = ("max_epochs", "batch_size", "lr", "weight_decay", "optimizer", "momentum",
               "scheduler", "warmup", "min_lr", "lr_step_size", "lr_gamma", "plateau_patience",
               "plateau_factor", "grad_clip", "amp", "seed", "early_stopping_patience",
               "min_delta", "val_fraction", "drop_last")

    def config(self) -> dict:
        """The options that determine the training trajectory (hashed into checkpoints)."""
        return {k: getattr(self, k) for k in self._HASHED}

    def _config_hash(self, extra: dict) -> str:
        blob = json.dumps({**self.config(), **extra}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    # -- helpers -----------------------------------------------------------------
    def _resolve_device(self, ctx: DistributedContext) -> torch.device:
        dev = self.device
        if ctx.enabled and dev in ("cuda", "auto") and torch.cuda.is_available():
            dev = f"cuda:{ctx.local_rank}"
        if dev is not None and str(dev).startswith("mps"):
            mps = getattr(torch.backends, "mps", None)
            if mps is None or not mps.is_available():
                raise ValueError(f"device={dev!r} requested but MPS is not available")
        dev = resolve_device(dev)
        try:
            torch.device(dev)
        except (RuntimeError, TypeError):
            raise ValueError(f"device={dev!r} is not a torch device; expected cpu, cuda, cuda:k, "
                             "mps or auto") from None
        if str(dev).startswith("cuda"):
            idx = torch.device(dev).index
            if idx is not None and idx >= torch.cuda.device_count():
                raise ValueError(f"device={dev!r} requested but only {torch.cuda.device_count()} "
                                 "CUDA device(s) exist")
        return torch.device(dev)

    def _make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        groups = model.param_groups() if hasattr(model, "param_groups") else \
            [{"params": [p for p in model.parameters() if p.requires_grad]}]
        if not any(len(list(g["params"])) for g in groups):
            raise ValueError("model has no trainable parameters")
        if self.optimizer == "adam":
            return torch.optim.Adam(groups, lr=self.lr, weight_decay=self.weight_decay)
        if self.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.SGD(groups, lr=self.lr, momentum=self.momentum,
                               weight_decay=self.weight_decay)

    def _lr_factor(self, step: int, epoch: int, total_steps: int, plateau_reductions: int) -> float:
        warm = min(1.0, (step + 1) / self.warmup) if self.warmup else 1.0
        if self.scheduler == "cosine":
            span = max(1, total_steps - self.warmup)
            prog = min(1.0, max(0.0, (step - self.warmup) / span))
            lo = self.min_lr / self.lr
            decay = lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * prog))
        elif self.scheduler == "step":
            decay = self.lr_gamma ** (epoch // self.lr_step_size)
        elif self.scheduler == "plateau":
            decay = self.plateau_factor ** plateau_reductions
        else:
            decay = 1.0
        return max(warm * decay, self.min_lr / self.lr) if self.scheduler else warm * decay

    def _local_rows(self, perm: torch.Tensor, b: int, ctx: DistributedContext):
        """This rank's rows of global batch ``b`` and their weight in the global mean."""
        idx = perm[b * self.batch_size:(b + 1) * self.batch_size]
        n_global = idx.shape[0]
        local = idx[ctx.rank::ctx.world_size]
        weight = local.shape[0] * ctx.world_size / n_global
        if local.shape[0] == 0:  # keep the collective in step; contributes nothing
            local, weight = idx[:1], 0.0
        return local, weight

    def _split_validation(self, tensors, n):
        n_val = int(round(self.val_fraction * n))
        if n_val == 0 or n_val >= n:
            raise ValueError(f"val_fraction={self.val_fraction} leaves {n_val} validation and "
                             f"{n - n_val} training rows out of {n}; need at least one of each")
        g = torch.Generator().manual_seed(self.seed + 7919)
        perm = torch.randperm(n, generator=g)
        val_idx, tr_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
        return (tuple(t[tr_idx.to(t.device)] for t in tensors),
                tuple(t[val_idx.to(t.device)] for t in tensors))

    def _compiled_step(self, wrapped: nn.Module) -> Callable:
        """``wrapped`` through ``torch.compile`` (``self.compile``), falling back to eager mode."""
        if not self.compile:
            return wrapped
        from ._warnings import GeoalignWarning

        state = {"fn": None}

        def fallback(exc: Exception) -> None:
            msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            warnings.warn(f"compile={self.compile!r}: torch.compile failed ({type(exc).__name__}: "
                          f"{msg}); training continues in eager mode", GeoalignWarning,
                          stacklevel=4)
            state["fn"] = wrapped

        try:
            backend = "inductor" if self.compile is True else self.compile
            state["fn"] = torch.compile(wrapped, backend=backend)
        except Exception as exc:  # unknown backend, no compiler support on this platform
            fallback(exc)

        def step(batch):
            if state["fn"] is wrapped:
                return wrapped(batch)
            try:
                return state["fn"](batch)
            except Exception as exc:  # compilation happens lazily, on the first calls
                fallback(exc)
                return wrapped(batch)

        return step

    @staticmethod
    def _accumulate(acc: dict, terms: dict, weight: int, prefix: str) -> None:
        for k, v in terms.items():
            v = v.detach().double() if isinstance(v, torch.Tensor) else float(v)
            key = f"{prefix}{k}"
            acc[key] = acc.get(key, 0.0) + v * weight

    def _evaluate(self, model: nn.Module, data, device, dtype, autocast) -> dict:
        model.eval()
        acc: dict = {}
        n = data[0].shape[0]
        fn = getattr(model, "validation_loss", None) or model.training_loss
        with torch.no_grad():
            for start in range(0, n, self.batch_size):
                batch = tuple(t[start:start + self.batch_size].to(device) for t in data)
                with autocast():
                    loss, terms = fn(batch)
                self._accumulate(acc, {"loss": loss, **terms}, batch[0].shape[0], "val_")
        model.train()
        keys = sorted(acc)
        return {k: v / n for k, v in zip(keys, _host_values([acc[k] for k in keys], device))}

    # -- checkpoints -------------------------------------------------------------
    def _checkpoint_file(self) -> Path | None:
        if isinstance(self.resume, (str, os.PathLike)):
            return Path(self.resume)
        if self.resume and self.checkpoint_dir is not None:
            p = self.checkpoint_dir / "last.pt"
            return p if p.exists() else None
        return None

    @staticmethod
    def _check_compatible(ckpt: dict, path: Path, model: nn.Module, config_hash: str,
                          config: dict) -> None:
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a geoalign training checkpoint "
                             f"(expected format {CHECKPOINT_FORMAT!r})")
        own = model.state_dict()
        theirs = ckpt["model"]
        missing = sorted(set(own) - set(theirs))
        extra = sorted(set(theirs) - set(own))
        if missing or extra:
            raise ValueError(f"checkpoint {path} does not match the model: missing parameters "
                             f"{missing}, unexpected parameters {extra}")
        for k, v in own.items():
            if tuple(theirs[k].shape) != tuple(v.shape):
                raise ValueError(f"checkpoint {path} does not match the model: parameter {k!r} has "
                                 f"shape {tuple(theirs[k].shape)} there, {tuple(v.shape)} here")
        if ckpt["config_hash"] != config_hash:
            diff = {k: (ckpt["config"].get(k), config.get(k)) for k in set(config) | set(ckpt["config"])
                    if ckpt["config"].get(k) != config.get(k)}
            raise ValueError(f"checkpoint {path} was written with a different training configuration "
                             f"(checkpoint vs now: {diff}); use another checkpoint_dir or "
                             "resume=False")

    def _save(self, path: Path, state: dict) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(buf.getvalue())
                fh.flush()
                os.fsync(fh.fileno())

    def _write_logs(self, records: list, tb_writer, record: dict) -> None:
        if self.log_dir is None:
            return
        keys: list = []
        for r in records:
            keys += [k for k in r if k not in keys]
        out = io.StringIO()
        w = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        w.writerows(records)
        atomic_write_text(self.log_dir / "metrics.csv", out.getvalue())
        if tb_writer is not None:
            for k, v in record.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    tb_writer.add_scalar(k, v, record["epoch"])
            tb_writer.flush()

    # -- the loop ------------------------------------------------------------------
    def fit(self, model: nn.Module, train_data: Any, val_data: Any = None) -> TrainingHistory:
        """Train ``model`` in place on ``train_data`` and return the :class:`TrainingHistory`.

        Parameters
        ----------
        model : torch.nn.Module
            Has ``training_loss(batch) -> (loss, terms)`` (module docstring).
        train_data : tuple, dict or TensorDataset, shape=[n, ...] each
        val_data : same kinds, optional
            Overrides ``val_fraction``.
        """
        if not isinstance(model, nn.Module) or not callable(getattr(model, "training_loss", None)):
            raise TypeError("model must be a torch.nn.Module with a training_loss(batch) method, "
                            f"got {type(model).__name__}")
        train = as_paired_tensors(train_data, "train_data")
        val = None if val_data is None else as_paired_tensors(val_data, "val_data")
        if val is not None and len(val) != len(train):
            raise ValueError(f"val_data has {len(val)} arrays but train_data has {len(train)}")
        if val is None and self.val_fraction > 0:
            train, val = self._split_validation(train, train[0].shape[0])
        if val is not None:
            for i, (a, b) in enumerate(zip(train, val)):
                if tuple(a.shape[1:]) != tuple(b.shape[1:]):
                    raise ValueError(f"val_data array {i} has row shape {tuple(b.shape[1:])}, "
                                     f"train_data has {tuple(a.shape[1:])}")

        ctx = distributed_context()
        device = self._resolve_device(ctx)
        if self.amp == "fp16" and device.type != "cuda":
            raise ValueError(f"amp='fp16' needs a CUDA device, got {device}; use amp='bf16' or False")
        if self.amp and device.type == "mps":
            raise ValueError("amp is not supported on mps")
        created_group = False
        if ctx.enabled and not torch.distributed.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(device)
            torch.distributed.init_process_group(backend=backend, rank=ctx.rank,
                                                 world_size=ctx.world_size)
            created_group = True
        prev_det = torch.are_deterministic_algorithms_enabled()
        prev_bench = torch.backends.cudnn.benchmark
        # Only accelerators have nondeterministic kernels worth the switch; on the CPU the call
        # would cost seconds (it imports torch._inductor) for nothing.
        switch = self.deterministic and device.type != "cpu" and not prev_det
        if switch:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        try:
            return self._fit(model, train, val, ctx, device)
        finally:
            if switch:
                torch.use_deterministic_algorithms(prev_det)
                torch.backends.cudnn.benchmark = prev_bench
            if created_group:
                torch.distributed.destroy_process_group()

    def _fit(self, model, train, val, ctx: DistributedContext, device) -> TrainingHistory:
        seed = self.seed
        if ctx.enabled:  # every rank must shuffle identically
            s = torch.tensor([seed], dtype=torch.int64, device=device)
            torch.distributed.broadcast(s, src=0)
            seed = int(s.item())
        model.to(device)
        dtype = _module_dtype(model)
        train = _cast_floats(train, dtype)
        val = None if val is None else _cast_floats(val, dtype)
        n = train[0].shape[0]
        n_batches = n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        if n_batches == 0:
            raise ValueError(f"drop_last=True with batch_size={self.batch_size} > {n} training rows "
                             "leaves no batch")
        total_steps = n_batches * self.max_epochs
        monitor = "val_loss" if val is not None else "train_loss"
        config = self.config()
        extra = {"world_size": ctx.world_size, "train_shapes": [list(t.shape) for t in train],
                 "val_shapes": None if val is None else [list(t.shape) for t in val]}
        if self.checkpoint_dir is not None or isinstance(self.resume, (str, os.PathLike)):
            from . import __version__

            extra.update({"identity": self.identity, "geoalign_version": __version__,
                          "train_data_sha256": content_hash(train),
                          "val_data_sha256": None if val is None else content_hash(val)})
        config_hash = self._config_hash(extra)

        optimizer = self._make_optimizer(model)
        base_lrs = [g["lr"] for g in optimizer.param_groups]
        scaler = torch.amp.GradScaler("cuda") if self.amp == "fp16" else None
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.amp)

        def autocast():
            if amp_dtype is None:
                return contextlib.nullcontext()
            return torch.autocast(device_type=device.type, dtype=amp_dtype)

        state = {"epoch": 0, "step": 0, "best_score": None, "best_epoch": None, "bad_epochs": 0,
                 "plateau_best": None, "plateau_bad": 0, "plateau_reductions": 0,
                 "stopped_early": False, "records": []}
        ckpt_file = self._checkpoint_file()
        if ckpt_file is not None:
            if not ckpt_file.exists():
                raise FileNotFoundError(f"resume checkpoint {ckpt_file} does not exist")
            ckpt = torch.load(ckpt_file, map_location=device, weights_only=True)
            self._check_compatible(ckpt, ckpt_file, model, config_hash, {**config, **extra})
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            if scaler is not None and ckpt.get("scaler") is not None:
                scaler.load_state_dict(ckpt["scaler"])
            state.update(_renamed_best(ckpt["state"], f"checkpoint {ckpt_file}"))
            random.setstate(ckpt["rng"]["python"])
            _set_numpy_rng_state(ckpt["rng"]["numpy"])
            torch.set_rng_state(ckpt["rng"]["torch"].cpu())
            if ckpt["rng"].get("cuda") is not None and device.type == "cuda":
                torch.cuda.set_rng_state(ckpt["rng"]["cuda"].cpu(), device)
        else:
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
        history = TrainingHistory(records=list(state["records"]), monitor=monitor,
                                  best_epoch=state["best_epoch"], best_score=state["best_score"],
                                  stopped_early=state["stopped_early"],
                                  resumed_from_epoch=state["epoch"],
                                  checkpoint_path=None if self.checkpoint_dir is None
                                  else str(self.checkpoint_dir / "last.pt"))
        if state["epoch"] >= self.max_epochs or state["stopped_early"]:
            return history

        wrapped: nn.Module = _LossForward(model)
        if ctx.enabled:
            wrapped = nn.parallel.DistributedDataParallel(
                wrapped, device_ids=[device.index] if device.type == "cuda" else None)
        step_fn = self._compiled_step(wrapped)
        loader = _DeviceBatches(train, device)
        tb_writer = None
        if ctx.is_main and self.log_dir is not None:
            with contextlib.suppress(ImportError):
                from torch.utils.tensorboard import SummaryWriter

                tb_writer = SummaryWriter(log_dir=str(self.log_dir))
        from tqdm.auto import tqdm

        bar = tqdm(total=self.max_epochs, initial=state["epoch"], desc="train", unit="epoch",
                   disable=not (self.progress and ctx.is_main), leave=False)
        try:
            model.train()
            for epoch in range(state["epoch"], self.max_epochs):
                t0 = time.perf_counter()
                g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
                perm = torch.randperm(n, generator=g)
                acc: dict = {}
                n_seen = 0
                rows = [self._local_rows(perm, b, ctx) for b in range(n_batches)]
                loader.prefetch(rows[0][0])
                for b in range(n_batches):
                    local, weight = rows[b]
                    batch = loader.get(local)
                    if b + 1 < n_batches:  # the next batch's copy overlaps this step
                        loader.prefetch(rows[b + 1][0])
                    factor = self._lr_factor(state["step"], epoch, total_steps,
                                             state["plateau_reductions"])
                    for grp, base in zip(optimizer.param_groups, base_lrs):
                        grp["lr"] = base * factor
                    optimizer.zero_grad(set_to_none=True)
                    with autocast():
                        loss, terms = step_fn(batch)
                    obj = loss * weight if ctx.enabled else loss
                    if scaler is not None:
                        scaler.scale(obj).backward()
                        scaler.unscale_(optimizer)
                    else:
                        obj.backward()
                    if self.grad_clip is not None:
                        gn = nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
                        terms = {**terms, "grad_norm": gn}
                    if scaler is not None:
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        optimizer.step()
                    state["step"] += 1
                    w_local = local.shape[0] if weight else 0
                    self._accumulate(acc, {"loss": loss, **terms}, w_local, "train_")
                    n_seen += w_local
                keys = sorted(acc)
                # losses were accumulated on the device: the epoch's one synchronisation
                sums = _stack64([acc[k] for k in keys] + [float(n_seen)], device)
                if ctx.enabled:
                    torch.distributed.all_reduce(sums)
                sums = sums.tolist()
                record = {"epoch": epoch + 1, "step": state["step"],
                          "lr": optimizer.param_groups[0]["lr"]}
                record.update({k: s / sums[-1] for k, s in zip(keys, sums[:-1])})
                if not math.isfinite(record["train_loss"]):
                    raise FloatingPointError(f"training loss became {record['train_loss']} in epoch "
                                             f"{epoch + 1}; lower lr, set grad_clip or check the data")
                if val is not None:
                    record.update(self._evaluate(model, val, device, dtype, autocast))
                record["time_s"] = time.perf_counter() - t0
                current = record[monitor]
                improved = state["best_score"] is None or \
                    current < state["best_score"] - self.min_delta
                if improved:
                    state["best_score"], state["best_epoch"], state["bad_epochs"] = current, epoch + 1, 0
                else:
                    state["bad_epochs"] += 1
                if self.scheduler == "plateau":
                    if state["plateau_best"] is None or current < state["plateau_best"] - self.min_delta:
                        state["plateau_best"], state["plateau_bad"] = current, 0
                    else:
                        state["plateau_bad"] += 1
                        if state["plateau_bad"] > self.plateau_patience:
                            state["plateau_reductions"] += 1
                            state["plateau_bad"] = 0
                if self.early_stopping_patience is not None and \
                        state["bad_epochs"] >= self.early_stopping_patience:
                    state["stopped_early"] = True
                state["epoch"] = epoch + 1
                state["records"].append(record)
                last = state["epoch"] >= self.max_epochs or state["stopped_early"]
                if ctx.is_main and self.checkpoint_dir is not None:
                    ckpt = {"format": CHECKPOINT_FORMAT, "config_hash": config_hash,
                            "config": {**config, **extra}, "model": model.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "scaler": None if scaler is None else scaler.state_dict(),
                            "state": state,
                            "rng": {"python": random.getstate(), "numpy": _numpy_rng_state(),
                                    "torch": torch.get_rng_state(),
                                    "cuda": torch.cuda.get_rng_state(device)
                                    if device.type == "cuda" else None}}
                    if improved:
                        self._save(self.checkpoint_dir / "best.pt", ckpt)
                    if last or state["epoch"] % self.checkpoint_every == 0:
                        self._save(self.checkpoint_dir / "last.pt", ckpt)
                if ctx.is_main:
                    self._write_logs(state["records"], tb_writer, record)
                bar.update(1)
                bar.set_postfix({k: f"{v:.4g}" for k, v in record.items()
                                 if k in ("train_loss", "val_loss")})
                for cb in self.callbacks:
                    cb(self, epoch + 1, record)
                if state["stopped_early"]:
                    break
        finally:
            bar.close()
            if tb_writer is not None:
                tb_writer.close()
        model.eval()
        history.records = list(state["records"])
        history.best_epoch, history.best_score = state["best_epoch"], state["best_score"]
        history.stopped_early = state["stopped_early"]
        return history
