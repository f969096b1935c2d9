"""Seed packs: members equal their seed trained alone; every option packs; sweeps see one run per seed."""

import json
from functools import partial

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from analysis.runs import load_runs
from msa_ablate.config import TrainerConfig
from msa_ablate.data.synthetic import make_synthetic_mosi
from msa_ablate.members import SeedPack
from msa_ablate.models.unrolled import unrolled
from msa_ablate.optim import cosine, plateau
from msa_ablate.train import TrainingDiverged, fit, seed_everything
from tests.conftest import TINY, ScalarRecorder, compose_config, main, run_tiny, run_tiny_records
from tests.test_options import options



@pytest.mark.parametrize("rnn", [
    nn.LSTM(6, 5, batch_first=True),
    nn.LSTM(6, 5, num_layers=2, batch_first=True, bidirectional=True),
    nn.GRU(6, 5, batch_first=True),
    nn.GRU(6, 5, num_layers=2, batch_first=True, bidirectional=True),
], ids=["lstm", "lstm_2_layers_bidirectional", "gru", "gru_2_layers_bidirectional"])
def test_unrolled_rnn_computes_what_the_cudnn_style_module_computes(rnn):
    rnn = rnn.double().eval()
    twin = unrolled(nn.Sequential(rnn))[0]
    assert [n for n, _ in twin.named_parameters()] == [n for n, _ in rnn.named_parameters()]
    x = torch.randn(3, 7, 6, dtype=torch.float64)
    (out, state), (ref_out, ref_state) = twin(x), rnn(x)
    torch.testing.assert_close(out, ref_out)
    for mine, ref in zip(*(s if isinstance(s, tuple) else (s,) for s in (state, ref_state))):
        torch.testing.assert_close(mine, ref)


def test_an_unrolled_lstm_cell_computes_what_nn_lstm_cell_computes():
    cell = nn.LSTMCell(6, 5).double()
    twin = unrolled(nn.Sequential(cell))[0]
    assert [n for n, _ in twin.named_parameters()] == [n for n, _ in cell.named_parameters()]
    x, h, c = (torch.randn(3, d, dtype=torch.float64) for d in (6, 5, 5))
    for mine, ref in zip(twin(x, (h, c)), cell(x, (h, c))):
        torch.testing.assert_close(mine, ref)


def train_members(seeds, data, epochs=2, make_schedule=cosine, **recipe):
    """Trained together (a seed pack), or alone where ``seeds`` is one seed."""
    models, recorders = [], [ScalarRecorder() for _ in seeds]
    for seed in seeds:
        seed_everything(seed)
        models.append(instantiate(compose_config().model, _partial_=True)(input_dims=data.dims))
    recipe = TrainerConfig(**{"epochs": epochs, "batch_size": 16, "lr": 1e-3, **recipe})
    results = fit(models, data, torch.nn.MSELoss(), recipe, seeds=seeds, writers=recorders,
                  make_schedule=make_schedule)
    return results, recorders, models


RECIPES = {  # trainer settings, seeds, data scale: where each recipe acts, and on the members differently
    "handout": ({}, [3, 7, 11], 0.1),
    "early_stopping": ({"epochs": 6, "patience": 1}, [7, 11], 0.03),
    "plateau": ({"epochs": 6, "make_schedule": partial(plateau, factor=0.5, patience=1)}, [3, 7], 0.03),
}


