"""Numeric tables (analysis.tables, analysis.robustness, analysis.predictions) -> text for people:
terminal, Markdown, LaTeX or CSV, each with the legend that says what its columns are."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from analysis.labels import normal
from analysis.published import METRICS, SHARED, is_synthetic
from analysis.robustness import FILE as ROBUSTNESS
from analysis.runs import duplicates
from analysis.stats import ALPHA, TOO_FEW_FOR_WILCOXON, WILCOXON_MIN_PAIRS
from analysis.tables import PUBLISHED_METRICS, Beside
from msa_ablate.metrics import LOWER_IS_BETTER

FORMATS = {"terminal": "simple", "markdown": "github", "latex": "latex_booktabs"}
BOOTSTRAP_COLUMN = "{metric} 95% bootstrap (mean of runs' bounds)"
CORRECTIONS = {"holm": "Holm's step-down correction", "bh": "Benjamini-Hochberg's correction", "none": "no correction"}
BESIDE_LEGEND = ("mean ± sample std over seeds; published: their test-split results, accuracies and F1 as fractions, "
                 "Acc2 and F1 in the columns of their convention (Non0: clips labelled 0 left out; Has0: every clip, "
                 "positive at >= 0)")


def p_text(p: float) -> str:
    return "" if math.isnan(p) else "< 0.001" if p < 0.001 else f"{p:.3f}"


def plus_minus(mean: float, std: float, signed: bool = False) -> str:
    """'mean ± std' (the mean with its sign where ``signed``); the mean alone where there is no std
    (one seed); '-' where there is no mean."""
    shown = f"{mean:+.4f}" if signed else f"{mean:.4f}"
    return "-" if math.isnan(mean) else shown if math.isnan(std) else f"{shown} ± {std:.4f}"


def p_columns(table: pd.DataFrame, adjust: str) -> dict[str, list[str]]:
    """The paired t-test's p, and that p adjusted, starred where < ALPHA."""
    return {"p (t)": [p_text(p) for p in table.p],
            f"p ({adjust})": [p_text(p) + ("*" if p < ALPHA else "") for p in table.p_adjusted]}


def display(table: pd.DataFrame, metric: str, adjust: str = "holm") -> pd.DataFrame:
    """Strings for people: 'mean ± std', the baseline marked, the adjusted p starred where < ALPHA."""
    shown = pd.DataFrame(index=table.index)
    shown["n"] = [f"{n}" + (f" (+{k} not completed)" if k else "") for n, k in zip(table.n, table.not_completed)]
    for m in [c[: -len("_mean")] for c in table.columns if c.endswith("_mean")]:
        shown[m] = [plus_minus(a, s) for a, s in zip(table[f"{m}_mean"], table[f"{m}_std"])]
    if f"{metric}_low" in table:
        shown[BOOTSTRAP_COLUMN.format(metric=metric)] = [
            "-" if math.isnan(lo) else f"[{lo:.4f}, {hi:.4f}]" for lo, hi in zip(table[f"{metric}_low"],
                                                                           table[f"{metric}_high"])]
    if "delta" not in table:
        return shown
    shown["paired"] = ["" if b else f"{int(n)}" for n, b in zip(table.n_paired, table.baseline)]
    shown[f"Δ {metric} [95% CI]"] = [
        "" if b or d is None or math.isnan(d) else f"{d:+.4f}" + ("" if math.isnan(lo) else f" [{lo:+.4f}, {hi:+.4f}]")
        for d, lo, hi, b in zip(table.delta, table.low, table.high, table.baseline)]
    shown = shown.assign(**p_columns(table, adjust))
    notes = table.note.fillna("")
    if table.p_wilcoxon.notna().any():
        shown["p (W)"] = [p_text(p) for p in table.p_wilcoxon]
    else:  # no comparison has the seeds for it: no column, and the legend says why, not every row
        notes = notes.replace(TOO_FEW_FOR_WILCOXON, "")
    if notes.ne("").any():
        shown["note"] = notes
    return shown


def render(table: pd.DataFrame, metric: str, fmt: str, adjust: str = "holm") -> str:
    if fmt == "csv":
        return table.to_csv()
    return tabulate(display(table, metric, adjust), headers="keys", tablefmt=FORMATS[fmt], disable_numparse=True)


