"""Shared/private subspace decomposition :math:`Z = Z_s \\oplus Z_I \\oplus Z_T`.

Two views ``U`` (e.g. images) and ``V`` (e.g. text) embedded in one space
:math:`Z = \\mathbb{R}^d` are split into a *shared* subspace :math:`Z_s` where
paired samples agree, and *private* subspaces :math:`Z_I` (energy of ``U``
only) and :math:`Z_T` (energy of ``V`` only), all mutually orthogonal.  Then
for :math:`f \\in Z_s \\oplus Z_I`, :math:`g \\in Z_s \\oplus Z_T`

.. math::

    \\|f - g\\|^2 = \\|\\Pi_s (f - g)\\|^2 + \\|\\Pi_I f\\|^2 + \\|\\Pi_T g\\|^2 ,

so private energy only ever adds to a pair's distance (docs/design/mathematics.md, Statement 4).

The decomposition is in *feature space* and so applies to new samples; AJIVE
(:func:`ajive`, Feng et al. 2018) instead separates joint and individual
*score* subspaces in sample space and has no out-of-sample transform.

Also here: :func:`principal_angles` and :func:`subspace_distance` between
subspaces given by bases.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import TransformerMixin

from ._backend import check_same_device, float_dtype, is_torch, like, namespace, to_numpy, to_torch
from ._estimator import TwoViewEstimator
from ._validation import check_array, check_choice, check_int, check_same_length

__all__ = [
    "principal_angles",
    "subspace_distance",
    "SharedPrivateDecomposition",
    "SubspaceComponents",
    "ajive",
    "AJIVEResult",
]


# --------------------------------------------------------------------------- angles

def _swap_last(x):
    return x.mT


def _flip_last(x):
    if is_torch(x):
        return x.flip(-1)
    return x[..., ::-1]


def _clip_unit(x):
    if is_torch(x):
        return x.clamp(-1.0, 1.0)
    return np.clip(x, -1.0, 1.0)


def _eps(x) -> float:
    if is_torch(x):
        import torch

        return float(torch.finfo(x.dtype).eps)
    return float(np.finfo(x.dtype).eps)


def _as_float(x, dtype):
    if is_torch(x):
        return x.to(dtype)
    return np.asarray(x, dtype=dtype)


def _orthonormal_basis(X, name: str):
    """Orthonormal basis of the column span of ``X`` ([..., d, k]); errors if rank < k."""
    d, k = X.shape[-2], X.shape[-1]
    if k == 0 or d == 0:
        raise ValueError(f"{name} must have at least one row and one column, got shape {tuple(X.shape)}")
    if k > d:
        raise ValueError(f"{name} has {k} columns in dimension {d}: a basis needs at most d columns")
    xp = namespace(X)
    Q, s, _ = xp.linalg.svd(X, full_matrices=False)
    tol = max(d, k) * _eps(X)
    smax = s[..., :1]
    deficient = (s <= tol * smax) | (smax <= 0)
    if bool(deficient.any()):
        raise ValueError(f"{name} must have full column rank {k} (linearly independent columns); "
                         f"its columns are (numerically) dependent")
    return Q


def principal_angles(A: Any, B: Any):
    """Principal angles between the column spans of ``A`` and ``B``, ascending, in radians.

    With orthonormal bases :math:`Q_A, Q_B`, the cosines are the singular values
    of :math:`Q_A^\\top Q_B`.  Small angles are computed from sines (singular
    values of the residual :math:`Q_S - Q_L Q_L^\\top Q_S`, Knyazev & Argentati
    2002), as in :func:`scipy.linalg.subspace_angles`, so angles near 0 are
    accurate to machine precision.

    Parameters
    ----------
    A : array-like or torch.Tensor, shape=[..., d, k]
        Basis of the first subspace (columns; need not be orthonormal, must be independent).
    B : array-like or torch.Tensor, shape=[..., d, l]
        Basis of the second subspace.  Leading dimensions broadcast.

    Returns
    -------
    theta : ndarray or torch.Tensor, shape=[..., min(k, l)]
        :math:`0 \\le \\theta_1 \\le \\dots \\le \\theta_{\\min(k,l)} \\le \\pi/2`,
        same kind (and device) as the inputs (torch if either is a tensor).
        Unlike SciPy (descending), the order is ascending.
    """
    A = check_array(A, "A", min_ndim=2)
    B = check_array(B, "B", min_ndim=2)
    check_same_device(A=A, B=B)
    if A.shape[-2] != B.shape[-2]:
        raise ValueError(f"A and B must be bases in the same space: A has {A.shape[-2]} rows, "
                         f"B has {B.shape[-2]}")
    xp = namespace(A, B)
    if xp is np:
        dtype = np.promote_types(float_dtype(A), float_dtype(B))
        A, B = np.asarray(A, dtype=dtype), np.asarray(B, dtype=dtype)
    else:
        ref = A if is_torch(A) else B
        dtype = float_dtype(A) if is_torch(A) else float_dtype(B)
        if is_torch(A) and is_torch(B):
            dtype = xp.promote_types(float_dtype(A), float_dtype(B))
        A, B = to_torch(A, device=ref.device, dtype=dtype), to_torch(B, device=ref.device, dtype=dtype)
    QA = _orthonormal_basis(A, "A")
    QB = _orthonormal_basis(B, "B")
    small, large = (QA, QB) if QA.shape[-1] <= QB.shape[-1] else (QB, QA)
    M = _swap_last(large) @ small
    cos = xp.linalg.svdvals(M)                       # descending -> angles ascending
    sin = _flip_last(xp.linalg.svdvals(small - large @ M))  # ascending sines -> ascending angles
    theta_cos = xp.arccos(_clip_unit(cos))
    theta_sin = xp.arcsin(_clip_unit(sin))
    return xp.where(cos * cos >= 0.5, theta_sin, theta_cos)


_DISTANCES = ("chordal", "projection", "geodesic")


def subspace_distance(A: Any, B: Any, metric: str = "chordal"):
    """Distance between the column spans of ``A`` ([..., d, k]) and ``B`` ([..., d, l]).

    With principal angles :math:`\\theta_i` (:func:`principal_angles`) and
    projectors :math:`P_A, P_B`:

    - ``"chordal"`` (default): :math:`\\tfrac{1}{\\sqrt2}\\|P_A - P_B\\|_F
      = \\sqrt{|k - l|/2 + \\sum_i \\sin^2\\theta_i}`; defined for any k, l.
    - ``"projection"``: :math:`\\|P_A - P_B\\|_2 = \\sin\\theta_{\\max}` when
      k = l, and 1 when k ≠ l.
    - ``"geodesic"``: Grassmann arc length :math:`\\sqrt{\\sum_i \\theta_i^2}`; needs k = l.

    Returns
    -------
    distance : scalar ndarray/float64 or 0-d torch.Tensor (shape=[...] for batches)
    """
    check_choice(metric, "metric", _DISTANCES)
    theta = principal_angles(A, B)
    xp = namespace(theta)
    k, l = A.shape[-1], B.shape[-1]
    if metric == "geodesic":
        if k != l:
            raise ValueError(f"metric='geodesic' needs subspaces of equal dimension, got {k} and {l}")
        return xp.sqrt((theta * theta).sum(-1))
    s = xp.sin(theta)
    if metric == "chordal":
        return xp.sqrt(abs(k - l) / 2.0 + (s * s).sum(-1))
    if k != l:
        return xp.ones_like(s[..., 0])
    return s.amax(-1) if is_torch(s) else s.max(-1)


# --------------------------------------------------------------------------- helpers

def _single_threaded_blas():
    """Small (d x d) eigenproblems run fastest on one BLAS thread; many threads only contend."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _eigh_desc(M: np.ndarray):
    w, Q = np.linalg.eigh((M + M.T) / 2.0)
    return w[::-1], Q[:, ::-1]


