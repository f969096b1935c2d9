"""The published models as presets (conf/preset/): each trains under the one trainer, on the built-in
data and on a MOSI-format file; their parts against the papers' definitions."""

import pickle

import pytest
import torch
from hydra.utils import instantiate

from msa_ablate.data.synthetic import synthetic_arrays
from msa_ablate.models.fusions import ConcatFusion, LowRankFusion, TensorFusion
from msa_ablate.models.mult import MulTFusion, MulTTransformer, blocked_keys, position_table
from tests.conftest import compose_config, run_tiny
from tests.test_presets import dry_run

PRESETS = ["ef_lstm", "lf_lstm", "tfn", "lmf", "mfn", "mult"]
MULT_DIMS = {"text": 300, "audio": 5, "vision": 20}  # MulT's MOSI files: audio and vision after feature selection


def mult_file() -> dict:
    """A MulT-format aligned MOSI file with its audio and vision widths."""
    arrays = synthetic_arrays(scale=0.05, layout="mult")
    for split in arrays.values():
        split["audio"], split["vision"] = split["audio"][..., :5], split["vision"][..., :20]
    return arrays


def model_of(*overrides: str, dims: dict[str, int] = MULT_DIMS) -> torch.nn.Module:
    return instantiate(compose_config(*overrides).model, _partial_=True)(input_dims=dims).eval()


@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_trains_on_the_built_in_data_and_on_an_aligned_mosi_file(tmp_path, preset):
    record = run_tiny(tmp_path / "synthetic", f"+preset={preset}")
    assert record["status"] == "completed" and record["changes"]["+preset"] == preset
    path = tmp_path / "mosi_data.pkl"
    path.write_bytes(pickle.dumps(mult_file()))
    record = run_tiny(tmp_path / "file", "data=mosi", f"data.path={path}", f"+preset={preset}")
    assert record["status"] == "completed" and record["data"]["dims"] == MULT_DIMS
    assert all(v == v for v in record["test"].values())


def test_the_published_study_runs_each_preset_and_the_baseline_over_five_seeds():
    listed = dry_run("+experiment=published")
    assert listed == [" ".join(filter(None, [p and f"+preset={p}", f"seed={s}", "+experiment=published"]))
                      for p in ["", *PRESETS] for s in range(1, 6)]


def test_ef_lstm_reads_the_concatenated_steps_with_one_four_layer_lstm():
    model = model_of("+preset=ef_lstm")
    assert all(type(b.encoder).__name__ == "IdentityEncoder" for b in model.branches.values())
    lstm = model.fusion.lstm
    assert (lstm.input_size, lstm.num_layers, lstm.dropout) == (3 * 128, 4, 0.5)


def test_lf_lstm_concatenates_each_modalitys_last_real_state():
    fusion = ConcatFusion(4, ["text", "audio"])
    seqs = {"text": torch.arange(24.0).view(2, 3, 4), "audio": -torch.arange(40.0).view(2, 5, 4)}
    masks = {"text": torch.tensor([[1, 1, 0], [0, 1, 1]]).bool(), "audio": torch.ones(2, 5).bool()}
    expected = torch.stack([torch.cat([seqs["text"][0, 1], seqs["audio"][0, 4]]),
                            torch.cat([seqs["text"][1, 2], seqs["audio"][1, 4]])])
    torch.testing.assert_close(fusion(seqs, masks), expected)


def test_tfn_is_an_lstm_for_text_means_for_the_others_and_the_three_way_outer_product():
    model = model_of("+preset=tfn")
    encoders = {m: type(b.encoder).__name__ for m, b in model.branches.items()}
    assert encoders == {"text": "LSTMEncoder", "vision": "MeanEncoder", "audio": "MeanEncoder"}
    assert isinstance(model.fusion, TensorFusion)
    assert model.fusion.post[1].in_features == (32 + 1) * (128 + 1) * (32 + 1)  # text_out, video, audio hidden
    assert model.fusion.post[1].out_features == 64


def test_lmf_has_rank_four_modality_specific_factors():
    model = model_of("+preset=lmf")
    assert isinstance(model.fusion, LowRankFusion)
    shapes = {m: tuple(f.shape) for m, f in model.fusion.factors.items()}
    assert shapes == {"text": (4, 65, 128), "vision": (4, 129, 128), "audio": (4, 17, 128)}


def test_mult_has_six_crossmodal_transformers_and_three_memories_of_its_repositorys_size():
    model = model_of("+preset=mult")
    fusion = model.fusion
    assert isinstance(fusion, MulTFusion)
    assert sorted(fusion.crossmodal) == sorted(f"{s}_to_{t}" for t in MULT_DIMS for s in MULT_DIMS if s != t)
    assert all(len(net.layers) == 5 for net in [*fusion.crossmodal.values(), *fusion.memory.values()])
    assert {b.proj.out_features for b in model.branches.values()} == {30}
    assert fusion.out_dim == 2 * 3 * 30  # MulT's combined_dim
    # attention dropout by source, as MulT's get_network: "la" (text queries audio) takes attn_dropout_a
    rates = {name: net.layers[0].attention.dropout for name, net in fusion.crossmodal.items()}
    assert rates == {"audio_to_text": 0.0, "vision_to_text": 0.0, "text_to_audio": 0.1, "vision_to_audio": 0.0,
                     "text_to_vision": 0.1, "audio_to_vision": 0.0}
    assert sum(p.numel() for p in model.parameters()) == 1_071_211  # the official MULTModel's at these dims


