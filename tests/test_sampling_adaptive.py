"""Model-based samplers: exact softmax, MIDX (seed 000 sec. 3.2.2), AdaSIR (seed 003), DNS, TopRand, Top&Rand."""
import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from tandem.sampling import (
    SAMPLER_NAMES,
    AdaSIRSampler,
    ExactSampler,
    MIDXSampler,
    build_sampler,
)

N, D = 120, 8


def sampler_bench():
    """benchmarks/sampler_bench.py (a command beside the library, not part of it) as a module."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "sampler_bench.py"
    spec = importlib.util.spec_from_file_location("sampler_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def goodness_of_fit(items: torch.Tensor, probs: torch.Tensor) -> float:
    """Chi-square p-value of the draws `items` (ids 1..N) against `probs` [N]; bins with expected < 5 are pooled."""
    counts = torch.bincount(items.reshape(-1) - 1, minlength=probs.shape[0]).double().numpy()
    expected = probs.double().numpy() * counts.sum()
    assert counts[expected < 1e-12].sum() == 0, "an item of probability 0 was drawn"
    small = expected < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    keep = exp > 0
    obs, exp = obs[keep], exp[keep]
    return float(stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue)


def mixture(num_items: int, dim: int, num_queries: int, seed: int, genres: int = 6, subgenres: int = 4):
    """Hierarchical Gaussian mixture: items [N+1, d] (row 0 padding) and queries near sub-genre centres."""
    gen = torch.Generator().manual_seed(seed)
    tops = torch.randn(genres, dim, generator=gen) * (2.0 / math.sqrt(dim))
    centres = tops.repeat_interleave(subgenres, 0)
    centres = centres + torch.randn(genres * subgenres, dim, generator=gen) / math.sqrt(dim)
    items = centres[torch.randint(0, len(centres), (num_items,), generator=gen)]
    items = items + torch.randn(num_items, dim, generator=gen) * (0.3 / math.sqrt(dim))
    queries = centres[torch.randint(0, len(centres), (num_queries,), generator=gen)]
    queries = queries + torch.randn(num_queries, dim, generator=gen) * (0.3 / math.sqrt(dim))
    return torch.cat([torch.zeros(1, dim), items]), queries


def item_counts(num_items: int, seed: int = 0) -> np.ndarray:
    c = np.random.default_rng(seed).zipf(1.7, num_items + 1).clip(max=300).astype(np.int64)
    c[0] = 0
    return c


def kl(p_log: torch.Tensor, q_log: torch.Tensor) -> torch.Tensor:
    p = p_log.double().exp()
    return (p * (p_log.double() - q_log.double())).sum(-1)


def all_items(rows: int, num_items: int = N) -> torch.Tensor:
    return torch.arange(1, num_items + 1).expand(rows, -1)


PROPER = ["exact", "midx", "midx-pop", "dns"]


def make(name: str, vectors: torch.Tensor, num_items: int = N, **options):
    if name in ("midx-pop", "popularity"):
        options.setdefault("item_counts", item_counts(num_items))
    if name == "adasir":
        options.setdefault("num_contexts", 8)
    if name.startswith("midx"):
        options.setdefault("num_clusters", 4)
    sampler = build_sampler(name, num_items=num_items, seed=0, **options)
    sampler.refresh(vectors)
    return sampler


@pytest.mark.parametrize("name", PROPER)
def test_log_prob_is_a_distribution_and_draws_follow_it(name):
    vectors, queries = mixture(N, D, 2, seed=1)
    sampler = make(name, vectors)
    probs = sampler.log_prob(queries, all_items(2)).exp()
    assert torch.allclose(probs.sum(1), torch.ones(2), atol=1e-4)
    for row in range(2):
        query = queries[row:row + 1].expand(300, -1).contiguous()
        items, log_q = sampler.sample(query, 100)
        assert items.min() >= 1 and items.max() <= N
        assert torch.allclose(log_q, sampler.log_prob(query, items), atol=1e-5)
        assert goodness_of_fit(items, probs[row]) > 1e-3, name


def test_exact_matches_softmax_and_streams_chunks(monkeypatch):
    vectors, queries = mixture(N, D, 3, seed=2)
    sampler = ExactSampler(N, temperature=0.5, seed=0)
    sampler.refresh(vectors)
    expected = torch.log_softmax(queries @ vectors[1:].T / 0.5, dim=1)
    assert torch.allclose(sampler.full_log_prob(queries), expected, atol=1e-5)
    monkeypatch.setattr("tandem.sampling._common.CHUNK_ELEMENTS", 7)  # many item chunks: the mixture draw path
    query = queries[:1].expand(300, -1).contiguous()
    items, log_q = sampler.sample(query, 100)
    assert torch.allclose(log_q, expected[0, items - 1], atol=1e-5)
    assert goodness_of_fit(items, expected[0].exp()) > 1e-3


def test_top_and_rand_slot_marginal_sums_to_one():
    vectors, queries = mixture(N, D, 3, seed=3)
    sampler = make("top&rand", vectors)
    items, log_q = sampler.sample(queries, 10)
    top = torch.topk(queries @ vectors[1:].T, 5, dim=1).indices + 1
    assert torch.equal(items[:, :5], top)
    assert torch.allclose(log_q, sampler.log_prob(queries, items))
    assert torch.allclose(sampler.log_prob(queries, all_items(3)).exp().sum(1), torch.ones(3), atol=1e-5)


def test_toprand_draws_distinct_items_from_the_top_set():
    vectors, queries = mixture(N, D, 4, seed=4)
    sampler = make("toprand", vectors)
    items, log_q = sampler.sample(queries, 6)
    top = torch.topk(queries @ vectors[1:].T, 30, dim=1).indices + 1
    assert (items.unsqueeze(2) == top.unsqueeze(1)).any(2).all()
    assert all(len(set(row.tolist())) == 6 for row in items)
    assert torch.allclose(log_q, torch.full_like(log_q, -math.log(30)))
    assert torch.allclose(sampler.log_prob(queries, all_items(4)), torch.full((4, N), -math.log(30)))


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_never_draws_padding(name):
    vectors, queries = mixture(N, D, 16, seed=5)
    sampler = make(name, vectors)
    context = torch.arange(16) % 8
    if name == "adasir":
        sampler.refresh_pools(context, queries, vectors)
    items, log_q = sampler.sample(queries, 30, context=context)
    assert items.shape == (16, 30) and items.dtype == torch.long
    assert items.min() >= 1 and items.max() <= N
    assert torch.isfinite(log_q).all()
    assert torch.isfinite(sampler.log_prob(queries, items, context=context)).all()


# ------------------------------------------------------------------------------------------------------------ MIDX
def product_vectors(num_items: int, seed: int, diagonal: bool = False):
    """Items equal to concatenations of 4 distinct half-vectors per half: k-means has zero residual."""
    gen = torch.Generator().manual_seed(seed)
    halves1, halves2 = torch.randn(4, D // 2, generator=gen), torch.randn(4, D // 2, generator=gen)
    a = torch.randint(0, 4, (num_items,), generator=gen)
    b = a if diagonal else torch.randint(0, 4, (num_items,), generator=gen)
    vectors = torch.cat([halves1[a], halves2[b]], dim=1)
    return torch.cat([torch.zeros(1, D), vectors]), torch.randn(5, D, generator=gen)


def test_midx_equals_exact_softmax_with_zero_residual():
    vectors, queries = product_vectors(N, seed=6)
    midx = MIDXSampler(N, num_clusters=4, temperature=0.7, seed=0)
    midx.refresh(vectors)
    assert midx.residual < 1e-6
    exact = torch.log_softmax(queries @ vectors[1:].T / 0.7, dim=1)
    assert torch.allclose(midx.full_log_prob(queries), exact, atol=1e-4)


def test_midx_pop_is_popularity_times_softmax_with_zero_residual():
    vectors, queries = product_vectors(N, seed=7)
    counts = item_counts(N, seed=1)
    midx = MIDXSampler(N, num_clusters=4, item_counts=counts, seed=0)
    midx.refresh(vectors)
    expected = torch.log_softmax(queries @ vectors[1:].T + torch.log(torch.tensor(counts[1:] + 1.0)).float(), dim=1)
    assert torch.allclose(midx.full_log_prob(queries), expected, atol=1e-4)


def test_midx_never_draws_empty_cells():
    vectors, queries = product_vectors(N, seed=8, diagonal=True)  # only the 4 diagonal cells of 16 are filled
    midx = MIDXSampler(N, num_clusters=4, seed=0)
    midx.refresh(vectors)
    assert int((midx.cell_counts > 0).sum()) == 4
    items, log_q = midx.sample(queries.repeat(50, 1), 40)
    assert (midx.cell_counts[midx.item_cell[items]] > 0).all() and torch.isfinite(log_q).all()
    cells = midx.cell_log_probs(queries)
    assert torch.isinf(cells[:, midx.cell_counts == 0]).all()
    assert torch.allclose(cells.exp().sum(1), torch.ones(5), atol=1e-5)


def test_midx_approaches_softmax_as_clusters_grow():
    n_items, dim = 3000, 16
    vectors, queries = mixture(n_items, dim, 32, seed=9, genres=8, subgenres=6)
    exact = torch.log_softmax(queries @ vectors[1:].T, dim=1)
    kls = []
    for k in (2, 8, 32):
        midx = MIDXSampler(n_items, num_clusters=k, seed=0)
        midx.refresh(vectors)
        kls.append(float(kl(exact, midx.full_log_prob(queries)).mean()))
    kl_uniform = float(kl(exact, torch.full_like(exact, -math.log(n_items))).mean())
    assert kls[0] > kls[1] > kls[2], kls
    assert kls[2] < 0.25 * kl_uniform, (kls, kl_uniform)


def test_midx_refresh_warm_starts_and_tracks_new_vectors():
    vectors, queries = mixture(N, D, 3, seed=10)
    midx = MIDXSampler(N, num_clusters=4, seed=0)
    midx.refresh(vectors)
    first = [c.clone() for c in midx.centroids]
    midx.refresh(vectors)  # converged centroids as the start: k-means stays put
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(first, midx.centroids))
    moved = torch.cat([vectors[:1], vectors[1:][torch.randperm(N, generator=torch.Generator().manual_seed(0))]])
    exact = torch.log_softmax(queries @ moved[1:].T, dim=1)
    stale = float(kl(exact, midx.full_log_prob(queries)).mean())  # items moved, index not refreshed
    midx.refresh(moved)
    fresh = float(kl(exact, midx.full_log_prob(queries)).mean())
    cold = MIDXSampler(N, num_clusters=4, seed=0)
    cold.refresh(moved)
    assert fresh < 0.5 * stale
    assert fresh < 1.2 * float(kl(exact, cold.full_log_prob(queries)).mean()) + 0.02


def test_midx_more_clusters_than_items_and_odd_dimension():
    vectors = torch.randn(11, 5)
    midx = MIDXSampler(10, num_clusters=64, seed=0)
    midx.refresh(vectors)
    assert midx.k == 10
    probs = midx.full_log_prob(torch.randn(2, 5)).exp()
    assert torch.allclose(probs.sum(1), torch.ones(2), atol=1e-5)


def test_midx_stable_at_extreme_temperature():
    vectors, queries = mixture(N, D, 4, seed=11)
    midx = MIDXSampler(N, num_clusters=4, temperature=1e-4, seed=0)
    midx.refresh(vectors * 10)
    log_q = midx.full_log_prob(queries)
    assert torch.isfinite(log_q.logsumexp(1)).all()
    assert torch.allclose(log_q.exp().sum(1), torch.ones(4), atol=1e-4)
    items, sampled = midx.sample(queries, 10)
    assert torch.isfinite(sampled).all()


# ---------------------------------------------------------------------------------------------------------- AdaSIR
def pool_tv(sampler: AdaSIRSampler, contexts: torch.Tensor, softmax: torch.Tensor) -> float:
    pool = sampler.pool_distribution(contexts)[:, 1:]
    return float(0.5 * (pool - softmax).abs().sum(1).mean())


@pytest.mark.parametrize("proposal", ["uniform", "popularity"])
def test_adasir_pools_approach_softmax_as_candidates_grow(proposal):
    """Theorem 3.1: the pool's item frequencies converge to softmax(r_c) as |K_c| (= |R_c|) grows."""
    n_items = 100
    vectors, queries = mixture(n_items, D, 20, seed=12)
    contexts = torch.arange(20)
    softmax = torch.softmax(queries @ vectors[1:].T, dim=1)
    tvs = []
    for size in (20, 200, 2000):
        sampler = AdaSIRSampler(n_items, num_contexts=20, proposal=proposal, pool_size=size, candidate_size=size,
                                item_counts=item_counts(n_items), seed=0)
        sampler.refresh_pools(contexts, queries, vectors)
        tvs.append(pool_tv(sampler, contexts, softmax))
    assert tvs[0] > tvs[1] > tvs[2], tvs
    assert tvs[2] < 0.2, tvs


