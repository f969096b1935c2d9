"""How fast is a run, and a sweep? ``python -m msa_ablate.bench [--device D] [--epochs N] [--seeds K]``

The paths, in one process, on one device, on the full-size synthetic data, the baseline
model and recipe (batch 16, Adam 1e-3, cosine per step):

- ``reference``: the handout's own loop (msa_ablate.handout: a Dataset building per-sample
  tensors, a DataLoader, eager steps), from the trainer's initial weights and in its batch
  order, so that it trains the same model the same way: the yardstick of speed and of results;
- ``run``: the project's trainer, one seed (data held on the device, batches by index);
- ``pack``: K seeds trained together as a seed pack (one stacked model, msa_ablate.members);
- ``serial``: the same K seeds through the trainer one after another, in one process;
- ``graph`` and ``pack_graph`` (CUDA only): ``run`` and ``pack`` with every training step
  replayed from a CUDA graph (``trainer.cuda_graph=true``, msa_ablate.cuda_graphs). On CUDA
  ``pack`` itself is timed only when ``--paths`` names it: without graphs it is launch-bound.

A sweep of K seeds takes the fastest path on the device at hand (a one-seed path K times, or a
K-seed one); the report names it as ``sweep``.

It prints seconds per run, runs per minute, speed against ``reference`` and peak memory,
writes the table as JSON (``--out``), and checks that each path computes what its counterpart
does (``run`` the reference's; ``graph`` what ``run`` does; ``pack`` and ``pack_graph`` what
``serial`` does: the same seeds): test Corr and Non0_acc_2 within ``--tolerance``, which float
rounding alone stays far inside. Speed must not cost quality.
"""

from __future__ import annotations

import argparse
import json
import pickle
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.utils.data import DataLoader, Sampler

import msa_ablate
from msa_ablate import handout
from msa_ablate.config import TrainerConfig
from msa_ablate.cuda_graphs import CudaGraph
from msa_ablate.data import Split
from msa_ablate.data.pickles import load_pickle
from msa_ablate.data.synthetic import DIMS, STEPS, synthetic_arrays
from msa_ablate.run import resolve_device
from msa_ablate.members import OneModel
from msa_ablate.train import fit, seed_everything, train_step

CONF = Path(__file__).resolve().parents[1] / "conf"
CHECKED = ("Corr", "Non0_acc_2")
# Each path against the one that trains the same seeds another way.
COUNTERPART = {"run": "reference", "graph": "run", "pack": "serial", "pack_graph": "serial"}


def baseline_model(dims: dict[str, int], seed: int) -> torch.nn.Module:
    seed_everything(seed)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config")
    return instantiate(cfg.model, _partial_=True)(input_dims=dims)


