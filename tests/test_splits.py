"""Preprocessing and split invariants: k-core fixed point, sizes, no target leaking into its history or training."""
import numpy as np
import torch
import pandas as pd
import pytest

from tandem.data.dataset import k_core, preprocess
from tandem.data.raw import RawDataset
from tandem.data.splits import split_general, split_sequential
from tandem.data.synthetic import low_rank_interactions
from tandem.errors import TandemError


def skewed_raw(seed=0, users=120, items=90, n=2500):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "user": rng.zipf(1.6, n) % users,
        "item": rng.zipf(1.4, n) % items,
        "timestamp": rng.random(n),
    }).drop_duplicates(["user", "item"])
    return RawDataset("skewed", frame)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_k_core_reaches_a_fixed_point(k):
    frame = k_core(skewed_raw().interactions, k, k)
    assert not frame.empty
    assert frame["user"].value_counts().min() >= k
    assert frame["item"].value_counts().min() >= k
    # a second pass removes nothing: it is a fixed point
    assert len(k_core(frame, k, k)) == len(frame)


def test_preprocess_dense_ids_and_time_order():
    data = preprocess(skewed_raw(), min_user_interactions=3, min_item_interactions=3)
    assert data.items.min() >= 1 and data.items.max() == data.num_items
    assert len(np.unique(data.items)) == data.num_items
    for u in range(data.num_users):
        ts = data.timestamps[data.indptr[u]:data.indptr[u + 1]]
        assert np.all(np.diff(ts) >= 0)
    assert data.lengths().min() >= 3


def test_empty_after_filtering_is_a_clear_error():
    with pytest.raises(TandemError, match="empty after filtering"):
        preprocess(skewed_raw(), min_user_interactions=10_000)


def test_general_split_sizes_and_no_leak():
    data = preprocess(low_rank_interactions(50, 80, per_user=20, seed=1), min_user_interactions=1, min_item_interactions=1)
    split = split_general(data)
    lengths = data.lengths()
    valid_counts = np.diff(split.valid.target_indptr)
    test_counts = np.diff(split.test.target_indptr)
    np.testing.assert_array_equal(valid_counts, np.maximum(1, np.round(lengths * 0.1)))
    np.testing.assert_array_equal(test_counts, np.maximum(1, np.round(lengths * 0.1)))
    assert len(split.train) + valid_counts.sum() + test_counts.sum() == data.num_interactions
    train_user = split.train.tensors["user"].numpy()
    train_item = split.train.tensors["item"].numpy()
    for row, user in enumerate(split.test.tensors["user"].numpy()):
        test_items = set(split.test.target_items[split.test.target_indptr[row]:split.test.target_indptr[row + 1]])
        valid_items = set(split.valid.target_items[split.valid.target_indptr[row]:split.valid.target_indptr[row + 1]])
        known = set(split.test.known_items[split.test.known_indptr[row]:split.test.known_indptr[row + 1]])
        assert not test_items & set(train_item[train_user == user])
        assert known == set(train_item[train_user == user]) | valid_items
        # time order: every test item comes after every training item of the user
        begin = data.indptr[user]
        assert set(data.items[begin + lengths[user] - len(test_items):begin + lengths[user]]) == test_items


def test_sequential_split_matches_the_protocol():
    data = preprocess(low_rank_interactions(30, 60, per_user=25, seed=2), min_user_interactions=1, min_item_interactions=1)
    split = split_sequential(data, max_seq_len=5)
    lengths = data.lengths()
    assert len(split.train) == int((lengths - 3).sum())
    hist = split.train.tensors["history"].numpy()
    users = split.train.tensors["user"].numpy()
    targets = split.train.tensors["item"].numpy()
    cursor = 0
    for u in range(data.num_users):
        seq = data.items[data.indptr[u]:data.indptr[u + 1]]
        n = len(seq)
        for j in range(1, n - 2):  # targets i2..i(n-2)
            assert users[cursor] == u and targets[cursor] == seq[j]
            expected = seq[max(0, j - 5):j]
            row = hist[cursor]
            np.testing.assert_array_equal(row[row > 0], expected)
            assert np.all(row[: 5 - len(expected)] == 0)  # left padding
            cursor += 1
        # valid: i(n-1) from the first n-2; test: i(n) from the first n-1
        assert split.valid.target_items[u] == seq[n - 2] and split.test.target_items[u] == seq[n - 1]
        np.testing.assert_array_equal(split.valid.tensors["history"][u].numpy()[-5:], seq[n - 7:n - 2])
        np.testing.assert_array_equal(
            split.test.known_items[split.test.known_indptr[u]:split.test.known_indptr[u + 1]], seq[: n - 1]
        )
    assert cursor == len(split.train)


def test_random_split_order_keeps_each_users_items_and_is_seeded():
    data = preprocess(low_rank_interactions(40, 80, per_user=20, seed=3), min_user_interactions=1, min_item_interactions=1)
    first, again = split_general(data, shuffle_seed=5), split_general(data, shuffle_seed=5)
    timed = split_general(data)
    assert torch.equal(first.train.tensors["item"], again.train.tensors["item"])
    assert not torch.equal(first.train.tensors["item"], timed.train.tensors["item"])
    for u in range(data.num_users):
        everything = set(data.items[data.indptr[u]:data.indptr[u + 1]])
        train = set(first.train.tensors["item"][first.train.tensors["user"] == u].tolist())
        test = set(first.test.target_items[first.test.target_indptr[u]:first.test.target_indptr[u + 1]])
        valid = set(first.valid.target_items[first.valid.target_indptr[u]:first.valid.target_indptr[u + 1]])
        assert train | valid | test == everything and not (train & test) and not (valid & test)


def test_exclude_known_false_masks_nothing_and_ranks_history_items_again():
    """With eval.exclude_known: false a history item can outrank the target: the rank counts it."""
    import torch

    from tandem.data.splits import EvalSet, without_known
    from tandem.evaluation import evaluate_batches, full_ranking_metrics

    eval_set = EvalSet({"user": torch.tensor([0])}, np.array([0, 1]), np.array([3]), np.array([0, 1]), np.array([2]))
    scores = torch.tensor([[0.0, 0.1, 0.9, 0.5, 0.2]])  # item 2 (known) scores above the target 3
    rank_fn = full_ranking_metrics(lambda batch: scores, (1,))
    assert evaluate_batches(eval_set, rank_fn, 8)["recall@1"] == 1.0  # known item masked: target first
    assert evaluate_batches(without_known(eval_set), rank_fn, 8)["recall@1"] == 0.0
