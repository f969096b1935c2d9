"""A run's record, ``metrics.json``: how it is written and read, and what identifies a run.

The app skips a job whose folder already holds its identity's completed record, and goes on from
a checkpoint of the same identity; the analysis reads the records. Both use this module.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from msa_ablate.files import write_atomic

FILE = "metrics.json"
# Settings that change how a run is kept or shown, not what it computes (`seeds` lists a
# pack's members; each member's own `seed` is in its identity).
NOT_IN_IDENTITY = ("resume", "seeds", "trainer.keep_checkpoint", "trainer.log_graph")


def config_key(cfg: DictConfig) -> str:
    """A run's identity: a digest of its resolved configuration (seed included)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("hydra", None)
    for dotted in NOT_IN_IDENTITY:
        *parents, leaf = dotted.split(".")
        node = plain
        for name in parents:
            node = node.get(name, {})
        node.pop(leaf, None)
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:16]


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


def write(folder: Path, record: Mapping) -> None:
    """Atomically: a reader, or a run killed mid-write, never sees half a record."""
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / FILE, lambda f: f.write(json.dumps(_finite(record), indent=2).encode()))


def read(folder: Path) -> dict:
    """The folder's record; empty where there is none (or it is unreadable)."""
    try:
        record = json.loads((folder / FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def completed(folder: Path, key: str) -> dict | None:
    """The folder's record if it holds this very configuration, completed."""
    record = read(folder)
    return record if record.get("status") == "completed" and record.get("config_key") == key else None
