"""The optimisers (conf/optimizer/) and learning-rate schedules (conf/scheduler/) a run can use.

Each is a function the config names by ``_target_``, so that its settings are checked in one
line before anything trains. An optimiser takes the parameters and ``trainer.lr``; a schedule
takes the optimiser and the number of training steps of the whole run. A schedule steps after
every batch, except ReduceLROnPlateau, which steps after every epoch on the validation loss.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch.optim.lr_scheduler import ConstantLR, CosineAnnealingLR, LRScheduler, ReduceLROnPlateau

from msa_ablate.errors import ConfigError, is_number, positive_int


def _betas(betas: Sequence[float]) -> tuple[float, float]:
    if len(betas) != 2 or not all(is_number(b) and 0 <= b < 1 for b in betas):
        raise ConfigError(f"optimizer.betas={list(betas)}: expected two numbers in [0, 1), e.g. [0.9, 0.999]")
    return float(betas[0]), float(betas[1])


def _weight_decay(value: float) -> float:
    if not is_number(value) or value < 0:
        raise ConfigError(f"optimizer.weight_decay={value}: must be a number >= 0")
    return float(value)


def adam(parameters: Iterable[torch.Tensor], lr: float, betas: Sequence[float] = (0.9, 0.999),
         weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam; a weight decay is added to the gradient (L2), as torch's Adam does."""
    return torch.optim.Adam(parameters, lr=lr, betas=_betas(betas), weight_decay=_weight_decay(weight_decay))


def adamw(parameters: Iterable[torch.Tensor], lr: float, betas: Sequence[float] = (0.9, 0.999),
          weight_decay: float = 0.01) -> torch.optim.AdamW:
    """AdamW: the weight decay applied to the weights, apart from the gradient."""
    return torch.optim.AdamW(parameters, lr=lr, betas=_betas(betas), weight_decay=_weight_decay(weight_decay))


def cosine(optimizer: torch.optim.Optimizer, total_steps: int) -> CosineAnnealingLR:
    """Cosine annealing from trainer.lr to 0 over the run, stepped after every batch (the handout's)."""
    return CosineAnnealingLR(optimizer, T_max=total_steps)


def plateau(optimizer: torch.optim.Optimizer, total_steps: int, factor: float = 0.1,
            patience: int = 10) -> ReduceLROnPlateau:
    """The learning rate times ``factor`` once the validation loss has not improved for
    ``patience`` epochs (MulT's recipe)."""
    if not is_number(factor) or not 0 < factor < 1:
        raise ConfigError(f"scheduler.factor={factor}: must be a number in (0, 1)")
    return ReduceLROnPlateau(optimizer, mode="min", factor=factor, patience=positive_int("scheduler.patience",
                                                                                           patience))


def constant(optimizer: torch.optim.Optimizer, total_steps: int) -> ConstantLR:
    """trainer.lr throughout."""
    return ConstantLR(optimizer, factor=1.0, total_iters=0)


def per_epoch(scheduler: LRScheduler) -> bool:
    """Whether the schedule steps once per epoch, on the validation loss (else after every batch)."""
    return isinstance(scheduler, ReduceLROnPlateau)
