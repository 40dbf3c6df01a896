"""Retriever alone, Independent, RankFlow, ICC and CoRR on MovieLens-100K (sequential task, SASRec + DIN),
several seeds: test Recall/NDCG/MRR@10 as mean ± std, and seconds per epoch, written to JSON (seed 000 Table 2).

Usage: python benchmarks/cooperative.py [--epochs 5] [--seeds 0 1 2] [--out benchmarks/results/cooperative.json]
       python benchmarks/cooperative.py --methods CoRR ICC --out part2.json   # a subset, e.g. in another process
       python benchmarks/cooperative.py --merge part1.json part2.json --out benchmarks/results/cooperative.json
"""
from __future__ import annotations

import argparse
import json
import os
import time

from tandem.experiments.grid import Entry, markdown_table, run_grid
from tandem.utils import atomic_write_json

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = os.path.join(HERE, "..", "configs")
METHODS = [
    ("Retriever alone (SASRec)", "ml100k-seq-sasrec.yaml"),
    ("Independent", "ml100k-seq-independent.yaml"),
    ("RankFlow", "ml100k-seq-rankflow.yaml"),
    ("ICC", "ml100k-seq-icc.yaml"),
    ("CoRR", "ml100k-seq-corr.yaml"),
]
METRICS = ["recall@10", "ndcg@10", "mrr@10"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=[label for label, _ in METHODS])
    parser.add_argument("--threads", type=int, default=0, help="torch threads per process (0 = torch's default)")
    parser.add_argument("--merge", nargs="+", help="combine the runs of earlier partial result files")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "cooperative.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    if args.merge:
        parts = [json.load(open(path)) for path in args.merge]
        results = {label: run for part in parts for label, run in part["runs"].items()}
        results = {label: results[label] for label, _ in METHODS if label in results}
        args.epochs, args.seeds = parts[0]["epochs"], parts[0]["seeds"]
        elapsed = sum(part["total_seconds"] for part in parts)
    else:
        entries = [Entry(label, os.path.join(CONFIGS, name)) for label, name in METHODS if label in args.methods]
        overrides = [f"train.epochs={args.epochs}", f"train.patience={args.epochs}", f"train.threads={args.threads}"]
        results = run_grid(entries, args.seeds, overrides)
        elapsed = time.perf_counter() - started
    # one comparable view: the pipeline of cooperative runs, the retriever itself for the retriever-alone run
    view = {
        label: [f"pipeline.{m}" if f"pipeline.{m}" in result["test"] else m for m in METRICS]
        for label, result in results.items()
    }
    table = {
        label: {m: result["test"][key] for m, key in zip(METRICS, view[label])}
        for label, result in results.items()
    }
    independent = table.get("Independent", {}).get("ndcg@10", {}).get("mean")
    rankflow = table.get("RankFlow", {}).get("ndcg@10", {}).get("mean")
    corr = table.get("CoRR", {}).get("ndcg@10", {}).get("mean")
    payload = {
        "dataset": "MovieLens-100K (embedded), sequential task, 10-core",
        "epochs": args.epochs,
        "seeds": args.seeds,
        "table": table,
        "corr_over_independent_ndcg@10": corr / independent if corr and independent else None,
        "corr_over_rankflow_ndcg@10": corr / rankflow if corr and rankflow else None,
        "runs": results,
        "total_seconds": elapsed,
    }
    atomic_write_json(args.out, payload)
    flat = {label: {"test": {m: stats for m, stats in row.items()}, "seconds_per_epoch": results[label]["seconds_per_epoch"]}
            for label, row in table.items()}
    print(markdown_table(flat, METRICS, scale=100.0))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
