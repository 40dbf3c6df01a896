"""How tandem's cost grows with the catalogue: 10k / 100k / 1M items, one run, ratios measured side by side.

For each size N the synthetic world of `tandem.data.synthetic_scale` (N items, 10 N interactions, 20 per user on
average, power-law popularity with exponent 0.8) is preprocessed with users >= 5 and items >= 1 interactions (so
the catalogue stays near N; the default 10-core keeps a small fraction of a 1M-item catalogue at 10 interactions
per item, see synthetic_data.json), then, in fresh child processes (peak memory is each child's own VmHWM):

- `mf`: MF + MIDX (64 clusters per half, sampled softmax with log Q, 20 negatives, batch 512), general task;
- `seq`: SASRec + MIDX, and CoRR = the same SASRec + DIN ranker with sampled-KL distillation, sequential task
  (histories of 20), on the same batches; the ranker's cost is CoRR's step minus SASRec's step.

Each is trained for --batches batches (after 2 untimed warm-up batches), the cap being the same at every size so
the measured epochs stay short at 1M; seconds per epoch = seconds per batch x batches in a full epoch (that count
is linear in interactions). A batch's time is split into sampling (MIDX `sample` + `log_prob`), forward + backward
(the rest of the loss and its gradient), and the optimiser step (by default dense Adam over every parameter: O(N d),
reported on its own). MIDX's index rebuild (once per epoch) is timed too. Evaluation: full ranking of --eval-rows validation
rows over all N items (chunked, exact top-K), seconds per 1000 rows (and, for CoRR, the two-stage pipeline).
Serving: item vectors structured like trained ones (each item its cluster's centre plus noise, d = 64), the FAISS
index `recommended_factory(N)` (Flat below 100k, IVF ~4 sqrt(N) cells above) built and searched (top 100, one
thread) next to the flat index, with recall@100 against it.

With --sparse every run sets `train.sparse_embeddings: true`: the embedding tables (retriever's and DIN's) get
sparse gradients and a lazy Adam (SparseAdam) steps only the rows a batch touched, so neither the backward nor the
optimiser step is O(N d) any more; the outputs are then named scaling-sparse.*.

Everything on one thread (torch and FAISS); every cost is CPU time of that thread (`time.process_time`), since
the machine is shared and its wall time mostly measures the neighbours. Writes benchmarks/results/scaling.json,
scaling.csv and scaling.png (log-log, cost against N), or scaling-sparse.* with --sparse.

Usage: nice -n 5 .venv/bin/python benchmarks/scaling.py [--items 10000 100000 1000000] [--batches 30] [--sparse]
       .venv/bin/python benchmarks/scaling.py --table   (the README tables from the committed JSON)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
#: Costs are CPU seconds of the (single-threaded) process, not wall time: the machine this ran on is shared and
#: busy, so wall time measures the neighbours; CPU time measures the work. Wall time of the whole run is recorded.
cpu = time.process_time
BATCH = 512
NEGATIVES = 20
PER_ITEM = 10
SEED = 0


def peak_rss_gib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


class Timer:
    """Accumulates the wall time spent inside wrapped callables."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            clock = cpu()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += cpu() - clock
        return timed


def config_for(kind: str, num_items: int, sparse: bool = False) -> dict[str, Any]:
    """The run config of one measured model (as a config file would give it)."""
    base: dict[str, Any] = {
        "seed": SEED,
        "data": {"format": "table", "path": "synthetic", "min_user_interactions": 5, "min_item_interactions": 1,
                 "max_seq_len": 20, "columns": {"user": "user", "item": "item", "timestamp": "timestamp"}},
        "sampler": {"name": "midx", "num_clusters": 64, "temperature": 1.0, "refresh": "epoch"},
        "loss": {"name": "softmax"},
        "train": {"batch_size": BATCH, "lr": 0.001, "num_negatives": NEGATIVES, "epochs": 1, "progress": False,
                  "threads": 1, "sparse_embeddings": sparse},
        "eval": {"cutoffs": [10, 20, 50], "retrieval_cutoff": 100},
    }
    if kind == "mf":
        return {**base, "task": "general", "retriever": {"name": "mf", "embedding_dim": 64}}
    sasrec = {"name": "sasrec", "embedding_dim": 64, "num_layers": 1, "num_heads": 2, "feedforward_dim": 128,
              "dropout": 0.3}
    out = {**base, "task": "sequential", "retriever": sasrec}
    if kind == "corr":
        out["ranker"] = {"name": "din", "embedding_dim": 64, "attention_hidden": 64, "mlp_hidden": [200, 80],
                         "dropout": 0.3}
        out["scheme"] = {"name": "corr", "distill": "kl", "distill_weight": 1.0}
    return out


