"""What one training batch of each Table 3 ranker costs on this machine: floating-point operations (torch's FLOP
counter) and seconds of forward + backward, and what that makes an epoch of ranker training on ML-100K.

Each ranker is built as seed000-table3 builds it (the Independent config of its task, the spec's overrides), and
scores a slice of one shuffled training batch: `--rows` rows x 21 candidates (the positive and 20 negatives). FLOPs
grow linearly with the rows (every (row, candidate) pair is scored alike), so they are scaled to the config's
training batch and to the epoch's number of batches; seconds are scaled alike, which overstates them a little for
the small models (a call's fixed overhead is scaled too). FLOPs are torch's FLOP counter with the in-place and
matrix-vector products it leaves at zero added (`tandem.flops`; DIN's activation unit runs through `addmm_`):
matrix products and attention, not elementwise work. This is the evidence behind seed000-table3's note that the
Caser + BST rows need a GPU.

Writes benchmarks/results/ranker_cost.json. Usage: python benchmarks/ranker_cost.py [--rows 32] [--repeats 3]
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from tandem.config import load_config
from tandem.data.splits import iterate_batches
from tandem.flops import count_flops
from tandem.run import build_scheme, prepare
from tandem.utils import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "ranker_cost.json"
# label: (config, overrides) as experiments/seed000-table3.yaml trains each pair (DCN also at its own paper size)
RANKERS = {
    "deepfm (mf-deepfm)": ("ml100k-general-independent.yaml", []),
    "dcn, deep [128]*3 (dssm-dcn rows)": ("ml100k-general-independent.yaml",
                                          ["retriever={name: dssm}", "ranker={name: dcn, mlp_hidden: [128, 128, 128]}"]),
    "dcn, its paper's size": ("ml100k-general-independent.yaml", ["retriever={name: dssm}", "ranker={name: dcn}"]),
    "din (sasrec-din)": ("ml100k-seq-independent.yaml", []),
    "bst, its paper's size (caser-bst)": ("ml100k-seq-independent.yaml", ["retriever={name: caser}", "ranker={name: bst}"]),
}


def measure(config_name: str, overrides: list[str], rows: int, repeats: int) -> dict[str, float]:
    """FLOPs and median seconds of the ranker's forward + backward on `rows` rows x (1 + negatives) candidates."""
    config = load_config(ROOT / "configs" / config_name, [*overrides, "train.progress=false"])
    prepared = prepare(config)
    ranker = build_scheme(config, prepared).ranker.train()
    batch = next(iterate_batches(prepared.split.train.tensors, rows, shuffle=True,
                                 generator=torch.Generator().manual_seed(0)))
    negatives = torch.randint(1, ranker.num_items + 1, (rows, config.train.num_negatives),
                              generator=torch.Generator().manual_seed(1))
    items = torch.cat([batch["item"].unsqueeze(1), negatives], dim=1)

    def step() -> None:
        ranker.zero_grad(set_to_none=True)
        ranker.score(batch, items).logsumexp(-1).sum().backward()

    flops = count_flops(step)["total"]
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - started)
    batches = math.ceil(len(prepared.split.train) / config.train.batch_size)
    scale = config.train.batch_size / rows
    median = statistics.median(seconds)
    return {"rows_measured": rows, "candidates": items.shape[1], "training_batch": config.train.batch_size,
            "flops_measured": flops, "seconds_measured": median,
            "parameters": sum(p.numel() for p in ranker.parameters()),
            "tflop_per_training_batch": flops * scale / 1e12,
            "seconds_per_training_batch": median * scale, "training_batches_per_epoch": batches,
            "cpu_minutes_per_epoch": median * scale * batches / 60}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=128, help="rows of the measured slice (default 128)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats, median kept (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.repeats < 1 or args.threads < 1:
        print("ranker_cost: error: --rows, --repeats and --threads must be >= 1", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    results = {}
    for label, (config_name, overrides) in RANKERS.items():
        results[label] = measure(config_name, overrides, args.rows, args.repeats)
        row = results[label]
        print(f"{label}: {row['tflop_per_training_batch']:.3f} TFLOP and {row['seconds_per_training_batch']:.1f} s "
              f"per training batch, ~{row['cpu_minutes_per_epoch']:.0f} CPU-min per epoch", flush=True)
    atomic_write_json(OUT, {
        "what": f"each Table 3 ranker's forward + backward on {args.rows} training rows x (1 + the config's "
                "negatives) candidates (FLOPs by torch.utils.flop_counter with tandem.flops' in-place and "
                "matrix-vector products: matrix products and attention, not elementwise work; median seconds of "
                f"{args.repeats}); per training batch and per epoch = scaled "
                "linearly by the config's batch size / rows and by the epoch's batches (the ranker's share of an "
                "epoch only: no retriever, sampler or evaluation)",
        "command": f"python benchmarks/ranker_cost.py --rows {args.rows} --repeats {args.repeats} --threads {args.threads}",
        "rankers": results,
        "machine": {"torch_threads": args.threads, "cpus": os.cpu_count(), "platform": platform.platform(),
                    "torch": torch.__version__, "load_average_1min": os.getloadavg()[0]},
    })
    print(f"written to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
