"""Real MSA data's shapes: unaligned sequences (each modality its own steps and mask), MOSEI- and
CH-SIMS-like files (another label range, other metrics), alignment onto the text's steps, and the
data inspector; all on files the synthetic generator writes in each layout."""

import json
import pickle

import numpy as np
import pytest
import torch
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from msa_ablate.data import from_arrays
from msa_ablate.data.__main__ import main as inspect
from msa_ablate.data.align import onto
from msa_ablate.data.pickles import load_pickle
from msa_ablate.data.synthetic import FRAMES, synthetic_arrays
from msa_ablate.errors import ConfigError, DataError
from msa_ablate.metrics import sims_metrics
from tests.conftest import ROOT, compose_config, run_tiny
from tests.test_options import options

SIMS = (-1.0, 1.0)


def write(tmp_path, name: str, scale: float = 0.05, **kw) -> str:
    path = tmp_path / name
    path.write_bytes(pickle.dumps(synthetic_arrays(scale=scale, **kw)))
    return str(path)


def test_mult_unaligned_without_lengths_masks_the_steps_that_hold_something(tmp_path):
    data = load_pickle(write(tmp_path, "mosi_data_noalign.pkl", unaligned=True, layout="mult"))
    assert data.steps == {"text": 50, "audio": FRAMES["audio"], "vision": FRAMES["vision"]} and not data.aligned
    assert data.layout.startswith("MulT")
    train = data.splits["train"]
    for m, x in train.features.items():
        assert torch.equal(train.masks[m], (x != 0).any(-1)), m  # no lengths: the steps holding any value
        assert data.padding[m] == "front (zero steps)"
    assert not torch.equal(train.masks["audio"].sum(1), train.masks["text"].sum(1))  # each modality its own length


def test_a_frame_of_zeros_inside_a_clip_is_not_padding():
    """Without lengths, a clip's real frames run from its first non-zero one to its last: a silent
    frame (or a face lost) in between stays in, so the encoders see one contiguous clip."""
    raw = synthetic_arrays(scale=0.05, unaligned=True, layout="mult")
    audio = raw["train"]["audio"]
    real = (audio[0] != 0).any(-1)
    inside = np.flatnonzero(real)[3]
    audio[0, inside] = 0.0
    mask = from_arrays(raw, "mult").splits["train"].masks["audio"][0].numpy()
    assert mask[inside] and mask.sum() == real.sum()


def test_mmsa_unaligned_with_lengths_pads_at_the_back(tmp_path):
    raw = synthetic_arrays(scale=0.05, unaligned=True, layout="mmsa")
    data = from_arrays(raw, "mmsa")
    train = data.splits["train"]
    lengths = torch.from_numpy(raw["train"]["audio_lengths"])
    assert torch.equal(train.masks["audio"].sum(1), lengths)
    assert train.masks["audio"][:, 0].all() and data.padding["audio"] == "back (audio_lengths)"
    raw["valid"]["vision_lengths"] = raw["valid"]["vision_lengths"] - 1000
    with pytest.raises(DataError, match=r"\['valid'\]\['vision_lengths'\]: expected 11 lengths >= 0"):
        from_arrays(raw, "bad")


def test_lengths_beyond_the_steps_held_read_as_all_of_them(caplog):
    """A clip cut to the padded size may keep its full length: read as every step, with a warning."""
    raw = synthetic_arrays(scale=0.05, unaligned=True, layout="mmsa")
    raw["train"]["audio_lengths"][:3] = FRAMES["audio"] + 40
    mask = from_arrays(raw, "mmsa").splits["train"].masks["audio"]
    assert mask[:3].all()
    assert "['train']['audio_lengths']: 3 length(s) exceed the 375 steps held; read as 375" in caplog.text


@pytest.mark.parametrize("unaligned", [True, False])
def test_mmsa_bert_text_takes_its_mask_from_text_bert(unaligned):
    """MMSA's BERT features are not zero at padding tokens (the mmsa layout writes them so): the
    text's real steps are text_bert's input mask, aligned or not, and they are the handout layout's."""
    raw = synthetic_arrays(scale=0.05, unaligned=unaligned, layout="mmsa")
    assert (raw["train"]["text"] != 0).any(-1).all()  # no step of zeros to find the padding by
    mmsa = from_arrays(raw, "mmsa").splits["train"]
    handout = from_arrays(synthetic_arrays(scale=0.05, unaligned=unaligned), "handout").splits["train"]
    assert torch.equal(mmsa.masks["text"], torch.from_numpy(raw["train"]["text_bert"][:, 1] > 0))
    assert torch.equal(mmsa.masks["text"].sum(1), handout.masks["text"].sum(1))
    if not unaligned:
        assert torch.equal(mmsa.masks["text"], handout.masks["text"])  # the same steps, shared by every modality


