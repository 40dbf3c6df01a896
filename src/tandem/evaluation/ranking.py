"""Full-ranking evaluation of a retriever and two-stage (retrieve-then-rank) evaluation of a pipeline.

Both need only each row's top K (K = the largest cutoff, or the retrieval cutoff), never a full sort: O(N) per row
(`top_k_by_score`). Memory is bounded whatever N: a batch is scored in row chunks of at most SCORE_ELEMENTS scores;
when `score_all` is a retriever's own `score_all` (query @ item_vectors^T), items are chunked too if one row alone
exceeds the budget, and a running top K is merged over the item chunks.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch

from tandem.data.splits import EvalSet
from tandem.evaluation.metrics import merge_top_k, metrics_from_ranks, ranks_in_top, top_k_by_score
from tandem.models.retrievers.base import Retriever

Batch = dict[str, torch.Tensor]

#: Upper bound on the number of scores ([rows, items]) held at once while evaluating (64 MiB of float32).
SCORE_ELEMENTS = 1 << 24


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
    return mask_block(scores.clone(), 0, known, targets)


def mask_block(block: torch.Tensor, offset: int, known: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """In place on `block` = score columns offset .. offset + width - 1: known items -> -inf except the targets,
    and item 0 (padding) -> -inf. Ids outside the block are ignored; padding ids 0 in `known`/`targets` are fine."""
    end = offset + block.shape[1]
    largest = max(int(ids.max()) if ids.numel() else 0 for ids in (known, targets))
    if offset == 0 and end > largest:
        # the block holds every id: plain scatters (the common case: all items in one block)
        saved_scores = block.gather(1, targets)
        block.scatter_(1, known, float("-inf"))
        block.scatter_(1, targets, saved_scores)
        block[:, 0] = float("-inf")
        return block
    t_rows, t_cols = ((targets >= offset) & (targets < end)).nonzero(as_tuple=True)
    t_local = targets[t_rows, t_cols] - offset
    saved = block[t_rows, t_local]
    k_rows, k_cols = ((known >= offset) & (known < end)).nonzero(as_tuple=True)
    block[k_rows, known[k_rows, k_cols] - offset] = float("-inf")
    block[t_rows, t_local] = saved
    if offset == 0 and block.shape[1] > 0:
        block[:, 0] = float("-inf")
    return block


def _retriever_behind(score_all: Callable[[Batch], torch.Tensor]) -> Retriever | None:
    """The retriever when `score_all` is its unmodified `Retriever.score_all` (scores = query @ item_vectors^T),
    which can then be computed for item chunks; None for any other callable (scored whole rows at a time)."""
    owner = getattr(score_all, "__self__", None)
    if isinstance(owner, Retriever) and getattr(score_all, "__func__", None) is Retriever.score_all:
        return owner
    return None


def _rows_of(batch: Batch, rows: slice) -> Batch:
    return {key: value[rows] for key, value in batch.items()}


class BlockScorer:
    """Scores of a batch in blocks of at most SCORE_ELEMENTS entries, each block fresh (safe to mask in place).

    `blocks(batch, rows)` yields (offset, scores [len(rows), width]) covering item columns 0..N in order. A
    retriever's own score_all is scored for the whole batch at once, split over items (query @ item_vectors[chunk]^T,
    the item chunk read once per batch, not once per few rows); any other callable is called on row chunks and must
    return [rows, N+1]. The scores are those of `score_all` (CPU matmuls give the same value per entry whatever the
    split of rows or columns, as long as a chunk has more than one row).
    """

    def __init__(self, score_all: Callable[[Batch], torch.Tensor]) -> None:
        self.score_all = score_all
        self.retriever = _retriever_behind(score_all)
        self.width: int | None = None  # N + 1, learnt from the first call for a plain callable

    def row_chunk(self, batch: Batch, num_rows: int) -> int:
        """How many rows to score together (and sets `width` = N + 1)."""
        if self.retriever is not None:
            self.width = int(self.retriever.item_table().shape[0])
            return max(1, min(num_rows, SCORE_ELEMENTS))
        if self.width is None:
            self.width = int(self.score_all(_rows_of(batch, slice(0, 1))).shape[1])
        return max(1, min(num_rows, SCORE_ELEMENTS // max(1, self.width)))

    def blocks(self, batch: Batch, rows: slice) -> Iterator[tuple[int, torch.Tensor]]:
        sub = _rows_of(batch, rows)
        if self.retriever is None:
            yield 0, self.score_all(sub).float().clone()  # clone: the callable may hand back its own tensor
            return
        query = self.retriever.query(sub)
        vectors = self.retriever.item_vectors()
        step = max(1, SCORE_ELEMENTS // max(1, query.shape[0]))
        if step >= vectors.shape[0]:
            yield 0, (query @ vectors.T).float()  # the very expression of Retriever.score_all
            return
        for offset in range(0, vectors.shape[0], step):
            yield offset, (query @ vectors[offset:offset + step].T).float()


def top_k_masked(
    scorer: BlockScorer, batch: Batch, rows: slice, known: torch.Tensor, targets: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top `k` (values, ids) in ranking order over all items of the `rows` of a batch, known items masked
    (targets kept), padding masked; a running top K over the item blocks."""
    best: tuple[torch.Tensor, torch.Tensor] | None = None
    for offset, block in scorer.blocks(batch, rows):
        top = top_k_by_score(mask_block(block, offset, known, targets), k, offset)
        best = top if best is None else merge_top_k(best, top, k)
    assert best is not None
    return best