def test_mult_crossmodal_attention_takes_the_target_as_queries():
    """Tsai et al. 2019, eq. 3: CM_{beta -> alpha} = softmax(Q_alpha K_beta^T / sqrt(d)) V_beta, with the
    queries from the target alpha and the keys and values from the source beta."""
    net = MulTTransformer(8, heads=2, layers=1, attention_dropout=0.0, relu_dropout=0.0, residual_dropout=0.0,
                          embed_dropout=0.0, causal=False, max_len=16, padding="mask").eval()
    target, source = torch.randn(2, 3, 8), torch.randn(2, 7, 8)
    seen = {}
    net.layers[0].attention.register_forward_pre_hook(lambda module, args: seen.update(q=args[0], k=args[1]))
    out = net(target, torch.ones(2, 3).bool(), source, torch.ones(2, 7).bool())
    assert out.shape == (2, 3, 8) and seen["q"].shape[1] == 3 and seen["k"].shape[1] == 7
    torch.testing.assert_close(seen["q"], net.layers[0].norm_attention(net.embed(target, torch.ones(2, 3).bool())))
    # The output at a target step is a mix of the source's values: other sources, other outputs
    assert not torch.allclose(net(target, torch.ones(2, 3).bool(), source.flip(1), torch.ones(2, 7).bool()), out)


def test_mults_causal_mask_hides_later_steps():
    net = MulTTransformer(8, heads=2, layers=2, attention_dropout=0.0, relu_dropout=0.0, residual_dropout=0.0,
                          embed_dropout=0.0, causal=True, max_len=16, padding="mask").eval()
    x, mask = torch.randn(1, 6, 8), torch.ones(1, 6).bool()
    changed = x.clone()
    changed[:, 4:] = torch.randn(1, 2, 8)
    torch.testing.assert_close(net(x, mask)[:, :4], net(changed, mask)[:, :4])  # steps 0-3 never see 4-5
    assert not torch.allclose(net(x, mask)[:, 4:], net(changed, mask)[:, 4:])


def test_mults_causal_mask_counts_real_steps_so_the_last_one_sees_the_whole_source():
    """Unaligned and back-padded (MMSA's): a 2-step text clip in 3 steps, a 6-step audio clip. MulT's
    offset |Tk - Tq| on the padded lengths would hide audio steps from the text's last real step."""
    query, key = torch.tensor([[True, True, False]]), torch.ones(1, 6, dtype=torch.bool)
    blocked = blocked_keys(query, key, causal=True, heads=1)[0]
    assert not blocked[1].any()  # the last real text step sees all six audio steps
    assert blocked[0].tolist() == [False] * 5 + [True]  # the first: |6 - 2| = 4 steps ahead at most


def test_mult_on_aligned_data_ignores_front_padding():
    """Aligned files pad every modality alike: more of it changes nothing (keys masked, positions
    counted from the clip's first real step, the memory read at its last)."""
    model = model_of("+preset=mult", "fusion.padding=mask", "modalities=ta", "fusion.layers=1",
                     "fusion.memory_layers=1", dims={"text": 6, "audio": 4})
    mask = torch.arange(8)[None] >= torch.tensor([3, 0])[:, None]
    inputs = {m: torch.randn(2, 8, d) * mask[..., None] for m, d in {"text": 6, "audio": 4}.items()}
    padded = {m: torch.cat([torch.zeros(2, 5, x.shape[-1]), x], 1) for m, x in inputs.items()}
    with torch.no_grad():
        torch.testing.assert_close(model(padded), model(inputs))


def test_mult_as_its_code_reads_padding_and_numbers_real_steps_from_the_sequences_start():
    """The preset's ``padding=read``: MulT's fairseq positions (step i of the sequence: row i + 1; a step
    whose first channel is 0, as its code tests for padding: zeros, a frame of zeros inside the clip
    too), padded steps attended to, so more padding changes the output."""
    x, mask = torch.zeros(1, 5, 6), torch.tensor([[False, True, True, True, True]])
    x[0, [1, 2, 4], 0] = 1.0  # step 3: a frame of zeros inside the clip
    codes = {}
    for padding in ("read", "mask"):
        net = MulTTransformer(6, heads=2, layers=1, attention_dropout=0.0, relu_dropout=0.0, residual_dropout=0.0,
                              embed_dropout=0.0, causal=True, max_len=16, padding=padding).eval()
        codes[padding] = net.embed(x, mask)[0] - net.scale * x[0]
    torch.testing.assert_close(codes["read"], net.position_codes[[0, 2, 3, 0, 5]])
    torch.testing.assert_close(codes["mask"], net.position_codes[[0, 1, 2, 3, 4]])  # the clip's steps, by its mask
    model = model_of("+preset=mult", "modalities=ta", "fusion.layers=1", "fusion.memory_layers=1",
                     dims={"text": 6, "audio": 4})
    mask = torch.arange(8)[None] >= torch.tensor([3, 0])[:, None]
    inputs = {m: torch.randn(2, 8, d) * mask[..., None] for m, d in {"text": 6, "audio": 4}.items()}
    padded = {m: torch.cat([torch.zeros(2, 5, x.shape[-1]), x], 1) for m, x in inputs.items()}
    with torch.no_grad():
        assert not torch.allclose(model(padded), model(inputs))


@pytest.mark.parametrize("dim", [2, 3, 4, 30])
def test_mults_position_codes_are_finite_sines_and_cosines_at_any_width(dim):
    table = position_table(5, dim)
    assert table.shape == (6, dim) and torch.isfinite(table).all() and (table[0] == 0).all()
    half = dim // 2
    assert torch.allclose(table[1:, :half] ** 2 + table[1:, half:2 * half] ** 2, torch.ones(5, half))
    assert torch.equal(table[1:, 0], torch.sin(torch.arange(1.0, 6.0)))  # the first frequency is 1
