"""Exact resume (issue 12): a run killed at any point and resumed with `tandem train --out DIR --resume` ends with
the uninterrupted run's metrics.jsonl (timing left out), report, best weights and final state, bit for bit on CPU.

One test kills a real `python -m tandem.cli train` process with SIGKILL; the others stop a run in this process at
chosen points (right after a checkpoint, after an epoch's line but before its checkpoint, between a mid-epoch
checkpoint and the epoch's end) for schemes whose samplers keep state (MIDX index, AdaSIR pools, a ranker's own
generator, cooperative buffers). A non-finite loss stops the run with one line and leaves the last good
checkpoint, from which the run then resumes to the same end.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from tandem.cli import main
from tandem.data.synthetic import markov_interactions
from tandem.training.trainer import Trainer

from test_cli import tiny_yaml

# what every run here uses: a checkpoint every 3 steps (about two per epoch), the final state kept, one thread
SETS = ["--set", "train.epochs=4", "--set", "train.checkpoint_every=3", "--set", "train.keep_checkpoint=true",
        "--set", "train.threads=1"]
TIMING = {"seconds", "seconds_per_epoch", "epoch_seconds", "elapsed"}

def sequential_yaml(csv):
    return tiny_yaml(csv, epochs=4, train_extra=", patience: 10")

GENERAL_MF = "task: general\nretriever: {name: mf, embedding_dim: 8}\n"
# scheme name -> what it adds to sequential_yaml, and where the in-process run is stopped
SCHEMES: dict[str, tuple[str, str, int]] = {
    "sasrec-uniform": ("", "_log", 2),  # epoch 2's line written, its checkpoint not: no duplicated epoch
    "mf-midx-refresh-3-steps": (GENERAL_MF + "sampler: {name: midx, num_clusters: 4, refresh: 3}\n", "evaluate", 2),
    "mf-adasir-pools": (GENERAL_MF + "sampler: {name: adasir, pool_size: 10, candidate_size: 10}\n"
                        "loss: {name: adasir}\n", "_save_checkpoint", 3),
    "corr-din-midx-gate-fusion": ("ranker: {name: din, embedding_dim: 8}\n"
                                  "sampler: {name: midx, num_clusters: 4}\n"
                                  "scheme: {name: corr, distill_warmup: 2, distill_gate: true, fusion: true}\n",
                                  "evaluate", 3),
    "independent-din-own-generator": ("ranker: {name: din, embedding_dim: 8}\nscheme: {name: independent}\n",
                                      "_save_checkpoint", 4),
    # eval.select stages: stopped before the last validation, the one of the combined pair after the final epoch
    "corr-din-stages": ("ranker: {name: din, embedding_dim: 8}\nscheme: {name: corr}\neval: {select: stages}\n",
                        "evaluate", 5),
}


class Killed(BaseException):
    """Stands for a kill in this process: not an Exception, so nothing on the way handles it."""


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory) -> Path:
    frame = markov_interactions(40, 60, per_user=12, seed=3).interactions
    path = tmp_path_factory.mktemp("data") / "tiny.csv"
    frame.rename(columns={"user": "uid", "item": "iid", "timestamp": "ts"}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_csv) -> Callable[[str], tuple[Path, Path]]:
    """(config, uninterrupted run directory) of a scheme, trained once per module."""
    runs: dict[str, tuple[Path, Path]] = {}

    def get(name: str) -> tuple[Path, Path]:
        if name not in runs:
            root = tmp_path_factory.mktemp(name)
            (root / "base.yaml").write_text(sequential_yaml(data_csv))
            config = root / "config.yaml"
            config.write_text("extends: base.yaml\n" + SCHEMES[name][0])
            with one_thread():
                assert main(["train", str(config), "--out", str(root / "full"), *SETS]) == 0
            runs[name] = (config, root / "full")
        return runs[name]

    return get


class one_thread:
    """Run with torch on one thread (as the config asks) and give the test session its thread count back."""

    def __enter__(self) -> None:
        self.threads = torch.get_num_threads()

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.threads)


# ------------------------------------------------------------------------------------------------- comparison
def metrics(run: Path) -> list[dict[str, Any]]:
    return [without_timing(json.loads(line)) for line in (run / "metrics.jsonl").read_text().splitlines()]


def without_timing(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: without_timing(item) for key, item in value.items() if key not in TIMING}
    if isinstance(value, (list, tuple)):
        return [without_timing(item) for item in value]
    return value


def assert_identical(a: Any, b: Any, where: str = "") -> None:
    """Equal bit for bit: tensors in value, dtype and shape (NaN equal to NaN), containers recursively."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b) or bool(((a == b) | (a.isnan() & b.isnan())).all()), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (where, set(a) ^ set(b))
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{index}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, (where, a, b)


def assert_same_run(full: Path, resumed: Path) -> None:
    """metrics.jsonl (no epoch twice), report, best.pt and the final checkpoint equal those of `full`."""
    lines = metrics(resumed)
    epochs = [line["epoch"] for line in lines if "selected" not in line]  # stages: one last 'selected' line
    assert epochs == list(range(1, len(epochs) + 1)), "an epoch logged twice or missing"
    assert len(lines) - len(epochs) == ("selected" in lines[-1]), "a 'selected' line twice or not last"
    assert lines == metrics(full)
    assert without_timing(json.loads((resumed / "report.json").read_text())) == \
        without_timing(json.loads((full / "report.json").read_text()))
    for name in ("best.pt", "checkpoint.pt"):
        expected = torch.load(full / name, weights_only=True)
        got = torch.load(resumed / name, weights_only=True)
        assert_identical(without_timing(expected), without_timing(got), name)


