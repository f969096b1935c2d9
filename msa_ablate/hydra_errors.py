"""The command line's errors as one line and exit 2: Hydra's composition errors (a typo in a key or
an option, a value of the wrong type, a malformed override) with the closest valid names, and the
app's UserErrors. Anything else keeps Hydra's own report (a trimmed traceback, exit 1).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import hydra._internal.utils as hydra_utils
from hydra import compose
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from msa_ablate.errors import UserError, suggest

GROUPS_WITH_OPTIONS = ("data", "encoder", "fusion", "head", "loss")  # options with keys of their own


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def owner_of(full_key: str) -> str:
    """For ``group.key``: the options of ``group`` that have ``key`` (e.g. data.path -> data=mosi)."""
    group, _, key = full_key.partition(".")
    if group not in GROUPS_WITH_OPTIONS or not key or "." in key:
        return ""
    from hydra.core.global_hydra import GlobalHydra

    owners = []
    for option in GlobalHydra.instance().config_loader().get_group_options(group):
        try:
            if key in compose("config", overrides=[f"{group}={option}"])[group].keys():  # MISSING values too
                owners.append(f"{group}={option}")
        except Exception:  # an option that does not compose on its own says nothing here
            continue
    if not owners:
        return ""
    listed = owners[0] if len(owners) == 1 else f"{', '.join(owners[:-1])} and {owners[-1]}"
    return f"; it belongs to {listed} (choose it first, e.g. {owners[0]} {full_key}=...)"


def explain(error: Exception) -> str:
    """One line saying what is wrong, naming the key, option or file, with the closest valid names."""
    cause = error.__cause__
    if isinstance(error, MissingConfigException) and error.options is not None:
        group, _, option = (error.missing_cfg_file or "").rpartition("/")
        return f"{group}={option}: no such option in conf/{group}/{suggest(option, list(error.options))}"
    if isinstance(error, OverrideParseException):
        return f"{error.override}: {first_line(error.message)} (see Hydra's override grammar)"
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and getattr(cause, "parent_node", None) is not None:
        names = [k for k in cause.parent_node.keys() if k != "hydra"]
        return f"{cause.full_key}: no such key{owner_of(cause.full_key) or suggest(cause.full_key, names)}"
    if isinstance(cause, OmegaConfBaseException):
        return f"{getattr(cause, 'full_key', '') or first_line(str(error))}: {first_line(str(cause))}"
    return " ".join(first_line(str(error)).split()) if not isinstance(error, UserError) else str(error)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Wraps Hydra's own error report (hydra._internal.utils.run_and_report, through which every
    `@hydra.main` run passes) so that a user's error is one line and exit 2. HYDRA_FULL_ERROR=1
    still shows the full traceback."""
    report = hydra_utils.run_and_report

    def run_and_report(func: Callable[[], Any]) -> Any:
        def one_line() -> Any:
            try:
                return func()
            except (UserError, HydraException) as e:
                if os.environ.get("HYDRA_FULL_ERROR") == "1":
                    raise
                print(f"msa_ablate: error: {explain(e)}", file=sys.stderr)
                sys.exit(2)

        return report(one_line)

    hydra_utils.run_and_report = run_and_report
    try:
        yield
    finally:
        hydra_utils.run_and_report = report
