"""Fuse the two stages of finished cooperative runs after the fact: load each run's best checkpoint, choose the
fusion weight on validation (tandem's `fusion` option; weight 0 = the retriever's own order), and compare the
fused test pipeline per user with the run's own retriever and with the ranker-only pipeline (the paper's).

Training is unchanged (fusion only changes the final order), so this measures tandem's fused pipeline on the very
models of an experiment. Usage:
    python benchmarks/posthoc_fusion.py benchmarks/results/seed000-table2-ml100k-seq/runs/corr-s2023 ...
Writes benchmarks/results/posthoc_fusion.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from tandem.experiments.runner import per_row_metrics
from tandem.experiments.tables import paired_test
from tandem.run import load_run

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", help="finished cooperative run directories")
    parser.add_argument("--metric", default="ndcg@10")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "posthoc_fusion.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    for run_dir in args.runs:
        config, prepared, scheme = load_run(run_dir)
        cutoffs, k = tuple(config.eval.cutoffs), config.eval.retrieval_cutoff
        scheme.fusion = True
        valid = scheme.evaluate(prepared.split.valid, cutoffs, 1024, retrieval_cutoff=k, calibrate=True,
                                monitor=args.metric)
        stages = {name: per_row_metrics(prepared.split.test, fn, 1024)[args.metric]
                  for name, fn in scheme.stage_rank_fns(cutoffs, k).items()}
        weight = float(scheme.fusion_weight)
        scheme.fusion_weight.fill_(1.0)
        stages["pipeline_ranker_only"] = per_row_metrics(
            prepared.split.test, scheme.stage_rank_fns(cutoffs, k)["pipeline"], 1024)[args.metric]
        fused, own, ranker = stages["pipeline"], stages["retriever"], stages["pipeline_ranker_only"]
        record = {
            "fusion_weight_chosen_on_valid": weight,
            "valid": {"retriever": valid["retriever"][args.metric], "fused": valid["pipeline"][args.metric],
                      "ranker_only": valid["pipeline_ranker_only"][args.metric]},
            "test": {"retriever": float(own.mean()), "fused": float(fused.mean()),
                     "ranker_only": float(ranker.mean())},
            "p_fused_vs_retriever (wilcoxon, t)": paired_test(fused, own),
            "p_fused_vs_ranker_only (wilcoxon, t)": paired_test(fused, ranker),
        }
        results[os.path.basename(os.path.normpath(run_dir))] = record
        print(os.path.basename(os.path.normpath(run_dir)), json.dumps(record), flush=True)
    with open(args.out, "w") as stream:
        json.dump({"metric": args.metric, "runs": results}, stream, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
