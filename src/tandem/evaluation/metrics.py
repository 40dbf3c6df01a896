"""Top-K metrics from the 0-based ranks of each row's targets.

Definitions (averaged over evaluation rows; `ranks` [B, T] with padding targets marked invalid):
- Hit@K    = 1 if any target ranks in the top K.
- Recall@K = (targets in the top K) / (number of targets).
- NDCG@K   = sum over targets in the top K of 1/log2(rank + 2), divided by the ideal DCG over min(targets, K).
- MRR@K    = 1 / (rank + 1) of the best-ranked target if it is in the top K, else 0.
A target that was never ranked (outside a two-stage pipeline's candidates) has rank = +inf: a miss at every K.
"""
from __future__ import annotations

import torch

METRICS = ("recall", "ndcg", "mrr", "hit")


def metrics_from_ranks(ranks: torch.Tensor, valid: torch.Tensor, cutoffs: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Per-row metric values [B] for every metric@K; `ranks` float [B, T] (inf = miss), `valid` bool [B, T]."""
    ranks = ranks.double()
    num_targets = valid.sum(1).clamp_min(1).double()
    gains = torch.where(valid, 1.0 / torch.log2(ranks + 2.0), torch.zeros_like(ranks))
    discounts = 1.0 / torch.log2(torch.arange(ranks.shape[1], device=ranks.device, dtype=torch.float64) + 2.0)
    ideal_cumulative = torch.cumsum(discounts, 0)
    best = torch.where(valid, ranks, torch.full_like(ranks, float("inf"))).min(1).values
    out: dict[str, torch.Tensor] = {}
    for k in cutoffs:
        inside = valid & (ranks < k)
        ideal = ideal_cumulative[(torch.minimum(num_targets, torch.tensor(float(k))) - 1).long()]
        out[f"recall@{k}"] = inside.sum(1) / num_targets
        out[f"ndcg@{k}"] = (gains * inside).sum(1) / ideal
        out[f"mrr@{k}"] = torch.where(best < k, 1.0 / (best + 1.0), torch.zeros_like(best))
        out[f"hit@{k}"] = inside.any(1).double()
    return out


def ranks_of_targets(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of each target among all columns of `scores` [B, N+1] (masked columns hold -inf).

    Ties are broken deterministically by item id: among equal scores the smaller id ranks first. Implemented with
    a stable sort so the cost is O(N log N) per row whatever the number of targets.
    """
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    positions = torch.empty_like(order)
    positions.scatter_(1, order, torch.arange(scores.shape[1], device=scores.device).expand_as(order))
    return positions.gather(1, targets).double()
