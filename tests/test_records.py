"""Run records that identify themselves, and sweeps that never lose a result: the scenarios a new
user met (a sweep run again into its folder with other values, a data file replaced at the same
path, a run folder reused for another configuration, a truncated checkpoint, SIGTERM)."""

import dataclasses
import json
import os
import pickle
import re
import signal

import pytest
from hydra import compose, initialize_config_dir
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import msa_ablate.train
from analysis.runs import load_runs
from msa_ablate import records
from msa_ablate.data import fingerprint as fingerprints
from msa_ablate.data.synthetic import synthetic_arrays
from msa_ablate.jobs import Terminated
from tests.conftest import ROOT, TINY, main, run_tiny




def test_what_computes_nothing_is_declared_once_and_named_nowhere():
    """NOT_COMPUTED leaves a setting out of the identity, the record's changes and the job folder's
    name alike: `+eval=robustness` on a finished sweep adds the pass in the same folders."""
    from hydra_plugins.msa_ablate_sweeper.sweeper import folder_name
    from msa_ablate.config import NOT_COMPUTED

    assert folder_name(["encoder=gru", "seed=1", "+eval=robustness", "resume=false", "+experiment=encoder",
                        "trainer.log_graph=false"]) == "encoder=gru,seed=1"
    assert set(NOT_COMPUTED) - {"experiment", "hparams_search"} <= {*records.NOT_IN_IDENTITY}
    config = {"seed": 1, "eval": {"robustness": {"seed": 0}}, "resume": True, "trainer": {"log_graph": False}}
    default = {"seed": 2, "resume": False, "trainer": {"log_graph": True}}
    assert records.changes(config, {"eval": "robustness"}, default, {}) == {}
    assert records.identity(config, {}) == records.identity({**default, "seed": 1}, {})


def test_the_record_is_typed_its_file_round_trips_and_docs_outputs_lists_every_field(tmp_path):
    record = records.RunRecord(identity="0" * 16, seed=3, choices={"loss": "l1"}, status="completed",
                               valid={"Corr": float("nan")}, history=[])
    records.write(tmp_path, record)
    written = json.loads((tmp_path / records.FILE).read_text())
    assert written == {"identity": "0" * 16, "seed": 3, "choices": {"loss": "l1"}, "status": "completed",
                       "valid": {"Corr": None}, "history": []}  # unknown fields left out, NaN as null
    assert records.read(tmp_path) == dataclasses.replace(record, valid={"Corr": None})
    assert records.read(tmp_path / "none") == records.RunRecord()
    table = (ROOT / "docs" / "outputs.md").read_text().split("| key | meaning |")[1].split("\n\n")[0]
    documented = set(re.findall(r"`([a-z_]+)`", "\n".join(row.split("|")[1] for row in table.splitlines()[2:])))
    assert {f.name for f in dataclasses.fields(records.RunRecord)} <= documented | {"reason"}

def test_a_record_says_what_ran_on_which_data_with_which_code(tmp_path):
    record = run_tiny(tmp_path / "a", "seed=5")
    assert re.fullmatch(r"[0-9a-f]{16}", record["identity"])
    config = record["config"]
    assert config["seed"] == 5 and config["model"]["encoder"]["_target_"].endswith("LSTMEncoder")  # resolved
    data = record["data"]["fingerprint"]
    assert data == {"generator": "msa_ablate.data.synthetic.make_synthetic_mosi", "version": 1}
    assert records.identity(config, data) == record["identity"]
    p = record["provenance"]
    assert re.fullmatch(r"[0-9a-f]{40}", p["git_commit"]) and isinstance(p["git_dirty"], bool)  # a checkout
    assert p["torch"] and p["hydra"] and p["python"] and p["device"].startswith("cpu")
    # what changes nothing a run computes is not its identity; what does, is
    assert run_tiny(tmp_path / "b", "seed=5", "trainer.keep_checkpoint=true")["identity"] == record["identity"]
    assert run_tiny(tmp_path / "c", "seed=5", "trainer.lr=2e-3")["identity"] != record["identity"]


