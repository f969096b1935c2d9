"""The analysis of the runs' robustness.json and predictions.csv (summarize.py --robustness,
--ensemble and --bootstrap; the report's Robustness section), on run folders written by hand
(records as tests/test_analysis.py writes them) whose answers are known."""

import io
import json
import math
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.labels import with_labels
from analysis.predictions import bootstrap, ensemble, mosi_rows, read_predictions, sims_rows
from analysis.report import main as report_main
from analysis.robustness import robustness_table, usable
from analysis.runs import load_runs, read_runs
from analysis.summarize import main
from msa_ablate.metrics import MOSI_METRICS, SIMS_METRICS, mosi_metrics, regression_metrics, sims_metrics
from tests.test_analysis import write_job

LEVELS = [i / 10 for i in range(11)]
TARGETS = ("text", "audio", "vision", "all")


def write_robustness(folder, drop_text, missing_text, clean=None):
    """robustness.json as msa_ablate.robustness writes it: Corr under text drop follows
    ``drop_text`` (one value per level), with text missing is ``missing_text``; every other curve
    is flat at the clean Corr (``drop_text[0]`` unless given). MAE is 1 - Corr throughout."""
    clean = drop_text[0] if clean is None else clean

    def scores(corr):
        return {"Corr": corr, "MAE": None if corr is None else 1 - corr}

    result = {"identity": "x", "split": "test", "seed": 0, "levels": LEVELS, "clean": scores(clean)}
    for name in ("noise", "drop"):
        result[name] = {t: [{"level": lv, **scores(v)} for lv, v in zip(
            LEVELS, drop_text if (name, t) == ("drop", "text") else [clean] * len(LEVELS))] for t in TARGETS}
    result["missing"] = {t: scores(missing_text if t == "text" else clean) for t in TARGETS}
    result["relative"] = {name: {t: {k: float(np.trapezoid([p[k] for p in curve], LEVELS)) for k in ("Corr", "MAE")}
                                 for t, curve in result[name].items()} for name in ("noise", "drop")}
    result["seconds"] = 1.0
    (folder / "robustness.json").write_text(json.dumps(result))


def write_predictions(folder, test, valid=((0.0, 0.1),), ids=None):
    """predictions.csv as the app writes it: ``test`` and ``valid`` (label, prediction) pairs."""
    lines = ["split,index,id,label,prediction"]
    for split, pairs in (("valid", valid), ("test", test)):
        lines += [f"{split},{i},{json.dumps(ids[i] if ids else f'clip{i}')},{label!r},{prediction!r}"
                  for i, (label, prediction) in enumerate(pairs)]
    (folder / "predictions.csv").write_text("\n".join(lines) + "\n")


def linear(start, slope):
    return [start - slope * lv for lv in LEVELS]


def table_of(folder, metric="Corr", baseline=None):
    labelled, base, _ = with_labels(load_runs([folder]), baseline)
    runs, notes = usable(labelled)
    return robustness_table(runs, base, metric), notes


def row(table, perturbation, target, config):
    found = table[(table.perturbation == perturbation) & (table.target == target) & (table.config == config)]
    assert len(found) == 1
    return found.iloc[0]


@pytest.fixture
def graceful(tmp_path):
    """Seeds 1-3: the baseline's Corr under text drop falls linearly from 0.6 by 0.5 at level 1,
    loss=l1's from 0.7 by 0.3 + 0.01 x seed; with text missing 0.2 and 0.5 - 0.02 x seed."""
    for seed in (1, 2, 3):
        write_job(tmp_path / f"b{seed}", {}, seed, 0.6)
        write_robustness(tmp_path / f"b{seed}", linear(0.6, 0.5), 0.2)
        write_job(tmp_path / f"o{seed}", {"loss": "l1"}, seed, 0.7)
        write_robustness(tmp_path / f"o{seed}", linear(0.7, 0.3 + 0.01 * seed), 0.5 - 0.02 * seed)
    return tmp_path


def effective_robustness(f, b):
    """MultiBench's definition, term by term."""
    return sum((fi - f[0]) - (bi - b[0]) for fi, bi in zip(f, b))


