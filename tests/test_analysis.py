"""The analysis on runs with known values (records written by the test, as the app writes them),
checked against scipy.stats; and on real tiny sweeps."""

import io
import json
import math
import random

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from analysis.labels import with_labels
from analysis.report import main as report_main
from analysis.runs import load_runs, newest_sweep, read_runs
from analysis.stats import adjust, paired
from analysis.summarize import main
from analysis.tables import compare, one_factor_tables
from tests.conftest import TINY
from tests.conftest import main as run_main

BASE = {"data": "synthetic", "encoder": "lstm", "fusion": "sum_lstm", "head": "sigmoid", "loss": "mse",
        "modalities": "tva", "layernorm": "on", "trainer": "default"}
SYNTHETIC = {"generator": "msa_ablate.data.synthetic.make_synthetic_mosi", "version": 1}
# test Corr per (loss, seed): l1 is better than mse by 0.01, 0.02, 0.03, 0.04, 0.05 on seeds 1-5.
CORR = {"mse": [0.50, 0.52, 0.48, 0.51, 0.49], "l1": [0.51, 0.54, 0.51, 0.55, 0.54], "huber": [0.50, 0.52, 0.48]}
MAE = {"mse": 0.9, "l1": 1.1, "huber": 0.8}


def write_job(folder, changes, seed, corr=None, status="completed", mae=0.7, data=SYNTHETIC):
    """A run folder as Hydra and the app leave it: .hydra/ from the start, the record at the end.
    The config is the default one with ``changes`` applied (enough to tell configurations apart)."""
    hydra = folder / ".hydra"
    hydra.mkdir(parents=True)
    typed = [f"{k}={v}" for k, v in changes.items()]
    choices = {**BASE, **{k.lstrip("+"): v for k, v in changes.items() if k.lstrip("+") in (*BASE, "preset")}}
    config = {"seed": seed, "trainer": {"lr": 0.001}, "data": {"_target_": SYNTHETIC["generator"], "seed": 0}}
    for key, value in changes.items():  # dotted keys into the nested config
        *parents, leaf = key.lstrip("+").split(".")
        node = config
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    (hydra / "overrides.yaml").write_text(yaml.safe_dump([*typed, f"seed={seed}"]))
    (hydra / "config.yaml").write_text(yaml.safe_dump(config))
    (hydra / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    if status is None:  # killed before its record
        return
    metrics = {name: 0.7 for name in ("Non0_acc_2", "Non0_F1_score", "Has0_acc_2", "Has0_F1_score",
                                       "Mult_acc_5", "Mult_acc_7", "loss")}
    metrics["MAE"] = mae
    record = {"status": status, "seed": seed, "choices": choices, "changes": changes,
              "config": config,
              "data": {"fingerprint": data}, "identity": "x", "train_seconds": 10.0, "n_params": 100,
              "history": [{"epoch": e, "train_loss": 1 / e, "valid_loss": 1.1 / e} for e in (1, 2, 3)]}
    if status == "completed":
        record.update(valid={**metrics, "Corr": corr - 0.1}, test={**metrics, "Corr": corr}, best_epoch=3)
    else:
        record["reason"] = "TrainingDiverged: non-finite training loss at epoch 2, step 5"
    (folder / "metrics.json").write_text(json.dumps(record))


@pytest.fixture
def sweep(tmp_path):
    """A loss sweep: mse and l1 on seeds 1-5, huber on seeds 1-3, one failed and one killed job."""
    root = tmp_path / "multirun" / "2026-01-01" / "10-00-00"
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {
        "hydra": ["hydra.sweep.dir=x", "hydra.mode=MULTIRUN"], "task": ["loss=mse,l1,huber", "seed=1,2,3,4,5"]}}}))
    job = 0
    for loss, values in CORR.items():
        for seed, corr in enumerate(values, start=1):
            write_job(root / str(job), {"loss": loss} if loss != "mse" else {}, seed, corr, mae=MAE[loss])
            job += 1
    write_job(root / str(job), {"loss": "huber"}, 4, status="failed")
    write_job(root / str(job + 1), {"loss": "huber"}, 5, status=None)
    return root


def test_every_folder_is_a_row_with_its_status(sweep):
    runs = load_runs([sweep])
    assert len(runs) == 15
    assert runs.status.value_counts().to_dict() == {"completed": 13, "failed": 1, "missing": 1}
    failed = runs[runs.status == "failed"].iloc[0]
    assert "non-finite" in failed.reason and failed.seed == 4
    missing = runs[runs.status == "missing"].iloc[0]
    assert missing.seed == 5 and missing.changes == {"loss": "huber"} and "no metrics.json" in missing.reason
    assert set(runs.command) == {"python -m msa_ablate -m hydra.sweep.dir=x loss=mse,l1,huber seed=1,2,3,4,5"}


