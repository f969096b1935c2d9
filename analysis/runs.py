"""Run folders, or a runs table, -> one tidy DataFrame: one row per run; nothing dropped silently.

A run is a folder holding its record (``metrics.json``; an earlier run's, set aside in
``previous/N/``, included), or a job Hydra started that has none yet (killed or still running:
status ``missing``). Each row says what ran, from the record: its configuration (a digest of its
resolved config, less the seed and what changes nothing computed, and of its data's
fingerprint), what that config changes from the default one, the seed, the status and reason,
the metrics, the per-epoch history, the test-time robustness pass where one ran (its
``robustness.json``, so that a runs table alone makes the analysis again), and where it came
from (commit, versions, device, the sweep's command). Records written before runs kept their
config read Hydra's ``.hydra/config.yaml`` instead, and are labelled by their job's overrides.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import yaml
from omegaconf import OmegaConf

from msa_ablate import records
from msa_ablate.config import NOT_COMPUTED
from msa_ablate.data.fingerprint import fingerprint
from msa_ablate.errors import DataError
from msa_ablate.metrics import SCORE_NAMES
from msa_ablate.robustness import FILE as ROBUSTNESS

SPLITS = ("valid", "test")
JSON_COLUMNS = ("changes", "choices", "history", "robustness")  # dicts and lists: JSON text in a CSV


def job_folders(root: Path) -> list[Path]:
    """Every run folder under ``root`` (itself included), in a stable order: each folder with a
    record, and each job Hydra started that has none. A seed pack's job folder is no run itself:
    it holds one run per seed of its ``seeds``, in ``seed_N``, whether or not that member has
    written its record (a killed pack's members show as missing, not as nothing)."""
    recorded = {p.parent for p in root.rglob(records.FILE)}
    jobs = {p.parent for p in root.rglob(".hydra")}
    packs = {job: _pack_seeds(job) for job in jobs}
    found = recorded | {job for job in jobs if not packs[job]}
    found |= {job / f"seed_{seed}" for job, seeds in packs.items() for seed in seeds}
    return sorted(found, key=lambda p: [(0, int(s), "") if s.isdigit() else (1, 0, s)
                                        for s in p.relative_to(root).parts])


def _yaml(file: Path) -> object:
    """A YAML file's content (None where there is none); a ValueError naming the file where it cannot be read."""
    if not file.exists():
        return None
    try:
        return yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"unreadable {file} ({' '.join(str(e).split())[:160]})") from None


def _pack_seeds(job: Path) -> list[int]:
    try:
        config = _yaml(job / ".hydra" / "config.yaml")
    except ValueError:
        return []  # the job's own row says why
    return records.pack_seeds(config) if isinstance(config, dict) else []


def _hydra_record(folder: Path, name: str) -> object:
    """Hydra's record of the job: in the folder, or for a seed pack's member in the job folder above."""
    own = folder / ".hydra" / name
    return _yaml(own if own.exists() or not (folder.parent / ".hydra").is_dir() else folder.parent / ".hydra" / name)


def sweep_command(folder: Path) -> str:
    """The command that made the run: its sweep's (from ``multirun.yaml`` above it) or its own."""
    for parent in (folder, *folder.parents):
        if (parent / "multirun.yaml").exists():
            overrides = (_yaml(parent / "multirun.yaml") or {}).get("hydra", {}).get("overrides", {})
            return command(overrides, "-m")
    hydra = _hydra_record(folder, "hydra.yaml")
    return command(hydra["hydra"].get("overrides") or {}, "") if isinstance(hydra, dict) else ""


def command(overrides: dict, mode: str) -> str:
    hydra = [o for o in overrides.get("hydra") or [] if not o.startswith("hydra.mode=")]
    args = hydra + list(overrides.get("task") or [])
    return " ".join(["python -m msa_ablate", *([mode] if mode else []), *map(shlex.quote, args)])


