"""The scale generator: power-law popularity, drift, the planted successor signal, seeds, files, fast k-core."""
import subprocess
import sys

import numpy as np
import pytest

from tandem.data.dataset import k_core_mask, preprocess
from tandem.data.readers import read_dataset
from tandem.data.synthetic_scale import WorldSpec, generate, write_atomic, write_parquet


def fitted_exponent(items: np.ndarray, num_items: int) -> float:
    """Minus the least-squares slope of log(count) against log(rank), ranks 10 .. N/10 (head and tail left out)."""
    counts = np.sort(np.bincount(items, minlength=num_items + 1)[1:])[::-1].astype(float)
    ranks = np.arange(1, num_items + 1, dtype=float)
    chosen = (ranks >= 10) & (ranks <= num_items / 10)
    x, y = np.log(ranks[chosen]), np.log(np.maximum(counts[chosen], 1.0))
    return -float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())


@pytest.mark.parametrize("alpha", [0.6, 1.0])
def test_popularity_follows_the_power_law(alpha):
    world = generate(WorldSpec(5000, 200_000, popularity_exponent=alpha, seed=1))
    assert abs(fitted_exponent(world.items, 5000) - alpha) < 0.15


def test_same_seed_same_world_other_seed_other_world():
    spec = WorldSpec(500, 10_000, seed=7)
    a, b = generate(spec), generate(spec)
    for field in ("indptr", "items", "timestamps", "item_cluster", "successor", "user_segment"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    c = generate(WorldSpec(500, 10_000, seed=8))
    assert not np.array_equal(a.items[:1000], c.items[:1000])


def test_sequences_are_time_ordered_and_sized():
    world = generate(WorldSpec(1000, 40_000, mean_length=20, min_length=5, seed=2))
    lengths = np.diff(world.indptr)
    assert lengths.min() >= 5
    assert abs(lengths.mean() - 20) < 1.5  # log-normal tail with mean 15 above the minimum of 5
    users = world.users()
    same_user = users[1:] == users[:-1]
    assert (np.diff(world.timestamps)[same_user] >= 0).all()
    assert world.items.min() >= 1 and world.items.max() <= 1000


def test_taste_drift_rate():
    """Between two consecutive fresh draws (no successor step) the cluster changes exactly when the walk moved,
    which happens with probability `drift` (a +-1 move always changes the cluster when there are >= 3)."""
    drift = 0.1
    world = generate(WorldSpec(4000, 200_000, drift=drift, follow=0.3, seed=3))
    users = world.users()
    pairs = (users[1:] == users[:-1]) & ~world.followed[1:] & ~world.followed[:-1]
    clusters = world.item_cluster[world.items]
    changed = (clusters[1:] != clusters[:-1])[pairs]
    sigma = np.sqrt(drift * (1 - drift) / changed.size)
    assert abs(changed.mean() - drift) < 5 * sigma


def test_planted_successor_is_in_the_order_only():
    """With probability `follow` the next item is the previous item's successor; shuffling each user's items keeps
    every count and destroys that signal (it is visible only to a model that reads the history)."""
    follow = 0.4
    world = generate(WorldSpec(3000, 150_000, follow=follow, seed=4))
    users = world.users()
    same_user = users[1:] == users[:-1]
    hit = (world.items[1:] == world.successor[world.items[:-1]])[same_user]
    assert follow - 0.02 < hit.mean() < follow + 0.08  # + chance draws of the successor by popularity
    shuffled = world.items[np.lexsort((np.random.default_rng(0).random(users.size), users))]
    shuffled_hit = (shuffled[1:] == world.successor[shuffled[:-1]])[same_user]
    assert shuffled_hit.mean() < follow / 4


def test_written_files_read_back(tmp_path):
    world = generate(WorldSpec(300, 6_000, seed=5))
    write_parquet(world, tmp_path / "pq")
    write_atomic(world, tmp_path / "at", name="syn")
    parquet = read_dataset({"format": "table", "path": str(tmp_path / "pq" / "interactions.parquet"),
                            "columns": {"user": "user", "item": "item", "timestamp": "timestamp"}})
    atomic = read_dataset({"format": "atomic", "path": str(tmp_path / "at"), "name": "syn"})
    assert np.array_equal(parquet.interactions["item"].to_numpy(), world.items)
    assert np.array_equal(parquet.interactions["user"].to_numpy(), world.users())
    assert np.array_equal(atomic.interactions["item"].astype(int).to_numpy(), world.items)
    assert np.allclose(atomic.interactions["timestamp"].to_numpy(), world.timestamps)
    data = preprocess(atomic, None, 1, 1)
    category = data.item_features["category"]
    # every item's category token is its generated cluster
    tokens = np.array(category.vocabulary, dtype=object)[category.values[1:].numpy() - 1].astype(int)
    assert np.array_equal(tokens, world.item_cluster[data.item_tokens[1:].astype(int)])
    assert not list((tmp_path / "at").glob(".*"))  # no temporary file left behind


def test_k_core_mask_matches_a_naive_fixed_point():
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 60, 800), rng.zipf(1.6, 800) % 90
    alive = set(range(800))
    while True:  # naive: recount from the surviving rows, drop, repeat
        user_count, item_count = {}, {}
        for row in alive:
            user_count[users[row]] = user_count.get(users[row], 0) + 1
            item_count[items[row]] = item_count.get(items[row], 0) + 1
        dropped = {row for row in alive if user_count[users[row]] < 8 or item_count[items[row]] < 5}
        if not dropped:
            break
        alive -= dropped
    mask = k_core_mask(users, np.unique(items, return_inverse=True)[1], 8, 5)
    assert set(np.flatnonzero(mask)) == alive and 0 < len(alive) < 800


def test_command_line_writes_and_refuses_bad_sizes(tmp_path):
    command = [sys.executable, "-m", "tandem.data.synthetic_scale", "--items", "200", "--interactions", "3000",
               "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0 and (tmp_path / "interactions.parquet").is_file()
    bad = subprocess.run(command[:4] + ["1"] + command[5:], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "items must be >= 2" in bad.stderr
    typo = subprocess.run(command[:4] + ["many"] + command[5:], capture_output=True, text=True)
    assert typo.returncode == 2 and typo.stderr.count("\n") == 1 and "--items" in typo.stderr
