"""How often would a hard-negative sampler draw a held-out positive? The false-negative rate of "top-scored items".

DNS and AdaSIR draw negatives among the items the model scores highest for a user (AdaSIR: a pool resampled by
score). Items the user has in its validation or test split are not known at training time, so they count as
negatives there. For a finished general-task run this measures, per test user, the share of the user's held-out
items (validation + test) among the model's top-M non-training items (M = 200, AdaSIR's pool size), against the
share among all non-training items (what a uniform sampler draws). Usage:
    python benchmarks/false_negatives.py RUN_DIR [RUN_DIR ...] [--top 200]
Writes benchmarks/results/false_negatives.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

from tandem.run import load_run

HERE = os.path.dirname(os.path.abspath(__file__))


def rows_of(indptr: np.ndarray, items: np.ndarray) -> list[np.ndarray]:
    return [items[indptr[r]:indptr[r + 1]] for r in range(len(indptr) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--top", type=int, default=200)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "false_negatives.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    for run in args.runs:
        config, prepared, scheme = load_run(run)
        if config.task != "general":
            print(f"false_negatives: {run} is not a general-task run", file=sys.stderr)
            return 2
        split, num_items = prepared.split, prepared.data.num_items
        test = split.test
        users = test.tensors["user"]
        known = rows_of(test.known_indptr, test.known_items)  # training items (masked when ranking)
        held = {int(u): set(t.tolist()) for u, t in zip(users, rows_of(test.target_indptr, test.target_items))}
        valid_users = split.valid.tensors["user"]
        for u, t in zip(valid_users, rows_of(split.valid.target_indptr, split.valid.target_items)):
            held.setdefault(int(u), set()).update(t.tolist())
        with torch.no_grad():
            scores = scheme.retriever.score_all({"user": users})
        scores[:, 0] = float("-inf")
        top_share, uniform_share = [], []
        for row, user in enumerate(users.tolist()):
            train_items = known[row]
            row_scores = scores[row].clone()
            row_scores[torch.as_tensor(train_items, dtype=torch.long)] = float("-inf")
            top = row_scores.topk(min(args.top, num_items - len(train_items))).indices.numpy()
            positives = held[user]
            top_share.append(np.isin(top, list(positives)).mean())
            uniform_share.append(len(positives) / max(1, num_items - len(set(train_items.tolist()))))
        record = {"top": args.top, "users": len(top_share),
                  "held_out_share_in_top": float(np.mean(top_share)),
                  "held_out_share_uniform": float(np.mean(uniform_share))}
        record["ratio"] = record["held_out_share_in_top"] / record["held_out_share_uniform"]
        results[os.path.basename(os.path.normpath(run))] = record
        print(os.path.basename(os.path.normpath(run)), json.dumps(record), flush=True)
    with open(args.out, "w") as stream:
        json.dump({"command": "python benchmarks/false_negatives.py " + " ".join(args.runs), "runs": results},
                  stream, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
