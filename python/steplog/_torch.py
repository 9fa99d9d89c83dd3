"""Tensors from PyTorch, imported only when a torch tensor is logged.

`convert` detaches the tensor and either returns a numpy array the Rust side reads in place
(CPU tensors, and small CUDA tensors, which cross to the host), or bins a large CUDA tensor on
its device with numpy.histogram's arithmetic, so only the counts and edges cross to the host
(what `wandb.watch` does for gradients). 16-bit and 8-bit floats are widened to float32,
quantized tensors dequantized; complex, sparse, nested and meta tensors raise TypeError (the
binding names the key), as complex numpy arrays do, instead of dropping the imaginary part.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _edges(lo: float, hi: float, n: int, dtype: Any) -> np.ndarray:
    # numpy.linspace in the tensor's float type, as numpy.histogram computes it.
    lo_, hi_ = dtype.type(lo), dtype.type(hi)
    return np.linspace(lo_, hi_, n + 1, dtype=dtype)


def device_histogram(t: Any, num_bins: int) -> tuple[list[int], list[float], int, int, int]:
    """Bins tensor `t` on its own device; returns (counts, edges, nan, +inf, -inf)."""
    import torch

    x = t.detach().flatten()
    if x.dtype not in (torch.float32, torch.float64):
        x = x.to(torch.float64 if not x.dtype.is_floating_point else torch.float32)
    nan = int(torch.isnan(x).sum())
    pos_inf = int(torch.isposinf(x).sum())
    neg_inf = int(torch.isneginf(x).sum())
    x = x[torch.isfinite(x)]
    if x.numel() == 0:
        return [], [], nan, pos_inf, neg_inf
    np_dtype = np.dtype(np.float32 if x.dtype == torch.float32 else np.float64)
    lo_t, hi_t = torch.aminmax(x)
    lo, hi = np_dtype.type(lo_t.item()), np_dtype.type(hi_t.item())
    if lo == hi:
        lo, hi = lo - np_dtype.type(0.5), hi + np_dtype.type(0.5)
    edges = _edges(lo, hi, num_bins, np_dtype)
    e = torch.as_tensor(edges, device=x.device)
    denom = hi - lo
    idx = (((x - lo) / float(denom)) * num_bins).to(torch.int64).clamp_(0, num_bins - 1)
    idx -= (x < e[idx]).to(torch.int64)
    idx.clamp_(min=0)
    up = (x >= e[(idx + 1).clamp(max=num_bins)]) & (idx != num_bins - 1)
    idx += up.to(torch.int64)
    counts = torch.bincount(idx, minlength=num_bins).cpu().tolist()
    return counts, edges.astype(np.float64).tolist(), nan, pos_inf, neg_inf


def _unsupported(t: Any) -> str | None:
    """Why tensor `t` cannot be logged, or None."""
    import torch

    if t.dtype.is_complex:
        return f"a complex tensor ({t.dtype}); log its .real, .imag or .abs()"
    if t.is_nested:
        return "a nested tensor; log its components"
    if t.layout != torch.strided:
        return f"a tensor of layout {t.layout}; log .to_dense()"
    if t.is_meta:
        return "a meta tensor, which holds no data"
    return None


def convert(t: Any, max_list: int, num_bins: int) -> Any:
    """A numpy array for the Rust side, or a device histogram tuple. Raises TypeError for
    tensors whose values cannot be logged as numbers (complex, sparse, nested, meta)."""
    import torch

    if not isinstance(t, torch.Tensor):
        return np.asarray(t)
    t = t.detach()
    dtype = t.dtype
    if dtype.is_complex:
        raise TypeError(f"unsupported value: {_unsupported(t)}")
    if t.is_cuda:
        why = _unsupported(t)
        if why is not None:
            raise TypeError(f"unsupported value: {why}")
        if t.numel() > max_list:
            return device_histogram(t, num_bins)
    if dtype.is_floating_point and dtype is not torch.float32 and dtype is not torch.float64:
        # bfloat16, float16 and the float8 types: numpy has none of them but float16.
        t = t.to(torch.float32)
    try:
        return t.cpu().numpy()
    except (TypeError, RuntimeError, NotImplementedError) as e:
        # The rare kinds are told apart only here, off the common path.
        if t.is_quantized:
            return t.dequantize().cpu().numpy()
        why = _unsupported(t) or f"a tensor of dtype {t.dtype} ({e})"
        raise TypeError(f"unsupported value: {why}") from e


def convert_sequence(items: Any, max_list: int, num_bins: int) -> Any:
    """A list or tuple whose first element is a tensor (`[loss_a, loss_b]`), converted as one
    tensor: detached, so that tensors requiring grad and dtypes numpy lacks (bfloat16) work as
    they do alone. Raises TypeError naming what does not stack (ragged or mixed devices)."""
    import torch

    parts = [x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(x) for x in items]
    try:
        stacked = torch.stack(parts)
    except (TypeError, RuntimeError) as e:
        raise TypeError(f"unsupported value: a sequence of tensors that do not stack ({e})") from e
    return convert(stacked, max_list, num_bins)
