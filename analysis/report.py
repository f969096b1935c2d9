"""REPORT.md of the study: python analysis/report.py STUDY_SWEEP ... [--improved SWEEP ...] [--out DIR]

One section per question of the handout (1, 2.1-2.5, 3), each with its table, its plot, and
sentences whose every number is computed here from the runs; and where the study's runs have
robustness.json, one on their robustness (summarize.py --robustness's table, and a sentence); with
--published (a ``+experiment=published`` sweep), one table of the published models' presets and the
baseline under the one trainer, beside what their sources published.
The report names its data (and, for the built-in data, what its construction implies for each
question), its code (its runs' commits), the commands that made them, the seeds and the
correction for many comparisons.
It writes runs.csv beside REPORT.md, one row per run, from which
``python analysis/report.py --runs DIR/runs.csv --out DIR`` makes the same REPORT.md, byte for byte.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from analysis.plots import bar_chart, curves, curves_chart
from analysis.published import preset_of
from analysis.robustness import robustness_table, usable
from analysis.runs import load_runs, read_runs, write_runs
from analysis.stats import ADJUSTMENTS, ALPHA
from analysis.stats import adjust as adjusted
from analysis.summarize import (
    beside_published,
    compare,
    display,
    legend,
    one_factor,
    p_text,
    read_folders,
    render,
    robustness_text,
    with_labels,
)
from msa_ablate.metrics import LOWER_IS_BETTER, SCORE_NAMES

# The handout's questions 2.1-2.5, one config group each; their options come from the runs.
QUESTIONS = {"encoder": "2.1", "layernorm": "2.2", "modalities": "2.3", "loss": "2.4", "fusion": "2.5"}
Q3_METRICS = ("Corr", "Non0_acc_2", "Non0_F1_score", "Mult_acc_7", "MAE")
# What the built-in data's construction (msa_ablate/data/synthetic.py) implies for each question.
SYNTHETIC = {
    "encoder": "Word order carries sentiment in this data by construction: \"not\" flips the valence of the "
               "word after it, and what precedes a clip's last \"but\" counts a quarter. An encoder that reads "
               "order has something a mean over steps cannot see; how much of it each encoder learns from "
               "1284 clips is what the table measures.",
    "layernorm": "Each audio and vision feature is scaled by a factor drawn between 0.05 and 300 (audio) or "
                 "0.5 and 50 (vision) and shifted, as COVAREP's and FACET's features are, so without the "
                 "input LayerNorm the projections see features of very different sizes.",
    "modalities": "The ranking is built in: the latent sentiment is 0.85 t + 0.5 u, where t is read from the "
                  "words and u only from audio and vision, each of which sees it weakly (0.5 u and 0.4 u, "
                  "plus noise of its own as large) and partly redundantly. So text alone must beat audio or "
                  "vision alone, and dropping text must hurt most; this says how the generator works, not "
                  "how MOSI's modalities compare.",
    "loss": "Labels are means of 3-5 integer ratings (a latent score times 1.4 plus rater noise of sd 0.8, "
            "rounded and clipped to [-3, 3]): their noise is bounded and symmetric, with no gross outliers "
            "for L1 or Huber to guard against.",
    "fusion": "Audio and vision share their signal (both carry u) and add noise of their own, so what a fusion "
              "gains over the text comes from a weak, partly redundant non-verbal signal.",
}


def fmt(mean: float, std: float) -> str:
    return f"{mean:.3f} ± {std:.3f}" if not math.isnan(std) else f"{mean:.3f}"


def verdict(table: pd.DataFrame, metric: str, adjust: str) -> str:
    """Sentences on a one-factor table: each option against the baseline, and the best."""
    base = table[table.baseline]
    if base.empty or "delta" not in table:
        return "These runs have no completed baseline, so no paired comparison is made."
    b = base.iloc[0]
    lines = [f"Baseline {metric}: {fmt(b[f'{metric}_mean'], b[f'{metric}_std'])} over {b.n} seeds."]
    for label, row in table[~table.baseline].iterrows():
        if math.isnan(row.p):
            test = f"no test: {row.note}"
        else:
            significant = "significant" if row.p_adjusted < ALPHA else "not significant"
            test = (f"95% CI [{row.low:+.3f}, {row.high:+.3f}], paired t-test p {p_text(row.p)} "
                    f"over {int(row.n_paired)} seeds, {adjust}-adjusted p {p_text(row.p_adjusted)}: "
                    f"{significant} at {ALPHA}")
        lines.append(f"- `{label}`: {fmt(row[f'{metric}_mean'], row[f'{metric}_std'])}, Δ {row.delta:+.3f} ({test}).")
    best = table.index[0]  # described, not chosen: the test split chooses nothing
    lines.append(f"Highest mean test {metric}: `{best}`." if best != base.index[0] else
                 f"No option's mean test {metric} is above the baseline's.")
    return "\n".join(lines)


def header(runs: pd.DataFrame, adjust: str) -> list[str]:
    commits = ", ".join(sorted(c for c in runs.commit.unique() if c)) or "not recorded"
    synthetic = runs.data.str.startswith("make_synthetic_mosi").all()
    data = ", ".join(f"`{d}`" for d in sorted(runs.data.unique()))
    lines = [
        "# MSA ablation study: report", "",
        f"Every number below is computed from the {len(runs)} runs in [runs.csv](runs.csv) (one row per run: its "
        "configuration, what it changes from the default config, seed, metrics, per-epoch history, provenance). "
        "`python analysis/report.py --runs report/runs.csv --out report` makes this file and its plots from it.", "",
        f"- Data: {data}. " + ("This is the built-in synthetic data (msa_ablate/data/synthetic.py), not MOSI: "
                               "its construction decides part of the answers, and each question below says how."
                               if synthetic else ""),
        f"- Code: commit {commits}.",
        f"- Seeds: {', '.join(map(str, sorted(runs.seed.dropna().astype(int).unique())))}.",
        f"- Statistics: test-split metrics; {legend(adjust)}. Runs: {runs.status.value_counts().to_dict()}.",
        "- Commands:", "",
    ]
    lines += [f"      {c}" for c in dict.fromkeys(runs.command) if c]
    return lines


def question_1(study: pd.DataFrame, base: str, plots: Path, out: Path) -> str:
    runs = study[(study.config == base) & (study.status == "completed")]
    histories = [curves(h) for h in runs.history if h]
    if not histories:
        return "No completed baseline run has a history."
    train = pd.DataFrame({i: c["train"] for i, c in enumerate(histories)}).mean(axis=1)
    valid = pd.DataFrame({i: c["valid"] for i, c in enumerate(histories)}).mean(axis=1)
    chart = curves_chart(runs, "the baseline", plots / "q1_curves_baseline.png")
    low = int(valid.idxmin())
    facts = (f"Mean over {len(histories)} seed(s) of the baseline: the training loss goes from {train.iloc[0]:.3f} "
             f"(epoch 1) to {train.iloc[-1]:.3f} (epoch {len(train)}); the validation loss is lowest at epoch "
             f"{low} ({valid.min():.3f}) and ends at {valid.iloc[-1]:.3f}. The best epoch by validation Corr "
             f"is {runs.best_epoch.mean():.1f} on average.")
    if low < len(valid) and valid.iloc[-1] > valid.min() and train.iloc[-1] < train.iloc[low - 1]:
        facts += (f" After epoch {low} the two curves part: the training loss keeps falling by "
                  f"{train.iloc[low - 1] - train.iloc[-1]:.3f} while the validation loss rises by "
                  f"{valid.iloc[-1] - valid.min():.3f}. The model fits its training clips (their noise "
                  "included) ever more closely, and that does not carry over to unseen clips: it "
                  "overfits, which is why the epoch is chosen on validation.")
    return "\n".join([f"![learning curves]({chart.relative_to(out)})", "", facts, "",
                      "The model graph is in each run's TensorBoard events (`tensorboard --logdir multirun`, "
                      "tab Graphs)."])


def question_2(study: pd.DataFrame, base: str, factor: str, plots: Path, out: Path, metric: str, adjust: str,
               synthetic: bool) -> list[str]:
    number = QUESTIONS[factor]
    subset = one_factor(study, base, factor)
    if subset.config.nunique() < 2:
        return ["", f"## {number}. {factor.capitalize()}", "", "Not in these runs."]
    table = compare(subset, metric=metric, baseline=base, adjust=adjust)
    handout = subset[subset.config == base].choices.iloc[0].get(factor)
    options = sorted(label.partition("=")[2] for label in table.index if label != base)
    chart = bar_chart(table, metric, "test", factor, plots / f"q{number}_{factor}_{metric}.png")
    return ["", f"## {number}. {factor.capitalize()}: the handout's {handout} against {', '.join(options)}", "",
            *([SYNTHETIC[factor], ""] if synthetic else []),
            render(table, metric, "markdown", adjust), "", f"![{factor}]({chart.relative_to(out)})", "",
            verdict(table, metric, adjust)]


def question_3(improved: pd.DataFrame, plots: Path, out: Path, adjust: str, designed_on: str) -> list[str]:
    """The improved model against the baseline on every metric, one table per data draw: the draws
    it was not designed on first."""
    if improved.empty:
        return ["Not in this report: pass the `+experiment=improved` sweeps with --improved."]
    lines = []
    draws = sorted(improved.data.unique(), key=lambda d: (designed_on.replace("data.", "") in d, d))
    for i, draw in enumerate(draws):
        runs = improved[improved.data == draw]
        labelled, base, _ = with_labels(runs)
        designed = designed_on.replace("data.", "") in draw
        lines += ["", f"### {'The data it was designed on' if designed else 'Data never used in its design'}: "
                      f"`{draw}`", ""]
        if base is None or labelled.config.nunique() < 2:
            lines.append("These runs hold no completed baseline-and-improved pair.")
            continue
        tables = {m: compare(labelled, metric=m, baseline=base, adjust="none") for m in Q3_METRICS}
        rows = []
        for label in tables["Corr"].index:
            row = {"config": label}
            for m, t in tables.items():
                row[m] = fmt(t.loc[label, f"{m}_mean"], t.loc[label, f"{m}_std"])
            rows.append(row)
        other = next(label for label in tables["Corr"].index if label != base)
        p = pd.Series({m: tables[m].loc[other, "p"] for m in Q3_METRICS})
        p_adj = adjusted(p, adjust)
        delta = {"config": f"Δ [95% CI], p ({adjust} over {len(Q3_METRICS)} metrics)"}
        for m in Q3_METRICS:
            r = tables[m].loc[other]
            delta[m] = (f"{r.delta:+.3f} [{r.low:+.3f}, {r.high:+.3f}], p {p_text(p_adj[m])}" if not math.isnan(r.p)
                        else f"{r.delta:+.3f} ({r.note})")
        shown = pd.DataFrame([*rows, delta]).set_index("config")
        lines.append(shown.to_markdown())
        (seconds, params), (base_seconds, base_params) = cost(labelled).loc[other], cost(labelled).loc[base]
        n_paired = int(tables["Corr"].loc[other, "n_paired"])
        lines += ["", f"`{other}` against the baseline over {n_paired} paired seeds: training time {seconds:.1f} s "
                      f"against {base_seconds:.1f} s ({seconds / base_seconds:.2f}x), {int(params):,} parameters "
                      f"against {int(base_params):,}."]
        chart = bar_chart(tables["Corr"], "Corr", "test", f"question 3, {draw}", plots / f"q3_improved_{i + 1}.png")
        lines += ["", f"![improved]({chart.relative_to(out)})"]
    return lines


def cost(labelled: pd.DataFrame) -> pd.DataFrame:
    """Each configuration's mean training time (s) and parameters over its completed runs."""
    return labelled[labelled.status == "completed"].groupby("config")[["train_seconds", "n_params"]].mean()


