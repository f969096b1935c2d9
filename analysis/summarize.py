"""Compare the runs of one or more sweeps: python analysis/summarize.py [FOLDER ...]

With no folder, the newest sweep under multirun/. Prints one row per configuration
(mean +- sample std over seeds), each against the baseline configuration with a paired
t-test (and Wilcoxon signed-rank test) over the seeds both share; then a table per
factor that the sweep varied. Writes runs.csv, summary.md and plots beside the sweep.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats
from tabulate import tabulate

from analysis.runs import duplicates, factor_columns, load_runs, newest_sweep
from msa_ablate.metrics import LOWER_IS_BETTER, SCORE_NAMES

__all__ = ["load_runs", "compare", "one_factor_tables", "main"]

CONF = Path(__file__).resolve().parents[1] / "conf"
SEED_METRICS = ["Non0_acc_2", "Non0_F1_score", "Mult_acc_5", "Mult_acc_7", "MAE", "Corr"]
HAS0_METRICS = ["Has0_acc_2", "Has0_F1_score"]
FORMATS = {"terminal": "simple", "markdown": "github", "latex": "latex_booktabs"}
ALPHA = 0.05
BASELINE = "baseline"


def normal(value: object) -> str:
    """One spelling per value: '1e-3', '0.001' and 0.001 are the same learning rate; 'false'
    (an override as typed) and False (a default from the config) are the same switch."""
    if isinstance(value, str):
        value = {"true": True, "false": False, "null": None}.get(value.lower(), value)  # Hydra's override grammar
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return str(int(number)) if number.is_integer() else repr(number)


@functools.lru_cache(maxsize=1)
def _default_config():
    from hydra import compose, initialize_config_dir

    import msa_ablate.config  # noqa: F401  (the schemas the configs name)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", return_hydra_config=True)


def default_value(factor: str) -> str:
    """What `python -m msa_ablate` runs with no overrides (this checkout's conf/), normalised."""
    from omegaconf import OmegaConf

    cfg = _default_config()
    choices = cfg.hydra.runtime.choices
    return normal(choices[factor] if factor in choices else OmegaConf.select(cfg, factor, default=None))


def factor_values(runs: pd.DataFrame) -> pd.DataFrame:
    """Each run's factors, normalised; a value a run does not record (a key overridden in one
    merged sweep but not in another) is the default."""
    return pd.DataFrame({f: [normal(v) if pd.notna(v) else default_value(f) for v in runs[f]]
                         for f in factor_columns(runs)}, index=runs.index)


def varying(runs: pd.DataFrame) -> list[str]:
    values = factor_values(runs)
    return [f for f in values if values[f].nunique() > 1]


def with_labels(runs: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """Adds a `config` label: the varying factors that differ from the defaults (e.g. 'encoder=gru
    loss=l1'), or 'baseline' where none does. Returns the runs and the baseline's label if present."""
    factors = varying(runs)
    runs = runs.copy()
    if not factors:  # one configuration: nothing to compare it with
        runs["config"] = "all runs"
        return runs, None
    values = factor_values(runs)[factors]
    runs["config"] = [" ".join(f"{f}={v}" for f, v in zip(factors, row) if v != default_value(f)) or BASELINE
                      for row in values.itertuples(index=False)]
    return runs, (BASELINE if (runs.config == BASELINE).any() else None)


def held_at_baseline(runs: pd.DataFrame, factor: str) -> pd.DataFrame:
    """The runs where every varied factor but `factor` has its default value."""
    others = [g for g in varying(runs) if g != factor]
    values = factor_values(runs)
    return runs[np.logical_and.reduce([values[g] == default_value(g) for g in others])] if others else runs


def paired(x: pd.Series, base: pd.Series) -> tuple[float, int, float, float]:
    """Mean difference over shared seeds, their count, paired t-test p and Wilcoxon p."""
    shared = x.index.intersection(base.index)
    d = (x[shared] - base[shared]).dropna().to_numpy()
    if len(d) < 2:
        return (float(d.mean()) if len(d) else math.nan), len(d), math.nan, math.nan
    if np.all(d == d[0]):  # no spread: the t statistic is undefined (equal runs, or a constant shift)
        return float(d.mean()), len(d), (1.0 if d[0] == 0 else 0.0), math.nan
    t_p = float(stats.ttest_1samp(d, 0.0).pvalue)  # the paired t-test: on the differences
    w_p = float(stats.wilcoxon(d).pvalue) if len(d) >= 5 else math.nan
    return float(d.mean()), len(d), t_p, w_p


def compare(runs: pd.DataFrame, metric: str = "Corr", split: str = "test", has0: bool = False) -> pd.DataFrame:
    """One row per configuration: n, mean and std of each metric, and for `metric` the paired
    difference from the baseline with its p-values. Sorted best first by `metric`."""
    runs, base_label = with_labels(runs)
    metrics = SEED_METRICS + (HAS0_METRICS if has0 else [])
    if metric not in metrics:
        metrics.append(metric)
    columns = [f"{split}_{m}" for m in metrics]
    # One value per (configuration, seed): a duplicated seed (reported above the table) counts
    # once, as its mean, in n, the means, the stds and the paired tests alike.
    per_seed = runs[runs.status == "completed"].groupby(["config", "seed"])[columns].mean()
    completed = set(per_seed.index.get_level_values(0))

    def seeds_of(label: str) -> pd.DataFrame:  # none where no run of it completed (failed, or still running)
        return per_seed.loc[label] if label in completed else per_seed.droplevel(0).iloc[:0]

    rows = []
    for label, group in runs.groupby("config", sort=False):
        ok = seeds_of(label)
        row = {"config": label, "baseline": label == base_label, "n": len(ok),
               "not_completed": int((group.status != "completed").sum())}
        for m in metrics:
            row[f"{m}_mean"], row[f"{m}_std"] = ok[f"{split}_{m}"].mean(), ok[f"{split}_{m}"].std()
        if base_label is not None:
            base = seeds_of(base_label)[f"{split}_{metric}"]
            row["delta"], row["n_paired"], row["p_t"], row["p_wilcoxon"] = (
                (0.0, len(base), math.nan, math.nan) if label == base_label else paired(ok[f"{split}_{metric}"], base))
        rows.append(row)
    table = pd.DataFrame(rows).set_index("config")
    return table.sort_values(f"{metric}_mean", ascending=metric in LOWER_IS_BETTER, na_position="last")


def one_factor_tables(runs: pd.DataFrame, **kw) -> dict[str, pd.DataFrame]:
    """For each varied factor: its options, the other varied factors held at their defaults."""
    tables = {}
    for f in varying(runs):
        held = held_at_baseline(runs, f)
        if held[f].astype(str).nunique() > 1:
            tables[f] = compare(held, **kw)
    return tables


def display(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Strings for people: 'mean ± std', the baseline marked, significant p-values starred."""
    shown = pd.DataFrame(index=table.index)
    shown["n"] = [f"{n}" + (f" (+{k} not completed)" if k else "") for n, k in zip(table.n, table.not_completed)]
    for m in [c[: -len("_mean")] for c in table.columns if c.endswith("_mean")]:
        shown[m] = [f"{a:.4f} ± {s:.4f}" if not math.isnan(s) else f"{a:.4f}" if not math.isnan(a) else "-"
                    for a, s in zip(table[f"{m}_mean"], table[f"{m}_std"])]
    if "delta" in table:
        shown[f"Δ {metric}"] = [f"{d:+.4f}" if not b and not math.isnan(d) else "" for d, b in
                                zip(table.delta, table.baseline)]
        for col, name in (("p_t", "p (t)"), ("p_wilcoxon", "p (W)")):
            shown[name] = ["" if math.isnan(p) else f"{p:.3f}" + ("*" if p < ALPHA else "") for p in table[col]]
    return shown


def render(table: pd.DataFrame, metric: str, fmt: str) -> str:
    if fmt == "csv":
        return table.to_csv()
    return tabulate(display(table, metric), headers="keys", tablefmt=FORMATS[fmt], disable_numparse=True)


def parse_filters(items: list[str]) -> dict[str, list[str]]:
    filters = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep:
            raise ValueError(f"--filter {item!r}: expected KEY=VALUE[,VALUE...]")
        filters[key] = values.split(",")
    return filters


def apply_filters(runs: pd.DataFrame, filters: dict[str, list[str]]) -> pd.DataFrame:
    for key, values in filters.items():
        if key not in runs:
            raise ValueError(f"--filter {key}: no such column (have {sorted(runs.columns)})")
        runs = runs[runs[key].astype(str).isin(values)]
        if runs.empty:
            raise ValueError(f"--filter {key}={','.join(values)}: no run matches")
    return runs


def read_folders(folders: list[Path]) -> tuple[list[Path], pd.DataFrame]:
    """The given folders (default: the newest sweep) and their runs; FileNotFoundError names what is missing."""
    folders = folders or [newest_sweep()]
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise FileNotFoundError(f"no such folder: {', '.join(missing)}")
    return folders, load_runs(folders)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path, help="sweep or run folders (default: newest under multirun/)")
    parser.add_argument("--metric", "--sort", default="Corr", choices=SCORE_NAMES,
                        help="metric to sort by and test against the baseline")
    parser.add_argument("--split", choices=("test", "valid"), default="test")
    parser.add_argument("--format", choices=(*FORMATS, "csv"), default="terminal")
    parser.add_argument("--filter", action="append", default=[], metavar="KEY=V1[,V2]", help="keep matching runs")
    parser.add_argument("--has0", action="store_true", help="also show Has0_acc_2 and Has0_F1_score")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--out", type=Path, help="where to write runs.csv, summary.md, plots (default: first folder)")
    args = parser.parse_args(argv)

    try:
        folders, runs = read_folders(args.folders)
        runs = apply_filters(runs, parse_filters(args.filter))
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))  # one line, exit 2
    if args.split == "test" and runs["test_Corr"].isna().all() and runs["valid_Corr"].notna().any():
        parser.error("these runs never read the test split (trainer.evaluate_test=false, as in "
                     "hparams_search=optuna): use --split valid")
    kw = {"metric": args.metric, "split": args.split, "has0": args.has0}
    out = args.out or folders[0]
    out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out / "runs.csv", index=False)

    status = runs.status.value_counts().to_dict()
    varied = varying(runs)
    held = {f: runs[f].iloc[0] for f in factor_columns(runs) if f not in varied}
    lines = [f"# {args.split} metrics of {len(runs)} runs in {', '.join(map(str, folders))}",
             f"held in every run: {' '.join(f'{k}={v}' for k, v in held.items())}",
             f"status: {status}; mean ± sample std over seeds; p (t): paired t-test, p (W): Wilcoxon "
             f"signed-rank (n >= 5; with 5 seeds its smallest two-sided p is 0.0625), over shared seeds; "
             f"* p < {ALPHA}"]
    for file in (f / "optimization_results.yaml" for f in folders):
        if file.exists():  # an Optuna search: its best trial, by the validation metric it returned
            best = yaml.safe_load(file.read_text())
            lines.append(f"optuna best value {best['best_value']:.4f} at {best['best_params']} ({file})")
    not_done = runs[runs.status != "completed"]
    lines += [f"- {r.status}: {r.path}: {r.reason}" for r in not_done.itertuples()]
    dups = duplicates(runs)
    if len(dups):
        lines.append(f"duplicates (same configuration and seed): {', '.join(dups.path)}")
    sections = [("all configurations", compare(runs, **kw))]
    sections += [(f"one factor: {f}", t) for f, t in one_factor_tables(runs, **kw).items()]
    text = "\n".join(lines)
    for title, table in sections:
        text += f"\n\n## {title}\n\n{render(table, args.metric, args.format)}"
    print(text)
    (out / "summary.md").write_text("\n".join(lines) + "".join(
        f"\n\n## {title}\n\n{render(t, args.metric, 'markdown')}" for title, t in sections) + "\n")
    if not args.no_plots:
        from analysis.plots import write_plots

        for path in write_plots(runs, out / "plots", **kw):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
