"""Linear alignment baselines: regularised CCA and ESZSL (closed forms).

Both follow the shared estimator API of :mod:`geoalign.models`:
``fit(X_a, X_b, y=None)``, ``transform_a(X)``, ``transform_b(X)``,
``class_scores(X, class_semantics)``, ``predict_zsl(X, class_semantics)``,
``save(path)`` / ``load(path)``.  Fitting runs in float64 NumPy/SciPy; the
transforms return the kind they are given (NumPy in -> NumPy out, a tensor in
-> a tensor on the same device and dtype).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import linalg

from .._backend import is_torch, like, to_numpy, to_torch
from .._estimator import TwoViewEstimator
from .._io import atomic_path
from .._validation import check_array, check_int, check_nonnegative_scalar

__all__ = ["CCA", "ESZSL", "load_linear_model"]


def _as_float64(X: Any, name: str, n_features: int | None = None) -> np.ndarray:
    X = check_array(X, name, ndim=2, allow_empty=False)
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} must have {n_features} features (as in fit), got shape {tuple(X.shape)}")
    return to_numpy(X).astype(np.float64)


def _apply(X: Any, name: str, n_features: int, shift: np.ndarray | None, weight: np.ndarray):
    """``(X - shift) @ weight`` in ``X``'s backend, dtype and device."""
    X = check_array(X, name, ndim=2)
    if X.shape[1] != n_features:
        raise ValueError(f"{name} must have {n_features} features (as in fit), got shape {tuple(X.shape)}")
    if is_torch(X):
        dtype = X.dtype if X.is_floating_point() else None
        Xt = X if dtype is not None else X.double()
        W = to_torch(weight, device=X.device, dtype=Xt.dtype)
        if shift is not None:
            Xt = Xt - to_torch(shift, device=X.device, dtype=Xt.dtype)
        return Xt @ W
    Xn = np.asarray(X)
    out_dtype = Xn.dtype if np.issubdtype(Xn.dtype, np.floating) else np.float64
    Xn = Xn.astype(np.float64)
    if shift is not None:
        Xn = Xn - shift
    return (Xn @ weight).astype(out_dtype)


def _labels(y: Any, n: int, n_classes: int | None = None) -> np.ndarray:
    if y is None:
        raise ValueError("y (class labels, one per row of X_a) is required")
    y = check_array(y, "y", ndim=1)
    arr = to_numpy(y)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.array_equal(arr, np.rint(arr)):
            raise ValueError(f"y must hold integer class ids, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.shape[0] != n:
        raise ValueError(f"y must have length {n} (one label per row of X_a), got {arr.shape[0]}")
    if arr.min() < 0:
        raise ValueError(f"y must be class ids >= 0, got minimum {arr.min()}")
    if n_classes is not None and arr.max() >= n_classes:
        raise ValueError(f"y has class id {arr.max()} but X_b (class semantics) has only "
                         f"{n_classes} rows")
    return arr


class _LinearAligner(TwoViewEstimator):
    """Save/load and ZSL prediction shared by the linear baselines."""

    _score = "cosine"
    _fit_hint = "fit(X_a, X_b, ...)"

    def class_scores(self, X: Any, class_semantics: Any):
        """Compatibility of each sample with each class, shape=[n, C].

        Cosine similarity in the shared space for CCA; the bilinear score
        :math:`x^\\top V s` for ESZSL.  Returns ``X``'s kind.
        """
        self._check_fitted()
        za = self.transform_a(X)
        zb = self.transform_b(class_semantics)
        if is_torch(za) or is_torch(zb):
            za_t = to_torch(za)
            zb_t = to_torch(zb, device=za_t.device, dtype=za_t.dtype)
            if self._score == "cosine":
                za_t = za_t / za_t.norm(dim=1, keepdim=True).clamp_min(1e-12)
                zb_t = zb_t / zb_t.norm(dim=1, keepdim=True).clamp_min(1e-12)
            return like(za_t @ zb_t.T, X)
        if self._score == "cosine":
            za = za / np.maximum(np.linalg.norm(za, axis=1, keepdims=True), 1e-12)
            zb = zb / np.maximum(np.linalg.norm(zb, axis=1, keepdims=True), 1e-12)
        return za @ zb.T

    def predict_zsl(self, X: Any, class_semantics: Any):
        """Index (row of ``class_semantics``) of the best-scoring class for each sample.

        Parameters
        ----------
        X : array-like, shape=[n, d_a]
        class_semantics : array-like, shape=[C, d_b]
            One view-b vector per candidate class (e.g. the unseen classes'
            attributes); the result indexes its rows.

        Returns
        -------
        pred : int64 array of ``X``'s kind, shape=[n]
        """
        scores = self.class_scores(X, class_semantics)
        if is_torch(scores):
            return scores.argmax(dim=1)
        return scores.argmax(axis=1).astype(np.int64)

    def save(self, path) -> Path:
        """Save parameters and learned attributes to ``path`` (.npz, written atomically)."""
        self._check_fitted()
        path = Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"path must end in .npz, got {path}")
        arrays = {"__class__": np.array(type(self).__name__)}
        for k in self._param_names():
            arrays[f"param:{k}"] = np.array(getattr(self, k))
        for k in self._fitted_attributes:
            arrays[f"learned:{k}"] = np.asarray(getattr(self, k))
        with atomic_path(path) as tmp:
            np.savez(tmp, **arrays)
        return path

    @classmethod
    def load(cls, path):
        """Load a model saved by :meth:`save` (must be of this class)."""
        model = load_linear_model(path)
        if not isinstance(model, cls):
            raise TypeError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model


