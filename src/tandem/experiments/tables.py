"""From an experiment directory's finished runs to results.csv, runs.csv, table.md and a figure.

Significance: per-user paired tests between two methods on the test rows, with scipy's Wilcoxon signed-rank test
and paired t-test. With several seeds each user's value is first averaged over the seeds both methods ran (the
splits are the same for every seed, so row i is the same user in each): the seeds' rows of one user are not
independent observations, and pooling them as if they were would overstate significance.
"""
from __future__ import annotations

import functools
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from tandem.errors import TandemError
from tandem.experiments.spec import Claim, ExperimentSpec
from tandem.utils import atomic_write_bytes

STAGE_ORDER = ("pipeline", "pipeline_ranker_only", "retriever")
ALPHA = 0.05  # a claim's change is significant at this two-sided level (one-sided p < ALPHA / 2, its direction)
CLAIMS_TITLE = "## The paper's findings, checked"  # the section a table.md with claims ends with


def per_user_path(out: Path, method: str, seed: int) -> Path:
    """The per-user test metrics file of `method`'s run with `seed` under an experiment's output directory `out`."""
    return out / "per_user" / f"{method}-s{seed}.csv"


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


@functools.lru_cache(maxsize=512)
def _per_user_file(path: Path, stamp: tuple[int, int]) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]:
    """One read of a per-user CSV, kept while its (mtime, size) stamp is unchanged: a table compares each run with
    several others, and a rewritten file (a run trained again) gets a new stamp."""
    from tandem.experiments.runner import read_per_user_rows

    users, stages = read_per_user_rows(path)
    for array in [users, *(values for metrics in stages.values() for values in metrics.values())]:
        array.flags.writeable = False  # shared by every caller of the cache
    return users, stages


def load_per_user_rows(out: Path, method: str, seed: int) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]:
    """(users, {stage: {metric: values}}) of one run's per-user file, in row order."""
    path = per_user_path(out, method, seed)
    status = path.stat()
    return _per_user_file(path, (status.st_mtime_ns, status.st_size))


def load_per_user(out: Path, method: str, seed: int) -> dict[str, dict[str, np.ndarray]]:
    return load_per_user_rows(out, method, seed)[1]


