"""`make demo`: on the embedded MovieLens-100K (sequential task), train SASRec alone and CoRR (SASRec + DIN, MIDX
negatives, sampled KL; Algorithm 1), then print side by side on the test set:

- SASRec alone (retriever only);
- CoRR's retriever (SASRec after distillation from DIN);
- CoRR's pipeline as the paper evaluates it (top-100 by the retriever, re-ordered by DIN alone);
- CoRR's pipeline with tandem's fused final order (retriever and ranker scores blended, the weight chosen on
  validation; weight 0 is the retriever's order).

and says in plain words whether cooperation paid off. Each run trains to early stopping on validation, capped at
`--epochs` (default 2) so the demo stays within five minutes on two CPU cores (`python benchmarks/demo_run.py`
measures it: benchmarks/results/demo.json); the converged tables are in
`benchmarks/results/` (`tandem experiment experiments/...`).
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

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
CONVERGED = ROOT / "benchmarks" / "results" / "seed000-table2-ml100k-seq" / "results.csv"
CONVERGED_GENERAL = ROOT / "benchmarks" / "results" / "seed000-table2-ml100k" / "results.csv"
CONVERGED_METHODS = {"retriever": "SASRec alone", "independent": "Independent", "corr": "CoRR (paper)",
                     "corr-tandem": "CoRR, tandem's variant"}
SASREC_CONFIG = "ml100k-seq-sasrec.yaml"
CORR_CONFIG = "ml100k-seq-corr.yaml"
COLUMNS = ["recall@10", "ndcg@10", "mrr@10", "recall@20", "ndcg@20"]


def verdict(rows: dict[str, dict[str, float]], metric: str = "ndcg@10") -> str:
    """One sentence per comparison that the demo promises to make."""
    alone = rows["SASRec alone"][metric]
    lines = []
    for label in ("CoRR retriever (SASRec)", "CoRR pipeline, DIN order (paper)", "CoRR pipeline, fused (tandem)"):
        value = rows[label][metric]
        change = 100.0 * (value / alone - 1.0) if alone > 0 else float("nan")
        word = "above" if value > alone else "below" if value < alone else "equal to"
        lines.append(f"{label}: {metric} {value:.4f}, {change:+.1f} % ({word} SASRec alone, {alone:.4f})")
    return "\n".join(lines)


def converged_summary(path: Path = CONVERGED, metric: str = "ndcg@10", retriever: str = "SASRec") -> str | None:
    """What the committed converged runs of a table measured (test, final stage, mean over seeds), and whether the
    paper's cooperative gain shows there: the short runs above are not evidence either way."""
    if not path.is_file():
        return None
    import pandas as pd

    frame = pd.read_csv(path)
    frame = frame[(frame.split == "test") & (frame.metric == metric)]
    means, seeds = {}, {}
    labels = {**CONVERGED_METHODS, "retriever": f"{retriever} alone"}
    for method, label in labels.items():
        rows = frame[frame.method == method]
        stage = "pipeline" if (rows.stage == "pipeline").any() else "retriever"
        rows = rows[rows.stage == stage]
        if len(rows):
            means[method], seeds[method] = float(rows.value.mean()), len(rows)
    if "retriever" not in means or "corr" not in means:
        return None
    parts = ", ".join(f"{labels[m]} {v:.4f} ({seeds[m]} seed{'s' if seeds[m] > 1 else ''})"
                      for m, v in means.items())
    best = max(means, key=means.get)
    if means["corr"] > means["retriever"]:
        margin = means["corr"] / means.get("independent", means["corr"]) - 1
        finding = (f"CoRR's pipeline beats {retriever} alone there ({100 * margin:+.1f} % over Independent; the "
                   f"best is {labels[best]})")
    else:
        finding = f"the paper's cooperative gain does not reproduce there: the best is {labels[best]}"
    return (f"Converged runs ({path.relative_to(ROOT)}, trained to early stopping), test {metric}: "
            f"{parts}; {finding}. The README's results section says why.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=2, help="at most this many epochs per run (default 2)")
    parser.add_argument("--out", default=None, help="directory for the runs (default runs/demo-<time>)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        print("tandem demo: error: --epochs must be >= 1", file=sys.stderr)
        return 2
    out = Path(args.out or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
    common = [f"train.epochs={args.epochs}", "train.patience=2"]
    rows: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    try:
        print(f"== training SASRec alone (at most {args.epochs} epochs)", flush=True)
        report = train_run(load_config(CONFIGS / SASREC_CONFIG, common), out / "sasrec")
        rows["SASRec alone"] = report["test"]
        print(f"   {report['seconds_per_epoch']:.1f} s/epoch", flush=True)
        print(f"== training CoRR, SASRec + DIN (at most {args.epochs} epochs)", flush=True)
        config = load_config(CONFIGS / CORR_CONFIG, [*common, "scheme.fusion=true"])
        report = train_run(config, out / "corr")
        rows["CoRR retriever (SASRec)"] = report["test"]["retriever"]
        rows["CoRR pipeline, DIN order (paper)"] = report["test"]["pipeline_ranker_only"]
        rows["CoRR pipeline, fused (tandem)"] = report["test"]["pipeline"]
        weight = report["test"]["fusion"]["weight"]
        print(f"   {report['seconds_per_epoch']:.1f} s/epoch", flush=True)
    except TandemError as error:
        print(f"tandem demo: error: {error}", file=sys.stderr)
        return 2
    print(f"\nMovieLens-100K, sequential task, test set (retrieve top-100, then rank), "
          f"{time.perf_counter() - started:.0f} s in all:\n")
    print(metric_table(rows, COLUMNS))
    print(f"\nfused order: weight {weight:.1f} on DIN (chosen on validation; 0 = the retriever's order)")
    print(verdict(rows))
    for summary in (converged_summary(), converged_summary(CONVERGED_GENERAL, retriever="MF")):
        if summary:
            print(f"\n{summary}")
    print(f"\nruns written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
