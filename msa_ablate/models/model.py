"""The one model: per-modality branches, a fusion and a head, each chosen by config."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from msa_ablate.errors import ConfigError


class ModalityBranch(nn.Module):
    """The seed's unimodal path: LayerNorm(d) -> Linear(d, dim) -> ReLU -> encoder."""

    def __init__(self, in_dim: int, dim: int, encoder: nn.Module, layernorm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim) if layernorm else nn.Identity()
        self.proj = nn.Linear(in_dim, dim)
        self.encoder = encoder

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(F.relu(self.proj(self.norm(x))), mask)


@contextmanager
def attention_fast_path_off() -> Iterator[None]:
    """Attention layers in eval mode take a fused "fast path" that neither the tracer
    (TensorBoard's graph) nor vmap (seed packs) can go through; the plain path computes
    the same thing."""
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


def content_mask(features: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """(B, T) True at real steps: MOSI pads at the front with steps that are zero in every modality."""
    return torch.stack([x.ne(0).any(-1) for x in features.values()]).any(0)


class MultimodalSentimentModel(nn.Module):
    """Branches for the chosen modalities only (a dropped modality builds no parameters)."""

    def __init__(
        self,
        input_dims: Mapping[str, int],
        modalities: Sequence[str],
        encoder: Callable[[int], nn.Module],
        fusion: Callable[..., nn.Module],
        head: Callable[[int], nn.Module],
        hidden: int = 128,
        layernorm: bool = True,
    ) -> None:
        super().__init__()
        unknown = [m for m in modalities if m not in input_dims]
        if unknown or not modalities or len(set(modalities)) != len(modalities):
            raise ConfigError(f"modalities {list(modalities)}: distinct names, each one of {sorted(input_dims)}")
        self.modalities = list(modalities)
        self.branches = nn.ModuleDict(
            {m: ModalityBranch(input_dims[m], hidden, encoder(hidden), layernorm) for m in self.modalities}
        )
        self.fusion = fusion(dim=hidden, modalities=self.modalities)
        if getattr(self.fusion, "per_modality", False):  # late fusion: one head per modality
            self.head = nn.ModuleDict({m: head(self.fusion.out_dim) for m in self.modalities})
        else:
            self.head = head(self.fusion.out_dim)

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        mask = content_mask(features)  # from every modality given, so a subset sees the same steps
        features = {m: features[m] for m in self.modalities}
        fused = self.fusion({m: self.branches[m](x, mask) for m, x in features.items()}, mask)
        if isinstance(fused, dict):
            return torch.stack([self.head[m](h) for m, h in fused.items()]).mean(0)
        return self.head(fused)
