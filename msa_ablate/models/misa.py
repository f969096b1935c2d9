"""MISA (Hazarika et al. 2020): modality-invariant and -specific representations, ``fusion=misa``.

Written from MMSA's code (src/MMSA/models/singleTask/MISA.py, the model; trains/singleTask/MISA.py, its
losses), not copied. Each modality's utterance vector (text: the mean of its sequence over its real steps,
BERT's last hidden states under text=bert or the file's features; audio and vision: two bidirectional LSTMs
with a LayerNorm between, their final states) is projected to ``dim`` (Linear, ReLU, LayerNorm); a private
encoder per modality and one shared by all (Linear, sigmoid) split it into a modality-specific and a
modality-invariant part; a transformer layer reads the 2n parts as a sequence of 2n vectors (private ones
first, then shared, in the modalities' order), and their concatenation goes through Linear(2n dim, n dim),
dropout and ReLU to the head (``head=linear``: MISA's last layer).

In training it also returns its three auxiliary losses, weighted (msa_ablate/losses.py, the trainer adds
them): similarity, the central moment discrepancy between the shared parts of each pair of modalities
(their mean); difference, the soft orthogonality between each private part and its shared part and between
each pair of private parts (their sum); reconstruction, a linear decoder per modality from private + shared
back to the projected utterance (the mean over modalities of the squared error). A weight of 0 leaves its
term out. MISA's shared-private discriminator (``sp_discriminator``) is left out: no loss reads it in MMSA's
trainer. The adversarial similarity (``use_cmd_sim: false``) is not built: MMSA's configs use CMD.

The fusion reads each modality's input as the model gets it (``reads_features``): it brings MISA's own
subnetworks, so the model builds no branches for it (encoder, layernorm and model.input_* do not apply).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import torch
from torch import nn

from msa_ablate.errors import ConfigError, is_number, one_of, positive_int, rate
from msa_ablate.losses import central_moment_discrepancy, difference_loss, reconstruction_loss
from msa_ablate.models.sequences import check_heads, gather_steps, leading_padding, masked_mean

STEPS = ("own", "text")


def weight(key: str, value: object) -> float:
    if not is_number(value) or value < 0:
        raise ConfigError(f"{key}={value}: must be a number >= 0 (0 leaves the loss out)")
    return float(value)


class UtteranceLSTM(nn.Module):
    """MISA's audio and vision subnetwork (``extract_features``): a bidirectional LSTM of ``dim`` units per
    direction over the real steps, a LayerNorm on its outputs, a second bidirectional LSTM over those; the
    final states (B, 4 dim) in MISA's order: layer 1 forward, layer 2 forward, layer 1 backward, layer 2
    backward. The real steps are read as a packed sequence reads them (each direction from the clip's edge;
    padding read by neither), with unidirectional LSTMs, so that seed packs can unroll them. Real steps are
    assumed contiguous (front or back padding)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.forward1, self.backward1 = nn.LSTM(dim, dim, batch_first=True), nn.LSTM(dim, dim, batch_first=True)
        self.norm = nn.LayerNorm(2 * dim)
        self.forward2 = nn.LSTM(2 * dim, dim, batch_first=True)
        self.backward2 = nn.LSTM(2 * dim, dim, batch_first=True)
        self.out_dim = 4 * dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(x.shape[1], device=x.device)
        length = mask.sum(1, keepdim=True)
        front = gather_steps(x, (steps + leading_padding(mask).unsqueeze(1)) % x.shape[1])  # real steps first
        reverse = torch.where(steps < length, length - 1 - steps, steps)  # the real steps reversed
        last = (length - 1).clamp(min=0).unsqueeze(-1)  # (B, 1, 1): where each direction's final state is

        def both(forward: nn.LSTM, backward: nn.LSTM, seq: torch.Tensor) -> tuple[torch.Tensor, ...]:
            ahead, behind = forward(seq)[0], backward(gather_steps(seq, reverse))[0]
            final = [h.gather(1, last.expand(-1, 1, h.shape[-1])).squeeze(1) for h in (ahead, behind)]
            return torch.cat([ahead, gather_steps(behind, reverse)], -1), *final

        out, forward1, backward1 = both(self.forward1, self.backward1, front)
        _, forward2, backward2 = both(self.forward2, self.backward2, self.norm(out))
        return torch.cat([forward1, forward2, backward1, backward2], -1)


