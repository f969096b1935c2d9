"""REPORT.md's sections, one function each: the numbers from the tables (analysis.tables,
analysis.robustness), the tables and plots as analysis.render and analysis.plots make them, and
the words from templates/report.yaml."""

from __future__ import annotations

import math
from importlib.resources import files
from pathlib import Path

import pandas as pd
import yaml
from tabulate import tabulate

from analysis.labels import one_factor, with_labels
from analysis.plots import bar_chart, curves, curves_chart
from analysis.published import is_synthetic, preset_of
from analysis.render import beside_lines, display, legend, measured_on, p_text, render, robustness_text
from analysis.robustness import robustness_table, usable
from analysis.stats import ALPHA
from analysis.stats import adjust as adjusted
from analysis.tables import beside_published, compare, cost, undefined
from msa_ablate.metrics import LOWER_IS_BETTER

WORDS = yaml.safe_load((files("analysis") / "templates" / "report.yaml").read_text(encoding="utf-8"))
QUESTIONS = WORDS["question_2"]["questions"]  # the handout's questions 2.1-2.5, one config group each
Q3_METRICS = ("Corr", "Non0_acc_2", "Non0_F1_score", "Mult_acc_7", "MAE")


def fmt(mean: float, std: float) -> str:
    return f"{mean:.3f} ± {std:.3f}" if not math.isnan(std) else f"{mean:.3f}"


def header(runs: pd.DataFrame, adjust: str) -> list[str]:
    """What the report is computed from: its runs, data, code, seeds, statistics and commands."""
    words = WORDS["header"]
    synthetic = runs.data.map(is_synthetic).all()
    commits = ", ".join(sorted(c for c in runs.commit.unique() if c)) or words["no_commit"]
    lines = [words["title"], "", words["intro"].format(runs=len(runs)), "",
             words["data"].format(data=", ".join(f"`{d}`" for d in sorted(runs.data.unique())),
                                  synthetic=words["synthetic"] if synthetic else ""),
             words["code"].format(commits=commits),
             words["seeds"].format(seeds=", ".join(map(str, sorted(runs.seed.dropna().astype(int).unique())))),
             words["statistics"].format(legend=legend(adjust), status=runs.status.value_counts().to_dict()),
             words["commands"], ""]
    lines += [words["command"].format(command=c) for c in dict.fromkeys(runs.command) if c]
    return lines


def question_1(study: pd.DataFrame, base: str | None, plots: Path, out: Path) -> list[str]:
    """The baseline's learning curves, and where they part."""
    words = WORDS["question_1"]
    lines = ["", words["title"], ""]
    if base is None:
        return [*lines, words["no_baseline"]]
    runs = study[(study.config == base) & (study.status == "completed")]
    histories = [curves(h) for h in runs.history if h]
    if not histories:
        return [*lines, words["no_history"]]
    train = pd.DataFrame({i: c["train"] for i, c in enumerate(histories)}).mean(axis=1)
    valid = pd.DataFrame({i: c["valid"] for i, c in enumerate(histories)}).mean(axis=1)
    chart = curves_chart(runs, "the baseline", plots / "q1_curves_baseline.png")
    low = int(valid.idxmin())
    facts = words["curves"].format(seeds=len(histories), train_first=train.iloc[0], train_last=train.iloc[-1],
                                   epochs=len(train), low=low, valid_low=valid.min(), valid_last=valid.iloc[-1],
                                   best_epoch=runs.best_epoch.mean())
    if low < len(valid) and valid.iloc[-1] > valid.min() and train.iloc[-1] < train.iloc[low - 1]:
        facts += " " + words["overfits"].format(low=low, train_fall=train.iloc[low - 1] - train.iloc[-1],
                                                valid_rise=valid.iloc[-1] - valid.min())
    return [*lines, words["chart"].format(path=chart.relative_to(out)), "", facts, "", words["graph"]]


def verdict(table: pd.DataFrame, metric: str, adjust: str) -> str:
    """Sentences on a one-factor table: each option against the baseline, and the best."""
    words = WORDS["verdict"]
    base = table[table.baseline]
    if base.empty or "delta" not in table:
        return words["no_baseline"]
    b = base.iloc[0]
    lines = [words["baseline"].format(metric=metric, value=fmt(b[f"{metric}_mean"], b[f"{metric}_std"]), n=b.n)]
    for label, row in table[~table.baseline].iterrows():
        test = words["no_test"].format(note=row.note) if math.isnan(row.p) else words["test"].format(
            low=row.low, high=row.high, p=p_text(row.p), n_paired=int(row.n_paired), adjust=adjust,
            p_adjusted=p_text(row.p_adjusted), alpha=ALPHA,
            significant=words["significant" if row.p_adjusted < ALPHA else "not_significant"])
        lines.append(words["option"].format(label=label, value=fmt(row[f"{metric}_mean"], row[f"{metric}_std"]),
                                            delta=row.delta, test=test))
    best = table.index[0]  # described, not chosen: the test split chooses nothing
    lines.append(words["best"].format(metric=metric, label=best) if best != base.index[0] else
                 words["none_better"].format(metric=metric))
    return "\n".join(lines)


