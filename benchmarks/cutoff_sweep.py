"""Seed 000 Figure 3 from converged models: the test pipeline at retrieval cutoffs K = 10 ... 1000, no retraining.

The finished cooperative runs of an experiment (by default the ML-100K sequential Table 2: Independent, ICC,
RankFlow, CoRR and tandem's variant, each trained to early stopping and selected at K = 100, as the paper's
Figure 3 models are) are loaded from their best checkpoints and their test pipeline is evaluated at every K
(top K by the retriever, re-ordered by the ranker; the fused variant keeps its validation-chosen weight). The
retriever alone is the flat line (its full ranking does not depend on K). Per-user paired tests (Wilcoxon /
paired t) of CoRR against Independent at each K. Usage:
    python benchmarks/cutoff_sweep.py [--experiment benchmarks/results/seed000-table2-ml100k-seq] [--seed 2023]
Writes benchmarks/results/seed000-fig3/{cutoff_sweep.json, cutoff_sweep.csv, seed000-fig3.png}.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from tandem.experiments.plots import sweep_plot
from tandem.experiments.runner import per_row_metrics
from tandem.experiments.tables import paired_test
from tandem.run import load_run

HERE = Path(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("independent", "icc", "rankflow", "corr", "corr-tandem")
CUTOFFS = (10, 20, 50, 100, 200, 500, 1000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default=str(HERE / "results" / "seed000-table2-ml100k-seq"))
    parser.add_argument("--seed", type=int, default=2023)
    parser.add_argument("--metric", default="ndcg@10")
    parser.add_argument("--out", default=str(HERE / "results" / "seed000-fig3"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    series: dict[str, list[float]] = {}
    per_user: dict[str, dict[int, object]] = {}
    retriever_alone = None
    cutoffs: list[int] = []
    for method in METHODS:
        run = Path(args.experiment) / "runs" / f"{method}-s{args.seed}"
        if not (run / "report.json").is_file():
            print(f"cutoff_sweep: {run} is not finished; skipped", file=sys.stderr)
            continue
        config, prepared, scheme = load_run(run)
        num_items = prepared.data.num_items
        cutoffs = [k for k in CUTOFFS if k <= num_items]
        stages = {}
        with torch.no_grad():
            for k in cutoffs:
                stages[k] = per_row_metrics(prepared.split.test,
                                            scheme.stage_rank_fns(tuple(config.eval.cutoffs), k)["pipeline"])
        per_user[method] = {k: stages[k][args.metric] for k in cutoffs}
        series[method] = [float(per_user[method][k].mean()) for k in cutoffs]
        print(method, " ".join(f"K={k}:{v:.4f}" for k, v in zip(cutoffs, series[method])), flush=True)
    alone = Path(args.experiment) / "runs" / f"retriever-s{args.seed}"
    if (alone / "report.json").is_file():
        retriever_alone = float(json.loads((alone / "report.json").read_text())["test"][args.metric])
        series["retriever alone"] = [retriever_alone] * len(cutoffs)
    if not cutoffs:
        print("cutoff_sweep: no finished cooperative run found", file=sys.stderr)
        return 2
    tests = {}
    if "corr" in per_user and "independent" in per_user:
        for k in cutoffs:
            a, b = per_user["corr"][k], per_user["independent"][k]
            wilcoxon, t_test = paired_test(a, b)
            tests[str(k)] = {"relative_change": float(a.mean() / b.mean() - 1), "p_wilcoxon": wilcoxon,
                             "p_ttest": t_test}
    record = {"command": "python benchmarks/cutoff_sweep.py", "experiment": os.path.relpath(args.experiment,
                                                                                           HERE.parent),
              "seed": args.seed, "metric": f"test {args.metric}", "cutoffs": cutoffs, "pipeline": series,
              "corr_vs_independent": tests}
    (out / "cutoff_sweep.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = ["method," + ",".join(f"K={k}" for k in cutoffs)]
    lines += [f"{method}," + ",".join(f"{v:.6f}" for v in values) for method, values in series.items()]
    (out / "cutoff_sweep.csv").write_text("\n".join(lines) + "\n")
    rows = [f"| {method} | " + " | ".join(f"{100 * v:.2f}" for v in values) + " |" for method, values in series.items()]
    p_row = ("| CoRR vs Independent, p (W) | " + " | ".join(f"{tests[str(k)]['p_wilcoxon']:.3g}" for k in cutoffs)
             + " |") if tests else ""
    summary = [f"Figure 3 without retraining: `python benchmarks/cutoff_sweep.py` evaluates the converged seed-"
               f"{args.seed} models of `{record['experiment']}` (selected at K = 100) at every retrieval cutoff K "
               f"(`benchmarks/results/seed000-fig3/seed000-fig3.png`); test {args.metric} ×100:", "",
               "| method | " + " | ".join(f"K = {k}" for k in cutoffs) + " |",
               "| --- | " + " | ".join("---" for _ in cutoffs) + " |", *rows, *([p_row] if p_row else [])]
    (out / "summary.md").write_text("\n".join(summary) + "\n")
    sweep_plot(out / "seed000-fig3.png", cutoffs, series, "retrieval cutoff K", f"test {args.metric}",
               f"pipeline vs K (seed {args.seed}, ML-100K seq)", log_x=True)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
