"""Triton kernels for the LRNN component functions on CUDA (one pass over memory per direction).

The portable kernel in :mod:`reconstruct.models.components` loops over the hidden width with a dozen
element-wise torch operations per step; on a GPU each is a kernel launch streaming an ``(N, M)`` tensor,
so a ``paper``-size layer moves ~15 GB per iteration. Here one program loads a block of ``z``, evaluates all
``width`` hidden units in registers and writes ``g`` (forward) or ``dL/dz`` plus per-block partial sums of
the weight gradients (backward), so ``z`` and ``dL/dg`` are read once.

Shapes follow :class:`reconstruct.models.components._ComponentSum`: ``z`` ``(N, M)``, ``aT``/``cT``/``vT``
``(width, M)``, ``e`` ``(M,)``, all float32. Activations ``siren`` and ``spder``; ``spder_atan`` stays on the
portable kernel. ``TRITON_INTERPRET=1`` (set before triton is first imported: triton's own ``tl`` helpers are
built at import) runs the same kernels on CPU tensors, which is how the CPU test suite checks them.
"""

from __future__ import annotations

import os
import warnings

import torch
import triton
import triton.language as tl
from torch import Tensor

KINDS = {"siren": 0, "spder": 1}
BLOCK_N, BLOCK_M = 64, 64

#: Set to False to use the portable kernel (benchmarks compare the two); a launch failure also clears it.
enabled = os.environ.get("SPARSECT_TRITON", "1") != "0"


def usable(z: Tensor, kind: str) -> bool:
    """Whether the component kernel should use :func:`forward` / :func:`backward` for this input
    (CUDA only: the interpreter that runs them on CPU is for tests, far too slow for fits)."""
    return enabled and z.is_cuda and z.dtype == torch.float32 and kind in KINDS


@triton.jit
def _tile(N, M, BN: tl.constexpr, BM: tl.constexpr):
    """This program's (BN, BM) block of the (N, M) arrays: columns, their mask, the block mask, offsets."""
    rows = tl.program_id(0).to(tl.int64) * BN + tl.arange(0, BN)
    cols = tl.program_id(1) * BM + tl.arange(0, BM)
    col_ok = cols < M
    mask = (rows < N)[:, None] & col_ok[None, :]
    return cols, col_ok, mask, rows[:, None] * M + cols[None, :]


@triton.jit
def _hidden_unit(z, a_ptr, c_ptr, v_ptr, k, M, cols, col_ok):
    """Pre-activation ``u = a_k z + c_k`` of hidden unit ``k`` for the block, with the weights ``a_k``, ``v_k``."""
    a = tl.load(a_ptr + k * M + cols, mask=col_ok, other=0.0)
    c = tl.load(c_ptr + k * M + cols, mask=col_ok, other=0.0)
    v = tl.load(v_ptr + k * M + cols, mask=col_ok, other=0.0)
    return z * a[None, :] + c[None, :], a, v


@triton.jit
def _activation(u, KIND: tl.constexpr):
    h = tl.sin(u)
    if KIND == 1:  # spder: sin(u) sqrt|u|
        h = h * tl.sqrt(tl.abs(u))
    return h


@triton.jit
def _activation_and_derivative(u, KIND: tl.constexpr):
    h = tl.sin(u)
    dh = tl.cos(u)
    if KIND == 1:  # spder: (sin(u) sqrt|u|)' = cos(u) sqrt|u| + sin(u) sign(u) / (2 sqrt|u|), 0 at u = 0
        r = tl.sqrt(tl.abs(u))
        sign = tl.where(u > 0, 1.0, tl.where(u < 0, -1.0, 0.0))
        dh = dh * r + h * sign * tl.where(r > 0, 0.5 / tl.maximum(r, 1e-30), 0.0)
        h = h * r
    return h, dh


@triton.jit
def _forward_kernel(z_ptr, a_ptr, c_ptr, v_ptr, e_ptr, out_ptr, N, M,
                    WIDTH: tl.constexpr, KIND: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr):
    cols, col_ok, mask, offsets = _tile(N, M, BN, BM)
    z = tl.load(z_ptr + offsets, mask=mask, other=0.0)
    g = tl.zeros((BN, BM), dtype=tl.float32) + tl.load(e_ptr + cols, mask=col_ok, other=0.0)[None, :]
    for k in tl.static_range(WIDTH):
        u, a, v = _hidden_unit(z, a_ptr, c_ptr, v_ptr, k, M, cols, col_ok)
        g += v[None, :] * _activation(u, KIND)
    tl.store(out_ptr + offsets, g, mask=mask)


