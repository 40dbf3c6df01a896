"""Time `make demo`'s job and keep what it printed, so the README's demo figures come from a committed file.

Runs `python -m tandem.demo` in a fresh process (imports and data loading included, as `make demo` after setup),
then reads the two runs' report.json for epochs, seconds per epoch and test metrics.
Writes benchmarks/results/demo.json. Usage: python benchmarks/demo_run.py [--epochs N]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tandem.utils import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "demo.json"
METRICS = ("recall@10", "ndcg@10", "mrr@10")


def run_summary(report: dict) -> dict:
    """Epochs, seconds per epoch and test metrics of one run's report (every stage of a cooperative run)."""
    test = report["test"]
    stages = {name: test[name] for name in ("retriever", "pipeline_ranker_only", "pipeline") if name in test}
    metrics = {stage: {m: values[m] for m in METRICS} for stage, values in (stages or {"retriever": test}).items()}
    return {"epochs_run": report["epochs_run"], "best_epoch": report["best_epoch"],
            "seconds_per_epoch": report["seconds_per_epoch"], "test": metrics,
            **({"fusion_weight": test["fusion"]["weight"]} if "fusion" in test else {})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=None, help="passed to the demo (default: the demo's own)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "tandem.demo", "--out", tmp]
        if args.epochs is not None:
            command += ["--epochs", str(args.epochs)]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            sys.stderr.write(done.stderr or "demo_run: the demo failed without a message\n")
            return 1
        runs = {name: run_summary(json.loads((Path(tmp) / name / "report.json").read_text()))
                for name in ("sasrec", "corr")}
    result = {
        "what": "python -m tandem.demo (make demo's job after setup) in a fresh process: wall seconds, each run's "
                "epochs, seconds per epoch and test metrics, and the demo's printed output",
        "command": "python -m tandem.demo" + (f" --epochs {args.epochs}" if args.epochs is not None else ""),
        "wall_seconds": round(wall, 1),
        "runs": runs,
        "stdout": done.stdout.replace(tmp, "<out>"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_1min_after": os.getloadavg()[0]},
    }
    atomic_write_json(OUT, result)
    print(f"demo: {wall:.0f} s in all; written to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