def _fix_signs(Z: np.ndarray) -> np.ndarray:
    """Deterministic column signs: the entry of largest magnitude is positive."""
    if Z.shape[1] == 0:
        return Z
    idx = np.argmax(np.abs(Z), axis=0)
    signs = np.sign(Z[idx, np.arange(Z.shape[1])])
    signs[signs == 0] = 1.0
    return Z * signs


def _ratio_rank(eigs: np.ndarray, max_rank: int, floor: float) -> int:
    """Eigenvalue-ratio rank (Ahn & Horenstein 2013) with a noise floor.

    k = argmax over 0..max_rank of lam_k / lam_{k+1}, lam = max(eigs, floor)
    (descending), with a mock lam_0 = sum(lam) / log(m) so that a flat spectrum
    gives k = 0.  ``max_rank`` is capped at m - 1: the ratio needs a next eigenvalue.
    """
    max_rank = min(max_rank, len(eigs) - 1)
    if max_rank <= 0:
        return 0
    lam = np.maximum(eigs, floor)
    mock = lam.sum() / math.log(max(len(eigs), 2))
    ratios = np.concatenate([[mock / lam[0]], lam[:max_rank] / lam[1:max_rank + 1]])
    return int(np.argmax(ratios))


def _numerical_rank(C: np.ndarray, n: int) -> int:
    w = np.linalg.eigvalsh(C)
    top = w.max() if w.size else 0.0
    if top <= 0:
        return 0
    return int((w > top * max(C.shape[0], n) * np.finfo(float).eps * 10).sum())


def _lowdin(Ea: np.ndarray, Eb: np.ndarray):
    """Symmetric (Löwdin) orthonormalisation of [Ea, Eb]: closest orthonormal frame, views treated alike."""
    W = np.concatenate([Ea, Eb], axis=1)
    if W.shape[1] == 0 or Ea.shape[1] == 0 or Eb.shape[1] == 0:
        return Ea, Eb
    P, s, Qt = np.linalg.svd(W, full_matrices=False)
    if s.min() < 1e-6:
        raise ValueError("the private subspaces of U and V overlap (a principal angle between them "
                         "is ~0), so they cannot be made orthogonal; lower private_ranks")
    Wo = P @ Qt
    return Wo[:, :Ea.shape[1]], Wo[:, Ea.shape[1]:]


def _take_rows(X, index: np.ndarray):
    if is_torch(X):
        return X[to_torch(index, device=X.device)]
    return X[index]


def _cov(Xc, Yc, n_dof: int) -> np.ndarray:
    return to_numpy(_swap_last(Xc) @ Yc) / n_dof


def _inv_sqrt_and_sqrt(C: np.ndarray, reg: float):
    w, Q = np.linalg.eigh(C)
    w = np.maximum(w, 0.0) + reg * max(float(np.trace(C)) / C.shape[0], np.finfo(float).tiny)
    return (Q / np.sqrt(w)) @ Q.T, (Q * np.sqrt(w)) @ Q.T


