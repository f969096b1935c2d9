"""text=bert (BERT fine-tuned on MMSA's text_bert token ids) and tasks=unimodal (CH-SIMS's per-modality
labels as auxiliary tasks): on a tiny BERT (2 layers, hidden 32) written to a temporary folder, and on
tiny MMSA-format files, aligned and unaligned, that hold text_bert."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from msa_ablate.config import check_settings
from msa_ablate.data import from_arrays
from msa_ablate.data.synthetic import synthetic_arrays
from msa_ablate.errors import ConfigError, DataError
from msa_ablate.losses import MultiTaskLoss
from msa_ablate.models import bert as bert_module
from msa_ablate.optim import adam, parameter_groups
from msa_ablate.records import resolved
from tests.conftest import compose_config, main, run_tiny, run_tiny_records
from tests.test_options import options

transformers = pytest.importorskip("transformers")  # the bert extra; the dev extra installs it

VOCAB = 100
STEPS = 20  # the text's steps (MOSI's: 50), and aligned audio's and vision's: tiny runs stay tiny
FRAMES = {"audio": 24, "vision": 30}  # unaligned frames (MOSI's: 375 and 500)
SIMS = (-1.0, 1.0)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    """A randomly initialised BERT (BertConfig: 2 layers, hidden 32, 2 heads), saved as a checkpoint folder."""
    folder = tmp_path_factory.mktemp("bert")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=37, max_position_embeddings=64)
    transformers.BertModel(config).save_pretrained(folder)
    return str(folder)


def mmsa_arrays(unaligned: bool = False, label_range=(-3.0, 3.0)) -> dict:
    """The synthetic data in MMSA's layout (26/5/14 clips) cut to STEPS steps (aligned: the last ones, as
    it pads in front; unaligned: the first, real steps first) and audio and vision to FRAMES frames where
    unaligned (lengths to match), its text_bert holding token ids below VOCAB at the real tokens."""
    raw = synthetic_arrays(scale=0.02, unaligned=unaligned, layout="mmsa", label_range=label_range)
    rng = np.random.default_rng(0)
    for split in raw.values():
        cut = {"text": STEPS, **(FRAMES if unaligned else {"audio": STEPS, "vision": STEPS})}
        for m, steps in cut.items():
            split[m] = split[m][:, :steps] if unaligned else split[m][:, -steps:]
            if f"{m}_lengths" in split:
                split[f"{m}_lengths"] = np.minimum(split[f"{m}_lengths"], steps)
        tokens = split["text_bert"][..., :STEPS] if unaligned else split["text_bert"][..., -STEPS:]
        real = tokens[:, 1] > 0
        tokens[:, 0] = np.where(real, rng.integers(1, VOCAB, real.shape), 0)
        split["text_bert"] = np.ascontiguousarray(tokens)
    return raw


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """MMSA-format pickles: aligned and unaligned with text_bert; SIMS-like (labels in [-1, 1], one per
    modality, unaligned); and one in the handout's layout, without text_bert."""
    folder = tmp_path_factory.mktemp("data")
    arrays = {"aligned": mmsa_arrays(), "unaligned": mmsa_arrays(unaligned=True),
              "sims": mmsa_arrays(unaligned=True, label_range=SIMS),
              "plain": synthetic_arrays(scale=0.02)}
    for name, raw in arrays.items():
        (folder / f"{name}.pkl").write_bytes(pickle.dumps(raw))
    return {name: str(folder / f"{name}.pkl") for name in arrays}


def bert_run(tmp_path: Path, tiny_bert: str, path: str, *overrides: str, data: str = "mosi") -> dict:
    return run_tiny(tmp_path, f"data={data}", f"data.path={path}", "text=bert", f"model.bert={tiny_bert}", *overrides)


