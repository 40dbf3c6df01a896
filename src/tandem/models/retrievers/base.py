"""The retriever contract: a query tower and an item table, scored by inner product."""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn


class Retriever(nn.Module, ABC):
    """M(i, c) = <query(c), item_vectors()[i]>.

    `query(batch) -> [B, d]`; `item_vectors() -> [N+1, d]` with row 0 the padding item. Everything that scores
    items (training, samplers, evaluation, FAISS serving) goes through these two methods.
    """

    num_items: int

    @abstractmethod
    def query(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Context embedding [B, d]."""

    @abstractmethod
    def item_vectors(self) -> torch.Tensor:
        """All item embeddings [N+1, d], row 0 padding."""

    def score(self, batch: dict[str, torch.Tensor], items: torch.Tensor) -> torch.Tensor:
        """Scores of `items` [B, L] (or [B]) for the batch's contexts."""
        return self.score_with_query(self.query(batch), items)

    def score_with_query(self, query: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        vectors = self.item_vectors()[items]
        if items.dim() == 1:
            return (vectors * query).sum(-1)
        return torch.einsum("bd,bld->bl", query, vectors)

    def score_all(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scores of every item [B, N+1] (column 0 is padding)."""
        return self.query(batch) @ self.item_vectors().T
