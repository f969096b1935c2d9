"""What papers and MMSA published for the models this project re-implements (msa_ablate/published.csv).

One row per published result on CMU-MOSI or CMU-MOSEI, as its source reports it: its model, the
preset here that re-implements it (``baseline``: the handout's model, the default configuration),
its text features, alignment and binary-accuracy convention, its Acc2, F1 and Acc7 as fractions,
its MAE and Corr, and where it was read. Each was measured under its source's own features,
protocol and seeds, so it gives scale beside a run, not a score the run should reproduce.
"""

from __future__ import annotations

import re
from importlib.resources import files

import pandas as pd

from analysis.labels import BASELINE

COLUMNS = ["preset", "model", "dataset", "aligned", "text_features", "acc2_convention", "Acc2", "F1", "Acc7", "MAE",
           "Corr", "source"]
# The published columns and the project's metric each is comparable with, by Acc2 convention.
METRICS = {"Non0": {"Acc2": "Non0_acc_2", "F1": "Non0_F1_score"}, "Has0": {"Acc2": "Has0_acc_2", "F1": "Has0_F1_score"}}
SHARED = {"Acc7": "Mult_acc_7", "MAE": "MAE", "Corr": "Corr"}
SYNTHETIC = "make_synthetic_mosi"  # the built-in data's generator, as a runs table's data label starts
PRESET = re.compile(r"\+preset=([^\s(\[]+)")


def load() -> pd.DataFrame:
    """The table shipped with the package (its ``#`` lines say its units and conventions)."""
    with (files("msa_ablate") / "published.csv").open(encoding="utf-8") as f:
        return pd.read_csv(f, comment="#", dtype={"preset": str}).fillna({"preset": ""})


def preset_of(label: str) -> str | None:
    """The preset a configuration label names: ``+preset=NAME``, or ``baseline`` (with its data, where
    configurations on several data are told apart: ``baseline [mosi.pkl ...]``); None for other labels."""
    if label == BASELINE or label.startswith(f"{BASELINE} ["):
        return BASELINE
    found = PRESET.search(label)
    return found.group(1) if found else None


def is_synthetic(data: str) -> bool:
    return data.startswith(SYNTHETIC)


def dataset_of(data: str, choice: str | None = None, metrics: str = "mosi") -> str | None:
    """The dataset whose published numbers runs on ``data`` (a runs table's data label) sit beside:
    the data config chosen, or else the file's (or generator's) name; none for CH-SIMS-like labels
    (scored by other metrics) or a file whose name says neither."""
    if metrics != "mosi":
        return None
    if choice in ("mosi", "mosei"):
        return choice
    name = data.split(" sha256 ")[0].lower()
    return "mosei" if "mosei" in name else "mosi" if "mosi" in name else None  # make_synthetic_mosi: MOSI


def matches(label: str, dataset: str | None, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """The published rows for a configuration label's preset on ``dataset``."""
    table = load() if table is None else table
    preset = preset_of(label)
    return table[(table.preset == preset) & (table.dataset == dataset)] if preset else table.iloc[:0]
