"""Schemas of the config groups whose keys are fixed (trainer, data), registered with Hydra so that
a value of the wrong type fails at composition; those of the plain groups the model reads (layernorm,
modalities), which check_types checks with every node that has a ``_target_`` (msa_ablate/signatures.py);
and the range and cross-field rules that a type cannot say, checked in one place before a run starts.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra import compose
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from omegaconf import MISSING, DictConfig, OmegaConf

from msa_ablate.errors import ConfigError, is_int, is_number, one_of, positive_int, positive_number, suggest
from msa_ablate.metrics import LOWER_IS_BETTER, METRIC_SETS, SCORE_NAMES, metric_set
from msa_ablate.signatures import check_types


@dataclass
class TrainerConfig:
    """conf/trainer/: the training recipe (the handout's by default) and how a run is kept."""

    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-3
    select_metric: str = "Corr"  # the validation metric that picks the best epoch (MAE, loss: lowest)
    eval_batch_size: int = 256  # evaluation only; results do not depend on it beyond float rounding
    evaluate_test: bool = True  # false: the test split is never read (hyperparameter search)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    log_graph: bool = True  # the model graph in TensorBoard
    progress_every: float = 30.0  # seconds between progress lines where the output is no terminal (0: none)
    keep_checkpoint: bool = False  # checkpoint.pt (written after every epoch) is removed once the run completes
    pack_seeds: bool = False  # this job trains every seed in `seeds` together (a seed pack), one folder each
    cuda_graph: bool = False  # CUDA only: each training step replayed from a CUDA graph
    grad_clip: Optional[float] = None  # the gradients' total norm clipped to this (null: no clipping)
    patience: Optional[int] = None  # stop once the select_metric has not improved for this many epochs (null: never)


@dataclass
class SyntheticDataConfig:
    """conf/data/synthetic.yaml: the built-in MOSI-like data."""

    _target_: str = "msa_ablate.data.synthetic.make_synthetic_mosi"
    seed: int = 0  # the data's own seed, apart from the run's
    scale: float = 1.0  # fraction of MOSI's split sizes
    unaligned: bool = False  # audio and vision frames at their own rates (375 and 500 steps)
    layout: str = "handout"  # handout | mult | mmsa: which file layout it imitates
    label_range: List[float] = field(default_factory=lambda: [-3.0, 3.0])  # [-1, 1]: CH-SIMS-like labels
    align: str = "none"  # none | resample | pool: unaligned audio and vision onto the text's steps


@dataclass
class PickleDataConfig:
    """conf/data/{mosi,mosei,sims,simsv2}.yaml: a dataset's pickle."""

    _target_: str = "msa_ablate.data.pickles.load_pickle"
    path: str = MISSING
    dims: Any = None  # {modality: dim} the file must have (null: the file's); Any, as a typed dict takes no new keys
    clip_labels: bool = False  # true: labels outside the range are clipped into it (counted in metrics.json)
    align: str = "none"  # none | resample | pool: unaligned audio and vision onto the text's steps
    label_range: List[float] = field(default_factory=lambda: [-3.0, 3.0])  # the dataset's; it picks the metrics
    name: str = ""  # the dataset's name, for the warnings below
    expect: Any = None  # what a real file of the dataset holds: split sizes, the dims of its known layouts


@dataclass
class LayernormConfig:
    """conf/layernorm/: the model's input LayerNorm (model.layernorm). Checked by check_types, not
    registered with Hydra, whose bool would take `no` for false unlike the model's keys."""

    enabled: bool


@dataclass
class ModalitiesConfig:
    """conf/modalities/: the modalities the model reads (model.modalities)."""

    names: List[str]


PLAIN_GROUPS = {"layernorm": LayernormConfig, "modalities": ModalitiesConfig}


# Settings that say how a run is launched, kept or shown, not what it computes (config groups and
# keys alike; ``eval`` is both): left out of a run's identity, of the changes its record lists, and
# of its job folder's name. The one list: records.py, the sweeper and the analysis derive from it.
NOT_COMPUTED = ("experiment", "hparams_search", "eval", "resume", "seeds", "trainer.keep_checkpoint",
                "trainer.log_graph", "trainer.progress_every")
# Where a run computes: results can differ by float rounding, so it stays in the run's identity, but
# a configuration run elsewhere is the same model and recipe (matched so beside published numbers).
WHERE_IT_RUNS = ("trainer.device",)

store = ConfigStore.instance()
store.store(group="schema", name="trainer", node=TrainerConfig)
store.store(group="schema", name="synthetic", node=SyntheticDataConfig)
store.store(group="schema", name="pickle", node=PickleDataConfig)


def direction(metric: str) -> str:
    """The way a search optimises ``metric``: ``${msa_ablate.direction:${trainer.select_metric}}``
    in conf/hparams_search/optuna.yaml gives the sweeper the metric's own."""
    return "minimize" if metric in LOWER_IS_BETTER else "maximize"


OmegaConf.register_new_resolver("msa_ablate.direction", direction)


@functools.cache
def _composed(search_path: tuple[str, ...]) -> DictConfig:
    return compose("config", return_hydra_config=True)


def default_config() -> DictConfig:
    """What ``python -m msa_ablate`` composes with no overrides (Hydra's node included), which each
    record says what its run changes from: composed once per process and config search path (a
    sweep's jobs in one process share it; composing costs about what a tiny run's training does)."""
    return _composed(tuple(s.full_path() for s in GlobalHydra.instance().config_loader().get_sources()))


def check_settings(cfg: DictConfig) -> None:
    """Every key's type, and the rules a type cannot state; each failure is a ConfigError naming the key."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{missing[0]}: a value is required (e.g. {missing[0]}=...)")
    for group in ("trainer", "data"):  # `+trainer.epoch=3` gets past the schema: a typo all the same
        schema = OmegaConf.get_type(cfg[group])
        names = [f.name for f in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema) else list(cfg[group])
        for key in cfg[group]:
            if key not in names:
                raise ConfigError(f"{group}.{key}: no such setting{suggest(f'{group}.{key}', names)}")
    t = cfg.trainer
    for key in ("epochs", "batch_size", "eval_batch_size"):
        positive_int(f"trainer.{key}", t[key])
    positive_number("trainer.lr", t.lr)
    if not is_number(t.progress_every) or t.progress_every < 0:
        raise ConfigError(f"trainer.progress_every={t.progress_every}: must be a number of seconds >= 0 (0: no lines)")
    if t.grad_clip is not None:
        positive_number("trainer.grad_clip", t.grad_clip)
    if t.patience is not None:
        positive_int("trainer.patience", t.patience)
    one_of("trainer.select_metric", t.select_metric, SCORE_NAMES)
    if t.cuda_graph and cfg.model.get("text") is not None:
        raise ConfigError("trainer.cuda_graph=true: not with text=bert (BERT's step under a CUDA graph is not "
                          "tested yet); leave trainer.cuda_graph=false")
    if not is_seed(cfg.seed):
        raise ConfigError(f"seed={cfg.seed}: must be an integer in [0, 2**32)")
    if not isinstance(cfg.get("resume", True), bool):
        raise ConfigError(f"resume={cfg.resume}: must be true or false")
    dims = cfg.data.get("dims")
    if dims is not None and not (isinstance(dims, Mapping) and all(is_int(d) and d > 0 for d in dims.values())):
        raise ConfigError(f"data.dims={dims}: expected a dim per modality, e.g. "
                          "data.dims={text:300,audio:74,vision:35}")
    check_types(cfg, PLAIN_GROUPS)


def check_for_data(cfg: DictConfig, data) -> None:
    """The rules between the settings and the data loaded: the selection metric is one the data's
    label range is scored by; tasks=unimodal needs a label per modality the model reads."""
    names = METRIC_SETS[metric_set(data.label_range)]
    if cfg.trainer.select_metric not in ("loss", *names):
        raise ConfigError(f"trainer.select_metric={cfg.trainer.select_metric}: labels in {list(data.label_range)} "
                          f"are scored by {', '.join(names)} (or the loss)")
    if cfg.model.get("tasks") is not None:
        missing = [m for m in cfg.model.modalities if m not in data.splits["train"].unimodal]
        if missing:
            raise ConfigError(f"tasks=unimodal: {data.source} has no label of its own for {', '.join(missing)} "
                              "(CH-SIMS's regression_labels_T/A/V); use it on data=sims or simsv2, or tasks=main")


def is_seed(value: object) -> bool:
    return is_int(value) and 0 <= value < 2**32
