"""The optimisers (conf/optimizer/) and learning-rate schedules (conf/scheduler/) a run can use.

Each is a function the config names by ``_target_``, so that its settings are checked in one
line before anything trains. An optimiser takes the parameters and ``trainer.lr``; a schedule
takes the optimiser and the number of training steps of the whole run. A schedule steps after
every batch, except ReduceLROnPlateau, which steps after every epoch on the validation loss.

A model with BERT (text=bert) gives its parameters as groups (``parameter_groups``): the rest at
``trainer.lr`` and the optimiser's weight decay, BERT's at ``bert_lr`` and ``bert_weight_decay`` (its
biases and LayerNorm weights undecayed), as MMSA's trainers give BERT a rate of its own. A schedule
scales every group's rate alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch.optim.lr_scheduler import ConstantLR, CosineAnnealingLR, LRScheduler, ReduceLROnPlateau

from msa_ablate.errors import ConfigError, is_number, positive_int, positive_number


def _betas(betas: Sequence[float]) -> tuple[float, float]:
    if len(betas) != 2 or not all(is_number(b) and 0 <= b < 1 for b in betas):
        raise ConfigError(f"optimizer.betas={list(betas)}: expected two numbers in [0, 1), e.g. [0.9, 0.999]")
    return float(betas[0]), float(betas[1])


def _weight_decay(value: float) -> float:
    if not is_number(value) or value < 0:
        raise ConfigError(f"optimizer.weight_decay={value}: must be a number >= 0")
    return float(value)


Parameters = Iterable[torch.Tensor] | list[dict]
BERT_GROUPS = ("bert", "bert_no_decay")  # the tags parameter_groups gives BERT's two groups


def parameter_groups(model: torch.nn.Module) -> list[torch.Tensor] | list[dict]:
    """The model's parameters, as a list where one rate serves them all (every model without BERT,
    exactly as before); else as groups: the rest first (the schedule's logged rate is theirs), then
    BERT's weights, then its biases and LayerNorm weights (tagged ``part``: bert, bert_no_decay)."""
    from msa_ablate.models.bert import bert_parameter_names  # no transformers import: it names, not loads

    decay, no_decay = bert_parameter_names(model)
    named = list(model.named_parameters())
    if not decay and not no_decay:
        return [p for _, p in named]
    return [{"params": [p for n, p in named if n not in decay and n not in no_decay]},
            {"params": [p for n, p in named if n in decay], "part": "bert"},
            {"params": [p for n, p in named if n in no_decay], "part": "bert_no_decay"}]


def _groups(parameters: Parameters, bert_lr: float | None, bert_weight_decay: float | None) -> Parameters:
    """BERT's groups given their rate and weight decay (the others take the optimiser's own)."""
    parameters = list(parameters)
    if not parameters or not isinstance(parameters[0], dict):
        return parameters
    if bert_lr is not None:
        positive_number("optimizer.bert_lr", bert_lr)
    if bert_weight_decay is not None and (not is_number(bert_weight_decay) or bert_weight_decay < 0):
        raise ConfigError(f"optimizer.bert_weight_decay={bert_weight_decay}: must be a number >= 0")
    out = []
    for group in parameters:
        group = dict(group)
        part = group.pop("part", None)
        if part in BERT_GROUPS and bert_lr is not None:
            group["lr"] = float(bert_lr)
        if part == "bert" and bert_weight_decay is not None:
            group["weight_decay"] = float(bert_weight_decay)
        if part == "bert_no_decay":
            group["weight_decay"] = 0.0
        out.append(group)
    return out


def adam(parameters: Parameters, lr: float, betas: Sequence[float] = (0.9, 0.999),
         weight_decay: float = 0.0, bert_lr: float | None = None,
         bert_weight_decay: float | None = None) -> torch.optim.Adam:
    """Adam; a weight decay is added to the gradient (L2), as torch's Adam does. ``bert_lr``,
    ``bert_weight_decay`` (text=bert): BERT's own (null: ``lr`` and ``weight_decay``)."""
    return torch.optim.Adam(_groups(parameters, bert_lr, bert_weight_decay), lr=lr, betas=_betas(betas),
                            weight_decay=_weight_decay(weight_decay))


def adamw(parameters: Parameters, lr: float, betas: Sequence[float] = (0.9, 0.999),
          weight_decay: float = 0.01, bert_lr: float | None = None,
          bert_weight_decay: float | None = None) -> torch.optim.AdamW:
    """AdamW: the weight decay applied to the weights, apart from the gradient. ``bert_lr``,
    ``bert_weight_decay`` (text=bert): BERT's own (null: ``lr`` and ``weight_decay``)."""
    return torch.optim.AdamW(_groups(parameters, bert_lr, bert_weight_decay), lr=lr, betas=_betas(betas),
                             weight_decay=_weight_decay(weight_decay))


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
