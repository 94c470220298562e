r"""Losses shared by the alignment models.

* :func:`symmetric_info_nce` -- the symmetric InfoNCE (CLIP) loss of one batch of
  logits or its mean over ``K`` logit matrices (QSMA's Monte Carlo samples), with
  optional same-class positives and a fused backward;
* :func:`kl_to_standard_normal` -- the KL term of a Gaussian posterior;
* :func:`gaussian_mmd2` and :func:`gradient_penalty` -- CFSA's distribution
  alignment (MMD) and WGAN-GP terms.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["symmetric_info_nce", "batched_symmetric_info_nce", "kl_to_standard_normal", "gaussian_mmd2",
           "gradient_penalty"]


class _SymmetricInfoNCE(torch.autograd.Function):
    """Forward and fused backward of :func:`symmetric_info_nce` on ``logits : shape=[K, B, B]``."""

    @staticmethod
    def forward(ctx, logits, target):
        K, B, _ = logits.shape
        # log-softmaxes, never the log of a softmax: a positive whose logit is far below its
        # row's maximum (more than ~100 in float32) would underflow to log(0) = -inf
        log_row = torch.log_softmax(logits, dim=-1)
        log_col = torch.log_softmax(logits, dim=-2)
        if target is None:
            fit = log_row.diagonal(dim1=-2, dim2=-1).sum() + log_col.diagonal(dim1=-2, dim2=-1).sum()
        else:  # soft targets: symmetric, each row sums to one
            fit = (target * (log_row + log_col)).sum()
        ctx.save_for_backward(log_row.exp_(), log_col.exp_(), target)
        return -0.5 * fit / (K * B)

    @staticmethod
    def backward(ctx, grad):
        p_row, p_col, target = ctx.saved_tensors
        K, B, _ = p_row.shape
        g = p_row + p_col  # not in place: a retained graph may call backward again
        if target is None:
            g.diagonal(dim1=-2, dim2=-1).sub_(2.0)
        else:
            g.sub_(2.0 * target)
        return g.mul_(grad * (0.5 / (K * B))), None


def symmetric_info_nce(logits: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    r"""Symmetric InfoNCE of ``logits : shape=[B, B]``, or the mean over ``K`` problems of
    ``logits : shape=[K, B, B]`` (QSMA's Monte Carlo samples); positives on the diagonal.

    .. math:: \mathcal L = -\frac{1}{2KB}\sum_{k,i,j} T_{ij}\Big[\log P^{\rightarrow}_{kij}
              + \log P^{\downarrow}_{kij}\Big],

    with :math:`P^{\rightarrow}` and :math:`P^{\downarrow}` the row and column softmaxes of
    :math:`L_k`, and :math:`T = I`, or with labels ``y : shape=[B]`` the same-class mask
    divided by the class count (the positives of row ``i`` are all ``j`` with
    :math:`y_j = y_i`: soft cross-entropy against the uniform distribution over them).
    The backward is fused,
    :math:`\partial\mathcal L/\partial L = (P^{\rightarrow} + P^{\downarrow} - 2T)/(2KB)`:
    two softmax passes forward, one pass backward, no transposed copy.
    """
    if logits.ndim not in (2, 3) or logits.shape[-1] != logits.shape[-2]:
        raise ValueError(f"logits must have shape [B, B] or [K, B, B], got {tuple(logits.shape)}")
    target = None
    if y is not None:
        same = (y[:, None] == y[None, :]).to(logits.dtype)
        target = same / same.sum(dim=1, keepdim=True)
    return _SymmetricInfoNCE.apply(logits if logits.ndim == 3 else logits[None], target)


def batched_symmetric_info_nce(logits: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """Deprecated name of :func:`symmetric_info_nce`, which takes ``[K, B, B]`` logits too."""
    from .._warnings import warn_deprecated

    warn_deprecated("batched_symmetric_info_nce", "symmetric_info_nce (it takes [K, B, B] logits)")
    return symmetric_info_nce(logits, y)


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{KL}(N(\mu, \sigma^2) \| N(0, I))`, summed over the last axis, mean over the rest."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1).mean()


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, condition: torch.Tensor,
                     weight: float = 10.0, alpha: torch.Tensor | None = None) -> torch.Tensor:
    r"""WGAN-GP penalty :math:`\lambda\,\mathbb E[(\lVert\nabla_{\hat x} D(\hat x, c)\rVert_2 - 1)^2]`.

    Parameters
    ----------
    critic : callable ``critic(x, c) -> shape=[B] or [B, 1]``
    real, fake : Tensor, shape=[B, d]
    condition : Tensor, shape=[B, s]
    weight : float
        :math:`\lambda` (10, Gulrajani et al.).
    alpha : Tensor, shape=[B, 1], optional
        Interpolation weights; default :math:`U[0, 1]` per sample.

    Returns
    -------
    Tensor
        Scalar, differentiable with respect to the critic's parameters
        (``create_graph=True``).
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and "
                         f"{tuple(fake.shape)}")
    if alpha is None:
        alpha = torch.rand(real.shape[0], 1, dtype=real.dtype, device=real.device)
    with torch.enable_grad():  # also under no_grad (evaluation): the penalty needs the input gradient
        x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
        out = critic(x_hat, condition)
        (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return weight * ((grad.norm(dim=1) - 1) ** 2).mean()


def gaussian_mmd2(x: torch.Tensor, y: torch.Tensor, bandwidth: float = 1.0) -> torch.Tensor:
    r"""Biased (V-statistic) squared MMD with kernel :math:`k(u,v) = \exp(-\lVert u-v\rVert^2/(2h^2))`."""
    def k(u, v):
        return torch.exp(-torch.cdist(u, v).pow(2) / (2 * bandwidth ** 2)).mean()
    return k(x, x) + k(y, y) - 2 * k(x, y)
