"""The improved model (issue #7): the preset composes and trains; its parts ignore padding."""

import pytest
import torch
from omegaconf import OmegaConf

from msa_ablate.errors import ConfigError
from msa_ablate.models import MultimodalSentimentModel
from msa_ablate.models.encoders import BiRNNEncoder, ConvBiRNNEncoder
from msa_ablate.models.fusions import TextCentredFusion
from msa_ablate.models.heads import MLPHead
from msa_ablate.models.sequences import AttentionPool
from tests.conftest import compose_config, run_tiny

IMPROVED = {"encoder": "conv_birnn", "fusion": "text_centred", "head": "mlp"}
ALL = ["text", "vision", "audio"]


def front_padded(batch: int = 3, steps: int = 12, dim: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Random steps, each clip with its own number of padding steps at the front (one has none)."""
    x = torch.randn(batch, steps, dim)
    lead = torch.tensor([0, 3, 7])[:batch]
    mask = torch.arange(steps) >= lead.unsqueeze(1)
    return x * mask.unsqueeze(-1), mask


def scramble_padding(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.unsqueeze(-1), x, torch.randn_like(x) * 100)


def test_preset_composes_to_the_new_options_and_trains(tmp_path):
    choices = compose_config("+preset=improved").hydra.runtime.choices
    assert {g: choices[g] for g in IMPROVED} == IMPROVED
    model = OmegaConf.to_container(compose_config("+preset=improved").model)
    assert model["input_dropout"] == {"text": 0.7, "audio": 0.5, "vision": 0.5}
    assert model["input_rank"] == {"text": 30}
    record = run_tiny(tmp_path, "+preset=improved")
    assert record["status"] == "completed"
    assert all(v is None or v == v for v in record["test"].values())


@pytest.mark.parametrize("make", [lambda: BiRNNEncoder(8, cell="lstm"), lambda: BiRNNEncoder(8, cell="gru"),
                                  lambda: ConvBiRNNEncoder(8, kernel=3), lambda: ConvBiRNNEncoder(8, kernel=5)])
def test_birnn_encoders_read_real_steps_only(make):
    """Outputs at real steps do not depend on what, or how much, padding comes before them;
    padded outputs are zero."""
    encoder = make().eval()
    x, mask = front_padded()
    out = encoder(x, mask)
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))
    torch.testing.assert_close(encoder(scramble_padding(x, mask), mask), out)
    for b in range(len(x)):  # each clip alone, without its padding, as a packed sequence would read it
        alone = encoder(x[b:b + 1, mask[b]], mask[b:b + 1, mask[b]])
        torch.testing.assert_close(alone[0], out[b, mask[b]])


@pytest.mark.parametrize("modalities", [ALL, ["text", "audio"], ["vision", "audio"], ["text"]])
def test_text_centred_fusion_ignores_padding(modalities):
    fusion = TextCentredFusion(8, modalities, heads=2).eval()
    x, mask = front_padded()
    seqs = {m: x + i for i, m in enumerate(modalities)}
    masks = {m: mask for m in modalities}
    out = fusion(seqs, masks)
    assert out.shape == (len(x), fusion.out_dim)
    scrambled = {m: scramble_padding(s, mask) for m, s in seqs.items()}
    torch.testing.assert_close(fusion(scrambled, masks), out)


def test_attention_pool_is_finite_for_a_clip_without_real_steps():
    x, mask = front_padded()
    mask[0] = False
    assert torch.isfinite(AttentionPool(8)(x, mask)).all()


def test_mlp_head_stays_in_the_label_range():
    scores = MLPHead(8, hidden=4)(torch.randn(64, 8) * 100)
    assert scores.shape == (64,) and (scores.abs() <= 3).all()


def test_the_convolution_lets_a_step_see_its_left_neighbour_in_the_backward_direction():
    """The backward RNN's output at a step reads only that step and the ones after it; in
    ConvBiRNNEncoder the convolution also hands it the step before ("not" before "good")."""
    x, mask = front_padded(batch=1, dim=4)
    changed = x.clone()
    changed[0, 5] += 1.0
    backward_half = slice(2, 4)  # the output is [forward (dim/2), backward (dim/2)]
    for encoder, sees in ((ConvBiRNNEncoder(4, kernel=3), True), (BiRNNEncoder(4, dropout=0.0), False)):
        encoder.eval()
        before, after = encoder(x, mask)[0, 6, backward_half], encoder(changed, mask)[0, 6, backward_half]
        assert torch.allclose(before, after) is not sees
    with pytest.raises(ConfigError, match="encoder.kernel=4"):
        ConvBiRNNEncoder(4, kernel=4)


def build_with(**options) -> MultimodalSentimentModel:
    return MultimodalSentimentModel({"text": 6, "audio": 4, "vision": 3}, ALL, lambda d: BiRNNEncoder(d),
                                    lambda dim, modalities: TextCentredFusion(dim, modalities, heads=2),
                                    MLPHead, hidden=8, **options)


def build_with_input_dropout(rate) -> MultimodalSentimentModel:
    return build_with(input_dropout=rate)


def test_input_dropout_per_modality():
    model = build_with_input_dropout({"text": 0.7, "audio": 0.5})
    rates = {m: getattr(b.input_dropout, "p", 0.0) for m, b in model.branches.items()}
    assert rates == {"text": 0.7, "vision": 0.0, "audio": 0.5}
    assert isinstance(model.branches["vision"].input_dropout, torch.nn.Identity)  # rate 0: the handout's branch
    assert {getattr(b.input_dropout, "p", 0.0) for b in build_with_input_dropout(0.3).branches.values()} == {0.3}


@pytest.mark.parametrize("rate", [{"txt": 0.5}, {"text": 1.0}, -0.1, {"text": True}, {"text": None}])
def test_bad_input_dropout_names_the_key(rate):
    with pytest.raises(ConfigError, match="model.input_dropout"):
        build_with_input_dropout(rate)


def projection_params(model: MultimodalSentimentModel) -> dict[str, int]:
    return {m: sum(p.numel() for p in b.proj.parameters()) for m, b in model.branches.items()}


def test_input_rank_factors_the_projection_through_that_many_dims():
    full = projection_params(build_with())
    assert full == {"text": 6 * 8 + 8, "vision": 3 * 8 + 8, "audio": 4 * 8 + 8}
    assert projection_params(build_with(input_rank={"text": 2})) == {**full, "text": 6 * 2 + 2 * 8 + 8}
    assert set(projection_params(build_with(input_rank=2)).values()) == {6 * 2 + 24, 3 * 2 + 24, 4 * 2 + 24}
    x, mask = front_padded(dim=6)
    features = {"text": x, "audio": x[..., :4], "vision": x[..., :3]}
    low_rank = build_with(input_rank={"text": 2}).eval()
    assert torch.isfinite(low_rank(features)).all()
    # the text's step vectors reach its encoder through 2 dims: rank 2 at every step
    text = low_rank.branches["text"]
    projected = text.proj(text.norm(x[mask])) - text.proj[1].bias
    assert torch.linalg.matrix_rank(projected) == 2


@pytest.mark.parametrize("rank", [{"txt": 4}, {"text": 0}, -1, 2.5, {"text": True}])
def test_bad_input_rank_names_the_key(rank):
    with pytest.raises(ConfigError, match="model.input_rank"):
        build_with(input_rank=rank)
