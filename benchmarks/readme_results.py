"""Regenerate the README's experiment results from the committed experiment outputs.

Every `benchmarks/results/<spec>/table.md` written by `tandem experiment experiments/<spec>.yaml` is copied, with
the command that produced it (and a `summary.md` beside it, a post-hoc analysis written by a benchmark script),
between the markers `<!-- experiments:begin -->` and `<!-- experiments:end -->` of
README.md. Usage: python benchmarks/readme_results.py
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

from tandem.experiments.tables import CLAIMS_TITLE

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- experiments:begin -->", "<!-- experiments:end -->"


def claim_rows(table: str) -> list[list[str]]:
    """The rows (cells) of a table.md's claims section: claim, published Δ, measured Δ, interval, p, seeds, verdict."""
    if CLAIMS_TITLE not in table:
        return []
    lines = table.split(CLAIMS_TITLE, 1)[1].splitlines()
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines if line.startswith("| `")]


def findings_at_a_glance(specs: list[Path]) -> str:
    """One table of every spec's claims and verdicts, so the reproduction's state reads in one place."""
    rows = []
    for spec in specs:
        table = ROOT / "benchmarks" / "results" / spec.stem / "table.md"
        if table.is_file():
            rows += [f"| {spec.stem} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[4]} | {cells[6]} |"
                     for cells in claim_rows(table.read_text())]
    if not rows:
        return ""
    return "\n".join(["### The papers' findings at a glance", "",
                      "Every claim of every spec (details, intervals and t-test p-values in each table below).", "",
                      "| spec | claim | published Δ | measured Δ | p (W / t) | verdict |", "|" + " --- |" * 6,
                      *rows, ""])


def section() -> str:
    """The generated Markdown: one subsection per experiment spec that has a table."""
    specs = sorted((ROOT / "experiments").glob("*.yaml"))
    glance = findings_at_a_glance(specs)
    parts = [glance] if glance else []
    for spec in specs:
        table = ROOT / "benchmarks" / "results" / spec.stem / "table.md"
        summary = table.with_name("summary.md")  # a post-hoc analysis of the runs (its script names itself)
        extra = f"\n{summary.read_text().strip()}\n" if summary.is_file() else ""
        if not table.is_file():
            status = (f"The spec itself (`tandem experiment experiments/{spec.name}`, which retrains every method) "
                      "was not run; the analysis below measures the same thing on runs of another spec."
                      if extra else f"Not run yet: `tandem experiment experiments/{spec.name}`.")
            parts.append(f"### {spec.stem}\n\n{status}\n{extra}")
            continue
        body = table.read_text().split("\n", 1)[1].strip()  # drop the table's own title
        body = re.sub(r"^#", "###", body, flags=re.M)
        parts.append(f"### {spec.stem}\n\n`tandem experiment experiments/{spec.name}` "
                     f"(outputs in `benchmarks/results/{spec.stem}/`)\n\n{body}\n{extra}")
    return "\n".join(parts)


def main() -> int:
    readme = ROOT / "README.md"
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        print(f"README.md has no {BEGIN} ... {END} markers", file=sys.stderr)
        return 2
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{section()}\n{END}{tail}")
    print("README.md: experiment results regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
