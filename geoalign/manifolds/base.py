"""Common machinery of the Riemannian manifolds (backend conversion, validation).

Every manifold is implemented as a set of torch *kernels* (methods whose names
start with an underscore, taking torch tensors that are already validated and
broadcastable) plus the public methods defined here, which

1. accept NumPy arrays or torch tensors (any device) and return the kind given
   (NumPy in -> NumPy out, tensor in -> tensor on the same device out);
2. compute in the inputs' floating dtype (integers -> float64, float16/bfloat16
   -> float32);
3. validate points with :meth:`Manifold.check_point` (and tangent vectors with
   :meth:`Manifold.check_tangent`) unless the manifold was created with
   ``validate=False``.  Validation needs one host-device synchronisation per
   call; hot loops (e.g. :func:`geoalign.manifolds.frechet_mean`) validate once
   and then call the kernels directly.  With ``validate=False`` no public
   method reads tensor values on the host (no NaN/Inf check either): they are
   free of host-device synchronisations, which ``tests/test_syncs.py`` counts.

Tolerances
----------
Membership tests use a dtype-keyed absolute tolerance (see :func:`default_atol`):
``1e-4`` for float32 (and lower precisions) and ``1e-7`` for float64.  Matrix
manifolds scale it by the size of the entries where stated in their docstrings.

Batching
--------
Points have shape ``(..., *point_shape)``; every method broadcasts the leading
(batch) dimensions of its arguments with the usual NumPy rules.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._adapter import adapt, compute_dtype
from .._backend import is_torch, like, to_torch
from .._validation import check_array, check_int, check_nonnegative_scalar

__all__ = ["Manifold", "default_atol"]


def default_atol(dtype: torch.dtype) -> float:
    """Membership tolerance for ``dtype``: 1e-7 for float64, 1e-4 otherwise."""
    return 1e-7 if dtype == torch.float64 else 1e-4


class Manifold:
    """Base class: public NumPy/torch API on top of torch kernels.

    Subclasses set :attr:`point_shape` and implement ``_exp``, ``_log``,
    ``_dist``, ``_inner``, ``_projx``, ``_proju``, ``_violation``,
    ``_tangent_violation``, ``_random`` and ``_initial_mean``.

    Parameters
    ----------
    validate : bool, default True
        Check that points lie on the manifold (and tangent vectors in the
        tangent space) and that inputs hold no NaN/Inf, in every public
        method.  ``False`` skips these checks (and their host-device
        synchronisations); inputs are then trusted, only shapes and devices
        are checked.
    """

    #: shape of one point, e.g. ``(d,)`` or ``(n, n)``
    point_shape: tuple[int, ...] = ()
    #: human-readable name used in error messages
    name: str = "manifold"

    def __init__(self, validate: bool = True):
        self.validate = bool(validate)

    # ------------------------------------------------------------------ utils
    @property
    def point_ndim(self) -> int:
        """Number of trailing dimensions of one point (1 for vectors, 2 for matrices)."""
        return len(self.point_shape)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._repr_args()})"

    def _repr_args(self) -> str:
        return ""

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._repr_args() == other._repr_args()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._repr_args()))

    def _prepare(self, names: dict[str, Any], min_ndims: dict[str, int] | None = None):
        """Validate shapes/finiteness and convert ``names`` to torch tensors.

        Returns ``(tensors, reference)`` where ``reference`` is the first tensor
        argument (or the first argument) and decides the output kind.
        """
        min_ndims = min_ndims or {}
        arrays = {}
        for key, value in names.items():
            # NaN/Inf checks read values (a host synchronisation): only when validating
            arrays[key] = check_array(value, key, min_ndim=min_ndims.get(key, self.point_ndim),
                                      finite=self.validate)
            if min_ndims.get(key, self.point_ndim) == self.point_ndim and self.point_ndim:
                tail = tuple(arrays[key].shape[-self.point_ndim:])
                if tail != tuple(self.point_shape):
                    want = "(..., " + ", ".join(map(str, self.point_shape)) + ")"
                    raise ValueError(
                        f"{key} must have shape {want} for {self!r}, got {tuple(arrays[key].shape)}"
                    )
        points = {k: tuple(a.shape[:a.ndim - self.point_ndim]) for k, a in arrays.items()
                  if min_ndims.get(k, self.point_ndim) == self.point_ndim}
        if len(points) > 1:
            try:
                np.broadcast_shapes(*points.values())
            except ValueError:
                detail = ", ".join(f"{k} has batch shape {v}" for k, v in points.items())
                raise ValueError(f"batch shapes do not broadcast: {detail} (point shape "
                                 f"{tuple(self.point_shape)}); give equal batch sizes or 1") from None
        # device, dtype (the one promotion rule) and conversion: geoalign._adapter
        ad = adapt(arrays, validate=False)
        reference = ad.reference if ad.reference is not None else next(iter(arrays.values()))
        return list(ad.tensors), reference

    def _atol(self, atol: float | None, dtype: torch.dtype) -> float:
        if atol is None:
            return default_atol(dtype)
        return check_nonnegative_scalar(atol, "atol")

    # ------------------------------------------------------------ validation
    def belongs(self, x: Any, atol: float | None = None):
        """Whether each point of ``x`` lies on the manifold.

        Parameters
        ----------
        x : array-like, shape=[..., *point_shape]
        atol : float, optional
            Tolerance; default is dtype-keyed (1e-4 float32, 1e-7 float64).

        Returns
        -------
        mask : bool array or tensor, shape=[...]
            NaN/Inf points are reported as not belonging.
        """
        x = check_array(x, "x", min_ndim=self.point_ndim, finite=False)
        if tuple(x.shape[len(x.shape) - self.point_ndim:]) != tuple(self.point_shape):
            raise ValueError(f"x must have shape (..., {', '.join(map(str, self.point_shape))}), "
                             f"got {tuple(x.shape)}")
        xt = to_torch(x, dtype=compute_dtype(x))
        tol = self._atol(atol, xt.dtype)
        finite = torch.isfinite(xt).flatten(xt.ndim - self.point_ndim).all(-1) if self.point_ndim \
            else torch.isfinite(xt)
        safe = torch.where(torch.isfinite(xt), xt, torch.zeros_like(xt))
        ok = finite & (self._violation(safe) <= tol)
        return like(ok, x)

    def check_point(self, x: Any, name: str = "x", atol: float | None = None) -> None:
        """Raise ``ValueError`` naming ``name`` unless every point of ``x`` is on the manifold.

        The tolerance is dtype-keyed (1e-4 float32, 1e-7 float64) unless given.
        """
        x = check_array(x, name, min_ndim=self.point_ndim, finite=True)
        xt = to_torch(x, dtype=compute_dtype(x))
        self._check_point_tensor(xt, name, atol)

    def _check_point_tensor(self, x: torch.Tensor, name: str, atol: float | None = None) -> None:
        if tuple(x.shape[x.ndim - self.point_ndim:]) != tuple(self.point_shape):
            want = "(..., " + ", ".join(map(str, self.point_shape)) + ")"
            raise ValueError(f"{name} must have shape {want} for {self!r}, got {tuple(x.shape)}")
        if x.numel() == 0:
            return
        tol = self._atol(atol, x.dtype)
        viol = self._violation(x)
        worst = float(viol.max())  # one synchronisation per check
        if not worst <= tol:
            n_bad = int((viol > tol).sum())
            raise ValueError(
                f"{name} is not on {self!r}: {n_bad} point(s) violate {self._constraint()} "
                f"(worst violation {worst:.3g} > atol {tol:.1g}); use {type(self).__name__}.projx "
                "to project points onto the manifold"
            )

    def check_tangent(self, x: Any, v: Any, name: str = "v", atol: float | None = None) -> None:
        """Raise ``ValueError`` unless ``v`` is tangent at ``x`` (use :meth:`proju` to make it so)."""
        (xt, vt), _ = self._prepare({"x": x, name: v})
        self._check_tangent_tensor(xt, vt, name, atol)

    def _check_tangent_tensor(self, x, v, name, atol=None) -> None:
        if v.numel() == 0:
            return
        tol = self._atol(atol, v.dtype)
        viol = self._tangent_violation(x, v)
        worst = float(viol.max())
        if not worst <= tol:
            raise ValueError(
                f"{name} is not a tangent vector of {self!r} at x: worst violation of "
                f"{self._tangent_constraint()} is {worst:.3g} > atol {tol:.1g}; use proju"
            )

    def _constraint(self) -> str:
        return "the manifold constraint"

    def _tangent_constraint(self) -> str:
        return "the tangent-space constraint"

    def _tangent_violation(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.zeros(torch.broadcast_shapes(x.shape, v.shape)[: max(x.ndim, v.ndim) - self.point_ndim],
                           dtype=v.dtype, device=v.device)

    # -------------------------------------------------------------- public API
    def exp(self, x: Any, v: Any):
        r"""Riemannian exponential :math:`\exp_x(v)`.

        Parameters
        ----------
        x : array-like, shape=[..., *point_shape]
            Base points.
        v : array-like, shape=[..., *point_shape]
            Tangent vectors at ``x`` (broadcast with ``x``).

        Returns
        -------
        y : array-like, shape=[..., *point_shape]
        """
        (xt, vt), ref = self._prepare({"x": x, "v": v})
        if self.validate:
            self._check_point_tensor(xt, "x")
            self._check_tangent_tensor(xt, vt, "v")
        return like(self._exp(xt, vt), ref)

    def log(self, x: Any, y: Any):
        r"""Riemannian logarithm :math:`\log_x(y)`, the tangent vector at ``x`` pointing to ``y``.

        Parameters
        ----------
        x, y : array-like, shape=[..., *point_shape]

        Returns
        -------
        v : array-like, shape=[..., *point_shape]
            With :math:`\exp_x(v) = y` and :math:`\|v\|_x = d(x, y)`.
        """
        (xt, yt), ref = self._prepare({"x": x, "y": y})
        if self.validate:
            self._check_point_tensor(xt, "x")
            self._check_point_tensor(yt, "y")
        return like(self._log(xt, yt), ref)

    def dist(self, x: Any, y: Any):
        r"""Geodesic distance :math:`d(x, y)`.

        Parameters
        ----------
        x, y : array-like, shape=[..., *point_shape]

        Returns
        -------
        d : array-like, shape=[...]
        """
        (xt, yt), ref = self._prepare({"x": x, "y": y})
        if self.validate:
            self._check_point_tensor(xt, "x")
            self._check_point_tensor(yt, "y")
        return like(self._dist(xt, yt), ref)

    def inner(self, x: Any, u: Any, v: Any):
        r"""Riemannian inner product :math:`\langle u, v\rangle_x`, shape=[...]."""
        (xt, ut, vt), ref = self._prepare({"x": x, "u": u, "v": v})
        if self.validate:
            self._check_point_tensor(xt, "x")
        return like(self._inner(xt, ut, vt), ref)

    def norm(self, x: Any, v: Any):
        r"""Riemannian norm :math:`\|v\|_x`, shape=[...]."""
        (xt, vt), ref = self._prepare({"x": x, "v": v})
        if self.validate:
            self._check_point_tensor(xt, "x")
        return like(self._norm(xt, vt), ref)

    def geodesic(self, x: Any, y: Any, t: Any):
        r"""Point at time ``t`` on the geodesic from ``x`` (t = 0) to ``y`` (t = 1).

        .. math:: \gamma(t) = \exp_x\bigl(t \log_x(y)\bigr)

        Parameters
        ----------
        x, y : array-like, shape=[..., *point_shape]
        t : float or array-like, shape=[*T]
            Times (any real numbers; values outside [0, 1] extrapolate).

        Returns
        -------
        points : array-like, shape=[*T, ..., *point_shape]
            A scalar ``t`` gives shape ``[..., *point_shape]``.
        """
        (xt, yt), ref = self._prepare({"x": x, "y": y})
        t_arr = check_array(t, "t", finite=True)
        tt = to_torch(t_arr, device=xt.device, dtype=xt.dtype)
        if is_torch(t_arr) and not is_torch(ref):
            ref = t_arr
        if self.validate:
            self._check_point_tensor(xt, "x")
            self._check_point_tensor(yt, "y")
        v = self._log(xt, yt)
        batch_ndim = v.ndim
        tt_b = tt.reshape(tuple(tt.shape) + (1,) * batch_ndim)
        xb = xt.reshape((1,) * tt.ndim + tuple(xt.shape))
        return like(self._exp(xb, tt_b * v), ref)

    def projx(self, x: Any):
        """Project arbitrary ambient points onto the manifold (see the subclass for the map)."""
        (xt,), ref = self._prepare({"x": x})
        return like(self._projx(xt), ref)

    def proju(self, x: Any, u: Any):
        """Project ambient vectors ``u`` onto the tangent space at ``x`` (orthogonally)."""
        (xt, ut), ref = self._prepare({"x": x, "u": u})
        if self.validate:
            self._check_point_tensor(xt, "x")
        return like(self._proju(xt, ut), ref)

    to_tangent = proju

    def random(self, n: int | tuple[int, ...] = 1, seed: int | None = None, *,
               device: Any = None, dtype: str = "float64", **kwargs: Any):
        """Random points (reproducible from ``seed`` on every device).

        Parameters
        ----------
        n : int or tuple of int
            Number (or batch shape) of points.
        seed : int, optional
        device : str or torch.device, optional
            When given, return a torch tensor on that device; otherwise a NumPy array.
        dtype : {"float64", "float32"}

        Returns
        -------
        x : array-like, shape=[n, *point_shape] (or [*n, *point_shape])
        """
        shape = (n,) if not isinstance(n, tuple) else n
        shape = tuple(check_int(s, "n", minimum=0) for s in shape)
        tdtype = {"float64": torch.float64, "float32": torch.float32}.get(str(dtype).replace("torch.", ""))
        if tdtype is None:
            raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
        gen = torch.Generator(device="cpu")
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(check_int(seed, "seed", minimum=0))
        pts = self._random(shape, gen, torch.float64, **kwargs).to(tdtype)
        if device is None:
            return pts.numpy()
        if str(device) == "auto":
            from .._backend import resolve_device

            device = resolve_device("auto")
        return pts.to(device)

    # ------------------------------------------------------------- kernels
    def _norm(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.clamp(self._inner(x, v, v), min=0))

    def _tangent_mean(self, m: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_i w_i \log_m(x_i)` for m (..., *ps), x (..., n, *ps), w (..., n)."""
        pd = self.point_ndim
        logs = self._log(m.unsqueeze(-pd - 1), x)
        return (w[(Ellipsis, slice(None)) + (None,) * pd] * logs).sum(-pd - 1)

    def _closed_form_mean(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor | None:
        """Weighted Fréchet mean in closed form, or None when only iterative."""
        return None
