"""What the experiments' sweeps (conf/experiment/) decide from the data: a resolver, registered on import.

``${msa_ablate.if_text_bert:PATH,VALUE}``: VALUE where the data file at PATH holds MMSA's ``text_bert``
token ids, else the empty string (no file: the built-in data). +experiment=published adds the presets that
fine-tune BERT (``,misa``) to its list this way, so that on data without token ids its jobs are as before.
"""

from __future__ import annotations

import mmap
from pathlib import Path

from omegaconf import OmegaConf

KEY = b"text_bert"  # a pickle holds its dicts' keys as plain bytes: found without unpickling gigabytes


def holds_text_bert(path: str | None) -> bool:
    """Whether the pickle at ``path`` names a ``text_bert`` key (False for none, or no such file: the run
    itself says what is wrong with a path)."""
    file = Path(str(path)).expanduser() if path else None
    if file is None or not file.is_file() or file.stat().st_size == 0:
        return False
    with file.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return data.find(KEY) >= 0


def if_text_bert(path: str | None, value: str) -> str:
    return value if holds_text_bert(path) else ""


if not OmegaConf.has_resolver("msa_ablate.if_text_bert"):
    OmegaConf.register_new_resolver("msa_ablate.if_text_bert", if_text_bert, use_cache=True)