def test_sweeping_other_values_into_the_same_folder_keeps_every_result(tmp_path):
    sweep = tmp_path / "sweep"
    for seeds in ("1,2", "3,4"):
        assert main("-m", *TINY, f"seed={seeds}", f"hydra.sweep.dir={sweep}").code == 0
    runs = load_runs([sweep])
    assert sorted(runs.seed) == [1, 2, 3, 4] and set(runs.status) == {"completed"}

    again = main("-m", *TINY, "seed=1,2", f"hydra.sweep.dir={sweep}")
    assert f"{sweep}: 2 jobs, 0 completed, 2 skipped (completed before), 0 failed" in again.stdout
    redo = main("-m", *TINY, "seed=1,2", "resume=false", f"hydra.sweep.dir={sweep}")
    assert redo.code == 0 and "resume=false: this run's earlier result runs again; its files moved to" in redo.stdout
    runs = load_runs([sweep])  # the earlier results of seeds 1 and 2 are still there, each found once
    assert sorted(runs.seed) == [1, 1, 2, 2, 3, 4] and set(runs.status) == {"completed"}
    assert runs.path.str.contains("/previous/1$").sum() == 2


def test_a_data_file_replaced_at_the_same_path_runs_again(tmp_path):
    data = tmp_path / "mosi.pkl"
    data.write_bytes(pickle.dumps(synthetic_arrays(seed=0, scale=0.05)))
    run = [*TINY[1:], "data=mosi", f"data.path={data}", f"hydra.run.dir={tmp_path / 'run'}"]
    first = main(*run)
    assert first.code == 0, first.stderr
    old = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert main(*run).stdout.count("already completed, skipped") == 1  # the same file: nothing to do

    data.write_bytes(pickle.dumps(synthetic_arrays(seed=1, scale=0.05)))
    second = main(*run)
    assert second.code == 0, second.stderr
    [line] = [line for line in second.stdout.splitlines() if "data changed" in line]
    assert f"sha256 {old['data']['fingerprint']['sha256'][:12]} -> " in line and "previous/1" in line
    new = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert new["data"]["fingerprint"]["sha256"] != old["data"]["fingerprint"]["sha256"]
    assert new["identity"] != old["identity"] and new["test"] != old["test"]
    assert json.loads((tmp_path / "run" / "previous" / "1" / "metrics.json").read_text()) == old


def test_a_reused_run_folder_never_mixes_two_runs_events(tmp_path):
    run_tiny(tmp_path, "trainer.epochs=2")
    run_tiny(tmp_path, "trainer.epochs=3", "seed=5")
    for folder, epochs in ((tmp_path, 3), (tmp_path / "previous" / "1", 2)):
        [events] = folder.glob("events.out.tfevents.*")  # one event file each, the run's own
        assert len(EventAccumulator(str(folder)).Reload().Scalars("loss/train")) == epochs
    runs = load_runs([tmp_path])
    assert sorted(runs.seed) == [5, 42] and set(runs.status) == {"completed"}


def test_a_truncated_checkpoint_costs_an_epoch_not_the_job(tmp_path, caplog):
    (tmp_path / "checkpoint.pt").write_bytes(b"\x80\x02}q\x00(X\x03")  # the first bytes of a pickle, cut
    record = run_tiny(tmp_path)
    assert record["status"] == "completed"
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith(f"{tmp_path / 'checkpoint.pt'}: unreadable checkpoint (") and "afresh" in warning
    assert (tmp_path / "previous" / "1" / "checkpoint.pt").read_bytes() == b"\x80\x02}q\x00(X\x03"  # kept


