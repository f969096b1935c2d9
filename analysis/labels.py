"""Configurations -> labels: each configuration of a runs table (analysis.runs) named by what it
changes from the baseline, the factors varied alone, and the runs a filter keeps."""

from __future__ import annotations

import json

import pandas as pd

BASELINE = "baseline"


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


def parse_filters(items: list[str]) -> dict[str, list[str]]:
    """``KEY=V1,V2`` items (summarize.py --filter) -> {KEY: [V1, V2]}."""
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