def test_effective_robustness_by_hand(graceful):
    table, _ = table_of(graceful)
    drop = row(table, "drop", "text", "loss=l1")
    er = [effective_robustness(linear(0.7, 0.3 + 0.01 * s), linear(0.6, 0.5)) for s in (1, 2, 3)]
    assert er == pytest.approx([5.5 * 0.19, 5.5 * 0.18, 5.5 * 0.17])  # the sum of the levels is 5.5
    assert drop.er == pytest.approx(np.mean(er)) and drop.er_std == pytest.approx(np.std(er, ddof=1))
    changes = {s: np.sum(np.subtract(linear(0.7, 0.3 + 0.01 * s), 0.7)) for s in (1, 2, 3)}
    assert drop.p == pytest.approx(stats.ttest_rel(list(changes.values()), [5.5 * -0.5] * 3).pvalue)
    assert drop.n_paired == 3 and drop.value_mean == pytest.approx(np.mean([0.7 - (0.3 + 0.01 * s) / 2
                                                                            for s in (1, 2, 3)]))
    base = row(table, "drop", "text", "baseline")
    assert base.value_mean == pytest.approx(0.35) and base.change_mean == pytest.approx(-2.75)
    assert math.isnan(base.er) and base.baseline
    missing = row(table, "missing", "text", "loss=l1")  # (f_missing - f_clean) - (b_missing - b_clean)
    assert missing.value_mean == pytest.approx(0.46) and missing.change_mean == pytest.approx(-0.24)
    assert missing.er == pytest.approx(-0.24 - (0.2 - 0.6))
    noise = row(table, "noise", "audio", "loss=l1")  # flat curves: no change, an ER of 0
    assert noise.value_mean == pytest.approx(0.7) and noise.er == pytest.approx(0.0)
    tested = table.p.dropna()  # Holm over the table's comparisons: two tests (text drop, text missing)
    assert len(tested) == 2 and drop.p_adjusted == pytest.approx(min(1.0, 2 * drop.p))
    assert list(table.perturbation.unique()) == ["noise", "drop", "missing"]
    assert list(table.target.unique()) == list(TARGETS)


def test_lower_is_better_flips_the_sign_and_the_legend_says_so(graceful, capsys):
    corr, _ = table_of(graceful, "Corr")
    mae, _ = table_of(graceful, "MAE")
    assert row(mae, "drop", "text", "loss=l1").er == pytest.approx(-row(corr, "drop", "text", "loss=l1").er)
    assert main([str(graceful), "--robustness", "--no-plots", "--metric", "MAE"]) == 0
    out = capsys.readouterr().out.split("## robustness")[1]
    assert "MAE is lower-is-better" in out and "negative Δ clean or ER" in out
    assert main([str(graceful), "--robustness", "--no-plots"]) == 0
    out = capsys.readouterr().out.split("## robustness")[1]
    assert "ER > 0: the configuration's Corr falls less than the baseline's" in out
    assert "+1.0450" not in out and "+0.9900 ± 0.0550" in out  # ER mean ± std over seeds, signed


def test_a_curve_shifted_by_a_constant_has_an_effective_robustness_of_zero(tmp_path):
    rng = np.random.default_rng(0)
    for seed in (1, 2, 3):
        curve = list(0.7 - np.cumsum(rng.uniform(0, 0.06, len(LEVELS))))
        write_job(tmp_path / f"b{seed}", {}, seed, curve[0])
        write_robustness(tmp_path / f"b{seed}", curve, 0.1 * seed)
        write_job(tmp_path / f"o{seed}", {"loss": "l1"}, seed, curve[0] + 0.05)
        write_robustness(tmp_path / f"o{seed}", [v + 0.05 for v in curve], 0.1 * seed + 0.05)
    table, _ = table_of(tmp_path)
    for name in ("drop", "missing"):
        shifted = row(table, name, "text", "loss=l1")
        assert shifted.er == pytest.approx(0.0, abs=1e-12) and shifted.n_paired == 3
        assert math.isnan(shifted.p) and shifted.note == "the same difference on every seed: no t-test"
    assert row(table, "drop", "text", "loss=l1").value_mean == pytest.approx(
        row(table, "drop", "text", "baseline").value_mean + 0.05)


