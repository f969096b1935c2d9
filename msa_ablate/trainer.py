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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from msa_ablate.data import MOSIData, Split
from msa_ablate.errors import ConfigError
from msa_ablate.files import write_atomic
from msa_ablate.metrics import LOWER_IS_BETTER, mosi_metrics

log = logging.getLogger(__name__)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class Progress:
    """What a run needs, beside the model and optimiser, to go on after its last finished epoch."""

    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_score: float | None = None
    best_epoch: int = 0
    best_valid: dict[str, float] = field(default_factory=dict)
    best_state: dict[str, torch.Tensor] | None = None
    seconds: float = 0.0


def _rng_states(order_rng: torch.Generator) -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "order": order_rng.get_state()}


def _set_rng_states(states: dict, order_rng: torch.Generator) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states["cuda"]:
        torch.cuda.set_rng_state_all(states["cuda"])
    order_rng.set_state(states["order"])


def save_checkpoint(path: Path, key: str, progress: Progress, model: nn.Module, optimizer, scheduler,
                    order_rng: torch.Generator) -> None:
    """Atomic, so a kill mid-write leaves the previous checkpoint intact."""
    payload = {"key": key, "progress": vars(progress), "model": model.state_dict(),
               "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
               "rng": _rng_states(order_rng)}
    write_atomic(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: Path, key: str, model: nn.Module, optimizer, scheduler,
                    order_rng: torch.Generator) -> Progress:
    """The saved progress, with model, optimiser, scheduler and every RNG restored; a fresh
    Progress where there is no checkpoint, or one of another configuration."""
    if not path.exists():
        return Progress()
    payload = torch.load(path, map_location=next(model.parameters()).device, weights_only=False)
    if payload["key"] != key:
        log.warning("%s: checkpoint of another configuration, starting afresh", path)
        return Progress()
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    _set_rng_states(payload["rng"], order_rng)
    log.info("%s: resuming after epoch %d", path, payload["progress"]["epoch"])
    return Progress(**payload["progress"])


@dataclass
class FitResult:
    best_epoch: int  # 1-based
    valid: dict[str, float]  # at the best epoch
    test: dict[str, float]  # of the best state; empty where the test split was not evaluated
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per epoch
    train_seconds: float = 0.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too


def resolve_device(name: str, job_num: int = 0) -> torch.device:
    """``auto`` is the CPU without CUDA, else GPU ``job_num`` mod the GPU count: the jobs of a
    parallel sweep (joblib launcher) spread round-robin over the GPUs; with one, they share it."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", job_num % torch.cuda.device_count())
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"trainer.device={name}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name}: CUDA is not available on this machine")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"trainer.device={name}: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def batches(split: Split, order: torch.Tensor, batch_size: int) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
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
    writer: SummaryWriter | None = None,
    checkpoint: Path | None = None,
    checkpoint_key: str = "",
    evaluate_test: bool = True,
) -> FitResult:
    """Train ``model`` on data already on its device; ``writer`` is an optional SummaryWriter.

    With ``checkpoint``, the state after each epoch is saved there, and a run that finds a
    checkpoint with the same ``checkpoint_key`` (its configuration) goes on from it, ending
    exactly as the uninterrupted run would. ``evaluate_test=False`` leaves the test split
    unread (hyperparameter search)."""
    train, valid = data.splits["train"], data.splits["valid"]
    device = train.labels.device
    steps_per_epoch = math.ceil(len(train) / batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    order_rng = torch.Generator().manual_seed(seed)  # batch order apart from the init/dropout stream
    p = (load_checkpoint(checkpoint, checkpoint_key, model, optimizer, scheduler, order_rng)
         if checkpoint is not None else Progress())

    for epoch in range(p.epoch + 1, epochs + 1):
        start = time.perf_counter()
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
        p.history.append({"epoch": epoch, "train_loss": float(step_losses.mean()),
                          **{f"valid_{k}": v for k, v in scores.items()}})
        if is_better(select_metric, scores[select_metric], p.best_score):
            p.best_score, p.best_epoch, p.best_valid = scores[select_metric], epoch, scores
            p.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        log.info("epoch %d/%d  train loss %.4f  valid loss %.4f  valid Corr %.4f%s", epoch, epochs,
                 p.history[-1]["train_loss"], scores["loss"], scores["Corr"], "  *" if p.best_epoch == epoch else "")
        if writer is not None:
            first_step = (epoch - 1) * steps_per_epoch
            for i, (value, step_lr) in enumerate(zip(step_losses.tolist(), lrs)):
                writer.add_scalar("loss/train_step", value, first_step + i + 1)
                writer.add_scalar("lr", step_lr, first_step + i + 1)
            writer.add_scalar("loss/train", p.history[-1]["train_loss"], epoch)
            writer.add_scalar("loss/valid", scores["loss"], epoch)
            for k, v in scores.items():
                if k != "loss":
                    writer.add_scalar(f"valid/{k}", v, epoch)
        p.epoch, p.seconds = epoch, p.seconds + time.perf_counter() - start
        if checkpoint is not None:
            save_checkpoint(checkpoint, checkpoint_key, p, model, optimizer, scheduler, order_rng)

    if p.best_state is None:  # every epoch's metric was NaN (e.g. constant predictions): keep the last
        p.best_epoch = p.epoch
        p.best_valid = {k.removeprefix("valid_"): v for k, v in p.history[-1].items() if k.startswith("valid_")}
    else:
        model.load_state_dict(p.best_state)
    test = evaluate(model, data.splits["test"], loss_fn, eval_batch_size) if evaluate_test else {}
    return FitResult(p.best_epoch, p.best_valid, test, p.history, p.seconds)
