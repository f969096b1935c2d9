"""Scaling out: Hydra's launcher plugins, GPU assignment, and the Optuna search on valid only."""

import json

import pytest
import torch
import yaml

from msa_ablate.run import resolve_device
from tests.conftest import TINY, compose_config, main



def completed_seeds(sweep) -> list[int]:
    records = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    assert all(r["status"] == "completed" for r in records), records
    return sorted(r["seed"] for r in records)


@pytest.mark.parametrize("launcher", ["submitit_local", "joblib"])
def test_a_two_job_sweep_through_a_launcher_plugin(tmp_path, launcher):
    """The driver in this process (main), the jobs in the plugin's own processes."""
    sweep = tmp_path / "sweep"
    result = main("-m", f"hydra/launcher={launcher}", *TINY, "seed=1,2", f"hydra.sweep.dir={sweep}")
    assert result.code == 0, result.stderr
    assert completed_seeds(sweep) == [1, 2]
    launched = yaml.safe_load((sweep / "multirun.yaml").read_text())["hydra"]["launcher"]["_target_"]
    assert launched.startswith(f"hydra_plugins.hydra_{launcher.split('_')[0]}")


def test_the_slurm_launcher_config_composes_against_the_plugin_schema():
    cfg = compose_config("hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu",
                         "hydra.launcher.timeout_min=120").hydra.launcher
    assert cfg._target_.endswith("SlurmLauncher")
    assert (cfg.partition, cfg.timeout_min, cfg.gpus_per_task) == ("gpu", 120, 1)
    assert cfg.max_num_timeout > 0  # time-outs are requeued, and the run resumes from its checkpoint
    with pytest.raises(Exception, match="timeout_min=abc"):  # the plugin's schema (int) still checks the values
        compose_config("hydra/launcher=submitit_slurm", "hydra.launcher.timeout_min=abc")


@pytest.mark.parametrize("job_num,gpus,expected", [(0, 3, "cuda:0"), (4, 3, "cuda:1"), (5, 1, "cuda:0"), (7, 0, "cpu")])
def test_auto_device_is_round_robin_over_gpus(monkeypatch, job_num, gpus, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    assert str(resolve_device("auto", job_num)) == expected


def test_optuna_search_uses_valid_only(tmp_path):
    sweep = tmp_path / "search"
    result = main("-m", "hparams_search=optuna", "hydra.sweeper.n_trials=3", *TINY, f"hydra.sweep.dir={sweep}")
    assert result.code == 0, result.stderr
    records = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    assert len(records) == 3 and all(r["status"] == "completed" for r in records)
    assert all(r["test"] == {} for r in records)  # the test split was never evaluated
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(r["valid"]["Corr"] for r in records))
    assert set(best["best_params"]) >= {"trainer.lr", "model.hidden", "encoder.dropout"}

    from analysis.summarize import main as summarize

    with pytest.raises(SystemExit) as info:  # the test split is not there to report
        summarize([str(sweep), "--no-plots"])
    assert info.value.code == 2
    assert summarize([str(sweep), "--no-plots", "--split", "valid"]) == 0
