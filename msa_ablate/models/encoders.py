"""Unimodal temporal encoders: ``(B, T, dim), mask (B, T) -> (B, T, dim)``.

``mask`` is True at real steps; MOSI pads at the front, so content ends at step T-1.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from msa_ablate.errors import ConfigError, one_of, positive_int, rate
from msa_ablate.models.sequences import (
    attention_padding,
    check_heads,
    gather_steps,
    leading_padding,
    masked_mean,
    positions,
)


def recurrent(cell: type[nn.LSTM] | type[nn.GRU], in_dim: int, dim: int, num_layers: int, dropout: float,
              group: str = "encoder") -> nn.Module:
    """nn.LSTM / nn.GRU applies dropout only between layers: on one layer the handout's 0.1 is
    inert (PyTorch warns), so it is passed on only where it acts."""
    positive_int(f"{group}.num_layers", num_layers)
    rate(f"{group}.dropout", dropout)
    return cell(in_dim, dim, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0)


class LSTMEncoder(nn.Module):
    """The handout's encoder: an LSTM over all 50 steps, front padding included (as in the handout)."""

    def __init__(self, dim: int, num_layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.lstm = recurrent(nn.LSTM, dim, dim, num_layers, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[0]


class GRUEncoder(nn.Module):
    """A GRU in the LSTM's place: three gates' worth of weights instead of four."""

    def __init__(self, dim: int, num_layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.gru = recurrent(nn.GRU, dim, dim, num_layers, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.gru(x)[0]


class SinusoidalPosition(nn.Module):
    """Fixed sin/cos position codes (Vaswani et al.), added to the input."""

    def __init__(self, dim: int, max_len: int) -> None:
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        freq = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        table = torch.zeros(max_len, dim)
        table[:, 0::2] = torch.sin(position * freq)
        table[:, 1::2] = torch.cos(position * freq)[:, : dim // 2]
        self.register_buffer("table", table, persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x + self.table[positions(mask)]


class LearnedPosition(nn.Module):
    """One trained vector per position, added to the input."""

    def __init__(self, dim: int, max_len: int) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(max_len, dim) * 0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x + self.table[positions(mask)]


class TransformerEncoder(nn.Module):
    """Self-attention over the real steps (padding is masked out as keys and zeroed in the output)."""

    def __init__(self, dim: int, num_layers: int = 1, heads: int = 4, feedforward: int = 256,
                 dropout: float = 0.1, positional: str = "sinusoidal", max_len: int = 64) -> None:
        super().__init__()
        check_heads("encoder", dim, heads)
        codes = {"sinusoidal": SinusoidalPosition, "learned": LearnedPosition}
        one_of("encoder.positional", positional, codes)
        self.position, self.max_len = codes[positional](dim, positive_int("encoder.max_len", max_len)), max_len
        layer = nn.TransformerEncoderLayer(dim, heads, positive_int("encoder.feedforward", feedforward),
                                           rate("encoder.dropout", dropout), batch_first=True)
        # No nested tensors: they would return padded steps as zeros on one path and not the other.
        self.layers = nn.TransformerEncoder(layer, positive_int("encoder.num_layers", num_layers),
                                            enable_nested_tensor=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.max_len:
            raise ConfigError(f"encoder.max_len={self.max_len}: the data has {x.shape[1]} steps")
        out = self.layers(self.position(x, mask), src_key_padding_mask=attention_padding(mask))
        return out * mask.unsqueeze(-1)


class IdentityEncoder(nn.Module):
    """No unimodal encoder: the branch's projected steps go to the fusion as they are, which then
    models time itself (early fusion: EF-LSTM, MFN, MulT)."""

    def __init__(self, dim: int) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x


class MeanEncoder(nn.Module):
    """No temporal model, the floor: every real step becomes the masked mean of the clip."""

    def __init__(self, dim: int) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_mean(x, mask).unsqueeze(1) * mask.unsqueeze(-1)


class BiRNNEncoder(nn.Module):
    """A bidirectional GRU (or LSTM) that reads the real steps only, as a packed sequence would.

    The handout's LSTM reads the padding with the words, so its state at the first word depends
    on how long the clip is; and it reads left to right only, so a word cannot see what follows
    it (a "but" that discounts what came before). Here each direction starts at the clip's edge:
    the forward one on the real steps moved to the front, the backward one on them reversed.
    Outputs at real steps therefore do not depend on the padding at all, at the front (MOSI's
    aligned files) or at the back (MMSA's unaligned ones); padded steps are zero. Each direction
    has ``dim // 2`` units so the output keeps the hidden size. ``dropout`` acts on the input steps
    (the branch's projected features), where the handout's model overfits from its third epoch on.
    Assumes a clip's real steps are contiguous.
    """

    def __init__(self, dim: int, cell: str = "lstm", dropout: float = 0.3) -> None:
        super().__init__()
        cells = {"gru": nn.GRU, "lstm": nn.LSTM}
        one_of("encoder.cell", cell, cells)
        if dim % 2:
            raise ConfigError(f"encoder=birnn needs an even hidden size, got {dim}")
        self.forward_rnn = cells[cell](dim, dim // 2, batch_first=True)
        self.backward_rnn = cells[cell](dim, dim // 2, batch_first=True)
        self.dropout = nn.Dropout(rate("encoder.dropout", dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(x.shape[1], device=x.device)
        lead, length = leading_padding(mask).unsqueeze(1), mask.sum(1, keepdim=True)
        x = self.dropout(x) * mask.unsqueeze(-1)
        front = gather_steps(x, (steps + lead) % x.shape[1])  # the real steps first, then the padding
        reverse = torch.where(steps < length, length - 1 - steps, steps)  # the real steps reversed (its own inverse)
        forward = self.forward_rnn(front)[0]
        backward = gather_steps(self.backward_rnn(gather_steps(front, reverse))[0], reverse)
        out = gather_steps(torch.cat([forward, backward], dim=-1), (steps - lead) % x.shape[1])  # back in place
        return out * mask.unsqueeze(-1)


class ConvBiRNNEncoder(nn.Module):
    """A temporal convolution over neighbouring steps, then the bidirectional RNN (BiRNNEncoder).

    The convolution (residual, ReLU) gives every step its neighbours as direct inputs, so a word
    can be read together with the one before it ("not good" is not "good"); in the handout's LSTM
    such a pair has to be learned through the recurrent state, which ~1300 clips do not teach. The
    BiRNN then carries what is farther away (a later "but"). MulT (Tsai et al. 2019) likewise puts
    a temporal convolution in front of its cross-modal layers. Padded steps are zeroed before the
    convolution, so a clip's first word sees silence to its left, whatever its length.
    """

    def __init__(self, dim: int, kernel: int = 3, cell: str = "lstm", dropout: float = 0.0) -> None:
        super().__init__()
        if not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
            raise ConfigError(f"encoder.kernel={kernel}: must be an odd number >= 1 (centred on each step)")
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2)
        self.rnn = BiRNNEncoder(dim, cell=cell, dropout=dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x * mask.unsqueeze(-1)
        x = x + torch.relu(self.conv(x.transpose(1, 2)).transpose(1, 2))
        return self.rnn(x, mask)
