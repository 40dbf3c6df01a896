"""An experiment spec: the methods of one of the papers' tables, the seeds, and the published figures beside them.

```yaml
name: seed000-table2-ml100k-seq
description: SASRec + DIN on MovieLens-100K, sequential task
seeds: [2023, 2024, 2025]
reference: independent            # relative change and p-values are against this method
metrics: [recall@10, ndcg@10, mrr@10]
overrides: [train.epochs=100, train.patience=10]   # applied to every method
methods:
  retriever: {config: ../configs/ml100k-seq-sasrec.yaml}
  corr: {config: ../configs/ml100k-seq-corr.yaml, overrides: [scheme.distill=none]}
  other-corr: {config: other.yaml, reference: other-independent}   # a method's own reference (one table, pairs)
  same-as-elsewhere: {config: ../configs/ml100k-seq-corr.yaml, reuse: {dir: ../benchmarks/results/other, method: corr}}
published:                        # optional, x 1e-2 as the papers print them
  corr: {recall@10: 18.46, ndcg@10: 9.83, mrr@10: 7.25}
plot: {kind: cutoff_sweep, metric: ndcg@10}   # optional: a figure of the pipeline against the retrieval cutoff
claims:                           # optional: the paper's findings, each checked against the runs in table.md
  - {method: corr, over: independent, margin: 0.10}   # corr's final stage above independent's by >= 10 %
  - {method: corr, over: independent, stage: retriever}   # the two retrievers
```

Config and reuse paths are relative to the spec file. `reuse` names the same run in another experiment's output:
when that run is finished, its config equals this method's key by key (execution keys aside) and its data
fingerprint matches, it is copied instead of trained again. Every key is checked; a mistake is a TandemError that
names it.

A claim compares the key metric (the first NDCG of `metrics`, else its first metric) per user, paired, each
user's value averaged over the seeds both methods ran: each method's final stage (pipeline, or retriever for a
retriever alone), or the `stage` named for both. `margin` is the relative gain the paper's finding needs (default 0: only its sign).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tandem.errors import TandemError

PLOT_KINDS = ("cutoff_sweep", "bar")
CLAIM_STAGES = ("retriever", "pipeline")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
"""A spec or method name: it becomes a file and folder name under the output directory, so no separators."""


def _checked_name(value: Any, path: Path, what: str) -> str:
    name = str(value)
    if not NAME.fullmatch(name) or ".." in name:
        raise TandemError(f"experiment spec {path}: {what} {name!r} must be letters, digits and . _ + - (it names "
                          f"files under the output directory)")
    return name


def _number(value: Any, path: Path, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise TandemError(f"experiment spec {path}: {what} must be a number, got {value!r}")
    return float(value)


@dataclass
class Method:
    name: str
    config: Path
    overrides: list[str] = field(default_factory=list)
    reference: str | None = None  # compared against this method instead of the spec's reference
    reuse: "Reuse | None" = None  # the same run in another experiment's output, copied when finished


@dataclass
class Reuse:
    """Where the same (config, seed) run may already be finished: `<dir>/runs/<method>-s<seed>`."""
    dir: Path
    method: str


@dataclass
class Claim:
    """A finding of the paper: `method` beats `over` on the key metric by at least `margin` (relative)."""
    method: str
    over: str
    margin: float = 0.0
    stage: str | None = None  # compare this stage of both; None: each method's final stage


@dataclass
class ExperimentSpec:
    name: str
    methods: list[Method]
    seeds: list[int]
    reference: str | None = None
    metrics: list[str] = field(default_factory=lambda: ["recall@10", "ndcg@10", "mrr@10"])
    overrides: list[str] = field(default_factory=list)
    published: dict[str, dict[str, float]] = field(default_factory=dict)
    published_scale: float = 0.01
    description: str = ""
    plot: dict[str, Any] | None = None
    claims: list[Claim] = field(default_factory=list)


def _string_list(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TandemError(f"experiment spec: {key!r} must be a list of strings")
    return list(value)


def _reuse(value: Any, path: Path, name: str) -> Reuse | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"dir", "method"} or not all(
            isinstance(v, str) and v for v in value.values()):
        raise TandemError(f"experiment spec {path}: method {name!r}: 'reuse' must be {{dir: OUTPUT_DIR, method: NAME}}")
    if "/" in value["method"] or "\\" in value["method"] or value["method"].startswith("."):
        raise TandemError(f"experiment spec {path}: method {name!r}: reuse.method must be a method name, got "
                          f"{value['method']!r}")
    directory = (path.parent / value["dir"]).resolve()
    if not directory.is_dir():
        raise TandemError(f"experiment spec {path}: method {name!r}: reuse.dir {directory} is not a directory "
                          "(run that experiment first, or remove the reuse entry)")
    return Reuse(directory, value["method"])


def _claims(value: Any, path: Path, names: list[str]) -> list[Claim]:
    """The spec's `claims`: each {method, over, margin?, stage?} naming two of its methods."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise TandemError(f"experiment spec {path}: 'claims' must be a list of {{method, over, margin, stage}}")
    claims = []
    for index, entry in enumerate(value):
        where = f"experiment spec {path}: claims[{index}]"
        if not isinstance(entry, dict) or not {"method", "over"} <= set(entry) or set(entry) - {
                "method", "over", "margin", "stage"}:
            raise TandemError(f"{where} must be {{method: NAME, over: NAME}} with optional 'margin' and 'stage'")
        for key in ("method", "over"):
            if entry[key] not in names:
                raise TandemError(f"{where}: {key} {entry[key]!r} is not one of the methods {names}")
        if entry["method"] == entry["over"]:
            raise TandemError(f"{where}: a method cannot be claimed to beat itself ({entry['method']!r})")
        margin = _number(entry.get("margin", 0.0), path, f"claims[{index}].margin")
        if not 0.0 <= margin < 10.0:
            raise TandemError(f"{where}: margin must be a relative gain in [0, 10), got {margin}")
        stage = entry.get("stage")
        if stage is not None and stage not in CLAIM_STAGES:
            raise TandemError(f"{where}: stage must be one of {list(CLAIM_STAGES)}, got {stage!r}")
        claims.append(Claim(str(entry["method"]), str(entry["over"]), margin, stage))
    return claims


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read and check a spec file."""
    from tandem.config import read_yaml_file

    path = Path(path)
    raw = read_yaml_file(path, "experiment spec")  # one-line errors, 1e-3 as a number, duplicate keys refused
    if not isinstance(raw, dict):
        raise TandemError(f"experiment spec {path} must be a mapping")
    allowed = {"name", "description", "seeds", "reference", "metrics", "overrides", "methods", "published",
               "published_scale", "plot", "claims"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise TandemError(f"experiment spec {path}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    methods_raw = raw.get("methods")
    if not isinstance(methods_raw, dict) or not methods_raw:
        raise TandemError(f"experiment spec {path}: 'methods' must be a non-empty mapping of name -> {{config: ...}}")
    methods = []
    for name, entry in methods_raw.items():
        name = _checked_name(name, path, "method name")
        if not isinstance(entry, dict) or "config" not in entry or set(entry) - {"config", "overrides", "reference",
                                                                                  "reuse"}:
            raise TandemError(f"experiment spec {path}: method {name!r} needs 'config' (and optional 'overrides', "
                              "'reference', 'reuse')")
        config = (path.parent / str(entry["config"])).resolve()
        if not config.is_file():
            raise TandemError(f"experiment spec {path}: method {name!r}: config {config} does not exist")
        own = entry.get("reference")
        methods.append(Method(name, config, _string_list(entry.get("overrides"), f"methods.{name}.overrides"),
                              None if own is None else str(own), _reuse(entry.get("reuse"), path, name)))
    seeds = raw.get("seeds", [2023])
    if not isinstance(seeds, list) or not seeds or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2 ** 32 for s in seeds):
        raise TandemError(f"experiment spec {path}: 'seeds' must be a non-empty list of integers in [0, 2^32)")
    if len(set(seeds)) != len(seeds):
        raise TandemError(f"experiment spec {path}: 'seeds' lists a seed twice: {seeds}")
    names = [method.name for method in methods]
    reference = raw.get("reference")
    if reference is not None and reference not in names:
        raise TandemError(f"experiment spec {path}: reference {reference!r} is not one of the methods {names}")
    for method in methods:
        if method.reference is not None and method.reference not in names:
            raise TandemError(f"experiment spec {path}: method {method.name!r}: reference {method.reference!r} is "
                              f"not one of the methods {names}")
    published = raw.get("published") or {}
    if not isinstance(published, dict) or not all(isinstance(v, dict) for v in published.values()):
        raise TandemError(f"experiment spec {path}: 'published' must map method -> {{metric: value}}")
    published_values = {str(method): {str(metric): _number(value, path, f"published.{method}.{metric}")
                                      for metric, value in values.items()} for method, values in published.items()}
    scale = _number(raw.get("published_scale", 0.01), path, "'published_scale'")
    if not scale > 0:
        raise TandemError(f"experiment spec {path}: 'published_scale' must be positive, got {scale}")
    plot = raw.get("plot")
    if plot is not None and (not isinstance(plot, dict) or plot.get("kind") not in PLOT_KINDS):
        raise TandemError(f"experiment spec {path}: 'plot.kind' must be one of {list(PLOT_KINDS)}")
    return ExperimentSpec(
        name=_checked_name(raw.get("name") or path.stem, path, "name"),
        methods=methods,
        seeds=list(seeds),
        reference=reference,
        metrics=_string_list(raw.get("metrics"), "metrics") or ["recall@10", "ndcg@10", "mrr@10"],
        overrides=_string_list(raw.get("overrides"), "overrides"),
        published=published_values,
        published_scale=scale,
        description=str(raw.get("description", "")),
        plot=plot,
        claims=_claims(raw.get("claims"), path, names),
    )
