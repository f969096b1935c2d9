"""Hydra callbacks (listed under ``hydra.callbacks`` in conf/config.yaml)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def exit_unless_writable(key: str, value: str) -> None:
    """One line and exit 2 where the output folder cannot be made or written (a file in its way,
    a read-only place, a name too long): Hydra would fail there later with a traceback. The check
    leaves nothing behind. (SystemExit, because Hydra turns a callback's exception into a warning.)"""
    shown = value if len(value) <= 120 else f"{value[:60]}...({len(value)} characters)"
    path = Path(value).absolute()
    made: list[Path] = []
    try:
        for p in (path, *path.parents):
            if p.exists() and not p.is_dir():
                print(f"msa_ablate: error: {key}={shown}: {p} is a file, not a folder", file=sys.stderr)
                sys.exit(2)
        made = [p for p in (path, *path.parents) if not p.exists()]  # deepest first
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        print(f"msa_ablate: error: {key}={shown}: cannot write there ({e.strerror or e})", file=sys.stderr)
        sys.exit(2)
    finally:
        for p in made:
            try:
                p.rmdir()
            except OSError:
                break


class OutputFolderCheck(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        exit_unless_writable("hydra.run.dir", config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        exit_unless_writable("hydra.sweep.dir", config.hydra.sweep.dir)