def _legacy(folder: Path, record: dict) -> dict:
    """What a record written before runs kept their config lacks, from Hydra's record of the job."""
    config = _hydra_record(folder, "config.yaml")
    if isinstance(config, dict):
        node = OmegaConf.create(config)
        config = OmegaConf.to_container(OmegaConf.masked_copy(node, [k for k in node if k != "hydra"]), resolve=True)
        if "seed" in record:
            config["seed"] = record["seed"]
    hydra = _hydra_record(folder, "hydra.yaml")
    choices = record.get("choices") or ({k: v for k, v in hydra["hydra"]["runtime"]["choices"].items()
                                         if not k.startswith("hydra") and v is not None}
                                        if isinstance(hydra, dict) else {})
    changes = {}
    for item in _hydra_record(folder, "overrides.yaml") or []:  # as typed: all such a record can say
        key, _, value = item.lstrip("~").partition("=")
        if not key.startswith("hydra") and key.lstrip("+") not in ("seed", *NOT_COMPUTED):
            changes[key] = yaml.safe_load(value) if value else value
    seed = record.get("seed", config.get("seed") if isinstance(config, dict) else None)
    if folder.name.startswith("seed_") and folder.name[5:].isdigit():  # a pack member
        seed = int(folder.name[5:])
    return {"config": config if isinstance(config, dict) else None, "choices": choices, "changes": changes,
            "seed": seed}


def data_label(data: dict, config: dict) -> str:
    """Which data, in a few words: a file's name and digest, or a generator's name, version, seed and
    the parameters it is not called with by default (so a config that names more of them reads alike)."""
    if data.get("sha256"):
        return f"{Path(data['file']).name} sha256 {data['sha256'][:12]}"
    if data.get("generator"):
        defaults = _defaults(data["generator"])
        params = " ".join(f"{k}={v}" for k, v in config.items()
                          if k != "_target_" and (k == "seed" or k not in defaults or defaults[k] != v))
        return f"{data['generator'].rpartition('.')[2]} v{data['version']} {params}".strip()
    return str(data.get("source") or "unknown")


@functools.cache  # once per generator, not once per run
def _defaults(target: str) -> dict:
    """The default arguments of the function ``target`` names ({} where it cannot be imported here);
    a tuple default compares equal to the list a YAML config holds."""
    module, _, name = target.rpartition(".")
    try:
        function = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return {}
    return {k: list(p.default) if isinstance(p.default, tuple) else p.default
            for k, p in inspect.signature(function).parameters.items() if p.default is not p.empty}


def read_run(folder: Path) -> dict:
    row: dict = {"path": str(folder), "command": sweep_command(folder)}
    file = folder / records.FILE
    if file.exists():
        try:
            record = json.loads(file.read_text())
        except ValueError as e:
            record = {"status": "failed", "reason": f"unreadable {records.FILE} ({e})"}
        if not isinstance(record, dict):
            record = {"status": "failed", "reason": f"{records.FILE} does not hold an object"}
    else:
        record = {"status": "missing", "reason": f"no {records.FILE}: the job was killed or is still running"}
    if record.get("status") == "completed" and not record.get("valid"):
        record = {**record, "status": "failed", "reason": f"{records.FILE} says completed but holds no metrics"}
    if record.get("config") is None or record.get("changes") is None:
        try:
            record = {**_legacy(folder, record), **{k: v for k, v in record.items() if v is not None}}
        except ValueError as e:
            record = {**record, "status": "failed", "reason": str(e)}
    config = record.get("config")
    data = ((record.get("data") or {}).get("fingerprint") or _planned_data(config)
            or {"source": (record.get("data") or {}).get("source")})
    row["configuration"] = records.identity({**config, "seed": None}, data) if config else f"unknown:{folder}"
    row["settings"] = records.identity({**config, "seed": None}, {}) if config else row["configuration"]
    row["changes"] = record.get("changes") or {}
    row["choices"] = record.get("choices") or {}
    row["data"] = data_label(data, (config or {}).get("data") or {})
    row["loss"] = (record.get("choices") or {}).get("loss", "")
    row["metrics"] = (record.get("data") or {}).get("metrics", "mosi")  # which set scores it (its label range's)
    row["seed"] = record.get("seed")
    row["status"] = record.get("status", "unknown")
    row["reason"] = record.get("reason", "")
    for key in ("best_epoch", "train_seconds", "n_params", "device"):
        row[key] = record.get(key)
    provenance = record.get("provenance") or {}
    row["commit"] = (provenance.get("git_commit") or "")[:12] + ("+dirty" if provenance.get("git_dirty") else "")
    row["history"] = record.get("history") or []
    row["robustness"] = _robustness(folder)
    for split in SPLITS:
        for name in SCORE_NAMES:
            value = (record.get(split) or {}).get(name)
            row[f"{split}_{name}"] = float("nan") if value is None else value
    return row