def test_sigterm_records_the_run_as_interrupted_and_keeps_its_checkpoint(tmp_path, monkeypatch):
    """As a scheduler stops a job before killing it; run again, the run goes on from its checkpoint."""
    evaluate, calls = msa_ablate.train.evaluate, []

    def terminated_at_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(msa_ablate.train, "evaluate", terminated_at_epoch_2)
    with pytest.raises(Terminated) as stopped:
        run_tiny(tmp_path, "trainer.epochs=3")
    assert stopped.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler does not outlive the run
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert (record["status"], record["reason"]) == ("interrupted", "SIGTERM")
    assert (tmp_path / "checkpoint.pt").exists()
    monkeypatch.setattr(msa_ablate.train, "evaluate", evaluate)
    assert run_tiny(tmp_path, "trainer.epochs=3")["status"] == "completed"
    assert not (tmp_path / "previous").exists()  # continued, not started afresh


def test_a_file_is_hashed_once(tmp_path, monkeypatch):
    """In a process and across processes (the cache on disk): a sweep reads its data file once."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    file = tmp_path / "data.pkl"
    file.write_bytes(os.urandom(3 << 20))
    reads = []
    sha256 = fingerprints._sha256
    monkeypatch.setattr(fingerprints, "_sha256", lambda f: reads.append(f) or sha256(f))
    monkeypatch.setattr(fingerprints, "_digests", {})
    first = fingerprints.file_fingerprint(str(file))
    assert fingerprints.file_fingerprint(str(file)) == first and len(reads) == 1
    monkeypatch.setattr(fingerprints, "_digests", {})  # another process: the cache file answers
    assert fingerprints.file_fingerprint(str(file)) == first and len(reads) == 1
    file.write_bytes(os.urandom(3 << 20))  # changed: read again
    assert fingerprints.file_fingerprint(str(file))["sha256"] != first["sha256"] and len(reads) == 2


@pytest.mark.parametrize("bad,message", [
    ("loss.delta=0", "loss.delta=0: must be a positive (finite) number"),
    ("encoder.num_layers=0", "encoder.num_layers=0: must be a positive integer"),
])
def test_a_bad_setting_in_a_sweep_fails_its_job_in_one_line(tmp_path, bad, message):
    """The other jobs run; the sweep ends with one line per failed job and the count, exit 1."""
    key, _, value = bad.partition("=")
    loss = ["loss=huber"] if key.startswith("loss") else []
    sweep = tmp_path / "sweep"
    result = main("-m", *TINY, *loss, f"{key}={value},1", f"hydra.sweep.dir={sweep}")
    assert result.code == 1 and "Traceback" not in result.stderr
    [error] = result.stderr.splitlines()
    assert error.startswith("msa_ablate: error: job 0 (") and error.endswith(f"ConfigError: {message}")
    assert result.stdout.strip().splitlines()[-1].startswith(f"{sweep}: 2 jobs, 1 completed, 0 skipped (completed "
                                                             "before), 1 failed")
    assert sorted(load_runs([sweep]).status) == ["completed", "failed"]


def test_a_record_says_what_its_run_changes_from_the_default_config():
    """What the analysis labels a configuration by: what ran, the preset's own settings included."""
    def changes(*overrides):
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):  # as the app: no TINY
            cfg, default = (compose("config", overrides=list(o), return_hydra_config=True) for o in (overrides, ()))
        return records.changes(records.resolved(cfg), cfg.hydra.runtime.choices, records.resolved(default),
                               default.hydra.runtime.choices)

    assert changes() == {}
    assert changes("encoder=gru", "encoder.dropout=0.2") == {"encoder": "gru"}  # the group's node is its option's
    assert changes("encoder.dropout=0.2", "trainer.lr=2e-3") == {"encoder.dropout": 0.2, "trainer.lr": 0.002}
    assert changes("+preset=improved") == {
        "+preset": "improved", "encoder": "conv_birnn", "fusion": "text_centred", "head": "mlp",
        "model.input_dropout.audio": 0.5, "model.input_dropout.text": 0.7, "model.input_dropout.vision": 0.5,
        "model.input_rank.text": 30, "trainer.epochs": 25}
    assert changes("+experiment=study", "seed=3", "trainer.log_graph=false") == {}  # how it runs, not what