def test_means_stds_deltas_intervals_and_p_values(sweep):
    table = compare(load_runs([sweep]), metric="Corr")
    assert list(table.index) == ["loss=l1", "baseline", "loss=huber"]  # sorted by mean Corr
    l1, base = table.loc["loss=l1"], table.loc["baseline"]
    assert base.baseline and not l1.baseline
    assert l1.Corr_mean == pytest.approx(0.53) and base.Corr_mean == pytest.approx(0.50)
    assert l1.Corr_std == pytest.approx(np.std(CORR["l1"], ddof=1))
    expected = stats.ttest_rel(CORR["l1"], CORR["mse"])
    assert l1.delta == pytest.approx(0.03) and l1.n_paired == 5
    assert l1.p == pytest.approx(expected.pvalue)
    assert (l1.low, l1.high) == pytest.approx(tuple(expected.confidence_interval(0.95)))
    assert math.isnan(l1.p_wilcoxon) and "Wilcoxon needs 6 pairs" in l1.note  # 5 pairs cannot reach 0.05
    huber = table.loc["loss=huber"]
    assert (huber.n, huber.not_completed, huber.n_paired) == (3, 2, 3)
    assert huber.delta == pytest.approx(0.0) and math.isnan(huber.p)  # identical to mse on its 3 seeds: no test
    assert huber.note == "the same difference on every seed: no t-test"
    p = pd.Series({"loss=l1": l1.p})  # two comparisons, one testable: Holm multiplies by 1
    assert table.loc["loss=l1", "p_adjusted"] == pytest.approx(adjust(p).iloc[0])


def test_pairs_are_matched_by_seed_not_by_position(tmp_path):
    """Records read in a shuffled order, and seeds that overlap only in part (the baseline on
    seeds 1-5, the option on 4-8): the test is over seeds 4 and 5, and n_paired says so."""
    rng = random.Random(3)
    base = {s: 0.5 + 0.013 * s ** 1.5 for s in range(1, 6)}
    other = {s: 0.6 - 0.01 * s + 0.002 * s * s for s in range(4, 9)}
    jobs = [({}, s, c) for s, c in base.items()] + [({"loss": "l1"}, s, c) for s, c in other.items()]
    rng.shuffle(jobs)
    for i, (changes, seed, corr) in enumerate(jobs):
        write_job(tmp_path / f"job{i}", changes, seed, corr)
    row = compare(load_runs([tmp_path])).loc["loss=l1"]
    assert (row.n, row.n_paired) == (5, 2)
    expected = stats.ttest_rel([other[4], other[5]], [base[4], base[5]])
    assert row.p == pytest.approx(expected.pvalue) and row.delta == pytest.approx(np.mean(
        [other[4] - base[4], other[5] - base[5]]))


@pytest.mark.parametrize("shift,seeds,note", [
    (0.02, (1, 2, 3), "the same difference on every seed: no t-test"),  # a constant shift: no p, not p = 0
    (0.02, (1,), "one seed in common: no test"),
])
def test_a_degenerate_comparison_shows_no_p_and_says_why(tmp_path, shift, seeds, note):
    for s in (1, 2, 3):
        write_job(tmp_path / f"b{s}", {}, s, 0.5 + 0.01 * s)
    for s in seeds:
        write_job(tmp_path / f"o{s}", {"loss": "l1"}, s, 0.5 + 0.01 * s + shift)
    row = compare(load_runs([tmp_path])).loc["loss=l1"]
    assert math.isnan(row.p) and math.isnan(row.p_adjusted) and row.note == note
    assert "*" not in main_output(tmp_path)


def main_output(folder) -> str:
    out = io.StringIO()
    from contextlib import redirect_stdout
    with redirect_stdout(out):
        assert main([str(folder), "--no-plots"]) == 0
    return out.getvalue().split("## all configurations")[1]


def test_wilcoxon_is_given_where_enough_seeds_are_paired(tmp_path):
    for s in range(1, 8):
        write_job(tmp_path / f"b{s}", {}, s, 0.5 + 0.001 * s * s)
        write_job(tmp_path / f"o{s}", {"loss": "l1"}, s, 0.52 + 0.003 * s)
    row = compare(load_runs([tmp_path])).loc["loss=l1"]
    b = [0.5 + 0.001 * s * s for s in range(1, 8)]
    o = [0.52 + 0.003 * s for s in range(1, 8)]
    assert row.p_wilcoxon == pytest.approx(stats.wilcoxon(np.subtract(o, b)).pvalue) and row.note == ""
    assert "p (W)" in main_output(tmp_path)


