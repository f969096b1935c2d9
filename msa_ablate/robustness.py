"""Test-time robustness, MultiBench's protocol (Liang et al. 2021): a trained model evaluated on a
split whose modalities are perturbed, each alone and all at once, at levels 0, 0.1, ..., 1.0.

- ``noise``: Gaussian noise at the real steps, standard deviation ``level`` x that feature's
  standard deviation over the train split's real steps;
- ``drop``: each real step zeroed (all its features) with probability ``level``;
- ``missing``: the modality zeroed altogether (no levels).

The masks of real steps stay as the data gives them: the model is not told what was perturbed.
The draws are common to the levels (one standard normal per cell, one uniform per step, from
``seed`` and the modality), so a curve is smooth in its level and level 0 is the clean split
exactly. ``relative`` robustness is MultiBench's: the area under a metric's curve over the levels
(the trapezoid rule); effective robustness needs a baseline's curve, so the analysis computes it
(analysis/summarize.py --robustness).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from msa_ablate.data import MODALITIES, MSAData, Split
from msa_ablate.errors import ConfigError
from msa_ablate.train import LossFn, predict, score

PERTURBATIONS = ("noise", "drop")  # with levels; ``missing`` has none
FILE = "robustness.json"


def feature_std(train: Split, modality: str) -> torch.Tensor:
    """(D,): each feature's standard deviation over the train split's real steps."""
    real = train.features[modality][train.masks[modality]]
    return real.std(dim=0, correction=0) if len(real) > 1 else torch.zeros(real.shape[-1])


def draws(split: Split, modality: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One standard normal per cell and one uniform per step, on the CPU (the same on any device)."""
    generator = torch.Generator().manual_seed(seed * len(MODALITIES) + MODALITIES.index(modality))
    x = split.features[modality]
    normal = torch.randn(x.shape, generator=generator)
    uniform = torch.rand(x.shape[:2], generator=generator)
    return normal.to(x.device), uniform.to(x.device)


def perturbed(split: Split, changed: Mapping[str, torch.Tensor]) -> Split:
    return dataclasses.replace(split, features={**split.features, **changed})


def robustness(model: torch.nn.Module, data: MSAData, loss_fn: LossFn, *, split: str = "test",
               levels: Sequence[float] = tuple(i / 10 for i in range(11)), seed: int = 0,
               batch_size: int = 256) -> dict:
    """The model's metrics on ``data.splits[split]`` under each perturbation, modality (each of the
    model's, and ``all`` where it has several) and level, with the area under each metric's curve."""
    if getattr(model, "text_input", None) is not None:
        raise ConfigError("robustness: this model reads the text as BERT token ids (text=bert), which the "
                          "perturbations of features do not reach; evaluate robustness of text=features runs")
    start, clean_split, levels = time.perf_counter(), data.splits[split], [float(v) for v in levels]
    model.eval()

    def evaluate(changed: Mapping[str, torch.Tensor]) -> dict[str, float]:
        s = perturbed(clean_split, changed)
        return score(predict(model, s, batch_size), s, loss_fn)

    modalities = [m for m in MODALITIES if m in model.modalities]
    targets = {**{m: [m] for m in modalities}, **({"all": modalities} if len(modalities) > 1 else {})}
    drawn = {m: draws(clean_split, m, seed) for m in modalities}
    scale = {m: feature_std(data.splits["train"], m).to(clean_split.labels.device) for m in modalities}

    def noise(m: str, level: float) -> torch.Tensor:
        x, real = clean_split.features[m], clean_split.masks[m].unsqueeze(-1)
        return x + level * scale[m] * drawn[m][0] * real

    def drop(m: str, level: float) -> torch.Tensor:
        x, dropped = clean_split.features[m], (drawn[m][1] < level) & clean_split.masks[m]
        return x.masked_fill(dropped.unsqueeze(-1), 0.0)

    perturb = {"noise": noise, "drop": drop}
    result: dict = {"split": split, "seed": seed, "levels": levels, "clean": evaluate({})}
    for name in PERTURBATIONS:
        result[name] = {target: [{"level": level, **evaluate({m: perturb[name](m, level) for m in ms})}
                                 for level in levels] for target, ms in targets.items()}
    result["missing"] = {target: evaluate({m: torch.zeros_like(clean_split.features[m]) for m in ms})
                         for target, ms in targets.items()}
    result["relative"] = {name: {target: area(curve, levels) for target, curve in result[name].items()}
                          for name in PERTURBATIONS}
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result


def area(curve: Sequence[Mapping[str, float]], levels: Sequence[float]) -> dict[str, float]:
    """Each metric's area under its curve over the levels (MultiBench's relative robustness)."""
    names = [k for k in curve[0] if k != "level"]
    return {k: float(np.trapezoid([point[k] for point in curve], levels)) for k in names}