def _complement(Zs: np.ndarray, d: int) -> np.ndarray:
    """Orthonormal basis of the orthogonal complement of span(Zs) in R^d."""
    if Zs.shape[1] == 0:
        return np.eye(d)
    Q, _ = np.linalg.qr(np.concatenate([Zs, np.eye(d)], axis=1))
    # QR of [Zs, I]: first r columns span Zs, the next d - r complete the basis.
    return Q[:, Zs.shape[1]:d]


# --------------------------------------------------------------------------- estimator

@dataclass(frozen=True)
class SubspaceComponents:
    """Components of paired samples in :math:`Z_s \\oplus Z_I \\oplus Z_T` (ambient coordinates of Z).

    With centred samples :math:`f = u - \\bar u`, :math:`g = v - \\bar v` (mapped
    into Z first when ``align="cca"``): ``shared_u`` = :math:`\\Pi_s f`,
    ``shared_v`` = :math:`\\Pi_s g`, ``private_a`` = :math:`\\Pi_I f`,
    ``private_b`` = :math:`\\Pi_T g`, and ``residual_u = f - shared_u - private_a``,
    ``residual_v = g - shared_v - private_b``.  Fields of a view that was not
    given are None.  Coordinates in a basis: ``shared_u @ basis_shared_`` etc.

    All arrays have shape=[n, z_dim] and the kind of the input.
    """

    shared_u: Any
    shared_v: Any
    private_a: Any
    private_b: Any
    residual_u: Any
    residual_v: Any


