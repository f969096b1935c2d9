"""The submitit side of ``slurm.SlurmLauncher``: submission, a watcher that does without sacct,
and each job's outcome. Not scanned by Hydra (the leading ``_``): submitit is an extra's."""

from __future__ import annotations

import contextlib
import getpass
import io
import logging
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import submitit
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import DictConfig, OmegaConf
from submitit.core.utils import FailedJobError, UncompletedJobError
from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

from msa_ablate import records
from msa_ablate.errors import UserError
from msa_ablate.jobs import headline

log = logging.getLogger(__name__)


class SubmissionError(UserError):
    """sbatch refused the sweep's jobs."""


class NoResult(RuntimeError):
    """A SLURM job that ended without returning its result."""


class SqueueWatcher(SlurmInfoWatcher):
    """submitit's watcher of SLURM job states, which asks sacct; where sacct fails (accounting
    disabled, or no sacct) it asks squeue, and a job squeue no longer lists has ended."""

    def __init__(self) -> None:
        super().__init__(delay_s=600)  # submitit's own for SLURM jobs: polls at 2, 4, 8 ... s, then every 10 min
        self.accounting: Optional[bool] = None

    def _make_command(self) -> Optional[List[str]]:
        command = super()._make_command()
        if command is None or self.has_accounting():
            return command
        return ["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T|%N", f"--user={getpass.getuser()}"]

    def has_accounting(self) -> bool:
        if self.accounting is None:
            try:
                self.accounting = subprocess.run(["sacct", "--noheader", "--jobs=1"], capture_output=True,
                                                 timeout=60).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                self.accounting = False
            if not self.accounting:
                log.info("sacct fails here (SLURM accounting disabled?): the jobs' states come from squeue")
        return self.accounting

    def read_info(self, string: Union[bytes, str]) -> Dict[str, Dict[str, str]]:
        if self.has_accounting():
            return super().read_info(string)
        text = string.decode() if isinstance(string, bytes) else string
        listed = super().read_info("JobID|State|NodeList\n" + text)
        ended = {job: {"State": "ENDED"} for job in self._registered - self._finished if job not in listed}
        return {**listed, **ended}


def submit(plugin: Any, todo: List[Tuple[int, List[str], DictConfig]], job_dir_key: str) -> List[SlurmJob]:
    """Submits the jobs as one SLURM array, as ``plugin`` (the plugin's launcher) does, each job
    running ``plugin``; sbatch's refusal is one line."""
    params = dict(plugin.params)
    folder, max_num_timeout = params.pop("submitit_folder"), params.pop("max_num_timeout")
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's error too; it is in the one line
            executor = submitit.AutoExecutor(cluster="slurm", folder=folder, slurm_max_num_timeout=max_num_timeout)
            executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
            jobs = executor.map_array(plugin, *zip(*[(overrides, job_dir_key, idx, f"job_id_for_{idx}",
                                                      Singleton.get_state()) for idx, overrides, _ in todo]))
    except RuntimeError as e:  # submitit's FailedJobError (sbatch's exit status), or no srun here
        raise SubmissionError(refusal(plugin, str(e))) from None
    log.info("submitted %d job%s to SLURM: %s", len(jobs), "s" * (len(jobs) != 1), plugin.config.hydra.sweep.dir)
    for (idx, overrides, _), job in zip(todo, jobs):
        log.info("\t#%d (SLURM job %s): %s", idx, job.job_id, " ".join(filter_overrides(overrides)))
    watcher = SqueueWatcher()
    for job in jobs:
        job.watcher = watcher  # this instance's: the class's own asks sacct only
    return jobs


def refusal(plugin: Any, error: str) -> str:
    """``hydra/launcher=NAME: the jobs were not submitted: <sbatch's error line>``, and where the
    jobs ask for GPUs, the CPU profile."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    said = next((line for line in reversed(lines) if "error" in line.lower()), lines[-1] if lines else error)
    name = plugin.config.hydra.runtime.choices.get("hydra/launcher")
    gpus = [f"hydra.launcher.{k}" for k in ("gpus_per_task", "gpus_per_node") if plugin.params.get(k)]
    hint = f" ({' and '.join(gpus)} asks for GPUs; on a CPU partition: hydra/launcher=submitit_slurm_cpu)" if gpus else ""
    return f"hydra/launcher={name}: the jobs were not submitted: {said}{hint}"


def outcome(job: SlurmJob, config: DictConfig) -> JobReturn:
    """The job's own JobReturn; a failed one saying why where the job ended without one."""
    try:
        return job.results()[0]
    except UncompletedJobError as e:
        if isinstance(e, FailedJobError):  # an exception outside the task: its trace's last line
            trace = str(e).split("You can check full logs")[0].splitlines()
            said = next((line for line in reversed(trace) if line.strip() and not line.startswith(("-", " "))), "")
            why = f"SLURM job {job.job_id} failed outside its task ({said})"
        else:
            why = f"SLURM job {job.job_id} ended without a result ({job.state})"
        failed = JobReturn(overrides=list(config.hydra.overrides.task), hydra_cfg=config, status=JobStatus.FAILED)
        failed.return_value = NoResult(f"{why}; {what_the_records_say(Path(config.hydra.runtime.output_dir))}; "
                                       f"its log: {job.paths.stderr}")
        return failed


def what_the_records_say(output_dir: Path) -> str:
    """``its record: interrupted: SIGTERM`` (a seed pack's: each member's), or that there is none."""
    said = [f"{'' if folder == output_dir else folder.name + ' '}{headline(record)}"
            for folder in [output_dir, *sorted(output_dir.glob("seed_*"))]
            if (record := records.read(folder)).status is not None]
    return f"its record: {', '.join(said)}" if said else "it left no record"
