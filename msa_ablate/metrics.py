"""Sentiment regression metrics: MOSI's (labels in [-3, 3], also MOSEI's) and CH-SIMS's (labels in
[-1, 1], also SIMS v2's), the data's label range choosing which.

MOSI's follow the handout's ``eval_mosi_regression`` with one fix: sklearn's ``f1_score`` takes
``(y_true, y_pred)``; the handout (like MulT) passed them swapped, which changes a 'weighted'
F1; the Has0 pair, common in papers, is added. CH-SIMS's follow MMSA's ``__eval_sims_regression``
(its metricsTop.py): predictions and labels clipped to [-1, 1], then classes by fixed bounds.
Values are returned unrounded; rounding is a display matter.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

MOSI_METRICS = ("Non0_acc_2", "Non0_F1_score", "Has0_acc_2", "Has0_F1_score", "Mult_acc_5", "Mult_acc_7", "MAE",
                "Corr")
SIMS_METRICS = ("Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score", "MAE", "Corr")
METRIC_SETS = {"mosi": MOSI_METRICS, "sims": SIMS_METRICS}
METRIC_NAMES = tuple(dict.fromkeys([*MOSI_METRICS, *SIMS_METRICS]))  # every metric either set has
SCORE_NAMES = ("loss", *METRIC_NAMES)  # what a split's evaluation can report
LOWER_IS_BETTER = frozenset({"MAE", "loss"})
LABEL_RANGES = {(-3.0, 3.0): "mosi", (-1.0, 1.0): "sims"}
# CH-SIMS's classes (MMSA): (bounds[i], bounds[i+1]] is class i, the outer bounds just beyond [-1, 1].
SIMS_BOUNDS = {2: (-1.01, 0.0, 1.01), 3: (-1.01, -0.1, 0.1, 1.01), 5: (-1.01, -0.7, -0.1, 0.1, 0.7, 1.01)}


def metric_set(label_range: tuple[float, float]) -> str:
    """``mosi`` for labels in [-3, 3], ``sims`` for labels in [-1, 1]."""
    return LABEL_RANGES[tuple(float(v) for v in label_range)]


def multiclass_acc(preds: np.ndarray, truth: np.ndarray) -> float:
    """Overall (not per-class) accuracy after rounding both to integers.

    ``np.round`` rounds halves to even (0.5 -> 0, 1.5 -> 2, -2.5 -> -2), as in the handout.
    """
    return float(np.mean(np.round(preds) == np.round(truth)))


def _binary(truth: np.ndarray, preds: np.ndarray) -> tuple[float, float]:
    if truth.size == 0:  # e.g. every label is exactly 0: the Non0 pair is undefined
        return float("nan"), float("nan")
    return (float(accuracy_score(truth, preds)),
            float(f1_score(truth, preds, average="weighted")))


def pearson(preds: np.ndarray, truth: np.ndarray) -> float:
    """np.corrcoef's r; NaN (not a warning and a crash later) when either side is constant."""
    if preds.size < 2 or np.std(preds) == 0 or np.std(truth) == 0:
        return float("nan")
    return float(np.corrcoef(preds, truth)[0, 1])


def _flat(preds: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    preds = np.asarray(preds, dtype=np.float64).reshape(-1)
    truth = np.asarray(truth, dtype=np.float64).reshape(-1)
    if preds.shape != truth.shape:
        raise ValueError(f"preds and truth differ in size: {preds.size} vs {truth.size}")
    return preds, truth


def mosi_metrics(preds: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """All MOSI regression metrics for 1-d predictions and labels in [-3, 3]."""
    preds, truth = _flat(preds, truth)
    non0 = truth != 0
    non0_acc, non0_f1 = _binary(truth[non0] > 0, preds[non0] > 0)
    has0_acc, has0_f1 = _binary(truth >= 0, preds >= 0)
    return {
        "Non0_acc_2": non0_acc,
        "Non0_F1_score": non0_f1,
        "Has0_acc_2": has0_acc,
        "Has0_F1_score": has0_f1,
        "Mult_acc_5": multiclass_acc(np.clip(preds, -2, 2), np.clip(truth, -2, 2)),
        "Mult_acc_7": multiclass_acc(np.clip(preds, -3, 3), np.clip(truth, -3, 3)),
        "MAE": float(np.mean(np.abs(preds - truth))),
        "Corr": pearson(preds, truth),
    }


def sims_classes(values: np.ndarray, n: int) -> np.ndarray:
    """The CH-SIMS class of each value in [-1, 1]: i where bounds[i] < value <= bounds[i + 1],
    compared in float32 as MMSA's float32 arrays are (so a label of 0.1 is neutral)."""
    bounds = np.asarray(SIMS_BOUNDS[n], dtype=np.float32)
    return np.searchsorted(bounds, np.asarray(values, dtype=np.float32), side="left") - 1


def sims_metrics(preds: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """CH-SIMS's regression metrics for 1-d predictions and labels in [-1, 1] (both clipped to it,
    the MAE and Corr too, as MMSA computes them)."""
    preds, truth = (np.clip(v, -1, 1) for v in _flat(preds, truth))
    classes = {n: (sims_classes(preds, n), sims_classes(truth, n)) for n in SIMS_BOUNDS}
    return {
        **{f"Mult_acc_{n}": float(np.mean(p == t)) for n, (p, t) in classes.items()},
        "F1_score": float(f1_score(classes[2][1], classes[2][0], average="weighted")),
        "MAE": float(np.mean(np.abs(preds - truth))),
        "Corr": pearson(preds, truth),
    }


def regression_metrics(preds: np.ndarray, truth: np.ndarray, label_range: tuple[float, float]) -> dict[str, float]:
    """The metrics of the data's label range (``metric_set``). Where a prediction is NaN or infinite,
    every metric is NaN: undefined alike, not some of them scoring the clip as a negative one."""
    name = metric_set(label_range)
    if not np.isfinite(preds).all():
        return dict.fromkeys(METRIC_SETS[name], float("nan"))
    return (mosi_metrics if name == "mosi" else sims_metrics)(preds, truth)
