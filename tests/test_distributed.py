"""Two processes under torch.distributed (gloo): replicas stay identical, only rank 0 writes, training learns."""
import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tandem.data.synthetic import low_rank_interactions


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def general_config(tmp_path, users: int, items: int, per_user: int, seed: int, body: str):
    """A general-task config over low-rank synthetic data written to `tmp_path`: the data section, then `body`."""
    frame = low_rank_interactions(users, items, per_user=per_user, rank=4, sharpness=5.0, seed=seed).interactions
    csv = tmp_path / "data.csv"
    frame.to_csv(csv, index=False)
    config = tmp_path / "c.yaml"
    config.write_text(
        f"""task: general
data: {{format: table, path: {csv}, columns: {{user: user, item: item, timestamp: timestamp}},
        min_user_interactions: 1, min_item_interactions: 1}}
{body}""")
    return config


def worker(rank: int, world_size: int, port: int, config_path: str, out: str, result_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank))
    torch.set_num_threads(1)
    from tandem.config import load_config
    from tandem.run import train_run

    report = train_run(load_config(config_path), out)
    # every process evaluates its own replica: equal metrics mean equal parameters
    with open(os.path.join(result_dir, f"rank{rank}.json"), "w") as stream:
        json.dump({"test": report["test"], "epochs_run": report["epochs_run"]}, stream)
    dist.barrier()
    dist.destroy_process_group()


def test_two_process_training(tmp_path):
    config = general_config(tmp_path, 200, 150, 25, 0, """\
retriever: {name: mf, embedding_dim: 16}
train: {epochs: 8, lr: 0.01, batch_size: 128, num_negatives: 20, patience: 8, progress: false}
eval: {cutoffs: [10]}
""")
    out, results = tmp_path / "run", tmp_path / "results"
    results.mkdir()
    mp.spawn(worker, args=(2, free_port(), str(config), str(out), str(results)), nprocs=2, join=True)
    rank0 = json.loads((results / "rank0.json").read_text())
    rank1 = json.loads((results / "rank1.json").read_text())
    # replicas are identical: both processes computed the same test metrics from their own parameters
    assert rank0["test"] == rank1["test"]
    assert (out / "report.json").is_file()
    assert rank0["test"]["ndcg@10"] > 0.15  # learns (a random MF scores about 0.05 here)


