"""Resume: the training saved after every epoch, and a run that goes on from it.

A run killed after epoch k continues from its checkpoint and ends exactly as the uninterrupted
run would: weights, optimiser, scheduler, batch order, record so far and every RNG are restored.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import torch

from msa_ablate.files import write_atomic
from msa_ablate.train import Callback, Training

log = logging.getLogger(__name__)
FORMAT = 2  # what Training.state_dict holds: 2, a list per member (1: a plain run's and a pack's apart)


def rng_states(device: torch.device) -> dict:
    """Only the run's own GPU's state: a job may resume on another machine, or another GPU."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def set_rng_states(states: dict, device: torch.device) -> None:
    """RNG states are CPU byte tensors, also where the checkpoint was loaded onto a GPU."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"].cpu())
    if states["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"].cpu(), device)


def device_of(training: Training) -> torch.device:
    return training.members.parameters(0)[0].device


def peek(path: Path) -> dict | None:
    """The checkpoint at ``path`` (on the CPU), or None where there is none, or one that cannot be
    read (then a warning naming the file: it is moved aside with the run's other files)."""
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
        missing = {"key", "epoch", "training", "rng"} - set(payload if isinstance(payload, dict) else ())
        if missing:
            raise ValueError(f"no {', '.join(sorted(missing))}")
        if payload.get("format") != FORMAT:
            raise ValueError(f"written by another version of msa_ablate (format {payload.get('format', 1)})")
    except Exception as e:  # a truncated or foreign file can fail in many ways; each means "not resumable"
        detail = " ".join(f"{type(e).__name__}: {e}".split())[:200]
        log.warning("%s: unreadable checkpoint (%s); it is moved aside and the run starts afresh", path, detail)
        return None
    return payload


class Checkpoint(Callback):
    """Saves the training into ``path`` after each epoch, marked with ``key`` (the identity of its
    runs); with ``resume`` (a checkpoint of the same key, from ``peek``), the training goes on from it."""

    def __init__(self, path: Path, key: str, resume: dict | None = None) -> None:
        self.path, self.key, self.resume = path, key, resume

    def on_fit_start(self, training: Training) -> None:
        if self.resume is None:
            return
        training.load_state_dict(self.resume["training"])
        set_rng_states(self.resume["rng"], device_of(training))
        log.info("%s: resuming after epoch %d", self.path, self.resume["epoch"])

    def on_epoch_end(self, training: Training) -> None:
        """Atomic, so a kill mid-write leaves the previous checkpoint intact."""
        payload = {"format": FORMAT, "key": self.key, "epoch": training.epoch, "training": training.state_dict(),
                   "rng": rng_states(device_of(training))}
        write_atomic(self.path, lambda f: torch.save(payload, f))
