"""Planted shared/private alignment model with known ground truth.

Two views of the same latent cause live in one space :math:`\\mathbb{R}^d`:

.. math::

    u = A s + B_a a + \\sigma_a \\xi, \\qquad v = A s + B_b b + \\sigma_b \\zeta,

with :math:`[A, B_a, B_b]` a random matrix with orthonormal columns (so the shared
subspace ``span A`` and the private subspaces ``span B_a``, ``span B_b`` are
mutually orthogonal), Gaussian private factors :math:`a, b`, isotropic Gaussian
noise :math:`\\xi, \\zeta`, and shared factors :math:`s` drawn around class
centres, so the same data serve zero-shot experiments (class-disjoint splits).

Optionally the second view has its own dimension ``dim_b``: then
:math:`v = R_b (A s + B_b b) + \\sigma_b \\zeta` with a known linear map
:math:`R_b : \\mathbb{R}^d \\to \\mathbb{R}^{d_b}` that is an isometry on
``span [A, B_b]`` (so the signal geometry of the view is unchanged).

This is the ground truth that :class:`geoalign.subspace.SharedPrivateDecomposition`
is tested against.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from .._validation import check_int

__all__ = ["PlantedAlignment", "PlantedSample", "ZeroShotSplit", "planted_training_source"]


def _random_frame(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A Haar-random matrix with orthonormal columns, shape (rows, cols)."""
    if cols == 0:
        return np.zeros((rows, 0))
    q, r = np.linalg.qr(rng.standard_normal((rows, cols)))
    return q * np.sign(np.diag(r))  # sign fix makes the QR factor Haar distributed


@dataclass(frozen=True)
class PlantedSample:
    """One draw of paired samples from :class:`PlantedAlignment`.

    Attributes
    ----------
    U : ndarray, shape=[n, dim]
        First view.
    V : ndarray, shape=[n, dim_b]
        Second view (``dim_b == dim`` unless the generator set ``dim_b``).
    labels : ndarray of int, shape=[n]
        Class of each pair (the class whose centre ``S`` was drawn around).
    S : ndarray, shape=[n, shared_rank]
        Shared latent factors :math:`s`.
    private_a, private_b : ndarray, shape=[n, r_a], [n, r_b]
        Private latent factors :math:`a`, :math:`b`.
    basis_shared, basis_a, basis_b : ndarray, shape=[dim, r]
        Orthonormal, mutually orthogonal bases :math:`A, B_a, B_b` in the space of ``U``.
    map_b : ndarray, shape=[dim_b, dim] or None
        The map :math:`R_b` into the space of ``V`` (None when both views share ``R^dim``).
    basis_shared_v, basis_b_v : ndarray, shape=[dim_b, r]
        The shared and private bases as seen in the space of ``V``
        (:math:`R_b A`, :math:`R_b B_b`; equal to ``basis_shared``, ``basis_b`` without a map).
    class_centers : ndarray, shape=[n_classes, shared_rank]
    noise_std : tuple of float
        :math:`(\\sigma_a, \\sigma_b)`.
    snr : float
        Signal-to-noise ratio the data were generated with (see :class:`PlantedAlignment`).
    """

    U: np.ndarray
    V: np.ndarray
    labels: np.ndarray
    S: np.ndarray
    private_a: np.ndarray
    private_b: np.ndarray
    basis_shared: np.ndarray
    basis_a: np.ndarray
    basis_b: np.ndarray
    map_b: np.ndarray | None
    basis_shared_v: np.ndarray
    basis_b_v: np.ndarray
    class_centers: np.ndarray
    noise_std: tuple[float, float]
    snr: float

    @property
    def n_samples(self) -> int:
        return int(self.U.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.class_centers.shape[0])

    def subset(self, index) -> "PlantedSample":
        """The pairs selected by ``index`` (integer indices or a boolean mask), same ground truth."""
        index = np.asarray(index)
        if index.dtype == np.bool_:
            if index.shape != (self.n_samples,):
                raise ValueError(f"index mask must have shape ({self.n_samples},), got {index.shape}")
        elif not np.issubdtype(index.dtype, np.integer):
            raise TypeError(f"index must hold integers or booleans, got dtype {index.dtype}")
        return replace(self, U=self.U[index], V=self.V[index], labels=self.labels[index],
                       S=self.S[index], private_a=self.private_a[index],
                       private_b=self.private_b[index])

    def zero_shot_split(self, unseen_classes: int | Sequence[int] = 3,
                        random_state: int | None = 0) -> "ZeroShotSplit":
        """Split the pairs into class-disjoint *seen* and *unseen* parts.

        Parameters
        ----------
        unseen_classes : int or sequence of int
            Either how many classes to hold out (chosen at random with
            ``random_state``) or the class ids to hold out.  At least one class
            must stay seen and at least one be unseen.
        random_state : int or None
            Seed for choosing the held-out classes when ``unseen_classes`` is an int.

        Returns
        -------
        ZeroShotSplit
            ``seen`` and ``unseen`` samples; no class appears in both.
        """
        k = self.n_classes
        if isinstance(unseen_classes, numbers.Integral) and not isinstance(unseen_classes, bool):
            count = check_int(unseen_classes, "unseen_classes", minimum=1, maximum=k - 1)
            rng = np.random.default_rng(random_state)
            unseen = np.sort(rng.choice(k, size=count, replace=False))
        else:
            unseen = np.asarray(unseen_classes)
            if unseen.ndim != 1 or unseen.size == 0 or not np.issubdtype(unseen.dtype, np.integer):
                raise ValueError("unseen_classes must be a positive int or a non-empty 1-d sequence "
                                 f"of class ids, got {unseen_classes!r}")
            if unseen.min() < 0 or unseen.max() >= k:
                raise ValueError(f"unseen_classes must be class ids in [0, {k - 1}], got {unseen.tolist()}")
            if len(np.unique(unseen)) != unseen.size:
                raise ValueError(f"unseen_classes has repeated ids: {unseen.tolist()}")
            if unseen.size >= k:
                raise ValueError(f"unseen_classes must leave at least one seen class (n_classes={k})")
            unseen = np.sort(unseen)
        seen = np.setdiff1d(np.arange(k), unseen)
        is_unseen = np.isin(self.labels, unseen)
        return ZeroShotSplit(seen=self.subset(~is_unseen), unseen=self.subset(is_unseen),
                             seen_classes=seen, unseen_classes=unseen,
                             seen_index=np.flatnonzero(~is_unseen),
                             unseen_index=np.flatnonzero(is_unseen))


