"""How often would a hard-negative sampler draw a held-out positive? The false-negative rate of "top-scored items".

DNS and AdaSIR draw negatives among the items the model scores highest for a user (AdaSIR: a pool resampled by
score). Items the user has in its validation or test split are not known at training time, so they count as
negatives there. For a finished general-task run this measures, per test user, the share of the user's held-out
items (validation + test) among the model's top-M non-training items (M = 200, AdaSIR's pool size), against the
share among all non-training items (what a uniform sampler draws). Batched over users (boolean item masks). Usage:
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
from tandem.utils import atomic_write_json

HERE = os.path.dirname(os.path.abspath(__file__))


def mask_of(indptr: np.ndarray, items: np.ndarray, rows: int, num_items: int) -> np.ndarray:
    """A [rows, N + 1] boolean matrix, True at the items each CSR row holds."""
    mask = np.zeros((rows, num_items + 1), dtype=bool)
    mask[np.repeat(np.arange(rows), np.diff(indptr)), items] = True
    return mask


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
        test, valid = split.test, split.valid
        users = test.tensors["user"]
        rows = users.shape[0]
        held = mask_of(test.target_indptr, test.target_items, rows, num_items)  # test items ...
        row_of_user = np.full(prepared.data.num_users, -1)
        row_of_user[users.numpy()] = np.arange(rows)
        valid_rows = row_of_user[valid.tensors["user"].numpy()]
        lengths = np.diff(valid.target_indptr)
        target_rows = np.repeat(valid_rows, lengths)
        kept = target_rows >= 0
        held[target_rows[kept], valid.target_items[kept]] = True  # ... and the same users' validation items
        # what training knew: the test rows' known items (training + validation) less the held-out ones
        known = mask_of(test.known_indptr, test.known_items, rows, num_items) & ~held
        with torch.no_grad():
            scores = scheme.retriever.score_all({"user": users})
        scores[torch.from_numpy(known)] = float("-inf")
        scores[:, 0] = float("-inf")
        values, top = scores.topk(args.top, dim=1)
        drawn = torch.isfinite(values)
        hits = torch.from_numpy(held).gather(1, top) & drawn
        top_share = (hits.sum(1) / drawn.sum(1).clamp_min(1)).numpy()
        uniform_share = held.sum(1) / np.maximum(1, num_items - known[:, 1:].sum(1))
        record = {"top": args.top, "users": rows,
                  "held_out_share_in_top": float(top_share.mean()),
                  "held_out_share_uniform": float(uniform_share.mean())}
        record["ratio"] = record["held_out_share_in_top"] / record["held_out_share_uniform"]
        results[os.path.basename(os.path.normpath(run))] = record
        print(os.path.basename(os.path.normpath(run)), json.dumps(record), flush=True)
    command = f"python benchmarks/false_negatives.py {' '.join(args.runs)}"
    atomic_write_json(args.out, {"command": command, "runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
