"""Where does the retrieve-then-rank pipeline lose? Train a retriever alone, freeze it, train a ranker on the
training rows, and measure per epoch, on validation and test:

- the retriever's NDCG@10 and the pipeline's (retriever top-K re-ordered by the ranker);
- on the rows whose target is among the K candidates, NDCG@10 of the candidates ordered by the retriever vs by the
  ranker (does the ranker order the retriever's candidates better than the retriever does?);
- swap probes: test targets scored with the validation history, and validation targets with the test history, to
  separate "which history the ranker sees" from "which target it must find".

Usage: python benchmarks/diagnose_ranker.py [--retriever-epochs 10] [--ranker-epochs 8] [--negatives uniform]
Writes benchmarks/results/diagnose_ranker.json.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from tandem.config import load_config
from tandem.data.splits import EvalSet, iterate_batches
from tandem.evaluation.ranking import padded_rows, masked_scores
from tandem.run import build_scheme, prepare
from tandem.training.schemes import draw_negatives
from tandem.losses.sampled_softmax import sampled_softmax

HERE = os.path.dirname(os.path.abspath(__file__))


def ndcg_at(ranks: torch.Tensor, k: int = 10) -> torch.Tensor:
    return torch.where(ranks < k, 1.0 / torch.log2(ranks.double() + 2.0), torch.zeros_like(ranks, dtype=torch.float64))


@torch.no_grad()
def stage_ranks(scheme, eval_set: EvalSet, history: torch.Tensor | None, k: int) -> dict[str, torch.Tensor]:
    """Per row: retriever full rank of the target, its rank among the top-k by the retriever, and by the ranker."""
    scheme.eval()
    rows = len(eval_set)
    out = {"retriever": [], "ranker_in_k": [], "retriever_in_k": [], "inside": []}
    for begin in range(0, rows, 256):
        window = slice(begin, min(rows, begin + 256))
        batch = {key: value[window] for key, value in eval_set.tensors.items()}
        if history is not None:
            batch["history"] = history[window]
        targets = padded_rows(eval_set.target_indptr, eval_set.target_items, window)[:, :1]
        known = padded_rows(eval_set.known_indptr, eval_set.known_items, window)
        scores = masked_scores(scheme.retriever.score_all(batch), known, targets)
        target_score = scores.gather(1, targets)
        full_rank = (scores > target_score).sum(1)
        top = scores.topk(k, dim=1).indices
        inside = (top == targets).any(1)
        ranker = scheme.ranker.score(batch, top)
        pos = (top == targets).float().argmax(1)
        ranker_target = ranker.gather(1, pos.unsqueeze(1))
        ranker_rank = (ranker > ranker_target).sum(1)
        out["retriever"].append(full_rank)
        out["retriever_in_k"].append(torch.where(inside, pos, torch.full_like(pos, 10**6)))
        out["ranker_in_k"].append(torch.where(inside, ranker_rank, torch.full_like(ranker_rank, 10**6)))
        out["inside"].append(inside)
    return {key: torch.cat(value) for key, value in out.items()}


def summary(ranks: dict[str, torch.Tensor]) -> dict[str, float]:
    inside = ranks["inside"]
    return {
        "retriever_ndcg@10": float(ndcg_at(ranks["retriever"]).mean()),
        "pipeline_ndcg@10": float(ndcg_at(ranks["ranker_in_k"]).mean()),
        "recall@K": float(inside.double().mean()),
        "in_K_retriever_ndcg@10": float(ndcg_at(ranks["retriever_in_k"][inside]).mean()),
        "in_K_ranker_ndcg@10": float(ndcg_at(ranks["ranker_in_k"][inside]).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=os.path.join(HERE, "..", "configs", "ml100k-seq-independent.yaml"))
    parser.add_argument("--retriever-epochs", type=int, default=10)
    parser.add_argument("--ranker-epochs", type=int, default=8)
    parser.add_argument("--negatives", default="uniform", choices=["uniform", "retriever"])
    parser.add_argument("--exclude-known", action="store_true", help="resample negatives that are in the history")
    parser.add_argument("--set", action="append", default=[], help="config override key=value")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "diagnose_ranker.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.config, ["train.progress=false", *args.set])
    torch.manual_seed(config.seed)
    prepared = prepare(config)
    scheme = build_scheme(config, prepared)
    split = prepared.split
    k = config.eval.retrieval_cutoff
    generator = torch.Generator().manual_seed(config.seed)
    opt_r = torch.optim.Adam(scheme.retriever.parameters(), lr=config.train.lr)
    log: dict[str, list] = {"retriever": [], "ranker": []}
    for epoch in range(1, args.retriever_epochs + 1):
        scheme.train()
        for batch in iterate_batches(split.train.tensors, config.train.batch_size, True, generator):
            negatives, neg_log_q = scheme.ranker_sampler.sample(batch["item"].unsqueeze(1), config.train.num_negatives)
            query = scheme.retriever.query(batch)
            cand = torch.cat([batch["item"].unsqueeze(1), negatives], 1)
            s = scheme.retriever.score_with_query(query, cand)
            loss = sampled_softmax(s[:, 0], s[:, 1:], None, None).mean()
            opt_r.zero_grad(); loss.backward(); opt_r.step()
        valid = summary(stage_ranks(scheme, split.valid, None, k))
        log["retriever"].append({"epoch": epoch, "valid_ndcg@10": valid["retriever_ndcg@10"]})
        print("retriever", epoch, valid["retriever_ndcg@10"], flush=True)
    opt_k = torch.optim.Adam(scheme.ranker.parameters(), lr=config.train.lr)
    valid_hist, test_hist = split.valid.tensors["history"], split.test.tensors["history"]
    for epoch in range(1, args.ranker_epochs + 1):
        started = time.perf_counter()
        scheme.train()
        hits, total = 0, 0
        for batch in iterate_batches(split.train.tensors, config.train.batch_size, True, generator):
            if args.negatives == "uniform":
                negatives, _ = scheme.ranker_sampler.sample(batch["item"].unsqueeze(1), config.train.num_negatives)
                neg_q = pos_q = None
            else:
                with torch.no_grad():
                    query = scheme.retriever.query(batch)
                negatives, neg_q, pos_q = draw_negatives(scheme.sampler, query, batch["item"],
                                                          config.train.num_negatives, None)
            in_history = (negatives.unsqueeze(2) == batch["history"].unsqueeze(1)).any(2)
            hits += int(in_history.sum()); total += in_history.numel()
            scores = scheme.ranker.score(batch, torch.cat([batch["item"].unsqueeze(1), negatives], 1))
            neg_scores = scores[:, 1:]
            if args.exclude_known:
                neg_scores = neg_scores.masked_fill(in_history, float("-inf"))
            loss = sampled_softmax(scores[:, 0], neg_scores, pos_q, neg_q).mean()
            opt_k.zero_grad(); loss.backward(); opt_k.step()
        record = {"epoch": epoch, "seconds": round(time.perf_counter() - started, 1),
                  "negatives_in_history": hits / max(1, total)}
        record["valid"] = summary(stage_ranks(scheme, split.valid, None, k))
        record["test"] = summary(stage_ranks(scheme, split.test, None, k))
        record["test_with_valid_history"] = summary(stage_ranks(scheme, split.test, valid_hist, k))
        record["valid_with_test_history"] = summary(stage_ranks(scheme, split.valid, test_hist, k))
        log["ranker"].append(record)
        print(json.dumps(record), flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as stream:
        json.dump({"args": vars(args), "log": log}, stream, indent=1)


if __name__ == "__main__":
    main()
