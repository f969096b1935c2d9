"""The command line as a user runs it: `python -m msa_ablate`, its outputs and its errors."""

import gzip
import json
import os
import pickle

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from msa_ablate.data.synthetic import synthetic_arrays
from msa_ablate.metrics import MOSI_METRICS
from tests.conftest import TINY, cli, compose_config, main

TINY_TRAINER = [o for o in TINY if o.startswith("trainer.")]  # data=mosi has no data.scale

BASELINE = {"data": "synthetic", "encoder": "lstm", "fusion": "sum_lstm", "head": "sigmoid", "loss": "mse",
            "modalities": "tva", "layernorm": "on", "trainer": "default", "optimizer": "adam", "scheduler": "cosine",
            "text": "features", "tasks": "main", "hparams_search": "none"}


def test_default_config_is_the_handout_baseline():
    cfg = compose_config()
    choices = {k: v for k, v in cfg.hydra.runtime.choices.items() if not k.startswith("hydra")}
    assert choices == BASELINE
    assert cfg.seed == 42 and cfg.model.hidden == 128
    assert cfg.model.modalities == ["text", "vision", "audio"] and cfg.model.layernorm is True
    t = compose_config("trainer.epochs=20").trainer  # TINY lowers epochs; the default is the handout's
    assert (t.epochs, t.batch_size, t.lr, t.select_metric) == (20, 16, 1e-3, "Corr")


