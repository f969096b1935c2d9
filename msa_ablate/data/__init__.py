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

    @property
    def dims(self) -> dict[str, int]:
        return {m: x.shape[-1] for m, x in self.splits["train"].features.items()}

    def to(self, device: torch.device | str) -> MOSIData:
        return MOSIData({s: d.to(device) for s, d in self.splits.items()},
                        self.nonfinite_cells, self.source)

    def summary(self) -> dict:
        """What a run records about its data in metrics.json."""
        return {
            "source": self.source,
            "sizes": {s: len(d) for s, d in self.splits.items()},
            "dims": self.dims,
            "steps": next(iter(self.splits["train"].features.values())).shape[1],
            "nonfinite_cells": self.nonfinite_cells,
        }


def _labels(split: Mapping, where: str) -> np.ndarray:
    key = "labels" if "labels" in split else "regression_labels" if "regression_labels" in split else None
    if key is None:
        raise DataError(f"{where}: no 'labels' or 'regression_labels' key (has {sorted(map(str, split))})")
    raw = np.asarray(split[key])
    n = raw.shape[0] if raw.ndim else 0
    if raw.ndim == 0 or raw.size != n:  # (N,), (N, 1) and (N, 1, 1) all hold one label per clip
        raise DataError(f"{where}['{key}']: expected one label per sample, got shape {raw.shape}")
    try:
        labels = raw.reshape(n).astype(np.float32)
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}['{key}']: labels are not numbers ({e})") from None
    bad = ~np.isfinite(labels)
    if bad.any():
        raise DataError(f"{where}['{key}']: {bad.sum()} non-finite label(s), first at index {np.argmax(bad)}")
    if np.abs(labels).max(initial=0) > 3:
        log.warning("%s['%s']: %d label(s) outside [-3, 3]", where, key, int((np.abs(labels) > 3).sum()))
    return labels


def _features(split: Mapping, modality: str, n: int, where: str) -> tuple[np.ndarray, int]:
    if modality not in split:
        raise DataError(f"{where}: missing key '{modality}' (has {sorted(map(str, split))})")
    try:
        x = np.array(split[modality], dtype=np.float32)  # a copy: the caller's arrays stay as they were
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}['{modality}']: not a numeric array ({e})") from None
    if x.ndim != 3:
        raise DataError(f"{where}['{modality}']: expected rank 3 (samples, steps, dims), got shape {x.shape}")
    if x.shape[0] != n:
        raise DataError(f"{where}['{modality}']: {x.shape[0]} samples but the labels have {n}")
    bad = ~np.isfinite(x)
    x[bad] = 0.0  # COVAREP's -inf cells (and any NaN): the handout zeroes them
    return x, int(bad.sum())


def from_arrays(raw: object, source: str) -> MOSIData:
    """Validate a ``{split: {key: array}}`` mapping, zero its non-finite cells, hold it as tensors."""
    if not isinstance(raw, Mapping):
        raise DataError(f"{source}: expected a dict of splits {SPLITS}, got {type(raw).__name__}")
    splits, counts, dims = {}, {}, None
    for name in SPLITS:
        where = f"{source}[{name!r}]"
        if name not in raw:
            raise DataError(f"{source}: missing split '{name}' (has {sorted(map(str, raw))})")
        if not isinstance(raw[name], Mapping):
            raise DataError(f"{where}: expected a dict of arrays, got {type(raw[name]).__name__}")
        labels = _labels(raw[name], where)
        if len(labels) < 2:
            raise DataError(f"{where}: {len(labels)} sample(s); a split needs 2 or more")
        features, counts[name] = {}, {}
        for m in MODALITIES:
            features[m], counts[name][m] = _features(raw[name], m, len(labels), where)
        steps = {m: x.shape[1] for m, x in features.items()}
        if len(set(steps.values())) != 1:
            raise DataError(f"{where}: modalities are not aligned, steps per modality {steps}")
        split_dims = {m: x.shape[2] for m, x in features.items()}
        if dims is not None and split_dims != dims:
            raise DataError(f"{where}: feature dims {split_dims} differ from the train split's {dims}")
        dims = split_dims
        splits[name] = Split({m: torch.from_numpy(x) for m, x in features.items()}, torch.from_numpy(labels))
    for name, c in counts.items():
        if any(c.values()):
            log.info("%s[%r]: set non-finite cells to 0: %s", source, name, c)
    return MOSIData(splits, counts, source)
