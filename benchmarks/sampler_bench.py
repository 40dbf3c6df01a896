"""Sampler benchmark: time per batch, MIDX index build, and distance of each proposal to the exact softmax.

    python benchmarks/sampler_bench.py --items 10000 1000000 --queries 512 --negatives 20 --dim 64 --out samplers.json

With several --items sizes one run measures each size, then times the MIDX batch of every size again interleaved
(so a load change on the machine hits all sizes alike) and reports the goals of issue 10: MIDX speed-up over exact
sampling at the largest size, MIDX time at the largest size over the smallest, KL(P || Q^) of MIDX at each size.
Torch and FAISS run on --threads threads (default 1; restored afterwards).

Embeddings have real structure: items are a hierarchical Gaussian mixture (32 genres x 8 sub-genres), queries sit
near sub-genre centres, so the exact softmax is far from uniform and MIDX's clustering residual is what separates
it from the exact softmax. A flat mixture of 256 isotropic blobs in random directions (no shared structure between
the two halves of the vectors, the hard case for MIDX) is also measured for the default K ("kl_flat_mixture").
One batch = `sample(query [B, d], n)` plus `log_prob` of one positive per query. Timings are medians after one
warm-up (time.perf_counter): --repeats runs, more for fast samplers (as many as fit in 0.05 s x --repeats). KL(P_exact || Q) is
averaged over queries, with exact log-probabilities streamed over item chunks so memory stays modest at 1M items.
AdaSIR's pool is a finite sample (its KL to the softmax is infinite), so it gets a total-variation figure instead.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm import tqdm

from tandem.sampling.adasir import AdaSIRSampler
from tandem.sampling.base import Sampler
from tandem.sampling.exact import ExactSampler
from tandem.sampling.factory import build_sampler
from tandem.sampling.midx import MIDXSampler
from tandem.utils import atomic_write_json

SWEEP_CLUSTERS = (16, 64, 256)
GENRES, SUBGENRES = 32, 8
ITEM_CHUNK = 1 << 16


def make_embeddings(
    num_items: int, dim: int, num_queries: int, seed: int, genres: int = GENRES, subgenres: int = SUBGENRES,
    genre_norm: float = 2.0, subgenre_norm: float = 1.0, noise: float = 0.3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hierarchical Gaussian-mixture item vectors [N+1, d] (row 0 padding = 0) and queries [B, d].

    `genres` centres of norm ~genre_norm, each with `subgenres` sub-centres offset by norm ~subgenre_norm, items
    and queries scattered (norm ~noise) around random sub-centres, like a catalogue of genres and sub-genres.
    `subgenres=1, subgenre_norm=0` gives a flat mixture of isotropic blobs (the hard case for product clustering).
    """
    gen = torch.Generator().manual_seed(seed)
    scale = 1.0 / math.sqrt(dim)
    tops = torch.randn(genres, dim, generator=gen) * (genre_norm * scale)
    centres = tops.repeat_interleave(subgenres, 0)
    centres = centres + torch.randn(centres.shape, generator=gen) * (subgenre_norm * scale)
    assign = torch.randint(0, centres.shape[0], (num_items,), generator=gen)
    items = centres[assign] + torch.randn(num_items, dim, generator=gen) * (noise * scale)
    items = torch.cat([torch.zeros(1, dim), items])
    q_assign = torch.randint(0, centres.shape[0], (num_queries,), generator=gen)
    queries = centres[q_assign] + torch.randn(num_queries, dim, generator=gen) * (noise * scale)
    return items, queries


def _median_time(fn: Callable[[], Any], repeats: int, budget_seconds: float | None = None) -> float:
    """Median seconds of `fn()` after one warm-up: at least `repeats` runs, more while they fit in the budget
    (default 0.05 s per repeat), so millisecond figures are medians of many runs, robust to a shared machine."""
    budget_seconds = 0.05 * repeats if budget_seconds is None else budget_seconds
    fn()  # warm-up
    times: list[float] = []
    begin = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - begin < budget_seconds and len(times) < 1000):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _interleaved_times(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Median seconds per call of each function, timed in alternation (round-robin) so that they share the
    machine's conditions: the fair way to compare sizes on a machine shared with other work."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _batch_fn(sampler: Sampler, queries: torch.Tensor, positives: torch.Tensor, num: int,
              context: torch.Tensor | None) -> Callable[[], Any]:
    def run() -> None:
        with torch.no_grad():
            sampler.sample(queries, num, context=context)
            sampler.log_prob(queries, positives.unsqueeze(1), context=context)
    return run


