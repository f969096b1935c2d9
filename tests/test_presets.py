"""The study's sweeps: the jobs they promise, taken from conf/, and a new fusion that joins them
with one class and one YAML."""

import json
import re
import shutil
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from analysis.report import main as report_main
from tests.conftest import ROOT, TINY, compose_config, main
from tests.test_options import options

STUDY_GROUPS = ("encoder", "layernorm", "modalities", "loss", "fusion")


def dry_run(*args: str) -> list[str]:
    """The jobs of a sweep, each as its overrides, without running any."""
    result = main("-m", *args, "hydra.sweeper.dry_run=true")
    assert result.code == 0, result.stderr
    return re.findall(r"^\d+: (.*)$", result.stdout, flags=re.M)


def jobs(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]


@pytest.mark.parametrize("group", STUDY_GROUPS)
def test_a_question_preset_sweeps_every_option_of_its_group_over_seeds_1_to_5(group):
    listed = dry_run(f"+experiment={group}")
    expected = [f"{group}={o} seed={s} +experiment={group}" for o in options(group) for s in range(1, 6)]
    assert listed == expected
    assert dry_run(f"+experiment={group}", "seed=1") == [j for j in expected if " seed=1 " in j]  # the command line's


def test_the_study_varies_each_option_alone_from_the_baseline():
    listed = dry_run("+experiment=study", "seed=1,2")
    defaults = compose_config().hydra.runtime.choices
    variations = [f"{g}={o}" for g in STUDY_GROUPS for o in options(g) if o != defaults[g]]
    expected = [" ".join(filter(None, [v, f"seed={s}", "+experiment=study"])) for v in ["", *variations]
                for s in (1, 2)]
    assert listed == expected  # the baseline once per seed, then each option alone


def test_a_sweep_with_a_typo_stops_before_it_makes_its_folder(tmp_path):
    result = main("-m", "encoder=lstm,lstmm", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.code == 2 and "encoder=lstmm: no such option in conf/encoder/; did you mean lstm?" in result.stderr
    assert not (tmp_path / "sweep").exists()


THROWAWAY = '''
import torch
from torch import nn


class MaxPoolFusion(nn.Module):
    """Each modality max-pooled over its steps, concatenated."""

    def __init__(self, dim, modalities):
        super().__init__()
        self.out_dim = dim * len(modalities)

    def forward(self, seqs, masks):
        return torch.cat([s.masked_fill(~masks[m].unsqueeze(-1), -1e4).amax(1) for m, s in seqs.items()], dim=-1)
'''


def test_a_new_fusion_is_one_class_and_one_yaml(tmp_path, monkeypatch):
    """A fusion added in a config folder of the user's (Hydra's --config-dir) joins the options the
    tests list, the study's sweep, and the report: nothing else is edited."""
    extra = tmp_path / "my_conf"
    (extra / "fusion").mkdir(parents=True)
    (tmp_path / "my_fusions.py").write_text(THROWAWAY)
    (extra / "fusion" / "max_pool.yaml").write_text("_target_: my_fusions.MaxPoolFusion\n_partial_: true\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    shutil.copytree(extra, conf, dirs_exist_ok=True)
    assert "max_pool" in options("fusion", conf)

    sweep = tmp_path / "study"
    result = main("-m", "--config-dir", str(extra), "+experiment=study", "seed=1", *TINY, "data.scale=0.02",
                  f"hydra.sweep.dir={sweep}")  # 27 jobs: what joins the study, not how well it does
    GlobalHydra.instance().clear()
    assert result.code == 0, result.stderr
    records = jobs(sweep)
    assert all(r["status"] == "completed" for r in records)
    assert sum(r["choices"]["fusion"] == "max_pool" for r in records) == 1
    assert len(records) == 1 + sum(len(options(g, conf)) - 1 for g in STUDY_GROUPS)

    report_main([str(sweep)])
    text = (sweep / "REPORT.md").read_text()
    for heading in ("## 1.", "## 2.1.", "## 2.2.", "## 2.3.", "## 2.4.", "## 2.5.", "## 3."):
        assert heading in text
    fusion = text.split("## 2.5.")[1]
    others = sorted(o for o in options("fusion", conf) if o != "sum_lstm")
    assert "max_pool" in others and fusion.splitlines()[0].endswith(", ".join(others))
    assert "| fusion=max_pool " in fusion
    for image in (sweep / "report_plots").glob("*.png"):
        assert f"({image.relative_to(sweep)})" in text and image.stat().st_size > 1000
    assert len(list((sweep / "report_plots").glob("*.png"))) == 6


def test_improved_experiment_pairs_it_with_the_baseline_and_reports_question_3(tmp_path):
    sweep = tmp_path / "improved"
    result = main("-m", "+experiment=improved", "seed=1,2", *TINY, f"hydra.sweep.dir={sweep}")
    assert result.code == 0, result.stderr
    pairs = sorted((r["choices"]["encoder"], r["seed"]) for r in jobs(sweep))
    assert pairs == [("conv_birnn", 1), ("conv_birnn", 2), ("lstm", 1), ("lstm", 2)]

    report_main([str(sweep), "--improved", str(sweep), "--out", str(tmp_path / "report")])
    q3 = (tmp_path / "report" / "REPORT.md").read_text().split("## 3.")[1]
    assert "| baseline " in q3  # labelled by what ran: the preset's group options and its own settings
    assert ("| +preset=improved (encoder=conv_birnn, fusion=text_centred, head=mlp, model.input_dropout.audio=0.5, "
            "model.input_dropout.text=0.7, model.input_dropout.vision=0.5, model.input_rank.text=30) ") in q3
    assert "against the baseline over 2 paired seeds: training time" in q3
    assert (tmp_path / "report" / "report_plots" / "q3_improved_1.png").stat().st_size > 1000
