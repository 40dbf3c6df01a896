"""Train/valid/test splits for the general and the sequential task (seed 000 sec. 4.1).

- general: each user's time-ordered items are cut 0.8/0.1/0.1; evaluation ranks all items with the user's known
  items (train; train + valid at test time) masked.
- sequential: for a user with items i1..in, training targets are i2..i(n-2), each with up to the previous
  `max_seq_len` items as history; valid predicts i(n-1) from i1..i(n-2); test predicts in from i1..i(n-1). The
  whole known prefix is masked at evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tandem.data.dataset import InteractionData
from tandem.errors import TandemError


@dataclass
class TrainSet:
    """Training examples as parallel tensors; `context` identifies the example for per-context samplers."""

    tensors: dict[str, torch.Tensor]  # user [n], item [n], optional history [n, H], context [n]
    num_contexts: int

    def __len__(self) -> int:
        return int(self.tensors["item"].shape[0])


@dataclass
class EvalSet:
    """Evaluation rows: a context, its targets (CSR) and the items known to it (CSR, masked when ranking)."""

    tensors: dict[str, torch.Tensor]  # user [E], optional history [E, H]
    target_indptr: np.ndarray
    target_items: np.ndarray
    known_indptr: np.ndarray
    known_items: np.ndarray

    def __len__(self) -> int:
        return int(self.target_indptr.shape[0] - 1)


@dataclass
class Split:
    task: str
    train: TrainSet
    valid: EvalSet
    test: EvalSet
    max_seq_len: int

    def stats(self) -> dict[str, int]:
        return {
            "train_examples": len(self.train),
            "valid_rows": len(self.valid),
            "test_rows": len(self.test),
            "valid_targets": int(self.valid.target_items.shape[0]),
            "test_targets": int(self.test.target_items.shape[0]),
        }


def without_known(eval_set: EvalSet) -> EvalSet:
    """The same rows and targets with no known items, so evaluation masks nothing (RecBole's sequential
    protocol, for side-by-side comparison; a history item may then be recommended again)."""
    empty_indptr = np.zeros_like(eval_set.known_indptr)
    return EvalSet(eval_set.tensors, eval_set.target_indptr, eval_set.target_items, empty_indptr,
                   eval_set.known_items[:0])


def histories(items: np.ndarray, starts: np.ndarray, positions: np.ndarray, max_len: int) -> np.ndarray:
    """For each flat position p (with its user's start s), the items at p-max_len..p-1 not before s,
    left-padded with 0 so the most recent item is last. Returns [len(positions), max_len].

    Filled one column (one offset) at a time: a few [n] temporaries instead of three [n, max_len] ones."""
    out = np.zeros((positions.shape[0], max_len), dtype=items.dtype)
    for offset in range(1, max_len + 1):  # over the history length, never over rows
        index = positions - offset
        valid = index >= starts
        np.copyto(out[:, max_len - offset], items[np.maximum(index, 0)], where=valid)
    return out


def _csr_from_ranges(items: np.ndarray, begin: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gather items[begin_r:end_r] for every row r into one CSR."""
    lengths = end - begin
    indptr = np.zeros(len(begin) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    flat = np.repeat(begin - indptr[:-1], lengths) + np.arange(indptr[-1])
    return indptr, items[flat]


def split_general(
    data: InteractionData,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    shuffle_seed: int | None = None,
) -> Split:
    """Per-user ratio split in time order, or in a random order within each user when `shuffle_seed` is given
    (for data without timestamps, such as the Gowalla matrix, as seed 003 does). Users with fewer than 3
    interactions only train."""
    if len(ratios) != 3 or abs(sum(ratios) - 1.0) > 1e-6 or min(ratios) < 0:
        raise TandemError(f"data.split must be three non-negative ratios summing to 1, got {list(ratios)}")
    starts, lengths = data.indptr[:-1], data.lengths()
    items = data.items
    if shuffle_seed is not None:
        owner = np.repeat(np.arange(data.num_users), lengths)
        items = items[np.lexsort((np.random.default_rng(shuffle_seed).random(len(items)), owner))]
    n_test = np.where(lengths >= 3, np.maximum(1, np.round(lengths * ratios[2])), 0).astype(np.int64)
    n_valid = np.where(lengths >= 3, np.maximum(1, np.round(lengths * ratios[1])), 0).astype(np.int64)
    n_train = lengths - n_test - n_valid
    train_end = starts + n_train
    valid_end = train_end + n_valid
    users = np.repeat(np.arange(data.num_users), n_train)
    train_index = np.repeat(starts, n_train) + np.arange(n_train.sum()) - np.repeat(np.cumsum(n_train) - n_train, n_train)
    train = TrainSet(
        tensors={
            "user": torch.from_numpy(users),
            "item": torch.from_numpy(items[train_index]),
            "context": torch.from_numpy(users),
        },
        num_contexts=data.num_users,
    )

    def eval_set(begin: np.ndarray, end: np.ndarray, known_end: np.ndarray) -> EvalSet:
        rows = np.flatnonzero(end > begin)
        target_indptr, target_items = _csr_from_ranges(items, begin[rows], end[rows])
        known_indptr, known_items = _csr_from_ranges(items, starts[rows], known_end[rows])
        return EvalSet({"user": torch.from_numpy(rows)}, target_indptr, target_items, known_indptr, known_items)

    return Split(
        task="general",
        train=train,
        valid=eval_set(train_end, valid_end, train_end),
        test=eval_set(valid_end, starts + lengths, valid_end),
        max_seq_len=0,
    )


def split_sequential(data: InteractionData, max_seq_len: int = 20) -> Split:
    """Leave-last-two-out sequential split with histories of at most `max_seq_len` items."""
    if max_seq_len < 1:
        raise TandemError(f"data.max_seq_len must be >= 1, got {max_seq_len}")
    starts, lengths = data.indptr[:-1], data.lengths()
    users_ok = np.flatnonzero(lengths >= 3)
    if users_ok.size == 0:
        raise TandemError("the sequential task needs users with at least 3 interactions; none are left")
    # training targets: positions start+1 .. start+n-3 (items i2..i(n-2))
    n_train = lengths[users_ok] - 2 - 1
    train_users = np.repeat(users_ok, n_train)
    train_pos = (
        np.repeat(starts[users_ok] + 1, n_train)
        + np.arange(n_train.sum())
        - np.repeat(np.cumsum(n_train) - n_train, n_train)
    )
    train_starts = starts[train_users]
    train = TrainSet(
        tensors={
            "user": torch.from_numpy(train_users),
            "history": torch.from_numpy(histories(data.items, train_starts, train_pos, max_seq_len)),
            "item": torch.from_numpy(data.items[train_pos]),
            "context": torch.arange(len(train_pos)),
        },
        num_contexts=len(train_pos),
    )

    def eval_set(offset_from_end: int) -> EvalSet:
        target_pos = starts[users_ok] + lengths[users_ok] - offset_from_end
        user_starts = starts[users_ok]
        target_indptr = np.arange(len(users_ok) + 1, dtype=np.int64)
        known_indptr, known_items = _csr_from_ranges(data.items, user_starts, target_pos)
        return EvalSet(
            {
                "user": torch.from_numpy(users_ok),
                "history": torch.from_numpy(histories(data.items, user_starts, target_pos, max_seq_len)),
            },
            target_indptr,
            data.items[target_pos],
            known_indptr,
            known_items,
        )

    return Split("sequential", train, eval_set(2), eval_set(1), max_seq_len)


def iterate_batches(
    tensors: dict[str, torch.Tensor],
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
):
    """Yield dict batches (slices of every tensor), optionally in a random order."""
    size = next(iter(tensors.values())).shape[0]
    order = torch.randperm(size, generator=generator) if shuffle else None
    for begin in range(0, size, batch_size):
        if order is None:
            yield {key: value[begin : begin + batch_size] for key, value in tensors.items()}
        else:
            index = order[begin : begin + batch_size]
            yield {key: value[index] for key, value in tensors.items()}