@dataclass(frozen=True)
class ZeroShotSplit:
    """Class-disjoint split of a :class:`PlantedSample`.

    Attributes
    ----------
    seen, unseen : PlantedSample
        Pairs of seen / unseen classes.
    seen_classes, unseen_classes : ndarray of int
        Disjoint sorted class ids whose union is all classes.
    seen_index, unseen_index : ndarray of int
        Positions of the pairs in the original sample.
    """

    seen: PlantedSample
    unseen: PlantedSample
    seen_classes: np.ndarray
    unseen_classes: np.ndarray
    seen_index: np.ndarray
    unseen_index: np.ndarray


@dataclass
class PlantedAlignment:
    """Generator of paired embeddings with planted shared and private subspaces.

    .. math::

        u = A s + B_a a + \\sigma_a \\xi, \\qquad
        v = R_b (A s + B_b b) + \\sigma_b \\zeta, \\qquad \\xi, \\zeta \\sim N(0, I),

    with :math:`[A, B_a, B_b]` orthonormal columns of ranks ``shared_rank``,
    ``private_ranks[0]``, ``private_ranks[1]``; :math:`a \\sim N(0, \\tau_p^2 I)`,
    :math:`b \\sim N(0, \\tau_p^2 I)` (``tau_p = private_scale``);
    :math:`s = c_y + w` with class :math:`y` uniform over ``n_classes``, class
    centres :math:`c_k \\sim N(0, \\beta \\tau_s^2 I)` drawn once per generator and
    within-class spread :math:`w \\sim N(0, (1 - \\beta) \\tau_s^2 I)`
    (``tau_s = shared_scale``, ``beta = between_class_fraction``), so
    :math:`E\\|s\\|^2 = r_s \\tau_s^2` over the whole generative process.
    :math:`R_b = I` unless ``dim_b`` is given.

    **Signal-to-noise ratio.**  ``snr`` is the ratio of expected signal energy to
    expected noise energy in each view, expectations taken over the whole
    generative process (centres included):

    .. math::

        \\mathrm{snr} = \\frac{E\\|A s + B_a a\\|^2}{E\\|\\sigma_a \\xi\\|^2}
        = \\frac{r_s \\tau_s^2 + r_a \\tau_p^2}{d\\, \\sigma_a^2},

    and likewise :math:`\\sigma_b^2 = (r_s \\tau_s^2 + r_b \\tau_p^2) / (d_b\\, \\mathrm{snr})`.
    ``snr=inf`` gives noiseless data.  (Per signal direction, the variance ratio
    is ``snr * d / (r_s + r_a)`` for unit scales, so snr=10 at d=64 is an easy
    problem and snr around 0.1 a hard one.)

    Parameters
    ----------
    dim : int
        Ambient dimension ``d`` of the first view (and of the second without ``dim_b``).
    shared_rank : int
        :math:`r_s \\ge 1`.
    private_ranks : tuple of two int
        :math:`(r_a, r_b)`, each ``>= 0``; ``r_s + r_a + r_b <= dim``.
    snr : float
        Signal-to-noise ratio (> 0, ``inf`` allowed), defined above.
    n_classes : int
        Number of classes of the shared factor.
    between_class_fraction : float in [0, 1]
        Share :math:`\\beta` of the shared variance explained by the class centres.
    shared_scale, private_scale : float
        :math:`\\tau_s, \\tau_p`: per-coordinate standard deviation of shared and private factors.
    dim_b : int or None
        Dimension of the second view; needs ``dim_b >= r_s + r_b``.
    random_state : int or None
        Seeds the bases, class centres and the default stream of :meth:`sample`.

    Examples
    --------
    >>> gen = PlantedAlignment(dim=64, shared_rank=4, private_ranks=(3, 3), snr=10,
    ...                        n_classes=10, random_state=0)
    >>> data = gen.sample(1000)
    >>> data.U.shape, data.V.shape, data.basis_shared.shape
    ((1000, 64), (1000, 64), (64, 4))
    >>> split = data.zero_shot_split(unseen_classes=3)
    """

    dim: int = 64
    shared_rank: int = 4
    private_ranks: tuple[int, int] = (3, 3)
    snr: float = 10.0
    n_classes: int = 10
    between_class_fraction: float = 0.5
    shared_scale: float = 1.0
    private_scale: float = 1.0
    dim_b: int | None = None
    random_state: int | None = 0
    _model: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        d = check_int(self.dim, "dim", minimum=1)
        rs = check_int(self.shared_rank, "shared_rank", minimum=1)
        try:
            ra, rb = self.private_ranks
        except (TypeError, ValueError):
            raise ValueError(f"private_ranks must be a pair (r_a, r_b), got {self.private_ranks!r}") from None
        ra = check_int(ra, "private_ranks[0]", minimum=0)
        rb = check_int(rb, "private_ranks[1]", minimum=0)
        if rs + ra + rb > d:
            raise ValueError(f"shared_rank + private_ranks = {rs + ra + rb} must be <= dim={d}")
        snr = self.snr
        if isinstance(snr, bool) or not isinstance(snr, numbers.Real) or math.isnan(snr) or snr <= 0:
            raise ValueError(f"snr must be a number > 0 (inf for noiseless data), got {snr!r}")
        check_int(self.n_classes, "n_classes", minimum=1)
        beta = self.between_class_fraction
        if not isinstance(beta, numbers.Real) or not 0.0 <= float(beta) <= 1.0:
            raise ValueError(f"between_class_fraction must be in [0, 1], got {beta!r}")
        for name in ("shared_scale", "private_scale"):
            val = getattr(self, name)
            if not isinstance(val, numbers.Real) or not (0 < float(val) < math.inf):
                raise ValueError(f"{name} must be a finite number > 0, got {val!r}")
        if self.dim_b is not None:
            check_int(self.dim_b, "dim_b", minimum=rs + rb)

        rng = np.random.default_rng(self.random_state)
        frame = _random_frame(rng, d, rs + ra + rb)
        A, Ba, Bb = frame[:, :rs], frame[:, rs:rs + ra], frame[:, rs + ra:]
        centres = rng.standard_normal((self.n_classes, rs)) * math.sqrt(beta) * self.shared_scale
        map_b = None if self.dim_b is None else self._isometry_on_signal(rng, A, Bb, self.dim_b)
        db = d if self.dim_b is None else int(self.dim_b)
        energy_a = rs * self.shared_scale ** 2 + ra * self.private_scale ** 2
        energy_b = rs * self.shared_scale ** 2 + rb * self.private_scale ** 2
        noiseless = math.isinf(snr)
        sigma_a = 0.0 if noiseless else math.sqrt(energy_a / (float(snr) * d))
        sigma_b = 0.0 if noiseless else math.sqrt(energy_b / (float(snr) * db))
        self._model = dict(A=A, Ba=Ba, Bb=Bb, centres=centres, map_b=map_b,
                           sigma=(sigma_a, sigma_b),
                           sample_seed=int(rng.integers(2 ** 63 - 1)))

    @staticmethod
    def _isometry_on_signal(rng, A, Bb, dim_b):
        """R_b (dim_b x d) with R_b^T R_b = identity on span [A, Bb]."""
        d = A.shape[0]
        if dim_b >= d:
            return _random_frame(rng, dim_b, d)
        # Orthonormal frame of dim_b columns containing span [A, Bb], then a random rotation.
        signal = np.concatenate([A, Bb], axis=1)
        extra = rng.standard_normal((d, dim_b - signal.shape[1]))
        extra -= signal @ (signal.T @ extra)
        frame = np.concatenate([signal, np.linalg.qr(extra)[0]], axis=1) if extra.shape[1] else signal
        return _random_frame(rng, dim_b, dim_b) @ frame.T

    @property
    def basis_shared(self) -> np.ndarray:
        return self._model["A"]

    @property
    def basis_a(self) -> np.ndarray:
        return self._model["Ba"]

    @property
    def basis_b(self) -> np.ndarray:
        return self._model["Bb"]

    @property
    def noise_std(self) -> tuple[float, float]:
        return self._model["sigma"]

    def sample(self, n: int, random_state: int | None = None) -> PlantedSample:
        """Draw ``n`` pairs.

        Parameters
        ----------
        n : int
            Number of pairs (>= 1).
        random_state : int or None
            Seed of this draw.  None uses a seed derived from the generator's
            ``random_state``, so ``sample(n)`` is reproducible; pass another
            seed for an independent draw (e.g. a test set) from the same model
            (same bases and class centres).

        Returns
        -------
        PlantedSample
        """
        n = check_int(n, "n", minimum=1)
        m = self._model
        rng = np.random.default_rng(m["sample_seed"] if random_state is None else random_state)
        rs, ra, rb = m["A"].shape[1], m["Ba"].shape[1], m["Bb"].shape[1]
        beta = float(self.between_class_fraction)
        labels = rng.integers(self.n_classes, size=n)
        S = m["centres"][labels] + rng.standard_normal((n, rs)) * math.sqrt(1 - beta) * self.shared_scale
        a = rng.standard_normal((n, ra)) * self.private_scale
        b = rng.standard_normal((n, rb)) * self.private_scale
        sig_a, sig_b = m["sigma"]
        U = S @ m["A"].T + a @ m["Ba"].T
        V = S @ m["A"].T + b @ m["Bb"].T
        if m["map_b"] is not None:
            V = V @ m["map_b"].T
        if sig_a > 0:
            U = U + sig_a * rng.standard_normal(U.shape)
        if sig_b > 0:
            V = V + sig_b * rng.standard_normal(V.shape)
        Rb = m["map_b"]
        return PlantedSample(
            U=U, V=V, labels=labels, S=S, private_a=a, private_b=b,
            basis_shared=m["A"].copy(), basis_a=m["Ba"].copy(), basis_b=m["Bb"].copy(),
            map_b=None if Rb is None else Rb.copy(),
            basis_shared_v=m["A"].copy() if Rb is None else Rb @ m["A"],
            basis_b_v=m["Bb"].copy() if Rb is None else Rb @ m["Bb"],
            class_centers=m["centres"].copy(), noise_std=(sig_a, sig_b), snr=float(self.snr),
        )


