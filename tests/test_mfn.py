"""The Memory Fusion Network (fusion=mfn) against its definition (Zadeh et al. 2018)."""

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from msa_ablate.errors import ConfigError
from msa_ablate.models.mfn import MemoryFusion
from tests.conftest import ROOT, compose_config

MODALITIES = ("text", "audio", "vision")
SMALL = {"lstm_dim": {"text": 6, "audio": 3, "vision": 5}, "memory_dim": 7, "hidden": 4}


def clips(modalities=MODALITIES, batch: int = 3, steps: int = 5, dim: int = 8) -> tuple[dict, dict]:
    """Aligned clips with no padding: one shared mask, as a step-wise fusion gets it."""
    generator = torch.Generator().manual_seed(0)
    seqs = {m: torch.randn(batch, steps, dim, generator=generator) for m in modalities}
    mask = torch.ones(batch, steps, dtype=torch.bool)
    return seqs, dict.fromkeys(modalities, mask)


def padded(seqs: dict, masks: dict, n: int, front: bool) -> tuple[dict, dict]:
    """The same clips with ``n`` padding steps (zero features, False in the mask) at the front or back."""
    def pad(x: torch.Tensor) -> torch.Tensor:
        padding = x.new_zeros(x.shape[0], n, *x.shape[2:])
        return torch.cat([padding, x] if front else [x, padding], dim=1)

    return {m: pad(x) for m, x in seqs.items()}, {m: pad(mask) for m, mask in masks.items()}


def force(network: torch.nn.Sequential, bias: float) -> None:
    """The network's output is ``bias`` whatever its input."""
    with torch.no_grad():
        network[-1].weight.zero_()
        network[-1].bias.fill_(bias)


@pytest.mark.parametrize("modalities", [MODALITIES[:2], MODALITIES])
def test_output_is_the_last_hidden_states_and_the_memory(modalities):
    seqs, masks = clips(modalities)
    fusion = MemoryFusion(8, modalities, **SMALL)
    assert fusion.out_dim == sum(SMALL["lstm_dim"][m] for m in modalities) + 7
    assert fusion(seqs, masks).shape == (3, fusion.out_dim)


@pytest.mark.parametrize("front", [True, False], ids=["front", "back"])
def test_padding_changes_nothing(front):
    seqs, masks = clips()
    fusion = MemoryFusion(8, MODALITIES, **SMALL).eval()
    torch.testing.assert_close(fusion(*padded(seqs, masks, 2, front)), fusion(seqs, masks), rtol=0, atol=1e-6)


def test_a_clip_padded_in_a_batch_gives_what_it_gives_alone():
    seqs, masks = clips(batch=2)
    fusion = MemoryFusion(8, MODALITIES, **SMALL).eval()
    mask = masks["text"].clone()
    mask[0, :2] = False  # clip 0: two padding steps in front, clip 1: none
    batch = {m: torch.where(mask[..., None], x, 0.0) for m, x in seqs.items()}
    alone = fusion({m: x[:1, 2:] for m, x in seqs.items()}, dict.fromkeys(MODALITIES, mask[:1, 2:]))
    torch.testing.assert_close(fusion(batch, dict.fromkeys(MODALITIES, mask))[:1], alone, rtol=0, atol=1e-6)


def test_the_attention_sees_the_cell_states_of_the_step_before_and_this_one():
    """The delta-memory attention's input at step t is c^[t-1, t]: every LSTM's cell state at t-1 (zeros
    before the first step), then at t, each run on its own modality alone."""
    seqs, masks = clips(steps=3)
    fusion = MemoryFusion(8, MODALITIES, **SMALL).eval()
    windows = []
    fusion.attention.register_forward_pre_hook(lambda module, args: windows.append(args[0]))
    fusion(seqs, masks)
    state, cells = dict.fromkeys(MODALITIES), []
    for t in range(3):
        state = {m: fusion.lstms[m](seqs[m][:, t], state[m]) for m in MODALITIES}
        cells.append(torch.cat([state[m][1] for m in MODALITIES], dim=-1))
    previous = [torch.zeros_like(cells[0]), *cells[:-1]]
    assert len(windows) == 3
    for window, before, now in zip(windows, previous, cells):
        torch.testing.assert_close(window, torch.cat([before, now], dim=-1))


