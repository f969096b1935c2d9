"""Encoders, fusions and heads, composed by one model (MultiBench-style).

A new option is one class in the matching module and one YAML in ``conf/<group>/``.
Interfaces:
- encoder ``(dim) -> module``: ``(B, T, dim), mask (B, T) -> (B, T, dim)``;
- fusion ``(dim, modalities) -> module`` with ``out_dim``: ``{m: (B, T, dim)}, mask -> (B, out_dim)``;
- head ``(in_dim) -> module``: ``(B, in_dim) -> (B,)`` sentiment scores.
"""

from msa_ablate.models.model import MultimodalSentimentModel

__all__ = ["MultimodalSentimentModel"]