def test_resampling_onto_one_step_takes_the_middle_frame():
    frames = np.arange(5, dtype=np.float32).reshape(1, 5, 1)
    out = onto(frames, np.ones((1, 5), bool), np.array([[False, True, False]]), "resample")
    assert out[0, :, 0].tolist() == [0.0, 2.0, 0.0]


@pytest.mark.parametrize("how", ["resample", "pool"])
def test_alignment_puts_every_modality_on_the_texts_steps(how):
    data = from_arrays(synthetic_arrays(scale=0.05, unaligned=True, layout="mmsa"), "x", align=how)
    assert set(data.steps.values()) == {50}
    assert data.aligned == {"resample": "resampled", "pool": "pooled"}[how] + " onto the text's steps"
    train = data.splits["train"]
    for m in ("audio", "vision"):
        assert torch.equal(train.masks[m], train.masks["text"])
        assert ((train.features[m] != 0).any(-1) <= train.masks["text"]).all()  # nothing outside the text's steps


def test_resampling_and_pooling_by_hand():
    frames = np.arange(6, dtype=np.float32).reshape(1, 6, 1)  # frames 0..5, all real
    real = np.ones((1, 6), bool)
    target = np.array([[False, True, True, True]])  # three real text steps, one pad in front
    assert onto(frames, real, target, "resample")[0, :, 0].tolist() == [0, 0, 2.5, 5]  # 0, 2.5, 5 by interpolation
    assert onto(frames, real, target, "pool")[0, :, 0].tolist() == [0, 0.5, 2.5, 4.5]  # the means of pairs
    few = onto(frames[:, :2], real[:, :2], np.ones((1, 4), bool), "pool")[0, :, 0].tolist()
    assert few == [0, 0, 1, 1]  # fewer frames than steps: each step takes the frame it falls on


def test_a_sims_file_keeps_its_range_and_its_per_modality_labels(tmp_path):
    path = write(tmp_path, "unaligned_39.pkl", unaligned=True, layout="mmsa", label_range=SIMS)
    data = load_pickle(path, label_range=SIMS, name="CH-SIMS")
    assert data.label_range == SIMS and data.summary()["metrics"] == "sims"
    assert sorted(data.splits["test"].unimodal) == ["audio", "text", "vision"]
    with pytest.raises(DataError, match="outside \\[-1.0, 1.0\\]"):  # MOSI's labels are no CH-SIMS labels
        load_pickle(write(tmp_path, "mosi.pkl"), label_range=SIMS)
    with pytest.raises(ConfigError, match=r"data.label_range=\[0.0, 1.0\]: must be"):
        from_arrays(synthetic_arrays(scale=0.05), "x", label_range=(0, 1))


def test_a_file_unlike_its_dataset_warns_naming_the_difference(tmp_path, caplog):
    load_pickle(write(tmp_path, "m.pkl"), name="CMU-MOSI", expect={"sizes": {"train": 1284, "valid": 229, "test": 686}})
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "split sizes {'train': 64, 'valid': 11, 'test': 34}, where CMU-MOSI has" in warning


def test_sims_metrics_by_hand():
    """MMSA's classes are (low, high] intervals; the MAE and Corr of clipped values."""
    truth = np.array([-1.0, -0.6, 0.0, 0.1, 0.8])
    preds = np.array([-1.4, -0.7, 0.05, 0.2, 0.5])  # -1.4 clips to -1
    m = sims_metrics(preds, truth)
    # 2 classes (<= 0, > 0): truth 0,0,0,1,1; preds 0,0,1,1,1 -> 4/5
    assert m["Mult_acc_2"] == pytest.approx(0.8)
    # 3 classes (-1.01,-0.1], (-0.1,0.1], (0.1,1.01]: truth 0,0,1,1,2; preds 0,0,1,2,2 -> 4/5
    # (0.1 is in the middle class)
    assert m["Mult_acc_3"] == pytest.approx(0.8)
    # 5 classes: truth (-1)->0 (-0.6)->1 (0)->2 (0.1)->2 (0.8)->4; preds 0, (-0.7)->0, 2, (0.2)->3, (0.5)->3 -> 2/5
    assert m["Mult_acc_5"] == pytest.approx(0.4)
    assert m["MAE"] == pytest.approx(np.mean([0, 0.1, 0.05, 0.1, 0.3]))