def test_one_run_writes_metrics_and_tensorboard(tmp_path):
    """In a process of its own, as a user types it."""
    out = tmp_path / "run"
    proc = cli(*TINY, "trainer.epochs=2", "seed=7", "trainer.progress_every=0.01", "trainer.log_graph=true",
               f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # progress as plain lines, not a bar: the output is no terminal; the last line says where the run is and how it did
    assert "epoch 2/2, step 4/4: " in proc.stdout and "left" in proc.stdout and "\r" not in proc.stdout + proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.split(" - ", 1)[1].startswith(f"{out}: completed in ") and ", best epoch " in last
    assert "test Corr 0." in last and "MAE " in last and "{" not in last

    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "completed" and record["seed"] == 7
    assert {k: v for k, v in record["choices"].items()} == BASELINE
    assert set(MOSI_METRICS) <= set(record["test"]) and set(MOSI_METRICS) <= set(record["valid"])
    assert 1 <= record["best_epoch"] <= 2 and len(record["history"]) == 2
    assert record["n_params"] == 582_067 and record["device"] == "cpu" and record["train_seconds"] > 0
    assert record["data"]["sizes"] == {"train": 64, "valid": 11, "test": 34}
    assert record["data"]["nonfinite_cells"]["train"]["audio"] > 0
    assert record["identity"] and record["config"]["seed"] == 7 and record["config"]["trainer"]["epochs"] == 2
    assert record["data"]["fingerprint"] == {"generator": "msa_ablate.data.synthetic.make_synthetic_mosi", "version": 1}
    assert set(record["provenance"]) == {"msa_ablate", "git_commit", "git_dirty", "python", "torch", "hydra", "device"}

    events = list(out.glob("events.out.tfevents.*"))
    assert len(events) == 1 and not [p for p in out.iterdir() if p.is_dir() and p.name != ".hydra"]
    acc = EventAccumulator(str(out)).Reload()
    scalars = set(acc.Tags()["scalars"])
    assert {"loss/train", "loss/valid", "loss/train_step", "lr", "valid/Corr", "test/Corr"} <= scalars
    assert len(acc.Scalars("loss/train")) == 2 and len(acc.Scalars("loss/train_step")) == 2 * 4
    assert acc.Graph() is not None
    hparams = acc.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(hparams)
    assert b"test/Corr" in hparams["_hparams_/experiment"]


def test_multirun_writes_one_folder_per_job(tmp_path):
    sweep = tmp_path / "sweep"
    result = main("-m", *TINY, "seed=1,2", f"hydra.sweep.dir={sweep}")
    assert result.code == 0, result.stderr
    folders = sorted(p.name for p in sweep.iterdir() if p.is_dir())  # named after each job's overrides
    assert folders == [f"data.scale=0.05,seed={s},trainer.device=cpu,trainer.epochs=1" for s in (1, 2)]
    assert [json.loads((sweep / f / "metrics.json").read_text())["seed"] for f in folders] == [1, 2]
    assert (sweep / "multirun.yaml").exists()
    assert f"{sweep}: 2 jobs, 2 completed, 0 skipped (completed before), 0 failed" in result.stdout


@pytest.fixture
def mult_pickle(tmp_path):
    raw = synthetic_arrays(scale=0.05)
    for split in raw.values():  # MulT's layout: (N, 1, 1) labels, byte ids, 5-d audio, 20-d vision
        split["labels"] = split["labels"].reshape(-1, 1, 1)
        split["audio"], split["vision"] = split["audio"][..., :5], split["vision"][..., :20]
        split["id"] = [s.encode() for s in split["id"]]
    path = tmp_path / "mosi_data.pkl"
    path.write_bytes(pickle.dumps(raw))
    return path


def test_real_pickle_through_data_mosi(tmp_path, mult_pickle):
    result = main(*TINY_TRAINER, "data=mosi", f"data.path={mult_pickle}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.code == 0, result.stderr
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["data"]["dims"] == {"text": 300, "audio": 5, "vision": 20}
    assert record["choices"]["data"] == "mosi"


def one_error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("msa_ablate: error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


# Found while the job starts: the run's folder says why it failed.
@pytest.mark.parametrize("args,culprit", [
    (["data=mosi", "data.path=/nonexistent/mosi.pkl"], "/nonexistent/mosi.pkl"),
    (["data.scale=0.05", "trainer.epochs=0"], "trainer.epochs"),
    (["data.scale=0.05", "trainer.batch_size=-1"], "trainer.batch_size"),
    (["data.scale=1.5"], "data.scale"),
    (["data=mosi"], "data.path"),
    (["data.scale=0.05", "trainer.lr=${nope}"], "trainer.lr"),  # an interpolation to no key
    (["data.scale=0.05", "seed=-1"], "seed=-1"),
    (["data.scale=0.05", "data.seed=-1"], "data.seed"),
    (["data.scale=0.05", "trainer.device=gpu"], "trainer.device=gpu"),
    (["data.scale=0.05", "trainer.select_metric=Acc"], "trainer.select_metric"),
    (["data.scale=0.05", "encoder=transformer", "encoder.heads=3"], "encoder.heads=3"),
    (["data.scale=0.05", "modalities.names=[text,text]"], "modalities"),
    (["data.scale=0.05", "fusion=cross_attention", "modalities=t"], "fusion=cross_attention"),
    (["data.scale=0.05", "+trainer.epoch=3"], "trainer.epoch: no such setting; did you mean trainer.epochs?"),
    (["data=mosi", "data.path=/x.pkl", "data.dims=abc"], "data.dims=abc: expected a dim per modality"),
    (["data.scale=0.05", "trainer.lr=inf"], "trainer.lr=inf: must be a positive (finite) number"),
    (["data.scale=0.05", "resume=maybe"], "resume=maybe: must be true or false"),
    (["data.scale=0.05", "loss=huber", "loss.delta=-1"], "loss.delta=-1: must be a positive (finite) number"),
    (["data.scale=0.05", "encoder.num_layers=0"], "encoder.num_layers=0: must be a positive integer"),
    (["data.scale=0.05", "encoder.dropout=1.5"], "encoder.dropout=1.5: must be a number in [0, 1)"),
    (["data.scale=0.05", "model.hidden=0"], "model.hidden=0: must be a positive integer"),
    (["data.scale=0.05", "head=mlp", "head.hidden=0"], "head.hidden=0: must be a positive integer"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, culprit):
    result = main(*TINY_TRAINER, *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.code == 2
    assert culprit in one_error_line(result.stderr)
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "failed" and culprit in record["reason"]


# Found while composing the config, before any folder exists: Hydra's own check, in one line.
@pytest.mark.parametrize("args,message", [
    (["trainer.lr=abc"], "trainer.lr: Value 'abc' of type 'str' could not be converted to Float"),
    (["trainer.epoch=3"], "trainer.epoch: no such key; did you mean trainer.epochs?"),
    (["model.hiden=64"], "model.hiden: no such key; did you mean model.hidden?"),
    (["data.path=/x.pkl"], "data.path: no such key; it belongs to data=mosei, data=mosi, data=sims and data=simsv2"),
    (["encoder.heads=2"], "encoder.heads: no such key; it belongs to encoder=transformer"),
    (["encoder=lstmm"], "encoder=lstmm: no such option in conf/encoder/; did you mean lstm?"),
    (["trainer.lr=[1"], "trainer.lr=[1: no viable alternative"),
])
def test_a_config_that_does_not_compose_is_one_line_and_exit_2(tmp_path, args, message):
    result = main(*args, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.code == 2
    assert message in one_error_line(result.stderr)
    assert not (tmp_path / "run").exists()


def test_errors_keep_their_contract_in_a_process_of_its_own(tmp_path):
    """Exit code 2 and one line on stderr, with nothing of the test's to catch them."""
    for args, message in ((["data=mosi", "data.path=/nonexistent/mosi.pkl"], "/nonexistent/mosi.pkl"),
                          (["trainer.epoch=3"], "did you mean trainer.epochs?")):
        proc = cli(*args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
        assert proc.returncode == 2 and message in one_error_line(proc.stderr)


def bad_file(tmp_path, case: str):
    """A data path that is no usable MOSI file, as a user may pass one."""
    raw = synthetic_arrays(scale=0.05)
    if case == "a folder":
        return tmp_path
    if case == "a device":
        return "/dev/null"
    if case == "gzip":
        path = tmp_path / "mosi.pkl.gz"
        path.write_bytes(gzip.compress(pickle.dumps(raw)))
        return path
    if case == "labels outside the range":
        raw["train"]["labels"][3] = 4.5
    if case == "true/false labels":
        raw["valid"]["labels"] = raw["valid"]["labels"] > 0
    if case == "complex features":
        raw["test"]["audio"] = raw["test"]["audio"] * 1j
    if case == "steps differ between splits":
        raw["test"] = {k: v[:, 5:] if k in ("text", "audio", "vision") else v for k, v in raw["test"].items()}
    path = tmp_path / "mosi.pkl"
    path.write_bytes(pickle.dumps(raw))
    return path


@pytest.mark.parametrize("case,message", [
    ("a folder", "a folder, not a data file"),
    ("a device", "/dev/null: not a regular file"),
    ("gzip", "a gzip-compressed file; decompress it (gunzip -k "),
    ("labels outside the range", "['train']['labels']: 1 label(s) outside [-3.0, 3.0], first 4.5; "
                                 "data.clip_labels=true"),
    ("true/false labels", "['valid']['labels']: labels must be real numbers, these are bool (true/false)"),
    ("complex features", "['test']['audio']: complex numbers, not real features"),
    ("steps differ between splits", "['test']: 45 steps per clip in 'text', but the train split has 50"),
])
def test_a_bad_data_file_is_one_line_and_exit_2(tmp_path, case, message):
    path = bad_file(tmp_path, case)
    result = main(*TINY_TRAINER, "data=mosi", f"data.path={path}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.code == 2 and message in one_error_line(result.stderr)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "failed"


def test_clipping_labels_is_asked_for_and_recorded(tmp_path):
    path = bad_file(tmp_path, "labels outside the range")
    result = main(*TINY_TRAINER, "data=mosi", f"data.path={path}", "data.clip_labels=true",
                  f"hydra.run.dir={tmp_path / 'run'}")
    assert result.code == 0, result.stderr
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["config"]["data"]["clip_labels"] is True
    assert record["data"]["clipped_labels"] == {"train": 1, "valid": 0, "test": 0}


def test_an_output_folder_that_cannot_be_written(tmp_path):
    """A read-only place (/sys refuses even root, which CI runs as): one line, exit 2, before anything runs."""
    folder = "/sys/msa_ablate_test/run" if os.geteuid() == 0 else str(tmp_path / "read_only" / "run")
    if os.geteuid() != 0:
        (tmp_path / "read_only").mkdir(mode=0o555)
    result = main(*TINY, f"hydra.run.dir={folder}")
    assert result.code == 2
    assert one_error_line(result.stderr).startswith(f"msa_ablate: error: hydra.run.dir={folder}: cannot write there (")


def test_dims_that_disagree_with_the_config(tmp_path, mult_pickle):
    result = main(*TINY_TRAINER, "data=mosi", f"data.path={mult_pickle}", "data.dims={text:300,audio:74,vision:35}",
                  f"hydra.run.dir={tmp_path / 'run'}")
    assert result.code == 2
    error = one_error_line(result.stderr)
    assert str(mult_pickle) in error and "data.dims" in error


@pytest.mark.parametrize("mode", ["run", "sweep"])
def test_an_output_folder_that_is_a_file(tmp_path, mode):
    """Hydra would fail making the folder, with a traceback; the check says which key and file."""
    blocker = tmp_path / "taken"
    blocker.write_text("")
    args = [f"hydra.run.dir={blocker}"] if mode == "run" else ["-m", "seed=1,2", f"hydra.sweep.dir={blocker}/sweep"]
    result = main(*args, *TINY)
    assert result.code == 2
    key = "hydra.run.dir" if mode == "run" else "hydra.sweep.dir"
    error = one_error_line(result.stderr)
    assert error.startswith(f"msa_ablate: error: {key}=") and f"{blocker} is a file" in error
