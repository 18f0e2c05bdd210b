"""LRNN: coordinate network built from learnable product-structured activations.

Each multiplicative layer maps ``x`` in ``R^{r_in}`` to ``r`` neurons. Neuron ``l`` projects
``z^l = W^l x + b^l`` in ``R^d`` (the whole layer's projection is one ``Linear(r_in, r*d)``),
applies ``d`` learnable univariate component functions ``g_j^l`` and outputs

    phi_l = prod_j (1 + gamma * g_j^l(z_j^l)),   gamma = d ** -0.5,

followed by a ``LayerNorm(r)``. A linear head maps the last ``r`` features to one output.

Component functions are tiny MLPs ``1 -> width -> 1`` (hidden activation ``siren``
``sin(w0 u)``, ``spder`` ``sin(u) sqrt|u|`` or ``spder_atan`` ``sin(u) atan(u)``).
By default every (neuron, j) pair has its own MLP (``r*d`` MLPs per layer, parameters of shape
``(r*d, width)``); with ``shared=True`` each neuron owns one MLP shared by its ``d`` components
(parameters ``(r, width)``), which keeps the per-pixel cost but cuts component parameters by ``d``.

Initialisation (Lemma 1 idea): ``e = 0`` and zero-mean symmetric output weights ``v`` make each
``g`` zero-mean with variance ``init_std**2`` (the activation's RMS is measured once and divided
out), independently across ``j`` for independent MLPs, so ``E[phi] = 1`` and
``Var[phi] = (1 + sigma^2/d)^d - 1 <= exp(sigma^2) - 1`` whatever ``d``.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor, nn

from .components import ACTIVATIONS, activation_rms, component_functions, component_functions_reference
from .configs import LRNNConfig


class _FactorProduct(torch.autograd.Function):
    """``prod_j f[..., j]`` whose backward multiplies running products from the left and from the right:
    torch.prod's own backward tests every factor for zero and divides, which on the CPU cost more than the
    component kernels themselves (docs/BENCHMARKS.md, "LRNN layer speed: component kernels")."""

    generate_vmap_rule = True

    @staticmethod
    def forward(factors: Tensor) -> Tensor:  # type: ignore[override]
        return factors.prod(dim=-1)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (factors,) = ctx.saved_tensors
        parts = factors.unbind(-1)
        left = [grad]  # left[j] = grad * prod_{i < j} f_i
        for part in parts[:-1]:
            left.append(left[-1] * part)
        grads = [left[-1]]
        right = parts[-1]  # prod_{i > j} f_i
        for j in range(len(parts) - 2, -1, -1):
            grads.append(left[j] * right)
            if j:
                right = right * parts[j]
        return torch.stack(grads[::-1], dim=-1)


class LRNNLayer(nn.Module):
    """One multiplicative layer: ``(N, in_features) -> (N, rank)`` (LayerNorm included)."""

    def __init__(
        self,
        in_features: int,
        rank: int,
        proj_dim: int,
        width: int,
        activation: str = "siren",
        w0: float = 1.0,
        shared: bool = False,
        init_std: float = 1.0,
        fused: bool = True,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
        self.in_features, self.rank, self.proj_dim, self.width = in_features, rank, proj_dim, width
        self.activation, self.w0, self.shared, self.fused = activation, float(w0), shared, fused
        self.gamma = proj_dim**-0.5
        m = rank * proj_dim
        n_mlp = rank if shared else m
        self.proj = nn.Linear(in_features, m)
        self.a = nn.Parameter(torch.empty(n_mlp, width))  # hidden weights
        self.c = nn.Parameter(torch.empty(n_mlp, width))  # hidden biases
        self.v = nn.Parameter(torch.empty(n_mlp, width))  # output weights
        self.e = nn.Parameter(torch.empty(n_mlp))  # output biases
        self.norm = nn.LayerNorm(rank)
        self.reset_parameters(init_std)

    @torch.no_grad()
    def reset_parameters(self, init_std: float = 1.0) -> None:
        """Projection: ``z`` has ~unit variance for unit-variance inputs; components: zero-mean,
        std ``init_std`` (output weights ``v ~ U(-b, b)`` with ``b = sqrt(3/width) * init_std / rms``)."""
        bound = math.sqrt(3.0 / self.in_features)
        self.proj.weight.uniform_(-bound, bound)
        self.proj.bias.zero_()
        self.a.uniform_(-1.0, 1.0)
        self.c.uniform_(-1.0, 1.0)
        rms = activation_rms(self.activation, self.w0)
        b = math.sqrt(3.0 / self.width) * init_std / max(rms, 1e-6)
        self.v.uniform_(-b, b)
        self.e.zero_()

    def component_params(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(a, c, v, e)`` expanded to one row per (neuron, j): shapes ``(r*d, width)`` / ``(r*d,)``,
        with ``w0`` folded into ``a`` and ``c``."""
        a, c, v, e = self.a * self.w0, self.c * self.w0, self.v, self.e
        if self.shared:
            d = self.proj_dim
            a, c, v = (t.repeat_interleave(d, dim=0) for t in (a, c, v))
            e = e.repeat_interleave(d, dim=0)
        return a, c, v, e

    def components(self, x: Tensor) -> Tensor:
        """Component values ``g`` of shape ``(N, r, d)`` for inputs ``x`` of shape ``(N, in_features)``."""
        return self._component_sum(self.proj(x), *self.component_params())

    def factors(self, x: Tensor) -> Tensor:
        """The product's factors ``1 + gamma g``, shape ``(N, r, d)``: the same kernel with ``v`` and ``e``
        scaled (``gamma v``, ``1 + gamma e``), so no ``(N, r, d)`` pass is spent on the affine map."""
        a, c, v, e = self.component_params()
        return self._component_sum(self.proj(x), a, c, self.gamma * v, 1.0 + self.gamma * e)

    def _component_sum(self, z: Tensor, a: Tensor, c: Tensor, v: Tensor, e: Tensor) -> Tensor:
        fn = component_functions if self.fused else component_functions_reference
        return fn(z, a, c, v, e, self.activation).view(-1, self.rank, self.proj_dim)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, in_features) -> (N, rank)``: LayerNorm of ``prod_j (1 + gamma g_j)``, in float32 even under
        autocast (a bf16 projection would round ``z`` before ``sin(w0 z)``; the matmuls are small)."""
        with torch.autocast(x.device.type, enabled=False):
            factors = self.factors(x.float())
            phi = _FactorProduct.apply(factors) if self.fused else torch.prod(factors, dim=-1)
            return self.norm(phi)


class LRNN(nn.Module):
    """Coordinate network ``(N, 2) -> (N, 1)`` made of :class:`LRNNLayer` s and a linear head."""

    def __init__(self, config: LRNNConfig | None = None, **overrides) -> None:
        super().__init__()
        cfg = replace(config or LRNNConfig(), **overrides)
        self.config = cfg
        layers = []
        in_f = cfg.in_features
        fused = cfg.fused and not cfg.compile
        for i in range(cfg.depth):
            layers.append(
                LRNNLayer(
                    in_f,
                    cfg.rank,
                    cfg.proj_dim,
                    cfg.width,
                    activation=cfg.activation,
                    w0=cfg.w0 if i == 0 else cfg.hidden_w0,
                    shared=cfg.shared,
                    init_std=cfg.init_std,
                    fused=fused,
                )
            )
            in_f = cfg.rank
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(cfg.rank, cfg.out_features)

    def _body(self):
        if not self.config.compile:
            return self.layers
        # kept out of the registered submodules, so the state_dict has one set of keys with or without compile
        compiled = self.__dict__.get("_compiled_layers")
        if compiled is None:
            compiled = self.__dict__["_compiled_layers"] = torch.compile(self.layers, dynamic=False)
        return compiled

    def forward(self, coords: Tensor) -> Tensor:
        """``coords`` ``(N, in_features)`` in ``[-1, 1]`` -> ``(N, out_features)``, float32 even under autocast."""
        with torch.autocast(coords.device.type, enabled=False):
            return self.head(self._body()(coords.float() * self.config.coord_scale))


def lrnn_parameter_count(cfg: LRNNConfig) -> int:
    """Closed-form number of parameters of ``LRNN(cfg)``."""
    r, d, w = cfg.rank, cfg.proj_dim, cfg.width
    n_mlp = r if cfg.shared else r * d
    total = 0
    in_f = cfg.in_features
    for _ in range(cfg.depth):
        total += in_f * r * d + r * d  # projection
        total += n_mlp * (3 * w + 1)  # component MLPs: a, c, v (width each) + e
        total += 2 * r  # LayerNorm
        in_f = r
    return total + r * cfg.out_features + cfg.out_features
