"""An MSA data pickle (CMU-MOSI, CMU-MOSEI, CH-SIMS, SIMS v2) in any of the layouts met in the wild:

- the handout's / MultiBench (``mosi_raw.pkl``): 'labels' (N, 1) or (N, 1, 1), string ids;
- MulT (``mosi_data.pkl``, ``*_noalign.pkl``): 'labels' (N, 1, 1), byte-string ids;
- MMSA (``aligned_50.pkl``, ``unaligned_*.pkl``): 'regression_labels' (N,), with 'audio_lengths' and
  'vision_lengths' where unaligned, per-modality labels for CH-SIMS, and keys this tool does not use.

Feature dims and steps come from the file. A dataset config (conf/data/) states what a real file of
its dataset holds (``expect``: split sizes, the dims of its known layouts); a file that differs is
read all the same, with a warning naming the difference.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping, Sequence

import numpy as np

from msa_ablate.data import MSAData, from_arrays
from msa_ablate.data.fingerprint import data_file
from msa_ablate.errors import DataError

log = logging.getLogger(__name__)
GZIP = b"\x1f\x8b"


def read_pickle(path: str) -> tuple[object, str]:
    """The unpickled object, and the file's path (expanded), or a one-line DataError saying why not."""
    file = data_file(path)
    with file.open("rb") as f:
        if f.read(2) == GZIP:
            raise DataError(f"{file}: a gzip-compressed file; decompress it (gunzip -k {file}) and set data.path "
                            "to the .pkl it gives")
        f.seek(0)
        try:
            try:
                return pickle.load(f), str(file)
            except UnicodeDecodeError:  # a pickle written by Python 2 (some MOSI copies are)
                f.seek(0)
                return pickle.load(f, encoding="latin1"), str(file)
        except Exception as e:  # unpickling garbage can raise almost anything; all of it means "not MSA data"
            detail = " ".join(f"{type(e).__name__}: {e}".split())[:200]  # one line, however odd the bytes
            raise DataError(f"{file}: not a readable pickle ({detail})") from None


def layout(raw: Mapping) -> tuple[str, str]:
    """Which layout a file's train split is in, and why we think so."""
    train = raw.get("train") if isinstance(raw, Mapping) else None
    if not isinstance(train, Mapping):
        return "unknown", "no train split"
    if "regression_labels" in train:
        return "MMSA", "'regression_labels' (N,)" + (", with '*_lengths'" if "audio_lengths" in train else "")
    labels, ids = np.asarray(train.get("labels", [])), np.asarray(train.get("id", []))
    if labels.ndim == 3 or (ids.size and isinstance(ids.reshape(-1)[0], bytes)):
        return "MulT", f"'labels' {labels.shape[1:]} per clip" + (", byte-string ids" if ids.size else "")
    return "handout/MultiBench", f"'labels' {labels.shape[1:]} per clip"


def unexpected(data: MSAData, name: str, expect: Mapping) -> list[str]:
    """How the data differs from what a real file of dataset ``name`` holds (none: it matches)."""
    differences = []
    sizes = {s: len(split) for s, split in data.splits.items()}
    if expect.get("sizes") and sizes != dict(expect["sizes"]):
        differences.append(f"split sizes {sizes}, where {name} has {dict(expect['sizes'])}")
    known = [dict(d) for d in expect.get("dims") or []]
    if known and data.dims not in known:
        differences.append(f"feature dims {data.dims}, where {name}'s known layouts have {known}")
    labels = np.concatenate([split.labels.numpy() for split in data.splits.values()])
    if data.label_range[1] > 1 and np.abs(labels).max() <= 1:
        differences.append("every label is within [-1, 1], as CH-SIMS's are (data=sims or data=simsv2)")
    return differences


def load_pickle(path: str, dims: Mapping[str, int] | None = None, clip_labels: bool = False, align: str = "none",
                label_range: Sequence[float] = (-3.0, 3.0), name: str = "", expect: Mapping | None = None,
                text_bert: bool = False) -> MSAData:
    """``name`` and ``expect``: the dataset the config says this is, and what its files hold.
    ``text_bert`` (set by the run, not the config: text=bert): keep MMSA's BERT token ids too."""
    raw, source = read_pickle(path)
    data = from_arrays(raw, source=source, clip_labels=clip_labels, label_range=tuple(label_range), align=align,
                       text_bert=text_bert)
    if dims is not None and data.dims != dict(dims):
        raise DataError(f"{source}: feature dims {data.dims} differ from data.dims={dict(dims)}")
    data.layout = "{} ({})".format(*layout(raw))
    for difference in unexpected(data, name or "the dataset", expect or {}):
        log.warning("%s: %s (read all the same)", source, difference)
    return data
