"""The improved model (issue #7): the preset composes and trains; its parts ignore padding."""

import pytest
import torch
from omegaconf import OmegaConf

from msa_ablate.models.encoders import BiRNNEncoder
from msa_ablate.models.fusions import AttentionPool, TextCentredFusion
from msa_ablate.models.heads import MLPHead
from tests.conftest import compose_config, run_tiny

IMPROVED = {"encoder": "birnn", "fusion": "text_centred", "head": "mlp"}
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
    record = run_tiny(tmp_path, "+preset=improved", "trainer.log_graph=false")
    assert record["status"] == "completed"
    assert all(v is None or v == v for v in record["test"].values())


def test_variant_is_the_preset():
    """`+variant=improved` (what the experiment sweeps) builds the very model of `+preset=improved`."""
    preset, variant = compose_config("+preset=improved"), compose_config("+variant=improved")
    assert OmegaConf.to_container(preset.model) == OmegaConf.to_container(variant.model)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_birnn_reads_real_steps_only(cell):
    """Outputs at real steps do not depend on what, or how much, padding comes before them;
    padded outputs are zero."""
    encoder = BiRNNEncoder(8, cell=cell).eval()
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
    out = fusion(seqs, mask)
    assert out.shape == (len(x), fusion.out_dim)
    scrambled = {m: scramble_padding(s, mask) for m, s in seqs.items()}
    torch.testing.assert_close(fusion(scrambled, mask), out)


def test_attention_pool_is_finite_for_a_clip_without_real_steps():
    x, mask = front_padded()
    mask[0] = False
    assert torch.isfinite(AttentionPool(8)(x, mask)).all()


def test_mlp_head_stays_in_the_label_range():
    scores = MLPHead(8, hidden=4)(torch.randn(64, 8) * 100)
    assert scores.shape == (64,) and (scores.abs() <= 3).all()
