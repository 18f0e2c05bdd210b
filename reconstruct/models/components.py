"""Batched learnable univariate component functions used by the LRNN layer.

Each of ``M`` components is a tiny MLP ``1 -> width -> 1``::

    g_m(z) = sum_k v[m, k] * act(a[m, k] * z + c[m, k]) + e[m]

evaluated at every row of ``z`` (shape ``(N, M)``), giving ``(N, M)``.

:func:`component_functions` is the fast path: a custom autograd function that walks
over pixel chunks and the hidden ``width`` dimension with in-place accumulations, so it never
materialises an ``(N, M, width)`` tensor and recomputes activations in the backward pass
instead of storing them (memory ``O(N * M)``). The same function runs compiled kernels that make one pass
over memory where they apply: on CUDA those of :mod:`reconstruct.models.components_triton` (when Triton is
installed), on the CPU those of :mod:`reconstruct.models.components_numba`; the torch loop here is the
portable kernel for every other case (``spder_atan``, float64, other devices).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .configs import ACTIVATIONS

# Target number of elements of one (chunk, M) work tensor: ~1 MiB of float32 keeps the
# per-k temporaries cache-resident (L2/L3) on small CPUs.
_CHUNK_ELEMENTS = 1 << 18
# On a GPU every chunk costs a few kernel launches, so chunks are as large as memory comfortably allows
# (2^26 float32 = 256 MiB per work tensor): a 256^2 image with M = 1040 components runs in one chunk.
_CHUNK_ELEMENTS_ACCELERATOR = 1 << 26


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


def _activation_into(u: Tensor, kind: str) -> Tensor:
    """``act(u)`` computed in place in ``u`` (returns ``u``)."""
    if kind == "siren":
        return u.sin_()
    return u.copy_(activation(u, kind))


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


def _chunk_rows(n: int, per_row: int, device: torch.device) -> int:
    budget = _CHUNK_ELEMENTS if device.type == "cpu" else _CHUNK_ELEMENTS_ACCELERATOR
    return max(1, min(n, budget // max(per_row, 1)))


def _compiled_for(z: Tensor, kind: str):
    """The compiled kernels' module when they handle this input (Triton on CUDA, numba on the CPU; float32),
    else None. Imported on first use: numba's kernels take a while to load, Triton ships only with CUDA
    builds of torch."""
    if z.is_cuda:
        try:
            from . import components_triton as kernels
        except ImportError:  # triton ships with torch's CUDA wheels on Linux; elsewhere the portable kernel runs
            return None
    elif z.device.type == "cpu":
        from . import components_numba as kernels
    else:
        return None
    return kernels if kernels.usable(z, kind) else None


class _ComponentSum(torch.autograd.Function):
    """Fused ``g = sum_k v[:, k] * act(a[:, k] * z + c[:, k]) + e`` over pixel chunks.

    Work tensors are ``(chunk, M)``; the loop runs over the hidden ``width``. Only ``z`` and the weights
    are saved; the backward recomputes ``act`` and ``act'`` chunk by chunk (keeping them measured slower
    on a 2-core CPU). Under :func:`torch.vmap` (several networks fitted at once) the batch of networks is
    folded into the component axis: ``B`` networks with ``M`` components each are ``B*M`` components.
    """

    @staticmethod
    def forward(z: Tensor, aT: Tensor, cT: Tensor, vT: Tensor, e: Tensor, kind: str) -> Tensor:  # type: ignore[override]
        fused = _compiled_for(z, kind)
        out = fused.forward(z, aT, cT, vT, e, kind) if fused else None
        if out is not None:
            return out
        n, m = z.shape
        out = torch.empty_like(z)
        step = _chunk_rows(n, m, z.device)
        u = z.new_empty(min(step, n), m)  # work buffer reused for every (chunk, k)
        for i in range(0, n, step):
            zc, gc = z[i : i + step], out[i : i + step]
            uc = u[: zc.shape[0]]
            for k in range(aT.shape[0]):
                torch.addcmul(cT[k], zc, aT[k], out=uc)
                if k == 0:
                    torch.mul(_activation_into(uc, kind), vT[0], out=gc)
                else:
                    gc.addcmul_(_activation_into(uc, kind), vT[k])
        return out.add_(e)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        z, aT, cT, vT, _e, kind = inputs
        ctx.save_for_backward(z, aT, cT, vT)
        ctx.kind = kind

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        z, aT, cT, vT = ctx.saved_tensors
        n, m = z.shape
        grad_out = grad_out.contiguous()
        ge = grad_out.sum(0) if ctx.needs_input_grad[4] else None
        fused = _compiled_for(z, ctx.kind)
        grads = fused.backward(z, aT, cT, vT, grad_out, ctx.kind, ctx.needs_input_grad[0]) if fused else None
        if grads is not None:
            return (*grads, ge, None)
        gz = torch.empty_like(z) if ctx.needs_input_grad[0] else None
        ga, gc, gv = torch.zeros_like(aT), torch.zeros_like(cT), torch.zeros_like(vT)
        step = _chunk_rows(n, m, z.device)
        av = aT * vT  # dL/dz = sum_k a_k v_k act'(u_k) dL/dg; v_k is also factored out of ga and gc below
        for i in range(0, n, step):
            zc, go = z[i : i + step], grad_out[i : i + step]
            for k in range(aT.shape[0]):
                h, dh = _activation_and_derivative(torch.addcmul(cT[k], zc, aT[k]), ctx.kind)
                gv[k] += h.mul_(go).sum(0)
                dh.mul_(go)  # act'(u) dL/dg = dL/du / v_k
                gc[k] += dh.sum(0)
                if gz is not None and k == 0:
                    torch.mul(dh, av[0], out=gz[i : i + step])
                elif gz is not None:
                    gz[i : i + step].addcmul_(dh, av[k])
                ga[k] += dh.mul_(zc).sum(0)
        ga.mul_(vT)
        gc.mul_(vT)
        return gz, ga, gc, gv, ge, None

    @staticmethod
    def vmap(info, in_dims, z, aT, cT, vT, e, kind):  # type: ignore[override]
        size = info.batch_size

        def batched(t: Tensor, dim: int | None) -> Tensor:
            return t.expand(size, *t.shape) if dim is None else t.movedim(dim, 0)

        def folded(t: Tensor, dim: int | None) -> Tensor:  # (B, rows, M) -> (rows, B*M)
            b = batched(t, dim)
            return b.permute(1, 0, 2).reshape(b.shape[1], size * b.shape[2])

        n, m = z.shape[-2], z.shape[-1]
        out = _ComponentSum.apply(folded(z, in_dims[0]).contiguous(), folded(aT, in_dims[1]),
                                  folded(cT, in_dims[2]), folded(vT, in_dims[3]),
                                  batched(e, in_dims[4]).reshape(size * m), kind)
        return out.view(n, size, m).transpose(0, 1).contiguous(), 0  # the layout vmap gave z


def component_functions(z: Tensor, a: Tensor, c: Tensor, v: Tensor, e: Tensor, kind: str) -> Tensor:
    """Evaluate ``M`` component MLPs at every row of ``z``.

    Args:
        z: ``(N, M)`` pre-activations (one column per component).
        a, c: ``(M, width)`` hidden weights and biases (frequency ``w0`` already folded in).
        v: ``(M, width)`` output weights; e: ``(M,)`` output biases.
        kind: hidden activation, one of :data:`ACTIVATIONS`.

    Returns:
        ``(N, M)`` tensor ``g[n, m] = sum_k v[m,k] act(a[m,k] z[n,m] + c[m,k]) + e[m]``.
        Works under :func:`torch.vmap` over all arguments (networks fitted side by side). Always
        computed in float32: under autocast (bf16 on CUDA) the inputs are cast up, because
        ``sin(w0 (a z + c))`` with bf16's 8-bit mantissa is off by ~0.1 rad at ``w0 = 30``.
    """
    if kind not in ACTIVATIONS:
        raise ValueError(f"unknown activation {kind!r}; expected one of {ACTIVATIONS}")
    if torch.is_autocast_enabled(z.device.type):
        with torch.autocast(z.device.type, enabled=False):
            return component_functions(z.float(), a.float(), c.float(), v.float(), e.float(), kind)
    # (width, M) rows must be contiguous: a strided broadcast operand takes a slow non-vectorised loop
    return _ComponentSum.apply(z.contiguous(), a.t().contiguous(), c.t().contiguous(), v.t().contiguous(), e, kind)


def component_functions_reference(z: Tensor, a: Tensor, c: Tensor, v: Tensor, e: Tensor, kind: str) -> Tensor:
    """Plain autograd version of :func:`component_functions` materialising ``(N, M, width)``."""
    u = z.unsqueeze(-1) * a + c
    return (activation(u, kind) * v).sum(-1) + e
