"""Exactly once: completed jobs are skipped, killed runs continue from their checkpoint, and
failures are recorded without stopping the sweep."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from filelock import FileLock

import msa_ablate.train
from msa_ablate.jobs import LOCK
from tests.conftest import ROOT, TINY, main, run_tiny



def stop_at_epoch(monkeypatch, epoch: int, exception: BaseException):
    """Make the validation of `epoch` raise: the run dies after epoch - 1 was checkpointed."""
    evaluate, calls = msa_ablate.train.evaluate, []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == epoch:
            raise exception
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(msa_ablate.train, "evaluate", dying)


def test_a_completed_job_is_skipped_unless_resume_false(tmp_path):
    first = run_tiny(tmp_path)
    stamp = (tmp_path / "metrics.json").stat().st_mtime_ns
    assert run_tiny(tmp_path) == first
    assert (tmp_path / "metrics.json").stat().st_mtime_ns == stamp
    run_tiny(tmp_path, "seed=3")  # another configuration in the folder: it runs, the first is set aside
    assert json.loads((tmp_path / "metrics.json").read_text())["seed"] == 3
    assert json.loads((tmp_path / "previous" / "1" / "metrics.json").read_text()) == first
    run_tiny(tmp_path, "seed=3", "resume=false")  # runs again; the earlier seed-3 result is kept too
    assert [json.loads((tmp_path / "previous" / n / "metrics.json").read_text())["seed"] for n in "12"] == [42, 3]
    assert (tmp_path / "metrics.json").stat().st_mtime_ns != stamp


def test_a_killed_run_continues_to_the_same_metrics(tmp_path, monkeypatch):
    clean = run_tiny(tmp_path / "clean", "trainer.epochs=3")
    with monkeypatch.context() as m:
        stop_at_epoch(m, 3, RuntimeError("killed"))
        with pytest.raises(RuntimeError):
            run_tiny(tmp_path / "killed", "trainer.epochs=3")
    assert json.loads((tmp_path / "killed" / "metrics.json").read_text())["status"] == "failed"
    assert (tmp_path / "killed" / "checkpoint.pt").exists()
    resumed = run_tiny(tmp_path / "killed", "trainer.epochs=3")
    assert len(resumed["history"]) == len(clean["history"]) == 3
    for epoch, expected in zip(resumed["history"], clean["history"]):
        assert epoch == pytest.approx(expected)
    assert (resumed["best_epoch"], resumed["valid"], resumed["test"]) == (
        clean["best_epoch"], clean["valid"], clean["test"])
    assert not (tmp_path / "killed" / "checkpoint.pt").exists()  # removed once completed


def test_keep_checkpoint(tmp_path):
    run_tiny(tmp_path, "trainer.keep_checkpoint=true")
    assert (tmp_path / "checkpoint.pt").exists()


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), SystemExit(-1)], ids=["ctrl_c", "preempted"])
def test_ctrl_c_or_preemption_marks_the_run_interrupted_and_keeps_its_events(tmp_path, monkeypatch, stop):
    """SystemExit: how submitit's requeue on preemption stops a job."""
    stop_at_epoch(monkeypatch, 2, stop)
    with pytest.raises(type(stop)):
        run_tiny(tmp_path, "trainer.epochs=2")
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert record["status"] == "interrupted" and record["reason"] == type(stop).__name__
    assert list(tmp_path.glob("events.out.tfevents.*"))


def test_a_failed_job_does_not_stop_the_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    result = main("-m", *TINY, "fusion=cross_attention", "modalities=t,tva", f"hydra.sweep.dir={sweep}")
    assert result.code == 1
    [error] = result.stderr.splitlines()  # the failed job, named in one line; no traceback
    assert error.startswith("msa_ablate: error: job 0 (") and "fusion=cross_attention needs two modalities" in error
    assert result.stdout.strip().splitlines()[-1].startswith(f"{sweep}: 2 jobs, 1 completed, 0 skipped")
    status = {re.search(r"modalities=\w+", p.parent.name)[0]: json.loads(p.read_text())["status"]
              for p in sweep.glob("*/metrics.json")}
    assert status == {"modalities=t": "failed", "modalities=tva": "completed"}


def test_a_sweep_killed_mid_job_ends_with_every_run_exactly_once(tmp_path):
    """SIGKILL while job 1 trains (after its first epoch, of 8), then the same command again: 3 runs,
    each seed once."""
    sweep = tmp_path / "sweep"
    args = [sys.executable, "-m", "msa_ablate", "-m", *TINY, "trainer.epochs=8", "seed=1,2,3",
            f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    job = {seed: sweep / f"data.scale=0.05,seed={seed},trainer.device=cpu,trainer.epochs=8" for seed in (1, 2, 3)}
    deadline = time.monotonic() + 300
    while not (job[2] / "checkpoint.pt").exists():
        assert time.monotonic() < deadline and proc.poll() is None, "job 1 never checkpointed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert [p.parent for p in sweep.glob("*/metrics.json")] == [job[1]]  # job 1 killed mid-way, job 2 never started
    stamp = (job[1] / "metrics.json").stat().st_mtime_ns

    again = main(*args[3:])  # the same command, in this process: only the first needed one to kill
    assert again.code == 0, again.stderr
    summary = again.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"{sweep}: 3 jobs, 2 completed, 1 skipped (completed before)")
    records = [json.loads((job[seed] / "metrics.json").read_text()) for seed in (1, 2, 3)]
    assert [r["status"] for r in records] == ["completed"] * 3 and [r["seed"] for r in records] == [1, 2, 3]
    assert (job[1] / "metrics.json").stat().st_mtime_ns == stamp  # skipped, not re-run
    assert not list(sweep.glob("*/checkpoint.pt")) and not list(sweep.glob("*/previous"))  # resumed, not redone


def test_a_second_job_in_a_run_folder_waits_for_the_first_and_keeps_both_results(tmp_path):
    """The folder is locked while a job runs: a second process (another seed here) waits, then sets
    the first's completed run aside, whole, and trains its own; neither record is lost."""
    run_tiny(tmp_path, "seed=1")
    stamp, results = (tmp_path / "metrics.json").stat().st_mtime_ns, []
    with FileLock(tmp_path / LOCK):  # a job still running there holds it
        second = threading.Thread(target=lambda: results.append(run_tiny(tmp_path, "seed=2")))
        second.start()
        second.join(1.5)
        assert second.is_alive() and (tmp_path / "metrics.json").stat().st_mtime_ns == stamp  # waiting, untouched
    second.join(120)
    assert results and results[0]["status"] == "completed"
    assert [json.loads(f.read_text())["seed"] for f in (tmp_path / "metrics.json",
                                                        tmp_path / "previous" / "1" / "metrics.json")] == [2, 1]


def test_two_identical_runs_started_together_train_once(tmp_path):
    args = [sys.executable, "-m", "msa_ablate", *TINY, f"hydra.run.dir={tmp_path / 'run'}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sum("already completed, skipped" in out for out in outputs) == 1, outputs
    assert not (tmp_path / "run" / "previous").exists()  # nothing trained twice, nothing set aside
