"""Every option of every group builds what its YAML names, and trains: alone and in pairs with
every other. The option lists come from conf/, so a new option is tested without editing this file."""

from pathlib import Path

import pytest
import torch
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from msa_ablate.errors import ConfigError
from msa_ablate.run import log_graph
from tests.conftest import ROOT, compose_config, run_tiny
from tests.pairwise import all_pairs, pairs_of, pairwise_rows

GROUPS = ("encoder", "fusion", "head", "loss", "modalities", "layernorm")
DIMS = {"text": 300, "audio": 74, "vision": 35}
SINGLE = {"t", "v", "a"}


def options(group: str, conf: Path = ROOT / "conf") -> list[str]:
    return sorted(p.stem for p in (conf / group).glob("*.yaml"))


OPTIONS = {g: options(g) for g in GROUPS}

# Parameters of the model each option builds (the others at the baseline's), at MOSI's dims.
# By hand: the baseline is the handout's model, 582,067 (test_model); an LSTM(128, 128) has
# 4 x (2 x 128 x 128 + 2 x 128) = 132,096, a GRU 3/4 of it, so gru = 582,067 - 3 x 33,024 and
# mean = 582,067 - 3 x 132,096; layernorm=off drops 2 x (300 + 74 + 35); modalities=t drops the
# audio branch (148 + 9,600 + 132,096) and the vision one (70 + 4,608 + 132,096); head=mlp adds
# Linear(128, 128); tensor drops the fusion LSTM and adds 3 x Linear(128, 16) and
# Linear(17 ** 3, 128); low_rank drops it and adds 3 x Linear(128, 32), 3 x 4 x 33 x 128 factors,
# 4 rank weights and 128 biases; encoder=none is encoder=mean's count (neither has parameters);
# concat drops the fusion LSTM and the head reads 3 x 128 (+ 2 x 128 weights). The rest were read
# off the built models.
PARAMS = {
    "encoder=lstm": 582_067, "encoder=gru": 482_995, "encoder=mean": 185_779, "encoder=transformer": 583_219,
    "encoder=birnn": 483_763, "encoder=conv_birnn": 631_603, "encoder=none": 185_779,
    "fusion=sum_lstm": 582_067, "fusion=concat_lstm": 713_139, "fusion=self_attention": 582_451,
    "fusion=cross_attention": 1_245_491, "fusion=tensor": 1_085_155, "fusion=late": 450_229,
    "fusion=text_centred": 648_758, "fusion=low_rank": 513_175, "fusion=concat": 450_227,
    "head=sigmoid": 582_067, "head=linear": 582_067, "head=mlp": 598_579,
    "modalities=tva": 582_067, "modalities=t": 303_449, "modalities=a": 274_069, "modalities=v": 268_999,
    "modalities=ta": 445_293, "modalities=tv": 440_223, "modalities=va": 410_843,
    "layernorm=on": 582_067, "layernorm=off": 581_249,
}


ACROSS = {"cross_attention", "mult"}  # fusions that attend from one modality to another
TEXT_ONLY = {"text_cls"}  # fusions that read the text alone (MAG-BERT's [CLS]): rejected without it (test_mag_bert)


def allowed(row: dict[str, str]) -> bool:
    """A fusion across modalities needs two, and one of the text needs the text: those pairs are rejected
    (tested below, and in test_mag_bert), not trained."""
    return not ((row.get("fusion") in ACROSS and row.get("modalities") in SINGLE)
                or (row.get("fusion") in TEXT_ONLY and "t" not in row.get("modalities", "t")))


def built_parts(model: torch.nn.Module, group: str) -> list[object]:
    """The objects an option of ``group`` builds in the model."""
    if group == "encoder":
        return [branch.encoder for branch in model.branches.values()]
    if group == "head":
        return list(model.head.values()) if isinstance(model.head, torch.nn.ModuleDict) else [model.head]
    return [getattr(model, group)]


EACH = [(g, o) for g in GROUPS for o in OPTIONS[g]]


@pytest.mark.parametrize("group,option", EACH, ids=[f"{g}={o}" for g, o in EACH])
def test_each_option_builds_what_its_yaml_names(tmp_path, group, option):
    """And encoders' and fusions' models trace into TensorBoard's graph."""
    cfg = compose_config(f"{group}={option}")
    model = instantiate(cfg.model, _partial_=True)(input_dims=DIMS)
    if group == "loss":
        assert type(instantiate(cfg.loss)) is get_class(cfg.loss._target_)
    elif group == "modalities":
        assert list(model.branches) == list(cfg.modalities.names)
    elif group == "layernorm":
        norms = {type(b.norm) for b in model.branches.values()}
        assert norms == {torch.nn.LayerNorm if cfg.layernorm.enabled else torch.nn.Identity}
    else:
        target = get_class(OmegaConf.select(cfg, f"{group}._target_"))
        assert all(type(part) is target for part in built_parts(model, group))
    if f"{group}={option}" in PARAMS:
        assert sum(p.numel() for p in model.parameters()) == PARAMS[f"{group}={option}"]
    x = {m: torch.randn(3, 50, d) for m, d in DIMS.items()}
    x["text"][:, :20] = 0
    assert model.eval()(x).shape == (3,)
    if group in ("encoder", "fusion"):
        with SummaryWriter(str(tmp_path)) as writer:
            log_graph(writer, model, x)
        assert EventAccumulator(str(tmp_path)).Reload().Graph() is not None


def test_pairwise_set_covers_every_allowed_pair():
    rows = pairwise_rows(OPTIONS, allowed)
    covered = set().union(*(pairs_of(r, list(OPTIONS)) for r in rows))
    assert covered == all_pairs(OPTIONS, allowed)
    assert all(allowed(r) for r in rows)
    full = 1
    for group_options in OPTIONS.values():
        full *= len(group_options)
    assert len(rows) < full / 20  # 42 of the 2646 combinations


@pytest.mark.parametrize("row", pairwise_rows(OPTIONS, allowed), ids=lambda r: ",".join(r.values()))
def test_pairwise_combination_trains(tmp_path: Path, row):
    """Every option meets every option of every other group in some trained run."""
    record = run_tiny(tmp_path, *(f"{g}={o}" for g, o in row.items()),
                      "data.scale=0.02")  # that each pair trains, not how well: 26 clips do
    assert record["status"] == "completed"
    assert record["n_params"] > 0 and all(v is None or v == v for v in record["test"].values())


@pytest.mark.parametrize("overrides", [
    ["encoder=transformer", "encoder.positional=learned"],
    ["fusion=self_attention", "fusion.combine=concat"],
    ["loss=huber", "loss.delta=0.5"],
], ids=" ".join)
def test_settings_beyond_the_defaults_train(tmp_path, overrides):
    assert run_tiny(tmp_path, *overrides)["status"] == "completed"


@pytest.mark.parametrize("modalities", sorted(SINGLE))
@pytest.mark.parametrize("fusion", sorted(ACROSS))
def test_a_fusion_across_modalities_rejects_one_modality_before_training(tmp_path, fusion, modalities):
    with pytest.raises(ConfigError, match=f"fusion={fusion} needs two modalities"):
        run_tiny(tmp_path, f"fusion={fusion}", f"modalities={modalities}")
    assert "history" not in (tmp_path / "metrics.json").read_text()
