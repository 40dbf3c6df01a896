"""Seconds per epoch and test NDCG@10 of SASRec on MovieLens-100K (sequential task), written to JSON.

Usage: python benchmarks/train_speed.py [--epochs 20] [--out benchmarks/results/train_speed.json]
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import torch

from tandem.config import load_config
from tandem.run import train_run
from tandem.utils import atomic_write_json

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=os.path.join(HERE, "..", "configs", "ml100k-seq-sasrec.yaml"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "train_speed.json"))
    args = parser.parse_args()
    config = load_config(args.config, [f"train.epochs={args.epochs}", "train.progress=false"])
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        report = train_run(config, os.path.join(run_dir, "run"))
    result = {
        "model": "SASRec (1 layer, 2 heads, d=64, ff=128, dropout 0.3), sampled softmax, 20 uniform negatives",
        "dataset": report["dataset"],
        "epochs_run": report["epochs_run"],
        "best_epoch": report["best_epoch"],
        "seconds_per_epoch": round(report["seconds_per_epoch"], 3),
        "total_seconds": round(time.perf_counter() - started, 1),
        "test": {k: round(v, 5) for k, v in report["test"].items()},
        "valid_ndcg@10": round(report["valid"]["ndcg@10"], 5),
        "machine": {"cpu_threads": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__},
    }
    atomic_write_json(args.out, result)
    print(f"seconds/epoch {result['seconds_per_epoch']}  test ndcg@10 {result['test']['ndcg@10']:.4f}  -> {args.out}")


if __name__ == "__main__":
    main()
