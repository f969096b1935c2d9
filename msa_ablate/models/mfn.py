"""Memory Fusion Network (Zadeh et al. 2018, "Memory Fusion Network for Multi-view Sequential Learning")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from msa_ablate.errors import each, positive_int, rate
from msa_ablate.models.fusions import Masks, shared

# The defaults: MMSA's MOSI configuration (conf/fusion/mfn.yaml names the file).
LSTM_DIM = {"text": 256, "audio": 32, "vision": 256}
HIDDEN = {"attention": 32, "proposal": 64, "retain": 256, "update": 32}
DROPOUT = {"attention": 0.2, "proposal": 0.0, "retain": 0.7, "update": 0.5}


def mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    """MFN's networks D_a, D_u, D_gamma1, D_gamma2: Linear -> ReLU -> Dropout -> Linear."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))


class MemoryFusion(nn.Module):
    """MFN: a System of LSTMs (one LSTMCell per modality, blind to the others) run step by step; at
    each step the Delta-memory Attention Network weighs the concatenated cell states of steps t-1
    and t, c = [c_{t-1}; c_t], by a = softmax(D_a(c)), and the Multi-view Gated Memory takes them in:
    u_t = gamma1 * u_{t-1} + gamma2 * tanh(D_u(a * c)), with the retain and update gates
    gamma1, gamma2 = sigmoid(D_gamma(.)) of [a * c; u_{t-1}] (the official code's and MMSA's input;
    the paper writes a * c alone). Out: the last hidden states and the memory, [h_T; u_T].
    MFN's output MLP is left to the head (head=mlp is the nearest).

    Padded steps change no state (h, c and u are kept), so the result is that at each clip's last
    real step whether the padding is at the front or the back, and whatever its length."""

    stepwise = True

    def __init__(self, dim: int, modalities: Sequence[str], lstm_dim: int | Mapping[str, int] = LSTM_DIM,
                 memory_dim: int = 400, hidden: int | Mapping[str, int] = HIDDEN,
                 dropout: float | Mapping[str, float] = DROPOUT) -> None:
        super().__init__()
        sizes = each("fusion.lstm_dim", lstm_dim, modalities, positive_int)
        hidden = each("fusion.hidden", hidden, list(HIDDEN), positive_int)
        dropout = each("fusion.dropout", dropout, list(DROPOUT), rate)
        self.memory_dim = positive_int("fusion.memory_dim", memory_dim)
        self.lstms = nn.ModuleDict({m: nn.LSTMCell(dim, sizes[m]) for m in modalities})
        window = 2 * sum(sizes.values())  # c^[t-1, t]
        self.attention = mlp(window, hidden["attention"], window, dropout["attention"])
        self.proposal = mlp(window, hidden["proposal"], memory_dim, dropout["proposal"])
        self.retain = mlp(window + memory_dim, hidden["retain"], memory_dim, dropout["retain"])
        self.update = mlp(window + memory_dim, hidden["update"], memory_dim, dropout["update"])
        self.out_dim = sum(sizes.values()) + memory_dim

    def forward(self, seqs: dict[str, torch.Tensor], masks: Masks) -> torch.Tensor:
        mask = shared(masks)
        x = next(iter(seqs.values()))
        h = {m: x.new_zeros(len(x), lstm.hidden_size) for m, lstm in self.lstms.items()}
        c = dict(h)
        u = x.new_zeros(len(x), self.memory_dim)
        for t in range(mask.shape[1]):
            real = mask[:, t, None]
            new = {m: lstm(seqs[m][:, t], (h[m], c[m])) for m, lstm in self.lstms.items()}
            window = torch.cat([*c.values(), *(c_t for _, c_t in new.values())], dim=-1)
            attended = torch.softmax(self.attention(window), dim=-1) * window
            gates_in = torch.cat([attended, u], dim=-1)
            written = (torch.sigmoid(self.retain(gates_in)) * u
                       + torch.sigmoid(self.update(gates_in)) * torch.tanh(self.proposal(attended)))
            u = torch.where(real, written, u)
            h = {m: torch.where(real, h_t, h[m]) for m, (h_t, _) in new.items()}
            c = {m: torch.where(real, c_t, c[m]) for m, (_, c_t) in new.items()}
        return torch.cat([*h.values(), u], dim=-1)
