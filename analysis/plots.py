"""PNG plots of a sweep: per varied factor a bar chart (mean +- std over seeds) and
learning curves (train and valid loss per epoch, mean and min-max band over seeds) read
from each run's TensorBoard events."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator  # noqa: E402

from analysis.summarize import compare, held_at_baseline, varying, with_labels  # noqa: E402

CURVES = {"train": "loss/train", "valid": "loss/valid"}


def bar_chart(table: pd.DataFrame, metric: str, title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(table) + 2), 3.6))
    colors = ["tab:orange" if b else "tab:blue" for b in table.baseline]
    ax.bar(range(len(table)), table[f"{metric}_mean"], yerr=table[f"{metric}_std"].fillna(0), color=colors, capsize=4)
    ax.set_xticks(range(len(table)), table.index, rotation=30, ha="right")
    ax.set_ylabel(metric)
    ax.set_title(f"{title}: {metric} (mean ± std over seeds; baseline in orange)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def loss_curves(folder: str) -> dict[str, pd.Series]:
    """Per-epoch train and valid loss of one run, from its event file."""
    acc = EventAccumulator(folder, size_guidance={SCALARS: 0}).Reload()
    tags = set(acc.Tags()["scalars"])
    return {name: pd.Series({e.step: e.value for e in acc.Scalars(tag)}) for name, tag in CURVES.items()
            if tag in tags}


def curves_chart(runs: pd.DataFrame, title: str, path: Path) -> Path | None:
    done = runs[runs.status == "completed"]
    if done.empty:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for (label, group), color in zip(done.groupby("config", sort=False), plt.cm.tab10.colors * 10):
        curves = [loss_curves(p) for p in group.path]
        for ax, name in zip(axes, CURVES):
            frame = pd.DataFrame({i: c[name] for i, c in enumerate(curves) if name in c})
            if frame.empty:
                continue
            ax.plot(frame.index, frame.mean(axis=1), color=color, label=label, marker="o", markersize=2)
            ax.fill_between(frame.index, frame.min(axis=1), frame.max(axis=1), color=color, alpha=0.15)
    for ax, name in zip(axes, CURVES):
        ax.set_title(f"{name} loss per epoch", fontsize=9)
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=7)
    fig.suptitle(f"{title}: mean and min-max over seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_plots(runs: pd.DataFrame, folder: Path, metric: str = "Corr", **kw) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    subsets = {f: held_at_baseline(runs, f) for f in varying(runs)} or {"all": runs}
    written = []
    for factor, held in subsets.items():
        if factor != "all" and held[factor].astype(str).nunique() < 2:
            continue
        written.append(bar_chart(compare(held, metric=metric, **kw), metric, factor, folder / f"bar_{factor}_{metric}.png"))
        written.append(curves_chart(with_labels(held)[0], factor, folder / f"curves_{factor}.png"))
    return [p for p in written if p is not None]