def eval_subset(eval_set: Any, rows: int) -> Any:
    """The first `rows` rows of an EvalSet."""
    from tandem.data.splits import EvalSet

    rows = min(rows, len(eval_set))
    return EvalSet({key: value[:rows] for key, value in eval_set.tensors.items()},
                   eval_set.target_indptr[:rows + 1], eval_set.target_items[:eval_set.target_indptr[rows]],
                   eval_set.known_indptr[:rows + 1], eval_set.known_items[:eval_set.known_indptr[rows]])


def train_measure(config: Any, prepared: Any, batches: int) -> dict[str, Any]:
    """Build the scheme, rebuild MIDX's index once (timed), run 2 + `batches` training steps, timing sampling,
    forward + backward and the optimiser step of the last `batches`."""
    import itertools

    import torch

    from tandem.data.splits import iterate_batches
    from tandem.run import build_scheme

    torch.manual_seed(SEED)
    scheme = build_scheme(config, prepared)
    scheme.train()
    if config.train.sparse_embeddings:
        scheme.use_sparse_embeddings()  # as the Trainer does before it builds the optimisers
    optimizers = scheme.make_optimizers(config.train.lr, config.train.weight_decay)
    sampler_timer = Timer()
    sampler = scheme.sampler
    sampler.sample = sampler_timer.wrap(sampler.sample)
    sampler.log_prob = sampler_timer.wrap(sampler.log_prob)
    train = prepared.split.train
    clock = cpu()
    scheme.on_epoch_start(train)  # MIDX: k-means of both halves, cells rebuilt
    refresh_s = cpu() - clock
    generator = torch.Generator().manual_seed(SEED)
    stream = itertools.islice(iterate_batches(train.tensors, BATCH, shuffle=True, generator=generator), 2 + batches)
    forward_backward = optimiser = 0.0
    for step, batch in enumerate(stream):
        if step == 2:
            sampler_timer.seconds = 0.0
            forward_backward = optimiser = 0.0
        clock = cpu()
        losses = scheme(batch)
        total = sum(losses.values())
        for optimizer in optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        total.backward()
        middle = cpu()
        for name in scheme.active_optimizers(1):
            optimizers[name].step()
        forward_backward += middle - clock
        optimiser += cpu() - middle
    per_batch = {
        "sampling_s": sampler_timer.seconds / batches,
        "forward_backward_s": (forward_backward - sampler_timer.seconds) / batches,
        "optimizer_s": optimiser / batches,
    }
    per_batch["total_s"] = sum(per_batch.values())
    return {"scheme": scheme, "per_batch": per_batch, "midx_refresh_s": refresh_s,
            "batches_per_epoch": -(-len(train) // BATCH), "train_examples": len(train),
            "parameters": sum(p.numel() for p in scheme.parameters())}


def eval_measure(scheme: Any, prepared: Any, rows: int, cooperative: bool) -> dict[str, float]:
    """Seconds per 1000 validation rows: full ranking over all items (and the two-stage pipeline for CoRR)."""
    import torch

    subset = eval_subset(prepared.split.valid, rows)
    with torch.no_grad():
        clock = cpu()
        scheme.evaluate(subset, (10, 20, 50), 1024, device="cpu", retrieval_cutoff=100)
        seconds = cpu() - clock
    key = "eval_pipeline_s_per_1000_rows" if cooperative else "eval_s_per_1000_rows"
    return {key: seconds * 1000 / len(subset), "eval_rows_measured": len(subset),
            "valid_rows": len(prepared.split.valid)}


def serving_measure(world: Any, data: Any, queries: int = 200) -> dict[str, Any]:
    """Build the recommended FAISS index and the flat one over structured item vectors; time both."""
    import numpy as np

    from tandem.serving.index import ItemIndex, recall_at_k, recommended_factory

    rng = np.random.default_rng(SEED)
    clusters = world.item_cluster[data.item_tokens[1:].astype(np.int64)]
    centres = rng.standard_normal((int(world.item_cluster.max()) + 1, 64), dtype=np.float32)
    vectors = np.vstack([np.zeros((1, 64), np.float32),
                         centres[clusters] + 0.7 * rng.standard_normal((clusters.size, 64), dtype=np.float32)])
    asked = centres[rng.integers(0, centres.shape[0], queries)] + 0.7 * rng.standard_normal((queries, 64),
                                                                                             dtype=np.float32)
    out: dict[str, Any] = {}
    found = {}
    factory = recommended_factory(data.num_items)
    for label, name in (("flat", "Flat"), ("recommended", factory)):
        clock = cpu()
        index = ItemIndex(vectors, factory=name, seed=SEED)
        if index.nlist:
            index.nprobe = max(1, index.nlist // 128)  # 32 of 4096 cells at 1M (serving_index.json)
        build = cpu() - clock
        clock = cpu()
        found[label] = np.concatenate([index.search(asked[b:b + 100], 100)[0] for b in range(0, queries, 100)])
        batched = cpu() - clock
        single = []
        for row in range(20):
            clock = cpu()
            index.search(asked[row:row + 1], 100)
            single.append(cpu() - clock)
        out[label] = {"factory": name, "nprobe": index.nprobe, "build_s": build,
                      "queries_per_s": queries / batched, "latency_ms": 1e3 * statistics.median(single)}
    out["recommended"]["recall@100"] = recall_at_k(found["recommended"], found["flat"])
    return out


def child(kind: str, num_items: int, batches: int, eval_rows: int, sparse: bool) -> dict[str, Any]:
    """One size and model family, in this (fresh) process."""
    import faiss
    import torch

    from tandem.config import config_from_dict
    from tandem.data.dataset import preprocess
    from tandem.data.splits import split_general, split_sequential
    from tandem.data.synthetic_scale import WorldSpec, generate
    from tandem.run import Prepared

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    out: dict[str, Any] = {"kind": kind, "items_generated": num_items}
    clock = cpu()
    world = generate(WorldSpec(num_items, PER_ITEM * num_items, seed=SEED))
    out["generate_s"] = cpu() - clock
    clock = cpu()
    data = preprocess(world.raw(), None, 5, 1, duplicates="pairs" if kind == "mf" else "rows")
    out["preprocess_s"] = cpu() - clock
    clock = cpu()
    split = split_general(data) if kind == "mf" else split_sequential(data, 20)
    out["split_s"] = cpu() - clock
    out.update(items=data.num_items, users=data.num_users, interactions=data.num_interactions)
    prepared = Prepared(data, split)
    runs = ("mf",) if kind == "mf" else ("sasrec", "corr")
    for name in runs:
        config = config_from_dict(config_for(name, data.num_items, sparse))
        measured = train_measure(config, prepared, batches)
        scheme = measured.pop("scheme")
        measured.update(eval_measure(scheme, prepared, eval_rows, name == "corr"))
        out[name] = measured
        del scheme
    if kind == "mf":
        out["serving"] = serving_measure(world, data)
    out["peak_rss_gib"] = peak_rss_gib()
    return out


def run_child(kind: str, num_items: int, batches: int, eval_rows: int, sparse: bool) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", kind, str(num_items), str(batches), str(eval_rows),
                           str(int(sparse))], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"child {kind} {num_items} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table_rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per size: what the CSV and the README table show."""
    rows = []
    for size, run in results.items():
        mf, seq = run["mf"], run["seq"]
        row: dict[str, Any] = {"items_generated": int(size), "items": mf["items"], "users": mf["users"],
                               "interactions": mf["interactions"]}
        for name, part in (("mf", mf["mf"]), ("sasrec", seq["sasrec"]), ("corr", seq["corr"])):
            per = part["per_batch"]
            row[f"{name}_sampling_ms"] = 1e3 * per["sampling_s"]
            row[f"{name}_forward_backward_ms"] = 1e3 * per["forward_backward_s"]
            row[f"{name}_optimizer_ms"] = 1e3 * per["optimizer_s"]
            row[f"{name}_batch_ms"] = 1e3 * per["total_s"]
            row[f"{name}_epoch_s"] = per["total_s"] * part["batches_per_epoch"]
            row[f"{name}_midx_refresh_s"] = part["midx_refresh_s"]
        row["corr_ranker_ms"] = row["corr_batch_ms"] - row["sasrec_batch_ms"]
        row["mf_eval_s_per_1000"] = mf["mf"]["eval_s_per_1000_rows"]
        row["sasrec_eval_s_per_1000"] = seq["sasrec"]["eval_s_per_1000_rows"]
        row["corr_pipeline_eval_s_per_1000"] = seq["corr"]["eval_pipeline_s_per_1000_rows"]
        serving = mf["serving"]
        row["index_factory"] = serving["recommended"]["factory"]
        row["index_build_s"] = serving["recommended"]["build_s"]
        row["index_latency_ms"] = serving["recommended"]["latency_ms"]
        row["index_queries_per_s"] = serving["recommended"]["queries_per_s"]
        row["index_recall@100"] = serving["recommended"]["recall@100"]
        row["flat_latency_ms"] = serving["flat"]["latency_ms"]
        row["flat_queries_per_s"] = serving["flat"]["queries_per_s"]
        row["peak_rss_gib_mf"] = mf["peak_rss_gib"]
        row["peak_rss_gib_seq"] = seq["peak_rss_gib"]
        row["preprocess_s"] = seq["preprocess_s"]
        row["split_sequential_s"] = seq["split_s"]
        rows.append(row)
    return rows


PLOTTED = {
    "mf_sampling_ms": "MIDX sampling / batch (ms)",
    "mf_forward_backward_ms": "MF forward+backward / batch (ms)",
    "sasrec_forward_backward_ms": "SASRec forward+backward / batch (ms)",
    "corr_ranker_ms": "DIN ranker in CoRR / batch (ms)",
    "mf_optimizer_ms": "Adam step, MF / batch (ms)",
    "mf_epoch_s": "MF epoch (s)",
    "mf_midx_refresh_s": "MIDX index rebuild (s)",
    "mf_eval_s_per_1000": "evaluation / 1000 rows (s)",
    "index_build_s": "FAISS index build (s)",
    "index_latency_ms": "serving latency, top 100 (ms)",
}


def plot(rows: list[dict[str, Any]], path: str, sparse: bool) -> None:
    """One log-log figure: each cost against the catalogue size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5.5))
    sizes = [row["items"] for row in rows]
    for key, label in PLOTTED.items():
        values = [row[key] for row in rows]
        if all(value and value > 0 for value in values):
            axes.plot(sizes, values, marker="o", label=label)
    axes.plot(sizes, [size / sizes[0] for size in sizes], "k:", label="slope 1 (linear in N), for reference")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("items N (interactions = 10 N)")
    axes.set_ylabel("cost")
    tables = "sparse embeddings + lazy Adam" if sparse else "dense gradients + Adam"
    axes.set_title(f"tandem cost against N (one thread; {tables})")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


#: The rows of the README's table: (label, column of `table_rows`, format).
TABLE = [
    ("items (after filter)", "items", "{:,.0f}"), ("interactions", "interactions", "{:,.0f}"),
    ("MIDX sampling / batch, MF (ms)", "mf_sampling_ms", "{:.2f}"),
    ("MF fwd+bwd / batch (ms)", "mf_forward_backward_ms", "{:.1f}"),
    ("MF Adam step / batch (ms)", "mf_optimizer_ms", "{:.1f}"), ("MF epoch (s)", "mf_epoch_s", "{:.1f}"),
    ("MIDX rebuild (s)", "mf_midx_refresh_s", "{:.2f}"),
    ("SASRec sampling / batch (ms)", "sasrec_sampling_ms", "{:.2f}"),
    ("SASRec fwd+bwd / batch (ms)", "sasrec_forward_backward_ms", "{:.1f}"),
    ("SASRec Adam step / batch (ms)", "sasrec_optimizer_ms", "{:.1f}"), ("SASRec epoch (s)", "sasrec_epoch_s", "{:.1f}"),
    ("DIN ranker in CoRR / batch (ms)", "corr_ranker_ms", "{:.1f}"), ("CoRR epoch (s)", "corr_epoch_s", "{:.1f}"),
    ("MF eval / 1000 rows (s)", "mf_eval_s_per_1000", "{:.2f}"),
    ("SASRec eval / 1000 rows (s)", "sasrec_eval_s_per_1000", "{:.2f}"),
    ("CoRR pipeline eval / 1000 rows (s)", "corr_pipeline_eval_s_per_1000", "{:.2f}"),
    ("index", "index_factory", "{}"), ("index build (s)", "index_build_s", "{:.2f}"),
    ("index latency, top 100 (ms)", "index_latency_ms", "{:.2f}"),
    ("index recall@100 vs flat", "index_recall@100", "{:.4f}"), ("flat latency (ms)", "flat_latency_ms", "{:.2f}"),
    ("peak RSS MF / SASRec+CoRR (GiB)", ("peak_rss_gib_mf", "peak_rss_gib_seq"), "{:.2f}"),
]


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The README's table of one run: a column per size and the largest/smallest ratio."""
    def cell(row: dict[str, Any], key: Any, form: str) -> str:
        keys = key if isinstance(key, tuple) else (key,)
        return " / ".join(form.format(row[k]) for k in keys)

    first, last = rows[0], rows[-1]
    ratio_label = f"ratio {last['items_generated'] // first['items_generated']}×"
    lines = ["| | " + " | ".join(f"{row['items_generated']:,} items" for row in rows) + f" | {ratio_label} |",
             "| --- " * (len(rows) + 2) + "|"]
    for label, key, form in TABLE:
        keys = key if isinstance(key, tuple) else (key,)
        numeric = all(isinstance(first[k], (int, float)) and first[k] for k in keys)
        ratio = " / ".join(f"{last[k] / first[k]:.2f}" for k in keys) if numeric else ""
        lines.append(f"| {label} | " + " | ".join(cell(row, key, form) for row in rows) + f" | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--batches", type=int, default=30, help="timed training batches per model and size")
    parser.add_argument("--eval-rows", type=int, default=1000, help="validation rows evaluated per model and size")
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--sparse", action="store_true",
                        help="train with train.sparse_embeddings: true (outputs scaling-sparse.*)")
    parser.add_argument("--table", action="store_true",
                        help="print the README's markdown tables of the committed results and redraw their PNGs "
                             "(no measuring)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.table:
        for name in ("scaling", "scaling-sparse"):
            path = os.path.join(args.out, name + ".json")
            if os.path.exists(path):
                with open(path) as stream:
                    saved = json.load(stream)
                print(f"{name}.json:\n\n" + markdown_table(saved["rows"]) + "\n")
                plot(saved["rows"], os.path.join(args.out, name + ".png"), bool(saved.get("sparse_embeddings")))
        return
    if args.child:
        kind, num_items, batches, eval_rows, sparse = args.child
        print(json.dumps(child(kind, int(num_items), int(batches), int(eval_rows), sparse == "1")))
        return
    from tandem.utils import atomic_write_bytes, atomic_write_json

    started, wall = cpu(), time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    for num_items in args.items:
        results[str(num_items)] = {kind: run_child(kind, num_items, args.batches, args.eval_rows, args.sparse)
                                   for kind in ("mf", "seq")}
        print(f"{num_items} items done ({time.perf_counter() - wall:.0f} s wall)", flush=True)
    rows = table_rows(results)
    first, last = rows[0], rows[-1]
    ratios = {key: last[key] / first[key] for key in first
              if isinstance(first[key], (int, float)) and not isinstance(first[key], bool) and first[key]}
    command = "nice -n 5 .venv/bin/python benchmarks/scaling.py " + " ".join(sys.argv[1:])
    payload = {
        "command": command.strip(),
        "wall_seconds": time.perf_counter() - wall,
        "batches_per_measured_epoch": args.batches,
        "sparse_embeddings": args.sparse,
        "note": (f"training measured on {args.batches} batches of {BATCH} per model and size (after 2 warm-up "
                 f"batches); epoch seconds = seconds per batch x batches in a full epoch. Evaluation measured on "
                 f"{args.eval_rows} validation rows. One thread. The machine is shared: compare ratios."),
        "rows": rows,
        f"ratios_{last['items_generated']}_over_{first['items_generated']}": ratios,
        "raw": results,
    }
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "scaling-sparse" if args.sparse else "scaling")
    atomic_write_json(stem + ".json", payload)
    keys = list(rows[0])
    lines = [",".join(keys)] + [",".join(str(row[key]) for key in keys) for row in rows]
    atomic_write_bytes(stem + ".csv", ("\n".join(lines) + "\n").encode())
    plot(rows, stem + ".png", args.sparse)
    for row in rows:
        print(json.dumps({key: (round(value, 4) if isinstance(value, float) else value) for key, value in row.items()}))
    print(json.dumps({key: round(value, 3) for key, value in ratios.items()}))


if __name__ == "__main__":
    main()
