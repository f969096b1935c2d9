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
    return next(iter(training.model.parameters())).device


class Checkpoint(Callback):
    """``path`` holds the training after each epoch, marked with ``key`` (the run's identity):
    a checkpoint of another identity is not resumed."""

    def __init__(self, path: Path, key: str) -> None:
        self.path, self.key = path, key

    def on_fit_start(self, training: Training) -> None:
        if not self.path.exists():
            return
        payload = torch.load(self.path, map_location=device_of(training), weights_only=False)
        if payload["key"] != self.key:
            log.warning("%s: checkpoint of another configuration, starting afresh", self.path)
            return
        training.load_state_dict(payload["training"])
        set_rng_states(payload["rng"], device_of(training))
        log.info("%s: resuming after epoch %d", self.path, payload["epoch"])

    def on_epoch_end(self, training: Training) -> None:
        """Atomic, so a kill mid-write leaves the previous checkpoint intact."""
        payload = {"key": self.key, "epoch": training.epoch, "training": training.state_dict(),
                   "rng": rng_states(device_of(training))}
        write_atomic(self.path, lambda f: torch.save(payload, f))
