"""The CUDA-graph step: what can be checked without a GPU. Capture and replay themselves need
CUDA and are measured by `python -m msa_ablate.bench` on a GPU (docs/benchmarks.md: on an H200, they work)."""

import copy

import pytest
import torch
from hydra.utils import instantiate

from msa_ablate.config import TrainerConfig
from msa_ablate.cuda_graphs import CudaGraph, rewound
from msa_ablate.data.synthetic import make_synthetic_mosi
from msa_ablate.errors import ConfigError
from msa_ablate.members import members_of
from msa_ablate.train import fit, seed_everything, train_step
from tests.conftest import compose_config, main


@pytest.mark.parametrize("seeds", [[1], [1, 2]], ids=["one_model", "seed_pack"])
def test_warm_up_steps_inside_rewound_leave_no_trace(seeds):
    """Capture needs the optimiser state made by real steps first; after them, training must go on
    exactly as if they never ran: same weights, same Adam state, same dropout masks."""
    data = make_synthetic_mosi(scale=0.05)
    models = []
    for seed in seeds:
        seed_everything(seed)
        models.append(instantiate(compose_config("+preset=improved").model, _partial_=True)(input_dims=data.dims))
    twins = copy.deepcopy(models)
    train = data.splits["train"]
    shape = (len(seeds), 16)  # each member has a batch
    batches = [torch.randint(len(train), shape, generator=torch.Generator().manual_seed(i)) for i in range(3)]

    def steps(models, warm_up):
        members = members_of(models)
        members.train()
        optimizers = [torch.optim.Adam(members.parameters(k), lr=1e-2) for k in range(members.size)]
        step = train_step(members, train, torch.nn.MSELoss(), optimizers)
        torch.manual_seed(0)
        if warm_up:
            with rewound(members, optimizers, torch.device("cpu")):
                for idx in batches:
                    step(idx)
        return torch.stack([step(idx) for idx in batches]), [members.member_state(k) for k in range(members.size)]

    (warmed, warmed_states), (plain, plain_states) = steps(models, True), steps(twins, False)
    assert torch.equal(warmed, plain)
    for warmed_state, plain_state in zip(warmed_states, plain_states, strict=True):
        for name, t in plain_state.items():
            assert torch.equal(warmed_state[name], t), name


def test_cuda_graph_needs_a_cuda_device():
    data = make_synthetic_mosi(scale=0.05)
    model = instantiate(compose_config().model, _partial_=True)(input_dims=data.dims)
    with pytest.raises(ConfigError, match=r"trainer.cuda_graph=true needs a CUDA device; this run's is cpu"):
        fit([model], data, torch.nn.MSELoss(), TrainerConfig(epochs=1), seeds=[1], callbacks=[CudaGraph()])


def test_cuda_graph_on_cpu_is_a_one_line_error(tmp_path):
    result = main("data.scale=0.05", "trainer.device=cpu", "trainer.cuda_graph=true",
                  f"hydra.run.dir={tmp_path / 'run'}")
    assert result.code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "msa_ablate: error: trainer.cuda_graph=true needs a CUDA device; this run's is cpu")


def test_cuda_graph_needs_a_torch_whose_scheduler_updates_a_tensor_lr_in_place(monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.9.1+cu128")
    data = make_synthetic_mosi(scale=0.05)
    model = instantiate(compose_config().model, _partial_=True)(input_dims=data.dims)
    with pytest.raises(ConfigError, match=r"trainer.cuda_graph=true needs torch>=2.10; this is 2.9.1\+cu128"):
        fit([model], data, torch.nn.MSELoss(), TrainerConfig(epochs=1), seeds=[1], callbacks=[CudaGraph()])
