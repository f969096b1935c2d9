"""MISA (+preset=misa, fusion=misa) and the auxiliary losses a model part adds to the training loss: its
losses against hand computation, its subnetworks against a packed bidirectional LSTM, one epoch on tiny
MMSA-format files (aligned and unaligned, a tiny BERT: tests/test_bert.py's), and its refusals. Its
outputs, losses and gradients against MMSA's own MISA code: docs/benchmarks.md (outside the project)."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from torch.nn.utils.rnn import pack_padded_sequence

from msa_ablate.data import from_arrays
from msa_ablate.errors import ConfigError
from msa_ablate.losses import central_moment_discrepancy, difference_loss, reconstruction_loss
from msa_ablate.members import members_of
from msa_ablate.models.misa import MISAFusion, UtteranceLSTM
from msa_ablate.train import train_step
from tests.conftest import compose_config, run_tiny_records
from tests.test_bert import STEPS, bert_run, compose_and_build, files, tiny_bert  # noqa: F401 (fixtures)

NO_DROPOUT = ("fusion.dropout=0", "fusion.transformer_dropout=0")


def test_cmd_is_the_distance_between_means_plus_between_central_moments():
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0]])  # means (1, 2); centred rows -+(1, 1)
    y = torch.tensor([[1.0, 1.0], [1.0, 1.0]])  # means (1, 1); centred: zeros
    # mean distance |(0, 1)| = 1; k = 2: x's central moments (1, 1), y's 0: sqrt(2); k = 3: 0 (odd, symmetric)
    assert float(central_moment_discrepancy(x, y, 2)) == pytest.approx(1 + math.sqrt(2))
    assert float(central_moment_discrepancy(x, y, 3)) == pytest.approx(1 + math.sqrt(2))
    assert float(central_moment_discrepancy(x, y, 4)) == pytest.approx(1 + 2 * math.sqrt(2))  # k = 4: (1, 1) again
    assert float(central_moment_discrepancy(x, x, 5)) == 0.0


def test_the_difference_loss_is_the_mean_squared_entry_of_the_normalised_centred_cross_product():
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])  # centred already; rows of norm 1
    y = torch.tensor([[0.0, 2.0], [0.0, -2.0]])  # centred; rows of norm 2 -> (0, +-1)
    # x^T y = [[0, 1 * 1 + (-1)(-1)], [0, 0]] = [[0, 2], [0, 0]]: squares 0, 4, 0, 0 -> mean 1 (up to the 1e-6)
    assert float(difference_loss(x, y)) == pytest.approx(1.0, rel=1e-5)
    a = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    b = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, -1.0], [0.0, -1.0]])  # uncorrelated with a over the batch
    assert float(difference_loss(a, b)) == 0.0
    assert float(difference_loss(x, torch.tensor([[0.0, 3.0], [0.0, 3.0]]))) == 0.0  # constant: nothing after centring


def test_the_reconstruction_loss_is_the_mean_squared_error_over_every_entry():
    assert float(reconstruction_loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]]))) == pytest.approx(2.5)


def test_misas_audio_and_vision_subnetwork_reads_the_real_steps_as_a_packed_bilstm_pair():
    """Its four unidirectional LSTMs set as two nn.LSTM(bidirectional=True), read over packed real steps
    (MISA's extract_features): the same final states, with the padding at the back or at the front."""
    torch.manual_seed(0)
    net = UtteranceLSTM(3).eval()
    first, second = torch.nn.LSTM(3, 3, bidirectional=True), torch.nn.LSTM(6, 3, bidirectional=True)
    for bi, ahead, behind in ((first, net.forward1, net.backward1), (second, net.forward2, net.backward2)):
        for name, p in ahead.named_parameters():
            getattr(bi, name).data.copy_(p)
            getattr(bi, f"{name}_reverse").data.copy_(getattr(behind, name))
    x, lengths = torch.randn(3, 5, 3), torch.tensor([5, 3, 1])
    real = torch.arange(5) < lengths[:, None]
    with torch.no_grad():
        h1, (final1, _) = first(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        h1 = torch.nn.utils.rnn.pad_packed_sequence(h1, batch_first=True, total_length=5)[0]
        _, (final2, _) = second(pack_padded_sequence(net.norm(h1), lengths, batch_first=True, enforce_sorted=False))
        expected = torch.cat([final1[0], final2[0], final1[1], final2[1]], -1)
        torch.testing.assert_close(net(x, real), expected)
        front = torch.stack([torch.cat([xi[n:], xi[:n]]) for xi, n in zip(x, lengths)])  # padding first
        torch.testing.assert_close(net(front, real.flip(1)), expected)


def tiny_data(files: dict, name: str = "unaligned"):
    return from_arrays(pickle.loads(Path(files[name]).read_bytes()), name)


def step_loss(model, data) -> tuple[float, float, dict]:
    """One training step's loss as the trainer computes it (SGD at rate 0: nothing moves), and by hand."""
    train, idx = data.splits["train"], torch.arange(12).unsqueeze(0)
    torch.manual_seed(3)
    with torch.no_grad():
        outputs = model.train()(train.inputs(idx[0]))
    main = outputs if isinstance(outputs, torch.Tensor) else outputs["main"]
    aux = {} if isinstance(outputs, torch.Tensor) else {k: float(v) for k, v in outputs.items() if k != "main"}
    hand = float(torch.nn.functional.mse_loss(main, train.labels[idx[0]])) + sum(aux.values())
    step = train_step(members_of([model]), train, torch.nn.MSELoss(), [torch.optim.SGD(model.parameters(), lr=0.0)])
    return float(step(idx)[0]), hand, aux


def test_the_trainer_adds_the_weighted_auxiliary_losses_and_at_weight_zero_the_loss_is_the_main_one(files):
    data = tiny_data(files)
    build = instantiate(compose_config("+preset=misa", "text=features", *NO_DROPOUT).model, _partial_=True)
    torch.manual_seed(0)
    model = build(input_dims=data.dims)
    loss, hand, aux = step_loss(model, data)
    assert set(aux) == {"aux:similarity", "aux:difference", "aux:reconstruction"} and all(v > 0 for v in aux.values())
    assert loss == pytest.approx(hand, rel=1e-6)
    zero = instantiate(compose_config("+preset=misa", "text=features", *NO_DROPOUT, "fusion.sim_weight=0",
                                      "fusion.diff_weight=0", "fusion.recon_weight=0").model, _partial_=True)
    alone = zero(input_dims=data.dims)
    alone.load_state_dict(model.state_dict())  # the same weights: the losses' weights aside
    loss0, main, aux0 = step_loss(alone, data)
    assert aux0 == {} and loss0 == main  # exactly the main loss
    ones = instantiate(compose_config("+preset=misa", "text=features", *NO_DROPOUT, "fusion.sim_weight=1",
                                      "fusion.diff_weight=1", "fusion.recon_weight=1").model, _partial_=True)
    unweighted = ones(input_dims=data.dims)
    unweighted.load_state_dict(model.state_dict())
    loss1, _, aux1 = step_loss(unweighted, data)
    weights = {"aux:similarity": 0.3, "aux:difference": 0.1, "aux:reconstruction": 1.0}  # the preset's (MMSA's MOSI)
    assert aux == pytest.approx({k: weights[k] * v for k, v in aux1.items()}, rel=1e-6)
    assert loss == pytest.approx(main + sum(aux.values()), rel=1e-6)
    with torch.no_grad():  # and in evaluation the model gives its scores alone
        assert model.eval()(data.splits["valid"].inputs(torch.arange(3))).shape == (3,)


@pytest.mark.parametrize("alignment", ["aligned", "unaligned"])
def test_misa_trains_one_epoch_on_fine_tuned_bert_from_an_mmsa_file(tmp_path, tiny_bert, files, alignment):
    record = bert_run(tmp_path, tiny_bert, files[alignment], "+preset=misa")
    assert record["status"] == "completed" and np.isfinite(record["test"]["MAE"])
    assert record["data"]["text_bert"] == [3, STEPS] and record["changes"]["+preset"] == "misa"
    assert record["select_metric"] == "loss"


def test_misa_on_the_files_frozen_bert_features_in_a_seed_pack(tmp_path, files):
    """text=features (the mean of the file's text vectors: MISA with BERT frozen), two seeds through vmap."""
    records = run_tiny_records(tmp_path, "data=mosi", f"data.path={files['unaligned']}", "+preset=misa",
                               "text=features", "trainer.pack_seeds=true", "seeds=[1,2]")
    assert [r["status"] for r in records] == ["completed", "completed"]
    assert records[0]["test"] != records[1]["test"]


def test_misas_model_has_mmsas_parts_and_sizes(tiny_bert, files):
    model = compose_and_build(tiny_bert, files["unaligned"], "+preset=misa")
    fusion = model.fusion
    assert isinstance(fusion, MISAFusion) and not model.branches  # its own subnetworks, no branches
    assert fusion.steps == "text" and fusion.weights == {"similarity": 0.3, "difference": 0.1, "reconstruction": 1.0}
    assert list(fusion.utterance) == ["vision", "audio"] and fusion.utterance["audio"].forward1.hidden_size == 74
    assert fusion.project["text"][0].in_features == 32  # BERT's hidden size (MMSA's: 768)
    assert fusion.project["audio"][0].in_features == 4 * 74  # two layers, two directions
    assert fusion.out[0].in_features == 6 * 128 and model.head.fc.in_features == 3 * 128


@pytest.mark.parametrize("overrides, says", [
    (("fusion.steps=text", "modalities=va"), "fusion.steps=text reads audio and vision over the text's tokens"),
    (("tasks=unimodal",), "tasks=unimodal: its heads read the branches' outputs"),
    (("fusion.diff_weight=-1",), "fusion.diff_weight=-1: must be a number >= 0"),
], ids=["steps=text without text", "unimodal tasks", "negative weight"])
def test_what_misa_cannot_run_is_one_line(overrides, says, files):
    build = instantiate(compose_config("fusion=misa", *overrides).model, _partial_=True)
    with pytest.raises(ConfigError, match=says) as error:
        build(input_dims=tiny_data(files).dims)
    assert "\n" not in str(error.value)


def test_the_published_study_adds_misa_where_the_data_file_holds_text_bert(files):
    """+experiment=published: misa (BERT fine-tuned on text_bert) joins where the file holds the token ids;
    on a file without them, and on the built-in data (tests/test_published_models.py), the jobs are as before."""
    from tests.test_presets import dry_run

    with_ids, without = ([job.replace(files[name], "FILE") for job in dry_run(
        "+experiment=published", "data=mosi", f"data.path={files[name]}")] for name in ("aligned", "plain"))
    assert [job for job in with_ids if job not in without] == [
        f"+preset=misa seed={s} +experiment=published data=mosi data.path=FILE" for s in range(1, 6)]
    assert len(without) == 35  # the baseline and six presets, seeds 1-5


def test_a_batch_of_one_clip_trains_misa_with_finite_gradients():
    """One clip has no central moments: CMD's norms are 0 there, with gradient 0 (sqrt's at 0 would be NaN)."""
    x, y = torch.randn(1, 4, requires_grad=True), torch.randn(1, 4, requires_grad=True)
    loss = central_moment_discrepancy(x, y) + difference_loss(x, y)
    loss.backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()
    assert float(central_moment_discrepancy(x.detach(), x.detach())) == 0.0
