"""DCN, Deep & Cross Network (Wang et al., 2017): the general-task ranker of seed 000 Table 3 (DSSM + DCN).

- Embedding and stacking: x0 = [v_user, user feature fields, (pooled history), v_item, item feature fields], each
  field embedded in d (seed 000 B.2: d = 64), so x0 has D = F * d coordinates.
- Cross network (the paper's eq. 3), L1 layers: x_{l+1} = x0 x_l^T w_l + b_l + x_l with w_l, b_l in R^D. Since
  x_l^T w_l is a scalar, a layer is x0 * <x_l, w_l> + b_l + x_l: O(D) per pair, no D x D matrix.
- Deep network in parallel on x0: h_{l+1} = ReLU(W_l h_l + b_l), with dropout (seed 000 B.2: 0.3).
- Combination: the logit w^T [x_L1, h_L2] + b (the paper's sigmoid is left to the loss).

Defaults: 6 cross layers and a deep network of two 1024-unit layers, the paper's best setting on Criteo;
embedding 64 and dropout 0.3 from seed 000's appendix. `use_history=True` adds a field: the masked mean of the
item-id embeddings of `batch["history"]`, as in DeepFM here.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tandem.models.layers import padded_item_embedding
from tandem.models.rankers.base import Ranker
from tandem.models.rankers.features import FeatureEmbedding, FeatureInput, make_mlp, masked_mean
from tandem.registry import register_ranker


class CrossNetwork(nn.Module):
    """`num_layers` cross layers x_{l+1} = x0 <x_l, w_l> + b_l + x_l over vectors of dimension `dim`."""

    def __init__(self, dim: int, num_layers: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.empty(num_layers, dim))
        self.biases = nn.Parameter(torch.zeros(num_layers, dim))
        nn.init.normal_(self.weights, std=dim ** -0.5)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """x_L [..., D] from x0 [..., D]."""
        x = x0
        for weight, bias in zip(self.weights, self.biases):
            x = x0 * (x @ weight).unsqueeze(-1) + bias + x
        return x


@register_ranker("dcn")
class DCN(Ranker):
    """Deep & Cross Network over user/item ids and side features. Needs `batch["user"]` [B]; `batch["history"]`
    [B, H] only when `use_history` (a batch without it counts as an empty history).

    >>> import torch
    >>> model = DCN(num_users=3, num_items=10, embedding_dim=8, mlp_hidden=[16])
    >>> model.score({"user": torch.tensor([0, 2])}, torch.tensor([[1, 2, 3], [4, 5, 6]])).shape
    torch.Size([2, 3])
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        user_features: FeatureInput = None,
        item_features: FeatureInput = None,
        embedding_dim: int = 64,
        cross_layers: int = 6,
        mlp_hidden: Sequence[int] = (1024, 1024),
        dropout: float = 0.3,
        activation: str = "relu",
        use_history: bool = False,
        init_std: float = 0.1,
    ) -> None:
        super().__init__()
        if cross_layers < 0:
            raise ValueError(f"cross_layers must be >= 0, got {cross_layers}")
        self.num_users = num_users
        self.num_items = num_items
        self.use_history = use_history
        self.inputs = frozenset({"user", "history"} if use_history else {"user"})
        d = embedding_dim
        self.user_embedding = nn.Embedding(num_users, d)
        nn.init.normal_(self.user_embedding.weight, std=init_std)
        self.item_embedding = padded_item_embedding(num_items, d, init_std)
        self.user_features = FeatureEmbedding(user_features, d, num_rows=num_users, init_std=init_std)
        self.item_features = FeatureEmbedding(item_features, d, num_rows=num_items + 1, init_std=init_std)
        num_fields = 2 + self.user_features.num_fields + self.item_features.num_fields + int(use_history)
        stacked = num_fields * d
        self.cross = CrossNetwork(stacked, cross_layers)
        self.deep = make_mlp(stacked, mlp_hidden, dropout, activation)
        deep_out = int(mlp_hidden[-1]) if len(mlp_hidden) else stacked
        self.output = nn.Linear(stacked + deep_out, 1)

    def user_side(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The user's part of x0, [B, Fu * d]: user id, user features and (with `use_history`) the pooled history."""
        user = batch["user"]
        fields = [self.user_embedding(user).unsqueeze(1), self.user_features(user)]
        if self.use_history:
            history = batch.get("history")
            if history is None:
                fields.append(fields[0].new_zeros(fields[0].shape))
            else:
                fields.append(masked_mean(self.item_embedding(history), history != 0).unsqueeze(1))
        return torch.cat(fields, dim=1).flatten(1)

    def item_side(self, items: torch.Tensor) -> torch.Tensor:
        """The candidates' part of x0, [B, L, Fi * d]: item id and item features."""
        fields = torch.cat([self.item_embedding(items).unsqueeze(-2), self.item_features(items)], dim=-2)
        return fields.flatten(-2)

    def score(self, batch: dict[str, torch.Tensor], items: torch.Tensor) -> torch.Tensor:
        if items.dim() != 2:
            raise ValueError(f"expected items [B, L], got shape {tuple(items.shape)}")
        user = self.user_side(batch)  # [B, Du]
        x0 = torch.cat([user.unsqueeze(1).expand(*items.shape, user.shape[-1]), self.item_side(items)], dim=-1)
        combined = torch.cat([self.cross(x0), self.deep(x0)], dim=-1)
        return self.output(combined).squeeze(-1)