def test_bert_text_computes_what_bert_model_computes(tiny_bert, files):
    """BertText runs BERT in parts (embeddings, then the layers under its own mask): the same last hidden
    states as BertModel's own forward, on the file's ids with padding; (B, 3, L) in, (B, L, hidden) out."""
    text = bert_module.BertText(tiny_bert).eval()
    reference = transformers.BertModel.from_pretrained(tiny_bert, add_pooling_layer=False).eval()
    tokens = from_arrays(mmsa_arrays(), "x", text_bert=True).splits["valid"].tokens
    assert (tokens[:, 1] == 0).any()  # padded clips among them
    out = text(tokens)
    expected = reference(input_ids=tokens[:, 0], attention_mask=tokens[:, 1],
                         token_type_ids=tokens[:, 2]).last_hidden_state
    assert out.shape == (*tokens[:, 0].shape, 32)
    real = tokens[:, 1].bool()
    torch.testing.assert_close(out[real], expected[real], atol=1e-5, rtol=1e-5)  # at padding: not read


@pytest.mark.parametrize("preset", [None, *options("preset")])
def test_every_preset_trains_on_bert_text_from_an_aligned_file(tmp_path, tiny_bert, files, preset):
    record = bert_run(tmp_path, tiny_bert, files["aligned"], *([f"+preset={preset}"] if preset else []))
    assert record["status"] == "completed" and np.isfinite(record["test"]["MAE"])
    assert record["data"]["text_bert"] == [3, STEPS]
    assert record["changes"]["text"] == "bert" and record["changes"]["model.bert"] == tiny_bert


STEPWISE = ("ef_lstm", "mfn")  # presets whose fusion reads the modalities step by step: aligned data only


@pytest.mark.parametrize("preset", [None, *options("preset")])
def test_every_preset_trains_on_bert_text_from_an_unaligned_file_or_asks_for_alignment(tmp_path, tiny_bert, files,
                                                                                     preset):
    """BERT reads the text's steps (as many as text_bert's), audio and vision have their own. A preset whose
    fusion reads the modalities step by step (the baseline's, EF-LSTM's, MFN's) is refused in one line, as
    on features (with data.align it reads them as aligned data, tested above)."""
    if preset is None or preset in STEPWISE:
        with pytest.raises(ConfigError, match="it combines the modalities step by step"):
            compose_and_build(tiny_bert, files["unaligned"], *([f"+preset={preset}"] if preset else []))
        return
    record = bert_run(tmp_path, tiny_bert, files["unaligned"], f"+preset={preset}")
    assert record["status"] == "completed" and np.isfinite(record["test"]["MAE"])
    assert record["data"]["steps"] == {"text": STEPS, **FRAMES}


def compose_and_build(tiny_bert: str, path: str, *overrides: str) -> torch.nn.Module:
    """What a run does before it trains: the config checked, the data loaded, the model built."""
    from msa_ablate.run import build_model, load_data

    cfg = compose_config("data=mosi", f"data.path={path}", "text=bert", f"model.bert={tiny_bert}", *overrides)
    with open_dict(cfg):
        del cfg["hydra"]
    check_settings(cfg)
    return build_model(cfg, load_data(cfg), {"fusion": cfg.fusion._target_.rpartition(".")[2]})


def test_a_sims_like_file_trains_with_its_unimodal_labels_as_tasks(tmp_path, tiny_bert, files):
    """tasks=unimodal on fine-tuned BERT and on features; the metrics are the multimodal prediction's,
    scored as CH-SIMS's, and the valid loss is its criterion's alone."""
    for text in ("bert", "features"):
        checkpoint = [f"model.bert={tiny_bert}"] if text == "bert" else []
        record = run_tiny(tmp_path / text, "data=sims", f"data.path={files['sims']}", f"text={text}", *checkpoint,
                          "tasks=unimodal", "fusion=tensor")
        assert record["status"] == "completed" and "Mult_acc_3" in record["test"]
        assert record["changes"]["tasks"] == "unimodal"
        assert record["data"]["unimodal_labels"] == ["audio", "text", "vision"]
        predictions = (tmp_path / text / "predictions.csv").read_text().splitlines()
        assert len(predictions) == 1 + 5 + 14  # one score per clip: the multimodal prediction


