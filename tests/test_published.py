"""The published results shipped with the package, matched to configurations, and printed beside runs."""

import io
import json

import pandas as pd
import pytest

from analysis.published import COLUMNS, dataset_of, load, matches
from analysis.summarize import main
from tests.test_analysis import write_job

PRESETS = {"", "baseline", "ef_lstm", "lf_lstm", "tfn", "lmf", "mfn", "mult", "misa"}
MULT = {"+preset": "mult", "encoder": "none", "fusion": "cross_attention"}


def test_the_table_loads_with_its_columns_values_in_range_and_a_source_each():
    table = load()
    assert list(table.columns) == COLUMNS and len(table) >= 7
    assert set(table.preset) <= PRESETS and set(table.dataset) <= {"mosi", "mosei"}
    assert set(table.acc2_convention) <= {"Non0", "Has0"} and set(table.text_features) <= {"GloVe", "BERT"}
    assert table.aligned.dtype == bool
    assert table[["Acc2", "F1", "Acc7"]].apply(lambda c: c.between(0, 1)).all().all()  # fractions, not percentages
    assert table.MAE.between(0, 3).all() and table.Corr.between(-1, 1).all()
    assert table.source.str.len().gt(10).all()
    assert not table.duplicated(["preset", "dataset", "aligned", "text_features", "source"]).any()


@pytest.mark.parametrize("label,dataset,models", [
    ("+preset=mult (encoder=none, fusion=cross_attention)", "mosi", {"MulT", "MulT (MMSA)"}),
    ("+preset=mult (encoder=none) [mosei.pkl sha256 abcdef012345]", "mosei", {"MulT (MMSA)"}),
    ("baseline", "mosi", {"LSTM baseline (course handout)"}),
    ("baseline [mosi_raw.pkl sha256 abcdef012345]", "mosi", {"LSTM baseline (course handout)"}),
    ("loss=l1", "mosi", set()),
    ("+preset=improved (encoder=conv_birnn)", "mosi", set()),
    ("+preset=mult (encoder=none)", None, set()),  # CH-SIMS-like labels: nothing published here
])
def test_labels_match_by_preset_and_dataset(label, dataset, models):
    assert set(matches(label, dataset).model) == models


@pytest.mark.parametrize("data,choice,metrics,dataset", [
    ("make_synthetic_mosi v1 seed=0", "synthetic", "mosi", "mosi"),
    ("make_synthetic_mosi v1 seed=0 label_range=[-1, 1]", "synthetic", "sims", None),
    ("mosei_senti_data.pkl sha256 abcdef012345", None, "mosi", "mosei"),
    ("features.pkl sha256 abcdef012345", "mosi", "mosi", "mosi"),
    ("features.pkl sha256 abcdef012345", None, "mosi", None),
])
def test_the_dataset_from_the_data_config_or_the_file_name(data, choice, metrics, dataset):
    assert dataset_of(data, choice, metrics) == dataset


def published_output(folder, capsys, *args) -> str:
    assert main([str(folder), "--published", "--no-plots", *args]) == 0
    return capsys.readouterr().out.split("## published results beside these runs")[1]


def test_published_numbers_beside_the_runs_on_synthetic_data(tmp_path, capsys):
    for seed in (1, 2):
        write_job(tmp_path / f"b{seed}", {}, seed, 0.5 + seed / 100)
        write_job(tmp_path / f"m{seed}", MULT, seed, 0.6 + seed / 100)
        write_job(tmp_path / f"l{seed}", {"loss": "l1"}, seed, 0.5)
    out = published_output(tmp_path, capsys)
    assert "built-in synthetic data" in out and "these runs on synthetic data" in out
    lines = out.splitlines()
    mult = next(i for i, line in enumerate(lines) if line.startswith("+preset=mult"))
    assert "these runs (test, 2 seeds)" in lines[mult] and "0.6150 ± 0.0071" in lines[mult]  # Corr over seeds
    paper, mmsa = lines[mult + 1], lines[mult + 2]
    assert "published [" in paper and "MulT, aligned, GloVe text (their features and protocol)" in paper
    assert "0.83 " in paper and "0.698" in paper and "MulT (MMSA), unaligned, BERT text" in mmsa
    assert "LSTM baseline (course handout)" in out and "0.7241" in out
    assert "loss=l1" not in out and "Has0_acc_2" not in out  # no Has0 row among MulT's and the handout's
    assert "Tsai et al. 2019" in out and "thuiar/MMSA" in out  # the sources, numbered below
    written = (tmp_path / "published.md").read_text()
    assert "| +preset=mult" in written and "these runs on synthetic data" in written


