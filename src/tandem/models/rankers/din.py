"""DIN, Deep Interest Network (Zhou et al., 2018): the ranker of the sequential task in seed 000 (B.2: activation
unit with hidden size 64 and sigmoid activation, prediction MLP 200-80, embedding 64, dropout 0.3).

- Item representation e(i): the item-id embedding; with item features, the concatenation [id, feature fields]
  projected linearly back to d (the same map for candidates and history items).
- Activation unit: a(h, c) = w^T sigmoid(W [h, c, h - c, h * c] + b) + b' for each history item h and candidate c.
  W is applied in its decomposed form (W_h + W_d) h + (W_c - W_d) c + W_p (h * c), which is the same function
  without materialising the [B, L, H, 4d] input.
- Interest: sum_h a(h, c) e(h) over the non-padding positions (history id 0 is masked out). As in DIN the weights
  are NOT softmax-normalised, so the pooled vector keeps the intensity of the interest.
- Prediction: MLP over [user id (optional), user feature fields, interest, e(c), interest * e(c)] -> scalar,
  plus a per-item bias b(c). The interest * e(c) field and the item bias are what the authors' DIN scorer has
  (seed 000's code); both can be switched off (`interest_product`, `item_bias`) for the plain DIN of the DIN paper.

Everything is batched over B rows x L candidates x H history positions; no Python loop.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tandem.models.layers import padded_item_embedding
from tandem.models.rankers.base import Ranker
from tandem.models.rankers.features import FeatureEmbedding, FeatureInput, make_activation, make_mlp
from tandem.registry import register_ranker


class ActivationUnit(nn.Module):
    """DIN's local activation unit over [h, c, h - c, h * c], one hidden layer (sigmoid by default)."""

    def __init__(self, dim: int, hidden: int = 64, activation: str = "sigmoid") -> None:
        super().__init__()
        self.dim = dim
        self.hidden = nn.Linear(4 * dim, hidden)
        self.activation = make_activation(activation, hidden)
        self.output = nn.Linear(hidden, 1)

    def forward(self, history: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Raw attention weights [B, L, H] of `history` [B, H, d] for each of `candidates` [B, L, d]."""
        d = self.dim
        w_h, w_c, w_d, w_p = self.hidden.weight.split(d, dim=1)  # each [hidden, d]
        from_history = history @ (w_h + w_d).t()  # [B, H, hidden]
        from_candidate = candidates @ (w_c - w_d).t() + self.hidden.bias  # [B, L, hidden]
        product = (candidates.unsqueeze(2) * history.unsqueeze(1)) @ w_p.t()  # [B, L, H, hidden]
        pre = product + from_history.unsqueeze(1) + from_candidate.unsqueeze(2)
        return self.output(self.activation(pre)).squeeze(-1)

    def reference(self, history: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """The same weights computed from the explicit concatenation (for tests; memory-hungry)."""
        h = history.unsqueeze(1).expand(-1, candidates.shape[1], -1, -1)
        c = candidates.unsqueeze(2).expand_as(h)
        return self.output(self.activation(self.hidden(torch.cat([h, c, h - c, h * c], dim=-1)))).squeeze(-1)


@register_ranker("din")
class DIN(Ranker):
    """Deep Interest Network. Needs `batch["history"]` [B, H] (left-padded with 0) and `batch["user"]` [B] when
    it uses user ids or user features.

    >>> import torch
    >>> model = DIN(num_users=3, num_items=10, embedding_dim=8)
    >>> batch = {"user": torch.tensor([0, 1]), "history": torch.tensor([[0, 3, 4], [0, 0, 0]])}
    >>> model.score(batch, torch.tensor([[1, 2], [5, 6]])).shape
    torch.Size([2, 2])
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        user_features: FeatureInput = None,
        item_features: FeatureInput = None,
        embedding_dim: int = 64,
        attention_hidden: int = 64,
        attention_activation: str = "sigmoid",
        mlp_hidden: Sequence[int] = (200, 80),
        mlp_activation: str = "relu",
        dropout: float = 0.3,
        use_user_id: bool = False,
        interest_product: bool = True,
        item_bias: bool = True,
        init_std: float = 0.1,
    ) -> None:
        super().__init__()
        self.num_users = num_users
        self.num_items = num_items
        self.use_user_id = use_user_id
        self.interest_product = interest_product
        d = embedding_dim
        self.item_embedding = padded_item_embedding(num_items, d, init_std)
        self.item_features = FeatureEmbedding(item_features, d, num_rows=num_items + 1, init_std=init_std)
        self.item_projection = (
            nn.Linear((1 + self.item_features.num_fields) * d, d) if self.item_features.num_fields else None
        )
        self.user_embedding = nn.Embedding(num_users, d) if use_user_id else None
        if self.user_embedding is not None:
            nn.init.normal_(self.user_embedding.weight, std=init_std)
        self.user_features = FeatureEmbedding(user_features, d, num_rows=num_users, init_std=init_std)
        self.attention = ActivationUnit(d, attention_hidden, attention_activation)
        num_user_fields = int(use_user_id) + self.user_features.num_fields
        in_dim = (num_user_fields + 2 + int(interest_product)) * d
        self.mlp = make_mlp(in_dim, mlp_hidden, dropout, mlp_activation)
        self.output = nn.Linear(int(mlp_hidden[-1]) if len(mlp_hidden) else in_dim, 1)
        self.item_bias = nn.Embedding(num_items + 1, 1, padding_idx=0) if item_bias else None
        if self.item_bias is not None:
            nn.init.zeros_(self.item_bias.weight)

    def item_representation(self, items: torch.Tensor) -> torch.Tensor:
        """e(i) [..., d] for item ids [...]."""
        embedded = self.item_embedding(items)
        if self.item_projection is None:
            return embedded
        fields = torch.cat([embedded.unsqueeze(-2), self.item_features(items)], dim=-2)
        return self.item_projection(fields.flatten(-2))

    def interest(self, history: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Attention-pooled history [B, L, d] for candidate representations [B, L, d]; padding (id 0) masked."""
        history_vectors = self.item_representation(history)  # [B, H, d]
        weights = self.attention(history_vectors, candidates)  # [B, L, H]
        weights = weights.masked_fill((history == 0).unsqueeze(1), 0.0)
        return weights @ history_vectors

    def score(self, batch: dict[str, torch.Tensor], items: torch.Tensor) -> torch.Tensor:
        if items.dim() != 2:
            raise ValueError(f"expected items [B, L], got shape {tuple(items.shape)}")
        if "history" not in batch:
            raise ValueError("DIN needs batch['history'] [B, H] (item ids, left-padded with 0)")
        batch_size, length = items.shape
        candidates = self.item_representation(items)  # [B, L, d]
        interest = self.interest(batch["history"], candidates)
        parts = [interest, candidates]
        if self.interest_product:
            parts.append(interest * candidates)
        if self.user_embedding is not None or self.user_features.num_fields:
            user = batch["user"]
            user_fields = [self.user_features(user)]
            if self.user_embedding is not None:
                user_fields.insert(0, self.user_embedding(user).unsqueeze(1))
            flat = torch.cat(user_fields, dim=1).flatten(1)  # [B, Fu * d]
            parts.insert(0, flat.unsqueeze(1).expand(batch_size, length, flat.shape[-1]))
        scores = self.output(self.mlp(torch.cat(parts, dim=-1))).squeeze(-1)
        if self.item_bias is not None:
            scores = scores + self.item_bias(items).squeeze(-1)
        return scores
