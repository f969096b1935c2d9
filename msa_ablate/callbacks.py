"""Hydra callbacks (listed under ``hydra.callbacks`` in conf/config.yaml)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def exit_if_not_a_folder(key: str, value: str) -> None:
    """One line and exit 2 where a file stands at or above the output folder: Hydra would
    fail on it later with a traceback. (SystemExit, because Hydra turns a callback's
    exception into a warning and goes on.)"""
    path = Path(value)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            print(f"msa_ablate: error: {key}={value}: {p} is a file, not a folder", file=sys.stderr)
            sys.exit(2)


class OutputFolderCheck(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        exit_if_not_a_folder("hydra.run.dir", config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        exit_if_not_a_folder("hydra.sweep.dir", config.hydra.sweep.dir)
