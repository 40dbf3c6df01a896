"""Seed 003 sec. 4.1.3: the popularity proposal of PRIS(P) and AdaSIR(P) is Q(i) ∝ log(1 + f_i)."""
import math

import numpy as np
import pytest
import torch

from tandem.sampling import build_sampler

# f = 0, 1, 3, 7 -> log(1 + f) = 0, ln 2, 2 ln 2, 3 ln 2 -> Q = 0, 1/6, 2/6, 3/6 (padding item 0 has Q = 0)
COUNTS = np.array([0, 0, 1, 3, 7])
EXPECTED = np.array([0.0, 0.0, 1 / 6, 2 / 6, 3 / 6])


def test_log_popularity_probabilities_are_log_one_plus_f():
    sampler = build_sampler("popularity", num_items=4, item_counts=COUNTS, transform="log", seed=0)
    np.testing.assert_allclose(sampler.probs.numpy(), EXPECTED, atol=1e-7)
    items = torch.tensor([[2, 3, 4]])
    np.testing.assert_allclose(sampler.log_prob(torch.zeros(1, 2), items).numpy(),
                               np.log(EXPECTED[[2, 3, 4]])[None], atol=1e-6)


def test_log_popularity_draws_follow_log_one_plus_f():
    sampler = build_sampler("popularity", num_items=4, item_counts=COUNTS, transform="log", seed=1)
    items, _ = sampler.sample(torch.zeros(20_000, 2), 5)
    frequencies = np.bincount(items.reshape(-1).numpy(), minlength=5) / items.numel()
    # 100k draws: each frequency's standard error is below 0.0016; 5 of them is a bound a correct sampler meets
    np.testing.assert_allclose(frequencies, EXPECTED, atol=0.008)


def test_adasir_popularity_proposal_uses_the_same_log_weights():
    sampler = build_sampler("adasir", num_items=4, num_contexts=3, proposal="popularity", item_counts=COUNTS,
                            transform="log", pool_size=4, candidate_size=4, seed=0)
    np.testing.assert_allclose(sampler.proposal_probs.numpy(), EXPECTED, atol=1e-12)


def test_power_transform_is_unchanged_and_bad_transform_is_an_error():
    sampler = build_sampler("popularity", num_items=4, item_counts=COUNTS, beta=1.0, smoothing=1.0, seed=0)
    power = np.array([0, 1, 2, 4, 8], dtype=float)
    np.testing.assert_allclose(sampler.probs.numpy(), power / power.sum(), atol=1e-7)
    with pytest.raises(ValueError, match="transform"):
        build_sampler("popularity", num_items=4, item_counts=COUNTS, transform="sqrt")
    assert math.isclose(EXPECTED.sum(), 1.0)
