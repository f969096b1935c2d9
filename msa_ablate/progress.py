"""How far a run has got, with the time it has taken and an estimate of what remains: a bar where
the output is a terminal (tqdm), and otherwise a plain line now and then, so that a log or CI
gets no carriage returns. It counts the trainer's steps and changes nothing a run computes.
"""

from __future__ import annotations

import logging
import time

from msa_ablate.train import Callback, Step, Training

log = logging.getLogger(__name__)


def duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class ShowProgress(Callback):
    """``bar``: a tqdm bar (for a terminal); else a line every ``every`` seconds (0: none)."""

    def __init__(self, name: str, bar: bool, every: float) -> None:
        self.name, self.bar, self.every = name, bar, every
        self.tqdm = self.redirect = None

    def wrap_step(self, step: Step, training: Training) -> Step:
        total, done = training.epochs * training.steps_per_epoch, training.epoch * training.steps_per_epoch
        if total == done:
            return step
        start = last = time.perf_counter()
        resumed_at = done  # steps a checkpoint had done: not timed here
        if self.bar:
            from tqdm import tqdm  # only where a terminal shows it
            from tqdm.contrib.logging import logging_redirect_tqdm

            self.redirect = logging_redirect_tqdm()  # log lines printed above the bar, not through it
            self.redirect.__enter__()
            self.tqdm = tqdm(total=total, initial=done, desc=self.name, unit="step", dynamic_ncols=True, leave=False)

        def counted(idx):
            nonlocal done, last
            loss = step(idx)
            done += 1
            now = time.perf_counter()
            if self.tqdm is not None:
                self.tqdm.update()
            elif self.every and now - last >= self.every:
                last = now
                epoch, into = divmod(done, training.steps_per_epoch)
                rate = (now - start) / (done - resumed_at)
                log.info("%sepoch %d/%d, step %d/%d: %s elapsed, about %s left", f"{self.name}: " if self.name else "",
                         epoch + (into > 0), training.epochs, into or training.steps_per_epoch,
                         training.steps_per_epoch, duration(now - start), duration(rate * (total - done)))
            return loss

        return counted

    def on_fit_end(self, training: Training) -> None:
        """The bar and the logging redirect close however the fit ended (an early stop, an error, Ctrl-C)."""
        if self.tqdm is not None:
            self.tqdm.close()
            self.redirect.__exit__(None, None, None)
            self.tqdm = self.redirect = None
