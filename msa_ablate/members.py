"""What one training trains: K >= 1 members, each a model initialised under its own seed.

The trainer (msa_ablate/train.py) sees its members through one small interface, whatever K is:
a forward on each member's own batch, a forward on one batch for all, each member's parameters
(its own optimiser, clipping and schedule), train/eval, and each member's state in and out.

- ``OneModel``: a plain run (K = 1), the nn.Module as it is (its LSTMs on their fused kernels).
- ``SeedPack``: the seeds of one configuration side by side (``trainer.pack_seeds=true``). ``vmap``
  runs one forward over the members' parameters stacked, so K small runs cost a few larger kernels
  instead of K times as many small ones. Each member keeps its own parameters (stacked afresh at
  every forward, so that each has an optimiser of its own); members share none, so one whose loss
  diverges, or that stops early, leaves the others' training as it would be alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

from msa_ablate.models.sequences import attention_fast_path_off
from msa_ablate.models.unrolled import unrolled
from msa_ablate.optim import parameter_groups

Features = Mapping[str, torch.Tensor]
State = dict[str, torch.Tensor]
Outputs = torch.Tensor | dict[str, torch.Tensor]  # (K, B) scores; or per task (tasks=unimodal), each (K, B)


def one_member(outputs: Outputs) -> Outputs:
    """A model's (B,) outputs as a training of one member's, (1, B)."""
    if isinstance(outputs, dict):
        return {task: scores.unsqueeze(0) for task, scores in outputs.items()}
    return outputs.unsqueeze(0)


class Members:
    """What the trainer asks of its members, each an nn.Module of its own (``models[k]``)."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        self.models = list(models)
        self.size = len(self.models)

    def parameters(self, k: int) -> list[torch.Tensor]:
        return list(self.models[k].parameters())

    def parameter_groups(self, k: int) -> list[torch.Tensor] | list[dict]:
        """What member ``k``'s optimiser is made from: its parameters, or groups where a part has a
        learning rate of its own (BERT's: msa_ablate.optim.parameter_groups)."""
        return parameter_groups(self.models[k])

    def train(self, mode: bool = True) -> None:
        for model in self.models:
            model.train(mode)

    def member_state(self, k: int) -> State:
        return {name: t.detach().clone() for name, t in self.models[k].state_dict().items()}

    def load_member_state(self, k: int, state: Mapping[str, torch.Tensor]) -> None:
        self.models[k].load_state_dict(state)


class OneModel(Members):
    """One model as a training of one member: (1, B, ...) batches in, (1, B) scores out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__([model])

    def __call__(self, x: Features) -> Outputs:
        return one_member(self.models[0]({k: v[0] for k, v in x.items()}))

    def shared(self, x: Features) -> Outputs:
        return one_member(self.models[0](dict(x)))


class SeedPack(Members):
    """K copies of one model's code, each with its own parameters; ``vmap`` over the member
    dimension. Dropout draws a different mask for every member (``randomness="different"``)."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__(models)
        self.template = unrolled(self.models[0]).to("meta")  # structure only: the weights are the members'
        self.names = [name for name, _ in self.models[0].named_parameters()]
        self.buffer_names = [name for name, _ in self.models[0].named_buffers()]

    def _stacked(self) -> tuple[State, State]:
        members = [(dict(m.named_parameters()), dict(m.named_buffers())) for m in self.models]
        return ({n: torch.stack([p[n] for p, _ in members]) for n in self.names},
                {n: torch.stack([b[n] for _, b in members]) for n in self.buffer_names})

    def _call(self, params: State, buffers: State, x: Features) -> Outputs:
        return functional_call(self.template, (params, buffers), (x,))

    def __call__(self, x: Features) -> Outputs:
        """(K, B, ...) per member -> (K, B)."""
        return vmap(self._call, randomness="different")(*self._stacked(), dict(x))

    def shared(self, x: Features) -> Outputs:
        """The same (B, ...) batch for every member -> (K, B)."""
        with attention_fast_path_off():
            return vmap(self._call, in_dims=(0, 0, None), randomness="different")(*self._stacked(), dict(x))

    def train(self, mode: bool = True) -> None:
        super().train(mode)
        self.template.train(mode)


def members_of(models: Sequence[nn.Module]) -> Members:
    """One model as itself; several (a seed pack's, one per seed) side by side."""
    return OneModel(models[0]) if len(models) == 1 else SeedPack(models)