def test_sims_classes_at_the_bounds_are_mmsas_whatever_the_float_width():
    """MMSA compares float32 arrays with the bounds, so a float32 0.1 is neutral and -0.7 is in the
    lowest class: the same here for float32 and float64 values."""
    bounds = [-0.7, -0.1, 0.1, 0.7]
    for dtype in (np.float32, np.float64):
        values = np.array(bounds, dtype=dtype)
        assert sims_metrics(values, np.array([-1.0, -0.5, 0.0, 0.5], dtype=dtype))["Mult_acc_5"] == 1.0, dtype


FUSIONS = options("fusion")
STEPWISE = {f for f in FUSIONS if getattr(get_class(OmegaConf.load(ROOT / f"conf/fusion/{f}.yaml")._target_),
                                          "stepwise", False)}


def test_the_stepwise_fusions_are_those_that_read_the_steps_together():
    assert {"sum_lstm", "concat_lstm", "self_attention", "mfn"} <= STEPWISE
    assert not STEPWISE & {"cross_attention", "text_centred", "tensor", "low_rank", "late", "concat", "mult"}


@pytest.mark.parametrize("fusion", FUSIONS)
def test_every_fusion_trains_on_unaligned_data_or_refuses_in_one_line(tmp_path, fusion):
    unaligned = ["data.unaligned=true", "data.layout=mmsa", f"fusion={fusion}",  # 26 clips, 16 dims:
                 "data.scale=0.02", "model.hidden=16"]  # 375 and 500 steps make every clip costly
    if fusion in STEPWISE:
        with pytest.raises(ConfigError, match=f"fusion={fusion}: it combines the modalities step by step.*"
                                              "data.align=resample or data.align=pool"):
            run_tiny(tmp_path / "unaligned", *unaligned)
        unaligned.append("data.align=pool")
    record = run_tiny(tmp_path / "run", *unaligned)
    assert record["status"] == "completed" and record["data"]["steps"]["vision"] == (50 if fusion in STEPWISE else 500)


@pytest.mark.parametrize("layout", ["mult", "handout"])
def test_cross_attention_on_unaligned_files_of_each_layout(tmp_path, layout):
    path = write(tmp_path, "d.pkl", unaligned=True, layout=layout, scale=0.02)
    record = run_tiny(tmp_path / "run", "data=mosi", f"data.path={path}", "fusion=cross_attention")
    assert record["status"] == "completed" and record["data"]["steps"] == {"text": 50, "audio": 375, "vision": 500}


def test_a_sims_run_is_scored_by_sims_metrics(tmp_path):
    path = write(tmp_path, "sims.pkl", unaligned=True, layout="mmsa", label_range=SIMS)
    record = run_tiny(tmp_path / "run", "data=sims", f"data.path={path}", "fusion=tensor")
    assert set(record["test"]) == {"loss", "Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score", "MAE", "Corr"}
    assert record["data"]["label_range"] == [-1.0, 1.0] and record["data"]["metrics"] == "sims"
    assert record["n_params"] > 0 and -1 <= record["test"]["Corr"] <= 1
    with pytest.raises(ConfigError, match="trainer.select_metric=Non0_acc_2: labels in \\[-1.0, 1.0\\] are scored by"):
        run_tiny(tmp_path / "other", "data=sims", f"data.path={path}", "fusion=tensor",
                 "trainer.select_metric=Non0_acc_2")


MASKED = {"encoder": ["birnn", "conv_birnn", "transformer", "mean"],
          "fusion": ["cross_attention", "text_centred", "tensor", "low_rank", "late", "concat", "mult"]}


