"""Full-ranking evaluation of a retriever and two-stage (retrieve-then-rank) evaluation of a pipeline."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from tandem.data.splits import EvalSet
from tandem.evaluation.metrics import metrics_from_ranks, ranks_of_targets

Batch = dict[str, torch.Tensor]


def padded_rows(indptr: np.ndarray, items: np.ndarray, rows: slice) -> torch.Tensor:
    """CSR rows `rows` as a [B, T] long tensor padded with 0."""
    begin, end = indptr[rows.start : rows.stop], indptr[rows.start + 1 : rows.stop + 1]
    lengths = end - begin
    width = max(1, int(lengths.max()) if lengths.size else 1)
    out = np.zeros((len(lengths), width), dtype=np.int64)
    row_index = np.repeat(np.arange(len(lengths)), lengths)
    col_index = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[row_index, col_index] = items[np.repeat(begin, lengths) + col_index]
    return torch.from_numpy(out)


def masked_scores(scores: torch.Tensor, known: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Set padding (column 0) and known items to -inf, except the targets themselves."""
    scores = scores.clone()
    target_scores = scores.gather(1, targets)
    scores.scatter_(1, known, float("-inf"))
    scores.scatter_(1, targets, target_scores)
    scores[:, 0] = float("-inf")
    return scores


def evaluate_batches(
    eval_set: EvalSet,
    rank_batch: Callable[[Batch, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]],
    batch_size: int,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Average per-row metrics over `eval_set`; `rank_batch(batch, targets, known)` returns per-row values."""
    totals: dict[str, float] = {}
    rows = len(eval_set)
    for begin in range(0, rows, batch_size):
        window = slice(begin, min(rows, begin + batch_size))
        batch = {key: value[window].to(device) for key, value in eval_set.tensors.items()}
        targets = padded_rows(eval_set.target_indptr, eval_set.target_items, window).to(device)
        known = padded_rows(eval_set.known_indptr, eval_set.known_items, window).to(device)
        for name, values in rank_batch(batch, targets, known).items():
            totals[name] = totals.get(name, 0.0) + float(values.sum())
    return {name: total / max(1, rows) for name, total in totals.items()}


def full_ranking_metrics(
    score_all: Callable[[Batch], torch.Tensor], cutoffs: tuple[int, ...]
) -> Callable[[Batch, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]:
    """Rank every item by `score_all(batch) -> [B, N+1]`, known items masked."""

    def rank_batch(batch: Batch, targets: torch.Tensor, known: torch.Tensor) -> dict[str, torch.Tensor]:
        scores = masked_scores(score_all(batch).float(), known, targets)
        ranks = ranks_of_targets(scores, targets)
        return metrics_from_ranks(ranks, targets > 0, cutoffs)

    return rank_batch


def two_stage_metrics(
    score_all: Callable[[Batch], torch.Tensor],
    rerank: Callable[[Batch, torch.Tensor], torch.Tensor],
    retrieval_cutoff: int,
    cutoffs: tuple[int, ...],
) -> Callable[[Batch, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]:
    """Retrieve the top `retrieval_cutoff` items by `score_all` (known items masked), re-order them by
    `rerank(batch, candidates [B, K]) -> [B, K]`; a target outside the candidates is a miss.

    Ties in the ranker's scores keep the retriever's order (stable sort over the retrieval order).
    """

    def rank_batch(batch: Batch, targets: torch.Tensor, known: torch.Tensor) -> dict[str, torch.Tensor]:
        scores = masked_scores(score_all(batch).float(), known, targets)
        k = min(retrieval_cutoff, scores.shape[1] - 1)
        order = torch.argsort(scores, dim=1, descending=True, stable=True)[:, :k]
        candidate_ok = torch.isfinite(scores.gather(1, order))
        ranker_scores = rerank(batch, order).float()
        ranker_scores = torch.where(candidate_ok, ranker_scores, torch.full_like(ranker_scores, float("-inf")))
        final = torch.argsort(ranker_scores, dim=1, descending=True, stable=True)
        final_items = order.gather(1, final)
        final_ok = candidate_ok.gather(1, final)
        match = (final_items.unsqueeze(1) == targets.unsqueeze(2)) & final_ok.unsqueeze(1)  # [B, T, K]
        position = torch.arange(k, device=scores.device, dtype=torch.float64)
        ranks = torch.where(match, position, torch.full_like(position, float("inf"))).min(2).values
        return metrics_from_ranks(ranks, targets > 0, cutoffs)

    return rank_batch
