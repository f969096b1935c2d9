"""The trainer: K >= 1 members (one model, or a seed pack's: msa_ablate/members.py), a recipe (the
handout's by default), the data held as tensors on the device. One loop, whatever K is.

Recipe, for each member on its own: an optimiser and a learning-rate schedule (Adam, and cosine
annealing stepped after every batch, by default; msa_ablate/optim.py), shuffled train batches in
an order drawn from its seed (the last one ragged, as the handout's DataLoader gives), optionally
clipped gradients, validation after each epoch, the best state by a validation metric kept in
memory, optionally an early stop once that metric stops improving, and the test split evaluated
once, on the best state, at the end. The test split chooses nothing. A member whose loss becomes
non-finite stops and fails alone; the training fails when every member has.

A batch is a (K, B) tensor of sample indices into the held splits, a row per member. Resume, CUDA
graphs and progress hook in as callbacks (msa_ablate/checkpoints.py, cuda_graphs.py, progress.py).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from msa_ablate.config import TrainerConfig
from msa_ablate.data import MSAData, Split
import msa_ablate.experiments  # noqa: F401  (registers the experiments' resolver before any sweep composes)
from msa_ablate.errors import UserError
from msa_ablate.losses import AUX
from msa_ablate.members import Members, members_of
from msa_ablate.metrics import LOWER_IS_BETTER, regression_metrics
from msa_ablate.optim import adam, cosine, per_epoch

log = logging.getLogger(__name__)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Step = Callable[[torch.Tensor], torch.Tensor]  # (K, B) batch indices -> the members' (K,) losses, on the device
MakeOptimizer = Callable[..., torch.optim.Optimizer]  # (parameters, lr=) -> optimiser: conf/optimizer/
MakeSchedule = Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LRScheduler]  # conf/scheduler/


class TrainingDiverged(UserError):
    """The training loss became NaN or infinite: the recipe's or the data's to fix, so one line, not a traceback."""


@dataclass
class FitResult:
    best_epoch: int  # 1-based
    valid: dict[str, float]  # at the best epoch
    test: dict[str, float]  # of the best state; empty where the test split was not evaluated
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per epoch
    train_seconds: float = 0.0
    diverged: str = ""  # where the member's loss became non-finite: no result (a pack's others have theirs)


@dataclass
class Progress:
    """A member's record so far: with the weights and the optimiser, all it needs to go on after an epoch."""

    epoch: int = 0  # the member's last epoch trained
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

    def result(self, test: dict[str, float], diverged: str = "") -> FitResult:
        if self.best_state is None and self.history:  # every epoch's metric was NaN (constant predictions)
            self.best_epoch, last = self.epoch, self.history[-1]
            self.best_valid = {k.removeprefix("valid_"): v for k, v in last.items() if k.startswith("valid_")}
        return FitResult(self.best_epoch, self.best_valid, test, self.history, self.seconds, diverged)


