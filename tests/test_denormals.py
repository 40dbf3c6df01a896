"""Denormal float32 values (below 1.2e-38) are flushed to zero wherever tandem trains or serves: x86 CPUs compute on
them through a slow path, and a run that accumulates them slows down epoch after epoch (benchmarks/denormals.py).
The mode must reach the worker threads of torch's pool too, which only inherit it when they start after it is set."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tandem.config import load_config
from tandem.data.synthetic import markov_interactions
from tandem.run import train_run
from tandem.utils import flush_denormals

TINY = torch.finfo(torch.float32).tiny  # the smallest normal float32, 2^-126
DENORMAL = TINY / 64  # 2^-132: representable only as a denormal


def surviving(values: torch.Tensor) -> int:
    """How many denormals survive a multiplication by one (all of them unless flushed)."""
    return int((values * 1.0).ne(0).sum())


@pytest.fixture
def unflushed():
    """Start from the CPU's default (denormals computed), leave tandem's setting behind."""
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero mode")
    yield
    torch.set_flush_denormal(True)


def test_flush_zeroes_denormals_and_keeps_normal_numbers(unflushed):
    values = torch.tensor([DENORMAL, -DENORMAL, TINY, 2 * TINY, 1.0])
    assert surviving(values[:2]) == 2  # the precondition: denormals exist here
    assert flush_denormals()
    assert surviving(values[:2]) == 0
    assert torch.equal(values[2:] * 1.0, torch.tensor([TINY, 2 * TINY, 1.0]))


PROBE = """
import sys, torch
torch.set_flush_denormal(False)
if sys.argv[1] == "cli":
    from tandem.cli import main
    assert main(["train", "no-such-config.yaml"]) == 2  # fails on its input, after the flush
torch.set_num_threads(2)
values = torch.full((1 << 22,), {denormal!r})
print(int((values * 1.0).ne(0).sum()))
"""


@pytest.mark.parametrize("entry,expected", [("cli", 0), ("none", 1 << 22)])
def test_cli_flushes_in_every_thread_of_the_pool(entry, expected):
    """The command line sets the mode before torch's pool starts, so both threads of a parallel product flush;
    without it every denormal survives (the control run: the test can fail)."""
    probe = subprocess.run([sys.executable, "-c", PROBE.format(denormal=DENORMAL), entry],
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    assert int(probe.stdout.split()[-1]) == expected


def test_train_run_flushes(unflushed, tmp_path: Path):
    data = markov_interactions(30, 40, per_user=10, seed=1).interactions
    data.to_csv(tmp_path / "data.csv", index=False)
    config = tmp_path / "config.yaml"
    config.write_text(f"""task: general
data: {{format: table, path: {tmp_path / 'data.csv'}, columns: {{user: user, item: item, timestamp: timestamp}},
       min_user_interactions: 3, min_item_interactions: 1}}
retriever: {{name: mf, embedding_dim: 8}}
train: {{epochs: 1, batch_size: 64, num_negatives: 3, progress: false}}
eval: {{cutoffs: [5], monitor: ndcg@5}}
""")
    assert surviving(torch.tensor([DENORMAL])) == 1
    train_run(load_config(config), tmp_path / "run")
    assert surviving(torch.tensor([DENORMAL])) == 0


class SurvivorCounter:
    """A recommender stand-in whose answer is how many denormals survive arithmetic in the thread that runs it."""

    num_items = 1

    def info(self):
        return {"items": 1}

    def parse(self, users=None, histories=None, k=10, exclude_known=True):
        query = type("Query", (), {})()
        query.users, query.k, query.rows, query.key = users, k, len(users), ("users", k)
        return query

    def run(self, queries):
        count = surviving(torch.full((8,), DENORMAL))
        return [[[{"item": str(count), "score": 1.0, "retriever_score": 1.0}] for _ in query.users]
                for query in queries]


def test_the_service_answers_from_threads_that_flush(unflushed):
    """The mode is per thread: the service's inference threads set it themselves, whatever the caller did."""
    from fastapi.testclient import TestClient

    from tandem.serving.http import ServeSettings, create_app

    assert surviving(torch.tensor([DENORMAL])) == 1  # this thread computes denormals
    with TestClient(create_app(SurvivorCounter(), ServeSettings(threads=None, workers=1))) as client:
        answer = client.post("/recommend", json={"user": "u"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["recommendations"] == [{"item": "0", "score": 1.0, "retriever_score": 1.0}]
