"""BERT fine-tuned on MMSA's token ids (``text=bert``): the text branch's input, in place of the
frozen 768-d ``text`` features.

MMSA's files hold ``text_bert``, (N, 3, L): token ids, input mask and segment ids, on the text's
L steps (aligned files and unaligned ones alike). ``BertText`` turns them into BERT's last hidden
states, (B, L, hidden), which the text branch reads where it reads the features otherwise, so every
encoder, fusion and head works on fine-tuned BERT as it is. The checkpoint is ``model.bert``: a
local folder (``save_pretrained``'s), or a name in the Hugging Face cache or on the hub.

``transformers`` is an optional extra (``pip install -e '.[bert]'``), imported only here and only
when a model reads BERT, so a run on features never pays for it.

The module owns the ``BertModel`` (``self.bert``) and runs it in two parts, ``embed`` (the embedding
output) and ``encode`` (the layers, under a mask it builds itself), so that a later option can put
a gate between them or between layers (MAG-BERT's, after the embeddings: ``text=mag_bert``,
msa_ablate/models/mag.py), read the CLS state
(Self-MM) or a masked mean (MISA). Calling the parts with its own additive mask, rather than
``BertModel.forward``, also keeps a host sync out of the step (transformers checks whether the mask is
all ones), which vmap (seed packs) cannot go through; a test holds ``forward`` equal to
``BertModel``'s own.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from msa_ablate.errors import ConfigError

INSTALL = "pip install -e '.[bert]'"
NO_DECAY = ("bias", "LayerNorm.weight", "LayerNorm.bias")  # Self-MM's trainer leaves these undecayed
PROXIES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def transformers_module():
    """``transformers``, or a one-line ConfigError saying how to install it."""
    try:
        import transformers
    except ImportError:
        raise ConfigError(f"text=bert needs the transformers package: {INSTALL}") from None
    return transformers


HOW = ("set model.bert=/path/to/folder, a folder holding a BERT checkpoint (config.json and its weights, as "
       "save_pretrained writes them), copied from where there is a network")


def _hub_reachable(timeout: float = 5.0) -> bool:
    """Whether the hub's host answers a TCP connection within ``timeout`` s. huggingface_hub retries an
    unreachable host five times with back-off (about 25 s) before giving up: this asks once. Behind a
    proxy the answer is left to the hub's client (True)."""
    if any(os.environ.get(p) for p in PROXIES):
        return True
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout):
            return True
    except OSError:
        return False


@contextmanager
def _loading(transformers) -> Iterator[None]:
    """Loading as plain torch modules, quietly: without the hub's kernels (transformers 5 swaps in
    kernels fetched from the hub where the ``kernels`` package is installed; they would need the
    network, and a seed pack's template on the meta device cannot take them), its progress bars,
    and its report of the checkpoint's unused weights (a pre-training checkpoint's pooler and heads)."""
    verbosity = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    kernels = os.environ.get("USE_HUB_KERNELS")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    os.environ["USE_HUB_KERNELS"] = "NO"
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()
        if kernels is None:
            os.environ.pop("USE_HUB_KERNELS", None)
        else:
            os.environ["USE_HUB_KERNELS"] = kernels


def load_bert(checkpoint: str, pooler: bool = False) -> nn.Module:
    """``BertModel.from_pretrained(checkpoint)``, without its pooler unless ``pooler`` (MAG-BERT's read-out
    starts from it: msa_ablate/models/mag.py): from a local folder; else a name
    in the Hugging Face cache; else from the hub, if it answers. Each failure is one ConfigError naming
    ``model.bert`` and how to point it at a local folder, at once rather than after the hub's retries."""
    transformers = transformers_module()
    folder = Path(checkpoint).expanduser()
    local = folder.is_dir()
    if not local and checkpoint.startswith(("/", "./", "../", "~", ".\\")):
        raise ConfigError(f"model.bert={checkpoint}: no such folder; {HOW}")
    offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
    reason = ""
    with _loading(transformers):
        for local_only in [True] if local or offline else [True, False]:  # local files (a folder, the cache) first
            if not local_only and not _hub_reachable():
                raise ConfigError(f"model.bert={checkpoint}: not in the Hugging Face cache, and the hub cannot be "
                                  f"reached; {HOW}")
            try:
                return transformers.BertModel.from_pretrained(str(folder) if local else checkpoint,
                                                              add_pooling_layer=pooler, local_files_only=local_only)
            except OSError as e:
                reason = " ".join(str(e).split())[:160]
            except (ValueError, KeyError, RuntimeError) as e:  # a folder or model holding something else
                raise ConfigError(f"model.bert={checkpoint}: not a BERT checkpoint ({type(e).__name__}: "
                                  f"{' '.join(str(e).split())[:160]}); {HOW}") from None
    where = ("the folder holds no BERT checkpoint" if local else
             "not in the Hugging Face cache (HF_HUB_OFFLINE is set)" if offline else "no such model on the hub")
    raise ConfigError(f"model.bert={checkpoint}: {where} ({reason}); {HOW}")


class BertText(nn.Module):
    """MMSA's ``text_bert`` (B, 3, L) -> BERT's last hidden states (B, L, hidden), fine-tuned with the
    rest of the model (BERT's own learning rate and weight decay: ``optimizer.bert_lr``,
    ``optimizer.bert_weight_decay``). ``bert``: the checkpoint (``model.bert``), which the model passes."""

    reads_modalities = False  # the text alone (MAG-BERT's reads the other modalities too: models/mag.py)

    def __init__(self, bert: str) -> None:
        super().__init__()
        self.bert = load_bert(bert)
        self.out_dim = self.bert.config.hidden_size

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, 3, L) -> (B, L, hidden): BERT's embedding output (words, positions and segments, LayerNorm, dropout)."""
        return self.bert.embeddings(input_ids=tokens[:, 0], token_type_ids=tokens[:, 2])

    def attention_mask(self, tokens: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(B, 1, 1, L): 0 at the real tokens (the input mask), the dtype's lowest value at padding, added
        to the attention scores (eager and SDPA attention alike)."""
        real = tokens[:, 1].bool()[:, None, None, :]
        return torch.zeros(real.shape, dtype=dtype, device=tokens.device).masked_fill(~real, torch.finfo(dtype).min)

    def encode(self, hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L, hidden) -> (B, L, hidden): BERT's layers, attending to the real tokens only."""
        return self.bert.encoder(hidden, attention_mask=self.attention_mask(tokens, hidden.dtype)).last_hidden_state

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.encode(self.embed(tokens), tokens)


def bert_parameter_names(model: nn.Module) -> tuple[set[str], set[str]]:
    """The names of the parameters of every BERT in ``model``: (decayed, not decayed). Biases and
    LayerNorm weights are not decayed, as MMSA's Self-MM trainer has it (trains/multiTask/SELF_MM.py)."""
    decay, no_decay = set(), set()
    for name, module in model.named_modules():
        if isinstance(module, BertText):
            for sub, _ in module.bert.named_parameters():
                full = f"{name}.bert.{sub}" if name else f"bert.{sub}"
                (no_decay if any(n in sub for n in NO_DECAY) else decay).add(full)
    return decay, no_decay
