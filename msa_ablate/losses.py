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


# Auxiliary losses: terms a model part computes from its own internals during training (MISA's similarity,
# difference and reconstruction), already weighted by that part's config. The model returns each under
# ``AUX + name`` beside the main scores; the trainer adds them to the main loss (msa_ablate/train.py). Valid
# and test losses, metrics and predictions never include them.
AUX = "aux:"


def central_moment_discrepancy(x: torch.Tensor, y: torch.Tensor, moments: int = 5) -> torch.Tensor:
    """CMD (Zellinger et al. 2017), as MISA's code computes it (MMSA trains/singleTask/MISA.py, CMD): the
    Euclidean distance between the batch means of (B, D) ``x`` and ``y``, plus, for k = 2 .. ``moments``,
    between their k-th central moments (each feature's mean of (x - mean)^k over the batch); unnormalised."""
    mx, my = x.mean(0), y.mean(0)
    total = _norm(mx - my)
    for k in range(2, moments + 1):
        total = total + _norm((x - mx).pow(k).mean(0) - (y - my).pow(k).mean(0))
    return total


def _norm(v: torch.Tensor) -> torch.Tensor:
    """The Euclidean norm, its gradient 0 (not NaN) where it is 0: a batch of one clip has no central moments."""
    squares = v.pow(2).sum()
    return torch.where(squares > 0, squares, 1.0).sqrt() * (squares > 0)


def difference_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MISA's soft orthogonality (MMSA trains/singleTask/MISA.py, DiffLoss): (B, D) ``x`` and ``y`` centred over
    the batch, each row divided by its L2 norm (+1e-6; the norm held constant for the gradient, as there), and
    the mean of the squared entries of x^T y, (D, D)."""
    x, y = x - x.mean(0, keepdim=True), y - y.mean(0, keepdim=True)
    x = x / (x.norm(dim=1, keepdim=True).detach() + 1e-6)
    y = y / (y.norm(dim=1, keepdim=True).detach() + 1e-6)
    return (x.T @ y).pow(2).mean()


def reconstruction_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The mean squared error over every entry (MMSA trains/singleTask/MISA.py, MSE); the target is not detached."""
    return (target - prediction).pow(2).mean()