class SharedPrivateDecomposition(TransformerMixin, TwoViewEstimator, auto_wrap_output_keys=None):
    """Estimate orthogonal shared and private subspaces of two paired views.

    **Shared subspace.**  :math:`Z_s` is spanned by the top ``shared_rank``
    eigenvectors of the symmetric cross-covariance
    :math:`S = \\tfrac12 (C_{uv} + C_{vu})`, :math:`C_{uv} = \\frac{1}{n-1}\\sum_i
    (u_i - \\bar u)(v_i - \\bar v)^\\top` (largest *signed* eigenvalues: directions
    where the pair agrees, not where it is anti-correlated).
    **Private subspaces.**  With :math:`N` an orthonormal basis of
    :math:`Z_s^\\perp`, :math:`Z_I` (resp. :math:`Z_T`) is spanned by :math:`N`
    times the top eigenvectors of :math:`N^\\top C_{uu} N` (resp. :math:`C_{vv}`);
    the two are then made exactly orthogonal by symmetric (Löwdin)
    orthonormalisation, which treats both views alike.
    **Refinement.**  The finite-sample cross-covariance of the private factors
    leaks into :math:`S`; the estimator therefore alternates: recompute
    :math:`S` from the deflated views :math:`(I - \\Pi_I) C_{uv} (I - \\Pi_T)`,
    then the private parts, until :math:`Z_s` moves less than ``tol``
    (chordal distance) or ``max_iter`` steps.  The true subspaces are a fixed
    point on noiseless planted data, so they are then recovered exactly.

    **Ranks.**  Given, or chosen on the first pass by

    - ``rank_method="gap"``: eigenvalue-ratio estimator (Ahn & Horenstein 2013),
      :math:`\\hat r = \\arg\\max_k \\lambda_k/\\lambda_{k+1}` with a mock
      :math:`\\lambda_0 = \\sum\\lambda / \\log m` (so a flat spectrum gives 0) and,
      for :math:`S`, eigenvalues floored at the noise level
      :math:`|\\lambda_{\\min}(S)|` (the negative end of a symmetric
      cross-covariance spectrum mirrors its noise);
    - ``rank_method="permutation"``: shared rank = number of leading eigenvalues of
      :math:`S` whose permutation p-value (pairing shuffled ``n_permutations`` times;
      null = top eigenvalue of the shuffled :math:`S`) is ``<= alpha``; private
      ranks by Horn's parallel analysis on the complement (coordinates in a
      seeded random orthonormal basis of :math:`Z_s^\\perp`, each permuted
      independently; null = the k-th eigenvalue).  Seeded by ``random_state``;
      results are random only through the permutations.

    Automatic ranks are capped by ``max_rank`` and by the numerical rank of the
    data; if the private ranks found exceed the room left in Z, the rank of
    :math:`Z_T` is lowered.  With fewer samples than dimensions, pass ranks or
    ``max_rank``.

    **Views of different dimension** (``align="cca"``).  Regularised CCA finds
    canonical directions; the shared rank r is chosen on the canonical
    correlations (same ``rank_method``) or given.  Each view is then mapped
    *isometrically* into :math:`Z = \\mathbb{R}^{r} \\oplus \\mathbb{R}^{d_u - r}
    \\oplus \\mathbb{R}^{d_v - r}`: the orthonormalised top-r canonical loadings
    of each view go to the first block (V's frame rotated by orthogonal
    Procrustes onto U's so that paired shared coordinates agree), the rest of U
    to the second block, the rest of V to the third.  Distances within each view
    are preserved; the decomposition then runs in Z with shared rank r.
    ``map_u_`` ([d_u, z_dim]) and ``map_v_`` ([d_v, z_dim]) are the maps
    (``z = (u - mean_u_) @ map_u_``); ``map_u_ @ basis_shared_`` is the shared
    subspace seen in U's own space.

    Parameters
    ----------
    shared_rank : int or None
        Dimension of :math:`Z_s` (None: chosen by ``rank_method``).
    private_ranks : (int or None, int or None) or None
        Dimensions of :math:`Z_I, Z_T` (None entries chosen by ``rank_method``).
    rank_method : {"gap", "permutation"}
    center : bool
        Subtract the per-view means (stored as ``mean_u_``, ``mean_v_``).
    align : {None, "cca"}
        None needs both views in the same space.
    max_rank : int or None
        Upper bound of every automatically chosen rank.
    n_permutations : int
        Permutations for ``rank_method="permutation"``.
    alpha : float
        Significance level of the permutation tests.
    cca_reg : float
        Ridge added to each covariance for CCA, relative to its mean eigenvalue.
    tol, max_iter : float, int
        Stopping rule of the refinement (``max_iter=0``: no refinement).
    random_state : int or None
        Seed of the permutations.

    Attributes
    ----------
    basis_shared_, basis_a_, basis_b_ : shape=[z_dim, r]
        Orthonormal, mutually orthogonal bases of :math:`Z_s, Z_I, Z_T`
        (the input's kind; float64 for NumPy input, the input's float dtype for tensors).
    projector_shared_, projector_a_, projector_b_ : shape=[z_dim, z_dim]
    shared_rank_ : int
    private_ranks_ : tuple of int
    shared_eigenvalues_ : ndarray
        Spectrum of S (first pass), or canonical correlations when ``align="cca"``.
    private_eigenvalues_ : tuple of ndarray
        Spectra of :math:`N^\\top C_{uu} N` and :math:`N^\\top C_{vv} N` (first pass).
    shared_pvalues_, private_pvalues_ : ndarray or None
        Permutation p-values of the leading eigenvalues (``rank_method="permutation"``).
    explained_energy_ : dict
        ``{"U": {...}, "V": {...}}``, each with the fraction of that view's total
        variance in ``"shared"``, ``"private_a"``, ``"private_b"`` and ``"residual"``.
    mean_u_, mean_v_ : shape=[d_u], [d_v]
    map_u_, map_v_ : ndarray or None
        Isometries into Z (``align="cca"``), else None.
    z_dim_ : int
    n_iter_ : int
        Refinement steps taken.

    Examples
    --------
    >>> from geoalign.data.planted import PlantedAlignment
    >>> data = PlantedAlignment(dim=32, shared_rank=3, private_ranks=(2, 2), random_state=0).sample(2000)
    >>> model = SharedPrivateDecomposition().fit(data.U, data.V)
    >>> model.shared_rank_, model.private_ranks_
    (3, (2, 2))
    >>> parts = model.transform(data.U, data.V)
    """

    def __init__(self, shared_rank: int | None = None, private_ranks=None, rank_method: str = "gap",
                 center: bool = True, align: str | None = None, max_rank: int | None = None,
                 n_permutations: int = 99, alpha: float = 0.05, cca_reg: float = 1e-6,
                 tol: float = 1e-12, max_iter: int = 200, random_state: int | None = 0):
        self.shared_rank = shared_rank
        self.private_ranks = private_ranks
        self.rank_method = rank_method
        self.center = center
        self.align = align
        self.max_rank = max_rank
        self.n_permutations = n_permutations
        self.alpha = alpha
        self.cca_reg = cca_reg
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state

    _fitted_attributes = ("basis_shared_",)
    _fit_hint = "fit(U, V)"

    # ---------------------------------------------------------------- parameters
    def _check_params(self):
        check_choice(self.rank_method, "rank_method", ("gap", "permutation"))
        if self.align is not None:
            check_choice(self.align, "align", ("cca",))
        if self.shared_rank is not None:
            check_int(self.shared_rank, "shared_rank", minimum=0)
        pr = self.private_ranks
        if pr is None:
            pr = (None, None)
        else:
            try:
                pr = tuple(pr)
            except TypeError:
                raise ValueError(f"private_ranks must be None or a pair, got {self.private_ranks!r}") from None
            if len(pr) != 2:
                raise ValueError(f"private_ranks must be a pair (r_a, r_b), got {self.private_ranks!r}")
            pr = tuple(None if r is None else check_int(r, f"private_ranks[{i}]", minimum=0)
                       for i, r in enumerate(pr))
        if self.max_rank is not None:
            check_int(self.max_rank, "max_rank", minimum=0)
        check_int(self.n_permutations, "n_permutations", minimum=1)
        if not (isinstance(self.alpha, (int, float)) and 0 < self.alpha < 1):
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha!r}")
        if not (isinstance(self.cca_reg, (int, float)) and self.cca_reg >= 0):
            raise ValueError(f"cca_reg must be >= 0, got {self.cca_reg!r}")
        if not (isinstance(self.tol, (int, float)) and self.tol >= 0):
            raise ValueError(f"tol must be >= 0, got {self.tol!r}")
        check_int(self.max_iter, "max_iter", minimum=0)
        return pr

    # ---------------------------------------------------------------- data
    def _prepare(self, X, name: str, mean=None):
        """Validate ``X`` and return it centred in float64 (same backend) and the mean used."""
        X = check_array(X, name, ndim=2)
        if is_torch(X):
            import torch

            Xf = X.to(torch.float64)
        else:
            Xf = np.asarray(X, dtype=np.float64)
        if mean is None:
            mean = Xf.mean(0) if self.center else Xf[0] * 0
        else:
            mean = like(mean, Xf)
        return Xf - mean, mean

    # ---------------------------------------------------------------- fit
    def fit(self, U: Any, V: Any) -> "SharedPrivateDecomposition":
        """Estimate the subspaces from paired samples.

        Parameters
        ----------
        U : array-like or torch.Tensor, shape=[n, d_u]
        V : array-like or torch.Tensor, shape=[n, d_v]
            Row i of ``U`` is paired with row i of ``V``.  ``d_u == d_v`` unless ``align="cca"``.

        Returns
        -------
        self
        """
        with _single_threaded_blas():
            return self._fit(U, V)

    def _fit(self, U, V):
        pr = self._check_params()
        U = check_array(U, "U", ndim=2)
        V = check_array(V, "V", ndim=2)
        check_same_device(U=U, V=V)
        n = check_same_length(U=U, V=V)
        if n < 2:
            raise ValueError(f"U and V need at least 2 samples (paired rows), got {n}")
        du, dv = U.shape[1], V.shape[1]
        if du == 0 or dv == 0:
            raise ValueError(f"U and V need at least one feature, got shapes {tuple(U.shape)}, {tuple(V.shape)}")
        if self.align is None and du != dv:
            raise ValueError(f"U and V must have the same number of features with align=None, got "
                             f"{du} and {dv}; pass align='cca' to map both views into one space first")
        Uc, mean_u = self._prepare(U, "U")
        Vc, mean_v = self._prepare(V, "V")
        dof = n - 1 if self.center else n
        Cuu, Cvv, Cuv = _cov(Uc, Uc, dof), _cov(Vc, Vc, dof), _cov(Uc, Vc, dof)
        for name, C in (("U", Cuu), ("V", Cvv)):
            if np.trace(C) <= 0:
                raise ValueError(f"{name} is constant (every sample equal{' after centring' if self.center else ''}): "
                                 "no variance to decompose")
        rank_u, rank_v = _numerical_rank(Cuu, n), _numerical_rank(Cvv, n)
        rng = np.random.default_rng(self.random_state)
        max_rank = self.max_rank

        if self.shared_rank is not None and self.shared_rank > min(rank_u, rank_v):
            raise ValueError(f"shared_rank={self.shared_rank} exceeds what the data allow: "
                             f"U has rank {rank_u}, V has rank {rank_v} (n={n})")
        for i, (r, rk, nm) in enumerate(((pr[0], rank_u, "U"), (pr[1], rank_v, "V"))):
            rs_min = self.shared_rank or 0
            if r is not None and r + rs_min > rk:
                raise ValueError(f"private_ranks[{i}]={r} plus shared_rank={rs_min} exceeds the rank of "
                                 f"{nm} ({rk}); lower the ranks")

        shared_p = None
        if self.align == "cca":
            Mu, Mv, rs, rho, shared_p = self._cca_maps(Cuu, Cvv, Cuv, Uc, Vc, dof, rank_u, rank_v, rng)
            Cuu_z, Cvv_z, Cuv_z = Mu.T @ Cuu @ Mu, Mv.T @ Cvv @ Mv, Mu.T @ Cuv @ Mv
            shared_eigs = rho
        else:
            Mu = Mv = None
            Cuu_z, Cvv_z, Cuv_z = Cuu, Cvv, Cuv
            shared_eigs, _ = _eigh_desc(Cuv)
            kmax = min(rank_u, rank_v, du if max_rank is None else max_rank)
            if self.shared_rank is not None:
                rs = self.shared_rank
            elif self.rank_method == "gap":
                floor = max(-shared_eigs[-1], abs(shared_eigs[0]) * 1e-12, np.finfo(float).tiny)
                rs = _ratio_rank(shared_eigs, kmax, floor)
            else:
                def null_top(perm):
                    return _eigh_desc(_cov(Uc, _take_rows(Vc, perm), dof))[0][0]
                rs, shared_p = self._permutation_count(shared_eigs, kmax, null_top, n, rng)
        z = Cuu_z.shape[0]

        # First pass: complement spectra and private ranks.
        S = (Cuv_z + Cuv_z.T) / 2
        _, Q = _eigh_desc(S)
        N = Q[:, rs:]
        eig_a, _ = _eigh_desc(N.T @ Cuu_z @ N)
        eig_b, _ = _eigh_desc(N.T @ Cvv_z @ N)
        room = z - rs
        priv_p = [None, None]
        ranks = []
        for i, (given, eigs, rk, dk, Cc, M) in enumerate(((pr[0], eig_a, rank_u, du, Uc, Mu),
                                                            (pr[1], eig_b, rank_v, dv, Vc, Mv))):
            # A full-rank (noisy) view: "everything is private" is no answer, so the
            # last nonzero eigenvalue is not a candidate; a rank-deficient view's edge is.
            top = rk - rs - (1 if rk == dk else 0)
            kmax = max(0, min(top, room, room if max_rank is None else max_rank))
            if given is not None:
                ranks.append(given)
            elif self.rank_method == "gap":
                floor = max(abs(eigs[0]) * 1e-12, np.finfo(float).tiny)
                ranks.append(_ratio_rank(eigs, kmax, floor))
            else:
                # Coordinates in a random orthonormal basis of the complement: permuting
                # them keeps the complement's dimension (ambient coordinates would spread
                # its variance over the shared directions too and inflate every p-value).
                R = np.linalg.qr(rng.standard_normal((N.shape[1], N.shape[1])))[0] if N.shape[1] else N[:0, :0]
                Y = Cc if M is None else Cc @ like(M, Cc)
                Y = Y @ like(N @ R, Y)
                r, priv_p[i] = self._parallel_analysis(eigs, kmax, Y, dof, rng)
                ranks.append(r)
        ra, rb = ranks
        if ra + rb > room:
            if pr[0] is not None and pr[1] is not None:
                raise ValueError(f"shared_rank + private_ranks = {rs + ra + rb} exceeds the dimension "
                                 f"of the space ({z})")
            if pr[1] is None:
                rb = room - ra
            else:
                ra = room - rb
            if ra < 0 or rb < 0:
                raise ValueError(f"shared_rank + private_ranks exceeds the dimension of the space ({z})")

        Zs, Za, Zb, n_iter = self._solve(Cuu_z, Cvv_z, Cuv_z, rs, ra, rb)
        self._np = dict(Zs=Zs, Za=Za, Zb=Zb, Mu=Mu, Mv=Mv, mean_u=to_numpy(mean_u), mean_v=to_numpy(mean_v))
        self._ref = U
        kind = float_dtype(U)
        self.basis_shared_ = like(Zs, U, dtype=kind)
        self.basis_a_ = like(Za, U, dtype=kind)
        self.basis_b_ = like(Zb, U, dtype=kind)
        self.mean_u_ = like(mean_u, U, dtype=kind)
        self.mean_v_ = like(mean_v, V, dtype=float_dtype(V))
        self.map_u_ = None if Mu is None else like(Mu, U, dtype=kind)
        self.map_v_ = None if Mv is None else like(Mv, V, dtype=float_dtype(V))
        self.shared_rank_, self.private_ranks_ = int(rs), (int(ra), int(rb))
        self.shared_eigenvalues_ = np.asarray(shared_eigs)
        self.private_eigenvalues_ = (eig_a, eig_b)
        self.shared_pvalues_ = shared_p
        self.private_pvalues_ = tuple(priv_p) if self.rank_method == "permutation" else None
        self.z_dim_ = int(z)
        self.n_iter_ = int(n_iter)
        self.n_features_in_ = (int(du), int(dv))
        energy = {}
        for name, C in (("U", Cuu_z), ("V", Cvv_z)):
            tot = float(np.trace(C))
            parts = {key: float(np.trace(B.T @ C @ B)) / tot for key, B in
                     (("shared", Zs), ("private_a", Za), ("private_b", Zb))}
            parts["residual"] = 1.0 - sum(parts.values())
            energy[name] = parts
        self.explained_energy_ = energy
        return self

    def _permutation_count(self, eigs, kmax, null_top, n, rng):
        null = np.array([null_top(rng.permutation(n)) for _ in range(self.n_permutations)])
        m = min(kmax + 1, len(eigs))
        pvals = (1 + (null[None, :] >= eigs[:m, None]).sum(1)) / (self.n_permutations + 1)
        r = 0
        while r < min(kmax, m) and pvals[r] <= self.alpha:
            r += 1
        return r, pvals

    def _parallel_analysis(self, eigs, kmax, Y, dof, rng):
        """Horn's parallel analysis: each column of Y (complement coordinates) permuted independently."""
        n, z = Y.shape
        m = min(kmax + 1, len(eigs))
        null = np.empty((self.n_permutations, m))
        for b in range(self.n_permutations):
            if is_torch(Y):
                import torch

                idx = to_torch(np.argsort(rng.random((n, z)), axis=0), device=Y.device)
                Yp = torch.gather(Y, 0, idx)
            else:
                Yp = rng.permuted(Y, axis=0)
            null[b] = _eigh_desc(_cov(Yp, Yp, dof))[0][:m]
        pvals = (1 + (null >= eigs[None, :m]).sum(0)) / (self.n_permutations + 1)
        r = 0
        while r < min(kmax, m) and pvals[r] <= self.alpha:
            r += 1
        return r, pvals

    def _cca_maps(self, Cuu, Cvv, Cuv, Uc, Vc, dof, rank_u, rank_v, rng):
        du, dv = Cuu.shape[0], Cvv.shape[0]
        Ku, Su = _inv_sqrt_and_sqrt(Cuu, self.cca_reg)
        Kv, Sv = _inv_sqrt_and_sqrt(Cvv, self.cca_reg)
        P, rho, Qt = np.linalg.svd(Ku @ Cuv @ Kv)
        kmax = min(rank_u, rank_v, len(rho) if self.max_rank is None else self.max_rank)
        pvals = None
        if self.shared_rank is not None:
            r = self.shared_rank
        elif self.rank_method == "gap":
            r = _ratio_rank(rho, kmax, max(rho[0] * 1e-12, np.finfo(float).tiny))
        else:
            def null_top(perm):
                return np.linalg.svd(Ku @ _cov(Uc, _take_rows(Vc, perm), dof) @ Kv, compute_uv=False)[0]
            r, pvals = self._permutation_count(rho, kmax, null_top, Uc.shape[0], rng)
        # Orthonormalised canonical loadings (C^{1/2} times the whitened directions) of each view.
        Ou = np.linalg.svd(Su @ P[:, :r], full_matrices=False)[0] if r else np.zeros((du, 0))
        Ov = np.linalg.svd(Sv @ Qt.T[:, :r], full_matrices=False)[0] if r else np.zeros((dv, 0))
        if r:
            # Procrustes: rotate V's shared frame so that paired shared coordinates agree.
            a, _, bt = np.linalg.svd(Ou.T @ Cuv @ Ov)
            Ov = Ov @ (a @ bt).T
        Nu, Nv = _complement(Ou, du), _complement(Ov, dv)
        z = r + (du - r) + (dv - r)
        Mu = np.zeros((du, z))
        Mv = np.zeros((dv, z))
        Mu[:, :r], Mu[:, r:du] = Ou, Nu
        Mv[:, :r], Mv[:, du:] = Ov, Nv
        return Mu, Mv, r, rho, pvals

    def _solve(self, Cuu, Cvv, Cuv, rs, ra, rb):
        z = Cuu.shape[0]
        I = np.eye(z)
        Pa = Pb = np.zeros((z, z))
        prev = None
        n_iter = 0
        for it in range(self.max_iter + 1):
            _, Q = _eigh_desc((I - Pa) @ Cuv @ (I - Pb))
            Zs, N = Q[:, :rs], Q[:, rs:]
            Ea = _eigh_desc(N.T @ Cuu @ N)[1][:, :ra]
            Eb = _eigh_desc(N.T @ Cvv @ N)[1][:, :rb]
            Ea, Eb = _lowdin(Ea, Eb)
            Za, Zb = N @ Ea, N @ Eb
            Pa, Pb = Za @ Za.T, Zb @ Zb.T
            Ps = Zs @ Zs.T
            n_iter = it
            if prev is not None and np.linalg.norm(Ps - prev) / math.sqrt(2) <= self.tol:
                break
            prev = Ps
        return _fix_signs(Zs), _fix_signs(Za), _fix_signs(Zb), n_iter

    # ---------------------------------------------------------------- transform
    def transform(self, U: Any = None, V: Any = None) -> SubspaceComponents:
        """Split (new) samples into shared, private and residual components.

        Parameters
        ----------
        U : array-like or torch.Tensor, shape=[n, d_u], optional
        V : array-like or torch.Tensor, shape=[m, d_v], optional
            At least one view; the two need not be paired here.

        Returns
        -------
        SubspaceComponents
            Arrays of shape=[n, z_dim] in the kind of the input (None for a view not given).
        """
        self._check_fitted()
        if U is None and V is None:
            raise ValueError("transform needs U, V or both, got neither")
        if U is not None and V is not None:
            check_same_device(U=U, V=V)
        st = self._np
        out = {}
        for name, X, mean, M, own, other in (("U", U, st["mean_u"], st["Mu"], st["Za"], st["Zb"]),
                                               ("V", V, st["mean_v"], st["Mv"], st["Zb"], st["Za"])):
            if X is None:
                out[name] = (None, None, None)
                continue
            X = check_array(X, name, ndim=2)
            d = self.n_features_in_[0 if name == "U" else 1]
            if X.shape[1] != d:
                raise ValueError(f"{name} must have {d} features (as in fit), got {X.shape[1]}")
            Xc, _ = self._prepare(X, name, mean=mean)
            if M is not None:
                Xc = Xc @ like(M, Xc)
            shared = (Xc @ like(st["Zs"], Xc)) @ like(st["Zs"].T, Xc)
            private = (Xc @ like(own, Xc)) @ like(own.T, Xc)
            kind = float_dtype(X)
            out[name] = tuple(like(p, X, dtype=kind) for p in (shared, private, Xc - shared - private))
        return SubspaceComponents(shared_u=out["U"][0], shared_v=out["V"][0],
                                  private_a=out["U"][1], private_b=out["V"][1],
                                  residual_u=out["U"][2], residual_v=out["V"][2])

    def fit_transform(self, U: Any, V: Any) -> SubspaceComponents:
        """``fit(U, V).transform(U, V)``."""
        return self.fit(U, V).transform(U, V)

    # ---------------------------------------------------------------- projectors
    def _projector(self, basis: str):
        self._check_fitted()
        B = getattr(self, basis)
        return B @ B.mT if is_torch(B) else B @ B.T

    @property
    def projector_shared_(self):
        """Orthogonal projector onto :math:`Z_s`, shape=[z_dim, z_dim]."""
        return self._projector("basis_shared_")

    @property
    def projector_a_(self):
        """Orthogonal projector onto :math:`Z_I` (private to U)."""
        return self._projector("basis_a_")

    @property
    def projector_b_(self):
        """Orthogonal projector onto :math:`Z_T` (private to V)."""
        return self._projector("basis_b_")



