"""Compare the runs of one or more sweeps: python analysis/summarize.py [FOLDER ...] [--runs CSV]

With no folder, the newest sweep under multirun/ that has runs. Runs are grouped by what ran
(their records' resolved config and data); each configuration is labelled by what it changes
from the baseline, and compared with it by seed: n, n paired, mean ± sample std, the difference
with its 95% confidence interval, the paired t-test's p, that p adjusted for the table's
comparisons (Holm by default), and Wilcoxon's p where enough seeds are paired. One table of all
configurations, then one per factor varied alone. Writes runs.csv, summary.md and plots/.
With --published, each configuration that re-implements a published model beside what its
sources reported (msa_ablate/published.csv), also in published.md. With --robustness, each
configuration's test-time robustness (its runs' robustness.json) and its effective robustness
against the baseline, with a plot per factor of the metric against the level; with --ensemble,
each configuration's seeds averaged clip by clip and scored as one model; with --bootstrap N, a
column of each run's bootstrap interval of --metric (the last two from the runs' predictions.csv).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from functools import partial
from pathlib import Path

import pandas as pd
import yaml
from tabulate import tabulate

from analysis.predictions import ensemble, with_bootstrap
from analysis.published import METRICS, SHARED, dataset_of, is_synthetic, matches
from analysis.published import load as load_published
from analysis.robustness import FILE as ROBUSTNESS
from analysis.robustness import robustness_table, usable
from analysis.runs import duplicates, load_runs, newest_sweep, read_runs, write_runs
from analysis.stats import ADJUSTMENTS, ALPHA, TOO_FEW_FOR_WILCOXON, WILCOXON_MIN_PAIRS, paired
from analysis.stats import adjust as adjusted
from msa_ablate.config import WHERE_IT_RUNS
from msa_ablate.metrics import LOWER_IS_BETTER, SCORE_NAMES

# The columns shown: the handout's metrics for MOSI-like labels, MMSA's for CH-SIMS-like ones
SHOWN = {"mosi": ["Non0_acc_2", "Non0_F1_score", "Mult_acc_5", "Mult_acc_7", "MAE", "Corr"],
         "sims": ["Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score", "MAE", "Corr"]}
HAS0_METRICS = ["Has0_acc_2", "Has0_F1_score"]
FORMATS = {"terminal": "simple", "markdown": "github", "latex": "latex_booktabs"}
BASELINE = "baseline"
BOOTSTRAP_COLUMN = "{metric} 95% bootstrap (mean of runs' bounds)"
CORRECTIONS = {"holm": "Holm's step-down correction", "bh": "Benjamini-Hochberg's correction", "none": "no correction"}


def normal(value: object) -> str:
    """One spelling per value: 0.001 and 1e-3 are one learning rate, False and 'false' one switch."""
    if isinstance(value, str):
        value = {"true": True, "false": False, "null": None}.get(value.lower(), value)
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":")).replace('"', "")
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return str(int(number)) if number.is_integer() else repr(number)


def describe(changes: dict) -> str:
    """``encoder=gru loss=l1``; a preset first, with what it sets in brackets:
    ``+preset=improved (encoder=conv_birnn, fusion=text_centred, ...)``."""
    parts = [f"{k}={normal(v)}" for k, v in changes.items()]
    added = [p for p in parts if p.startswith("+")]
    rest = [p for p in parts if not p.startswith("+")]
    return f"{' '.join(added)} ({', '.join(rest)})" if added and rest else " ".join(parts)


def with_labels(runs: pd.DataFrame, baseline: str | None = None) -> tuple[pd.DataFrame, str | None, dict]:
    """Adds ``config``: what each configuration changes from the baseline, less what every
    configuration here changes alike (returned as ``held``). The baseline is the configuration
    that changes nothing else, or the one ``baseline`` names. Configurations that would read
    alike (the same settings on other data) say their data too."""
    first = runs.drop_duplicates("configuration").set_index("configuration")
    items = {c: {(k, normal(v)) for k, v in ch.items()} for c, ch in first.changes.items()}
    held_items = set.intersection(*items.values()) if items else set()
    held = {k: v for k, v in first.changes.iloc[0].items() if (k, normal(v)) in held_items} if items else {}
    labels = {c: describe({k: v for k, v in ch.items() if k not in held}) or BASELINE
              for c, ch in first.changes.items()}
    several_data = first.data.nunique() > 1
    counts = pd.Series(labels).value_counts()
    labels = {c: f"{label} [{first.data[c]}]" if several_data and counts[label] > 1 else label
              for c, label in labels.items()}
    runs = runs.copy()
    runs["config"] = runs.configuration.map(labels)
    if baseline is not None and baseline not in set(labels.values()):
        raise ValueError(f"--baseline {baseline}: no such configuration (have {sorted(set(labels.values()))})")
    base = baseline or (BASELINE if BASELINE in labels.values() else None)
    return runs, base, held


def factors(runs: pd.DataFrame, base: str | None) -> list[str]:
    """The keys the configurations change from the baseline, each alone somewhere (one-factor tables)."""
    if base is None:
        return []
    base_changes = runs[runs.config == base].changes.iloc[0]
    alone = []
    for changes in runs.drop_duplicates("configuration").changes:
        keys = dict.fromkeys([*changes, *base_changes])
        differ = [k for k in keys if normal(changes.get(k)) != normal(base_changes.get(k))]
        if len(differ) == 1 and differ[0] not in alone:
            alone.append(differ[0])
    return alone


def one_factor(runs: pd.DataFrame, base: str, factor: str) -> pd.DataFrame:
    """The runs of the baseline and of every configuration that differs from it in ``factor`` alone."""
    base_changes = runs[runs.config == base].changes.iloc[0]

    def only(changes: dict) -> bool:
        keys = dict.fromkeys([*changes, *base_changes])
        return all(k == factor or normal(changes.get(k)) == normal(base_changes.get(k)) for k in keys)

    return runs[runs.changes.map(only)]


def compare(runs: pd.DataFrame, metric: str = "Corr", split: str = "test", baseline: str | None = None,
            adjust: str = "holm", has0: bool = False) -> pd.DataFrame:
    """One row per configuration (labelled as ``with_labels`` does, unless ``runs`` are labelled
    already), sorted best first by ``metric``; the paired comparison with the baseline is on
    ``metric``, its p adjusted over the table's rows."""
    runs, base, _ = with_labels(runs, baseline) if "config" not in runs else (runs, baseline, {})
    sets = runs.metrics.unique() if "metrics" in runs else ["mosi"]
    metrics = list(dict.fromkeys(m for name in sorted(sets) for m in SHOWN[name]))
    metrics += HAS0_METRICS if has0 else []
    metrics += [metric] if metric not in metrics else []
    # One value per (configuration, seed): a seed run twice (listed by summarize) counts once, as its mean.
    done = runs[runs.status == "completed"]
    bounds = [c for c in (f"{split}_{metric}_low", f"{split}_{metric}_high") if c in runs]  # with --bootstrap
    per_seed = done.groupby(["config", "seed"])[[f"{split}_{m}" for m in metrics] + bounds].mean()
    rows = []
    for label, group in runs.groupby("config", sort=False):
        ok = per_seed.loc[label] if label in per_seed.index.get_level_values(0) else per_seed.iloc[:0].droplevel(0)
        row = {"config": label, "baseline": label == base, "n": len(ok),
               "not_completed": int((group.status != "completed").sum())}
        for m in metrics:
            row[f"{m}_mean"], row[f"{m}_std"] = ok[f"{split}_{m}"].mean(), ok[f"{split}_{m}"].std()
        for column in bounds:  # the mean over seeds of each run's bound
            row[column.removeprefix(f"{split}_")] = ok[column].mean()
        rows.append(row)
    table = pd.DataFrame(rows).set_index("config")
    if base is not None:
        values = {label: (per_seed.loc[label][f"{split}_{metric}"] if label in per_seed.index.get_level_values(0)
                          else pd.Series(dtype=float)) for label in table.index}
        tests = {label: paired(values[label], values[base]) for label in table.index if label != base}
        for column in ("n_paired", "delta", "low", "high", "p", "p_wilcoxon", "note"):
            attribute = "n" if column == "n_paired" else column
            table[column] = [getattr(tests[label], attribute) if label in tests else None for label in table.index]
        table.loc[base, ["n_paired", "note"]] = [table.loc[base, "n"], ""]
        table = table.astype({c: float for c in ("delta", "low", "high", "p", "p_wilcoxon")})
        table["p_adjusted"] = adjusted(table.p, adjust)
    order = table[f"{metric}_mean"].sort_values(ascending=metric in LOWER_IS_BETTER, na_position="last").index
    return table.loc[order]