def evaluate_batches(
    eval_set: EvalSet,
    rank_batch: Callable[[Batch, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]],
    batch_size: int,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Average per-row metrics over `eval_set`; `rank_batch(batch, targets, known)` returns per-row values.

    Under torch.distributed each process ranks every world_size-th batch and the sums are added over processes
    (a collective: every process calls this at the same point), so all get the same averages."""
    from tandem.training.distributed import current_topology, shard_starts, sum_over_processes

    topology = current_topology()
    totals: dict[str, float] = {}
    rows = len(eval_set)
    for begin in shard_starts(rows, batch_size, topology):
        window = slice(begin, min(rows, begin + batch_size))
        batch = {key: value[window].to(device) for key, value in eval_set.tensors.items()}
        targets = padded_rows(eval_set.target_indptr, eval_set.target_items, window).to(device)
        known = padded_rows(eval_set.known_indptr, eval_set.known_items, window).to(device)
        for name, values in rank_batch(batch, targets, known).items():
            totals[name] = totals.get(name, 0.0) + float(values.sum())
    totals = sum_over_processes(totals, topology)
    return {name: total / max(1, rows) for name, total in totals.items()}


def full_ranking_metrics(
    score_all: Callable[[Batch], torch.Tensor], cutoffs: tuple[int, ...]
) -> Callable[[Batch, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]:
    """Rank every item by `score_all(batch) -> [B, N+1]`, known items masked.

    Only the top max(cutoffs) per row is selected (a rank beyond it is a miss at every cutoff, as +inf is), in row
    chunks (and item chunks for a retriever) of bounded memory.
    """
    scorer = BlockScorer(score_all)
    top = max(cutoffs)

    def rank_batch(batch: Batch, targets: torch.Tensor, known: torch.Tensor) -> dict[str, torch.Tensor]:
        num_rows = targets.shape[0]
        ranks = torch.empty(targets.shape, dtype=torch.float64, device=targets.device)
        step = scorer.row_chunk(batch, num_rows)
        for begin in range(0, num_rows, step):
            rows = slice(begin, min(num_rows, begin + step))
            _, ids = top_k_masked(scorer, batch, rows, known[rows], targets[rows], top)
            ranks[rows] = ranks_in_top(ids, targets[rows])
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

    Retrieval order breaks ties by smaller item id (exact top K, no full sort); ties in the ranker's scores keep
    the retriever's order (stable sort of the K candidates). Candidates scored -inf (masked) never count.
    """
    scorer = BlockScorer(score_all)

    def rank_batch(batch: Batch, targets: torch.Tensor, known: torch.Tensor) -> dict[str, torch.Tensor]:
        num_rows = targets.shape[0]
        ranks = torch.empty(targets.shape, dtype=torch.float64, device=targets.device)
        step = scorer.row_chunk(batch, num_rows)
        k = min(retrieval_cutoff, int(scorer.width) - 1)
        for begin in range(0, num_rows, step):
            rows = slice(begin, min(num_rows, begin + step))
            values, candidates = top_k_masked(scorer, batch, rows, known[rows], targets[rows], k)
            candidate_ok = torch.isfinite(values)
            ranker_scores = rerank(_rows_of(batch, rows), candidates).float()
            ranker_scores = torch.where(candidate_ok, ranker_scores, torch.full_like(ranker_scores, float("-inf")))
            final = torch.argsort(ranker_scores, dim=1, descending=True, stable=True)
            final_items = candidates.gather(1, final).masked_fill(~candidate_ok.gather(1, final), -1)
            ranks[rows] = ranks_in_top(final_items, targets[rows])
        return metrics_from_ranks(ranks, targets > 0, cutoffs)

    return rank_batch
