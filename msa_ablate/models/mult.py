"""MulT (Tsai et al. 2019, "Multimodal Transformer for Unaligned Multimodal Language Sequences"):
for each target modality, one crossmodal transformer per other modality (the target's steps query
the source's), the results concatenated and read by a self-attention "memory" transformer; each
memory's last real step, concatenated, goes through a residual block.

Written from the paper and the official code's definitions (pre-LayerNorm layers, embeddings scaled
by sqrt(d) plus its sinusoidal positions, separate dropout on keys and values, a 4x feed-forward, a
final LayerNorm, xavier-initialised projections, the causal mask that the repository turns on by
default, attention dropout by source modality as its ``get_network`` picks it). The input projection
and the text embedding dropout are the model's branches (``model.input_activation=none``,
``model.input_bias=false``, ``model.input_dropout``).

``padding``: ``read`` does as the official code: every step is attended to, padding included, the
causal mask and positions count from the sequence's first step (a step whose first channel is exactly
0, which that code takes for padding, gets no position code: padding, a frame of zeros inside a clip,
and at initialisation the memories' padded steps), and each memory is read at its last step; a
clip's output then depends on how much padding it has. ``mask`` (the default of
``fusion=mult``) leaves padded steps out as keys and counts positions and the causal mask from each
clip's first real step, so that a clip's output does not depend on its padding, front or back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from msa_ablate.errors import ConfigError, each, one_of, positive_int, rate
from msa_ablate.models.fusions import read_out
from msa_ablate.models.sequences import check_heads, positions

PADDING = ("mask", "read")


def position_table(steps: int, dim: int) -> torch.Tensor:
    """MulT's (fairseq's, tensor2tensor's) sinusoidal codes: [sin | cos] halves; row 0 is padding's
    (zeros), real steps take rows 1, 2, ..."""
    half = dim // 2
    freq = torch.exp(torch.arange(half) * -(math.log(10000.0) / max(half - 1, 1)))  # dim < 4: theirs is NaN
    angles = torch.arange(steps + 1)[:, None] * freq[None]
    table = torch.cat([torch.sin(angles), torch.cos(angles), torch.zeros(steps + 1, dim % 2)], dim=1)
    table[0] = 0
    return table


def blocked_keys(query_mask: torch.Tensor, key_mask: torch.Tensor, causal: bool, heads: int) -> torch.Tensor:
    """(B * heads, Tq, Tk) True where a query may not attend: padded keys, and with ``causal`` keys
    more than |Lk - Lq| real steps ahead (MulT's future mask, ``triu(1 + |Tk - Tq|)``, counted on
    each clip's real steps: on aligned data, no step sees a later one; unaligned, the last real step
    sees every key). A clip with no real key attends to all its steps instead (an all-blocked row
    would give NaN)."""
    blocked = ~key_mask[:, None, :].expand(-1, query_mask.shape[1], -1)
    if causal:
        offset = (key_mask.sum(1) - query_mask.sum(1)).abs()[:, None, None]
        blocked = blocked | (positions(key_mask)[:, None, :] > positions(query_mask)[:, :, None] + offset)
    blocked = blocked & ~blocked.all(-1, keepdim=True)
    return blocked.repeat_interleave(heads, 0)


class PreNormLayer(nn.Module):
    """One MulT layer: LayerNorm before attention (queries, keys and values normed alike) and before
    the feed-forward, dropout on the residual branches."""

    def __init__(self, dim: int, heads: int, attention_dropout: float, relu_dropout: float,
                 residual_dropout: float) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads, dropout=attention_dropout, batch_first=True)
        self.norm_attention, self.norm_feedforward = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.feedforward = nn.Sequential(nn.Linear(dim, 4 * dim), nn.ReLU(), nn.Dropout(relu_dropout),
                                         nn.Linear(4 * dim, dim))
        for layer in (self.attention.out_proj, self.feedforward[0], self.feedforward[3]):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.dropout = nn.Dropout(residual_dropout)

    def forward(self, x: torch.Tensor, keys: torch.Tensor | None, values: torch.Tensor | None,
                blocked: torch.Tensor) -> torch.Tensor:
        q = self.norm_attention(x)
        k, v = (q, q) if keys is None else (self.norm_attention(keys), self.norm_attention(values))
        x = x + self.dropout(self.attention(q, k, v, attn_mask=blocked, need_weights=False)[0])
        return x + self.dropout(self.feedforward(self.norm_feedforward(x)))


class MulTTransformer(nn.Module):
    """A stack of PreNormLayers: crossmodal where a source is given (the target's steps are the
    queries, the source's the keys and values), self-attention otherwise."""

    def __init__(self, dim: int, heads: int, layers: int, attention_dropout: float, relu_dropout: float,
                 residual_dropout: float, embed_dropout: float, causal: bool, max_len: int, padding: str) -> None:
        super().__init__()
        self.scale, self.causal, self.heads, self.read_padding = math.sqrt(dim), causal, heads, padding == "read"
        self.register_buffer("position_codes", position_table(max_len, dim), persistent=False)
        self.embed_dropout = nn.Dropout(embed_dropout)
        self.layers = nn.ModuleList(PreNormLayer(dim, heads, attention_dropout, relu_dropout, residual_dropout)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.max_len = max_len

    def embed(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Scaled by sqrt(d), plus positions (none at padded steps); embedding dropout (a mask of its
        own on every call)."""
        if x.shape[1] > self.max_len:
            raise ConfigError(f"fusion.max_len={self.max_len}: the data has {x.shape[1]} steps")
        if self.read_padding:  # MulT's code: steps counted from the sequence's start; padding, where channel 0 is 0
            steps, mask = torch.arange(x.shape[1], device=x.device).expand_as(mask), x[..., 0] != 0
        else:
            steps = positions(mask)
        return self.embed_dropout(self.scale * x + self.position_codes[(steps + 1) * mask])

    def attended(self, mask: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(mask) if self.read_padding else mask

    def forward(self, x: torch.Tensor, mask: torch.Tensor, source: torch.Tensor | None = None,
                source_mask: torch.Tensor | None = None) -> torch.Tensor:
        x, keys, values = self.embed(x, mask), None, None
        if source is None:
            source_mask = mask
        else:  # keys and values embedded apart, as MulT's: each its own dropout mask
            keys, values = self.embed(source, source_mask), self.embed(source, source_mask)
        blocked = blocked_keys(self.attended(mask), self.attended(source_mask), self.causal, self.heads)
        for layer in self.layers:
            x = layer(x, keys, values, blocked)
        return self.norm(x)


class MulTFusion(nn.Module):
    """MulT's fusion: for each target modality, crossmodal transformers from every other modality
    (``layers`` deep), concatenated along features, then a self-attention memory (``memory_layers``
    deep) read at the target's last real step; the targets' vectors concatenated, plus MulT's
    residual block (Linear, ReLU, dropout, Linear). Use with ``encoder=none``, a linear branch
    (``model.input_activation=none``), ``model.hidden=30`` and ``head=linear``, as ``+preset=mult``.
    Attends across modalities on their own steps, so it runs on unaligned data as it is."""

    def __init__(self, dim: int, modalities: Sequence[str], heads: int = 5, layers: int = 5, memory_layers: int = 5,
                 attention_dropout: float | Mapping[str, float] = 0.1, memory_attention_dropout: float = 0.1,
                 relu_dropout: float = 0.1,
                 residual_dropout: float = 0.1, embed_dropout: float = 0.25, out_dropout: float = 0.0,
                 causal: bool = True, max_len: int = 1024, padding: str = "mask") -> None:
        super().__init__()
        if len(modalities) < 2:
            raise ConfigError(f"fusion=mult needs two modalities or more, got modalities={list(modalities)}")
        check_heads("fusion", dim, heads)  # and so the memories' dim * (n - 1)
        for key, value in (("layers", layers), ("memory_layers", memory_layers), ("max_len", max_len)):
            positive_int(f"fusion.{key}", value)
        drop = each("fusion.attention_dropout", attention_dropout, modalities, rate)
        shared = dict(heads=heads, relu_dropout=rate("fusion.relu_dropout", relu_dropout),
                      residual_dropout=rate("fusion.residual_dropout", residual_dropout),
                      embed_dropout=rate("fusion.embed_dropout", embed_dropout), causal=causal, max_len=max_len,
                      padding=one_of("fusion.padding", padding, PADDING))
        self.modalities, self.read_padding = list(modalities), padding == "read"
        # MulT's attention dropout for "source -> target" is the source's (get_network("la") takes attn_dropout_a).
        self.crossmodal = nn.ModuleDict({f"{s}_to_{t}": MulTTransformer(dim, layers=layers, attention_dropout=drop[s],
                                                                        **shared)
                                         for t in modalities for s in modalities if s != t})
        memory_dim = dim * (len(modalities) - 1)
        self.memory = nn.ModuleDict({t: MulTTransformer(memory_dim, layers=memory_layers,
                                                        attention_dropout=rate("fusion.memory_attention_dropout",
                                                                               memory_attention_dropout), **shared)
                                     for t in modalities})
        self.out_dim = memory_dim * len(modalities)
        self.residual = nn.Sequential(nn.Linear(self.out_dim, self.out_dim), nn.ReLU(),
                                      nn.Dropout(rate("fusion.out_dropout", out_dropout)),
                                      nn.Linear(self.out_dim, self.out_dim))

    def forward(self, seqs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        last = []
        for t in self.modalities:
            attended = torch.cat([self.crossmodal[f"{s}_to_{t}"](seqs[t], masks[t], seqs[s], masks[s])
                                  for s in self.modalities if s != t], dim=-1)
            # Read as MulT reads it: every step of the memory's input holds something, padding too
            mask = torch.ones_like(masks[t]) if self.read_padding else masks[t]
            memory = self.memory[t](attended, mask)
            last.append(read_out(memory, mask, "last"))
        fused = torch.cat(last, dim=-1)
        return fused + self.residual(fused)
