"""GMF, Generalized Matrix Factorization (He et al., Neural Collaborative Filtering, WWW 2017, sec. 3.2).

The paper scores y(u, i) = a_out(h^T (p_u * q_i)) with a learned weight vector h over the element-wise product of
the user and item embeddings (a_out the sigmoid of its log loss; tandem's losses take the raw score). The score is
an inner product once h is moved to the user side: h^T (p_u * q_i) = <h * p_u, q_i>, so the query is h * p_u and the
item table is q. h = 1 with a fixed identity output would be plain MF; GMF learns h.

Defaults: embedding 64 (seed 000 B.2), embeddings normal(0, init_std); h initialised as the paper's output layer
(uniform, fan-in d). The prediction layer's scalar bias is left out: it is the same for every item, so it never
changes a ranking, and a query-independent constant is not an inner product.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from tandem.models.retrievers.mf import MF
from tandem.registry import register_retriever


@register_retriever("gmf")
class GMF(MF):
    """M(i, u) = <h * p_u, q_i>: MF's tables plus the learned weight h. Needs `batch["user"]` [B] (ids 0..U-1)."""

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
        bound = math.sqrt(3.0 / embedding_dim)  # LeCun uniform, the NCF code's init of the output layer h
        self.h = nn.Parameter(torch.empty(embedding_dim).uniform_(-bound, bound))

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.user_embedding(batch["user"]) * self.h
