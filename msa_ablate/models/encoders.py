"""Unimodal temporal encoders: ``(B, T, dim), mask (B, T) -> (B, T, dim)``."""

from __future__ import annotations

import torch
from torch import nn


class LSTMEncoder(nn.Module):
    """The seed's encoder: an LSTM over all 50 steps, front padding included (as in the seed)."""

    def __init__(self, dim: int, num_layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        # nn.LSTM applies dropout only between layers: the seed's dropout=0.1 on one layer
        # is inert (PyTorch warns), so it is passed on only where it acts.
        self.lstm = nn.LSTM(dim, dim, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[0]
