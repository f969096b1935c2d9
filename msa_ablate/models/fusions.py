"""Multimodal fusions: ``{modality: (B, T, dim)}, mask (B, T) -> (B, out_dim)``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class SumLSTMFusion(nn.Module):
    """The seed's fusion: element-wise sum of the unimodal sequences, an LSTM, its last hidden state."""

    def __init__(self, dim: int, modalities: Sequence[str]) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, batch_first=True)
        self.out_dim = dim

    def forward(self, seqs: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(sum(seqs.values()))
        return h[-1]
