"""Does the sequential retriever's edge over the ranker come from the order of the history? A probe of finished
two-stage runs (no retraining): test NDCG@10 of the retriever alone and of the pipeline with each row's history
as it is, and with its items randomly permuted (padding kept in front). SASRec reads positions; DIN pools the
history by attention and is blind to order by construction, so the permutation should leave the ranker's scores
unchanged and cost SASRec what it gets from order. Several permutations (seeds) give a spread.

Usage: python benchmarks/order_probe.py RUN_DIR [RUN_DIR ...]   -> benchmarks/results/order_probe.json
"""
from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys

import torch

from tandem.run import load_run
from tandem.utils import atomic_write_json

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results", "order_probe.json")
PERMUTATIONS = 5


def permuted(history: torch.Tensor, seed: int) -> torch.Tensor:
    """Each row's items in a random order, its padding (0) still in front."""
    keys = torch.rand(history.shape, generator=torch.Generator().manual_seed(seed))
    keys = keys.masked_fill(history == 0, -1.0)
    return history.gather(1, keys.argsort(dim=1))


def ndcg(scheme, eval_set, cutoff: int) -> dict[str, float]:
    result = scheme.evaluate(eval_set, (10,), 1024, retrieval_cutoff=cutoff)
    return {"retriever": float(result["retriever"]["ndcg@10"]), "pipeline": float(result["pipeline"]["ndcg@10"])}


def probe(run_dir: str) -> dict[str, object]:
    config, prepared, scheme = load_run(run_dir)
    scheme.eval()
    test = prepared.split.test
    original = ndcg(scheme, test, config.eval.retrieval_cutoff)
    shuffled = [ndcg(scheme, dataclasses.replace(test, tensors={**test.tensors,
                                                                  "history": permuted(test.tensors["history"], s)}),
                     config.eval.retrieval_cutoff) for s in range(PERMUTATIONS)]
    out: dict[str, object] = {"in_order": original}
    for stage in ("retriever", "pipeline"):
        values = [row[stage] for row in shuffled]
        out[f"permuted_{stage}_mean"] = statistics.mean(values)
        out[f"permuted_{stage}_std"] = statistics.stdev(values)
        out[f"{stage}_change_percent"] = 100 * (statistics.mean(values) / original[stage] - 1)
    return out


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: python benchmarks/order_probe.py RUN_DIR [RUN_DIR ...]", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    results = {os.path.normpath(path): probe(path) for path in sys.argv[1:]}
    atomic_write_json(OUT, {"command": "python benchmarks/order_probe.py " + " ".join(sys.argv[1:]),
                            "permutations": PERMUTATIONS, "runs": results})
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