def one_factor_tables(runs: pd.DataFrame, baseline: str | None = None, **kw) -> dict[str, pd.DataFrame]:
    """For each factor varied alone: the baseline and its options, each compared with the baseline."""
    labelled, base, _ = with_labels(runs, baseline)
    return {f: compare(one_factor(labelled, base, f), baseline=base, **kw) for f in factors(labelled, base)}


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


def beside_published(runs: pd.DataFrame, split: str, fmt: str) -> str:
    """Each configuration that re-implements a published model (a preset, or the handout's
    baseline) beside what its sources reported on the same dataset: the runs' mean ± std over
    seeds, the published values in the columns they compare with; which data the runs were on."""
    table = load_published()
    done = runs[runs.status == "completed"]
    metrics = [*METRICS["Non0"].values(), *METRICS["Has0"].values(), *SHARED.values()]
    rows, sources, data, conventions = [], {}, [], set()
    for label, group in runs.groupby("config", sort=False):
        run = group.iloc[0]
        # What it changes from the default config, its data and device aside: a preset every run shares is not in
        # its label, and the baseline run with trainer.device=cpu is still the handout's model
        changes = describe({k: v for k, v in run.changes.items()
                            if k.lstrip("+").split(".")[0] != "data" and k not in WHERE_IT_RUNS})
        found = matches(changes or BASELINE, dataset_of(run.data, run.choices.get("data"), run.get("metrics", "mosi")),
                        table)
        if found.empty:
            continue
        data += [run.data] if run.data not in data else []
        seeds = done[done.config == label].groupby("seed")
        n = f"{seeds.ngroups} seed{'s' * (seeds.ngroups != 1)}"
        per_seed = {m: seeds[f"{split}_{m}"].mean() for m in metrics}  # a seed run twice counts once
        rows.append({"config": label, "measured": f"these runs ({split}, {n})",  # (n=k): seeds where it is defined
                     **{m: plus_minus(v.mean(), v.std()) + (f" (n={v.count()})" if v.count() < len(v) else "")
                        for m, v in per_seed.items()}})
        for r in found.itertuples():
            number = sources.setdefault(r.source, len(sources) + 1)
            conventions.add(r.acc2_convention)
            values = {**{m: getattr(r, c) for c, m in METRICS[r.acc2_convention].items()},
                      **{m: getattr(r, c) for c, m in SHARED.items()}}
            setting = f"{'aligned' if r.aligned else 'unaligned'}, {r.text_features} text"
            rows.append({"config": "", "measured": f"published [{number}]: {r.model}, {setting} (their features and "
                         "protocol)", **{m: f"{v:g}" for m, v in values.items()}})
    if not rows:
        return ("no configuration here re-implements a published model on its data (presets with published results: "
                f"{', '.join(dict.fromkeys(table.preset))})")
    shown = pd.DataFrame(rows).fillna("-")
    if "Has0" not in conventions:  # the runs' Has0 columns only beside a published Has0 value
        shown = shown.drop(columns=list(METRICS["Has0"].values()))
    synthetic = ("make_synthetic_mosi is the built-in synthetic data (msa_ablate/data/synthetic.py), not MOSI: the "
                 "published numbers were measured on the real dataset, these runs on synthetic data, so the two sit "
                 "side by side for scale, not as a comparison. " if any(map(is_synthetic, data)) else "")
    protocol = ("" if all(map(is_synthetic, data)) else "The published numbers were measured under each source's own "
                "features, alignment, protocol and seeds: like for like with runs on real data only where all agree.")
    lines = [f"measured on: {', '.join(data)}. {synthetic}{protocol}".strip(),
             "mean ± sample std over seeds; published: their test-split results, accuracies and F1 as fractions, "
             "Acc2 and F1 in the columns of their convention (Non0: clips labelled 0 left out; Has0: every clip, "
             "positive at >= 0)"]
    body = shown.to_csv(index=False) if fmt == "csv" else tabulate(
        shown, headers="keys", tablefmt=FORMATS[fmt], showindex=False, disable_numparse=True)
    return "\n".join([*lines, "", body, "", *(f"[{n}] {s}" for s, n in sources.items())])


