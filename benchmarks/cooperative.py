"""Retriever alone, Independent, RankFlow, ICC and CoRR on MovieLens-100K (sequential task, SASRec + DIN),
several seeds: test Recall/NDCG/MRR@10 as mean ± std, and seconds per epoch, written to JSON (seed 000 Table 2).

With --speed it instead times one training step on ML-100K batches (512 rows, 20 negatives, history 20): DIN's
forward + backward and its 100-candidate forward, the current DIN against the previous implementation (kept here,
`legacy_score`, as the before-figure and checked equal to the current one on the same batch), and a full CoRR
step against a SASRec-alone step, with the FLOPs of each (`tandem.flops`) and the machine's dense matrix-product
rate, which bound what a faster implementation could give; and on the general task (MF + DeepFM,
configs/ml100k-general-corr.yaml) DeepFM's forward + backward, current against its previous implementation
(`legacy_deepfm_score`, the concatenated field tensor), and a CoRR step against an MF-alone step; medians over
interleaved repeats, written to cooperative_speed.json.

Usage: python benchmarks/cooperative.py [--epochs 5] [--seeds 0 1 2] [--out benchmarks/results/cooperative.json]
       python benchmarks/cooperative.py --methods CoRR ICC --out part2.json   # a subset, e.g. in another process
       python benchmarks/cooperative.py --merge part1.json part2.json --out benchmarks/results/cooperative.json
       python benchmarks/cooperative.py --speed [--repeats 9] [--threads 1]   # -> results/cooperative_speed.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import types
from collections.abc import Callable

import torch

from tandem.config import load_config
from tandem.data.splits import iterate_batches
from tandem.experiments.grid import Entry, markdown_table, run_grid
from tandem.flops import count_flops
from tandem.models.rankers.deepfm import DeepFM
from tandem.models.rankers.din import DIN, ActivationUnit
from tandem.run import build_scheme, prepare
from tandem.utils import atomic_write_json

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = os.path.join(HERE, "..", "configs")
METHODS = [
    ("Retriever alone (SASRec)", "ml100k-seq-sasrec.yaml"),
    ("Independent", "ml100k-seq-independent.yaml"),
    ("RankFlow", "ml100k-seq-rankflow.yaml"),
    ("ICC", "ml100k-seq-icc.yaml"),
    ("CoRR", "ml100k-seq-corr.yaml"),
]
METRICS = ["recall@10", "ndcg@10", "mrr@10"]


def legacy_attention(unit: ActivationUnit, history: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """DIN's activation unit as implemented before the blockwise version (commit 5c846ef): decomposed W, but whole
    [B, L, H, d] products and [B, L, H, hidden] pre-activations, autograd's backward."""
    d = unit.dim
    w_h, w_c, w_d, w_p = unit.hidden.weight.split(d, dim=1)
    from_history = history @ (w_h + w_d).t()
    from_candidate = candidates @ (w_c - w_d).t() + unit.hidden.bias
    product = (candidates.unsqueeze(2) * history.unsqueeze(1)) @ w_p.t()
    pre = product + from_history.unsqueeze(1) + from_candidate.unsqueeze(2)
    return unit.output(unit.activation(pre)).squeeze(-1)


def legacy_score(model: DIN, batch: dict[str, torch.Tensor], items: torch.Tensor) -> torch.Tensor:
    """DIN.score before the change (commit 5c846ef): candidates and history represented separately, the user
    fields copied to every candidate's MLP input."""
    batch_size, length = items.shape
    candidates = model.item_representation(items)
    history = batch["history"]
    history_vectors = model.item_representation(history)
    weights = legacy_attention(model.attention, history_vectors, candidates)
    interest = weights.masked_fill((history == 0).unsqueeze(1), 0.0) @ history_vectors
    parts = [interest, candidates]
    if model.interest_product:
        parts.append(interest * candidates)
    if model.user_embedding is not None or model.user_features.num_fields:
        user = batch["user"]
        user_fields = [model.user_features(user)]
        if model.user_embedding is not None:
            user_fields.insert(0, model.user_embedding(user).unsqueeze(1))
        flat = torch.cat(user_fields, dim=1).flatten(1)
        parts.insert(0, flat.unsqueeze(1).expand(batch_size, length, flat.shape[-1]))
    scores = model.output(model.mlp(torch.cat(parts, dim=-1))).squeeze(-1)
    if model.item_bias is not None:
        scores = scores + model.item_bias(items).squeeze(-1)
    return scores