def test_runs_without_robustness_json_are_counted_and_left_out(graceful, capsys):
    (graceful / "o3" / "robustness.json").unlink()
    write_job(graceful / "g1", {"encoder": "gru"}, 1, 0.5)  # a configuration with none at all
    table, notes = table_of(graceful)
    assert notes[0].startswith("robustness.json: 5 of 7 completed runs have one (the 2 without are left out)")
    assert "encoder=gru" not in set(table.config)
    assert row(table, "drop", "text", "loss=l1").n == 2 and row(table, "drop", "text", "loss=l1").n_paired == 2
    (graceful / "b2" / "robustness.json").write_text("{not json")
    table, notes = table_of(graceful)
    assert notes[0].startswith("robustness.json: 5 of 7") and "b2: unreadable robustness.json" in notes[1]
    assert row(table, "drop", "text", "baseline").n == 2
    assert main([str(graceful), "--robustness", "--no-plots"]) == 0
    assert "robustness.json: 5 of 7 completed runs have one" in capsys.readouterr().out


def test_an_undefined_metric_is_no_number_and_says_so(graceful):
    """Corr is null where every modality is dropped (constant predictions): no area, no ER, a note."""
    for folder in graceful.iterdir():
        result = json.loads((folder / "robustness.json").read_text())
        result["drop"]["all"][-1]["Corr"] = None
        result["relative"]["drop"]["all"]["Corr"] = None
        (folder / "robustness.json").write_text(json.dumps(result))
    table, _ = table_of(graceful)
    for label in ("baseline", "loss=l1"):
        undefined = row(table, "drop", "all", label)
        assert undefined.n == 0 and math.isnan(undefined.value_mean)
        assert undefined.note == "Corr undefined on every seed"
    assert row(table, "drop", "all", "loss=l1").n_paired == 0 and math.isnan(row(table, "drop", "all", "loss=l1").p)
    assert row(table, "drop", "text", "loss=l1").n == 3  # the other curves as they were
    assert row(table, "drop", "all", "loss=l1").name > row(table, "drop", "vision", "loss=l1").name


def test_runs_made_with_other_levels_are_left_out_and_named(graceful):
    result = json.loads((graceful / "o1" / "robustness.json").read_text())
    (graceful / "o1" / "robustness.json").write_text(json.dumps({**result, "levels": LEVELS[::-1]}))
    table, notes = table_of(graceful)
    assert row(table, "drop", "text", "loss=l1").n == 2
    assert any("o1: made with other settings" in line for line in notes)


def test_the_section_and_plots_with_the_flag_only(graceful, capsys):
    assert main([str(graceful), "--no-plots"]) == 0
    assert "## robustness" not in capsys.readouterr().out
    assert main([str(graceful), "--robustness"]) == 0
    out = capsys.readouterr()
    assert "## robustness: test Corr under perturbation" in out.out
    assert (graceful / "plots" / "robustness_loss_Corr.png").stat().st_size > 5000
    assert "## robustness" in (graceful / "summary.md").read_text()
    again = read_runs(graceful / "runs.csv")  # the runs table alone gives the same table
    labelled, base, _ = with_labels(again)
    assert robustness_table(usable(labelled)[0], base).equals(table_of(graceful)[0])


def test_vectorised_metrics_match_the_metrics_on_each_resample():
    rng = np.random.default_rng(1)
    truth = np.round(rng.uniform(-3, 3, 300) * 3) / 3
    truth[:30] = 0
    preds = 0.5 * truth + rng.normal(0, 1, 300)
    index = rng.integers(0, 300, (8, 300))
    for metric in MOSI_METRICS:
        expected = [mosi_metrics(preds[i], truth[i])[metric] for i in index]
        assert mosi_rows(preds[index], truth[index], metric) == pytest.approx(expected, abs=1e-12), metric
    for metric in SIMS_METRICS:
        expected = [sims_metrics(preds[i] / 3, truth[i] / 3)[metric] for i in index]
        assert sims_rows(preds[index] / 3, truth[index] / 3, metric) == pytest.approx(expected, abs=1e-12), metric