def parse_filters(items: list[str]) -> dict[str, list[str]]:
    filters = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep:
            raise ValueError(f"--filter {item!r}: expected KEY=VALUE[,VALUE...]")
        filters[key] = values.split(",")
    return filters


def apply_filters(runs: pd.DataFrame, filters: dict[str, list[str]]) -> pd.DataFrame:
    """Runs whose column, or whose change from the default config, ``key`` has one of the values."""
    for key, values in filters.items():
        if key in runs:
            column = runs[key].map(normal)
        elif any(key in changes for changes in runs.changes):
            column = runs.changes.map(lambda c: normal(c.get(key)))
        else:
            raise ValueError(f"--filter {key}: no such column or setting (have {sorted(runs.columns)})")
        runs = runs[column.isin([normal(v) for v in values])]
        if runs.empty:
            raise ValueError(f"--filter {key}={','.join(values)}: no run matches")
    return runs


def read_folders(folders: list[Path]) -> tuple[list[Path], pd.DataFrame]:
    """The given folders (default: the newest sweep with runs, said on stderr) and their runs;
    FileNotFoundError names what is missing."""
    if not folders:
        folders = [newest_sweep()]
        print(f"the newest sweep: {folders[0]}", file=sys.stderr)
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise FileNotFoundError(f"no such folder: {', '.join(missing)}")
    return folders, load_runs(folders)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path, help="sweep or run folders (default: the newest sweep)")
    parser.add_argument("--runs", type=Path, help="a runs.csv (as this writes) instead of folders")
    parser.add_argument("--metric", "--sort", default="Corr", choices=SCORE_NAMES,
                        help="metric to sort by and test against the baseline")
    parser.add_argument("--split", choices=("test", "valid"), default="test")
    parser.add_argument("--baseline", help="the configuration (a label as shown) to compare with")
    parser.add_argument("--adjust", choices=ADJUSTMENTS, default="holm", help="multiple-comparison correction")
    parser.add_argument("--format", choices=(*FORMATS, "csv"), default="terminal")
    parser.add_argument("--filter", action="append", default=[], metavar="KEY=V1[,V2]", help="keep matching runs")
    parser.add_argument("--has0", action="store_true", help="also show Has0_acc_2 and Has0_F1_score")
    parser.add_argument("--published", action="store_true",
                        help="also each configuration that re-implements a published model beside what was published")
    parser.add_argument("--robustness", action="store_true",
                        help="also each configuration's test-time robustness (robustness.json) and its effective "
                             "robustness against the baseline's, with plots of the metric against the level")
    parser.add_argument("--ensemble", action="store_true",
                        help="also each configuration's seeds averaged prediction by prediction, scored as one model")
    parser.add_argument("--bootstrap", type=int, default=0, metavar="N",
                        help="a column of each run's percentile bootstrap 95%% interval of --metric over its clips "
                             "(N resamples, seeded), averaged over seeds (default: none)")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--out", type=Path, help="where to write runs.csv, summary.md, plots (default: first folder)")
    args = parser.parse_args(argv)

    try:
        if args.runs:
            if not args.runs.is_file():
                raise FileNotFoundError(f"--runs {args.runs}: no such file")
            folders, runs = [args.runs.parent], read_runs(args.runs)
        else:
            folders, runs = read_folders(args.folders)
        runs = apply_filters(runs, parse_filters(args.filter))
        kw = {"metric": args.metric, "split": args.split, "baseline": args.baseline, "adjust": args.adjust,
              "has0": args.has0}
        labelled, base, held = with_labels(runs, args.baseline)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))  # one line, exit 2
    if args.bootstrap < 0:
        parser.error(f"--bootstrap {args.bootstrap}: the number of resamples must be positive (0: none)")
    if args.metric == "loss" and (args.ensemble or args.bootstrap):
        parser.error("--ensemble and --bootstrap score predictions.csv, which holds no loss: choose another --metric")
    if args.split == "test" and runs["test_Corr"].isna().all() and runs["valid_Corr"].notna().any():
        parser.error("these runs never read the test split (trainer.evaluate_test=false, as in "
                     "hparams_search=optuna): use --split valid")
    out = args.out or folders[0]
    out.mkdir(parents=True, exist_ok=True)
    written = [] if args.runs and out == args.runs.parent else [write_runs(runs, out / "runs.csv")]

    status = runs.status.value_counts().to_dict()
    lines = [f"# {args.split} metrics of {len(runs)} runs in {', '.join(map(str, folders))}",
             f"data: {', '.join(sorted(runs.data.unique()))}",
             f"held in every run: {' '.join(f'{k}={normal(v)}' for k, v in held.items()) or 'nothing'} "
             "(changed from the default config)",
             f"status: {status}; {legend(args.adjust)}"]
    if base is None:
        lines.append("no baseline: no configuration here is the default one (--baseline LABEL names one)")
    for file in (f / "optimization_results.yaml" for f in folders):
        if file.exists():  # an Optuna search: its best trial, by the validation metric it returned
            best = yaml.safe_load(file.read_text())
            lines.append(f"optuna best value {best['best_value']:.4f} at {best['best_params']} ({file})")
    not_done = labelled[labelled.status != "completed"]
    lines += [f"- {r.status}: {r.path}: {r.reason}" for r in not_done.itertuples()]
    dups = duplicates(labelled)
    if len(dups):
        lines.append(f"seeds run more than once (each counts once, as its mean): {', '.join(dups.path)}")
    root = args.runs.parent if args.runs else Path()  # where the runs' paths start
    if args.bootstrap:
        runs, line = with_bootstrap(runs, root, args.metric, args.split, args.bootstrap)
        lines.append(line)
    sections = [("all configurations", compare(runs, **kw))]
    sections += [(f"one factor: {f}", t) for f, t in one_factor_tables(runs, **kw).items()]
    blocks = [(title, partial(render, table, args.metric, adjust=args.adjust)) for title, table in sections]
    if args.robustness:
        robust, notes = usable(labelled)
        table = robustness_table(robust, base, args.metric, args.adjust) if len(robust) else None
        blocks.append((f"robustness: test {args.metric} under perturbation",
                       partial(robustness_text, table, notes, args.metric, adjust=args.adjust)))
    if args.ensemble:
        table, line = ensemble(labelled, root, args.metric, args.split)
        blocks.append((f"ensembles of each configuration's seeds: {args.split} {args.metric}",
                       partial(ensemble_text, table, line, args.metric, args.split)))
    text = "\n".join(lines) + "".join(f"\n\n## {title}\n\n{block(fmt=args.format)}" for title, block in blocks)
    print(text)
    summary = out / "summary.md"
    summary.write_text("\n".join(lines) + "".join(
        f"\n\n## {title}\n\n{block(fmt='markdown')}" for title, block in blocks) + "\n")
    written.append(summary)
    if args.published:
        title = "published results beside these runs"
        print(f"\n## {title}\n\n{beside_published(labelled, args.split, args.format)}")
        written.append(out / "published.md")
        written[-1].write_text(f"# {title}\n\n{beside_published(labelled, args.split, 'markdown')}\n")
    if not args.no_plots:
        from analysis.plots import write_plots, write_robustness_plots

        written += write_plots(labelled, base, out / "plots", metric=args.metric, split=args.split)
        if args.robustness and len(robust):
            written += write_robustness_plots(labelled, robust, base, out / "plots", metric=args.metric)
    print(f"wrote {', '.join(map(str, written))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
