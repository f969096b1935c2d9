"""Labelled runs (analysis.labels) -> numeric tables: each configuration's metrics over seeds,
compared with the baseline's by seed; one such table per factor varied alone; the configurations
that re-implement a published model beside their sources' numbers; what a run costs. Numbers
only: analysis.render writes them for people."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis.labels import BASELINE, describe, factors, one_factor, with_labels
from analysis.published import METRICS, SHARED, dataset_of, matches
from analysis.published import load as load_published
from analysis.stats import adjust as adjusted
from analysis.stats import paired
from msa_ablate.config import WHERE_IT_RUNS
from msa_ablate.metrics import LOWER_IS_BETTER

# The columns shown: the handout's metrics for MOSI-like labels, MMSA's for CH-SIMS-like ones
SHOWN = {"mosi": ["Non0_acc_2", "Non0_F1_score", "Mult_acc_5", "Mult_acc_7", "MAE", "Corr"],
         "sims": ["Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score", "MAE", "Corr"]}
HAS0_METRICS = ["Has0_acc_2", "Has0_F1_score"]
# The metrics a published row can be compared on, under this project's names
PUBLISHED_METRICS = [*METRICS["Non0"].values(), *METRICS["Has0"].values(), *SHARED.values()]


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


@dataclass
class Beside:
    """The configurations that re-implement a published model (a preset, or the handout's baseline),
    beside what their sources reported on the same dataset."""
    split: str
    measured: pd.DataFrame  # per configuration: seeds, and per metric M over them M_mean, M_std, M_n (defined on)
    published: pd.DataFrame  # published.csv's rows for them, each with config: the configuration it is beside
    sources: dict[str, int]  # each source's footnote number
    data: list[str]  # the data the measured runs were on
    presets: list[str]  # every preset with published results (said where no configuration matches)


def beside_published(runs: pd.DataFrame, split: str) -> Beside:
    """``runs`` labelled: each configuration's mean ± std over seeds of the metrics published rows
    compare with, and the rows of published.csv for its preset and dataset."""
    table = load_published()
    done = runs[runs.status == "completed"]
    measured, published, sources, data = [], [], {}, []
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
        row = {"config": label, "seeds": seeds.ngroups}
        for m in PUBLISHED_METRICS:
            values = seeds[f"{split}_{m}"].mean()  # a seed run twice counts once
            row |= {f"{m}_mean": values.mean(), f"{m}_std": values.std(), f"{m}_n": values.count()}
        measured.append(row)
        for source in found.source:
            sources.setdefault(source, len(sources) + 1)
        published.append(found.assign(config=label))
    return Beside(split, pd.DataFrame(measured), pd.concat(published) if published else table.iloc[:0], sources,
                  data, list(dict.fromkeys(table.preset)))


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
