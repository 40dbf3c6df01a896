"""Plain-text tables of metrics for the terminal."""
from __future__ import annotations

from typing import Any


def metric_table(rows: dict[str, dict[str, float]], columns: list[str] | None = None) -> str:
    """Render {row name: {metric: value}} as an aligned text table."""
    if not rows:
        return "(no results)"
    columns = columns or list(next(iter(rows.values())).keys())
    name_width = max(len("model"), *(len(name) for name in rows))
    widths = [max(len(column), 8) for column in columns]
    header = "model".ljust(name_width) + "  " + "  ".join(c.rjust(w) for c, w in zip(columns, widths))
    lines = [header, "-" * len(header)]
    for name, values in rows.items():
        cells = []
        for column, width in zip(columns, widths):
            value = values.get(column)
            cells.append(("-" if value is None else f"{value:.4f}").rjust(width))
        lines.append(name.ljust(name_width) + "  " + "  ".join(cells))
    return "\n".join(lines)


def report_rows(split_metrics: dict[str, Any], label: str) -> dict[str, dict[str, float]]:
    """Rows of a report section: one row for a retriever-only run, one per stage for a cooperative run."""
    if split_metrics and all(isinstance(value, dict) for value in split_metrics.values()):
        return {f"{label} [{stage}]": values for stage, values in split_metrics.items() if stage != "cutoff_sweep"}
    return {label: split_metrics}