def legend(adjust: str) -> str:
    return (f"mean ± sample std over seeds; paired by seed with the baseline: Δ and its 95% confidence interval "
            f"(paired t), p (t) the paired t-test, p ({adjust}) that p under {CORRECTIONS[adjust]} for the table's "
            f"comparisons (* below {ALPHA}), p (W) Wilcoxon's signed-rank test where at least "
            f"{WILCOXON_MIN_PAIRS} seeds are paired (no such column where none are)")


def robustness_legend(metric: str, adjust: str) -> str:
    sign = (f"{metric} is lower-is-better: there a smaller area, and a negative Δ clean or ER (it rises less than "
            "the baseline's), are the more graceful" if metric in LOWER_IS_BETTER else
            f"ER > 0: the configuration's {metric} falls less than the baseline's (it degrades more gracefully)")
    return (f"each run's {ROBUSTNESS} (its test split perturbed, MultiBench's protocol: noise, Gaussian with sd "
            "level x each feature's; drop, each step zeroed with probability level; levels 0 to 1; missing, the "
            "modality zeroed), per target (a modality, or all the model reads at once): "
            f"{metric}, the area under its curve over the levels (MultiBench's relative robustness; for missing, "
            f"its value); Δ clean, its change from the clean split summed over the levels (for missing, its one "
            "change); mean ± sample std over the n seeds where it is defined at every level. ER: MultiBench's "
            "effective robustness against the baseline's run of the same seed, sum over levels i of "
            "[(f_i - f_0) - (b_i - b_0)] (for missing, (f_missing - f_clean) - (b_missing - b_clean)): this Δ "
            f"clean less the baseline's, mean ± sample std over the paired seeds; p (t) the paired t-test, "
            f"p ({adjust}) that p under {CORRECTIONS[adjust]} for the table's comparisons (* below {ALPHA}). "
            f"{sign}")


def robustness_display(table: pd.DataFrame, metric: str, adjust: str = "holm") -> pd.DataFrame:
    """Strings for people, from analysis.robustness.robustness_table: 'mean ± std', changes signed."""
    shown = table[["perturbation", "target", "config"]].copy()
    shown["n"] = table.n.astype(str)
    shown[metric] = [plus_minus(a, s) for a, s in zip(table.value_mean, table.value_std)]
    shown["Δ clean"] = [plus_minus(a, s, signed=True) for a, s in zip(table.change_mean, table.change_std)]
    if "er" not in table:
        return shown
    shown["paired"] = ["" if b else f"{n}" for n, b in zip(table.n_paired, table.baseline)]
    shown["ER"] = ["" if b else plus_minus(e, s, signed=True) for e, s, b in zip(table.er, table.er_std,
                                                                               table.baseline)]
    shown = shown.assign(**p_columns(table, adjust))
    if table.note.ne("").any():
        shown["note"] = table.note
    return shown


def robustness_text(table: pd.DataFrame | None, lines: list[str], metric: str, fmt: str, adjust: str = "holm") -> str:
    """The robustness section: which runs it holds, its legend and its table (``table`` None: no run's is usable)."""
    if table is None:
        return "\n".join([*lines, "(python -m msa_ablate.eval FOLDER robustness=true makes it for finished runs; "
                                   "+eval=robustness after training)"])
    body = table.to_csv(index=False) if fmt == "csv" else tabulate(
        robustness_display(table, metric, adjust), headers="keys", tablefmt=FORMATS[fmt], showindex=False,
        disable_numparse=True)
    return "\n".join([*lines, "", robustness_legend(metric, adjust), "", body])


def ensemble_text(table: pd.DataFrame, line: str, metric: str, split: str, fmt: str) -> str:
    """The ensembles section (analysis.predictions.ensemble): which runs, a legend, the table."""
    shown = pd.DataFrame(index=table.index)
    shown["n"] = table.n.astype(str)
    shown[f"{metric} (single runs)"] = [plus_minus(a, s) for a, s in zip(table.single_mean, table.single_std)]
    shown[f"{metric} (ensemble)"] = [plus_minus(e, math.nan) for e in table.ensemble]
    shown["gain"] = [plus_minus(g, math.nan, signed=True) for g in table.gain]
    if table.note.ne("").any():
        shown["note"] = table.note
    legend_line = (f"each configuration's runs with {split} predictions: {metric} of each seed's predictions, mean ± "
                   "sample std over the n seeds; of the ensemble: the seeds' predictions averaged clip by clip and "
                   "scored as one model (msa_ablate.metrics.regression_metrics); gain: the ensemble's less the "
                   "seeds' mean")
    body = table.to_csv() if fmt == "csv" else tabulate(shown, headers="keys", tablefmt=FORMATS[fmt],
                                                        disable_numparse=True)
    return "\n".join([line, "", legend_line, "", body])


