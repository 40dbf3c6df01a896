"""Sampler speed and accuracy at 10,000 and 1,000,000 items in one run, written to benchmarks/results/samplers.json.

Calls `sampler_bench.main` (the same as `python benchmarks/sampler_bench.py --items 10000 1000000 ...`) once with both
sizes, on one thread (torch and FAISS): time per batch of B=512 queries x 20 draws (+ log_prob of the positives)
for uniform / exact / MIDX / AdaSIR, MIDX index build and warm rebuild, KL of each proposal to the exact softmax,
MIDX with K in {16, 64, 256}; then the MIDX batch of both sizes timed again in alternation, and the goals of
issue 10 (MIDX >= 3000x exact at 1M, time at 1M <= 1.2x time at 10k, KL unchanged) under "targets".
Each size's figures are also written to samplers_<N>.json.

Usage: python benchmarks/samplers.py [--seed 0] [--sizes 10000 1000000] [--threads 1]
"""
from __future__ import annotations

import argparse
import os

from sampler_bench import main as bench_main  # beside this file
from tandem.utils import atomic_write_json

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    result = bench_main(["--items", *map(str, args.sizes), "--queries", "512", "--negatives", "20", "--dim", "64",
                         "--seed", str(args.seed), "--threads", str(args.threads),
                         "--out", os.path.join(RESULTS, "samplers.json")])
    runs = result["runs"] if "runs" in result else {str(args.sizes[0]): result}
    for size, run in runs.items():
        atomic_write_json(os.path.join(RESULTS, f"samplers_{size}.json"), run)


if __name__ == "__main__":
    main()