# --------------------------------------------------------------------------- AJIVE

@dataclass(frozen=True)
class AJIVEResult:
    """Output of :func:`ajive` (sample-space joint/individual decomposition).

    Attributes
    ----------
    joint_rank : int
    joint_scores : shape=[n, joint_rank]
        Orthonormal joint score basis :math:`J` (sample space).
    joint_loadings_u, joint_loadings_v : shape=[d_u, joint_rank], [d_v, joint_rank]
        Orthonormal bases of the feature-space row spans of :math:`J J^\\top X_k`
        (comparable to a feature-space shared subspace).
    individual_loadings_u, individual_loadings_v : shape=[d_k, r_k - joint_rank]
        Right singular vectors of :math:`(I - J J^\\top) X_k`.
    individual_scores_u, individual_scores_v : shape=[n, r_k - joint_rank]
        Left singular vectors (orthogonal to ``joint_scores`` in sample space).
    stacked_singular_values : ndarray
        Singular values of the stacked score bases :math:`[L_u, L_v]` (in [0, sqrt 2]).
    threshold : float
        Random-direction bound on the squared singular values (NaN if ``joint_rank`` was given).
    """

    joint_rank: int
    joint_scores: Any
    joint_loadings_u: Any
    joint_loadings_v: Any
    individual_loadings_u: Any
    individual_loadings_v: Any
    individual_scores_u: Any
    individual_scores_v: Any
    stacked_singular_values: np.ndarray
    threshold: float