@pytest.mark.parametrize("recipe, seeds, scale", RECIPES.values(), ids=RECIPES)
def test_a_packed_member_equals_its_seed_trained_alone(recipe, seeds, scale):
    """Same initialisation, same batch order, same updates (Adam is elementwise, the members
    share no parameter; each has its own optimiser, schedule and early stop): only float rounding
    may differ. The baseline has no active dropout."""
    data = make_synthetic_mosi(scale=scale)
    packed, packed_steps, packed_models = train_members(seeds, data, **recipe)
    for k, seed in enumerate(seeds):
        [alone], [alone_steps], [alone_model] = train_members([seed], data, **recipe)
        # the first steps' losses, then the whole run's
        assert packed_steps[k].values("loss/train_step") == pytest.approx(alone_steps.values("loss/train_step"),
                                                                          rel=1e-4)
        assert packed_steps[k].values("lr") == pytest.approx(alone_steps.values("lr"), rel=1e-6)
        assert len(packed[k].history) == len(alone.history)
        assert packed[k].best_epoch == alone.best_epoch
        assert packed[k].valid == pytest.approx(alone.valid, rel=1e-4, abs=1e-5)
        assert packed[k].test == pytest.approx(alone.test, rel=1e-4, abs=1e-5)
        for (name, p), q in zip(packed_models[k].state_dict().items(), alone_model.state_dict().values()):
            torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-5, msg=name)  # the best state came back
    assert packed[0].test != packed[1].test  # and the members are different runs
    if "patience" in recipe:  # the recipe acted: some member stopped early, and not all at once
        assert len({len(r.history) for r in packed}) > 1 and min(len(r.history) for r in packed) < recipe["epochs"]
    if "make_schedule" in recipe:  # some member's learning rate was lowered on its own
        assert len({min(s.values("lr")) for s in packed_steps}) > 1


@pytest.mark.parametrize("option", [
    *(f"encoder={o}" for o in options("encoder") if o != "lstm"), *(f"fusion={o}" for o in options("fusion")
                                                                   if o != "sum_lstm"),
    "head=linear", "modalities=t", "encoder.num_layers=2", "+preset=improved", "encoder=birnn encoder.cell=gru",
])
def test_every_option_trains_in_a_pack(tmp_path, option):
    records = run_tiny_records(tmp_path, *option.split(), "trainer.pack_seeds=true", "seeds=[1,2]",
                               "data.scale=0.02")  # that every option packs, not how well: 26 clips do
    assert [r["seed"] for r in records] == [1, 2]
    assert all(r["status"] == "completed" and r["pack_size"] == 2 for r in records)
    assert records[0]["valid"] != records[1]["valid"]
    assert (tmp_path / "seed_1" / "metrics.json").exists() and (tmp_path / "seed_2" / "metrics.json").exists()


class Dropped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: dict) -> torch.Tensor:
        return self.dropout(x["text"] * self.scale)


def test_dropout_draws_a_different_mask_per_member():
    pack = SeedPack([Dropped(), Dropped()])
    pack.train()
    out = pack({"text": torch.ones(2, 200)})
    assert not torch.equal(out[0] == 0, out[1] == 0)


def test_a_completed_pack_is_skipped_and_a_longer_seed_list_trains_only_the_new_seeds(tmp_path):
    first = run_tiny_records(tmp_path, "trainer.pack_seeds=true", "seeds=[1,2]")
    again = run_tiny_records(tmp_path, "trainer.pack_seeds=true", "seeds=[1,2,3]")
    assert again[:2] == first  # read back, not retrained
    assert again[2]["seed"] == 3 and again[2]["pack_size"] == 1
    # the plain run of seed 3 is the same computation as the pack's member of one
    alone = run_tiny(tmp_path / "alone", "seed=3")
    assert alone["test"] == pytest.approx(again[2]["test"], rel=1e-5)


def test_a_packed_sweep_reads_as_one_run_per_seed(tmp_path):
    sweep = tmp_path / "sweep"
    result = main("-m", *TINY, "data.scale=0.02", "loss=mse,l1", "trainer.pack_seeds=true", "seeds=[1,2,3]",
                  f"hydra.sweep.dir={sweep}")
    assert result.code == 0, result.stderr
    runs = load_runs([sweep])
    assert len(runs) == 6 and set(runs.status) == {"completed"}
    assert sorted(runs.groupby("loss").seed.apply(sorted).tolist()) == [[1, 2, 3], [1, 2, 3]]
    [job] = [p for p in sweep.iterdir() if "loss=l1" in p.name]
    record = json.loads((job / "seed_2" / "metrics.json").read_text())
    assert record["choices"]["loss"] == "l1" and record["seed"] == 2


