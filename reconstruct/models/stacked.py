"""Several independent networks of one architecture evaluated side by side (one per slice of a batch).

:class:`StackedModels` stacks the parameters of ``B`` networks along a new leading axis and evaluates
them with :func:`torch.vmap` over :func:`torch.func.functional_call`: linear layers become batched
matrix products and LRNN's component kernel folds the ``B`` networks into its component axis, so a
GPU runs one set of kernels for ``B`` slices instead of ``B`` sets. On the CPU the networks run one after the
other instead (still one module, one optimiser and one loss). The networks share no parameters;
with Adam (element-wise) and a summed loss, each one follows the same path it would follow alone.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state


class StackedModels(nn.Module):
    """``B`` copies of one coordinate-network architecture: ``(N, in) -> (B, N, out)``.

    Parameters
    ----------
    models : the networks (same class and configuration; their parameters are copied, not shared).
        :meth:`unstack` writes the trained parameters back into them.
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        models = list(models)
        if not models:
            raise ValueError("StackedModels needs at least one model")
        first = models[0]
        config = getattr(first, "config", None)
        for other in models[1:]:
            if type(other) is not type(first) or getattr(other, "config", None) != config:
                raise ValueError("StackedModels needs networks of one class and one configuration, got "
                                 f"{type(first).__name__} and {type(other).__name__}")
        params, buffers = stack_module_state(models)
        self._names = list(params)
        trainable = {name: p.requires_grad for name, p in first.named_parameters()}
        self.stacked = nn.ParameterList([nn.Parameter(params[name].detach().clone(), requires_grad=trainable[name])
                                         for name in self._names])
        self._buffer_names = list(buffers)
        for i, name in enumerate(self._buffer_names):
            self.register_buffer(f"buffer_{i}", buffers[name].clone())
        # The template supplies the forward code only; functional_call swaps in the stacked tensors.
        # Kept in a tuple so it is not a submodule (its parameters are not ours).
        self._template = (copy.deepcopy(first).to("meta"),)
        self._models = tuple(models)

    @property
    def template(self) -> nn.Module:
        """The architecture shared by the stack (parameters on the meta device; ``config`` is live)."""
        return self._template[0]

    @property
    def config(self):  # noqa: ANN201 - whatever the wrapped architecture's config is
        return getattr(self.template, "config", None)

    @config.setter
    def config(self, value) -> None:  # noqa: ANN001
        self.template.config = value

    def __len__(self) -> int:
        return int(self.stacked[0].shape[0])

    def forward(self, coords: Tensor) -> Tensor:
        """``coords`` (N, in) shared by every network -> (B, N, out)."""
        params = dict(zip(self._names, self.stacked, strict=True))
        buffers = {name: getattr(self, f"buffer_{i}") for i, name in enumerate(self._buffer_names)}

        def one(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(self.template, (p, b), (x,))

        if coords.device.type == "cpu":
            # one network after the other: on the CPU vmap's batched layouts made the step slower
            # (docs/BENCHMARKS.md, "Several slices fitted side by side"); a GPU gains from one set of kernels
            return torch.stack([one({k: t[i] for k, t in params.items()}, {k: t[i] for k, t in buffers.items()},
                                    coords) for i in range(len(self))])
        return torch.vmap(one, in_dims=(0, 0, None))(params, buffers, coords)

    def parameters_per_model(self) -> int:
        """Real parameters of one network (a complex entry counts as 2)."""
        return sum(p[0].numel() * (2 if p.is_complex() else 1) for p in self.stacked)

    @torch.no_grad()
    def unstack(self) -> list[nn.Module]:
        """Copy the stacked parameters back into the original networks (moved to the stack's device)
        and return them."""
        for i, model in enumerate(self._models):
            model.to(self.stacked[0].device)
            own = dict(model.named_parameters())
            own.update(dict(model.named_buffers()))
            for name, tensor in zip(self._names, self.stacked, strict=True):
                own[name].copy_(tensor[i])
            for j, name in enumerate(self._buffer_names):
                own[name].copy_(getattr(self, f"buffer_{j}")[i])
        return list(self._models)
