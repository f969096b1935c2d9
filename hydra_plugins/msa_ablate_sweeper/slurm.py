"""``hydra/launcher=submitit_slurm`` (and ``submitit_slurm_cpu``): hydra-submitit-launcher's SLURM
launcher, with what a sweep needs on a cluster.

- A job with nothing to do (``jobs.nothing_to_do``: resume's own check) is not submitted: it is
  skipped in this process, through the same task, as the job itself would skip it.
- sbatch refusing the jobs (a GPU asked of a CPU partition, say) is one line, exit 2.
- A job that ends without a result (scancel, a kill, a node failure) is one failed job of the sweep,
  named with its SLURM state and what its record says, and the sweep goes on to its summary (the
  plugin raised at the first such job, and left no summary).
- Where sacct fails (accounting disabled), the jobs' states come from squeue (submitit asked sacct
  only, so it waited forever on a job that died without a result).

The jobs run the plugin's own launcher, pickled as the plugin submits it. The submitit side is in
``_submitit.py``, imported once this launcher is chosen: Hydra's plugin scan imports this module on
every run, and submitit comes only with the ``launchers`` extra.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from hydra.core.utils import JobReturn, run_job
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from msa_ablate.jobs import nothing_to_do, overridden_keys

JOB_DIR_KEY, JOB_SUBDIR_KEY = "hydra.sweep.dir", "hydra.sweep.subdir"  # as the plugin's jobs run


class SlurmLauncher(Launcher):
    def __init__(self, **params: Any) -> None:
        from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as Plugin  # an extra's

        self.plugin = Plugin(**params)
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        self.plugin.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from hydra_plugins.msa_ablate_sweeper import _submitit  # here, not at the top: submitit is an extra's

        assert self.hydra_context is not None and self.task_function is not None
        returns: Dict[int, JobReturn] = {}
        todo: List[Tuple[int, List[str], DictConfig]] = []
        for idx, overrides in enumerate(job_overrides, initial_job_idx):
            config = self.job_config(list(overrides), idx)
            task = copy.deepcopy(config)
            with open_dict(task):
                del task["hydra"]  # the task's config, as Hydra's run_job gives it
            if nothing_to_do(task, Path(config.hydra.runtime.output_dir), overridden_keys(config.hydra.overrides.task)):
                config.hydra.output_subdir = None  # its .hydra/ stays as the job that completed it wrote it
                returns[idx] = run_job(hydra_context=self.hydra_context, task_function=self.task_function,
                                       config=config, job_dir_key=JOB_DIR_KEY, job_subdir_key=JOB_SUBDIR_KEY,
                                       configure_logging=False)  # its lines in the sweep's log, not the job's
            else:
                todo.append((idx, list(overrides), config))
        if todo:
            for (idx, _, config), job in zip(todo, _submitit.submit(self.plugin, todo, JOB_DIR_KEY)):
                returns[idx] = _submitit.outcome(job, config)
        return [returns[idx] for idx in sorted(returns)]

    def job_config(self, overrides: List[str], idx: int) -> DictConfig:
        """The job's config as its process composes it (the plugin's ``__call__``), with its number
        and output folder (as Hydra's run_job sets it)."""
        assert self.config is not None and self.hydra_context is not None
        config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(config.hydra):
            config.hydra.job.num = idx
            folder = os.path.join(str(OmegaConf.select(config, JOB_DIR_KEY)), str(OmegaConf.select(config, JOB_SUBDIR_KEY)))
            config.hydra.runtime.output_dir = os.path.abspath(folder)
        return config
