"""The benchmark's mechanics on tiny data (its figures come from full-size runs: docs/benchmarks.md)."""

import dataclasses
import json

import pytest

import msa_ablate.bench
from msa_ablate.bench import main

TINY = ["--device", "cpu", "--epochs", "1", "--scale", "0.05"]


def test_bench_times_every_path_and_each_computes_what_its_counterpart_does(tmp_path, capsys):
    """The reference (the handout's loop from the trainer's weights and order) and the trainer agree
    within the default tolerance; so do a seed pack and its seeds one after another."""
    out = tmp_path / "bench.json"
    assert main([*TINY, "--seeds", "2", "--out", str(out)]) == 0
    table = json.loads(out.read_text())
    assert [r["path"] for r in table["rows"]] == ["reference", "run", "pack", "serial"]
    assert [r["runs"] for r in table["rows"]] == [1, 1, 2, 2]
    reference, run, pack, serial = table["rows"]
    assert run["test_Corr"] == pytest.approx(reference["test_Corr"], abs=1e-4)  # the same training, two ways
    assert pack["test_Corr"] == pytest.approx(serial["test_Corr"], abs=1e-4)
    assert [r["quality_ok"] for r in table["rows"]] == [None, True, True, None]  # each checked against its counterpart
    assert all(r["seconds"] > 0 for r in table["rows"]) and reference["speedup"] == 1.0
    fastest = min((run, pack, serial), key=lambda r: r["seconds_per_run"])
    assert table["sweep"] == {"path": fastest["path"], "speedup": fastest["speedup"]}
    out = capsys.readouterr().out
    assert "reference" in out and f"sweep (2 seeds): fastest path {fastest['path']}" in out


def test_bench_fails_when_a_path_computes_something_else(tmp_path, monkeypatch):
    """A trainer that trained with another learning rate than the reference: the check says so, exit 1."""
    fit = msa_ablate.bench.fit
    def other_lr(model, data, loss, recipe, **kw):
        return fit(model, data, loss, dataclasses.replace(recipe, lr=3e-3), **kw)

    monkeypatch.setattr(msa_ablate.bench, "fit", other_lr)
    out = tmp_path / "b.json"
    assert main([*TINY, "--paths", "reference,run", "--out", str(out)]) == 1
    assert [r["quality_ok"] for r in json.loads(out.read_text())["rows"]] == [None, False]


def test_bench_profile_names_where_a_step_spends_its_time(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main([*TINY, "--paths", "run", "--profile", "--out", str(out)]) == 0
    profile = json.loads(out.read_text())["profile"]
    assert len(profile) == 5 and all(0 < e["share"] <= 1 and e["ms_per_step"] > 0 for e in profile)
    assert sum(e["share"] for e in profile) <= 1 + 1e-9
    assert [e["share"] for e in profile] == sorted((e["share"] for e in profile), reverse=True)
    assert "by operator self time" in capsys.readouterr().out


def test_bench_refuses_cuda_graph_paths_on_cpu(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--device", "cpu", "--paths", "run,graph", "--out", str(tmp_path / "b.json")])
    assert exit_.value.code == 2
    assert "--paths graph,pack_graph: CUDA graphs need a CUDA device, not cpu" in capsys.readouterr().err