def ajive(U: Any, V: Any, signal_ranks: tuple[int, int], joint_rank: int | None = None,
          n_random: int = 200, alpha: float = 0.05, center: bool = True,
          random_state: int | None = 0) -> AJIVEResult:
    """AJIVE-style joint/individual decomposition (Feng, Jiang, Hannig & Marron 2018).

    Steps, for views :math:`X_k` (n × d_k, centred):

    1. per view, the rank-``signal_ranks[k]`` SVD :math:`X_k \\approx L_k D_k R_k^\\top`;
    2. SVD of the stacked score bases :math:`[L_u, L_v] = P \\Sigma Q^\\top`; joint
       directions are those with :math:`\\sigma_i^2` above the *random direction
       bound*: the (1 − ``alpha``) quantile of :math:`\\sigma_1^2` of stacked
       bases of independent uniformly random subspaces of the same ranks
       (``n_random`` draws).  The paper also uses a Wedin bound (from
       residual resampling); it is not implemented here, so the threshold is
       the random bound alone (or pass ``joint_rank``);
    3. joint scores :math:`J = P_{[:, :r_J]}`; joint blocks :math:`J J^\\top X_k`;
    4. individual blocks: rank-(r_k − r_J) SVD of :math:`(I - J J^\\top) X_k`.

    Orthogonality is between *score* subspaces in sample space (:math:`\\mathbb{R}^n`),
    and there is no transform for new samples — the contrast with
    :class:`SharedPrivateDecomposition`, whose subspaces live in feature space.

    Parameters
    ----------
    U, V : array-like or torch.Tensor, shape=[n, d_u], [n, d_v]
    signal_ranks : (int, int)
        Initial low-rank approximation rank of each view.
    joint_rank : int, optional
        Given joint rank (skips the random direction bound).

    Returns
    -------
    AJIVEResult
        Arrays in the kind of ``U``.
    """
    U = check_array(U, "U", ndim=2)
    V = check_array(V, "V", ndim=2)
    n = check_same_length(U=U, V=V)
    if n < 2:
        raise ValueError(f"U and V need at least 2 samples, got {n}")
    try:
        ru, rv = signal_ranks
    except (TypeError, ValueError):
        raise ValueError(f"signal_ranks must be a pair (r_u, r_v), got {signal_ranks!r}") from None
    ru = check_int(ru, "signal_ranks[0]", minimum=1, maximum=min(n, U.shape[1]))
    rv = check_int(rv, "signal_ranks[1]", minimum=1, maximum=min(n, V.shape[1]))
    check_int(n_random, "n_random", minimum=1)
    with _single_threaded_blas():
        return _ajive(U, V, n, ru, rv, joint_rank, n_random, alpha, center, random_state)


