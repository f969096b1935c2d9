"""What a user reads: TensorBoard's names and order, the analysis's choice of sweep, pytest's count."""

import contextlib
import logging
import math
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from analysis.summarize import main as summarize
from msa_ablate import progress
from msa_ablate.config import TrainerConfig
from msa_ablate.data.synthetic import make_synthetic_mosi
from msa_ablate.train import Callback, TrainingDiverged, fit
from tests.conftest import ROOT, TINY, cli, compose_config, main


def test_tensorboard_lists_runs_by_what_they_are_and_the_swept_setting_first(tmp_path):
    sweep = tmp_path / "sweep"
    assert main("-m", *TINY, "loss=mse,l1", "seed=1,2", f"hydra.sweep.dir={sweep}").code == 0
    runs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert runs == [f"data.scale=0.05,loss={loss},seed={s},trainer.device=cpu,trainer.epochs=1"
                    for loss in ("l1", "mse") for s in (1, 2)]
    for run in runs:
        acc = EventAccumulator(str(sweep / run)).Reload()
        experiment = plugin_data_pb2.HParamsPluginData.FromString(
            acc.PluginTagToContent("hparams")["_hparams_/experiment"]).experiment
        # TensorBoard's HPARAMS table sorts the hparams marked as differing first, and shows the first few
        assert {h.name for h in experiment.hparam_infos if h.differs} == {"loss", "seed"}
        assert sorted(acc.Tags()["scalars"])[0].startswith("loss/")  # Time Series opens on the loss curves


def test_the_analysis_takes_the_newest_sweep_with_runs_and_says_which(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main("-m", *TINY, "seed=1,2", "hydra.sweep.dir=multirun/a").code == 0
    assert main("-m", *TINY, "encoder=lstm,lstmm", "hydra.sweep.dir=multirun/b").code == 2  # a typo: no folder
    assert summarize(["--no-plots"]) == 0
    assert "the newest sweep: multirun/a" in capsys.readouterr().err


def test_the_test_command_prints_its_count_whatever_quiet_flag_is_added():
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "tests/test_metrics.py", "-k", "zero"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and " passed" in done.stdout.strip().splitlines()[-1]


def test_progress_lines_say_how_far_a_run_is_and_how_long_is_left(monkeypatch, caplog):
    """Each step takes 1 s on a fake clock: after 4 of 6 steps, 4 s elapsed and 2 s left, whatever
    epoch the trainer is in (a rate from the current epoch's steps alone would say 4 s left)."""
    clock = iter(range(100))
    monkeypatch.setattr(progress.time, "perf_counter", lambda: float(next(clock)))
    training = SimpleNamespace(epochs=2, steps_per_epoch=3, epoch=0, step=lambda idx: 0.0)
    training.step = progress.ShowProgress("run", bar=False, every=0.5).wrap_step(training.step, training)
    with caplog.at_level(logging.INFO, logger="msa_ablate.progress"):
        for epoch in range(2):
            training.epoch = epoch
            for idx in range(3):
                training.step(idx)
    assert caplog.messages[3] == "run: epoch 2/2, step 1/3: 4s elapsed, about 2s left"
    assert caplog.messages[-1] == "run: epoch 2/2, step 3/3: 6s elapsed, about 0s left"


def test_a_run_whose_output_is_no_terminal_prints_plain_progress_lines(tmp_path):
    done = cli(*TINY, "trainer.progress_every=0.001", f"hydra.run.dir={tmp_path}",
               cwd=tmp_path)
    console = done.stdout + done.stderr
    assert done.returncode == 0 and "\r" not in console
    assert re.search(r"epoch 1/1, step \d+/\d+: \d+s elapsed, about \d+s left", console)


class Interrupt(Callback):
    def on_epoch_end(self, training):
        raise KeyboardInterrupt


@pytest.mark.parametrize("ending", ["completed", "early_stop", "diverged", "ctrl_c"])
def test_the_progress_bar_and_its_logging_redirect_close_however_the_fit_ends(ending):
    """on_fit_end runs in a finally: the bar closes and the console's log handler comes back after an
    early stop, a divergence or Ctrl-C, as after the last epoch."""
    data = make_synthetic_mosi(scale=0.05)
    model = instantiate(compose_config().model, _partial_=True)(input_dims=data.dims)
    recipe = TrainerConfig(epochs=3, lr=0.0, patience=1 if ending == "early_stop" else None)
    loss = (lambda p, y: (p - y).pow(2).mean() * math.inf) if ending == "diverged" else torch.nn.MSELoss()
    bar, console, root = progress.ShowProgress("run", bar=True, every=0), logging.StreamHandler(sys.stderr), \
        logging.getLogger()
    root.addHandler(console)
    try:
        with contextlib.suppress(KeyboardInterrupt, TrainingDiverged):
            [result] = fit([model], data, loss, recipe, seeds=[0],
                           callbacks=[bar, *([Interrupt()] if ending == "ctrl_c" else [])])
            assert len(result.history) == (2 if ending == "early_stop" else 3)
        assert console in root.handlers and not any(type(h).__name__ == "_TqdmLoggingHandler" for h in root.handlers)
        assert bar.tqdm is None
    finally:
        root.removeHandler(console)
