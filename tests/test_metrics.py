"""Metrics and full-ranking evaluation against a naive per-user Python reference, ties included."""
import math

import numpy as np
import torch

from tandem.data.splits import EvalSet
from tandem.evaluation import evaluate_batches, full_ranking_metrics, two_stage_metrics
from tandem.evaluation.metrics import metrics_from_ranks, ranks_of_targets


def naive_metrics(scores, targets, known, cutoffs):
    """Per-row metrics by sorting (score desc, id asc) in plain Python."""
    out = {}
    rows = len(targets)
    for k in cutoffs:
        for name in ("recall", "ndcg", "mrr", "hit"):
            out[f"{name}@{k}"] = 0.0
    for r in range(rows):
        candidates = [i for i in range(1, scores.shape[1]) if i not in known[r] or i in targets[r]]
        ordered = sorted(candidates, key=lambda i: (-scores[r, i], i))
        rank = {item: position for position, item in enumerate(ordered)}
        t = targets[r]
        for k in cutoffs:
            hits = [rank[i] for i in t if rank[i] < k]
            out[f"recall@{k}"] += len(hits) / len(t)
            dcg = sum(1 / math.log2(p + 2) for p in hits)
            idcg = sum(1 / math.log2(p + 2) for p in range(min(len(t), k)))
            out[f"ndcg@{k}"] += dcg / idcg
            out[f"mrr@{k}"] += 1 / (min(hits) + 1) if hits else 0.0
            out[f"hit@{k}"] += 1.0 if hits else 0.0
    return {key: value / rows for key, value in out.items()}


def random_case(seed, rows=37, items=60, ties=True):
    rng = np.random.default_rng(seed)
    # few distinct values -> many exact ties
    scores = rng.integers(0, 8, size=(rows, items + 1)).astype(np.float32) if ties else rng.normal(size=(rows, items + 1)).astype(np.float32)
    targets, known = [], []
    for _ in range(rows):
        chosen = rng.choice(np.arange(1, items + 1), size=rng.integers(2, 15), replace=False)
        n_t = rng.integers(1, len(chosen))
        targets.append(list(chosen[:n_t]))
        known.append(set(chosen[n_t:]))
    return scores, targets, known


def to_eval_set(rows, targets, known):
    t_ptr = np.cumsum([0] + [len(t) for t in targets])
    k_ptr = np.cumsum([0] + [len(k) for k in known])
    return EvalSet(
        {"user": torch.arange(rows)},
        t_ptr, np.concatenate([np.array(t) for t in targets]).astype(np.int64),
        k_ptr, np.concatenate([np.array(sorted(k), dtype=np.int64) for k in known]),
    )


def test_full_ranking_matches_naive_reference_with_ties():
    cutoffs = (1, 5, 10, 20)
    for seed in range(3):
        scores, targets, known = random_case(seed)
        eval_set = to_eval_set(len(targets), targets, known)
        table = torch.from_numpy(scores)
        got = evaluate_batches(eval_set, full_ranking_metrics(lambda b: table[b["user"]], cutoffs), batch_size=8)
        expected = naive_metrics(scores, targets, known, cutoffs)
        for key, value in expected.items():
            assert abs(got[key] - value) < 1e-9, (key, got[key], value)


def test_ranks_break_ties_by_item_id():
    scores = torch.tensor([[float("-inf"), 1.0, 3.0, 3.0, 1.0]])
    ranks = ranks_of_targets(scores, torch.tensor([[1, 2, 3, 4]]))
    assert ranks.tolist() == [[2.0, 0.0, 1.0, 3.0]]


def test_metrics_closed_form_single_target():
    ranks = torch.tensor([[0.0], [4.0], [float("inf")]])
    valid = torch.ones(3, 1, dtype=torch.bool)
    m = metrics_from_ranks(ranks, valid, (5,))
    assert torch.allclose(m["ndcg@5"], torch.tensor([1.0, 1 / math.log2(6), 0.0], dtype=torch.float64))
    assert torch.allclose(m["mrr@5"], torch.tensor([1.0, 0.2, 0.0], dtype=torch.float64))
    assert m["recall@5"].tolist() == [1.0, 1.0, 0.0]


def naive_two_stage(retriever_scores, ranker_scores, targets, known, cutoff_k, cutoffs):
    rows = len(targets)
    pipeline_scores = np.full_like(retriever_scores, -np.inf)
    for r in range(rows):
        candidates = [i for i in range(1, retriever_scores.shape[1]) if i not in known[r] or i in targets[r]]
        retrieved = sorted(candidates, key=lambda i: (-retriever_scores[r, i], i))[:cutoff_k]
        # re-rank by the ranker, ties keep retrieval order: encode as a strictly decreasing key
        order = sorted(range(len(retrieved)), key=lambda j: (-ranker_scores[r, retrieved[j]], j))
        for position, j in enumerate(order):
            pipeline_scores[r, retrieved[j]] = len(order) - position
    # targets outside the candidates must be misses, not ranked after them
    out = {f"{n}@{k}": 0.0 for k in cutoffs for n in ("recall", "ndcg", "mrr", "hit")}
    for r in range(rows):
        ordered = [i for i in np.argsort(-pipeline_scores[r], kind="stable") if np.isfinite(pipeline_scores[r, i])]
        rank = {item: p for p, item in enumerate(ordered)}
        for k in cutoffs:
            hits = [rank[i] for i in targets[r] if i in rank and rank[i] < k]
            out[f"recall@{k}"] += len(hits) / len(targets[r])
            out[f"ndcg@{k}"] += sum(1 / math.log2(p + 2) for p in hits) / sum(1 / math.log2(p + 2) for p in range(min(len(targets[r]), k)))
            out[f"mrr@{k}"] += 1 / (min(hits) + 1) if hits else 0.0
            out[f"hit@{k}"] += 1.0 if hits else 0.0
    return {key: value / rows for key, value in out.items()}


def test_two_stage_matches_naive_reference():
    cutoffs = (1, 3, 10)
    scores, targets, known = random_case(7, ties=True)
    rng = np.random.default_rng(1)
    ranker = rng.integers(0, 5, size=scores.shape).astype(np.float32)
    eval_set = to_eval_set(len(targets), targets, known)
    r_table, k_table = torch.from_numpy(scores), torch.from_numpy(ranker)
    for cutoff_k in (5, 15):
        got = evaluate_batches(
            eval_set,
            two_stage_metrics(lambda b: r_table[b["user"]], lambda b, items: k_table[b["user"]].gather(1, items), cutoff_k, cutoffs),
            batch_size=10,
        )
        expected = naive_two_stage(scores, ranker, targets, known, cutoff_k, cutoffs)
        for key, value in expected.items():
            assert abs(got[key] - value) < 1e-9, (cutoff_k, key, got[key], value)


def test_pipeline_with_all_items_and_ranker_equal_to_retriever_reproduces_retriever():
    cutoffs = (5, 10, 20)
    scores, targets, known = random_case(3, ties=False)
    eval_set = to_eval_set(len(targets), targets, known)
    table = torch.from_numpy(scores)
    alone = evaluate_batches(eval_set, full_ranking_metrics(lambda b: table[b["user"]], cutoffs), 16)
    pipeline = evaluate_batches(
        eval_set,
        two_stage_metrics(lambda b: table[b["user"]], lambda b, items: table[b["user"]].gather(1, items), scores.shape[1], cutoffs),
        16,
    )
    for key in alone:
        assert abs(alone[key] - pipeline[key]) < 1e-12
