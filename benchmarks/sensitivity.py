"""CoRR's sensitivity figures on MovieLens-100K (sequential): seed 000 Figure 3 (retrieval cutoff K at inference,
CoRR vs RankFlow) and Figure 4 (number of MIDX clusters, sampling temperature T). JSON plus PNG plots.

Usage: python benchmarks/sensitivity.py [--epochs 3] [--parts cutoff clusters temperature]
"""
from __future__ import annotations

import argparse
import os

from tandem.experiments.grid import Entry, run_grid
from tandem.experiments.plots import sweep_plot
from tandem.utils import atomic_write_json

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = os.path.join(HERE, "..", "configs")
RESULTS = os.path.join(HERE, "results")
CUTOFFS = [10, 20, 50, 100, 200, 500, 1000]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--parts", nargs="+", default=["cutoff", "clusters", "temperature"])
    parser.add_argument("--out", default=os.path.join(RESULTS, "sensitivity.json"))
    args = parser.parse_args()
    common = [f"train.epochs={args.epochs}", f"train.patience={args.epochs}"]
    payload: dict = {"epochs": args.epochs, "seeds": args.seeds}
    corr = os.path.join(CONFIGS, "ml100k-seq-corr.yaml")
    if "cutoff" in args.parts:
        sweep = [f"eval.cutoff_sweep={CUTOFFS}"]
        entries = [Entry("CoRR", corr, sweep), Entry("RankFlow", os.path.join(CONFIGS, "ml100k-seq-rankflow.yaml"), sweep)]
        results = run_grid(entries, args.seeds, common)
        curves = {
            label: [result["test"][f"cutoff_sweep.{k}.ndcg@10"]["mean"] for k in CUTOFFS]
            for label, result in results.items()
        }
        payload["cutoff"] = {"cutoffs": CUTOFFS, "ndcg@10": curves}
        sweep_plot(os.path.join(RESULTS, "sensitivity_cutoff.png"), CUTOFFS, curves, "retrieval cutoff K",
                   "NDCG@10", "Sensitivity to the retrieval cutoff (ML-100K)", log_x=True)
    for part, key, values, label in (
        ("clusters", "sampler.num_clusters", [4, 8, 16, 32, 64, 128], "number of clusters K"),
        ("temperature", "sampler.temperature", [0.1, 0.5, 1.0, 2.0, 4.0], "temperature T"),
    ):
        if part not in args.parts:
            continue
        entries = [Entry(f"{key}={value}", corr, [f"{key}={value}"]) for value in values]
        results = run_grid(entries, args.seeds, common)
        curves = {
            "pipeline": [results[e.label]["test"]["pipeline.ndcg@10"]["mean"] for e in entries],
            "retriever": [results[e.label]["test"]["retriever.ndcg@10"]["mean"] for e in entries],
        }
        payload[part] = {"values": values, "ndcg@10": curves}
        sweep_plot(os.path.join(RESULTS, f"sensitivity_{part}.png"), values, curves, label, "NDCG@10",
                   f"CoRR: sensitivity to the {label} (ML-100K)", log_x=True)
    atomic_write_json(args.out, payload)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
