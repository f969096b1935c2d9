"""Training losses (conf/loss/): torch's own, where its arguments need checking first; and the
multi-task loss (conf/tasks/unimodal.yaml) around whichever of them the run chose."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from msa_ablate.data import MODALITIES
from msa_ablate.errors import ConfigError, is_number, positive_number

TASKS = ("main", *MODALITIES)  # the multimodal label, and each modality's own (CH-SIMS's regression_labels_T/A/V)


class HuberLoss(nn.HuberLoss):
    """Huber (smooth L1): quadratic within ``delta`` of the label, linear beyond. torch accepts a
    delta <= 0 here and fails on the first batch; this fails at once, naming the key."""

    def __init__(self, delta: float = 1.0) -> None:
        super().__init__(delta=positive_number("loss.delta", delta))


class MultiTaskLoss(nn.Module):
    """MMSA's multi-task loss (trains/multiTask/MTFN.py, MLF_DNN.py, MLMF.py): the weighted sum over the
    tasks of the ``criterion`` (the loss group's) between each task's scores and its labels,
    ``sum_t weights[t] * criterion(outputs[t], targets[t])``, for the tasks the model scores ("main":
    the multimodal prediction; each modality's head). Given the main scores alone (a tensor, as
    validation and test give them), the main task's criterion, unweighted: a run's valid and test
    loss are its multimodal prediction's, as its metrics are."""

    def __init__(self, criterion: nn.Module, weights: Mapping[str, float]) -> None:
        super().__init__()
        unknown = [t for t in weights if t not in TASKS]
        if unknown or not all(is_number(w) and w >= 0 for w in weights.values()):
            raise ConfigError(f"tasks.weights={dict(weights)}: a weight >= 0 for each of {', '.join(TASKS)}")
        missing = [t for t in TASKS if t not in weights]
        if missing:
            raise ConfigError(f"tasks.weights: no weight for {', '.join(missing)} (one for each of {', '.join(TASKS)})")
        self.criterion, self.weights = criterion, {t: float(w) for t, w in weights.items()}

    def forward(self, outputs: torch.Tensor | Mapping[str, torch.Tensor],
                targets: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
        if not isinstance(outputs, Mapping):
            return self.criterion(outputs, targets)
        return sum(self.weights[t] * self.criterion(outputs[t], targets[t]) for t in outputs)
