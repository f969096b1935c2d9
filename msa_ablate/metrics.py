"""The handout's MOSI regression metrics, plus the Has0 binary pair common in papers.

Definitions follow the handout's ``eval_mosi_regression`` with one fix: sklearn's
``f1_score`` takes ``(y_true, y_pred)``; the handout (like MulT) passed them swapped, which
changes a 'weighted' F1. Values are returned unrounded; the handout's 4-decimal rounding is
a display matter.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

METRIC_NAMES = (
    "Non0_acc_2", "Non0_F1_score", "Has0_acc_2", "Has0_F1_score",
    "Mult_acc_5", "Mult_acc_7", "MAE", "Corr",
)
SCORE_NAMES = ("loss", *METRIC_NAMES)  # what a split's evaluation reports
LOWER_IS_BETTER = frozenset({"MAE", "loss"})


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


def mosi_metrics(preds: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """All MOSI regression metrics for 1-d predictions and labels in [-3, 3]."""
    preds = np.asarray(preds, dtype=np.float64).reshape(-1)
    truth = np.asarray(truth, dtype=np.float64).reshape(-1)
    if preds.shape != truth.shape:
        raise ValueError(f"preds and truth differ in size: {preds.size} vs {truth.size}")

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