class TrainerOrder(Sampler):
    """The trainer's batch order for a seed: one permutation per epoch from a generator of its own."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.generator = n, torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=self.generator).tolist())


def reference(path: Path, device: torch.device, epochs: int, seed: int) -> list[dict[str, float]]:
    """The handout's loop, from the trainer's initial weights and in its batch order for ``seed``:
    the same training done another way, which every path of the trainer must agree with."""
    model = handout.MultimodalSentimentAnalysisModel()
    model.load_state_dict(handout.from_project_state(baseline_model(DIMS, seed).state_dict()))
    train = handout.MOSIDataset(path, "train")
    loaders = {"train": DataLoader(train, batch_size=16, sampler=TrainerOrder(len(train), seed)),
               **{s: DataLoader(handout.MOSIDataset(path, s), batch_size=16) for s in ("valid", "test")}}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(loaders["train"]))
    criterion = torch.nn.MSELoss()
    best_state, _ = handout.train_model(model, loaders["train"], loaders["valid"], criterion, optimizer,
                                              scheduler, device, epochs)
    model.load_state_dict(best_state)
    return [handout.validate_model(model, loaders["test"], criterion, device)]


def project(path: Path, device: torch.device, epochs: int, seeds: list[int],
            cuda_graph: bool = False) -> list[dict[str, float]]:
    data = load_pickle(str(path)).to(device)
    models = [baseline_model(data.dims, seed).to(device) for seed in seeds]
    recipe, callbacks = TrainerConfig(epochs=epochs), [CudaGraph()] if cuda_graph else []
    return [r.test for r in fit(models, data, torch.nn.MSELoss(), recipe, seeds=seeds, callbacks=callbacks)]


def timed(device: torch.device, work: Callable[[], list[dict[str, float]]]) -> tuple[float, list[dict], float]:
    """Seconds, the test metrics of each run, and peak memory in MiB (the GPU's for CUDA; the
    process's resident peak so far on CPU, which never falls)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    tests = work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20
    return seconds, tests, peak


def profile_step(device: torch.device, steps: int = 20, top: int = 5) -> list[dict[str, float]]:
    """Where one training step of the baseline (the trainer's own: batch 16 gathered by index,
    forward, MSE, backward, Adam) spends its time: the ``top`` operators by self time, each with
    its share of the profiled total."""
    from torch.profiler import ProfilerActivity, profile

    model = baseline_model(DIMS, seed=42).to(device)  # MOSI's dims; the cost does not depend on values
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    features = {m: torch.randn(16, STEPS, d, device=device) for m, d in DIMS.items()}
    batch = Split(features, {m: torch.ones(16, STEPS, dtype=torch.bool, device=device) for m in DIMS},
                  torch.randn(16, device=device), (-3.0, 3.0))
    step = train_step(OneModel(model), batch, torch.nn.MSELoss(), [optimizer])
    idx = torch.arange(16, device=device)[None]  # one member's batch
    model.train()

    for _ in range(3):  # warm-up: first-call allocations and kernel selection
        step(idx)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step(idx)
    events = [e for e in prof.key_averages() if e.self_device_time_total or e.self_cpu_time_total]
    key = (lambda e: e.self_device_time_total) if device.type == "cuda" else (lambda e: e.self_cpu_time_total)
    total = sum(key(e) for e in events)
    return [{"op": e.key, "share": key(e) / total, "ms_per_step": key(e) / steps / 1e3}
            for e in sorted(events, key=key, reverse=True)[:top]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=5, help="runs in the pack and serial paths")
    parser.add_argument("--paths", help="which paths to time, comma-separated (default: reference,run,pack,serial; "
                        "on CUDA reference,run,serial,graph,pack_graph)")
    parser.add_argument("--scale", type=float, default=1.0, help="data size (1.0: MOSI's 1284/229/686)")
    parser.add_argument("--tolerance", type=float, default=0.01,
                        help="allowed |metric - its counterpart's| for the check")
    parser.add_argument("--out", type=Path, default=Path("bench.json"))
    parser.add_argument("--profile", action="store_true",
                        help="also profile one training step of `run` and print where its time goes")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    graphed = ["graph", "pack_graph"]
    # On CUDA a pack without graphs is launch-bound (docs/benchmarks.md): timed only when asked for
    default = (["reference", "run", "serial", *graphed] if device.type == "cuda"
               else ["reference", "run", "pack", "serial"])
    paths = args.paths.split(",") if args.paths else default
    unknown = set(paths) - {"reference", "run", "pack", "serial", *graphed}
    if unknown or args.epochs <= 0 or args.seeds <= 0:
        parser.error(f"--paths {sorted(unknown)} unknown" if unknown else "--epochs and --seeds must be positive")
    if device.type != "cuda" and set(paths) & set(graphed):
        parser.error(f"--paths {','.join(graphed)}: CUDA graphs need a CUDA device, not {device}")

    with tempfile.TemporaryDirectory() as tmp:
        data_file = Path(tmp) / "mosi_raw.pkl"  # the handout's layout, read by both loaders
        data_file.write_bytes(pickle.dumps(synthetic_arrays(scale=args.scale)))
        seeds = list(range(1, args.seeds + 1))
        work = {"reference": lambda: reference(data_file, device, args.epochs, seed=42),
                "run": lambda: project(data_file, device, args.epochs, seeds=[42]),
                "pack": lambda: project(data_file, device, args.epochs, seeds=seeds),
                "serial": lambda: [t for seed in seeds for t in project(data_file, device, args.epochs, [seed])],
                "graph": lambda: project(data_file, device, args.epochs, seeds=[42], cuda_graph=True),
                "pack_graph": lambda: project(data_file, device, args.epochs, seeds=seeds, cuda_graph=True)}
        rows = []
        for name in paths:
            seconds, tests, peak = timed(device, work[name])
            rows.append({"path": name, "runs": len(tests), "seconds": seconds, "seconds_per_run": seconds / len(tests),
                         "runs_per_minute": 60 * len(tests) / seconds, "peak_mib": peak,
                         **{f"test_{m}": float(np.mean([t[m] for t in tests])) for m in CHECKED}})
            print(f"{name}: {seconds:.1f} s for {len(tests)} run(s)", file=sys.stderr)

    by_path = {r["path"]: r for r in rows}
    ref = by_path.get("reference")
    ok = True
    for row in rows:
        row["speedup"] = ref["seconds_per_run"] / row["seconds_per_run"] if ref else None
        other = by_path.get(COUNTERPART.get(row["path"], ""))
        row["quality_ok"] = (all(abs(row[f"test_{m}"] - other[f"test_{m}"]) <= args.tolerance for m in CHECKED)
                             if other else None)
        ok &= row["quality_ok"] is not False
    cpu = f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    env = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
           "torch": torch.__version__, "python": platform.python_version(), "msa_ablate": msa_ablate.__version__,
           "epochs": args.epochs, "scale": args.scale}
    print(f"# {env['device']}; torch {env['torch']}; {args.epochs} epochs; data scale {args.scale}")
    print(f"{'path':10} {'runs':>4} {'s/run':>8} {'runs/min':>9} {'x ref':>6} {'peak MiB':>9} "
          f"{'Corr':>6} {'Acc2':>6} quality")
    for r in rows:
        speed = f"{r['speedup']:.2f}" if r["speedup"] else "-"
        quality = {True: "ok", False: "OUT OF RANGE", None: "-"}[r["quality_ok"]]
        print(f"{r['path']:10} {r['runs']:>4} {r['seconds_per_run']:>8.2f} {r['runs_per_minute']:>9.2f} {speed:>6} "
              f"{r['peak_mib']:>9.0f} {r['test_Corr']:>6.3f} {r['test_Non0_acc_2']:>6.3f} {quality}")
    report = {"environment": env, "rows": rows}
    several = [r for r in rows if r["path"] != "reference"]
    if several:  # the issue's `sweep`: K seeds through the fastest path on this device (a one-seed path K times)
        fastest = min(several, key=lambda r: r["seconds_per_run"])
        report["sweep"] = {"path": fastest["path"], "speedup": fastest["speedup"]}
        speed = f", {fastest['speedup']:.2f}x the reference's throughput" if fastest["speedup"] else ""
        print(f"sweep ({args.seeds} seeds): fastest path {fastest['path']}{speed}")
    if args.profile:
        report["profile"] = profile_step(device)
        print("# one training step of the baseline (batch 16), by operator self time:")
        for e in report["profile"]:
            print(f"{e['share']:6.1%} {e['ms_per_step']:7.2f} ms  {e['op']}")
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