@torch.no_grad()
def divergence_to_exact(
    items: torch.Tensor, queries: torch.Tensor, log_q: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    temperature: float = 1.0,
) -> tuple[float, float]:
    """(mean KL(P_exact || Q), mean TV(P_exact, Q)) over queries; `log_q(queries, item_ids [B, c]) -> [B, c]`.

    Two streamed passes over item chunks: log Z of the exact softmax, then sum P (log P - log Q) and |P - Q| / 2.
    """
    vectors = items[1:]
    num_items = vectors.shape[0]
    log_z = torch.full((queries.shape[0],), float("-inf"))
    for start in range(0, num_items, ITEM_CHUNK):
        logits = queries @ vectors[start:start + ITEM_CHUNK].T / temperature
        log_z = torch.logaddexp(log_z, torch.logsumexp(logits, dim=1))
    kl = torch.zeros(queries.shape[0], dtype=torch.float64)
    tv = torch.zeros(queries.shape[0], dtype=torch.float64)
    for start in range(0, num_items, ITEM_CHUNK):
        stop = min(num_items, start + ITEM_CHUNK)
        log_p = queries @ vectors[start:stop].T / temperature - log_z.unsqueeze(1)
        ids = torch.arange(start + 1, stop + 1).expand(queries.shape[0], -1)
        lq = log_q(queries, ids)
        p = log_p.double().exp()
        kl += (p * (log_p.double() - lq.double())).sum(1)
        tv += 0.5 * (p - lq.double().exp()).abs().sum(1)
    return float(kl.mean()), float(tv.mean())


