"""Synthetic interaction data with planted structure, of any size: for tests, demos and scale benchmarks.

- `low_rank`: each user and item has a latent vector of a small rank; a user's items are drawn without replacement
  with probability proportional to exp(sharpness * <u, v>), so an inner-product retriever can recover them.
- `markov`: each user walks over the catalogue; the next item is usually a short hop from the previous one, so a
  sequence model can predict it and a bag-of-items model cannot.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from tandem.data.raw import RawDataset


def low_rank_interactions(
    num_users: int, num_items: int, per_user: int, rank: int = 4, sharpness: float = 4.0, seed: int = 0
) -> RawDataset:
    rng = np.random.default_rng(seed)
    users = rng.normal(size=(num_users, rank)) / np.sqrt(rank)
    items = rng.normal(size=(num_items, rank))
    logits = sharpness * users @ items.T
    gumbel = rng.gumbel(size=logits.shape)
    chosen = np.argsort(-(logits + gumbel), axis=1)[:, :per_user]  # Gumbel top-k = sampling without replacement
    user_column = np.repeat(np.arange(num_users), per_user)
    frame = pd.DataFrame(
        {
            "user": user_column,
            "item": chosen.reshape(-1) + 1,
            "timestamp": rng.permutation(num_users * per_user).astype(np.float64),
        }
    )
    return RawDataset("synthetic-low-rank", frame)


def markov_interactions(
    num_users: int, num_items: int, per_user: int, max_hop: int = 3, noise: float = 0.1, seed: int = 0
) -> RawDataset:
    rng = np.random.default_rng(seed)
    hops = rng.integers(1, max_hop + 1, size=(num_users, per_user))
    random_jump = rng.random((num_users, per_user)) < noise
    hops = np.where(random_jump, rng.integers(0, num_items, size=hops.shape), hops)
    start = rng.integers(0, num_items, size=(num_users, 1))
    sequence = (start + np.cumsum(hops, axis=1)) % num_items
    frame = pd.DataFrame(
        {
            "user": np.repeat(np.arange(num_users), per_user),
            "item": sequence.reshape(-1) + 1,
            "timestamp": np.tile(np.arange(per_user, dtype=np.float64), num_users),
        }
    )
    return RawDataset("synthetic-markov", frame)
