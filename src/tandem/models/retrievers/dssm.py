"""DSSM, Deep Structured Semantic Model (Huang et al., CIKM 2013), as a user/item two-tower retriever.

The paper maps a query and a document through the same kind of MLP, l_1 = W_1 x, l_k = tanh(W_k l_(k-1) + b_k),
with tanh on every layer including the output (300-300-128), and scores their cosine. Seed 000 (B.1) uses it as a
recommender: "user and item as query and key", each side an MLP, scored by inner product. Here

- user tower input: the user-id embedding and the embeddings of every user feature (FeatureTables), concatenated;
- item tower input: the item-id embedding and the embeddings of every item feature, concatenated;
- each tower: Linear -> tanh (-> dropout) for each of `mlp_hidden`; the last size is the output dimension.

The query is the user tower's output, the item table the item tower applied to every item (row 0, the padding
item, is zero). `similarity: cosine` gives the paper's cosine scaled by `tau`. Defaults: id and feature embeddings
64 and dropout 0.3 (seed 000 B.2), towers 300-300-128 with tanh and weights drawn from
U(+-sqrt(6 / (fan_in + fan_out))) (the paper, sec. 4), biases zero.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tandem.models.layers import padded_item_embedding
from tandem.models.rankers.features import FeatureEmbedding, FeatureInput, make_mlp
from tandem.models.retrievers.base import Retriever
from tandem.registry import register_retriever


@register_retriever("dssm")
class DSSM(Retriever):
    """Two MLP towers over ids and side features. Needs `batch["user"]` [B] (ids 0..U-1)."""

    def __init__(
        self,
        num_users: int,
        num_items: int,
        user_features: FeatureInput = None,
        item_features: FeatureInput = None,
        embedding_dim: int = 64,
        mlp_hidden: Sequence[int] = (300, 300, 128),
        activation: str = "tanh",
        dropout: float = 0.3,
        use_features: bool = True,
        init_std: float = 0.1,
        similarity: str = "dot",
        tau: float = 10.0,
    ) -> None:
        super().__init__()
        self.set_similarity(similarity, tau)
        if len(mlp_hidden) == 0:
            raise ValueError("mlp_hidden must list at least one layer size (the last one is the output dimension)")
        self.num_users = num_users
        self.num_items = num_items
        self.user_embedding = nn.Embedding(num_users, embedding_dim)
        nn.init.normal_(self.user_embedding.weight, std=init_std)
        self.item_embedding = padded_item_embedding(num_items, embedding_dim, init_std)
        self.user_features = FeatureEmbedding(user_features if use_features else None, embedding_dim,
                                              num_rows=num_users, init_std=init_std)
        self.item_features = FeatureEmbedding(item_features if use_features else None, embedding_dim,
                                              num_rows=num_items + 1, init_std=init_std)
        user_in = (1 + self.user_features.num_fields) * embedding_dim
        item_in = (1 + self.item_features.num_fields) * embedding_dim
        self.user_tower = make_mlp(user_in, mlp_hidden, dropout, activation)
        self.item_tower = make_mlp(item_in, mlp_hidden, dropout, activation)
        for layer in [*self.user_tower, *self.item_tower]:
            if isinstance(layer, nn.Linear):  # the paper's init: U(+-sqrt(6 / (fan_in + fan_out))), zero biases
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
        not_padding = torch.ones(num_items + 1, 1)
        not_padding[0] = 0.0
        self.register_buffer("not_padding", not_padding, persistent=False)
        self.register_buffer("all_items", torch.arange(num_items + 1), persistent=False)

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        user = batch["user"]
        fields = torch.cat([self.user_embedding(user).unsqueeze(-2), self.user_features(user)], dim=-2)
        return self.user_tower(fields.flatten(-2))

    def item_table(self) -> torch.Tensor:
        items = self.all_items
        fields = torch.cat([self.item_embedding(items).unsqueeze(-2), self.item_features(items)], dim=-2)
        return self.item_tower(fields.flatten(-2)) * self.not_padding
