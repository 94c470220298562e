r"""CLIP-style linear contrastive alignment of two views.

Each view is standardised (training mean and standard deviation), projected
linearly to ``dim`` dimensions and normalised onto the unit sphere:

.. math:: z^a_i = \frac{W_a \tilde x^a_i}{\lVert W_a \tilde x^a_i \rVert},\qquad
          z^b_i = \frac{W_b \tilde x^b_i}{\lVert W_b \tilde x^b_i \rVert}.

With logit scale :math:`s = \min(e^{\theta}, s_{\max})` (:math:`e^{\theta}` =
1/temperature, learnable when ``learnable_temperature``) and logits
:math:`L_{ij} = s\, \langle z^a_i, z^b_j \rangle`, the symmetric InfoNCE loss of
a batch of :math:`B` pairs is

.. math:: \mathcal L = \frac{1}{2B}\sum_i \Big[-\log \frac{e^{L_{ii}}}{\sum_j e^{L_{ij}}}
          - \log \frac{e^{L_{ii}}}{\sum_j e^{L_{ji}}}\Big].

With ``use_labels=True`` and labels given, every same-class pair is a
positive: the target of row :math:`i` is uniform over :math:`\{j : y_j = y_i\}`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_int, check_positive_scalar
from .base import AlignmentEstimator
from .losses import symmetric_info_nce

__all__ = ["LinearContrastive", "LinearContrastiveModule", "symmetric_info_nce"]


class LinearContrastiveModule(nn.Module):
    """The torch module of :class:`LinearContrastive` (follows the Trainer contract)."""

    def __init__(self, n_features_a: int, n_features_b: int, dim: int, temperature: float,
                 learnable_temperature: bool, max_logit_scale: float, bias: bool,
                 use_labels: bool):
        super().__init__()
        self.proj_a = nn.Linear(n_features_a, dim, bias=bias)
        self.proj_b = nn.Linear(n_features_b, dim, bias=bias)
        self.register_buffer("mean_a", torch.zeros(n_features_a))
        self.register_buffer("scale_a", torch.ones(n_features_a))
        self.register_buffer("mean_b", torch.zeros(n_features_b))
        self.register_buffer("scale_b", torch.ones(n_features_b))
        log_scale = torch.tensor(math.log(1.0 / temperature))
        if learnable_temperature:
            self.log_logit_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_logit_scale", log_scale)
        self.max_log_scale = math.log(max_logit_scale)
        self.use_labels = use_labels

    def set_standardization(self, X_a: torch.Tensor, X_b: torch.Tensor) -> None:
        """Store per-feature mean and standard deviation (1 where constant)."""
        for name, X in (("a", X_a), ("b", X_b)):
            mean = X.mean(dim=0)
            std = X.std(dim=0, unbiased=False)
            std = torch.where(std > 0, std, torch.ones_like(std))
            getattr(self, f"mean_{name}").copy_(mean)
            getattr(self, f"scale_{name}").copy_(std)

    def embed_a(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj_a((x - self.mean_a) / self.scale_a), dim=-1)

    def embed_b(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj_b((x - self.mean_b) / self.scale_b), dim=-1)

    def logit_scale(self) -> torch.Tensor:
        return self.log_logit_scale.clamp(max=self.max_log_scale).exp()

    def training_loss(self, batch):
        x_a, x_b = batch[0], batch[1]
        y = batch[2] if len(batch) > 2 and self.use_labels else None
        z_a, z_b = self.embed_a(x_a), self.embed_b(x_b)
        logits = self.logit_scale() * z_a @ z_b.T
        loss = symmetric_info_nce(logits, y)
        with torch.no_grad():
            target = torch.arange(logits.shape[0], device=logits.device)
            acc = (logits.argmax(dim=1) == target).to(logits.dtype).mean()
        return loss, {"logit_scale": self.logit_scale().detach(), "top1_a2b": acc}


class LinearContrastive(AlignmentEstimator):
    r"""CLIP-style linear contrastive model: two linear maps to the sphere, symmetric InfoNCE.

    Parameters
    ----------
    dim : int
        Shared embedding dimension.
    temperature : float
        Initial softmax temperature (logit scale ``1/temperature``).
    learnable_temperature : bool
    max_logit_scale : float
        Clamp of the logit scale (CLIP: 100).
    bias : bool
        Bias terms in the projections.
    standardize : bool
        Standardise each feature with the training mean and std first.
    use_labels : bool
        Same-class pairs count as positives when ``y`` is given to ``fit``.
    max_epochs, batch_size, lr, weight_decay, optimizer :
        Training options (see :class:`geoalign.train.Trainer`).
    trainer_options : dict, optional
        Further Trainer arguments (scheduler, checkpoint_dir, log_dir, ...).
    dtype : {"float32", "float64"}
    device : None, "auto", "cpu", "cuda", "mps"
    random_state : int or None
        Seeds the initialisation and the training run.

    Attributes
    ----------
    module_ : LinearContrastiveModule
    history_ : geoalign.train.TrainingHistory
    n_features_a_, n_features_b_ : int
    seed_ : int

    Notes
    -----
    *Defaults* (``dim=64, lr=1e-2, max_epochs=60, batch_size=128, use_labels=False``)
    are the choice of ``benchmarks/select_defaults.py`` (stored in
    ``benchmarks/select_defaults_results.json``): ``use_labels`` x ``dim`` x ``lr``
    scored by :class:`geoalign.model_selection.ClassDisjointSearchCV` on three
    digits two-view problems (left/right halves, top/bottom halves,
    pixels/orientation histograms), best mean.  Labels as positives lowered the
    held-out-class validation mAP@all on all three (by 0.02 to 0.12).

    Examples
    --------
    >>> model = LinearContrastive(dim=8, max_epochs=5, random_state=0,
    ...                           trainer_options={"progress": False})
    >>> Z_a = model.fit(X_a, X_b).transform_a(X_a)        # doctest: +SKIP
    """

    def __init__(self, dim: int = 64, temperature: float = 0.07, learnable_temperature: bool = True,
                 max_logit_scale: float = 100.0, bias: bool = False, standardize: bool = True,
                 use_labels: bool = False, max_epochs: int = 60, batch_size: int = 128,
                 lr: float = 1e-2, weight_decay: float = 0.0, optimizer: str = "adam",
                 trainer_options: dict | None = None, dtype: str = "float32", device=None,
                 random_state: int | None = None):
        self.dim = dim
        self.temperature = temperature
        self.learnable_temperature = learnable_temperature
        self.max_logit_scale = max_logit_scale
        self.bias = bias
        self.standardize = standardize
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
        temperature = check_positive_scalar(self.temperature, "temperature")
        max_scale = check_positive_scalar(self.max_logit_scale, "max_logit_scale")
        module = LinearContrastiveModule(n_features_a, n_features_b, dim, temperature,
                                         bool(self.learnable_temperature), max_scale,
                                         bool(self.bias), bool(self.use_labels))
        if self.standardize:
            module.set_standardization(X_a, X_b)
        return module
