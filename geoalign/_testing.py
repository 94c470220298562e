"""Test helpers: count the operations that would stall an accelerator.

:class:`SyncCounter` proves on the CPU that a piece of code never waits for a
GPU.  It records every operation that forces a device -> host synchronisation
when the tensors live on an accelerator:

* ``aten._local_scalar_dense`` -- what ``.item()``, ``bool(t)``, ``float(t)``,
  ``int(t)`` and ``if t:`` reach;
* operations whose output shape depends on the data: ``aten.nonzero``,
  ``aten.masked_select``, the ``aten.unique*`` family, boolean-mask indexing
  (``x[mask]`` and ``x[mask] = v``), ``repeat_interleave`` without
  ``output_size``;
* ``aten.equal`` (returns a Python bool);
* copies to the CPU from another device (``.cpu()``, ``.to("cpu")``,
  ``copy_`` into a CPU tensor), and the calls that hand a tensor's values to
  Python or NumPy: ``Tensor.tolist``, ``Tensor.numpy``, ``np.asarray(t)``.

On a CPU run the last group is counted whatever the tensor's device (a CPU
tensor read by NumPy is a synchronisation once the same code runs on a GPU), so
the counts are an upper bound of the synchronisations on an accelerator.
Host-side work that never touches tensor values (shapes, dtypes, Python
numbers) is free and not counted.

Example
-------
>>> import torch
>>> from geoalign._testing import SyncCounter
>>> x = torch.randn(5)
>>> with SyncCounter() as sc:
...     y = (x * 2).sum()          # stays on the device
...     _ = float(y)               # one synchronisation
>>> sc.count, dict(sc.ops)
(1, {'aten._local_scalar_dense': 1})
"""
from __future__ import annotations

import traceback
from collections import Counter
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["SyncCounter", "count_syncs"]

_aten = torch.ops.aten

#: aten overload packets that always synchronise on an accelerator
_ALWAYS = {
    _aten._local_scalar_dense,
    _aten.nonzero,
    _aten.masked_select,
    _aten.equal,
    _aten.unique_dim,
    _aten.unique_consecutive,
    _aten.unique_dim_consecutive,
    _aten._unique,
    _aten._unique2,
}

_INDEX = {_aten.index, _aten._unsafe_index, _aten.index_put, _aten.index_put_, _aten._index_put_impl_}

#: Tensor methods that hand values to Python / NumPy (a device -> host copy on a GPU)
_HOST_READS = {torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.__array__}


def _is_bool_index(indices: Any) -> bool:
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
               for i in (indices or ()) if i is not None)


def _device(x: Any) -> str | None:
    return x.device.type if isinstance(x, torch.Tensor) else None


class _Dispatch(TorchDispatchMode):
    def __init__(self, owner: "SyncCounter"):
        super().__init__()
        self.owner = owner

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket
        name = None
        if packet in _ALWAYS:
            name = f"aten.{packet.__name__}"
        elif packet in _INDEX and _is_bool_index(args[1] if len(args) > 1 else kwargs.get("indices")):
            name = f"aten.{packet.__name__} (boolean mask)"
        elif packet is _aten.repeat_interleave and kwargs.get("output_size") is None \
                and len(args) >= 1 and isinstance(args[0], torch.Tensor) \
                and (len(args) < 2 or isinstance(args[1], torch.Tensor)):
            name = "aten.repeat_interleave (no output_size)"
        elif packet is _aten._to_copy:
            dst = kwargs.get("device")
            if dst is not None and torch.device(dst).type == "cpu" and _device(args[0]) != "cpu":
                name = "copy to cpu"
        elif packet is _aten.copy_:
            if _device(args[0]) == "cpu" and _device(args[1]) not in (None, "cpu"):
                name = "copy to cpu"
        if name is not None:
            self.owner._record(name)
        return func(*args, **kwargs)


class _Function(TorchFunctionMode):
    def __init__(self, owner: "SyncCounter"):
        super().__init__()
        self.owner = owner

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _HOST_READS:
            self.owner._record(f"Tensor.{func.__name__}")
        return func(*args, **(kwargs or {}))


class SyncCounter:
    """Context manager counting the device -> host synchronisations inside the block.

    Attributes
    ----------
    count : int
        Total number of synchronising operations.
    ops : collections.Counter
        The same, by operation name (e.g. ``"aten._local_scalar_dense"``).

    stacks : list or None
        With ``SyncCounter(stacks=True)``: ``(name, traceback)`` of every
        counted operation (the last geoalign frames), to find where it happens.

    Works on every device (including ``"cpu"`` and ``"meta"``); see the module
    docstring for what is counted.  Counters nest: an inner counter's
    operations are also counted by the outer one.
    """

    def __init__(self, stacks: bool = False) -> None:
        self.ops: Counter = Counter()
        self.stacks: list = [] if stacks else None  # type: ignore[assignment]
        self._modes: list = []

    @property
    def count(self) -> int:
        return sum(self.ops.values())

    def _record(self, name: str) -> None:
        self.ops[name] += 1
        if self.stacks is not None:
            frames = [f for f in traceback.extract_stack()[:-3]
                      if "geoalign" in f.filename and not f.filename.endswith("_testing.py")]
            self.stacks.append((name, "".join(traceback.format_list(frames[-4:]))))

    def reset(self) -> None:
        """Forget the operations counted so far."""
        self.ops.clear()
        if self.stacks is not None:
            self.stacks.clear()

    def __enter__(self) -> "SyncCounter":
        self._modes = [_Function(self), _Dispatch(self)]
        for m in self._modes:
            m.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        for m in reversed(self._modes):
            m.__exit__(*exc)
        self._modes = []

    def __repr__(self) -> str:
        return f"SyncCounter(count={self.count}, ops={dict(self.ops)})"


def count_syncs(fn, *args: Any, **kwargs: Any) -> tuple[Any, SyncCounter]:
    """Run ``fn(*args, **kwargs)`` under a :class:`SyncCounter`; return ``(result, counter)``."""
    with SyncCounter() as sc:
        out = fn(*args, **kwargs)
    return out, sc