def question_2(study: pd.DataFrame, base: str, factor: str, plots: Path, out: Path, metric: str, adjust: str,
               synthetic: bool) -> list[str]:
    """One factor varied alone: its table, bar chart and verdict; what the built-in data implies for it."""
    words, number = WORDS["question_2"], QUESTIONS[factor]["number"]
    subset = one_factor(study, base, factor)
    if subset.config.nunique() < 2:
        return ["", words["absent_title"].format(number=number, factor=factor.capitalize()), "", words["absent"]]
    table = compare(subset, metric=metric, baseline=base, adjust=adjust)
    handout = subset[subset.config == base].choices.iloc[0].get(factor)
    options = sorted(label.partition("=")[2] for label in table.index if label != base)
    chart = bar_chart(table, metric, "test", factor, plots / f"q{number}_{factor}_{metric}.png")
    title = words["title"].format(number=number, factor=factor.capitalize(), handout=handout,
                                  options=", ".join(options))
    return ["", title, "", *([QUESTIONS[factor]["synthetic"], ""] if synthetic else []),
            render(table, metric, "markdown", adjust), "",
            words["chart"].format(factor=factor, path=chart.relative_to(out)), "", verdict(table, metric, adjust)]


def question_3(improved: pd.DataFrame, plots: Path, out: Path, adjust: str, designed_on: str) -> list[str]:
    """The improved model against the baseline on every metric, one table per data draw: the draws
    it was not designed on first."""
    words = WORDS["question_3"]
    lines = ["", words["title"], "", words["intro"].format(designed_on=designed_on)]
    if improved.empty:
        return [*lines, words["absent"]]
    draws = sorted(improved.data.unique(), key=lambda d: (designed_on.replace("data.", "") in d, d))
    for i, draw in enumerate(draws):
        runs = improved[improved.data == draw]
        labelled, base, _ = with_labels(runs)
        designed = designed_on.replace("data.", "") in draw
        lines += ["", words["designed_on" if designed else "not_designed_on"].format(data=draw), ""]
        if base is None or labelled.config.nunique() < 2:
            lines.append(words["no_pair"])
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
        lines += ["", words["cost"].format(label=other, n_paired=int(tables["Corr"].loc[other, "n_paired"]),
                                           seconds=seconds, base_seconds=base_seconds, ratio=seconds / base_seconds,
                                           params=int(params), base_params=int(base_params))]
        chart = bar_chart(tables["Corr"], "Corr", "test", f"question 3, {draw}", plots / f"q3_improved_{i + 1}.png")
        lines += ["", words["chart"].format(path=chart.relative_to(out))]
    return lines


def most_graceful(table: pd.DataFrame, metric: str, adjust: str) -> str:
    """One sentence on the robustness table: the configuration with the best metric with text
    missing, the one whose metric degrades least from clean there, and the one with the best
    effective robustness under text drop (the baseline's own is 0)."""
    words, lower = WORDS["robustness"], metric in LOWER_IS_BETTER
    extreme = words["lowest" if lower else "highest"]
    missing = table[(table.perturbation == "missing") & (table.target == "text") & (table.n > 0)].set_index("config")
    if missing.empty:
        return words["no_missing"]

    def best(values: pd.Series) -> str:
        return values.idxmin() if lower else values.idxmax()

    kept, least = best(missing.value_mean), best(missing.change_mean)
    first = words["missing"].format(label=kept, extreme=extreme, metric=metric, n=missing.n[kept],
                                    value=fmt(missing.value_mean[kept], missing.value_std[kept]))
    first += (words["kept_degrades_least"].format(change=missing.change_mean[kept]) if least == kept else
              words["degrades_least"].format(label=least, change=missing.change_mean[least], n=missing.n[least]))
    drop = table[(table.perturbation == "drop") & (table.target == "text") & ~table.baseline]
    drop = drop[drop.er.notna()].set_index("config") if "er" in drop else drop.iloc[:0]
    if drop.empty:
        return words["no_drop"].format(missing=first)
    top = best(drop.er)
    r = drop.loc[top]
    test = words["test"].format(p=p_text(r.p), adjust=adjust, p_adjusted=p_text(r.p_adjusted)) \
        if not math.isnan(r.p) else r.note
    er = f"ER {r.er:+.3f}" + ("" if math.isnan(r.er_std) else f" ± {r.er_std:.3f}")
    graceful = r.er < 0 if lower else r.er > 0
    second = words["graceful" if graceful else "none_graceful"].format(label=top, extreme=extreme, er=er,
                                                                      n_paired=int(r.n_paired), test=test)
    return words["both"].format(missing=first, drop=second)


def robustness(study: pd.DataFrame, base: str | None, metric: str, adjust: str) -> list[str]:
    """The Robustness section, where the study's runs have robustness.json; nothing where none has."""
    if not study[study.status == "completed"].robustness.map(bool).any():
        return []
    runs, notes = usable(study)
    lines = ["", WORDS["robustness"]["title"], ""]
    if runs.empty:
        return [*lines, robustness_text(None, notes, metric, "markdown", adjust)]
    table = robustness_table(runs, base, metric, adjust)
    return [*lines, robustness_text(table, notes, metric, "markdown", adjust), "", most_graceful(table, metric, adjust)]


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
    words = WORDS["published"]
    lines = ["", words["title"], "", words["intro"].format(metric=metric)]
    draws = sorted(runs.data.unique())
    for draw in draws:
        labelled, base, _ = with_labels(runs[runs.data == draw])
        names = labelled.config.map(lambda label: preset_of(label) or label)
        if names.nunique() == labelled.config.nunique():  # each preset by its name where that names one row
            labelled, base = labelled.assign(config=names), base and preset_of(base)
        beside, table = beside_published(labelled, "test"), published_table(labelled, base, metric, adjust)
        data = measured_on(beside)
        lines += ["", *([words["data"].format(data=draw), ""] if len(draws) > 1 else []),
                  *([] if base else [words["no_baseline"], ""]),
                  tabulate(table.rename_axis("model"), headers="keys", tablefmt="github", disable_numparse=True), "",
                  words["measured_on"].format(measured_on=f"{data[0].upper()}{data[1:].rstrip('.')}"), "",
                  *beside_lines(beside, "markdown")]
    return lines
