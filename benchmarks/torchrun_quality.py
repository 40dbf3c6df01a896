"""Does training under torchrun match one process in quality? MF + MIDX on ML-100K (general task), to convergence.

Three runs of configs/ml100k-general-mf.yaml with MIDX negatives (`sampler: midx`, 8 clusters per half, rebuilt
every epoch, as the CoRR authors), each to early stopping on validation NDCG@10 (patience 10, at most 100 epochs):
- `single`: one process, batch 512;
- `torchrun-2`: `torchrun --nproc_per_node 2`, batch 512 per process (global batch 1024, half the steps per
  epoch: what a user gets by adding a process);
- `torchrun-2-same-global-batch`: 2 processes of batch 256 (global batch 512, the single run's steps per epoch).
For each: test metrics, epochs, wall seconds per epoch; per-user test NDCG@10 of each torchrun run against the
single run (Wilcoxon / paired t). Seeds differ per rank by design (seed + rank), so equal means equal in
distribution, not bit for bit. Usage:
    python benchmarks/torchrun_quality.py [--threads 1]
Writes benchmarks/results/torchrun_quality.json (run directories under /tmp unless --work).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from tandem.experiments.runner import per_row_metrics, stage_functions
from tandem.experiments.tables import paired_test
from tandem.run import load_run

HERE = Path(os.path.dirname(os.path.abspath(__file__)))
ROOT = HERE.parent
CONFIG = ROOT / "configs" / "ml100k-general-mf.yaml"
SETS = ["sampler={name: midx, num_clusters: 8, refresh: epoch}", "train.progress=false"]
RUNS = {
    "single": (1, 512),
    "torchrun-2": (2, 512),
    "torchrun-2-same-global-batch": (2, 256),
}


def train(name: str, processes: int, batch: int, out: Path, threads: int) -> float:
    """Train one run into `out`; returns wall seconds."""
    sets = [*SETS, f"train.batch_size={batch}", f"train.threads={threads}"]
    arguments = [arg for value in sets for arg in ("--set", value)]
    if processes == 1:
        command = [sys.executable, "-m", "tandem.cli", "train", str(CONFIG), "--out", str(out), *arguments]
    else:
        torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
        command = [torchrun, "--standalone", f"--nproc_per_node={processes}", "-m", "tandem.cli", "train",
                   str(CONFIG), "--out", str(out), *arguments]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--work", default="/tmp/tandem-torchrun-quality")
    parser.add_argument("--out", default=str(HERE / "results" / "torchrun_quality.json"))
    args = parser.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    torch.set_num_threads(1)
    results: dict[str, dict] = {}
    per_user: dict[str, object] = {}
    for name, (processes, batch) in RUNS.items():
        seconds = train(name, processes, batch, work / name, args.threads)
        report = json.loads((work / name / "report.json").read_text())
        config, prepared, scheme = load_run(work / name)
        ranked = stage_functions(scheme, tuple(config.eval.cutoffs), config.eval.retrieval_cutoff)["retriever"]
        per_user[name] = per_row_metrics(prepared.split.test, ranked)
        results[name] = {"processes": processes, "batch_per_process": batch, "global_batch": processes * batch,
                         "epochs_run": report["epochs_run"], "best_epoch": report["best_epoch"],
                         "wall_s": round(seconds, 1), "seconds_per_epoch": report["seconds_per_epoch"],
                         "test": report["test"]}
        print(name, json.dumps(results[name]), flush=True)
    base = per_user["single"]["ndcg@10"]
    for name in RUNS:
        if name == "single":
            continue
        other = per_user[name]["ndcg@10"]
        wilcoxon, t_test = paired_test(other, base)
        results[name]["vs_single_ndcg@10"] = {
            "relative_change": float(other.mean() / base.mean() - 1), "p_wilcoxon": wilcoxon, "p_ttest": t_test}
    record = {"command": "python benchmarks/torchrun_quality.py", "config": str(CONFIG.relative_to(ROOT)),
              "overrides": SETS, "threads_per_process": args.threads, "runs": results}
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
