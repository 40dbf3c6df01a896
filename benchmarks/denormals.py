"""What denormal numbers cost a training run on this CPU, and what flushing them (tandem.utils.flush_denormals) saves.

Takes a run directory and a checkpoint of that run written before tandem flushed denormals (default: ICC on ML-100K
general, seed 2025, after epoch 44, whose epochs had slowed from 11 s to 49 s). Counts the float32 values below
1.2e-38 in the checkpoint's weights and optimiser state, then times, from that exact state each time, `--steps`
training steps (forward, backward, Adam) and one validation pass, with denormals computed as they are and flushed,
in alternation (`--repeats` of each; medians). Writes benchmarks/results/denormals.json.

    python benchmarks/denormals.py --threads 1
"""
from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from tandem.data.splits import iterate_batches
from tandem.run import load_run
from tandem.training.trainer import Trainer, TrainerSettings
from tandem.utils import load_checkpoint

HERE = Path(__file__).resolve().parent
DEFAULT_RUN = HERE / "results/seed000-table2-ml100k/runs/icc-s2025"
DEFAULT_CHECKPOINT = HERE / "results/denormals/icc-s2025-epoch44-unflushed.pt"


def denormal_counts(tree: Any) -> dict[str, int]:
    """Denormal and total float32 values over every tensor in a checkpoint's `model` and `optimizer` parts."""
    tiny = torch.finfo(torch.float32).tiny
    counts = {"model": [0, 0], "optimizer": [0, 0]}

    def walk(node: Any, part: str) -> None:
        if isinstance(node, torch.Tensor):
            if node.dtype == torch.float32:
                magnitude = node.abs()
                counts[part][0] += int(((magnitude > 0) & (magnitude < tiny)).sum())
                counts[part][1] += node.numel()
        elif isinstance(node, dict):
            for value in node.values():
                walk(value, part)
        elif isinstance(node, (list, tuple)):
            for value in node:
                walk(value, part)

    for part in counts:
        walk(tree[part], part)
    return {f"{part}_{what}": value for part, (denormal, total) in counts.items()
            for what, value in (("denormal", denormal), ("values", total))}


def timed(trainer: Trainer, payload: dict[str, Any], batches: list[dict[str, torch.Tensor]], flush: bool
          ) -> tuple[float, float]:
    """Seconds for the training steps and for one validation pass, both from the checkpoint's state."""
    torch.set_flush_denormal(flush)
    trainer._restore(payload)  # the same starting state every time: flushing zeroes denormals as it goes
    epoch = trainer.progress.epoch + 1
    started = time.perf_counter()
    for batch in batches:
        trainer._step(batch, epoch)
    steps = time.perf_counter() - started
    started = time.perf_counter()
    with torch.no_grad():
        trainer.evaluate("valid")
    return steps, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=DEFAULT_RUN, help="the run directory the checkpoint belongs to")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--steps", type=int, default=20, help="training steps timed per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "results/denormals.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    config, prepared, scheme = load_run(args.run, allow_incomplete=True)
    payload = load_checkpoint(args.checkpoint)
    torch.set_flush_denormal(False)  # counted as stored: with flushing on, abs() of a denormal reads 0
    counts = denormal_counts(payload)
    trainer = Trainer(TrainerSettings.of(config), scheme, prepared.split, out_dir=None, resume=None)
    generator = torch.Generator().manual_seed(config.seed)
    batches = list(itertools.islice(iterate_batches(prepared.split.train.tensors, config.train.batch_size,
                                                    shuffle=True, generator=generator), args.steps))
    times: dict[bool, dict[str, list[float]]] = {flag: {"steps": [], "validation": []} for flag in (False, True)}
    for _ in range(args.repeats):
        for flush in (False, True):
            steps, validation = timed(trainer, payload, batches, flush)
            times[flush]["steps"].append(steps)
            times[flush]["validation"].append(validation)
    torch.set_flush_denormal(True)
    median = {flush: {what: statistics.median(values) for what, values in parts.items()}
              for flush, parts in times.items()}
    result = {
        "what": __doc__.split("\n\n")[1].replace("\n", " "),
        "command": "python benchmarks/denormals.py " + f"--steps {args.steps} --repeats {args.repeats} "
                   f"--threads {args.threads}",
        "run": str(args.run.relative_to(HERE.parent)) if args.run.is_relative_to(HERE.parent) else str(args.run),
        "checkpoint_epoch": payload["progress"]["epoch"],
        "denormals_in_checkpoint": counts,
        "batch_size": config.train.batch_size,
        "steps": args.steps,
        "repeats": args.repeats,
        "seconds": {"denormals": times[False], "flushed": times[True]},
        "median_seconds": {"denormals": median[False], "flushed": median[True]},
        "denormals_over_flushed": {what: median[False][what] / median[True][what] for what in ("steps", "validation")},
        "machine": {"torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                    "torch": torch.__version__},
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({key: result[key] for key in ("denormals_in_checkpoint", "median_seconds",
                                                   "denormals_over_flushed")}, indent=1))


if __name__ == "__main__":
    main()
