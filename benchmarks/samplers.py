"""Sampler speed and accuracy at 10,000 and 1,000,000 items, written to benchmarks/results/samplers.json.

Calls `tandem.sampling.bench.main` (also `tandem bench samplers ...`) once per size: time per batch of B=512
queries x 20 draws (+ log_prob of the positives) for uniform / exact / MIDX / AdaSIR, MIDX index build time, KL of
each proposal to the exact softmax, and MIDX with K in {16, 64, 256}. Per-size JSONs go next to the combined one.

Usage: python benchmarks/samplers.py [--seed 0] [--sizes 10000 1000000]
"""
from __future__ import annotations

import argparse
import os

from tandem.sampling.bench import main as bench_main
from tandem.utils import atomic_write_json

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    runs = {}
    for size in args.sizes:
        out = os.path.join(RESULTS, f"samplers_{size}.json")
        runs[str(size)] = bench_main(["--items", str(size), "--queries", "512", "--negatives", "20", "--dim", "64",
                                      "--seed", str(args.seed), "--out", out])
    summary = {"runs": runs}
    if "10000" in runs and "1000000" in runs:
        small, large = runs["10000"], runs["1000000"]
        summary["targets"] = {
            "midx_speedup_vs_exact_at_1M": large["midx_speedup_vs_exact"],
            "midx_batch_time_ratio_1M_over_10k":
                large["seconds_per_batch"]["midx"] / small["seconds_per_batch"]["midx"],
            "index_build_seconds_at_1M": large["index_build_seconds"],
            "kl_midx_over_kl_uniform_at_1M": large["kl_to_exact"]["midx"] / large["kl_to_exact"]["uniform"],
        }
    atomic_write_json(os.path.join(RESULTS, "samplers.json"), summary)


if __name__ == "__main__":
    main()
