"""Multimodal fusions: ``{modality: (B, T_m, dim)}, {modality: mask (B, T_m)} -> (B, out_dim)``.

A fusion whose ``per_modality`` is True returns ``{modality: (B, out_dim)}`` instead, and
the model scores each with its own head (late fusion). A fusion whose ``stepwise`` is True
combines the modalities step by step: it needs them on the same steps (aligned data, or
``data.align``), and takes the mask they share.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from msa_ablate.errors import ConfigError, each, one_of, positive_int, rate
from msa_ablate.models.encoders import recurrent
from msa_ablate.models.sequences import AttentionPool, attention_padding, check_heads, last_real_step, masked_mean

COMBINE = ("sum", "concat")


Masks = dict[str, torch.Tensor]


def shared(masks: Masks) -> torch.Tensor:
    """The one mask of modalities on the same steps (a step-wise fusion's)."""
    return next(iter(masks.values()))


def merge(seqs: dict[str, torch.Tensor], how: str) -> torch.Tensor:
    """The unimodal sequences as one: element-wise sum (dim) or feature-wise concatenation (dim x n)."""
    return sum(seqs.values()) if how == "sum" else torch.cat(list(seqs.values()), dim=-1)


class LSTMFusion(nn.Module):
    """The handout's fusion (``combine=sum``): the unimodal sequences summed, an LSTM, its hidden
    state at the last real step (the last step, with the handout's front padding; before the
    padding where it is at the back). ``combine=concat`` concatenates them instead, so no
    modality is averaged into another (with ``encoder=none``: EF-LSTM's early fusion)."""

    stepwise = True

    def __init__(self, dim: int, modalities: Sequence[str], combine: str = "sum", num_layers: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        one_of("fusion.combine", combine, COMBINE)
        self.combine = combine
        self.lstm = recurrent(nn.LSTM, dim * (len(modalities) if combine == "concat" else 1), dim, num_layers,
                              dropout, "fusion")
        self.out_dim = dim

    def forward(self, seqs: dict[str, torch.Tensor], masks: Masks) -> torch.Tensor:
        return read_out(self.lstm(merge(seqs, self.combine))[0], shared(masks), "last")


class SelfAttentionFusion(nn.Module):
    """Self-attention over the time steps of the combined sequence (summed, or concatenated
    and projected back to ``dim``), then a masked mean over real steps."""

    stepwise = True

    def __init__(self, dim: int, modalities: Sequence[str], combine: str = "sum", heads: int = 4,
                 feedforward: int = 256, dropout: float = 0.1, num_layers: int = 1) -> None:
        super().__init__()
        one_of("fusion.combine", combine, COMBINE)
        check_heads("fusion", dim, heads)
        self.combine = combine
        self.project = nn.Linear(dim * len(modalities), dim) if combine == "concat" else nn.Identity()
        layer = nn.TransformerEncoderLayer(dim, heads, positive_int("fusion.feedforward", feedforward),
                                           rate("fusion.dropout", dropout), batch_first=True)
        self.layers = nn.TransformerEncoder(layer, positive_int("fusion.num_layers", num_layers),
                                            enable_nested_tensor=False)
        self.out_dim = dim

    def forward(self, seqs: dict[str, torch.Tensor], masks: Masks) -> torch.Tensor:
        x, mask = self.project(merge(seqs, self.combine)), shared(masks)
        return masked_mean(self.layers(x, src_key_padding_mask=attention_padding(mask)), mask)


class CrossModalBlock(nn.Module):
    """MulT's cross-modal unit: the target's steps attend to a source's steps (post-norm residuals)."""

    def __init__(self, dim: int, heads: int, feedforward: int, dropout: float) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.feedforward = nn.Sequential(nn.Linear(dim, feedforward), nn.ReLU(), nn.Dropout(dropout),
                                         nn.Linear(feedforward, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, target: torch.Tensor, source: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        attended, _ = self.attention(target, source, source, key_padding_mask=padding, need_weights=False)
        x = self.norm1(target + self.dropout(attended))
        return self.norm2(x + self.dropout(self.feedforward(x)))


class CrossAttentionFusion(nn.Module):
    """MulT-style: for every ordered pair (source -> target) one cross-modal block; each target's
    attended sequences are pooled over real steps, and all are concatenated.
    Needs two modalities at least: with one there is nothing to attend across."""

    def __init__(self, dim: int, modalities: Sequence[str], heads: int = 4, feedforward: int = 256,
                 dropout: float = 0.1) -> None:
        super().__init__()
        if len(modalities) < 2:
            raise ConfigError(f"fusion=cross_attention needs two modalities or more, got modalities={list(modalities)}")
        check_heads("fusion", dim, heads)
        positive_int("fusion.feedforward", feedforward)
        rate("fusion.dropout", dropout)
        self.pairs = [(s, t) for t in modalities for s in modalities if s != t]
        self.blocks = nn.ModuleDict({f"{s}_to_{t}": CrossModalBlock(dim, heads, feedforward, dropout)
                                     for s, t in self.pairs})
        self.out_dim = dim * len(self.pairs)

    def forward(self, seqs: dict[str, torch.Tensor], masks: Masks) -> torch.Tensor:
        """Each target's steps attend to the source's real steps, and are pooled over its own."""
        padding = {m: attention_padding(mask) for m, mask in masks.items()}
        return torch.cat([masked_mean(self.blocks[f"{s}_to_{t}"](seqs[t], seqs[s], padding[s]), masks[t])
                          for s, t in self.pairs], dim=-1)


POOLS = ("mean", "last")


def read_out(seq: torch.Tensor, mask: torch.Tensor, pool: str) -> torch.Tensor:
    """(B, T, D) -> (B, D): the mean over real steps, or the step at the last real one (a recurrent
    encoder's summary of the clip)."""
    if pool == "mean":
        return masked_mean(seq, mask)
    return seq[torch.arange(len(seq), device=seq.device), last_real_step(mask)]


def with_one(z: torch.Tensor) -> torch.Tensor:
    """(B, D) -> (B, 1 + D): a 1 in front, so that products keep every lower-order term."""
    return torch.cat([z.new_ones(z.shape[0], 1), z], dim=-1)


class ConcatFusion(nn.Module):
    """Late feature fusion: each modality's sequence read out on its own (at its last real step, or
    averaged), the vectors concatenated (LF-LSTM with ``encoder=lstm``)."""

    def __init__(self, dim: int, modalities: Sequence[str], pool: str = "last") -> None:
        super().__init__()
        self.pool = one_of("fusion.pool", pool, POOLS)
        self.out_dim = dim * len(modalities)

    def forward(self, seqs: dict[str, torch.Tensor], masks: Masks) -> torch.Tensor:
        return torch.cat([read_out(seq, masks[m], self.pool) for m, seq in seqs.items()], dim=-1)


class TensorFusion(nn.Module):
    """Tensor Fusion Network (Zadeh et al. 2017): the outer product of the unimodal vectors (each
    read out over its clip, reduced to ``pooled_dim`` and padded with a 1 so that every unimodal
    and bimodal term survives beside the trimodal ones); then a hidden layer of ``post_dim``
    (the hidden size where null)."""

    def __init__(self, dim: int, modalities: Sequence[str], pooled_dim: int | Mapping[str, int] = 16,
                 dropout: float = 0.1, pool: str = "mean", post_dim: int | None = None) -> None:
        super().__init__()
        widths = each("fusion.pooled_dim", pooled_dim, modalities, positive_int)
        self.pool = one_of("fusion.pool", pool, POOLS)
        self.reduce = nn.ModuleDict({m: nn.Linear(dim, widths[m]) for m in modalities})
        self.out_dim = dim if post_dim is None else positive_int("fusion.post_dim", post_dim)
        self.post = nn.Sequential(nn.Dropout(rate("fusion.dropout", dropout)),
                                  nn.Linear(math.prod(w + 1 for w in widths.values()), self.out_dim), nn.ReLU())

    def forward(self, seqs: dict[str, torch.Tensor], masks: Masks) -> torch.Tensor:
        fused = None
        for m, seq in seqs.items():
            z = with_one(self.reduce[m](read_out(seq, masks[m], self.pool)))
            fused = z if fused is None else torch.einsum("bi,bj->bij", fused, z).flatten(1)
        return self.post(fused)


class LowRankFusion(nn.Module):
    """Low-rank Multimodal Fusion (Liu et al. 2018): TensorFusion's map with its weight tensor
    held as ``rank`` products of modality-specific factors, so that the outer product is never
    formed: ``sum_r w_r * prod_m (z_m @ W_m[r]) + b``, then ReLU, where z_m is the modality's
    vector (read out, reduced) with a 1 in front. At rank (1 + pooled_dim)^(n - 1) it can equal any
    TensorFusion."""

    def __init__(self, dim: int, modalities: Sequence[str], rank: int = 4, pooled_dim: int | Mapping[str, int] = 32,
                 dropout: float = 0.1, pool: str = "mean") -> None:
        super().__init__()
        positive_int("fusion.rank", rank)
        widths = each("fusion.pooled_dim", pooled_dim, modalities, positive_int)
        self.pool = one_of("fusion.pool", pool, POOLS)
        self.reduce = nn.ModuleDict({m: nn.Linear(dim, widths[m]) for m in modalities})
        self.dropout = nn.Dropout(rate("fusion.dropout", dropout))
        self.factors = nn.ParameterDict({m: nn.Parameter(torch.empty(rank, widths[m] + 1, dim)) for m in modalities})
        for factor in self.factors.values():
            nn.init.xavier_normal_(factor)
        self.rank_weights = nn.Parameter(nn.init.xavier_normal_(torch.empty(1, rank)).squeeze(0))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.out_dim = dim

    def forward(self, seqs: dict[str, torch.Tensor], masks: Masks) -> torch.Tensor:
        fused = None  # (rank, B, dim): the product over modalities so far, per rank
        for m, seq in seqs.items():
            z = self.dropout(with_one(self.reduce[m](read_out(seq, masks[m], self.pool))))
            factor = torch.einsum("bi,rio->rbo", z, self.factors[m])
            fused = factor if fused is None else fused * factor
        return torch.relu(torch.einsum("r,rbo->bo", self.rank_weights, fused) + self.bias)


class LateFusion(nn.Module):
    """No fusion of features: each modality is pooled over its real steps and scored by its own
    head; the model averages the scores."""

    per_modality = True

    def __init__(self, dim: int, modalities: Sequence[str]) -> None:
        super().__init__()
        self.out_dim = dim

    def forward(self, seqs: dict[str, torch.Tensor], masks: Masks) -> dict[str, torch.Tensor]:
        return {m: masked_mean(seq, masks[m]) for m, seq in seqs.items()}


class TextCentredFusion(nn.Module):
    """Text-centred fusion: the anchor modality (text when present, else the first one) queries
    each other modality with cross-modal attention; a learned sigmoid gate per step and channel
    decides how much of each attended signal joins the anchor (residual, LayerNorm), so weak or
    noisy non-verbal cues can be shut out rather than summed in as the handout's model does. The result
    and every other modality are attention-pooled over their real steps and concatenated.

    Why text-centred: in MOSI, as in most MSA data, words carry most of the sentiment; audio and
    vision modulate it (MulT, MAG-BERT, and the study here: text alone is far above audio or
    vision alone)."""

    def __init__(self, dim: int, modalities: Sequence[str], heads: int = 4, dropout: float = 0.1,
                 anchor: str = "text") -> None:
        super().__init__()
        check_heads("fusion", dim, heads)
        rate("fusion.dropout", dropout)
        self.anchor = anchor if anchor in modalities else modalities[0]
        self.others = [m for m in modalities if m != self.anchor]
        self.attention = nn.ModuleDict({m: nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
                                        for m in self.others})
        self.gate = nn.ModuleDict({m: nn.Linear(2 * dim, dim) for m in self.others})
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.pool = nn.ModuleDict({m: AttentionPool(dim) for m in modalities})
        self.out_dim = dim * len(modalities)

    def forward(self, seqs: dict[str, torch.Tensor], masks: Masks) -> torch.Tensor:
        anchor = seqs[self.anchor]
        fused = anchor
        for m in self.others:
            attended, _ = self.attention[m](anchor, seqs[m], seqs[m], key_padding_mask=attention_padding(masks[m]),
                                            need_weights=False)
            gate = torch.sigmoid(self.gate[m](torch.cat([anchor, attended], dim=-1)))
            fused = fused + gate * self.dropout(attended)
        fused = self.norm(fused)
        return torch.cat([self.pool[self.anchor](fused, masks[self.anchor])]
                         + [self.pool[m](seqs[m], masks[m]) for m in self.others], dim=-1)
