r"""QSMA — Quasi-Stochastic Manifold Alignment (docs/design/mathematics.md, QSMA).

Each modality :math:`m \in \{a, b\}` has an encoder (MLP, hierarchical
attention pooling over tokens/patches within groups and then over groups, or a
small CNN for image-like inputs, :class:`ConvEncoder`) with a mean and a
log-variance head,

.. math:: (\mu^m_i, \log\sigma^{m\,2}_i) = \mathrm{heads}_m(\mathrm{enc}_m(x^m_i)),
          \qquad \mu, \sigma \in \mathbb{R}^d .

**Quasi-stochastic samples.**  One Owen-scrambled Sobol net of :math:`K`
points in :math:`(0, 1)^d` is built with the module; at every step each item
(of each view) gets its own uniform random *digital shift* :math:`s_i` of it,
:math:`u_{ik} = v_k \oplus s_i` (bitwise XOR).  A digital shift maps a
:math:`(t, m, d)`-net onto a :math:`(t, m, d)`-net and makes every point
uniform, so each item still gets its own randomised low-discrepancy set (when
:math:`K = 2^m`, every coordinate hits each of the :math:`K` strata once)
without constructing a Sobol engine per step.  With :math:`\Phi^{-1}` the
standard normal quantile,

.. math:: z^m_{ik} = \pi\bigl(\mu^m_i + \sigma^m_i \odot \Phi^{-1}(u_{ik})\bigr),
          \qquad k = 1..K,

where :math:`\pi` maps onto the latent manifold: :math:`\pi(v) = v/\|v\|` on the
unit sphere :math:`S^{d-1}` (default) or :math:`\pi(v) = \exp_0(v) =
\tanh(\|v\|)\,v/\|v\|` on the Poincaré ball (``latent="poincare"``).  The
shared embedding used at inference is the deterministic :math:`\bar z^m_i =
\pi(\mu^m_i)`.

**Loss** (every term has a weight ``lambda_*`` and a switch ``use_*``):

.. math::

    \mathcal L = \lambda_C \frac1K\sum_k \mathrm{InfoNCE}_s(z^a_{\cdot k}, z^b_{\cdot k}; y)
      + \lambda_W\, \mathcal W(\{\bar z^a_i\}, \{\bar z^b_i\})
      + \lambda_B\, \mathcal B + \lambda_{KL}\, \mathrm{KL}
      + \lambda_\perp\, \mathcal O + \lambda_R\, \mathcal R + \lambda_S\, \mathcal S .

* *Dynamic contrastive* term: symmetric InfoNCE with logits
  :math:`s\,\mathrm{sim}(z^a_{ik}, z^b_{jk})` (cosine on the sphere, minus the
  hyperbolic distance on the ball) and a learnable logit scale
  :math:`s = 1/\tau` clamped to :math:`[1/\tau_{\max}, 1/\tau_{\min}]`; with
  labels, every same-class pair is a positive (soft targets).
* *Alignment* :math:`\mathcal W`: between the two batch distributions, either
  the squared sliced Wasserstein distance :math:`\mathrm{SW}_2^2` with Sobol
  directions (a cached scrambled net, digitally shifted every step, through
  :math:`\Phi^{-1}` and normalised; ``alignment="sliced"``, default: cheap) or the debiased
  Sinkhorn divergence :math:`S_\varepsilon` (``alignment="sinkhorn"``), both
  from :mod:`geoalign.ot` and differentiable.
* *Barycentric projection* :math:`\mathcal B`: an entropic plan :math:`P`
  between the batches (cost :math:`1 - \langle \bar z^a_i, \bar z^b_j\rangle`,
  or the squared hyperbolic distance; no gradient through :math:`P`) gives the
  barycentric images :math:`T(\bar z^a_i) = \pi_M(\sum_j P_{ij}\bar z^b_j /
  \sum_j P_{ij})` (:math:`\pi_M` = projection onto the manifold) and likewise
  for :math:`b` (on the sphere with :math:`2/\varepsilon` moderate, Sinkhorn runs
  in its scaling form, which gives the same iterates as the log domain at two
  mat-vecs per iteration); each point is pulled towards the geodesic midpoint
  :math:`m_i = \gamma_{\bar z^a_i \to T(\bar z^a_i)}(1/2)` held fixed:
  :math:`\mathcal B = \frac12\bigl(\overline{\|\bar z^a_i - m^a_i\|^2} +
  \overline{\|\bar z^b_j - m^b_j\|^2}\bigr)` (squared chordal distance: smooth
  where the geodesic distance is not).
* :math:`\mathrm{KL} = \frac12\,\overline{\sum_l(\mu_l^2 + \sigma_l^2 - 1 - \log\sigma_l^2)}`
  per modality, averaged (:math:`\mathrm{KL}(N(\mu,\sigma^2)\,\|\,N(0, I))`).
* *Shared/private* (``private_dim > 0``): private heads :math:`p^m_i` with the
  orthogonality penalty :math:`\mathcal O = \|\hat M^\top \hat P\|_F^2/(d\,d_p)`
  (batch-centred, column-normalised shared means :math:`\hat M` and private codes
  :math:`\hat P`, as in Domain Separation Networks) and a linear reconstruction
  :math:`\mathcal R` of the standardised input from :math:`[\mu, p]` so that the
  private heads carry what the shared part leaves out (without it, the penalty
  is minimised by private codes that vanish).
* *Consistency* :math:`\mathcal S`: any object with ``loss(z_a, z_b) -> tensor``
  (e.g. ``geoalign.models.sspc.SSPCRegularizer``) applied to
  :math:`(\bar z^a, \bar z^b)`; an ``nn.Module`` is trained with the model.

Inference: :meth:`QSMA.transform_a`/:meth:`QSMA.transform_b` give
:math:`\bar z`; :meth:`QSMA.predict_zsl` classifies by the nearest class
prototype; :meth:`QSMA.evaluate_gzsl` uses calibrated stacking with
:math:`\gamma` chosen on validation data (:mod:`geoalign.evaluation`).
"""
from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._backend import is_torch, like, to_numpy
from .._validation import (check_array, check_choice, check_int, check_nonnegative_scalar,
                           check_positive_scalar)
