"""Hand-computed checks of ``msa_ablate.metrics.mosi_metrics`` (docs/handout.md, "Metrics").

Every expected value below is worked out in the comments so a reader can check it
without running anything. Binary "positive" is ``> 0`` for the Non0 pair (samples whose
TRUE label is exactly 0 dropped) and ``>= 0`` for the Has0 pair (all samples kept).
Weighted F1 is sklearn's ``f1_score(y_true, y_pred, average='weighted')``: per-class
F1 = 2TP / (2TP + FP + FN), averaged with weights = each class's support in y_true.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import f1_score

from msa_ablate.metrics import MOSI_METRICS, mosi_metrics

# --------------------------------------------------------------------------- hand example
# idx:      0     1     2     3     4     5
TRUTH = [3.0, -1.0, 0.0, 2.4, -2.6, 0.6]
PREDS = [2.7, -0.4, 0.5, 3.6, -1.2, -0.2]


def _pearson_by_hand(x: list[float], y: list[float]) -> float:
    """r = sum((x - mx)(y - my)) / sqrt(sum((x - mx)^2) * sum((y - my)^2)), plain Python."""
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy)


def test_hand_example_every_metric():
    m = mosi_metrics(np.array(PREDS), np.array(TRUTH))
    assert set(m) == set(MOSI_METRICS)
    assert all(isinstance(v, float) for v in m.values())

    # Non0: drop idx 2 (truth exactly 0).
    #   truth [3, -1, 2.4, -2.6, 0.6] > 0  -> [T, F, T, F, T]
    #   preds [2.7, -0.4, 3.6, -1.2, -0.2] > 0 -> [T, F, T, F, F]
    #   4 of 5 agree -> acc = 4/5.
    assert m["Non0_acc_2"] == pytest.approx(4 / 5)
    #   class T (support 3): TP 2, FP 0, FN 1 -> F1 = 4 / (4 + 0 + 1) = 4/5
    #   class F (support 2): TP 2, FP 1, FN 0 -> F1 = 4 / (4 + 1 + 0) = 4/5
    #   weighted = (3 * 4/5 + 2 * 4/5) / 5 = 4/5
    assert m["Non0_F1_score"] == pytest.approx(4 / 5)

    # Has0: keep all, positive = >= 0 (the 0 label of idx 2 counts as positive).
    #   truth >= 0 -> [T, F, T, T, F, T]
    #   preds >= 0 -> [T, F, T, T, F, F]   (idx 2: 0.5 >= 0 agrees with 0 >= 0)
    #   5 of 6 agree -> acc = 5/6 (unrounded, not 0.8333).
    assert m["Has0_acc_2"] == pytest.approx(5 / 6)
    assert m["Has0_acc_2"] != round(5 / 6, 4)
    #   class T (support 4): TP 3, FP 0, FN 1 -> F1 = 6 / (6 + 0 + 1) = 6/7
    #   class F (support 2): TP 2, FP 1, FN 0 -> F1 = 4 / (4 + 1 + 0) = 4/5
    #   weighted = (4 * 6/7 + 2 * 4/5) / 6 = (24/7 + 8/5) / 6 = (176/35) / 6 = 88/105
    assert m["Has0_F1_score"] == pytest.approx(88 / 105)

    # Mult_acc_7: clip both to [-3, 3], round half to even.
    #   preds clip  [2.7, -0.4, 0.5, 3.0, -1.2, -0.2] -> round [3, -0, 0, 3, -1, -0]
    #   truth clip  [3.0, -1.0, 0.0, 2.4, -2.6,  0.6] -> round [3, -1, 0, 2, -3,  1]
    #   equal at idx 0 and idx 2 (0.5 rounds to 0) -> 2/6 = 1/3 (unrounded, not 0.3333).
    assert m["Mult_acc_7"] == pytest.approx(1 / 3)
    assert m["Mult_acc_7"] != round(1 / 3, 4)

    # Mult_acc_5: clip both to [-2, 2].
    #   preds clip  [2.0, -0.4, 0.5, 2.0, -1.2, -0.2] -> round [2, -0, 0, 2, -1, -0]
    #   truth clip  [2.0, -1.0, 0.0, 2.0, -2.0,  0.6] -> round [2, -1, 0, 2, -2,  1]
    #   equal at idx 0, 2, 3 (3.6 and 2.4 both clip to 2) -> 3/6 = 1/2.
    assert m["Mult_acc_5"] == pytest.approx(1 / 2)

    # MAE: |2.7-3| + |-0.4+1| + |0.5-0| + |3.6-2.4| + |-1.2+2.6| + |-0.2-0.6|
    #    = 0.3 + 0.6 + 0.5 + 1.2 + 1.4 + 0.8 = 4.8  -> 4.8 / 6 = 0.8
    assert m["MAE"] == pytest.approx(0.8)

    # Corr: mean(preds) = 5.0/6, mean(truth) = 2.4/6 = 0.4
    #   Sxy = sum(p*t) - 6*mp*mt = (8.1 + 0.4 + 0 + 8.64 + 3.12 - 0.12) - 6 * 5/6 * 0.4 = 20.14 - 2 = 18.14
    #   Sxx = sum(p^2) - 6*mp^2 = (7.29 + 0.16 + 0.25 + 12.96 + 1.44 + 0.04) - 25/6 = 22.14 - 25/6
    #   Syy = sum(t^2) - 6*mt^2 = (9 + 1 + 0 + 5.76 + 6.76 + 0.36) - 0.96 = 21.92
    #   r = 18.14 / sqrt(17.97333 * 21.92) = 0.913908...
    assert m["Corr"] == pytest.approx(_pearson_by_hand(PREDS, TRUTH))
    assert m["Corr"] == pytest.approx(18.14 / math.sqrt((22.14 - 25 / 6) * 21.92))
    assert m["Corr"] == pytest.approx(0.9139084512, abs=1e-9)


def test_accepts_column_vectors_and_lists():
    # (N, 1) predictions beside (N,) labels are flattened, not broadcast to (N, N).
    flat = mosi_metrics(np.array(PREDS), np.array(TRUTH))
    col = mosi_metrics(np.array(PREDS).reshape(-1, 1), TRUTH)
    assert col == pytest.approx(flat)


# ------------------------------------------------------------- rounding halves / clipping
@pytest.mark.parametrize(
    "pred, truth, acc7, acc5",
    [
        # np.round is half-to-even.
        (0.5, 0.0, 1.0, 1.0),     # round(0.5) = 0 == 0
        (0.5, 1.0, 0.0, 0.0),     # round(0.5) = 0 != 1
        (1.5, 2.0, 1.0, 1.0),     # round(1.5) = 2 == 2
        (2.5, 2.0, 1.0, 1.0),     # round(2.5) = 2 == 2 (acc5: clip 2.5 -> 2)
        (2.5, 3.0, 0.0, 1.0),     # acc7: 2 != 3; acc5: clip to 2 and 2 -> equal
        (-0.5, 0.0, 1.0, 1.0),    # round(-0.5) = -0.0 == 0
        (-1.5, -2.0, 1.0, 1.0),   # round(-1.5) = -2
        (-2.5, -2.0, 1.0, 1.0),   # round(-2.5) = -2
        # clipping
        (2.7, 2.0, 0.0, 1.0),     # acc7: round(2.7) = 3 != 2; acc5: clip 2.7 -> 2 == 2
        (-2.7, -2.0, 0.0, 1.0),   # mirror image
        (3.6, 3.0, 1.0, 1.0),     # acc7: clip 3.6 -> 3 == 3; acc5: 2 == 2
        (-2.2, -3.0, 0.0, 1.0),   # truth is clipped too: acc7 -2 != -3; acc5 -2 == clip(-3) = -2
        (3.0, 3.6, 1.0, 1.0),     # truth clipped to [-3, 3] as well: 3 == clip(3.6) = 3 (unclipped: 4)
    ],
)
def test_multiclass_rounding_and_clipping(pred, truth, acc7, acc5):
    # Two copies of the pair so the binary metrics stay on at least two samples.
    m = mosi_metrics(np.array([pred, pred]), np.array([truth, truth]))
    assert m["Mult_acc_7"] == acc7
    assert m["Mult_acc_5"] == acc5


def test_halves_together():
    # preds [0.5, 1.5, 2.5, -0.5, -2.5] round to [0, 2, 2, -0, -2] = truth exactly -> 1.0;
    # rounding half away from zero would give [1, 2, 3, -1, -3] -> only 1/5 right.
    m = mosi_metrics(np.array([0.5, 1.5, 2.5, -0.5, -2.5]), np.array([0.0, 2.0, 2.0, 0.0, -2.0]))
    assert m["Mult_acc_7"] == 1.0


# --------------------------------------------------------------------- f1 argument order
def test_f1_takes_truth_first():
    # All labels non-zero, so Non0 and Has0 see the same 6 samples.
    truth = np.array([1.0, 2.0, 3.0, 1.0, 2.0, -1.0])   # > 0: [T, T, T, T, T, F]
    preds = np.array([1.0, 1.0, 1.0, -1.0, -1.0, -1.0])  # > 0: [T, T, T, F, F, F]
    # TP 3, FN 2, FP 0, TN 1.
    #   class T: F1 = 2*3 / (2*3 + 0 + 2) = 6/8 = 3/4
    #   class F: F1 = 2*1 / (2*1 + 2 + 0) = 2/4 = 1/2
    # truth first (supports from truth: T 5, F 1): (5 * 3/4 + 1 * 1/2) / 6 = (17/4) / 6 = 17/24
    # swapped      (supports from preds: T 3, F 3): (3 * 3/4 + 3 * 1/2) / 6 = (15/4) / 6 = 15/24
    right = f1_score(truth > 0, preds > 0, average="weighted")
    swapped = f1_score(preds > 0, truth > 0, average="weighted")
    assert right == pytest.approx(17 / 24)
    assert swapped == pytest.approx(15 / 24)

    m = mosi_metrics(preds, truth)
    assert m["Non0_F1_score"] == pytest.approx(right)
    assert m["Non0_F1_score"] != pytest.approx(swapped)
    assert m["Has0_F1_score"] == pytest.approx(17 / 24)
    # acc: 4 of 6 agree (idx 0, 1, 2, 5) -> 2/3; accuracy is symmetric anyway.
    assert m["Non0_acc_2"] == pytest.approx(2 / 3)


# ------------------------------------------------------------------ degenerate inputs
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_all_zero_labels():
    truth = np.zeros(4)
    preds = np.array([0.4, -0.6, 1.6, -2.4])
    m = mosi_metrics(preds, truth)
    # Non0: every sample dropped -> undefined.
    assert math.isnan(m["Non0_acc_2"])
    assert math.isnan(m["Non0_F1_score"])
    # Has0: truth >= 0 -> [T, T, T, T]; preds >= 0 -> [T, F, T, F] -> acc 2/4.
    assert m["Has0_acc_2"] == pytest.approx(1 / 2)
    # class T (support 4): TP 2, FP 0, FN 2 -> F1 = 4 / (4 + 0 + 2) = 2/3; class F has
    # support 0, so weight 0 -> weighted F1 = 2/3.
    assert m["Has0_F1_score"] == pytest.approx(2 / 3)
    # preds round to [0, -1, 2, -2] vs 0 everywhere -> 1/4 (same after clip to [-2, 2]).
    assert m["Mult_acc_7"] == pytest.approx(1 / 4)
    assert m["Mult_acc_5"] == pytest.approx(1 / 4)
    # MAE = (0.4 + 0.6 + 1.6 + 2.4) / 4 = 5/4.
    assert m["MAE"] == pytest.approx(5 / 4)
    # constant truth -> Pearson r undefined.
    assert math.isnan(m["Corr"])


@pytest.mark.parametrize(
    "preds, truth",
    [
        ([0.5, 0.5, 0.5, 0.5], [1.0, -1.0, 2.0, 0.0]),   # constant predictions
        ([1.0, -1.0, 2.0, 0.0], [0.5, 0.5, 0.5, 0.5]),   # constant truth
        ([1.0], [2.0]),                                  # a single sample
    ],
)
def test_corr_nan_without_warning(preds, truth):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no numpy divide-by-zero warning
        m = mosi_metrics(np.array(preds), np.array(truth))
    assert math.isnan(m["Corr"])
    # the other metrics stay defined
    for name in ("Has0_acc_2", "Has0_F1_score", "Mult_acc_5", "Mult_acc_7", "MAE"):
        assert not math.isnan(m[name]), name


def test_constant_predictions_other_metrics():
    # truth [1, -1, 2, 0], preds all 0.5.
    m = mosi_metrics(np.full(4, 0.5), np.array([1.0, -1.0, 2.0, 0.0]))
    # Non0 drops idx 3: truth > 0 [T, F, T], preds [T, T, T] -> 2/3.
    assert m["Non0_acc_2"] == pytest.approx(2 / 3)
    # Has0: truth >= 0 [T, F, T, T], preds [T, T, T, T] -> 3/4.
    assert m["Has0_acc_2"] == pytest.approx(3 / 4)
    # round(0.5) = 0; truth rounds to [1, -1, 2, 0] -> only idx 3 -> 1/4.
    assert m["Mult_acc_7"] == pytest.approx(1 / 4)
    # MAE = (0.5 + 1.5 + 1.5 + 0.5) / 4 = 1.
    assert m["MAE"] == pytest.approx(1.0)


@pytest.mark.parametrize("n_preds, n_truth", [(3, 4), (5, 4), (0, 1)])
def test_size_mismatch_raises(n_preds, n_truth):
    with pytest.raises(ValueError, match=f"{n_preds} vs {n_truth}"):
        mosi_metrics(np.zeros(n_preds), np.zeros(n_truth))


def test_a_prediction_of_exactly_zero_is_negative_in_the_non0_pair():
    """Non0's classes are > 0 and < 0: a prediction of 0 is not positive (a `>=` would make it so);
    the Has0 pair's positive class is >= 0, and there it is."""
    truth = np.array([1.0, 2.0, -1.0, -2.0])
    preds = np.array([0.0, 1.0, -1.0, -1.0])
    metrics = mosi_metrics(preds, truth)
    assert metrics["Non0_acc_2"] == 0.75  # 0.0 against a positive label: wrong
    assert metrics["Has0_acc_2"] == 1.0  # 0.0 >= 0 and 1.0 >= 0: right
