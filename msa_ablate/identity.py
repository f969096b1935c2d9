"""A run's identity: what it computes, not how it is kept or shown.

The app skips a job whose folder already holds its identity's completed metrics.json, and
goes on from a checkpoint of the same identity; the analysis counts runs that differ only
in what is left out here as one configuration.
"""

from __future__ import annotations

import hashlib
import json

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