@pytest.mark.parametrize("encoder", MASKED["encoder"])
@pytest.mark.parametrize("fusion", MASKED["fusion"])
@pytest.mark.parametrize("side", ["front", "back"])
def test_padding_one_modality_more_changes_no_output(encoder, fusion, side):
    """Steps of padding added to one modality (front or back, as the layouts pad) change nothing."""
    dims = {"text": 6, "audio": 4, "vision": 3}
    cfg = compose_config(f"encoder={encoder}", f"fusion={fusion}", "model.hidden=8", "encoder.max_len=40"
                         if encoder == "transformer" else "model.hidden=8",
                         *(["fusion.heads=2"] if fusion in ("cross_attention", "text_centred", "mult") else []),
                         *(["fusion.layers=1", "fusion.memory_layers=1"] if fusion == "mult" else []),
                         *(["encoder.heads=2"] if encoder == "transformer" else []))
    model = instantiate(cfg.model, _partial_=True)(input_dims=dims).eval()
    generator = torch.Generator().manual_seed(0)
    lengths = {"text": [5, 9], "audio": [12, 7], "vision": [3, 10]}
    steps = {"text": 9, "audio": 12, "vision": 10}
    inputs = {}
    for m, d in dims.items():
        mask = torch.arange(steps[m])[None, :] >= (steps[m] - torch.tensor(lengths[m]))[:, None]  # front-padded
        inputs[m] = torch.randn(2, steps[m], d, generator=generator) * mask[..., None]
        inputs[f"{m}_mask"] = mask
    for m in dims:
        padded = dict(inputs)
        pad = torch.zeros(2, 7, dims[m])
        if side == "front":
            padded[m] = torch.cat([pad, inputs[m]], 1)
            padded[f"{m}_mask"] = torch.cat([torch.zeros(2, 7, dtype=torch.bool), inputs[f"{m}_mask"]], 1)
        else:  # the real steps first, then the padding, as MMSA's files have them
            order = torch.argsort(~inputs[f"{m}_mask"], dim=1, stable=True)
            moved = torch.take_along_dim(inputs[m], order[..., None], 1)
            padded[m] = torch.cat([moved, pad], 1)
            padded[f"{m}_mask"] = torch.cat([torch.take_along_dim(inputs[f"{m}_mask"], order, 1),
                                             torch.zeros(2, 7, dtype=torch.bool)], 1)
        with torch.no_grad():
            torch.testing.assert_close(model(padded), model(inputs), msg=m)


@pytest.mark.parametrize("encoder", ["lstm", "birnn", "mean"])
@pytest.mark.parametrize("fusion", sorted(STEPWISE))
def test_a_stepwise_fusion_ignores_padding_after_the_clip(encoder, fusion):
    """Aligned onto back-padded text (MMSA's), the step-wise fusions read each clip up to its last
    real step: more padding after it changes nothing (the handout's LSTM reads front padding, by design)."""
    cfg = compose_config(f"encoder={encoder}", f"fusion={fusion}", "model.hidden=8",
                         *(["fusion.heads=2"] if fusion == "self_attention" else []))
    model = instantiate(cfg.model, _partial_=True)(input_dims={"text": 6, "audio": 4, "vision": 3}).eval()
    generator = torch.Generator().manual_seed(0)
    mask = torch.arange(9)[None, :] < torch.tensor([5, 9, 2])[:, None]  # real steps first
    inputs = {}
    for m, d in {"text": 6, "audio": 4, "vision": 3}.items():
        inputs[m] = torch.randn(3, 9, d, generator=generator) * mask[..., None]
        inputs[f"{m}_mask"] = mask
    padded = {k: torch.cat([v, torch.zeros_like(v[:, :7])], 1) for k, v in inputs.items()}
    with torch.no_grad():
        torch.testing.assert_close(model(padded), model(inputs))


def test_the_inspector_says_what_a_file_holds(tmp_path, capsys):
    path = write(tmp_path, "unaligned_50.pkl", unaligned=True, layout="mmsa")
    assert inspect([path]) == 0
    text = capsys.readouterr().out
    assert "layout: MMSA ('regression_labels' (N,), with '*_lengths')" in text
    assert "aligned: no" in text and "padding back (audio_lengths)" in text
    assert "need data.align=resample or data.align=pool" in text
    assert "fits: none exactly; the closest is data=mosi" in text
    assert inspect([path, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["modalities"]["vision"]["steps"] == 500 and report["sizes"]["train"] == 64
    assert report["labels"]["range"] == [-3.0, 3.0] and sum(report["labels"]["classes"].values()) == 109
    assert report["fingerprint"]["bytes"] == (tmp_path / "unaligned_50.pkl").stat().st_size
    assert inspect([str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"msa_ablate.data: error: {tmp_path}: a folder")
