"""Seed packs: the seeds of one configuration trained side by side as one stacked model
(``trainer.pack_seeds=true``), with a trainer of their own beside the plain one.

``SeedPack`` stacks K copies of the same model code with ``torch.func``: each member keeps the
parameters it was initialised with under its own seed, and ``vmap`` runs the one forward over all
of them, so K small runs cost a few larger kernels instead of K times as many small ones. Each
member draws its own batch order from its seed, and is selected, evaluated and recorded on its
own; one whose loss diverges fails alone (members share no parameter, so its NaN stays in its
own slices of the stacks and of Adam's state) and the others train on.

nn.LSTM, nn.GRU and nn.LSTMCell have no vmap batching rule. Inside a pack they run as their cells
unrolled over time from matrix products (``UnrolledLSTM``, ``UnrolledGRU``, ``UnrolledLSTMCell``): the same
parameters under the same names and the same equations, so a member computes what the
model alone computes, up to float rounding.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.utils.tensorboard import SummaryWriter

from msa_ablate import records
from msa_ablate.config import PACKS_IN_STEP, TrainerConfig
from msa_ablate.data import MSAData, Split
from msa_ablate.errors import ConfigError
from msa_ablate.models.sequences import attention_fast_path_off
from msa_ablate.optim import adam, cosine, per_epoch
from msa_ablate.run import (
    build_loss,
    build_model,
    build_recipe,
    clips,
    describe,
    finish_events,
    load_data,
    outcome,
    write_model_and_predictions,
)
from msa_ablate.train import (
    Callback,
    FitResult,
    LossFn,
    MakeOptimizer,
    MakeSchedule,
    Progress,
    Step,
    Training,
    TrainingDiverged,
    gather,
    optimiser,
    predict,
    report_epoch,
    run_epoch,
    score,
)

log = logging.getLogger(__name__)

Features = Mapping[str, torch.Tensor]


class _UnrolledRNN(nn.Module):
    """An nn.LSTM / nn.GRU (batch_first, any depth, either direction) as a loop of cells."""

    def __init__(self, rnn: nn.LSTM | nn.GRU) -> None:
        super().__init__()
        if not rnn.batch_first or getattr(rnn, "proj_size", 0) or not rnn.bias:
            raise ConfigError(f"{type(rnn).__name__}: seed packs need batch_first=True, bias=True, no proj_size")
        self.num_layers, self.dropout, self.bidirectional = rnn.num_layers, rnn.dropout, rnn.bidirectional
        self.has_cell_state = isinstance(rnn, nn.LSTM)
        for name, p in rnn.named_parameters(recurse=False):  # same names: functional_call finds them
            self.register_parameter(name, nn.Parameter(p.detach().clone()))

    def scan(self, x: torch.Tensor, suffix: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        w_ih, w_hh = getattr(self, f"weight_ih{suffix}"), getattr(self, f"weight_hh{suffix}")
        b_ih, b_hh = getattr(self, f"bias_ih{suffix}"), getattr(self, f"bias_hh{suffix}")
        xw = x @ w_ih.T + b_ih  # the input part of every step at once
        h = x.new_zeros(x.shape[0], w_hh.shape[1])
        c = h if self.has_cell_state else None
        outs = []
        # unbind, not xw[:, t]: each indexed step's backward would fill a zero tensor of all T steps
        for xw_t in xw.unbind(1):
            h, c = self.cell(xw_t, h, c, w_hh, b_hh)  # defined by UnrolledLSTM / UnrolledGRU
            outs.append(h)
        return torch.stack(outs, 1), h, c

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
        hs, cs = [], []
        for layer in range(self.num_layers):
            out, h, c = self.scan(x, f"_l{layer}")
            outs, hs, cs = [out], hs + [h], cs + [c]
            if self.bidirectional:
                out, h, c = self.scan(x.flip(1), f"_l{layer}_reverse")
                outs, hs, cs = outs + [out.flip(1)], hs + [h], cs + [c]
            x = torch.cat(outs, -1)
            if layer < self.num_layers - 1:  # nn.LSTM's dropout: between layers only
                x = F.dropout(x, self.dropout, self.training)
        h_n = torch.stack(hs)
        return x, ((h_n, torch.stack(cs)) if self.has_cell_state else h_n)


def lstm_step(xw, h, c, w_hh, b_hh):
    i, f, g, o = (xw + h @ w_hh.T + b_hh).chunk(4, -1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


class UnrolledLSTM(_UnrolledRNN):
    cell = staticmethod(lstm_step)


class UnrolledLSTMCell(nn.Module):
    """An nn.LSTMCell (MFN's) from matrix products, for the same reason: the same parameters."""

    def __init__(self, cell: nn.LSTMCell) -> None:
        super().__init__()
        self.hidden_size = cell.hidden_size
        for name, p in cell.named_parameters(recurse=False):
            self.register_parameter(name, nn.Parameter(p.detach().clone()))

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return lstm_step(x @ self.weight_ih.T + self.bias_ih, *state, self.weight_hh, self.bias_hh)


class UnrolledGRU(_UnrolledRNN):
    def cell(self, xw, h, c, w_hh, b_hh):
        xr, xz, xn = xw.chunk(3, -1)
        hr, hz, hn = (h @ w_hh.T + b_hh).chunk(3, -1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h, None


def unrolled(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with each nn.LSTM / nn.GRU / nn.LSTMCell replaced by its unrolled twin."""
    twins = {nn.LSTM: UnrolledLSTM, nn.GRU: UnrolledGRU, nn.LSTMCell: UnrolledLSTMCell}
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) in twins:
                setattr(parent, name, twins[type(child)](child))
    return model


class SeedPack:
    """K copies of one model with stacked parameters; ``vmap`` over the member dimension. It
    answers the calls a trainer makes of an nn.Module (parameters, train, eval, state_dict).
    Dropout draws a different mask for every member (``randomness="different"``)."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        self.template = unrolled(models[0]).to("meta")  # structure only: the weights are the stacks
        params, buffers = stack_module_state(list(models))
        self.params = {k: nn.Parameter(v.detach()) for k, v in params.items()}
        self.buffers = buffers
        self.state_keys = list(models[0].state_dict())  # non-persistent buffers (e.g. a fixed table) are not state

    def _call(self, params, buffers, x):
        return functional_call(self.template, (params, buffers), (x,))

    def __call__(self, x: Features) -> torch.Tensor:
        """(K, B, ...) per member -> (K, B)."""
        return vmap(self._call, randomness="different")(self.params, self.buffers, dict(x))

    def shared(self, x: Features) -> torch.Tensor:
        """The same (B, ...) batch for every member -> (K, B)."""
        with attention_fast_path_off():
            return vmap(self._call, in_dims=(0, 0, None), randomness="different")(self.params, self.buffers, dict(x))

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def train(self, mode: bool = True) -> None:
        self.template.train(mode)

    def eval(self) -> None:
        self.template.train(False)

    def stacks(self) -> dict[str, torch.Tensor]:
        """Each state_dict entry stacked over the members: (K, ...)."""
        every = {**self.params, **self.buffers}
        return {name: every[name] for name in self.state_keys}

    def member_state(self, k: int) -> dict[str, torch.Tensor]:
        return {name: t[k].detach().clone() for name, t in self.stacks().items()}

    def load_member_state(self, k: int, state: Mapping[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, t in self.stacks().items():
                t[k].copy_(state[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: t.detach() for name, t in self.stacks().items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, t in self.stacks().items():
                t.copy_(state[name])


@dataclass
class PackTraining(Training):
    """A seed pack's training under way: a batch order, a record and a divergence per member."""

    order: list[torch.Generator]
    progress: list[Progress]
    diverged: list[str]  # where each member's training loss became non-finite ("" while it has not)

    @property
    def epoch(self) -> int:
        return self.progress[0].epoch

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "order": [g.get_state() for g in self.order],
                "progress": [vars(p) for p in self.progress], "diverged": self.diverged}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for g, saved in zip(self.order, state["order"], strict=True):
            g.set_state(saved.cpu())
        self.progress = [Progress(**p) for p in state["progress"]]
        self.diverged = state["diverged"]


@dataclass
class MemberResult(FitResult):
    diverged: str = ""  # where the member's loss became non-finite: no result (its pack's others have theirs)


def clip_members(stacks: Sequence[torch.Tensor], max_norm: float) -> None:
    """clip_grad_norm_ for each member alone: its gradients' total norm over its slices of the stacks."""
    grads = [p.grad for p in stacks if p.grad is not None]
    norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()  # (K,)
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)  # torch's clip_coef
    for g in grads:
        g.mul_(scale.view(-1, *[1] * (g.dim() - 1)))


def pack_step(pack: SeedPack, train: Split, loss_fn: LossFn, optimizer: torch.optim.Optimizer,
              grad_clip: float | None = None) -> Step:
    """One step of every member on its own batch ``idx[k]``; returns the members' losses (K,)."""

    def step(idx: torch.Tensor) -> torch.Tensor:
        x, y = gather(train, idx)
        losses = torch.stack([loss_fn(p, t) for p, t in zip(pack(x), y)])
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # members share no parameter: each gets its own gradient
        if grad_clip is not None:
            clip_members(pack.parameters(), grad_clip)
        optimizer.step()
        return losses.detach()

    return step


def evaluate_pack(pack: SeedPack, split: Split, loss_fn: LossFn, batch_size: int) -> list[dict[str, float]]:
    pack.eval()
    return [score(p, split, loss_fn) for p in predict(pack.shared, split, batch_size)]


def fit_pack(models: Sequence[nn.Module], data: MSAData, loss_fn: LossFn, recipe: TrainerConfig, *,
             seeds: Sequence[int], writers: Sequence | None = None, callbacks: Iterable[Callback] = (),
             make_optimizer: MakeOptimizer = adam, make_schedule: MakeSchedule = cosine) -> list[MemberResult]:
    """``fit`` for several seeds at once: ``models`` (one per seed, each initialised under its seed,
    on the data's device) train as a seed pack, each with its own batch order from its seed, and
    each ends holding its best state. ``writers``: one SummaryWriter per member."""
    train, valid = data.splits["train"], data.splits["valid"]
    pack = SeedPack(models)
    batches = math.ceil(len(train) / recipe.batch_size)
    optimizer, scheduler = optimiser(pack.parameters(), recipe, batches, make_optimizer, make_schedule)
    if per_epoch(scheduler) or recipe.patience is not None:
        raise ConfigError(PACKS_IN_STEP)
    training = PackTraining(pack, optimizer, scheduler, pack_step(pack, train, loss_fn, optimizer, recipe.grad_clip),
                            [torch.Generator().manual_seed(s) for s in seeds], recipe.epochs, batches,
                            [Progress() for _ in seeds], [""] * len(seeds))
    start = time.perf_counter()
    for callback in callbacks:
        callback.on_fit_start(training)
    for p in training.progress:
        p.seconds += time.perf_counter() - start
    who = [f"seed {seed}: " for seed in seeds]

    for epoch in range(training.epoch + 1, recipe.epochs + 1):
        start = time.perf_counter()
        pack.train()
        orders = torch.stack([torch.randperm(len(train), generator=g) for g in training.order])
        losses, lrs = run_epoch(training.step, scheduler, orders.to(train.labels.device).split(recipe.batch_size, -1))
        for k, bad in enumerate((~torch.isfinite(losses)).T):  # losses: (steps, K)
            if bad.any() and not training.diverged[k]:
                training.diverged[k] = f"non-finite training loss at epoch {epoch}, step {int(bad.nonzero()[0]) + 1}"
                log.warning("%s%s", who[k], training.diverged[k])
        if all(training.diverged):
            raise TrainingDiverged("; ".join(w + d for w, d in zip(who, training.diverged)))
        for k, (p, scores) in enumerate(zip(training.progress, evaluate_pack(pack, valid, loss_fn,
                                                                             recipe.eval_batch_size))):
            p.epoch = epoch
            if training.diverged[k]:
                continue
            best = p.add_epoch(epoch, float(losses[:, k].mean()), scores, recipe.select_metric,
                               lambda: pack.member_state(k))
            report_epoch(who[k], epoch, recipe.epochs, p, best, writers[k] if writers else None,
                         losses[:, k].tolist(), lrs)
        elapsed = time.perf_counter() - start  # validation included; the members share it
        for p in training.progress:
            p.seconds += elapsed
        for callback in callbacks:
            callback.on_epoch_end(training)

    for k, p in enumerate(training.progress):
        if p.best_state is not None:
            pack.load_member_state(k, p.best_state)
    tests = evaluate_pack(pack, data.splits["test"], loss_fn, recipe.eval_batch_size) if recipe.evaluate_test \
        else [{}] * len(seeds)
    results = []
    for k, (model, p, test, diverged) in enumerate(zip(models, training.progress, tests, training.diverged)):
        model.load_state_dict(pack.member_state(k))  # each member's best state back in its own module
        results.append(MemberResult(**vars(p.result({} if diverged else test)), diverged=diverged))
    return results


def train_pack(cfgs: Sequence[DictConfig], folders: Sequence[Path], device: torch.device, recs: Sequence[dict],
               callbacks: Iterable[Callback] = ()) -> None:
    """msa_ablate.run.train_run for a seed pack: a config, folder and record per member; each
    member's record, completed or failed, is written into its own folder."""
    data = load_data(cfgs[0]).to(device)
    models = [build_model(cfg, data, recs[0]["choices"]).to(device) for cfg in cfgs]
    n_params = sum(p.numel() for p in models[0].parameters())
    for record in recs:
        record["data"].update(data.summary())
        record.update(device=str(device), n_params=n_params, pack_size=len(cfgs))
    log.info("%s on %s: %s params, %s, seeds %s packed",
             describe(recs[0]["choices"]), device, f"{n_params:,}",
             clips(recs[0]["data"]["sizes"]), [cfg.seed for cfg in cfgs])
    if device.type == "cuda" and not cfgs[0].trainer.cuda_graph:  # measured on an H200: docs/benchmarks.md
        log.warning("a seed pack on CUDA without trainer.cuda_graph=true is bound by kernel launches (its LSTM cells "
                    "run step by step): on an H200 it took 2.5x as long as the same seeds one after another")
    writers = [SummaryWriter(str(folder)) for folder in folders]
    try:
        results = fit_pack(models, data, build_loss(cfgs[0]), cfgs[0].trainer, seeds=[c.seed for c in cfgs],
                           writers=writers, callbacks=callbacks, **build_recipe(cfgs[0]))
        for cfg, model, writer, folder, record, result in zip(cfgs, models, writers, folders, recs, results):
            if result.diverged:
                record.update(status="failed", reason=f"TrainingDiverged: {result.diverged}", history=result.history)
            else:
                finish_events(writer, cfg, record, model, data, result)
                record.update(outcome(cfg, result))
                write_model_and_predictions(folder, cfg, model, data)
            records.write(folder, record)
    finally:
        for writer in writers:
            writer.close()