class MISAFusion(nn.Module):
    """MISA's shared and private subspaces, its fusion transformer, and its auxiliary losses (see the module's
    docstring). ``dim``: MISA's hidden_size (model.hidden); ``input_dims``: each modality's input width.
    ``steps``: which steps audio and vision are read over: ``own`` (their own real steps) or ``text`` (the first
    as many steps as the text has real tokens, as MMSA's code does: it packs every modality with the text's
    lengths, so on unaligned files the first frames). ``heads``, ``feedforward``, ``transformer_dropout``,
    ``layers``: the fusion transformer (MISA's: nn.TransformerEncoderLayer(hidden, nhead=2) with torch's
    defaults, one layer); ``dropout``: before the last ReLU; ``moments``: CMD's (5);
    ``sim_weight``, ``diff_weight``, ``recon_weight``: the auxiliary losses' weights."""

    reads_features = True  # the model gives it each modality's input, not a branch's output

    def __init__(self, dim: int, modalities: Sequence[str], input_dims: Mapping[str, int], dropout: float = 0.2,
                 heads: int = 2, feedforward: int = 2048, transformer_dropout: float = 0.1, layers: int = 1,
                 steps: str = "own", moments: int = 5, sim_weight: float = 0.3, diff_weight: float = 0.1,
                 recon_weight: float = 1.0) -> None:
        super().__init__()
        check_heads("fusion", dim, heads)
        self.steps = one_of("fusion.steps", steps, STEPS)
        if steps == "text" and "text" not in modalities:
            raise ConfigError(f"fusion.steps=text reads audio and vision over the text's tokens: modalities "
                              f"{list(modalities)} have no text; set fusion.steps=own")
        self.modalities, self.moments = list(modalities), positive_int("fusion.moments", moments)
        self.weights = {name: weight(f"fusion.{key}", w) for name, key, w in (
            ("similarity", "sim_weight", sim_weight), ("difference", "diff_weight", diff_weight),
            ("reconstruction", "recon_weight", recon_weight))}
        self.utterance = nn.ModuleDict({m: UtteranceLSTM(input_dims[m]) for m in self.modalities if m != "text"})
        width = {m: input_dims[m] if m == "text" else self.utterance[m].out_dim for m in self.modalities}
        self.project = nn.ModuleDict({m: nn.Sequential(nn.Linear(width[m], dim), nn.ReLU(), nn.LayerNorm(dim))
                                      for m in self.modalities})
        self.private = nn.ModuleDict({m: nn.Sequential(nn.Linear(dim, dim), nn.Sigmoid()) for m in self.modalities})
        self.shared = nn.Sequential(nn.Linear(dim, dim), nn.Sigmoid())
        self.reconstruct = nn.ModuleDict({m: nn.Linear(dim, dim) for m in self.modalities})
        layer = nn.TransformerEncoderLayer(dim, heads, positive_int("fusion.feedforward", feedforward),
                                           rate("fusion.transformer_dropout", transformer_dropout), batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, positive_int("fusion.layers", layers),
                                                 enable_nested_tensor=False)
        n = len(self.modalities)
        self.out = nn.Sequential(nn.Linear(2 * n * dim, n * dim), nn.Dropout(rate("fusion.dropout", dropout)),
                                 nn.ReLU())
        self.out_dim = n * dim

    def utterances(self, seqs: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each modality's (B, width) utterance vector."""
        if self.steps == "text":  # MMSA's: audio and vision over the text's token count, from their first step
            length = masks["text"].sum(1, keepdim=True)
            text_steps = seqs["text"].shape[1]
            seqs = {m: x if m == "text" else x[:, :text_steps] for m, x in seqs.items()}  # no longer read
            masks = {m: mask if m == "text" else torch.arange(seqs[m].shape[1], device=mask.device) < length
                     for m, mask in masks.items()}
        return {m: masked_mean(seqs[m], masks[m]) if m == "text" else self.utterance[m](seqs[m], masks[m])
                for m in self.modalities}

    def forward(self, seqs: Mapping[str, torch.Tensor],
                masks: Mapping[str, torch.Tensor]) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        projected = {m: self.project[m](u) for m, u in self.utterances(seqs, masks).items()}
        private = {m: self.private[m](u) for m, u in projected.items()}
        shared = {m: self.shared(u) for m, u in projected.items()}
        parts = self.transformer(torch.stack([*private.values(), *shared.values()], 1))
        fused = self.out(parts.flatten(1))
        if not self.training:
            return fused
        return fused, self.auxiliary_losses(projected, private, shared)

    def auxiliary_losses(self, projected: Mapping[str, torch.Tensor], private: Mapping[str, torch.Tensor],
                         shared: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """MMSA's get_cmd_loss, get_diff_loss, get_recon_loss, each times its weight; a zero weight: left out."""
        pairs = list(combinations(self.modalities, 2))
        terms = {}
        if self.weights["similarity"] and pairs:
            terms["similarity"] = sum(central_moment_discrepancy(shared[a], shared[b], self.moments)
                                      for a, b in pairs) / len(pairs)
        if self.weights["difference"]:
            terms["difference"] = (sum(difference_loss(private[m], shared[m]) for m in self.modalities)
                                   + sum(difference_loss(private[a], private[b]) for a, b in pairs))
        if self.weights["reconstruction"]:
            terms["reconstruction"] = sum(reconstruction_loss(self.reconstruct[m](private[m] + shared[m]),
                                                              projected[m]) for m in self.modalities) / len(
                self.modalities)
        return {name: self.weights[name] * term for name, term in terms.items()}
