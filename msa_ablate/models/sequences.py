"""Padded sequences, shared by the models: masks of real steps, attention padding, pooling,
and the switch for the attention layers' fused fast path.

A mask is (B, T), True at real steps. MOSI pads at the front, so a clip's content ends at step T-1.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from msa_ablate.errors import ConfigError


def check_heads(group: str, dim: int, heads: int) -> None:
    """Attention heads split the hidden size evenly."""
    if not isinstance(heads, int) or heads <= 0 or dim % heads:
        raise ConfigError(f"{group}.heads={heads}: must divide the hidden size {dim}")


def content_mask(features: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """(B, T) True at real steps: MOSI pads at the front with steps that are zero in every modality."""
    return torch.stack([x.ne(0).any(-1) for x in features.values()]).any(0)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, D), (B, T) -> (B, D): mean over real steps (a clip with none gives zeros)."""
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1)


def attention_padding(mask: torch.Tensor) -> torch.Tensor:
    """key_padding_mask for nn.MultiheadAttention (True = ignore). A clip with no real step
    attends to all its steps instead: an all-ignored row would give NaN."""
    return ~(mask | ~mask.any(1, keepdim=True))


def positions(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) index of each step counted from the clip's first real step (padding in front: 0; after
    the clip: its last real step's, so T-1 at most; neither is read where it is masked). Counting from
    step 0 of the front-padded sequence would give a clip's first word a position set by its length."""
    return (mask.long().cumsum(1) - 1).clamp(min=0)


def leading_padding(mask: torch.Tensor) -> torch.Tensor:
    """(B,) number of padding steps before each clip's first real step (T for a clip with none)."""
    return (~mask).long().cumprod(1).sum(1)


def last_real_step(mask: torch.Tensor) -> torch.Tensor:
    """(B,) index of each clip's last real step: T - 1 with front padding (and for a clip with none),
    before the padding where it is at the back."""
    trailing = (~mask).long().flip(1).cumprod(1).sum(1)
    return (mask.shape[1] - 1 - trailing) % mask.shape[1]


def gather_steps(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, T, D), (B, T) -> (B, T, D): out[b, t] = x[b, index[b, t]]."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class AttentionPool(nn.Module):
    """A learned weighted mean over real steps: one score per step, softmax over the clip's
    real steps only (a clip with none gets uniform weights over all, not NaN)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(x).squeeze(-1).masked_fill(attention_padding(mask), float("-inf"))
        return (scores.softmax(1).unsqueeze(-1) * x).sum(1)


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