def _ajive(U, V, n, ru, rv, joint_rank, n_random, alpha, center, random_state):
    Xs = []
    for X in (U, V):
        X = to_numpy(X, dtype=np.float64)
        Xs.append(X - X.mean(0) if center else X)
    Lu = np.linalg.svd(Xs[0], full_matrices=False)[0][:, :ru]
    Lv = np.linalg.svd(Xs[1], full_matrices=False)[0][:, :rv]
    P, sv, _ = np.linalg.svd(np.concatenate([Lu, Lv], axis=1), full_matrices=False)
    if joint_rank is None:
        rng = np.random.default_rng(random_state)
        top = np.empty(n_random)
        for i in range(n_random):
            Ru = np.linalg.qr(rng.standard_normal((n, ru)))[0]
            Rv = np.linalg.qr(rng.standard_normal((n, rv)))[0]
            top[i] = np.linalg.svd(np.concatenate([Ru, Rv], axis=1), compute_uv=False)[0] ** 2
        threshold = float(np.quantile(top, 1 - alpha))
        jr = int((sv ** 2 > threshold).sum())
        jr = min(jr, ru, rv)
    else:
        jr = check_int(joint_rank, "joint_rank", minimum=0, maximum=min(ru, rv))
        threshold = float("nan")
    J = P[:, :jr]
    loadings, ind_load, ind_scores = [], [], []
    for X, r in zip(Xs, (ru, rv)):
        loadings.append(np.linalg.svd(X.T @ J, full_matrices=False)[0] if jr else np.zeros((X.shape[1], 0)))
        Li, _, Rt = np.linalg.svd(X - J @ (J.T @ X), full_matrices=False)
        ind_load.append(Rt[:r - jr].T)
        ind_scores.append(Li[:, :r - jr])
    return AJIVEResult(joint_rank=jr, joint_scores=like(J, U),
                       joint_loadings_u=like(loadings[0], U), joint_loadings_v=like(loadings[1], U),
                       individual_loadings_u=like(ind_load[0], U), individual_loadings_v=like(ind_load[1], U),
                       individual_scores_u=like(ind_scores[0], U), individual_scores_v=like(ind_scores[1], U),
                       stacked_singular_values=sv, threshold=threshold)
