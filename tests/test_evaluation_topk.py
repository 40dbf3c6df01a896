"""The O(N)-per-row evaluation (issue 10, sec. 2) against plain per-row Python references, on data full of exact ties.

The references sort every row with Python's `sorted` and the key (-score, id) -- the documented order -- and look
the targets up in that list; the code under test never sorts a row, it counts or takes an exact top K, in row
chunks and (for a retriever) item chunks with a running top K. Chunking is forced by shrinking the budgets.
"""
import math

import numpy as np
import pytest
import torch

from tandem.data.splits import EvalSet
from tandem.evaluation import evaluate_batches, full_ranking_metrics, ranks_of_targets, two_stage_metrics
from tandem.evaluation import metrics as metrics_module
from tandem.evaluation import ranking as ranking_module
from tandem.evaluation.metrics import merge_top_k, top_k_by_score
from tandem.models.retrievers.mf import MF

NAMES = ("recall", "ndcg", "mrr", "hit")


def reference_order(row: np.ndarray, allowed: list[int]) -> list[int]:
    """Items of `allowed` in ranking order: score descending, then id ascending."""
    return sorted(allowed, key=lambda item: (-float(row[item]), item))


def reference_metrics(ranked: list[list[int]], targets: list[list[int]], cutoffs) -> dict[str, float]:
    """Mean metrics from each row's ranked list (targets absent from the list are misses)."""
    total = {f"{n}@{k}": 0.0 for k in cutoffs for n in NAMES}
    for order, wanted in zip(ranked, targets):
        where = {item: position for position, item in enumerate(order)}
        for k in cutoffs:
            hits = sorted(where[t] for t in wanted if t in where and where[t] < k)
            ideal = sum(1.0 / math.log2(p + 2) for p in range(min(len(wanted), k)))
            total[f"recall@{k}"] += len(hits) / len(wanted)
            total[f"ndcg@{k}"] += sum(1.0 / math.log2(p + 2) for p in hits) / ideal
            total[f"mrr@{k}"] += 1.0 / (hits[0] + 1) if hits else 0.0
            total[f"hit@{k}"] += 1.0 if hits else 0.0
    return {key: value / len(targets) for key, value in total.items()}


def reference_full(scores: np.ndarray, targets, known, cutoffs) -> dict[str, float]:
    ranked = []
    for r in range(len(targets)):
        allowed = [i for i in range(1, scores.shape[1]) if i not in known[r] or i in targets[r]]
        ranked.append(reference_order(scores[r], allowed))
    return reference_metrics(ranked, targets, cutoffs)


def reference_two_stage(retriever: np.ndarray, ranker: np.ndarray, targets, known, cutoff_k, cutoffs):
    ranked = []
    for r in range(len(targets)):
        allowed = [i for i in range(1, retriever.shape[1]) if i not in known[r] or i in targets[r]]
        retrieved = reference_order(retriever[r], allowed)[:cutoff_k]
        # ranker ties keep the retrieval order: the retrieval position is the second key
        ranked.append([item for _, _, item in sorted((-float(ranker[r, item]), p, item)
                                                      for p, item in enumerate(retrieved))])
    return reference_metrics(ranked, targets, cutoffs)


