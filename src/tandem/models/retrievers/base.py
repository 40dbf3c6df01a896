"""The retriever contract: a query tower and an item table, scored by inner product."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn


SIMILARITIES = ("dot", "cosine")


def score_items(query: torch.Tensor, vectors: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """The one candidate-scoring step: <query_b, vectors[i]> for the items `items` [B, L] of each row (-> [B, L]),
    or one item per row `items` [B] (-> [B]). `vectors` [N+1, d] is `Retriever.item_vectors()`, computed once
    by a caller that scores several item sets."""
    if items.dim() == 1:
        return (query * vectors[items]).sum(-1)
    return torch.einsum("bd,bld->bl", query, vectors[items])


def with_positive(positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Candidates [B, 1 + L]: each row's positive first, then its negatives [B, L]."""
    return torch.cat([positives.unsqueeze(1), negatives], dim=1)


class Retriever(nn.Module, ABC):
    """M(i, c) = <query(c), item_vectors()[i]>.

    `query(batch) -> [B, d]`; `item_vectors() -> [N+1, d]` with row 0 the padding item. Everything that scores
    items (training, samplers, evaluation, FAISS serving) goes through these two methods. Subclasses implement
    `encode(batch)` and `item_table()`; with `similarity="cosine"` both sides are L2-normalised and the query is
    scaled by `tau`, so the inner product is S = tau * cos(u, v) (seed 002 sec. 4.1) and stays an inner product.

    `inputs` names the batch fields `query` reads ("user": ids 0..U-1, "history": [B, H] item ids left-padded with
    0); serving and the data checks ask it (a model reading "history" needs the sequential task; one reading
    "user" cannot serve an anonymous history). A model whose inputs depend on its options sets `self.inputs` in
    `__init__`. `auxiliary_loss(batch)` is an optional extra objective of the model's own (a masked-item loss, a
    second scorer's loss): every scheme adds it to the step's losses when it is not None.

    A model whose own score is more than the indexed inner product (NeuMF: the GMF part is indexed, the MLP part is
    not) sets `has_full_score` and implements `full_score(batch, items)`: serving re-scores the retrieved
    candidates with it, the retrieve-then-rank step a ranker takes.
    """

    num_items: int
    inputs: frozenset[str] = frozenset({"user"})
    similarity: str = "dot"
    tau: float = 1.0
    has_full_score: bool = False

    def full_score(self, batch: dict[str, torch.Tensor], items: torch.Tensor) -> torch.Tensor:
        """The model's own score [B, L] of candidate `items` [B, L], for a model with `has_full_score`."""
        raise NotImplementedError(f"{type(self).__name__} scores by its inner product alone")

    def set_similarity(self, similarity: str, tau: float) -> None:
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.similarity, self.tau = similarity, float(tau)

    def auxiliary_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """An extra loss of the model's own for a training batch (a scalar), or None (the default: none)."""
        return None

    @abstractmethod
    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Raw context embedding [B, d]."""

    @abstractmethod
    def item_table(self) -> torch.Tensor:
        """Raw item embeddings [N+1, d], row 0 padding."""

    def query(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Context embedding [B, d] as used for scoring."""
        query = self.encode(batch)
        if self.similarity == "cosine":
            query = self.tau * nn.functional.normalize(query, dim=-1)
        return query

    def item_vectors(self) -> torch.Tensor:
        """All item embeddings [N+1, d] as used for scoring, row 0 padding."""
        table = self.item_table()
        return nn.functional.normalize(table, dim=-1) if self.similarity == "cosine" else table

    def training_item_vectors(self) -> Any:
        """What a training step indexes (`vectors[items]`) to score items: `item_vectors()`, or, with
        `train.sparse_embeddings`, a lookup whose gradient holds only the rows used (training/sparse.py)."""
        rows = getattr(self, "training_rows", None)
        return self.item_vectors() if rows is None else rows

    def score(self, batch: dict[str, torch.Tensor], items: torch.Tensor) -> torch.Tensor:
        """Scores of `items` [B, L] (or [B]) for the batch's contexts."""
        return self.score_with_query(self.query(batch), items)

    def score_with_query(self, query: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return score_items(query, self.item_vectors(), items)

    def score_all(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scores of every item [B, N+1] (column 0 is padding)."""
        return self.query(batch) @ self.item_vectors().T
