"""The study's sweep presets run to completion (tiny data, one epoch) with the jobs they promise."""

import json
from pathlib import Path

import pytest

from analysis.report import main as report_main
from tests.conftest import TINY, cli
from tests.test_options import STUDY

FAST = [*TINY, "trainer.log_graph=false"]


def jobs(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]


@pytest.mark.parametrize("preset", ["encoder", "layernorm", "modalities", "loss", "fusion"])
def test_question_preset(tmp_path, preset):
    """Seeds 1-5 are the preset's; `seed=1` on the command line replaces them."""
    sweep = tmp_path / preset
    proc = cli("-m", f"+experiment={preset}", "seed=1", *FAST, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    records = jobs(sweep)
    assert all(r["status"] == "completed" and r["seed"] == 1 for r in records)
    assert sorted(r["choices"][preset] for r in records) == STUDY[preset]


def test_study_varies_one_factor_at_a_time_and_reports(tmp_path):
    sweep = tmp_path / "study"
    proc = cli("-m", "+experiment=study", "seed=1,2", *FAST, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    records = jobs(sweep)
    baseline = {"encoder": "lstm", "fusion": "sum_lstm", "loss": "mse", "modalities": "tva", "layernorm": "on"}
    configs = [tuple(sorted((g, r["choices"][g]) for g in baseline)) for r in records]
    # one baseline, and every other option of every study group exactly once, per seed
    expected = 1 + sum(len(STUDY[g]) - 1 for g in baseline)
    assert len(records) == 2 * expected and len(set(configs)) == expected
    for config in set(configs):
        changed = [g for g, o in config if baseline[g] != o]
        assert len(changed) <= 1, config
        assert sorted(r["seed"] for r, c in zip(records, configs) if c == config) == [1, 2]

    report_main([str(sweep)])
    text = (sweep / "REPORT.md").read_text()
    for heading in ("## 1.", "## 2.1.", "## 2.2.", "## 2.3.", "## 2.4.", "## 2.5.", "## 3."):
        assert heading in text
    for image in (sweep / "report_plots").glob("*.png"):
        assert f"({image.relative_to(sweep)})" in text and image.stat().st_size > 1000
    assert len(list((sweep / "report_plots").glob("*.png"))) == 6


def test_improved_experiment_pairs_it_with_the_baseline_and_reports_question_3(tmp_path):
    sweep = tmp_path / "improved"
    proc = cli("-m", "+experiment=improved", "seed=1,2", *FAST, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    pairs = sorted((r["choices"]["encoder"], r["seed"]) for r in jobs(sweep))
    assert pairs == [("conv_birnn", 1), ("conv_birnn", 2), ("lstm", 1), ("lstm", 2)]

    report_main([str(sweep), "--improved", str(sweep), "--out", str(tmp_path / "report")])
    q3 = (tmp_path / "report" / "REPORT.md").read_text().split("## 3.")[1]
    assert "| baseline " in q3 and "encoder=conv_birnn" in q3
    assert "also sets: `model.input_dropout.text=0.7`" in q3  # what the variant sets beyond its group choices
    assert "against the baseline over 2 shared seeds" in q3 and "Training time" in q3
    assert (tmp_path / "report" / "report_plots" / "q3_improved_Corr.png").stat().st_size > 1000
