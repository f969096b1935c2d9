"""The evaluator (python -m msa_ablate.eval) and the test-time robustness pass (+eval=robustness)."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from msa_ablate.data.synthetic import synthetic_arrays
from msa_ablate.eval import load_run, main
from msa_ablate.robustness import PERTURBATIONS, robustness
from msa_ablate.run import build_loss
from tests.conftest import run_tiny, run_tiny_records

SMALL = ["data.scale=0.02"]  # for what the robustness pass does, not what it finds: 14 test clips
MARGIN = 0.10  # as in test_known_answers: over three seed standard deviations of test Corr at this size


def evaluate(*args: str, capsys) -> tuple[int, str, str]:
    code = main([*map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_evaluator_gives_a_runs_test_metrics_exactly_and_leaves_its_record(tmp_path, capsys):
    record = run_tiny(tmp_path)
    before = (tmp_path / "metrics.json").read_bytes()
    code, out, _ = evaluate(tmp_path, capsys=capsys)
    assert code == 0 and f"Corr {record['test']['Corr']:.4f}" in out
    result = json.loads((tmp_path / "eval_test.json").read_text())
    assert result["metrics"] == record["test"]  # exactly: the same weights, data and batches
    assert result["identity"] == record["identity"]
    assert (tmp_path / "metrics.json").read_bytes() == before
    again = pd.read_csv(tmp_path / "eval_test_predictions.csv")
    kept = pd.read_csv(tmp_path / "predictions.csv").query("split == 'test'")
    assert again.prediction.tolist() == kept.prediction.tolist()


def test_the_evaluator_scores_another_file_and_refuses_one_the_model_does_not_fit(tmp_path, capsys):
    run = tmp_path / "run"
    record = run_tiny(run)
    other = synthetic_arrays(scale=0.05, seed=0)
    (tmp_path / "same.pkl").write_bytes(pickle.dumps(other))
    code, out, _ = evaluate(run, f"data.path={tmp_path / 'same.pkl'}", "split=valid", capsys=capsys)
    assert code == 0 and "same.pkl" in out
    [written] = run.glob("eval_valid_*.json")  # named after the other data, beside the run's own
    result = json.loads(written.read_text())
    assert result["data"]["fingerprint"]["file"].endswith("same.pkl")
    # the same clips as the run's own valid split (the generator's, written as a file): the same scores
    assert result["metrics"]["Corr"] == pytest.approx(record["valid"]["Corr"], abs=1e-6)

    narrow = {s: {**d, "vision": d["vision"][..., :20]} for s, d in other.items()}
    (tmp_path / "narrow.pkl").write_bytes(pickle.dumps(narrow))
    code, _, err = evaluate(run, f"data.path={tmp_path / 'narrow.pkl'}", capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "narrow.pkl" in err and "do not fit the model" in err and "Traceback" not in err

    wide = {s: {**d, "labels": np.asarray(d["labels"]) * 3} for s, d in other.items()}
    (tmp_path / "wide.pkl").write_bytes(pickle.dumps(wide))
    code, _, err = evaluate(run, f"data.path={tmp_path / 'wide.pkl'}", capsys=capsys)
    assert code == 2 and "wide.pkl" in err and "outside [-3.0, 3.0]" in err


@pytest.mark.parametrize("args, message", [
    (["split=dev"], "split=dev: must be one of"),
    (["epochs=3"], "epochs: no such setting"),
    (["data.nope=1"], "data.nope: no such setting of this run's data"),
    (["robustness=maybe"], "robustness=maybe: must be true or false"),
])
def test_bad_evaluator_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    run_tiny(tmp_path)
    code, _, err = evaluate(tmp_path, *args, capsys=capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_a_folder_without_a_finished_run_is_one_line_and_exit_2(tmp_path, capsys):
    code, _, err = evaluate(tmp_path, capsys=capsys)
    assert code == 2 and "no run folder" in err


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """The baseline trained as test_known_answers trains its runs (30% of MOSI, 8 epochs, seed 1)."""
    out = tmp_path_factory.mktemp("baseline")
    run_tiny(out, "data.scale=0.3", "trainer.epochs=8", "seed=1")
    _, cfg, model, data, _ = load_run(out, {}, torch.device("cpu"))
    return model, data, build_loss(cfg), robustness(model, data, build_loss(cfg))


def test_dropping_text_hurts_the_baseline_far_more_than_dropping_audio_or_vision(baseline):
    *_, result = baseline
    clean, missing, relative = result["clean"]["Corr"], result["missing"], result["relative"]["drop"]
    for other in ("audio", "vision"):
        assert clean - missing["text"]["Corr"] > clean - missing[other]["Corr"] + MARGIN, missing
        assert relative["text"]["Corr"] + MARGIN < relative[other]["Corr"], relative
    for target, curve in result["drop"].items():  # every real step dropped: the modality missing
        assert {k: v for k, v in curve[-1].items() if k != "level"} == pytest.approx(missing[target], nan_ok=True)


def test_level_0_is_the_clean_split_exactly(baseline):
    *_, result = baseline
    for name in PERTURBATIONS:
        for curve in result[name].values():
            assert curve[0] == {"level": 0.0, **result["clean"]}


def test_gaussian_noise_on_text_lowers_corr_monotonically_within_seed_noise(baseline):
    """Up to 1 standard deviation, noise on text barely moves this model (the text's signal is one
    direction of 300); further out, the curve falls, past what noise on audio costs."""
    model, data, loss, result = baseline
    text = [p["Corr"] for p in result["noise"]["text"]]
    assert all(b <= a + 0.01 for a, b in zip(text, text[1:])), text  # smooth: draws common to the levels
    assert abs(text[-1] - text[0]) < 0.05, text
    far = robustness(model, data, loss, levels=[0, 1, 4, 16])["noise"]
    text, audio = [p["Corr"] for p in far["text"]], [p["Corr"] for p in far["audio"]]
    assert all(b <= a + 0.05 for a, b in zip(text, text[1:])), text
    assert text[-1] < text[0] - 0.15 and text[-1] < audio[-1] - MARGIN, (text, audio)


def test_the_pass_is_seeded(baseline):
    model, data, loss, result = baseline
    again = robustness(model, data, loss, levels=[0, 0.5])
    assert again["noise"]["text"] == result["noise"]["text"][::5][:2]
    other = robustness(model, data, loss, levels=[0, 0.5], seed=1)
    assert other["noise"]["text"][1] != again["noise"]["text"][1]


def test_eval_robustness_runs_after_training_and_on_a_run_completed_before(tmp_path):
    record = run_tiny(tmp_path, *SMALL)
    assert not (tmp_path / "robustness.json").exists()
    [again] = run_tiny_records(tmp_path, *SMALL, "+eval=robustness")  # skipped as done: the same identity
    assert again["identity"] == record["identity"] and again["train_seconds"] == record["train_seconds"]
    result = json.loads((tmp_path / "robustness.json").read_text())
    assert result["identity"] == record["identity"] and result["clean"] == record["test"]
    assert result["levels"] == [i / 10 for i in range(11)] and set(result["missing"]) == {"text", "audio", "vision",
                                                                                         "all"}
    made = (tmp_path / "robustness.json").stat().st_mtime_ns
    run_tiny_records(tmp_path, *SMALL, "+eval=robustness")  # made with these settings: kept
    assert (tmp_path / "robustness.json").stat().st_mtime_ns == made
    run_tiny_records(tmp_path, *SMALL, "+eval=robustness", "eval.robustness.seed=1")  # other settings: again
    assert json.loads((tmp_path / "robustness.json").read_text())["seed"] == 1


def test_each_member_of_a_seed_pack_gets_its_robustness_pass(tmp_path):
    records = run_tiny_records(tmp_path, *SMALL, "trainer.pack_seeds=true", "seeds=[1,2]", "+eval=robustness",
                               "modalities=ta")
    results = [json.loads((tmp_path / f"seed_{r['seed']}" / "robustness.json").read_text()) for r in records]
    assert [set(r["missing"]) for r in results] == [{"text", "audio", "all"}] * 2  # the model's modalities
    assert results[0]["noise"]["text"] != results[1]["noise"]["text"]


def test_the_evaluators_robustness_pass_is_the_one_training_runs(tmp_path, capsys):
    """`python -m msa_ablate.eval RUN robustness=true` on a finished run writes what `+eval=robustness`
    writes after training (conf/eval/robustness.yaml's settings, the same draws)."""
    run_tiny(tmp_path / "a", *SMALL, "+eval=robustness")
    run_tiny(tmp_path / "b", *SMALL)
    code, out, _ = evaluate(tmp_path / "b", "robustness=true", capsys=capsys)
    assert code == 0 and "area under Corr with noise" in out
    after, later = (json.loads((tmp_path / f / "robustness.json").read_text()) for f in ("a", "b"))
    for result in (after, later):
        result.pop("seconds")
    assert later == after