def stop_at(monkeypatch: pytest.MonkeyPatch, method: str, call: int) -> None:
    """Raise Killed at the `call`-th call of Trainer.<method>: after it for writes (the file is on disk, what
    follows is not), before it for evaluate (the steps since the last checkpoint are lost)."""
    original = getattr(Trainer, method)
    calls = {"n": 0}

    def wrapper(self: Trainer, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if method == "evaluate" and calls["n"] == call:
            raise Killed
        result = original(self, *args, **kwargs)
        if calls["n"] == call:
            raise Killed
        return result

    monkeypatch.setattr(Trainer, method, wrapper)


# ------------------------------------------------------------------------------------------------------ tests
def test_kill_9_of_a_real_process_then_resume_reproduces_the_uninterrupted_run(tmp_path, reference):
    config, full = reference("sasrec-uniform")
    part = tmp_path / "part"
    command = [sys.executable, "-m", "tandem.cli", "train", str(config), "--out", str(part), *SETS]
    process = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not ((part / "checkpoint.pt").exists() and (part / "metrics.jsonl").exists()
               and (part / "metrics.jsonl").read_text().count("\n") >= 1):
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.001)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert not (part / "report.json").exists(), "the run finished before the kill: nothing was tested"
    assert main(["evaluate", str(part)]) == 2  # unfinished: refused, never mistaken for a finished run
    with one_thread():
        assert main(["train", "--out", str(part), "--resume"]) == 0
    assert_same_run(full, part)


@pytest.mark.parametrize("name", list(SCHEMES))
def test_resume_after_a_stop_at_any_point_is_bit_identical(name, tmp_path, reference, monkeypatch):
    config, full = reference(name)
    _, method, call = SCHEMES[name]
    part = tmp_path / "part"
    stop_at(monkeypatch, method, call)
    with one_thread(), pytest.raises(Killed):
        main(["train", str(config), "--out", str(part), *SETS])
    monkeypatch.undo()
    assert (part / "checkpoint.pt").is_file() and not (part / "report.json").exists()
    with one_thread():
        assert main(["train", str(config), "--out", str(part), *SETS, "--resume"]) == 0
    assert_same_run(full, part)


def test_non_finite_loss_stops_with_one_line_and_the_last_good_checkpoint_resumes(tmp_path, reference, monkeypatch,
                                                                                capsys):
    from tandem.training.schemes import RetrieverScheme
    from tandem.utils import load_checkpoint

    config, full = reference("sasrec-uniform")
    part = tmp_path / "part"
    original = RetrieverScheme.losses
    calls = {"n": 0}

    def poisoned(self: RetrieverScheme, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        calls["n"] += 1
        losses = original(self, batch)
        return {name: value * math.nan for name, value in losses.items()} if calls["n"] == 8 else losses

    monkeypatch.setattr(RetrieverScheme, "losses", poisoned)
    capsys.readouterr()
    with one_thread():
        assert main(["train", str(config), "--out", str(part), *SETS]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "non-finite loss (retriever=nan) at epoch 2, step 8" in err and "last good state (step 6)" in err
    checkpoint = load_checkpoint(part / "checkpoint.pt")
    assert checkpoint["progress"]["step"] == 6
    assert all(torch.isfinite(value).all() for value in checkpoint["model"].values() if value.is_floating_point())
    monkeypatch.undo()
    with one_thread():
        assert main(["train", "--out", str(part), "--resume"]) == 0
    assert_same_run(full, part)


@pytest.mark.parametrize("name", ["uniform", "popularity", "exact", "midx", "midx-pop", "adasir", "dns", "toprand",
                                  "top&rand"])
def test_every_sampler_state_round_trips_through_a_weights_only_checkpoint(name, tmp_path):
    """A sampler rebuilt from its config and loaded with `state_dict` (saved, read back with weights_only=True)
    draws exactly what the original draws next: index, pools, vectors and generators are all in the state."""
    from tandem.sampling import build_sampler

    items, dim = 30, 4
    options: dict[str, Any] = {"seed": 5}
    if name in ("popularity", "midx-pop"):
        options["item_counts"] = torch.arange(items + 1).numpy()
    if name in ("midx", "midx-pop"):
        options["num_clusters"] = 3
    if name == "adasir":
        options.update(num_contexts=6, pool_size=5, candidate_size=5)
    generator = torch.Generator().manual_seed(0)
    vectors = torch.randn(items + 1, dim, generator=generator)
    query = torch.randn(8, dim, generator=generator)
    context = torch.arange(8) % 6
    original = build_sampler(name, num_items=items, **options)
    if name == "adasir":
        original.refresh_pools(context, query, vectors)
    else:
        original.refresh(vectors)
    original.sample(query, 4, context=context)  # generators moved on from their seed
    torch.save(original.state_dict(), tmp_path / "sampler.pt")
    restored = build_sampler(name, num_items=items, **options)
    restored.load_state_dict(torch.load(tmp_path / "sampler.pt", weights_only=True))
    for _ in range(2):
        assert_identical(original.sample(query, 4, context=context), restored.sample(query, 4, context=context))
        drawn = torch.randint(1, items + 1, (8, 3), generator=generator)
        assert_identical(original.log_prob(query, drawn, context=context),
                         restored.log_prob(query, drawn, context=context))
