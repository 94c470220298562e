r"""UniCode (Xia et al., NeurIPS 2023) with TOC and CLUB disentangling (Huang et al., 2024).

A shared discrete codebook :math:`E \in \mathbb R^{L\times D}` (default
:math:`400\times 256`) quantises the *modality-general* part of both views.

Model (:class:`UniCode`)
------------------------
For each view :math:`m \in \{a, b\}` an encoder gives a general part
:math:`g_m \in \mathbb R^D` and a specific part :math:`s_m`; :math:`g_m` is
quantised to its nearest code :math:`q_m = e_{l^*}` (straight-through
gradient).  The training loss is

.. math:: \mathcal L = \sum_m \lVert \hat x_m - x_m\rVert^2
          + \beta \sum_m \lVert g_m - \mathrm{sg}(q_m)\rVert^2
          + \lambda_{\mathrm{nce}}\,\mathrm{InfoNCE}_\tau(g_a, g_b)
          + \lambda_{\mathrm{match}}\,\mathcal L_{\mathrm{match}}
          + \lambda_{\mathrm{MI}} \sum_m \hat I_{\mathrm{CLUB}}(g_m; s_m)

* reconstruction: decoder :math:`m` maps :math:`[q_m, s_m]` back to the
  (standardised) input; with ``cross_reconstruction`` also :math:`[q_{m'}, s_m]`
  (the partner's code must carry the same semantics);
* commitment :math:`\beta = 0.25`; the codebook itself is updated by an
  exponential moving average (decay 0.99) of the vectors assigned to each code
  **from both modalities together** (multi-modal EMA), with Laplace smoothing;
  codes whose EMA usage falls below ``dead_code_fraction`` of the uniform usage
  are reset to random current general vectors (dead-code reset);
* cross-modal code matching: with code logits :math:`-\lVert g_m - e_l\rVert^2`,
  each view is trained (cross-entropy) to pick the code its partner picked;
* CLUB (Cheng et al. 2020) upper bound of the mutual information between the
  general and specific parts, with a Gaussian variational network
  :math:`q_\theta(s\mid g)`,

  .. math:: \hat I = \frac1B\sum_i \log q_\theta(s_i\mid g_i)
            - \frac1{B^2}\sum_{i,j}\log q_\theta(s_j\mid g_i),

  whose network is trained *alternately*: before every main step it takes
  ``club_steps`` (5) Adam steps maximising :math:`\sum_i \log q_\theta(s_i\mid
  g_i)` on detached features; the main step then minimises :math:`\hat I` with
  :math:`\theta` frozen.

On vector features (one vector per sample, no frames or tokens) the fine- and
coarse-grained levels of FCID coincide, so its disentangling reduces to the
CLUB term above.

TOC (:func:`toc_select`) is training-free: it scores the codebook dimensions
and keeps the top :math:`k`; ``UniCode(toc_k=k)`` applies it to the learned
codebook after training and embeds with those dimensions of :math:`g_m`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._backend import is_torch, like, to_numpy
from .._validation import check_array, check_choice, check_int, check_nonnegative_scalar, \
    check_positive_scalar
from ._inner import InnerAdam, freeze, inner_steps
from .base import AlignmentEstimator
from .encoders import StandardizedNet, mlp
from .losses import symmetric_info_nce

__all__ = ["TOCSelection", "toc_select", "VectorQuantizer", "CLUBEstimator", "UniCodeModule",
           "UniCode"]


# --------------------------------------------------------------------------------- TOC
@dataclass
class TOCSelection:
    """Result of :func:`toc_select`.

    Attributes
    ----------
    indices : array of int64, shape=[k]
        Selected dimensions, best first (ties: lower index first).
    scores : array, shape=[D]
        :math:`J_d` of every dimension.
    similarity : array, shape=[D]
        :math:`\\mathrm{sim}_d`, mean over ordered pairs :math:`i \\ne j` of :math:`E_{id}E_{jd}`.
    variance : array, shape=[D]
        Unbiased variance of column :math:`d`.
    """

    indices: Any
    scores: Any
    similarity: Any
    variance: Any


def toc_select(codebook: Any, k: int, w_sim: float = 0.7, w_var: float = 0.3) -> TOCSelection:
    r"""Training-free codebook dimension selection (TOC, Huang et al.).

    For a codebook :math:`E \in \mathbb R^{L\times D}` and every dimension :math:`d`,

    .. math:: \mathrm{sim}_d = \frac{(\sum_i E_{id})^2 - \sum_i E_{id}^2}{L(L-1)}
              = \frac{1}{L(L-1)}\sum_{i\ne j} E_{id}E_{jd},\qquad
              \mathrm{var}_d = \frac{1}{L-1}\sum_i (E_{id} - \bar E_d)^2,

    .. math:: J_d = -w_{\mathrm{sim}}\,\mathrm{sim}_d + w_{\mathrm{var}}\,\mathrm{var}_d ,

    and the :math:`k` dimensions with the largest :math:`J_d` are kept: low
    inter-code similarity and high variance make codes distinguishable.
    :math:`O(LD)`.

    Parameters
    ----------
    codebook : array-like, shape=[L, D]
        :math:`L \ge 2` codes.
    k : int
        Dimensions to keep, ``1 <= k <= D``.
    w_sim, w_var : float
        Weights (0.7 and 0.3, as in TOC).

    Returns
    -------
    TOCSelection
        Arrays of the input's kind and device.
    """
    E = check_array(codebook, "codebook", ndim=2, allow_empty=False)
    L, D = tuple(E.shape)
    if L < 2:
        raise ValueError(f"codebook must have at least 2 codes (rows), got shape {tuple(E.shape)}")
    k = check_int(k, "k", minimum=1, maximum=D)
    w_sim = check_nonnegative_scalar(w_sim, "w_sim")
    w_var = check_nonnegative_scalar(w_var, "w_var")
    Et = E if is_torch(E) else torch.as_tensor(np.asarray(E))
    if not Et.is_floating_point():
        Et = Et.to(torch.float64)
    col_sum = Et.sum(dim=0)
    sim = (col_sum ** 2 - (Et ** 2).sum(dim=0)) / (L * (L - 1))
    var = Et.var(dim=0, unbiased=True)
    scores = -w_sim * sim + w_var * var
    # stable descending order: ties keep the lower dimension first
    order = torch.from_numpy(np.argsort(-to_numpy(scores), kind="stable")[:k].copy()).to(Et.device)
    return TOCSelection(indices=like(order, E), scores=like(scores, E), similarity=like(sim, E),
                        variance=like(var, E))


# ------------------------------------------------------------------------- quantiser
class VectorQuantizer(nn.Module):
    r"""Codebook with EMA updates, commitment loss and dead-code reset.

    Parameters
    ----------
    n_codes, dim : int
        :math:`L` and :math:`D`.
    decay : float
        EMA decay (0.99).
    commitment : float
        :math:`\beta` (0.25).
    dead_code_fraction : float
        A code is dead when its EMA usage share is below this fraction of the
        uniform share :math:`1/L`; it is then reset to a random current input
        and its usage statistics to the uniform share, which gives it
        :math:`\log(1/\mathrm{fraction})/(1-\mathrm{decay})` steps (460 by
        default) to attract vectors before it can be reset again.
    eps : float
        Laplace smoothing of the code counts.
    """

    def __init__(self, n_codes: int, dim: int, decay: float = 0.99, commitment: float = 0.25,
                 dead_code_fraction: float = 0.01, eps: float = 1e-5):
        super().__init__()
        self.n_codes, self.dim = n_codes, dim
        self.decay, self.commitment = decay, commitment
        self.dead_code_fraction, self.eps = dead_code_fraction, eps
        embed = torch.randn(n_codes, dim) / dim ** 0.5
        self.register_buffer("embed", embed)
        self.register_buffer("embed_avg", embed.clone())
        self.register_buffer("cluster_size", torch.ones(n_codes))

    def distances(self, h: torch.Tensor) -> torch.Tensor:
        """Squared distances ``shape=[B, L]`` of ``h : shape=[B, D]`` to the codes."""
        codes = self.embed.clone()  # the EMA update rewrites the buffer in place before backward
        return (h ** 2).sum(1, keepdim=True) - 2 * h @ codes.T + (codes ** 2).sum(1)[None, :]

    def quantize(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(straight-through quantised ``h``, code indices, commitment loss); no update."""
        idx = self.distances(h.detach()).argmin(dim=1)
        q = self.embed[idx]
        commit = self.commitment * F.mse_loss(h, q.detach())
        return h + (q - h).detach(), idx, commit

    @torch.no_grad()
    def ema_update(self, h: torch.Tensor, idx: torch.Tensor) -> None:
        """Multi-modal EMA: ``h`` stacks the general vectors of every modality."""
        h = h.detach().to(self.embed.dtype)
        # (F.one_hot would check the index range on the host)
        onehot = torch.zeros(idx.shape[0], self.n_codes, dtype=h.dtype, device=h.device)
        onehot.scatter_(1, idx[:, None], 1.0)
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(onehot.T @ h, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.n_codes * self.eps) * n
        self.embed.copy_(self.embed_avg / smoothed[:, None])
        share = self.cluster_size / n
        dead = share < self.dead_code_fraction / self.n_codes
        # one candidate per code, used where the code is dead: fixed shapes, so the reset
        # never waits for the device to count the dead codes
        pick = h[torch.randint(0, h.shape[0], (self.n_codes,), device=h.device)]
        self.embed.copy_(torch.where(dead[:, None], pick, self.embed))
        self.cluster_size.copy_(torch.where(dead, n / self.n_codes, self.cluster_size))
        self.embed_avg.copy_(torch.where(dead[:, None], pick * (n / self.n_codes), self.embed_avg))


