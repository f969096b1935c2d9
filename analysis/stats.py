"""Paired comparisons over seeds, and their correction for many comparisons.

A configuration is compared with the baseline on the seeds both have (paired by seed, not by
position): the mean difference with its 95% confidence interval and p-value from the paired
t-test, and Wilcoxon's signed-rank p where the number of pairs lets it reach 0.05 at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
# Wilcoxon's exact two-sided p can be no smaller than 2 / 2**n: it reaches 0.05 from 6 pairs on.
WILCOXON_MIN_PAIRS = 6
TOO_FEW_FOR_WILCOXON = f"Wilcoxon needs {WILCOXON_MIN_PAIRS} pairs to reach p < {ALPHA}"
ADJUSTMENTS = ("holm", "bh", "none")


@dataclass
class Paired:
    n: int  # pairs (seeds both sides completed)
    delta: float = math.nan  # mean of (configuration - baseline)
    std: float = math.nan  # sample std of (configuration - baseline)
    low: float = math.nan  # 95% confidence interval of delta (paired t)
    high: float = math.nan
    p: float = math.nan  # paired t-test, two-sided
    p_wilcoxon: float = math.nan
    note: str = ""  # why a p is missing


def paired(x: pd.Series, base: pd.Series) -> Paired:
    """``x`` and ``base``: a metric indexed by seed. Seeds either lacks, or where either is NaN, are left out."""
    both = pd.concat([x.rename("x"), base.rename("base")], axis=1, join="inner").dropna()  # by seed
    d = (both.x - both.base).to_numpy(dtype=float)
    if len(d) == 0:
        return Paired(0, note="no seed in common with the baseline")
    if len(d) < 2:
        return Paired(1, float(d[0]), note="one seed in common: no test")
    result = Paired(len(d), float(d.mean()), float(d.std(ddof=1)))
    # No spread (equal runs, or a constant shift; up to rounding, which a sum of differences leaves):
    # the t statistic is undefined, or would test the rounding.
    if np.ptp(d) <= 1e-12 * max(1.0, float(np.abs(both.to_numpy()).max())):
        result.note = "the same difference on every seed: no t-test"
        return result
    t = stats.ttest_rel(both.x, both.base)
    result.p = float(t.pvalue)
    result.low, result.high = (float(v) for v in t.confidence_interval(1 - ALPHA))
    if len(d) >= WILCOXON_MIN_PAIRS:
        result.p_wilcoxon = float(stats.wilcoxon(d).pvalue)
    else:
        result.note = TOO_FEW_FOR_WILCOXON
    return result


def adjust(p: pd.Series, method: str = "holm") -> pd.Series:
    """p-values adjusted for the comparisons of one table (NaN ones are no comparison): Holm's
    step-down (family-wise error), Benjamini-Hochberg (false discovery rate), or none."""
    if method not in ADJUSTMENTS:
        raise ValueError(f"--adjust {method}: must be one of {', '.join(ADJUSTMENTS)}")
    tested = p.dropna()
    if method == "none" or tested.empty:
        return p.copy()
    if method == "bh":
        adjusted = stats.false_discovery_control(tested.to_numpy())
    else:
        order = np.argsort(tested.to_numpy(), kind="stable")
        m = len(tested)
        steps = np.maximum.accumulate((m - np.arange(m)) * tested.to_numpy()[order])
        adjusted = np.empty(m)
        adjusted[order] = np.minimum(steps, 1.0)
    return pd.Series(adjusted, index=tested.index).reindex(p.index)