def planted_training_source(spec: dict, base_dir=None) -> dict:
    """``geoalign train`` data source ``"planted"``: paired views of :class:`PlantedAlignment`.

    ``spec`` keys (all optional): ``n`` (pairs drawn, default 2000), ``seed``
    (0), ``split`` ("all", "seen" or "unseen"; default "all"), ``unseen_classes``
    (count or ids held out when ``split`` is not "all"; default 3), and any
    :class:`PlantedAlignment` parameter (``dim``, ``shared_rank``,
    ``private_ranks``, ``snr``, ``n_classes``, ...).  The same ``seed`` gives the
    same draw, so a "seen" training config and an "unseen" test config are
    class-disjoint halves of one sample.
    """
    import dataclasses

    fields = {f.name for f in dataclasses.fields(PlantedAlignment)} - {"random_state"}
    allowed = {"source", "n", "seed", "split", "unseen_classes"} | fields
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"data source 'planted' got unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    seed = check_int(spec.get("seed", 0), "seed", minimum=0)
    params = {k: spec[k] for k in fields if k in spec}
    if "private_ranks" in params:
        params["private_ranks"] = tuple(params["private_ranks"])
    sample = PlantedAlignment(**params, random_state=seed).sample(check_int(spec.get("n", 2000), "n", minimum=2))
    split = spec.get("split", "all")
    if split not in ("all", "seen", "unseen"):
        raise ValueError(f"planted split must be 'all', 'seen' or 'unseen', got {split!r}")
    if split != "all":
        sample = getattr(sample.zero_shot_split(spec.get("unseen_classes", 3), random_state=seed), split)
    return {"X_a": sample.U, "X_b": sample.V, "y": sample.labels}
