"""Sweeps on a real SLURM cluster: the one node of tests/slurm/cluster.sh (no accounting, as on
many small clusters), which `.ci/run` starts. By hand, serially:

    tests/slurm/cluster.sh start && SLURM_CONF=/tmp/msa_slurm/slurm.conf python -m pytest -n0 -m slurm tests/slurm

Each test sends its signals itself (scancel, after a job's first epoch line), never waits on a
time limit, and is guarded by a timeout."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(90)]

SLURM_CONF = os.environ.get("SLURM_CONF") or f"{os.environ.get('MSA_SLURM_DIR', '/tmp/msa_slurm')}/slurm.conf"
ENV = {**os.environ, "SLURM_CONF": SLURM_CONF, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
# The CPU profile, sized for the test node (1 of its CPUs a job, with DefMemPerCPU); runs long enough to
# be signalled mid-way.
LAUNCH = ["hydra/launcher=submitit_slurm_cpu", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=null"]
QUICK = ["data.scale=0.02", "trainer.epochs=30", "trainer.log_graph=false", "seed=1,2"]


@pytest.fixture(scope="module", autouse=True)
def cluster() -> None:
    try:
        state = subprocess.run(["sinfo", "-h", "-o", "%t"], env=ENV, capture_output=True, text=True)
    except FileNotFoundError:
        pytest.fail("no SLURM commands here: tests/slurm/cluster.sh start")
    assert state.stdout.strip() in ("idle", "mix", "alloc"), (
        f"no SLURM node up ({state.stdout.strip() or state.stderr.strip()}): tests/slurm/cluster.sh start")


STARTED: list[tuple[subprocess.Popen, Path]] = []


@pytest.fixture(autouse=True)
def stop_what_is_left() -> Iterator[None]:
    """After a test (a failure, a timeout): the sweeps it started stopped, their SLURM jobs cancelled."""
    yield
    for proc, sweep in STARTED:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        arrays = {job.split("_")[0] for job in slurm_jobs(sweep)} if (sweep / ".submitit").exists() else set()
        if arrays:
            subprocess.run(["scancel", *sorted(arrays)], env=ENV, capture_output=True)
    STARTED.clear()


def start_sweep(sweep: Path, *overrides: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "msa_ablate", "-m", *LAUNCH, *QUICK, *overrides,
                             f"hydra.sweep.dir={sweep}"], cwd=sweep.parent, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    STARTED.append((proc, sweep))
    return proc


def sweep_output(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=80)
    return proc.returncode, out, err


def run_sweep(sweep: Path, *overrides: str) -> tuple[int, str, str]:
    return sweep_output(start_sweep(sweep, *overrides))


def job_folder(sweep: Path, seed: int) -> Path:
    [folder] = sweep.glob(f"*seed={seed},*")
    return folder


def record(sweep: Path, seed: int) -> dict:
    return json.loads((job_folder(sweep, seed) / "metrics.json").read_text())


def slurm_jobs(sweep: Path) -> list[str]:
    """The SLURM ids (ARRAY_TASK) the sweep's jobs ran as, from submitit's folders."""
    return sorted(p.name for p in (sweep / ".submitit").glob("[0-9]*_[0-9]*"))


def signal_after_first_epoch(proc: subprocess.Popen, sweep: Path, *scancel: str) -> str:
    """Waits for the first epoch line of the sweep's job 0 (seed 1), and the checkpoint written just
    after it, then scancels the job with ``scancel``'s options; returns its SLURM id."""
    while proc.poll() is None:
        folders = list(sweep.glob("*seed=1,*"))
        if folders and (folders[0] / "checkpoint.pt").exists() and "epoch 1/" in (folders[0] / "__main__.log").read_text():
            [job] = [j for j in slurm_jobs(sweep) if j.endswith("_0")]
            subprocess.run(["scancel", *scancel, job], env=ENV, check=True)
            return job
        time.sleep(0.1)
    raise AssertionError(f"the sweep ended before job 0 trained an epoch:\n{proc.communicate()[1]}")


def summary(out: str) -> str:
    [line] = [line for line in out.splitlines() if " jobs, " in line]
    return line.split(": ", 1)[1].split(" in ")[0]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    sweep = tmp_path_factory.mktemp("slurm") / "sweep"
    code, out, err = run_sweep(sweep)
    assert code == 0, err
    return sweep