def test_adasir_merge_keeps_pools_on_softmax_and_sample_draws_from_pool():
    n_items = 100
    vectors, queries = mixture(n_items, D, 10, seed=13)
    contexts = torch.arange(10).repeat(3)  # repeated ids (a user's many rows) are handled once
    softmax = torch.softmax(queries @ vectors[1:].T, dim=1)
    sampler = AdaSIRSampler(n_items, num_contexts=12, pool_size=1000, candidate_size=1000, seed=0)
    sampler.refresh_pools(contexts, queries.repeat(3, 1), vectors)
    before = pool_tv(sampler, torch.arange(10), softmax)
    old = sampler.pools[:10].clone()
    sampler.refresh_pools(contexts, queries.repeat(3, 1), vectors)  # Corollary 3.3: merged pool still ~ softmax
    after = pool_tv(sampler, torch.arange(10), softmax)
    assert not torch.equal(old, sampler.pools[:10])
    assert after < before + 0.03 and after < 0.15, (before, after)
    items, log_q = sampler.sample(queries[:4], 50, context=torch.tensor([0, 1, 2, 11]))
    for row in range(3):
        assert set(items[row].tolist()) <= set(sampler.pools[row].tolist())
    assert torch.allclose(log_q[3], torch.full_like(log_q[3], -math.log(n_items)))  # no pool yet: proposal draws
    assert items[3].min() >= 1


