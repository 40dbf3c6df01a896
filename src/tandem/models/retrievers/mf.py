"""Matrix factorisation: a user embedding as the query, an item embedding table as the item tower."""
from __future__ import annotations

import torch
from torch import nn

from tandem.models.layers import padded_item_embedding
from tandem.models.retrievers.base import Retriever
from tandem.registry import register_retriever


@register_retriever("mf")
class MF(Retriever):
    """M(i, u) = <p_u, q_i>. Needs `batch["user"]` [B] (ids 0..U-1)."""

    inputs = frozenset({"user"})

    def __init__(
        self,
        num_users: int,
        num_items: int,
        embedding_dim: int = 64,
        init_std: float = 0.1,
        similarity: str = "dot",
        tau: float = 10.0,
    ) -> None:
        super().__init__()
        self.set_similarity(similarity, tau)
        self.num_users = num_users
        self.num_items = num_items
        self.user_embedding = nn.Embedding(num_users, embedding_dim)
        nn.init.normal_(self.user_embedding.weight, std=init_std)
        self.item_embedding = padded_item_embedding(num_items, embedding_dim, init_std)

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.user_embedding(batch["user"])

    def item_table(self) -> torch.Tensor:
        return self.item_embedding.weight
