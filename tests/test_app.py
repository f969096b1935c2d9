"""The app end to end, as a user runs it: real tiny runs through `python -m msa_ablate`."""

import json
import pickle

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from msa_ablate.data.synthetic import synthetic_arrays
from msa_ablate.metrics import METRIC_NAMES
from tests.conftest import TINY, cli, compose_config

TINY_TRAINER = [o for o in TINY if o.startswith("trainer.")]  # data=mosi has no data.scale

BASELINE = {"data": "synthetic", "encoder": "lstm", "fusion": "sum_lstm", "head": "sigmoid", "loss": "mse",
            "modalities": "tva", "layernorm": "on", "trainer": "default"}


def test_default_config_is_the_seed_baseline():
    cfg = compose_config()
    choices = {k: v for k, v in cfg.hydra.runtime.choices.items() if not k.startswith("hydra")}
    assert choices == BASELINE
    assert cfg.seed == 42 and cfg.model.hidden == 128
    assert cfg.model.modalities == ["text", "vision", "audio"] and cfg.model.layernorm is True
    t = compose_config("trainer.epochs=20").trainer  # TINY lowers epochs; the default is the seed's
    assert (t.epochs, t.batch_size, t.lr, t.select_metric) == (20, 16, 1e-3, "Corr")


def test_one_run_writes_metrics_and_tensorboard(tmp_path):
    out = tmp_path / "run"
    proc = cli(*TINY, "trainer.epochs=2", "seed=7", f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr

    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "completed" and record["seed"] == 7
    assert record["choices"] == BASELINE
    assert set(METRIC_NAMES) <= set(record["test"]) and set(METRIC_NAMES) <= set(record["valid"])
    assert 1 <= record["best_epoch"] <= 2 and len(record["history"]) == 2
    assert record["n_params"] > 0 and record["device"] == "cpu" and record["train_seconds"] > 0
    assert record["data"]["sizes"] == {"train": 64, "valid": 11, "test": 34}
    assert record["data"]["nonfinite_cells"]["train"]["audio"] > 0
    assert record["version"]

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
    proc = cli("-m", *TINY, "seed=1,2", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    seeds = sorted(json.loads((sweep / str(i) / "metrics.json").read_text())["seed"] for i in range(2))
    assert seeds == [1, 2] and not (sweep / "2").exists()
    assert (sweep / "multirun.yaml").exists()


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
    proc = cli(*TINY_TRAINER, "data=mosi", f"data.path={mult_pickle}", f"hydra.run.dir={tmp_path / 'run'}",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["data"]["dims"] == {"text": 300, "audio": 5, "vision": 20}
    assert record["choices"]["data"] == "mosi"


@pytest.mark.parametrize("args,culprit", [
    (["data=mosi", "data.path=/nonexistent/mosi.pkl"], "/nonexistent/mosi.pkl"),
    (["data.scale=0.05", "trainer.epochs=0"], "trainer.epochs"),
    (["data.scale=0.05", "trainer.batch_size=-1"], "trainer.batch_size"),
    (["data.scale=1.5"], "data.scale"),
    (["data=mosi"], "data.path"),
    (["data.scale=0.05", "trainer.lr=abc"], "trainer.lr"),
    (["data.scale=0.05", "trainer.lr=${nope}"], "trainer.lr"),  # an interpolation to no key
    (["data.scale=0.05", "seed=-1"], "seed=-1"),
    (["data.scale=0.05", "data.seed=-1"], "data.seed"),
    (["data.scale=0.05", "trainer.device=gpu"], "trainer.device=gpu"),
    (["data.scale=0.05", "trainer.select_metric=Acc"], "trainer.select_metric"),
    (["data.scale=0.05", "encoder=transformer", "encoder.heads=3"], "encoder.heads=3"),
    (["data.scale=0.05", "modalities.names=[text,text]"], "modalities"),
    (["data.scale=0.05", "fusion=cross_attention", "modalities=t"], "fusion=cross_attention"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, culprit):
    proc = cli(*TINY_TRAINER, *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("msa_ablate: error:")]
    assert len(errors) == 1 and culprit in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "failed" and culprit in record["reason"]



def test_dims_that_disagree_with_the_config(tmp_path, mult_pickle):
    proc = cli(*TINY_TRAINER, "data=mosi", f"data.path={mult_pickle}", "data.dims={text:300,audio:74,vision:35}",
               f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    [error] = [line for line in proc.stderr.splitlines() if line.startswith("msa_ablate: error:")]
    assert str(mult_pickle) in error and "data.dims" in error, proc.stderr


@pytest.mark.parametrize("mode", ["run", "sweep"])
def test_an_output_folder_that_is_a_file(tmp_path, mode):
    """Hydra would fail making the folder, with a traceback; the check says which key and file."""
    blocker = tmp_path / "taken"
    blocker.write_text("")
    args = ["hydra.run.dir=" + str(blocker)] if mode == "run" else ["-m", "seed=1,2", f"hydra.sweep.dir={blocker}/sweep"]
    proc = cli(*args, *TINY, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    [error] = proc.stderr.strip().splitlines()
    key = "hydra.run.dir" if mode == "run" else "hydra.sweep.dir"
    assert error.startswith(f"msa_ablate: error: {key}=") and f"{blocker} is a file" in error
