"""analysis/summarize.py on sweeps with known values: written by the test, and one real tiny sweep."""

import io
import json
import math

import pandas as pd
import pytest
import yaml

from analysis.report import question_3
from analysis.runs import load_runs, newest_sweep
from analysis.summarize import compare, main, one_factor_tables
from tests.conftest import TINY
from tests.conftest import main as run_main

BASE = {"data": "synthetic", "encoder": "lstm", "fusion": "sum_lstm", "head": "sigmoid", "loss": "mse",
        "modalities": "tva", "layernorm": "on", "trainer": "default"}
# test Corr per (loss, seed): l1 is better than mse by 0.01, 0.02, 0.03, 0.04, 0.05 on seeds 1-5.
CORR = {"mse": [0.50, 0.52, 0.48, 0.51, 0.49], "l1": [0.51, 0.54, 0.51, 0.55, 0.54], "huber": [0.50, 0.52, 0.48]}
MAE = {"mse": 0.9, "l1": 1.1, "huber": 0.8}


def write_job(folder, choices, seed, corr=None, status="completed", overrides=(), mae=0.7):
    """A job folder as Hydra and the app leave it: .hydra/ from the start, metrics.json at the end."""
    hydra = folder / ".hydra"
    hydra.mkdir(parents=True)
    (hydra / "overrides.yaml").write_text(yaml.safe_dump([*overrides, f"seed={seed}"]))
    (hydra / "config.yaml").write_text(yaml.safe_dump({"seed": seed}))
    (hydra / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    if status is None:  # killed before metrics.json
        return
    metrics = {name: 0.7 for name in ("Non0_acc_2", "Non0_F1_score", "Has0_acc_2", "Has0_F1_score",
                                       "Mult_acc_5", "Mult_acc_7", "loss")}
    metrics["MAE"] = mae
    record = {"status": status, "seed": seed, "choices": choices}
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
    (root / "multirun.yaml").write_text("{}")
    job = 0
    for loss, values in CORR.items():
        for seed, corr in enumerate(values, start=1):
            write_job(root / str(job), {**BASE, "loss": loss}, seed, corr, overrides=[f"loss={loss}"],
                      mae=MAE[loss])
            job += 1
    write_job(root / str(job), {**BASE, "loss": "huber"}, 4, status="failed", overrides=["loss=huber"])
    write_job(root / str(job + 1), {**BASE, "loss": "huber"}, 5, status=None, overrides=["loss=huber"])
    return root


def test_every_folder_is_a_row_with_its_status(sweep):
    runs = load_runs([sweep])
    assert len(runs) == 15
    assert runs.status.value_counts().to_dict() == {"completed": 13, "failed": 1, "missing": 1}
    failed = runs[runs.status == "failed"].iloc[0]
    assert "non-finite" in failed.reason and failed.seed == 4
    missing = runs[runs.status == "missing"].iloc[0]
    assert missing.seed == 5 and missing.loss == "huber" and "no metrics.json" in missing.reason


def test_means_stds_deltas_and_p_values(sweep):
    table = compare(load_runs([sweep]), metric="Corr")
    assert list(table.index) == ["loss=l1", "baseline", "loss=huber"]  # sorted by mean Corr
    l1, base = table.loc["loss=l1"], table.loc["baseline"]
    assert base.baseline and not l1.baseline
    assert l1.Corr_mean == pytest.approx(0.53) and base.Corr_mean == pytest.approx(0.50)
    # sample std of l1: deviations -.02 .01 -.02 .02 .01 -> sum of squares .0014 / 4
    assert l1.Corr_std == pytest.approx(math.sqrt(0.0014 / 4))
    # paired differences .01 .02 .03 .04 .05: mean .03, sd .0158114, t = .03 / (.0158114 / sqrt 5) = 4.2426
    assert l1.delta == pytest.approx(0.03) and l1.n_paired == 5
    from scipy.stats import t as student_t
    assert l1.p_t == pytest.approx(2 * student_t.sf(0.03 / (math.sqrt(0.00025) / math.sqrt(5)), df=4))
    assert l1.p_wilcoxon == pytest.approx(2 / 32)  # all 5 differences positive: 2 of 2^5 sign patterns
    huber = table.loc["loss=huber"]
    assert (huber.n, huber.not_completed, huber.n_paired) == (3, 2, 3)
    assert huber.delta == pytest.approx(0.0) and huber.p_t == 1.0  # identical to mse on the shared seeds
    assert math.isnan(huber.p_wilcoxon)  # n = 3 is too few


def test_mae_sorts_lowest_first(sweep):
    assert list(compare(load_runs([sweep]), metric="MAE").index) == ["loss=huber", "baseline", "loss=l1"]


def test_one_factor_tables_hold_other_factors_at_baseline(tmp_path):
    root = tmp_path / "s"
    for i, (enc, loss) in enumerate([("lstm", "mse"), ("gru", "mse"), ("lstm", "l1"), ("gru", "l1")]):
        for seed in (1, 2):
            write_job(root / f"{i}{seed}", {**BASE, "encoder": enc, "loss": loss}, seed, 0.5 + 0.1 * i + 0.01 * seed)
    tables = one_factor_tables(load_runs([root]))
    assert set(tables) == {"encoder", "loss"}
    assert set(tables["encoder"].index) == {"baseline", "encoder=gru"}  # loss held at mse
    assert tables["encoder"].loc["encoder=gru", "Corr_mean"] == pytest.approx(0.615)


def test_duplicates_are_reported_and_count_once(sweep, capsys):
    write_job(sweep / "99", {**BASE, "loss": "l1"}, 1, 0.61, overrides=["loss=l1"])  # seed 1 again
    main([str(sweep), "--no-plots"])
    out = capsys.readouterr().out
    assert "duplicates (same configuration and seed)" in out and "/99" in out and "/5," in out
    l1 = compare(load_runs([sweep])).loc["loss=l1"]
    assert l1.n == 5  # seed 1 once, as the mean of 0.51 and 0.61
    assert l1.Corr_mean == pytest.approx((0.56 + 0.54 + 0.51 + 0.55 + 0.54) / 5)


def test_a_folder_given_twice_is_read_once(sweep):
    assert len(load_runs([sweep, sweep / "0", sweep.parent])) == 15


def test_merged_sweeps_with_different_overrides(tmp_path):
    """One sweep overrode trainer.lr, the other did not: the missing value is the default."""
    for seed in (1, 2):
        write_job(tmp_path / "a" / str(seed), BASE, seed, 0.5 + seed / 100)
        write_job(tmp_path / "b" / str(seed), BASE, seed, 0.4 + seed / 100, overrides=["trainer.lr=1e-4"])
        write_job(tmp_path / "c" / str(seed), BASE, seed, 0.5 + seed / 100, overrides=["trainer.lr=0.001"])
    table = compare(load_runs([tmp_path / "a", tmp_path / "b", tmp_path / "c"]))
    assert list(table.index) == ["baseline", "trainer.lr=0.0001"]
    assert table.loc["baseline", "n"] == 2  # a and c are one configuration: 0.001 is the default 1e-3


def test_settings_that_change_nothing_computed_do_not_split_a_configuration(tmp_path):
    for seed in (1, 2):
        write_job(tmp_path / "a" / str(seed), BASE, seed, 0.5, overrides=["trainer.log_graph=false"])
        write_job(tmp_path / "b" / str(seed), BASE, seed, 0.5, overrides=["trainer.keep_checkpoint=true"])
        write_job(tmp_path / "c" / str(seed), BASE, seed, 0.4, overrides=["trainer.lr=1e-4"])
    table = compare(load_runs([tmp_path]))
    assert list(table.index) == ["baseline", "trainer.lr=0.0001"] and table.loc["baseline", "n"] == 2


def test_a_switch_typed_false_is_its_default_false(tmp_path):
    """`trainer.pack_seeds=false` as typed and the config's own False are one configuration."""
    for seed in (1, 2):
        write_job(tmp_path / "a" / str(seed), BASE, seed, 0.5 + seed / 100, overrides=["trainer.pack_seeds=false"])
        write_job(tmp_path / "b" / str(seed), BASE, seed, 0.4 + seed / 100, overrides=["trainer.pack_seeds=true"])
    table = compare(load_runs([tmp_path / "a", tmp_path / "b"]))
    assert list(table.index) == ["baseline", "trainer.pack_seeds=true"]
    assert table.loc["trainer.pack_seeds=true", "delta"] == pytest.approx(-0.1)


def test_a_baseline_with_no_completed_run_gives_a_table_without_deltas(sweep, capsys):
    """The baseline's jobs failed or are still running: the other rows still show, unpaired."""
    for folder in sweep.iterdir():
        if folder.is_dir() and json.loads((folder / "metrics.json").read_text() if (folder / "metrics.json").exists()
                                          else "{}").get("choices", {}).get("loss") == "mse":
            (folder / "metrics.json").unlink()
    table = compare(load_runs([sweep]))
    assert table.loc["baseline", "n"] == 0 and table.loc["baseline", "not_completed"] == 5
    assert table.loc["loss=l1", "n"] == 5 and math.isnan(table.loc["loss=l1", "delta"])
    assert main([str(sweep), "--no-plots"]) == 0
    assert "loss=l1" in capsys.readouterr().out
    assert "holds no completed baseline-and-improved pair" in question_3([sweep], sweep / "plots", "Corr")


def test_a_killed_seed_pack_shows_each_missing_member(tmp_path):
    """seeds=[1,2] completed, then seeds=[1,2,3] killed before its new members wrote anything."""
    job = tmp_path / "0"
    write_job(job, BASE, 42, status=None, overrides=["trainer.pack_seeds=true"])
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(
        {"seed": 42, "seeds": [1, 2, 3], "trainer": {"pack_seeds": True}}))
    for seed in (1, 2):
        (job / f"seed_{seed}").mkdir()
        (job / f"seed_{seed}" / "metrics.json").write_text(json.dumps(
            {"status": "completed", "seed": seed, "choices": BASE, "test": {"Corr": 0.5}, "valid": {"Corr": 0.4}}))
    runs = load_runs([tmp_path]).sort_values("seed")
    assert runs.seed.tolist() == [1, 2, 3]
    assert runs.status.tolist() == ["completed", "completed", "missing"]
    assert runs.iloc[2].path.endswith("seed_3") and runs.iloc[2].encoder == "lstm"


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


