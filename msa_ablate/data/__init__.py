"""MOSI-shaped data held as tensors: the container, its validation, and its two sources.

Every source (the real pickle, the synthetic generator) produces the same raw structure,
``{split: {"text"|"audio"|"vision": (N, T, D) array, "labels": (N,)-like array}}``, and
goes through :func:`from_arrays`, so validation and non-finite cleaning exist once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from msa_ablate.errors import DataError

log = logging.getLogger(__name__)

MODALITIES = ("text", "audio", "vision")
SPLITS = ("train", "valid", "test")
LABEL_RANGE = (-3.0, 3.0)  # MOSI's


@dataclass
class Split:
    features: dict[str, torch.Tensor]  # modality -> (N, T, D) float32, zero-padded at the front
    labels: torch.Tensor  # (N,) float32 in [-3, 3]

    def __len__(self) -> int:
        return self.labels.shape[0]

    def to(self, device: torch.device | str) -> Split:
        return Split({m: x.to(device) for m, x in self.features.items()}, self.labels.to(device))


@dataclass
class MOSIData:
    splits: dict[str, Split]
    nonfinite_cells: dict[str, dict[str, int]]  # split -> modality -> cells set to 0
    source: str
    clipped_labels: dict[str, int] | None = None  # split -> labels clipped into the range (data.clip_labels)

    @property
    def dims(self) -> dict[str, int]:
        return {m: x.shape[-1] for m, x in self.splits["train"].features.items()}

    def to(self, device: torch.device | str) -> MOSIData:
        return MOSIData({s: d.to(device) for s, d in self.splits.items()}, self.nonfinite_cells, self.source,
                        self.clipped_labels)

    def summary(self) -> dict:
        """What a run records about its data in metrics.json."""
        return {
            "source": self.source,
            "sizes": {s: len(d) for s, d in self.splits.items()},
            "dims": self.dims,
            "steps": next(iter(self.splits["train"].features.values())).shape[1],
            "nonfinite_cells": self.nonfinite_cells,
            **({"clipped_labels": self.clipped_labels} if self.clipped_labels is not None else {}),
        }


def _labels(split: Mapping, where: str, clip: bool) -> tuple[np.ndarray, int]:
    """The split's labels as (N,) float32, and how many were clipped into [-3, 3] (``clip``)."""
    key = "labels" if "labels" in split else "regression_labels" if "regression_labels" in split else None
    if key is None:
        raise DataError(f"{where}: no 'labels' or 'regression_labels' key (has {sorted(map(str, split))})")
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
    outside = int((np.abs(labels) > LABEL_RANGE[1]).sum())
    if outside and not clip:
        raise DataError(f"{where}['{key}']: {outside} label(s) outside {list(LABEL_RANGE)}, first "
                        f"{labels[np.argmax(np.abs(labels) > LABEL_RANGE[1])]:g}; data.clip_labels=true clips them")
    return np.clip(labels, *LABEL_RANGE), outside


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


def from_arrays(raw: object, source: str, clip_labels: bool | None = None) -> MOSIData:
    """Validate a ``{split: {key: array}}`` mapping, zero its non-finite cells, hold it as tensors.
    A label outside the range is an error, unless ``clip_labels`` (then clipped, and counted)."""
    if not isinstance(raw, Mapping):
        raise DataError(f"{source}: expected a dict of splits {SPLITS}, got {type(raw).__name__}")
    splits, counts, clipped, dims, steps = {}, {}, {}, None, None
    for name in SPLITS:
        where = f"{source}[{name!r}]"
        if name not in raw:
            raise DataError(f"{source}: missing split '{name}' (has {sorted(map(str, raw))})")
        if not isinstance(raw[name], Mapping):
            raise DataError(f"{where}: expected a dict of arrays, got {type(raw[name]).__name__}")
        labels, clipped[name] = _labels(raw[name], where, bool(clip_labels))
        if len(labels) < 2:
            raise DataError(f"{where}: {len(labels)} sample(s); a split needs 2 or more")
        features, counts[name] = {}, {}
        for m in MODALITIES:
            features[m], counts[name][m] = _features(raw[name], m, len(labels), where)
        split_steps = {m: x.shape[1] for m, x in features.items()}
        if len(set(split_steps.values())) != 1:
            raise DataError(f"{where}: modalities are not aligned, steps per modality {split_steps}")
        if steps is not None and split_steps != steps:
            raise DataError(f"{where}: {next(iter(split_steps.values()))} steps per clip, but the train split has "
                            f"{next(iter(steps.values()))}")
        steps = split_steps
        split_dims = {m: x.shape[2] for m, x in features.items()}
        if dims is not None and split_dims != dims:
            raise DataError(f"{where}: feature dims {split_dims} differ from the train split's {dims}")
        dims = split_dims
        splits[name] = Split({m: torch.from_numpy(x) for m, x in features.items()}, torch.from_numpy(labels))
    for name, c in counts.items():
        if any(c.values()):
            log.info("%s[%r]: set non-finite cells to 0: %s", source, name, c)
    return MOSIData(splits, counts, source, clipped if clip_labels is not None else None)
