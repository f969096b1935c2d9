"""Job folders -> one tidy DataFrame, one row per run; nothing is dropped silently.

A job folder is one holding ``.hydra/`` (Hydra writes it before the job starts) or
``metrics.json``. Its row has every config group's choice, every overridden value, the
seed, the status (``completed``, ``failed``, or ``missing`` where no metrics.json exists:
a job killed or still running) with a reason, and the valid/test metrics.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import yaml

from msa_ablate.metrics import SCORE_NAMES
from msa_ablate.records import NOT_IN_IDENTITY, pack_seeds

# Groups that only say how a run was launched, not what it computes.
META_GROUPS = ("experiment", "hparams_search")


def job_folders(root: Path) -> list[Path]:
    """Every run folder under ``root`` (itself included), in a stable order: each folder with a
    record (an earlier run's, set aside in ``previous/N/``, included), and each job Hydra started
    that has none (a job killed or still running). A seed pack's job folder is no run itself: it
    holds one run per seed of its ``seeds``, in ``seed_N``, whether or not that member has written
    its record (a killed pack's members show as missing, not as nothing)."""
    recorded = {p.parent for p in root.rglob("metrics.json")}
    jobs = {p.parent for p in root.rglob(".hydra")}
    packs = {job: _pack_seeds(job) for job in jobs}
    found = recorded | {job for job in jobs if not packs[job]}
    found |= {job / f"seed_{seed}" for job, seeds in packs.items() for seed in seeds}
    return sorted(found, key=lambda p: [(0, int(s), "") if s.isdigit() else (1, 0, s) for s in p.relative_to(root).parts])


def _yaml(file: Path) -> object:
    """A YAML file's content (None where there is none); a ValueError naming the file where it cannot be read."""
    if not file.exists():
        return None
    try:
        return yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"unreadable {file} ({' '.join(str(e).split())[:160]})") from None


def _pack_seeds(job: Path) -> list[int]:
    """The seeds a job folder trains as a seed pack (trainer.pack_seeds=true), else none."""
    try:
        config = _yaml(job / ".hydra" / "config.yaml")
    except ValueError:
        return []  # the job's own row says why
    return pack_seeds(config) if isinstance(config, dict) else []


def _hydra_record(folder: Path, name: str) -> Path:
    """Hydra's record of the job: in the folder, or for a seed pack's run in the job folder above."""
    own = folder / ".hydra" / name
    return own if own.exists() or not (folder.parent / ".hydra").is_dir() else folder.parent / ".hydra" / name


def resolved_config(folder: Path) -> dict:
    """The job's config (Hydra's .hydra/config.yaml) as flat dotted keys, seeds left out."""
    config = _yaml(_hydra_record(Path(folder), "config.yaml"))
    if not isinstance(config, dict):
        return {}
    flat = pd.json_normalize(config, sep=".").iloc[0].to_dict()
    return {k: v for k, v in flat.items() if k not in ("seed", "seeds")}


def newest_sweep(root: Path = Path("multirun")) -> Path:
    """The most recently written sweep folder (one holding multirun.yaml) under ``root``."""
    sweeps = [p.parent for p in root.rglob("multirun.yaml")]
    if not sweeps:
        raise FileNotFoundError(f"{root}: no sweep found (no multirun.yaml below it)")
    return max(sweeps, key=lambda p: p.stat().st_mtime)


def _overrides(folder: Path) -> dict[str, str]:
    """Non-group command-line overrides of a job (``trainer.lr=1e-4`` -> {'trainer.lr': '1e-4'}),
    except those that do not change what a run computes (``trainer.log_graph=false``)."""
    values = {}
    for item in _yaml(_hydra_record(folder, "overrides.yaml")) or []:
        key, _, value = item.lstrip("+~").partition("=")
        if "." in key and not key.startswith("hydra.") and key not in NOT_IN_IDENTITY:
            values[key] = value
    return values


def _choices(folder: Path) -> dict[str, str]:
    """Config group choices from Hydra's own record, for jobs that wrote no metrics.json."""
    hydra = _yaml(_hydra_record(folder, "hydra.yaml"))
    if not isinstance(hydra, dict):
        return {}
    choices = hydra["hydra"]["runtime"]["choices"]
    return {k: v for k, v in choices.items() if not k.startswith("hydra") and v is not None}


def _seed(folder: Path) -> int | None:
    if folder.name in {f"seed_{s}" for s in _pack_seeds(folder.parent)}:  # a pack member
        return int(folder.name.removeprefix("seed_"))
    config = _yaml(_hydra_record(folder, "config.yaml"))
    return config.get("seed") if isinstance(config, dict) else None


def read_run(folder: Path) -> dict:
    row: dict = {"path": str(folder)}
    file = folder / "metrics.json"
    if file.exists():
        try:
            record = json.loads(file.read_text())
        except json.JSONDecodeError as e:
            record = {"status": "failed", "reason": f"unreadable metrics.json ({e})"}
        if not isinstance(record, dict):
            record = {"status": "failed", "reason": "metrics.json does not hold an object"}
    else:
        record = {"status": "missing", "reason": "no metrics.json: the job was killed or is still running"}
    if record.get("status") == "completed" and not record.get("valid"):
        record = {**record, "status": "failed", "reason": "metrics.json says completed but holds no metrics"}
    try:  # Hydra's record, only where the run's own does not say
        row.update(record.get("choices") or _choices(folder))
        row.update(_overrides(folder))
        row["seed"] = record["seed"] if "seed" in record else _seed(folder)
    except ValueError as e:
        record = {**record, "status": "failed", "reason": str(e)}
    row["status"] = record.get("status", "unknown")
    row["reason"] = record.get("reason", "")
    for key in ("best_epoch", "train_seconds", "n_params", "device"):
        row[key] = record.get(key)
    for split in ("valid", "test"):
        for name in SCORE_NAMES:
            value = (record.get(split) or {}).get(name)
            row[f"{split}_{name}"] = float("nan") if value is None else value
    return row


def load_runs(folders: Iterable[str | Path]) -> pd.DataFrame:
    """One row per job folder found under the given folders (sweeps or single runs)."""
    jobs = dict.fromkeys(job.resolve() for folder in folders for job in job_folders(Path(folder)))  # each once
    if not jobs:
        raise FileNotFoundError(f"no job folders (with .hydra/ or metrics.json) under {[str(f) for f in folders]}")
    return pd.DataFrame([read_run(job) for job in jobs])


def factor_columns(runs: pd.DataFrame) -> list[str]:
    """Everything that defines a configuration: group choices and overridden values, not the seed."""
    fixed = {"path", "seed", "status", "reason", "best_epoch", "train_seconds", "n_params", "device", *META_GROUPS}
    return [c for c in runs.columns if c not in fixed and not c.startswith(("valid_", "test_"))]


def duplicates(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs of the same configuration and seed more than once (each copy listed)."""
    key = [*factor_columns(runs), "seed"]
    return runs[runs.duplicated(key, keep=False)].sort_values(key)
