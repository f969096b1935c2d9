"""A run's identity (what it computes, not how it is kept or shown), and its folder.

The app skips a job whose folder already holds its identity's completed metrics.json, and
goes on from a checkpoint of the same identity; the analysis counts runs that differ only
in what is left out here as one configuration.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from omegaconf import DictConfig, OmegaConf

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
