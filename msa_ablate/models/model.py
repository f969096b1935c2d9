"""The one model: per-modality branches, a fusion and a head, each chosen by config."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from msa_ablate.errors import ConfigError, is_int, is_number, one_of, positive_int
from msa_ablate.losses import AUX
from msa_ablate.models.sequences import content_mask

ACTIVATIONS = {"relu": F.relu, "none": lambda x: x}


class ModalityBranch(nn.Module):
    """The handout's unimodal path: LayerNorm(d) -> Linear(d, dim) -> ReLU -> encoder, with an
    optional dropout on the normalised input features (MulT's ``embed_dropout``), an optional
    low-rank input projection (``rank`` dims first, as MulT projects GloVe to 30), and the ReLU
    optional (``activation=none``: a linear projection, as MulT's and the early-fusion models'), and
    its bias too (MulT's 1x1 convolution has none: padded steps stay zeros)."""

    def __init__(self, in_dim: int, dim: int, encoder: nn.Module, layernorm: bool, input_dropout: float = 0.0,
                 rank: int | None = None, activation: str = "relu", bias: bool = True) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim) if layernorm else nn.Identity()
        self.input_dropout = nn.Dropout(input_dropout) if input_dropout else nn.Identity()
        self.proj = (nn.Linear(in_dim, dim, bias=bias) if rank is None
                     else nn.Sequential(nn.Linear(in_dim, rank, bias=False), nn.Linear(rank, dim, bias=bias)))
        self.activation = ACTIVATIONS[activation]
        self.encoder = encoder

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.activation(self.proj(self.input_dropout(self.norm(x)))), mask)


def per_modality(key: str, value: object, input_dims: Mapping[str, int], allowed: Callable[[object], bool],
                 expected: str, absent: object) -> dict[str, object]:
    """``model.<key>``: one value for every modality, or a value per modality (``absent`` where none)."""
    values = dict(value) if isinstance(value, Mapping) else {m: value for m in input_dims}
    for m, v in values.items():
        if m not in input_dims or not allowed(v):
            raise ConfigError(f"model.{key}: {m}={v!r}: must be a modality of {sorted(input_dims)} with {expected}")
    return {m: values.get(m, absent) for m in input_dims}


def is_rate(v: object) -> bool:
    return is_number(v) and 0 <= v < 1


def is_rank(v: object) -> bool:
    return v is None or (is_int(v) and v > 0)


