"""Every option of every group composes and trains, alone and in pairs with every other."""

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from msa_ablate.errors import ConfigError
from tests.conftest import ROOT, run_tiny
from tests.pairwise import all_pairs, pairs_of, pairwise_rows

GROUPS = ("encoder", "fusion", "head", "loss", "modalities", "layernorm")
OPTIONS = {g: sorted(p.stem for p in (ROOT / "conf" / g).glob("*.yaml")) for g in GROUPS}
SINGLE = {"t", "v", "a"}


def allowed(row: dict[str, str]) -> bool:
    """cross_attention needs two modalities: that pair is rejected (tested below), not trained."""
    return not (row.get("fusion") == "cross_attention" and row.get("modalities") in SINGLE)


# The options the study's questions name; conf/experiment/study.yaml and the question presets sweep these.
STUDY = {
    "encoder": ["gru", "lstm", "mean", "transformer"],
    "fusion": ["concat_lstm", "cross_attention", "late", "self_attention", "sum_lstm", "tensor"],
    "head": ["linear", "sigmoid"],
    "loss": ["huber", "l1", "mse"],
    "modalities": ["a", "t", "ta", "tv", "tva", "v", "va"],
    "layernorm": ["off", "on"],
}
# The improved model's parts (issue #7, conf/preset/improved.yaml): options, not study questions.
IMPROVED = {"encoder": ["birnn", "conv_birnn"], "fusion": ["text_centred"], "head": ["mlp"]}


def test_the_options_the_study_names_exist():
    assert OPTIONS == {g: sorted(STUDY[g] + IMPROVED.get(g, [])) for g in GROUPS}


VARIANTS = [[f"{g}={o}"] for g in GROUPS for o in OPTIONS[g]] + [
    ["encoder=transformer", "encoder.positional=learned"],
    ["fusion=self_attention", "fusion.combine=concat"],
    ["loss=huber", "loss.delta=0.5"],
]


@pytest.mark.parametrize("overrides", VARIANTS, ids=lambda o: " ".join(o))
def test_each_option_trains_one_epoch(tmp_path, overrides):
    """Encoders and fusions also get their graph into TensorBoard."""
    group = overrides[0].split("=")[0]
    graph = group in ("encoder", "fusion")
    record = run_tiny(tmp_path, *overrides, f"trainer.log_graph={graph}")
    assert record["status"] == "completed"
    assert record["choices"][group] == overrides[0].split("=")[1]
    assert all(v is None or v == v for v in record["test"].values())
    if graph:
        assert EventAccumulator(str(tmp_path)).Reload().Graph() is not None


def test_pairwise_set_covers_every_allowed_pair():
    rows = pairwise_rows(OPTIONS, allowed)
    covered = set().union(*(pairs_of(r, list(OPTIONS)) for r in rows))
    assert covered == all_pairs(OPTIONS, allowed)
    assert all(allowed(r) for r in rows)
    full = 1
    for options in OPTIONS.values():
        full *= len(options)
    assert len(rows) < full / 20  # 41 of the 2016 combinations


@pytest.mark.parametrize("row", pairwise_rows(OPTIONS, allowed),
                         ids=lambda r: ",".join(f"{v}" for v in r.values()))
def test_pairwise_combination_trains(tmp_path: Path, row):
    record = run_tiny(tmp_path, *(f"{g}={o}" for g, o in row.items()), "trainer.log_graph=false")
    assert record["status"] == "completed"
    assert {g: record["choices"][g] for g in row} == row


@pytest.mark.parametrize("modalities", sorted(SINGLE))
def test_cross_attention_rejects_one_modality_before_training(tmp_path, modalities):
    with pytest.raises(ConfigError, match="fusion=cross_attention needs two modalities"):
        run_tiny(tmp_path, "fusion=cross_attention", f"modalities={modalities}")
    assert "history" not in (tmp_path / "metrics.json").read_text()