def test_the_bootstrap_interval_holds_the_estimate_is_reproducible_and_fast():
    rng = np.random.default_rng(2)
    truth = rng.uniform(-3, 3, 686)
    preds = 0.6 * truth + rng.normal(0, 1, 686)
    start = time.perf_counter()
    low, high = bootstrap(preds, truth, (-3, 3), "Corr", 1000)
    assert time.perf_counter() - start < 1.0
    estimate = regression_metrics(preds, truth, (-3, 3))["Corr"]
    assert low < estimate < high and high - low < 0.2
    assert bootstrap(preds, truth, (-3, 3), "Corr", 1000) == (low, high)
    assert bootstrap(preds, truth, (-3, 3), "Corr", 1000, seed=1) != (low, high)
    mae = bootstrap(preds, truth, (-3, 3), "MAE", 2500)  # more than one chunk of resamples
    assert mae[0] < regression_metrics(preds, truth, (-3, 3))["MAE"] < mae[1]


@pytest.fixture
def predicted(tmp_path):
    """Two seeds of the baseline and of loss=l1, each with predictions of its own on 40 clips."""
    rng = np.random.default_rng(3)
    labels = np.round(rng.uniform(-3, 3, 40), 1)
    preds = {}
    for name, changes in (("b", {}), ("o", {"loss": "l1"})):
        for seed in (1, 2):
            preds[name, seed] = 0.5 * labels + rng.normal(0, 1, 40)
            corr = regression_metrics(preds[name, seed], labels, (-3, 3))["Corr"]
            write_job(tmp_path / f"{name}{seed}", changes, seed, corr)
            write_predictions(tmp_path / f"{name}{seed}", list(zip(labels.tolist(), preds[name, seed].tolist())))
    return tmp_path, labels, preds


def test_an_ensemble_of_two_runs_is_their_averaged_predictions_scored(predicted):
    folder, labels, preds = predicted
    labelled, _, _ = with_labels(load_runs([folder]))
    table, line = ensemble(labelled, folder, "Corr")
    assert line == "predictions.csv with test predictions: 4 of 4 completed runs"
    for name, label in (("b", "baseline"), ("o", "loss=l1")):
        averaged = (preds[name, 1] + preds[name, 2]) / 2
        assert table.loc[label, "ensemble"] == pytest.approx(regression_metrics(averaged, labels, (-3, 3))["Corr"])
        singles = [regression_metrics(preds[name, s], labels, (-3, 3))["Corr"] for s in (1, 2)]
        assert table.loc[label, "single_mean"] == pytest.approx(np.mean(singles))
        assert table.loc[label, "gain"] == pytest.approx(table.loc[label, "ensemble"] - np.mean(singles))
        assert table.loc[label, "n"] == 2 and table.loc[label, "note"] == ""


def test_an_ensemble_of_runs_on_other_clips_is_refused_and_said(predicted, capsys):
    folder, labels, preds = predicted
    write_predictions(folder / "o2", list(zip((labels + 0.5).tolist(), preds["o", 2].tolist())))
    (folder / "b2" / "predictions.csv").unlink()
    assert main([str(folder), "--ensemble", "--no-plots"]) == 0
    out = capsys.readouterr().out.split("## ensembles of each configuration's seeds: test Corr")[1]
    assert "3 of 4 completed runs (the 1 without is left out)" in out
    assert "the test clips or labels of seed 2 differ from seed 1's: no ensemble" in out
    labelled, _, _ = with_labels(load_runs([folder]))
    table, _ = ensemble(labelled, folder, "Corr")
    assert math.isnan(table.loc["loss=l1", "ensemble"]) and table.loc["baseline", "n"] == 1


