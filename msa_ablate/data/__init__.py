"""MSA data held as tensors: the container, its validation, and its sources.

Every source (a pickle, the synthetic generator) produces the same raw structure,
``{split: {"text"|"audio"|"vision": (N, T_m, D_m) array, "labels" or "regression_labels": (N,)-like
array, optional "audio_lengths"/"vision_lengths"/"text_lengths": (N,), "id", "regression_labels_T"...}}``,
and goes through :func:`from_arrays`, so validation and cleaning exist once.

Aligned data (every modality with the same steps, one per word) keep one mask of real steps for
all modalities: the steps where any modality holds a non-zero value (MOSI's aligned files pad at
the front, with steps of zeros; MMSA's BERT text counts by its ``text_bert`` input mask, as its
features are not zero at padding). Unaligned data (MulT's ``*_noalign.pkl``, MMSA's
``unaligned_*.pkl``: audio and vision frames at their own rates) keep a mask per modality: from
its ``<modality>_lengths`` where the file has them (MMSA's real frames come first, padding
after; the side is read off the zeros), for MMSA's BERT text its ``text_bert`` input mask, else
the steps from the first to the last holding a non-zero value.
With ``text_bert`` (text=bert), MMSA's BERT token ids are kept beside the features (``Split.tokens``)
and the model reads them instead of the text features.
``align=resample|pool`` puts each modality's real frames onto the text's real steps (linear
interpolation, or the mean of consecutive segments), which step-wise fusions need.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from msa_ablate.errors import ConfigError, DataError
from msa_ablate.metrics import LABEL_RANGES, metric_set

log = logging.getLogger(__name__)

MODALITIES = ("text", "audio", "vision")
SPLITS = ("train", "valid", "test")
UNIMODAL = {"T": "text", "A": "audio", "V": "vision"}  # MMSA's regression_labels_T/A/V
ALIGNMENTS = ("none", "resample", "pool")


@dataclass
class Split:
    features: dict[str, torch.Tensor]  # modality -> (N, T_m, D_m) float32
    masks: dict[str, torch.Tensor]  # modality -> (N, T_m) bool: True at real steps
    labels: torch.Tensor  # (N,) float32, in label_range
    label_range: tuple[float, float]
    unimodal: dict[str, torch.Tensor] = field(default_factory=dict)  # MMSA's per-modality labels (tasks=unimodal)
    ids: list[str] = field(default_factory=list)
    tokens: torch.Tensor | None = None  # (N, 3, T_text) int64: MMSA's text_bert (ids, input mask, segments), text=bert

    def __len__(self) -> int:
        return self.labels.shape[0]

    def inputs(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """A model's input for the samples ``idx`` indexes (any shape: a pack's (K, B) gives K
        batches): each modality's features, and its mask under ``<modality>_mask``; the BERT token
        ids under ``text_bert`` where the split holds them."""
        inputs = {**{m: x[idx] for m, x in self.features.items()},
                  **{f"{m}_mask": mask[idx] for m, mask in self.masks.items()}}
        if self.tokens is not None:
            inputs["text_bert"] = self.tokens[idx]
        return inputs

    def to(self, device: torch.device | str) -> Split:
        return Split({m: x.to(device) for m, x in self.features.items()},
                     {m: x.to(device) for m, x in self.masks.items()}, self.labels.to(device), self.label_range,
                     {m: y.to(device) for m, y in self.unimodal.items()}, self.ids,
                     None if self.tokens is None else self.tokens.to(device))


@dataclass
class MSAData:
    splits: dict[str, Split]
    nonfinite_cells: dict[str, dict[str, int]]  # split -> modality -> cells set to 0
    source: str
    label_range: tuple[float, float] = (-3.0, 3.0)
    clipped_labels: dict[str, int] | None = None  # split -> labels clipped into the range (data.clip_labels)
    padding: dict[str, str] = field(default_factory=dict)  # modality -> front | back | none, and how it was read
    aligned: str = ""  # "" (unaligned), "as given", or how the modalities were put on the text's steps
    layout: str = ""  # a file's layout, and why we think so (msa_ablate.data.pickles)

    @property
    def dims(self) -> dict[str, int]:
        return {m: x.shape[-1] for m, x in self.splits["train"].features.items()}

    @property
    def steps(self) -> dict[str, int]:
        return {m: x.shape[1] for m, x in self.splits["train"].features.items()}

    def to(self, device: torch.device | str) -> MSAData:
        return MSAData({s: d.to(device) for s, d in self.splits.items()}, self.nonfinite_cells, self.source,
                       self.label_range, self.clipped_labels, self.padding, self.aligned, self.layout)

    def summary(self) -> dict:
        """What a run records about its data in metrics.json."""
        return {
            "source": self.source,
            **({"layout": self.layout} if self.layout else {}),
            "sizes": {s: len(d) for s, d in self.splits.items()},
            "dims": self.dims,
            "steps": self.steps,
            "aligned": self.aligned or "no",
            "padding": self.padding,
            "label_range": list(self.label_range),
            "metrics": metric_set(self.label_range),
            "nonfinite_cells": self.nonfinite_cells,
            "unimodal_labels": sorted(self.splits["train"].unimodal),
            **({"text_bert": list(self.splits["train"].tokens.shape[1:])}
               if self.splits["train"].tokens is not None else {}),
            **({"clipped_labels": self.clipped_labels} if self.clipped_labels is not None else {}),
        }


def _labels(split: Mapping, key: str, where: str, label_range: tuple[float, float],
            clip: bool) -> tuple[np.ndarray, int]:
    """The split's labels under ``key`` as (N,) float32, and how many were clipped into the range."""
    raw = np.asarray(split[key])
    n = raw.shape[0] if raw.ndim else 0
    if raw.ndim == 0 or raw.size != n:  # (N,), (N, 1) and (N, 1, 1) all hold one label per clip
        raise DataError(f"{where}['{key}']: expected one label per sample, got shape {raw.shape}")
    if raw.dtype.kind not in "iuf":
        raise DataError(f"{where}['{key}']: labels must be real numbers, these are {raw.dtype} "
                        f"({'true/false' if raw.dtype.kind == 'b' else 'not sentiment scores'})")
    labels = raw.reshape(n).astype(np.float32)
    bad = ~np.isfinite(labels)
    if bad.any():
        raise DataError(f"{where}['{key}']: {bad.sum()} non-finite label(s), first at index {np.argmax(bad)}")
    low, high = label_range
    outside = (labels < low) | (labels > high)
    if outside.any() and not clip:
        raise DataError(f"{where}['{key}']: {outside.sum()} label(s) outside {list(label_range)}, first "
                        f"{labels[np.argmax(outside)]:g}; data.clip_labels=true clips them")
    return np.clip(labels, low, high), int(outside.sum())