def midx_worker(rank: int, world_size: int, port: int, config_path: str, result_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank))
    torch.set_num_threads(1)
    from tandem.config import load_config
    from tandem.data.splits import EvalSet
    from tandem.evaluation import evaluate_batches
    from tandem.run import build_scheme, prepare
    from tandem.training.distributed import build_on_main, init_from_environment
    from tandem.training.trainer import Trainer, TrainerSettings
    from tandem.utils import seed_everything

    config = load_config(config_path)
    init_from_environment()
    seed_everything(config.seed)
    prepared = prepare(config)
    scheme = build_scheme(config, prepared)
    result = Trainer(TrainerSettings.of(config), scheme, prepared.split).fit()
    ranked = []  # rows this process ranks in a sharded evaluation (batches of 16)

    def count_rows(batch, targets, known):
        ranked.append(int(targets.shape[0]))
        return {"one": torch.ones(targets.shape[0], dtype=torch.float64)}

    mean_one = evaluate_batches(prepared.split.test, count_rows, 16)["one"]
    torch.save({
        "centroids": scheme.sampler.centroids, "cell_items": scheme.sampler.cell_items, "test": result.test,
        "state": scheme.state_dict(), "built_by": build_on_main(lambda: rank), "ranked": sum(ranked),
        "mean_one": mean_one, "rows": len(prepared.split.test),
    }, os.path.join(result_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


def test_two_process_midx_index_and_sharded_evaluation(tmp_path):
    """Under 2 processes: MIDX's index is built on rank 0 and is the same on both ranks after training, the
    evaluation splits the rows between the ranks and its merged metrics equal one process's evaluation of the
    same trained model."""
    config = general_config(tmp_path, 120, 100, 20, 1, """\
retriever: {name: mf, embedding_dim: 16}
sampler: {name: midx, num_clusters: 6, refresh: epoch}
train: {epochs: 3, lr: 0.01, batch_size: 64, num_negatives: 10, patience: 3, progress: false, eval_batch_size: 32}
eval: {cutoffs: [10]}
""")
    results = tmp_path / "results"
    results.mkdir()
    mp.spawn(midx_worker, args=(2, free_port(), str(config), str(results)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(results / f"rank{rank}.pt", weights_only=False) for rank in (0, 1))
    for key in ("centroids", "cell_items"):
        left, right = rank0[key], rank1[key]
        left, right = (left, right) if isinstance(left, tuple) else ((left,), (right,))
        assert all(torch.equal(a, b) for a, b in zip(left, right)), key
    assert rank0["built_by"] == rank1["built_by"] == 0  # rank 0's build reached rank 1
    assert rank0["test"] == rank1["test"]
    # each rank ranked about half of the rows (every other batch of 16), together all of them, none twice
    assert rank0["ranked"] + rank1["ranked"] == rank0["rows"] and min(rank0["ranked"], rank1["ranked"]) > 0
    assert rank0["mean_one"] == rank1["mean_one"] == 1.0
    # one process evaluating the same trained model gets the metrics the two ranks computed together
    from tandem.config import load_config
    from tandem.run import build_scheme, prepare

    loaded = load_config(str(config))
    prepared = prepare(loaded)
    scheme = build_scheme(loaded, prepared)
    scheme.load_state_dict(rank0["state"])
    alone = scheme.evaluate(prepared.split.test, (10,), 32)
    assert alone.keys() == rank0["test"].keys()
    for name, value in alone.items():
        assert abs(value - rank0["test"][name]) < 1e-9, name


def test_shard_gives_each_rank_its_own_batches():
    from tandem.training.distributed import Topology, shard, shard_starts

    batches = list(range(7))
    parts = [list(shard(iter(batches), Topology(rank, 2))) for rank in (0, 1)]
    assert parts == [[0, 2, 4], [1, 3, 5]]  # disjoint, equal length (the odd one out dropped)
    assert list(shard_starts(100, 16, Topology(1, 3))) == [16, 64]


def test_each_rank_draws_its_own_negatives(monkeypatch):
    """Under torchrun a sampler seeded with the run's seed on every rank would give every rank the same negatives;
    rank r is seeded with seed + r (rank 0: the single-process run, unchanged)."""
    import numpy as np

    from tandem.config import Config
    from tandem.data.dataset import preprocess
    from tandem.data.splits import split_general
    from tandem.training import registry
    from tandem.training.distributed import Topology

    data = preprocess(low_rank_interactions(num_users=30, num_items=40, per_user=6, seed=0),
                      min_user_interactions=1, min_item_interactions=1)
    split = split_general(data)
    query = torch.zeros(64, 4)

    def draws(rank: int) -> np.ndarray:
        monkeypatch.setattr(registry, "current_topology", lambda: Topology(rank, 2))
        sampler = registry.make_sampler({"name": "uniform"}, data, split, Config().seed)
        return sampler.sample(query, 8)[0].numpy()

    single = registry.make_sampler({"name": "uniform", "seed": Config().seed}, data, split, 0)
    assert np.array_equal(draws(0), single.sample(query, 8)[0].numpy())
    assert not np.array_equal(draws(0), draws(1))


class Stopped(BaseException):
    """Stands for a kill of both processes right after a checkpoint."""


def resume_worker(rank: int, world_size: int, port: int, config_path: str, full: str, resumed: str) -> None:
    """In one process group: the uninterrupted run into `full`; into `resumed` a run stopped on both ranks right
    after their second checkpoint, then its resume."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank))
    torch.set_num_threads(1)
    from tandem.config import load_config
    from tandem.run import train_run
    from tandem.training.trainer import Trainer

    config = load_config(config_path)
    train_run(config, full)
    original, calls = Trainer._save_checkpoint, {"n": 0}

    def save_then_stop(self, *args, **kwargs):
        original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            raise Stopped

    Trainer._save_checkpoint = save_then_stop
    try:
        train_run(config, resumed)
    except Stopped:
        pass
    Trainer._save_checkpoint = original
    dist.barrier()
    if rank == 0:
        with open(resumed + ".stopped", "w") as stream:  # what the parent checks below (beside the run)
            stream.write(str(os.path.exists(os.path.join(resumed, "report.json"))))
    train_run(config, resumed, resume=True)
    dist.barrier()
    dist.destroy_process_group()


RESUMED_SCHEMES = {
    "mf-uniform": "retriever: {name: mf, embedding_dim: 8}\n",
    # per-rank state beyond the sampler's stream: MIDX's index rebuilt every 3 steps, dropout's generator
    "corr-midx-dropout": """\
retriever: {name: mf, embedding_dim: 8}
ranker: {name: deepfm, embedding_dim: 8, mlp_hidden: [16], dropout: 0.3}
sampler: {name: midx, num_clusters: 4, refresh: 3}
scheme: {name: corr}
""",
}


@pytest.mark.parametrize("scheme", list(RESUMED_SCHEMES))
def test_two_process_run_stopped_mid_epoch_resumes_bit_for_bit(scheme, tmp_path, capsys):
    """A torchrun-style run of 2 processes stopped right after a mid-epoch checkpoint and resumed by 2 processes
    ends with the uninterrupted run's metrics and weights: each rank gets back its own sampler stream (seed + rank),
    index and generators, not rank 0's. A single-process resume of a 2-process checkpoint is refused with one
    line."""
    from tandem.cli import main
    from test_resume import assert_same_run

    config = general_config(tmp_path, 100, 80, 20, 2, RESUMED_SCHEMES[scheme] + """\
train: {epochs: 2, lr: 0.01, batch_size: 128, num_negatives: 10, patience: 2, progress: false,
         checkpoint_every: 3, keep_checkpoint: true, threads: 1}
eval: {cutoffs: [10], retrieval_cutoff: 20}
""")
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    mp.spawn(resume_worker, args=(2, free_port(), str(config), str(full), str(resumed)), nprocs=2, join=True)
    assert (tmp_path / "resumed.stopped").read_text() == "False"  # stopped at step 6 of epoch 1's 7 per process
    assert_same_run(full, resumed)
    (resumed / "report.json").unlink()  # unfinished again: a one-process resume of its 2-process checkpoint
    assert main(["train", "--out", str(resumed), "--resume"]) == 2
    assert "written by 2 process(es)" in capsys.readouterr().err


def dense_and_sparse_worker(rank: int, world_size: int, port: int, runs: list[tuple[str, str]]) -> None:
    """Train each (config, out) in turn in one process group (one spawn for both modes)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank))
    torch.set_num_threads(1)
    from tandem.config import load_config
    from tandem.run import train_run

    for config_path, out in runs:
        train_run(load_config(config_path), out)
        dist.barrier()
    dist.destroy_process_group()


def test_two_process_sparse_embeddings_average_gradients_like_dense(tmp_path):
    """Under torchrun the sparse gradients are all-reduced over the ranks as the dense ones are. After one step (two
    ranks, one batch each) Adam moves an entry by lr * g / (|g| + eps) and lazy Adam by
    lr * s g / (s |g| + eps), s = sqrt(1 - beta2), touched rows only: nearly the same wherever |g| >> eps / s, so
    the sparse run's tables stay within a small fraction of a step of the dense run's. Without the all-reduce,
    each rank would move only the rows of its own batch and rows would differ by a whole step (lr)."""
    runs = []
    for mode in ("dense", "sparse"):
        folder = tmp_path / mode
        folder.mkdir()
        # 30 users x 6 interactions -> ~144 training rows -> batches of 64, 64 (+ a tail that is cut): one step
        # per rank; init_std 1 makes the gradients large against Adam's eps
        config = general_config(folder, 30, 40, 6, 0, f"""\
retriever: {{name: mf, embedding_dim: 8, init_std: 1.0}}
train: {{epochs: 1, lr: 0.05, batch_size: 64, num_negatives: 5, patience: 1, progress: false,
        sparse_embeddings: {str(mode == "sparse").lower()}}}
eval: {{cutoffs: [10]}}
""")
        runs.append((str(config), str(folder / "run")))
    mp.spawn(dense_and_sparse_worker, args=(2, free_port(), runs), nprocs=2, join=True)
    dense, sparse = (torch.load(f"{out}/best.pt", weights_only=True)["state"] for _, out in runs)
    tables = [key for key in dense if key.endswith("embedding.weight")]
    assert tables and set(dense) == set(sparse)
    for key in tables:
        # measured: 1.3e-4 at most (eps), where a missing all-reduce leaves whole rows a step (0.05) apart
        assert (dense[key] - sparse[key]).abs().max() <= 0.005, key

