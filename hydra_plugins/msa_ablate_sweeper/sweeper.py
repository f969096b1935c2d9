"""``hydra/sweeper=msa_ablate``: Hydra's basic sweeper, plus three things a study needs.

- ``one_at_a_time``: factors varied alone, every other at its default, each crossed with what
  ``params`` and the command line sweep. ``fusion: glob(*)`` there takes every option that
  conf/fusion/ has when the sweep starts: a fusion added to the config group joins the study.
- Each job's folder is named after its own overrides (``encoder=gru,seed=1``), not numbered: a
  sweep run again into the same folder with other values adds folders beside the earlier ones,
  and TensorBoard lists the runs by what they are.
- ``dry_run=true`` lists the jobs and runs none.
- Every job's composition is checked before the sweep folder exists, and the sweep ends with one
  line: its folder, how many jobs completed, were skipped (already completed) or failed, and the
  command that tabulates it; non-zero exit if any failed, each failure named in one line.
"""

import copy
import hashlib
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional
from urllib.parse import quote

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from msa_ablate.config import NOT_COMPUTED
from msa_ablate.progress import duration

log = logging.getLogger(__name__)


@dataclass
class StudySweeperConf:
    _target_: str = "hydra_plugins.msa_ablate_sweeper.sweeper.StudySweeper"
    max_batch_size: Optional[int] = None  # jobs per launch (default: one at a time in-process, else all)
    params: Optional[Dict[str, str]] = None  # crossed with every job, as Hydra's basic sweeper does
    one_at_a_time: Optional[Dict[str, str]] = None  # each varied alone from the defaults
    dry_run: bool = False  # list the jobs, run none


ConfigStore.instance().store(group="hydra/sweeper", name="msa_ablate", node=StudySweeperConf, provider="msa_ablate")


def folder_name(job: List[str]) -> str:
    """The job's own overrides, sorted, as one folder name: ``encoder=gru,seed=1`` (``defaults``
    for none); characters a path or Hydra would read otherwise are %-escaped, and a name over
    120 characters is cut, with a digest of the whole."""
    kept = sorted(o for o in job if o.split("=")[0].lstrip("+~") not in NOT_COMPUTED)
    name = quote(",".join(kept), safe="=,._-+~:[]{}@") or "defaults"
    return name if len(name) <= 120 else f"{name[:100]}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"


def varied(jobs: List[List[str]]) -> List[str]:
    """The keys whose value is not the same in every job (a key some jobs lack varies too)."""
    values: Dict[str, set] = {}
    for job in jobs:
        given = dict(o.split("=", 1) for o in job)
        for key in {k for j in jobs for k in (o.split("=", 1)[0] for o in j)}:
            values.setdefault(key, set()).add(given.get(key))
    return sorted((k for k, v in values.items() if len(v) > 1), key=lambda k: (k == "seed", k))  # seeds last


def with_folders(jobs: List[List[str]]) -> List[List[str]]:
    """Each job with its folder (``hydra.sweep.subdir``; a name taken twice gets the job's number)
    and the keys the sweep varies (``MSA_ABLATE_VARIED``: TensorBoard's hparams list them first)."""
    keys = ",".join(k.lstrip("+") for k in varied(jobs))
    seen: set = set()
    named = []
    for i, job in enumerate(jobs):
        name = folder_name(job)
        name = name if name not in seen else f"{name}%23{i}"
        seen.add(name)
        named.append([*job, f"hydra.sweep.subdir='{name}'", f"++hydra.job.env_set.MSA_ABLATE_VARIED='{keys}'"])
    return named


class ComposedOnce:
    """Hydra's config loader, but a job's config composed once: the sweeper's check of every job,
    then the in-process launcher, would each compose it (about 0.1 s a job)."""

    def __init__(self, loader: Any) -> None:
        self.loader, self.checked = loader, {}

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: List[str]) -> DictConfig:
        key = tuple(sweep_overrides)
        if key in self.checked:
            return self.checked.pop(key)  # the launcher's call: the check's copy, held by nobody else
        self.checked[key] = self.loader.load_sweep_config(master_config, sweep_overrides)
        return copy.deepcopy(self.checked[key])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


