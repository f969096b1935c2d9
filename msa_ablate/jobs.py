"""A Hydra job around the plain run: the runs it holds (one, or a seed pack's members), which of them
still need training, the callbacks that resume and graph it, and a record in every run's folder
whatever happens (completed, failed, interrupted).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import traceback
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from filelock import FileLock, Timeout
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import msa_ablate
from msa_ablate import records
from msa_ablate.checkpoints import Checkpoint, peek
from msa_ablate.config import check_settings, is_seed
from msa_ablate.cuda_graphs import CudaGraph
from msa_ablate.data.fingerprint import fingerprint
from msa_ablate.errors import ConfigError, UserError
from msa_ablate.eval import robustness_run
from msa_ablate.progress import ShowProgress
from msa_ablate.records import RunRecord
from msa_ablate.robustness import FILE as ROBUSTNESS
from msa_ablate.run import resolve_device, train_runs
from msa_ablate.train import TrainingDiverged

log = logging.getLogger(__name__)
LOCK = ".lock"  # in a job's folder while the job runs


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


class Run(NamedTuple):
    """One run of a job: its config, folder, identity, and its config resolved (as its record keeps it)."""
    member: DictConfig
    folder: Path
    identity: str
    config: dict


def job_runs(cfg: DictConfig, output_dir: Path, overridden: Collection[str]) -> tuple[list[Run], dict]:
    """Each run of the job, once its settings are checked, and the data's fingerprint; a bad
    setting found here is a ConfigError naming it, interpolations included."""
    try:
        check_settings(cfg)
        if cfg.trainer.pack_seeds and "seed" in overridden:
            raise ConfigError("seed: trainer.pack_seeds=true trains the seeds listed in seeds=[...]; a swept "
                              "seed would train the same pack once per value (drop it, e.g. "
                              "~hydra.sweeper.params.seed for a preset)")
        members = [(member, folder, records.resolved(member)) for member, folder in member_runs(cfg, output_dir)]
        data = fingerprint(members[0][2]["data"])  # the members differ in their seed only
        runs = [Run(member, folder, records.identity(config, data), config) for member, folder, config in members]
    except OmegaConfBaseException as e:  # e.g. an interpolation to a key that does not exist
        raise ConfigError(f"{getattr(e, 'full_key', None) or 'config'}: {str(e).splitlines()[0]}") from None
    return runs, data


def record_failure(cfg: DictConfig, output_dir: Path, choices: Mapping[str, str], error: UserError) -> None:
    """A job stopped by a bad setting before its runs were known still writes metrics.json,
    ``failed`` with the reason, in every folder the analysis reads as one of its runs (a seed
    pack's ``seed_N``), so it is not taken for a job killed or still running."""
    record = RunRecord(choices=dict(choices), provenance={"msa_ablate": msa_ablate.__version__}, status="failed",
                       reason=f"{type(error).__name__}: {error}")
    seeds = records.pack_seeds(OmegaConf.to_container(cfg, resolve=False))
    for folder in [output_dir / f"seed_{seed}" for seed in seeds] or [output_dir]:
        if records.read(folder).status != "completed":  # a run completed there before: its result stays
            records.write(folder, record)


def set_aside(folder: Path, run_identity: str, data: dict, resume: bool) -> None:
    """Before a run starts afresh in ``folder``: what an earlier run left there (its record,
    events, checkpoint) moves, whole, into ``folder/previous/N/``, with one line saying why."""
    earlier = records.read(folder)
    destination = records.move_aside(folder)
    if destination is None:
        return
    before = (earlier.data or {}).get("fingerprint") or {}
    if earlier.identity == run_identity and not resume:
        why = "resume=false: this run's earlier result runs again"
    elif earlier.identity == run_identity and earlier.status == "completed":
        why = f"this run completed, but {', '.join(records.unreadable(destination))}: missing or unreadable"
    elif earlier.identity == run_identity:
        why = f"this run's earlier attempt ({earlier.status}) left no checkpoint to go on from"
    elif earlier.config is not None and records.identity(earlier.config, data) == run_identity:
        why = f"the data changed since (sha256 {before.get('sha256', '?')[:12]} -> {data.get('sha256', '?')[:12]})"
    elif earlier != RunRecord():
        why = f"another configuration's run ({earlier.status}) was here"
    else:
        why = "files of an earlier attempt were here"
    log.info("%s: %s; its files moved to %s", folder, why, destination)


class Terminated(SystemExit):
    """SIGTERM, which cluster schedulers send before a kill."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a run as Ctrl-C does (recorded as interrupted, checkpoint kept), in the main
    thread, where no other handler is set or where submitit's is: it only logs SIGTERM, so a
    scancel'd job was SIGKILLed with no record (its preemption signal, USR2, stays submitit's)."""
    previous = signal.getsignal(signal.SIGTERM)
    replaceable = previous == signal.SIG_DFL or getattr(previous, "__qualname__", "") == "SignalHandler.bypass"
    if threading.current_thread() is not threading.main_thread() or not replaceable:
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise Terminated(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def overridden_keys(overrides: Iterable[str]) -> set[str]:
    """The keys a job's command-line overrides set (``+model.x=1`` and ``~seed`` too)."""
    if OmegaConf.is_list(overrides):  # Hydra's list: read as text, not resolved (``trainer.lr=${nope}``)
        overrides = OmegaConf.to_container(overrides)
    return {o.lstrip("+~").split("=")[0] for o in overrides}


def completed_runs(cfg: DictConfig, runs: Iterable[Run]) -> dict[Path, RunRecord]:
    """The job's runs (``job_runs``) whose folder holds their completed record; none under ``resume=false``."""
    if not cfg.get("resume", True):
        return {}
    return {run.folder: rec for run in runs if (rec := records.completed(run.folder, run.identity))}


def nothing_to_do(cfg: DictConfig, output_dir: Path, overridden: Collection[str]) -> bool:
    """Whether the job would only skip: every run completed, and no robustness pass due. A
    launcher asks it before spending a cluster slot on the job."""
    try:
        runs, _ = job_runs(cfg, output_dir, overridden)
    except UserError:  # the job runs, fails, and its record says why
        return False
    done = completed_runs(cfg, runs)
    return len(done) == len(runs) and not robustness_due(cfg, done)


def run_job(cfg: DictConfig, output_dir: Path, choices: Mapping[str, str], job_num: int = 0,
            overridden: Collection[str] = (), default: DictConfig | None = None, bar: bool = False,
            varied: Sequence[str] = ()) -> list[RunRecord]:
    """Train one configuration (or a seed pack of it); returns the record of each run.

    Exactly once: a folder that already holds its run's completed record is kept as it is (unless
    ``resume=false``), and a job killed mid-way continues from its last epoch's checkpoint.
    Nothing is overwritten: a run that starts afresh in a folder sets an earlier run's files
    aside first. ``job_num`` (the job's number in a sweep) picks the GPU under
    ``trainer.device=auto``; ``overridden``: the keys its command line sets; ``default``: the
    config ``python -m msa_ablate`` composes with no overrides (Hydra's node included), which
    each record says what its run changes from; ``bar``: show progress as a bar (a terminal's);
    ``varied``: the keys the job's sweep varies. One process at a time in a folder: a second one
    waits for the first, then finds its result (its own run: skipped; another: set aside)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    with folder_lock(output_dir):
        return run_locked(cfg, output_dir, choices, job_num, overridden, default, bar, varied)


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """``folder/.lock`` held while a job runs there (released by the OS if the process dies)."""
    lock = FileLock(folder / LOCK)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("%s: another process is running a job in this folder; waiting for it to end", folder)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def run_locked(cfg: DictConfig, output_dir: Path, choices: Mapping[str, str], job_num: int,
               overridden: Collection[str], default: DictConfig | None, bar: bool,
               varied: Sequence[str]) -> list[RunRecord]:
    try:
        runs, data = job_runs(cfg, output_dir, overridden)
    except UserError as e:
        record_failure(cfg, output_dir, choices, e)
        raise
    resume = cfg.get("resume", True)
    done = completed_runs(cfg, runs)
    for folder, record in done.items():
        log.info("%s: already completed, skipped (resume=false runs it again); %s", folder, headline(record))
    todo = [run for run in runs if run.folder not in done]
    if not todo:
        after_training(cfg, done, job_num)
        return list(done.values())
    checkpoint, key = output_dir / "checkpoint.pt", "+".join(run.identity for run in todo)
    saved = peek(checkpoint) if resume else None
    if saved is None or saved["key"] != key:  # a fresh start: what is in the folders goes aside
        saved = None
        for folder, run_id in dict.fromkeys([(output_dir, key), *((run.folder, run.identity) for run in todo)]):
            set_aside(folder, run_id, data, resume)
    base = (records.resolved(default), default.hydra.runtime.choices) if default is not None else None
    recs = [RunRecord(identity=run.identity, seed=run.member.seed, choices=dict(choices), config=run.config,
                      changes=records.changes(run.config, choices, *base) if base else None,
                      varied=list(varied) or None, data={"fingerprint": data})
            for run in todo]
    # In this order: the checkpoint loads before the optimisers become graph-capturable, and the
    # progress display counts the graphed step (each callback wraps the step of those before it).
    callbacks = [Checkpoint(checkpoint, key, saved), *([CudaGraph()] if cfg.trainer.cuda_graph else []),
                 ShowProgress(output_dir.name, bar, cfg.trainer.progress_every)]
    try:
        with sigterm_as_interrupt():
            device = resolve_device(cfg.trainer.device, job_num)
            for record in recs:
                record.provenance = records.provenance(device)
            train_runs([run.member for run in todo], [run.folder for run in todo], device, recs, callbacks)
        if not cfg.trainer.keep_checkpoint:
            checkpoint.unlink(missing_ok=True)
    except (KeyboardInterrupt, SystemExit) as e:  # Ctrl-C, SIGTERM, or a preemption (submitit exits):
        mark(recs, todo, "interrupted", "SIGTERM" if isinstance(e, Terminated) else type(e).__name__)
        raise  # the events so far stay, and the checkpoint resumes the run
    except BaseException as e:  # the folders must say the runs did not complete, and why
        mark(recs, todo, "failed", f"{type(e).__name__}: {e}")
        if not isinstance(e, UserError):
            log.error("run failed:\n%s", traceback.format_exc())
        raise
    for record, run in zip(recs, todo):
        log.info("%s: %s", run.folder, headline(record))
    diverged = [f"seed {r.seed}: {r.reason.removeprefix('TrainingDiverged: ')}" for r in recs if r.status == "failed"]
    after_training(cfg, [*done, *(run.folder for run in todo)], job_num)
    if diverged:  # a pack's members; the job fails (a sweep reports it at the end), the others are kept
        raise TrainingDiverged("; ".join(diverged))
    return [*done.values(), *recs]


def robustness_due(cfg: DictConfig, folders: Iterable[Path]) -> list[Path]:
    """``+eval=robustness``: the completed runs whose robustness.json is missing or was made with
    other settings."""
    settings = OmegaConf.select(cfg, "eval.robustness")
    if settings is None:
        return []
    settings = OmegaConf.to_container(settings, resolve=True)
    due = []
    for folder in folders:
        try:
            earlier = json.loads((folder / ROBUSTNESS).read_text())
        except (OSError, ValueError):
            earlier = {}
        if records.read(folder).status == "completed" and any(earlier.get(k) != v for k, v in settings.items()):
            due.append(folder)
    return due


def after_training(cfg: DictConfig, folders: Iterable[Path], job_num: int) -> None:
    """The robustness pass on each run that is due one (``robustness_due``; a run skipped as done too)."""
    due = robustness_due(cfg, folders)
    if not due:
        return
    settings = OmegaConf.to_container(cfg.eval.robustness, resolve=True)
    device = resolve_device(cfg.trainer.device, job_num)
    for folder in due:
        robustness_run(folder, device=device, **settings)


HEADLINE = {"mosi": ("Corr", "Non0_acc_2", "Non0_F1_score", "Mult_acc_7", "MAE"),
            "sims": ("Corr", "Mult_acc_2", "F1_score", "Mult_acc_5", "MAE")}


def headline(record: RunRecord) -> str:
    """A run's outcome in one line: ``completed in 42 s, best epoch 3 of 20 (valid Corr 0.6989); test Corr ...``."""
    if record.status != "completed":
        return f"{record.status}: {record.reason}"
    metric, valid, test = record.select_metric, record.valid, record.test or {}
    names = HEADLINE[(record.data or {}).get("metrics", "mosi")]
    scores = ", ".join(f"{m} {test[m]:.4f}" for m in names if test.get(m) is not None) or "not read"
    return (f"completed in {record.train_seconds:.0f} s, best epoch {record.best_epoch} of "
            f"{len(record.history)} (valid {metric} {valid[metric]:.4f}); test {scores}")


def mark(recs: list[RunRecord], todo: list[Run], status: str, reason: str) -> None:
    """Writes the records of the runs that did not finish, with their status and why."""
    for record, run in zip(recs, todo):
        if record.status is None:
            record.status, record.reason = status, reason
            records.write(run.folder, record)
