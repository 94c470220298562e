r"""Encoders shared by the alignment models: standardisation, MLPs, attention and convolution.

:class:`Standardize` is the one standardisation of the models: ``(x - mean) / scale``
with buffers fitted on the training data (per feature, or one global pair for
images); :class:`StandardizedNet` puts it in front of a network.  :func:`mlp`
builds the small MLPs; :class:`MLPEncoder`, :class:`ConvEncoder` and
:class:`HierarchicalAttentionEncoder` (with :class:`AttentionPool`) are QSMA's
encoders.  Every encoder maps ``x : shape=[B, n_features]`` to ``shape=[B, width]``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["Standardize", "StandardizedNet", "mlp", "MLPEncoder", "ConvEncoder", "AttentionPool",
           "HierarchicalAttentionEncoder"]


class Standardize(nn.Module):
    """(x - mean) / scale with buffers fitted on the training data.

    Per feature, or with ``per_feature=False`` one mean and one scale for all
    features (every buffer entry equal), which keeps a convolution's weight
    sharing meaningful: a pixel means the same wherever it is.
    """

    def __init__(self, n_features: int, per_feature: bool = True):
        super().__init__()
        self.per_feature = per_feature
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))

    def fit(self, X: torch.Tensor) -> None:
        if not self.per_feature:
            X = X.reshape(-1, 1)
        std = X.std(dim=0, unbiased=False)
        self.mean.copy_(X.mean(dim=0).expand_as(self.mean))
        self.scale.copy_(torch.where(std > 0, std, torch.ones_like(std)).expand_as(self.scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale


class MLPEncoder(nn.Module):
    """Standardise, then ``n_layers`` x (Linear, GELU, dropout); ``x : [B, n_features] -> [B, hidden]``."""

    def __init__(self, n_features: int, hidden: int, n_layers: int = 2, dropout: float = 0.0):
        super().__init__()
        self.standardize = Standardize(n_features)
        layers: list[nn.Module] = []
        width = n_features
        for _ in range(n_layers):
            layers += [nn.Linear(width, hidden), nn.GELU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        self.net = nn.Sequential(*layers)
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.standardize(x))


class ConvEncoder(nn.Module):
    r"""Small CNN for image-like inputs: ``x : [B, n_features] -> [B, hidden]``.

    The flat input is read row-major as ``input_shape`` = ``(H, W)`` or
    ``(C, H, W)`` (``n_features = C * H * W``), standardised with one global
    mean and scale, then passed through ``len(channels)`` blocks of
    3x3 convolution (zero padding 1, so the size is kept) + GELU, a 2x2 max-pool
    (where both sides are at least 2), flattened, and mapped to ``hidden`` by
    Linear + GELU (+ dropout).  Shared weights over positions make the features
    translation-equivariant, which carries over to classes not seen in training
    better than an MLP on raw pixels (e.g. halves of digits, ``input_shape=(8, 4)``).
    """

    def __init__(self, n_features: int, hidden: int, input_shape, channels=(32, 64),
                 dropout: float = 0.0):
        super().__init__()
        shape = tuple(int(s) for s in input_shape)
        if len(shape) == 2:
            shape = (1,) + shape
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"input_shape must be (H, W) or (C, H, W) of positive ints, got {input_shape!r}")
        if math.prod(shape) != n_features:
            raise ValueError(f"input_shape {tuple(input_shape)} holds {math.prod(shape)} values, but the "
                             f"input has {n_features} features")
        channels = tuple(int(c) for c in channels)
        if not channels or min(channels) < 1:
            raise ValueError(f"channels must be a non-empty sequence of positive ints, got {channels!r}")
        self.input_shape = shape
        self.standardize = Standardize(n_features, per_feature=False)
        layers: list[nn.Module] = []
        width = shape[0]
        for c in channels:
            layers += [nn.Conv2d(width, c, 3, padding=1), nn.GELU()]
            width = c
        H, W = shape[1:]
        if H >= 2 and W >= 2:
            layers.append(nn.MaxPool2d(2))
            H, W = H // 2, W // 2
        self.features = nn.Sequential(*layers)
        self.out = nn.Sequential(nn.Flatten(), nn.Linear(width * H * W, hidden), nn.GELU(),
                                 *([nn.Dropout(dropout)] if dropout > 0 else []))
        self.out_features = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        img = self.standardize(x).reshape(x.shape[0], *self.input_shape)
        return self.out(self.features(img))


class AttentionPool(nn.Module):
    r"""Additive attention pooling (Yang et al. 2016): :math:`\alpha = \mathrm{softmax}(w^\top \tanh(W h))`,
    output :math:`\sum_t \alpha_t h_t`; ``h : [..., T, E] -> [..., E]``."""

    def __init__(self, width: int):
        super().__init__()
        self.proj = nn.Linear(width, width)
        self.query = nn.Linear(width, 1, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        alpha = torch.softmax(self.query(torch.tanh(self.proj(h))), dim=-2)
        return (alpha * h).sum(-2)


class HierarchicalAttentionEncoder(nn.Module):
    r"""Tokens (or patches) pooled by attention within groups, then groups pooled by attention.

    The flat input ``x : [B, n_features]`` is read as ``n_groups`` groups of
    ``group_size`` tokens of ``token_features`` features each (row-major, so
    ``n_features = n_groups * group_size * token_features``).

    * ``vocab_size`` given: tokens are integer ids / ring coefficients in
      ``[0, vocab_size)`` (``token_features = 1``), e.g. digits over
      :math:`\mathbb{Z}_{17}` with groups = image rows; each coefficient value has
      a learned embedding (the ring element, not its magnitude, is the token).
    * otherwise tokens are real patch vectors, standardised then embedded linearly.

    Token embeddings get a learned position-in-group embedding, a GELU layer and
    are attention-pooled per group; group vectors get a learned group-position
    embedding, a GELU layer, and are attention-pooled into one vector, then mapped
    to ``hidden`` by Linear + GELU.
    """

    def __init__(self, n_features: int, hidden: int, group_size: int, token_features: int = 1,
                 vocab_size: int | None = None, embed_dim: int = 64, dropout: float = 0.0):
        super().__init__()
        if n_features % (group_size * token_features):
            raise ValueError(f"n_features={n_features} must be a multiple of group_size * "
                             f"token_features = {group_size} * {token_features}")
        if vocab_size is not None and token_features != 1:
            raise ValueError("token_features must be 1 when vocab_size is given (one id per token)")
        self.group_size = group_size
        self.token_features = token_features
        self.n_groups = n_features // (group_size * token_features)
        self.vocab_size = vocab_size
        self.standardize = Standardize(n_features)
        if vocab_size is not None:
            self.token_embed: nn.Module = nn.Embedding(vocab_size, embed_dim)
        else:
            self.token_embed = nn.Linear(token_features, embed_dim)
        self.token_pos = nn.Parameter(0.02 * torch.randn(group_size, embed_dim))
        self.group_pos = nn.Parameter(0.02 * torch.randn(self.n_groups, embed_dim))
        self.token_mix = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.GELU())
        self.group_mix = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.GELU())
        self.token_pool = AttentionPool(embed_dim)
        self.group_pool = AttentionPool(embed_dim)
        self.out = nn.Sequential(nn.Linear(embed_dim, hidden), nn.GELU(),
                                 *( [nn.Dropout(dropout)] if dropout > 0 else []))
        self.out_features = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        if self.vocab_size is not None:
            ids = x.round().long().clamp(0, self.vocab_size - 1)  # range is checked by QSMA
            tok = self.token_embed(ids.reshape(B, self.n_groups, self.group_size))
        else:
            tok = self.token_embed(self.standardize(x).reshape(
                B, self.n_groups, self.group_size, self.token_features))
        tok = self.token_mix(tok + self.token_pos)                 # [B, G, S, E]
        groups = self.group_mix(self.token_pool(tok) + self.group_pos)  # [B, G, E]
        return self.out(self.group_pool(groups))


class StandardizedNet(Standardize):
    """Per-feature standardisation with training statistics (buffers), then a network ``net``."""

    def __init__(self, n_in: int, net: nn.Module):
        super().__init__(n_in)
        self.net = net

    def fit_statistics(self, X: torch.Tensor) -> None:
        """Fit the mean and scale buffers on ``X : shape=[n, n_in]`` (same as :meth:`fit`)."""
        self.fit(X)

    def forward(self, x):
        return self.net(super().forward(x))


def mlp(n_in: int, hidden: int | None, n_out: int, leaky: bool = False) -> nn.Module:
    """``Linear(n_in, hidden), ReLU (LeakyReLU(0.2) if leaky), Linear(hidden, n_out)``; a single
    ``Linear(n_in, n_out)`` when ``hidden`` is 0 or None."""
    if not hidden:
        return nn.Linear(n_in, n_out)
    act = nn.LeakyReLU(0.2) if leaky else nn.ReLU()
    return nn.Sequential(nn.Linear(n_in, hidden), act, nn.Linear(hidden, n_out))
