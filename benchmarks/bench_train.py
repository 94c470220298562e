"""Training throughput of geoalign's Trainer against a bare hand-written torch loop.

Both train the same LinearContrastive module (symmetric InfoNCE, Adam) on the same
planted two-view data with the same batch size for the same number of epochs; the
ratio shows the Trainer's overhead (shuffling, metric accumulation, schedule,
checkpoint-free epochs).  Run ``python benchmarks/bench_train.py [--quick]``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from geoalign.models.contrastive import LinearContrastiveModule
from geoalign.train import Trainer


def make_data(n, d_a, d_b, k=16, seed=0):
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n, k))
    X_a = s @ rng.normal(size=(k, d_a)) + 0.1 * rng.normal(size=(n, d_a))
    X_b = s @ rng.normal(size=(k, d_b)) + 0.1 * rng.normal(size=(n, d_b))
    return torch.as_tensor(X_a, dtype=torch.float32), torch.as_tensor(X_b, dtype=torch.float32)


def make_module(d_a, d_b, dim):
    torch.manual_seed(0)
    return LinearContrastiveModule(d_a, d_b, dim, 0.07, True, 100.0, False, False)


def bare_loop(module, X_a, X_b, epochs, batch_size, lr):
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    n = X_a.shape[0]
    for epoch in range(epochs):
        perm = torch.randperm(n)
        for s in range(0, n, batch_size):
            idx = perm[s:s + batch_size]
            loss, _ = module.training_loss((X_a[idx], X_b[idx]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return float(loss.detach())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="small size for a smoke run")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    n, d_a, d_b, dim, epochs, bs = (4096, 128, 96, 32, 3, 256) if args.quick else \
        (50_000, 512, 384, 64, 5, 512)
    X_a, X_b = make_data(n, d_a, d_b)
    samples = n * epochs
    print(f"n={n} d_a={d_a} d_b={d_b} dim={dim} epochs={epochs} batch={bs} device={args.device} "
          f"threads={torch.get_num_threads()}")
    bare_loop(make_module(d_a, d_b, dim), X_a[:bs], X_b[:bs], 1, bs, 1e-3)  # warm-up

    t_bare, t_trainer = float("inf"), float("inf")
    for _ in range(args.repeats):  # interleaved, best of: robust to a busy machine
        m = make_module(d_a, d_b, dim).to(args.device)
        t = time.perf_counter()
        bare_loop(m, X_a.to(args.device), X_b.to(args.device), epochs, bs, 1e-3)
        t_bare = min(t_bare, time.perf_counter() - t)

        m = make_module(d_a, d_b, dim)
        trainer = Trainer(max_epochs=epochs, batch_size=bs, lr=1e-3, device=args.device,
                          progress=False)
        t = time.perf_counter()
        trainer.fit(m, (X_a, X_b))
        t_trainer = min(t_trainer, time.perf_counter() - t)

    print(f"bare torch loop : {samples / t_bare:12.0f} samples/s")
    print(f"geoalign Trainer: {samples / t_trainer:12.0f} samples/s")
    print(f"ratio Trainer time / bare loop time = {t_trainer / t_bare:.3f}")


if __name__ == "__main__":
    main()
