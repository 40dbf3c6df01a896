"""LogisticMF, Logistic Matrix Factorization for implicit feedback (Johnson, NIPS 2014 workshop).

The paper models the probability that user u prefers item i as p(l_ui) = sigma(x_u y_i^T + beta_u + beta_i), with
a latent vector and a bias per user and per item (eq. 1). tandem's losses take the logit; it is an inner product of
augmented vectors,

    x_u y_i^T + beta_u + beta_i = <[x_u, beta_u, 1], [y_i, 1, beta_i]>,

so the query is [x_u, beta_u, 1] and the item table [y_i, 1, beta_i] (d + 2 columns; row 0, the padding item, is
all zero). The user bias does not change a user's ranking but does change pointwise losses (`bce`), as in the
paper's likelihood.

The paper's objective is the confidence-weighted log-likelihood, alpha * r_ui * log p + log(1 - p) per pair, with
L2 regularisation lambda: here the loss is the run's `loss:` section, `{name: bce, positive_weight: alpha}` for the
paper's (a training row is one interaction, r_ui = 1; the log(1 - p) sum over items is estimated by the sampled
negatives, so alpha also sets the balance against that estimate), and lambda is `train.weight_decay`.
Defaults: embedding 64 (seed 000 B.2), normal init; biases start at zero.
"""
from __future__ import annotations

import torch
from torch import nn

from tandem.models.retrievers.mf import MF
from tandem.registry import register_retriever


@register_retriever("logisticmf")
class LogisticMF(MF):
    """M(i, u) = x_u y_i^T + beta_u + beta_i: MF's tables plus the two biases. Needs `batch["user"]` [B]."""

    def __init__(
        self,
        num_users: int,
        num_items: int,
        embedding_dim: int = 64,
        init_std: float = 0.1,
        similarity: str = "dot",
        tau: float = 10.0,
    ) -> None:
        super().__init__(num_users, num_items, embedding_dim, init_std, similarity, tau)
        self.user_bias = nn.Embedding(num_users, 1)
        self.item_bias = nn.Embedding(num_items + 1, 1, padding_idx=0)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        ones = torch.ones(num_items + 1, 1)
        ones[0] = 0.0  # the padding item stays the zero vector
        self.register_buffer("item_ones", ones, persistent=False)

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        user = batch["user"]
        latent = self.user_embedding(user)
        return torch.cat([latent, self.user_bias(user), latent.new_ones(latent.shape[0], 1)], dim=-1)

    def item_table(self) -> torch.Tensor:
        return torch.cat([self.item_embedding.weight, self.item_ones, self.item_bias.weight], dim=-1)
