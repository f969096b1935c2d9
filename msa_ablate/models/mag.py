"""MAG-BERT (Rahman et al. 2020, "Integrating Multimodal Information in Large Pretrained Transformers"):
BERT fine-tuned with a multimodal adaptation gate between its layers (``text=mag_bert``), and the read-out
of BERT's [CLS] step through its pooler (``fusion=text_cls``); ``+preset=mag_bert`` is MMSA's recipe.

The gate shifts each token's hidden state h (B, L, H) by a vector computed from the audio and vision
features on the same step (so they must be on the text's steps: aligned files, or ``data.align``):

    g_m = relu(W_gm [x_m; h] + b)            the gate of each non-verbal modality m (audio, vision)
    H   = sum_m g_m * (W_m x_m + b_m)          the displacement
    alpha = min(||h|| / (||H|| + eps) * beta_shift, 1)     (||H|| = 0 counted as 1)
    out = dropout(LayerNorm(h + alpha * H))

so the shift is never longer than ``beta_shift`` times the token's own vector. Written from MMSA's
src/MMSA/models/singleTask/BERT_MAG.py (``MAG``, ``MAG_BertModel``: the gate on the embedding output,
``injection_index: 0`` here) and the authors' WasifurRahman/BERT_multimodal_transformer modeling.py
and bert.py (the same gate, also after the embeddings). The gate reads the modalities the model reads
(``modalities=ta``: audio alone); with text alone there is no gate, and the module is BERT as ``text=bert``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from msa_ablate.errors import ConfigError, is_int, positive_number, rate
from msa_ablate.models.bert import BertText, load_bert

EPS = 1e-6  # MMSA's and the authors' eps in the norm ratio


class MAG(nn.Module):
    """The multimodal adaptation gate: (B, L, H) hidden states and ``{modality: (B, L, D_m)}`` features on
    the same steps -> (B, L, H). ``input_dims``: the non-verbal modalities' dims (MMSA's W_ha, W_hv take
    [x_m; h], in that order, and W_a, W_v take x_m)."""

    def __init__(self, hidden: int, input_dims: Mapping[str, int], beta_shift: float = 1.0,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.beta_shift = positive_number("model.text.beta_shift", beta_shift)
        self.gates = nn.ModuleDict({m: nn.Linear(d + hidden, hidden) for m, d in input_dims.items()})
        self.shifts = nn.ModuleDict({m: nn.Linear(d, hidden) for m, d in input_dims.items()})
        self.norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(rate("model.text.dropout", dropout))

    def displacement(self, hidden: torch.Tensor, others: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """H = sum_m relu(W_gm [x_m; h]) * W_m x_m, (B, L, H)."""
        return sum(torch.relu(self.gates[m](torch.cat([others[m], hidden], dim=-1))) * self.shifts[m](others[m])
                   for m in self.gates)

    def forward(self, hidden: torch.Tensor, others: Mapping[str, torch.Tensor]) -> torch.Tensor:
        shift = self.displacement(hidden, others)
        shift_norm = shift.norm(2, dim=-1)
        shift_norm = torch.where(shift_norm == 0, torch.ones_like(shift_norm), shift_norm)  # no shift: no division by 0
        threshold = hidden.norm(2, dim=-1) / (shift_norm + EPS) * self.beta_shift
        alpha = torch.minimum(threshold, torch.ones_like(threshold)).unsqueeze(-1)
        return self.dropout(self.norm(hidden + alpha * shift))


class MAGBertText(BertText):
    """MMSA's ``text_bert`` (B, 3, L) and the non-verbal features on the text's L steps -> BERT's last
    hidden states (B, L, hidden), the gate between layer ``injection_index`` and the next (0: on the
    embedding output, MMSA's and the authors'; the number of layers: after the last). The model gives it
    the features of the modalities it reads besides text (``reads_modalities``), with their dims."""

    reads_modalities = True  # the model passes input_dims, and each batch's features, of the other modalities
    stepwise = True          # their steps must be the text's: aligned data, or data.align

    def __init__(self, bert: str, input_dims: Mapping[str, int] | None = None, injection_index: int = 0,
                 beta_shift: float = 1.0, dropout: float = 0.5) -> None:
        super().__init__(bert)
        layers = len(self.bert.encoder.layer)
        if not is_int(injection_index) or not 0 <= injection_index <= layers:
            raise ConfigError(f"model.text.injection_index={injection_index}: must be an integer in [0, {layers}] "
                              f"(0: after the embeddings; {layers}: after the last of this BERT's layers)")
        self.injection_index = injection_index
        self.input_dims = dict(input_dims or {})
        self.gate = MAG(self.out_dim, self.input_dims, beta_shift, dropout) if self.input_dims else None
        if self.gate is not None:  # as BERT initialises its new layers (MMSA's from_pretrained: N(0, 0.02), biases 0)
            for layer in [*self.gate.gates.values(), *self.gate.shifts.values()]:
                nn.init.normal_(layer.weight, std=self.bert.config.initializer_range)
                nn.init.zeros_(layer.bias)

    def forward(self, tokens: torch.Tensor, others: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        hidden = self.embed(tokens)
        mask = self.attention_mask(tokens, hidden.dtype)
        layers: Sequence[nn.Module] = self.bert.encoder.layer
        for i in range(len(layers) + 1):
            if i == self.injection_index and self.gate is not None:
                hidden = self.gate(hidden, others or {})
            if i < len(layers):
                out = layers[i](hidden, mask)
                hidden = out[0] if isinstance(out, tuple) else out  # a tuple in transformers 4, a tensor in 5
        return hidden


def first_real_step(mask: torch.Tensor) -> torch.Tensor:
    """(B,) index of each clip's first real step (0 for a clip with none): BERT's [CLS], at step 0 of MMSA's
    back-padded text_bert; past the padding where the text is padded in front (the handout's features)."""
    return (~mask).long().cumprod(1).sum(1) % mask.shape[1]


class TextCLSFusion(nn.Module):
    """The text's first real step ([CLS] for BERT) through BERT's pooler (Linear + tanh) and a dropout, as
    BertForSequenceClassification reads its input (MMSA's MAG_BertForSequenceClassification): (B, H) for
    the head (head=linear: MAG-BERT's classifier). The other modalities are not read here (MAG-BERT's reach
    the text through its gate). MMSA's code reads position 0 whatever the padding; the first real step is
    the same on its files (BERT's tokenizer pads at the back) and the [CLS] token where text_bert pads in front. ``pooler``: a BERT checkpoint whose pooler the layer starts from (null:
    freshly initialised); by default ``model.bert``, the text's own."""

    reads_features = True  # the model's inputs as they are (the text: BERT's hidden states); no branches

    def __init__(self, dim: int, modalities: Sequence[str], input_dims: Mapping[str, int],
                 pooler: str | None = None, dropout: float = 0.1) -> None:
        super().__init__()
        if "text" not in modalities:
            raise ConfigError(f"fusion=text_cls reads the text's [CLS] step: modalities={list(modalities)} has no "
                              "text; choose modalities with t, or another fusion")
        width = input_dims["text"]
        self.dense = nn.Linear(width, width)
        if pooler is not None:
            self._load_pooler(pooler, width)
        self.dropout = nn.Dropout(rate("fusion.dropout", dropout))
        self.out_dim = width

    def _load_pooler(self, checkpoint: str, width: int) -> None:
        """The checkpoint's pooler weights (a pre-training checkpoint's, as BertForSequenceClassification starts)."""
        pooler = load_bert(checkpoint, pooler=True).pooler.dense
        if pooler.in_features != width:
            raise ConfigError(f"fusion.pooler={checkpoint}: its pooler reads {pooler.in_features} dims, and the "
                              f"text has {width}; set fusion.pooler=null for a freshly initialised one")
        self.dense.load_state_dict(pooler.state_dict())

    def forward(self, seqs: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
        text = seqs["text"]
        first = text[torch.arange(len(text), device=text.device), first_real_step(masks["text"])]
        return self.dropout(torch.tanh(self.dense(first)))
