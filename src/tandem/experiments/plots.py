"""Line plots of sweeps (the papers' sensitivity figures), written as PNG files with matplotlib's Agg backend."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def sweep_plot(
    path: str | Path,
    x_values: Sequence[float],
    series: dict[str, Sequence[float]],
    x_label: str,
    y_label: str,
    title: str,
    log_x: bool = False,
    errors: dict[str, Sequence[float]] | None = None,
) -> Path:
    """One line per series over the same x values (optionally with error bars); returns the written path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(5.0, 3.6), dpi=120)
    for label, values in series.items():
        yerr = None if errors is None else errors.get(label)
        axis.errorbar(list(x_values), list(values), yerr=yerr, marker="o", capsize=3, label=label)
    if log_x:
        axis.set_xscale("log")
        axis.set_xticks(list(x_values))
        axis.set_xticklabels([str(v) for v in x_values])
    axis.set_xlabel(x_label)
    axis.set_ylabel(y_label)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def bar_plot(path: str | Path, labels: Sequence[str], means: Sequence[float], stds: Sequence[float],
             y_label: str, title: str) -> Path:
    """One bar per method with its standard deviation over seeds; returns the written path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(max(4.0, 0.9 * len(labels) + 1.5), 3.6), dpi=120)
    axis.bar(range(len(labels)), list(means), yerr=list(stds), capsize=3, color="#4C72B0")
    axis.set_xticks(range(len(labels)))
    axis.set_xticklabels(list(labels), rotation=30, ha="right")
    axis.set_ylabel(y_label)
    axis.set_title(title)
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