def test_adasir_popularity_proposal_for_contexts_without_a_pool():
    """A context whose pool was never built draws from the popularity proposal and reports its log Q."""
    counts = item_counts(N)
    vectors, queries = mixture(N, D, 8, seed=14)
    sampler = make("adasir", vectors, proposal="popularity", item_counts=counts)
    sampler.refresh_pools(torch.arange(4), queries[:4], vectors)
    items, log_q = sampler.sample(queries[4:], 7, context=torch.arange(4, 8))
    proposal = torch.log(torch.tensor(counts + 1.0).index_fill(0, torch.tensor([0]), 0.0))
    proposal = proposal - torch.logsumexp(proposal, 0)
    assert torch.allclose(log_q, proposal[items].float(), atol=1e-5)
    assert torch.allclose(sampler.log_prob(queries[4:], all_items(4), context=torch.arange(4, 8)).exp().sum(1),
                          torch.ones(4), atol=1e-5)


def test_adasir_rank_estimate_within_hoeffding_bound():
    """Theorem 3.4: over n pools, |mean(x)/|K_c| - p| < eps with probability >= 1 - 2 exp(-2 n |K_c| eps^2)."""
    n_items, n_pools, size = 500, 400, 100
    vectors, queries = mixture(n_items, D, 1, seed=15)
    query = queries.expand(n_pools, -1).contiguous()
    sampler = AdaSIRSampler(n_items, num_contexts=n_pools, pool_size=size, candidate_size=size, seed=0)
    sampler.refresh_pools(torch.arange(n_pools), query, vectors)
    scores = query[0] @ vectors[1:].T
    order = torch.argsort(scores, descending=True)
    for true_rank in (1, 20, 150, 400):
        positive = order[true_rank - 1] + 1
        estimate = sampler.estimate_rank(query, positive.expand(n_pools), torch.arange(n_pools))
        assert estimate.shape == (n_pools,) and estimate.min() >= 1
        p_true = (true_rank - 1) / n_items  # uniform candidates over all N: P(candidate scores above)
        p_hat = ((estimate - 1) / (n_items - 1)).double()
        eps = math.sqrt(math.log(2 / 1e-3) / (2 * n_pools * size))  # 1e-3 failure probability for the mean
        assert abs(float(p_hat.mean()) - p_true) < eps + 2 / (n_items - 1), true_rank
        eps_one = math.sqrt(math.log(2 / 0.05) / (2 * size))  # per pool: at most ~5% outside
        assert float((p_hat - p_true).abs().gt(eps_one + 2 / (n_items - 1)).double().mean()) <= 0.1


