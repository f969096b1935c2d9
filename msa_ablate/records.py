"""A run's record, ``metrics.json``: its fields (``RunRecord``), what identifies a run, where it came
from, how the record is written and read, and where an earlier run's files go when a folder is reused.

The app skips a run whose folder holds its identity's completed record, and goes on from a
checkpoint of the same identity; the analysis groups runs by the records. Both use this module.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import platform
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

import msa_ablate
from msa_ablate.config import NOT_COMPUTED
from msa_ablate.files import write_atomic

FILE = "metrics.json"
# What a run's identity leaves out: what it computes nothing from, and where the data is (the
# data's content is in the identity through its fingerprint).
NOT_IN_IDENTITY = (*NOT_COMPUTED, "data.path")
# What a run leaves in its folder
OUTPUTS = (FILE, "events.out.tfevents.*", "checkpoint.pt", "model.pt", "predictions.csv", "robustness*.json",
           "eval_*")
PREVIOUS = "previous"  # where an earlier run's outputs go when its folder is reused
PROMISED = ("model.pt", "predictions.csv")  # what a completed record says is beside it (run.py writes them first)


@dataclass
class RunRecord:
    """A run's metrics.json (docs/outputs.md says what each field holds). What a run does not know
    yet (a job stopped before its data were read, say) is None, and left out of the file."""

    # what ran, on what: known before training
    identity: str | None = None
    seed: int | None = None
    choices: dict[str, str] | None = None
    config: dict | None = None  # resolved
    changes: dict | None = None  # from the default config
    varied: list[str] | None = None  # the keys its sweep varies
    data: dict | None = None  # the fingerprint, then the data's summary
    provenance: dict | None = None
    device: str | None = None
    n_params: int | None = None
    pack_size: int | None = None
    # how it ended
    status: str | None = None  # completed | failed | interrupted
    reason: str | None = None  # why, where it did not complete
    best_epoch: int | None = None
    select_metric: str | None = None
    valid: dict[str, float] | None = None
    test: dict[str, float] | None = None
    train_seconds: float | None = None
    history: list[dict[str, float]] | None = None

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_json(cls, value: object) -> RunRecord:
        """Keys it does not know are left out (none is written today); an empty record where ``value`` is no object."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in value.items() if k in names}) if isinstance(value, Mapping) else cls()


def resolved(cfg: DictConfig) -> dict:
    """The run's config, interpolations resolved, as plain containers (Hydra's own node left out)."""
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)


def identity(config: Mapping, data: Mapping) -> str:
    """A digest of what a run computes: its resolved ``config`` (less NOT_IN_IDENTITY) and its
    ``data`` fingerprint (less where the file is)."""
    plain = json.loads(json.dumps(config, default=str))
    for dotted in NOT_IN_IDENTITY:
        *parents, leaf = dotted.split(".")
        node = plain
        for name in parents:
            node = node.get(name, {})
        node.pop(leaf, None)
    content = {k: v for k, v in data.items() if k != "file"}
    return hashlib.sha256(json.dumps([plain, content], sort_keys=True).encode()).hexdigest()[:16]


