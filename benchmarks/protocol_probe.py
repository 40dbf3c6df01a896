"""Is the gap to the published figures a protocol difference? Re-evaluate finished Table-2 runs on the test rows
under both evaluation protocols, without retraining:

- masked (tandem's default, `eval.exclude_known: true`): the row's history is left out of the ranking;
- unmasked (RecBole's sequential protocol, which the CoRR authors' code builds on): every item competes, so a
  retriever that puts already-seen items on top is penalised and a history-aware ranker can push them down.

For each run: NDCG@10 of the retriever and of the pipeline (retriever top-100 re-ordered by the ranker), and the
share of the retriever's unmasked top-10 that are history items.

Usage: python benchmarks/protocol_probe.py [RESULTS_DIR]
(default benchmarks/results/seed000-table2-ml100k-seq). Writes RESULTS_DIR/../protocol_probe.json.
"""
from __future__ import annotations

import json
import os
import sys

import torch

from tandem.data.splits import iterate_batches, without_known
from tandem.evaluation.ranking import padded_rows
from tandem.run import load_run

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT = os.path.join(HERE, "results", "seed000-table2-ml100k-seq")


@torch.no_grad()
def history_share(scheme, eval_set, k: int = 10) -> float:
    """Mean fraction of the retriever's unmasked top-k that the row already knows (its history)."""
    shares = []
    for start in range(0, len(eval_set), 1024):
        window = slice(start, min(start + 1024, len(eval_set)))
        batch = {key: value[window] for key, value in eval_set.tensors.items()}
        scores = scheme.retriever.score_all(batch)
        scores[:, 0] = -float("inf")
        top = scores.topk(k, dim=1).indices
        known = torch.as_tensor(padded_rows(eval_set.known_indptr, eval_set.known_items, window))
        shares.append((top.unsqueeze(2) == known.unsqueeze(1)).any(2).float().mean(1))
    return float(torch.cat(shares).mean())


def probe_run(run_dir: str) -> dict[str, float]:
    config, prepared, scheme = load_run(run_dir)
    test = prepared.split.test
    out: dict[str, float] = {}
    for protocol, eval_set in (("masked", test), ("unmasked", without_known(test))):
        result = scheme.evaluate(eval_set, (10,), 1024, retrieval_cutoff=config.eval.retrieval_cutoff)
        metrics = result if "retriever" not in result else result
        if "retriever" in metrics:
            out[f"{protocol}.retriever.ndcg@10"] = float(metrics["retriever"]["ndcg@10"])
            out[f"{protocol}.pipeline.ndcg@10"] = float(metrics["pipeline"]["ndcg@10"])
        else:
            out[f"{protocol}.retriever.ndcg@10"] = float(metrics["ndcg@10"])
    out["retriever_top10_history_share"] = history_share(scheme, test)
    return out


def main() -> None:
    torch.set_num_threads(1)
    results_dir = sys.argv[1] if len(sys.argv) > 1 else DEFAULT
    runs = os.path.join(results_dir, "runs")
    table = {}
    for name in sorted(os.listdir(runs)):
        if os.path.isfile(os.path.join(runs, name, "report.json")):
            table[name] = probe_run(os.path.join(runs, name))
            print(name, json.dumps(table[name]))
    path = os.path.join(results_dir, "protocol_probe.json")
    with open(path, "w") as stream:
        json.dump(table, stream, indent=2)


if __name__ == "__main__":
    main()
