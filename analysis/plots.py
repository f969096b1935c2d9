"""PNG plots of a sweep: per factor varied alone, a bar chart of a metric (mean ± std over seeds)
and learning curves (train and valid loss per epoch from each run's record, mean and min-max band
over seeds; one row of panels per loss, since MSE, L1 and Huber are not on one scale); and where
asked, the metric against the level of each perturbation of the test split (robustness.json)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from analysis.labels import BASELINE, factors, one_factor  # noqa: E402
from analysis.robustness import level_curves, rank  # noqa: E402
from analysis.tables import compare  # noqa: E402

CURVES = {"train": "train_loss", "valid": "valid_loss"}
# PNGs that differ in nothing but matplotlib's version stamp compare equal
METADATA = {"Software": None}


def bar_chart(table: pd.DataFrame, metric: str, split: str, title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(max(4.5, 0.9 * len(table) + 2), 3.8))
    colors = ["tab:orange" if b else "tab:blue" for b in table.baseline]
    spread = table[f"{metric}_std"].where(table.n > 1)  # no bar of spread from one seed
    ax.bar(range(len(table)), table[f"{metric}_mean"], yerr=spread.fillna(0), color=colors, capsize=4)
    ax.set_xticks(range(len(table)), ["\n".join(textwrap.wrap(c, 28)) for c in table.index], rotation=30,
                  ha="right", fontsize=7)
    ax.set_ylabel(f"{split} {metric}")
    ax.set_title("\n".join(textwrap.wrap(f"{title}: {split} {metric}, mean ± std over seeds (baseline orange)", 60)),
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata=METADATA)
    plt.close(fig)
    return path


def curves(history: list[dict]) -> dict[str, pd.Series]:
    """Per-epoch train and valid loss of one run, from its record's history."""
    frame = pd.DataFrame(history)
    return {name: frame.set_index("epoch")[column] for name, column in CURVES.items() if column in frame}


def curves_chart(runs: pd.DataFrame, title: str, path: Path) -> Path | None:
    done = runs[(runs.status == "completed") & (runs.history.map(len) > 0)]
    if done.empty:
        return None
    losses = sorted(done.loss.fillna("").unique())
    colors = dict(zip(done.config.unique(), plt.cm.tab10.colors * 10))  # one colour a configuration, in every panel
    fig, axes = plt.subplots(len(losses), 2, figsize=(10, 3.6 * len(losses)), squeeze=False)
    for row, loss in zip(axes, losses):
        subset = done[done.loss.fillna("") == loss]
        for label, group in subset.groupby("config", sort=False):
            color = colors[label]
            runs_curves = [curves(h) for h in group.history]
            for ax, name in zip(row, CURVES):
                frame = pd.DataFrame({i: c[name] for i, c in enumerate(runs_curves) if name in c})
                if frame.empty:
                    continue
                ax.plot(frame.index, frame.mean(axis=1), color=color, label=label, marker="o", markersize=2)
                ax.fill_between(frame.index, frame.min(axis=1), frame.max(axis=1), color=color, alpha=0.15)
        for ax, name in zip(row, CURVES):
            ax.set_title(f"{name} loss ({loss or 'loss'}) per epoch", fontsize=9)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        row[0].set_ylabel(loss or "loss")
        if row[1].get_legend_handles_labels()[0]:
            row[1].legend(fontsize=7)
    fig.suptitle("\n".join(textwrap.wrap(f"{title}: mean and min-max over seeds", 90)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata=METADATA)
    plt.close(fig)
    return path


def robustness_chart(frame: pd.DataFrame, base: str | None, metric: str, title: str, path: Path) -> Path:
    """``frame``: analysis.robustness.level_curves of some configurations. One panel per perturbation and
    target: each configuration's mean over seeds against the level, with its min-max band."""
    keys = frame.index.droplevel([2, 3]).unique()
    perturbations = sorted(keys.get_level_values(0).unique(), key=rank)
    targets = sorted(keys.get_level_values(1).unique(), key=rank)
    configs = list(dict.fromkeys(frame.index.get_level_values(2)))
    present, frame = set(frame.index.droplevel(3)), frame.sort_index()
    colors = dict(zip(configs, plt.cm.tab10.colors * 10))  # one colour a configuration, in every panel
    fig, axes = plt.subplots(len(perturbations), len(targets), figsize=(3.2 * len(targets), 2.9 * len(perturbations)),
                             squeeze=False, sharex=True)
    for row, perturbation in zip(axes, perturbations):
        for ax, target in zip(row, targets):
            for config in configs:
                if (perturbation, target, config) not in present:
                    continue
                seeds = frame.loc[(perturbation, target, config)]
                baseline = " (baseline)" if config == base and config != BASELINE else ""
                label = "\n".join(textwrap.wrap(config + baseline, 40))
                ax.plot(seeds.columns, seeds.mean(), color=colors[config], label=label, marker="o", markersize=2)
                ax.fill_between(seeds.columns, seeds.min(), seeds.max(), color=colors[config], alpha=0.15)
            ax.set_title(f"{target} {perturbation}", fontsize=9)
            ax.set_xlabel("level")
        row[0].set_ylabel(metric)
    axes[0][-1].legend(fontsize=6)
    fig.suptitle("\n".join(textwrap.wrap(f"{title}: test {metric} against the perturbation level, mean and min-max "
                                         "over seeds", 90)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata=METADATA)
    plt.close(fig)
    return path


def per_factor(runs: pd.DataFrame, base: str | None) -> dict[str, pd.DataFrame]:
    """The runs of each factor varied alone (with the baseline's), or all of them, as "all", where none is."""
    return {f: one_factor(runs, base, f) for f in factors(runs, base)} or {"all": runs}


def file_name(factor: str) -> str:
    return factor.lstrip("+").replace("/", "_")


def write_robustness_plots(runs: pd.DataFrame, robust: pd.DataFrame, base: str | None, folder: Path,
                           metric: str = "Corr") -> list[Path]:
    """Per factor varied alone in ``runs`` (labelled), a robustness chart of its configurations'
    runs among ``robust`` (analysis.robustness.usable)."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = level_curves(robust, metric)
    written = []
    for factor, subset in per_factor(runs, base).items():
        shown = frame[frame.index.get_level_values(2).isin(subset.config.unique())]
        if len(shown):
            written.append(robustness_chart(shown, base, metric, factor,
                                            folder / f"robustness_{file_name(factor)}_{metric}.png"))
    return written


def write_plots(runs: pd.DataFrame, base: str | None, folder: Path, metric: str = "Corr", split: str = "test",
                **kw) -> list[Path]:
    """``runs`` labelled (analysis.labels.with_labels), ``base`` their baseline's label."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for factor, subset in per_factor(runs, base).items():
        name = file_name(factor)
        table = compare(subset, metric=metric, split=split, baseline=base, **kw)
        written.append(bar_chart(table, metric, split, factor, folder / f"bar_{name}_{metric}.png"))
        written.append(curves_chart(subset, factor, folder / f"curves_{name}.png"))
    return [p for p in written if p is not None]