def flatten(tree: Mapping, prefix: str = "") -> dict:
    """Nested dicts as one level of dotted keys (lists stay values)."""
    flat = {}
    for k, v in tree.items():
        if isinstance(v, Mapping) and v:
            flat.update(flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def changes(config: Mapping, choices: Mapping, default: Mapping, default_choices: Mapping) -> dict:
    """What a run's resolved ``config`` changes from the ``default`` one (``python -m msa_ablate``
    with no overrides, as composed when the run started): each config group whose option differs
    (``+group`` for a group the default has not, e.g. ``+preset``), then each setting that differs,
    outside those groups' own nodes and outside the model's copies of the groups (``model.encoder``
    is ``${encoder}``). The seed, and what changes nothing a run computes, are left out."""
    groups = {group if group in default_choices else f"+{group}": option for group, option in choices.items()
              if group not in NOT_COMPUTED and default_choices.get(group) != option}
    out = dict(sorted(groups.items(), key=lambda item: (not item[0].startswith("+"), item[0])))
    skip = {g.lstrip("+") for g in out} | {f"model.{g}" for g in choices} | {"seed", *NOT_COMPUTED}
    flat, base = flatten(config), flatten(default)
    for key in sorted(set(flat) | set(base)):
        if any(key == s or key.startswith(f"{s}.") for s in skip):
            continue
        if key not in flat and any(k.startswith(f"{key}.") or key.startswith(f"{k}.") for k in flat):
            continue  # the run made a value a dict of values (or the other way): its own keys say how
        if flat.get(key, "(absent)") != base.get(key, "(absent)"):
            out[key] = flat.get(key)
    return out


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """The git commit the package runs from (and whether it has uncommitted changes), where it
    runs from a checkout of its own; None otherwise."""
    root = Path(msa_ablate.__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    if git("rev-parse", "--show-toplevel") != str(root):  # not a checkout, or someone else's
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": git("rev-parse", "HEAD"), "git_dirty": bool(git("status", "--porcelain", "-uno"))}


def provenance(device: torch.device) -> dict:
    """The code, libraries and machine a run ran on."""
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)")
    return {"msa_ablate": msa_ablate.__version__, **code_version(), "python": platform.python_version(),
            "torch": torch.__version__, "hydra": hydra.__version__, "device": name}


def pack_seeds(config: Mapping) -> list[int]:
    """The seeds a job trains as a seed pack (``trainer.pack_seeds``), each one run with its
    own ``seed_N`` folder in the job's; none where the job is one run. ``config``: the job's
    config as plain containers, as Hydra saves it (unresolved)."""
    seeds = config.get("seeds")
    if not (config.get("trainer") or {}).get("pack_seeds") or not isinstance(seeds, list):
        return []
    return [s for s in seeds if isinstance(s, int) and not isinstance(s, bool)]


def _finite(value: object) -> object:
    """NaN and infinities as null, so the file stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write(folder: Path, record: RunRecord) -> None:
    """Atomically: a reader, or a run killed mid-write, never sees half a record."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / FILE, record.to_json())


def write_json(file: Path, value: Mapping) -> None:
    """``value`` as JSON, NaN as null, written atomically."""
    write_atomic(file, lambda f: f.write(json.dumps(_finite(value), indent=2).encode()))


def read(folder: Path) -> RunRecord:
    """The folder's record; an empty one where there is none (or it is unreadable)."""
    try:
        return RunRecord.from_json(json.loads((folder / FILE).read_text()))
    except (OSError, ValueError):
        return RunRecord()


def unreadable(folder: Path) -> list[str]:
    """The files a completed record promises (PROMISED) that are missing or cannot be read."""
    return [name for name in PROMISED if not readable(folder / name)]


def readable(file: Path) -> bool:
    try:
        with file.open("rb") as f:
            return bool(f.read(1))
    except OSError:
        return False


def completed(folder: Path, run_identity: str) -> RunRecord | None:
    """The folder's record if it holds this very run, completed, with the files it promises."""
    record = read(folder)
    done = record.status == "completed" and record.identity == run_identity
    return record if done and not unreadable(folder) else None


def move_aside(folder: Path) -> Path | None:
    """Moves the outputs an earlier run left in ``folder`` (record, events, checkpoint) into
    ``folder/previous/N/`` (N: the next free number), whole; None where there were none."""
    found = [p for pattern in OUTPUTS for p in sorted(folder.glob(pattern))]
    if not found:
        return None
    n = 1
    while (folder / PREVIOUS / str(n)).exists():
        n += 1
    destination = folder / PREVIOUS / str(n)
    destination.mkdir(parents=True)
    for path in found:
        path.rename(destination / path.name)
    return destination
