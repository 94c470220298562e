"""Residues modulo n: checks and coercions shared by the modules of :mod:`geoalign.rings`."""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .._backend import check_same_device, is_torch, namespace, to_torch
from .._validation import check_finite

__all__ = ["MAX_MODULUS"]


#: Moduli must satisfy ``2 <= n < MAX_MODULUS`` (products of two residues fit int64).
MAX_MODULUS = 2**31


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    for p in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for a in (2, 3, 5, 7, 11, 13, 17):  # deterministic for n < 3.4e14
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _check_modulus(n: Any, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name} (the modulus) must be an integer, got {n!r} ({type(n).__name__})")
    n = int(n)
    if not 2 <= n < MAX_MODULUS:
        raise ValueError(f"{name} (the modulus) must satisfy 2 <= {name} < 2^31, got {n}")
    return n


def _as_integer(x: Any, name: str, min_ndim: int = 0):
    """Return ``x`` as an int64 array/tensor (unreduced); reject non-integer dtypes."""
    if x is None:
        raise TypeError(f"{name} is required, got None")
    if is_torch(x):
        import torch

        if x.dtype == torch.bool or x.is_floating_point() or x.is_complex():
            check_finite(x, name)
            raise TypeError(f"{name} must have an integer dtype, got {x.dtype}")
        if x.dim() < min_ndim:
            raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {tuple(x.shape)}")
        return x.long()
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists
        raise TypeError(f"{name} must be an integer array, got {type(x).__name__}: {exc}") from exc
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        check_finite(arr, name)
        raise TypeError(f"{name} must have an integer dtype, got {arr.dtype}")
    if arr.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {arr.shape}")
    return arr


def _check_poly_shape(P: Any, name: str) -> None:
    if P.shape[-1] == 0:
        raise ValueError(f"{name} must have at least one coefficient (shape (..., degree+1)), "
                         f"got shape {tuple(P.shape)}")


def _reduce(x: Any, n: int, copy: bool = True):
    """Coefficients mod n as int64 in [0, n) (x already integer).

    Integer division is slow (~5 ns per int64), so a power-of-two modulus uses a
    mask (exact in two's complement, negatives included) and coefficients already
    in range are only checked (copied unless ``copy=False``).
    """
    if is_torch(x):
        import torch

        if n & (n - 1) == 0:
            return torch.bitwise_and(x, n - 1)
        if x.numel() and 0 <= int(x.min()) and int(x.max()) < n:
            return x.clone() if copy else x
        return torch.remainder(x, n)
    if x.dtype == np.uint64:  # values >= 2^63 would wrap when cast first
        return (x % np.uint64(n)).astype(np.int64)
    x = x.astype(np.int64, copy=False)
    if n & (n - 1) == 0:
        return np.bitwise_and(x, n - 1)
    if x.size and 0 <= x.min() and x.max() < n:
        return x.copy() if copy else x
    return np.remainder(x, n)


def _coerce(named: dict[str, Any], n: int, min_ndim: int = 1, reduce: bool = True):
    """Validate integer inputs, unify backend/device, reduce mod n.

    Returns ``(values, xp, device)`` where ``values`` are int64 arrays (NumPy) or
    tensors on one device (torch if any input is a tensor).  With ``reduce=False``
    the values are validated integers of any integer dtype, not reduced (possibly
    the caller's own arrays: read only).
    """
    check_same_device(**{k: v for k, v in named.items() if is_torch(v)})
    xp = namespace(*named.values())
    device = next((v.device for v in named.values() if is_torch(v)), None)
    out = []
    for name, value in named.items():
        v = _as_integer(value, name, min_ndim=min_ndim)
        if min_ndim >= 1:
            _check_poly_shape(v, name)
        if xp is not np:
            v = to_torch(v, device=device)
        out.append(_reduce(v, n) if reduce else v)
    return out, xp, device


def _pad_last(x: Any, length: int):
    """Zero-pad (or cut) the last axis to ``length``."""
    cur = x.shape[-1]
    if cur == length:
        return x
    if cur > length:
        return x[..., :length]
    if is_torch(x):
        import torch

        return torch.nn.functional.pad(x, (0, length - cur))
    pad = [(0, 0)] * (x.ndim - 1) + [(0, length - cur)]
    return np.pad(x, pad)


def _batch_shape(*arrays) -> tuple:
    return tuple(np.broadcast_shapes(*(tuple(a.shape[:-1]) for a in arrays)))


def _broadcast_rows(x, batch: tuple):
    """View ``x`` (..., L) as (rows, L) over ``batch``; a single row stays one row."""
    L = x.shape[-1]
    if int(np.prod(x.shape[:-1], dtype=np.int64)) == 1:
        return x.reshape(1, L)
    if tuple(x.shape[:-1]) == batch:
        return x.reshape(-1, L)
    full = (x.expand(*batch, L) if is_torch(x) else np.broadcast_to(x, batch + (L,)))
    return full.reshape(-1, L)
