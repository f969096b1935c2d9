"""The trainer: one model, a recipe (the handout's by default), the data held as tensors on the device.

Recipe: an optimiser and a learning-rate schedule (Adam, and cosine annealing stepped after every
batch, by default; msa_ablate/optim.py), shuffled train batches (the last one ragged, as the
handout's DataLoader gives), optionally clipped gradients, validation after each epoch, the best
state by a validation metric kept in memory, optionally an early stop once that metric stops
improving, and the test split evaluated once, on the best state, at the end. The test split
chooses nothing.

A batch is a tensor of sample indices into the held splits. Resume and CUDA graphs hook in as
callbacks (msa_ablate/checkpoints.py, msa_ablate/cuda_graphs.py); seed packs have a trainer of
their own beside this one (msa_ablate/packs.py).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from msa_ablate.config import TrainerConfig
from msa_ablate.data import MSAData, Split
from msa_ablate.metrics import LOWER_IS_BETTER, regression_metrics
from msa_ablate.optim import adam, cosine, per_epoch

log = logging.getLogger(__name__)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Step = Callable[[torch.Tensor], torch.Tensor]  # batch indices -> the batch's loss, left on the device
MakeOptimizer = Callable[..., torch.optim.Optimizer]  # (parameters, lr=) -> optimiser: conf/optimizer/
MakeSchedule = Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LRScheduler]  # conf/scheduler/


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class Progress:
    """A run's record so far: with the weights and the optimiser, all it needs to go on after an epoch."""

    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_valid: dict[str, float] = field(default_factory=dict)
    best_state: dict[str, torch.Tensor] | None = None
    seconds: float = 0.0

    def add_epoch(self, epoch: int, train_loss: float, scores: dict[str, float], metric: str,
                  state: Callable[[], dict[str, torch.Tensor]]) -> bool:
        """Records the epoch, and keeps ``state()`` if its ``metric`` is the best so far (then True)."""
        self.epoch = epoch
        self.history.append({"epoch": epoch, "train_loss": train_loss,
                             **{f"valid_{name}": v for name, v in scores.items()}})
        if not is_better(metric, scores[metric], None if self.best_state is None else self.best_valid[metric]):
            return False
        self.best_epoch, self.best_valid, self.best_state = epoch, scores, state()
        return True

    def result(self, test: dict[str, float]) -> FitResult:
        if self.best_state is None and self.history:  # every epoch's metric was NaN (constant predictions)
            self.best_epoch, last = self.epoch, self.history[-1]
            self.best_valid = {k.removeprefix("valid_"): v for k, v in last.items() if k.startswith("valid_")}
        return FitResult(self.best_epoch, self.best_valid, test, self.history, self.seconds)


@dataclass
class FitResult:
    best_epoch: int  # 1-based
    valid: dict[str, float]  # at the best epoch
    test: dict[str, float]  # of the best state; empty where the test split was not evaluated
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per epoch
    train_seconds: float = 0.0


@dataclass
class Training:
    """A model's training under way: what callbacks read, replace (``step``) or save."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    step: Step
    order: torch.Generator  # the batch order: a stream of its own, apart from initialisation and dropout
    epochs: int
    steps_per_epoch: int
    progress: Progress

    @property
    def epoch(self) -> int:
        """The last epoch finished."""
        return self.progress.epoch

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "order": self.order.get_state(),
                "progress": vars(self.progress)}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.order.set_state(state["order"].cpu())
        self.progress = Progress(**state["progress"])


class Callback:
    """Hooks into the trainers: at the start (after the optimiser exists), after every epoch."""

    def on_fit_start(self, training: Training) -> None:
        pass

    def on_epoch_end(self, training: Training) -> None:
        pass


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too


def is_better(metric: str, value: float, best: float | None) -> bool:
    """The handout's rule (strictly better, so ties keep the earlier epoch); NaN never wins."""
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best if metric in LOWER_IS_BETTER else value > best