def test_the_multitask_loss_is_the_weighted_sum_of_the_criterion_over_the_tasks():
    weights = {"main": 0.6, "text": 0.2, "audio": 0.8, "vision": 0.8}
    loss = MultiTaskLoss(torch.nn.L1Loss(), weights)
    outputs = {"main": torch.tensor([0.5, -0.5]), "text": torch.tensor([1.0, 0.0]),
               "audio": torch.tensor([0.0, 0.0]), "vision": torch.tensor([-1.0, 1.0])}
    targets = {"main": torch.tensor([0.0, 0.0]), "text": torch.tensor([0.0, 0.0]),
               "audio": torch.tensor([0.2, -0.4]), "vision": torch.tensor([0.0, 0.0])}
    # by hand, L1 means: main 0.5, text 0.5, audio 0.3, vision 1.0
    assert float(loss(outputs, targets)) == pytest.approx(0.6 * 0.5 + 0.2 * 0.5 + 0.8 * 0.3 + 0.8 * 1.0)
    assert float(loss(outputs["main"], targets["main"])) == pytest.approx(0.5)  # validation: the main task's alone
    two = {k: outputs[k] for k in ("main", "text")}  # modalities=t: the tasks the model scores
    assert float(loss(two, targets)) == pytest.approx(0.6 * 0.5 + 0.2 * 0.5)
    with pytest.raises(ConfigError, match="tasks.weights: no weight for vision"):
        MultiTaskLoss(torch.nn.L1Loss(), {"main": 1, "text": 1, "audio": 1})


def test_the_trainer_adds_each_modalitys_loss_against_its_own_label(files):
    """One step's loss, as the trainer computes it, equals the hand-made sum over the tasks."""
    from msa_ablate.members import members_of
    from msa_ablate.train import train_step

    data = from_arrays(pickle.loads(Path(files["sims"]).read_bytes()), "sims", label_range=SIMS, align="pool")
    cfg = compose_config("tasks=unimodal")
    torch.manual_seed(0)
    model = instantiate(cfg.model, _partial_=True)(input_dims=data.dims, label_range=SIMS).eval()
    train, idx = data.splits["train"], torch.arange(8).unsqueeze(0)
    criterion = torch.nn.MSELoss()
    loss_fn = instantiate(cfg.tasks, _partial_=True)(criterion=criterion)
    with torch.no_grad():
        out = model(train.inputs(idx[0]))
    expected = sum(w * criterion(out[t], train.labels[idx[0]] if t == "main" else train.unimodal[t][idx[0]])
                   for t, w in cfg.tasks.weights.items())
    step = train_step(members_of([model]), train, loss_fn, [torch.optim.SGD(model.parameters(), lr=0.0)])
    assert float(step(idx)[0]) == pytest.approx(float(expected), rel=1e-5)


def test_bert_has_its_own_learning_rate_and_weight_decay(tiny_bert):
    cfg = compose_config("text=bert", f"model.bert={tiny_bert}", "optimizer.bert_lr=2e-5",
                         "optimizer.bert_weight_decay=0.01")
    model = instantiate(cfg.model, _partial_=True)(input_dims={"text": 768, "audio": 74, "vision": 35})
    optimizer = instantiate(cfg.optimizer, _convert_="all")(parameter_groups(model), lr=cfg.trainer.lr)
    rest, decayed, undecayed = optimizer.param_groups
    assert (rest["lr"], rest["weight_decay"]) == (1e-3, 0.0)
    assert (decayed["lr"], decayed["weight_decay"]) == (2e-5, 0.01)
    assert (undecayed["lr"], undecayed["weight_decay"]) == (2e-5, 0.0)  # biases and LayerNorm, as Self-MM's
    bert = {id(p) for p in model.text_input.parameters()}
    assert {id(p) for p in decayed["params"] + undecayed["params"]} == bert
    assert not bert & {id(p) for p in rest["params"]}
    assert sum(map(len, (rest["params"], decayed["params"], undecayed["params"]))) == len(list(model.parameters()))
    assert model.branches["text"].proj.in_features == 32  # the text branch reads BERT's hidden size
    # without BERT: the parameters as one list, as every model had them
    plain = instantiate(compose_config().model, _partial_=True)(input_dims={"text": 300, "audio": 74, "vision": 35})
    assert len(adam(parameter_groups(plain), lr=1e-3).param_groups) == 1


def test_a_seed_pack_trains_bert_members_on_unimodal_tasks(tmp_path, tiny_bert, files):
    """vmap through BERT (its own mask: no host sync) and through the heads' dict of scores."""
    records = run_tiny_records(tmp_path, "data=sims", f"data.path={files['sims']}", "text=bert",
                               f"model.bert={tiny_bert}", "tasks=unimodal", "fusion=concat", "trainer.pack_seeds=true",
                               "seeds=[1,2]")
    assert [r["status"] for r in records] == ["completed", "completed"]
    assert records[0]["test"] != records[1]["test"]