def test_a_two_task_array_sweep_then_summarize(uninterrupted):
    assert [record(uninterrupted, seed)["status"] for seed in (1, 2)] == ["completed", "completed"]
    [array] = {job.split("_")[0] for job in slurm_jobs(uninterrupted)}  # one array, one task a job
    assert slurm_jobs(uninterrupted) == [f"{array}_0", f"{array}_1"]
    tables = subprocess.run([sys.executable, "analysis/summarize.py", str(uninterrupted), "--no-plots"], cwd=ROOT,
                            env=ENV, capture_output=True, text=True, timeout=60)
    assert tables.returncode == 0, tables.stderr
    assert "status: {'completed': 2}" in tables.stdout, tables.stdout
    assert re.search(r"^baseline +2 ", tables.stdout, re.M), tables.stdout  # the one configuration, over 2 seeds


def test_resume_submits_nothing_for_completed_jobs(uninterrupted):
    """resume=true submitted every job, each spending a cluster slot on starting Python only to skip."""
    before = slurm_jobs(uninterrupted)
    code, out, err = run_sweep(uninterrupted)
    assert code == 0, err
    assert summary(out) == "2 jobs, 0 completed, 2 skipped (completed before), 0 failed"
    assert slurm_jobs(uninterrupted) == before  # nothing submitted


def test_a_preempted_task_resumes_to_the_metrics_of_an_uninterrupted_run(tmp_path, uninterrupted):
    sweep = tmp_path / "sweep"
    proc = start_sweep(sweep)
    job = signal_after_first_epoch(proc, sweep, "--signal=USR2")  # SLURM's preemption/time-limit warning
    code, out, err = sweep_output(proc)
    assert code == 0, err
    assert summary(out) == "2 jobs, 2 completed, 0 skipped (completed before), 0 failed"
    assert "DUE TO JOB REQUEUE" in (sweep / ".submitit" / job / f"{job}_0_log.err").read_text()
    assert "resuming after epoch" in (job_folder(sweep, 1) / "__main__.log").read_text()  # preempted mid-way
    for seed in (1, 2):
        resumed, clean = record(sweep, seed), record(uninterrupted, seed)
        assert resumed["status"] == "completed"
        assert [resumed[k] for k in ("best_epoch", "valid", "test", "history")] == [
            clean[k] for k in ("best_epoch", "valid", "test", "history")]


def test_scancel_ends_the_sweep_with_its_summary(tmp_path):
    """scancel's SIGTERM went unrecorded (submitit ignores it), and the sweep died with
    UncompletedJobError, or, without sacct, waited forever for the job."""
    sweep = tmp_path / "sweep"
    proc = start_sweep(sweep)
    job = signal_after_first_epoch(proc, sweep)
    code, out, err = sweep_output(proc)
    assert code == 1
    assert summary(out) == "2 jobs, 1 completed, 0 skipped (completed before), 1 failed"
    [line] = [line for line in err.splitlines() if line.startswith("msa_ablate: error:")]
    assert re.match(rf"msa_ablate: error: job 0 \(.*seed=1,.*\): NoResult: SLURM job {job} ended without a result "
                    r"\(CANCELLED\); its record: interrupted: SIGTERM; its log: ", line), line
    assert "Traceback" not in err
    cancelled = record(sweep, 1)
    assert (cancelled["status"], cancelled["reason"]) == ("interrupted", "SIGTERM")
    assert (job_folder(sweep, 1) / "checkpoint.pt").exists()  # the same command goes on from there
    assert record(sweep, 2)["status"] == "completed"


def test_a_gpu_request_on_a_cpu_partition_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "msa_ablate", "-m", "hydra/launcher=submitit_slurm", *QUICK,
                           f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path, env=ENV, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (  # was a 30-line FailedJobError traceback
        "msa_ablate: error: hydra/launcher=submitit_slurm: the jobs were not submitted: sbatch: error: Invalid "
        "generic resource (gres) specification (hydra.launcher.gpus_per_task asks for GPUs; on a CPU partition: "
        "hydra/launcher=submitit_slurm_cpu)")
