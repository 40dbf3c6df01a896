"""Paired test-set comparison of runs that have not finished (stopped by a budget, not by early stopping).

`tandem experiment` reports only finished runs. When a session's compute ends before a long run's early stopping
does (Gowalla: ~3.7 min per cooperative epoch on one CPU thread), this evaluates each run's best checkpoint so
far on the test rows, per user, and compares every run with the first one (Wilcoxon and paired t-test over users,
the same test as the experiment tables). Every figure is labelled with the epochs run and the best epoch so far:
these are interim figures, not converged ones.

Usage: python benchmarks/interim_compare.py --out FILE.json REFERENCE_RUN_DIR RUN_DIR [RUN_DIR ...]
       python benchmarks/interim_compare.py --out FILE.json --per-user SPEC_OUT --seed S [S ...] REFERENCE METHOD [...]
The second form compares finished runs of an experiment from their committed per-user files (no weights needed);
with several seeds each user's value is averaged over the seeds first, as the experiment tables do. A method with
no per-user file yet (one seed) is evaluated from its run directory, on its best checkpoint so far.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from tandem.experiments.runner import per_row_metrics, stage_functions
from tandem.experiments.tables import load_per_user, paired_test, per_user_path, seed_averaged
from tandem.run import load_run, read_run_config
from tandem.training.trainer import CHECKPOINT, Trainer, TrainerSettings
from tandem.utils import atomic_write_json, load_checkpoint

METRIC = "ndcg@10"


def progress(run: Path) -> dict[str, object]:
    """Epochs run, the best epoch so far (by the validation metric the run stops on) and its validation figures;
    for a run that keeps each model at its own best epoch (eval.select: stages), the retriever's best epoch too."""
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"valid"' in line]
    if not epochs:
        raise SystemExit(f"{run}: no finished epoch yet")

    def watched(epoch: dict) -> float:
        valid = epoch["valid"]
        return (valid["pipeline"] if "pipeline" in valid else valid)[METRIC]

    best = max(epochs, key=watched)
    record = {"epochs_run": len(epochs), "best_epoch_so_far": best["epoch"],
              "finished": (run / "report.json").is_file(), "valid_curve": [round(watched(e), 5) for e in epochs]}
    if "pipeline" in epochs[0]["valid"] and read_run_config(run).eval.select == "stages":
        record["retriever_best_epoch_so_far"] = max(epochs, key=lambda e: e["valid"]["retriever"][METRIC])["epoch"]
    return record


def test_rows(run: Path) -> dict[str, dict[str, np.ndarray]]:
    """Per-user test metrics of every stage of the run's best checkpoint so far. An unfinished run with
    eval.select 'stages' is evaluated as it will end: the retriever of its best retriever epoch so far under the
    ranker of its best pipeline epoch so far (both from checkpoint.pt), that pair validated once (which re-chooses
    what validation tunes, as the trainer does at the end), then tested."""
    config, prepared, scheme = load_run(run, allow_incomplete=True)
    if config.eval.select == "stages" and not (run / "report.json").is_file():
        payload = load_checkpoint(run / CHECKPOINT)
        scheme.load_state_dict({**payload["best_state"], **payload["retriever_best"]})
        Trainer(TrainerSettings.of(config), scheme, prepared.split).evaluate("valid")
    functions = stage_functions(scheme, tuple(config.eval.cutoffs), config.eval.retrieval_cutoff)
    with torch.no_grad():
        return {stage: per_row_metrics(prepared.split.test, function, config.train.eval_batch_size)
                for stage, function in functions.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--per-user", type=Path, help="an experiment's output directory: RUNS are its method names")
    parser.add_argument("--seed", type=int, nargs="+", default=[2023],
                        help="with --per-user: the seed(s) of the runs, each user averaged over them")
    parser.add_argument("runs", type=Path, nargs="+", help="the reference run first")
    args = parser.parse_args()
    torch.set_num_threads(2)
    seed_runs: dict[Path, list[Path]] = {}  # the run directories behind each compared entry
    if args.per_user is not None:
        methods = list(dict.fromkeys(str(run) for run in args.runs))
        args.runs = [args.per_user / "runs" / (f"{method}-s{args.seed[0]}" if len(args.seed) == 1 else method)
                     for method in methods]
        rows = {}
        for run, method in zip(args.runs, methods):
            seed_runs[run] = [args.per_user / "runs" / f"{method}-s{seed}" for seed in args.seed]
            if not per_user_path(args.per_user, method, args.seed[0]).is_file():
                if len(args.seed) > 1 or not (run / "metrics.jsonl").is_file():
                    raise SystemExit(f"{method}: no per-user file and no single run in progress to evaluate")
                rows[run] = test_rows(run)  # still training: its best checkpoint so far, from the run directory
                continue
            stages = load_per_user(args.per_user, method, args.seed[0])
            rows[run] = {stage: {METRIC: seed_averaged(args.per_user, method, stage, args.seed, METRIC)}
                         for stage in stages}
    else:
        rows = {run: test_rows(run) for run in args.runs}
        seed_runs = {run: [run] for run in args.runs}
    reference = args.runs[0]
    record: dict[str, object] = {"command": "python benchmarks/interim_compare.py " + " ".join(sys.argv[1:]),
                                 "metric": METRIC, "reference": str(reference), "runs": {}}
    for run in args.runs:
        stages = {}
        for stage, metrics in rows[run].items():
            values = metrics[METRIC]
            entry: dict[str, object] = {"mean": float(values.mean()), "users": int(values.size)}
            baselines = {}
            if run != reference:  # the same stage, or the reference's retriever when it has only that one
                baselines["vs_reference"] = rows[reference].get(stage, rows[reference]["retriever"])[METRIC]
            if stage != "retriever" and "retriever" in rows[run]:
                baselines["vs_own_retriever"] = rows[run]["retriever"][METRIC]
            for label, base in baselines.items():
                wilcoxon, t_test = paired_test(values, base)
                entry[label] = {"relative": float(values.mean() / base.mean() - 1.0), "wilcoxon_p": wilcoxon,
                                "ttest_p": t_test}
            stages[stage] = entry
        runs = seed_runs[run]
        training = progress(runs[0]) if len(runs) == 1 else {"seeds": {path.name: progress(path) for path in runs}}
        record["runs"][str(run)] = {**training, "test": stages}  # type: ignore[index]
    atomic_write_json(args.out, record)
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