def test_a_table_without_enough_seeds_for_wilcoxon_has_no_such_column_nor_a_note_per_row(sweep):
    """5 seeds everywhere: the legend says why there is no Wilcoxon p, not every row."""
    table = main_output(sweep)
    assert "p (W)" not in table and "Wilcoxon needs" not in table
    assert "the same difference on every seed: no t-test" in table  # other notes stay


def test_holm_and_benjamini_hochberg():
    """The study's four smallest p-values among 17 comparisons (the issue's example), and scipy's BH."""
    p = pd.Series([0.012, 0.012, 0.015, 0.046] + [0.2 + 0.04 * i for i in range(13)])
    holm = adjust(p, "holm")
    assert holm.iloc[:4].tolist() == pytest.approx([17 * 0.012, 17 * 0.012, 15 * 0.015, 14 * 0.046])
    assert (holm.iloc[:4] > 0.05).all()  # none of the four stays significant
    assert adjust(p, "bh").tolist() == pytest.approx(stats.false_discovery_control(p.to_numpy()).tolist())
    assert adjust(pd.Series([0.01, np.nan, 0.02]), "holm").tolist()[::2] == pytest.approx([0.02, 0.02])
    assert adjust(p, "none").equals(p)


def test_paired_against_scipy_on_shuffled_indices():
    rng = np.random.default_rng(0)
    x = pd.Series(rng.normal(0.6, 0.02, 9), index=rng.permutation(9))
    base = pd.Series(rng.normal(0.58, 0.02, 9), index=rng.permutation(9))
    result = paired(x, base)
    order = sorted(x.index)
    expected = stats.ttest_rel(x[order], base[order])
    assert result.p == pytest.approx(expected.pvalue)
    assert (result.low, result.high) == pytest.approx(tuple(expected.confidence_interval(0.95)))
    assert result.p_wilcoxon == pytest.approx(stats.wilcoxon(x[order] - base[order]).pvalue)


def test_values_set_inside_a_preset_make_another_configuration(tmp_path):
    """+preset=improved sets the three group options and more; the three options alone are another
    configuration, labelled by what it ran: two rows, not one averaged as duplicates."""
    preset = {"+preset": "improved", "encoder": "conv_birnn", "fusion": "text_centred", "head": "mlp",
              "model.input_dropout.text": 0.7, "trainer.epochs": 25}
    options = {"encoder": "conv_birnn", "fusion": "text_centred", "head": "mlp"}
    for seed in (1, 2):
        write_job(tmp_path / f"p{seed}", preset, seed, 0.7 + seed / 100)
        write_job(tmp_path / f"o{seed}", options, seed, 0.6 + seed / 100)
        write_job(tmp_path / f"b{seed}", {}, seed, 0.5 + seed / 100)
    table = compare(load_runs([tmp_path]))
    assert list(table.index) == [
        "+preset=improved (encoder=conv_birnn, fusion=text_centred, head=mlp, model.input_dropout.text=0.7, "
        "trainer.epochs=25)", "encoder=conv_birnn fusion=text_centred head=mlp", "baseline"]
    assert list(table.n) == [2, 2, 2]


def test_runs_on_other_data_never_share_a_row(tmp_path):
    for seed in (1, 2):
        for name, digest in (("a.pkl", "aa" * 32), ("b.pkl", "bb" * 32)):
            write_job(tmp_path / f"{name}{seed}", {"data.path": "/d/mosi.pkl"}, seed, 0.5,
                      data={"file": f"/d/{name}", "bytes": 1, "sha256": digest})
    labelled, _, held = with_labels(load_runs([tmp_path]))
    assert held == {"data.path": "/d/mosi.pkl"}
    assert sorted(labelled.config.unique()) == ["baseline [a.pkl sha256 aaaaaaaaaaaa]",
                                                "baseline [b.pkl sha256 bbbbbbbbbbbb]"]


def test_mae_sorts_lowest_first(sweep):
    assert list(compare(load_runs([sweep]), metric="MAE").index) == ["loss=huber", "baseline", "loss=l1"]


def test_one_factor_tables_hold_other_factors_at_baseline(tmp_path):
    for i, changes in enumerate([{}, {"encoder": "gru"}, {"loss": "l1"}, {"encoder": "gru", "loss": "l1"}]):
        for seed in (1, 2):
            write_job(tmp_path / f"{i}{seed}", changes, seed, 0.5 + 0.1 * i + 0.01 * seed)
    tables = one_factor_tables(load_runs([tmp_path]))
    assert set(tables) == {"encoder", "loss"}
    assert set(tables["encoder"].index) == {"baseline", "encoder=gru"}  # loss held at mse
    assert tables["encoder"].loc["encoder=gru", "Corr_mean"] == pytest.approx(0.615)