@torch.no_grad()
def pool_tv_to_exact(sampler: AdaSIRSampler, items: torch.Tensor, queries: torch.Tensor,
                     contexts: torch.Tensor) -> float:
    """Mean TV(P_exact, empirical pool distribution), using only the pool's O(R^2) slots per context."""
    exact = ExactSampler(sampler.num_items, temperature=sampler.temperature)
    exact.refresh(items)
    pools = sampler.pools[contexts].long()  # [B, R]
    size = pools.shape[1]
    same = pools.unsqueeze(2) == pools.unsqueeze(1)  # [B, R, R]
    q = same.sum(2).double() / size
    earlier = torch.tril(torch.ones(size, size, dtype=torch.bool), diagonal=-1)
    first = ~(same & earlier).any(2)  # first slot of each distinct item
    p = exact.log_prob(queries, pools).double().exp()
    tv = 0.5 * (((p - q).abs() * first).sum(1) + 1.0 - (p * first).sum(1))
    return float(tv.mean())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks/sampler_bench.py", description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, nargs="+", default=[10_000],
                        help="number of items N; several sizes are measured in one run and compared")
    parser.add_argument("--queries", type=int, default=512, help="queries per batch B")
    parser.add_argument("--negatives", type=int, default=20, help="draws per query n")
    parser.add_argument("--dim", type=int, default=64, help="embedding dimension d")
    parser.add_argument("--clusters", type=int, default=64, help="MIDX clusters per subspace for the main figures")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per figure (median reported)")
    parser.add_argument("--kl-queries", type=int, default=64, help="queries averaged for KL/TV")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch and FAISS threads (restored afterwards)")
    parser.add_argument("--out", help="JSON file to write (atomically)")
    args = parser.parse_args(argv)
    if min(args.items) < 1:
        parser.error("--items must be >= 1")
    for name in ("queries", "negatives", "dim", "clusters", "repeats", "kl_queries", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.dim < 2:
        parser.error("--dim must be >= 2 (MIDX splits vectors in two halves)")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the figures (and writes them to --out if given).

    One size: the figures of that size. Several: {"runs": {size: figures}, "interleaved_midx_seconds_per_batch",
    "targets"} with the issue-10 goals computed from one run.
    """
    import faiss

    args = parse_args(argv)
    threads = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)  # FAISS's OpenMP k-means crawls when the cores are oversubscribed
    try:
        runs: dict[str, dict[str, Any]] = {}
        batches: dict[str, Callable[[], Any]] = {}
        for n_items in args.items:
            runs[str(n_items)], batches[str(n_items)] = _measure(args, n_items)
        result = next(iter(runs.values())) if len(runs) == 1 else _compare_sizes(args, runs, batches)
    finally:
        torch.set_num_threads(threads[0])
        faiss.omp_set_num_threads(threads[1])
    if args.out:
        atomic_write_json(Path(args.out), result)
    if len(runs) > 1:
        _print_targets(result)
    return result


def _compare_sizes(args: argparse.Namespace, runs: dict[str, dict[str, Any]],
                   batches: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Summary of a multi-size run: the MIDX batches timed again in alternation, and the goals of issue 10."""
    interleaved = _interleaved_times(batches, rounds=max(200, args.repeats))
    small, large = str(min(args.items)), str(max(args.items))
    big = runs[large]
    targets = {
        "midx_speedup_vs_exact_at_largest": big["seconds_per_batch"]["exact"] / interleaved[large],
        "midx_time_ratio_largest_over_smallest": interleaved[large] / interleaved[small],
        "kl_midx_by_size": {size: run["kl_to_exact"]["midx"] for size, run in runs.items()},
        "kl_midx_over_kl_uniform_at_largest": big["kl_to_exact"]["midx"] / big["kl_to_exact"]["uniform"],
        "index_rebuild_seconds_at_largest": big["index_rebuild_seconds"],
    }
    targets["goals_met"] = {
        "speedup_at_least_3000x": targets["midx_speedup_vs_exact_at_largest"] >= 3000,
        "time_ratio_at_most_1.2": targets["midx_time_ratio_largest_over_smallest"] <= 1.2,
    }
    return {"runs": runs, "smallest": int(small), "largest": int(large), "threads": args.threads,
            "interleaved_midx_seconds_per_batch": interleaved, "targets": targets}


def _print_targets(result: dict[str, Any]) -> None:
    t = result["targets"]
    small, large = result["smallest"], result["largest"]
    times = result["interleaved_midx_seconds_per_batch"]
    print(f"midx per batch (interleaved): N={small:,} {times[str(small)] * 1e3:.3f} ms, "
          f"N={large:,} {times[str(large)] * 1e3:.3f} ms -> ratio {t['midx_time_ratio_largest_over_smallest']:.3f}")
    print(f"midx {t['midx_speedup_vs_exact_at_largest']:,.0f}x faster than exact at N={large:,}; "
          f"KL(P||Q^) midx by size {t['kl_midx_by_size']}")


def _measure(args: argparse.Namespace, n_items: int) -> tuple[dict[str, Any], Callable[[], Any]]:
    """All figures at one size; also returns the MIDX batch function (for the interleaved comparison)."""
    n_neg = args.negatives
    torch.manual_seed(args.seed)
    items, queries = make_embeddings(n_items, args.dim, args.queries, args.seed)
    positives = torch.randint(1, n_items + 1, (args.queries,), generator=torch.Generator().manual_seed(args.seed))
    contexts = torch.arange(args.queries)
    kl_q = queries[: args.kl_queries]
    exact_repeats = min(args.repeats, 3)
    steps = ["uniform", "exact", "midx build", "midx", "adasir", "flat mixture"]
    steps += [f"midx K={k}" for k in SWEEP_CLUSTERS]
    progress = tqdm(steps, desc="bench samplers", file=sys.stderr, leave=False)

    def stage(name: str) -> None:
        progress.set_postfix_str(name)

    seconds: dict[str, float] = {}
    kl: dict[str, float] = {"exact": 0.0}
    tv: dict[str, float] = {"exact": 0.0}

    stage("uniform")
    uniform = build_sampler("uniform", num_items=n_items, seed=args.seed)
    seconds["uniform"] = _median_time(_batch_fn(uniform, queries, positives, n_neg, None), args.repeats)
    kl["uniform"], tv["uniform"] = divergence_to_exact(items, kl_q, lambda q, ids: uniform.log_prob(q, ids))
    progress.update()

    stage("exact")
    exact = ExactSampler(n_items, seed=args.seed)
    exact.refresh(items)
    seconds["exact"] = _median_time(_batch_fn(exact, queries, positives, n_neg, None), exact_repeats, 0.0)
    progress.update()

    stage("midx build")
    start = time.perf_counter()
    midx = MIDXSampler(n_items, num_clusters=args.clusters, seed=args.seed)
    midx.refresh(items)
    build_seconds = time.perf_counter() - start
    start = time.perf_counter()
    midx.refresh(items)  # warm-started rebuild, as on every later refresh
    rebuild_seconds = time.perf_counter() - start
    progress.update()

    stage("midx")
    midx_batch = _batch_fn(midx, queries, positives, n_neg, None)
    seconds["midx"] = _median_time(midx_batch, args.repeats)
    kl["midx"], tv["midx"] = divergence_to_exact(items, kl_q, midx.log_prob)
    progress.update()

    stage("adasir")
    adasir = AdaSIRSampler(n_items, num_contexts=args.queries, seed=args.seed)
    start = time.perf_counter()
    adasir.refresh_pools(contexts, queries, items)
    pool_seconds = time.perf_counter() - start
    seconds["adasir"] = _median_time(_batch_fn(adasir, queries, positives, n_neg, contexts), args.repeats)
    tv["adasir"] = pool_tv_to_exact(adasir, items, kl_q, contexts[: args.kl_queries])
    progress.update()

    stage("flat mixture")
    flat_items, flat_queries = make_embeddings(n_items, args.dim, args.kl_queries, args.seed + 1,
                                               genres=GENRES * SUBGENRES, subgenres=1, subgenre_norm=0.0, noise=0.5)
    flat_midx = MIDXSampler(n_items, num_clusters=args.clusters, seed=args.seed)
    flat_midx.refresh(flat_items)
    flat = {"uniform": divergence_to_exact(flat_items, flat_queries, lambda q, ids: uniform.log_prob(q, ids))[0],
            "midx": divergence_to_exact(flat_items, flat_queries, flat_midx.log_prob)[0]}
    del flat_items, flat_midx
    progress.update()

    sweep: dict[str, dict[str, float]] = {}
    for k in SWEEP_CLUSTERS:
        stage(f"midx K={k}")
        start = time.perf_counter()
        swept = MIDXSampler(n_items, num_clusters=k, seed=args.seed)
        swept.refresh(items)
        build = time.perf_counter() - start
        per_batch = _median_time(_batch_fn(swept, queries, positives, n_neg, None), args.repeats)
        k_kl, k_tv = divergence_to_exact(items, kl_q, swept.log_prob)
        sweep[str(k)] = {"seconds_per_batch": per_batch, "index_build_seconds": build, "kl_to_exact": k_kl,
                         "tv_to_exact": k_tv, "clusters_used": swept.k}
        progress.update()
    progress.close()

    result: dict[str, Any] = {
        "items": n_items,
        "queries": args.queries,
        "negatives": n_neg,
        "dim": args.dim,
        "clusters": args.clusters,
        "seed": args.seed,
        "threads": args.threads,
        "seconds_per_batch": seconds,
        "index_build_seconds": build_seconds,
        "index_rebuild_seconds": rebuild_seconds,
        "adasir_pool_refresh_seconds": pool_seconds,
        "midx_speedup_vs_exact": seconds["exact"] / seconds["midx"],
        "midx_nonempty_cells": int(midx.nz_cells.shape[0]),
        "midx_draw": "joint over non-empty cells" if midx.nz_cells.shape[0] <= midx.k + n_neg * midx.row_cols.shape[1]
        else "two steps over non-empty cells",
        "kl_to_exact": kl,
        "tv_to_exact": tv,
        "midx_by_clusters": sweep,
        "kl_flat_mixture": flat,
        "data": f"hierarchical Gaussian mixture {GENRES}x{SUBGENRES}, d={args.dim}; KL/TV over {kl_q.shape[0]} queries",
    }
    _print_table(result)
    return result, midx_batch


def _print_table(result: dict[str, Any]) -> None:
    print(f"samplers at N={result['items']:,} (B={result['queries']}, n={result['negatives']}, d={result['dim']})")
    print(f"{'sampler':<10} {'ms/batch':>10} {'KL(P||Q)':>10} {'TV':>8}")
    for name, secs in result["seconds_per_batch"].items():
        kl = result["kl_to_exact"].get(name)
        tv = result["tv_to_exact"].get(name)
        kl_s = f"{kl:10.4f}" if kl is not None else f"{'inf':>10}"
        tv_s = f"{tv:8.4f}" if tv is not None else f"{'-':>8}"
        print(f"{name:<10} {secs * 1e3:10.3f} {kl_s} {tv_s}")
    print(f"midx index build {result['index_build_seconds']:.3f} s (warm rebuild "
          f"{result['index_rebuild_seconds']:.3f} s); midx {result['midx_speedup_vs_exact']:.0f}x faster than exact")
    flat = result["kl_flat_mixture"]
    print(f"flat 256-blob mixture: KL uniform {flat['uniform']:.4f}, midx {flat['midx']:.4f}")
    for k, row in result["midx_by_clusters"].items():
        print(f"  midx K={k:<4} {row['seconds_per_batch'] * 1e3:8.3f} ms/batch"
              f"  build {row['index_build_seconds']:.3f} s"
              f"  KL {row['kl_to_exact']:.4f}  TV {row['tv_to_exact']:.4f}")


if __name__ == "__main__":
    main()
