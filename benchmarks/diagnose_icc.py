"""Does ICC's ranker take part in its final order? Load a trained ICC run (the authors' gated cascade) and measure,
on the validation rows, how often the cascade's top-10 order of the retriever's top-100 equals the retriever's own
order, and the size of the cascade's two terms (retriever: p1 (1 - g1); ranker: p2 (1 - g2) g1).

Usage: python benchmarks/diagnose_icc.py [RUN_DIR]
(default: benchmarks/results/seed000-table2-ml100k-seq/runs/icc-s2023). Writes benchmarks/results/diagnose_icc.json.
"""
from __future__ import annotations

import json
import math
import os
import sys

import torch

from tandem.data.splits import iterate_batches
from tandem.run import load_run
from tandem.training.cooperative import gated_cascade

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_RUN = os.path.join(HERE, "results", "seed000-table2-ml100k-seq", "runs", "icc-s2023")


@torch.no_grad()
def probe(run_dir: str, candidates: int = 100) -> dict[str, float | int | str]:
    _, prepared, scheme = load_run(run_dir, allow_incomplete=True)
    same = rows = 0
    p2_max = 0.0
    term1, term2 = [], []
    for batch in iterate_batches(prepared.split.valid.tensors, 512):
        scores = scheme.retriever.query(batch) @ scheme.retriever.item_vectors().T
        scores[:, 0] = -math.inf
        top = scores.topk(candidates, dim=1).indices  # retriever order
        retriever, ranker = scores.gather(1, top), scheme.ranker.score(batch, top)
        cascade_order = gated_cascade(retriever, ranker).argsort(dim=1, descending=True)
        same += int((cascade_order[:, :10] == torch.arange(10)).all(1).sum())
        rows += top.shape[0]
        p1, p2 = torch.sigmoid(retriever), torch.sigmoid(ranker)
        p2_max = max(p2_max, float(p2.max()))
        term1.append((p1 * (1 - torch.sigmoid(p1))).std(dim=1))
        term2.append((p2 * (1 - torch.sigmoid(p2 - math.tanh(1.0))) * torch.sigmoid(p1)).std(dim=1))
    return {"run": os.path.relpath(run_dir, os.path.dirname(HERE)), "rows": rows,
            "rows_top10_equal_to_retriever_order": same, "ranker_probability_max": p2_max,
            "retriever_term_std_mean": float(torch.cat(term1).mean()),
            "ranker_term_std_mean": float(torch.cat(term2).mean())}


def main() -> None:
    torch.set_num_threads(1)
    result = probe(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_RUN)
    path = os.path.join(HERE, "results", "diagnose_icc.json")
    with open(path, "w") as stream:
        json.dump(result, stream, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
