r"""CFSA: coupled conditional WGAN-GP feature synthesis for zero-shot cross-modal retrieval.

After Xu et al., SIGIR 2020 ("Correlated features synthesis and alignment for
zero-shot cross-modal retrieval"; only the abstract is public, so every
architectural detail below is an option of ours, documented with its default).

Model
-----
Every class :math:`y` has a fixed semantic vector :math:`c_y` (``class_semantics``,
one row per class, seen *and* unseen).  Two generators share their noise
:math:`z \sim \mathcal N(0, I)` and condition :math:`c` (and, with
``coupled=True``, their first layer, as in coupled GANs), so that
:math:`(\tilde x^a, \tilde x^b) = (G_a(z, c), G_b(z, c))` is a synthetic *pair*.
Conditional critics :math:`D_a(x, c)`, :math:`D_b(x, c)` are trained with the
WGAN-GP objective

.. math:: \mathcal L_D = \mathbb E[D(\tilde x, c)] - \mathbb E[D(x, c)]
          + \lambda\, \mathbb E\big[(\lVert\nabla_{\hat x} D(\hat x, c)\rVert_2 - 1)^2\big],
          \quad \hat x = \alpha x + (1-\alpha)\tilde x,\ \alpha\sim U[0,1],\ \lambda = 10,

for ``n_critic`` (5) steps before every generator step (their own Adam, state
kept in the model: see :mod:`geoalign.models._inner`).  Encoders map real and
synthetic features of both views to a common space (unit sphere,
:math:`e = E(x)/\lVert E(x)\rVert`), where a linear map :math:`R` must recover
the class semantics (cycle consistency back to :math:`c`).  The main step minimises

.. math:: \mathcal L = -\mathbb E[D_a(\tilde x^a, c)] - \mathbb E[D_b(\tilde x^b, c)]
          + \lambda_{\mathrm{cyc}}\sum \lVert R(e) - c\rVert^2
          + \lambda_{\mathrm{align}}\,\mathrm{MMD}^2_k(\{e^a\}, \{e^b\})
          + \lambda_{\mathrm{pair}}\,\mathbb E\lVert e^a - e^b\rVert^2

over generators, encoders and :math:`R`; the cycle, alignment (Gaussian-kernel
maximum mean discrepancy between the two views' common-space distributions)
and pair terms use real pairs and synthetic pairs.

How unseen classes are used
---------------------------
Only their *semantic vectors* are used, never their features.  Each training
step also synthesises ``n_synthetic`` pairs of classes drawn uniformly from all
classes of ``class_semantics`` (``synthesize="all"``; ``"seen"`` turns this
off), detached from the generators, and trains the encoders and :math:`R` on
them.  The adversarial terms use seen classes only (a critic has no real data of
an unseen class).  At test time, unseen-class queries of one view are embedded
with :meth:`CFSA.transform_a` / :meth:`CFSA.transform_b` and ranked against the
other view's embedded database; :meth:`CFSA.predict_zsl` classifies by the
nearest class prototype, the mean common-space embedding of synthesised
features of each class.

Extrapolating to unseen semantics
---------------------------------
Zero-shot transfer depends on how the generators extrapolate to semantic vectors
they were never trained on.  A plain MLP :math:`G(z, c)` does not: its weights
on the directions of :math:`c` orthogonal to the seen classes' semantics keep
their random initialisation, and ReLU pieces fitted to a handful of seen
classes say nothing about other regions of the semantic space.  With
``semantic_pathway="linear"`` (default) each generator is

.. math:: G_v(z, c) = W_v c + b_v + H_v(z[, c]),

a linear semantic pathway plus a residual network :math:`H_v` (the coupled
trunk and heads above).  :math:`(W_v, b_v)` is initialised by ridge regression
of the seen classes' mean (standardised) features on their semantics
(:meth:`CFSAModule.init_semantic_pathway`, ``semantic_ridge``) and kept fixed
(``semantic_trainable=False``, default): adversarial training otherwise drives
it to interpolate the seen class means exactly, i.e. to the unregularised fit,
which extrapolates worse (a ridge regression with almost no shrinkage placed
unseen digit means worse than one with shrinkage 0.1-1).  The residual carries the
within-class distribution and corrects seen-class means; it is conditioned on
:math:`c` with ``residual_condition=True`` (default; False makes every class
share one noise distribution, an LDA-like generator).  When class means are an
(approximately) linear function of the semantics -- e.g. the planted model whose
semantics are a linear map of the shared class centres, see the tests -- the
synthesised unseen-class means then land next to the real ones, which the plain
MLP generator (``semantic_pathway="none"``, the original CFSA-style choice) does
not achieve.  ``classifier_weight`` adds a softmax classifier over *all* classes
in the common space, trained on real seen and synthetic seen/unseen features
(the final classifier of f-CLSWGAN); default 0 because it brought no gain on
planted data or digits in our measurements.

When the semantics do not predict the features linearly, no generator can
recover the unseen classes: on digits with glyph semantics a ridge regression
of the right-half class means on the glyphs classifies unseen 7-9 below chance
(left half: about 0.65), and CFSA inherits that limit (report numbers with the
semantics used).

Class semantics for digits
--------------------------
:func:`digit_glyph_semantics` renders each numeral "0".."9" with a font shipped
with matplotlib and downsamples it: a fixed description of the class that uses
no handwritten digit at all, so nothing of the unseen test images leaks into
training (class-mean images would have to be computed from the test split,
which holds every image of an unseen class).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._backend import like, to_numpy
from .._validation import check_array, check_choice, check_int, check_nonnegative_scalar, \
    check_positive_scalar
from ._inner import InnerAdam, freeze, inner_steps
from .base import AlignmentEstimator
from .encoders import StandardizedNet, mlp
from .losses import gaussian_mmd2, gradient_penalty

__all__ = ["gradient_penalty", "gaussian_mmd2", "digit_glyph_semantics", "CFSAModule", "CFSA"]


def digit_glyph_semantics(size: int = 8, supersample: int = 8, font_family: str = "DejaVu Sans",
                          margin: float = 0.1) -> np.ndarray:
    """Semantic vectors of the digits 0..9: the rendered numerals, downsampled.

    Each numeral is drawn with ``font_family`` (DejaVu Sans ships with
    matplotlib, so the result is the same everywhere), scaled to fill a square
    with ``margin`` on each side, rasterised on a ``size*supersample`` grid and
    averaged over ``supersample x supersample`` blocks (ink coverage in [0, 1]).
    No digits data is used (module docstring).

    Returns
    -------
    ndarray, shape=[10, size * size]
        Row ``d`` describes digit ``d``; unit L2 norm.
    """
    from matplotlib.font_manager import FontProperties
    from matplotlib.path import Path
    from matplotlib.textpath import TextPath

    size = check_int(size, "size", minimum=1)
    supersample = check_int(supersample, "supersample", minimum=1)
    if not (0 <= margin < 0.5):
        raise ValueError(f"margin must be in [0, 0.5), got {margin}")
    n = size * supersample
    centres = (np.arange(n) + 0.5) / n
    gx, gy = np.meshgrid(centres, 1 - centres)          # row 0 at the top, like an image
    points = np.column_stack([gx.ravel(), gy.ravel()])
    prop = FontProperties(family=font_family)
    out = np.empty((10, size * size))
    for d in range(10):
        path = TextPath((0, 0), str(d), size=1, prop=prop)
        verts = path.vertices
        lo, hi = verts.min(0), verts.max(0)
        scale = (1 - 2 * margin) / (hi - lo).max()
        offset = 0.5 - scale * (lo + hi) / 2
        path = Path(verts * scale + offset, path.codes)
        ink = path.contains_points(points).reshape(n, n).astype(float)
        pooled = ink.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
        out[d] = pooled.ravel() / np.linalg.norm(pooled)
    return out


class _Critic(nn.Module):
    def __init__(self, n_in: int, sem_dim: int, hidden: int):
        super().__init__()
        self.net = mlp(n_in + sem_dim, hidden, 1, leaky=True)

    def forward(self, x, c):
        return self.net(torch.cat([x, c], dim=1)).squeeze(1)


class CFSAModule(nn.Module):
    """Torch module of :class:`CFSA` (generators, critics, encoders, semantic regressor)."""

    def __init__(self, n_features_a: int, n_features_b: int, class_semantics: torch.Tensor,
                 seen_mask: torch.Tensor, dim: int, hidden: int, noise_dim: int, coupled: bool,
                 n_critic: int, gp_weight: float, critic_lr: float, critic_betas: tuple,
                 cycle_weight: float, align_weight: float, pair_weight: float,
                 mmd_bandwidth: float, n_synthetic: int, synthesize: str,
                 semantic_pathway: str = "none", residual_condition: bool = True,
                 semantic_trainable: bool = True, classifier_weight: float = 0.0):
        super().__init__()
        sem_dim = class_semantics.shape[1]
        self.register_buffer("class_semantics", class_semantics.clone())
        self.register_buffer("seen_mask", seen_mask.clone())
        self.noise_dim, self.coupled = noise_dim, coupled
        self.semantic_pathway, self.residual_condition = semantic_pathway, residual_condition
        n_trunk_in = noise_dim + (sem_dim if residual_condition else 0)
        self.trunk_a = nn.Sequential(nn.Linear(n_trunk_in, hidden), nn.LeakyReLU(0.2))
        self.trunk_b = None if coupled else \
            nn.Sequential(nn.Linear(n_trunk_in, hidden), nn.LeakyReLU(0.2))
        self.head_a = nn.Linear(hidden, n_features_a)
        self.head_b = nn.Linear(hidden, n_features_b)
        # linear semantic pathway: class mean = W c + b, extrapolates linearly to unseen c
        self.semantic_a = nn.Linear(sem_dim, n_features_a) if semantic_pathway == "linear" else None
        self.semantic_b = nn.Linear(sem_dim, n_features_b) if semantic_pathway == "linear" else None
        self.critic_a = freeze(_Critic(n_features_a, sem_dim, hidden))
        self.critic_b = freeze(_Critic(n_features_b, sem_dim, hidden))
        self.critic_opt_a = InnerAdam(list(self.critic_a.parameters()), critic_lr, critic_betas)
        self.critic_opt_b = InnerAdam(list(self.critic_b.parameters()), critic_lr, critic_betas)
        self.encoder_a = StandardizedNet(n_features_a, mlp(n_features_a, hidden, dim))
        self.encoder_b = StandardizedNet(n_features_b, mlp(n_features_b, hidden, dim))
        self.regressor = nn.Linear(dim, sem_dim)
        # softmax classifier over ALL classes in the common space (f-CLSWGAN's final classifier,
        # trained on real seen + synthetic seen and unseen features)
        self.classifier = nn.Linear(dim, class_semantics.shape[0]) if classifier_weight > 0 else None
        self.classifier_weight = classifier_weight
        if self.semantic_a is not None and not semantic_trainable:
            freeze(self.semantic_a)
            freeze(self.semantic_b)
        self.n_critic, self.gp_weight = n_critic, gp_weight
        self.cycle_weight, self.align_weight, self.pair_weight = cycle_weight, align_weight, pair_weight
        self.mmd_bandwidth, self.n_synthetic, self.synthesize = mmd_bandwidth, n_synthetic, synthesize

    # -- generation (features in each encoder's standardised coordinates) ----------------
    def generate(self, labels: torch.Tensor, noise: torch.Tensor | None = None):
        """Standardised synthetic pairs ``(x_a, x_b)`` for class ``labels : shape=[n]``."""
        c = self.class_semantics[labels]
        if noise is None:
            noise = torch.randn(labels.shape[0], self.noise_dim, dtype=c.dtype, device=c.device)
        zc = torch.cat([noise, c], dim=1) if self.residual_condition else noise
        h_a = self.trunk_a(zc)
        h_b = h_a if self.coupled else self.trunk_b(zc)
        x_a, x_b = self.head_a(h_a), self.head_b(h_b)
        if self.semantic_a is not None:
            x_a = x_a + self.semantic_a(c)
            x_b = x_b + self.semantic_b(c)
        return x_a, x_b

    @torch.no_grad()
    def init_semantic_pathway(self, xa_std: torch.Tensor, xb_std: torch.Tensor, y: torch.Tensor,
                              ridge: float) -> None:
        r"""Ridge regression of the seen classes' mean (standardised) features on their semantics.

        With centred seen semantics :math:`C` (rows :math:`c_k - \bar c`) and class means
        :math:`M` (rows :math:`\mu_k - \bar\mu`), :math:`W = (C^\top C + \alpha I)^{-1} C^\top M`,
        :math:`\alpha = \mathrm{ridge}\cdot\mathrm{tr}(C^\top C)/s`, bias
        :math:`\bar\mu - \bar c W`.  :math:`W` lies in the span of the seen semantics and
        gradient steps keep it there, so directions of :math:`c` never seen in training map
        to zero instead of to a random initialisation.
        """
        classes = torch.unique(y)
        c = self.class_semantics[classes]
        c_bar = c.mean(0)
        cc = c - c_bar
        gram = cc.T @ cc
        alpha = ridge * gram.diagonal().sum() / gram.shape[0]
        eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
        for x, layer in ((xa_std, self.semantic_a), (xb_std, self.semantic_b)):
            means = torch.stack([x[y == k].mean(0) for k in classes])
            mu_bar = means.mean(0)
            w = torch.linalg.solve(gram + alpha * eye, cc.T @ (means - mu_bar))
            layer.weight.copy_(w.T)
            layer.bias.copy_(mu_bar - c_bar @ w)

    def _std(self, x, which):
        enc = getattr(self, f"encoder_{which}")
        return (x - enc.mean) / enc.scale

    def _common(self, x_std, which):
        return F.normalize(getattr(self, f"encoder_{which}").net(x_std), dim=-1)

    def embed_a(self, x):
        return self._common(self._std(x, "a"), "a")

    def embed_b(self, x):
        return self._common(self._std(x, "b"), "b")

    def _critic_steps(self, xa, xb, y):
        c = self.class_semantics[y]
        for which, real in (("a", xa), ("b", xb)):
            critic = getattr(self, f"critic_{which}")
            opt = getattr(self, f"critic_opt_{which}")

            def objective(critic=critic, real=real, which=which):
                with torch.no_grad():
                    fake = self.generate(y)[0 if which == "a" else 1]
                return (critic(fake, c).mean() - critic(real, c).mean()
                        + gradient_penalty(critic, real, fake, c, self.gp_weight))

            inner_steps(critic, objective, opt, self.n_critic)

    def training_loss(self, batch):
        if len(batch) < 3:
            raise ValueError("CFSA needs class labels: fit(X_a, X_b, y)")
        x_a, x_b, y = batch[0], batch[1], batch[2]
        xa, xb = self._std(x_a, "a"), self._std(x_b, "b")
        if self.training and torch.is_grad_enabled():
            self._critic_steps(xa, xb, y)
        c = self.class_semantics[y]
        fa, fb = self.generate(y)
        adv = -(self.critic_a(fa, c).mean() + self.critic_b(fb, c).mean())
        with torch.no_grad():
            wdist = (self.critic_a(xa, c).mean() - self.critic_a(fa, c).mean()
                     + self.critic_b(xb, c).mean() - self.critic_b(fb, c).mean())
        ea, eb = self._common(xa, "a"), self._common(xb, "b")
        fea, feb = self._common(fa, "a"), self._common(fb, "b")
        views_a, views_b, sems, labels = [ea, fea], [eb, feb], [c, c], [y, y]
        if self.synthesize == "all" and self.n_synthetic > 0:
            u = torch.randint(0, self.class_semantics.shape[0], (self.n_synthetic,), device=y.device)
            with torch.no_grad():
                ua, ub = self.generate(u)
            views_a.append(self._common(ua, "a"))
            views_b.append(self._common(ub, "b"))
            sems.append(self.class_semantics[u])
            labels.append(u)
        all_a, all_b, all_c = torch.cat(views_a), torch.cat(views_b), torch.cat(sems)
        cycle = 0.5 * (((self.regressor(all_a) - all_c) ** 2).sum(1).mean()
                       + ((self.regressor(all_b) - all_c) ** 2).sum(1).mean())
        align = gaussian_mmd2(all_a, all_b, self.mmd_bandwidth)
        pair = ((all_a - all_b) ** 2).sum(1).mean()
        loss = adv + self.cycle_weight * cycle + self.align_weight * align + self.pair_weight * pair
        extra = {}
        if self.classifier is not None:
            all_y = torch.cat(labels)
            ce = 0.5 * (F.cross_entropy(self.classifier(all_a), all_y)
                        + F.cross_entropy(self.classifier(all_b), all_y))
            loss = loss + self.classifier_weight * ce
            extra["classification"] = ce.detach()
        return loss, {"adversarial": adv.detach(), "wasserstein": wdist, "cycle": cycle.detach(),
                      "mmd": align.detach(), "pair": pair.detach(), **extra}


class CFSA(AlignmentEstimator):
    r"""CFSA zero-shot cross-modal model (module docstring for the objective).

    Parameters
    ----------
    class_semantics : array-like, shape=[n_classes, s]
        Semantic vector of every class, seen and unseen; labels index its rows.
        Required (for digits: :func:`digit_glyph_semantics`).
    dim : int
        Common-space dimension (64).
    hidden : int
        Hidden width of generators, critics and encoders (256; f-CLSWGAN uses
        4096 for 2048-d ResNet features -- scale it with the feature size).
    noise_dim : int or None
        Noise dimension; None: the semantic dimension (as in f-CLSWGAN).
    coupled : bool
        Share the generators' first layer (True; the coupling of CoGAN).
    n_critic : int
        Critic steps per generator step (5, WGAN-GP).
    gp_weight : float
        :math:`\lambda` = 10.
    critic_lr, critic_betas :
        Critic Adam (1e-4, (0.5, 0.999), as in f-CLSWGAN).
    cycle_weight, align_weight, pair_weight : float
        Weights of the cycle (1), MMD alignment (1) and pair (1) terms.
    mmd_bandwidth : float
        Gaussian kernel bandwidth on the unit sphere (1.0: distances lie in [0, 2]).
    n_synthetic : int
        Synthetic pairs of uniformly drawn classes per step (64).
    synthesize : {"all", "seen"}
        Which classes those pairs come from ("all": unseen classes through their
        semantics; "seen": a purely inductive ablation).
    n_prototype_samples : int
        Synthesised samples per class for :meth:`class_prototypes` (200).
    semantic_pathway : {"linear", "none"}
        Linear semantic pathway :math:`W c + b` added to each generator ("linear",
        default: it extrapolates to unseen semantics; see the module docstring) or
        a plain MLP generator ("none").
    semantic_ridge : float
        Relative ridge :math:`\alpha/(\mathrm{tr}(C^\top C)/s)` of the pathway's
        initialisation (1.0: shrinkage, as few seen classes leave the regression
        under-determined; on digits 1.0 placed left-half unseen means better than 0.1,
        0.68 vs 0.61 nearest-mean accuracy, with the same common-space accuracy, while
        on exactly linear planted data less shrinkage is more faithful).
    residual_condition : bool
        Whether the residual network sees :math:`c` besides the noise (True: needed
        to fit class-specific within-class distributions of seen classes).
    semantic_trainable : bool
        Whether adversarial training updates the pathway after its ridge
        initialisation (False: it would un-regularise it; module docstring).
    classifier_weight : float
        Weight of the common-space softmax classifier over all classes (0: off).
    max_epochs, batch_size, lr, weight_decay, optimizer, trainer_options, dtype, device,
    random_state :
        As in :class:`~geoalign.models.contrastive.LinearContrastive`; ``lr`` is
        the generators'/encoders' learning rate.

    Notes
    -----
    ``save`` stores ``class_semantics`` as a nested list (the model file format
    holds plain Python values and tensors only).

    The defaults of ``dim``, ``semantic_ridge`` and ``max_epochs`` (with ``hidden``,
    ``align_weight`` and ``batch_size``) are the choice of
    ``benchmarks/select_defaults.py`` (stored in
    ``benchmarks/select_defaults_results.json``): a grid over ``dim`` (32, 64) x
    ``semantic_ridge`` (0.1, 1) x ``max_epochs`` (20, 50), scored by class-disjoint
    validation on the seen classes of three digits two-view problems (mean
    held-out-class mAP@all, glyph semantics).  50 epochs beat 20 and ``dim=64``
    edged 32; ``semantic_ridge`` made no difference (the previous default 0.1
    validated 0.5475, 1.0 0.5476), and none on the unseen classes 7-9 either
    (mAP@all 0.383 / 0.387 / 0.458 against 0.385 / 0.389 / 0.457 over 5 seeds).
    """

    def __init__(self, class_semantics: Any = None, dim: int = 64, hidden: int = 256,
                 noise_dim: int | None = None, coupled: bool = True, n_critic: int = 5,
                 gp_weight: float = 10.0, critic_lr: float = 1e-4,
                 critic_betas: tuple = (0.5, 0.999), cycle_weight: float = 1.0,
                 align_weight: float = 1.0, pair_weight: float = 1.0, mmd_bandwidth: float = 1.0,
                 n_synthetic: int = 64, synthesize: str = "all", n_prototype_samples: int = 200,
                 semantic_pathway: str = "linear", semantic_ridge: float = 1.0,
                 residual_condition: bool = True, semantic_trainable: bool = False,
                 classifier_weight: float = 0.0,
                 max_epochs: int = 50, batch_size: int = 256, lr: float = 1e-4,
                 weight_decay: float = 0.0, optimizer: str = "adam",
                 trainer_options: dict | None = None, dtype: str = "float32", device=None,
                 random_state: int | None = None):
        self.class_semantics = class_semantics
        self.dim = dim
        self.hidden = hidden
        self.noise_dim = noise_dim
        self.coupled = coupled
        self.n_critic = n_critic
        self.gp_weight = gp_weight
        self.critic_lr = critic_lr
        self.critic_betas = critic_betas
        self.cycle_weight = cycle_weight
        self.align_weight = align_weight
        self.pair_weight = pair_weight
        self.mmd_bandwidth = mmd_bandwidth
        self.n_synthetic = n_synthetic
        self.synthesize = synthesize
        self.n_prototype_samples = n_prototype_samples
        self.semantic_pathway = semantic_pathway
        self.semantic_ridge = semantic_ridge
        self.residual_condition = residual_condition
        self.semantic_trainable = semantic_trainable
        self.classifier_weight = classifier_weight
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.trainer_options = trainer_options
        self.dtype = dtype
        self.device = device
        self.random_state = random_state

    def _semantics(self) -> np.ndarray:
        if self.class_semantics is None:
            raise ValueError("CFSA needs class_semantics, an array of shape (n_classes, s) with one "
                             "semantic vector per class (for digits: digit_glyph_semantics())")
        sem = check_array(self.class_semantics, "class_semantics", ndim=2, allow_empty=False)
        return to_numpy(sem).astype(np.float64)

    def _validate_pairs(self, X_a, X_b, y, prefix: str = ""):
        X_a, X_b, y = super()._validate_pairs(X_a, X_b, y, prefix)
        if y is None:
            raise ValueError(f"CFSA needs class labels: pass {prefix}y (one per pair)")
        sem = self._semantics()
        labels = to_numpy(y)
        if labels.min() < 0 or labels.max() >= sem.shape[0]:
            raise ValueError(f"{prefix}y must index rows of class_semantics (0..{sem.shape[0] - 1}), "
                             f"got labels in [{labels.min()}, {labels.max()}]")
        return X_a, X_b, y

    def _build_module(self, n_features_a, n_features_b, X_a, X_b, y):
        sem = torch.as_tensor(self._semantics(), dtype=X_a.dtype)
        if y is not None:
            seen = torch.zeros(sem.shape[0], dtype=torch.bool)
            seen[torch.unique(y)] = True
        else:  # load(): restored from the state dict
            seen = torch.zeros(sem.shape[0], dtype=torch.bool)
        betas = tuple(float(b) for b in self.critic_betas)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"critic_betas must be two numbers in [0, 1), got {self.critic_betas!r}")
        noise_dim = sem.shape[1] if self.noise_dim is None else \
            check_int(self.noise_dim, "noise_dim", minimum=1)
        module = CFSAModule(
            n_features_a, n_features_b, sem, seen, check_int(self.dim, "dim", minimum=1),
            check_int(self.hidden, "hidden", minimum=1), noise_dim, bool(self.coupled),
            check_int(self.n_critic, "n_critic", minimum=1),
            check_nonnegative_scalar(self.gp_weight, "gp_weight"),
            check_positive_scalar(self.critic_lr, "critic_lr"), betas,
            check_nonnegative_scalar(self.cycle_weight, "cycle_weight"),
            check_nonnegative_scalar(self.align_weight, "align_weight"),
            check_nonnegative_scalar(self.pair_weight, "pair_weight"),
            check_positive_scalar(self.mmd_bandwidth, "mmd_bandwidth"),
            check_int(self.n_synthetic, "n_synthetic", minimum=0),
            check_choice(self.synthesize, "synthesize", ("all", "seen")),
            check_choice(self.semantic_pathway, "semantic_pathway", ("linear", "none")),
            bool(self.residual_condition), bool(self.semantic_trainable),
            check_nonnegative_scalar(self.classifier_weight, "classifier_weight"))
        ridge = check_positive_scalar(self.semantic_ridge, "semantic_ridge")
        module.encoder_a.fit_statistics(X_a)
        module.encoder_b.fit_statistics(X_b)
        if y is not None and module.semantic_a is not None:
            module.init_semantic_pathway(module._std(X_a, "a"), module._std(X_b, "b"), y, ridge)
        return module

    # -- synthesis and zero-shot prediction ---------------------------------------------
    def sample(self, labels: Any, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Synthesise feature pairs (original feature units) for ``labels : shape=[n]``.

        Returns
        -------
        X_a, X_b : ndarray, shape=[n, d_a], [n, d_b]
        """
        self._check_fitted()
        m = self.module_
        labels = np.asarray(check_array(labels, "labels", ndim=1, allow_empty=False))
        if labels.min() < 0 or labels.max() >= m.class_semantics.shape[0]:
            raise ValueError(f"labels must index rows of class_semantics (0..{m.class_semantics.shape[0] - 1})")
        dev = m.class_semantics.device
        g = torch.Generator(device="cpu").manual_seed(int(seed))
        noise = torch.randn(labels.size, m.noise_dim, generator=g, dtype=m.class_semantics.dtype)
        with torch.no_grad():
            fa, fb = m.generate(torch.as_tensor(labels, device=dev), noise.to(dev))
            xa = fa * m.encoder_a.scale + m.encoder_a.mean
            xb = fb * m.encoder_b.scale + m.encoder_b.mean
        return xa.cpu().numpy(), xb.cpu().numpy()

    def class_prototypes(self, which: str = "a", classes: Any = None, seed: int = 0):
        """Mean common-space embedding of synthesised features per class, ``shape=[n_classes, dim]``."""
        check_choice(which, "which", ("a", "b"))
        self._check_fitted()
        n_cls = self.module_.class_semantics.shape[0]
        classes = np.arange(n_cls) if classes is None else np.asarray(classes, dtype=np.int64)
        labels = np.repeat(classes, int(self.n_prototype_samples))
        xa, xb = self.sample(labels, seed=seed)
        z = to_numpy(self.transform_a(xa) if which == "a" else self.transform_b(xb))
        protos = z.reshape(len(classes), int(self.n_prototype_samples), -1).mean(axis=1)
        return protos / np.linalg.norm(protos, axis=1, keepdims=True)

    def predict_zsl(self, X: Any, which: str = "a", classes: Any = None, seed: int = 0):
        """Nearest synthesised class prototype (cosine) among ``classes`` (default: unseen classes).

        ``X : array-like, shape=[n, d_which]``; returns class labels of the input's kind.
        """
        check_choice(which, "which", ("a", "b"))
        self._check_fitted()
        if classes is None:
            classes = np.flatnonzero(~self.module_.seen_mask.cpu().numpy())
            if classes.size == 0:
                raise ValueError("every class of class_semantics was seen in training; pass classes")
        classes = np.asarray(classes, dtype=np.int64)
        z = self.transform_a(X) if which == "a" else self.transform_b(X)
        protos = self.class_prototypes(which, classes, seed)
        pred = classes[np.argmax(to_numpy(z) @ protos.T, axis=1)]
        return like(pred, X) if not isinstance(X, (list, tuple)) else pred

    def save(self, path):
        """As :meth:`AlignmentEstimator.save`; ``class_semantics`` is stored as a nested list."""
        original = self.class_semantics
        try:
            if original is not None:
                self.class_semantics = to_numpy(original).tolist()
            return super().save(path)
        finally:
            self.class_semantics = original
