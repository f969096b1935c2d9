"""MAG-BERT (text=mag_bert, fusion=text_cls, +preset=mag_bert): the gate against a hand computation, the
model without its gate against plain BERT, and the preset training on tiny MMSA-format files (aligned, and
unaligned with data.align), alone and as a seed pack; on test_bert's tiny BERT (2 layers, hidden 32)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import open_dict

from msa_ablate.config import check_settings
from msa_ablate.data import from_arrays
from msa_ablate.errors import ConfigError
from tests.conftest import compose_config, run_tiny, run_tiny_records
from tests.test_bert import STEPS, files, mmsa_arrays, one_line_refusal, tiny_bert  # noqa: F401

transformers = pytest.importorskip("transformers")
from msa_ablate.models.bert import BertText  # noqa: E402
from msa_ablate.models.mag import MAG, MAGBertText, TextCLSFusion  # noqa: E402

MMSA_DIMS = {"audio": 5, "vision": 20}  # the synthetic MMSA layout's (MOSI's files')


def test_the_gate_shifts_each_token_by_the_norm_scaled_displacement():
    """h = (1, 2, 2), ||h|| = 3; audio's gate open (relu(0 + 1) = 1), vision's shut (relu(-1) = 0, whatever it
    brings); audio's shift (x, 0, 0). x = 12: alpha = 3 / 12 = 1/4, h + H/4 = (4, 2, 2). x = 1: alpha = min(3, 1)
    = 1, h + H = (2, 2, 2). x = 0: no shift (its norm 0 counted as 1), h alone. Then LayerNorm (weights 1, 0)."""
    gate = MAG(3, {"audio": 1, "vision": 2}, beta_shift=1.0, dropout=0.0).double()
    with torch.no_grad():
        for m, bias in (("audio", 1.0), ("vision", -1.0)):
            gate.gates[m].weight.zero_(), gate.gates[m].bias.fill_(bias)
        gate.shifts["audio"].weight.copy_(torch.tensor([[1.0], [0.0], [0.0]])), gate.shifts["audio"].bias.zero_()
        gate.shifts["vision"].weight.fill_(5.0)
    hidden = torch.tensor([[1.0, 2.0, 2.0]] * 3, dtype=torch.float64)[None]  # (1, 3 steps, 3)
    audio = torch.tensor([[12.0], [1.0], [0.0]], dtype=torch.float64)[None]
    vision = torch.full((1, 3, 2), 7.0, dtype=torch.float64)

    def norm(v):  # LayerNorm by hand
        mean = sum(v) / 3
        var = sum((x - mean) ** 2 for x in v) / 3
        return [(x - mean) / math.sqrt(var + 1e-5) for x in v]

    alpha = 3 / (12 + 1e-6)
    expected = torch.tensor([norm([1 + 12 * alpha, 2, 2]), norm([2, 2, 2]), norm([1, 2, 2])], dtype=torch.float64)
    out = gate(hidden, {"audio": audio, "vision": vision})[0]
    torch.testing.assert_close(out, expected, atol=1e-9, rtol=0)
    # beta_shift scales the bound: at 1/8, x = 12 moves h by 3/8 of its norm's worth of H
    gate.beta_shift = 0.125
    out = gate(hidden, {"audio": audio, "vision": vision})[0, 0]
    torch.testing.assert_close(out, torch.tensor(norm([1 + 12 * alpha / 8, 2, 2]), dtype=torch.float64))


def tokens_of_a_file() -> torch.Tensor:
    return from_arrays(mmsa_arrays(), "x", text_bert=True).splits["valid"].tokens


def test_without_other_modalities_mag_bert_is_bert(tiny_bert):
    """No modality but text: no gate, and the layer-by-layer run is BertText's (BertModel's) exactly."""
    tokens = tokens_of_a_file()
    mag, plain = MAGBertText(tiny_bert).eval(), BertText(tiny_bert).eval()
    assert mag.gate is None and not any("gate" in n for n, _ in mag.named_parameters())
    torch.testing.assert_close(mag(tokens, {}), plain(tokens), atol=0, rtol=0)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_with_a_shift_of_zero_the_gate_is_its_layernorm_after_layer_injection_index(tiny_bert, index):
    """Shift weights zero: what BERT computes with MAG's LayerNorm between layer ``index`` and the next."""
    tokens = tokens_of_a_file()
    others = {m: torch.randn(len(tokens), STEPS, d) for m, d in MMSA_DIMS.items()}
    mag = MAGBertText(tiny_bert, MMSA_DIMS, injection_index=index).eval()
    with torch.no_grad():
        for shift in mag.gate.shifts.values():
            shift.weight.zero_(), shift.bias.zero_()
    plain = BertText(tiny_bert).eval()
    hidden, mask = plain.embed(tokens), plain.attention_mask(tokens, torch.float32)
    for i, layer in enumerate(plain.bert.encoder.layer):
        hidden = mag.gate.norm(hidden) if i == index else hidden
        hidden = layer(hidden, mask)
    hidden = mag.gate.norm(hidden) if index == 2 else hidden
    real = tokens[:, 1].bool()
    torch.testing.assert_close(mag(tokens, others)[real], hidden[real], atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match=r"model.text.injection_index=3: must be an integer in \[0, 2\]"):
        MAGBertText(tiny_bert, MMSA_DIMS, injection_index=3)