@dataclass
class Training:
    """A training under way: what callbacks read, wrap (``step``) or save. Lists hold one entry per member."""

    members: Members
    optimizers: list[torch.optim.Optimizer]
    schedulers: list[torch.optim.lr_scheduler.LRScheduler]
    step: Step
    orders: list[torch.Generator]  # batch orders: streams of their own, apart from initialisation and dropout
    epochs: int
    steps_per_epoch: int
    progress: list[Progress]
    diverged: list[str]  # where each member's loss became non-finite ("" while it has not)
    active: list[bool]  # which members take optimiser steps this epoch (the step reads it)
    epoch: int = 0  # the last epoch finished

    def state_dict(self) -> dict:
        return {"members": [self.members.member_state(k) for k in range(self.members.size)],
                "optimizers": [o.state_dict() for o in self.optimizers],
                "schedulers": [s.state_dict() for s in self.schedulers], "orders": [g.get_state() for g in self.orders],
                "progress": [vars(p) for p in self.progress], "diverged": self.diverged, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        for k, member in enumerate(state["members"]):
            self.members.load_member_state(k, member)
        for o, saved in zip(self.optimizers, state["optimizers"], strict=True):
            o.load_state_dict(saved)
        for s, saved in zip(self.schedulers, state["schedulers"], strict=True):
            s.load_state_dict(saved)
        for g, saved in zip(self.orders, state["orders"], strict=True):
            g.set_state(saved.cpu())
        self.progress = [Progress(**p) for p in state["progress"]]
        self.diverged, self.epoch = state["diverged"], state["epoch"]


class Callback:
    """Hooks into the trainer, called in the order the callbacks are listed."""

    def on_fit_start(self, training: Training) -> None:
        """After the optimisers exist, before any step (a checkpoint loads here)."""

    def wrap_step(self, step: Step, training: Training) -> Step:
        """The training step as this callback runs it; each callback wraps the step of those before it."""
        return step

    def on_epoch_end(self, training: Training) -> None:
        pass

    def on_fit_end(self, training: Training) -> None:
        """Always, once: after the last epoch, an early stop, a divergence, an error or Ctrl-C."""


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
    """(inputs, labels) of the samples ``idx`` indexes (any shape: (K, B) gives K batches)."""
    return split.inputs(idx), split.labels[idx]


def main_scores(outputs: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    """The multimodal prediction, of a model that scores auxiliary tasks too (tasks=unimodal:
    ``{"main": ..., modality: ...}``) or of one that does not."""
    return outputs["main"] if isinstance(outputs, dict) else outputs


def auxiliary(outputs: torch.Tensor | dict[str, torch.Tensor]) -> tuple[torch.Tensor | dict[str, torch.Tensor],
                                                                         torch.Tensor | None]:
    """The outputs without their auxiliary losses (``aux:<name>``, each (K,), weighted by the part that
    computed them: MISA's), and those losses' (K,) sum; None where there are none."""
    if not isinstance(outputs, dict) or not any(k.startswith(AUX) for k in outputs):
        return outputs, None
    rest = {k: v for k, v in outputs.items() if not k.startswith(AUX)}
    return rest if len(rest) > 1 else rest["main"], sum(v for k, v in outputs.items() if k.startswith(AUX))


def task_losses(outputs: dict[str, torch.Tensor], split: Split, idx: torch.Tensor, labels: torch.Tensor,
                loss_fn: LossFn) -> torch.Tensor:
    """(K,): each member's loss over the tasks its model scores (tasks=unimodal), each task against its
    labels: the multimodal ones, and each modality's own (``split.unimodal``)."""
    targets = {"main": labels, **{m: split.unimodal[m][idx] for m in outputs if m != "main"}}
    return torch.stack([loss_fn({t: o[k] for t, o in outputs.items()}, {t: y[k] for t, y in targets.items()})
                        for k in range(len(labels))])


def optimiser(parameters: Iterable[torch.Tensor] | list[dict], recipe: TrainerConfig, batches: int,
              make_optimizer: MakeOptimizer = adam, make_schedule: MakeSchedule = cosine):
    """The optimiser at ``recipe.lr``, and its schedule over the run's ``recipe.epochs * batches`` steps.
    ``parameters``: tensors, or groups where BERT has a rate of its own (msa_ablate.optim.parameter_groups)."""
    optimizer = make_optimizer(parameters, lr=recipe.lr)
    return optimizer, make_schedule(optimizer, recipe.epochs * batches)


def train_step(members: Members, train: Split, loss_fn: LossFn, optimizers: Sequence[torch.optim.Optimizer],
               grad_clip: float | None = None, active: Sequence[bool] | None = None) -> Step:
    """One step of every member on its own batch ``idx[k]``; the ``active`` members' optimisers step."""

    def step(idx: torch.Tensor) -> torch.Tensor:
        x, y = gather(train, idx)
        outputs, aux = auxiliary(members(x))
        if isinstance(outputs, dict):  # tasks=unimodal: the multimodal scores and each modality's
            losses = task_losses(outputs, train, idx, y, loss_fn)
        else:
            losses = torch.stack([loss_fn(p, t) for p, t in zip(outputs, y)])
        if aux is not None:  # the model's auxiliary losses (MISA's), added to the training loss only
            losses = losses + aux
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # members share no parameter: each gets its own gradient
        for k, optimizer in enumerate(optimizers):
            if active is None or active[k]:
                if grad_clip is not None:
                    nn.utils.clip_grad_norm_(members.parameters(k), grad_clip)
                optimizer.step()
        return losses.detach()

    return step


def run_epoch(step: Step, schedulers: Sequence, batches: Iterable[torch.Tensor]) -> tuple[torch.Tensor, list]:
    """A step per batch, and a scheduler step unless the schedule steps per epoch. Returns the (steps, K)
    losses, copied to the host once per epoch (not once per step), and the learning rates each
    member's steps used."""
    losses, lrs = [], [[] for _ in schedulers]
    every_batch = [not per_epoch(scheduler) for scheduler in schedulers]
    for idx in batches:
        losses.append(step(idx))
        for scheduler, used, each in zip(schedulers, lrs, every_batch):
            used.append(scheduler.get_last_lr()[0])  # a copy: under a CUDA graph the lr tensor changes in place
            if each:
                scheduler.step()
    return torch.stack(losses).cpu(), [[float(lr) for lr in used] for used in lrs]


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
    """Predictions for the samples of ``split`` in order: (N,) from a model, (K, N) from members' ``shared``."""
    order = torch.arange(len(split), device=split.labels.device)
    return torch.cat([main_scores(forward(gather(split, idx)[0])) for idx in order.split(batch_size)], dim=-1)


def evaluate(members: Members, split: Split, loss_fn: LossFn, batch_size: int) -> list[dict[str, float]]:
    """Each member's scores on ``split``."""
    members.train(False)
    return [score(p, split, loss_fn) for p in predict(members.shared, split, batch_size)]


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


def start_epoch(training: Training, patience: int | None, who: Sequence[str], metric: str) -> bool:
    """Which members train this epoch: neither diverged nor stalled (each stop said once). False: none."""
    for k, p in enumerate(training.progress):
        if training.active[k] and stalled(p, patience):
            log.info("%svalid %s has not improved for %d epochs: stopping after epoch %d", who[k], metric,
                     p.epoch - p.best_epoch, p.epoch)
        training.active[k] = not training.diverged[k] and not stalled(p, patience)
    return any(training.active)


def check_finite(training: Training, losses: torch.Tensor, epoch: int, who: Sequence[str]) -> None:
    """A member whose loss became non-finite this epoch stops, and fails; all of them: the training fails."""
    newly = []
    for k, bad in enumerate((~torch.isfinite(losses)).T):
        if training.active[k] and bad.any():
            training.diverged[k] = f"non-finite training loss at epoch {epoch}, step {int(bad.nonzero()[0]) + 1}"
            training.active[k] = False
            newly.append(k)
    if all(training.diverged):
        raise TrainingDiverged("; ".join(w + d for w, d in zip(who, training.diverged)))
    for k in newly:  # the others train on
        log.warning("%s%s", who[k], training.diverged[k])


def fit(models: Sequence[nn.Module], data: MSAData, loss_fn: LossFn, recipe: TrainerConfig, *,
        seeds: Sequence[int], writers: Sequence | None = None, callbacks: Iterable[Callback] = (),
        make_optimizer: MakeOptimizer = adam, make_schedule: MakeSchedule = cosine) -> list[FitResult]:
    """Trains ``models`` (one per seed, each initialised under its seed, on the data's device: one
    model, or a seed pack's members) with ``recipe`` (a TrainerConfig, or the composed
    ``cfg.trainer``), each with its own optimiser and schedule made by ``make_*``; each ends holding
    its best state. ``seeds`` draw the batch orders; ``writers`` (SummaryWriters, one per member)
    get every epoch's scalars."""
    train, valid = data.splits["train"], data.splits["valid"]
    members, callbacks = members_of(models), list(callbacks)
    batches = math.ceil(len(train) / recipe.batch_size)
    optimizers, schedulers = map(list, zip(*(optimiser(members.parameter_groups(k), recipe, batches,
                                                       make_optimizer, make_schedule) for k in range(members.size))))
    active = [True] * members.size
    training = Training(members, optimizers, schedulers,
                        train_step(members, train, loss_fn, optimizers, recipe.grad_clip, active),
                        [torch.Generator().manual_seed(seed) for seed in seeds], recipe.epochs, batches,
                        [Progress() for _ in seeds], [""] * members.size, active)
    who = [f"seed {seed}: " for seed in seeds] if members.size > 1 else [""]
    writers = list(writers) if writers else [None] * members.size
    try:
        start = time.perf_counter()
        for callback in callbacks:
            callback.on_fit_start(training)
        for callback in callbacks:  # in order: a CUDA graph replays the bare step, progress counts the replays
            training.step = callback.wrap_step(training.step, training)
        for p in training.progress:
            p.seconds += time.perf_counter() - start

        for epoch in range(training.epoch + 1, recipe.epochs + 1):
            start = time.perf_counter()
            if not start_epoch(training, recipe.patience, who, recipe.select_metric):
                break
            members.train()
            orders = torch.stack([torch.randperm(len(train), generator=g) for g in training.orders])
            losses, lrs = run_epoch(training.step, schedulers,
                                    orders.to(train.labels.device).split(recipe.batch_size, -1))
            check_finite(training, losses, epoch, who)
            trained = [k for k, a in enumerate(training.active) if a]
            scores = evaluate(members, valid, loss_fn, recipe.eval_batch_size)
            for k in trained:
                end_epoch(schedulers[k], scores[k])
                p = training.progress[k]
                best = p.add_epoch(epoch, float(losses[:, k].mean()), scores[k], recipe.select_metric,
                                   lambda: members.member_state(k))
                report_epoch(who[k], epoch, recipe.epochs, p, best, writers[k], losses[:, k].tolist(), lrs[k])
            training.epoch = epoch
            elapsed = time.perf_counter() - start  # validation included; a pack's members share it
            for k in trained:
                training.progress[k].seconds += elapsed
            for callback in callbacks:
                callback.on_epoch_end(training)
    finally:
        for callback in callbacks:
            callback.on_fit_end(training)

    for k, p in enumerate(training.progress):
        if p.best_state is not None:
            members.load_member_state(k, p.best_state)
    tests = evaluate(members, data.splits["test"], loss_fn, recipe.eval_batch_size) if recipe.evaluate_test \
        else [{}] * members.size
    return [p.result({} if d else test, d) for p, test, d in zip(training.progress, tests, training.diverged)]
