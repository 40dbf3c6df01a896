"""Loss families on MovieLens-100K, written to JSON.

Part 1 (seed 002 Tables 2-3 structure): SASRec (S = tau * cos) trained with cross-entropy, BPR, triplet, CROLoss
and CROLoss-Lambda; Recall@{10, 20, 50, 100}; plus CROLoss with alpha in {0.6, 0.8, 1.0, 1.2}.
Part 2 (seed 003 Table 2 structure): MF (dim 32) trained with uniform BPR, DNS, PRIS-style importance sampling,
AdaSIR(U), AdaSIR(P), AdaSIR-W; NDCG@50 and Recall@50.

Usage: python benchmarks/losses.py [--seq-epochs 10] [--mf-epochs 30] [--seeds 0] [--out ...]
"""
from __future__ import annotations

import argparse
import os
import time

from tandem.experiments.grid import Entry, markdown_table, run_grid
from tandem.utils import atomic_write_json

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = os.path.join(HERE, "..", "configs")
RECALLS = ["recall@10", "recall@20", "recall@50", "recall@100"]
SEQ_CUTOFFS = "eval.cutoffs=[10, 20, 50, 100]"


def config(name: str) -> str:
    return os.path.join(CONFIGS, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seq-epochs", type=int, default=10)
    parser.add_argument("--mf-epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--patience", type=int, default=0, help="early-stopping patience (0 = run every epoch)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--parts", nargs="+", default=["seq", "mf"], choices=["seq", "mf"])
    parser.add_argument("--out", default=os.path.join(HERE, "results", "losses.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    payload: dict = {"seeds": args.seeds}
    if "seq" in args.parts:
        cosine = ["retriever.similarity=cosine", "retriever.tau=10.0"]
        seq_entries = [
            Entry("softmax CE", config("ml100k-seq-sasrec.yaml"), cosine),
            Entry("BPR", config("ml100k-seq-bpr.yaml")),
            Entry("triplet", config("ml100k-seq-triplet.yaml")),
            Entry("CROLoss", config("ml100k-seq-croloss.yaml")),
            Entry("CROLoss-Lambda", config("ml100k-seq-croloss-lambda.yaml")),
        ] + [
            Entry(f"CROLoss alpha={alpha}", config("ml100k-seq-croloss.yaml"), [f"loss.alpha={alpha}"])
            for alpha in (0.6, 0.8, 1.2)
        ]
        common = [SEQ_CUTOFFS, f"train.epochs={args.seq_epochs}", f"train.patience={args.seq_epochs}",
                  f"train.threads={args.threads}"]
        payload["sequential"] = run_grid(seq_entries, args.seeds, common)
        print(markdown_table(payload["sequential"], RECALLS, scale=100.0))
    if "mf" in args.parts:
        mf_entries = [
            Entry("BPR (uniform)", config("ml100k-general-bpr.yaml")),
            Entry("DNS", config("ml100k-general-dns.yaml")),
            Entry("PRIS(U)", config("ml100k-general-pris.yaml")),
            Entry("AdaSIR(U)", config("ml100k-general-adasir.yaml")),
            Entry("AdaSIR(P)", config("ml100k-general-adasir-pop.yaml")),
            Entry("AdaSIR-W", config("ml100k-general-adasir-w.yaml")),
        ]
        common = [f"train.epochs={args.mf_epochs}", f"train.patience={args.patience or args.mf_epochs}",
                  f"train.threads={args.threads}"]
        payload["general"] = run_grid(mf_entries, args.seeds, common)
        print(markdown_table(payload["general"], ["ndcg@50", "recall@50"], scale=100.0))
    payload["total_seconds"] = time.perf_counter() - started
    atomic_write_json(args.out, payload)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
