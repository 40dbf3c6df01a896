"""Run a set of named configurations over several seeds and summarise them as mean ± std.

The papers' tables are grids of (method, seed) runs; this module is the one place that runs such a grid, so each
benchmark only says which configs to compare and which metrics to keep.
"""
from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tandem.config import load_config
from tandem.run import train_run


@dataclass
class Entry:
    """One row of a table: a config file plus overrides."""

    label: str
    config: str | Path
    overrides: list[str] = field(default_factory=list)


def flatten_metrics(section: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """{"pipeline": {"ndcg@10": x}} -> {"pipeline.ndcg@10": x}; plain metric dicts stay as they are."""
    flat: dict[str, float] = {}
    for key, value in section.items():
        if isinstance(value, dict):
            flat.update(flatten_metrics(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = float(value)
    return flat


def summarise(values: list[float]) -> dict[str, float]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "n": len(values)}


def run_grid(
    entries: list[Entry],
    seeds: list[int],
    common_overrides: list[str] | None = None,
    log: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Train every entry with every seed (no run directories); return per-run reports and mean ± std per metric."""
    results: dict[str, Any] = {}
    for entry in entries:
        runs = []
        for seed in seeds:
            overrides = [*(common_overrides or []), *entry.overrides, f"seed={seed}", "train.progress=false"]
            config = load_config(entry.config, overrides)
            started = time.perf_counter()
            report = train_run(config, None)
            report["wall_seconds"] = time.perf_counter() - started
            runs.append(report)
            log(f"{entry.label} seed {seed}: {report['epochs_run']} epochs, "
                f"{report['seconds_per_epoch']:.1f} s/epoch, test {summary_line(report['test'])}")
        flat = [flatten_metrics(run["test"]) for run in runs]
        results[entry.label] = {
            "config": str(entry.config),
            "overrides": entry.overrides,
            "test": {key: summarise([f[key] for f in flat]) for key in flat[0]},
            "seconds_per_epoch": summarise([run["seconds_per_epoch"] for run in runs]),
            "epochs_run": [run["epochs_run"] for run in runs],
            "dataset": runs[0]["dataset"],
        }
    return results


def summary_line(test: dict[str, Any]) -> str:
    flat = flatten_metrics(test)
    keys = [key for key in flat if key.endswith("ndcg@10") and "cutoff_sweep" not in key]
    return ", ".join(f"{key} {flat[key]:.4f}" for key in keys)


def markdown_table(results: dict[str, Any], metrics: list[str], scale: float = 1.0) -> str:
    """A Markdown table of mean ± std for the given flattened metric names."""
    header = "| method | " + " | ".join(metrics) + " | s/epoch |"
    lines = [header, "|" + " --- |" * (len(metrics) + 2)]
    for label, result in results.items():
        cells = []
        for metric in metrics:
            stats = result["test"].get(metric)
            cells.append("-" if stats is None else f"{stats['mean'] * scale:.2f} ± {stats['std'] * scale:.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {result['seconds_per_epoch']['mean']:.1f} |")
    return "\n".join(lines)
