"""Where does the ranker lose to the retriever it re-orders? A probe of finished two-stage runs (no retraining).

For the validation and the test rows of each run: the retriever's top-K candidates (known items masked, K =
`eval.retrieval_cutoff`), and, on the rows whose target is among them, NDCG@10 of the target under the retriever's
order and under the ranker's, split by the target's popularity in the training data (quartiles of the training
interaction count, computed over all targets). A ranker whose loss concentrates on rare targets, and a test set
whose targets are rarer than the validation set's, would explain why the pipeline drops more from validation to
test than the retriever does (issue 9's unexplained 20-25 % drop).

Usage: python benchmarks/ranker_by_popularity.py RUN_DIR [RUN_DIR ...]
Writes benchmarks/results/ranker_by_popularity.json.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch

from tandem.evaluation.ranking import padded_rows
from tandem.run import load_run
from tandem.utils import atomic_write_json

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results", "ranker_by_popularity.json")


def ndcg_at_10(rank: np.ndarray) -> np.ndarray:
    """NDCG@10 of one target at 0-based `rank` (0 beyond the cutoff)."""
    return np.where(rank < 10, 1.0 / np.log2(rank + 2.0), 0.0)


@torch.no_grad()
def candidate_ranks(scheme, eval_set, cutoff: int) -> dict[str, np.ndarray]:
    """Per row: the first target, whether it is a candidate, its 0-based rank under both orders."""
    firsts, inside, by_retriever, by_ranker = [], [], [], []
    for start in range(0, len(eval_set), 512):
        window = slice(start, min(start + 512, len(eval_set)))
        batch = {key: value[window] for key, value in eval_set.tensors.items()}
        scores = scheme.retriever.score_all(batch)
        scores[:, 0] = -float("inf")
        known = torch.as_tensor(padded_rows(eval_set.known_indptr, eval_set.known_items, window))
        scores.scatter_(1, known, -float("inf"))
        candidates = scores.topk(cutoff, dim=1).indices  # [B, K], best first
        target = torch.as_tensor(eval_set.target_items[eval_set.target_indptr[window.start:window.stop]])
        hit = candidates == target.unsqueeze(1)
        ranker_scores = scheme.ranker.score(batch, candidates)
        target_score = (ranker_scores * hit).sum(1, keepdim=True)
        above = (ranker_scores > target_score).sum(1)  # candidates the ranker puts above the target
        firsts.append(target.numpy())
        inside.append(hit.any(1).numpy())
        by_retriever.append(hit.float().argmax(1).numpy())
        by_ranker.append(above.numpy())
    return {"target": np.concatenate(firsts), "inside": np.concatenate(inside),
            "retriever": np.concatenate(by_retriever), "ranker": np.concatenate(by_ranker)}


def probe(run_dir: str) -> dict[str, object]:
    config, prepared, scheme = load_run(run_dir)
    scheme.eval()
    counts = np.bincount(prepared.split.train.tensors["item"].numpy(), minlength=prepared.data.num_items + 1)
    split = {"valid": prepared.split.valid, "test": prepared.split.test}
    ranks = {name: candidate_ranks(scheme, eval_set, config.eval.retrieval_cutoff) for name, eval_set in split.items()}
    every = np.concatenate([counts[r["target"]] for r in ranks.values()])
    edges = np.quantile(every, [0.25, 0.5, 0.75])
    out: dict[str, object] = {"popularity_quartile_edges": edges.tolist()}
    for name, r in ranks.items():
        popularity = counts[r["target"]]
        quartile = np.searchsorted(edges, popularity, side="right")
        rows: dict[str, object] = {"rows": int(len(popularity)), "target_recall@K": float(r["inside"].mean()),
                                   "median_target_popularity": float(np.median(popularity))}
        for q in range(4):
            keep = r["inside"] & (quartile == q)
            rows[f"q{q + 1}"] = {
                "share_of_rows": float((quartile == q).mean()),
                "rows_with_target_in_candidates": int(keep.sum()),
                "retriever_ndcg@10": float(ndcg_at_10(r["retriever"][keep]).mean()) if keep.any() else None,
                "ranker_ndcg@10": float(ndcg_at_10(r["ranker"][keep]).mean()) if keep.any() else None,
            }
        keep = r["inside"]
        rows["all_in_candidates"] = {"retriever_ndcg@10": float(ndcg_at_10(r["retriever"][keep]).mean()),
                                     "ranker_ndcg@10": float(ndcg_at_10(r["ranker"][keep]).mean())}
        out[name] = rows
    return out


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    results = {os.path.normpath(path): probe(path) for path in sys.argv[1:]}
    atomic_write_json(OUT, {"command": "python benchmarks/ranker_by_popularity.py " + " ".join(sys.argv[1:]),
                            "runs": results})
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
