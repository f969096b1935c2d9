"""REPORT.md's section on the published models (report.py --published): its table checked against
values known in advance and scipy, on records written by the test and on a real tiny sweep."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hydra.core.global_hydra import GlobalHydra
from scipy import stats

from analysis.report import main as report_main
from analysis.runs import read_runs
from tests.conftest import ROOT, TINY
from tests.conftest import main as run_main
from tests.test_analysis import write_job

SECTION = "## Published models under one trainer"
# test Corr per seed 1-5 (None: constant predictions), seconds per run and parameters, per configuration
BASELINE = [0.50, 0.52, 0.48, 0.51, 0.49]
PRESETS = {  # in the order the sweep ran them; each with what its preset sets
    "tfn": ({"+preset": "tfn", "fusion": "tensor"}, [0.55, 0.58, 0.47, 0.57, 0.50], (12.0, 14.0), 1_234_567),
    "ef_lstm": ({"+preset": "ef_lstm", "encoder": "none", "fusion": "concat_lstm"}, [None, None, None, 0.30, 0.35],
                (3.0, 5.0), 98_765),
    "mult": ({"+preset": "mult", "fusion": "mult"}, [0.60, 0.58, 0.58, 0.55], (40.0, 44.0), 555_000),  # seed 5 failed
}


def write_run(folder: Path, changes: dict, seed: int, corr: float | None, seconds: float, params: int) -> None:
    """A completed run's folder (tests.test_analysis.write_job) with its test Corr, time and size."""
    write_job(folder, changes, seed, 0.5 if corr is None else corr, mae=0.8 + seed / 100)
    record = json.loads((folder / "metrics.json").read_text())
    record["test"]["Corr"] = corr  # null, as the metrics write an undefined Corr
    record.update(train_seconds=seconds, n_params=params)
    (folder / "metrics.json").write_text(json.dumps(record))


@pytest.fixture
def published_sweep(tmp_path: Path) -> Path:
    """The baseline and three presets over seeds 1-5, as +experiment=published leaves them: EF-LSTM
    constant on seeds 1-3, MulT's seed 5 failed. The baseline's folders sort last: it comes first anyway."""
    sweep = tmp_path / "published"
    for seed, corr in enumerate(BASELINE, start=1):
        write_run(sweep / f"z-baseline-{seed}", {}, seed, corr, 20.0, 582_067)
    for i, (name, (changes, values, seconds, params)) in enumerate(PRESETS.items()):
        for seed, corr in enumerate(values, start=1):
            write_run(sweep / f"{i}-{name}-{seed}", changes, seed, corr, seconds[seed % 2], params)
    write_job(sweep / "2-mult-5", PRESETS["mult"][0], 5, status="failed")
    return sweep


def section(report: Path) -> str:
    text = report.read_text()
    assert text.count(SECTION) == 1
    return text.split(SECTION)[1]


def first_table(text: str) -> dict[str, dict[str, str]]:
    """The first markdown table in ``text``: its rows by their first cell, each as {header: cell}."""
    lines = text[text.index("\n|"):].strip().split("\n\n")[0].splitlines()
    header, _, *rows = ([c.strip() for c in line.strip().strip("|").split("|")] for line in lines)
    return {row[0]: dict(zip(header, row)) for row in rows}


def holm(p: list[float]) -> list[float]:
    """Holm's step-down adjustment, written out: the k-th smallest p times (m - k), running maximum."""
    order, m, adjusted, running = np.argsort(p), len(p), [0.0] * len(p), 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        adjusted[i] = running
    return adjusted


