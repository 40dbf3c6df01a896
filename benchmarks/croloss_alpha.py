"""Seed 002's alpha finding on tandem's own runs: does a larger alpha win at small N and a smaller one at large N?

Reads the finished runs of `tandem experiment experiments/seed002-alpha.yaml` (test Recall@N per user of every
alpha), and for each cutoff N reports the mean Recall@N per alpha, the alpha that wins, the Spearman correlation
between alpha and Recall@N over the alphas, and a per-user paired test (Wilcoxon / paired t, each user averaged over the seeds) between
the largest and the smallest alpha. Draws Recall@N relative to alpha = 1.0 against alpha, one line per N (the
paper's Figure 4 plotted as a ratio, so that the cutoffs share one axis). Usage:
    python benchmarks/croloss_alpha.py [benchmarks/results/seed002-alpha]
Writes croloss_alpha.json, croloss_alpha.png and summary.md (for the README) into that directory.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from tandem.experiments.plots import sweep_plot
from tandem.experiments.spec import load_spec
from tandem.experiments.tables import finished_runs, paired_test, seed_averaged

HERE = Path(os.path.dirname(os.path.abspath(__file__)))
SPEC = HERE.parent / "experiments" / "seed002-alpha.yaml"


def alpha_of(method: str) -> float:
    """'alpha-1.2' -> 1.2 (the spec names every method after its alpha)."""
    return float(method.split("-", 1)[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default=str(HERE / "results" / "seed002-alpha"))
    args = parser.parse_args()
    out = Path(args.out)
    spec = load_spec(SPEC)
    runs = finished_runs(spec, out)
    if len(runs) < 2:
        print(f"croloss_alpha: need at least two finished alphas under {out}, found {len(runs)}", file=sys.stderr)
        return 2
    methods = sorted(runs, key=alpha_of)
    seeds = sorted(set.intersection(*(set(by_seed) for by_seed in runs.values())))
    alphas = [alpha_of(m) for m in methods]
    cutoffs = [int(metric.split("@")[1]) for metric in spec.metrics]
    summary: dict[str, object] = {"alphas": alphas, "seeds": seeds, "cutoffs": {}}
    reference = "alpha-1.0" if "alpha-1.0" in runs else methods[len(methods) // 2]
    ratios: dict[str, list[float]] = {}
    for n in cutoffs:
        metric = f"recall@{n}"
        per_user = {m: seed_averaged(out, m, "retriever", seeds, metric) for m in methods}
        means = [float(per_user[m].mean()) for m in methods]
        rho = float(stats.spearmanr(alphas, means).statistic) if len(set(means)) > 1 else 0.0
        wilcoxon, t_test = paired_test(per_user[methods[-1]], per_user[methods[0]])
        summary["cutoffs"][metric] = {
            "mean_by_alpha": dict(zip(map(str, alphas), means)),
            "best_alpha": alphas[int(np.argmax(means))],
            "spearman_alpha_vs_recall": rho,
            "largest_minus_smallest": means[-1] - means[0],
            "p_wilcoxon_largest_vs_smallest": wilcoxon,
            "p_ttest_largest_vs_smallest": t_test,
        }
        base = float(per_user[reference].mean())
        ratios[f"N = {n}"] = [value / base for value in means]
        print(f"{metric}: " + ", ".join(f"a={a:g} {v:.4f}" for a, v in zip(alphas, means))
              + f" | best alpha {summary['cutoffs'][metric]['best_alpha']:g}, Spearman {rho:+.2f}, "
              f"a={alphas[-1]:g} vs a={alphas[0]:g} p={wilcoxon:.3g}")
    sweep_plot(out / "croloss_alpha.png", alphas, ratios, "alpha", f"test Recall@N / Recall@N at {reference}",
               "CROLoss (sigmoid kernel), MF on ML-100K")
    (out / "croloss_alpha.json").write_text(json.dumps(summary, indent=2) + "\n")
    rows = []
    for metric, entry in summary["cutoffs"].items():
        means = " | ".join(f"{100 * entry['mean_by_alpha'][str(a)]:.2f}" for a in alphas)
        rows.append(f"| {metric} | {means} | {entry['best_alpha']:g} | {entry['spearman_alpha_vs_recall']:+.2f} | "
                    f"{entry['p_wilcoxon_largest_vs_smallest']:.2g} |")
    lines = [f"Seed 002's alpha finding on these runs (`python benchmarks/croloss_alpha.py`, "
             f"`croloss_alpha.png`), test ×100, {len(seeds)} seed(s):", "",
             "| metric | " + " | ".join(f"α = {a:g}" for a in alphas) + " | best α | Spearman(α, recall) | "
             f"p, α = {alphas[-1]:g} vs {alphas[0]:g} (W) |",
             "| --- | " + " | ".join("---" for _ in alphas) + " | --- | --- | --- |", *rows]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'croloss_alpha.json'} and {out / 'croloss_alpha.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
