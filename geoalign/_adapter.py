r"""The one NumPy/torch adapter of geoalign's torch-computed functions.

Every public function that computes in torch handles its array arguments in the same
five steps::

    ad = adapt({"X": X, "Y": Y}, ndim=2)   # 1. validate (clear errors naming the argument)
                                           # 2. device: the tensors' common device (NumPy: CPU,
                                           #    or ``device=``), an error naming them if they differ
                                           # 3. dtype: :func:`compute_dtype` (one promotion rule)
    Xt, Yt = ad.tensors                    # 4. compute in torch
    return ad.output(result)               # 5. hand back the caller's kind

:func:`compute_dtype` is the one promotion rule: the widest floating dtype among the
floating inputs (NumPy or torch), float16/bfloat16 promoted to float32 (NumPy's
long double computed in float64), and float64 when no input is floating (integers,
booleans).  So float32 stays float32 and
float64 stays float64.  :meth:`Adapted.output` returns a tensor on the reference's
device when any argument was a tensor, otherwise NumPy (a Python float for a 0-d
result).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._backend import check_same_device, is_torch, resolve_device, to_torch, torch_module
from ._validation import check_array

__all__ = ["Adapted", "adapt", "compute_dtype", "reference", "hand_back"]


def compute_dtype(*arrays: Any):
    """The torch dtype to compute in (see the module docstring); ``None`` arguments are skipped."""
    torch = torch_module()
    widest = None
    for x in arrays:
        if x is None:
            continue
        if is_torch(x):
            if not x.is_floating_point():
                continue
            dt = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        else:
            arr = np.asarray(x)
            if not np.issubdtype(arr.dtype, np.floating):
                continue
            dt = torch.float32 if arr.dtype.itemsize <= 4 else torch.float64  # float16 -> float32
        widest = dt if widest is None else torch.promote_types(widest, dt)
    return torch.float64 if widest is None else widest


def reference(*arrays: Any):
    """The first tensor argument (results follow its kind and device), else ``None``."""
    return next((x for x in arrays if is_torch(x)), None)


def hand_back(x: Any, ref: Any):
    """``x`` as a tensor when ``ref`` is a tensor, else as NumPy (a Python float when 0-d)."""
    if ref is not None:
        return x
    if is_torch(x):
        out = x.detach().cpu().numpy()
        return float(out) if out.ndim == 0 else out
    return x


@dataclass(frozen=True)
class Adapted:
    """Validated arguments as torch tensors, and how to hand results back.

    Attributes
    ----------
    tensors : tuple of torch.Tensor
        The arguments in the order given, on ``device`` in ``dtype`` (tensors keep autograd).
    reference : tensor or None
        The first tensor argument; results follow its kind and device.
    device : torch.device
    dtype : torch.dtype
    """

    tensors: tuple
    reference: Any
    device: Any
    dtype: Any

    def output(self, x: Any):
        """Hand ``x`` back in the caller's kind (see :func:`hand_back`)."""
        return hand_back(x, self.reference)


def adapt(arrays: dict[str, Any], *, device: Any = None, dtype: Any = None, validate: bool = True,
          **check: Any) -> Adapted:
    """Validate, place and convert named array arguments (the five steps of the module docstring).

    Parameters
    ----------
    arrays : dict
        ``name -> array-like or tensor``; the names appear in error messages.
    device : str or torch.device, optional
        Where to compute (default: the tensors' device, CPU for NumPy).
    dtype : torch.dtype, optional
        Overrides :func:`compute_dtype`.
    validate : bool
        Run :func:`~geoalign._validation.check_array` (with ``**check``, e.g.
        ``ndim=2``) on every argument; NaN/Inf are checked unless ``finite=False``.
    """
    if validate:
        arrays = {k: check_array(v, k, **check) for k, v in arrays.items()}
    check_same_device(**arrays)
    dev = torch_module().device(resolve_device(device, *arrays.values()))
    dt = compute_dtype(*arrays.values()) if dtype is None else dtype
    # read-only NumPy views (np.broadcast_to, memmaps) are copied: torch warns on them
    tensors = tuple(to_torch(a if is_torch(a) or np.asarray(a).flags.writeable else np.array(a),
                             device=dev, dtype=dt) for a in arrays.values())
    return Adapted(tensors, reference(*arrays.values()), dev, dt)