def test_a_seed_run_twice_is_listed_and_counts_once(sweep, capsys):
    write_job(sweep / "99", {"loss": "l1"}, 1, 0.61)  # seed 1 again
    main([str(sweep), "--no-plots"])
    out = capsys.readouterr().out
    assert "seeds run more than once (each counts once, as its mean)" in out and "/99" in out
    l1 = compare(load_runs([sweep])).loc["loss=l1"]
    assert l1.n == 5 and l1.Corr_mean == pytest.approx((0.56 + 0.54 + 0.51 + 0.55 + 0.54) / 5)


def test_a_folder_given_twice_is_read_once(sweep):
    assert len(load_runs([sweep, sweep / "0", sweep.parent])) == 15


def test_a_baseline_with_no_completed_run_gives_a_table_without_deltas(sweep, capsys):
    """The baseline's jobs failed or are still running: the other rows still show, unpaired."""
    for folder in sweep.iterdir():
        record = folder / "metrics.json"
        if record.exists() and json.loads(record.read_text())["changes"] == {}:
            record.unlink()
    table = compare(load_runs([sweep]))
    assert table.loc["baseline", "n"] == 0 and table.loc["baseline", "not_completed"] == 5
    assert table.loc["loss=l1", "n"] == 5 and table.loc["loss=l1", "note"] == "no seed in common with the baseline"
    assert main([str(sweep), "--no-plots"]) == 0
    assert "loss=l1" in capsys.readouterr().out


def test_a_killed_seed_pack_shows_each_missing_member(tmp_path):
    """seeds=[1,2] completed, then seeds=[1,2,3] killed before its new members wrote anything."""
    job = tmp_path / "0"
    write_job(job, {}, 42, status=None)
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(
        {"seed": 42, "seeds": [1, 2, 3], "trainer": {"pack_seeds": True}}))
    for seed in (1, 2):
        write_job(tmp_path / "x" / str(seed), {}, seed, 0.5)
        (tmp_path / "x" / str(seed) / "metrics.json").rename(_folder(job / f"seed_{seed}") / "metrics.json")
    runs = load_runs([job]).sort_values("seed")
    assert runs.seed.tolist() == [1, 2, 3]
    assert runs.status.tolist() == ["completed", "completed", "missing"]
    assert runs.iloc[2].path.endswith("seed_3")


def _folder(path):
    path.mkdir(parents=True)
    return path