def tied_case(seed: int, rows: int, items: int, levels: int = 4):
    """Integer scores in 0..levels-1 (every row full of exact ties), random targets and known items per row."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, size=(rows, items + 1)).astype(np.float32)
    targets, known = [], []
    for _ in range(rows):
        chosen = rng.choice(np.arange(1, items + 1), size=int(rng.integers(2, min(items, 14))), replace=False)
        split = int(rng.integers(1, len(chosen)))
        targets.append([int(i) for i in chosen[:split]])
        known.append({int(i) for i in chosen[split:]})
    return scores, targets, known


def eval_set_of(targets, known) -> EvalSet:
    return EvalSet(
        {"user": torch.arange(len(targets))},
        np.cumsum([0] + [len(t) for t in targets]), np.concatenate([np.array(t) for t in targets]).astype(np.int64),
        np.cumsum([0] + [len(k) for k in known]),
        np.concatenate([np.array(sorted(k), dtype=np.int64) for k in known]),
    )


def assert_same(got: dict[str, float], expected: dict[str, float]) -> None:
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert abs(got[key] - value) < 1e-12, (key, got[key], value)


@pytest.mark.parametrize("budget", [1 << 24, 100])  # one block per batch / a few rows per block
def test_full_ranking_equals_python_sorted_reference_with_ties(monkeypatch, budget):
    monkeypatch.setattr(ranking_module, "SCORE_ELEMENTS", budget)
    cutoffs = (1, 3, 10, 25)
    for seed, items in ((0, 40), (1, 12)):  # 12 items: fewer finite scores than the largest cutoff
        scores, targets, known = tied_case(seed, rows=29, items=items)
        table = torch.from_numpy(scores)
        got = evaluate_batches(eval_set_of(targets, known), full_ranking_metrics(lambda b: table[b["user"]], cutoffs), 8)
        assert_same(got, reference_full(scores, targets, known, cutoffs))


def integer_mf(num_users: int, num_items: int, seed: int) -> MF:
    """MF with small-integer embeddings: every score is an exact integer, so ties are many and exact."""
    model = MF(num_users, num_items, embedding_dim=4)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.user_embedding.weight.copy_(torch.randint(-1, 2, (num_users, 4), generator=g).float())
        model.item_embedding.weight.copy_(torch.randint(-1, 2, (num_items + 1, 4), generator=g).float())
    return model


def test_retriever_scored_in_item_chunks_with_running_top_k(monkeypatch):
    """A retriever's score_all is split over items when one row exceeds the budget; every block stays within it."""
    rows, items, budget = 23, 90, 64
    model = integer_mf(rows, items, seed=3)
    _, targets, known = tied_case(4, rows=rows, items=items)
    scores = (model.user_embedding.weight @ model.item_embedding.weight.T).detach().numpy()
    sizes = []
    original = ranking_module.top_k_by_score

    def spy(block, k, offset=0):
        sizes.append(block.numel())
        return original(block, k, offset)

    monkeypatch.setattr(ranking_module, "SCORE_ELEMENTS", budget)
    monkeypatch.setattr(ranking_module, "top_k_by_score", spy)
    cutoffs = (1, 5, 20)
    with torch.no_grad():
        got = evaluate_batches(eval_set_of(targets, known), full_ranking_metrics(model.score_all, cutoffs), 16)
        assert_same(got, reference_full(scores, targets, known, cutoffs))
        assert max(sizes) <= budget and len(sizes) > rows  # several item blocks per row
        ranker = np.random.default_rng(5).integers(0, 3, size=scores.shape).astype(np.float32)
        table = torch.from_numpy(ranker)
        pipeline = two_stage_metrics(model.score_all, lambda b, c: table[b["user"]].gather(1, c), 15, cutoffs)
        got = evaluate_batches(eval_set_of(targets, known), pipeline, 16)
        assert_same(got, reference_two_stage(scores, ranker, targets, known, 15, cutoffs))


@pytest.mark.parametrize("budget", [1 << 24, 100])
def test_two_stage_equals_python_sorted_reference_with_ties(monkeypatch, budget):
    monkeypatch.setattr(ranking_module, "SCORE_ELEMENTS", budget)
    cutoffs = (1, 3, 10)
    scores, targets, known = tied_case(6, rows=31, items=50)
    ranker = np.random.default_rng(7).integers(0, 3, size=scores.shape).astype(np.float32)
    r_table, k_table = torch.from_numpy(scores), torch.from_numpy(ranker)
    for cutoff_k in (1, 7, 20, 60):  # 60 > items: every candidate, the masked ones never counted
        pipeline = two_stage_metrics(lambda b: r_table[b["user"]], lambda b, c: k_table[b["user"]].gather(1, c),
                                     cutoff_k, cutoffs)
        got = evaluate_batches(eval_set_of(targets, known), pipeline, 10)
        assert_same(got, reference_two_stage(scores, ranker, targets, known, cutoff_k, cutoffs))


def test_top_k_by_score_keeps_the_smallest_ids_among_boundary_ties():
    g = torch.Generator().manual_seed(8)
    scores = torch.randint(0, 3, (64, 37), generator=g).float()
    scores[:5] = 1.0  # whole rows tied
    scores[5, :] = float("-inf")
    for k in (1, 4, 10, 36, 37, 50):
        values, ids = top_k_by_score(scores, k, offset=100)
        for r in range(scores.shape[0]):
            expected = reference_order(scores[r].numpy(), list(range(37)))[:k]
            assert [i - 100 for i in ids[r].tolist()] == expected, (k, r)
            assert values[r].tolist() == [float(scores[r, i]) for i in expected]
    halves = top_k_by_score(scores[:, :20], 10), top_k_by_score(scores[:, 20:], 10, offset=20)
    merged = merge_top_k(halves[0], halves[1], 10)
    assert torch.equal(merged[1], top_k_by_score(scores, 10)[1])


def test_ranks_of_targets_count_equals_python_sorted_reference(monkeypatch):
    monkeypatch.setattr(metrics_module, "COMPARE_ELEMENTS", 500)  # several row chunks
    scores, targets, _ = tied_case(9, rows=17, items=30, levels=3)
    scores[:, 0] = -np.inf
    width = max(len(t) for t in targets)
    padded = torch.tensor([t + [0] * (width - len(t)) for t in targets])
    got = ranks_of_targets(torch.from_numpy(scores), padded)
    for r, row in enumerate(targets):
        order = reference_order(scores[r], list(range(31)))
        assert got[r, : len(row)].tolist() == [float(order.index(t)) for t in row]
