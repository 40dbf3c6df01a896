"""Full-ranking evaluation at 1M items: peak memory of the whole process and time, for up to 100k users.

The synthetic world of benchmarks/scaling.py at --items (1M by default: ~925k items, ~490k users after the 5-core
filter) is built and split (general task); an MF retriever (d = 64, at its initial weights: the cost does not
depend on the values) ranks every item for the first --users validation users (all N items scored in bounded
chunks with an exact running top-K, known items masked, Recall/NDCG/MRR/Hit@10/20/50). The process's peak resident
memory (VmHWM, everything: data, model, evaluation) is read before and after the evaluation, and the evaluation's
own peak is measured by resetting the high-water mark (/proc/self/clear_refs) just before it. One thread.

Usage: .venv/bin/python benchmarks/eval_scale.py [--items 1000000] [--users 100000]
Writes benchmarks/results/eval_scale.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from scaling import PER_ITEM, SEED, eval_subset, peak_rss_gib  # noqa: E402


def reset_peak() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as stream:
            stream.write("5")
        return True
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1024, help="evaluation batch (rows per batch)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "eval_scale.json"))
    args = parser.parse_args()

    import faiss
    import torch

    from tandem.data.dataset import preprocess
    from tandem.data.splits import split_general
    from tandem.data.synthetic_scale import WorldSpec, generate
    from tandem.evaluation.ranking import SCORE_ELEMENTS
    from tandem.models.retrievers.mf import MF
    from tandem.sampling import UniformSampler
    from tandem.losses import sampled_softmax
    from tandem.training.schemes import RetrieverScheme

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    started = time.perf_counter()
    world = generate(WorldSpec(args.items, PER_ITEM * args.items, seed=SEED))
    data = preprocess(world.raw(), None, 5, 1, duplicates="pairs")
    del world
    split = split_general(data)
    torch.manual_seed(SEED)
    scheme = RetrieverScheme(MF(data.num_users, data.num_items, 64), UniformSampler(data.num_items),
                             sampled_softmax, 20)
    subset = eval_subset(split.valid, args.users)
    before = peak_rss_gib()
    reset = reset_peak()
    clock, cpu = time.perf_counter(), time.process_time()
    with torch.no_grad():
        metrics = scheme.evaluate(subset, (10, 20, 50), args.batch, device="cpu")
    seconds, cpu_seconds = time.perf_counter() - clock, time.process_time() - cpu
    result = {
        "command": "python benchmarks/eval_scale.py" + (f" --items {args.items}" if args.items != 1_000_000 else "")
                   + (f" --users {args.users}" if args.users != 100_000 else ""),
        "items": data.num_items, "users_in_data": data.num_users, "interactions": data.num_interactions,
        "rows_evaluated": len(subset), "batch": args.batch, "score_elements_per_chunk": SCORE_ELEMENTS,
        "peak_rss_gib_before_evaluation": before,
        "peak_rss_gib_during_evaluation": peak_rss_gib() if reset else None,
        "peak_rss_gib_process": max(before, peak_rss_gib()),
        "evaluation_wall_s": seconds, "evaluation_cpu_s": cpu_seconds,
        "cpu_s_per_1000_rows": 1000 * cpu_seconds / len(subset),
        "metrics_of_the_untrained_model": {key: float(value) for key, value in metrics.items()},
        "total_wall_s": time.perf_counter() - started, "threads": 1,
    }
    with open(args.out, "w") as stream:
        json.dump(result, stream, indent=2)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
