r"""The exact ε-join on a Dask cluster: :func:`distributed_fiber_product`.

``X`` is split into row blocks; each block is joined with all of ``Y`` by
:func:`geoalign.fiber.fiber_product` on a worker, and the blocks' pairs are
concatenated into one :class:`~geoalign.fiber.FiberProduct` (``n_blocks`` says
how many).  The cluster comes from :func:`geoalign.sweep.connect_client`.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ._backend import to_numpy
from ._validation import check_array, check_int, check_nonnegative_scalar
from .fiber import FiberProduct
from .sweep.executors import connect_client

__all__ = ["distributed_fiber_product"]


def _fiber_block(x_block, y, eps: float, row0: int, join: Any, kwargs: dict):
    """Worker side: join one row block and shift its row indices by ``row0``."""
    if join is None:
        from .fiber import fiber_product as join
    res = join(x_block, y, eps, **kwargs)
    pairs = np.asarray(res.pairs, dtype=np.int64).reshape(-1, 2).copy()
    pairs[:, 0] += row0
    return pairs, np.asarray(res.distances).reshape(-1)


def distributed_fiber_product(X: Any, Y: Any, eps: float, client_or_scheduler: Any, *,
                              block_rows: int = 4096, join: Callable | None = None,
                              connect_timeout: float = 5.0, **kwargs: Any) -> FiberProduct:
    """Exact ε-join of ``X`` and ``Y`` split into row blocks computed by Dask workers.

    .. math::

        F_\\varepsilon = \\bigcup_b \\{(i_0^b + i, j) : \\|X_{i_0^b+i} - Y_j\\| \\le \\varepsilon\\}

    ``Y`` is scattered to the workers once; block ``b`` calls
    ``fiber_product(X[i0:i1], Y, eps, **kwargs)`` (``geoalign.fiber``, imported
    on the workers) and its row indices are shifted by ``i0``.  Blocks arrive
    in row order, so the concatenated pairs stay sorted.

    Parameters
    ----------
    X : array-like, shape=[n, d]
    Y : array-like, shape=[m, d]
    eps : float
        Tolerance, >= 0.
    client_or_scheduler : distributed.Client or str
        A client, or a scheduler address ``"tcp://host:port"``.
    block_rows : int
        Rows of ``X`` per task.
    join : callable, optional
        Any function with the ``fiber_product(X, Y, eps, **kwargs)`` contract
        (result with ``.pairs``, ``.distances``); default ``geoalign.fiber.fiber_product``.
    connect_timeout : float
        Seconds to wait for a scheduler address.
    **kwargs
        Passed to the join (``metric=...`` and so on); with the default join,
        ``num_threads=1`` and ``progress=False`` unless given.

    Returns
    -------
    FiberProduct
        The pairs in NumPy arrays (``shape=(n, m)``, ``offset=(0, 0)``), with
        ``n_blocks`` the number of row blocks.
    """
    X = check_array(X, "X", ndim=2)
    Y = check_array(Y, "Y", ndim=2)
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"X and Y must have the same dimension d, got X {tuple(X.shape)} and Y {tuple(Y.shape)}")
    eps = check_nonnegative_scalar(eps, "eps", allow_inf=True)
    block_rows = check_int(block_rows, "block_rows", minimum=1)
    if join is None:
        # the workers are the parallelism: single-threaded kernels, no progress bar per block
        kwargs = {"num_threads": 1, "progress": False, **kwargs}
    X, Y = to_numpy(X), to_numpy(Y)
    metric = str(kwargs.get("metric", "euclidean"))
    if client_or_scheduler is None:
        raise ValueError("client_or_scheduler is required: a distributed.Client or 'tcp://host:port'")
    client, close = connect_client(client_or_scheduler, timeout=connect_timeout)
    try:
        starts = list(range(0, X.shape[0], block_rows))
        if not starts or Y.shape[0] == 0:
            return FiberProduct(np.empty((0, 2), np.int64), np.empty(0, X.dtype), eps, metric,
                                (X.shape[0], Y.shape[0]), n_blocks=0)
        # hash=False: equal data scattered by an earlier call must not share (and lose) its key
        y_future = client.scatter(Y, broadcast=True, hash=False)
        blocks = client.scatter([X[i0:i0 + block_rows] for i0 in starts], hash=False)
        futures = [client.submit(_fiber_block, blk, y_future, eps, i0, join, kwargs, pure=False)
                   for blk, i0 in zip(blocks, starts)]
        parts = client.gather(futures)
    finally:
        close()
    pairs = np.concatenate([p for p, _ in parts], axis=0)
    distances = np.concatenate([dist for _, dist in parts], axis=0)
    return FiberProduct(pairs, distances, eps, metric, (X.shape[0], Y.shape[0]), n_blocks=len(starts))
