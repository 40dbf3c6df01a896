"""FAISS index choice at 1M items: recall@100 against exact search, build time, latency and throughput;
written to benchmarks/results/serving_index.json.

Item vectors are clustered like trained embeddings (1,000 taste centres in d = 64, each item a centre plus
Gaussian noise of 0.7 per coordinate; queries drawn the same way), since approximate search is only as good as
the structure it exploits (on unstructured Gaussian vectors every method needs far more probes). Costs are CPU time of the
single-threaded process (`time.process_time`: the machine is shared, wall time would measure the neighbours). Each
index is searched through `tandem.serving.index.ItemIndex` (what `tandem serve --index FACTORY` uses), on one thread:
- recall@100: mean share of the exact top 100 (flat inner-product scan) that the index returns;
- throughput: queries per second for batches of --batch queries (top 100 each);
- latency: median milliseconds of a single-query search.
Goal (issue 13): >= 10x the flat index's throughput at recall@100 >= 0.95.

Usage: nice -n 5 python benchmarks/serving_index.py [--items 1000000] [--queries 500] [--no-hnsw]
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
K = 100


def clustered(num: int, centres: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """`num` vectors, each a random centre plus N(0, noise^2) per coordinate (float32)."""
    picks = rng.integers(0, centres.shape[0], num)
    return (centres[picks] + noise * rng.standard_normal((num, centres.shape[1]), dtype=np.float32)).astype(np.float32)


def time_index(index: Any, queries: np.ndarray, batch: int, exact: np.ndarray | None, singles: int) -> dict[str, float]:
    """Recall@K against `exact` (when given), batched throughput and single-query latency."""
    from tandem.serving.index import recall_at_k

    clock = time.process_time()
    found = np.concatenate([index.search(queries[begin:begin + batch], K)[0]
                            for begin in range(0, queries.shape[0], batch)])
    seconds = time.process_time() - clock
    latencies = []
    for row in range(singles):
        clock = time.process_time()
        index.search(queries[row:row + 1], K)
        latencies.append(time.process_time() - clock)
    out = {"queries_per_s": queries.shape[0] / seconds, "latency_ms_median": 1e3 * statistics.median(latencies)}
    out["recall@100"] = recall_at_k(found, exact) if exact is not None else 1.0
    return out, found


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--singles", type=int, default=30, help="single-query searches timed for the latency")
    parser.add_argument("--no-hnsw", action="store_true", help="skip HNSW (its build is minutes at 1M on one core)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(RESULTS, "serving_index.json"))
    args = parser.parse_args(argv)

    import faiss
    import torch

    from tandem.serving.index import ItemIndex
    from tandem.utils import atomic_write_json

    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((1000, args.dim), dtype=np.float32)
    vectors = np.vstack([np.zeros((1, args.dim), np.float32), clustered(args.items, centres, 0.7, rng)])
    queries = clustered(args.queries, centres, 0.7, rng)
    nlist = f"IVF{1 << max(4, round(math.log2(4 * math.sqrt(args.items))))}"  # as recommended_factory
    plans: list[tuple[str, dict[str, int]]] = [("Flat", {})]
    plans += [(f"{nlist},Flat", {"nprobe": p}) for p in (4, 8, 16, 32, 64)]
    if not args.no_hnsw:
        plans += [("HNSW32", {"ef_search": ef}) for ef in (64, 128, 256)]
    rows, built, exact = [], {}, None
    for factory, options in plans:
        if factory not in built:
            clock = time.process_time()
            built[factory] = (ItemIndex(vectors, factory=factory, seed=args.seed), time.process_time() - clock)
        index, build_s = built[factory]
        for knob, value in options.items():
            setattr(index, knob, value)
        figures, found = time_index(index, queries, args.batch, exact, args.singles)
        if exact is None:
            exact = found
        row = {"factory": factory, **options, "build_s": build_s, **figures}
        rows.append(row)
        print(f"{factory:>14} {str(options):>20}: build {build_s:7.1f} s, recall@100 {row['recall@100']:.4f}, "
              f"{row['queries_per_s']:8.1f} q/s, latency {row['latency_ms_median']:7.2f} ms", flush=True)
    flat_qps = rows[0]["queries_per_s"]
    for row in rows:
        row["speedup_vs_flat"] = row["queries_per_s"] / flat_qps
    good = [row for row in rows[1:] if row["recall@100"] >= 0.95]
    best = max(good, key=lambda row: row["queries_per_s"]) if good else None
    result = {
        "command": "nice -n 5 .venv/bin/python benchmarks/serving_index.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "items": args.items, "dim": args.dim, "queries": args.queries, "batch": args.batch, "threads": 1,
        "rows": rows,
        "goal": {"target": ">= 10x flat throughput at recall@100 >= 0.95",
                 "best": best, "met": bool(best and best["speedup_vs_flat"] >= 10)},
    }
    atomic_write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