class StudySweeper(BasicSweeper):
    def __init__(self, max_batch_size: Optional[int] = None, params: Optional[Dict[str, str]] = None,
                 one_at_a_time: Optional[Dict[str, str]] = None, dry_run: bool = False) -> None:
        super().__init__(max_batch_size, params)
        self.one_at_a_time = one_at_a_time or {}
        self.dry_run = dry_run

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        if isinstance(self.launcher, BasicLauncher):  # jobs composed in this process: once each
            self.hydra_context = HydraContext(ComposedOnce(hydra_context.config_loader), hydra_context.callbacks)
            self.launcher.hydra_context = self.hydra_context

    def default(self, key: str) -> Optional[str]:
        """The value a key (or config group) has where nothing overrides it."""
        assert self.config is not None
        choices = self.config.hydra.runtime.choices
        if key in choices:
            return choices[key]
        value = OmegaConf.select(self.config, key, default=None)
        return None if value is None else str(value)

    def job_list(self, arguments: List[str]) -> List[List[str]]:
        """The overrides of every job: the baseline, then each one-at-a-time variation, each
        crossed with the product of ``params`` and the command line."""
        assert self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        crossed = parser.parse_overrides([*self._parse_config(), *arguments])
        held = {o.key_or_group for o in crossed}  # set on the command line: not varied
        variations: List[List[str]] = [[]]
        for factor in parser.parse_overrides([f"{k}={v}" for k, v in self.one_at_a_time.items()]):
            if factor.key_or_group in held:
                continue
            values = (factor.sweep_string_iterator() if factor.is_sweep_override()
                      else [factor.get_value_element_as_str()])
            default = self.default(factor.key_or_group)
            variations += [[f"{factor.get_key_element()}={v}"] for v in values if v != default]
        [product] = self.split_arguments(crossed, None)
        return [variation + list(job) for variation in variations for job in product]

    def sweep(self, arguments: List[str]) -> Any:
        assert self.config is not None and self.launcher is not None
        jobs = self.job_list(arguments)
        if self.dry_run:
            for i, job in enumerate(jobs):
                print(f"{i}: {' '.join(job) or '(defaults)'}")
            print(f"{len(jobs)} jobs (dry run: none launched)")
            return []
        jobs = with_folders(jobs)
        self.validate_batch_is_legal(jobs)  # a typo fails here, before the sweep folder exists
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        size = self.max_batch_size or (1 if isinstance(self.launcher, BasicLauncher) else len(jobs))
        self.overrides = list(self.split_overrides_to_chunks(jobs, size))
        start, returns = time.time(), []
        while not self.is_done():
            batch = self.get_job_batch()
            returns += self.launcher.launch(batch, initial_job_idx=len(returns))
            if len(returns) < len(jobs):
                elapsed = time.time() - start
                log.info("sweep: %d of %d jobs done, %s elapsed, about %s left", len(returns), len(jobs),
                         duration(elapsed), duration(elapsed / len(returns) * (len(jobs) - len(returns))))
        self.report(returns, sweep_dir, start)
        return [returns]

    def report(self, returns: List[JobReturn], sweep_dir: Path, start: float) -> None:
        failed = [r for r in returns if r.status != JobStatus.COMPLETED]
        skipped = [r for r in returns if r.status == JobStatus.COMPLETED and not ran_since(r, start)]
        for r in failed:
            reason = " ".join(f"{type(r._return_value).__name__}: {r._return_value}".split())  # one line
            print(f"msa_ablate: error: job {r.hydra_cfg.hydra.job.num} ({r.hydra_cfg.hydra.runtime.output_dir}): "
                  f"{reason}", file=sys.stderr)
        print(f"{sweep_dir}: {len(returns)} jobs, {len(returns) - len(failed) - len(skipped)} completed, "
              f"{len(skipped)} skipped (completed before), {len(failed)} failed in {duration(time.time() - start)}; "
              f"tables: python analysis/summarize.py {sweep_dir}")
        if failed:
            sys.exit(1)


def ran_since(job: JobReturn, start: float) -> bool:
    """Whether the job wrote a record (its own, or a seed pack member's) since ``start``."""
    folder = Path(job.hydra_cfg.hydra.runtime.output_dir)
    return any(p.stat().st_mtime >= start for p in [folder / "metrics.json", *folder.glob("seed_*/metrics.json")]
               if p.exists())