def test_memory_kept_by_its_gates_stays_at_zero():
    """Retain gate 1, update gate 0: u_t = 1 * u_{t-1} + 0 * (...) = u_0 = 0."""
    seqs, masks = clips()
    fusion = MemoryFusion(8, MODALITIES, **SMALL).eval()
    force(fusion.retain, 30.0)
    force(fusion.update, -30.0)
    out = fusion(seqs, masks)
    torch.testing.assert_close(out[:, -7:], torch.zeros(3, 7), rtol=0, atol=1e-6)
    assert out[:, :-7].abs().min() > 0  # the LSTMs' states are there, the memory's part is the last


def test_memory_replaced_by_its_gates_is_the_last_attended_proposal():
    """Retain gate 0, update gate 1: u_T = tanh(D_u(a * c)), a = softmax(D_a(c)), c = c^[T-1, T]."""
    seqs, masks = clips()
    fusion = MemoryFusion(8, MODALITIES, **SMALL).eval()
    force(fusion.retain, -30.0)
    force(fusion.update, 30.0)
    windows = []
    fusion.attention.register_forward_pre_hook(lambda module, args: windows.append(args[0]))
    u = fusion(seqs, masks)[:, -7:]
    window = windows[-1]
    torch.testing.assert_close(u, torch.tanh(fusion.proposal(torch.softmax(fusion.attention(window), -1) * window)))


def test_memory_adds_the_gated_update_once_per_real_step():
    """Retain gate 1, update gate sigmoid(0) = 1/2 and a constant proposal tanh(b): after n real
    steps u = n * tanh(b) / 2. Swapped gates would give a geometric sum, a padded step one term too many."""
    seqs, masks = clips(batch=3, steps=6)
    lengths = torch.tensor([6, 4, 1])
    mask = torch.arange(6) >= 6 - lengths[:, None]  # front padding
    mask[1] = torch.arange(6) < 4  # and one clip padded at the back
    fusion = MemoryFusion(8, MODALITIES, **SMALL).eval()
    force(fusion.retain, 30.0)
    force(fusion.update, 0.0)
    force(fusion.proposal, 0.5)
    u = fusion(seqs, dict.fromkeys(MODALITIES, mask))[:, -7:]
    torch.testing.assert_close(u, (lengths * torch.tanh(torch.tensor(0.5)) / 2)[:, None].expand(3, 7))


@pytest.mark.parametrize("setting,key", [
    ({"memory_dim": 0}, "fusion.memory_dim"),
    ({"dropout": 1.5}, "fusion.dropout"),
    ({"dropout": {"attention": 0.2, "proposal": 0.0, "retain": 1.5, "update": 0.5}}, "fusion.dropout.retain"),
    ({"hidden": {"attention": 4}}, "fusion.hidden"),
    ({"lstm_dim": {"text": 4, "audio": 4}}, "fusion.lstm_dim"),
    ({"lstm_dim": -1}, "fusion.lstm_dim"),
])
def test_bad_hyperparameter_is_a_config_error_naming_its_key(setting, key):
    with pytest.raises(ConfigError, match=rf"^{key}[=:]"):
        MemoryFusion(8, MODALITIES, **setting)


def test_the_option_builds_as_the_model_builds_it():
    fusion = instantiate(OmegaConf.load(ROOT / "conf/fusion/mfn.yaml"))(dim=16, modalities=list(MODALITIES))
    assert isinstance(fusion, MemoryFusion) and fusion.out_dim == 256 + 32 + 256 + 400
    seqs, masks = clips(dim=16)
    assert fusion.eval()(seqs, masks).shape == (3, fusion.out_dim)


def test_the_model_runs_with_fusion_mfn():
    model = instantiate(compose_config("fusion=mfn", "model.hidden=8").model, _partial_=True)(
        input_dims={"text": 5, "audio": 3, "vision": 4})
    assert isinstance(model.fusion, MemoryFusion)
    x = {m: torch.randn(2, 6, d) for m, d in {"text": 5, "audio": 3, "vision": 4}.items()}
    x["text"][0, :3] = x["audio"][0, :3] = x["vision"][0, :3] = 0  # front padding
    assert model(x).shape == (2,)
