"""Evaluation speed on the real Gowalla and memory at 1M items x 10k users, written to benchmarks/results/evaluation.json.

Issue 10, sec. 2. Everything on one thread (torch.set_num_threads(1)).

1. Gowalla (configs/gowalla-general-mf.yaml: the 10-core check-ins read by the `gowalla-mat` reader, per-user
   0.8/0.1/0.1 split, MF d = 64, sampled softmax with 20 uniform negatives, batch 512): one training epoch of MF
   (the trainer's own epoch timing), then full validation passes (29,858 rows, 40,988 items, known items masked,
   recall/ndcg/mrr/hit @10/20/50) timed with time.perf_counter (median of --passes). Goal: pass <= 0.5 x epoch.
2. The previous implementation (argsort of every row), kept below as `argsort_full_ranking_metrics`, run on the
   first --reference-rows validation rows: its metrics must equal the new ones exactly (|diff| <= 1e-12), and its
   time per row extrapolated to the whole pass is the "before" figure.
3. Memory: a fresh child process evaluates an MF with 1,000,000 items (d = 64) for 10,000 users (10 targets, 50
   known items each, eval batch 1024 as configured by default), full ranking and the two-stage pipeline (top 100
   re-ranked); peak RSS (VmHWM, the process's high-water mark) before and after. Goal: < 2 GB. The previous
   implementation held >= 24 bytes x 1024 x (N+1) per batch (scores, their masked copy, argsort and positions:
   about 24.6 GB at N = 1M).

Usage: python benchmarks/evaluation.py [--passes 3] [--reference-rows 2048] [--items 1000000 --users 10000]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CUTOFFS = (10, 20, 50)

Batch = dict[str, torch.Tensor]


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far: VmHWM of /proc/self/status (the high-water mark of this
    process image; ru_maxrss would also count the parent's pages from before exec), else ru_maxrss (KiB)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def argsort_full_ranking_metrics(
    score_all: Callable[[Batch], torch.Tensor], cutoffs: tuple[int, ...]
) -> Callable[[Batch, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]:
    """The implementation before issue 10: mask, stable-argsort every row over all items, scatter positions."""
    from tandem.evaluation.metrics import metrics_from_ranks

    def rank_batch(batch: Batch, targets: torch.Tensor, known: torch.Tensor) -> dict[str, torch.Tensor]:
        scores = score_all(batch).float().clone()
        target_scores = scores.gather(1, targets)
        scores.scatter_(1, known, float("-inf"))
        scores.scatter_(1, targets, target_scores)
        scores[:, 0] = float("-inf")
        order = torch.argsort(scores, dim=1, descending=True, stable=True)
        positions = torch.empty_like(order)
        positions.scatter_(1, order, torch.arange(scores.shape[1]).expand_as(order))
        return metrics_from_ranks(positions.gather(1, targets).double(), targets > 0, cutoffs)

    return rank_batch


def first_rows(eval_set: Any, rows: int) -> Any:
    """The first `rows` rows of an EvalSet."""
    from tandem.data.splits import EvalSet

    rows = min(rows, len(eval_set))
    t_end, k_end = int(eval_set.target_indptr[rows]), int(eval_set.known_indptr[rows])
    return EvalSet({key: value[:rows] for key, value in eval_set.tensors.items()},
                   eval_set.target_indptr[: rows + 1], eval_set.target_items[:t_end],
                   eval_set.known_indptr[: rows + 1], eval_set.known_items[:k_end])


def gowalla(args: argparse.Namespace) -> dict[str, Any]:
    """One MF epoch on Gowalla against full validation passes, and the old implementation on a subset."""
    from tandem.config import load_config
    from tandem.evaluation import evaluate_batches, full_ranking_metrics
    from tandem.run import build_scheme, prepare
    from tandem.training.trainer import Trainer, TrainerSettings

    config = load_config(args.config, ["train.epochs=1", "train.progress=false", "train.threads=1"])
    started = time.perf_counter()
    prepared = prepare(config)
    load_seconds = time.perf_counter() - started
    torch.manual_seed(config.seed)
    scheme = build_scheme(config, prepared)
    trainer = Trainer(TrainerSettings.of(config), scheme, prepared.split)
    fit = trainer.fit()  # one epoch (timed by the trainer, training only), then valid + test passes
    epoch_seconds = fit.seconds_per_epoch
    valid = prepared.split.valid
    pass_seconds, metrics = [], {}
    for _ in range(args.passes):
        begin = time.perf_counter()
        metrics = trainer.evaluate("valid")
        pass_seconds.append(time.perf_counter() - begin)
    valid_seconds = statistics.median(pass_seconds)

    subset = first_rows(valid, args.reference_rows)
    batch_size = config.train.eval_batch_size
    scheme.eval()
    with torch.no_grad():
        begin = time.perf_counter()
        new = evaluate_batches(subset, full_ranking_metrics(scheme.retriever.score_all, CUTOFFS), batch_size)
        new_seconds = time.perf_counter() - begin
        begin = time.perf_counter()
        old = evaluate_batches(subset, argsort_full_ranking_metrics(scheme.retriever.score_all, CUTOFFS), batch_size)
        old_seconds = time.perf_counter() - begin
    max_diff = max(abs(new[key] - old[key]) for key in old)
    stats = prepared.data.stats()
    return {
        "config": os.path.relpath(args.config, ROOT),
        "dataset": {"users": stats["users"], "items": stats["items"], "interactions": stats["interactions"],
                    **prepared.split.stats()},
        "data_load_seconds": round(load_seconds, 2),
        "eval_batch_size": batch_size,
        "mf_epoch_seconds": round(epoch_seconds, 3),
        "validation_pass_seconds": round(valid_seconds, 3),
        "validation_pass_seconds_all": [round(s, 3) for s in pass_seconds],
        "ratio_validation_pass_over_epoch": round(valid_seconds / epoch_seconds, 4),
        "goal_ratio_at_most_0.5": valid_seconds / epoch_seconds <= 0.5,
        "validation_metrics": {key: round(float(value), 6) for key, value in metrics.items()},
        "reference_check": {
            "rows": len(subset),
            "new_seconds": round(new_seconds, 3),
            "argsort_seconds": round(old_seconds, 3),
            "argsort_pass_seconds_extrapolated": round(old_seconds * len(valid) / len(subset), 1),
            "speedup": round(old_seconds / new_seconds, 1),
            "max_abs_metric_difference": max_diff,
            "identical": max_diff <= 1e-12,
        },
    }


def memory_child(items: int, users: int, dim: int, targets: int, known: int, seed: int) -> dict[str, Any]:
    """In a fresh process: peak RSS of full-ranking and two-stage evaluation of a large MF."""
    from tandem.data.splits import EvalSet
    from tandem.evaluation import evaluate_batches, full_ranking_metrics, two_stage_metrics
    from tandem.models.retrievers.mf import MF

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rss_start = peak_rss_bytes()
    model = MF(users, items, embedding_dim=dim).eval()
    rng = np.random.default_rng(seed)
    eval_set = EvalSet({"user": torch.arange(users)},
                       np.arange(users + 1) * targets, rng.integers(1, items + 1, users * targets),
                       np.arange(users + 1) * known, rng.integers(1, items + 1, users * known))
    rss_model = peak_rss_bytes()
    out: dict[str, Any] = {"items": items, "users": users, "dim": dim, "targets_per_user": targets,
                           "known_per_user": known, "eval_batch_size": 1024,
                           "peak_rss_bytes_after_import": rss_start, "peak_rss_bytes_after_model_and_data": rss_model}
    with torch.no_grad():
        begin = time.perf_counter()
        evaluate_batches(eval_set, full_ranking_metrics(model.score_all, CUTOFFS), 1024)
        out["full_ranking_seconds"] = round(time.perf_counter() - begin, 1)
        out["peak_rss_bytes_after_full_ranking"] = peak_rss_bytes()
        begin = time.perf_counter()
        evaluate_batches(eval_set, two_stage_metrics(model.score_all, model.score, 100, CUTOFFS), 1024)
        out["two_stage_seconds"] = round(time.perf_counter() - begin, 1)
        out["peak_rss_bytes_after_two_stage"] = peak_rss_bytes()
    out["peak_rss_gib"] = round(out["peak_rss_bytes_after_two_stage"] / 2**30, 3)
    out["goal_under_2_gb"] = out["peak_rss_bytes_after_two_stage"] < 2 * 10**9
    out["argsort_implementation_bytes_per_batch_estimate"] = 24 * 1024 * (items + 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=os.path.join(ROOT, "configs", "gowalla-general-mf.yaml"))
    parser.add_argument("--passes", type=int, default=3, help="validation passes timed (median reported)")
    parser.add_argument("--reference-rows", type=int, default=2048, help="rows checked against the argsort path")
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-gowalla", action="store_true")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "evaluation.json"))
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(args.items, args.users, args.dim, 10, 50, args.seed)))
        return
    torch.set_num_threads(1)
    from tandem.utils import atomic_write_json

    result: dict[str, Any] = {"threads": 1, "machine": {"platform": platform.platform(), "torch": torch.__version__,
                                                         "cpus": os.cpu_count()}}
    child = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--memory-child", "--items", str(args.items),
         "--users", str(args.users), "--dim", str(args.dim), "--seed", str(args.seed)],
        check=True, capture_output=True, text=True,
    )
    result["memory"] = json.loads(child.stdout.strip().splitlines()[-1])
    print(json.dumps(result["memory"], indent=1))
    if not args.skip_gowalla:
        os.chdir(ROOT)  # the config's data path is relative to the repository root
        result["gowalla"] = gowalla(args)
        print(json.dumps(result["gowalla"], indent=1))
    atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
