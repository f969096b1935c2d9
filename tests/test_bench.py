"""The benchmark's mechanics on tiny data (its figures come from full-size runs: README)."""

import json

import pytest

from msa_ablate.bench import main


def test_bench_times_every_path_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["--device", "cpu", "--epochs", "1", "--scale", "0.05", "--seeds", "2", "--tolerance", "1",
                 "--out", str(out)])
    assert code == 0
    table = json.loads(out.read_text())
    assert [r["path"] for r in table["rows"]] == ["reference", "run", "pack", "serial"]
    assert [r["runs"] for r in table["rows"]] == [1, 1, 2, 2]
    pack, serial = table["rows"][2:]
    assert pack["test_Corr"] == pytest.approx(serial["test_Corr"], abs=1e-4)  # the same runs, two ways
    assert all(r["seconds"] > 0 and r["quality_ok"] for r in table["rows"])
    assert table["rows"][0]["speedup"] == 1.0
    fastest = min((pack, serial), key=lambda r: r["seconds_per_run"])
    assert table["sweep"] == {"path": fastest["path"], "speedup": fastest["speedup"]}
    out = capsys.readouterr().out
    assert "reference" in out and f"sweep (2 seeds): fastest path {fastest['path']}" in out


def test_bench_fails_when_quality_leaves_the_range(tmp_path):
    """A tolerance no two trainings meet: the check must report it and exit 1."""
    code = main(["--device", "cpu", "--epochs", "1", "--scale", "0.05", "--paths", "reference,run",
                 "--tolerance", "0", "--out", str(tmp_path / "b.json")])
    assert code == 1


def test_bench_profile_names_where_a_step_spends_its_time(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["--device", "cpu", "--epochs", "1", "--scale", "0.05", "--paths", "run", "--profile",
                 "--out", str(out)]) == 0
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