def beside_table(beside: Beside) -> pd.DataFrame:
    """Strings for people: each configuration's runs ((n=k) in a cell: the seeds where that metric is
    defined), then its sources' rows; the Has0 columns only beside a published Has0 value."""
    rows = []
    for run in beside.measured.to_dict("records"):
        n = run["seeds"]
        rows.append({"config": run["config"], "measured": f"these runs ({beside.split}, {n} seed{'s' * (n != 1)})",
                     **{m: plus_minus(run[f"{m}_mean"], run[f"{m}_std"])
                        + (f" (n={run[f'{m}_n']})" if run[f"{m}_n"] < n else "") for m in PUBLISHED_METRICS}})
        for r in beside.published[beside.published.config == run["config"]].itertuples():
            values = {**{m: getattr(r, c) for c, m in METRICS[r.acc2_convention].items()},
                      **{m: getattr(r, c) for c, m in SHARED.items()}}
            setting = f"{'aligned' if r.aligned else 'unaligned'}, {r.text_features} text"
            rows.append({"config": "", "measured": f"published [{beside.sources[r.source]}]: {r.model}, {setting} "
                         "(their features and protocol)", **{m: f"{v:g}" for m, v in values.items()}})
    shown = pd.DataFrame(rows).fillna("-")
    if "Has0" not in set(beside.published.acc2_convention):
        shown = shown.drop(columns=list(METRICS["Has0"].values()))
    return shown


def measured_on(beside: Beside) -> str:
    """Which data the runs were on and how far they compare with the published numbers; where no
    configuration re-implements a published model, that sentence instead."""
    if beside.measured.empty:
        return ("no configuration here re-implements a published model on its data (presets with published results: "
                f"{', '.join(beside.presets)})")
    synthetic = ("make_synthetic_mosi is the built-in synthetic data (msa_ablate/data/synthetic.py), not MOSI: the "
                 "published numbers were measured on the real dataset, these runs on synthetic data, so the two sit "
                 "side by side for scale, not as a comparison. " if any(map(is_synthetic, beside.data)) else "")
    protocol = ("" if all(map(is_synthetic, beside.data)) else "The published numbers were measured under each "
                "source's own features, alignment, protocol and seeds: like for like with runs on real data only "
                "where all agree.")
    return f"measured on: {', '.join(beside.data)}. {synthetic}{protocol}".strip()


def beside_lines(beside: Beside, fmt: str) -> list[str]:
    """What follows ``measured_on``: the legend, the table and its sources' footnotes (none without a table)."""
    if beside.measured.empty:
        return []
    shown = beside_table(beside)
    body = shown.to_csv(index=False) if fmt == "csv" else tabulate(
        shown, headers="keys", tablefmt=FORMATS[fmt], showindex=False, disable_numparse=True)
    return [BESIDE_LEGEND, "", body, "", *(f"[{n}] {s}" for s, n in beside.sources.items())]


def published_text(beside: Beside, fmt: str) -> str:
    return "\n".join([measured_on(beside), *beside_lines(beside, fmt)])


def summary_head(runs: pd.DataFrame, labelled: pd.DataFrame, base: str | None, held: dict, folders: list[Path],
                 searches: dict[Path, dict], split: str, adjust: str) -> list[str]:
    """summarize.py's first lines: what runs, on what data, what every run holds, their status and the
    statistics; the Optuna searches' best trials (``searches``: their optimization_results.yaml);
    the runs not completed, and the seeds run more than once."""
    lines = [f"# {split} metrics of {len(runs)} runs in {', '.join(map(str, folders))}",
             f"data: {', '.join(sorted(runs.data.unique()))}",
             f"held in every run: {' '.join(f'{k}={normal(v)}' for k, v in held.items()) or 'nothing'} "
             "(changed from the default config)",
             f"status: {runs.status.value_counts().to_dict()}; {legend(adjust)}"]
    if base is None:
        lines.append("no baseline: no configuration here is the default one (--baseline LABEL names one)")
    lines += [f"optuna best value {best['best_value']:.4f} at {best['best_params']} ({file})"
              for file, best in searches.items()]  # by the validation metric the search returned
    lines += [f"- {r.status}: {r.path}: {r.reason}" for r in labelled[labelled.status != "completed"].itertuples()]
    dups = duplicates(labelled)
    if len(dups):
        lines.append(f"seeds run more than once (each counts once, as its mean): {', '.join(dups.path)}")
    return lines