def legacy_deepfm_score(model: DeepFM, batch: dict[str, torch.Tensor], items: torch.Tensor) -> torch.Tensor:
    """DeepFM's score before the per-row user share (commit 017763e): every candidate's [F, d] fields built."""
    user_fields, user_first = model.user_fields(batch)
    item_fields, item_first = model.item_fields(items)
    batch_size, length = items.shape
    user_fields = user_fields.unsqueeze(1).expand(batch_size, length, *user_fields.shape[1:])
    fields = torch.cat([user_fields, item_fields], dim=2)
    first_order = model.bias + user_first.unsqueeze(1) + item_first
    summed = fields.sum(2)
    second_order = 0.5 * (summed.pow(2) - fields.pow(2).sum(2)).sum(-1)
    return first_order + second_order + model.output(model.mlp(fields.flatten(2))).squeeze(-1)


def schemes_and_batch(configs: dict[str, str]) -> tuple[dict[str, torch.nn.Module], dict[str, torch.Tensor]]:
    """The schemes of the named configs (sampler ready, training mode) and one shuffled training batch of 512."""
    schemes = {}
    for label, name in configs.items():
        config = load_config(os.path.join(CONFIGS, name), ["train.progress=false"])
        prepared = prepare(config)
        schemes[label] = build_scheme(config, prepared)
        schemes[label].on_epoch_start(prepared.split.train)
        schemes[label].train()
    batch = next(iterate_batches(prepared.split.train.tensors, 512, shuffle=True,
                                 generator=torch.Generator().manual_seed(0)))
    return schemes, batch


def general_speed(repeats: int) -> dict[str, object]:
    """MF alone vs CoRR with MF + DeepFM, one training step on an ML-100K general batch; DeepFM current vs legacy."""
    schemes, batch = schemes_and_batch({"mf": "ml100k-general-mf.yaml", "corr": "ml100k-general-corr.yaml"})
    ranker: DeepFM = schemes["corr"].ranker
    items = torch.cat([batch["item"].unsqueeze(1),
                       torch.randint(1, ranker.num_items + 1, (512, 20), generator=torch.Generator().manual_seed(1))], 1)
    ranker.eval()
    with torch.no_grad():
        legacy = legacy_deepfm_score(ranker, batch, items)
        check = ((ranker.score(batch, items) - legacy).abs().max() / legacy.abs().max()).item()
    ranker.train()
    deepfm = interleaved_medians({"current": lambda: ranker.score(batch, items).sum().backward(),
                                  "legacy": lambda: legacy_deepfm_score(ranker, batch, items).sum().backward()},
                                 repeats)
    optimizers = {label: torch.optim.Adam(scheme.parameters(), lr=1e-3) for label, scheme in schemes.items()}
    steps = interleaved_medians({label: (lambda label=label: training_step(schemes[label], optimizers[label], batch))
                                 for label in schemes}, repeats)
    return {"max_relative_difference_current_vs_legacy": check,
            "deepfm_forward_backward_21": {**deepfm, "legacy_over_current": deepfm["legacy"] / deepfm["current"]},
            "step": {**steps, "corr_over_mf": steps["corr"] / steps["mf"]}}