@pytest.mark.parametrize("fmt", ["terminal", "markdown", "latex", "csv"])
def test_formats(sweep, capsys, fmt):
    assert main([str(sweep), "--format", fmt, "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "loss=l1" in out and "failed" in out
    if fmt == "markdown":
        assert "| config" in out and "|---" in out.replace(":", "")
    if fmt == "latex":
        assert "\\begin{tabular}" in out and "\\toprule" in out
    if fmt == "csv":
        block = out.split("## all configurations\n\n")[1].split("\n\n")[0]
        table = pd.read_csv(io.StringIO(block), index_col=0)
        assert table.loc["loss=l1", "Corr_mean"] == pytest.approx(0.53)


def test_files_beside_the_sweep_each_named(sweep, capsys):
    main([str(sweep)])
    wrote = capsys.readouterr().err.strip().splitlines()[-1]
    runs = read_runs(sweep / "runs.csv")
    assert len(runs) == 15 and {"seed", "status", "test_Corr", "valid_Corr", "changes", "history"} <= set(runs.columns)
    assert set(runs.path) == {str(p.relative_to(sweep)) for p in sweep.iterdir() if p.is_dir() and p.name != "plots"}
    assert (sweep / "summary.md").read_text().count("## ") == 2  # all configurations + one factor: loss
    plots = sorted(p.name for p in (sweep / "plots").glob("*.png"))
    assert plots == ["bar_loss_Corr.png", "curves_loss.png"]
    for name in ("runs.csv", "summary.md", *(f"plots/{p}" for p in plots)):
        assert str(sweep / name) in wrote


def test_filter_split_and_the_newest_sweep_with_runs(sweep, tmp_path, capsys, monkeypatch):
    main([str(sweep), "--filter", "loss=mse,l1", "--split", "valid", "--no-plots"])
    out = capsys.readouterr().out
    assert "huber" not in out.split("## all configurations")[1] and "0.4000" in out  # valid = test - 0.1
    failed_sweep = tmp_path / "multirun" / "2026-01-02" / "09-00-00"  # a typo stopped it before any job
    failed_sweep.mkdir(parents=True)
    (failed_sweep / "multirun.yaml").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert newest_sweep() == sweep.relative_to(tmp_path)


@pytest.mark.parametrize("args,message", [
    (["--filter", "colour=red"], "--filter colour: no such column or setting"),
    (["--filter", "loss=nothing"], "--filter loss=nothing: no run matches"),
    (["--metric", "Accuracy"], "invalid choice: 'Accuracy'"),
    (["--baseline", "loss=l2"], "--baseline loss=l2: no such configuration"),
])
def test_bad_arguments_are_one_line_and_exit_2(sweep, capsys, args, message):
    with pytest.raises(SystemExit) as info:
        main([str(sweep), *args, "--no-plots"])
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_another_baseline_can_be_named(sweep):
    table = compare(load_runs([sweep]), baseline="loss=l1")
    assert table.loc["loss=l1", "baseline"] and table.loc["baseline", "delta"] == pytest.approx(-0.03)


def test_no_sweep_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2 and "no sweep with runs found" in capsys.readouterr().err


def test_an_unreadable_hydra_record_is_a_failed_row_with_its_reason(sweep):
    (sweep / "0" / "metrics.json").unlink()  # the job's own record gone: Hydra's is read, and it is garbage
    (sweep / "0" / ".hydra" / "config.yaml").write_text("seed: [unclosed\n")
    runs = load_runs([sweep])
    row = runs[runs.path.str.endswith("/0")].iloc[0]
    assert row.status == "failed" and row.reason.startswith("unreadable ") and ".hydra/config.yaml" in row.reason
    assert len(runs) == 15


def test_a_completed_record_without_metrics_is_a_failed_row_not_counted(sweep):
    record = json.loads((sweep / "1" / "metrics.json").read_text())
    without = {k: v for k, v in record.items() if k not in ("valid", "test")}
    (sweep / "1" / "metrics.json").write_text(json.dumps(without))
    runs = load_runs([sweep])
    row = runs[runs.path.str.endswith("/1")].iloc[0]
    assert row.status == "failed" and "holds no metrics" in row.reason
    assert compare(runs).loc["baseline", "n"] == 4  # seed 2 of mse is not counted as a run


def test_a_real_tiny_sweep(tmp_path):
    """A real `-m loss=mse,l1 seed=1,2` sweep, summarised with its learning curves."""
    sweep = tmp_path / "sweep"
    result = run_main("-m", *TINY, "trainer.epochs=2", "loss=mse,l1", "seed=1,2", f"hydra.sweep.dir={sweep}")
    assert result.code == 0, result.stderr
    main([str(sweep)])
    table = compare(load_runs([sweep]))
    assert list(table.n) == [2, 2] and set(table.index) == {"baseline", "loss=l1"}
    assert (sweep / "plots" / "curves_loss.png").stat().st_size > 5000


def test_the_report_is_made_again_from_its_runs_table_byte_for_byte(tmp_path):
    """REPORT.md from sweep folders, then from the runs.csv it wrote: the same bytes."""
    study, improved = tmp_path / "study", tmp_path / "improved"
    for seed in (1, 2, 3):
        for i, changes in enumerate([{}, {"encoder": "gru"}, {"fusion": "tensor"}]):
            write_job(study / f"{i}-{seed}", changes, seed, 0.5 + 0.02 * i + 0.003 * seed * seed)
        for draw in (0, 2):
            data = {"data.seed": draw} if draw else {}
            write_job(improved / f"b{draw}-{seed}", data, seed, 0.5 + 0.01 * seed)
            write_job(improved / f"p{draw}-{seed}", {**data, "+preset": "improved", "encoder": "conv_birnn"}, seed,
                      0.6 + 0.013 * seed)
    assert report_main([str(study), "--improved", str(improved), "--out", str(tmp_path / "a")]) == 0
    assert report_main(["--runs", str(tmp_path / "a" / "runs.csv"), "--out", str(tmp_path / "b")]) == 0
    text = (tmp_path / "a" / "REPORT.md").read_bytes()
    assert (tmp_path / "b" / "REPORT.md").read_bytes() == text
    report = text.decode()
    assert "## 2.1. Encoder: the handout's lstm against gru" in report and "## 2.5. Fusion" in report
    assert report.index("Data never used in its design") < report.index("The data it was designed on")
    assert "This is the built-in synthetic data" in report
    assert sorted(p.name for p in (tmp_path / "b" / "report_plots").iterdir()) == sorted(
        p.name for p in (tmp_path / "a" / "report_plots").iterdir())
