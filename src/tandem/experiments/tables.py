"""From an experiment directory's finished runs to results.csv, runs.csv, table.md and a figure.

Significance: per-user paired tests between two methods on the test rows, pooled over the seeds both have run
(the same seed gives the same evaluation rows), with scipy's Wilcoxon signed-rank test and paired t-test.
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from tandem.experiments.spec import Claim, ExperimentSpec
from tandem.utils import atomic_write_bytes

STAGE_ORDER = ("pipeline", "pipeline_ranker_only", "retriever")
ALPHA = 0.05  # a claim's gain counts as significant when the Wilcoxon p-value is below this


def finished_runs(spec: ExperimentSpec, out: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """{method: {seed: report}} of the runs with a report and per-user metrics."""
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for method in spec.methods:
        for report_path in sorted((out / "runs").glob(f"{method.name}-s*/report.json")):
            seed_text = report_path.parent.name[len(method.name) + 2:]
            if not seed_text.isdigit() or not (out / "per_user" / f"{report_path.parent.name}.csv").is_file():
                continue
            runs.setdefault(method.name, {})[int(seed_text)] = json.loads(report_path.read_text())
    return runs


def stages_of(section: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{stage: {metric: value}} of a report section (a retriever-only report is one 'retriever' stage)."""
    if section and all(isinstance(v, dict) for v in section.values()):
        return {k: v for k, v in section.items() if k in STAGE_ORDER}
    return {"retriever": section}


def final_stage(report: dict[str, Any]) -> str:
    return "pipeline" if "pipeline" in stages_of(report["test"]) else "retriever"


def results_rows(runs: dict[str, dict[int, dict[str, Any]]]) -> list[tuple[str, int, str, str, str, float]]:
    rows = []
    for method, by_seed in runs.items():
        for seed, report in sorted(by_seed.items()):
            for split in ("valid", "test"):
                for stage, metrics in stages_of(report[split]).items():
                    for metric, value in metrics.items():
                        rows.append((method, seed, split, stage, metric, float(value)))
    return rows


def load_per_user(out: Path, method: str, seed: int) -> dict[str, dict[str, np.ndarray]]:
    from tandem.experiments.runner import read_per_user

    return read_per_user(out / "per_user" / f"{method}-s{seed}.csv")


