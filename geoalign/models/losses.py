r"""Losses shared by the alignment models.

* :func:`symmetric_info_nce` -- the symmetric InfoNCE (CLIP) loss of one batch of
  logits, with optional same-class positives; :func:`batched_symmetric_info_nce` --
  the same loss averaged over ``K`` logit matrices (QSMA's Monte Carlo samples),
  with a fused backward;
* :func:`kl_to_standard_normal` -- the KL term of a Gaussian posterior;
* :func:`gaussian_mmd2` and :func:`gradient_penalty` -- CFSA's distribution
  alignment (MMD) and WGAN-GP terms.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["symmetric_info_nce", "batched_symmetric_info_nce", "kl_to_standard_normal", "gaussian_mmd2",
           "gradient_penalty"]


def symmetric_info_nce(logits: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    r"""Symmetric InfoNCE of a ``logits : shape=[B, B]`` matrix (positives on the diagonal).

    With ``y : shape=[B]`` the positives of row ``i`` are all ``j`` with ``y_j = y_i``
    (soft cross-entropy against the uniform distribution over them).
    """
    if y is None:
        target = torch.arange(logits.shape[0], device=logits.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    same = (y[:, None] == y[None, :]).to(logits.dtype)
    target = same / same.sum(dim=1, keepdim=True)  # symmetric mask: rows and columns alike
    loss_ab = -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    loss_ba = -(target * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return 0.5 * (loss_ab + loss_ba)


class _SymmetricInfoNCE(torch.autograd.Function):
    """Fused forward/backward of :func:`batched_symmetric_info_nce` (see there)."""

    @staticmethod
    def forward(ctx, logits, target):
        K, B, _ = logits.shape
        p_row = torch.softmax(logits, dim=-1)
        p_col = torch.softmax(logits, dim=-2)
        # log-sum-exp from the softmax diagonal: lse_i = L_ii - log P_ii (no extra exp pass)
        diag = logits.diagonal(dim1=-2, dim2=-1)
        lse_row = diag - p_row.diagonal(dim1=-2, dim2=-1).log()
        lse_col = diag - p_col.diagonal(dim1=-2, dim2=-1).log()
        # soft targets sum to 1 per row and are symmetric (same-class mask / class count)
        fit = diag.sum() if target is None else (logits * target).sum()
        loss = 0.5 * (lse_row.sum() + lse_col.sum() - 2 * fit) / (K * B)
        ctx.save_for_backward(p_row, p_col, target)
        return loss

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


def batched_symmetric_info_nce(logits: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    r"""Mean symmetric InfoNCE of ``K`` problems, ``logits : shape=[K, B, B]`` (positives on the diagonal).

    .. math:: \mathcal L = \frac{1}{2KB}\sum_{k,i}\Big[\mathrm{lse}_j L_{kij}
              + \mathrm{lse}_j L_{kji} - 2\sum_j T_{ij} L_{kij}\Big],

    :math:`T = I`, or with labels ``y : shape=[B]`` the same-class mask divided by
    the class count (so each row of :math:`T` sums to one).  Equals
    :func:`symmetric_info_nce` averaged over ``k``, with
    a fused backward :math:`\partial\mathcal L/\partial L = (P^{\rightarrow} + P^{\downarrow} - 2T)/(2KB)`
    (row and column softmaxes): two softmax passes forward, one pass backward,
    and no transposed copy.
    """
    target = None
    if y is not None:
        same = (y[:, None] == y[None, :]).to(logits.dtype)
        target = same / same.sum(dim=1, keepdim=True)
    return _SymmetricInfoNCE.apply(logits, target)


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
