"""Encoders between data and polynomials: images and token sequences as elements of Z_n[x]."""
from __future__ import annotations

import numbers
from typing import Any, Sequence

import numpy as np

from .._backend import is_torch, to_numpy, to_torch
from .._validation import check_choice, check_int
from ._common import _as_integer, _check_modulus
from .ring import PolyRing

__all__ = ["encode_image", "decode_image", "encode_tokens", "decode_tokens"]


_CHANNEL_ORDERS = ("interleaved", "planar")


def _image_layout(shape: tuple, patch_size: int | None, pad_value: int | None):
    """Return (H, W, C, Hp, Wp, p) with padded sizes, or raise for indivisible sizes."""
    H, W = shape[0], shape[1]
    C = shape[2] if len(shape) == 3 else 1
    if patch_size is None:
        return H, W, C, H, W, None
    p = check_int(patch_size, "patch_size", minimum=1)
    if (H % p or W % p) and pad_value is None:
        raise ValueError(f"image size {H}x{W} is not divisible by patch_size={p}; "
                         "pass pad_value=<0..255> to pad bottom/right")
    Hp, Wp = -(-H // p) * p, -(-W // p) * p
    return H, W, C, Hp, Wp, p


def encode_image(img: Any, patch_size: int | None = None, channel_order: str = "interleaved",
                 pad_value: int | None = None):
    r"""Encode a uint8 image as polynomial(s) over :math:`\mathbb{Z}_{256}`.

    Pixels are read in row-major order (row 0 left to right, then row 1, ...).
    With ``channel_order="interleaved"`` the channels of one pixel are adjacent
    (``r0 g0 b0 r1 g1 b1 ...``, the memory order of an ``H x W x C`` array); with
    ``"planar"`` all values of channel 0 come first, then channel 1, ...
    Coefficient :math:`a_i` multiplies :math:`x^i`.

    Parameters
    ----------
    img : uint8 array or tensor, shape=[H, W] or [H, W, C]
    patch_size : int, optional
        ``p``: cut the image into ``p x p`` patches in row-major patch order and
        encode each (pixels row-major within the patch, channels per
        ``channel_order`` within the patch).
    channel_order : {"interleaved", "planar"}
    pad_value : int in [0, 255], optional
        When ``H`` or ``W`` is not divisible by ``p``: ``None`` (default) raises;
        an integer pads the bottom rows and right columns with that value.

    Returns
    -------
    P : int64, shape=[H*W*C] without patches, or [n_patches, p*p*C]
        Same kind (NumPy/torch, device) as ``img``.
    """
    check_choice(channel_order, "channel_order", _CHANNEL_ORDERS)
    if pad_value is not None:
        pad_value = check_int(pad_value, "pad_value", minimum=0, maximum=255)
    if is_torch(img):
        import torch

        if img.dtype != torch.uint8:
            raise TypeError(f"img must have dtype uint8, got {img.dtype}")
    else:
        img = np.asarray(img)
        if img.dtype != np.uint8:
            raise TypeError(f"img must have dtype uint8, got {img.dtype}")
    if img.ndim not in (2, 3):
        raise ValueError(f"img must have shape (H, W) or (H, W, C), got {tuple(img.shape)}")
    if 0 in tuple(img.shape):
        raise ValueError(f"img must not be empty, got shape {tuple(img.shape)}")
    H, W, C, Hp, Wp, p = _image_layout(tuple(img.shape), patch_size, pad_value)
    x = to_numpy(img).reshape(H, W, C).astype(np.int64)
    if (Hp, Wp) != (H, W):
        x = np.pad(x, ((0, Hp - H), (0, Wp - W), (0, 0)), constant_values=pad_value)
    if p is None:
        out = (x.transpose(2, 0, 1) if channel_order == "planar" else x).reshape(-1)
    else:
        t = x.reshape(Hp // p, p, Wp // p, p, C).transpose(0, 2, 1, 3, 4)  # (gh, gw, p, p, C)
        if channel_order == "planar":
            t = t.transpose(0, 1, 4, 2, 3)
        out = t.reshape((Hp // p) * (Wp // p), p * p * C)
    out = np.ascontiguousarray(out)
    return to_torch(out, device=img.device) if is_torch(img) else out


def decode_image(P: Any, shape: Sequence[int], patch_size: int | None = None,
                 channel_order: str = "interleaved"):
    """Inverse of :func:`encode_image`: rebuild the uint8 image of the given shape.

    Parameters
    ----------
    P : int array, shape=[H*W*C] or [n_patches, p*p*C]
        Coefficients in ``[0, 256)``.
    shape : tuple
        The original image shape ``(H, W)`` or ``(H, W, C)``; padding added by
        ``pad_value`` is cropped away.
    patch_size, channel_order
        As given to :func:`encode_image`.

    Returns
    -------
    img : uint8, shape=``shape``
    """
    check_choice(channel_order, "channel_order", _CHANNEL_ORDERS)
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"shape must be (H, W) or (H, W, C) with positive sizes, got {shape}")
    v = PolyRing(256).element(P, "P")
    H, W, C, Hp, Wp, p = _image_layout(shape, patch_size, 0)
    x = to_numpy(v)
    if p is None:
        if x.shape != (H * W * C,):
            raise ValueError(f"P must have shape ({H * W * C},) for an image of shape {shape}, got {x.shape}")
        img = x.reshape(C, H, W).transpose(1, 2, 0) if channel_order == "planar" else x.reshape(H, W, C)
    else:
        want = ((Hp // p) * (Wp // p), p * p * C)
        if x.shape != want:
            raise ValueError(f"P must have shape {want} for an image of shape {shape} with patch_size={p}, "
                             f"got {x.shape}")
        if channel_order == "planar":
            t = x.reshape(Hp // p, Wp // p, C, p, p).transpose(0, 1, 3, 4, 2)
        else:
            t = x.reshape(Hp // p, Wp // p, p, p, C)
        img = t.transpose(0, 2, 1, 3, 4).reshape(Hp, Wp, C)[:H, :W]
    img = np.ascontiguousarray(img.reshape(shape).astype(np.uint8))
    return to_torch(img, device=v.device) if is_torch(v) else img


def encode_tokens(ids: Any, vocab_size: int, length: int | None = None, pad_id: int = 0):
    r"""Encode token id sequences as polynomials over :math:`\mathbb{Z}_{|V|}`.

    Sequence :math:`t_0..t_m` becomes :math:`Q(x) = \sum_i t_i x^i`.  Shorter
    sequences are padded at the end (high degrees) with ``pad_id``; with the
    default ``pad_id=0`` padding does not change the polynomial.

    Parameters
    ----------
    ids : sequence of int, list of lists (ragged allowed), or 1-D/2-D integer array/tensor
    vocab_size : int
        :math:`|V|`, the modulus (``2 <= |V| < 2^31``).
    length : int, optional
        Number of coefficients; default the longest sequence (at least 1).
        A sequence longer than ``length`` raises (no silent truncation).
    pad_id : int
        Padding id in ``[0, |V|)``.

    Returns
    -------
    Q : int64, shape=[length] for one sequence, [batch, length] for a batch
        A tensor on the input's device if ``ids`` is a tensor.

    Raises
    ------
    ValueError
        An id outside ``[0, |V|)`` (names the sequence and position), a sequence
        longer than ``length``, or a bad ``pad_id``.
    """
    V = _check_modulus(vocab_size, "vocab_size")
    pad_id = check_int(pad_id, "pad_id", minimum=0, maximum=V - 1)
    ref = ids if is_torch(ids) else None
    if is_torch(ids) or isinstance(ids, np.ndarray):
        arr = _as_integer(ids, "ids")
        if arr.ndim not in (1, 2):
            raise ValueError(f"ids must be one sequence (1-D) or a batch (2-D), got shape {tuple(arr.shape)}")
        single = arr.ndim == 1
        seqs = [to_numpy(arr).reshape(1, -1)[0]] if single else list(to_numpy(arr))
    else:
        if not isinstance(ids, (list, tuple)):
            raise TypeError(f"ids must be a sequence of ints or a list of sequences, got {type(ids).__name__}")
        single = len(ids) > 0 and all(isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in ids)
        raw = [ids] if single else list(ids)
        seqs = []
        for j, s in enumerate(raw):
            if is_torch(s):
                s = to_numpy(s)
            if not isinstance(s, (list, tuple, np.ndarray)):
                raise TypeError(f"ids[{j}] must be a sequence of token ids, got {type(s).__name__}")
            arr = np.asarray(s) if len(s) else np.zeros(0, dtype=np.int64)
            seqs.append(_as_integer(arr, f"ids[{j}]").reshape(-1))
    longest = max((len(s) for s in seqs), default=0)
    if length is None:
        length = max(longest, 1)
    length = check_int(length, "length", minimum=1)
    out = np.full((len(seqs), length), pad_id, dtype=np.int64)
    for j, s in enumerate(seqs):
        if len(s) > length:
            raise ValueError(f"sequence {j} has {len(s)} tokens, more than length={length}")
        bad = (s < 0) | (s >= V)
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise ValueError(f"token id {int(s[pos])} at sequence {j}, position {pos} is outside "
                             f"[0, vocab_size={V})")
        out[j, :len(s)] = s
    if single:
        out = out[0]
    return to_torch(out, device=ref.device) if ref is not None else out


def decode_tokens(Q: Any, lengths: Any = None, pad_id: int | None = None):
    """Inverse of :func:`encode_tokens`: polynomials back to lists of token ids.

    Parameters
    ----------
    Q : int array, shape=[length] or [batch, length]
    lengths : int or sequence of int, optional
        Exact sequence lengths (the unambiguous way to undo padding).
    pad_id : int, optional
        Without ``lengths``: strip trailing ``pad_id`` values.  Note that a
        sequence that itself ends in ``pad_id`` loses those tokens; pass
        ``lengths`` when that can happen.

    Returns
    -------
    list of int (one sequence) or list of lists of int
    """
    q = to_numpy(_as_integer(Q, "Q", min_ndim=1))
    if q.ndim not in (1, 2):
        raise ValueError(f"Q must have shape (length,) or (batch, length), got {q.shape}")
    single = q.ndim == 1
    rows = q.reshape(1, -1) if single else q
    if lengths is not None:
        lens = np.atleast_1d(np.asarray(lengths))
        if not np.issubdtype(lens.dtype, np.integer) or lens.shape != (rows.shape[0],):
            raise ValueError(f"lengths must hold {rows.shape[0]} integer(s), got {lengths!r}")
        if (lens < 0).any() or (lens > rows.shape[1]).any():
            raise ValueError(f"lengths must lie in [0, {rows.shape[1]}], got {lens.tolist()}")
        out = [r[:int(m)].tolist() for r, m in zip(rows, lens)]
    elif pad_id is not None:
        out = []
        for r in rows:
            keep = np.flatnonzero(r != pad_id)
            out.append(r[:int(keep[-1]) + 1 if keep.size else 0].tolist())
    else:
        out = [r.tolist() for r in rows]
    return out[0] if single else out
