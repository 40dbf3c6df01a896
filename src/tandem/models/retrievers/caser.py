"""Caser, convolutional sequence embedding (Tang & Wang, WSDM 2018).

The last L items of the history are stacked into an "image" E [L, d] (sec. 3.1):

- horizontal convolutions: for each height h in 1..L, n_h filters of size h x d slide over E; each output
  c^k = phi_c(E_(i:i+h-1) . F^k) is max-pooled over time, giving o [n_h * L];
- vertical convolutions: n_v filters of size L x 1, each a weighted sum of the L rows, giving o~ [n_v * d]
  (no activation, as in the paper);
- z = phi_a(W [o, o~] + b) [d] after dropout on [o, o~]; the prediction is y_i = W'_i [z, P_u] + b'_i with a user
  embedding P_u [d] and a separate output item table W' [N+1, 2d] with a bias b' (eq. 8).

As a retriever the query is [z, P_u, 1] and the item table [W', b'] (2d + 1 columns; row 0, the padding item,
zero), so the score is exactly the paper's y_i. Histories shorter than L are left-padded with the zero padding
embedding. Defaults: L = 5, n_v = 4, n_h = 16 (the paper), phi_c = phi_a = ReLU (its released code); d = 64 and
dropout 0.3 (seed 000 B.2). The paper trains with T = 3 targets per window and a BCE loss; tandem trains on one
target per window with the run's loss.
"""
from __future__ import annotations

import torch
from torch import nn

from tandem.models.layers import UniformMaskDropout, padded_item_embedding
from tandem.models.rankers.features import make_activation
from tandem.models.retrievers.base import Retriever
from tandem.registry import register_retriever


@register_retriever("caser")
class Caser(Retriever):
    """Needs `batch["user"]` [B] and `batch["history"]` [B, H] (left-padded with 0, most recent item last)."""

    inputs = frozenset({"user", "history"})

    def __init__(
        self,
        num_users: int,
        num_items: int,
        embedding_dim: int = 64,
        window: int = 5,
        num_vertical: int = 4,
        num_horizontal: int = 16,
        conv_activation: str = "relu",
        fc_activation: str = "relu",
        dropout: float = 0.3,
        init_std: float = 0.1,
        similarity: str = "dot",
        tau: float = 10.0,
    ) -> None:
        super().__init__()
        self.set_similarity(similarity, tau)
        if window < 1 or num_vertical < 0 or num_horizontal < 0 or num_vertical + num_horizontal == 0:
            raise ValueError("caser needs window >= 1 and at least one vertical or horizontal filter")
        d = embedding_dim
        self.num_users = num_users
        self.num_items = num_items
        self.window = window
        self.item_embedding = padded_item_embedding(num_items, d, init_std)
        self.user_embedding = nn.Embedding(num_users, d)
        nn.init.normal_(self.user_embedding.weight, std=init_std)
        self.vertical = nn.Conv2d(1, num_vertical, (window, 1)) if num_vertical else None
        heights = range(1, window + 1) if num_horizontal else range(0)
        self.horizontal = nn.ModuleList(nn.Conv2d(1, num_horizontal, (h, d)) for h in heights)
        self.conv_activation = make_activation(conv_activation)
        self.fc = nn.Linear(num_vertical * d + num_horizontal * window, d)
        self.fc_activation = make_activation(fc_activation)
        self.dropout = UniformMaskDropout(dropout)
        self.output_embedding = padded_item_embedding(num_items, 2 * d, init_std)
        self.output_bias = nn.Embedding(num_items + 1, 1, padding_idx=0)
        nn.init.zeros_(self.output_bias.weight)

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        history = batch["history"][:, -self.window:]
        if history.shape[1] < self.window:
            history = nn.functional.pad(history, (self.window - history.shape[1], 0))
        image = self.item_embedding(history).unsqueeze(1)  # [B, 1, L, d]
        features = []
        if self.vertical is not None:
            features.append(self.vertical(image).flatten(1))  # [B, n_v * d]
        for conv in self.horizontal:  # one per filter height, not per user or item
            out = self.conv_activation(conv(image).squeeze(3))  # [B, n_h, L - h + 1]
            features.append(out.max(dim=2).values)  # [B, n_h]
        z = self.fc_activation(self.fc(self.dropout(torch.cat(features, dim=1))))
        user = self.user_embedding(batch["user"])
        return torch.cat([z, user, z.new_ones(z.shape[0], 1)], dim=1)

    def item_table(self) -> torch.Tensor:
        return torch.cat([self.output_embedding.weight, self.output_bias.weight], dim=1)
