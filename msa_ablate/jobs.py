"""A Hydra job around the plain run: the runs it holds (one, or a seed pack's members), which of them
still need training, the callbacks that resume and graph it, and a record in every run's folder
whatever happens (completed, failed, interrupted).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Collection, Mapping
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import msa_ablate
from msa_ablate import records
from msa_ablate.checkpoints import Checkpoint
from msa_ablate.config import check_settings, is_seed
from msa_ablate.cuda_graphs import CudaGraph
from msa_ablate.errors import ConfigError, UserError
from msa_ablate.packs import train_pack
from msa_ablate.run import train_run
from msa_ablate.train import TrainingDiverged

log = logging.getLogger(__name__)


def resolve_device(name: str, job_num: int = 0) -> torch.device:
    """``auto`` is the CPU without CUDA, else GPU ``job_num`` mod the GPU count: the jobs of a
    parallel sweep (joblib launcher) spread round-robin over the GPUs; with one, they share it."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", job_num % torch.cuda.device_count())
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"trainer.device={name}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name}: CUDA is not available on this machine")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"trainer.device={name}: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def member_runs(cfg: DictConfig, output_dir: Path) -> list[tuple[DictConfig, Path]]:
    """The runs one job holds: the job itself; or, with ``trainer.pack_seeds``, one run per
    seed in ``seeds``, each in its own ``seed_N`` sub-folder (a seed pack, trained together)."""
    if not cfg.trainer.pack_seeds:
        return [(cfg, output_dir)]
    seeds = list(cfg.seeds) if OmegaConf.is_list(cfg.seeds) else []
    if not seeds or len(set(seeds)) != len(seeds) or not all(is_seed(s) for s in seeds):
        raise ConfigError(f"seeds={cfg.seeds}: trainer.pack_seeds needs a list of distinct seeds, e.g. seeds=[1,2,3]")
    runs = []
    for seed in seeds:
        member = cfg.copy()
        member.seed = seed
        runs.append((member, output_dir / f"seed_{seed}"))
    return runs


def job_runs(cfg: DictConfig, output_dir: Path, overridden: Collection[str]) -> list[tuple[DictConfig, Path, str]]:
    """Each run of the job with its folder and identity (config_key), once its settings are
    checked; a bad setting found here is a ConfigError that names it, interpolations included."""
    try:
        check_settings(cfg)
        if cfg.trainer.pack_seeds and "seed" in overridden:
            raise ConfigError("seed: trainer.pack_seeds=true trains the seeds listed in seeds=[...]; a swept "
                              "seed would train the same pack once per value (drop it, e.g. "
                              "~hydra.sweeper.params.seed for a preset)")
        return [(member, folder, records.config_key(member)) for member, folder in member_runs(cfg, output_dir)]
    except OmegaConfBaseException as e:  # e.g. an interpolation to a key that does not exist
        raise ConfigError(f"{getattr(e, 'full_key', None) or 'config'}: {str(e).splitlines()[0]}") from None


def record_failure(cfg: DictConfig, output_dir: Path, choices: Mapping[str, str], error: UserError) -> None:
    """A job stopped by a bad setting before its runs were known still writes metrics.json,
    ``failed`` with the reason, in every folder the analysis reads as one of its runs (a seed
    pack's ``seed_N``), so it is not taken for a job killed or still running."""
    record = {"status": "failed", "reason": f"{type(error).__name__}: {error}", "choices": dict(choices),
              "version": msa_ablate.__version__}
    seeds = records.pack_seeds(OmegaConf.to_container(cfg, resolve=False))
    for folder in [output_dir / f"seed_{seed}" for seed in seeds] or [output_dir]:
        if records.read(folder).get("status") != "completed":  # a run completed there before: its result stays
            records.write(folder, record)


def run_job(cfg: DictConfig, output_dir: Path, choices: Mapping[str, str], job_num: int = 0,
            overridden: Collection[str] = ()) -> list[dict]:
    """Train one configuration (or a seed pack of it); returns the record of each run.

    Exactly once: a folder that already holds its configuration's completed metrics.json
    is kept as it is (unless ``resume=false``), and a job killed mid-way continues from
    its last epoch's checkpoint. ``job_num`` (the job's number in a sweep) picks the GPU
    under ``trainer.device=auto``; ``overridden``: the keys its command line sets."""
    output_dir.mkdir(parents=True, exist_ok=True)
    try:
        runs = job_runs(cfg, output_dir, overridden)
    except UserError as e:
        record_failure(cfg, output_dir, choices, e)
        raise
    resume = cfg.get("resume", True)
    done = {folder: record for _, folder, key in runs if resume and (record := records.completed(folder, key))}
    for folder in done:
        log.info("%s: already completed, skipped (resume=false runs it again)", folder)
    todo = [(member, folder, key) for member, folder, key in runs if folder not in done]
    if not todo:
        return list(done.values())
    checkpoint = output_dir / "checkpoint.pt"
    if not resume:
        checkpoint.unlink(missing_ok=True)
    recs = [{"seed": member.seed, "choices": dict(choices), "config_key": key, "version": msa_ablate.__version__}
            for member, _, key in todo]
    callbacks = [Checkpoint(checkpoint, "+".join(key for _, _, key in todo))]
    if cfg.trainer.cuda_graph:
        callbacks.append(CudaGraph())
    try:
        device = resolve_device(cfg.trainer.device, job_num)
        if cfg.trainer.pack_seeds:
            train_pack([m for m, _, _ in todo], [f for _, f, _ in todo], device, recs, callbacks)
        else:
            train_run(cfg, output_dir, device, recs[0], callbacks)
        if not cfg.trainer.keep_checkpoint:
            checkpoint.unlink(missing_ok=True)
    except (KeyboardInterrupt, SystemExit) as e:  # Ctrl-C, or a cluster's preemption (submitit exits):
        mark(recs, todo, "interrupted", type(e).__name__)  # the events so far stay, the checkpoint resumes it
        raise
    except BaseException as e:  # the folders must say the runs did not complete, and why
        mark(recs, todo, "failed", f"{type(e).__name__}: {e}")
        if not isinstance(e, UserError):
            log.error("run failed:\n%s", traceback.format_exc())
        raise
    diverged = [f"seed {r['seed']}: {r['reason'].removeprefix('TrainingDiverged: ')}" for r in recs
                if r["status"] == "failed"]
    if diverged:  # a pack's members; the job fails (a sweep reports it at the end), the others are kept
        raise TrainingDiverged("; ".join(diverged))
    return [*done.values(), *recs]


def mark(recs: list[dict], todo: list, status: str, reason: str) -> None:
    """Writes the records of the runs that did not finish, with their status and why."""
    for record, (_, folder, _) in zip(recs, todo):
        if "status" not in record:
            record.update(status=status, reason=reason)
            records.write(folder, record)
