"""The training recipe as config: optimisers, schedules, gradient clipping, early stopping."""

import dataclasses

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import open_dict

from msa_ablate.config import TrainerConfig, check_settings
from msa_ablate.data.synthetic import make_synthetic_mosi
from msa_ablate.errors import ConfigError
from msa_ablate.optim import adam, adamw, constant, plateau
from msa_ablate.members import OneModel, SeedPack
from msa_ablate.run import build_recipe
from msa_ablate.train import end_epoch, fit, run_epoch, train_step
from tests.conftest import compose_config, run_tiny

RECIPE = TrainerConfig(epochs=2, batch_size=16, lr=1e-3)


@pytest.fixture(scope="module")
def data():
    return make_synthetic_mosi(scale=0.05)


def new_model(data):
    torch.manual_seed(0)
    return instantiate(compose_config().model, _partial_=True)(input_dims=data.dims)


def test_the_default_config_is_the_trainers_default_recipe(data):
    """conf/optimizer/adam.yaml and conf/scheduler/cosine.yaml: Adam and cosine per batch, as before."""
    [made] = fit([new_model(data)], data, torch.nn.MSELoss(), RECIPE, seeds=[1], **build_recipe(compose_config()))
    [plain] = fit([new_model(data)], data, torch.nn.MSELoss(), RECIPE, seeds=[1])
    assert made.history == plain.history and made.test == plain.test


def test_adamw_decays_the_weights_apart_from_the_gradient():
    """With a zero gradient AdamW still shrinks a weight by lr x decay; Adam's L2 decay goes through
    the adaptive step instead (about lr, whatever the decay)."""
    for make, expected in ((adamw, 1 - 0.1 * 0.5), (adam, 1 - 0.1)):
        w = torch.nn.Parameter(torch.ones(1))
        optimizer = make([w], lr=0.1, weight_decay=0.5)
        w.grad = torch.zeros(1)
        optimizer.step()
        assert w.detach().item() == pytest.approx(expected, abs=1e-6), make.__name__


def test_plateau_steps_per_epoch_on_the_validation_loss():
    w = torch.nn.Parameter(torch.ones(1))
    optimizer = torch.optim.SGD([w], lr=1.0)
    scheduler = plateau(optimizer, total_steps=100, factor=0.5, patience=1)
    losses, [lrs] = run_epoch(lambda idx: (w * 0).sum(), [scheduler], [torch.arange(2)] * 3)
    assert lrs == [1.0, 1.0, 1.0]  # nothing within the epoch
    for valid_loss in (1.0, 1.0, 1.0):  # best, then two epochs without improvement: patience 1 is exceeded
        end_epoch(scheduler, {"loss": valid_loss})
    assert scheduler.get_last_lr() == [0.5]
    end_epoch(constant(optimizer, 100), {"loss": 0.0})  # a per-batch schedule ignores the epoch's end


def test_grad_clip_bounds_the_gradient_norm_the_optimiser_sees(data):
    model = new_model(data)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    norms = []
    optimizer.register_step_pre_hook(lambda opt, *_: norms.append(float(torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(p.grad) for p in model.parameters() if p.grad is not None])))))
    train = data.splits["train"]
    train_step(OneModel(model), train, torch.nn.MSELoss(), [optimizer])(torch.arange(16)[None])
    train_step(OneModel(model), train, torch.nn.MSELoss(), [optimizer], grad_clip=1e-3)(torch.arange(16)[None])
    assert norms[0] > 1e-3 and norms[1] == pytest.approx(1e-3, rel=1e-3)


def test_a_packs_clipping_is_each_members_own(data):
    """A pack's member is clipped by its own gradient norm, as it is alone: with the bound between
    the two members' norms, the larger comes down to it and the smaller is left as it is."""
    models = [new_model(data), new_model(data)]
    with torch.no_grad():
        models[1].head.fc.weight.mul_(0.01)  # member 1's gradient: far smaller than member 0's
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.0) for m in models]
    norms = {0: [], 1: []}
    for k, (model, optimizer) in enumerate(zip(models, optimizers)):
        optimizer.register_step_pre_hook(lambda opt, *_, k=k, model=model: norms[k].append(float(
            torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in model.parameters()
                                                  if p.grad is not None])))))
    pack, idx = SeedPack(models), torch.stack([torch.arange(16)] * 2)
    train_step(pack, data.splits["train"], torch.nn.MSELoss(), optimizers)(idx)
    bound = (norms[0][0] + norms[1][0]) / 2
    train_step(pack, data.splits["train"], torch.nn.MSELoss(), optimizers, grad_clip=bound)(idx)
    assert norms[1][0] < bound < norms[0][0]
    assert norms[0][1] == pytest.approx(bound, rel=1e-4) and norms[1][1] == pytest.approx(norms[1][0], rel=1e-6)


def test_patience_stops_once_the_metric_stops_improving(data):
    """At lr 0 the model never changes: epoch 1 is the best, epoch 2 does not improve, and with
    patience 1 the run stops there."""
    recipe = dataclasses.replace(RECIPE, epochs=6, lr=0.0, patience=1)
    [result] = fit([new_model(data)], data, torch.nn.MSELoss(), recipe, seeds=[0])
    assert (result.best_epoch, len(result.history)) == (1, 2)
    [unstopped] = fit([new_model(data)], data, torch.nn.MSELoss(), dataclasses.replace(recipe, patience=None),
                      seeds=[0])
    assert len(unstopped.history) == 6


def test_a_run_with_another_recipe_records_it(tmp_path):
    record = run_tiny(tmp_path, "optimizer=adamw", "scheduler=plateau", "trainer.grad_clip=1.0", "trainer.epochs=2")
    assert record["status"] == "completed"
    assert (record["choices"]["optimizer"], record["choices"]["scheduler"]) == ("adamw", "plateau")
    assert {k: record["changes"][k] for k in ("optimizer", "scheduler", "trainer.grad_clip")} == {
        "optimizer": "adamw", "scheduler": "plateau", "trainer.grad_clip": 1.0}


@pytest.mark.parametrize("overrides, message", [
    (["optimizer.betas=[1.2,0.9]"], "optimizer.betas=[1.2, 0.9]: expected two numbers in [0, 1)"),
    (["optimizer=adamw", "optimizer.weight_decay=-1"], "optimizer.weight_decay=-1: must be a number >= 0"),
    (["scheduler=plateau", "scheduler.factor=1"], "scheduler.factor=1: must be a number in (0, 1)"),
    (["scheduler=plateau", "scheduler.patience=0"], "scheduler.patience=0: must be a positive integer"),
])
def test_bad_recipe_settings_name_the_key(data, overrides, message):
    make = build_recipe(compose_config(*overrides))
    with pytest.raises(ConfigError) as info:
        make["make_schedule"](make["make_optimizer"](new_model(data).parameters(), lr=1e-3), 10)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("overrides, message", [
    (["trainer.grad_clip=0"], "trainer.grad_clip=0.0: must be a positive (finite) number"),
    (["trainer.patience=0"], "trainer.patience=0: must be a positive integer"),
])
def test_recipe_settings_checked_before_a_run(overrides, message):
    cfg = compose_config(*overrides)
    with open_dict(cfg):
        del cfg["hydra"]  # the job's config, as the app checks it
    with pytest.raises(ConfigError) as info:
        check_settings(cfg)
    assert str(info.value).startswith(message)
