"""Input handling shared by the optimal-transport solvers (internal).

Every solver computes in torch through :mod:`geoalign._adapter`: NumPy inputs are
converted (CPU, the widest floating precision among the inputs, float64 for
integers: :func:`~geoalign._adapter.compute_dtype`) and results are handed back as
NumPy (:func:`~geoalign._adapter.hand_back`, here ``output``); torch inputs stay on
their device and keep autograd.
"""
from __future__ import annotations

from typing import Any

import torch

from .._adapter import compute_dtype, reference  # noqa: F401 - used as _common.reference etc.
from .._adapter import hand_back as output  # noqa: F401
from .._backend import check_same_device, to_torch
from .._validation import check_array

__all__: list[str] = []


def as_tensor(x: Any, device: Any, dtype: torch.dtype) -> torch.Tensor:
    """``x`` as a tensor on ``device`` in ``dtype`` (autograd preserved for tensors)."""
    return to_torch(x, device=device, dtype=dtype)


def device_for(**arrays: Any) -> torch.device:
    """Common device of the tensor arguments (clear error when they differ)."""
    return torch.device(check_same_device(**{k: v for k, v in arrays.items() if v is not None}))


def marginal(w: Any, name: str, n: int, batch: int, batched: bool, device, dtype,
             validate: bool = True) -> torch.Tensor:
    """Validate a marginal of length ``n`` and return it with shape (batch, n).

    ``None`` gives the uniform probability vector.  Batched problems accept a
    shared (n,) marginal or one per problem (batch, n).  ``validate=False``
    checks only the shape (no value is read on the host).
    """
    if w is None:
        return torch.full((batch, n), 1.0 / n, device=device, dtype=dtype)
    w = check_array(w, name, ndim=(1, 2) if batched else 1, finite=validate)
    shape = tuple(w.shape)
    if shape[-1] != n:
        raise ValueError(f"{name} must have length {n} (matching the cost matrix), got shape {shape}")
    if len(shape) == 2 and shape[0] != batch:
        raise ValueError(f"{name} must have shape ({n},) or ({batch}, {n}), got {shape}")
    t = as_tensor(w, device, dtype)
    if not validate:
        return t.expand(batch, n)
    if bool((t < 0).any()):
        raise ValueError(f"{name} must be non-negative, got min {float(t.min())}")
    mass = t.sum(-1)
    if bool((mass <= 0).any()):
        raise ValueError(f"{name} must have positive total mass, got {mass.min().item()}")
    return t.expand(batch, n)


def check_same_mass(a: torch.Tensor, b: torch.Tensor, names=("a", "b")) -> None:
    """Balanced transport needs ``a.sum() == b.sum()`` (per problem)."""
    rtol = 1e-6 if a.dtype == torch.float64 else 1e-4
    ma, mb = a.detach().sum(-1), b.detach().sum(-1)
    if bool(((ma - mb).abs() > rtol * torch.maximum(ma, mb)).any()):
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same total mass, "
            f"got {ma.max().item():.10g} and {mb.max().item():.10g}")


def probability(w: Any, name: str, n: int, device, dtype) -> torch.Tensor:
    """A probability vector of length ``n`` (``None`` -> uniform); must sum to one."""
    if w is None:
        return torch.full((n,), 1.0 / n, device=device, dtype=dtype)
    w = check_array(w, name, ndim=1)
    if w.shape[0] != n:
        raise ValueError(f"{name} must have length {n}, got {w.shape[0]}")
    t = as_tensor(w, device, dtype)
    if bool((t < 0).any()):
        raise ValueError(f"{name} must be non-negative, got min {float(t.min())}")
    total = float(t.detach().sum())
    tol = 1e-6 if dtype == torch.float64 else 1e-4
    if abs(total - 1.0) > tol:
        raise ValueError(f"{name} must sum to 1, got {total:.10g}")
    return t


def pairwise_cost(X: torch.Tensor, Y: torch.Tensor, p: float) -> torch.Tensor:
    r"""Cost matrix :math:`C_{ij} = \|x_i - y_j\|^p / p` for point clouds (..., n, d), (..., m, d).

    For ``p = 2`` the squared distance is expanded into a matrix product (fast,
    smooth everywhere); other ``p`` use :func:`torch.cdist`.
    """
    if p == 2:
        sq = (X * X).sum(-1)[..., :, None] + (Y * Y).sum(-1)[..., None, :] - 2 * X @ Y.transpose(-1, -2)
        return sq.clamp_min(0) / 2
    return torch.cdist(X, Y, p=2) ** p / p