def test_the_read_out_is_bert_poolers_on_the_cls_step(tiny_bert):
    """fusion=text_cls starts from the checkpoint's pooler, and reads step 0 ([CLS]) of back-padded text."""
    fusion = TextCLSFusion(32, ["text"], {"text": 32}, pooler=tiny_bert, dropout=0.0).eval()
    pooler = transformers.BertModel.from_pretrained(tiny_bert).pooler.eval()
    seq, mask = torch.randn(4, STEPS, 32), torch.arange(STEPS)[None].expand(4, -1) < torch.tensor([[3], [5], [20], [1]])
    torch.testing.assert_close(fusion({"text": seq}, {"text": mask}), pooler(seq), atol=1e-6, rtol=1e-6)
    with pytest.raises(ConfigError, match="fusion=text_cls reads the text's"):
        TextCLSFusion(32, ["audio"], {"audio": 32})


def test_the_preset_without_audio_and_vision_is_plain_berts_model(tiny_bert, files):
    """modalities=t turns the gate off: the preset's model is text=bert's with the same read-out, weight for
    weight and output for output (the gate draws no random numbers when it is not built)."""
    def build(*overrides):
        torch.manual_seed(0)
        cfg = compose_config("+preset=mag_bert", f"model.bert={tiny_bert}", "modalities=t", *overrides)
        return instantiate(cfg.model, _partial_=True)(input_dims={"text": 768, **MMSA_DIMS}).eval()

    mag, plain = build(), build("text=bert")
    assert type(mag.text_input) is MAGBertText and type(plain.text_input) is BertText
    tokens = tokens_of_a_file()
    x = {"text_bert": tokens, "text": torch.zeros(len(tokens), STEPS, 768), "text_mask": tokens[:, 1].bool()}
    torch.testing.assert_close(mag(x), plain(x), atol=0, rtol=0)


def test_the_preset_is_mmsas_recipe(tiny_bert):
    cfg = compose_config("+preset=mag_bert", f"model.bert={tiny_bert}")
    assert (cfg.trainer.lr, cfg.optimizer.bert_lr, cfg.optimizer.weight_decay, cfg.optimizer.bert_weight_decay) == (
        2e-5, 2e-5, 0.0, 0.0)
    assert (cfg.trainer.batch_size, cfg.trainer.patience, cfg.trainer.select_metric) == (32, 8, "loss")
    assert cfg.loss._target_ == "torch.nn.L1Loss" and cfg.model.text.dropout == 0.3
    model = instantiate(cfg.model, _partial_=True)(input_dims={"text": 768, **MMSA_DIMS})
    assert not model.branches and type(model.fusion) is TextCLSFusion
    assert model.head.fc.in_features == 32  # the classifier on BERT's hidden size
    # the new layers as from_pretrained draws them: N(0, 0.02) weights (all within 6 std here), zero biases
    new = [model.head.fc, *model.text_input.gate.gates.values(), *model.text_input.gate.shifts.values()]
    assert all(layer.weight.abs().max().item() < 0.12 and not layer.bias.any() for layer in new)


def preset_run(tmp_path, tiny_bert, path, *overrides):
    return run_tiny(tmp_path, "data=mosi", f"data.path={path}", "+preset=mag_bert", f"model.bert={tiny_bert}",
                    *overrides)


def test_the_preset_trains_on_an_aligned_file(tmp_path, tiny_bert, files):
    record = preset_run(tmp_path, tiny_bert, files["aligned"])
    assert record["status"] == "completed" and np.isfinite(record["test"]["MAE"])
    assert record["changes"]["text"] == "mag_bert" and record["changes"]["fusion"] == "text_cls"


def test_the_preset_on_an_unaligned_file_needs_data_align(tmp_path, tiny_bert, files):
    record = preset_run(tmp_path, tiny_bert, files["unaligned"], "data.align=pool")
    assert record["status"] == "completed" and np.isfinite(record["test"]["MAE"])
    line = one_line_refusal("data=mosi", f"data.path={files['unaligned']}", "+preset=mag_bert",
                            f"model.bert={tiny_bert}")
    assert line.startswith("msa_ablate: error: text=mag_bert: its gate adds the other modalities to the text step")
    assert "data.align=resample or data.align=pool" in line


def test_a_seed_pack_trains_mag_bert(tmp_path, tiny_bert, files):
    """vmap through the gate (no host sync: the norm ratio's floor and cap are element-wise)."""
    records = run_tiny_records(tmp_path, "data=mosi", f"data.path={files['aligned']}", "+preset=mag_bert",
                               f"model.bert={tiny_bert}", "trainer.pack_seeds=true", "seeds=[1,2]")
    assert [r["status"] for r in records] == ["completed", "completed"]
    assert records[0]["test"] != records[1]["test"]


def test_cuda_graphs_with_mag_bert_are_refused(tiny_bert):
    cfg = compose_config("+preset=mag_bert", f"model.bert={tiny_bert}", "trainer.cuda_graph=true")
    with open_dict(cfg):
        del cfg["hydra"]
    with pytest.raises(ConfigError, match="trainer.cuda_graph=true: not with text=bert"):
        check_settings(cfg)


def test_the_gate_is_an_option_of_its_own_under_any_fusion(tmp_path, tiny_bert, files):
    """text=mag_bert without the preset: the baseline's branches and fusion read its hidden states."""
    record = run_tiny(tmp_path, "data=mosi", f"data.path={files['aligned']}", "text=mag_bert",
                      f"model.bert={tiny_bert}", "model.text.injection_index=1")
    assert record["status"] == "completed" and "fusion" not in record["changes"]  # the default's
