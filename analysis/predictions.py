"""What the runs' predictions (each run's predictions.csv: split, index, id, label, prediction) tell
beyond their records: a configuration's seeds averaged clip by clip and scored as one model (an
ensemble), and each run's percentile bootstrap interval of a metric over its clips.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.stats import ALPHA
from msa_ablate.metrics import LABEL_RANGES, LOWER_IS_BETTER, regression_metrics, sims_classes

FILE = "predictions.csv"
LABEL_RANGE = {name: label_range for label_range, name in LABEL_RANGES.items()}  # the runs table's metrics -> range
BOOTSTRAP_SEED = 0  # every run's resamples drawn from it: a rerun gives the same intervals
CHUNK = 1000  # resamples scored at once (memory: a few arrays of CHUNK x clips)


def read_predictions(folder: Path, split: str = "test") -> pd.DataFrame | None:
    """A run's predictions on ``split`` (columns index, id, label, prediction, in index order);
    None where it has no predictions.csv or none on that split. Each line is read as written:
    the id is JSON text, so a comma or quote in it is the id's."""
    file = folder / FILE
    if not file.exists():
        return None
    rows = []
    for line in file.read_text().splitlines()[1:]:
        name, index, rest = line.split(",", 2)
        if name == split:
            clip, label, prediction = rest.rsplit(",", 2)
            rows.append((int(index), json.loads(clip), float(label), float(prediction)))
    table = pd.DataFrame(rows, columns=["index", "id", "label", "prediction"])
    return table.sort_values("index", ignore_index=True) if rows else None


def ensemble(runs: pd.DataFrame, root: Path, metric: str = "Corr", split: str = "test") -> tuple[pd.DataFrame, str]:
    """``runs`` labelled (summarize.with_labels), their paths relative to ``root``. One row per
    configuration with predictions on ``split``, best ensemble first: n seeds; ``single``, the
    metric of each seed's predictions (mean and sample std over seeds); ``ensemble``, the metric
    of the seeds' predictions averaged clip by clip (a seed run twice: its runs' average first),
    scored as one model; ``gain``, the one less the other; a note where the runs do not share
    their clips and labels (then no ensemble). And a line saying how many runs had predictions."""
    done = runs[runs.status == "completed"]
    rows, found = [], 0
    for label, group in done.groupby("config", sort=False):
        tables = {}
        for run in group.itertuples():
            table = read_predictions(root / run.path, split)
            if table is not None:
                tables.setdefault(run.seed, []).append(table)
        if not tables:
            continue
        found += sum(map(len, tables.values()))
        label_range = LABEL_RANGE[group.metrics.iloc[0]]
        single = pd.Series({seed: np.mean([regression_metrics(t.prediction, t.label, label_range).get(metric, math.nan)
                                           for t in ts]) for seed, ts in tables.items()})
        row = {"config": label, "n": len(tables), "single_mean": single.mean(), "single_std": single.std(),
               "ensemble": math.nan, "note": ""}
        first = next(iter(tables.values()))[0][["index", "id", "label"]]
        differ = [seed for seed, ts in tables.items() if not all(t[first.columns].equals(first) for t in ts)]
        if differ:
            row["note"] = (f"the {split} clips or labels of seed{'s' * (len(differ) > 1)} "
                           f"{', '.join(map(str, differ))} differ from seed {next(iter(tables))}'s: no ensemble")
        else:
            mean = np.mean([np.mean([t.prediction for t in ts], axis=0) for ts in tables.values()], axis=0)
            row["ensemble"] = regression_metrics(mean, first.label, label_range).get(metric, math.nan)
        rows.append(row)
    without = len(done) - found
    line = f"{FILE} with {split} predictions: {found} of {len(done)} completed runs"
    line += f" (the {without} without {'is' if without == 1 else 'are'} left out)" if without else ""
    columns = ["config", "n", "single_mean", "single_std", "ensemble", "note"]
    table = pd.DataFrame(rows, columns=columns).set_index("config")
    table.insert(4, "gain", table.ensemble - table.single_mean)
    return table.sort_values("ensemble", ascending=metric in LOWER_IS_BETTER, na_position="last"), line


