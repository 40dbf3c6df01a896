"""The ranker contract: score(batch, items [B, L]) -> [B, L], any architecture, its own embeddings."""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn


class Ranker(nn.Module, ABC):
    """R(i, c): an expressive model scoring candidate items for each context of a batch.

    `inputs` names the batch fields `score` reads ("user", "history"; a model whose inputs depend on its options
    sets `self.inputs` in `__init__`); `auxiliary_loss(batch)` is an optional extra objective every scheme adds to
    the step's losses when it is not None (see `Retriever`).
    """

    num_items: int
    inputs: frozenset[str] = frozenset({"user"})
    # True when every nn.Embedding of the model is read only by calling it (never through `.weight`), so its
    # gradient can be sparse (`train.sparse_embeddings` in the cooperative schemes)
    sparse_lookups: bool = False

    def auxiliary_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """An extra loss of the model's own for a training batch (a scalar), or None (the default: none)."""
        return None

    @abstractmethod
    def score(self, batch: dict[str, torch.Tensor], items: torch.Tensor) -> torch.Tensor:
        """Scores [B, L] of candidate `items` [B, L] (item ids 1..N) for the batch's contexts."""
