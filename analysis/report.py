"""REPORT.md for a `+experiment=study` sweep: python analysis/report.py [FOLDER ...] [--improved DIR] [--out DIR]

One section per question of the handout (1, 2.1-2.5, 3), each with its table, its plot,
and sentences whose every number is computed here from the runs, none typed by hand.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from analysis.plots import bar_chart, curves_chart, loss_curves
from analysis.runs import load_runs, resolved_config
from analysis.summarize import (
    ALPHA,
    BASELINE,
    compare,
    default_value,
    one_factor_tables,
    read_folders,
    render,
    with_labels,
)
from msa_ablate.metrics import SCORE_NAMES

# The handout's questions 2.1-2.5, one config group each; their options come from the runs.
QUESTIONS = {"encoder": "2.1", "layernorm": "2.2", "modalities": "2.3", "loss": "2.4", "fusion": "2.5"}


Q3_METRICS = ("Corr", "Non0_acc_2", "Non0_F1_score", "Mult_acc_7", "MAE")


def fmt(mean: float, std: float) -> str:
    return f"{mean:.3f} ± {std:.3f}" if not math.isnan(std) else f"{mean:.3f}"


def verdict(table: pd.DataFrame, metric: str) -> str:
    """Sentences on a one-factor table: the best option and every difference from the baseline."""
    base = table[table.baseline]
    if base.empty:
        return "The sweep has no baseline run for this question, so no paired comparison is made."
    b = base.iloc[0]
    lines = [f"Baseline {metric}: {fmt(b[f'{metric}_mean'], b[f'{metric}_std'])} over {b.n} seeds."]
    for label, row in table[~table.baseline].iterrows():
        if math.isnan(row.p_t):
            test = f"no test: {row.n_paired} shared seed(s)"
        else:
            sig = "significant" if row.p_t < ALPHA else "not significant"
            p = "p < 0.001" if row.p_t < 0.001 else f"p = {row.p_t:.3f}"
            test = f"paired t-test {p} over {row.n_paired} seeds, {sig} at {ALPHA}"
        lines.append(f"- `{label}`: {fmt(row[f'{metric}_mean'], row[f'{metric}_std'])}, Δ {row.delta:+.3f} ({test}).")
    best = table.index[0]
    lines.append(f"Best by mean {metric}: `{best}`." if best != BASELINE else
                 f"No option beats the baseline's mean {metric}.")
    return "\n".join(lines)


def question_1(runs: pd.DataFrame, plots: Path) -> str:
    base = with_labels(runs)[0]
    base = base[(base.config == BASELINE) & (base.status == "completed")]
    if base.empty:
        return "No completed baseline runs."
    curves = [c for c in map(loss_curves, base.path) if {"train", "valid"} <= set(c)]
    if not curves:
        return "The baseline runs hold no TensorBoard loss curves (event files missing)."
    train = pd.DataFrame({i: c["train"] for i, c in enumerate(curves)}).mean(axis=1)
    valid = pd.DataFrame({i: c["valid"] for i, c in enumerate(curves)}).mean(axis=1)
    chart = curves_chart(base, "baseline", plots / "q1_curves_baseline.png")
    low = int(valid.idxmin())
    facts = (f"Mean over {len(base)} seed(s) of the baseline: the training loss goes from {train.iloc[0]:.3f} "
             f"(epoch 1) to {train.iloc[-1]:.3f} (epoch {len(train)}); the validation loss is lowest at epoch "
             f"{low} ({valid.min():.3f}) and ends at {valid.iloc[-1]:.3f}. The best epoch by validation Corr "
             f"is {base.best_epoch.mean():.1f} on average.")
    if low < len(valid) and valid.iloc[-1] > valid.min() and train.iloc[-1] < train.iloc[low - 1]:
        facts += (f" After epoch {low} the two curves part: the training loss keeps falling by "
                  f"{train.iloc[low - 1] - train.iloc[-1]:.3f} while the validation loss rises by "
                  f"{valid.iloc[-1] - valid.min():.3f}. The model fits its training clips (their noise "
                  "included) ever more closely, and that does not carry over to unseen clips: it "
                  "overfits, which is why the epoch is chosen on validation.")
    return "\n".join([f"![learning curves]({chart.relative_to(plots.parent)})", "", facts, "",
                      "The model graph is in each run's TensorBoard events (`tensorboard --logdir multirun`, "
                      "tab Graphs)."])


def settings_changed(labelled: pd.DataFrame, label: str) -> str:
    """Every config value of ``label``'s runs that the baseline's runs do not share, beyond the
    group choices the label already names: what a preset sets besides them (model.input_dropout)."""
    first = {c: resolved_config(labelled[labelled.config == c].path.iloc[0]) for c in (label, BASELINE)}
    named = tuple(f"{choice.split('=')[0]}." for choice in label.split())
    changed = {k: v for k, v in first[label].items()
               if first[BASELINE].get(k, "absent") != v and not k.startswith(named)}
    return ", ".join(f"`{k}={v}`" for k, v in changed.items()) or "nothing"


def question_3(folders: list[Path], plots: Path, metric: str) -> str:
    """The improved model against the baseline, from a `+experiment=improved` sweep."""
    runs = load_runs(folders)
    by_metric = {m: compare(runs, metric=m) for m in dict.fromkeys((metric, *Q3_METRICS))}
    table = by_metric[metric]
    if not (table.baseline & (table.n > 0)).any() or (table.n > 0).sum() < 2:
        return f"{', '.join(map(str, folders))} holds no completed baseline-and-improved pair of configurations."
    table = table[table.n > 0]
    chart = bar_chart(table, metric, "improved", plots / f"q3_improved_{metric}.png")
    lines = [render(table, metric, "markdown"), "", f"![improved]({chart.relative_to(plots.parent)})", ""]
    labelled = with_labels(runs)[0]
    cost = labelled[labelled.status == "completed"].groupby("config")[["train_seconds", "n_params"]].mean()
    base_seconds, base_params = cost.loc[BASELINE]
    for label in table.index[~table.baseline]:
        deltas = []
        for m in Q3_METRICS:
            compared = by_metric[m]
            row = compared.loc[label]
            p = "p < 0.001" if row.p_t < 0.001 else f"p = {row.p_t:.3f}"
            deltas.append(f"{m} {fmt(row[f'{m}_mean'], row[f'{m}_std'])} (Δ {row.delta:+.3f}, paired t-test {p})")
        seconds, params = cost.loc[label]
        lines.append(f"- `{label}` also sets: {settings_changed(labelled, label)}.")
        lines.append(f"- `{label}` against the baseline over {table.loc[label].n_paired} shared seeds: "
                     + "; ".join(deltas) + f". Training time {seconds:.1f} s against {base_seconds:.1f} s "
                     f"({seconds / base_seconds:.2f}x); {int(params):,} parameters against {int(base_params):,}.")
    return "\n".join(lines)


def report(folders: list[Path], out: Path, metric: str = "Corr", improved: list[Path] | None = None) -> Path:
    runs = load_runs(folders)
    plots = out / "report_plots"
    plots.mkdir(parents=True, exist_ok=True)
    status = runs.status.value_counts().to_dict()
    parts = [
        "# MSA ablation study: report",
        "",
        f"Generated by `python analysis/report.py {' '.join(map(str, folders))}` from {len(runs)} runs "
        f"({status}). Test-split metrics, mean ± sample std over seeds; each option is compared with the "
        f"baseline by a paired t-test over the seeds both share. Every number below is computed from the runs.",
        "",
        "## 1. Training and validation loss (TensorBoard)",
        "",
        question_1(runs, plots),
    ]
    tables = one_factor_tables(runs, metric=metric)
    for factor, number in QUESTIONS.items():
        if factor not in tables:
            parts += ["", f"## {number}. {factor.capitalize()}", "", "Not in these sweeps."]
            continue
        table = tables[factor]
        options = [label.partition("=")[2] for label in table.index if label != BASELINE]
        parts += ["", f"## {number}. {factor.capitalize()}: the handout's {default_value(factor)} against "
                  f"{', '.join(sorted(options))}", ""]
        chart = bar_chart(table, metric, factor, plots / f"q{number}_{factor}_{metric}.png")
        parts += [render(table, metric, "markdown"), "", f"![{factor}]({chart.relative_to(out)})", "",
                  verdict(table, metric)]
    parts += ["", "## 3. A better model", ""]
    if improved:
        parts += [f"From `python -m msa_ablate -m +experiment=improved` ({', '.join(map(str, improved))}); "
                  "the model is described in the README (section \"The improved model\").", "",
                  question_3(improved, plots, metric)]
    else:
        parts.append("Not in this report: pass the `+experiment=improved` sweep with --improved.")
    path = out / "REPORT.md"
    path.write_text("\n".join(parts) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path, help="sweep folders (default: newest under multirun/)")
    parser.add_argument("--out", type=Path, help="folder for REPORT.md and its plots (default: first folder)")
    parser.add_argument("--metric", default="Corr", choices=SCORE_NAMES)
    parser.add_argument("--improved", type=Path, action="append", default=[],
                        help="a +experiment=improved sweep folder, for question 3")
    args = parser.parse_args(argv)
    try:
        folders, _ = read_folders(args.folders)
        if args.improved:
            read_folders(args.improved)
    except FileNotFoundError as e:
        parser.error(str(e))
    print(f"wrote {report(folders, args.out or folders[0], args.metric, args.improved)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
