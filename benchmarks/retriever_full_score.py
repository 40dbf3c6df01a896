"""A retriever-only run whose model scores more than its indexed part (NeuMF): its test set ranked by the indexed
part alone (what the run's evaluation reports) and by the served order (top `eval.retrieval_cutoff` by the indexed
part, re-scored by the full score), per user, with a paired test between the two.

Usage: python benchmarks/retriever_full_score.py RUN_DIR [RUN_DIR ...]
    e.g. benchmarks/results/seed000-table2-retrievers/runs/ncf-s2023
Writes benchmarks/results/retriever_full_score.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from tandem.evaluation.ranking import full_ranking_metrics, two_stage_metrics
from tandem.experiments.runner import per_row_metrics
from tandem.experiments.tables import paired_test
from tandem.run import load_run
from tandem.utils import atomic_write_json

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="finished retriever-only run directories")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "retriever_full_score.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    for run_dir in args.runs:
        config, prepared, scheme = load_run(run_dir)
        model = scheme.retriever
        if not getattr(model, "has_full_score", False):
            print(f"retriever_full_score: {run_dir}: {type(model).__name__} has no full score", file=sys.stderr)
            return 2
        cutoffs, k = tuple(config.eval.cutoffs), int(config.eval.retrieval_cutoff)
        with torch.no_grad():
            indexed = per_row_metrics(prepared.split.test, full_ranking_metrics(model.score_all, cutoffs))
            served = per_row_metrics(prepared.split.test, two_stage_metrics(model.score_all, model.full_score, k,
                                                                            cutoffs))
        record = {"retrieval_cutoff": k,
                  "indexed_part": {name: float(values.mean()) for name, values in indexed.items()},
                  "full_score_over_top_k": {name: float(values.mean()) for name, values in served.items()}}
        for metric in ("ndcg@10", "recall@10"):
            wilcoxon, t_test = paired_test(served[metric], indexed[metric])
            record[f"{metric}_change"] = float(served[metric].mean() / indexed[metric].mean() - 1)
            record[f"{metric}_p_wilcoxon_t"] = [wilcoxon, t_test]
        name = os.path.basename(os.path.normpath(run_dir))
        results[name] = record
        print(name, json.dumps(record), flush=True)
    command = f"python benchmarks/retriever_full_score.py {' '.join(args.runs)}"
    atomic_write_json(args.out, {"command": command, "runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
