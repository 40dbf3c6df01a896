"""Cost of one MF training step (sampled softmax, 20 uniform negatives, batch 512, d = 64) with dense gradients +
Adam against sparse gradients + SparseAdam (`train.sparse_embeddings: true`), at 10k and 1M items, one thread.
Steps of the two modes are timed in alternation (the machine is shared); medians.

Usage: python benchmarks/sparse_step.py [--items 10000 1000000] [--users 100000] [--steps 9]
Writes benchmarks/results/sparse_step.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from tandem.losses import sampled_softmax
from tandem.models.retrievers.mf import MF
from tandem.sampling import UniformSampler
from tandem.training.schemes import RetrieverScheme

HERE = os.path.dirname(os.path.abspath(__file__))


def make(num_users: int, num_items: int, sparse: bool) -> tuple[RetrieverScheme, dict]:
    torch.manual_seed(0)
    scheme = RetrieverScheme(MF(num_users, num_items, 64), UniformSampler(num_items, torch.Generator().manual_seed(0)),
                             sampled_softmax, 20)
    if sparse:
        scheme.use_sparse_embeddings()
    return scheme, scheme.make_optimizers(lr=1e-3, weight_decay=0.0)


def step(scheme: RetrieverScheme, optimizers: dict, batch: dict) -> float:
    started = time.perf_counter()
    for optimizer in optimizers.values():
        optimizer.zero_grad(set_to_none=True)
    sum(scheme.losses(batch).values()).backward()
    for optimizer in optimizers.values():
        optimizer.step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=9)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "sparse_step.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for num_items in args.items:
        generator = torch.Generator().manual_seed(1)
        runs = {mode: make(args.users, num_items, mode == "sparse") for mode in ("dense", "sparse")}
        times: dict[str, list[float]] = {"dense": [], "sparse": []}
        for index in range(args.steps + 1):
            batch = {"user": torch.randint(0, args.users, (512,), generator=generator),
                     "item": torch.randint(1, num_items + 1, (512,), generator=generator)}
            for mode, (scheme, optimizers) in runs.items():
                seconds = step(scheme, optimizers, batch)
                if index:  # the first step allocates the optimizer state
                    times[mode].append(seconds)
        row = {"items": num_items, "users": args.users,
               **{f"{mode}_step_ms": 1000 * statistics.median(values) for mode, values in times.items()}}
        row["dense_over_sparse"] = row["dense_step_ms"] / row["sparse_step_ms"]
        rows.append(row)
        print(json.dumps(row))
    if len(rows) > 1:
        growth = {mode: rows[-1][f"{mode}_step_ms"] / rows[0][f"{mode}_step_ms"] for mode in ("dense", "sparse")}
        print(json.dumps({"growth_largest_over_smallest": growth}))
        rows.append({"growth_largest_over_smallest": growth})
    with open(args.out, "w") as stream:
        json.dump({"command": "python benchmarks/sparse_step.py", "threads": 1, "rows": rows}, stream, indent=2)


if __name__ == "__main__":
    main()
