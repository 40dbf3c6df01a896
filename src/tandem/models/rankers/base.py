"""The ranker contract: score(batch, items [B, L]) -> [B, L], any architecture, its own embeddings."""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn


class Ranker(nn.Module, ABC):
    """R(i, c): an expressive model scoring candidate items for each context of a batch."""

    num_items: int

    @abstractmethod
    def score(self, batch: dict[str, torch.Tensor], items: torch.Tensor) -> torch.Tensor:
        """Scores [B, L] of candidate `items` [B, L] (item ids 1..N) for the batch's contexts."""