class CCA(_LinearAligner):
    """Regularised canonical correlation analysis (whitening + SVD).

    With centred views, covariances :math:`C_{aa}, C_{bb}`, cross-covariance
    :math:`C_{ab}` and ridge terms :math:`r_a = \\mathrm{reg}\\cdot\\mathrm{tr}(C_{aa})/d_a`
    (likewise :math:`r_b`, so ``reg`` is scale-free),

    .. math::  (C_{aa}+r_aI)^{-1/2}\\, C_{ab}\\, (C_{bb}+r_bI)^{-1/2} = U\\Sigma V^\\top,
    .. math::  W_a = (C_{aa}+r_aI)^{-1/2} U_{:,:k},\\quad W_b = (C_{bb}+r_bI)^{-1/2} V_{:,:k},

    the canonical correlations are :math:`\\sigma_1\\ge\\dots\\ge\\sigma_k` and the
    shared embeddings :math:`(x_a-\\mu_a)W_a`, :math:`(x_b-\\mu_b)W_b` (unit
    variance, pairwise correlation :math:`\\sigma_j` per coordinate).

    Parameters
    ----------
    dim : int
        Number of canonical directions ``k`` (at most ``min(d_a, d_b)``).
    reg : float >= 0
        Relative ridge regularisation.

    Attributes
    ----------
    mean_a_, mean_b_ : ndarray, shape=[d_a], [d_b]
    weights_a_, weights_b_ : ndarray, shape=[d_a, k], [d_b, k]
    correlations_ : ndarray, shape=[k]
    """

    _fitted_attributes = ("mean_a_", "mean_b_", "weights_a_", "weights_b_", "correlations_")

    def __init__(self, dim: int = 2, reg: float = 1e-3):
        self.dim = dim
        self.reg = reg

    def fit(self, X_a: Any, X_b: Any, y: Any = None) -> "CCA":
        """Fit on paired rows of ``X_a`` (n, d_a) and ``X_b`` (n, d_b); ``y`` is ignored."""
        dim = check_int(self.dim, "dim", minimum=1)
        reg = check_nonnegative_scalar(self.reg, "reg")
        A = _as_float64(X_a, "X_a")
        B = _as_float64(X_b, "X_b")
        if A.shape[0] != B.shape[0]:
            raise ValueError(f"X_a and X_b must have the same number of rows (pairs), got "
                             f"{A.shape[0]} and {B.shape[0]}")
        n = A.shape[0]
        if n < 2:
            raise ValueError(f"CCA needs at least 2 pairs, got {n}")
        if dim > min(A.shape[1], B.shape[1]):
            raise ValueError(f"dim must be <= min(d_a, d_b) = {min(A.shape[1], B.shape[1])}, got {dim}")
        mu_a, mu_b = A.mean(0), B.mean(0)
        A, B = A - mu_a, B - mu_b
        c_aa, c_bb, c_ab = A.T @ A / (n - 1), B.T @ B / (n - 1), A.T @ B / (n - 1)
        wa, wb = self._inv_sqrt(c_aa, reg, "X_a"), self._inv_sqrt(c_bb, reg, "X_b")
        U, s, Vt = linalg.svd(wa @ c_ab @ wb, full_matrices=False)
        self.mean_a_, self.mean_b_ = mu_a, mu_b
        self.weights_a_ = wa @ U[:, :dim]
        self.weights_b_ = wb @ Vt[:dim].T
        self.correlations_ = s[:dim]
        return self

    @staticmethod
    def _inv_sqrt(c: np.ndarray, reg: float, name: str) -> np.ndarray:
        d = c.shape[0]
        ridge = reg * max(np.trace(c) / d, np.finfo(np.float64).tiny)
        evals, evecs = linalg.eigh(c + ridge * np.eye(d))
        floor = evals.max() * d * np.finfo(np.float64).eps
        if evals.min() <= floor:
            raise ValueError(f"covariance of {name} is singular (min eigenvalue {evals.min():.3g}); "
                             f"increase reg (now {reg}) or remove constant/duplicate features")
        return (evecs / np.sqrt(evals)) @ evecs.T

    def transform_a(self, X: Any):
        """Canonical variates of view a, shape=[n, dim], ``X``'s kind."""
        self._check_fitted()
        return _apply(X, "X", self.weights_a_.shape[0], self.mean_a_, self.weights_a_)

    def transform_b(self, X: Any):
        """Canonical variates of view b, shape=[n, dim], ``X``'s kind."""
        self._check_fitted()
        return _apply(X, "X", self.weights_b_.shape[0], self.mean_b_, self.weights_b_)


