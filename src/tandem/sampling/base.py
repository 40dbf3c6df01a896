"""The sampler protocol shared by every negative sampler.

A sampler draws negatives for a batch of queries and reports the normalised log-probability of each draw under the
distribution it really sampled from, so a loss can correct by log Q (seed 000 eqs. 1-2).
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class Sampler(ABC):
    """Draws items in 1..num_items (0 is padding and is never drawn).

    `sample(query [B, d], num, context=None) -> (items [B, num] long, log_q [B, num])`
    `log_prob(query [B, d], items [B, L], context=None) -> log_q [B, L]`
    `context` ([B] long ids of the contexts, e.g. users or training examples) is only used by samplers that keep
    per-context state (AdaSIR pools); the others ignore it.
    `refresh(item_vectors [N+1, d])` is called when the retriever's embeddings move; static samplers ignore it.
    """

    def __init__(self, num_items: int) -> None:
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        self.num_items = int(num_items)

    @abstractmethod
    def sample(
        self, query: torch.Tensor, num: int, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw `num` items per query row; return (items [B, num], log_q [B, num])."""

    @abstractmethod
    def log_prob(
        self, query: torch.Tensor, items: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Normalised log-probability of `items` [B, L] under this sampler's distribution for each query."""

    def refresh(self, item_vectors: torch.Tensor) -> None:  # noqa: B027 - optional hook
        """Rebuild whatever depends on the retriever's item vectors [N+1, d] (row 0 is padding)."""

    @property
    def adaptive(self) -> bool:
        """True when the distribution depends on the model (and so `refresh` matters)."""
        return False
