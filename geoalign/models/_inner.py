r"""Alternating ("inner") optimisation of auxiliary networks inside ``training_loss``.

WGAN critics (CFSA) and the CLUB variational estimator (UniCode) are trained
*against* the main model: a few steps of their own objective on detached
features before every main step.  The :class:`~geoalign.train.Trainer` owns a
single optimizer, so the auxiliary network keeps its parameters frozen
(``requires_grad=False``: the Trainer's optimizer and DDP never see them) and
:func:`inner_steps` unfreezes them only for its own updates, done with
:class:`InnerAdam`, whose moment estimates are *buffers* of the model.  They
are therefore saved in ``state_dict`` -- checkpoints, exact resume and
``save``/``load`` include the auxiliary optimiser state with no extra code.
Under DDP the inner gradients are averaged over ranks so the auxiliary networks
stay identical.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

__all__ = ["InnerAdam", "inner_steps", "freeze"]


def freeze(module: nn.Module) -> nn.Module:
    """Mark ``module``'s parameters as not trained by the main optimizer."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class InnerAdam(nn.Module):
    r"""Adam (Kingma & Ba) with its state held in buffers.

    .. math:: m \leftarrow \beta_1 m + (1-\beta_1) g,\quad v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
              \theta \leftarrow \theta - \mathrm{lr}\,\frac{m/(1-\beta_1^t)}{\sqrt{v/(1-\beta_2^t)}+\epsilon}
    """

    def __init__(self, params: Sequence[torch.Tensor], lr: float, betas: tuple[float, float],
                 eps: float = 1e-8):
        super().__init__()
        self.lr = float(lr)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.n_params = len(params)
        for i, p in enumerate(params):
            self.register_buffer(f"exp_avg_{i}", torch.zeros_like(p))
            self.register_buffer(f"exp_avg_sq_{i}", torch.zeros_like(p))
        self.register_buffer("step_count", torch.zeros((), dtype=torch.int64))

    @torch.no_grad()
    def step(self, params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> None:
        if len(params) != self.n_params:
            raise ValueError(f"InnerAdam was built for {self.n_params} parameters, got {len(params)}")
        self.step_count += 1
        t = self.step_count.to(torch.float64)  # bias corrections on the device: no host sync
        b1, b2 = self.betas
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        for i, (p, g) in enumerate(zip(params, grads)):
            m, v = getattr(self, f"exp_avg_{i}"), getattr(self, f"exp_avg_sq_{i}")
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            p.addcdiv_(m / c1, (v / c2).sqrt_().add_(self.eps), value=-self.lr)


def inner_steps(net: nn.Module, objective: Callable[[], torch.Tensor], optimizer: InnerAdam,
                n_steps: int) -> torch.Tensor:
    """Minimise ``objective()`` over ``net``'s parameters for ``n_steps`` steps; last value returned.

    ``objective`` must only depend on detached inputs (the main model is not updated here).
    """
    params = list(net.parameters())
    dist = torch.distributed
    distributed = dist.is_available() and dist.is_initialized()
    last = torch.zeros(())
    for p in params:
        p.requires_grad_(True)
    try:
        with torch.enable_grad():
            for _ in range(n_steps):
                value = objective()
                grads = torch.autograd.grad(value, params)
                if distributed:
                    world = dist.get_world_size()
                    grads = [g.contiguous() for g in grads]
                    for g in grads:
                        dist.all_reduce(g)
                        g.div_(world)
                optimizer.step(params, grads)
                last = value.detach()
    finally:
        freeze(net)
    return last
