"""Where a served request's model time goes: one merged call of 8 users (what 8 concurrent clients produce) through
the stages of `Recommender.recommend_ids`, for the model of benchmarks/serve_load.py (SASRec + DIN, ML-100K
sequential, top-100 retrieved, re-ranked, top 10 returned; one thread).

Stages: the retriever's query (SASRec over the history), the index search (exact inner product with known items
masked), the ranker's scores of the 100 candidates (DIN), and the rest (batch building, ordering, JSON-ready
lists). Medians over --calls calls, timed with perf_counter per stage. Usage:
    python benchmarks/serve_profile.py [--rows 8] [--calls 200]
Writes benchmarks/results/serve_profile.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, str(HERE))

from serve_load import ROOT, make_run  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--work", default="/tmp/tandem-serve-profile")
    parser.add_argument("--out", default=str(HERE / "results" / "serve_profile.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    from tandem.serving.pipeline import Recommender

    run = Path(args.work)
    if not (run / "report.json").is_file():
        make_run(ROOT / "configs" / "ml100k-seq-corr.yaml", run)
    recommender = Recommender.from_run(run)
    rng = np.random.default_rng(0)
    stages: dict[str, list[float]] = {"retriever_query": [], "index_search": [], "ranker_scores": [], "total": []}
    clock = time.perf_counter
    with torch.inference_mode():
        for call in range(args.calls + 10):
            users = rng.integers(0, recommender.num_users, size=args.rows)
            batch = recommender.batch(users, None)
            exclude = recommender.known(users, None, args.rows)
            t0 = clock()
            query = recommender.scheme.retriever.query(batch).float().numpy()
            t1 = clock()
            candidates, _ = recommender.index.search(query, recommender.retrieval_cutoff, exclude)
            t2 = clock()
            recommender.scheme.rerank_scores(batch, torch.from_numpy(candidates))
            t3 = clock()
            total_started = clock()
            recommender.recommend_ids(users, None, 10, True)
            total = clock() - total_started
            if call >= 10:  # warm-up
                stages["retriever_query"].append(t1 - t0)
                stages["index_search"].append(t2 - t1)
                stages["ranker_scores"].append(t3 - t2)
                stages["total"].append(total)
    medians = {name: 1e3 * statistics.median(values) for name, values in stages.items()}
    medians["rest"] = max(0.0, medians["total"] - medians["retriever_query"] - medians["index_search"]
                          - medians["ranker_scores"])
    shares = {name: value / medians["total"] for name, value in medians.items() if name != "total"}
    record = {"command": "python benchmarks/serve_profile.py", "rows_per_call": args.rows, "calls": args.calls,
              "retrieval_cutoff": recommender.retrieval_cutoff, "items": recommender.num_items, "threads": 1,
              "median_ms": medians, "share_of_call": shares,
              "rows_per_second_bound": 1e3 * args.rows / medians["total"],
              "load_average_1min": os.getloadavg()[0]}
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
