"""The runs' test-time robustness (their robustness.json, msa_ablate/robustness.py: MultiBench's
protocol) per configuration, and against the baseline's by seed.

For each perturbation (noise and drop, at levels 0 to 1; missing, the modality zeroed) and target
(each modality alone, and ``all`` of the model's at once), a run gives a metric's area under its
curve over the levels (MultiBench's relative robustness; for missing, the metric itself) and its
change from the clean split, summed over the levels (for missing, its one change). Against the
baseline's run of the same seed, that change gives MultiBench's effective robustness:
ER = sum over levels i of [(f_i - f_0) - (b_i - b_0)], positive where a higher-is-better metric
falls less than the baseline's.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.stats import TOO_FEW_FOR_WILCOXON, Paired, paired
from analysis.stats import adjust as adjusted
from msa_ablate.metrics import LOWER_IS_BETTER
from msa_ablate.robustness import FILE
from msa_ablate.robustness import PERTURBATIONS as CURVES

PERTURBATIONS = (*CURVES, "missing")
TARGETS = ("text", "audio", "vision", "all")


def settings(result: dict) -> tuple:
    """What makes two runs' curves comparable level by level: the split, the levels and the draws' seed."""
    return result.get("split"), tuple(result.get("levels") or ()), result.get("seed")


def describe_settings(key: tuple) -> str:
    split, levels, seed = key
    steps = f"levels {levels[0]:g} to {levels[-1]:g} in {len(levels)} steps" if levels else "no levels"
    return f"{split} split, {steps}, perturbation seed {seed}"


def usable(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The completed runs whose robustness.json the table uses (readable, and made with the settings
    most of them share), and lines saying how many runs had one and which were left out, and why."""
    done = runs[runs.status == "completed"]
    has = done[done.robustness.map(bool)]
    without = len(done) - len(has)
    lines = [f"{FILE}: {len(has)} of {len(done)} completed runs have one"
             + (f" (the {without} without {'is' if without == 1 else 'are'} left out)" if without else "")]
    errors = has.robustness.map(lambda r: "error" in r)
    lines += [f"- left out: {r.path}: {r.robustness['error']}" for r in has[errors].itertuples()]
    ok = has[~errors]
    if ok.empty:
        return ok, lines
    keys = ok.robustness.map(settings)
    common = keys.value_counts().index[0]
    lines[0] += f"; {describe_settings(common)}"
    lines += [f"- left out: {r.path}: made with other settings ({describe_settings(k)})"
              for r, k in zip(ok.itertuples(), keys) if k != common]
    return ok[keys == common], lines


def number(scores: dict, metric: str) -> float:
    """A metric of robustness.json (NaN where it is null, as an undefined Corr is, or absent)."""
    value = scores.get(metric)
    return math.nan if value is None else float(value)


def scores(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per run (``usable`` and labelled) and perturbation x target: its config and seed;
    ``value``, the area under ``metric``'s curve over the levels (for missing, the metric);
    ``change``, the metric's change from clean summed over the levels (for missing, its one
    change); ``curve``, the metric at each level (none for missing)."""
    rows = []
    for run in runs.itertuples():
        result = run.robustness
        for name in CURVES:
            for target, points in result[name].items():
                curve = np.array([number(point, metric) for point in points])
                rows.append({"config": run.config, "seed": run.seed, "perturbation": name, "target": target,
                             "value": number(result["relative"][name][target], metric),  # the pass's own area
                             "change": float(np.sum(curve - curve[0])), "curve": curve})
        clean = number(result["clean"], metric)
        for target, values in result["missing"].items():
            value = number(values, metric)
            rows.append({"config": run.config, "seed": run.seed, "perturbation": "missing", "target": target,
                         "value": value, "change": value - clean, "curve": None})
    return pd.DataFrame(rows, columns=["config", "seed", "perturbation", "target", "value", "change", "curve"])


def rank(name: str) -> int:
    """Where a perturbation or target comes in the protocol's order (any other target after them)."""
    names = (*PERTURBATIONS, *TARGETS)
    return names.index(name) if name in names else len(names)


def robustness_table(runs: pd.DataFrame, base: str | None, metric: str = "Corr", adjust: str = "holm") -> pd.DataFrame:
    """``runs``: ``usable`` (one at least) and labelled (summarize.with_labels). One row per
    perturbation x target x configuration, in the protocol's order, best ``value`` first within
    each: n, the seeds where the metric is defined throughout; ``value`` and ``change``, mean and
    sample std over them; with a baseline, paired by seed with its runs: the effective robustness
    (``er``, the mean of the seeds' change less the baseline's, and ``er_std``), the paired
    t-test's p, that p adjusted over the table's comparisons, and a note where one is missing."""
    rows = scores(runs, metric)
    # One value per (configuration, seed): a seed run twice counts once, as its mean.
    per_seed = rows.groupby(["perturbation", "target", "config", "seed"], sort=False)[["value", "change"]].mean()
    groups = {key: group.droplevel([0, 1, 2]) for key, group in per_seed.groupby(level=[0, 1, 2], sort=False)}
    table = []
    for (name, target, label), seeds in groups.items():
        row = {"perturbation": name, "target": target, "config": label, "baseline": label == base,
               "n": int(seeds.value.notna().sum())}
        for column in ("value", "change"):
            row[f"{column}_mean"], row[f"{column}_std"] = seeds[column].mean(), seeds[column].std()
        if base is not None:
            baseline = groups.get((name, target, base), pd.DataFrame({"value": [], "change": []}))
            test = Paired(row["n"]) if label == base else paired(seeds.change, baseline.change)
            note = "" if test.note == TOO_FEW_FOR_WILCOXON else test.note  # the table has no Wilcoxon p
            if row["n"] == 0:  # e.g. Corr where every modality is dropped: constant predictions
                note = f"{metric} undefined on every seed"
            elif label != base and len(baseline) and baseline.value.isna().all():
                note = f"the baseline's {metric} undefined on every seed"
            row.update(n_paired=test.n, er=test.delta, er_std=test.std, p=test.p, note=note)
        table.append(row)
    table = pd.DataFrame(table)
    if base is not None:
        table["p_adjusted"] = adjusted(table.p, adjust)
    ascending = [True, True, metric in LOWER_IS_BETTER]
    return table.sort_values(["perturbation", "target", "value_mean"], ascending=ascending, na_position="last",
                             key=lambda c: c if c.name == "value_mean" else c.map(rank),
                             kind="stable").reset_index(drop=True)


def level_curves(runs: pd.DataFrame, metric: str = "Corr") -> pd.DataFrame:
    """``metric`` at each level (columns) of noise and drop: one row per perturbation, target,
    configuration and seed (a seed run twice counts once, as its mean), from ``usable`` runs."""
    rows = scores(runs, metric)
    rows = rows[rows.perturbation != "missing"]
    levels = runs.robustness.iloc[0]["levels"] if len(runs) else []
    frame = pd.DataFrame(rows.curve.tolist(), columns=levels, index=pd.MultiIndex.from_frame(
        rows[["perturbation", "target", "config", "seed"]]))
    return frame.groupby(level=[0, 1, 2, 3], sort=False).mean()