def interleaved_medians(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each callable, the callables taking turns so that load drifts hit all of them alike."""
    for run in runs.values():  # warm-up: allocator, thread pool, MKL kernels
        run()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in seconds.items()}


def matmul_gflops(repeats: int, size: int = 2048) -> float:
    """This machine's float32 rate on a dense square matrix product (median of `repeats`), in GFLOP/s: about the
    best rate any of the steps' matrix products can reach with the same threads."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    seconds = interleaved_medians({"mm": lambda: a @ b}, repeats)["mm"]
    return 2 * size ** 3 / seconds / 1e9


def arithmetic(steps: dict[str, Callable[[], None]], seconds: dict[str, float], repeats: int) -> dict[str, object]:
    """FLOPs of one call of each step (`tandem.flops`: matrix products), the rate each measured step reached, and
    how long CoRR's step would take at this machine's dense matrix-product rate, against SASRec's measured step:
    the bound on what making the code faster (rather than doing less arithmetic) can give."""
    flops = {label: count_flops(run)["total"] for label, run in steps.items()}
    rate = matmul_gflops(repeats)
    return {
        "gflop": {label: value / 1e9 for label, value in flops.items()},
        "achieved_gflops": {label: flops[label] / seconds[label] / 1e9 for label in steps},
        "dense_matmul_gflops": rate,
        "corr_over_sasrec_flops": flops["corr_current"] / flops["sasrec"],
        "corr_seconds_at_matmul_rate": flops["corr_current"] / rate / 1e9,
        "corr_at_matmul_rate_over_sasrec_measured": flops["corr_current"] / rate / 1e9 / seconds["sasrec"],
    }


def training_step(scheme: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor]) -> None:
    """One step as the trainer takes it: losses, backward, optimizer step."""
    optimizer.zero_grad(set_to_none=True)
    sum(scheme(batch).values()).backward()
    optimizer.step()


