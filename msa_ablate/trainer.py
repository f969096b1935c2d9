"""The one shared trainer: the seed's recipe, with the data held as tensors on the device.

Recipe (REFERENCE.md): Adam, cosine annealing stepped after every batch with
T_max = epochs x batches per epoch, shuffled train batches (the last one ragged, as with
the seed's DataLoader), validation after each epoch, the best state by a validation
metric kept in memory, and the test split evaluated once, on that state, at the end.
The test split chooses nothing.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from msa_ablate.data import MOSIData, Split
from msa_ablate.errors import ConfigError
from msa_ablate.metrics import LOWER_IS_BETTER, METRIC_NAMES, mosi_metrics

log = logging.getLogger(__name__)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class FitResult:
    best_epoch: int  # 1-based
    valid: dict[str, float]  # at the best epoch
    test: dict[str, float]  # of the best state
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per epoch
    train_seconds: float = 0.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name}: CUDA is not available on this machine")
    return torch.device(name)


def batches(split: Split, order: torch.Tensor, batch_size: int):
    """Yield (features, labels) for consecutive chunks of ``order``, indexing the held tensors."""
    for idx in order.split(batch_size):
        yield {m: x[idx] for m, x in split.features.items()}, split.labels[idx]


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, loss_fn: LossFn, batch_size: int) -> dict[str, float]:
    """Loss over all samples and the MOSI metrics of one split."""
    model.eval()
    order = torch.arange(len(split), device=split.labels.device)
    preds = torch.cat([model(x) for x, _ in batches(split, order, batch_size)])
    return {"loss": float(loss_fn(preds, split.labels)),
            **mosi_metrics(preds.cpu().numpy(), split.labels.cpu().numpy())}


def is_better(metric: str, value: float, best: float | None) -> bool:
    """The seed's rule (strictly better, so ties keep the earlier epoch); NaN never wins."""
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best if metric in LOWER_IS_BETTER else value > best


def fit(
    model: nn.Module,
    data: MOSIData,
    loss_fn: LossFn,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    select_metric: str = "Corr",
    eval_batch_size: int = 256,
    writer=None,
) -> FitResult:
    """Train ``model`` on data already on its device; ``writer`` is an optional SummaryWriter."""
    if select_metric not in (*METRIC_NAMES, "loss"):
        raise ConfigError(f"trainer.select_metric={select_metric}: must be one of {[*METRIC_NAMES, 'loss']}")
    train, valid = data.splits["train"], data.splits["valid"]
    device = train.labels.device
    steps_per_epoch = math.ceil(len(train) / batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    order_rng = torch.Generator().manual_seed(seed)  # batch order apart from the init/dropout stream

    history: list[dict[str, float]] = []
    best_score, best_state, best_epoch, best_valid = None, None, 0, {}
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        lrs, losses = [], []
        for x, y in batches(train, torch.randperm(len(train), generator=order_rng).to(device), batch_size):
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            lrs.append(scheduler.get_last_lr()[0])
            scheduler.step()
            losses.append(loss.detach())
        step_losses = torch.stack(losses).cpu()  # one host sync per epoch, not per step
        if not torch.isfinite(step_losses).all():
            step = int((~torch.isfinite(step_losses)).nonzero()[0]) + 1
            raise TrainingDiverged(f"non-finite training loss at epoch {epoch}, step {step}")

        scores = evaluate(model, valid, loss_fn, eval_batch_size)
        history.append({"epoch": epoch, "train_loss": float(step_losses.mean()),
                        **{f"valid_{k}": v for k, v in scores.items()}})
        if is_better(select_metric, scores[select_metric], best_score):
            best_score, best_epoch, best_valid = scores[select_metric], epoch, scores
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        log.info("epoch %d/%d  train loss %.4f  valid loss %.4f  valid Corr %.4f%s", epoch, epochs,
                 history[-1]["train_loss"], scores["loss"], scores["Corr"], "  *" if best_epoch == epoch else "")
        if writer is not None:
            first_step = (epoch - 1) * steps_per_epoch
            for i, (value, step_lr) in enumerate(zip(step_losses.tolist(), lrs)):
                writer.add_scalar("loss/train_step", value, first_step + i + 1)
                writer.add_scalar("lr", step_lr, first_step + i + 1)
            writer.add_scalar("loss/train", history[-1]["train_loss"], epoch)
            writer.add_scalar("loss/valid", scores["loss"], epoch)
            for k, v in scores.items():
                if k != "loss":
                    writer.add_scalar(f"valid/{k}", v, epoch)
    train_seconds = time.perf_counter() - start

    if best_state is None:  # every epoch's metric was NaN (e.g. constant predictions): keep the last
        best_epoch, best_valid = epochs, scores
    else:
        model.load_state_dict(best_state)
    test = evaluate(model, data.splits["test"], loss_fn, eval_batch_size)
    return FitResult(best_epoch, best_valid, test, history, train_seconds)
