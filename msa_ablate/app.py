"""One run: build data, model and loss from the composed config, train, write the outputs.

Every run's folder gets ``metrics.json`` (the contract the analysis reads) and its
TensorBoard events. ``run`` is free of Hydra's global state so tests can call it
on a composed config; ``__main__`` is the thin Hydra entry around it.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import traceback
import warnings
from collections.abc import Collection, Mapping
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

import msa_ablate
from msa_ablate.data import MOSIData
from msa_ablate.errors import ConfigError, UserError
from msa_ablate.files import write_atomic
from msa_ablate.identity import config_key, pack_seeds
from msa_ablate.metrics import SCORE_NAMES
from msa_ablate.models.model import attention_fast_path_off
from msa_ablate.trainer import FitResult, TrainingDiverged, fit, resolve_device, seed_everything

log = logging.getLogger(__name__)


def write_json_atomic(path: Path, payload: Mapping) -> None:
    """NaN is written as null, so the file stays valid JSON."""
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, Mapping):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    write_atomic(path, lambda f: f.write(json.dumps(clean(payload), indent=2).encode()))


def check_settings(cfg: DictConfig) -> None:
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{missing[0]}: a value is required (e.g. {missing[0]}=...)")
    t = cfg.trainer
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if not is_int(t[key]) or t[key] <= 0:
            raise ConfigError(f"trainer.{key}={t[key]}: must be a positive integer")
    if not is_number(t.lr) or not t.lr > 0:
        raise ConfigError(f"trainer.lr={t.lr}: must be a positive number")
    if not is_int(cfg.seed) or not 0 <= cfg.seed < 2**32:
        raise ConfigError(f"seed={cfg.seed}: must be an integer in [0, 2**32)")
    if t.select_metric not in SCORE_NAMES:
        raise ConfigError(f"trainer.select_metric={t.select_metric}: must be one of {list(SCORE_NAMES)}")


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@functools.lru_cache(maxsize=2)
def load_data(spec: str) -> MOSIData:
    """Once per process: the jobs of a sweep run in one process share it (nothing modifies it).
    Built as a partial and called here, so a UserError reaches the user unwrapped
    (instantiate would re-raise it as an InstantiationException)."""
    return instantiate(OmegaConf.create(spec), _partial_=True)()


def log_graph(writer: SummaryWriter, model: torch.nn.Module, example: Mapping[str, torch.Tensor]) -> None:
    """The model graph for TensorBoard; a model that will not trace costs a warning, not the run."""
    try:
        model.eval()
        with attention_fast_path_off(), warnings.catch_warnings():  # tracer notes: noise here
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.trace, used by add_graph
            writer.add_graph(model, (dict(example),), use_strict_trace=False)
    except Exception as e:  # tracing is best-effort: the run's results do not depend on it
        log.warning("model graph not logged: tracing failed (%s: %s)", type(e).__name__, str(e).splitlines()[0])


def log_hparams(writer: SummaryWriter, cfg: DictConfig, choices: Mapping[str, str], result: FitResult) -> None:
    """hparams with the final metrics, written into the run's own event file (add_hparams
    would open a timestamped sub-folder, which TensorBoard then lists as a second run)."""
    params = {**choices, "seed": cfg.seed, **{f"trainer.{k}": v for k, v in cfg.trainer.items()}}
    metrics = {f"{split}/{k}": v for split, scores in (("best_valid", result.valid), ("test", result.test))
               for k, v in scores.items() if math.isfinite(v)}
    for summary in hparams(params, metrics):
        writer.file_writer.add_summary(summary)
    for k, v in metrics.items():
        writer.add_scalar(k, v)


def read_record(folder: Path) -> dict:
    """The folder's metrics.json; empty where there is none (or it is unreadable)."""
    try:
        record = json.loads((folder / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def completed_record(output_dir: Path, key: str) -> dict | None:
    """The folder's metrics.json if it records this very configuration as completed."""
    record = read_record(output_dir)
    return record if record.get("status") == "completed" and record.get("config_key") == key else None


def member_runs(cfg: DictConfig, output_dir: Path) -> list[tuple[DictConfig, Path]]:
    """The runs one job holds: the job itself; or, with ``trainer.pack_seeds``, one run per
    seed in ``seeds``, each in its own ``seed_N`` sub-folder (a seed pack, trained together)."""
    if not cfg.trainer.pack_seeds:
        return [(cfg, output_dir)]
    seeds = list(cfg.seeds) if OmegaConf.is_list(cfg.seeds) else []
    if not seeds or len(set(seeds)) != len(seeds) or not all(is_int(s) and 0 <= s < 2**32 for s in seeds):
        raise ConfigError(f"seeds={cfg.seeds}: trainer.pack_seeds needs a list of distinct seeds, e.g. seeds=[1,2,3]")
    runs = []
    for seed in seeds:
        member = cfg.copy()
        member.seed = seed
        runs.append((member, output_dir / f"seed_{seed}"))
    return runs


def record_failure(cfg: DictConfig, output_dir: Path, choices: Mapping[str, str], error: UserError) -> None:
    """A job stopped by a bad setting before its runs were known still writes metrics.json,
    ``failed`` with the reason, in every folder the analysis reads as one of its runs (a seed
    pack's ``seed_N``), so it is not taken for a job killed or still running."""
    record = {"status": "failed", "reason": f"{type(error).__name__}: {error}", "choices": dict(choices),
              "version": msa_ablate.__version__}
    seeds = pack_seeds(OmegaConf.to_container(cfg, resolve=False))
    for folder in [output_dir / f"seed_{seed}" for seed in seeds] or [output_dir]:
        if read_record(folder).get("status") == "completed":
            continue  # a run completed there before: its result stays
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / "metrics.json", record)


def job_runs(cfg: DictConfig, output_dir: Path, overridden: Collection[str]) -> list[tuple[DictConfig, Path, str]]:
    """Each run of the job with its folder and identity (config_key); a bad setting found here
    is a ConfigError that names it, interpolations included."""
    try:
        if cfg.trainer.pack_seeds and "seed" in overridden:
            raise ConfigError("seed: trainer.pack_seeds=true trains the seeds listed in seeds=[...]; a swept "
                              "seed would train the same pack once per value (drop it, e.g. "
                              "~hydra.sweeper.params.seed for a preset)")
        return [(member, folder, config_key(member)) for member, folder in member_runs(cfg, output_dir)]
    except OmegaConfBaseException as e:  # e.g. an interpolation to a key that does not exist
        raise ConfigError(f"{getattr(e, 'full_key', None) or 'config'}: {str(e).splitlines()[0]}") from None


def run(cfg: DictConfig, output_dir: Path, choices: Mapping[str, str], job_num: int = 0,
        overridden: Collection[str] = ()) -> list[dict]:
    """Train one configuration (or a seed pack of it); returns (and writes) the metrics.json
    payload of each run.

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
    done = {folder: rec for _, folder, key in runs if resume and (rec := completed_record(folder, key))}
    for folder in done:
        log.info("%s: already completed, skipped (resume=false runs it again)", folder)
    todo = [(member, folder, key) for member, folder, key in runs if folder not in done]
    if not todo:
        return list(done.values())
    checkpoint = output_dir / "checkpoint.pt"
    if not resume:
        checkpoint.unlink(missing_ok=True)
    records = [{"seed": member.seed, "choices": dict(choices), "config_key": key, "version": msa_ablate.__version__}
               for member, _, key in todo]
    writers, diverged = [], []
    try:
        check_settings(cfg)
        device = resolve_device(cfg.trainer.device, job_num)
        data = load_data(OmegaConf.to_yaml(cfg.data, resolve=True)).to(device)
        models = []
        for member, _, _ in todo:  # each member initialised under its own seed, as it would be alone
            seed_everything(member.seed)
            # a partial called here, as in load_data, so a ConfigError from the model reaches the user unwrapped
            models.append(instantiate(cfg.model, _partial_=True)(input_dims=data.dims).to(device))
        loss_fn = instantiate(cfg.loss)
        n_params, summary = sum(p.numel() for p in models[0].parameters()), data.summary()
        for record in records:
            record.update(data=summary, device=str(device), n_params=n_params, pack_size=len(todo))
        log.info("%s on %s: %s params, data %s%s", ", ".join(f"{k}={v}" for k, v in choices.items()), device,
                 f"{n_params:,}", summary["sizes"], f", seeds {[m.seed for m, _, _ in todo]} packed"
                 if len(todo) > 1 else "")

        writers = [SummaryWriter(str(folder)) for _, folder, _ in todo]
        t = cfg.trainer
        results = fit(models, data, loss_fn, seeds=[member.seed for member, _, _ in todo], epochs=t.epochs,
                      batch_size=t.batch_size, lr=t.lr, select_metric=t.select_metric,
                      eval_batch_size=t.eval_batch_size, writers=writers, checkpoint=checkpoint,
                      checkpoint_key="+".join(key for _, _, key in todo), evaluate_test=t.evaluate_test,
                      cuda_graph=t.cuda_graph)
        example = {m: x[:2] for m, x in data.splits["valid"].features.items()}
        for (member, _, _), model, writer, record, result in zip(todo, models, writers, records, results):
            if result.diverged:  # a pack member; the others completed
                record.update(status="failed", reason=f"TrainingDiverged: {result.diverged}", history=result.history)
                diverged.append(f"seed {member.seed}: {result.diverged}")
                continue
            if t.log_graph:
                log_graph(writer, model, example)
            log_hparams(writer, member, choices, result)
            record.update(status="completed", best_epoch=result.best_epoch, select_metric=t.select_metric,
                          valid=result.valid, test=result.test, train_seconds=round(result.train_seconds, 3),
                          history=result.history)
            log.info("seed %d: best epoch %d (valid %s %.4f); test %s", member.seed, result.best_epoch,
                     t.select_metric, result.valid[t.select_metric],
                     {k: round(v, 4) for k, v in result.test.items()})
        if not t.keep_checkpoint:
            checkpoint.unlink(missing_ok=True)
    except (KeyboardInterrupt, SystemExit) as e:  # Ctrl-C, or a cluster's preemption (submitit exits):
        for record in records:                     # the events so far stay, the checkpoint lets it resume
            record.update(status="interrupted", reason=type(e).__name__)
        raise
    except BaseException as e:  # the folders must say the runs did not complete, and why
        for record in records:
            record.update(status="failed", reason=f"{type(e).__name__}: {e}")
        if not isinstance(e, UserError):
            log.error("run failed:\n%s", traceback.format_exc())
        raise
    finally:
        for writer in writers:
            writer.close()
        for record, (_, folder, _) in zip(records, todo):
            folder.mkdir(exist_ok=True)
            write_json_atomic(folder / "metrics.json", record)
    if diverged:  # the job fails (a sweep reports it at the end); its completed members are kept
        raise TrainingDiverged("; ".join(diverged))
    return [*done.values(), *records]