def speed(args: argparse.Namespace) -> None:
    """Step and DIN timings on ML-100K batches, current DIN against the previous implementation."""
    started = time.perf_counter()
    torch.set_num_threads(args.threads or torch.get_num_threads())
    torch.manual_seed(0)
    schemes, batch = schemes_and_batch({"sasrec": "ml100k-seq-sasrec.yaml", "corr": "ml100k-seq-corr.yaml"})
    corr = schemes["corr"]
    ranker: DIN = corr.ranker
    num_items = ranker.num_items
    g = torch.Generator().manual_seed(1)
    train_items = torch.cat([batch["item"].unsqueeze(1), torch.randint(1, num_items + 1, (512, 20), generator=g)], 1)
    eval_items = torch.randint(1, num_items + 1, (512, 100), generator=g)

    def current(items: torch.Tensor) -> torch.Tensor:
        return ranker.score(batch, items)

    def legacy(items: torch.Tensor) -> torch.Tensor:
        return legacy_score(ranker, batch, items)

    ranker.eval()  # same function check: dropout off, same batch
    with torch.no_grad():
        check = {length: ((current(items) - legacy(items)).abs().max() / legacy(items).abs().max()).item()
                 for length, items in (("21", train_items), ("100", eval_items))}
    ranker.train()

    def forward_backward(score: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        return lambda: score(train_items).sum().backward()

    def inference(score: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                score(eval_items)
        return run

    din_train = interleaved_medians({"current": forward_backward(current), "legacy": forward_backward(legacy)},
                                    args.repeats)
    ranker.eval()
    din_eval = interleaved_medians({"current": inference(current), "legacy": inference(legacy)}, args.repeats)
    ranker.train()
    optimizers = {label: torch.optim.Adam(scheme.parameters(), lr=1e-3) for label, scheme in schemes.items()}

    def corr_step_with(score: Callable[..., torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            ranker.score = types.MethodType(score, ranker)
            try:
                training_step(corr, optimizers["corr"], batch)
            finally:
                del ranker.score  # back to the class's method
        return run

    step_runs = {
        "sasrec": lambda: training_step(schemes["sasrec"], optimizers["sasrec"], batch),
        "corr_current": corr_step_with(DIN.score),
        "corr_legacy": corr_step_with(legacy_score),
    }
    steps = interleaved_medians(step_runs, args.repeats)
    counted = {"sasrec": step_runs["sasrec"], "corr_current": step_runs["corr_current"],
               "din_forward_backward_21": forward_backward(current)}
    cost = arithmetic(counted, {**steps, "din_forward_backward_21": din_train["current"]}, args.repeats)
    result = {
        "what": "median seconds over interleaved repeats on one ML-100K training batch (sequential task, SASRec + "
                "DIN as configs/ml100k-seq-corr.yaml; user and item features); 'legacy' is DIN before the blockwise "
                "activation unit (commit 5c846ef), kept in benchmarks/cooperative.py; general_mf_deepfm: the same on "
                "an ML-100K general batch, MF alone vs CoRR with MF + DeepFM (configs/ml100k-general-corr.yaml), "
                "legacy DeepFM = before the per-row user share (commit 017763e)",
        "shapes": {"batch": 512, "history": int(batch["history"].shape[1]), "train_candidates": 21,
                   "eval_candidates": 100},
        "max_relative_difference_current_vs_legacy": check,
        "din_forward_backward_21": {**din_train, "legacy_over_current": din_train["legacy"] / din_train["current"]},
        "din_forward_100_no_grad": {**din_eval, "legacy_over_current": din_eval["legacy"] / din_eval["current"]},
        "step": {**steps, "corr_current_over_sasrec": steps["corr_current"] / steps["sasrec"],
                 "corr_legacy_over_sasrec": steps["corr_legacy"] / steps["sasrec"]},
        "arithmetic": cost,
        "general_mf_deepfm": general_speed(args.repeats),
        "repeats": args.repeats,
        "machine": {"torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "torch": torch.__version__, "load_average_1min": os.getloadavg()[0]},
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    atomic_write_json(args.out, result)
    print(json.dumps({key: result[key] for key in ("max_relative_difference_current_vs_legacy",
                                                    "din_forward_backward_21", "din_forward_100_no_grad", "step",
                                                    "arithmetic", "general_mf_deepfm")},
                     indent=1))
    print(f"-> {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=[label for label, _ in METHODS])
    parser.add_argument("--threads", type=int, default=0, help="torch threads per process (0 = torch's default)")
    parser.add_argument("--merge", nargs="+", help="combine the runs of earlier partial result files")
    parser.add_argument("--out", default=None, help="default results/cooperative.json (cooperative_speed.json "
                                                     "with --speed)")
    parser.add_argument("--speed", action="store_true", help="time steps and DIN instead of training the grid")
    parser.add_argument("--repeats", type=int, default=9, help="timed repeats per variant with --speed")
    args = parser.parse_args()
    if args.out is None:
        args.out = os.path.join(HERE, "results", "cooperative_speed.json" if args.speed else "cooperative.json")
    if args.speed:
        speed(args)
        return
    started = time.perf_counter()
    if args.merge:
        parts = [json.load(open(path)) for path in args.merge]
        results = {label: run for part in parts for label, run in part["runs"].items()}
        results = {label: results[label] for label, _ in METHODS if label in results}
        args.epochs, args.seeds = parts[0]["epochs"], parts[0]["seeds"]
        elapsed = sum(part["total_seconds"] for part in parts)
    else:
        entries = [Entry(label, os.path.join(CONFIGS, name)) for label, name in METHODS if label in args.methods]
        overrides = [f"train.epochs={args.epochs}", f"train.patience={args.epochs}", f"train.threads={args.threads}"]
        results = run_grid(entries, args.seeds, overrides)
        elapsed = time.perf_counter() - started
    # one comparable view: the pipeline of cooperative runs, the retriever itself for the retriever-alone run
    view = {
        label: [f"pipeline.{m}" if f"pipeline.{m}" in result["test"] else m for m in METRICS]
        for label, result in results.items()
    }
    table = {
        label: {m: result["test"][key] for m, key in zip(METRICS, view[label])}
        for label, result in results.items()
    }
    independent = table.get("Independent", {}).get("ndcg@10", {}).get("mean")
    rankflow = table.get("RankFlow", {}).get("ndcg@10", {}).get("mean")
    corr = table.get("CoRR", {}).get("ndcg@10", {}).get("mean")
    payload = {
        "dataset": "MovieLens-100K (embedded), sequential task, 10-core",
        "epochs": args.epochs,
        "seeds": args.seeds,
        "table": table,
        "corr_over_independent_ndcg@10": corr / independent if corr and independent else None,
        "corr_over_rankflow_ndcg@10": corr / rankflow if corr and rankflow else None,
        "runs": results,
        "total_seconds": elapsed,
    }
    atomic_write_json(args.out, payload)
    flat = {label: {"test": {m: stats for m, stats in row.items()}, "seconds_per_epoch": results[label]["seconds_per_epoch"]}
            for label, row in table.items()}
    print(markdown_table(flat, METRICS, scale=100.0))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
