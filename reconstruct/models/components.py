"""Batched learnable univariate component functions used by the LRNN layer.

Each of ``M`` components is a tiny MLP ``1 -> width -> 1``::

    g_m(z) = sum_k v[m, k] * act(a[m, k] * z + c[m, k]) + e[m]

evaluated at every row of ``z`` (shape ``(N, M)``), giving ``(N, M)``.

:func:`component_functions` is the fast CPU path: a custom autograd function that walks
over pixel chunks and the hidden ``width`` dimension with in-place accumulations, so it never
materialises an ``(N, M, width)`` tensor and recomputes activations in the backward pass
instead of storing them (memory ``O(N * M)``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

ACTIVATIONS = ("siren", "spder", "spder_atan")

# Target number of elements of one (chunk, M) work tensor: ~1 MiB of float32 keeps the
# per-k temporaries cache-resident (L2/L3) on small CPUs.
_CHUNK_ELEMENTS = 1 << 18
# Keep act(u), act'(u) from the forward pass when N * width * M is at most this many elements
# (2 float32 buffers of N*width*M); otherwise they are recomputed in the backward pass.
SAVE_LIMIT = 0  # measured slower than recomputing on a 2-core CPU, so off by default


def activation(u: Tensor, kind: str) -> Tensor:
    """Hidden activation of a component MLP, element-wise (any shape).

    ``siren``: ``sin(u)``; ``spder``: ``sin(u) * sqrt(|u|)``; ``spder_atan``: ``sin(u) * atan(u)``.
    For ``siren`` the frequency ``w0`` is folded into the pre-activation by the caller.
    """
    if kind == "siren":
        return torch.sin(u)
    if kind == "spder":
        return torch.sin(u) * torch.sqrt(torch.abs(u))
    if kind == "spder_atan":
        return torch.sin(u) * torch.atan(u)
    raise ValueError(f"unknown activation {kind!r}; expected one of {ACTIVATIONS}")


def _activation_and_derivative(u: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    """Return ``(act(u), act'(u))`` element-wise."""
    s = torch.sin(u)
    co = torch.cos(u)
    if kind == "siren":
        return s, co
    if kind == "spder":
        r = torch.sqrt(torch.abs(u))
        h = s * r
        # d/du sqrt|u| = sign(u) / (2 sqrt|u|); sin(u)/sqrt|u| -> 0 at u = 0, keep it finite.
        inv = torch.where(r > 0, 0.5 / r.clamp_min(1e-30), torch.zeros_like(r))
        dh = co * r + s * torch.sign(u) * inv
        return h, dh
    if kind == "spder_atan":
        at = torch.atan(u)
        return s * at, co * at + s / (1.0 + u * u)
    raise ValueError(f"unknown activation {kind!r}; expected one of {ACTIVATIONS}")


def activation_rms(kind: str, w0: float, z_std: float = 1.0, samples: int = 1 << 16) -> float:
    """Root-mean-square of ``act(w0 * (a z + c))`` at initialisation (Monte Carlo, fixed seed).

    ``a, c ~ U(-1, 1)`` and ``z ~ N(0, z_std^2)``; used to scale the output weights so that the
    component functions start with a prescribed variance whatever the activation.
    Uses a private generator, so the global RNG state is untouched.
    """
    gen = torch.Generator().manual_seed(1234)
    a = torch.rand(samples, generator=gen, dtype=torch.float64) * 2 - 1
    c = torch.rand(samples, generator=gen, dtype=torch.float64) * 2 - 1
    z = torch.randn(samples, generator=gen, dtype=torch.float64) * z_std
    h = activation(w0 * (a * z + c), kind)
    return float(math.sqrt(float((h * h).mean())))


def _chunk_rows(n: int, per_row: int) -> int:
    return max(1, min(n, _CHUNK_ELEMENTS // max(per_row, 1)))


class _ComponentSum(torch.autograd.Function):
    """Fused ``g = sum_k v[:, k] * act(a[:, k] * z + c[:, k]) + e`` over pixel chunks.

    Work tensors have layout ``(chunk, width, M)`` (``M`` contiguous, so the reductions over
    ``width`` and over pixels vectorise). When ``N * width * M <= save_limit`` the forward keeps
    ``act(u)`` and ``act'(u)`` (two transcendental passes in total, like plain autograd);
    otherwise only ``z`` is saved and the backward recomputes them chunk by chunk.
    """

    @staticmethod
    def forward(ctx, z: Tensor, aT: Tensor, cT: Tensor, vT: Tensor, e: Tensor, kind: str,  # type: ignore[override]
                save_limit: int) -> Tensor:
        n, m = z.shape
        width = aT.shape[0]
        save = ctx.needs_input_grad[0] or any(ctx.needs_input_grad[1:5])
        keep = save and n * width * m <= save_limit
        h_all = z.new_empty(n, width, m) if keep else None
        dh_all = z.new_empty(n, width, m) if keep else None
        out = torch.empty_like(z)
        if keep:
            step = _chunk_rows(n, width * m)
            for i in range(0, n, step):
                u = torch.addcmul(cT, z[i : i + step, None, :], aT)  # (B, width, M)
                h, dh = _activation_and_derivative(u, kind)
                h_all[i : i + step] = h
                dh_all[i : i + step] = dh
                torch.sum(h.mul_(vT), dim=1, out=out[i : i + step])
        else:  # loop over the hidden width with (B, M) work tensors
            step = _chunk_rows(n, m)
            for i in range(0, n, step):
                zc, gc = z[i : i + step], out[i : i + step]
                gc.zero_()
                for k in range(width):
                    gc.addcmul_(activation(torch.addcmul(cT[k], zc, aT[k]), kind), vT[k])
        out.add_(e)
        if keep:
            ctx.save_for_backward(z, aT, cT, vT, h_all, dh_all)
        else:
            ctx.save_for_backward(z, aT, cT, vT)
        ctx.kind, ctx.keep = kind, keep
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        if ctx.keep:
            z, aT, cT, vT, h_all, dh_all = ctx.saved_tensors
        else:
            z, aT, cT, vT = ctx.saved_tensors
        n, m = z.shape
        width = aT.shape[0]
        grad_out = grad_out.contiguous()
        gz = torch.empty_like(z) if ctx.needs_input_grad[0] else None
        ga, gc, gv = torch.zeros_like(aT), torch.zeros_like(cT), torch.zeros_like(vT)
        if ctx.keep:
            step = _chunk_rows(n, width * m)
            for i in range(0, n, step):
                zc = z[i : i + step, None, :]
                go = grad_out[i : i + step, None, :]
                h, dh = h_all[i : i + step], dh_all[i : i + step]
                t = dh * (go * vT)  # dL/du, (B, width, M)
                gv += (h * go).sum(0)
                gc += t.sum(0)
                ga += (t * zc).sum(0)
                if gz is not None:
                    torch.sum(t.mul_(aT), dim=1, out=gz[i : i + step])
        else:  # recompute act(u), act'(u) per (pixel chunk, k) with (B, M) work tensors
            if gz is not None:
                gz.zero_()
            step = _chunk_rows(n, m)
            for i in range(0, n, step):
                zc, go = z[i : i + step], grad_out[i : i + step]
                for k in range(width):
                    h, dh = _activation_and_derivative(torch.addcmul(cT[k], zc, aT[k]), ctx.kind)
                    gv[k] += (go * h).sum(0)
                    t = dh.mul_(go).mul_(vT[k])
                    gc[k] += t.sum(0)
                    ga[k] += (t * zc).sum(0)
                    if gz is not None:
                        gz[i : i + step].addcmul_(t, aT[k])
        ge = grad_out.sum(0) if ctx.needs_input_grad[4] else None
        return gz, ga, gc, gv, ge, None, None


def component_functions(
    z: Tensor, a: Tensor, c: Tensor, v: Tensor, e: Tensor, kind: str, save_limit: int | None = None
) -> Tensor:
    """Evaluate ``M`` component MLPs at every row of ``z``.

    Args:
        z: ``(N, M)`` pre-activations (one column per component).
        a, c: ``(M, width)`` hidden weights and biases (frequency ``w0`` already folded in).
        v: ``(M, width)`` output weights; e: ``(M,)`` output biases.
        kind: hidden activation, one of :data:`ACTIVATIONS`.
        save_limit: keep activations for the backward when ``N * width * M`` is at most this
            (default :data:`SAVE_LIMIT`, 0: always recompute).

    Returns:
        ``(N, M)`` tensor ``g[n, m] = sum_k v[m,k] act(a[m,k] z[n,m] + c[m,k]) + e[m]``.
    """
    if kind not in ACTIVATIONS:
        raise ValueError(f"unknown activation {kind!r}; expected one of {ACTIVATIONS}")
    save_limit = SAVE_LIMIT if save_limit is None else save_limit
    return _ComponentSum.apply(z.contiguous(), a.t(), c.t(), v.t(), e, kind, save_limit)


def component_functions_reference(z: Tensor, a: Tensor, c: Tensor, v: Tensor, e: Tensor, kind: str) -> Tensor:
    """Plain autograd version of :func:`component_functions` materialising ``(N, M, width)``."""
    u = z.unsqueeze(-1) * a + c
    return (activation(u, kind) * v).sum(-1) + e
