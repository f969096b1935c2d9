"""Silent wrong results (issue 28): an Optuna search that maximises MAE, a NaN prediction scored as
a negative clip, an evaluation of other data written over the run's own, a stale data fingerprint,
a sweep's evaluation stopped by one failed run, a completed run whose model is gone, untyped keys;
and tracebacks where one line was due (a diverging run, Ctrl-C, SIGTERM, --out a file, ...)."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from omegaconf import open_dict

from msa_ablate import records
from msa_ablate.config import check_settings
from msa_ablate.data import fingerprint as fingerprints
from msa_ablate.data.__main__ import main as inspect
from msa_ablate.data.synthetic import synthetic_arrays
from msa_ablate.eval import main as evaluate_main
from msa_ablate.metrics import METRIC_SETS, regression_metrics
from msa_ablate.records import RunRecord
from tests.conftest import ROOT, TINY, compose_config, main, run_tiny



def evaluate(*args, capsys) -> tuple[int, str, str]:
    code = evaluate_main([*map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def pickled(path, seed: int = 0, negate: bool = False) -> None:
    """Tiny MOSI-like data as a pickle at ``path``; ``negate``: the same bytes' length, other labels."""
    arrays = synthetic_arrays(seed=seed, scale=0.05)
    if negate:
        arrays = {s: {**d, "labels": -np.asarray(d["labels"])} for s, d in arrays.items()}
    path.write_bytes(pickle.dumps(arrays))


def test_an_optuna_search_on_mae_minimises_it(tmp_path):
    sweep = tmp_path / "search"
    result = main("-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", "trainer.select_metric=MAE", *TINY,
                  f"hydra.sweep.dir={sweep}")
    assert result.code == 0, result.stderr
    maes = [json.loads(p.read_text())["valid"]["MAE"] for p in sorted(sweep.glob("*/metrics.json"))]
    assert len(maes) == 2 and maes[0] != maes[1]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(min(maes))
    assert "Directions: ['minimize']" in result.stdout + result.stderr


@pytest.mark.parametrize("label_range", [(-3.0, 3.0), (-1.0, 1.0)])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_prediction_leaves_every_metric_undefined(label_range, bad):
    truth = np.array([-0.8, -0.2, 0.3, 0.9, 0.5])
    preds = np.array([-0.7, -0.1, 0.2, bad, 0.4])
    scores = regression_metrics(preds, truth, label_range)
    names = METRIC_SETS["mosi" if label_range == (-3.0, 3.0) else "sims"]
    assert set(scores) == set(names) and all(np.isnan(v) for v in scores.values()), scores
    assert not any(np.isnan(v) for v in regression_metrics(np.nan_to_num(preds, posinf=1.0), truth,
                                                          label_range).values())


def test_an_evaluation_of_changed_data_never_takes_the_runs_own_name(tmp_path, capsys):
    data, run = tmp_path / "mosi.pkl", tmp_path / "run"
    pickled(data)
    record = run_tiny(run, "data=mosi", f"data.path={data}")
    assert evaluate(run, capsys=capsys)[0] == 0
    own = json.loads((run / "eval_test.json").read_text())
    assert own["metrics"] == record["test"]

    pickled(data, seed=1)  # other data at the recorded path
    for args in ([], [f"data.path={data}"]):
        code, _, err = evaluate(run, *args, capsys=capsys)
        assert code == 0, err
        assert json.loads((run / "eval_test.json").read_text()) == own  # the run's own data's result stays
    [other] = run.glob("eval_test_*.json")  # named after the other data's digest
    assert json.loads(other.read_text())["metrics"] != own["metrics"]


def test_a_data_file_replaced_with_the_same_size_and_times_is_fingerprinted_again(tmp_path):
    data = tmp_path / "mosi.pkl"
    pickled(data)
    run = [*TINY[1:], "data=mosi", f"data.path={data}", f"hydra.run.dir={tmp_path / 'run'}"]
    first = main(*run)
    assert first.code == 0, first.stderr
    before = os.stat(data)
    pickled(data, negate=True)  # as cp -p, rsync -t or tar leave it: the same size and modification time
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(data).st_size == before.st_size and os.stat(data).st_mtime_ns == before.st_mtime_ns
    second = main(*run)
    assert second.code == 0, second.stderr
    assert "already completed" not in second.stdout and "the data changed since" in second.stdout


