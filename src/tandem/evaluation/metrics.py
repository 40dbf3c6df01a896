"""Top-K metrics from the 0-based ranks of each row's targets, and the exact top-K selection they are built on.

Definitions (averaged over evaluation rows; `ranks` [B, T] with padding targets marked invalid):
- Hit@K    = 1 if any target ranks in the top K.
- Recall@K = (targets in the top K) / (number of targets).
- NDCG@K   = sum over targets in the top K of 1/log2(rank + 2), divided by the ideal DCG over min(targets, K).
- MRR@K    = 1 / (rank + 1) of the best-ranked target if it is in the top K, else 0.
A target that was never ranked (outside a two-stage pipeline's candidates) has rank = +inf: a miss at every K.

Order: items are ranked by score, higher first; equal scores are broken by item id, smaller first. Every function
here follows that one rule, in O(N) per row (no full sort): `ranks_of_targets` counts, `top_k_by_score` selects
with `torch.topk` and then repairs what topk leaves unspecified (which of several equal scores it keeps at the
boundary, and their order). Scores must not be NaN.
"""
from __future__ import annotations

import torch

METRICS = ("recall", "ndcg", "mrr", "hit")

#: Upper bound on the number of [rows, targets, items] comparisons materialised at once by `ranks_of_targets`.
COMPARE_ELEMENTS = 1 << 24


def metrics_from_ranks(ranks: torch.Tensor, valid: torch.Tensor, cutoffs: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Per-row metric values [B] for every metric@K; `ranks` float [B, T] (inf = miss), `valid` bool [B, T].

    Only ranks below max(cutoffs) matter: any rank >= max(cutoffs) gives the same values as +inf.
    """
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
    """0-based rank of each target among all columns of `scores` [B, N+1] (masked columns hold -inf), float64.

    rank(t) = #{i: s_i > s_t} + #{i < t: s_i = s_t} -- ties broken by item id, smaller first -- counted in O(N)
    per target (no sort), in row chunks so at most COMPARE_ELEMENTS comparisons are held at once.
    """
    rows, width = scores.shape
    target_scores = scores.gather(1, targets).unsqueeze(2)  # [B, T, 1]
    ids = torch.arange(width, device=scores.device)
    out = torch.empty(targets.shape, dtype=torch.float64, device=scores.device)
    step = max(1, COMPARE_ELEMENTS // max(1, targets.shape[1] * width))
    for begin in range(0, rows, step):
        block = scores[begin:begin + step].unsqueeze(1)  # [b, 1, N+1]
        value, target = target_scores[begin:begin + step], targets[begin:begin + step].unsqueeze(2)
        before = (block > value) | ((block == value) & (ids < target))
        out[begin:begin + step] = before.sum(2).double()
    return out


def sort_by_score_then_id(values: torch.Tensor, ids: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `k` of each row of (values, ids) [B, M] in ranking order (value desc, id asc); for short rows.

    Two stable sorts: by id, then by value (descending) -- equal values keep the id order.
    """
    by_id = torch.argsort(ids, dim=1, stable=True)
    values, ids = values.gather(1, by_id), ids.gather(1, by_id)
    order = torch.argsort(values, dim=1, descending=True, stable=True)[:, :k]
    return values.gather(1, order), ids.gather(1, order)


def top_k_by_score(scores: torch.Tensor, k: int, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The top `k` columns of each row of `scores` [B, M] in ranking order: (values [B, k'], ids [B, k']) with
    k' = min(k, M) and ids = column + `offset`. O(M) per row (topk) instead of a full sort.

    torch.topk does not say which of several equal values it keeps when they straddle the k-th place; topk of k+1
    finds the rows where that happens (value k+1 equals value k) and those rows are redone exactly: everything
    above the k-th value, then the smallest-id columns equal to it (a cumulative count over the row).
    """
    width = scores.shape[1]
    k = min(k, width)
    if k == 0:
        empty = scores.new_empty(scores.shape[0], 0)
        return empty, empty.long()
    values, columns = torch.topk(scores, min(k + 1, width), dim=1)
    if values.shape[1] > k:
        straddle = values[:, k] == values[:, k - 1]
        values, columns = values[:, :k].contiguous(), columns[:, :k].contiguous()
        if bool(straddle.any()):
            rows = straddle.nonzero().squeeze(1)
            sub = scores[rows]
            threshold = values[rows, k - 1 :]
            above = sub > threshold
            equal = sub == threshold
            need = k - above.sum(1, keepdim=True)
            chosen = above | (equal & (torch.cumsum(equal, dim=1) <= need))
            fixed = chosen.nonzero()[:, 1].view(rows.shape[0], k)
            columns[rows] = fixed
            values[rows] = sub.gather(1, fixed)
    return sort_by_score_then_id(values, columns + offset, k)


def merge_top_k(
    first: tuple[torch.Tensor, torch.Tensor], second: tuple[torch.Tensor, torch.Tensor], k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Running top-K: the best `k` of two (values, ids) lists of disjoint items, in ranking order."""
    return sort_by_score_then_id(torch.cat([first[0], second[0]], 1), torch.cat([first[1], second[1]], 1), k)


def ranks_in_top(top_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Rank [B, T] (float64) of each target as its position in `top_ids` [B, K] (distinct ids per row), +inf when
    absent. Exact for every rank < K: the top K in ranking order places each item at its global rank.

    A binary search of the targets in each row's sorted ids: O((T + K) log K) per row, memory O(B (T + K)).
    """
    if top_ids.shape[1] == 0:
        return torch.full(targets.shape, float("inf"), dtype=torch.float64, device=targets.device)
    sorted_ids, position = torch.sort(top_ids, dim=1)
    slot = torch.searchsorted(sorted_ids, targets.contiguous()).clamp_max(top_ids.shape[1] - 1)
    found = sorted_ids.gather(1, slot) == targets
    inf = torch.full(targets.shape, float("inf"), dtype=torch.float64, device=targets.device)
    return torch.where(found, position.gather(1, slot).double(), inf)
