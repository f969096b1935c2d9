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
- no host sync inside the step (the trainer reads the losses once per epoch).
Dropout inside a graph draws from CUDA's graph-safe Philox stream: other masks than eager
mode's, from the same distribution.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch.torch_version import TorchVersion

from msa_ablate.errors import ConfigError
from msa_ablate.members import Members
from msa_ablate.train import Callback, Step, Training


@contextmanager
def rewound(members: Members, optimizers: Sequence[torch.optim.Optimizer], device: torch.device) -> Iterator[None]:
    """Steps taken inside leave no trace: the members' weights, the optimisers' state (Adam's, which
    starts as zeros) and the device's RNG are put back as they were on entry."""
    weights = [members.member_state(k) for k in range(members.size)]
    owned = [(o, p) for o in optimizers for group in o.param_groups for p in group["params"]]
    moments = [{k: v.clone() for k, v in o.state[p].items()} for o, p in owned]
    rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()
    yield
    for k, state in enumerate(weights):
        members.load_member_state(k, state)  # in place: a graph's captured addresses stay valid
    with torch.no_grad():
        for (o, p), saved in zip(owned, moments, strict=True):
            for k, v in o.state[p].items():
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
    """``step(idx) -> losses``, replayed from a CUDA graph per shape of ``idx`` and set of members
    still training, each captured the first time it comes (the full batch, then the ragged last
    one; again once a member of a pack stops)."""

    def __init__(self, step: Step, training: Training, warmup_steps: int = 3) -> None:
        self.step, self.training, self.warmup_steps = step, training, warmup_steps
        self.device = training.members.parameters(0)[0].device
        self.idx: dict[tuple, torch.Tensor] = {}
        self.graphs: dict[tuple, torch.cuda.CUDAGraph] = {}
        self.losses: dict[tuple, torch.Tensor] = {}

    def capture(self, key: tuple, shape: tuple[int, ...]) -> None:
        idx = torch.zeros(shape, dtype=torch.long, device=self.device)
        # Capture records the current device's streams, RNG and memory pool: make the run's GPU
        # current (a sweep's job N trains on cuda:N mod the GPU count).
        with torch.cuda.device(self.device):
            side = torch.cuda.Stream(self.device)  # warm-up and capture off the default stream, as capture requires
            with rewound(self.training.members, self.training.optimizers, self.device), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*capturable.*")  # "running without capture": it is warm-up
                side.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(side):
                    for _ in range(self.warmup_steps):
                        self.step(idx)
                torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=side):
                self.losses[key] = self.step(idx)
        self.idx[key], self.graphs[key] = idx, graph

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        key = (tuple(idx.shape), tuple(self.training.active))
        if key not in self.graphs:
            self.capture(key, tuple(idx.shape))
        self.idx[key].copy_(idx)
        self.graphs[key].replay()
        return self.losses[key].clone()  # the next replay overwrites the static output


class CudaGraph(Callback):
    """Replaces the trainer's step by its graphed twin (after a checkpoint, if any, was loaded)."""

    def on_fit_start(self, training: Training) -> None:
        device = training.members.parameters(0)[0].device
        if TorchVersion(torch.__version__) < "2.10":
            # older schedulers replace (<2.4) or host-sync (<2.5) a tensor learning rate, and
            # get_last_lr returned the live tensor (<2.10), not a copy
            raise ConfigError(f"trainer.cuda_graph=true needs torch>=2.10; this is {torch.__version__}")
        if device.type != "cuda":
            raise ConfigError(f"trainer.cuda_graph=true needs a CUDA device; this run's is {device}")
        for optimizer in training.optimizers:
            capturable(optimizer, device)

    def wrap_step(self, step: Step, training: Training) -> Step:
        return GraphedStep(step, training)
