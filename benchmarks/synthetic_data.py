"""Synthetic data at 10k / 100k / 1M items: generation, Parquet write and read, k-core and splits, timed, with
peak memory; written to benchmarks/results/synthetic_data.json.

Each size runs in a fresh child process (so its peak RSS, VmHWM, is its own), on one thread:
generate (`tandem.data.synthetic_scale`, 10 interactions per item, 20 per user on average), write the Parquet file
users would bring (atomic), read it back through `data.format: table`, then `preprocess` twice -- the default
10-core (users and items) and the light filter the scaling benchmark trains on (users >= 5, items >= 1, which keeps
the catalogue near N) -- and the general and sequential splits of the latter.

Usage: nice -n 5 python benchmarks/synthetic_data.py [--items 10000 100000 1000000] [--per-item 10]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")


def peak_rss_gib() -> float:
    """This process's peak resident set size (VmHWM) in GiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def measure(num_items: int, num_interactions: int, seed: int) -> dict[str, Any]:
    """Time every data step for one size, in this process."""
    import numpy as np
    import torch

    from tandem.data.dataset import preprocess
    from tandem.data.readers import read_dataset
    from tandem.data.splits import split_general, split_sequential
    from tandem.data.synthetic_scale import WorldSpec, generate, write_parquet

    torch.set_num_threads(1)
    out: dict[str, Any] = {"items_generated": num_items, "interactions_requested": num_interactions}
    clock = time.perf_counter()
    world = generate(WorldSpec(num_items, num_interactions, seed=seed))
    out["generate_s"] = time.perf_counter() - clock
    out["interactions"] = int(world.items.shape[0])
    out["users"] = world.num_users
    with tempfile.TemporaryDirectory() as directory:
        clock = time.perf_counter()
        path = write_parquet(world, directory)
        out["write_parquet_s"] = time.perf_counter() - clock
        out["parquet_mib"] = os.path.getsize(path) / 2**20
        del world
        clock = time.perf_counter()
        raw = read_dataset({"format": "table", "path": str(path),
                            "columns": {"user": "user", "item": "item", "timestamp": "timestamp"}})
        out["read_parquet_s"] = time.perf_counter() - clock
    for label, (min_user, min_item) in {"10core": (10, 10), "train_filter": (5, 1)}.items():
        clock = time.perf_counter()
        data = preprocess(raw, None, min_user, min_item)
        out[f"preprocess_{label}_s"] = time.perf_counter() - clock
        out[f"preprocess_{label}"] = {key: data.stats()[key] for key in ("users", "items", "interactions")}
    clock = time.perf_counter()
    split_general(data)
    out["split_general_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    split = split_sequential(data, 20)
    out["split_sequential_s"] = time.perf_counter() - clock
    out["sequential_train_examples"] = len(split.train)
    out["peak_rss_gib"] = peak_rss_gib()
    out["numpy"] = np.__version__
    return out


def run_child(num_items: int, num_interactions: int, seed: int) -> dict[str, Any]:
    """`measure` in a fresh interpreter; its JSON comes back on stdout."""
    done = subprocess.run([sys.executable, __file__, "--child", str(num_items), str(num_interactions), str(seed)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--per-item", type=float, default=10.0, help="interactions per generated item")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", type=int, nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child)))
        return
    from tandem.utils import atomic_write_json

    runs = {}
    for num_items in args.items:
        runs[str(num_items)] = run = run_child(num_items, int(num_items * args.per_item), args.seed)
        print(f"{num_items:>9} items {run['interactions']:>10} interactions: generate {run['generate_s']:.2f} s, "
              f"read {run['read_parquet_s']:.2f} s, 10-core {run['preprocess_10core_s']:.2f} s, "
              f"train filter {run['preprocess_train_filter_s']:.2f} s, splits {run['split_general_s']:.2f} / "
              f"{run['split_sequential_s']:.2f} s, peak {run['peak_rss_gib']:.2f} GiB", flush=True)
    command = "nice -n 5 .venv/bin/python benchmarks/synthetic_data.py " + " ".join(sys.argv[1:])
    atomic_write_json(os.path.join(RESULTS, "synthetic_data.json"), {"command": command.strip(), "runs": runs})


if __name__ == "__main__":
    main()