# ------------------------------------------------------------------------------ CLUB
class CLUBEstimator(nn.Module):
    r"""Gaussian variational network :math:`q_\theta(s \mid g)` of the CLUB bound.

    Mean and log-variance from one-hidden-layer MLPs (log-variance bounded by tanh).
    """

    def __init__(self, g_dim: int, s_dim: int, hidden: int):
        super().__init__()
        self.mu = nn.Sequential(nn.Linear(g_dim, hidden), nn.ReLU(), nn.Linear(hidden, s_dim))
        self.logvar = nn.Sequential(nn.Linear(g_dim, hidden), nn.ReLU(), nn.Linear(hidden, s_dim),
                                    nn.Tanh())

    def log_likelihood(self, g: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Mean of :math:`\\log q(s_i\\mid g_i)` up to the constant :math:`-\\frac{d}{2}\\log 2\\pi`."""
        mu, logvar = self.mu(g), self.logvar(g)
        return (-0.5 * ((mu - s) ** 2 / logvar.exp() + logvar)).sum(1).mean()

    def mi_upper(self, g: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """CLUB estimate :math:`\\hat I` (log-variances cancel between the two terms)."""
        mu, logvar = self.mu(g), self.logvar(g)
        positive = (-0.5 * (mu - s) ** 2 / logvar.exp()).sum(1)
        # E_j (mu_i - s_j)^2 = (mu_i - mean s)^2 + var s, without the B x B x d tensor
        s_mean, s_sq = s.mean(0), (s ** 2).mean(0)
        negative = (-0.5 * (mu ** 2 - 2 * mu * s_mean + s_sq) / logvar.exp()).sum(1)
        return (positive - negative).mean()


# ----------------------------------------------------------------------------- model
class UniCodeModule(nn.Module):
    """Torch module of :class:`UniCode` (module docstring gives the loss)."""

    def __init__(self, n_features_a: int, n_features_b: int, dim: int, specific_dim: int,
                 hidden: int | None, n_codes: int, decay: float, commitment: float,
                 dead_code_fraction: float, temperature: float, nce_weight: float,
                 match_weight: float, mi_weight: float, club_steps: int, club_lr: float,
                 club_hidden: int, cross_reconstruction: bool, toc_k: int | None,
                 embed: str):
        super().__init__()
        self.encoder_a = StandardizedNet(n_features_a, mlp(n_features_a, hidden, dim + specific_dim))
        self.encoder_b = StandardizedNet(n_features_b, mlp(n_features_b, hidden, dim + specific_dim))
        self.decoder_a = mlp(dim + specific_dim, hidden, n_features_a)
        self.decoder_b = mlp(dim + specific_dim, hidden, n_features_b)
        self.quantizer = VectorQuantizer(n_codes, dim, decay, commitment, dead_code_fraction)
        self.club_a = freeze(CLUBEstimator(dim, specific_dim, club_hidden))
        self.club_b = freeze(CLUBEstimator(dim, specific_dim, club_hidden))
        self.club_opt_a = InnerAdam(list(self.club_a.parameters()), lr=club_lr, betas=(0.9, 0.999))
        self.club_opt_b = InnerAdam(list(self.club_b.parameters()), lr=club_lr, betas=(0.9, 0.999))
        self.dim, self.specific_dim = dim, specific_dim
        self.temperature, self.nce_weight = temperature, nce_weight
        self.match_weight, self.mi_weight = match_weight, mi_weight
        self.club_steps, self.cross_reconstruction = club_steps, cross_reconstruction
        self.embed_mode = embed
        self.register_buffer("toc_index", torch.arange(dim if toc_k is None else toc_k))

    def split(self, x: torch.Tensor, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(general, specific) parts of view ``which``."""
        h = getattr(self, f"encoder_{which}")(x)
        return h[:, :self.dim], h[:, self.dim:]

    def _embed(self, x, which):
        g, _ = self.split(x, which)
        if self.embed_mode == "quantized":
            g = self.quantizer.quantize(g)[0]
        return F.normalize(g[:, self.toc_index], dim=-1)

    def embed_a(self, x):
        return self._embed(x, "a")

    def embed_b(self, x):
        return self._embed(x, "b")

    def apply_toc(self, k: int, w_sim: float, w_var: float) -> TOCSelection:
        sel = toc_select(self.quantizer.embed.detach(), k, w_sim, w_var)
        self.toc_index.copy_(sel.indices)
        return sel

    def training_loss(self, batch):
        x_a, x_b = batch[0], batch[1]
        g_a, s_a = self.split(x_a, "a")
        g_b, s_b = self.split(x_b, "b")
        if self.training and torch.is_grad_enabled() and self.mi_weight > 0:
            for club, opt, g, s in ((self.club_a, self.club_opt_a, g_a, s_a),
                                    (self.club_b, self.club_opt_b, g_b, s_b)):
                gd, sd = g.detach(), s.detach()
                inner_steps(club, lambda c=club, gd=gd, sd=sd: -c.log_likelihood(gd, sd), opt,
                            self.club_steps)
        q_a, idx_a, commit_a = self.quantizer.quantize(g_a)
        q_b, idx_b, commit_b = self.quantizer.quantize(g_b)
        target_a = (x_a - self.encoder_a.mean) / self.encoder_a.scale
        target_b = (x_b - self.encoder_b.mean) / self.encoder_b.scale
        recon = F.mse_loss(self.decoder_a(torch.cat([q_a, s_a], 1)), target_a) + \
            F.mse_loss(self.decoder_b(torch.cat([q_b, s_b], 1)), target_b)
        if self.cross_reconstruction:
            recon = recon + F.mse_loss(self.decoder_a(torch.cat([q_b, s_a], 1)), target_a) + \
                F.mse_loss(self.decoder_b(torch.cat([q_a, s_b], 1)), target_b)
        za, zb = F.normalize(g_a, dim=-1), F.normalize(g_b, dim=-1)
        nce = symmetric_info_nce(za @ zb.T / self.temperature)
        match = 0.5 * (F.cross_entropy(-self.quantizer.distances(g_a), idx_b)
                       + F.cross_entropy(-self.quantizer.distances(g_b), idx_a))
        mi = self.club_a.mi_upper(g_a, s_a) + self.club_b.mi_upper(g_b, s_b)
        loss = recon + commit_a + commit_b + self.nce_weight * nce + self.match_weight * match \
            + self.mi_weight * mi
        if self.training:
            self.quantizer.ema_update(torch.cat([g_a, g_b]), torch.cat([idx_a, idx_b]))
        with torch.no_grad():
            agree = (idx_a == idx_b).to(g_a.dtype).mean()
            hit = torch.zeros(self.quantizer.n_codes, dtype=g_a.dtype, device=g_a.device)
            used = hit.index_fill_(0, torch.cat([idx_a, idx_b]), 1.0).mean()
        return loss, {"recon": recon.detach(), "info_nce": nce.detach(), "match": match.detach(),
                      "club_mi": mi.detach(), "code_agreement": agree, "code_usage": used}


class UniCode(AlignmentEstimator):
    r"""UniCode alignment with a shared EMA codebook, CLUB disentangling and optional TOC.

    Parameters
    ----------
    dim : int
        :math:`D`, width of the general part and of the codes (32; Xia et al. use 256).
    n_codes : int
        :math:`L` (400, Xia et al.).
    specific_dim : int
        Width of the modality-specific part (16).
    hidden : int or None
        Hidden width of the encoders/decoders (one ReLU layer); None: linear.
    decay, commitment, dead_code_fraction :
        Codebook options (0.99, 0.25, 0.01; see :class:`VectorQuantizer`).
    temperature : float
        InfoNCE temperature between general parts (0.07, CLIP's initial value).
    nce_weight, match_weight, mi_weight : float
        Loss weights (1, 1, 0.1: the MI bound is a regulariser, kept small as in
        Xia et al.'s DCID).
    club_steps : int
        Inner CLUB estimator steps per main step (5).
    club_lr, club_hidden :
        Adam learning rate (1e-3) and hidden width (64) of the CLUB network.
    cross_reconstruction : bool
        Also decode each view from the partner's code (True).
    toc_k : int or None
        After training, keep the TOC top-``toc_k`` codebook dimensions for the
        embeddings (None: all :math:`D`).
    toc_weights : (float, float)
        :math:`(w_{\mathrm{sim}}, w_{\mathrm{var}}) = (0.7, 0.3)`.
    embed : {"general", "quantized"}
        Embed with the continuous general part (default; quantised codes tie
        whenever two samples share a code, which makes rankings arbitrary) or
        with its code.
    max_epochs, batch_size, lr, weight_decay, optimizer, trainer_options, dtype, device,
    random_state :
        As in :class:`~geoalign.models.contrastive.LinearContrastive`.

    Attributes
    ----------
    toc_ : TOCSelection or None

    Notes
    -----
    The defaults of ``dim``, ``specific_dim`` (and ``n_codes``, ``max_epochs``,
    ``batch_size``) are the choice of ``benchmarks/select_defaults.py`` (stored in
    ``benchmarks/select_defaults_results.json``): a grid over ``dim`` (32, 256) x
    ``specific_dim`` (16, 64) x ``max_epochs`` (25, 50), with 400 codes and batches of
    256, scored by class-disjoint validation on the seen classes of three digits
    two-view problems (mean held-out-class mAP@all).  It holds the previous defaults
    (256, 64, 50 epochs), which validated 0.687 against 0.698; the eight candidates
    span 0.678-0.698, so the choice is a narrow one.  The test classes were not used
    to choose: on the unseen classes 7-9 (5 seeds, left <-> right, top <-> bottom,
    pixels <-> gradient histograms) these defaults reach mAP@all 0.514 / 0.458 /
    0.633, the previous ones 0.524 / 0.483 / 0.643, CCA tuned on the test classes
    0.518 / 0.457 / 0.680.
    """

    def __init__(self, dim: int = 32, n_codes: int = 400, specific_dim: int = 16,
                 hidden: int | None = 256, decay: float = 0.99, commitment: float = 0.25,
                 dead_code_fraction: float = 0.01, temperature: float = 0.07,
                 nce_weight: float = 1.0, match_weight: float = 1.0, mi_weight: float = 0.1,
                 club_steps: int = 5, club_lr: float = 1e-3, club_hidden: int = 64,
                 cross_reconstruction: bool = True, toc_k: int | None = None,
                 toc_weights: tuple = (0.7, 0.3), embed: str = "general", max_epochs: int = 50,
                 batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 0.0,
                 optimizer: str = "adam", trainer_options: dict | None = None,
                 dtype: str = "float32", device=None, random_state: int | None = None):
        self.dim = dim
        self.n_codes = n_codes
        self.specific_dim = specific_dim
        self.hidden = hidden
        self.decay = decay
        self.commitment = commitment
        self.dead_code_fraction = dead_code_fraction
        self.temperature = temperature
        self.nce_weight = nce_weight
        self.match_weight = match_weight
        self.mi_weight = mi_weight
        self.club_steps = club_steps
        self.club_lr = club_lr
        self.club_hidden = club_hidden
        self.cross_reconstruction = cross_reconstruction
        self.toc_k = toc_k
        self.toc_weights = toc_weights
        self.embed = embed
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.trainer_options = trainer_options
        self.dtype = dtype
        self.device = device
        self.random_state = random_state

    def _build_module(self, n_features_a, n_features_b, X_a, X_b, y):
        dim = check_int(self.dim, "dim", minimum=1)
        decay = check_nonnegative_scalar(self.decay, "decay")
        if decay >= 1:
            raise ValueError(f"decay must be in [0, 1), got {self.decay}")
        toc_k = None if self.toc_k is None else check_int(self.toc_k, "toc_k", minimum=1, maximum=dim)
        if len(tuple(self.toc_weights)) != 2:
            raise ValueError(f"toc_weights must be (w_sim, w_var), got {self.toc_weights!r}")
        module = UniCodeModule(
            n_features_a, n_features_b, dim, check_int(self.specific_dim, "specific_dim", minimum=1),
            None if not self.hidden else check_int(self.hidden, "hidden", minimum=1),
            check_int(self.n_codes, "n_codes", minimum=2), decay,
            check_nonnegative_scalar(self.commitment, "commitment"),
            check_nonnegative_scalar(self.dead_code_fraction, "dead_code_fraction"),
            check_positive_scalar(self.temperature, "temperature"),
            check_nonnegative_scalar(self.nce_weight, "nce_weight"),
            check_nonnegative_scalar(self.match_weight, "match_weight"),
            check_nonnegative_scalar(self.mi_weight, "mi_weight"),
            check_int(self.club_steps, "club_steps", minimum=1),
            check_positive_scalar(self.club_lr, "club_lr"),
            check_int(self.club_hidden, "club_hidden", minimum=1),
            bool(self.cross_reconstruction), toc_k,
            check_choice(self.embed, "embed", ("general", "quantized")))
        module.encoder_a.fit_statistics(X_a)
        module.encoder_b.fit_statistics(X_b)
        return module

    def fit(self, X_a, X_b, y=None, val_data=None) -> "UniCode":
        """Train (see :meth:`AlignmentEstimator.fit`), then apply TOC when ``toc_k`` is set."""
        super().fit(X_a, X_b, y, val_data)
        self.toc_ = None
        if self.toc_k is not None:
            w_sim, w_var = self.toc_weights
            self.toc_ = self.module_.apply_toc(int(self.toc_k), w_sim, w_var)
        return self