def test_the_bootstrap_column_in_the_comparison_table(predicted, capsys):
    folder, labels, preds = predicted
    assert main([str(folder), "--no-plots"]) == 0
    assert "95% bootstrap" not in capsys.readouterr().out
    outputs = []
    for _ in range(2):
        assert main([str(folder), "--bootstrap", "200", "--no-plots", "--format", "csv"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]  # seeded: a rerun gives the same numbers
    assert "bootstrap: 200 resamples of each run's test clips" in outputs[0]
    table = pd.read_csv(io.StringIO(outputs[0].split("## all configurations\n\n")[1].split("\n\n")[0]), index_col=0)
    bounds = [bootstrap(preds["o", s], labels, (-3, 3), "Corr", 200) for s in (1, 2)]
    assert table.loc["loss=l1", "Corr_low"] == pytest.approx(np.mean([b[0] for b in bounds]))
    assert table.loc["loss=l1", "Corr_high"] == pytest.approx(np.mean([b[1] for b in bounds]))
    assert table.loc["loss=l1", "Corr_low"] < table.loc["loss=l1", "Corr_mean"] < table.loc["loss=l1", "Corr_high"]
    assert main([str(folder), "--bootstrap", "200", "--no-plots"]) == 0
    assert "Corr 95% bootstrap (mean of runs' bounds)" in capsys.readouterr().out
    assert not (folder / "runs.csv").read_text().count("Corr_low")  # a display, not part of the runs table


def test_predictions_are_read_as_written_ids_with_commas_and_quotes_included(tmp_path):
    ids = ['a,b', 'say "hi"', '']
    write_predictions(tmp_path, [(1.0, 0.5), (-2.0, -1.5), (0.0, 0.25)], ids=ids)
    table = read_predictions(tmp_path, "test")
    assert table.id.tolist() == ids and table.label.tolist() == [1.0, -2.0, 0.0]
    assert table.prediction.tolist() == [0.5, -1.5, 0.25] and read_predictions(tmp_path, "train") is None


@pytest.mark.parametrize("args,message", [
    (["--ensemble", "--metric", "loss"], "which holds no loss"),
    (["--bootstrap", "-5"], "--bootstrap -5: the number of resamples must be positive"),
])
def test_bad_prediction_arguments_are_one_line_and_exit_2(predicted, capsys, args, message):
    with pytest.raises(SystemExit) as info:
        main([str(predicted[0]), *args, "--no-plots"])
    assert info.value.code == 2 and message in capsys.readouterr().err


def study(folder, with_robustness):
    """A study of three configurations over seeds 1-3; their robustness.json where asked: the
    baseline loses most with text missing and under text drop."""
    curves = {"": (0.5, 0.1), "encoder=gru": (0.3, 0.3), "fusion=tensor": (0.2, 0.35)}  # slope, missing text
    for seed in (1, 2, 3):
        for i, changes in enumerate([{}, {"encoder": "gru"}, {"fusion": "tensor"}]):
            job = folder / f"{i}-{seed}"
            write_job(job, changes, seed, 0.5 + 0.02 * i + 0.003 * seed * seed)
            if with_robustness:
                slope, missing = curves[" ".join(f"{k}={v}" for k, v in changes.items())]
                write_robustness(job, linear(0.6, slope + 0.01 * seed * i), missing + 0.01 * seed)


@pytest.mark.parametrize("with_robustness", [False, True])
def test_the_report_has_a_robustness_section_only_where_runs_have_robustness_json(tmp_path, with_robustness):
    study(tmp_path / "study", with_robustness)
    assert report_main([str(tmp_path / "study"), "--out", str(tmp_path / "a")]) == 0
    report = (tmp_path / "a" / "REPORT.md").read_text()
    assert ("## Robustness" in report) == with_robustness
    assert report_main(["--runs", str(tmp_path / "a" / "runs.csv"), "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "REPORT.md").read_text() == report  # the runs table alone makes it again
    if with_robustness:
        section = report.split("## Robustness")[1]
        assert "robustness.json: 9 of 9 completed runs have one" in section
        assert "| drop" in section and "| missing" in section
        assert ("With text missing, `fusion=tensor` keeps the highest Corr (0.370 ± 0.010 over 3 seeds) and "
                "degrades least from clean (Δ -0.230)") in section
        assert "under text drop, `fusion=tensor` has the highest effective robustness against the baseline" in section
