"""Input checks shared by every module.

Each check raises an error that names the argument and says what was expected,
so that bad input never becomes a silent wrong answer.  All checks accept NumPy
arrays and torch tensors.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import numpy as np

from ._backend import is_torch, to_numpy

__all__ = [
    "check_array",
    "check_finite",
    "check_nonnegative_scalar",
    "check_positive_scalar",
    "check_same_length",
    "check_choice",
    "check_weights",
    "check_int",
    "check_float_dtype",
]


def _shape(x: Any) -> tuple:
    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)


def check_finite(x: Any, name: str) -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or +-Inf."""
    if is_torch(x):
        import torch

        if x.is_floating_point() or x.is_complex():
            if not bool(torch.isfinite(x).all()):
                n_bad = int((~torch.isfinite(x)).sum())
                raise ValueError(f"{name} contains {n_bad} NaN or Inf value(s)")
        return
    arr = np.asarray(x)
    if np.issubdtype(arr.dtype, np.inexact) and not np.isfinite(arr).all():
        n_bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"{name} contains {n_bad} NaN or Inf value(s)")


def check_array(
    x: Any,
    name: str,
    ndim: int | Sequence[int] | None = None,
    min_ndim: int | None = None,
    shape: Sequence[int | None] | None = None,
    finite: bool = True,
    allow_empty: bool = True,
    numeric: bool = True,
):
    """Validate an array-like argument and return it as an array or tensor.

    Lists become NumPy arrays; tensors are returned unchanged.

    Parameters
    ----------
    x : array-like or torch.Tensor
    name : str
        Argument name used in error messages.
    ndim : int or sequence of int, optional
        Allowed numbers of dimensions.
    min_ndim : int, optional
    shape : sequence of int or None, optional
        Expected trailing shape; ``None`` entries match anything.
    finite : bool
        Reject NaN/Inf.
    allow_empty : bool
        Reject arrays with zero elements when False.
    numeric : bool
        Reject non-numeric dtypes (object, string) and complex dtypes: every
        geoalign computation is real, and dropping an imaginary part would be
        a silent wrong answer.
    """
    if x is None:
        raise TypeError(f"{name} is required, got None")
    if not is_torch(x):
        try:
            x = np.asarray(x)
        except Exception as exc:  # ragged lists etc.
            raise TypeError(f"{name} must be array-like, got {type(x).__name__}: {exc}") from exc
        if numeric and not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
            raise TypeError(f"{name} must be numeric, got dtype {x.dtype}")
        if numeric and np.iscomplexobj(x):
            raise TypeError(f"{name} must be real, got complex dtype {x.dtype}; "
                            "pass x.real or abs(x) explicitly if that is what you mean")
    elif numeric and x.is_complex():
        raise TypeError(f"{name} must be real, got complex dtype {x.dtype}; "
                        "pass x.real or x.abs() explicitly if that is what you mean")
    shp = _shape(x)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if len(shp) not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"{name} must have {want} dimension(s), got shape {shp}")
    if min_ndim is not None and len(shp) < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {shp}")
    if shape is not None:
        tail = tuple(shape)
        if len(shp) < len(tail) or any(
            s is not None and s != a for s, a in zip(tail, shp[len(shp) - len(tail):])
        ):
            want = "(..., " + ", ".join("*" if s is None else str(s) for s in tail) + ")"
            raise ValueError(f"{name} must have shape {want}, got {shp}")
    if not allow_empty and int(np.prod(shp)) == 0:
        raise ValueError(f"{name} must not be empty, got shape {shp}")
    if finite:
        check_finite(x, name)
    return x


def check_int(value: Any, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as ``int`` if it is an integer within [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def _as_real(value: Any, name: str) -> float:
    if is_torch(value) or isinstance(value, np.ndarray):
        if int(np.prod(_shape(value))) != 1:
            raise ValueError(f"{name} must be a scalar, got shape {_shape(value)}")
        value = float(to_numpy(value).reshape(()))
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must not be NaN")
    return value


def check_nonnegative_scalar(value: Any, name: str, allow_inf: bool = False) -> float:
    """Return ``value`` as float if it is a real number >= 0 (not NaN)."""
    value = _as_real(value, name)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    if math.isinf(value) and not allow_inf:
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def check_positive_scalar(value: Any, name: str) -> float:
    """Return ``value`` as float if it is a finite real number > 0."""
    value = _as_real(value, name)
    if not (value > 0) or math.isinf(value):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def check_same_length(**arrays: Any) -> int:
    """Raise if the arrays do not share their first dimension; return it."""
    lengths = {k: _shape(v)[0] if len(_shape(v)) else None for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k} has {v}" for k, v in lengths.items())
        raise ValueError(f"arguments must have the same number of samples: {detail}")
    return next(iter(lengths.values()))


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(map(repr, choices))}")
    return value


def check_weights(w: Any, name: str, n: int, atol: float = 1e-6):
    """Validate a weight vector of length ``n``: finite, >= 0, summing to one.

    ``None`` gives uniform weights (a NumPy array).  Returns the weights in the
    kind they were given.
    """
    if w is None:
        return np.full(n, 1.0 / n)
    w = check_array(w, name, ndim=1)
    if _shape(w)[0] != n:
        raise ValueError(f"{name} must have length {n}, got {_shape(w)[0]}")
    wn = to_numpy(w, dtype=np.float64)
    if (wn < 0).any():
        raise ValueError(f"{name} must be non-negative, got min {wn.min()}")
    if abs(wn.sum() - 1.0) > atol:
        raise ValueError(f"{name} must sum to 1, got {wn.sum()}")
    return w


def check_float_dtype(dtype: Any, name: str = "dtype"):
    """Return ``numpy.dtype(dtype)`` if it is a floating dtype, else raise ``TypeError``.

    For loaders that scale their output (fractions an integer dtype would truncate).
    """
    try:
        out = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name} must be a NumPy floating dtype, got {dtype!r} ({exc})") from None
    if not np.issubdtype(out, np.floating):
        raise TypeError(f"{name} must be a floating dtype (float32 or float64): the scaled "
                        f"features are fractions that {out} would truncate; got {out}")
    return out