from .base import AlignmentEstimator, register_model
from .encoders import AttentionPool, ConvEncoder, HierarchicalAttentionEncoder, MLPEncoder
from .losses import kl_to_standard_normal, symmetric_info_nce
from .sampling import digitally_shifted_normal, random_shifts, scrambled_sobol_bits, sobol_normal

__all__ = [
    "QSMA",
    "QSMAModule",
    "MLPEncoder",
    "HierarchicalAttentionEncoder",
    "ConvEncoder",
    "AttentionPool",
    "sobol_normal",
    "scrambled_sobol_bits",
    "digitally_shifted_normal",
    "kl_to_standard_normal",
]

ALIGNMENTS = ("sliced", "sinkhorn")
LATENTS = ("sphere", "poincare")
ENCODERS = ("mlp", "attention", "conv")
_LOGVAR_RANGE = (-10.0, 6.0)  # keeps sigma in [7e-3, 20]: no overflow of exp, no collapse to 0


# ----------------------------------------------------------------------------- module
class QSMAModule(nn.Module):
    """The torch module of :class:`QSMA` (follows the :mod:`geoalign.train` model contract).

    ``embed_a``/``embed_b`` return the deterministic shared embeddings
    :math:`\\pi(\\mu)`; ``encode_a``/``encode_b`` return ``(mu, logvar)``;
    ``training_loss`` returns the total loss and every term (see the module docstring).
    """

    def __init__(self, encoder_a: nn.Module, encoder_b: nn.Module, n_features_a: int,
                 n_features_b: int, dim: int, *, latent: str = "sphere", n_samples: int = 8,
                 temperature: float = 0.07, min_temperature: float = 0.01,
                 max_temperature: float = 1.0, learnable_temperature: bool = True,
                 use_labels: bool = True, use_contrastive: bool = True,
                 lambda_contrastive: float = 1.0, alignment: str = "sliced",
                 use_alignment: bool = True, lambda_alignment: float = 0.1,
                 n_projections: int = 64, ot_reg: float = 0.05, sinkhorn_iters: int = 50,
                 use_barycentric: bool = True, lambda_barycentric: float = 0.1,
                 use_kl: bool = True, lambda_kl: float = 1e-3, private_dim: int = 0,
                 lambda_orthogonality: float = 0.1, lambda_reconstruction: float = 1.0,
                 consistency: Any = None, lambda_consistency: float = 1.0):
        super().__init__()
        from ..manifolds import Hyperbolic, Sphere

        self.encoder_a, self.encoder_b = encoder_a, encoder_b
        self.dim = dim
        self.latent = latent
        self.manifold = Sphere(dim=dim - 1, validate=False) if latent == "sphere" else \
            Hyperbolic(dim, model="poincare", validate=False)
        self.mu_a = nn.Linear(encoder_a.out_features, dim)
        self.mu_b = nn.Linear(encoder_b.out_features, dim)
        self.logvar_a = nn.Linear(encoder_a.out_features, dim)
        self.logvar_b = nn.Linear(encoder_b.out_features, dim)
        for head in (self.logvar_a, self.logvar_b):  # start with small, equal uncertainty
            nn.init.zeros_(head.weight)
            nn.init.constant_(head.bias, -4.0)
        self.private_dim = private_dim
        if private_dim > 0:
            self.private_a = nn.Linear(encoder_a.out_features, private_dim)
            self.private_b = nn.Linear(encoder_b.out_features, private_dim)
            self.decoder_a = nn.Linear(dim + private_dim, n_features_a)
            self.decoder_b = nn.Linear(dim + private_dim, n_features_b)
        log_scale = torch.tensor(math.log(1.0 / temperature))
        if learnable_temperature:
            self.log_logit_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_logit_scale", log_scale)
        self.log_scale_range = (math.log(1.0 / max_temperature), math.log(1.0 / min_temperature))
        self.n_samples = n_samples
        self.use_labels = use_labels
        self.use_contrastive, self.lambda_contrastive = use_contrastive, lambda_contrastive
        self.alignment = alignment
        self.use_alignment, self.lambda_alignment = use_alignment, lambda_alignment
        self.n_projections, self.ot_reg, self.sinkhorn_iters = n_projections, ot_reg, sinkhorn_iters
        self.use_barycentric, self.lambda_barycentric = use_barycentric, lambda_barycentric
        self.use_kl, self.lambda_kl = use_kl, lambda_kl
        self.lambda_orthogonality = lambda_orthogonality
        self.lambda_reconstruction = lambda_reconstruction
        self.consistency = consistency  # an nn.Module becomes a submodule (trained with the model)
        self.lambda_consistency = lambda_consistency
        # One Owen-scrambled Sobol net per use, built once (drawn last so that the weight
        # initialisation does not depend on it); every step re-randomises it by digital shifts.
        # Not persistent: rebuilt from the same seed by fit, so exact resume is unaffected.
        seed = int(torch.randint(0, 2 ** 31 - 2, (1,)))
        if n_samples > 0:
            self.register_buffer("sample_net", scrambled_sobol_bits(n_samples, dim, seed),
                                 persistent=False)
        if alignment == "sliced":
            self.register_buffer("direction_net", scrambled_sobol_bits(n_projections, dim, seed + 1),
                                 persistent=False)

    # -- geometry -------------------------------------------------------------------
    def to_manifold(self, v: torch.Tensor) -> torch.Tensor:
        """:math:`\\pi(v)`: normalise onto the sphere, or :math:`\\exp_0` onto the Poincaré ball."""
        if self.latent == "sphere":
            return F.normalize(v, dim=-1)
        n = v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return self.manifold.projx(torch.tanh(n) * v / n)

    def similarity(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        """Pairwise similarities ``[..., n, d] x [..., m, d] -> [..., n, m]``."""
        if self.latent == "sphere":
            return z_a @ z_b.transpose(-1, -2)
        return -self.manifold.dist(z_a.unsqueeze(-2), z_b.unsqueeze(-3))

    def logit_scale(self) -> torch.Tensor:
        lo, hi = self.log_scale_range
        return self.log_logit_scale.clamp(lo, hi).exp()

    # -- encoding -------------------------------------------------------------------
    def encode_a(self, x: torch.Tensor):
        h = self.encoder_a(x)
        return h, self.mu_a(h), self.logvar_a(h).clamp(*_LOGVAR_RANGE)

    def encode_b(self, x: torch.Tensor):
        h = self.encoder_b(x)
        return h, self.mu_b(h), self.logvar_b(h).clamp(*_LOGVAR_RANGE)

    def embed_a(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_manifold(self.encode_a(x)[1])

    def embed_b(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_manifold(self.encode_b(x)[1])

    # -- loss terms -----------------------------------------------------------------
    def _contrastive(self, z_a: torch.Tensor, z_b: torch.Tensor, y) -> torch.Tensor:
        # z: [K, B, d] -> K batched InfoNCE problems of size B x B
        if self.latent == "sphere":  # scale the [K, B, d] factor, not the [K, B, B] logits
            logits = torch.bmm(self.logit_scale() * z_a, z_b.transpose(1, 2))
        else:
            logits = self.logit_scale() * self.similarity(z_a, z_b)
        return symmetric_info_nce(logits, y)

    def sliced_directions(self, device=None) -> torch.Tensor:
        r"""This step's ``n_projections`` unit directions, shape=[L, d]: the cached scrambled
        Sobol net, digitally shifted (one fresh shift per call), through :math:`\Phi^{-1}`, normalised."""
        net = self.direction_net
        eps = digitally_shifted_normal(net, random_shifts(1, self.dim, net.device),
                                       self.mu_a.weight.dtype)[:, 0]
        return F.normalize(eps, dim=-1).to(device=device)

    def _alignment(self, m_a: torch.Tensor, m_b: torch.Tensor) -> torch.Tensor:
        from ..ot import sinkhorn_divergence

        if self.alignment == "sliced":
            # SW_2^2 of two equal-size uniform clouds: mean over directions of the 1-D W_2^2,
            # i.e. of the squared differences of the sorted projections
            theta = self.sliced_directions(m_a.device).to(m_a.dtype)
            pa = torch.sort(m_a @ theta.T, dim=0).values
            pb = torch.sort(m_b @ theta.T, dim=0).values
            return (pa - pb).pow(2).mean()
        # latent points have norm <= 1, so the cost |x - y|^2 / 2 is at most 2: with that bound
        # and trusted values the divergence never waits for the device
        return sinkhorn_divergence(m_a, m_b, reg=self.ot_reg, p=2, max_iter=self.sinkhorn_iters,
                                   warn=False, diameter=2.0, validate=False).value

    def _cost(self, m_a: torch.Tensor, m_b: torch.Tensor) -> torch.Tensor:
        if self.latent == "sphere":
            return 1.0 - m_a @ m_b.T
        return self.manifold.dist(m_a.unsqueeze(-2), m_b.unsqueeze(-3)).pow(2)

    def barycentric_midpoints(self, m_a: torch.Tensor, m_b: torch.Tensor):
        """Geodesic midpoints of each point and its OT barycentric image (no gradient).

        Returns ``(mid_a, mid_b, plan)`` with shapes ``[n, d]``, ``[m, d]``, ``[n, m]``.
        """
        from ..ot import sinkhorn
        from ..ot._core import scaling_iterations

        with torch.no_grad():
            a, b = m_a.detach(), m_b.detach()
            cost = self._cost(a, b)
            # sphere costs lie in [0, 2]: when 2/eps is moderate the Gibbs kernel exp(-C/eps)
            # neither underflows nor lets the scalings overflow, and the scaling form
            # (two mat-vecs per iteration, same iterates as the log domain) is much cheaper
            limit = 500.0 if cost.dtype == torch.float64 else 50.0
            if self.latent == "sphere" and 2.0 / self.ot_reg <= limit:
                kernel = torch.exp(cost / -self.ot_reg)[None]
                n, m = kernel.shape[1:]
                u = torch.ones(1, 1, n, dtype=cost.dtype, device=cost.device)
                uniform = lambda k: torch.full((1, 1, k), 1.0 / k, dtype=cost.dtype, device=cost.device)
                # the Sinkhorn core's scaling iterations, uniform marginals, no host sync; torch's
                # products on every device (training keeps tensors off NumPy)
                u, v = scaling_iterations(u, kernel, uniform(n), uniform(m), self.sinkhorn_iters,
                                          host=False)
                plan = (u.transpose(1, 2) * kernel * v)[0]
            else:
                plan = sinkhorn(None, None, cost, reg=self.ot_reg, max_iter=self.sinkhorn_iters,
                                tol=0.0, warn=False, validate=False).plan
            img_a = (plan @ b) / plan.sum(1, keepdim=True).clamp_min(1e-30)
            img_b = (plan.T @ a) / plan.sum(0)[:, None].clamp_min(1e-30)
            img_a, img_b = self.manifold.projx(img_a), self.manifold.projx(img_b)
            mid_a = self.manifold.geodesic(a, img_a, 0.5)
            mid_b = self.manifold.geodesic(b, img_b, 0.5)
        return mid_a, mid_b, plan

    @staticmethod
    def _orthogonality(shared: torch.Tensor, private: torch.Tensor) -> torch.Tensor:
        s = F.normalize(shared - shared.mean(0), dim=0)
        p = F.normalize(private - private.mean(0), dim=0)
        return (s.T @ p).pow(2).sum() / (s.shape[1] * p.shape[1])

    def set_unpaired(self, unpaired_a: torch.Tensor | None, unpaired_b: torch.Tensor | None,
                     per_step: int = 0) -> None:
        r"""Attach (or with ``None``, detach) unpaired inputs of each view for training.

        While training, every step draws ``k = min(per_step, n_a, n_b)`` rows of
        each (uniformly, without replacement, on the buffers' device), embeds them
        and appends them to the batch's means for the alignment :math:`\mathcal W`
        and barycentric :math:`\mathcal B` terms (the contrastive and KL terms use
        the pairs only).  The buffers are not persistent (never saved).
        """
        for name, value in (("unpaired_a", unpaired_a), ("unpaired_b", unpaired_b)):
            if name in self._buffers:
                del self._buffers[name]
            if value is not None:
                self.register_buffer(name, value, persistent=False)
        self.unpaired_per_step = int(per_step) if unpaired_a is not None else 0

    def _with_unpaired(self, m_a: torch.Tensor, m_b: torch.Tensor):
        """The batch means, with this step's unpaired draws appended (training only)."""
        ua, ub = self._buffers.get("unpaired_a"), self._buffers.get("unpaired_b")
        if not self.training or ua is None or ub is None or not (self.use_alignment or self.use_barycentric):
            return m_a, m_b
        k = min(getattr(self, "unpaired_per_step", 0), ua.shape[0], ub.shape[0])
        if k == 0:
            return m_a, m_b
        ia = torch.randperm(ua.shape[0], device=ua.device)[:k]
        ib = torch.randperm(ub.shape[0], device=ub.device)[:k]
        return (torch.cat([m_a, self.to_manifold(self.encode_a(ua[ia])[1])]),
                torch.cat([m_b, self.to_manifold(self.encode_b(ub[ib])[1])]))

    def loss_terms(self, batch) -> dict:
        """Every active loss term (unweighted) of a batch ``(x_a, x_b[, y])``, plus the total."""
        x_a, x_b = batch[0], batch[1]
        y = batch[2] if len(batch) > 2 and self.use_labels else None
        h_a, mu_a, lv_a = self.encode_a(x_a)
        h_b, mu_b, lv_b = self.encode_b(x_b)
        m_a, m_b = self.to_manifold(mu_a), self.to_manifold(mu_b)
        terms: dict = {}
        total = mu_a.new_zeros(())
        if self.use_contrastive:
            if self.training and self.n_samples > 0:
                # each item (of either view) gets its own digital shift of the cached net
                B = mu_a.shape[0]
                shifts = random_shifts(2 * B, self.dim, self.sample_net.device)
                eps = digitally_shifted_normal(self.sample_net, shifts, mu_a.dtype)  # [K, 2B, d]
                z_a = self.to_manifold(torch.addcmul(mu_a, (0.5 * lv_a).exp(), eps[:, :B]))
                z_b = self.to_manifold(torch.addcmul(mu_b, (0.5 * lv_b).exp(), eps[:, B:]))
            else:
                z_a, z_b = m_a[None], m_b[None]
            terms["contrastive"] = self._contrastive(z_a, z_b, y)
            total = total + self.lambda_contrastive * terms["contrastive"]
        # semi-paired / transductive: unpaired samples of each view join the distribution terms
        w_a, w_b = self._with_unpaired(m_a, m_b)
        if self.use_alignment:
            terms["alignment"] = self._alignment(w_a, w_b)
            total = total + self.lambda_alignment * terms["alignment"]
        if self.use_barycentric:
            mid_a, mid_b, _ = self.barycentric_midpoints(w_a, w_b)
            terms["barycentric"] = 0.5 * ((w_a - mid_a).pow(2).sum(-1).mean()
                                          + (w_b - mid_b).pow(2).sum(-1).mean())
            total = total + self.lambda_barycentric * terms["barycentric"]
        if self.use_kl:
            terms["kl"] = 0.5 * (kl_to_standard_normal(mu_a, lv_a) + kl_to_standard_normal(mu_b, lv_b))
            total = total + self.lambda_kl * terms["kl"]
        if self.private_dim > 0:
            p_a, p_b = self.private_a(h_a), self.private_b(h_b)
            terms["orthogonality"] = 0.5 * (self._orthogonality(mu_a, p_a) + self._orthogonality(mu_b, p_b))
            rec_a = self.decoder_a(torch.cat([mu_a, p_a], -1))
            rec_b = self.decoder_b(torch.cat([mu_b, p_b], -1))
            terms["reconstruction"] = 0.5 * (
                (rec_a - self.encoder_a.standardize(x_a)).pow(2).mean()
                + (rec_b - self.encoder_b.standardize(x_b)).pow(2).mean())
            total = (total + self.lambda_orthogonality * terms["orthogonality"]
                     + self.lambda_reconstruction * terms["reconstruction"])
        if self.consistency is not None:
            terms["consistency"] = self.consistency.loss(m_a, m_b)
            total = total + self.lambda_consistency * terms["consistency"]
        terms["total"] = total
        return terms

    def training_loss(self, batch):
        terms = self.loss_terms(batch)
        total = terms.pop("total")
        terms = {k: v.detach() for k, v in terms.items()}
        terms["logit_scale"] = self.logit_scale().detach()
        return total, terms

    def param_groups(self) -> list[dict]:
        # no weight decay on the temperature
        temp = [p for n, p in self.named_parameters() if n == "log_logit_scale"]
        rest = [p for n, p in self.named_parameters() if n != "log_logit_scale" and p.requires_grad]
        groups = [{"params": rest}]
        if temp:
            groups.append({"params": temp, "weight_decay": 0.0})
        return groups


# ----------------------------------------------------------------------------- estimator
class QSMA(AlignmentEstimator):
    r"""Quasi-Stochastic Manifold Alignment (estimator; see the module docstring for the maths).

    Parameters
    ----------
    dim : int
        Latent dimension :math:`d` (points on :math:`S^{d-1}` or in the
        :math:`d`-dimensional Poincaré ball).
    hidden : int
        Width of the encoders' output (and MLP hidden layers).
    n_layers : int
        Hidden layers of an MLP encoder.
    encoder_a, encoder_b : {"mlp", "attention", "conv"}
        Per-modality encoder; ``"attention"`` is
        :class:`HierarchicalAttentionEncoder` (needs ``group_size``), ``"conv"``
        is :class:`ConvEncoder` for image-like inputs (needs ``input_shape_a``/``_b``).
    group_size : int, optional
        Tokens per group for attention encoders (e.g. 4 = one row of a digits half).
    token_features : int
        Features per token (patch size) for attention encoders without a vocabulary.
    vocab_size_a, vocab_size_b : int, optional
        For attention encoders on integer inputs: ring coefficients / token ids
        in ``[0, vocab_size)`` (e.g. 17 for digits over :math:`\mathbb{Z}_{17}`).
        Checked on ``fit`` and ``transform``.
    embed_dim : int
        Token/group width of attention encoders.
    input_shape_a, input_shape_b : tuple of int, optional
        ``(H, W)`` or ``(C, H, W)`` of a view's flat, row-major input for a conv
        encoder (e.g. ``(8, 4)`` for a half of an 8x8 digit).
    conv_channels : tuple of int
        Channels of the 3x3 convolution blocks of conv encoders.
    latent : {"sphere", "poincare"}
    n_samples : int
        :math:`K` scrambled-Sobol samples per item (0: contrastive on the means only).
    temperature, min_temperature, max_temperature : float
        Initial temperature and the clamp of the learnable one.
    learnable_temperature : bool
    use_labels : bool
        Same-class pairs are contrastive positives when ``y`` is given.  Off by
        default: on class-disjoint validation it lowered held-out-class mAP@all on
        every one of three digits two-view problems, by 0.07 to 0.11 (best
        candidate with labels against best without; see *Defaults*), because
        labels-as-positives collapse each *seen* class and transfer less to new
        ones.  With the default, passing ``y`` changes nothing.
    use_contrastive, lambda_contrastive : bool, float
    alignment : {"sliced", "sinkhorn"}
        :math:`\mathrm{SW}_2^2` with Sobol directions, or debiased Sinkhorn divergence.
    use_alignment, lambda_alignment : bool, float
    n_projections : int
        Directions of the sliced Wasserstein term.
    ot_reg : float
        Entropic :math:`\varepsilon` of the Sinkhorn divergence and of the barycentric plan.
    sinkhorn_iters : int
        Sinkhorn iterations per step (barycentric plan; divergence updates).
    use_barycentric, lambda_barycentric : bool, float
    use_kl, lambda_kl : bool, float
    private_dim : int
        Width of the private heads (0: none).  Enables the orthogonality and
        reconstruction terms.
    lambda_orthogonality, lambda_reconstruction : float
    consistency : object with ``loss(z_a, z_b) -> tensor``, optional
        E.g. an SSPC regulariser.  Used for training only: :meth:`save` does
        not store it (a loaded model has ``consistency=None``).
    lambda_consistency : float
    dropout : float
    max_epochs, batch_size, lr, weight_decay, optimizer, trainer_options, dtype, device, random_state :
        As for every :class:`~geoalign.models.base.AlignmentEstimator`.

    Attributes
    ----------
    module_ : QSMAModule
    history_ : geoalign.train.TrainingHistory
    n_features_a_, n_features_b_, seed_ : int

    Notes
    -----
    *Defaults.*  ``dim=32, hidden=256, n_layers=2, dropout=0.2, use_labels=False,
    lambda_alignment=0.1, max_epochs=30, batch_size=128`` are the choice of
    ``benchmarks/select_defaults.py`` (results in
    ``benchmarks/select_defaults_results.json``): a grid over ``use_labels`` x
    ``dropout`` x ``lambda_alignment`` (12 settings) scored by
    :class:`geoalign.model_selection.ClassDisjointSearchCV` (3 folds of seen
    classes) on three two-view problems from the digits images (left <-> right
    half, top <-> bottom half, pixels <-> gradient-orientation histograms), the
    best mean over the three.  The test classes were not used to choose.
    ``lambda_alignment`` made no difference there (0.1, 1 and 3 within 0.0007);
    ``use_labels=False`` and ``dropout=0.2`` did.  On the unseen classes 7-9
    (5 seeds) these defaults reach mAP@all 0.540 / 0.472 / 0.624 on the three
    problems, against 0.372 / 0.358 / 0.511 for the previous defaults
    (``dim=64, use_labels=True, dropout=0, max_epochs=50, batch_size=256``)
    and 0.518 / 0.457 / 0.680 for CCA tuned on the test classes themselves.

    Examples
    --------
    >>> model = QSMA(dim=16, max_epochs=20, random_state=0,
    ...              trainer_options={"progress": False})        # doctest: +SKIP
    >>> Z_a = model.fit(X_a, X_b, y).transform_a(X_a)            # doctest: +SKIP
    """

    def __init__(self, dim: int = 32, hidden: int = 256, n_layers: int = 2,
                 encoder_a: str = "mlp", encoder_b: str = "mlp", group_size: int | None = None,
                 token_features: int = 1, vocab_size_a: int | None = None,
                 vocab_size_b: int | None = None, embed_dim: int = 64,
                 input_shape_a: tuple | None = None, input_shape_b: tuple | None = None,
                 conv_channels: tuple = (32, 64), latent: str = "sphere",
                 n_samples: int = 8, temperature: float = 0.07, min_temperature: float = 0.01,
                 max_temperature: float = 1.0, learnable_temperature: bool = True,
                 use_labels: bool = False, use_contrastive: bool = True,
                 lambda_contrastive: float = 1.0, alignment: str = "sliced",
                 use_alignment: bool = True, lambda_alignment: float = 0.1,
                 n_projections: int = 64, ot_reg: float = 0.05, sinkhorn_iters: int = 50,
                 use_barycentric: bool = True, lambda_barycentric: float = 0.1,
                 use_kl: bool = True, lambda_kl: float = 1e-3, private_dim: int = 0,
                 lambda_orthogonality: float = 0.1, lambda_reconstruction: float = 1.0,
                 consistency: Any = None, lambda_consistency: float = 1.0, dropout: float = 0.2,
                 max_epochs: int = 30, batch_size: int = 128, lr: float = 1e-3,
                 weight_decay: float = 0.0, optimizer: str = "adam",
                 trainer_options: dict | None = None, dtype: str = "float32", device=None,
                 random_state: int | None = None):
        self.dim = dim
        self.hidden = hidden
        self.n_layers = n_layers
        self.encoder_a = encoder_a
        self.encoder_b = encoder_b
        self.group_size = group_size
        self.token_features = token_features
        self.vocab_size_a = vocab_size_a
        self.vocab_size_b = vocab_size_b
        self.embed_dim = embed_dim
        self.input_shape_a = input_shape_a
        self.input_shape_b = input_shape_b
        self.conv_channels = conv_channels
        self.latent = latent
        self.n_samples = n_samples
        self.temperature = temperature
        self.min_temperature = min_temperature
        self.max_temperature = max_temperature
        self.learnable_temperature = learnable_temperature
        self.use_labels = use_labels
        self.use_contrastive = use_contrastive
        self.lambda_contrastive = lambda_contrastive
        self.alignment = alignment
        self.use_alignment = use_alignment
        self.lambda_alignment = lambda_alignment
        self.n_projections = n_projections
        self.ot_reg = ot_reg
        self.sinkhorn_iters = sinkhorn_iters
        self.use_barycentric = use_barycentric
        self.lambda_barycentric = lambda_barycentric
        self.use_kl = use_kl
        self.lambda_kl = lambda_kl
        self.private_dim = private_dim
        self.lambda_orthogonality = lambda_orthogonality
        self.lambda_reconstruction = lambda_reconstruction
        self.consistency = consistency
        self.lambda_consistency = lambda_consistency
        self.dropout = dropout
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.trainer_options = trainer_options
        self.dtype = dtype
        self.device = device
        self.random_state = random_state

    # -- construction ------------------------------------------------------------------
    def _check_params(self) -> None:
        check_int(self.dim, "dim", minimum=2)
        check_int(self.hidden, "hidden", minimum=1)
        check_int(self.n_layers, "n_layers", minimum=1)
        check_choice(self.encoder_a, "encoder_a", ENCODERS)
        check_choice(self.encoder_b, "encoder_b", ENCODERS)
        check_choice(self.latent, "latent", LATENTS)
        check_choice(self.alignment, "alignment", ALIGNMENTS)
        check_int(self.n_samples, "n_samples", minimum=0)
        check_int(self.n_projections, "n_projections", minimum=1)
        check_int(self.sinkhorn_iters, "sinkhorn_iters", minimum=1)
        check_int(self.private_dim, "private_dim", minimum=0)
        check_int(self.embed_dim, "embed_dim", minimum=1)
        check_int(self.token_features, "token_features", minimum=1)
        t = check_positive_scalar(self.temperature, "temperature")
        lo = check_positive_scalar(self.min_temperature, "min_temperature")
        hi = check_positive_scalar(self.max_temperature, "max_temperature")
        if not lo <= t <= hi:
            raise ValueError(f"need min_temperature <= temperature <= max_temperature, got "
                             f"{lo} <= {t} <= {hi}")
        check_positive_scalar(self.ot_reg, "ot_reg")
        for name in ("lambda_contrastive", "lambda_alignment", "lambda_barycentric", "lambda_kl",
                     "lambda_orthogonality", "lambda_reconstruction", "lambda_consistency"):
            check_nonnegative_scalar(getattr(self, name), name)
        d = check_nonnegative_scalar(self.dropout, "dropout")
        if d >= 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for v in ("a", "b"):
            shape = getattr(self, f"input_shape_{v}")
            if getattr(self, f"encoder_{v}") == "conv":
                if shape is None:
                    raise ValueError(f"input_shape_{v} is required for encoder_{v}='conv' "
                                     "((H, W) or (C, H, W) of the flat input)")
                if (not isinstance(shape, (tuple, list)) or len(shape) not in (2, 3)
                        or not all(isinstance(d, numbers.Integral) and d >= 1 for d in shape)):
                    raise ValueError(f"input_shape_{v} must be (H, W) or (C, H, W) of positive ints, "
                                     f"got {shape!r}")
            elif shape is not None:
                raise ValueError(f"input_shape_{v} is only used with encoder_{v}='conv'")
        if (not isinstance(self.conv_channels, (tuple, list)) or not self.conv_channels
                or not all(isinstance(c, numbers.Integral) and c >= 1 for c in self.conv_channels)):
            raise ValueError(f"conv_channels must be a non-empty tuple of positive ints, "
                             f"got {self.conv_channels!r}")
        if "attention" in (self.encoder_a, self.encoder_b) and self.group_size is None:
            raise ValueError("group_size is required for attention encoders (tokens per group)")
        for v in ("a", "b"):
            vs = getattr(self, f"vocab_size_{v}")
            if vs is not None:
                check_int(vs, f"vocab_size_{v}", minimum=2)
                if getattr(self, f"encoder_{v}") != "attention":
                    raise ValueError(f"vocab_size_{v} needs encoder_{v}='attention' "
                                     "(integer tokens are embedded, not fed to an MLP)")
        if self.consistency is not None and not callable(getattr(self.consistency, "loss", None)):
            raise TypeError("consistency must have a method loss(z_a, z_b) -> tensor, got "
                            f"{type(self.consistency).__name__}")

    def _make_encoder(self, which: str, n_features: int) -> nn.Module:
        kind = getattr(self, f"encoder_{which}")
        if kind == "mlp":
            return MLPEncoder(n_features, self.hidden, self.n_layers, self.dropout)
        if kind == "conv":
            return ConvEncoder(n_features, self.hidden, getattr(self, f"input_shape_{which}"),
                               self.conv_channels, self.dropout)
        return HierarchicalAttentionEncoder(
            n_features, self.hidden, check_int(self.group_size, "group_size", minimum=1),
            self.token_features if getattr(self, f"vocab_size_{which}") is None else 1,
            getattr(self, f"vocab_size_{which}"), self.embed_dim, self.dropout)

    def _build_module(self, n_features_a, n_features_b, X_a, X_b, y):
        self._check_params()
        enc_a = self._make_encoder("a", n_features_a)
        enc_b = self._make_encoder("b", n_features_b)
        unpaired = getattr(self, "_unpaired_fit", None)  # set by fit only, for this build
        if unpaired is not None:  # every input of the view sets the standardisation
            ua, ub = (torch.as_tensor(to_numpy(u), dtype=X.dtype) for u, X in zip(unpaired, (X_a, X_b)))
            enc_a.standardize.fit(torch.cat([X_a, ua]))
            enc_b.standardize.fit(torch.cat([X_b, ub]))
        else:
            enc_a.standardize.fit(X_a)
            enc_b.standardize.fit(X_b)
        module = QSMAModule(
            enc_a, enc_b, n_features_a, n_features_b, self.dim, latent=self.latent,
            n_samples=self.n_samples, temperature=self.temperature,
            min_temperature=self.min_temperature, max_temperature=self.max_temperature,
            learnable_temperature=bool(self.learnable_temperature), use_labels=bool(self.use_labels),
            use_contrastive=bool(self.use_contrastive), lambda_contrastive=self.lambda_contrastive,
            alignment=self.alignment, use_alignment=bool(self.use_alignment),
            lambda_alignment=self.lambda_alignment, n_projections=self.n_projections,
            ot_reg=self.ot_reg, sinkhorn_iters=self.sinkhorn_iters,
            use_barycentric=bool(self.use_barycentric), lambda_barycentric=self.lambda_barycentric,
            use_kl=bool(self.use_kl), lambda_kl=self.lambda_kl, private_dim=self.private_dim,
            lambda_orthogonality=self.lambda_orthogonality,
            lambda_reconstruction=self.lambda_reconstruction, consistency=self.consistency,
            lambda_consistency=self.lambda_consistency)
        if unpaired is not None:
            module.set_unpaired(ua, ub, per_step=self.batch_size)
        return module

    # -- input checks ------------------------------------------------------------------
    def _check_tokens(self, X, which: str, name: str) -> None:
        vs = getattr(self, f"vocab_size_{which}")
        if vs is None:
            return
        arr = to_numpy(check_array(X, name, ndim=2, allow_empty=False))
        if not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold integer coefficients in [0, {vs}) "
                             f"(vocab_size_{which}={vs}), got non-integer values")
        if arr.min() < 0 or arr.max() >= vs:
            raise ValueError(f"{name} must hold coefficients in [0, {vs}) (vocab_size_{which}={vs}), "
                             f"got range [{arr.min()}, {arr.max()}]; reduce modulo {vs} first")

    def fit(self, X_a, X_b, y=None, val_data=None, *, unpaired_a=None, unpaired_b=None) -> "QSMA":
        r"""Train on paired views, optionally with unpaired samples of each view.

        Parameters
        ----------
        X_a : array-like, shape=[n, d_a]
        X_b : array-like, shape=[n, d_b]
            Row ``i`` of ``X_a`` is paired with row ``i`` of ``X_b``.
        y : array-like of int, shape=[n], optional
            Class labels: same-class pairs are contrastive positives when
            ``use_labels=True``.
        val_data : tuple, optional
            See :meth:`AlignmentEstimator.fit`.
        unpaired_a : array-like, shape=[n_a, d_a], optional
        unpaired_b : array-like, shape=[n_b, d_b], optional
            Samples of one view without a partner (semi-paired training), e.g.
            unlabeled inputs of the test classes (transductive training); given
            together.  Every training step draws ``min(batch_size, n_a, n_b)`` of
            each and adds them to the batch for the alignment
            :math:`\mathcal W` and barycentric :math:`\mathcal B` terms; the
            contrastive and KL terms use the pairs only.  They also enter the
            input standardisation.  They have no effect when both of those terms
            are off.

        Returns
        -------
        self
        """
        self._check_params()
        X_a, X_b, y = self._validate_pairs(X_a, X_b, y)
        self._check_tokens(X_a, "a", "X_a")
        self._check_tokens(X_b, "b", "X_b")
        unpaired = self._validate_unpaired(X_a, X_b, unpaired_a, unpaired_b)
        self._unpaired_fit = unpaired
        try:
            super().fit(X_a, X_b, y, val_data=val_data)
        finally:
            self._unpaired_fit = None
        if unpaired is not None:
            self.module_.set_unpaired(None, None)  # training data is not kept in the model
        return self

    def _validate_unpaired(self, X_a, X_b, unpaired_a, unpaired_b):
        """Check the unpaired views: both or neither, 2-D, finite, feature counts and devices of ``X``."""
        from .._backend import device_of

        if unpaired_a is None and unpaired_b is None:
            return None
        if unpaired_a is None or unpaired_b is None:
            missing = "unpaired_a" if unpaired_a is None else "unpaired_b"
            raise ValueError(f"unpaired_a and unpaired_b must be given together; {missing} is missing "
                             "(each view needs its own unpaired inputs)")
        out = []
        for name, U, X in (("unpaired_a", unpaired_a, X_a), ("unpaired_b", unpaired_b, X_b)):
            if device_of(U) != device_of(X):  # before the value checks, which read the data
                raise ValueError(f"{name} must be on the device of X_{name[-1]} ({device_of(X)}), "
                                 f"got {device_of(U)}")
            U = check_array(U, name, ndim=2, allow_empty=False)
            d = tuple(X.shape)[1]
            if tuple(U.shape)[1] != d:
                raise ValueError(f"{name} must have {d} features like X_{name[-1]}, got shape {tuple(U.shape)}")
            self._check_tokens(U, name[-1], name)
            out.append(U)
        return tuple(out)

    def transform_a(self, X):
        """Embed view-a samples, ``X : array-like, shape=[n, d_a]`` -> ``shape=[n, dim]``."""
        self._check_fitted()
        self._check_tokens(X, "a", "X_a")
        return super().transform_a(X)

    def transform_b(self, X):
        """Embed view-b samples, ``X : array-like, shape=[n, d_b]`` -> ``shape=[n, dim]``."""
        self._check_fitted()
        self._check_tokens(X, "b", "X_b")
        return super().transform_b(X)

    # -- zero-shot -----------------------------------------------------------------------
    def class_prototypes(self, class_semantics, class_labels=None, kind: str = "inputs"):
        r"""Class prototypes on the latent manifold.

        Parameters
        ----------
        class_semantics : array-like
            ``kind="inputs"``: **view-b inputs**, shape=[n_s, d_b] — one row per
            class (a class description in view b, e.g. an attribute vector when
            view b is the semantic modality) or, with ``class_labels``, several
            labelled view-b examples per class.  ``kind="prototypes"``: points
            already in the latent space, shape=[C, dim] (projected onto the manifold).
        class_labels : array-like of int, shape=[n_s], optional
            With ``kind="inputs"``: the class of each row; prototypes are the
            Fréchet means of each class's embeddings.
        kind : {"inputs", "prototypes"}

        Returns
        -------
        prototypes : same kind as ``class_semantics``, shape=[C, dim]
        classes : ndarray of int, shape=[C]
            Class id of each prototype (``arange(C)`` without ``class_labels``).
        """
        import torch

        self._check_fitted()
        check_choice(kind, "kind", ("inputs", "prototypes"))
        sem = check_array(class_semantics, "class_semantics", ndim=2, allow_empty=False)
        if kind == "prototypes":
            if tuple(sem.shape)[1] != self.dim:
                raise ValueError(f"class_semantics (prototypes) must have shape (C, {self.dim}), "
                                 f"got {tuple(sem.shape)}")
            if class_labels is not None:
                raise ValueError("class_labels is only used with kind='inputs'")
            t = sem if is_torch(sem) else torch.as_tensor(np.asarray(sem, dtype=np.float64))
            return like(self.module_.manifold.projx(t.to(torch.float64)), sem), \
                np.arange(tuple(sem.shape)[0])
        if tuple(sem.shape)[1] != self.n_features_b_:
            raise ValueError(f"class_semantics must be view-b inputs of shape (n, {self.n_features_b_}) "
                             f"(or pass kind='prototypes' with shape (C, {self.dim})), got "
                             f"{tuple(sem.shape)}")
        Z = self.transform_b(sem)
        if class_labels is None:
            return Z, np.arange(tuple(sem.shape)[0])
        labels = to_numpy(check_array(class_labels, "class_labels", ndim=1))
        if labels.shape[0] != tuple(sem.shape)[0]:
            raise ValueError(f"class_labels must have one label per row of class_semantics: got "
                             f"{labels.shape[0]} labels for {tuple(sem.shape)[0]} rows")
        from ..manifolds import frechet_mean

        classes = np.unique(labels)
        Zt = Z if is_torch(Z) else torch.as_tensor(Z)
        protos = []
        for c in classes:
            idx = torch.as_tensor(np.flatnonzero(labels == c), device=Zt.device)
            # re-project in float64: float32 unit vectors miss the float64 tolerance
            pts = self.module_.manifold.projx(Zt[idx].to(torch.float64))
            protos.append(frechet_mean(pts, self.module_.manifold).mean)
        return like(torch.stack(protos).to(Zt.dtype), Z), classes

    def zsl_scores(self, X, class_semantics, class_labels=None, kind: str = "inputs",
                   view: str = "a"):
        """Similarities of view-``view`` samples to the class prototypes, shape=[n, C].

        See :meth:`class_prototypes` for ``class_semantics``; scores are cosine
        similarities on the sphere and minus the hyperbolic distance on the ball.
        """
        import torch

        check_choice(view, "view", ("a", "b"))
        Z = self.transform_a(X) if view == "a" else self.transform_b(X)
        P, _ = self.class_prototypes(class_semantics, class_labels, kind)
        Zt = Z if is_torch(Z) else torch.as_tensor(Z)
        Pt = (P if is_torch(P) else torch.as_tensor(P)).to(device=Zt.device, dtype=Zt.dtype)
        return like(self.module_.similarity(Zt, Pt), Z)

    def predict_zsl(self, X, class_semantics, class_labels=None, kind: str = "inputs",
                    view: str = "a"):
        """Zero-shot labels: the class of the nearest prototype (see :meth:`class_prototypes`).

        Returns
        -------
        labels : ndarray of int, shape=[n]
            Class ids (``class_labels`` values, or row indices of ``class_semantics``).
        """
        scores = self.zsl_scores(X, class_semantics, class_labels, kind, view)
        _, classes = self.class_prototypes(class_semantics, class_labels, kind)
        return classes[to_numpy(scores).argmax(axis=1)]

    def evaluate_gzsl(self, X_val, y_val, X_test, y_test, class_semantics, seen_classes,
                      class_labels=None, kind: str = "inputs", view: str = "a"):
        """GZSL U/S/H with calibrated stacking, gamma chosen on ``(X_val, y_val)`` only.

        ``y_val``/``y_test`` are class ids among the prototypes' classes;
        ``seen_classes`` lists the classes seen in training.  Returns
        :class:`geoalign.evaluation.GZSLResult`.
        """
        from ..evaluation import evaluate_gzsl

        _, classes = self.class_prototypes(class_semantics, class_labels, kind)
        pos = {int(c): i for i, c in enumerate(classes)}

        def index(yv, name):
            yv = to_numpy(check_array(yv, name, ndim=1)).astype(np.int64)
            bad = sorted(set(yv.tolist()) - set(pos))
            if bad:
                raise ValueError(f"{name} contains classes {bad} that have no prototype")
            return np.array([pos[int(c)] for c in yv], dtype=np.int64)

        seen_mask = np.isin(classes, np.asarray(list(seen_classes)))
        s_val = to_numpy(self.zsl_scores(X_val, class_semantics, class_labels, kind, view))
        s_test = to_numpy(self.zsl_scores(X_test, class_semantics, class_labels, kind, view))
        return evaluate_gzsl(s_val, index(y_val, "y_val"), s_test, index(y_test, "y_test"), seen_mask)

    # -- persistence -----------------------------------------------------------------------
    def save(self, path) -> Path:
        """Save (see :meth:`AlignmentEstimator.save`); the training-only ``consistency`` hook is not stored."""
        self._check_fitted()
        hook, sub = self.consistency, self.module_.consistency
        try:
            self.consistency = None
            self.module_.consistency = None
            return super().save(path)
        finally:
            self.consistency = hook
            self.module_.consistency = sub


register_model("qsma", "geoalign.models.qsma:QSMA")