def undefined(labelled: pd.DataFrame, table: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """For each configuration of ``table`` and each metric, on how many of its n completed seeds
    the test metric is undefined (NaN: Corr of constant predictions); a seed run twice counts once."""
    done = labelled[labelled.status == "completed"]
    per_seed = done.groupby(["config", "seed"])[[f"test_{m}" for m in metrics]].mean()
    defined = per_seed.notna().groupby(level="config").sum().reindex(table.index, fill_value=0)
    return defined.rsub(table.n, axis=0).set_axis(metrics, axis=1).astype(int)


def published_table(labelled: pd.DataFrame, base: str | None, metric: str, adjust: str) -> pd.DataFrame:
    """The baseline, then each configuration as the sweep ran them: mean ± std over seeds of the
    handout's metrics, each compared with the baseline paired by seed on ``metric``, seconds per run
    and parameters. A metric undefined on some seeds is over the others, and says so."""
    table = compare(labelled, metric=metric, baseline=base, adjust=adjust)
    table = table.loc[list(dict.fromkeys([*([base] if base else []), *labelled.config]))]
    shown = display(table, metric, adjust)
    metrics = [m for m in dict.fromkeys([*Q3_METRICS, metric]) if m in shown]
    tests = list(shown.columns[shown.columns.get_loc("paired"):].drop("note", errors="ignore")) if base else []
    missing = undefined(labelled, table, metrics)
    notes = shown.note.copy() if "note" in shown else pd.Series("", index=shown.index)
    for label, row in missing.iterrows():
        n, gaps = table.n[label], row[row > 0]
        for m, k in gaps.items():
            shown.loc[label, m] = "undefined" if k == n else f"{shown.loc[label, m]} (n={n - k})"
        said = [f"{m} undefined on {k} of {n} seeds" + (" (constant predictions)" if m == "Corr" else "")
                for m, k in gaps.items()]
        if row[metric] or (base and missing.loc[base, metric]):  # paired over the seeds it is defined on both sides
            notes[label] = notes[label].replace(" in common", f" with {metric} defined in common")
        notes[label] = "; ".join(filter(None, [*said, notes[label]]))
    seconds, params = cost(labelled).reindex(table.index).T.to_numpy()
    return shown[["n", *metrics, *tests]].assign(**{
        "s per run": ["-" if math.isnan(s) else f"{s:.1f}" for s in seconds],
        "parameters": ["-" if math.isnan(p) else f"{int(p):,}" for p in params],
        **({"note": notes} if notes.ne("").any() else {})})


def published(runs: pd.DataFrame, metric: str, adjust: str) -> list[str]:
    """The published models' section, for each data draw of the ``+experiment=published`` sweeps'
    runs: their table (each preset named by its name), what they were on, and their sources' numbers
    beside them (summarize.py --published's table); nothing where there are none."""
    if runs.empty:
        return []
    lines = ["", "## Published models under one trainer", "",
             "The `+experiment=published` runs, on the test split, with the statistics above: Δ against the "
             f"baseline of the same data, paired by seed, on {metric}; s per run, the mean training time in seconds; "
             "parameters, the model's; (n=k) in a cell, the seeds where that metric is defined."]
    draws = sorted(runs.data.unique())
    for draw in draws:
        labelled, base, _ = with_labels(runs[runs.data == draw])
        names = labelled.config.map(lambda label: preset_of(label) or label)
        if names.nunique() == labelled.config.nunique():  # each preset by its name where that names one row
            labelled, base = labelled.assign(config=names), base and preset_of(base)
        data, *beside = beside_published(labelled, "test", "markdown").split("\n")
        lines += ["", *([f"### `{draw}`", ""] if len(draws) > 1 else []),
                  *([] if base else ["No baseline (the default configuration) among these runs: no paired comparison.",
                                     ""]),
                  tabulate(published_table(labelled, base, metric, adjust).rename_axis("model"), headers="keys",
                           tablefmt="github", disable_numparse=True), "",
                  f"{data[0].upper()}{data[1:].rstrip('.')}. Each preset keeps its source's recipe and selection rule "
                  "(conf/preset/; the baseline, the handout's), so the rows differ in more than the model "
                  "(`trainer.select_metric=Corr` on the sweep puts all on one rule).", "", *beside]
    return lines


def most_graceful(table: pd.DataFrame, metric: str, adjust: str) -> str:
    """One sentence on the robustness table: the configuration with the best metric with text
    missing, the one whose metric degrades least from clean there, and the one with the best
    effective robustness under text drop (the baseline's own is 0)."""
    lower = metric in LOWER_IS_BETTER
    missing = table[(table.perturbation == "missing") & (table.target == "text") & (table.n > 0)].set_index("config")
    if missing.empty:
        return "No configuration here has a defined test metric with text missing."

    def best(values: pd.Series) -> str:
        return values.idxmin() if lower else values.idxmax()

    kept, least = best(missing.value_mean), best(missing.change_mean)
    words = f"the {'lowest' if lower else 'highest'} {metric}"
    first = (f"With text missing, `{kept}` keeps {words} ({fmt(missing.value_mean[kept], missing.value_std[kept])} "
             f"over {missing.n[kept]} seeds)")
    first += (f" and degrades least from clean (Δ {missing.change_mean[kept]:+.3f})" if least == kept else
              f", and `{least}` degrades least from clean (Δ {missing.change_mean[least]:+.3f} over "
              f"{missing.n[least]} seeds)")
    drop = table[(table.perturbation == "drop") & (table.target == "text") & ~table.baseline]
    drop = drop[drop.er.notna()].set_index("config") if "er" in drop else drop.iloc[:0]
    if drop.empty:
        return f"{first}; no configuration's text-drop curve is paired by seed with the baseline's."
    top = best(drop.er)
    r = drop.loc[top]
    test = f"p {p_text(r.p)}, {adjust}-adjusted {p_text(r.p_adjusted)}" if not math.isnan(r.p) else r.note
    er = f"ER {r.er:+.3f}" + ("" if math.isnan(r.er_std) else f" ± {r.er_std:.3f}")
    graceful = r.er < 0 if lower else r.er > 0
    second = (f"under text drop, `{top}` has the {'lowest' if lower else 'highest'} effective robustness against "
              f"the baseline ({er} over {int(r.n_paired)} paired seeds; {test})" if graceful else
              f"under text drop, no configuration degrades more gracefully than the baseline (the closest, "
              f"`{top}`: {er} over {int(r.n_paired)} paired seeds; {test})")
    return f"{first}; {second}."


def robustness(study: pd.DataFrame, base: str | None, metric: str, adjust: str) -> list[str]:
    """The Robustness section, where the study's runs have robustness.json; nothing where none has."""
    if not study[study.status == "completed"].robustness.map(bool).any():
        return []
    runs, notes = usable(study)
    lines = ["", "## Robustness: the study's models on a perturbed test split", ""]
    if runs.empty:
        return [*lines, robustness_text(None, notes, metric, "markdown", adjust)]
    table = robustness_table(runs, base, metric, adjust)
    return [*lines, robustness_text(table, notes, metric, "markdown", adjust), "", most_graceful(table, metric, adjust)]


def report(runs: pd.DataFrame, out: Path, metric: str = "Corr", adjust: str = "holm",
           designed_on: str = "data.seed=0") -> Path:
    """``runs``: the study's, question 3's and the published models', told apart by their ``part`` column."""
    plots = out / "report_plots"
    plots.mkdir(parents=True, exist_ok=True)
    study, base, _ = with_labels(runs[runs.part == "study"])
    synthetic = study.data.str.startswith("make_synthetic_mosi").all()
    parts = [*header(runs, adjust), "", "## 1. Training and validation loss (TensorBoard)", "",
             question_1(study, base, plots, out) if base else "No baseline among the study's runs."]
    for factor in QUESTIONS:
        parts += question_2(study, base, factor, plots, out, metric, adjust, synthetic) if base else []
    parts += ["", "## 3. A better model: `+preset=improved` against the baseline", "",
              "The model and how it was chosen (on the validation split) are in docs/design.md. It was designed "
              f"on `{designed_on}`, and its test comparison was looked at while designing it; the first table is "
              "on a draw of the data chosen before its runs and never used in its design, the headline.",
              *question_3(runs[runs.part == "improved"], plots, out, adjust, designed_on),
              *robustness(study, base, metric, adjust), *published(runs[runs.part == "published"], metric, adjust)]
    path = out / "REPORT.md"
    path.write_text("\n".join(parts) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path, help="the study's sweep folders (default: the newest sweep)")
    parser.add_argument("--improved", type=Path, action="append", default=[],
                        help="a +experiment=improved sweep folder, for question 3 (repeat for other data)")
    parser.add_argument("--published", type=Path, action="append", default=[],
                        help="a +experiment=published sweep folder: the published models under one trainer (repeat)")
    parser.add_argument("--runs", type=Path, help="a runs.csv this wrote, instead of folders")
    parser.add_argument("--out", type=Path, help="folder for REPORT.md, runs.csv and the plots (default: first folder)")
    parser.add_argument("--metric", default="Corr", choices=SCORE_NAMES)
    parser.add_argument("--adjust", choices=ADJUSTMENTS, default="holm")
    parser.add_argument("--designed-on", default="data.seed=0",
                        help="the data setting the improved model was designed on")
    args = parser.parse_args(argv)
    try:
        if args.runs:
            runs = read_runs(args.runs)
            out = args.out or args.runs.parent
        else:
            folders, study = read_folders(args.folders)
            improved = load_runs(args.improved) if args.improved else study.iloc[:0]
            published_runs = [load_runs(args.published).assign(part="published")] if args.published else []
            runs = pd.concat([study.assign(part="study"), improved.assign(part="improved"), *published_runs],
                             ignore_index=True)
            out = args.out or folders[0]
            out.mkdir(parents=True, exist_ok=True)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    written = [report(runs, out, args.metric, args.adjust, args.designed_on)]
    if not args.runs:
        written.append(write_runs(runs, out / "runs.csv"))
    print(f"wrote {', '.join(map(str, written))} and {out / 'report_plots'}/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