def test_the_section_holds_each_model_with_its_paired_comparison_time_and_size(published_sweep, tmp_path):
    assert report_main([str(published_sweep), "--published", str(published_sweep), "--out", str(tmp_path / "a")]) == 0
    rows = first_table(section(tmp_path / "a" / "REPORT.md"))
    assert list(rows) == ["baseline", "tfn", "ef_lstm", "mult"]  # the baseline first, each preset by its name
    assert list(rows["tfn"])[:8] == ["model", "n", "Corr", "Non0_acc_2", "Non0_F1_score", "Mult_acc_7", "MAE",
                                     "paired"]
    assert list(rows["tfn"])[-3:] == ["s per run", "parameters", "note"]

    base = rows["baseline"]
    assert base["n"] == "5" and base["Corr"] == f"{np.mean(BASELINE):.4f} ± {np.std(BASELINE, ddof=1):.4f}"
    assert base["Δ Corr [95% CI]"] == base["p (t)"] == base["note"] == ""
    assert (base["s per run"], base["parameters"]) == ("20.0", "582,067")

    tfn, p = PRESETS["tfn"][1], {}
    for name, (_, values, _, _) in PRESETS.items():  # paired by seed, over the seeds Corr is defined on
        seeds = [i for i, v in enumerate(values) if v is not None]
        t = stats.ttest_rel([values[i] for i in seeds], [BASELINE[i] for i in seeds])
        low, high = t.confidence_interval(0.95)
        delta = np.mean([values[i] - BASELINE[i] for i in seeds])
        assert rows[name]["Δ Corr [95% CI]"] == f"{delta:+.4f} [{low:+.4f}, {high:+.4f}]"
        assert t.pvalue > 0.001 and rows[name]["p (t)"] == f"{t.pvalue:.3f}"
        p[name] = t.pvalue
    for name, adjusted in zip(p, holm(list(p.values()))):  # over the table's three comparisons
        assert rows[name]["p (holm)"] == f"{adjusted:.3f}" + ("*" if adjusted < 0.05 else "")
    assert rows["tfn"]["Corr"] == f"{np.mean(tfn):.4f} ± {np.std(tfn, ddof=1):.4f}" and rows["tfn"]["paired"] == "5"
    assert (rows["tfn"]["s per run"], rows["tfn"]["parameters"]) == ("13.2", "1,234,567")  # 14 s on 1, 3, 5; 12 on 2, 4

    ef = rows["ef_lstm"]  # constant on 3 seeds: counted over the 2 others, and said, not dropped
    assert ef["n"] == "5" and ef["paired"] == "2"
    assert ef["Corr"] == f"{np.mean([0.30, 0.35]):.4f} ± {np.std([0.30, 0.35], ddof=1):.4f} (n=2)"
    mae = [0.8 + seed / 100 for seed in range(1, 6)]  # defined on every seed: over all five
    assert ef["MAE"] == f"{np.mean(mae):.4f} ± {np.std(mae, ddof=1):.4f}"
    assert ef["note"] == "Corr undefined on 3 of 5 seeds (constant predictions)"
    assert (ef["s per run"], ef["parameters"]) == ("4.2", "98,765")  # seeds 1, 3, 5 took 5 s, seeds 2, 4 took 3

    mult = rows["mult"]
    assert mult["n"] == "4 (+1 not completed)" and mult["paired"] == "4" and mult["note"] == ""


def test_what_the_runs_were_on_and_the_published_numbers_beside_them(published_sweep, tmp_path):
    report_main([str(published_sweep), "--published", str(published_sweep), "--out", str(tmp_path)])
    text = section(tmp_path / "REPORT.md")
    assert "\nMeasured on: make_synthetic_mosi v1 seed=0. make_synthetic_mosi is the built-in synthetic data" in text
    assert "not MOSI" in text and "Each preset keeps its source's recipe and selection rule" in text
    beside = text.split("Each preset keeps")[1]
    assert "| tfn " in beside and "published [" in beside and "TFN (MMSA)" in beside and "EF-LSTM" in beside
    assert "| baseline " in beside and "LSTM baseline (course handout)" in beside


def test_the_report_with_published_models_is_made_again_from_its_runs_table_byte_for_byte(published_sweep, tmp_path):
    study = tmp_path / "study"
    for seed in (1, 2):
        write_job(study / f"b{seed}", {}, seed, 0.5 + seed / 100)
        write_job(study / f"g{seed}", {"encoder": "gru"}, seed, 0.52 + seed / 50)
    assert report_main([str(study), "--published", str(published_sweep), "--out", str(tmp_path / "a")]) == 0
    assert report_main(["--runs", str(tmp_path / "a" / "runs.csv"), "--out", str(tmp_path / "b")]) == 0
    text = (tmp_path / "a" / "REPORT.md").read_bytes()
    assert (tmp_path / "b" / "REPORT.md").read_bytes() == text and SECTION in text.decode()
    runs = read_runs(tmp_path / "a" / "runs.csv")
    assert runs.part.value_counts().to_dict() == {"published": 20, "study": 4}
    assert text.decode().index("## 2.1. Encoder") < text.decode().index(SECTION)

    assert report_main([str(study), "--out", str(tmp_path / "c")]) == 0  # without --published: no such section
    assert SECTION not in (tmp_path / "c" / "REPORT.md").read_text()


def test_a_model_constant_on_every_seed_shows_undefined_and_why_it_has_no_comparison(tmp_path):
    for seed in (1, 2):
        write_run(tmp_path / "p" / f"b{seed}", {}, seed, 0.5 + seed / 100, 10.0, 100)
        write_run(tmp_path / "p" / f"e{seed}", PRESETS["ef_lstm"][0], seed, None, 2.0, 50)
    assert report_main([str(tmp_path / "p"), "--published", str(tmp_path / "p"), "--out", str(tmp_path / "r")]) == 0
    ef = first_table(section(tmp_path / "r" / "REPORT.md"))["ef_lstm"]
    assert (ef["n"], ef["Corr"], ef["paired"], ef["Δ Corr [95% CI]"]) == ("2", "undefined", "0", "")
    assert ef["note"] == ("Corr undefined on 2 of 2 seeds (constant predictions); "
                          "no seed with Corr defined in common with the baseline")


