"""NCF / NeuMF, Neural Collaborative Filtering (He et al., WWW 2017, sec. 3.4), as a retriever.

NeuMF fuses two towers with separate embeddings (eq. 12):

    phi_GMF = p^G_u * q^G_i,   phi_MLP = MLP([p^M_u, q^M_i]),   y(u, i) = h^T [phi_GMF, phi_MLP] + b.

Only the GMF part is an inner product: h_G^T (p^G_u * q^G_i) = <h_G * p^G_u, q^G_i>. The MLP part reads the user
and the item together, so it cannot be indexed. The retriever is therefore the GMF tower, its factorised part:
`query = h_G * p^G_u`, `item_table = q^G` (what training, samplers, evaluation and FAISS use), and the full NeuMF
score is `full_score(batch, items)`.

How the non-factorised scorer is served: retrieve the top K items by the factorised part (exact or FAISS inner
product), then re-score only those K candidates with `full_score` and re-order them, the same retrieve-then-rank
step a ranker takes. The full score is trained by `auxiliary_loss`: the paper's log loss (eq. 7) on each row's
positive and `full_negatives` uniformly drawn items (the paper samples 4 per positive), weighted by `full_weight`;
the run's retriever loss trains the factorised part. Both reach the GMF embeddings, which the towers share with
the retriever; every scheme adds `auxiliary_loss` to the step's losses (`retriever_auxiliary`). With
`full_weight: 0` only the GMF part learns. `tandem recommend`/`serve` re-score the retrieved top K with the full
score (`has_full_score`); a run's own evaluation ranks by the GMF part (all items), and
`benchmarks/retriever_full_score.py` measures the re-scored order on a finished run's test set.

Defaults: embeddings 64 and dropout 0.3 (seed 000 B.2), MLP 128-64 with ReLU (the CoRR authors' NCF config, a
tower halving each layer as the paper prescribes), no pre-training (seed 000 B.1).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from tandem.models.layers import padded_item_embedding
from tandem.models.rankers.features import make_mlp
from tandem.models.retrievers.base import Retriever
from tandem.registry import register_retriever


@register_retriever("ncf")
class NeuMF(Retriever):
    """Retrieval by the GMF tower, <h_G * p^G_u, q^G_i>; `full_score` is NeuMF. Needs `batch["user"]` [B]."""

    has_full_score = True

    def __init__(
        self,
        num_users: int,
        num_items: int,
        embedding_dim: int = 64,
        mlp_hidden: Sequence[int] = (128, 64),
        activation: str = "relu",
        dropout: float = 0.3,
        full_negatives: int = 4,
        full_weight: float = 1.0,
        init_std: float = 0.1,
        similarity: str = "dot",
        tau: float = 10.0,
    ) -> None:
        super().__init__()
        self.set_similarity(similarity, tau)
        if full_negatives < 1:
            raise ValueError(f"full_negatives must be >= 1, got {full_negatives}")
        if full_weight < 0:
            raise ValueError(f"full_weight must be >= 0, got {full_weight}")
        d = embedding_dim
        self.num_users = num_users
        self.num_items = num_items
        self.full_negatives = full_negatives
        self.full_weight = float(full_weight)
        self.user_embedding = nn.Embedding(num_users, d)  # p^G
        self.item_embedding = padded_item_embedding(num_items, d, init_std)  # q^G
        self.mlp_user_embedding = nn.Embedding(num_users, d)  # p^M
        self.mlp_item_embedding = padded_item_embedding(num_items, d, init_std)  # q^M
        nn.init.normal_(self.user_embedding.weight, std=init_std)
        nn.init.normal_(self.mlp_user_embedding.weight, std=init_std)
        self.mlp = make_mlp(2 * d, mlp_hidden, dropout, activation)
        mlp_out = int(mlp_hidden[-1]) if len(mlp_hidden) else 2 * d
        bound = math.sqrt(3.0 / (d + mlp_out))  # LeCun uniform over the fused output layer, as the NCF code
        self.h_gmf = nn.Parameter(torch.empty(d).uniform_(-bound, bound))
        self.h_mlp = nn.Parameter(torch.empty(mlp_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(()))

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.user_embedding(batch["user"]) * self.h_gmf

    def item_table(self) -> torch.Tensor:
        return self.item_embedding.weight

    def full_score(self, batch: dict[str, torch.Tensor], items: torch.Tensor) -> torch.Tensor:
        """NeuMF's score y(u, i) (before the sigmoid) of `items` [B, L] for the batch's users: [B, L]."""
        user = batch["user"]
        gmf = torch.einsum("bd,bld->bl", self.encode(batch), self.item_embedding(items))
        mlp_user = self.mlp_user_embedding(user).unsqueeze(1).expand(-1, items.shape[1], -1)
        joint = torch.cat([mlp_user, self.mlp_item_embedding(items)], dim=-1)
        return gmf + self.mlp(joint) @ self.h_mlp + self.bias

    def auxiliary_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """NCF's log loss (eq. 7) of the full score: the row's positive against `full_negatives` uniform items
        (a negative equal to the positive is left out), averaged over rows, times `full_weight`."""
        if self.full_weight == 0:
            return None
        positive = batch["item"]
        negatives = torch.randint(1, self.num_items + 1, (positive.shape[0], self.full_negatives),
                                  device=positive.device)
        scores = self.full_score(batch, torch.cat([positive.unsqueeze(1), negatives], dim=1))
        keep = (negatives != positive.unsqueeze(1)).to(scores.dtype)
        loss = nn.functional.softplus(-scores[:, 0]) + (nn.functional.softplus(scores[:, 1:]) * keep).sum(1)
        return self.full_weight * loss.mean()