def test_a_swept_seed_with_packs_is_refused(tmp_path):
    result = main("data.scale=0.05", "trainer.pack_seeds=true", "seed=3", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.code == 2 and "Traceback" not in result.stderr
    assert "msa_ablate: error: seed: trainer.pack_seeds=true" in result.stderr
    runs = load_runs([tmp_path / "run"])  # every member the analysis expects says why it did not run
    assert sorted(runs.seed) == [1, 2, 3, 4, 5] and set(runs.status) == {"failed"}
    assert runs.reason.str.contains("ConfigError: seed: trainer.pack_seeds=true").all()


@pytest.mark.parametrize("seeds", ["[]", "[1,1]", "[-1]", "7"])
def test_bad_seed_lists_are_refused(tmp_path, seeds):
    result = main("data.scale=0.05", "trainer.pack_seeds=true", f"seeds={seeds}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.code == 2 and "Traceback" not in result.stderr
    assert "msa_ablate: error: seeds=" in result.stderr
    runs = load_runs([tmp_path / "run"])  # failed, not taken for a job killed or still running
    assert len(runs) >= 1 and set(runs.status) == {"failed"} and runs.reason.str.contains("seeds=").all()


def poisoned(k: int):
    """fit, with member k's output bias NaN: its loss is non-finite from the first step."""
    def fit_with_a_nan_member(models, *args, **kwargs):
        with torch.no_grad():
            models[k].head.fc.bias.fill_(float("nan"))
        return fit(models, *args, **kwargs)
    return fit_with_a_nan_member


def test_a_diverging_member_fails_alone_and_its_pack_trains_on():
    """A member's NaN stays in its own parameters and Adam state: the others end as they would alone."""
    data = make_synthetic_mosi(scale=0.05)
    models = []
    for seed in (3, 7):
        seed_everything(seed)
        models.append(instantiate(compose_config().model, _partial_=True)(input_dims=data.dims))
    packed = poisoned(1)(models, data, torch.nn.MSELoss(), TrainerConfig(epochs=2), seeds=[3, 7])
    [alone], _, _ = train_members([3], data)
    assert packed[1].diverged == "non-finite training loss at epoch 1, step 1" and packed[1].test == {}
    assert not packed[0].diverged and packed[0].best_epoch == alone.best_epoch
    assert packed[0].test == pytest.approx(alone.test, rel=1e-4, abs=1e-5)


def test_a_job_with_a_diverged_member_fails_keeps_the_others_and_retrains_only_it(tmp_path, monkeypatch):
    import msa_ablate.run
    monkeypatch.setattr(msa_ablate.run, "fit", poisoned(1))
    with pytest.raises(TrainingDiverged, match="seed 2: non-finite training loss at epoch 1, step 1"):
        run_tiny_records(tmp_path, "trainer.pack_seeds=true", "seeds=[1,2]")
    first = json.loads((tmp_path / "seed_1" / "metrics.json").read_text())
    failed = json.loads((tmp_path / "seed_2" / "metrics.json").read_text())
    assert first["status"] == "completed" and first["test"]
    assert failed["status"] == "failed" and failed["reason"].startswith("TrainingDiverged: non-finite")
    monkeypatch.setattr(msa_ablate.run, "fit", fit)  # relaunched, nothing poisoned
    records = run_tiny_records(tmp_path, "trainer.pack_seeds=true", "seeds=[1,2]")
    assert records[0] == first and records[1]["status"] == "completed" and records[1]["pack_size"] == 1


def test_a_pack_whose_members_all_diverge_fails():
    data = make_synthetic_mosi(scale=0.05)
    models = [instantiate(compose_config().model, _partial_=True)(input_dims=data.dims) for _ in range(2)]
    with pytest.raises(TrainingDiverged, match="seed 1: .*epoch 1, step 1; seed 2: .*epoch 1, step 1"):
        fit(models, data, lambda p, y: (p - y).pow(2).mean() * float("inf"), TrainerConfig(epochs=2), seeds=[1, 2])