@triton.jit
def _backward_kernel(z_ptr, a_ptr, c_ptr, v_ptr, go_ptr, gz_ptr, pa_ptr, pc_ptr, pv_ptr, N, M,
                     WIDTH: tl.constexpr, KIND: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr,
                     NEED_GZ: tl.constexpr):
    cols, col_ok, mask, offsets = _tile(N, M, BN, BM)
    z = tl.load(z_ptr + offsets, mask=mask, other=0.0)
    go = tl.load(go_ptr + offsets, mask=mask, other=0.0)  # 0 outside: masked rows add nothing below
    gz = tl.zeros((BN, BM), dtype=tl.float32)
    for k in tl.static_range(WIDTH):
        u, a, v = _hidden_unit(z, a_ptr, c_ptr, v_ptr, k, M, cols, col_ok)
        h, dh = _activation_and_derivative(u, KIND)
        du = dh * go  # dL/du / v_k
        gz += du * (a * v)[None, :]
        partial = (tl.program_id(0) * WIDTH + k) * M + cols  # per-row-block partial sums, reduced by torch
        tl.store(pv_ptr + partial, tl.sum(h * go, axis=0), mask=col_ok)
        tl.store(pc_ptr + partial, tl.sum(du, axis=0) * v, mask=col_ok)
        tl.store(pa_ptr + partial, tl.sum(du * z, axis=0) * v, mask=col_ok)
    if NEED_GZ:
        tl.store(gz_ptr + offsets, gz, mask=mask)


def _grid(n: int, m: int) -> tuple[int, int]:
    return triton.cdiv(n, BLOCK_N), triton.cdiv(m, BLOCK_M)


def _disable(exc: Exception) -> None:
    global enabled
    enabled = False
    warnings.warn(f"Triton component kernel failed ({type(exc).__name__}: {exc}); using the portable kernel",
                  RuntimeWarning, stacklevel=3)


def forward(z: Tensor, aT: Tensor, cT: Tensor, vT: Tensor, e: Tensor, kind: str) -> Tensor | None:
    """``g`` ``(N, M)``, or None if the kernel could not run (then it stays off for this process)."""
    n, m = z.shape
    out = torch.empty_like(z)
    try:
        _forward_kernel[_grid(n, m)](z, aT.contiguous(), cT.contiguous(), vT.contiguous(), e.contiguous(), out,
                                     n, m, WIDTH=aT.shape[0], KIND=KINDS[kind], BN=BLOCK_N, BM=BLOCK_M)
    except Exception as exc:  # noqa: BLE001 - any compile/launch failure falls back to the portable kernel
        _disable(exc)
        return None
    return out


def backward(z: Tensor, aT: Tensor, cT: Tensor, vT: Tensor, grad_out: Tensor, kind: str, need_gz: bool
             ) -> tuple[Tensor | None, Tensor, Tensor, Tensor] | None:
    """``(dL/dz or None, dL/daT, dL/dcT, dL/dvT)``, or None if the kernel could not run."""
    n, m = z.shape
    width = aT.shape[0]
    blocks = triton.cdiv(n, BLOCK_N)
    partials = [z.new_empty(blocks, width, m) for _ in range(3)]
    gz = torch.empty_like(z) if need_gz else z.new_empty(1)
    try:
        _backward_kernel[_grid(n, m)](z, aT.contiguous(), cT.contiguous(), vT.contiguous(), grad_out.contiguous(),
                                      gz, *partials, n, m, WIDTH=width, KIND=KINDS[kind], BN=BLOCK_N,
                                      BM=BLOCK_M, NEED_GZ=need_gz)
    except Exception as exc:  # noqa: BLE001
        _disable(exc)
        return None
    ga, gc, gv = (p.sum(0) for p in partials)
    return (gz if need_gz else None), ga, gc, gv