def one_line_refusal(*args: str) -> str:
    result = main(*args, "trainer.device=cpu", "trainer.epochs=1")
    assert result.code == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    return line


def test_text_bert_on_a_file_without_token_ids_is_one_line(tmp_path, tiny_bert, files):
    line = one_line_refusal("data=mosi", f"data.path={files['plain']}", "text=bert", f"model.bert={tiny_bert}",
                            f"hydra.run.dir={tmp_path}")
    assert files["plain"] in line and "no 'text_bert' key" in line and "text=features" in line


def test_a_checkpoint_folder_that_does_not_exist_is_one_line(tmp_path, files):
    line = one_line_refusal("data=mosi", f"data.path={files['aligned']}", "text=bert", "model.bert=./no/such/folder",
                            f"hydra.run.dir={tmp_path}")
    assert line.startswith("msa_ablate: error: model.bert=./no/such/folder: no such folder; set "
                           "model.bert=/path/to/folder, a folder holding a BERT checkpoint")


@pytest.mark.parametrize("checkpoint, offline, says", [
    ("no-such-bert-model", True, "not in the Hugging Face cache (HF_HUB_OFFLINE is set) ("),
    ("no-such-bert-model", False, "not in the Hugging Face cache, and the hub cannot be reached; "),
    (__file__, False, "the folder holds no BERT checkpoint"),
], ids=["offline", "hub unreachable", "a file"])
def test_a_checkpoint_that_cannot_be_loaded_is_one_error_at_once(monkeypatch, checkpoint, offline, says):
    """Offline, or the hub unreachable: not the hub's five retries with back-off (about 25 s) but one
    attempt to connect (none offline), then one line naming model.bert and how to point it at a folder."""
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(bert_module, "_hub_reachable", lambda timeout=5.0: False)
    with pytest.raises(ConfigError) as error:
        bert_module.load_bert(checkpoint if checkpoint != __file__ else str(Path(__file__).parent))
    message = str(error.value)
    assert says in message and "\n" not in message and message.endswith(bert_module.HOW)


def test_without_transformers_text_bert_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers: ImportError
    with pytest.raises(ConfigError, match=r"text=bert needs the transformers package: pip install -e '\.\[bert\]'"):
        bert_module.load_bert("bert-base-uncased")


def test_unimodal_tasks_on_data_without_unimodal_labels_is_one_line(tmp_path, files):
    line = one_line_refusal("data=mosi", f"data.path={files['aligned']}", "tasks=unimodal",
                            f"hydra.run.dir={tmp_path}")
    assert line == (f"msa_ablate: error: tasks=unimodal: {files['aligned']} has no label of its own for text, "
                    "vision, audio (CH-SIMS's regression_labels_T/A/V); use it on data=sims or simsv2, or tasks=main")


def test_cuda_graphs_with_bert_are_refused_in_one_line(tiny_bert, files):
    with pytest.raises(ConfigError, match="trainer.cuda_graph=true: not with text=bert"):
        compose_and_build(tiny_bert, files["aligned"], "trainer.cuda_graph=true")


def test_the_checkpoint_is_the_datas_own_where_it_names_one():
    assert compose_config("text=bert").model.bert == "bert-base-uncased"
    for data in ("sims", "simsv2"):  # their ids index bert-base-chinese's vocabulary
        assert compose_config("text=bert", f"data={data}", "data.path=x").model.bert == "bert-base-chinese"
    assert compose_config("text=bert", "data=sims", "data.path=x", "model.bert=/b").model.bert == "/b"


def test_the_default_options_add_nothing_to_the_config():
    """text=features and tasks=main, the defaults, leave the config (and so every run's identity) as it was."""
    config = resolved(compose_config())
    assert "tasks" not in config and not {"text", "bert", "tasks"} & set(config["model"])
    assert "bert_lr" not in config["optimizer"]
    assert OmegaConf.select(compose_config("text=bert"), "optimizer.bert_lr") == 5e-5
