"""Prediction heads: ``(B, in_dim) -> (B,)`` sentiment scores, bounded ones in the data's label range."""

from __future__ import annotations

import torch
from torch import nn

from msa_ablate.errors import positive_int, rate


class SigmoidHead(nn.Module):
    """The handout's head: a linear layer whose sigmoid is scaled to the label range ((-3, 3), MOSI's:
    ``sigmoid(.) * 6 - 3``)."""

    def __init__(self, in_dim: int, label_range: tuple[float, float] = (-3.0, 3.0)) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, 1)
        self.low, self.width = label_range[0], label_range[1] - label_range[0]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(h)).squeeze(-1) * self.width + self.low


class LinearHead(nn.Module):
    """An unbounded linear score: no saturation near the range's ends, and predictions may leave it."""

    def __init__(self, in_dim: int, label_range: tuple[float, float] = (-3.0, 3.0)) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(h).squeeze(-1)


class MLPHead(nn.Module):
    """A hidden layer with dropout before the handout's bounded output (the sigmoid scaled to the
    label range): a non-linear read-out of the fused vector, regularised where the handout's model overfits."""

    def __init__(self, in_dim: int, hidden: int = 128, dropout: float = 0.3,
                 label_range: tuple[float, float] = (-3.0, 3.0)) -> None:
        super().__init__()
        dropout = rate("head.dropout", dropout)
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, positive_int("head.hidden", hidden)),
                                 nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1))
        self.low, self.width = label_range[0], label_range[1] - label_range[0]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(h)).squeeze(-1) * self.width + self.low