def gather(split: Split, idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """(inputs, labels) of the samples ``idx`` indexes (any shape: a pack's (K, B) gives K batches)."""
    return split.inputs(idx), split.labels[idx]


def optimiser(parameters: Iterable[torch.Tensor], recipe: TrainerConfig, batches: int,
              make_optimizer: MakeOptimizer = adam, make_schedule: MakeSchedule = cosine):
    """The optimiser at ``recipe.lr``, and its schedule over the run's ``recipe.epochs * batches`` steps."""
    optimizer = make_optimizer(parameters, lr=recipe.lr)
    return optimizer, make_schedule(optimizer, recipe.epochs * batches)


def train_step(model: Callable, train: Split, loss_fn: LossFn, optimizer: torch.optim.Optimizer,
               grad_clip: float | None = None) -> Step:
    parameters = [p for group in optimizer.param_groups for p in group["params"]]

    def step(idx: torch.Tensor) -> torch.Tensor:
        x, y = gather(train, idx)
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(parameters, grad_clip)
        optimizer.step()
        return loss.detach()

    return step


def run_epoch(step: Step, scheduler, batches: Iterable[torch.Tensor]) -> tuple[torch.Tensor, list[float]]:
    """A step per batch, and a scheduler step unless the schedule steps per epoch. Returns the step
    losses, copied to the host once per epoch (not once per step), and the learning rate each step used."""
    losses, lrs, every_batch = [], [], not per_epoch(scheduler)
    for idx in batches:
        losses.append(step(idx))
        lrs.append(scheduler.get_last_lr()[0])  # a copy: under a CUDA graph the lr tensor changes in place
        if every_batch:
            scheduler.step()
    return torch.stack(losses).cpu(), [float(lr) for lr in lrs]


def end_epoch(scheduler, valid_scores: dict[str, float]) -> None:
    """The schedules that step per epoch step here, on the validation loss."""
    if per_epoch(scheduler):
        scheduler.step(valid_scores["loss"])


def stalled(progress: Progress, patience: int | None) -> bool:
    """Early stopping: the selection metric has not improved for ``patience`` epochs."""
    return patience is not None and progress.epoch - progress.best_epoch >= patience


def score(preds: torch.Tensor, split: Split, loss_fn: LossFn) -> dict[str, float]:
    """The loss over all of the split's samples, and the metrics of its label range."""
    return {"loss": float(loss_fn(preds, split.labels)),
            **regression_metrics(preds.cpu().numpy(), split.labels.cpu().numpy(), split.label_range)}


@torch.no_grad()
def predict(forward: Callable, split: Split, batch_size: int) -> torch.Tensor:
    """Predictions for the samples of ``split`` in order: (N,), or a pack's (K, N)."""
    order = torch.arange(len(split), device=split.labels.device)
    return torch.cat([forward(gather(split, idx)[0]) for idx in order.split(batch_size)], dim=-1)


def evaluate(model: nn.Module, split: Split, loss_fn: LossFn, batch_size: int) -> dict[str, float]:
    model.eval()
    return score(predict(model, split, batch_size), split, loss_fn)


def report_epoch(who: str, epoch: int, epochs: int, p: Progress, best: bool, writer,
                 step_losses: list[float], lrs: list[float]) -> None:
    """One log line per epoch; for ``writer`` (a SummaryWriter), the scalars per step and per epoch."""
    last = p.history[-1]
    log.info("%sepoch %d/%d  train loss %.4f  valid loss %.4f  valid Corr %.4f%s", who, epoch, epochs,
             last["train_loss"], last["valid_loss"], last["valid_Corr"], "  *" if best else "")
    if writer is None:
        return
    first_step = (epoch - 1) * len(step_losses)
    for i, (value, step_lr) in enumerate(zip(step_losses, lrs)):
        writer.add_scalar("loss/train_step", value, first_step + i + 1)
        writer.add_scalar("lr", step_lr, first_step + i + 1)
    writer.add_scalar("loss/train", last["train_loss"], epoch)
    writer.add_scalar("loss/valid", last["valid_loss"], epoch)
    for k, v in last.items():
        if k.startswith("valid_") and k != "valid_loss":
            writer.add_scalar(f"valid/{k.removeprefix('valid_')}", v, epoch)


def fit(model: nn.Module, data: MSAData, loss_fn: LossFn, recipe: TrainerConfig, *, seed: int, writer=None,
        callbacks: Iterable[Callback] = (), make_optimizer: MakeOptimizer = adam,
        make_schedule: MakeSchedule = cosine) -> FitResult:
    """Trains ``model`` (initialised, on the data's device) with ``recipe`` (a TrainerConfig, or
    the composed ``cfg.trainer``) and the optimiser and schedule made by ``make_*``; it ends
    holding its best state. ``seed`` draws the batch order; ``writer`` (a SummaryWriter) gets
    every epoch's scalars."""
    train, valid = data.splits["train"], data.splits["valid"]
    batches = math.ceil(len(train) / recipe.batch_size)
    optimizer, scheduler = optimiser(model.parameters(), recipe, batches, make_optimizer, make_schedule)
    training = Training(model, optimizer, scheduler,
                        train_step(model, train, loss_fn, optimizer, recipe.grad_clip),
                        torch.Generator().manual_seed(seed), recipe.epochs, batches, Progress())
    start = time.perf_counter()
    for callback in callbacks:
        callback.on_fit_start(training)
    training.progress.seconds += time.perf_counter() - start

    for epoch in range(training.epoch + 1, recipe.epochs + 1):
        start, p = time.perf_counter(), training.progress
        if stalled(p, recipe.patience):
            log.info("valid %s has not improved for %d epochs: stopping after epoch %d", recipe.select_metric,
                     p.epoch - p.best_epoch, p.epoch)
            break
        model.train()
        order = torch.randperm(len(train), generator=training.order).to(train.labels.device)
        losses, lrs = run_epoch(training.step, scheduler, order.split(recipe.batch_size))
        if not torch.isfinite(losses).all():
            step = int((~torch.isfinite(losses)).nonzero()[0]) + 1
            raise TrainingDiverged(f"non-finite training loss at epoch {epoch}, step {step}")
        scores = evaluate(model, valid, loss_fn, recipe.eval_batch_size)
        end_epoch(scheduler, scores)
        best = p.add_epoch(epoch, float(losses.mean()), scores, recipe.select_metric,
                           lambda: {k: v.detach().clone() for k, v in model.state_dict().items()})
        report_epoch("", epoch, recipe.epochs, p, best, writer, losses.tolist(), lrs)
        p.seconds += time.perf_counter() - start  # validation included
        for callback in callbacks:
            callback.on_epoch_end(training)

    p = training.progress
    if p.best_state is not None:
        model.load_state_dict(p.best_state)
    return p.result(evaluate(model, data.splits["test"], loss_fn, recipe.eval_batch_size)
                    if recipe.evaluate_test else {})
