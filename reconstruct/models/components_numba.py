"""Compiled CPU kernels (numba) for the LRNN component functions (one pass over memory per direction).

The portable kernel in :mod:`reconstruct.models.components` runs a dozen element-wise torch operations per
hidden unit, each streaming an ``(N, M)`` tensor through memory; here each row of ``z`` is read once, every
hidden unit is evaluated in registers, and the weight gradients are summed per block of rows. The sine and
cosine are polynomials after a two-constant reduction to [-pi, pi] (Taylor to degree 17 / 18: truncation below
4e-8 there, under float32's resolution), written out so that the loop over the ``M`` components vectorises;
numba's ``math.sin`` is a scalar library call. How much faster than the portable kernel: docs/BENCHMARKS.md,
"LRNN layer speed: component kernels".

Shapes follow :class:`reconstruct.models.components._ComponentSum`: ``z`` ``(N, M)``, ``aT``/``cT``/``vT``
``(width, M)``, ``e`` ``(M,)``, float32 CPU tensors. Activations ``siren`` and ``spder``; ``spder_atan`` stays
on the portable kernel. Kernels are compiled on first use and cached on disk next to this file.
"""

from __future__ import annotations

import math
import os

import numba
import numpy as np
import torch
from torch import Tensor

from sparsect.operators.project_numba import kernel_call

KINDS = {"siren": 0, "spder": 1}
#: Set to False (or SPARSECT_NUMBA_COMPONENTS=0) to use the portable kernel; benchmarks compare the two.
enabled = os.environ.get("SPARSECT_NUMBA_COMPONENTS", "1") != "0"
#: Rows per block of the backward pass: each block sums its weight gradients in float32 over this many rows
#: (rounding like torch's own sums), and the blocks' sums (3 * width / BLOCK_ROWS of z's size) are added in float64.
BLOCK_ROWS = 256

_INV_TWO_PI = np.float32(1.0 / (2.0 * math.pi))
# 2 pi split in two: the first has 8 significant bits, so k * _TWO_PI_HIGH is exact for |k| < 2^16
_TWO_PI_HIGH = np.float32(6.28125)
_TWO_PI_LOW = np.float32(2.0 * math.pi - 6.28125)
_SIN = tuple(np.float32((-1.0) ** i / math.factorial(2 * i + 1)) for i in range(9))
_COS = tuple(np.float32((-1.0) ** i / math.factorial(2 * i)) for i in range(10))
# No fast-math reassociation: it would fold the two-constant reduction back into one product.
_FLAGS = {"contract"}


def usable(z: Tensor, kind: str) -> bool:
    """Whether the component kernel should use :func:`forward` / :func:`backward` for this input."""
    return enabled and z.device.type == "cpu" and z.dtype == torch.float32 and kind in KINDS


@numba.njit(cache=True, inline="always", fastmath=_FLAGS)
def _sin_cos(u):
    k = np.floor(u * _INV_TWO_PI + np.float32(0.5))
    r = (u - k * _TWO_PI_HIGH) - k * _TWO_PI_LOW
    r2 = r * r
    s = _SIN[8]
    for i in range(7, -1, -1):
        s = s * r2 + _SIN[i]
    c = _COS[9]
    for i in range(8, -1, -1):
        c = c * r2 + _COS[i]
    return r * s, c


@numba.njit(cache=True, inline="always", fastmath=_FLAGS)
def _activation_and_derivative(u, kind):
    s, c = _sin_cos(u)
    if kind == 0:
        return s, c
    root = np.sqrt(np.abs(u))
    # d/du sqrt|u| = sign(u) / (2 sqrt|u|); sin(u) / sqrt|u| -> 0 at u = 0
    half_inverse = np.float32(0.5) / root if root > 0 else np.float32(0.0)
    return s * root, c * root + s * np.sign(u) * half_inverse


@numba.njit(cache=True, parallel=True, fastmath=_FLAGS)
def _forward(z, aT, cT, vT, e, kind, out):
    n, m = z.shape
    for i in numba.prange(n):
        for j in range(m):
            out[i, j] = e[j]
        for k in range(aT.shape[0]):
            for j in range(m):
                h, _ = _activation_and_derivative(aT[k, j] * z[i, j] + cT[k, j], kind)
                out[i, j] += vT[k, j] * h


@numba.njit(cache=True, parallel=True, fastmath=_FLAGS)
def _backward(z, aT, cT, vT, grad_out, kind, need_gz, gz, partials):
    n, m = z.shape
    blocks = partials.shape[0]
    rows = (n + blocks - 1) // blocks
    av = aT * vT
    for b in numba.prange(blocks):
        sums = partials[b]  # (3, width, M): sums of act(u) dL/dg, act'(u) dL/dg, act'(u) dL/dg z
        for i in range(b * rows, min(n, (b + 1) * rows)):
            if need_gz:
                for j in range(m):
                    gz[i, j] = 0.0
            for k in range(aT.shape[0]):
                for j in range(m):
                    zij, gij = z[i, j], grad_out[i, j]
                    h, dh = _activation_and_derivative(aT[k, j] * zij + cT[k, j], kind)
                    dh = dh * gij
                    sums[0, k, j] += h * gij
                    sums[1, k, j] += dh
                    sums[2, k, j] += dh * zij
                    if need_gz:
                        gz[i, j] += dh * av[k, j]


def _arrays(*tensors: Tensor) -> list[np.ndarray]:
    return [t.detach().contiguous().numpy() for t in tensors]


def forward(z: Tensor, aT: Tensor, cT: Tensor, vT: Tensor, e: Tensor, kind: str) -> Tensor:
    """``g`` ``(N, M)``: ``g[n, m] = sum_k vT[k, m] act(aT[k, m] z[n, m] + cT[k, m]) + e[m]``."""
    out = torch.empty_like(z)
    with kernel_call():
        _forward(*_arrays(z, aT, cT, vT, e), KINDS[kind], out.numpy())
    return out


def backward(z: Tensor, aT: Tensor, cT: Tensor, vT: Tensor, grad_out: Tensor, kind: str, need_gz: bool
             ) -> tuple[Tensor | None, Tensor, Tensor, Tensor]:
    """``(dL/dz or None, dL/daT, dL/dcT, dL/dvT)`` for ``dL/dg = grad_out``."""
    n, m = z.shape
    width = aT.shape[0]
    gz = torch.empty_like(z) if need_gz else z.new_empty(1, 1)
    partials = np.zeros((-(-n // BLOCK_ROWS), 3, width, m), dtype=np.float32)
    with kernel_call():
        _backward(*_arrays(z, aT, cT, vT, grad_out), KINDS[kind], need_gz, gz.numpy(), partials)
    sums = torch.from_numpy(partials.sum(axis=0, dtype=np.float64))
    gv = sums[0].to(torch.float32)
    gc = (sums[1] * vT.double()).to(torch.float32)
    ga = (sums[2] * vT.double()).to(torch.float32)
    return (gz if need_gz else None), ga, gc, gv
