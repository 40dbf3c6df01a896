"""Cost of one training step with dense gradients + Adam against sparse gradients + SparseAdam
(`train.sparse_embeddings: true`), at 10k and 1M items, one thread, batch 512, d = 64: MF alone (sampled softmax,
20 uniform negatives) and CoRR with MF + DeepFM (20 uniform negatives, sampled KL; `--no-corr` skips it).
Steps of the two modes are timed in alternation (the machine is shared); medians.

Usage: python benchmarks/sparse_step.py [--items 10000 1000000] [--users 100000] [--steps 9] [--no-corr]
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
from tandem.losses.distill import sampled_kl
from tandem.models.rankers.deepfm import DeepFM
from tandem.models.retrievers.mf import MF
from tandem.sampling import UniformSampler
from tandem.training.cooperative import CoRRScheme
from tandem.training.schemes import RetrieverScheme, Scheme

HERE = os.path.dirname(os.path.abspath(__file__))


def make(num_users: int, num_items: int, sparse: bool, model: str = "mf") -> tuple[Scheme, dict]:
    torch.manual_seed(0)
    sampler = UniformSampler(num_items, torch.Generator().manual_seed(0))
    if model == "mf":
        scheme: Scheme = RetrieverScheme(MF(num_users, num_items, 64), sampler, sampled_softmax, 20)
    else:
        ranker = DeepFM(num_users=num_users, num_items=num_items, embedding_dim=64)
        scheme = CoRRScheme(MF(num_users, num_items, 64), ranker, sampler, 20, sampled_kl, 1.0)
    if sparse:
        scheme.use_sparse_embeddings()
    return scheme, scheme.make_optimizers(lr=1e-3, weight_decay=0.0)


def step(scheme: Scheme, optimizers: dict, batch: dict) -> float:
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
    parser.add_argument("--no-corr", action="store_true", help="time MF alone")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "sparse_step.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for model in ("mf", "corr-mf-deepfm")[: 1 if args.no_corr else 2]:
        model_rows = []
        for num_items in args.items:
            generator = torch.Generator().manual_seed(1)
            runs = {mode: make(args.users, num_items, mode == "sparse", "mf" if model == "mf" else "corr")
                    for mode in ("dense", "sparse")}
            times: dict[str, list[float]] = {"dense": [], "sparse": []}
            for index in range(args.steps + 1):
                batch = {"user": torch.randint(0, args.users, (512,), generator=generator),
                         "item": torch.randint(1, num_items + 1, (512,), generator=generator)}
                for mode, (scheme, optimizers) in runs.items():
                    seconds = step(scheme, optimizers, batch)
                    if index:  # the first step allocates the optimizer state
                        times[mode].append(seconds)
            row = {"model": model, "items": num_items, "users": args.users,
                   **{f"{mode}_step_ms": 1000 * statistics.median(values) for mode, values in times.items()}}
            row["dense_over_sparse"] = row["dense_step_ms"] / row["sparse_step_ms"]
            model_rows.append(row)
            print(json.dumps(row), flush=True)
            del runs
        if len(model_rows) > 1:
            growth = {mode: model_rows[-1][f"{mode}_step_ms"] / model_rows[0][f"{mode}_step_ms"]
                      for mode in ("dense", "sparse")}
            model_rows.append({"model": model, "growth_largest_over_smallest": growth})
            print(json.dumps(model_rows[-1]))
        rows += model_rows
    with open(args.out, "w") as stream:
        json.dump({"command": "python benchmarks/sparse_step.py", "threads": 1, "rows": rows}, stream, indent=2)


if __name__ == "__main__":
    main()
