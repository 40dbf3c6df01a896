"""`tandem experiment`: every method of a table over seeds, each trained to early stopping, resumable.

Layout of the output directory:
- `runs/<method>-s<seed>/` one tandem run directory per run (config, best.pt, metrics.jsonl, report.json);
  a directory without `report.json` is an interrupted run: it resumes from its `checkpoint.pt` (bit for bit on
  CPU), or is trained again when it has none;
- `per_user/<method>-s<seed>.csv` per evaluation row (user) test metrics of every stage, for paired tests;
- `results.csv` columns method,seed,split,stage,metric,value; `runs.csv` epochs and timings per run;
- `table.md` mean ± std per method, relative change against the reference, paired p-values, published figures;
- `<name>.png` the figure, when the spec asks for one.
Finished runs are skipped, so an interrupted experiment continues where it stopped.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from tandem.config import Config, load_config
from tandem.data.splits import EvalSet
from tandem.errors import TandemError
from tandem.evaluation import METRICS, full_ranking_metrics
from tandem.evaluation.ranking import padded_rows
from tandem.experiments.spec import ExperimentSpec, Method, Reuse
from tandem.experiments.tables import per_user_path, write_outputs
from tandem.run import config_differences, load_data, load_run, read_run_config, train_run
from tandem.utils import atomic_write_bytes

Log = Callable[[str], None]


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@torch.no_grad()
def per_row_metrics(eval_set: EvalSet, rank_batch: Callable, batch_size: int = 1024) -> dict[str, np.ndarray]:
    """Metric values of every evaluation row (not averaged), in row order."""
    parts: dict[str, list[np.ndarray]] = {}
    rows = len(eval_set)
    for begin in range(0, rows, batch_size):
        window = slice(begin, min(rows, begin + batch_size))
        batch = {key: value[window] for key, value in eval_set.tensors.items()}
        targets = padded_rows(eval_set.target_indptr, eval_set.target_items, window)
        known = padded_rows(eval_set.known_indptr, eval_set.known_items, window)
        for name, values in rank_batch(batch, targets, known).items():
            parts.setdefault(name, []).append(values.double().cpu().numpy())
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def stage_functions(scheme: Any, cutoffs: tuple[int, ...], retrieval_cutoff: int) -> dict[str, Callable]:
    """The per-row metric function of each stage a scheme is evaluated on."""
    stage_rank_fns = getattr(scheme, "stage_rank_fns", None)
    if stage_rank_fns is not None:
        return stage_rank_fns(cutoffs, retrieval_cutoff)
    return {"retriever": full_ranking_metrics(scheme.retriever.score_all, cutoffs)}


def write_per_user(path: Path, users: np.ndarray, stages: dict[str, dict[str, np.ndarray]]) -> None:
    """One CSV row per (evaluation row, stage) with every metric."""
    metrics = sorted(next(iter(stages.values())))
    frames = [pd.DataFrame({"row": np.arange(len(users)), "user": users.astype(np.int64), "stage": stage,
                            **{m: values[m] for m in metrics}}) for stage, values in stages.items()]
    text = pd.concat(frames, ignore_index=True).to_csv(index=False, float_format="%.10g", lineterminator="\n")
    atomic_write_bytes(path, text.encode())


def read_per_user_rows(path: Path) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]:
    """(the user of each test row, {stage: {metric: values}}), both in row order, from one read of a per-user CSV."""
    frame = pd.read_csv(path)
    metrics = [c for c in frame.columns if c not in ("row", "user", "stage")]
    stages = {str(stage): part.sort_values("row") for stage, part in frame.groupby("stage", sort=False)}
    users = next(iter(stages.values()))["user"].to_numpy(dtype=np.int64)
    return users, {stage: {m: part[m].to_numpy(dtype=np.float64) for m in metrics} for stage, part in stages.items()}


def read_per_user(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """{stage: {metric: values in row order}} from a per-user CSV."""
    return read_per_user_rows(path)[1]


# keys that say how a run executes, not what it trains: a reused run may differ in them
EXECUTION_KEYS = ("train.threads", "train.progress", "train.eval_batch_size", "train.checkpoint_every",
                  "train.keep_checkpoint")


def copy_finished_run(reuse: Reuse, seed: int, config: Config, run_dir: Path, per_user: Path, log: Log) -> bool:
    """Copy `reuse`'s finished run of this seed when its config equals `config` and it was trained on the data this
    config reads today (same fingerprint); refuse a differing one. False when the source is not finished."""
    from tandem.rundir import fingerprint, stored_fingerprint

    source = reuse.dir / "runs" / f"{reuse.method}-s{seed}"
    source_rows = per_user_path(reuse.dir, reuse.method, seed)
    if not ((source / "report.json").is_file() and source_rows.is_file()):
        log(f"reuse: {source} is not finished: training {run_dir.name} here")
        return False
    # the stored config read like any run's (keys added since take their defaults, which keep the old behaviour)
    differences = [key for key in config_differences(config, read_run_config(source)) if key not in EXECUTION_KEYS]
    if differences:
        raise TandemError(f"reuse: {source} was trained with a different config (key {differences[0]!r}); "
                          "fix the spec's reuse entry or remove it")
    expected = stored_fingerprint(source)
    if expected is not None and fingerprint(load_data(config.data, config.task)) != expected:
        raise TandemError(f"reuse: {source} was trained on other data than {config.data.path or config.data.format} "
                          "holds today (fingerprint differs); remove the reuse entry to train it here")
    staging = run_dir.with_name(run_dir.name + ".copying")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging, ignore=shutil.ignore_patterns("checkpoint.pt", ".lock"))
    if run_dir.exists():  # an unfinished local run gives way only once the copy is complete
        shutil.rmtree(run_dir)
    staging.rename(run_dir)
    per_user.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(per_user, source_rows.read_bytes())  # last: a run counts as done with both files
    log(f"reuse: {run_dir.name} copied from {source}")
    return True


def method_config(spec: ExperimentSpec, method: Method, seed: int) -> Config:
    """The config one (method, seed) run trains with: its file, the spec's overrides, the method's, the seed."""
    return load_config(method.config, [*spec.overrides, *method.overrides, f"seed={seed}", "train.progress=false"])


def check_before_running(spec: ExperimentSpec, methods: list[str], seeds: list[int]) -> None:
    """Every chosen (method, seed) config loads, and every metric the table and the plot report is one each run
    evaluates: a mistake in the last method is found before the first one trains for hours."""
    wanted = list(spec.metrics) + ([str(spec.plot.get("metric", "ndcg@10"))] if spec.plot else [])
    for method in spec.methods:
        if method.name not in methods:
            continue
        cutoffs = {cutoff for seed in seeds for cutoff in method_config(spec, method, seed).eval.cutoffs}
        for metric in wanted:
            name, _, cutoff = metric.partition("@")
            if name not in METRICS or not cutoff.isdigit() or int(cutoff) not in cutoffs:
                raise ValueError(f"metric {metric!r} of the spec is not one method {method.name!r} evaluates "
                                 f"(metrics {list(METRICS)} at its eval.cutoffs {sorted(cutoffs)})")


def run_one(spec: ExperimentSpec, method_index: int, seed: int, out: Path, log: Log) -> None:
    """Train one (method, seed) to early stopping unless it is done; write its report and per-user metrics."""
    method = spec.methods[method_index]
    run_name = f"{method.name}-s{seed}"
    run_dir = out / "runs" / run_name
    per_user = per_user_path(out, method.name, seed)
    if (run_dir / "report.json").is_file() and per_user.is_file():
        return
    config = method_config(spec, method, seed)
    started = time.perf_counter()
    if not (run_dir / "report.json").is_file() and method.reuse is not None:
        if copy_finished_run(method.reuse, seed, config, run_dir, per_user, log):
            return
    if not (run_dir / "report.json").is_file():
        resumable = (run_dir / "checkpoint.pt").is_file()
        if run_dir.exists() and not resumable:
            log(f"[{spec.name}] {run_name}: an interrupted run without a checkpoint: training it again")
            shutil.rmtree(run_dir)
        elif resumable:
            log(f"[{spec.name}] {run_name}: resuming from its last checkpoint")
        report = train_run(config, run_dir, resume=resumable)
    else:
        report = json.loads((run_dir / "report.json").read_text())
    config, prepared, scheme = load_run(run_dir)
    stages = {
        stage: per_row_metrics(prepared.split.test, fn, config.train.eval_batch_size)
        for stage, fn in stage_functions(scheme, tuple(config.eval.cutoffs), config.eval.retrieval_cutoff).items()
    }
    per_user.parent.mkdir(parents=True, exist_ok=True)
    write_per_user(per_user, prepared.split.test.tensors["user"].numpy(), stages)
    final = stages.get("pipeline", stages["retriever"])
    key = next((m for m in spec.metrics if m in final), next(iter(final)))
    log(f"[{spec.name}] {run_name}: {report['epochs_run']} epochs (best {report['best_epoch']}), "
        f"{report['seconds_per_epoch']:.1f} s/epoch, {time.perf_counter() - started:.0f} s, "
        f"test {key} {float(final[key].mean()):.4f}")


def select_seeds(spec: ExperimentSpec, count: int | None) -> list[int]:
    """The spec's seeds, cut to `count` or extended by consecutive integers."""
    seeds = list(spec.seeds)
    if count is None:
        return seeds
    if count < 1:
        raise ValueError("--seeds must be >= 1")
    while len(seeds) < count:
        seeds.append(seeds[-1] + 1)
    return seeds[:count]


def run_experiment(spec: ExperimentSpec, out: str | Path, seeds: int | None = None,
                   methods: list[str] | None = None, log: Log = _stderr) -> Path:
    """Run (or continue) every method x seed, then write results.csv, runs.csv, table.md and the figure."""
    out = Path(out)
    names = [m.name for m in spec.methods]
    chosen = names if not methods else methods
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; the spec has {names}")
    seed_list = select_seeds(spec, seeds)
    check_before_running(spec, chosen, seed_list)
    out.mkdir(parents=True, exist_ok=True)
    for seed in seed_list:  # seed-major: a first full row of the table comes before more seeds
        for index, method in enumerate(spec.methods):
            if method.name in chosen:
                run_one(spec, index, seed, out, log)
                write_outputs(spec, out)
    write_outputs(spec, out)
    return out