def _planned_data(config: dict | None) -> dict | None:
    """The fingerprint of the data a run without a record of it (still running, or killed before
    its record) reads: its config's, as the run takes it; None where it cannot be had here."""
    try:
        return fingerprint(config["data"])
    except (DataError, ImportError, KeyError, TypeError, ValueError):
        return None


def _robustness(folder: Path) -> dict:
    """The run's robustness.json ({} where it has none; where it cannot be read, ``error`` says why)."""
    file = folder / ROBUSTNESS
    if not file.exists():
        return {}
    try:
        result = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        return {"error": f"unreadable {ROBUSTNESS} ({' '.join(str(e).split())[:160]})"}
    return result if isinstance(result, dict) else {"error": f"{ROBUSTNESS} does not hold an object"}


def load_runs(folders: Iterable[str | Path]) -> pd.DataFrame:
    """One row per run found under the given folders (sweeps or single runs), each once."""
    runs = dict.fromkeys(run.resolve() for folder in folders for run in job_folders(Path(folder)))
    if not runs:
        raise FileNotFoundError(f"no run folders (with .hydra/ or metrics.json) under {[str(f) for f in folders]}")
    table = pd.DataFrame([read_run(run) for run in runs])
    # A run with no record of its data and a file not here to fingerprint belongs to the one
    # configuration of its settings that has, where there is one.
    known = table[table.data != "unknown"].drop_duplicates("configuration")
    only = known.drop_duplicates("settings", keep=False).set_index("settings")
    unknown = (table.data == "unknown") & table.settings.isin(only.index)
    table.loc[unknown, ["configuration", "data"]] = only.loc[table.settings[unknown], ["configuration", "data"]].values
    return table


def write_runs(runs: pd.DataFrame, file: Path) -> Path:
    """The table as CSV, paths relative to the CSV's folder (it can be shared), dicts as JSON."""
    table = runs.copy()
    table["path"] = [os.path.relpath(Path(p).resolve(), file.parent.resolve()) for p in table.path]
    for column in JSON_COLUMNS:
        table[column] = [json.dumps(v) for v in table[column]]
    table.to_csv(file, index=False)
    return file


def read_runs(file: Path) -> pd.DataFrame:
    """A table ``write_runs`` wrote, as ``load_runs`` gives it."""
    text = ["path", "command", "configuration", "settings", "data", "loss", "metrics", "status", "reason", "commit",
            "device"]
    runs = pd.read_csv(file, dtype=dict.fromkeys(text, str))
    missing = [c for c in [*text, *JSON_COLUMNS] if c not in runs and c != "robustness"]
    if missing:
        raise ValueError(f"{file}: not a runs table written by summarize.py or report.py (no {', '.join(missing)})")
    runs[text] = runs[text].fillna("")
    if "robustness" not in runs:  # a table written before runs kept their robustness pass
        runs["robustness"] = "{}"
    for column in JSON_COLUMNS:
        runs[column] = [json.loads(v) for v in runs[column]]
    return runs


def output_folder(folder: Path) -> Path:
    """``folder``, made where it is not yet; a ValueError naming it where it cannot be (a file is there)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"--out {folder}: a file is in the way, not a folder") from None
    except OSError as e:
        raise ValueError(f"--out {folder}: cannot write there ({e.strerror or e})") from None
    return folder


def newest_sweep(root: Path = Path("multirun")) -> Path:
    """The most recent sweep folder (one holding multirun.yaml) under ``root`` that has runs; a
    sweep that stopped before its first job (a typo) is passed over."""
    sweeps = sorted((p.parent for p in root.rglob("multirun.yaml")), key=lambda p: p.stat().st_mtime, reverse=True)
    for sweep in sweeps:
        if job_folders(sweep):
            return sweep
    raise FileNotFoundError(f"{root}: no sweep with runs found (no multirun.yaml with job folders below it)")


def read_folders(folders: list[Path]) -> tuple[list[Path], pd.DataFrame]:
    """The given folders (default: the newest sweep with runs, said on stderr) and their runs;
    FileNotFoundError names what is missing."""
    if not folders:
        folders = [newest_sweep()]
        print(f"the newest sweep: {folders[0]}", file=sys.stderr)
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise FileNotFoundError(f"no such folder: {', '.join(missing)}")
    return folders, load_runs(folders)


def duplicates(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs of the same configuration and seed more than once (each copy listed)."""
    done = runs[runs.status == "completed"]
    return done[done.duplicated(["configuration", "seed"], keep=False)].sort_values(["configuration", "seed"])
