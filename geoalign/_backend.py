"""NumPy / torch dispatch, device and dtype helpers.

Every public function of geoalign accepts NumPy arrays and torch tensors (on any
device) and returns the kind it was given.  This module is the one place that
decides which backend an input belongs to.  Like einops, it never imports torch
itself: a tensor can only exist if the caller already imported torch, so the
check is ``type(x).__module__`` plus a look into ``sys.modules``.

Typical use inside a public function::

    xp = namespace(X, Y)                    # numpy or torch module
    check_same_device(X=X, Y=Y)             # clear error on mismatch
    Xt = to_torch(X, dtype=torch.float32)   # compute in torch ...
    return like(result, X)                  # ... hand back X's kind

"""
from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "is_torch",
    "is_numpy",
    "namespace",
    "torch_module",
    "to_numpy",
    "to_torch",
    "like",
    "device_of",
    "check_same_device",
    "resolve_device",
    "float_dtype",
    "default_num_threads",
    "torch_num_threads",
]


def _torch_if_loaded() -> ModuleType | None:
    return sys.modules.get("torch")


def torch_module() -> ModuleType:
    """Import and return torch (the only place geoalign imports it lazily)."""
    import torch

    return torch


def is_torch(x: Any) -> bool:
    """True if ``x`` is a ``torch.Tensor`` (without importing torch)."""
    torch = _torch_if_loaded()
    return torch is not None and isinstance(x, torch.Tensor)


def is_numpy(x: Any) -> bool:
    """True if ``x`` is a NumPy array or NumPy scalar."""
    return isinstance(x, (np.ndarray, np.generic))


def namespace(*arrays: Any) -> ModuleType:
    """Return ``torch`` if any argument is a tensor, else ``numpy``.

    Lists, scalars and ``None`` count as NumPy.  Mixing tensors and arrays is
    allowed: the result is torch, and NumPy inputs are moved to the tensor's
    device by :func:`to_torch`.
    """
    for a in arrays:
        if is_torch(a):
            return _torch_if_loaded()  # type: ignore[return-value]
    return np


def device_of(x: Any) -> str:
    """Device string of ``x``: ``"cpu"`` for NumPy, ``str(x.device)`` for tensors."""
    if is_torch(x):
        return str(x.device)
    return "cpu"


def check_same_device(**arrays: Any) -> str:
    """Raise ``ValueError`` naming the arguments if tensors live on different devices.

    NumPy arrays count as living on ``"cpu"`` only when every tensor is on the
    CPU too; otherwise they are moved by :func:`to_torch` and do not conflict.

    Returns
    -------
    device : str
        The common device of the tensor arguments (``"cpu"`` if none).
    """
    devices = {name: str(a.device) for name, a in arrays.items() if is_torch(a)}
    if len(set(devices.values())) > 1:
        detail = ", ".join(f"{k} on {v}" for k, v in devices.items())
        raise ValueError(f"arrays must be on the same device, got {detail}")
    return next(iter(devices.values()), "cpu")


def to_numpy(x: Any, dtype: Any = None) -> np.ndarray:
    """Convert ``x`` (array, tensor on any device, list, scalar) to a NumPy array."""
    if is_torch(x):
        x = x.detach()
        if x.dtype == _torch_if_loaded().bfloat16:  # numpy has no bfloat16
            x = x.float()
        x = x.cpu().numpy()
    out = np.asarray(x)
    return out if dtype is None else out.astype(dtype, copy=False)


def to_torch(x: Any, device: Any = None, dtype: Any = None):
    """Convert ``x`` to a torch tensor on ``device`` (default: where it already is, or CPU)."""
    torch = torch_module()
    if isinstance(x, torch.Tensor):
        t = x
    else:
        t = torch.as_tensor(np.asarray(x))
    if device is not None or dtype is not None:
        t = t.to(device=device if device is not None else t.device, dtype=dtype)
    return t


def like(result: Any, reference: Any, dtype: Any = None):
    """Return ``result`` as the same kind (and device) as ``reference``.

    NumPy reference -> NumPy array; tensor reference -> tensor on the
    reference's device.  ``dtype`` optionally casts (a NumPy or torch dtype
    matching the reference's kind).
    """
    if is_torch(reference):
        return to_torch(result, device=reference.device, dtype=dtype)
    return to_numpy(result, dtype=dtype)


def resolve_device(device: Any = None, *arrays: Any) -> str:
    """Pick the torch device for a computation.

    ``device`` wins when given ("cpu", "cuda", "cuda:1", "mps", a
    ``torch.device``).  Otherwise the device of the first tensor argument, and
    ``"cpu"`` for NumPy inputs (no hidden move to a GPU).  ``"auto"`` picks
    cuda, then mps, then cpu.
    """
    if device is not None and str(device) != "auto":
        dev = str(device)
        torch = torch_module()
        try:
            torch.device(dev)
        except (RuntimeError, TypeError, ValueError):
            raise ValueError(f"device={dev!r} is not a torch device; expected e.g. 'cpu', 'cuda', "
                             "'cuda:1', 'mps', 'meta' or 'auto'") from None
        if dev.startswith("cuda"):
            if not torch.cuda.is_available():
                raise ValueError(f"device={dev!r} requested but CUDA is not available")
        return dev
    if device is None:
        for a in arrays:
            if is_torch(a):
                return str(a.device)
        return "cpu"
    torch = torch_module()
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def float_dtype(x: Any, default: str = "float64"):
    """Floating dtype to compute ``x`` in, in ``x``'s own backend.

    Floating inputs keep their precision (float16/bfloat16 are promoted to
    float32 for accumulation); integer and boolean inputs use ``default``.
    """
    if is_torch(x):
        torch = _torch_if_loaded()
        if x.is_floating_point():
            return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        return getattr(torch, default)
    arr = np.asarray(x)
    if np.issubdtype(arr.dtype, np.floating):
        return np.float32 if arr.dtype == np.float16 else arr.dtype
    return np.dtype(default)


def default_num_threads() -> int:
    """Threads available to this process (respects affinity masks and OMP_NUM_THREADS)."""
    env = os.environ.get("OMP_NUM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return os.cpu_count() or 1


_THREADS_LOCK = threading.Lock()
_THREADS_STATE = {"depth": 0, "saved": 1}


@contextmanager
def torch_num_threads(n: int):
    """Run torch's CPU kernels on ``n`` intra-op threads inside the block.

    Used by blocked kernels: the fiber-product scan spreads row blocks over its own
    Python worker threads, each on single-threaded kernels (``n=1``); ring products
    run one block at a time on ``n`` intra-op threads.  ``torch.set_num_threads`` is
    process-wide, so nested/concurrent users (e.g. several Dask worker threads)
    share one counter: the first entry saves the setting and sets ``n``, the last
    exit restores it.
    """
    torch = torch_module()
    with _THREADS_LOCK:
        if _THREADS_STATE["depth"] == 0:
            _THREADS_STATE["saved"] = torch.get_num_threads()
            torch.set_num_threads(n)
        _THREADS_STATE["depth"] += 1
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS_STATE["depth"] -= 1
            if _THREADS_STATE["depth"] == 0:
                torch.set_num_threads(_THREADS_STATE["saved"])
