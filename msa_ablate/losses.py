"""Training losses (conf/loss/): torch's own, where its arguments need checking first."""

from __future__ import annotations

from torch import nn

from msa_ablate.errors import positive_number


class HuberLoss(nn.HuberLoss):
    """Huber (smooth L1): quadratic within ``delta`` of the label, linear beyond. torch accepts a
    delta <= 0 here and fails on the first batch; this fails at once, naming the key."""

    def __init__(self, delta: float = 1.0) -> None:
        super().__init__(delta=positive_number("loss.delta", delta))
