"""Seed packs: the seeds of one configuration trained side by side as one stacked model.

The trainer sees every run as a set of members with a leading member dimension K:
``OneModel`` is the plain path (K = 1, the model called as it is), ``SeedPack`` stacks K
copies of the same model code with ``torch.func``: each member keeps the parameters it was
initialised with under its own seed, and ``vmap`` runs the one forward over all of them,
so K small runs cost a few larger kernels instead of K times as many small ones.

nn.LSTM and nn.GRU have no vmap batching rule. Inside a pack they run as their cells
unrolled over time from matrix products (``UnrolledLSTM``, ``UnrolledGRU``): the same
parameters under the same names and the same equations, so a member computes what the
model alone computes, up to float rounding.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from msa_ablate.errors import ConfigError
from msa_ablate.models.model import attention_fast_path_off

Features = Mapping[str, torch.Tensor]


class _UnrolledRNN(nn.Module):
    """An nn.LSTM / nn.GRU (batch_first, any depth, either direction) as a loop of cells."""

    def __init__(self, rnn: nn.LSTM | nn.GRU) -> None:
        super().__init__()
        if not rnn.batch_first or getattr(rnn, "proj_size", 0) or not rnn.bias:
            raise ConfigError(f"{type(rnn).__name__}: seed packs need batch_first=True, bias=True, no proj_size")
        self.num_layers, self.dropout, self.bidirectional = rnn.num_layers, rnn.dropout, rnn.bidirectional
        self.has_cell_state = isinstance(rnn, nn.LSTM)
        for name, p in rnn.named_parameters(recurse=False):  # same names: functional_call finds them
            self.register_parameter(name, nn.Parameter(p.detach().clone()))

    def scan(self, x: torch.Tensor, suffix: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        w_ih, w_hh = getattr(self, f"weight_ih{suffix}"), getattr(self, f"weight_hh{suffix}")
        b_ih, b_hh = getattr(self, f"bias_ih{suffix}"), getattr(self, f"bias_hh{suffix}")
        xw = x @ w_ih.T + b_ih  # the input part of every step at once
        h = x.new_zeros(x.shape[0], w_hh.shape[1])
        c = h if self.has_cell_state else None
        outs = []
        # unbind, not xw[:, t]: each indexed step's backward would fill a zero tensor of all T steps
        for xw_t in xw.unbind(1):
            h, c = self.cell(xw_t, h, c, w_hh, b_hh)  # defined by UnrolledLSTM / UnrolledGRU
            outs.append(h)
        return torch.stack(outs, 1), h, c

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
        hs, cs = [], []
        for layer in range(self.num_layers):
            out, h, c = self.scan(x, f"_l{layer}")
            outs, hs, cs = [out], hs + [h], cs + [c]
            if self.bidirectional:
                out, h, c = self.scan(x.flip(1), f"_l{layer}_reverse")
                outs, hs, cs = outs + [out.flip(1)], hs + [h], cs + [c]
            x = torch.cat(outs, -1)
            if layer < self.num_layers - 1:  # nn.LSTM's dropout: between layers only
                x = F.dropout(x, self.dropout, self.training)
        h_n = torch.stack(hs)
        return x, ((h_n, torch.stack(cs)) if self.has_cell_state else h_n)


class UnrolledLSTM(_UnrolledRNN):
    def cell(self, xw, h, c, w_hh, b_hh):
        i, f, g, o = (xw + h @ w_hh.T + b_hh).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class UnrolledGRU(_UnrolledRNN):
    def cell(self, xw, h, c, w_hh, b_hh):
        xr, xz, xn = xw.chunk(3, -1)
        hr, hz, hn = (h @ w_hh.T + b_hh).chunk(3, -1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h, None


def unrolled(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with each nn.LSTM / nn.GRU replaced by its unrolled twin."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) in (nn.LSTM, nn.GRU):
                setattr(parent, name, (UnrolledLSTM if type(child) is nn.LSTM else UnrolledGRU)(child))
    return model


class OneModel:
    """The plain path: one member, the model itself (nn.LSTM and all)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __call__(self, x: Features) -> torch.Tensor:
        """(1, B, ...) per member -> (1, B)."""
        return self.model({m: v[0] for m, v in x.items()})[None]

    def shared(self, x: Features) -> torch.Tensor:
        """The same (B, ...) batch for every member -> (1, B)."""
        return self.model(x)[None]

    def parameters(self) -> list[torch.Tensor]:
        return list(self.model.parameters())

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)

    def member_state(self, k: int) -> dict[str, torch.Tensor]:
        return {name: t.detach().clone() for name, t in self.model.state_dict().items()}

    def load_member_state(self, k: int, state: Mapping[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)

    def state(self) -> dict[str, torch.Tensor]:
        """Every member's weights, for a checkpoint."""
        return self.model.state_dict()

    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)


class SeedPack(OneModel):
    """K copies of one model with stacked parameters; ``vmap`` over the member dimension.
    Dropout draws a different mask for every member (``randomness="different"``)."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        self.template = unrolled(models[0]).to("meta")  # structure only: the weights are the stacks
        params, buffers = stack_module_state(list(models))
        self.params = {k: nn.Parameter(v.detach()) for k, v in params.items()}
        self.buffers = buffers
        self.state_keys = list(models[0].state_dict())  # non-persistent buffers (e.g. a fixed table) are not state

    def _call(self, params, buffers, x):
        return functional_call(self.template, (params, buffers), (x,))

    def __call__(self, x: Features) -> torch.Tensor:
        return vmap(self._call, randomness="different")(self.params, self.buffers, dict(x))

    def shared(self, x: Features) -> torch.Tensor:
        with attention_fast_path_off():
            return vmap(self._call, in_dims=(0, 0, None), randomness="different")(self.params, self.buffers, dict(x))

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def train(self, mode: bool = True) -> None:
        self.template.train(mode)

    def stacks(self) -> dict[str, torch.Tensor]:
        """Each state_dict entry stacked over the members: (K, ...)."""
        every = {**self.params, **self.buffers}
        return {name: every[name] for name in self.state_keys}

    def member_state(self, k: int) -> dict[str, torch.Tensor]:
        return {name: t[k].detach().clone() for name, t in self.stacks().items()}

    def load_member_state(self, k: int, state: Mapping[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, t in self.stacks().items():
                t[k].copy_(state[name])

    def state(self) -> dict[str, torch.Tensor]:
        return {name: t.detach() for name, t in self.stacks().items()}

    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, t in self.stacks().items():
                t.copy_(state[name])


def members(models: Sequence[nn.Module]) -> OneModel:
    """The plain path for one model, a SeedPack for several."""
    return OneModel(models[0]) if len(models) == 1 else SeedPack(models)