class MultimodalSentimentModel(nn.Module):
    """Branches for the chosen modalities only (a dropped modality builds no parameters); the head's
    scores in the data's ``label_range``. ``encoders`` gives some modalities another encoder than
    ``encoder`` (TFN: an LSTM for text, a mean for audio and vision).

    ``text`` (text=bert): a module built from the checkpoint ``bert`` (``model.bert``) that turns the
    batch's ``text_bert`` token ids into the text's (B, L, hidden) sequence, which the text branch
    reads in place of the features (text=mag_bert's also gets the other modalities' features, for its
    gate). ``tasks`` (tasks=unimodal): heads of auxiliary tasks on the
    branches' outputs; the model then returns ``{"main": scores, modality: its head's scores}``. A fusion
    that ``reads_features`` (MISA's) gets each modality's input as it is, with ``input_dims``, and no branch
    is built; one that returns ``(fused, {name: loss})`` in training adds auxiliary losses, returned as
    ``{"main": scores, "aux:<name>": loss}`` for the trainer to add (msa_ablate/losses.py)."""

    def __init__(
        self,
        input_dims: Mapping[str, int],
        modalities: Sequence[str],
        encoder: Callable[[int], nn.Module],
        fusion: Callable[..., nn.Module],
        head: Callable[[int], nn.Module],
        hidden: int = 128,
        layernorm: bool = True,
        input_dropout: float | Mapping[str, float] = 0.0,
        input_rank: int | Mapping[str, int] | None = None,
        label_range: tuple[float, float] = (-3.0, 3.0),
        encoders: Mapping[str, Callable[[int], nn.Module]] | None = None,
        input_activation: str = "relu",
        input_bias: bool = True,
        text: Callable[[str], nn.Module] | None = None,
        bert: str = "bert-base-uncased",
        tasks: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        unknown = [m for m in modalities if m not in input_dims]
        if unknown or not modalities or len(set(modalities)) != len(modalities):
            raise ConfigError(f"modalities {list(modalities)}: distinct names, each one of {sorted(input_dims)}")
        positive_int("model.hidden", hidden)
        self.modalities = list(modalities)
        dropout = per_modality("input_dropout", input_dropout, input_dims, is_rate, "a rate in [0, 1)", 0.0)
        rank = per_modality("input_rank", input_rank, input_dims, is_rank, "a positive integer rank, or null", None)
        encoders = per_modality("encoders", encoders or {}, input_dims, callable, "an encoder", encoder)
        one_of("model.input_activation", input_activation, ACTIVATIONS)
        if text is not None and "text" in self.modalities:  # BERT's hidden states in place of the text features
            others = {m: input_dims[m] for m in self.modalities if m != "text"}  # MAG-BERT's gate reads them
            reads = getattr(getattr(text, "func", text), "reads_modalities", False)
            # model.bert, whatever the text node says
            self.text_input = text(bert=bert, **({"input_dims": others} if reads else {}))
            input_dims = {**input_dims, "text": self.text_input.out_dim}
        else:
            self.text_input = None
        if getattr(getattr(fusion, "func", fusion), "reads_features", False):  # MISA's: its own subnetworks
            if tasks is not None:
                raise ConfigError("tasks=unimodal: its heads read the branches' outputs, and this fusion reads the "
                                  "features itself (it has no branches); use tasks=main")
            self.branches = nn.ModuleDict()
            self.fusion = fusion(dim=hidden, modalities=self.modalities,
                                 input_dims={m: input_dims[m] for m in self.modalities})
        else:
            self.branches = nn.ModuleDict({m: ModalityBranch(input_dims[m], hidden, encoders[m](hidden), layernorm,
                                                             dropout[m], rank[m], input_activation, input_bias)
                                           for m in self.modalities})
            self.fusion = fusion(dim=hidden, modalities=self.modalities)
        if getattr(self.fusion, "per_modality", False):  # late fusion: one head per modality
            self.head = nn.ModuleDict({m: head(self.fusion.out_dim, label_range=label_range)
                                       for m in self.modalities})
        else:
            self.head = head(self.fusion.out_dim, label_range=label_range)
        self.tasks = None if tasks is None else tasks(dim=hidden, modalities=self.modalities, label_range=label_range)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``inputs``: each modality's (B, T_m, D_m) features, and its (B, T_m) mask of real steps under
        ``<modality>_mask``; without masks, aligned inputs' steps where any modality is non-zero.
        With ``text`` (text=bert), the text's token ids under ``text_bert``."""
        masks = {m: inputs.get(f"{m}_mask") for m in self.modalities}
        if any(mask is None for mask in masks.values()):
            shared = content_mask({k: x for k, x in inputs.items() if not k.endswith("_mask") and k != "text_bert"})
            masks = {m: shared if mask is None else mask for m, mask in masks.items()}
        if self.text_input is not None:
            others = ({m: inputs[m] for m in self.text_input.input_dims},) if self.text_input.reads_modalities else ()
            inputs = {**inputs, "text": self.text_input(inputs["text_bert"], *others)}
        seqs = {m: self.branches[m](inputs[m], masks[m]) if self.branches else inputs[m] for m in self.modalities}
        fused, aux = self.fusion(seqs, masks), {}
        if isinstance(fused, tuple):  # in training, with its auxiliary losses (MISA's), weighted
            fused, aux = fused
        if isinstance(fused, dict):
            scores = torch.stack([self.head[m](h) for m, h in fused.items()]).mean(0)
        else:
            scores = self.head(fused)
        outputs = scores if self.tasks is None else {"main": scores, **self.tasks(seqs, masks)}
        if aux:  # the trainer adds them to the loss; nothing else reads them
            outputs = {**(outputs if isinstance(outputs, dict) else {"main": outputs}),
                       **{AUX + name: term for name, term in aux.items()}}
        return outputs