def test_files_beside_the_sweep_and_plots(sweep):
    main([str(sweep)])
    runs = pd.read_csv(sweep / "runs.csv")
    assert len(runs) == 15 and {"loss", "seed", "status", "test_Corr", "valid_Corr"} <= set(runs.columns)
    assert (sweep / "summary.md").read_text().count("## ") == 2  # all configurations + one factor: loss
    plots = list((sweep / "plots").glob("*.png"))
    assert {p.name for p in plots} == {"bar_loss_Corr.png", "curves_loss.png"}
    assert all(p.stat().st_size > 1000 for p in plots)


def test_filter_split_and_newest(sweep, tmp_path, capsys, monkeypatch):
    main([str(sweep), "--filter", "loss=mse,l1", "--split", "valid", "--no-plots"])
    out = capsys.readouterr().out
    assert "huber" not in out.split("## all configurations")[1] and "0.4300" in out  # valid = test - 0.1
    monkeypatch.chdir(tmp_path)
    assert newest_sweep() == sweep.relative_to(tmp_path)


@pytest.mark.parametrize("args,message", [
    (["--filter", "colour=red"], "--filter colour: no such column"),
    (["--filter", "loss=nothing"], "--filter loss=nothing: no run matches"),
    (["--metric", "Accuracy"], "invalid choice: 'Accuracy'"),
])
def test_bad_arguments_are_one_line_and_exit_2(sweep, capsys, args, message):
    with pytest.raises(SystemExit) as info:
        main([str(sweep), *args, "--no-plots"])
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_no_sweep_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2 and "no sweep found" in capsys.readouterr().err


