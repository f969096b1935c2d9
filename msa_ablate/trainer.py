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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.torch_version import TorchVersion
from torch.utils.tensorboard import SummaryWriter

from msa_ablate.cuda_graphs import GraphedStep
from msa_ablate.data import MOSIData, Split
from msa_ablate.errors import ConfigError
from msa_ablate.files import write_atomic
from msa_ablate.metrics import LOWER_IS_BETTER, mosi_metrics
from msa_ablate.packs import OneModel, members

log = logging.getLogger(__name__)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Step = Callable[[torch.Tensor], torch.Tensor]


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
    diverged: str = ""  # where its training loss became non-finite; a pack trains its other members on


def _rng_states(order_rngs: Sequence[torch.Generator], device: torch.device) -> dict:
    """Only the run's own GPU's state: a job may resume on another machine, or another GPU."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "order": [g.get_state() for g in order_rngs]}


def _set_rng_states(states: dict, order_rngs: Sequence[torch.Generator], device: torch.device) -> None:
    """RNG states are CPU byte tensors, also where the checkpoint was loaded onto a GPU."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"].cpu())
    if states["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"].cpu(), device)
    for g, state in zip(order_rngs, states["order"], strict=True):
        g.set_state(state.cpu())


def save_checkpoint(path: Path, key: str, progress: list[Progress], pack: OneModel, optimizer, scheduler,
                    order_rngs: Sequence[torch.Generator]) -> None:
    """Atomic, so a kill mid-write leaves the previous checkpoint intact."""
    payload = {"key": key, "progress": [vars(p) for p in progress], "model": pack.state(),
               "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
               "rng": _rng_states(order_rngs, pack.parameters()[0].device)}
    write_atomic(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: Path, key: str, pack: OneModel, optimizer, scheduler,
                    order_rngs: Sequence[torch.Generator]) -> list[Progress]:
    """The saved progress of each member, with weights, optimiser, scheduler and every RNG
    restored; fresh progress where there is no checkpoint, or one of another configuration."""
    fresh = [Progress() for _ in order_rngs]
    if not path.exists():
        return fresh
    payload = torch.load(path, map_location=pack.parameters()[0].device, weights_only=False)
    if payload["key"] != key:
        log.warning("%s: checkpoint of another configuration, starting afresh", path)
        return fresh
    pack.load_state(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    _set_rng_states(payload["rng"], order_rngs, pack.parameters()[0].device)
    log.info("%s: resuming after epoch %d", path, payload["progress"][0]["epoch"])
    return [Progress(**p) for p in payload["progress"]]


@dataclass
class FitResult:
    best_epoch: int  # 1-based
    valid: dict[str, float]  # at the best epoch
    test: dict[str, float]  # of the best state; empty where the test split was not evaluated
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per epoch
    train_seconds: float = 0.0
    diverged: str = ""  # a pack member whose loss became non-finite: no result (its pack's others have theirs)


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


def gather(split: Split, idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """(features, labels) of the samples ``idx`` indexes in the held tensors: indices of shape
    (K, B) give K members their own batches."""
    return {m: x[idx] for m, x in split.features.items()}, split.labels[idx]


def train_step(pack: OneModel, train: Split, loss_fn: LossFn, optimizer: torch.optim.Optimizer) -> Step:
    """``step(idx)``: one optimisation step of every member on the batch ``idx`` (K, B) indexes;
    returns the members' losses (K,) on the device, with no host sync."""

    def step(idx: torch.Tensor) -> torch.Tensor:
        x, y = gather(train, idx)
        member_losses = torch.stack([loss_fn(p, t) for p, t in zip(pack(x), y)])
        optimizer.zero_grad(set_to_none=True)
        member_losses.sum().backward()  # members share no parameter: each gets its own gradient
        optimizer.step()
        return member_losses.detach()

    return step


@torch.no_grad()
def evaluate(pack: OneModel, split: Split, loss_fn: LossFn, batch_size: int) -> list[dict[str, float]]:
    """Each member's loss over all samples and MOSI metrics on one split."""
    pack.train(False)
    order = torch.arange(len(split), device=split.labels.device)
    preds = torch.cat([pack.shared(gather(split, idx)[0]) for idx in order.split(batch_size)], dim=1)  # (K, N)
    losses = torch.stack([loss_fn(p, split.labels) for p in preds]).tolist()
    labels = split.labels.cpu().numpy()
    return [{"loss": loss, **mosi_metrics(p, labels)} for loss, p in zip(losses, preds.cpu().numpy())]


def is_better(metric: str, value: float, best: float | None) -> bool:
    """The seed's rule (strictly better, so ties keep the earlier epoch); NaN never wins."""
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best if metric in LOWER_IS_BETTER else value > best


def log_epoch(writer: SummaryWriter, epoch: int, steps_per_epoch: int, step_losses: list[float],
              lrs: list[float], p: Progress, scores: dict[str, float]) -> None:
    first_step = (epoch - 1) * steps_per_epoch
    for i, (value, step_lr) in enumerate(zip(step_losses, lrs)):
        writer.add_scalar("loss/train_step", value, first_step + i + 1)
        writer.add_scalar("lr", step_lr, first_step + i + 1)
    writer.add_scalar("loss/train", p.history[-1]["train_loss"], epoch)
    writer.add_scalar("loss/valid", scores["loss"], epoch)
    for k, v in scores.items():
        if k != "loss":
            writer.add_scalar(f"valid/{k}", v, epoch)


def fit(
    models: Sequence[nn.Module],
    data: MOSIData,
    loss_fn: LossFn,
    *,
    seeds: Sequence[int],
    epochs: int,
    batch_size: int,
    lr: float,
    select_metric: str = "Corr",
    eval_batch_size: int = 256,
    writers: Sequence[SummaryWriter | None] | None = None,
    checkpoint: Path | None = None,
    checkpoint_key: str = "",
    evaluate_test: bool = True,
    cuda_graph: bool = False,
) -> list[FitResult]:
    """Train ``models`` (one per seed, each initialised under its seed, on data already on
    their device) and return one result per model; each model ends holding its best state.

    One model trains as it is; several train together as a seed pack (msa_ablate.packs),
    each with its own batch order from its seed. ``writers`` (optional SummaryWriters) are
    one per model. With ``checkpoint``, the state after each epoch is saved there, and a run
    that finds a checkpoint with the same ``checkpoint_key`` (its configuration) goes on
    from it, ending exactly as the uninterrupted run would. ``evaluate_test=False`` leaves
    the test split unread (hyperparameter search). ``cuda_graph=True`` (CUDA only) replays
    each training step from a CUDA graph (msa_ablate.cuda_graphs)."""
    train, valid = data.splits["train"], data.splits["valid"]
    device = train.labels.device
    if cuda_graph and TorchVersion(torch.__version__) < "2.10":
        # older schedulers replace (<2.4) or host-sync (<2.5) a tensor learning rate, and
        # get_last_lr returned the live tensor (<2.10), not a copy
        raise ConfigError(f"trainer.cuda_graph=true needs torch>=2.10; this is {torch.__version__}")
    if cuda_graph and device.type != "cuda":
        raise ConfigError(f"trainer.cuda_graph=true needs a CUDA device; this run's is {device}")
    writers = writers or [None] * len(models)
    pack = members(models)
    steps_per_epoch = math.ceil(len(train) / batch_size)
    # A CUDA graph replays the step with the learning rate it reads from a device tensor, which the
    # scheduler updates in place; capturable Adam keeps its step count on the device too.
    optimizer = torch.optim.Adam(pack.parameters(), lr=torch.tensor(lr, device=device) if cuda_graph else lr,
                                 capturable=cuda_graph)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    order_rngs = [torch.Generator().manual_seed(seed) for seed in seeds]  # apart from the init/dropout stream
    progress = (load_checkpoint(checkpoint, checkpoint_key, pack, optimizer, scheduler, order_rngs)
                if checkpoint is not None else [Progress() for _ in seeds])
    step = train_step(pack, train, loss_fn, optimizer)
    who = [f"seed {seed}: " if len(seeds) > 1 else "" for seed in seeds]  # a pack's log lines name the member
    if cuda_graph and progress[0].epoch < epochs:
        start = time.perf_counter()
        pack.train()  # captured with dropout on
        full, last = batch_size, len(train) - (steps_per_epoch - 1) * batch_size
        step = GraphedStep(step, {(len(seeds), full), (len(seeds), last)}, pack, optimizer)
        for p in progress:  # the capture is part of the training time
            p.seconds += time.perf_counter() - start

    for epoch in range(progress[0].epoch + 1, epochs + 1):
        start = time.perf_counter()
        pack.train()
        orders = torch.stack([torch.randperm(len(train), generator=g) for g in order_rngs]).to(device)
        lrs, losses = [], []
        for idx in orders.split(batch_size, dim=-1):
            losses.append(step(idx))
            lrs.append(scheduler.get_last_lr()[0])  # a copy: the graph's device tensor changes in place
            scheduler.step()
        step_losses = torch.stack(losses).cpu()  # (steps, K): one host sync per epoch, not per step
        if cuda_graph:  # the learning rates are device tensors: one copy to the host, not one per step
            lrs = torch.stack(lrs).tolist()
        for k, p in enumerate(progress):
            bad = (~torch.isfinite(step_losses[:, k])).nonzero()
            if len(bad) and not p.diverged:
                # A member's NaN stays in its own slices of the stacked parameters and Adam state
                # (members share none, and nothing mixes them), so the others train on unchanged.
                p.diverged = f"non-finite training loss at epoch {epoch}, step {int(bad[0]) + 1}"
                log.warning("%s%s", who[k], p.diverged)
        if all(p.diverged for p in progress):
            raise TrainingDiverged("; ".join(who[k] + p.diverged for k, p in enumerate(progress)))

        for k, (p, scores) in enumerate(zip(progress, evaluate(pack, valid, loss_fn, eval_batch_size))):
            p.epoch = epoch
            if p.diverged:
                continue
            p.history.append({"epoch": epoch, "train_loss": float(step_losses[:, k].mean()),
                              **{f"valid_{name}": v for name, v in scores.items()}})
            if is_better(select_metric, scores[select_metric], p.best_score):
                p.best_score, p.best_epoch, p.best_valid = scores[select_metric], epoch, scores
                p.best_state = pack.member_state(k)
            log.info("%sepoch %d/%d  train loss %.4f  valid loss %.4f  valid Corr %.4f%s",
                     who[k], epoch, epochs, p.history[-1]["train_loss"],
                     scores["loss"], scores["Corr"], "  *" if p.best_epoch == epoch else "")
            if writers[k] is not None:
                log_epoch(writers[k], epoch, steps_per_epoch, step_losses[:, k].tolist(), lrs, p, scores)
        elapsed = time.perf_counter() - start  # validation included; a pack's members share it
        for p in progress:
            p.seconds += elapsed
        if checkpoint is not None:
            save_checkpoint(checkpoint, checkpoint_key, progress, pack, optimizer, scheduler, order_rngs)

    for k, p in enumerate(progress):
        if p.diverged:
            continue
        if p.best_state is None:  # every epoch's metric was NaN (e.g. constant predictions): keep the last
            p.best_epoch = p.epoch
            p.best_valid = {name.removeprefix("valid_"): v for name, v in p.history[-1].items()
                            if name.startswith("valid_")}
        else:
            pack.load_member_state(k, p.best_state)
    tests = evaluate(pack, data.splits["test"], loss_fn, eval_batch_size) if evaluate_test else [{}] * len(seeds)
    if len(models) > 1:  # hand each member's best state back to its own module
        for k, model in enumerate(models):
            model.load_state_dict(pack.member_state(k))
    return [FitResult(p.best_epoch, p.best_valid, {} if p.diverged else test, p.history, p.seconds, p.diverged)
            for p, test in zip(progress, tests)]
