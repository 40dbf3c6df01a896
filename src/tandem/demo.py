"""`make demo`: on the embedded MovieLens-100K, train the Independent pipeline (SASRec + DIN, each trained alone)
and CoRR (SASRec + DIN, MIDX negatives, sampled KL), then print side by side the retriever alone, Independent and
CoRR. Independent's retriever is exactly a SASRec trained alone (its own loss, its own sampler, no ranker
influence), so it serves as the retriever-alone row without a third run.

One epoch per run keeps it under five minutes on two CPU cores (two epochs took 316 s there); `--epochs N` trains
longer. The full experiments live in `configs/` and `benchmarks/`.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tandem.config import load_config
from tandem.errors import TandemError
from tandem.reporting import metric_table
from tandem.run import train_run

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RUNS = (("Independent", "ml100k-seq-independent.yaml"), ("CoRR", "ml100k-seq-corr.yaml"))
COLUMNS = ["recall@10", "ndcg@10", "mrr@10", "recall@20", "ndcg@20"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=1, help="epochs per run (default 1: under five minutes)")
    parser.add_argument("--out", default=None, help="directory for the runs (default runs/demo-<time>)")
    args = parser.parse_args(argv)
    out = Path(args.out or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
    rows: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    try:
        for label, name in RUNS:
            print(f"== training {label} ({name}, {args.epochs} epochs)", flush=True)
            config = load_config(CONFIGS / name, [f"train.epochs={args.epochs}", f"train.patience={args.epochs}"])
            report = train_run(config, out / Path(name).stem)
            if label == "Independent":
                rows["SASRec alone"] = report["test"]["retriever"]
                rows["Independent (SASRec -> DIN)"] = report["test"]["pipeline"]
            else:
                rows["CoRR retriever (SASRec)"] = report["test"]["retriever"]
                rows["CoRR (SASRec -> DIN)"] = report["test"]["pipeline"]
            print(f"   {report['seconds_per_epoch']:.1f} s/epoch", flush=True)
    except TandemError as error:
        print(f"tandem demo: error: {error}", file=sys.stderr)
        return 2
    print(f"\nMovieLens-100K, sequential task, test set (retrieve top-100, then rank), "
          f"{time.perf_counter() - started:.0f} s in all:\n")
    print(metric_table(rows, COLUMNS))
    print(f"\nruns written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