def test_a_real_tiny_sweep(tmp_path):
    """A real `-m loss=mse,l1 seed=1,2` sweep, summarised with its learning curves from TensorBoard."""
    sweep = tmp_path / "sweep"
    result = run_main("-m", *TINY, "trainer.epochs=2", "loss=mse,l1", "seed=1,2", f"hydra.sweep.dir={sweep}")
    assert result.code == 0, result.stderr
    main([str(sweep)])
    table = compare(load_runs([sweep]))
    assert list(table.n) == [2, 2] and set(table.index) == {"baseline", "loss=l1"}
    assert (sweep / "plots" / "curves_loss.png").stat().st_size > 5000


def test_an_unreadable_hydra_record_is_a_failed_row_with_its_reason(sweep):
    (sweep / "0" / "metrics.json").unlink()  # the job's own record gone: Hydra's is read, and it is garbage
    (sweep / "0" / ".hydra" / "config.yaml").write_text("seed: [unclosed\n")
    (sweep / "0" / ".hydra" / "overrides.yaml").write_text("- {{{\n")
    runs = load_runs([sweep])
    row = runs[runs.path.str.endswith("/0")].iloc[0]
    assert row.status == "failed" and row.reason.startswith("unreadable ") and ".hydra/overrides.yaml" in row.reason
    assert len(runs) == 15


def test_a_completed_record_without_metrics_is_a_failed_row_not_counted(sweep):
    (sweep / "1" / "metrics.json").write_text(json.dumps({"status": "completed", "seed": 2, "choices": BASE}))
    runs = load_runs([sweep])
    row = runs[runs.path.str.endswith("/1")].iloc[0]
    assert row.status == "failed" and "holds no metrics" in row.reason
    assert compare(runs).loc["baseline", "n"] == 4  # seed 2 of mse is not counted as a run
