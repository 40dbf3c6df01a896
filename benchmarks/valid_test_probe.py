"""Why does the sequential ranker lose more from validation to test than the retriever? Two measurements on
finished runs (no retraining), beside benchmarks/ranker_by_popularity.py's popularity split (issue 9).

1. **Ties.** MovieLens-100K's timestamps are seconds and about half of a user's consecutive interactions share one
   (the order inside a tie is the file's). Valid and test rows are split by whether the target's timestamp equals
   the previous item's: a tied test target is exchangeable in time with the validation target, an untied one
   begins a later moment. Per group: the retriever's recall@K, and on the rows whose target is a candidate, NDCG@10
   of the target under the retriever's order and under the ranker's; with the gap in days before each target.
2. **Selection.** Early stopping keeps the epoch with the best validation pipeline NDCG@10; the maximum of a noisy
   curve is above its plateau. The gap between the kept epoch's value and the mean over the epochs after the first
   quarter measures how much of the validation figure is that selection.

Usage: python benchmarks/valid_test_probe.py RUN_DIR [RUN_DIR ...]   (sequential two-stage runs)
Writes benchmarks/results/valid_test_probe.json.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch

from ranker_by_popularity import candidate_ranks, ndcg_at_10
from tandem.run import load_run
from tandem.utils import atomic_write_json

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results", "valid_test_probe.json")
OFFSET_FROM_END = {"valid": 2, "test": 1}  # the target's position counted from the user's last interaction


def tie_split(run_dir: str) -> dict[str, object]:
    config, prepared, scheme = load_run(run_dir)
    scheme.eval()
    data = prepared.data
    out: dict[str, object] = {}
    for name, offset in OFFSET_FROM_END.items():
        eval_set = getattr(prepared.split, name)
        users = eval_set.tensors["user"].numpy()
        ranks = candidate_ranks(scheme, eval_set, config.eval.retrieval_cutoff)
        target_at = data.indptr[users + 1] - offset
        if not np.array_equal(data.items[target_at], ranks["target"]):
            raise SystemExit(f"{run_dir}: {name} targets are not the users' interactions {offset} from the end")
        gap_days = (data.timestamps[target_at] - data.timestamps[target_at - 1]) / 86400.0
        tied = gap_days == 0
        groups: dict[str, object] = {}
        for label, mask in (("tied", tied), ("untied", ~tied)):
            inside = ranks["inside"] & mask
            groups[label] = {
                "rows": int(mask.sum()),
                "retriever_recall@K": float(ranks["inside"][mask].mean()),
                "retriever_ndcg@10_in_candidates": float(ndcg_at_10(ranks["retriever"][inside]).mean()),
                "ranker_ndcg@10_in_candidates": float(ndcg_at_10(ranks["ranker"][inside]).mean()),
            }
        groups["gap_days"] = {"median": float(np.median(gap_days)), "mean": float(gap_days.mean()),
                              "share_over_1_day": float((gap_days > 1).mean()),
                              "share_over_30_days": float((gap_days > 30).mean())}
        out[name] = groups
    return out


def selection(run_dir: str) -> dict[str, float]:
    with open(os.path.join(run_dir, "metrics.jsonl")) as lines:
        curve = [json.loads(line)["valid"]["pipeline"]["ndcg@10"] for line in lines if '"valid"' in line]
    with open(os.path.join(run_dir, "report.json")) as report_file:
        report = json.load(report_file)
    plateau = float(np.mean(curve[len(curve) // 4:]))
    kept = float(report["valid"]["pipeline"]["ndcg@10"])
    return {"epochs": len(curve), "kept_valid_pipeline_ndcg@10": kept, "plateau_mean": plateau,
            "selection_gain": kept - plateau, "test_pipeline_ndcg@10": float(report["test"]["pipeline"]["ndcg@10"]),
            "drop_from_plateau": 1.0 - float(report["test"]["pipeline"]["ndcg@10"]) / plateau,
            "drop_from_kept": 1.0 - float(report["test"]["pipeline"]["ndcg@10"]) / kept}


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    runs = {os.path.normpath(path): {"ties": tie_split(path), "selection": selection(path)} for path in sys.argv[1:]}
    atomic_write_json(OUT, {"command": "python benchmarks/valid_test_probe.py " + " ".join(sys.argv[1:]), "runs": runs})
    print(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