def test_the_committed_report_comes_out_again_from_its_runs_table(tmp_path):
    """report/runs.csv (the study, question 3 and the published models): REPORT.md again, byte for byte."""
    if not (ROOT / "report" / "runs.csv").exists():
        pytest.skip("no committed report")
    shutil.copy(ROOT / "report" / "runs.csv", tmp_path / "runs.csv")
    assert report_main(["--runs", str(tmp_path / "runs.csv"), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "REPORT.md").read_bytes() == (ROOT / "report" / "REPORT.md").read_bytes()


def test_a_real_tiny_published_sweep(tmp_path):
    """+experiment=published cut to two cheap presets and two seeds (a config folder of the test's
    own), on tiny data: the table names each, with its records' seconds and parameters."""
    experiment = (ROOT / "conf" / "experiment" / "published.yaml").read_text()
    assert "+preset: ef_lstm,lf_lstm,tfn,lmf,mfn,mult" in experiment and "seed: 1,2,3,4,5" in experiment
    extra = tmp_path / "conf" / "experiment"
    extra.mkdir(parents=True)
    (extra / "published_tiny.yaml").write_text(experiment.replace("ef_lstm,lf_lstm,tfn,lmf,mfn,mult", "lmf,lf_lstm")
                                               .replace("seed: 1,2,3,4,5", "seed: 1,2"))
    sweep = tmp_path / "sweep"
    result = run_main("-m", "--config-dir", str(tmp_path / "conf"), "+experiment=published_tiny", *TINY,
                      f"hydra.sweep.dir={sweep}")
    GlobalHydra.instance().clear()
    assert result.code == 0, result.stderr
    records = [json.loads(p.read_text()) for p in sweep.glob("*/metrics.json")]
    assert len(records) == 6 and all(r["status"] == "completed" for r in records)

    assert report_main([str(sweep), "--published", str(sweep), "--out", str(tmp_path / "a")]) == 0
    rows = first_table(section(tmp_path / "a" / "REPORT.md"))
    assert list(rows) == ["baseline", "lf_lstm", "lmf"]
    for name, row in rows.items():
        mine = [r for r in records if r["changes"].get("+preset", "baseline") == name]
        assert row["n"] == "2" and row["parameters"] == f"{mine[0]['n_params']:,}"
        assert row["s per run"] == f"{np.mean([r['train_seconds'] for r in mine]):.1f}"
        assert row["paired"] == ("" if name == "baseline" else "2")
    assert report_main(["--runs", str(tmp_path / "a" / "runs.csv"), "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "REPORT.md").read_bytes() == (tmp_path / "a" / "REPORT.md").read_bytes()


def test_sweeps_on_two_draws_of_the_data_each_have_their_table_paired_with_their_own_baseline(tmp_path):
    for seed in (1, 2):
        for draw, shift in ((0, 0.0), (2, 0.1)):
            data = {"data.seed": draw} if draw else {}
            write_run(tmp_path / "p" / f"b{draw}-{seed}", data, seed, 0.5 + shift + seed / 50, 10.0, 100)
            write_run(tmp_path / "p" / f"t{draw}-{seed}", {**data, **PRESETS["tfn"][0]}, seed,
                      0.6 + shift + seed / 30, 12.0, 200)
    assert report_main([str(tmp_path / "p"), "--published", str(tmp_path / "p"), "--out", str(tmp_path / "r")]) == 0
    first, second = section(tmp_path / "r" / "REPORT.md").split("### `make_synthetic_mosi v1 seed=")[1:]
    for text in (first, second):  # the same difference from the baseline of its own draw: 0.12 on average
        rows = first_table(text)
        assert list(rows) == ["baseline", "tfn"] and rows["tfn"]["Δ Corr [95% CI]"].startswith("+0.1200 [")
    draw_2 = [0.62, 0.64]  # 0.5 + 0.1 + seed / 50
    assert first_table(second)["baseline"]["Corr"] == f"{np.mean(draw_2):.4f} ± {np.std(draw_2, ddof=1):.4f}"


def test_a_preset_whose_runs_are_all_still_running_has_its_row_on_the_sweeps_data(published_sweep, tmp_path):
    """Mid-sweep: no run of MFN has its record yet; its row says so, beside the others, on their data."""
    for seed in (1, 2):
        write_job(published_sweep / f"3-mfn-{seed}", {"+preset": "mfn", "fusion": "mfn"}, seed, status=None)
    assert report_main([str(published_sweep), "--published", str(published_sweep), "--out", str(tmp_path)]) == 0
    text = section(tmp_path / "REPORT.md")
    assert "\n### " not in text and "unknown" not in text  # one data, so no heading per data
    rows = first_table(text)
    assert list(rows) == ["baseline", "tfn", "ef_lstm", "mult", "mfn"]
    assert rows["mfn"]["n"] == "0 (+2 not completed)" and rows["mfn"]["Corr"] == "-"