class ESZSL(_LinearAligner):
    """Embarrassingly simple zero-shot learning (Romera-Paredes & Torr, ICML 2015).

    View a holds sample features :math:`X\\in\\mathbb R^{n\\times d}` (rows are
    samples); **view b holds class semantics**, one attribute/word vector per
    class, :math:`S\\in\\mathbb R^{C\\times s}`, and ``y`` gives each sample's class
    (a row index of ``X_b``).  With :math:`Y\\in\\{-1,1\\}^{n\\times C}` the signed
    one-hot labels, the closed form (paper notation, samples as columns) is

    .. math::  V = (XX^\\top + \\alpha I)^{-1}\\, X Y S^\\top\\, (SS^\\top + \\gamma I)^{-1}
               \\in \\mathbb R^{d\\times s},

    i.e. ``alpha`` is the paper's :math:`\\gamma` (feature-side ridge) and ``gamma``
    the paper's :math:`\\lambda` (semantic-side ridge).  A sample is scored
    against class semantics :math:`s_c` by :math:`x^\\top V s_c`; classes unseen
    in training only need their semantics at prediction time.

    Parameters
    ----------
    alpha : float >= 0
        Ridge on the feature side.
    gamma : float >= 0
        Ridge on the semantic side.

    Attributes
    ----------
    V_ : ndarray, shape=[d, s]
    """

    _fitted_attributes = ("V_",)
    _score = "dot"

    def __init__(self, alpha: float = 1.0, gamma: float = 1.0):
        self.alpha = alpha
        self.gamma = gamma

    def fit(self, X_a: Any, X_b: Any, y: Any = None) -> "ESZSL":
        """Fit on features ``X_a`` (n, d), class semantics ``X_b`` (C, s) and labels ``y`` (n,)."""
        alpha = check_nonnegative_scalar(self.alpha, "alpha")
        gamma = check_nonnegative_scalar(self.gamma, "gamma")
        X = _as_float64(X_a, "X_a")
        S = _as_float64(X_b, "X_b (class semantics, one row per class)")
        labels = _labels(y, X.shape[0], n_classes=S.shape[0])
        n_classes = S.shape[0]
        Y = -np.ones((X.shape[0], n_classes))
        Y[np.arange(X.shape[0]), labels] = 1.0
        # (X^T X + alpha I)^-1 X^T Y S (S^T S + gamma I)^-1 in rows-as-samples notation
        left = X.T @ X + alpha * np.eye(X.shape[1])
        right = S.T @ S + gamma * np.eye(S.shape[1])
        try:
            inner = linalg.solve(left, X.T @ Y @ S, assume_a="pos")
            self.V_ = linalg.solve(right, inner.T, assume_a="pos").T
        except (linalg.LinAlgError, ValueError) as exc:
            raise ValueError(f"ESZSL system is singular; increase alpha/gamma ({exc})") from exc
        return self

    def transform_a(self, X: Any):
        """Features projected into the semantic space, :math:`XV`, shape=[n, s]."""
        self._check_fitted()
        return _apply(X, "X", self.V_.shape[0], None, self.V_)

    def transform_b(self, X: Any):
        """Class semantics are already in the shared (semantic) space: returned unchanged."""
        self._check_fitted()
        X = check_array(X, "class_semantics", ndim=2, allow_empty=False)
        if X.shape[1] != self.V_.shape[1]:
            raise ValueError(f"class_semantics must have {self.V_.shape[1]} columns (the semantic "
                             f"dimension seen in fit), got shape {tuple(X.shape)}")
        return X


_MODELS = {"CCA": CCA, "ESZSL": ESZSL}


def load_linear_model(path) -> CCA | ESZSL:
    """Load a :class:`CCA` or :class:`ESZSL` saved with ``save``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    with np.load(path, allow_pickle=False) as z:
        if "__class__" not in z.files:
            raise ValueError(f"{path} is not a geoalign linear model file (no '__class__' entry)")
        name = str(z["__class__"])
        if name not in _MODELS:
            raise ValueError(f"{path} holds unknown model {name!r}; expected one of {sorted(_MODELS)}")
        cls = _MODELS[name]
        missing = [k for k in (*(f"param:{p}" for p in cls._param_names()),
                               *(f"learned:{p}" for p in cls._fitted_attributes)) if k not in z.files]
        if missing:
            raise ValueError(f"{path} is missing entries {missing}")
        model = cls(**{p: z[f"param:{p}"].item() for p in cls._param_names()})
        for k in cls._fitted_attributes:
            setattr(model, k, np.array(z[f"learned:{k}"]))
    return model