def pearson_rows(preds: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """msa_ablate.metrics.pearson of each row: NaN where either side is constant."""
    x, y = preds - preds.mean(1, keepdims=True), truth - truth.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (x * y).sum(1) / np.sqrt((x * x).sum(1) * (y * y).sum(1))
    constant = (preds.std(1) == 0) | (truth.std(1) == 0) | (preds.shape[1] < 2)
    return np.where(constant, math.nan, r)


def weighted_f1_rows(pred: np.ndarray, true: np.ndarray, keep: np.ndarray, classes: tuple) -> np.ndarray:
    """sklearn's f1_score(average="weighted") of each row over its ``keep`` cells: each class's F1,
    2 TP / (2 TP + FP + FN), weighted by its support among the labels (NaN where none is kept)."""
    total = np.zeros(len(pred))
    support_total = np.zeros(len(pred))
    for c in classes:
        t, p = (true == c) & keep, (pred == c) & keep
        support, denominator = t.sum(1), t.sum(1) + p.sum(1)
        f1 = np.divide(2 * (t & p).sum(1), denominator, out=np.zeros(len(pred)), where=denominator > 0)
        total += support * f1
        support_total += support
    return np.divide(total, support_total, out=np.full(len(pred), math.nan), where=support_total > 0)


def mosi_rows(preds: np.ndarray, truth: np.ndarray, metric: str) -> np.ndarray:
    """msa_ablate.metrics.mosi_metrics' ``metric`` of each row (NaN where it has no such metric)."""
    if metric == "MAE":
        return np.abs(preds - truth).mean(1)
    if metric == "Corr":
        return pearson_rows(preds, truth)
    if metric in ("Mult_acc_5", "Mult_acc_7"):
        bound = 2 if metric == "Mult_acc_5" else 3
        return (np.round(np.clip(preds, -bound, bound)) == np.round(np.clip(truth, -bound, bound))).mean(1)
    if metric not in ("Non0_acc_2", "Non0_F1_score", "Has0_acc_2", "Has0_F1_score"):
        return np.full(len(preds), math.nan)
    has0 = metric.startswith("Has0")
    pred, true = (preds >= 0, truth >= 0) if has0 else (preds > 0, truth > 0)
    keep = np.ones(truth.shape, bool) if has0 else truth != 0
    if metric.endswith("F1_score"):
        return weighted_f1_rows(pred, true, keep, (False, True))
    kept = keep.sum(1)
    return np.divide(((pred == true) & keep).sum(1), kept, out=np.full(len(preds), math.nan), where=kept > 0)


def sims_rows(preds: np.ndarray, truth: np.ndarray, metric: str) -> np.ndarray:
    """msa_ablate.metrics.sims_metrics' ``metric`` of each row (both clipped to [-1, 1], as there)."""
    preds, truth = np.clip(preds, -1, 1), np.clip(truth, -1, 1)
    if metric == "MAE":
        return np.abs(preds - truth).mean(1)
    if metric == "Corr":
        return pearson_rows(preds, truth)
    if metric == "F1_score":
        return weighted_f1_rows(sims_classes(preds, 2), sims_classes(truth, 2), np.ones(preds.shape, bool), (0, 1))
    if metric in ("Mult_acc_2", "Mult_acc_3", "Mult_acc_5"):
        n = int(metric[-1])
        return (sims_classes(preds, n) == sims_classes(truth, n)).mean(1)
    return np.full(len(preds), math.nan)


def bootstrap(preds: np.ndarray, truth: np.ndarray, label_range: tuple[float, float], metric: str = "Corr",
              resamples: int = 1000, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """The percentile bootstrap 95% interval of ``metric`` over the clips: ``resamples`` draws of as
    many clips with replacement, from a generator seeded with ``seed``, each scored as
    msa_ablate.metrics scores predictions, all at once (NaN where no resample has the metric)."""
    preds, truth = np.asarray(preds, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    rows = mosi_rows if LABEL_RANGES[tuple(map(float, label_range))] == "mosi" else sims_rows
    rng = np.random.default_rng(seed)
    values = []
    for start in range(0, resamples, CHUNK):
        index = rng.integers(0, len(preds), size=(min(CHUNK, resamples - start), len(preds)))
        values.append(rows(preds[index], truth[index], metric))
    values = np.concatenate(values)
    if np.isnan(values).all():
        return math.nan, math.nan
    low, high = np.nanpercentile(values, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    return float(low), float(high)


def with_bootstrap(runs: pd.DataFrame, root: Path, metric: str = "Corr", split: str = "test",
                   resamples: int = 1000) -> tuple[pd.DataFrame, str]:
    """``runs`` with each completed run's bootstrap interval of its ``split`` ``metric`` from its
    predictions (columns SPLIT_METRIC_low and SPLIT_METRIC_high, NaN where it has none), their
    paths relative to ``root``; and a line saying how many runs had predictions."""
    bounds = {}
    for run in runs[runs.status == "completed"].itertuples():
        table = read_predictions(root / run.path, split)
        if table is not None:
            bounds[run.Index] = bootstrap(table.prediction.to_numpy(), table.label.to_numpy(),
                                          LABEL_RANGE[run.metrics], metric, resamples)
    runs = runs.copy()
    for i, column in enumerate((f"{split}_{metric}_low", f"{split}_{metric}_high")):
        runs[column] = pd.Series({k: v[i] for k, v in bounds.items()}, dtype=float)
    done = int((runs.status == "completed").sum())
    return runs, (f"bootstrap: {resamples} resamples of each run's {split} clips ({FILE}), seeded; "
                  f"{len(bounds)} of {done} completed runs have {split} predictions")
