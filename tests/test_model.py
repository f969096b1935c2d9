import pytest
import torch
from hydra.utils import instantiate

from msa_ablate import handout
from msa_ablate.errors import ConfigError
from msa_ablate.models.sequences import content_mask
from tests.conftest import compose_config

DIMS = {"text": 300, "audio": 74, "vision": 35}


def build(*overrides, dims=DIMS):
    return instantiate(compose_config(*overrides).model, _partial_=True)(input_dims=dims)


def test_baseline_is_the_handout_model():
    """Same parameters, shapes and outputs as the notebook's model: load_state_dict is strict."""
    ours, theirs = build(), handout.MultimodalSentimentAnalysisModel()
    theirs.load_state_dict(handout.from_project_state(ours.state_dict()))
    x = {m: torch.randn(4, 50, d) for m, d in DIMS.items()}
    x["text"][:, :20] = 0  # front padding
    ours.eval(), theirs.eval()
    torch.testing.assert_close(ours(x), theirs(x["vision"], x["text"], x["audio"]).squeeze(-1))


def test_output_is_one_score_per_clip_in_range():
    y = build()({m: 100 * torch.randn(8, 50, d) for m, d in DIMS.items()})
    assert y.shape == (8,) and bool((y > -3).all() and (y < 3).all())


@pytest.mark.parametrize("modalities,kept", [("t", {"text"}), ("va", {"vision", "audio"}), ("tva", set(DIMS))])
def test_dropped_modality_builds_no_branch(modalities, kept):
    model = build(f"modalities={modalities}")
    assert set(model.branches) == kept
    x = {m: torch.randn(2, 50, d) for m, d in DIMS.items()}
    x_without = {m: v for m, v in x.items() if m in kept}
    model.eval()
    torch.testing.assert_close(model(x), model(x_without))  # unused inputs are never read


def test_layernorm_off_has_no_norm():
    model = build("layernorm=off")
    assert all(isinstance(b.norm, torch.nn.Identity) for b in model.branches.values())


def test_dims_come_from_the_data():
    model = build(dims={"text": 768, "audio": 5, "vision": 20})
    assert model.branches["audio"].proj.in_features == 5


def test_unknown_modality_is_a_config_error():
    with pytest.raises(ConfigError, match="modalities"):
        build("modalities.names=[text,smell]")


def test_content_mask_finds_front_padding():
    x = {"text": torch.zeros(2, 5, 3), "audio": torch.zeros(2, 5, 2)}
    x["text"][0, 2:] = 1.0
    x["audio"][1, 4:] = -1.0  # a step real in one modality only is real
    assert content_mask(x).tolist() == [[False, False, True, True, True], [False, False, False, False, True]]