def paired_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(Wilcoxon p, paired t-test p) of a vs b; 1.0 when the two are identical."""
    difference = a - b
    if a.size < 2 or not np.any(difference != 0):
        return 1.0, 1.0
    wilcoxon = float(stats.wilcoxon(a, b).pvalue)
    t_test = float(stats.ttest_rel(a, b).pvalue)
    return wilcoxon, (1.0 if math.isnan(t_test) else t_test)


def pooled(out: Path, method: str, stage: str, seeds: list[int], metric: str) -> np.ndarray:
    return np.concatenate([load_per_user(out, method, seed)[stage][metric] for seed in seeds])


@dataclass
class Comparison:
    """Method a against method b per user: relative change of the means (None when b's mean is 0), its 95 %
    interval (the paired t interval of the mean difference over b's mean), and (Wilcoxon p, paired t-test p)."""
    change: float | None
    interval: tuple[float, float] | None
    p_values: tuple[float, float]


def compare(out: Path, a: tuple[str, str], b: tuple[str, str], seeds: list[int], metric: str) -> Comparison:
    """(method, stage) `a` against `b` on `metric`, per user and pooled over `seeds`."""
    first = pooled(out, a[0], a[1], seeds, metric)
    second = pooled(out, b[0], b[1], seeds, metric)
    base = float(second.mean())
    if base <= 0:
        return Comparison(None, None, paired_test(first, second))
    difference = first - second
    half = (float(stats.t.ppf(0.975, difference.size - 1) * difference.std(ddof=1) / math.sqrt(difference.size))
            if difference.size > 1 else math.inf)
    mean = float(difference.mean())
    return Comparison(mean / base, ((mean - half) / base, (mean + half) / base), paired_test(first, second))


def _change(value: float | None) -> str:
    return "" if value is None else f"{100 * value:+.1f} %"


def _mean_std(values: list[float], scale: float) -> str:
    mean = statistics.fmean(values) / scale
    std = statistics.stdev(values) / scale if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {std:.2f}"


def _p(value: float) -> str:
    return f"{value:.1e}" if value < 1e-3 else f"{value:.3f}"


def markdown(spec: ExperimentSpec, out: Path, runs: dict[str, dict[int, dict[str, Any]]]) -> str:
    """The table: one row per method and stage, mean ± std over seeds (x 1/published_scale), Δ and p-values."""
    scale = spec.published_scale
    key = next((m for m in spec.metrics if m.startswith("ndcg")), spec.metrics[0])
    lines = [f"# {spec.name}", ""]
    if spec.description:
        lines += [spec.description, ""]
    lines += [
        f"Test set, values ×{1 / scale:g} (mean ± std over seeds; n = seeds run). Δ and p compare `{key}` per user, paired "
        f"and pooled over the seeds both methods have run (Wilcoxon signed-rank / paired t-test); a two-stage "
        f"method's retriever row against the reference's retriever."
        + (f" Reference: `{spec.reference}`." if spec.reference else "")
        + (" A method's own reference, where it names one: "
           + ", ".join(f"`{m.name}` vs `{m.reference}`" for m in spec.methods if m.reference) + "."
           if any(m.reference for m in spec.methods) else ""),
        "",
    ]
    header = ["method", "stage", "n", *spec.metrics]
    if spec.published:
        header += [f"published {m}" for m in spec.metrics]
    header += [f"Δ {key} vs ref", "p (W / t)", "Δ vs own retriever", "p own (W / t)", "epochs (best)"]
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for method in spec.methods:
        reference = method.reference or spec.reference
        reference_runs = runs.get(reference or "", {})
        by_seed = runs.get(method.name)
        if not by_seed:
            continue
        seeds = sorted(by_seed)
        present = [s for s in STAGE_ORDER if s in stages_of(by_seed[seeds[0]]["test"])]
        for stage in present:
            values = {m: [stages_of(by_seed[s]["test"])[stage][m] for s in seeds] for m in spec.metrics}
            cells = [method.name, stage, str(len(seeds))]
            cells += [_mean_std(values[m], scale) for m in spec.metrics]
            if spec.published:
                published = spec.published.get(method.name, {}) if stage == present[0] else {}
                cells += [f"{published[m]:.2f}" if m in published else "" for m in spec.metrics]
            delta_ref = p_ref = delta_own = p_own = ""
            common = sorted(set(seeds) & set(reference_runs)) if method.name != reference else []
            ref_stage = None
            if common and stage == present[0]:
                ref_stage = final_stage(reference_runs[common[0]])
            elif common and stage == "retriever" and "retriever" in stages_of(reference_runs[common[0]]["test"]):
                ref_stage = "retriever"  # a two-stage method's retriever against the reference's retriever
            if ref_stage is not None:
                found = compare(out, (method.name, stage), (str(reference), ref_stage), common, key)
                delta_ref, p_ref = _change(found.change), " / ".join(_p(p) for p in found.p_values)
            if stage != "retriever" and "retriever" in present:
                found = compare(out, (method.name, stage), (method.name, "retriever"), seeds, key)
                delta_own, p_own = _change(found.change), " / ".join(_p(p) for p in found.p_values)
            epochs = ", ".join(f"{by_seed[s]['epochs_run']} ({by_seed[s]['best_epoch']})" for s in seeds)
            cells += [delta_ref, p_ref, delta_own, p_own, epochs if stage == present[0] else ""]
            lines.append("| " + " | ".join(cells) + " |")
    missing = [m.name for m in spec.methods if m.name not in runs]
    if missing:
        lines += ["", f"Not run yet: {', '.join(missing)}."]
    if spec.claims:
        lines += ["", *claims_section(spec, out, runs, key)]
    return "\n".join(lines) + "\n"


def verdict(found: Comparison, margin: float, published: float | None) -> str:
    """Whether a measured comparison reproduces a claimed gain of at least `margin` (and the published gain, where
    known): the gain must reach the margin and be significant (Wilcoxon p < ALPHA), and the published gain must not
    lie above its 95 % interval; otherwise say which part failed."""
    change = found.change
    if change is None or found.interval is None:
        return "undefined (the reference scores 0)"
    significant = found.p_values[0] < ALPHA
    if change > 0 and change >= margin and significant:
        if published is not None and published > found.interval[1]:
            return "**reproduces in direction**: significant, smaller than published (outside the 95 % interval)"
        return "**reproduces**"
    if change > 0 and significant:
        return f"direction only: significant, below the claimed {100 * margin:.0f} %"
    if change > 0:
        return "direction only: not significant"
    if significant:
        return "**does not reproduce**: significantly the other way"
    return "**does not reproduce**: no gain"


def _interval(found: Comparison) -> str:
    if found.interval is None:
        return ""
    return "[" + ", ".join("" if math.isinf(v) else f"{100 * v:+.1f}" for v in found.interval) + "] %"


def claim_text(claim: Claim) -> str:
    stage = f" ({claim.stage}s)" if claim.stage else ""
    margin = f" by ≥ {100 * claim.margin:.0f} %" if claim.margin else ""
    return f"`{claim.method}` > `{claim.over}`{stage}{margin}"


def claims_section(spec: ExperimentSpec, out: Path, runs: dict[str, dict[int, dict[str, Any]]],
                   key: str) -> list[str]:
    """The paper's findings (the spec's claims) against the runs: measured change, p-values and a verdict."""
    lines = ["## The paper's findings, checked", "",
             f"Each claim compares `{key}` per user, paired and pooled over the seeds both methods ran (each method's "
             f"final stage unless a stage is named); it **reproduces** when the gain reaches the claimed margin, the "
             f"Wilcoxon p < {ALPHA:g}, and the published gain (from the published figures, where the spec has both) "
             f"is not above the 95 % interval of the measured one (paired t interval of the mean difference, over the "
             f"reference's mean).", "",
             "| claim | published Δ | measured Δ | 95 % interval | p (W / t) | seeds | verdict |", "|" + " --- |" * 7]
    for claim in spec.claims:
        figures = spec.published.get(claim.method, {}).get(key), spec.published.get(claim.over, {}).get(key)
        published = (figures[0] / figures[1] - 1 if claim.stage is None and None not in figures and figures[1]
                     else None)
        first, second = runs.get(claim.method, {}), runs.get(claim.over, {})
        seeds = sorted(set(first) & set(second))
        cells = [claim_text(claim), _change(published)]
        if not seeds:
            lines.append("| " + " | ".join([*cells, "", "", "", "0", "not run yet"]) + " |")
            continue
        stages = (claim.stage or final_stage(first[seeds[0]]), claim.stage or final_stage(second[seeds[0]]))
        lacking = [name for name, by_seed, stage in ((claim.method, first, stages[0]), (claim.over, second, stages[1]))
                   if stage not in stages_of(by_seed[seeds[0]]["test"])]
        if lacking:
            lines.append("| " + " | ".join([*cells, "", "", "", str(len(seeds)),
                                            f"undefined: `{lacking[0]}` has no {claim.stage} stage"]) + " |")
            continue
        found = compare(out, (claim.method, stages[0]), (claim.over, stages[1]), seeds, key)
        cells += [_change(found.change), _interval(found), " / ".join(_p(p) for p in found.p_values), str(len(seeds)),
                  verdict(found, claim.margin, published)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_figure(spec: ExperimentSpec, out: Path, runs: dict[str, dict[int, dict[str, Any]]]) -> Path | None:
    """The figure the spec asks for: pipeline metric against the retrieval cutoff, or bars of the key metric."""
    if not spec.plot or not runs:
        return None
    from tandem.experiments.plots import bar_plot, sweep_plot

    metric = str(spec.plot.get("metric", "ndcg@10"))
    if spec.plot["kind"] == "cutoff_sweep":
        series, errors, cutoffs = {}, {}, None
        for method, by_seed in runs.items():
            sweeps = [report["test"].get("cutoff_sweep") for report in by_seed.values()]
            if not all(sweeps):
                continue
            cutoffs = sorted(int(k) for k in sweeps[0])
            per_k = [[sweep[str(k)][metric] for sweep in sweeps] for k in cutoffs]
            series[method] = [statistics.fmean(v) for v in per_k]
            errors[method] = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in per_k]
        if not series or cutoffs is None:
            return None
        return sweep_plot(out / f"{spec.name}.png", cutoffs, series, "retrieval cutoff K", f"test {metric}",
                          spec.name, log_x=True, errors=errors)
    labels, means, stds = [], [], []
    for method in spec.methods:
        by_seed = runs.get(method.name)
        if not by_seed:
            continue
        values = [stages_of(r["test"])[final_stage(r)][metric] for r in by_seed.values()]
        labels.append(method.name)
        means.append(statistics.fmean(values))
        stds.append(statistics.stdev(values) if len(values) > 1 else 0.0)
    return bar_plot(out / f"{spec.name}.png", labels, means, stds, f"test {metric}", spec.name)


def write_outputs(spec: ExperimentSpec, out: Path) -> None:
    """Rewrite results.csv, runs.csv, table.md and the figure from the finished runs."""
    runs = finished_runs(spec, out)
    rows = results_rows(runs)
    text = "method,seed,split,stage,metric,value\n" + "".join(
        f"{m},{s},{sp},{st},{me},{v:.10g}\n" for m, s, sp, st, me, v in rows)
    atomic_write_bytes(out / "results.csv", text.encode())
    run_lines = ["method,seed,epochs_run,best_epoch,seconds_per_epoch"]
    for method, by_seed in runs.items():
        for seed, report in sorted(by_seed.items()):
            run_lines.append(f"{method},{seed},{report['epochs_run']},{report['best_epoch']},"
                             f"{report['seconds_per_epoch']:.2f}")
    atomic_write_bytes(out / "runs.csv", ("\n".join(run_lines) + "\n").encode())
    atomic_write_bytes(out / "table.md", markdown(spec, out, runs).encode())
    write_figure(spec, out, runs)
