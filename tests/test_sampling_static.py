"""Static samplers (uniform, popularity): log_prob is a distribution over 1..N and draws follow it."""
import numpy as np
import pytest
import torch
from scipy import stats

from tandem.sampling import PopularitySampler, UniformSampler, build_sampler

N = 60


def goodness_of_fit(items: torch.Tensor, probs: torch.Tensor) -> float:
    """Chi-square p-value of the draws `items` (ids 1..N) against `probs` [N]; bins with expected < 5 are pooled."""
    counts = torch.bincount(items.reshape(-1) - 1, minlength=probs.shape[0]).double().numpy()
    expected = probs.double().numpy() * counts.sum()
    small = expected < 5
    assert counts[expected == 0].sum() == 0, "an item of probability 0 was drawn"
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    keep = exp > 0
    obs, exp = obs[keep], exp[keep]
    return float(stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue)


def counts() -> np.ndarray:
    rng = np.random.default_rng(0)
    c = rng.zipf(1.6, N + 1).clip(max=500).astype(np.int64)
    c[0] = 0
    return c


@pytest.mark.parametrize("name", ["uniform", "popularity"])
def test_log_prob_sums_to_one_and_draws_match(name):
    options = {"item_counts": counts()} if name == "popularity" else {}
    sampler = build_sampler(name, num_items=N, seed=3, **options)
    query = torch.zeros(4, 8)
    all_items = torch.arange(1, N + 1).expand(4, -1)
    probs = sampler.log_prob(query, all_items).exp()
    assert torch.allclose(probs.sum(1), torch.ones(4), atol=1e-5)
    items, log_q = sampler.sample(torch.zeros(400, 8), 50)
    assert items.min() >= 1 and items.max() <= N
    assert torch.allclose(log_q, sampler.log_prob(torch.zeros(400, 8), items))
    assert goodness_of_fit(items, probs[0]) > 1e-3


def test_popularity_follows_counts():
    c = counts()
    sampler = PopularitySampler(N, c, generator=torch.Generator().manual_seed(0))
    expected = torch.tensor(c[1:] + 1.0) / (c[1:] + 1.0).sum()
    assert torch.allclose(sampler.log_prob(torch.zeros(1, 2), torch.arange(1, N + 1)[None]).exp()[0].double(),
                          expected, atol=1e-6)


def test_uniform_never_draws_padding_and_is_seeded():
    a = UniformSampler(5, torch.Generator().manual_seed(1)).sample(torch.zeros(50, 2), 40)[0]
    b = UniformSampler(5, torch.Generator().manual_seed(1)).sample(torch.zeros(50, 2), 40)[0]
    assert torch.equal(a, b) and a.min() >= 1 and a.max() <= 5


def test_popularity_needs_counts():
    with pytest.raises(ValueError, match="item_counts"):
        build_sampler("popularity", num_items=N)
    with pytest.raises(ValueError, match="entries"):
        build_sampler("popularity", num_items=N, item_counts=np.ones(N))
