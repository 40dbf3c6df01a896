"""SASRec: a causal Transformer over the item history; the last position's state is the query.

Defaults follow seed 000 B.2: one layer, two heads, feed-forward 128, dimension 64, dropout 0.3. Item vectors are
the (shared) input item embeddings, so retrieval is an inner product with the item table.
"""
from __future__ import annotations

import torch
from torch import nn

from tandem.models.layers import UniformMaskDropout, padded_item_embedding, transformer_encoder
from tandem.models.retrievers.base import Retriever
from tandem.registry import register_retriever


@register_retriever("sasrec")
class SASRec(Retriever):
    """Needs `batch["history"]` [B, H] of item ids, left-padded with 0 (most recent item last)."""

    inputs = frozenset({"history"})

    def __init__(
        self,
        num_items: int,
        embedding_dim: int = 64,
        num_layers: int = 1,
        num_heads: int = 2,
        feedforward_dim: int = 128,
        dropout: float = 0.3,
        max_seq_len: int = 20,
        similarity: str = "dot",
        tau: float = 10.0,
    ) -> None:
        super().__init__()
        self.set_similarity(similarity, tau)
        self.num_items = num_items
        self.max_seq_len = max_seq_len
        self.item_embedding = padded_item_embedding(num_items, embedding_dim, init_std=0.02)
        self.position_embedding = nn.Embedding(max_seq_len, embedding_dim)
        self.encoder = transformer_encoder(embedding_dim, num_heads, feedforward_dim, dropout, num_layers,
                                           norm_first=True)
        self.input_norm = nn.LayerNorm(embedding_dim)
        self.output_norm = nn.LayerNorm(embedding_dim)
        self.dropout = UniformMaskDropout(dropout)
        nn.init.normal_(self.position_embedding.weight, std=0.02)
        causal = torch.triu(torch.ones(max_seq_len, max_seq_len, dtype=torch.bool), diagonal=1)
        self.register_buffer("causal_mask", causal, persistent=False)

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        history = batch["history"][:, -self.max_seq_len :]
        length = history.shape[1]
        positions = torch.arange(length, device=history.device) + (self.max_seq_len - length)
        hidden = self.item_embedding(history) * (self.item_embedding.embedding_dim**0.5)
        hidden = self.dropout(self.input_norm(hidden + self.position_embedding(positions)))
        padding = history == 0
        padding[:, -1] = False  # the last slot always attends to itself, so an empty history stays finite
        mask = self.causal_mask[-length:, -length:]
        hidden = self.encoder(hidden, mask=mask, src_key_padding_mask=padding)
        return self.output_norm(hidden[:, -1])

    def item_table(self) -> torch.Tensor:
        return self.item_embedding.weight