def test_adasir_needs_contexts_and_valid_ids():
    vectors, queries = mixture(N, D, 2, seed=16)
    sampler = make("adasir", vectors)
    with pytest.raises(ValueError, match="context"):
        sampler.sample(queries, 3)
    with pytest.raises(ValueError, match="0..7"):
        sampler.sample(queries, 3, context=torch.tensor([0, 8]))
    with pytest.raises(ValueError, match="pool"):
        sampler.pool_distribution(torch.tensor([0]))


# --------------------------------------------------------------------------------------------------- errors, bench
@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("softmax", {}, "unknown sampler 'softmax'"),
        ("midx", {"clusters": 3}, r"unknown option\(s\) \['clusters'\]"),
        ("exact", {"temperature": 0}, "temperature"),
        ("midx", {"num_clusters": 0}, "num_clusters"),
        ("midx-pop", {}, "item_counts"),
        ("adasir", {}, "num_contexts"),
        ("adasir", {"num_contexts": 4, "proposal": "zipf"}, "proposal"),
        ("adasir", {"num_contexts": 4, "proposal": "popularity"}, "item_counts"),
        ("adasir", {"num_contexts": 4, "pool_size": 0}, "pool_size"),
        ("dns", {"candidate_size": 0}, "candidate_size"),
        ("toprand", {"top_factor": 0}, "top_factor"),
        ("exact", {"exclude_padding": "yes"}, "exclude_padding"),
    ],
)
def test_bad_options_raise_clear_errors(name, options, message):
    with pytest.raises(ValueError, match=message):
        build_sampler(name, num_items=N, **options)


