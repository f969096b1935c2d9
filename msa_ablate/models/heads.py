"""Prediction heads: ``(B, in_dim) -> (B,)`` sentiment scores."""

from __future__ import annotations

import torch
from torch import nn


class SigmoidHead(nn.Module):
    """The seed's head: a linear layer whose sigmoid is scaled to (-3, 3), MOSI's label range."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(h)).squeeze(-1) * 6 - 3


class LinearHead(nn.Module):
    """An unbounded linear score: no saturation near +-3, and predictions may leave the range."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(h).squeeze(-1)
