"""nn.LSTM, nn.GRU and nn.LSTMCell as their cells unrolled over time from matrix products.

torch.func's vmap (seed packs: msa_ablate/members.py) has no batching rule for the fused RNN
modules. Their twins here hold the same parameters under the same names and compute the same
equations, so a member of a pack computes what the model alone computes, up to float rounding.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from msa_ablate.errors import ConfigError


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


def lstm_step(xw, h, c, w_hh, b_hh):
    i, f, g, o = (xw + h @ w_hh.T + b_hh).chunk(4, -1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


class UnrolledLSTM(_UnrolledRNN):
    cell = staticmethod(lstm_step)


class UnrolledLSTMCell(nn.Module):
    """An nn.LSTMCell (MFN's) from matrix products, for the same reason: the same parameters."""

    def __init__(self, cell: nn.LSTMCell) -> None:
        super().__init__()
        self.hidden_size = cell.hidden_size
        for name, p in cell.named_parameters(recurse=False):
            self.register_parameter(name, nn.Parameter(p.detach().clone()))

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return lstm_step(x @ self.weight_ih.T + self.bias_ih, *state, self.weight_hh, self.bias_hh)


class UnrolledGRU(_UnrolledRNN):
    def cell(self, xw, h, c, w_hh, b_hh):
        xr, xz, xn = xw.chunk(3, -1)
        hr, hz, hn = (h @ w_hh.T + b_hh).chunk(3, -1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h, None


def unrolled(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with each nn.LSTM / nn.GRU / nn.LSTMCell replaced by its unrolled twin."""
    twins = {nn.LSTM: UnrolledLSTM, nn.GRU: UnrolledGRU, nn.LSTMCell: UnrolledLSTMCell}
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) in twins:
                setattr(parent, name, twins[type(child)](child))
    return model
