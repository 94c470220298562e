r"""SSPC: semantic-structure-preserving consistency (Swetha et al., ICCV 2023).

Each modality's embedding space carries :math:`K` learnable anchors
:math:`a_1..a_K`; a sample :math:`z` is described by its cosine similarities
:math:`S_{k} = \langle z/\lVert z\rVert, a_k/\lVert a_k\rVert\rangle`.  Soft
*multi-assignments* of the samples to anchors are computed by the
Multi-Assignment Sinkhorn--Knopp algorithm (:func:`multi_assignment_sinkhorn`)
over the batch together with a queue of past embeddings, and each space's
anchor similarities are trained to predict the *other* space's assignments
(consistency loss).  This keeps the semantic structure of the two modalities
consistent while a contrastive loss aligns the pairs.

Multi-Assignment Sinkhorn--Knopp
--------------------------------
For :math:`N` samples, :math:`K` anchors and :math:`K` slots with weights
:math:`w_m = 0.25` for the first :math:`K-R` slots and :math:`w_m = 1` for the
last :math:`R = K/2`, start from

.. math:: Q_{nmk} = \exp(w_m S_{nk} / \varepsilon), \qquad \varepsilon = 0.07,

and repeat 20 times, in this order, the normalisations

* column (uniform anchor usage per slot): :math:`\sum_n Q_{nmk} = N/K`;
* slot (every anchor fills one slot per sample): :math:`\sum_m Q_{nmk} = 1`;
* row (every slot of a sample holds one anchor): :math:`\sum_k Q_{nmk} = 1`.

These marginals are consistent (total mass :math:`NK`), so each
:math:`Q_{n\cdot\cdot}` tends to a doubly stochastic slots-by-anchors matrix
whose heavy slots (:math:`w_m = 1`) receive the most similar anchors.  The
target of sample :math:`n` is :math:`t_{nk} = \sum_{m > K-R} Q_{nmk}` (it sums
to exactly :math:`R` after the final row normalisation: each sample is spread
over about :math:`R` anchors), min--max scaled per row to :math:`[0, 1]`.
The plan is kept in factored form (three matrix products per iteration; no
:math:`N\\times K\\times K` tensor), which is exact, not an approximation.

Consistency loss
----------------
With :math:`T^a, T^b` the targets of spaces a and b (no gradient) and
:math:`\ell(S)` the logits of the anchor similarities,

.. math:: \mathcal L_{\mathrm{cons}} = \tfrac12\big[\mathrm{BCE}(\ell(S^a), T^b)
          + \mathrm{BCE}(\ell(S^b), T^a)\big]

(binary cross-entropy with logits, averaged over samples and anchors).
``logits="scaled"`` (default) uses :math:`\ell(S) = S/0.1`: the sigmoid then
spans almost all of :math:`(0, 1)`, so 0/1 targets can be fitted.
``logits="exp"`` reproduces the authors' code, :math:`\ell(S) = \exp(S/0.1)`;
note that these logits are positive, so every predicted probability is
:math:`\ge 1/2` and anchors with target 0 can never be matched.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._backend import is_torch, like
from .._validation import check_array, check_choice, check_int, check_nonnegative_scalar, \
    check_positive_scalar
from ..ot._core import multi_marginal_scalings
from .base import AlignmentEstimator
from .encoders import StandardizedNet, mlp
from .losses import symmetric_info_nce

__all__ = ["MultiAssignment", "multi_assignment_sinkhorn", "SSPCRegularizer", "SSPCModule", "SSPC"]


@dataclass
class MultiAssignment:
    """Result of :func:`multi_assignment_sinkhorn`.

    Attributes
    ----------
    targets : array, shape=[N, K]
        Heavy-slot mass per anchor, min--max scaled per row to [0, 1].
    assignment : array, shape=[N, K]
        The same before scaling (each row sums to ``n_positive``).
    plan : array, shape=[N, K, K]
        The scaled tensor :math:`Q_{nmk}` (sample, slot, anchor).
    """

    targets: Any
    assignment: Any
    plan: Any


def _multi_sk(S: torch.Tensor, n_positive: int, low_weight: float, epsilon: float, n_iters: int,
              return_plan: bool = False):
    r"""Multi-SK with the plan kept in factored form (three GEMMs per iteration, no N*K*K tensor).

    :math:`Q_{nmk} = E_{g(m)}[n,k]\,\alpha_{mk}\,\beta_{nk}\,\gamma_{nm}` where the kernel
    depends on the slot only through its weight group :math:`g(m)` (low or heavy), so every
    marginal of :math:`Q` is a matrix product.  Mathematically identical to normalising the
    dense tensor; a global shift of the exponent (absorbed by the first column step) avoids
    overflow.
    """
    N, K = S.shape
    dtype = S.dtype if S.dtype in (torch.float32, torch.float64) else torch.float32
    S = S.to(dtype)
    n_low = K - n_positive
    scaled = S / epsilon
    shift = torch.maximum(scaled.max(), low_weight * scaled.max())
    e_low = (low_weight * scaled - shift).exp()
    e_high = (scaled - shift).exp()
    alpha, beta, gamma = multi_marginal_scalings(e_low, e_high, n_low, n_iters)  # the Sinkhorn core
    assignment = e_high * beta * (gamma[:, n_low:] @ alpha[n_low:])
    lo = assignment.min(dim=1, keepdim=True).values
    hi = assignment.max(dim=1, keepdim=True).values
    targets = (assignment - lo) / (hi - lo).clamp_min(torch.finfo(dtype).tiny)
    plan = None
    if return_plan:
        kernel = torch.cat([e_low[:, None, :].expand(N, n_low, K),
                            e_high[:, None, :].expand(N, K - n_low, K)], dim=1)
        plan = kernel * alpha[None] * beta[:, None, :] * gamma[:, :, None]
    return targets, assignment, plan


def multi_assignment_sinkhorn(similarities: Any, n_positive: int | None = None,
                              low_weight: float = 0.25, epsilon: float = 0.07,
                              n_iters: int = 20) -> MultiAssignment:
    r"""Multi-Assignment Sinkhorn--Knopp (module docstring) of a similarity matrix.

    Parameters
    ----------
    similarities : array-like, shape=[N, K]
        Cosine similarities of N samples to K anchors.
    n_positive : int, optional
        :math:`R`, the number of heavy slots (default ``K // 2``, as in SSPC).
    low_weight : float
        Weight :math:`w_m` of the first :math:`K-R` slots (0.25).
    epsilon : float
        Entropic temperature :math:`\varepsilon` (0.07).
    n_iters : int
        Rounds of column, slot and row normalisation (20).

    Returns
    -------
    MultiAssignment
        Arrays of the input's kind (NumPy in, NumPy out; tensors stay on their device).
    """
    S = check_array(similarities, "similarities", ndim=2, allow_empty=False)
    K = S.shape[1]
    R = K // 2 if n_positive is None else check_int(n_positive, "n_positive", minimum=1, maximum=K)
    if R < 1:
        raise ValueError(f"n_positive defaults to K // 2, which is 0 for K={K}; pass K >= 2")
    low_weight = check_nonnegative_scalar(low_weight, "low_weight")
    epsilon = check_positive_scalar(epsilon, "epsilon")
    n_iters = check_int(n_iters, "n_iters", minimum=1)
    St = S if is_torch(S) else torch.as_tensor(S)
    if not St.is_floating_point():
        St = St.to(torch.float64)
    with torch.no_grad():
        t, a, q = _multi_sk(St, R, low_weight, epsilon, n_iters, return_plan=True)
    return MultiAssignment(targets=like(t, S), assignment=like(a, S), plan=like(q, S))


class SSPCRegularizer(nn.Module):
    r"""SSPC consistency loss as a module any contrastive model can add.

    Holds the anchors of both spaces and the queues of past embeddings; call
    :meth:`loss` with the two modalities' embeddings of a batch of pairs.  In
    training mode every call then enqueues the batch (detached); in
    ``eval()`` mode the queues are left as they are.

    Parameters
    ----------
    dim : int
        Embedding dimension of ``z_a`` and ``z_b``.
    n_anchors : int
        :math:`K` anchors per space (64, SSPC).
    n_positive : int, optional
        :math:`R` heavy slots (default ``n_anchors // 2``).
    low_weight, epsilon, n_iters :
        Multi-SK options (0.25, 0.07, 20; see :func:`multi_assignment_sinkhorn`).
    queue_size : int
        Past embeddings kept per space (5,500 in the authors' code); the
        Multi-SK runs over queue + batch.  0 disables the queue.
    start_when_full : bool
        Return a zero loss until the queue is full (the authors' code does, so
        that early, poorly spread batches do not produce degenerate targets).
    logits : {"scaled", "exp"}
        ``S / logit_temperature`` (default) or the authors' ``exp(S / logit_temperature)``
        (module docstring explains why the default differs).
    logit_temperature : float
        0.1, as in the authors' code.
    shared_anchors : bool
        One anchor set for both spaces (for embeddings that already live in
        one space); default False: anchors per modality and space, as in SSPC.
    """

    def __init__(self, dim: int, n_anchors: int = 64, n_positive: int | None = None,
                 low_weight: float = 0.25, epsilon: float = 0.07, n_iters: int = 20,
                 queue_size: int = 5500, start_when_full: bool = True, logits: str = "scaled",
                 logit_temperature: float = 0.1, shared_anchors: bool = False):
        super().__init__()
        self.dim = check_int(dim, "dim", minimum=1)
        self.n_anchors = check_int(n_anchors, "n_anchors", minimum=2)
        self.n_positive = (self.n_anchors // 2 if n_positive is None
                           else check_int(n_positive, "n_positive", minimum=1, maximum=self.n_anchors))
        self.low_weight = check_nonnegative_scalar(low_weight, "low_weight")
        self.epsilon = check_positive_scalar(epsilon, "epsilon")
        self.n_iters = check_int(n_iters, "n_iters", minimum=1)
        self.queue_size = check_int(queue_size, "queue_size", minimum=0)
        self.start_when_full = bool(start_when_full)
        self.logits = check_choice(logits, "logits", ("scaled", "exp"))
        self.logit_temperature = check_positive_scalar(logit_temperature, "logit_temperature")
        self.shared_anchors = bool(shared_anchors)
        self.anchors_a = nn.Parameter(F.normalize(torch.randn(self.n_anchors, self.dim), dim=1))
        self.anchors_b = None if self.shared_anchors else \
            nn.Parameter(F.normalize(torch.randn(self.n_anchors, self.dim), dim=1))
        self.register_buffer("queue_a", torch.zeros(self.queue_size, self.dim))
        self.register_buffer("queue_b", torch.zeros(self.queue_size, self.dim))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.int64))
        self.register_buffer("queue_count", torch.zeros((), dtype=torch.int64))
        # (ptr, count) mirrored on the host so that a step never reads the buffers back from
        # the device; None after load_state_dict (read once, on the next use)
        self._host_queue: tuple[int, int] | None = (0, 0)

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._host_queue = None

    def _queue_state(self) -> tuple[int, int]:
        if self._host_queue is None:
            self._host_queue = (int(self.queue_ptr), int(self.queue_count))
        return self._host_queue

    @property
    def queue_full(self) -> bool:
        return self._queue_state()[1] >= self.queue_size

    def similarities(self, z: torch.Tensor, which: str) -> torch.Tensor:
        """Cosine similarities of ``z : shape=[B, dim]`` to the anchors of space ``which``."""
        anchors = self.anchors_a if which == "a" or self.shared_anchors else self.anchors_b
        return F.normalize(z, dim=-1) @ F.normalize(anchors, dim=-1).T

    def _logits(self, S: torch.Tensor) -> torch.Tensor:
        scaled = S / self.logit_temperature
        return scaled.exp() if self.logits == "exp" else scaled

    def _targets(self, S_batch: torch.Tensor, queue: torch.Tensor, which: str) -> torch.Tensor:
        with torch.no_grad():
            n_q = min(self._queue_state()[1], self.queue_size)
            S = S_batch.detach()
            if n_q:
                S = torch.cat([self.similarities(queue[:n_q].to(S.dtype), which), S], dim=0)
            targets, _, _ = _multi_sk(S, self.n_positive, self.low_weight, self.epsilon,
                                      self.n_iters)
            return targets[-S_batch.shape[0]:]

    @torch.no_grad()
    def _enqueue(self, z_a: torch.Tensor, z_b: torch.Tensor) -> None:
        if self.queue_size == 0:
            return
        z_a, z_b = z_a[-self.queue_size:], z_b[-self.queue_size:]
        n = z_a.shape[0]
        ptr, count = self._queue_state()
        idx = (ptr + torch.arange(n, device=z_a.device)) % self.queue_size
        self.queue_a[idx] = F.normalize(z_a.detach(), dim=-1).to(self.queue_a.dtype)
        self.queue_b[idx] = F.normalize(z_b.detach(), dim=-1).to(self.queue_b.dtype)
        self._host_queue = ((ptr + n) % self.queue_size, min(count + n, self.queue_size))
        self.queue_ptr.fill_(self._host_queue[0])
        self.queue_count.fill_(self._host_queue[1])

    def loss(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        """Consistency loss of a batch of pairs ``z_a, z_b : shape=[B, dim]`` (scalar tensor)."""
        if z_a.ndim != 2 or z_b.ndim != 2 or z_a.shape != z_b.shape or z_a.shape[1] != self.dim:
            raise ValueError(f"z_a and z_b must both have shape (B, {self.dim}), got "
                             f"{tuple(z_a.shape)} and {tuple(z_b.shape)}")
        S_a, S_b = self.similarities(z_a, "a"), self.similarities(z_b, "b")
        active = not (self.start_when_full and not self.queue_full)
        if active:
            T_a = self._targets(S_a, self.queue_a, "a")
            T_b = self._targets(S_b, self.queue_b, "b")
            loss = 0.5 * (F.binary_cross_entropy_with_logits(self._logits(S_a), T_b)
                          + F.binary_cross_entropy_with_logits(self._logits(S_b), T_a))
        else:  # keeps the graph (and every parameter) connected while the queue fills
            loss = 0.0 * (S_a.sum() + S_b.sum())
        if self.training:
            self._enqueue(z_a, z_b)
        return loss

    forward = loss


class SSPCModule(nn.Module):
    r"""Torch module of :class:`SSPC`: encoders, InfoNCE and the SSPC regulariser.

    .. math:: \mathcal L = \mathrm{InfoNCE}_\tau(z^a, z^b) + \lambda\,\mathcal L_{\mathrm{cons}}
    """

    def __init__(self, n_features_a: int, n_features_b: int, dim: int, hidden: int | None,
                 temperature: float, consistency_weight: float, use_labels: bool,
                 regularizer: dict):
        super().__init__()
        self.encoder_a = StandardizedNet(n_features_a, mlp(n_features_a, hidden, dim))
        self.encoder_b = StandardizedNet(n_features_b, mlp(n_features_b, hidden, dim))
        self.regularizer = SSPCRegularizer(dim, **regularizer)
        self.temperature = temperature
        self.consistency_weight = consistency_weight
        self.use_labels = use_labels

    def embed_a(self, x):
        return F.normalize(self.encoder_a(x), dim=-1)

    def embed_b(self, x):
        return F.normalize(self.encoder_b(x), dim=-1)

    def training_loss(self, batch):
        x_a, x_b = batch[0], batch[1]
        y = batch[2] if len(batch) > 2 and self.use_labels else None
        z_a, z_b = self.embed_a(x_a), self.embed_b(x_b)
        nce = symmetric_info_nce(z_a @ z_b.T / self.temperature, y)
        cons = self.regularizer.loss(z_a, z_b)
        return nce + self.consistency_weight * cons, {
            "info_nce": nce.detach(), "consistency": cons.detach(),
            "queue_fill": self.regularizer._queue_state()[1] / max(1, self.regularizer.queue_size)}


class SSPC(AlignmentEstimator):
    r"""SSPC alignment model: InfoNCE (:math:`\tau = 0.05`) plus the SSPC consistency loss.

    Encoders (standardisation with training statistics, then an MLP or a
    linear map) send each view to the unit sphere.

    Parameters
    ----------
    dim : int
        Shared embedding dimension.
    hidden : int or None
        Hidden width of the one-hidden-layer ReLU encoders; None or 0: linear encoders.
    temperature : float
        InfoNCE temperature (0.05, SSPC).
    consistency_weight : float
        :math:`\lambda` of the consistency loss (1.0: the paper adds the terms unweighted).
    n_anchors, n_positive, low_weight, epsilon, n_iters, queue_size, start_when_full, logits,
    logit_temperature, shared_anchors :
        Options of :class:`SSPCRegularizer` (as in SSPC: 64 anchors, R = 32,
        0.25, 0.07, 20 iterations, loss from a full queue on; the paper's queue
        holds 5,500 embeddings, the default here 512, see *Notes*).
        With fewer than ``queue_size`` training pairs the queue fills over
        several epochs.
    use_labels : bool
        Same-class pairs count as InfoNCE positives when ``y`` is given.
    max_epochs, batch_size, lr, weight_decay, optimizer, trainer_options, dtype, device,
    random_state :
        As in :class:`~geoalign.models.contrastive.LinearContrastive`.

    Notes
    -----
    *Defaults* (``dim=32, queue_size=512, max_epochs=20, batch_size=128,
    consistency_weight=1.0, use_labels=False``) are the choice of
    ``benchmarks/select_defaults.py`` (stored in
    ``benchmarks/select_defaults_results.json``): ``use_labels`` x
    ``consistency_weight`` scored by
    :class:`geoalign.model_selection.ClassDisjointSearchCV` on three digits
    two-view problems, best mean.  Labels helped held-out classes on one problem
    (left/right halves, +0.02) and hurt on the other two (-0.06, -0.14), so
    they are off.
    """

    def __init__(self, dim: int = 32, hidden: int | None = 256, temperature: float = 0.05,
                 consistency_weight: float = 1.0, n_anchors: int = 64, n_positive: int | None = None,
                 low_weight: float = 0.25, epsilon: float = 0.07, n_iters: int = 20,
                 queue_size: int = 512, start_when_full: bool = True, logits: str = "scaled",
                 logit_temperature: float = 0.1, shared_anchors: bool = False,
                 use_labels: bool = False, max_epochs: int = 20, batch_size: int = 128,
                 lr: float = 1e-3, weight_decay: float = 0.0, optimizer: str = "adam",
                 trainer_options: dict | None = None, dtype: str = "float32", device=None,
                 random_state: int | None = None):
        self.dim = dim
        self.hidden = hidden
        self.temperature = temperature
        self.consistency_weight = consistency_weight
        self.n_anchors = n_anchors
        self.n_positive = n_positive
        self.low_weight = low_weight
        self.epsilon = epsilon
        self.n_iters = n_iters
        self.queue_size = queue_size
        self.start_when_full = start_when_full
        self.logits = logits
        self.logit_temperature = logit_temperature
        self.shared_anchors = shared_anchors
        self.use_labels = use_labels
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
        hidden = None if not self.hidden else check_int(self.hidden, "hidden", minimum=1)
        reg = dict(n_anchors=self.n_anchors, n_positive=self.n_positive, low_weight=self.low_weight,
                   epsilon=self.epsilon, n_iters=self.n_iters, queue_size=self.queue_size,
                   start_when_full=self.start_when_full, logits=self.logits,
                   logit_temperature=self.logit_temperature, shared_anchors=self.shared_anchors)
        module = SSPCModule(n_features_a, n_features_b, dim, hidden,
                            check_positive_scalar(self.temperature, "temperature"),
                            check_nonnegative_scalar(self.consistency_weight, "consistency_weight"),
                            bool(self.use_labels), reg)
        module.encoder_a.fit_statistics(X_a)
        module.encoder_b.fit_statistics(X_b)
        return module
