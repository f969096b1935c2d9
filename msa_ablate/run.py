"""A job's runs, top to bottom: build data, models and loss from the composed config, fit, write the records.

The plain path of every job (one run, or a seed pack's members). msa_ablate/jobs.py adds what a
job needs around it: skipping runs already completed, resume, and a record whatever happens. Free
of Hydra's global state, so tests call it on a composed config.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from msa_ablate import records
from msa_ablate.config import NOT_COMPUTED, check_for_data
from msa_ablate.data import MSAData, Split
from msa_ablate.data.fingerprint import fingerprint
from msa_ablate.errors import ConfigError
from msa_ablate.files import write_atomic
from msa_ablate.models.sequences import attention_fast_path_off
from msa_ablate.records import RunRecord
from msa_ablate.train import Callback, FitResult, fit, predict, seed_everything

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=2)
def _load_data(spec: str, content: str, text_bert: bool = False) -> MSAData:
    return instantiate(OmegaConf.create(spec), _partial_=True)(**({"text_bert": True} if text_bert else {}))


def reads_text_bert(cfg: DictConfig) -> bool:
    """Whether the model reads the text as BERT token ids (text=bert: a ``model.text``)."""
    return cfg.model.get("text") is not None and "text" in cfg.model.modalities


def load_data(cfg: DictConfig) -> MSAData:
    """``cfg.data``, loaded once per process for each content (a sweep's jobs in one process
    share it; nothing modifies it), and checked against the trainer's settings. Built as a partial
    and called, so that a DataError reaches the user as it is (instantiate would wrap it). With
    text=bert, the file's ``text_bert`` token ids too."""
    spec = OmegaConf.to_container(cfg.data, resolve=True)
    data = _load_data(OmegaConf.to_yaml(cfg.data, resolve=True), json.dumps(fingerprint(spec)), reads_text_bert(cfg))
    check_for_data(cfg, data)
    return data


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


def describe(choices: Mapping[str, str]) -> str:
    """A run's options in one line, data and model first (Hydra lists them last)."""
    return ", ".join(f"{group}={option}" for group, option in reversed(choices.items()) if group != "hparams_search")


def clips(sizes: Mapping[str, int]) -> str:
    return f"{'/'.join(map(str, sizes.values()))} clips ({'/'.join(sizes)})"


def build_model(cfg: DictConfig, data: MSAData, choices: dict[str, str]) -> torch.nn.Module:
    """Initialised under the run's seed (as each member of a seed pack is, under its own), for the
    data's dims and label range. A fusion that combines the modalities step by step refuses
    modalities that have steps of their own (unaligned data, without ``data.align``)."""
    seed_everything(cfg.seed)
    model = instantiate(cfg.model, _partial_=True)(input_dims=data.dims, label_range=data.label_range)
    steps = {m: data.steps[m] for m in model.modalities}
    if getattr(model.fusion, "stepwise", False) and len(set(steps.values())) > 1:
        raise ConfigError(f"fusion={choices.get('fusion')}: it combines the modalities step by step, and these have "
                          f"steps of their own ({steps}): set data.align=resample or data.align=pool, or choose "
                          "a fusion that attends across them (cross_attention, text_centred) or pools each "
                          "(tensor, low_rank, late)")
    if getattr(model.text_input, "stepwise", False) and len(set(steps.values())) > 1:  # MAG-BERT's gate
        raise ConfigError(f"text={choices.get('text')}: its gate adds the other modalities to the text step by step, "
                          f"and these have steps of their own ({steps}): set data.align=resample or "
                          "data.align=pool, or use text=bert")
    return model


def build_loss(cfg: DictConfig) -> torch.nn.Module:
    """A partial called, as in load_data, so a ConfigError from the loss reaches the user as it is.
    With tasks=unimodal, the multi-task loss (``cfg.tasks``) around it."""
    criterion = instantiate(cfg.loss, _partial_=True)()
    if cfg.get("tasks") is not None:
        return instantiate(cfg.tasks, _partial_=True)(criterion=criterion)
    return criterion


def build_recipe(cfg: DictConfig) -> dict[str, Callable]:
    """What makes the optimiser and the schedule (conf/optimizer/, conf/scheduler/), for ``fit``."""
    return {"make_optimizer": instantiate(cfg.optimizer, _convert_="all"),
            "make_schedule": instantiate(cfg.scheduler)}


