"""Prediction heads: ``(B, in_dim) -> (B,)`` sentiment scores, bounded ones in the data's label range."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from msa_ablate.errors import one_of, positive_int, positive_number, rate
from msa_ablate.models.fusions import POOLS, read_out


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
    """An unbounded linear score: no saturation near the range's ends, and predictions may leave it.
    ``init_std``: its weights drawn from N(0, init_std) and its bias 0, as BERT initialises a classifier
    (MAG-BERT's: BertPreTrainedModel's initializer_range, 0.02); null: torch's default."""

    def __init__(self, in_dim: int, label_range: tuple[float, float] = (-3.0, 3.0),
                 init_std: float | None = None) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, 1)
        if init_std is not None:
            nn.init.normal_(self.fc.weight, std=positive_number("head.init_std", init_std))
            nn.init.zeros_(self.fc.bias)

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


class UnimodalHeads(nn.Module):
    """tasks=unimodal: a head per modality on its branch's output sequence, read out over the modality's
    real steps (``pool``: their mean, or the last one), each trained on the modality's own label
    (CH-SIMS's ``regression_labels_T/A/V``) beside the multimodal one, as MMSA's multi-task models
    (MTFN, MLF_DNN, MLMF) do. Each head is an MLP with a bounded output (MLPHead): their post-text,
    post-audio and post-video layers. Their scores are auxiliary: the run is scored by the main head."""

    def __init__(self, dim: int, modalities: Sequence[str], hidden: int = 32, dropout: float = 0.0,
                 pool: str = "mean", label_range: tuple[float, float] = (-3.0, 3.0)) -> None:
        super().__init__()
        self.pool = one_of("model.tasks.pool", pool, POOLS)
        self.heads = nn.ModuleDict({m: MLPHead(dim, positive_int("model.tasks.hidden", hidden),
                                               rate("model.tasks.dropout", dropout), label_range) for m in modalities})

    def forward(self, seqs: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: head(read_out(seqs[m], masks[m], self.pool)) for m, head in self.heads.items()}
