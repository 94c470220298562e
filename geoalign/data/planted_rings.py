r"""Planted alignment rendered as ring elements, with a closed-form fiber product.

The ring-valued twin of :mod:`geoalign.data.planted`: each pair is an image (a
polynomial over :math:`\mathbb{Z}_{256}`) and a token sequence (a polynomial over
:math:`\mathbb{Z}_{|V|}`), and the embeddings :math:`f, g` into :math:`Z=\mathbb{R}^d`
are known exactly, so the true :math:`F_0` and :math:`F_\varepsilon` are known in
closed form and the fiber-product code (docs/design/mathematics.md, Approximate fiber products) can be validated end to end.

Generative model
----------------
Integer *levels* are :math:`\Lambda = \{\ell_{lo}, \dots, \ell_{hi}\}` with
:math:`\ell_{lo} = -\lfloor L/2 \rfloor`, :math:`\ell_{hi} = \ell_{lo} + L - 1`
(``L = levels``).  Pair :math:`i` has

* class :math:`y_i` uniform over ``n_classes``;
* shared content :math:`s_i = c_{y_i} + w_i \in \Lambda^{r_s}`, with distinct class
  centres :math:`c_k \in [\ell_{lo}+\omega, \ell_{hi}-\omega]^{r_s}` drawn once per
  generator and within-class offsets :math:`w_i` uniform in :math:`\{-\omega..\omega\}^{r_s}`
  (:math:`\omega` = ``within_class_spread``), so pairs share their shared content
  often within a class and occasionally across classes (centres are distinct, but
  offsets can make two classes collide: the ground truth is the content, not the
  label);
* private factors :math:`a_i \in \Lambda^{r_a}` (image) and :math:`b_i \in \Lambda^{r_b}`
  (text), uniform, each set to zero with probability ``private_zero_prob``.

**Rendering.**  The image is ``image_shape`` (uint8, H×W or H×W×C) with its
coefficients (pixel values in the row-major order of :func:`geoalign.rings.encode_image`)
drawn uniformly from ``0..255`` except at fixed known positions: ``r_s`` pixels hold
:math:`(\kappa s_{ik}) \bmod 256` and ``r_a`` pixels hold :math:`(\kappa a_{ik}) \bmod 256`,
with the power of two :math:`\kappa` = ``pixel_step``.  The token sequence has
``seq_len`` ids drawn uniformly from :math:`\{0..|V|-1\}` except at fixed positions
holding :math:`s_{ik} \bmod |V|` and :math:`b_{ik} \bmod |V|`.  The random pixels and
filler tokens are private content that the embeddings ignore.  Positions are
chosen once per generator.

**Noise.**  Observed polynomials are :math:`\tilde P = P + e \bmod 256` and
:math:`\tilde Q = Q + e' \bmod |V|`, with independent uniform integer noise
:math:`e \in \{-\eta_P..\eta_P\}`, :math:`e' \in \{-\eta_Q..\eta_Q\}` on *every*
coefficient (``pixel_noise``, ``token_noise``).  The constructor checks that no
read coefficient can cross the wrap point of the centered lift, i.e.
:math:`-127 \le \kappa\ell_{lo}-\eta_P`, :math:`\kappa\ell_{hi}+\eta_P \le 128`,
:math:`-\lfloor(|V|-1)/2\rfloor \le \ell_{lo}-\eta_Q` and
:math:`\ell_{hi}+\eta_Q \le \lfloor |V|/2 \rfloor`, so the lift recovers
:math:`\kappa s + e` exactly.

Embeddings
----------
With the centered lift :math:`\lambda` (:func:`geoalign.rings.centered_lift`),

.. math::

    f(P) = H_s\,\tfrac{1}{\kappa}\lambda(P)_{\text{shared px}}
         + H_I\,\tfrac{1}{\kappa}\lambda(P)_{\text{private px}}, \qquad
    g(Q) = H_s\,\lambda(Q)_{\text{shared tok}} + H_T\,\lambda(Q)_{\text{private tok}},

where :math:`[H_s, H_I, H_T]` are ``r_s + r_a + r_b`` distinct columns of a
randomly signed and permuted :math:`H_{2^k} \otimes I_m` (Sylvester–Hadamard,
:math:`d = 2^k m`, :math:`2^k` the largest power of two dividing ``dim``): entries
in :math:`\{0, \pm 1\}`, columns mutually orthogonal with squared norm
:math:`c = 2^k`.  So on clean data :math:`f(P_i) = H_s s_i + H_I a_i` and
:math:`g(Q_j) = H_s s_j + H_T b_j` are integer vectors computed *without rounding*
(every product and partial sum is an exactly representable dyadic number), in
NumPy or torch, in any summation order.

Closed forms
------------
Orthogonality gives (docs/design/mathematics.md, Statement 4, with
:math:`Z_s = \operatorname{span} H_s`, :math:`Z_I = \operatorname{span} H_I`,
:math:`Z_T = \operatorname{span} H_T`)

.. math::

    \|f(P_i) - g(Q_j)\|^2 = c\,\big(\|s_i - s_j\|^2 + \|a_i\|^2 + \|b_j\|^2\big),

hence :math:`F_0 = \{(i,j) : s_i = s_j,\ a_i = 0,\ b_j = 0\}` and the shared-only
fiber product :math:`F^s_0 = \{(i,j) : s_i = s_j\}` (with ``private_ranks=(0, 0)``
both equal the pairs with equal shared content).  :meth:`PlantedRingSample.fiber_pairs`
returns :math:`F_\varepsilon` for any ε from this formula.

Noise moves the embeddings by :math:`f(\tilde P_i) - f(P_i) = [H_s, H_I]\,e/\kappa`,
whose norm is at most

.. math::

    \delta_f = \sqrt{c}\,\frac{\eta_P}{\kappa}\sqrt{r_s + r_a}, \qquad
    \delta_g = \sqrt{c}\,\eta_Q\sqrt{r_s + r_b}

(attained when every read coefficient moves by :math:`\pm\eta`), so by
statement 2 :math:`F_\varepsilon(f, g) \subseteq F_{\varepsilon+\delta_f+\delta_g}` of the
noisy embeddings; in particular the true pair :math:`(i, i)` lies within
:math:`\sqrt{c}\,(\|a_i\|^2+\|b_i\|^2)^{1/2} + \delta_f + \delta_g`
(:attr:`PlantedRingSample.true_pair_radius`), which is :math:`\delta_f+\delta_g`
when ``private_ranks=(0, 0)``.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from .._backend import is_torch, to_torch
from .._validation import check_int
from ..rings import centered_lift, encode_image, encode_tokens
from .planted import PlantedSample, ZeroShotSplit

__all__ = ["PlantedRingAlignment", "PlantedRingSample", "RingLinearEmbedding"]

_PIXEL_MODULUS = 256
_BLOCK_ELEMENTS = 1 << 22  # closed-form distance blocks stay ~32 MiB


class RingLinearEmbedding:
    r"""Known embedding :math:`\mathbb{Z}_n[x] \to \mathbb{R}^d` of a planted ring model.

    .. math:: h(P) = \tfrac{1}{\kappa}\, M\, \lambda(P)_{\text{positions}},

    the centered lift :math:`\lambda` (:func:`geoalign.rings.centered_lift`) of the
    coefficients at ``positions``, divided by the power of two :math:`\kappa`
    (``step``), times the integer matrix :math:`M` (``components``, entries in
    :math:`\{0, \pm1\}`, mutually orthogonal columns of squared norm ``c``).
    Equivalently :math:`h(P) = W \lambda(P)` with the sparse linear map
    :attr:`matrix` of shape ``[dim, length]``.

    Parameters
    ----------
    modulus : int
        The ring :math:`\mathbb{Z}_n`.
    length : int
        Number of coefficients of the polynomials it acts on.
    positions : array of int, shape=[k]
        Distinct coefficient indices read, in ``[0, length)``.
    components : array, shape=[dim, k]
        :math:`M`.
    step : int
        :math:`\kappa`, a power of two (so the division is exact).

    Notes
    -----
    Lipschitz constant :attr:`lipschitz` :math:`= \sqrt{c}/\kappa` with respect to
    the Euclidean norm of the lifted coefficients (on each cell where no read
    coefficient crosses the wrap point :math:`n/2`; see
    :func:`geoalign.rings.centered_lift`).
    """

    def __init__(self, modulus: int, length: int, positions: Any, components: Any, step: int = 1):
        self.modulus = check_int(modulus, "modulus", minimum=2)
        self.length = check_int(length, "length", minimum=1)
        pos = np.asarray(positions)
        if pos.ndim != 1 or not np.issubdtype(pos.dtype, np.integer):
            raise ValueError(f"positions must be a 1-d integer array, got {positions!r}")
        if pos.size and (pos.min() < 0 or pos.max() >= self.length or np.unique(pos).size != pos.size):
            raise ValueError(f"positions must be distinct indices in [0, {self.length}), got {pos.tolist()}")
        comp = np.asarray(components, dtype=np.float64)
        if comp.ndim != 2 or comp.shape[1] != pos.size:
            raise ValueError(f"components must have shape (dim, {pos.size}), got {comp.shape}")
        self.step = check_int(step, "step", minimum=1)
        if self.step & (self.step - 1):
            raise ValueError(f"step must be a power of two (exact division), got {self.step}")
        self.positions = pos.astype(np.int64)
        self.components = comp
        self._cache: dict[str, tuple] = {}

    @property
    def dim(self) -> int:
        """Output dimension ``d``."""
        return int(self.components.shape[0])

    @property
    def matrix(self) -> np.ndarray:
        r"""The linear map :math:`W` (shape=[dim, length]) with :math:`h(P) = W \lambda(P)`."""
        W = np.zeros((self.dim, self.length))
        W[:, self.positions] = self.components / self.step
        return W

    @property
    def lipschitz(self) -> float:
        """Operator norm of :attr:`matrix` (largest singular value)."""
        if self.positions.size == 0:
            return 0.0
        return float(np.linalg.norm(self.components, 2)) / self.step

    def __repr__(self) -> str:
        return (f"RingLinearEmbedding(modulus={self.modulus}, length={self.length}, "
                f"reads={self.positions.size}, dim={self.dim}, step={self.step})")

    def __call__(self, P: Any):
        """Embed ``P`` (integer array or tensor, shape=[..., length]) to shape=[..., dim], float64.

        Any integers are accepted and reduced modulo ``modulus`` first (as in
        :mod:`geoalign.rings`); returns the kind (and device) of ``P``.
        """
        shape = tuple(P.shape) if hasattr(P, "shape") else np.shape(P)
        if len(shape) < 1 or shape[-1] != self.length:
            raise ValueError(f"P must have shape (..., {self.length}) (polynomials with {self.length} "
                             f"coefficients), got {shape}")
        x = centered_lift(P, self.modulus)
        if is_torch(x):
            key = str(x.device)
            if key not in self._cache:
                self._cache[key] = (to_torch(self.positions, device=x.device),
                                    to_torch(self.components.T / self.step, device=x.device))
            idx, Mt = self._cache[key]
            return x.index_select(-1, idx) @ Mt
        return x[..., self.positions] @ (self.components.T / self.step)


@dataclass(frozen=True, eq=False)
class PlantedRingSample:
    """One draw of :class:`PlantedRingAlignment` (see the module docstring for the model).

    Attributes
    ----------
    images, clean_images : ndarray of uint8, shape=[n] + image_shape
        Observed (noisy) and clean images.
    P, P_clean : ndarray of int64, shape=[n, H * W * C]
        Their polynomials over :math:`\\mathbb{Z}_{256}` (:func:`geoalign.rings.encode_image`).
    tokens, clean_tokens : ndarray of int64, shape=[n, seq_len]
        Observed (noisy) and clean token ids.
    Q, Q_clean : ndarray of int64, shape=[n, seq_len]
        Their polynomials over :math:`\\mathbb{Z}_{|V|}` (:func:`geoalign.rings.encode_tokens`).
    labels : ndarray of int, shape=[n]
    shared : ndarray of int64, shape=[n, shared_rank]
        Shared content :math:`s_i` (level units).
    private_a, private_b : ndarray of int64, shape=[n, r_a], [n, r_b]
        Private factors :math:`a_i`, :math:`b_i` (level units).
    f, g : RingLinearEmbedding
        The known embeddings of images and token sequences.
    delta_f, delta_g : float
        Sup-norm bounds :math:`\\delta_f, \\delta_g` of the noise in the embeddings:
        ``||f(P[i]) - f(P_clean[i])|| <= delta_f`` for every ``i`` (likewise ``g``).
    column_sq_norm : int
        :math:`c`, the squared norm of every embedding direction.
    shared_projector, projector_a, projector_b : ndarray, shape=[dim, dim]
        Orthogonal projectors onto :math:`Z_s, Z_I, Z_T` (exact dyadic entries,
        usable as ``shared_projector`` of :func:`geoalign.fiber.fiber_product`).
    basis_shared, basis_a, basis_b : ndarray, shape=[dim, r]
        Orthonormal bases of the same subspaces.
    class_centers : ndarray of int64, shape=[n_classes, shared_rank]
    """

    images: np.ndarray
    clean_images: np.ndarray
    P: np.ndarray
    P_clean: np.ndarray
    tokens: np.ndarray
    clean_tokens: np.ndarray
    Q: np.ndarray
    Q_clean: np.ndarray
    labels: np.ndarray
    shared: np.ndarray
    private_a: np.ndarray
    private_b: np.ndarray
    f: RingLinearEmbedding
    g: RingLinearEmbedding
    delta_f: float
    delta_g: float
    column_sq_norm: int
    shared_projector: np.ndarray
    projector_a: np.ndarray
    projector_b: np.ndarray
    basis_shared: np.ndarray
    basis_a: np.ndarray
    basis_b: np.ndarray
    class_centers: np.ndarray

    @property
    def n_samples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.class_centers.shape[0])

    @property
    def vocab_size(self) -> int:
        return self.g.modulus

    def embeddings(self, clean: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(f(P), g(Q))`` as float64 arrays of shape [n, dim] (``clean=True``: of the clean polynomials)."""
        if clean:
            return self.f(self.P_clean), self.g(self.Q_clean)
        return self.f(self.P), self.g(self.Q)

    @property
    def true_pair_radius(self) -> np.ndarray:
        r"""Bound on the observed true-pair distances, shape=[n].

        :math:`\|f(\tilde P_i) - g(\tilde Q_i)\| \le \sqrt{c}\,(\|a_i\|^2 + \|b_i\|^2)^{1/2}
        + \delta_f + \delta_g` (the clean distance plus the noise bounds).
        """
        private = (self.private_a ** 2).sum(1) + (self.private_b ** 2).sum(1)
        return np.sqrt(self.column_sq_norm * private.astype(np.float64)) + self.delta_f + self.delta_g

    def clean_sq_distances(self, rows: Any = None, shared_only: bool = False) -> np.ndarray:
        r"""Exact squared distances of the clean embeddings, int64, shape=[len(rows), n].

        .. math:: D_{ij} = c\,(\|s_i - s_j\|^2 + \|a_i\|^2 + \|b_j\|^2)

        (``shared_only=True``: :math:`c\|s_i - s_j\|^2`, the distance of
        :math:`\Pi_s f(P_i)` and :math:`\Pi_s g(Q_j)`).  ``rows`` selects rows ``i``
        (default all; the full matrix holds ``n**2`` integers).
        """
        idx = np.arange(self.n_samples) if rows is None else np.asarray(rows)
        s = self.shared.astype(np.int64)
        sq_s = (s ** 2).sum(1)
        D = sq_s[idx][:, None] + sq_s[None, :] - 2 * (s[idx] @ s.T)
        if not shared_only:
            D = D + (self.private_a[idx] ** 2).sum(1)[:, None] + (self.private_b ** 2).sum(1)[None, :]
        return self.column_sq_norm * D

    def fiber_pairs(self, eps: float = 0.0, shared_only: bool = False) -> np.ndarray:
        r"""The true :math:`F_\varepsilon` of the clean embeddings, in closed form.

        Pairs ``(i, j)`` (image ``i``, token sequence ``j``) with
        ``sqrt(D_ij) <= eps`` where :math:`D_{ij}` is :meth:`clean_sq_distances`
        (an exact integer; its float64 square root is correctly rounded, which is
        also what a join computing exact float64 differences of the integer-valued
        embeddings obtains).  ``eps=0`` gives :math:`F_0 = \{s_i = s_j, a_i = 0, b_j = 0\}`;
        ``shared_only=True`` the shared-only fiber product :math:`F^s_\varepsilon`.

        Returns
        -------
        pairs : ndarray of int64, shape=[k, 2]
            Sorted lexicographically.  Computed in row blocks (memory ``O(block * n)``).
        """
        eps = float(eps)
        if math.isnan(eps) or eps < 0:
            raise ValueError(f"eps must be a number >= 0, got {eps}")
        n = self.n_samples
        block = max(1, _BLOCK_ELEMENTS // max(n, 1))
        out = []
        for start in range(0, n, block):
            rows = np.arange(start, min(n, start + block))
            D = self.clean_sq_distances(rows, shared_only=shared_only)
            i, j = np.nonzero(np.sqrt(D.astype(np.float64)) <= eps)
            out.append(np.stack([rows[i], j], axis=1))
        return np.concatenate(out).astype(np.int64) if out else np.zeros((0, 2), dtype=np.int64)

    def subset(self, index) -> "PlantedRingSample":
        """The pairs selected by ``index`` (integer indices or a boolean mask), same maps and truth."""
        index = np.asarray(index)
        if index.dtype == np.bool_:
            if index.shape != (self.n_samples,):
                raise ValueError(f"index mask must have shape ({self.n_samples},), got {index.shape}")
        elif not np.issubdtype(index.dtype, np.integer):
            raise TypeError(f"index must hold integers or booleans, got dtype {index.dtype}")
        per_pair = ("images", "clean_images", "P", "P_clean", "tokens", "clean_tokens", "Q", "Q_clean",
                    "labels", "shared", "private_a", "private_b")
        return replace(self, **{name: getattr(self, name)[index] for name in per_pair})

    def zero_shot_split(self, unseen_classes: int | Sequence[int] = 3,
                        random_state: int | None = 0) -> ZeroShotSplit:
        """Class-disjoint seen/unseen split; same contract as :meth:`PlantedSample.zero_shot_split`.

        ``seen`` and ``unseen`` of the result are :class:`PlantedRingSample` objects.
        """
        # The split only needs labels, n_classes and subset(), which this class provides.
        return PlantedSample.zero_shot_split(self, unseen_classes, random_state)


def _sylvester_mixing(rng: np.random.Generator, dim: int) -> tuple[np.ndarray, int]:
    """Signed, row- and column-permuted H_{2^k} (x) I_m; returns (matrix, c = 2^k)."""
    c = dim & -dim  # largest power of two dividing dim
    H = np.ones((1, 1))
    while H.shape[0] < c:
        H = np.block([[H, H], [H, -H]])
    M = np.kron(H, np.eye(dim // c))
    M = M * rng.choice([-1.0, 1.0], size=(dim, 1))
    return M[rng.permutation(dim)][:, rng.permutation(dim)], c


def _levels_range(levels: int) -> tuple[int, int]:
    lo = -(levels // 2)
    return lo, lo + levels - 1


@dataclass
class PlantedRingAlignment:
    r"""Generator of image/token-sequence pairs over :math:`\mathbb{Z}_{256}` and
    :math:`\mathbb{Z}_{|V|}` with known embeddings and a closed-form fiber product.

    The model, the embeddings :math:`f, g`, the closed form of :math:`F_\varepsilon`
    and the noise bounds :math:`\delta_f, \delta_g` are stated in
    :mod:`geoalign.data.planted_rings`.

    Parameters
    ----------
    image_shape : tuple of int
        ``(H, W)`` or ``(H, W, C)``; needs ``H*W*C >= shared_rank + private_ranks[0]``.
    vocab_size : int
        :math:`|V|` (the modulus of the text ring); must hold the levels plus noise
        in the centered range (see the module docstring).
    seq_len : int
        Tokens per sequence; needs ``seq_len >= shared_rank + private_ranks[1]``.
    shared_rank : int
        :math:`r_s \ge 1`: coordinates of shared content.
    private_ranks : tuple of two int
        :math:`(r_a, r_b) \ge 0`: private coordinates read by ``f`` and ``g``.
    levels : int
        Number of integer levels per coordinate (``>= 2``).
    dim : int
        Embedding dimension ``d >= r_s + r_a + r_b``; a power of two mixes every
        coordinate into all ``d`` directions (:math:`c = d`).
    n_classes : int
        Number of classes (distinct shared centres).
    within_class_spread : int
        :math:`\omega \ge 0`: offsets of the shared content around its class centre.
    private_zero_prob : float in [0, 1]
        Probability that a pair's private factor (each of :math:`a`, :math:`b`
        independently) is zero, so that :math:`F_0` is not empty when private ranks are > 0.
    pixel_noise, token_noise : int
        :math:`\eta_P, \eta_Q \ge 0`: amplitude of the uniform integer noise on every coefficient.
    pixel_step : int or None
        :math:`\kappa`, power of two; None picks the largest one that fits the
        levels plus ``pixel_noise`` into the centered range of :math:`\mathbb{Z}_{256}`.
    random_state : int or None
        Seeds positions, mixing matrix, class centres and the default stream of :meth:`sample`.

    Examples
    --------
    >>> gen = PlantedRingAlignment(image_shape=(8, 8), vocab_size=1000, seq_len=12,
    ...                            shared_rank=3, private_ranks=(0, 0), random_state=0)
    >>> data = gen.sample(200)
    >>> X, Y = data.embeddings()
    >>> F0 = data.fiber_pairs(eps=0)            # pairs with equal shared content
    >>> bool(np.all(data.shared[F0[:, 0]] == data.shared[F0[:, 1]]))
    True
    """

    image_shape: tuple = (8, 8)
    vocab_size: int = 1000
    seq_len: int = 16
    shared_rank: int = 3
    private_ranks: tuple[int, int] = (2, 2)
    levels: int = 8
    dim: int = 16
    n_classes: int = 10
    within_class_spread: int = 1
    private_zero_prob: float = 0.0
    pixel_noise: int = 0
    token_noise: int = 0
    pixel_step: int | None = None
    random_state: int | None = 0
    _model: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        shape = tuple(self.image_shape) if isinstance(self.image_shape, (tuple, list)) else None
        if shape is None or len(shape) not in (2, 3):
            raise ValueError(f"image_shape must be (H, W) or (H, W, C), got {self.image_shape!r}")
        for k, s in enumerate(shape):
            check_int(s, f"image_shape[{k}]", minimum=1)
        self.image_shape = tuple(int(s) for s in shape)
        n_pixels = int(np.prod(self.image_shape))
        V = check_int(self.vocab_size, "vocab_size", minimum=2, maximum=2**31 - 1)
        T = check_int(self.seq_len, "seq_len", minimum=1)
        rs = check_int(self.shared_rank, "shared_rank", minimum=1)
        try:
            ra, rb = self.private_ranks
        except (TypeError, ValueError):
            raise ValueError(f"private_ranks must be a pair (r_a, r_b), got {self.private_ranks!r}") from None
        ra = check_int(ra, "private_ranks[0]", minimum=0)
        rb = check_int(rb, "private_ranks[1]", minimum=0)
        if rs + ra > n_pixels:
            raise ValueError(f"image_shape {self.image_shape} has {n_pixels} pixel coefficients, fewer than "
                             f"shared_rank + private_ranks[0] = {rs + ra}")
        if rs + rb > T:
            raise ValueError(f"seq_len={T} is smaller than shared_rank + private_ranks[1] = {rs + rb}")
        L = check_int(self.levels, "levels", minimum=2)
        d = check_int(self.dim, "dim", minimum=1)
        if rs + ra + rb > d:
            raise ValueError(f"shared_rank + private_ranks = {rs + ra + rb} must be <= dim={d}")
        n_classes = check_int(self.n_classes, "n_classes", minimum=1)
        spread = check_int(self.within_class_spread, "within_class_spread", minimum=0)
        if L < 2 * spread + 1:
            raise ValueError(f"levels={L} must be >= 2*within_class_spread + 1 = {2 * spread + 1}")
        n_centres = (L - 2 * spread) ** rs
        if n_classes > n_centres:
            raise ValueError(f"n_classes={n_classes} exceeds the {n_centres} distinct class centres that "
                             f"levels={L}, shared_rank={rs}, within_class_spread={spread} allow")
        pz = self.private_zero_prob
        if isinstance(pz, bool) or not isinstance(pz, numbers.Real) or not 0.0 <= float(pz) <= 1.0:
            raise ValueError(f"private_zero_prob must be a number in [0, 1], got {pz!r}")
        eta_p = check_int(self.pixel_noise, "pixel_noise", minimum=0, maximum=127)
        eta_q = check_int(self.token_noise, "token_noise", minimum=0)
        lo, hi = _levels_range(L)
        # the centered lift must return kappa*v + e and v + e' unchanged (no wrap crossing)
        if lo - eta_q < -((V - 1) // 2) or hi + eta_q > V // 2:
            need = 2 * max(eta_q - lo, hi + eta_q) + 1
            raise ValueError(f"vocab_size={V} is too small for levels={L} with token_noise={eta_q}: the "
                             f"centered range of Z_{V} must hold [{lo - eta_q}, {hi + eta_q}] "
                             f"(vocab_size >= {need} suffices)")

        def fits(step: int) -> bool:
            return step * lo - eta_p >= -127 and step * hi + eta_p <= 128

        if self.pixel_step is None:
            step = 1
            while fits(2 * step):
                step *= 2
        else:
            step = check_int(self.pixel_step, "pixel_step", minimum=1)
            if step & (step - 1):
                raise ValueError(f"pixel_step must be a power of two, got {step}")
        if not fits(step):
            raise ValueError(f"levels={L} with pixel_step={step} and pixel_noise={eta_p} do not fit the "
                             f"centered range [-127, 128] of Z_256: need {step}*{lo}-{eta_p} >= -127 "
                             f"and {step}*{hi}+{eta_p} <= 128")
        self._step = step

        rng = np.random.default_rng(self.random_state)
        pix = rng.permutation(n_pixels)[:rs + ra]
        tok = rng.permutation(T)[:rs + rb]
        M, c = _sylvester_mixing(rng, d)
        Hs, Ha, Hb = M[:, :rs], M[:, rs:rs + ra], M[:, rs + ra:rs + ra + rb]
        centres = self._draw_centres(rng, n_classes, rs, lo + spread, hi - spread)
        f = RingLinearEmbedding(_PIXEL_MODULUS, n_pixels, pix, np.concatenate([Hs, Ha], axis=1), step)
        g = RingLinearEmbedding(V, T, tok, np.concatenate([Hs, Hb], axis=1), 1)
        self._model = dict(
            f=f, g=g, c=c, Hs=Hs, Ha=Ha, Hb=Hb, centres=centres, levels=(lo, hi),
            # one correctly rounded sqrt of the exact dyadic square: equals the float64
            # norm of an extreme noise vector, so the bound is attained without rounding slack
            delta_f=math.sqrt(c * (rs + ra) * eta_p ** 2 / step ** 2),
            delta_g=math.sqrt(c * (rs + rb) * eta_q ** 2),
            sample_seed=int(rng.integers(2 ** 63 - 1)),
        )

    @staticmethod
    def _draw_centres(rng, k: int, r: int, lo: int, hi: int) -> np.ndarray:
        """``k`` distinct integer vectors uniform in [lo, hi]^r (rejection of repeats)."""
        chosen: dict[tuple, None] = {}
        while len(chosen) < k:
            for row in rng.integers(lo, hi + 1, size=(k, r)):
                chosen.setdefault(tuple(int(v) for v in row))
                if len(chosen) == k:
                    break
        return np.array(list(chosen), dtype=np.int64).reshape(k, r)

    @property
    def f(self) -> RingLinearEmbedding:
        """The image embedding :math:`f`."""
        return self._model["f"]

    @property
    def g(self) -> RingLinearEmbedding:
        """The token-sequence embedding :math:`g`."""
        return self._model["g"]

    @property
    def pixel_step_(self) -> int:
        """The pixel step :math:`\\kappa` in use (chosen when ``pixel_step`` is None)."""
        return self._step

    @property
    def delta(self) -> tuple[float, float]:
        """:math:`(\\delta_f, \\delta_g)`, the sup-norm noise bounds in the embedding."""
        return self._model["delta_f"], self._model["delta_g"]

    def sample(self, n: int, random_state: int | None = None) -> PlantedRingSample:
        """Draw ``n`` pairs.

        Parameters
        ----------
        n : int
            Number of pairs (>= 1).
        random_state : int or None
            Seed of this draw; None uses a seed derived from the generator's
            ``random_state`` (reproducible).  Content and noise come from separate
            streams, so the clean data of a seed do not depend on the noise amplitudes.

        Returns
        -------
        PlantedRingSample
        """
        n = check_int(n, "n", minimum=1)
        m = self._model
        seed = m["sample_seed"] if random_state is None else random_state
        content_rng, noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
        rs, ra, rb = m["Hs"].shape[1], m["Ha"].shape[1], m["Hb"].shape[1]
        lo, hi = m["levels"]
        spread = int(self.within_class_spread)
        V, T = int(self.vocab_size), int(self.seq_len)
        f, g, step = m["f"], m["g"], self._step

        labels = content_rng.integers(self.n_classes, size=n)
        shared = m["centres"][labels] + content_rng.integers(-spread, spread + 1, size=(n, rs))
        a = content_rng.integers(lo, hi + 1, size=(n, ra))
        b = content_rng.integers(lo, hi + 1, size=(n, rb))
        a[content_rng.random(n) < self.private_zero_prob] = 0
        b[content_rng.random(n) < self.private_zero_prob] = 0

        n_pixels = f.length
        pixels = content_rng.integers(0, _PIXEL_MODULUS, size=(n, n_pixels))
        pixels[:, f.positions] = np.remainder(step * np.concatenate([shared, a], axis=1), _PIXEL_MODULUS)
        tokens = content_rng.integers(0, V, size=(n, T))
        tokens[:, g.positions] = np.remainder(np.concatenate([shared, b], axis=1), V)

        noisy_pixels, noisy_tokens = pixels, tokens
        if self.pixel_noise:
            e = noise_rng.integers(-self.pixel_noise, self.pixel_noise + 1, size=pixels.shape)
            noisy_pixels = np.remainder(pixels + e, _PIXEL_MODULUS)
        if self.token_noise:
            e = noise_rng.integers(-self.token_noise, self.token_noise + 1, size=tokens.shape)
            noisy_tokens = np.remainder(tokens + e, V)

        def render(flat):
            imgs = flat.astype(np.uint8).reshape((n,) + self.image_shape)
            return imgs, np.stack([encode_image(img) for img in imgs])

        clean_images, P_clean = render(pixels)
        images, P = render(noisy_pixels) if self.pixel_noise else (clean_images, P_clean)
        Q_clean = encode_tokens(tokens, V, length=T)
        Q = encode_tokens(noisy_tokens, V, length=T) if self.token_noise else Q_clean

        c = m["c"]
        Hs, Ha, Hb = m["Hs"], m["Ha"], m["Hb"]
        return PlantedRingSample(
            images=images, clean_images=clean_images, P=P, P_clean=P_clean,
            tokens=noisy_tokens.astype(np.int64), clean_tokens=tokens.astype(np.int64), Q=Q, Q_clean=Q_clean,
            labels=labels, shared=shared.astype(np.int64), private_a=a.astype(np.int64),
            private_b=b.astype(np.int64), f=f, g=g, delta_f=m["delta_f"], delta_g=m["delta_g"],
            column_sq_norm=int(c),
            shared_projector=Hs @ Hs.T / c, projector_a=Ha @ Ha.T / c, projector_b=Hb @ Hb.T / c,
            basis_shared=Hs / math.sqrt(c), basis_a=Ha / math.sqrt(c), basis_b=Hb / math.sqrt(c),
            class_centers=m["centres"].copy(),
        )