def _features(split: Mapping, modality: str, n: int, where: str) -> tuple[np.ndarray, int]:
    if modality not in split:
        raise DataError(f"{where}: missing key '{modality}' (has {sorted(map(str, split))})")
    try:
        raw = np.asarray(split[modality])
        if raw.dtype.kind == "c":  # float32 would drop the imaginary parts with only a warning
            raise DataError(f"{where}['{modality}']: complex numbers, not real features")
        x = raw.astype(np.float32)  # a copy: the caller's arrays stay as they were
    except (TypeError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{where}['{modality}']: not a numeric array ({e})") from None
    if x.ndim != 3:
        raise DataError(f"{where}['{modality}']: expected rank 3 (samples, steps, dims), got shape {x.shape}")
    if x.shape[0] != n:
        raise DataError(f"{where}['{modality}']: {x.shape[0]} samples but the labels have {n}")
    bad = ~np.isfinite(x)
    x[bad] = 0.0  # COVAREP's -inf cells (and any NaN): the handout zeroes them
    return x, int(bad.sum())


def nonzero_steps(x: np.ndarray) -> np.ndarray:
    """(N, T, D) -> (N, T): True at steps that hold any non-zero value."""
    return (x != 0).any(-1)


def _given_mask(split: Mapping, modality: str, x: np.ndarray, where: str) -> tuple[np.ndarray, str] | None:
    """The mask the file gives a modality, and where it comes from: its ``<modality>_lengths``, or
    for the text MMSA's ``text_bert`` (ids, input mask, segments), whose BERT features are not
    zero at padding. None where the file gives none."""
    key = f"{modality}_lengths"
    bert = np.asarray(split.get("text_bert", []))
    if key not in split and modality == "text" and bert.shape == (x.shape[0], 3, x.shape[1]):
        mask = bert[:, 1] > 0
        return mask, f"{_padding(mask)} (text_bert's input mask)"
    if key not in split:
        return None
    lengths = np.asarray(split[key]).reshape(-1)
    n, steps = x.shape[:2]
    if lengths.shape != (n,) or lengths.dtype.kind not in "iuf" or not np.all(lengths >= 0):
        raise DataError(f"{where}['{key}']: expected {n} lengths >= 0, got shape {lengths.shape}")
    if (lengths > steps).any():  # a clip cut to the padded size that kept its full length
        log.warning("%s['%s']: %d length(s) exceed the %d steps held; read as %d", where, key,
                    (lengths > steps).sum(), steps, steps)
    lengths = np.minimum(lengths, steps).astype(int)
    first = np.arange(steps)[None, :] < lengths[:, None]  # real steps first, padding after (MMSA's)
    last = np.arange(steps)[None, :] >= (steps - lengths)[:, None]
    content = nonzero_steps(x)
    # the side whose padding holds the fewest non-zero steps
    side = "back" if (content & ~first).sum() <= (content & ~last).sum() else "front"
    return (first if side == "back" else last), f"{side} ({key})"


def span(mask: np.ndarray) -> np.ndarray:
    """(N, T): the steps from each clip's first True to its last; a frame of zeros inside a clip
    (silence, a face lost) is not padding."""
    return np.maximum.accumulate(mask, axis=1) & np.maximum.accumulate(mask[:, ::-1], axis=1)[:, ::-1]


def _padding(mask: np.ndarray) -> str:
    """front, back or none: where a mask's padding lies in most clips."""
    padded = ~mask
    if not padded.any():
        return "none"
    return "front" if padded[:, 0].sum() >= padded[:, -1].sum() else "back"


def _tokens(split: Mapping, n: int, steps: int, where: str) -> np.ndarray:
    """MMSA's ``text_bert``: (N, 3, T_text) token ids, input mask and segment ids, as int64 (its
    files may hold them as floats). text=bert reads it; a file without it is refused here."""
    if "text_bert" not in split:
        raise DataError(f"{where}: no 'text_bert' key, which text=bert reads (MMSA's BERT token ids); this file "
                        "has none: use text=features, or an MMSA file (aligned_50.pkl, unaligned_50.pkl, CH-SIMS's)")
    raw = np.asarray(split["text_bert"])
    if raw.shape != (n, 3, steps) or raw.dtype.kind not in "iuf":
        raise DataError(f"{where}['text_bert']: expected ({n}, 3, {steps}) token ids, input mask and segment ids "
                        f"(the text's {steps} steps), got {raw.dtype} {raw.shape}")
    if not (np.isfinite(raw).all() and (raw >= 0).all() and (raw == np.round(raw)).all()):
        raise DataError(f"{where}['text_bert']: token ids, masks and segments must be integers >= 0")
    return raw.astype(np.int64)


def _ids(split: Mapping, n: int) -> list[str]:
    """Each clip's id (the first column where there are several; byte strings decoded), or none."""
    if "id" not in split:
        return []
    ids = np.asarray(split["id"], dtype=object)
    if ids.size < n or ids.shape[0] != n:
        return []
    return [i.decode() if isinstance(i, bytes) else str(i) for i in ids.reshape(n, -1)[:, 0]]


def from_arrays(raw: object, source: str, clip_labels: bool | None = None,
                label_range: tuple[float, float] = (-3.0, 3.0), align: str = "none",
                text_bert: bool = False) -> MSAData:
    """Validate a ``{split: {key: array}}`` mapping, zero its non-finite cells, mark each modality's
    real steps, hold it as tensors. A label outside ``label_range`` is an error, unless
    ``clip_labels`` (then clipped, and counted). ``align``: none, resample or pool (unaligned data
    onto the text's steps). ``text_bert``: keep MMSA's BERT token ids too (text=bert)."""
    if align not in ALIGNMENTS:
        raise ConfigError(f"data.align={align}: must be one of {', '.join(ALIGNMENTS)}")
    label_range = tuple(float(v) for v in label_range)
    if label_range not in LABEL_RANGES:
        raise ConfigError(f"data.label_range={list(label_range)}: must be [-3, 3] (MOSI, MOSEI) or [-1, 1] "
                          "(CH-SIMS, SIMS v2)")
    if not isinstance(raw, Mapping):
        raise DataError(f"{source}: expected a dict of splits {SPLITS}, got {type(raw).__name__}")
    splits, counts, clipped, padding, aligned = {}, {}, {}, {}, ""
    first_steps, first_dims = None, None
    for name in SPLITS:
        where = f"{source}[{name!r}]"
        if name not in raw:
            raise DataError(f"{source}: missing split '{name}' (has {sorted(map(str, raw))})")
        split = raw[name]
        if not isinstance(split, Mapping):
            raise DataError(f"{where}: expected a dict of arrays, got {type(split).__name__}")
        key = "labels" if "labels" in split else "regression_labels" if "regression_labels" in split else None
        if key is None:
            raise DataError(f"{where}: no 'labels' or 'regression_labels' key (has {sorted(map(str, split))})")
        labels, clipped[name] = _labels(split, key, where, label_range, bool(clip_labels))
        if len(labels) < 2:
            raise DataError(f"{where}: {len(labels)} sample(s); a split needs 2 or more")
        features, counts[name] = {}, {}
        for m in MODALITIES:
            features[m], counts[name][m] = _features(split, m, len(labels), where)
        steps = {m: x.shape[1] for m, x in features.items()}
        dims = {m: x.shape[2] for m, x in features.items()}
        if first_steps is not None and steps != first_steps:
            differ = next(m for m in MODALITIES if steps[m] != first_steps[m])
            raise DataError(f"{where}: {steps[differ]} steps per clip in '{differ}', but the train split has "
                            f"{first_steps[differ]}")
        if first_dims is not None and dims != first_dims:
            raise DataError(f"{where}: feature dims {dims} differ from the train split's {first_dims}")
        first_steps, first_dims = steps, dims
        if len(set(steps.values())) == 1:  # aligned: one mask for all, the steps where any modality holds something
            text = _given_mask(split, "text", features["text"], where)  # MMSA's BERT text: not zero at padding
            union = np.stack([text[0] if text and m == "text" else nonzero_steps(x)
                              for m, x in features.items()]).any(0)
            masks = dict.fromkeys(MODALITIES, union)
            found_by = "text_bert and zero steps" if text else "zero steps"
            padding = dict.fromkeys(MODALITIES, f"{_padding(union)} ({found_by})")
            aligned = "as given"
        else:
            masks = {}
            for m, x in features.items():
                given = _given_mask(split, m, x, where)
                masks[m] = given[0] if given else span(nonzero_steps(x))
                padding[m] = given[1] if given else f"{_padding(masks[m])} (zero steps)"
            if align != "none":
                from msa_ablate.data.align import onto

                for m in MODALITIES:
                    if m != "text":
                        features[m] = onto(features[m], masks[m], masks["text"], align)
                masks = dict.fromkeys(MODALITIES, masks["text"])
                aligned = {"resample": "resampled", "pool": "pooled"}[align] + " onto the text's steps"
        unimodal = {UNIMODAL[u]: _labels(split, f"{key}_{u}", where, label_range, True)[0]
                    for u in UNIMODAL if f"{key}_{u}" in split}
        tokens = torch.from_numpy(_tokens(split, len(labels), steps["text"], where)) if text_bert else None
        splits[name] = Split({m: torch.from_numpy(x) for m, x in features.items()},
                             {m: torch.from_numpy(mask) for m, mask in masks.items()}, torch.from_numpy(labels),
                             label_range, {m: torch.from_numpy(y) for m, y in unimodal.items()},
                             _ids(split, len(labels)), tokens)
    zeroed = [f"{name} {m} {k}" for name, c in counts.items() for m, k in c.items() if k]
    if zeroed:
        log.info("%s: non-finite cells set to 0: %s", source, ", ".join(zeroed))
    return MSAData(splits, counts, source, label_range, clipped if clip_labels is not None else None, padding, aligned)