def paired_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(Wilcoxon p, paired t-test p) of a vs b; 1.0 when the two are identical."""
    difference = a - b
    if a.size < 2 or not np.any(difference != 0):
        return 1.0, 1.0
    wilcoxon = float(stats.wilcoxon(a, b).pvalue)
    t_test = float(stats.ttest_rel(a, b).pvalue)
    return wilcoxon, (1.0 if math.isnan(t_test) else t_test)


def seed_averaged(out: Path, method: str, stage: str, seeds: list[int], metric: str) -> np.ndarray:
    """Each test row's `metric` averaged over `seeds` (one value per user). Seeds whose rows are other users (a
    split that depends on the seed) cannot be averaged row by row: a TandemError says so."""
    rows = [load_per_user_rows(out, method, seed) for seed in seeds]
    users = rows[0][0]
    if any(other.shape != users.shape or np.any(other != users) for other, _ in rows[1:]):
        raise TandemError(f"{out}: the runs of {method!r} for seeds {seeds} evaluate different users row by row; "
                          "their per-user values cannot be averaged over seeds")
    values = [stages[stage][metric] for _, stages in rows]
    return np.mean(values, axis=0)


@dataclass
class Comparison:
    """Method a against method b per user: relative change of the means (None unless b's mean is positive), its
    95 % interval (the paired t interval of the mean difference over b's mean; None with fewer than 2 users),
    (Wilcoxon p, paired t-test p), both two-sided, and the one-sided Wilcoxon p-values (a above b, a below b)."""
    change: float | None
    interval: tuple[float, float] | None
    p_values: tuple[float, float]
    one_sided: tuple[float, float]


def one_sided_wilcoxon(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(p that a lies above b, p that a lies below b), Wilcoxon signed-rank; 1.0 each when nothing differs."""
    if a.size < 2 or not np.any(a != b):
        return 1.0, 1.0
    return (float(stats.wilcoxon(a, b, alternative="greater").pvalue),
            float(stats.wilcoxon(a, b, alternative="less").pvalue))


def compare(out: Path, a: tuple[str, str], b: tuple[str, str], seeds: list[int], metric: str) -> Comparison:
    """(method, stage) `a` against `b` on `metric`, per user (averaged over `seeds`)."""
    first = seed_averaged(out, a[0], a[1], seeds, metric)
    second = seed_averaged(out, b[0], b[1], seeds, metric)
    tests = paired_test(first, second), one_sided_wilcoxon(first, second)
    base = float(second.mean())
    if not base > 0:
        return Comparison(None, None, *tests)
    difference = first - second
    mean = float(difference.mean())
    if difference.size < 2:
        return Comparison(mean / base, None, *tests)
    half = float(stats.t.ppf(0.975, difference.size - 1) * difference.std(ddof=1) / math.sqrt(difference.size))
    return Comparison(mean / base, ((mean - half) / base, (mean + half) / base), *tests)


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
        f"Test set, values ×{1 / scale:g} (mean ± std over seeds; n = seeds run). Δ and p compare `{key}` per "
        f"user, paired, each user's value averaged over the seeds both methods have run (Wilcoxon signed-rank / "
        f"paired t-test); a two-stage method's retriever row against the reference's retriever."
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
    known). A change is significant when the one-sided Wilcoxon p in its direction is below ALPHA / 2 (the two-sided
    test at ALPHA, with the users' shift in the mean's direction); a gain reproduces when it is also at least the
    margin and the published gain is not above its 95 % interval."""
    change = found.change
    if change is None:
        return "undefined (the reference scores 0)"
    above, below = (p < ALPHA / 2 for p in found.one_sided)
    if change > 0 and below or change <= 0 and above:
        return "mixed: the mean and most users move in opposite directions"
    if change > 0 and above:
        if change < margin:
            return f"direction only: significant, below the claimed {100 * margin:g} %"
        if published is not None and found.interval is not None and published > found.interval[1]:
            return "**reproduces, smaller than published** (outside the 95 % interval)"
        return "**reproduces**"
    if change > 0:
        return "direction only: not significant"
    if below:
        return "**does not reproduce**: significantly the other way"
    return "**does not reproduce**: no gain"


def _interval(found: Comparison) -> str:
    if found.interval is None:
        return "n/a"
    return "[" + ", ".join(f"{100 * v:+.1f}" for v in found.interval) + "] %"


def claim_text(claim: Claim) -> str:
    stage = f" ({claim.stage}s)" if claim.stage else ""
    margin = f" by ≥ {100 * claim.margin:g} %" if claim.margin else ""
    return f"`{claim.method}` > `{claim.over}`{stage}{margin}"


def claims_section(spec: ExperimentSpec, out: Path, runs: dict[str, dict[int, dict[str, Any]]],
                   key: str) -> list[str]:
    """The paper's findings (the spec's claims) against the runs: measured change, p-values and a verdict."""
    lines = [CLAIMS_TITLE, "",
             f"Each claim compares `{key}` per user, paired, averaged over the seeds both methods ran (each method's "
             f"final stage unless a stage is named); it **reproduces** when the gain is significant (Wilcoxon p < "
             f"{ALPHA:g}, two-sided, with most users moving the way the mean does), at least the claimed margin (the "
             f"measured Δ itself), and the published gain (from the published figures, where the spec has both) is "
             f"not above the 95 % interval of the measured one (paired t interval of the mean difference, over the "
             f"reference's mean).", "",
             "| claim | published Δ | measured Δ | 95 % interval | p (W / t) | seeds | verdict |", "|" + " --- |" * 7]
    for claim in spec.claims:
        figures = spec.published.get(claim.method, {}).get(key), spec.published.get(claim.over, {}).get(key)
        published = (figures[0] / figures[1] - 1  # the published figures are the final stage's (the pipeline's)
                     if claim.stage != "retriever" and None not in figures and figures[1] else None)
        first, second = runs.get(claim.method, {}), runs.get(claim.over, {})
        seeds = sorted(set(first) & set(second))
        cells = [claim_text(claim), _change(published)]
        if not seeds:
            unrun = [name for name, by_seed in ((claim.method, first), (claim.over, second)) if not by_seed]
            status = (f"not run yet: {', '.join(f'`{name}`' for name in unrun)}" if unrun else
                      f"no seed in common (`{claim.method}` {sorted(first)}, `{claim.over}` {sorted(second)})")
            lines.append("| " + " | ".join([*cells, "", "", "", "0", status]) + " |")
            continue
        stages = (claim.stage or final_stage(first[seeds[0]]), claim.stage or final_stage(second[seeds[0]]))
        lacking = [name for name, by_seed, stage in ((claim.method, first, stages[0]), (claim.over, second, stages[1]))
                   if stage not in stages_of(by_seed[seeds[0]]["test"])]
        if lacking:
            lines.append("| " + " | ".join([*cells, "", "", "", str(len(seeds)), "undefined: " + " and ".join(
                f"`{name}`" for name in lacking) + f" without a {claim.stage} stage"]) + " |")
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