def test_refresh_and_query_shapes_are_checked():
    sampler = build_sampler("midx", num_items=N, num_clusters=4)
    with pytest.raises(RuntimeError, match="refresh"):
        sampler.sample(torch.zeros(2, D), 3)
    with pytest.raises(ValueError, match="rows"):
        sampler.refresh(torch.zeros(N, D))
    exact = build_sampler("exact", num_items=N, exclude_padding=False)
    exact.refresh(torch.randn(N, D))  # no padding row when exclude_padding=False
    with pytest.raises(ValueError, match="query"):
        exact.sample(torch.zeros(2, D + 1), 3)


def test_bench_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    arguments = ["--items", "2000", "--queries", "32", "--negatives", "5", "--dim", "16", "--repeats", "1",
                 "--kl-queries", "8", "--out", str(out)]
    result = sampler_bench().main(arguments)
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    assert set(saved["seconds_per_batch"]) == {"uniform", "exact", "midx", "adasir"}
    assert set(saved["midx_by_clusters"]) == {"16", "64", "256"}
    assert saved["items"] == 2000 and saved["kl_to_exact"]["midx"] < saved["kl_to_exact"]["uniform"]


# ------------------------------------------------------------------------ issue 10: defects of seed 003 and padding
def naive_log_w(sampler: AdaSIRSampler, context: int, query: torch.Tensor, vectors: torch.Tensor,
                counts: np.ndarray | None) -> dict[int, float]:
    """log w(i|c) of Algorithm 1 line 5, by a plain loop over the candidates K_c: the log of
    exp(r_ci - log Q(i)) / sum_{j in K_c} exp(r_cj - log Q(j)) with r = <query, v> / T, in float64."""
    n_items = sampler.num_items
    if counts is None:
        proposal = {i: 1.0 / n_items for i in range(1, n_items + 1)}
    else:
        total = float(sum(counts[i] + 1.0 for i in range(1, n_items + 1)))
        proposal = {i: (counts[i] + 1.0) / total for i in range(1, n_items + 1)}
    logits = {}
    for item in sampler.candidates[context].tolist():
        score = sum(float(a) * float(b) for a, b in zip(query.tolist(), vectors[item].tolist()))
        logits[item] = score / sampler.temperature - math.log(proposal[item])
    terms = [logits[item] for item in sampler.candidates[context].tolist()]  # one term per slot, repeats included
    top = max(terms)
    log_norm = top + math.log(sum(math.exp(t - top) for t in terms))
    return {item: value - log_norm for item, value in logits.items()}