def train_runs(cfgs: Sequence[DictConfig], folders: Sequence[Path], device: torch.device, recs: Sequence[RunRecord],
          callbacks: Iterable[Callback] = ()) -> None:
    """Trains a job's runs, a config, folder and record each (one run; or a seed pack's members,
    trained together), into their folders (TensorBoard events, model.pt, predictions.csv) and
    writes each one's record there, completed or failed (diverged). ``recs`` (what the job knows of
    the runs: their identity) are updated in place, so that a job that fails still has the facts
    gathered so far."""
    cfg = cfgs[0]
    data = load_data(cfg).to(device)
    models = [build_model(c, data, recs[0].choices).to(device) for c in cfgs]
    n_params = sum(p.numel() for p in models[0].parameters())
    for record in recs:
        record.data = {**(record.data or {}), **data.summary()}
        record.device, record.n_params, record.pack_size = str(device), n_params, len(cfgs)
    packed = f", seeds {[c.seed for c in cfgs]} packed" if len(cfgs) > 1 else ""
    log.info("%s on %s: %s params, %s%s", describe(recs[0].choices), device, f"{n_params:,}",
             clips(recs[0].data["sizes"]), packed)
    if packed and device.type == "cuda" and not cfg.trainer.cuda_graph:  # measured on an H200: docs/benchmarks.md
        log.warning("a seed pack on CUDA without trainer.cuda_graph=true is bound by kernel launches (its LSTM cells "
                    "run step by step): on an H200 it took 2.5x as long as the same seeds one after another")
    with ExitStack() as stack:
        writers = [stack.enter_context(SummaryWriter(str(folder))) for folder in folders]
        results = fit(models, data, build_loss(cfg), cfg.trainer, seeds=[c.seed for c in cfgs], writers=writers,
                      callbacks=callbacks, **build_recipe(cfg))
        for c, model, writer, folder, record, result in zip(cfgs, models, writers, folders, recs, results):
            if result.diverged:  # a pack's member: the others are kept (the job then fails, naming it)
                record.status, record.reason = "failed", f"TrainingDiverged: {result.diverged}"
                record.history = result.history
            else:
                finish_events(writer, c, record, model, data, result)
                write_model_and_predictions(folder, c, model, data)
                record.status, record.best_epoch, record.select_metric = ("completed", result.best_epoch,
                                                                          c.trainer.select_metric)
                record.valid, record.test, record.history = result.valid, result.test, result.history
                record.train_seconds = round(result.train_seconds, 3)
            records.write(folder, record)


def write_model_and_predictions(folder: Path, cfg: DictConfig, model: torch.nn.Module, data: MSAData) -> None:
    """The selected state's weights (``model.pt``), and its predictions on the validation split and,
    where it was evaluated, the test split (``predictions.csv``: split, index, id, label,
    prediction); each written atomically, before the record that says the run completed."""
    write_atomic(folder / "model.pt", lambda f: torch.save(model.state_dict(), f))
    model.eval()
    names = ("valid", "test") if cfg.trainer.evaluate_test else ("valid",)
    write_predictions(folder / "predictions.csv", {name: (data.splits[name], predict(
        model, data.splits[name], cfg.trainer.eval_batch_size)) for name in names})


def write_predictions(file: Path, splits: Mapping[str, tuple[Split, torch.Tensor]]) -> None:
    """``predictions.csv``'s columns (split, index, id, label, prediction), one line per sample of
    each split, written atomically."""
    lines = ["split,index,id,label,prediction"]
    for name, (split, predictions) in splits.items():
        ids = split.ids or [""] * len(split)
        lines += [f"{name},{i},{json.dumps(str(ids[i]))},{label!r},{prediction!r}"
                  for i, (label, prediction) in enumerate(zip(split.labels.tolist(), predictions.tolist()))]
    write_atomic(file, lambda f: f.write(("\n".join(lines) + "\n").encode()))


def finish_events(writer: SummaryWriter, cfg: DictConfig, record: RunRecord, model: torch.nn.Module,
                  data: MSAData, result: FitResult) -> None:
    """The model graph (``trainer.log_graph``), and the hparams with the final metrics: the
    groups' options, the seed, the trainer's settings, and what the run's sweep varies (marked as
    such, so TensorBoard's table shows it). The final metrics sort after the loss curves."""
    if cfg.trainer.log_graph:
        valid = data.splits["valid"]
        log_graph(writer, model, valid.inputs(torch.arange(2, device=valid.labels.device)))
    choices = {k: v for k, v in record.choices.items() if k not in (*NOT_COMPUTED, "trainer")}
    known = {**choices, "seed": cfg.seed, **records.flatten(record.config)}
    params = {k: known.get(k) for k in record.varied or []}
    params.update({**choices, "seed": cfg.seed, **{f"trainer.{k}": v for k, v in cfg.trainer.items()}})
    params = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in params.items()}
    metrics = {f"{split}/{k}": v for split, scores in (("valid_best", result.valid), ("test", result.test))
               for k, v in scores.items() if math.isfinite(v)}
    experiment, start, end = hparams(params, metrics)
    mark_varied(experiment, record.varied or [])
    # written into the run's own event file: add_hparams would open a timestamped sub-folder,
    # which TensorBoard then lists as a second run
    for summary in (experiment, start, end):
        writer.file_writer.add_summary(summary)
    for k, v in metrics.items():
        writer.add_scalar(k, v)


def mark_varied(experiment: Summary, varied: Iterable[str]) -> None:
    """Flag the hparams the sweep varies as differing: TensorBoard's HPARAMS table sorts those
    first, then the rest by name, and shows the first few."""
    content = HParamsPluginData.FromString(experiment.value[0].metadata.plugin_data.content)
    for info in content.experiment.hparam_infos:
        info.differs = info.name in varied
    experiment.value[0].metadata.plugin_data.content = content.SerializeToString()


def log_graph(writer: SummaryWriter, model: torch.nn.Module, example: dict[str, torch.Tensor]) -> None:
    """The model graph for TensorBoard; a model that will not trace costs a warning, not the run."""
    try:
        model.eval()
        with attention_fast_path_off(), warnings.catch_warnings():  # tracer notes: noise here
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.trace, used by add_graph
            writer.add_graph(model, (dict(example),), use_strict_trace=False)
    except Exception as e:  # tracing is best-effort: the run's results do not depend on it
        log.warning("model graph not logged: tracing failed (%s: %s)", type(e).__name__, str(e).splitlines()[0])