def test_the_fingerprint_cache_key_holds_the_inodes_change_time(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = tmp_path / "data.bin"
    data.write_bytes(b"a" * 64)
    before = os.stat(data)
    old = fingerprints.file_fingerprint(str(data))["sha256"]
    time.sleep(0.02)  # past the kernel's coarse clock, which stamps the change time
    data.write_bytes(b"b" * 64)
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert fingerprints.file_fingerprint(str(data))["sha256"] != old


def test_a_sweep_with_a_failed_run_evaluates_the_others(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    record = run_tiny(sweep / "seed=1")
    records.write(sweep / "seed=2", RunRecord(status="failed", reason="TrainingDiverged: non-finite loss"))
    code, out, err = evaluate(sweep, capsys=capsys)
    assert code == 0, err
    assert json.loads((sweep / "seed=1" / "eval_test.json").read_text())["metrics"] == record["test"]
    assert "seed=1" in out
    [line] = err.strip().splitlines()
    assert str(sweep / "seed=2") in line and "failed" in line

    code, _, err = evaluate(sweep / "seed=2", capsys=capsys)  # nothing evaluated: exit 2, one line
    assert code == 2 and len(err.strip().splitlines()) == 1 and "failed" in err


@pytest.mark.parametrize("damage", ["missing", "unreadable"])
def test_a_completed_run_without_its_model_trains_again(tmp_path, capsys, damage):
    run = [*TINY, f"hydra.run.dir={tmp_path}"]
    assert main(*run).code == 0
    model = tmp_path / "model.pt"
    model.unlink()
    if damage == "unreadable":
        model.mkdir()  # a file that cannot be read, even by root

    code, _, err = evaluate(tmp_path, capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "model.pt" in err

    again = main(*run)
    assert again.code == 0, again.stderr
    assert "already completed" not in again.stdout
    [line] = [line for line in again.stdout.splitlines() if "previous/1" in line]
    assert "model.pt" in line
    torch.load(tmp_path / "model.pt", weights_only=True)  # a model again
    assert records.read(tmp_path).status == "completed"


def test_a_model_file_that_is_not_a_model_is_one_line(tmp_path, capsys):
    run_tiny(tmp_path)
    (tmp_path / "model.pt").write_bytes(b"not a model")
    code, _, err = evaluate(tmp_path, capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "model.pt" in err



def test_another_configs_model_is_one_line(tmp_path, capsys):
    """The model.pt of a run with another hidden size: was a 20-line RuntimeError of size mismatches."""
    run_tiny(tmp_path / "run")
    run_tiny(tmp_path / "other", "model.hidden=16")
    (tmp_path / "run" / "model.pt").write_bytes((tmp_path / "other" / "model.pt").read_bytes())
    code, _, err = evaluate(tmp_path / "run", capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "model.pt: not this run's model" in err and "size mismatch" in err


def test_an_evaluation_that_cannot_write_its_results_is_one_line(tmp_path, capsys, monkeypatch):
    """A read-only run folder (root, as CI runs, writes anywhere: the refusal is simulated): was a traceback."""
    run_tiny(tmp_path)
    def refuse(file, value):
        raise PermissionError(13, "Permission denied", str(file))
    monkeypatch.setattr(records, "write_json", refuse)
    code, _, err = evaluate(tmp_path, capsys=capsys)
    assert code == 2 and err.strip() == f"msa_ablate.eval: error: {tmp_path}: cannot write its results there " \
                                        "(Permission denied)"


def test_the_inspector_on_string_labels_is_one_line(tmp_path, capsys):
    """Labels stored as text: was a TypeError traceback from the inspector's range guess."""
    arrays = synthetic_arrays(seed=0, scale=0.02)
    for split in arrays.values():
        split["labels"] = np.asarray(split["labels"]).astype(str).astype(object)
    (tmp_path / "text_labels.pkl").write_bytes(pickle.dumps(arrays))
    assert inspect([str(tmp_path / "text_labels.pkl")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "['labels']: labels must be real numbers" in err

def test_an_output_folder_name_too_long_is_one_line(tmp_path):
    """A 5,000-character hydra.run.dir: was an OSError traceback (File name too long), after a warning."""
    result = main(*TINY, f"hydra.run.dir={tmp_path / ('x' * 5000)}")
    assert result.code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("msa_ablate: error: hydra.run.dir=") and "characters): cannot write there" \
        in result.stderr

# Issue 28, case 1: a key the model reads as a bool took any string (`off` is truthy), so the run trained
# the baseline under the name of an ablation. Every key is now typed by what reads it.
@pytest.mark.parametrize("args,message", [
    (["model.input_bias=off"], "model.input_bias=off: must be true or false"),
    (["model.input_bias=maybe"], "model.input_bias=maybe: must be true or false"),
    (["layernorm.enabled=no"], "layernorm.enabled=no: must be true or false"),
    (["fusion=mult", "fusion.causal=no"], "fusion.causal=no: must be true or false"),
    (["+model.input_biass=true"], "model.input_biass: no such setting; did you mean model.input_bias"),
    (["model.hidden=12.5"], "model.hidden=12.5: must be an integer"),
    (["+fusion.pool=mean"], "fusion.pool: no such setting"),  # LSTMFusion has none: a TypeError traceback before
])
def test_a_value_of_the_wrong_type_or_an_unknown_key_is_one_line_and_exit_2(tmp_path, args, message):
    result = main(*TINY, *args, f"hydra.run.dir={tmp_path}")
    assert result.code == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("msa_ablate: error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "model.pt").exists()


def shipped_configs() -> list[list[str]]:
    """Every option of every config group, every preset and every experiment, each alone."""
    chosen = compose_config().hydra.runtime.choices
    conf = ROOT / "conf"
    return [[f"{'' if group.name in chosen else '+'}{group.name}={option.stem}",
             *(["data.path=/data/x.pkl"] if group.name == "data" and option.stem != "synthetic" else [])]
            for group in sorted(conf.iterdir()) if group.is_dir() and group.name != "hydra"
            for option in sorted(group.glob("*.yaml"))]


def test_every_shipped_option_preset_and_experiment_passes_the_type_check():
    for overrides in shipped_configs():
        cfg = compose_config(*overrides)
        with open_dict(cfg):
            del cfg["hydra"]  # the job's config, as the app sees it
        check_settings(cfg)  # raises a ConfigError naming the key whose value its annotation refuses


def test_report_reads_summarizes_runs_table_and_names_a_table_it_cannot_read(tmp_path, capsys):
    """summarize.py's runs.csv has no `part` column (one sweep's runs: the study); a table missing a
    column it needs is one line, exit 2 (both were AttributeError / KeyError tracebacks)."""
    import pandas as pd

    from analysis.report import main as report

    table = pd.read_csv(ROOT / "report" / "runs.csv")
    study = table[table.part == "study"].drop(columns="part")
    study.to_csv(tmp_path / "runs.csv", index=False)
    assert report(["--runs", str(tmp_path / "runs.csv"), "--out", str(tmp_path / "out")]) == 0
    assert "## 2.5." in (tmp_path / "out" / "REPORT.md").read_text()
    study.drop(columns="changes").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(SystemExit) as exit_:
        report(["--runs", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "out2")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and "bad.csv: not a runs table" in err[-1] and "no changes" in err[-1]


@pytest.mark.parametrize("overrides, message", [
    (["trainer.lr=1e30"], "msa_ablate: error: non-finite training loss at epoch 1, step "),  # diverges at once
    (["trainer.progress_every=-1"], "msa_ablate: error: trainer.progress_every=-1.0: must be a number of seconds"),
], ids=["diverging run", "negative progress interval"])
def test_a_diverging_run_and_a_negative_progress_interval_are_one_line(tmp_path, overrides, message):
    result = main(*TINY, *overrides, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.code == 2 and "Traceback" not in result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(message)
    if "trainer.lr=1e30" in overrides:  # the record says so too
        assert json.loads((tmp_path / "run" / "metrics.json").read_text())["reason"].startswith("TrainingDiverged")


@pytest.mark.parametrize("command", ["summarize", "report"])
def test_an_out_that_is_a_file_is_one_line(tmp_path, capsys, command):
    from analysis.report import main as report
    from analysis.summarize import main as summarize

    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as exit_:
        {"summarize": summarize, "report": report}[command](
            ["--runs", str(ROOT / "report" / "runs.csv"), "--out", str(tmp_path / "file"), *(
                ["--no-plots"] if command == "summarize" else [])])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and err[-1].endswith(f"--out {tmp_path / 'file'}: a file is in the way, not a folder")


@pytest.mark.parametrize("signum, code, how", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")],
                         ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_says_so_in_one_line(tmp_path, signum, code, how):
    """Ctrl-C printed a 58-line traceback; SIGTERM printed nothing. Each now says what happened, once."""
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "msa_ablate", *TINY, "trainer.epochs=200",
                             f"hydra.run.dir={run}"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not (run / "checkpoint.pt").exists():  # after its first epoch
        assert time.monotonic() < deadline and proc.poll() is None, "the run never checkpointed"
        time.sleep(0.05)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code and "Traceback" not in err
    assert err.strip().splitlines() == [f"msa_ablate: interrupted ({how}): the run's record says so, and the same "
                                        "command goes on from its last epoch"]
    assert json.loads((run / "metrics.json").read_text())["status"] == "interrupted"


def test_a_metric_the_runs_data_is_not_scored_by_is_named_as_such(capsys):
    """--metric Mult_acc_3 (CH-SIMS's) on MOSI-scored runs said 'no seed in common with the baseline'."""
    from analysis.summarize import main as summarize

    with pytest.raises(SystemExit) as exit_:
        summarize(["--runs", str(ROOT / "report" / "runs.csv"), "--metric", "Mult_acc_3", "--no-plots"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and "--metric Mult_acc_3: not a metric of these runs' data" in err[-1]