@pytest.mark.parametrize("proposal", ["uniform", "popularity"])
def test_adasir_draws_carry_the_resampling_weight_of_their_pool_slot(proposal):
    """Seed 003 eq. 1: a negative's log-probability is log w(i|c), the resampling weight it had when it entered the
    pool (Algorithm 1 line 5, computed with that refresh's scores), and it moves with the item when pools merge."""
    n_items, n_ctx = 60, 5
    counts = item_counts(n_items) if proposal == "popularity" else None
    v1, q1 = mixture(n_items, D, n_ctx, seed=20)
    v2, q2 = mixture(n_items, D, n_ctx, seed=21)
    contexts = torch.arange(n_ctx)
    sampler = AdaSIRSampler(n_items, num_contexts=n_ctx, proposal=proposal, pool_size=40, candidate_size=50,
                            item_counts=counts, temperature=0.5, seed=0)
    sampler.refresh_pools(contexts, q1, v1)
    first = [naive_log_w(sampler, c, q1[c], v1, counts) for c in range(n_ctx)]
    items, log_q = sampler.sample(q1, 300, context=contexts)
    for c in range(n_ctx):
        for item, value in zip(items[c].tolist(), log_q[c].tolist()):
            assert value == pytest.approx(first[c][item], abs=1e-4)
    # log_prob of the candidates: the same weights, from the scores of the refresh (not of the query passed now)
    cand = sampler.candidates[:n_ctx].long()
    got = sampler.log_prob(torch.randn(n_ctx, D), cand, context=contexts)
    for c in range(n_ctx):
        for item, value in zip(cand[c].tolist(), got[c].tolist()):
            assert value == pytest.approx(first[c][item], abs=1e-4)

    sampler.refresh_pools(contexts, q2, v2)  # merge: each kept slot keeps the weight it came with
    second = [naive_log_w(sampler, c, q2[c], v2, counts) for c in range(n_ctx)]
    items, log_q = sampler.sample(q2, 300, context=contexts)
    old_only = new_only = 0
    for c in range(n_ctx):
        for item, value in zip(items[c].tolist(), log_q[c].tolist()):
            from_old = item in first[c] and abs(value - first[c][item]) < 1e-4
            from_new = item in second[c] and abs(value - second[c][item]) < 1e-4
            assert from_old or from_new, (c, item, value)
            old_only += from_old and not from_new
            new_only += from_new and not from_old
    assert old_only > 0 and new_only > 0


def test_adasir_top_scored_positive_has_rank_one():
    """Seed 003 eq. 2 counts the candidates scored strictly above the positive; the positive itself never is, even
    when K_c holds it and its two dot products differ by an ulp."""
    n_items, n_ctx, dim = 1000, 128, 64
    g = torch.Generator().manual_seed(22)
    vectors = torch.cat([torch.zeros(1, dim), torch.randn(n_items, dim, generator=g)])
    queries = torch.randn(n_ctx, dim, generator=g)
    contexts = torch.arange(n_ctx)
    sampler = AdaSIRSampler(n_items, num_contexts=n_ctx, pool_size=10, candidate_size=200, seed=0)
    sampler.refresh_pools(contexts, queries, vectors)
    top = (queries @ vectors[1:].T).argmax(1) + 1
    sampler.candidates[:, :3] = top[:, None].to(sampler.candidates.dtype)  # K_c holds the positive (3 times)
    rank = sampler.estimate_rank(queries, top, contexts)
    assert torch.equal(rank, torch.ones(n_ctx))


def test_adasir_rank_estimate_is_eq2_by_hand():
    """floor((N - 1) * #{j in K_c: r_cj > r_ci} / |K_c|) + 1, counted by a plain loop in float64."""
    n_items, n_ctx, dim, size = 300, 24, 16, 60
    g = torch.Generator().manual_seed(23)
    vectors = torch.cat([torch.zeros(1, dim), torch.randn(n_items, dim, generator=g)]).double()
    queries = torch.randn(n_ctx, dim, generator=g).double()
    contexts = torch.arange(n_ctx)
    sampler = AdaSIRSampler(n_items, num_contexts=n_ctx, pool_size=10, candidate_size=size, seed=0)
    sampler.refresh_pools(contexts, queries, vectors)
    positives = torch.randint(1, n_items + 1, (n_ctx,), generator=g)
    sampler.candidates[:, :2] = positives[:, None].to(sampler.candidates.dtype)
    rank = sampler.estimate_rank(queries, positives, contexts)
    for c in range(n_ctx):
        pos_score = float(queries[c] @ vectors[positives[c]])
        above = sum(1 for j in sampler.candidates[c].tolist() if float(queries[c] @ vectors[j]) > pos_score)
        assert rank[c].item() == math.floor((n_items - 1) * above / size) + 1


@pytest.mark.parametrize("name", [n for n in SAMPLER_NAMES if not n.startswith("midx")])
def test_padding_has_log_prob_minus_infinity(name):
    """Item 0 is padding: it is never drawn, so its log-probability is -inf for every sampler (issue 10, defect 7)."""
    vectors, queries = mixture(N, D, 8, seed=24)
    sampler = make(name, vectors)
    context = torch.arange(8)
    if name == "adasir":
        sampler.refresh_pools(context, queries, vectors)
    items = torch.tensor([[0, 1, 5, N]]).expand(8, -1)
    log_q = sampler.log_prob(queries, items, context=context)
    assert torch.isneginf(log_q[:, 0]).all(), name
    assert torch.isfinite(log_q[:, 1:]).all(), name
    drawn, _ = sampler.sample(queries, 200, context=context)
    assert drawn.min() >= 1
