"""Errors that are the user's to fix (the entry point prints them as one line and exits 2),
and the checks of single values that raise them."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence


class UserError(ValueError):
    """Bad input; the message is one line naming the file, key or option at fault."""


class DataError(UserError):
    """A data file that cannot be used as MOSI data."""


class ConfigError(UserError):
    """A setting or a combination of options that cannot run."""


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def positive_int(key: str, value: object) -> int:
    if not is_int(value) or value <= 0:
        raise ConfigError(f"{key}={value}: must be a positive integer")
    return value


def positive_number(key: str, value: object) -> float:
    if not is_number(value) or not value > 0:
        raise ConfigError(f"{key}={value}: must be a positive (finite) number")
    return value


def rate(key: str, value: object) -> float:
    """A dropout-like probability: in [0, 1)."""
    if not is_number(value) or not 0 <= value < 1:
        raise ConfigError(f"{key}={value}: must be a number in [0, 1)")
    return value


def each(key: str, value: object, names: Sequence[str], check: Callable[[str, object], object]) -> dict:
    """``key``: one value for all ``names``, or a mapping with a value for each (checked by ``check``)."""
    values = dict(value) if isinstance(value, Mapping) else dict.fromkeys(names, value)
    missing = [n for n in names if n not in values]
    if missing:
        raise ConfigError(f"{key}={value}: has no value for {', '.join(missing)}")
    return {n: check(f"{key}.{n}" if isinstance(value, Mapping) else key, values[n]) for n in names}


def one_of(key: str, value: object, choices: Collection) -> object:
    if value not in choices:
        raise ConfigError(f"{key}={value}: must be one of {sorted(choices)}")
    return value


def suggest(key: str, names: Iterable[str]) -> str:
    """For an unknown ``key`` (dotted): the closest of its siblings' ``names``, or all of them."""
    parent, _, leaf = key.rpartition(".")
    names = sorted(map(str, names))
    close = [f"{parent}.{n}" if parent else n for n in difflib.get_close_matches(leaf, names, n=2, cutoff=0.7)]
    return f"; did you mean {' or '.join(close)}?" if close else f" (there are {', '.join(names)})"