def test_runs_that_only_name_their_device_are_still_the_handouts_model(tmp_path, capsys):
    """A sweep typed with trainer.device=cpu (as docs/results.md's published sweep): its baseline
    sits beside the handout's numbers, its presets beside theirs."""
    for seed in (1, 2):
        write_job(tmp_path / f"b{seed}", {"trainer.device": "cpu"}, seed, 0.5 + seed / 100)
        write_job(tmp_path / f"m{seed}", {**MULT, "trainer.device": "cpu"}, seed, 0.6 + seed / 100)
    out = published_output(tmp_path, capsys)
    assert "LSTM baseline (course handout)" in out and "MulT, aligned, GloVe text" in out


def test_a_has0_result_sits_in_the_has0_columns(tmp_path, capsys):
    """LMF's paper counts every clip (Has0): its Acc2 and F1 sit beside the runs' Has0 pair, MMSA's beside Non0."""
    for seed in (1, 2):
        write_job(tmp_path / f"p{seed}", {"+preset": "lmf", "fusion": "low_rank"}, seed, 0.7)
        write_job(tmp_path / f"b{seed}", {}, seed, 0.6)
    out = published_output(tmp_path, capsys, "--format", "csv")
    table = pd.read_csv(io.StringIO(out.split("\n\n")[2]), index_col="measured")
    paper = table.loc[table.index.str.contains("LMF, aligned, GloVe")].iloc[0]
    assert (paper.Has0_acc_2, paper.Has0_F1_score, paper.Non0_acc_2) == ("0.764", "0.757", "-")
    mmsa = table.loc[table.index.str.contains("LMF \\(MMSA\\)")].iloc[0]
    assert (mmsa.Non0_acc_2, mmsa.Has0_acc_2) == ("0.7918", "-")
    assert table.loc["these runs (test, 2 seeds)"].iloc[0].Has0_acc_2 == "0.7000 ± 0.0000"


def test_a_preset_every_run_shares_is_matched_on_real_data(tmp_path, capsys):
    """Every run is +preset=lmf on MOSEI: labelled baseline (nothing differs), matched as LMF on
    MOSEI, not as the handout's model; real data: nothing said of synthetic data."""
    data = {"file": "/d/mosei_senti_data.pkl", "bytes": 1, "sha256": "ab" * 32}
    for seed in (1, 2):
        write_job(tmp_path / f"p{seed}", {"data.path": data["file"], "+preset": "lmf", "fusion": "low_rank"}, seed, 0.7,
                  data=data)
    out = published_output(tmp_path, capsys)
    assert "LMF (MMSA), unaligned, BERT text" in out and "course handout" not in out and "MulT" not in out
    assert "LMF, aligned, GloVe" not in out  # its paper reports MOSI only
    assert "measured on: mosei_senti_data.pkl sha256 abababababab" in out and "synthetic" not in out
    assert "each source's own features, alignment, protocol and seeds" in out


def test_no_match_says_so(tmp_path, capsys):
    write_job(tmp_path / "x", {"loss": "l1"}, 1, 0.5)
    write_job(tmp_path / "y", {"loss": "huber"}, 1, 0.5)
    assert "no configuration here re-implements a published model" in published_output(tmp_path, capsys)


def test_a_metric_undefined_on_some_seeds_says_on_how_many_it_is_defined(tmp_path, capsys):
    """EF-LSTM's preset can collapse to one constant prediction (Corr undefined, null in its record):
    its row's Corr is the mean over the seeds where it is defined, and says so."""
    ef = {"+preset": "ef_lstm", "encoder": "none", "fusion": "concat_lstm"}
    for seed, corr in ((1, 0.3), (2, 0.4), (3, 0.5)):
        write_job(tmp_path / f"e{seed}", ef, seed, corr)
        write_job(tmp_path / f"b{seed}", {}, seed, 0.6)
    record = json.loads((tmp_path / "e2" / "metrics.json").read_text())
    record["test"]["Corr"] = None  # constant predictions: NaN, written as null
    (tmp_path / "e2" / "metrics.json").write_text(json.dumps(record))
    out = published_output(tmp_path, capsys)
    row = next(line for line in out.splitlines() if line.startswith("+preset=ef_lstm"))
    assert "these runs (test, 3 seeds)" in row and "0.4000 ± 0.1414 (n=2)" in row
    assert "0.7000 ± 0.0000 (n=" not in row  # defined on every seed: no count
