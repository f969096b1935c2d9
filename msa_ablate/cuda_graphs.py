"""The training step replayed from CUDA graphs (``trainer.cuda_graph=true``; CUDA only).

On a GPU the baseline's step is a few hundred small kernels, bound by launch overhead when
launched one by one from Python; captured in a CUDA graph, they are launched as one. The whole
step is captured: gathering the batch by index from the data held on the device, forward, loss,
backward and Adam. There is one graph per batch shape (the full batch and the ragged last one,
so the recipe stays the handout's), captured when the shape first comes (with dropout on, as the
trainer calls the step in training mode), and each replay gets new indices.

What capture needs, and where it comes from:
- static inputs: each step's indices are copied into a fixed tensor before the replay;
- an optimiser that works inside a graph: Adam with ``capturable=True`` and its learning rate as a
  device tensor, which the cosine scheduler updates in place between replays;
- optimiser state that exists before capture (made during capture, its zero-fill would be
  replayed every step): warm-up steps on a side stream create it, then the weights, the
  optimiser state and the CUDA RNG are put back, so training starts where the eager run would;
- no host sync inside the step (the trainers read the losses once per epoch).
Dropout inside a graph draws from CUDA's graph-safe Philox stream: other masks than eager
mode's, from the same distribution.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch.torch_version import TorchVersion

from msa_ablate.errors import ConfigError
from msa_ablate.train import Callback, Training


@contextmanager
def rewound(model, optimizer: torch.optim.Optimizer, device: torch.device) -> Iterator[None]:
    """Steps taken inside leave no trace: the weights, the optimiser's state (Adam's, which starts
    as zeros) and the device's RNG are put back as they were on entry. ``model``: an nn.Module
    or a seed pack."""
    weights = {name: t.clone() for name, t in model.state_dict().items()}
    moments = [{k: v.clone() for k, v in optimizer.state[p].items()} for p in model.parameters()]
    rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()
    yield
    model.load_state_dict(weights)
    with torch.no_grad():
        for p, saved in zip(model.parameters(), moments, strict=True):
            for k, v in optimizer.state[p].items():
                if saved:  # resumed from a checkpoint
                    v.copy_(saved[k])
                else:  # fresh: Adam's state is all zeros until its first step
                    v.zero_()
    if device.type == "cuda":
        torch.cuda.set_rng_state(rng, device)
    else:
        torch.set_rng_state(rng)


def capturable(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Adam as a graph can replay it: its state on the device, the learning rate a device tensor
    (the scheduler fills it in place between replays)."""
    for group in optimizer.param_groups:
        group["capturable"] = True
        if not isinstance(group["lr"], torch.Tensor):
            group["lr"] = torch.tensor(group["lr"], device=device)


class GraphedStep:
    """``step(idx) -> loss(es)``, replayed from a CUDA graph per shape of ``idx``, each captured the
    first time its shape comes (the full batch, then the ragged last one)."""

    def __init__(self, step: Callable[[torch.Tensor], torch.Tensor], model, optimizer: torch.optim.Optimizer,
                 warmup_steps: int = 3) -> None:
        self.step, self.model, self.optimizer, self.warmup_steps = step, model, optimizer, warmup_steps
        self.device = next(iter(model.parameters())).device
        self.idx: dict[tuple[int, ...], torch.Tensor] = {}
        self.graphs: dict[tuple[int, ...], torch.cuda.CUDAGraph] = {}
        self.losses: dict[tuple[int, ...], torch.Tensor] = {}

    def capture(self, shape: tuple[int, ...]) -> None:
        idx = torch.zeros(shape, dtype=torch.long, device=self.device)
        # Capture records the current device's streams, RNG and memory pool: make the run's GPU
        # current (a sweep's job N trains on cuda:N mod the GPU count).
        with torch.cuda.device(self.device):
            side = torch.cuda.Stream(self.device)  # warm-up and capture off the default stream, as capture requires
            with rewound(self.model, self.optimizer, self.device), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*capturable.*")  # "running without capture": it is warm-up
                side.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(side):
                    for _ in range(self.warmup_steps):
                        self.step(idx)
                torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=side):
                self.losses[shape] = self.step(idx)
        self.idx[shape], self.graphs[shape] = idx, graph

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        shape = tuple(idx.shape)
        if shape not in self.graphs:
            self.capture(shape)
        self.idx[shape].copy_(idx)
        self.graphs[shape].replay()
        return self.losses[shape].clone()  # the next replay overwrites the static output


class CudaGraph(Callback):
    """Replaces the trainer's step by its graphed twin (after a checkpoint, if any, was loaded)."""

    def on_fit_start(self, training: Training) -> None:
        device = next(iter(training.model.parameters())).device
        if TorchVersion(torch.__version__) < "2.10":
            # older schedulers replace (<2.4) or host-sync (<2.5) a tensor learning rate, and
            # get_last_lr returned the live tensor (<2.10), not a copy
            raise ConfigError(f"trainer.cuda_graph=true needs torch>=2.10; this is {torch.__version__}")
        if device.type != "cuda":
            raise ConfigError(f"trainer.cuda_graph=true needs a CUDA device; this run's is {device}")
        capturable(training.optimizer, device)
        training.step = GraphedStep(training.step, training.model, training.optimizer)
