"""benchmarks/interim_compare.py on an unfinished run that keeps each model at its own best epoch (eval.select:
stages) must test the pair the run will end with — the best retriever so far under the best ranker so far — not
the pipeline-best state alone, which holds the retriever of the ranker's epoch."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import torch

from tandem.config import load_config
from tandem.run import load_run, train_run
from tandem.utils import atomic_torch_save, load_checkpoint

from test_run_directory import write_atomic

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "interim_compare.py"


def interim_module():
    spec = importlib.util.spec_from_file_location("interim_compare", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_unfinished_stages_run_is_tested_as_the_pair_it_will_keep(tmp_path: Path):
    config_path = write_atomic(tmp_path)
    text = config_path.read_text().replace("monitor: ndcg@10}", "monitor: ndcg@10, select: stages}")
    text = text.replace("epochs: 1,", "epochs: 8, lr: 0.01, patience: 8, keep_checkpoint: true,")
    config_path.write_text(text)
    run = tmp_path / "run"
    torch.manual_seed(0)
    report = train_run(load_config(config_path), run)
    assert report["retriever_epoch"] != report["best_epoch"], "the check needs the two models kept at other epochs"
    interim = interim_module()
    final = interim.test_rows(run)  # finished: best.pt holds the pair the trainer combined and tested

    # the directory as it stood before the trainer's last step: no report, best.pt the pipeline-best state
    (run / "report.json").unlink()
    payload = load_checkpoint(run / "checkpoint.pt")
    atomic_torch_save(run / "best.pt", {"state": payload["best_state"], "epoch": report["best_epoch"]})
    unfinished = interim.test_rows(run)
    assert set(unfinished) == set(final)
    for stage in final:
        for metric, values in final[stage].items():
            np.testing.assert_allclose(unfinished[stage][metric], values, atol=1e-12, err_msg=f"{stage} {metric}")
    record = interim.progress(run)
    assert (record["retriever_best_epoch_so_far"], record["best_epoch_so_far"]) == (report["retriever_epoch"],
                                                                                    report["best_epoch"])

    # what the script measured before: the pipeline-best state alone, a different retriever
    _, prepared, scheme = load_run(run, allow_incomplete=True)
    scheme.load_state_dict(payload["best_state"])
    functions = interim.stage_functions(scheme, (5, 10), 20)
    with torch.no_grad():
        alone = interim.per_row_metrics(prepared.split.test, functions["retriever"], 1024)
    assert not np.allclose(alone["ndcg@10"], final["retriever"]["ndcg@10"])
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["selected"]["retriever_epoch"] == \
        report["retriever_epoch"]
