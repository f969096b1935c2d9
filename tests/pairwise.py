"""A greedy all-pairs (pairwise) covering set: every pair of options from two different
factors appears in at least one row, in far fewer rows than the full product."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from itertools import combinations

Row = dict[str, str]


def pairs_of(row: Mapping[str, str], order: list[str]) -> set[tuple[str, str, str, str]]:
    keys = [k for k in order if k in row]
    return {(a, row[a], b, row[b]) for a, b in combinations(keys, 2)}


def all_pairs(factors: Mapping[str, list[str]], allowed: Callable[[Row], bool]) -> set[tuple[str, str, str, str]]:
    order = list(factors)
    return {(a, va, b, vb) for a, b in combinations(order, 2) for va in factors[a] for vb in factors[b]
            if allowed({a: va, b: vb})}


def pairwise_rows(factors: Mapping[str, list[str]], allowed: Callable[[Row], bool]) -> list[Row]:
    """Rows covering every allowed pair; each row is itself allowed. Deterministic."""
    order = list(factors)
    uncovered = all_pairs(factors, allowed)
    rows: list[Row] = []
    while uncovered:
        a, va, b, vb = min(uncovered)
        row = {a: va, b: vb}
        for name in order:
            if name not in row:
                candidates = [v for v in factors[name] if allowed({**row, name: v})]
                row[name] = max(candidates, key=lambda v: len(pairs_of({**row, name: v}, order) & uncovered))
        rows.append({k: row[k] for k in order})
        uncovered -= pairs_of(row, order)
    return rows
