"""Unaligned frames onto the text's steps (``data.align``), for fusions that combine the
modalities step by step: each clip's real frames of a modality are resampled (linear
interpolation) or pooled (the mean of consecutive, near-equal segments) to as many values as the
clip has real text steps, and placed at those steps; the rest stays zero."""

from __future__ import annotations

import numpy as np


def onto(x: np.ndarray, mask: np.ndarray, target: np.ndarray, how: str) -> np.ndarray:
    """(N, T_m, D) frames with their (N, T_m) mask -> (N, T, D) on the steps ``target`` (N, T) marks real."""
    out = np.zeros((*target.shape, x.shape[2]), dtype=np.float32)
    for i in range(len(x)):
        frames, steps = x[i][mask[i]], np.flatnonzero(target[i])
        if len(frames) == 0 or len(steps) == 0:
            continue
        if how == "resample":
            # the first and last frames at the first and last steps; onto one step, the middle
            at = np.linspace(0, len(frames) - 1, len(steps)) if len(steps) > 1 else np.array([(len(frames) - 1) / 2])
            low = np.floor(at).astype(int)
            high = np.minimum(low + 1, len(frames) - 1)
            weight = (at - low)[:, None]
            out[i, steps] = frames[low] * (1 - weight) + frames[high] * weight
        else:  # pool; a segment with no frame of its own (fewer frames than steps) takes the frame it falls on
            edges = np.linspace(0, len(frames), len(steps) + 1).round().astype(int)
            for step, start, end in zip(steps, edges[:-1], edges[1:]):
                out[i, step] = frames[start:max(end, start + 1)].mean(0) if start < len(frames) else frames[-1]
    return out
