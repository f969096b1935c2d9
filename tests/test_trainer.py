import math
import pickle

import pytest
import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from msa_ablate import handout
from msa_ablate.bench import TrainerOrder
from msa_ablate.config import TrainerConfig
from msa_ablate.data.pickles import load_pickle as load_mosi
from msa_ablate.data.synthetic import make_synthetic_mosi, synthetic_arrays
from msa_ablate.errors import ConfigError
from msa_ablate.train import TrainingDiverged, fit, is_better, seed_everything
from tests.conftest import compose_config, run_tiny


def test_trainer_matches_the_handout_loop(tmp_path, recorder):
    """Same initial weights and batch order: the handout's DataLoader loop and our trainer
    give the same loss at every step, and the same test metrics to the handout's 4 decimals."""
    seed, epochs = 3, 2
    path = tmp_path / "mosi_raw.pkl"
    path.write_bytes(pickle.dumps(synthetic_arrays(seed=0, scale=0.1)))
    data = load_mosi(str(path))

    seed_everything(seed)
    model = instantiate(compose_config().model, _partial_=True)(input_dims=data.dims)
    reference = handout.MultimodalSentimentAnalysisModel()
    reference.load_state_dict(handout.from_project_state(model.state_dict()))

    [result] = fit([model], data, torch.nn.MSELoss(), TrainerConfig(epochs=epochs, batch_size=16, lr=1e-3),
                   seeds=[seed], writers=[recorder])

    train = handout.MOSIDataset(path, "train")
    train_loader = DataLoader(train, batch_size=16, sampler=TrainerOrder(len(train), seed))
    valid_loader = DataLoader(handout.MOSIDataset(path, "valid"), batch_size=16)
    optimizer = torch.optim.Adam(reference.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(train_loader))
    best_state, losses = handout.train_model(reference, train_loader, valid_loader, torch.nn.MSELoss(),
                                                   optimizer, scheduler, "cpu", epochs)

    assert len(losses) == epochs * math.ceil(len(train) / 16)
    assert recorder.values("loss/train_step") == pytest.approx(losses, rel=1e-4, abs=1e-6)
    reference.load_state_dict(best_state)
    test = handout.validate_model(reference, DataLoader(handout.MOSIDataset(path, "test"),
                                                              batch_size=16), None, "cpu")
    for name, value in test.items():
        assert result.test[name] == pytest.approx(value, abs=1.5e-4), name


def test_same_seed_same_metrics_on_cpu(tmp_path):
    a = run_tiny(tmp_path / "a", "trainer.epochs=2", "seed=5")
    b = run_tiny(tmp_path / "b", "trainer.epochs=2", "seed=5")
    c = run_tiny(tmp_path / "c", "trainer.epochs=2", "seed=6")
    assert (a["valid"], a["test"], a["history"]) == (b["valid"], b["test"], b["history"])
    assert a["history"] != c["history"]


def test_the_test_split_chooses_nothing():
    """Scrambling the test labels changes the test metrics and nothing that was chosen."""
    data = make_synthetic_mosi(scale=0.05)
    scrambled = make_synthetic_mosi(scale=0.05)
    scrambled.splits["test"].labels = scrambled.splits["test"].labels.flip(0)

    def train(d):
        seed_everything(0)
        model = instantiate(compose_config().model, _partial_=True)(input_dims=d.dims)
        [result] = fit([model], d, torch.nn.MSELoss(), TrainerConfig(epochs=3, batch_size=16, lr=1e-3), seeds=[0])
        return result

    a, b = train(data), train(scrambled)
    assert (a.best_epoch, a.valid, a.history) == (b.best_epoch, b.valid, b.history)
    assert a.test != b.test


def test_best_epoch_is_the_first_best_validation_value(tmp_path):
    record = run_tiny(tmp_path, "trainer.epochs=4")
    corr = [h["valid_Corr"] for h in record["history"]]
    assert record["best_epoch"] == corr.index(max(corr)) + 1
    assert record["valid"]["Corr"] == max(corr)


@pytest.mark.parametrize("metric,value,best,better", [
    ("Corr", 0.5, 0.4, True), ("Corr", 0.4, 0.4, False), ("MAE", 0.9, 1.0, True), ("MAE", 1.1, 1.0, False),
    ("loss", 0.2, 0.3, True), ("Corr", math.nan, None, False), ("Corr", -0.2, None, True),
])
def test_is_better(metric, value, best, better):
    assert is_better(metric, value, best) is better


def test_select_metric_mae_picks_the_lowest(tmp_path):
    record = run_tiny(tmp_path, "trainer.epochs=3", "trainer.select_metric=MAE")
    mae = [h["valid_MAE"] for h in record["history"]]
    assert record["best_epoch"] == mae.index(min(mae)) + 1


def test_unknown_select_metric_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="trainer.select_metric=Acc"):
        run_tiny(tmp_path, "trainer.select_metric=Acc")


def test_non_finite_loss_stops_the_run():
    data = make_synthetic_mosi(scale=0.05)
    model = instantiate(compose_config().model, _partial_=True)(input_dims=data.dims)
    with pytest.raises(TrainingDiverged, match="epoch 1, step 1"):
        fit([model], data, lambda p, y: (p - y).pow(2).mean() * math.inf, TrainerConfig(epochs=2), seeds=[0])


def test_cosine_schedule_steps_every_batch(recorder):
    """T_max = epochs x batches: the lr falls every step and reaches ~0 at the last one."""
    data = make_synthetic_mosi(scale=0.05)  # 64 train clips: 4 batches of 16
    model = instantiate(compose_config().model, _partial_=True)(input_dims=data.dims)
    fit([model], data, torch.nn.MSELoss(), TrainerConfig(epochs=2, batch_size=16, lr=1e-3), seeds=[0],
        writers=[recorder])
    lrs = recorder.values("lr")
    expected = [0.5e-3 * (1 + math.cos(math.pi * i / 8)) for i in range(8)]
    assert lrs == pytest.approx(expected)
