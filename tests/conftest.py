"""Shared helpers: compose the real configs, run tiny real runs into tmp_path."""

from __future__ import annotations

import copy
import functools
import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from unittest.mock import patch

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

import msa_ablate.config  # noqa: F401  (registers the config schemas, as python -m msa_ablate does)

ROOT = Path(__file__).resolve().parents[1]
# Tiny runs gain nothing from a second thread, and threads spinning on a shared 2-core
# machine slow everything down many times over.
torch.set_num_threads(1)
# No TensorBoard graph: tracing the model costs a third of a tiny run (the graph has a test of its own)
TINY = ["data.scale=0.05", "trainer.epochs=1", "trainer.device=cpu", "trainer.log_graph=false"]

# The modules that take longest, longest first (pytest --durations=0, summed per module): each
# module runs on one worker (--dist loadscope --no-loadscope-reorder), so the workers end together.
SLOWEST_FIRST = ["test_packs", "test_eval", "test_resume", "test_presets", "test_app", "test_launchers",
                 "test_known_answers", "test_options", "test_wrong_results", "test_unaligned"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: each module's own order kept


@functools.cache
def _composed(overrides: tuple[str, ...]) -> DictConfig:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def compose_config(*overrides: str) -> DictConfig:
    """The app's config as `python -m msa_ablate` would compose it, on tiny data (a file of the
    test's own, where the overrides choose one: data=mosi ...). A copy, each composition made
    once per process: composing costs more than a tiny run's training."""
    tiny = [o for o in TINY if not (o.startswith("data.") and any(x.startswith("data=") for x in overrides))]
    return copy.deepcopy(_composed((*tiny, *overrides)))


def run_tiny_records(output_dir: Path, *overrides: str) -> list[dict]:
    """The records of a tiny job (one, or one per seed of a pack), as their metrics.json holds them."""
    from msa_ablate.jobs import run_job

    cfg = compose_config(*overrides)
    choices = {k: v for k, v in cfg.hydra.runtime.choices.items() if not k.startswith("hydra")}
    with open_dict(cfg):
        del cfg["hydra"]  # the app sees the job's config, as under @hydra.main
    default = _composed(())  # as the app composes it: no overrides at all
    return [record.to_json() for record in run_job(cfg, output_dir, choices, default=default)]


def run_tiny(output_dir: Path, *overrides: str) -> dict:
    [record] = run_tiny_records(output_dir, *overrides)
    return record


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m msa_ablate ARGS` as a user types it, in a process of its own: for what only a
    process shows (exit codes with nothing caught, signals, launchers that spawn workers)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "msa_ablate", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


class ScalarRecorder:
    """Stands in for a SummaryWriter: keeps what the trainer logs."""

    def __init__(self) -> None:
        self.scalars: dict[str, list[tuple[int, float]]] = {}

    def add_scalar(self, tag: str, value: float, step: int | None = None) -> None:
        self.scalars.setdefault(tag, []).append((step, value))

    def values(self, tag: str) -> list[float]:
        return [v for _, v in self.scalars[tag]]


@pytest.fixture
def recorder() -> ScalarRecorder:
    return ScalarRecorder()


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def main(*args: str) -> Result:
    """`python -m msa_ablate ARGS` in this process: the same entry (Hydra's command line, the
    one-line errors) without a new interpreter's start-up."""
    from hydra.core.global_hydra import GlobalHydra

    from msa_ablate.__main__ import main as entry
    from msa_ablate.hydra_errors import one_line_errors

    GlobalHydra.instance().clear()
    out, err = io.StringIO(), io.StringIO()
    with patch.object(sys, "argv", ["msa_ablate", *args]), redirect_stdout(out), redirect_stderr(err):
        try:
            with one_line_errors():
                entry()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    GlobalHydra.instance().clear()
    return Result(code, out.getvalue(), err.getvalue())
