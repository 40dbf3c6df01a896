"""MIDX draw paths (issue 10, sec. 3): draws follow Q^ = exp(log_prob) by a chi-square test on every path (joint
over the non-empty cells, two steps, and their log-space fallbacks), a draw's log_q is its log_prob bit for bit,
padding is never scored or drawn, and a rebuild still refuses non-finite vectors."""
import numpy as np
import pytest
import torch
from scipy import stats

from tandem.sampling.midx import MIDXSampler

N, D, K = 200, 8, 4


def chi_square_p(items: torch.Tensor, probs: torch.Tensor) -> float:
    """p-value of the draws `items` (ids 1..N) against `probs` [N]; bins expected < 5 pooled; a draw of an item of
    probability 0 fails outright."""
    counts = torch.bincount(items.reshape(-1) - 1, minlength=probs.shape[0]).double().numpy()
    expected = probs.double().numpy() * counts.sum()
    assert counts[expected < 1e-12].sum() == 0, "an item of probability 0 was drawn"
    small = expected < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    keep = exp > 0
    return float(stats.chisquare(obs[keep], exp[keep] * obs[keep].sum() / exp[keep].sum()).pvalue)


def cell_vectors(cells: list[tuple[int, int]], seed: int) -> torch.Tensor:
    """Items [N+1, D] that are concatenations of 4 distinct half-vectors per half, spread over the given cells
    (k-means with K = 4 recovers them exactly); row 0 is padding."""
    gen = torch.Generator().manual_seed(seed)
    halves1, halves2 = torch.randn(K, D // 2, generator=gen), torch.randn(K, D // 2, generator=gen)
    pick = torch.tensor(cells)[torch.arange(N) % len(cells)]
    vectors = torch.cat([halves1[pick[:, 0]], halves2[pick[:, 1]]], dim=1)
    return torch.cat([torch.zeros(1, D), vectors])


def counts_for(seed: int) -> np.ndarray:
    c = np.random.default_rng(seed).zipf(1.7, N + 1).clip(max=50).astype(np.int64)
    c[0] = 0
    return c


def query_with_logits(sampler: MIDXSampler, s1: list[float], s2: list[float]) -> torch.Tensor:
    """A query whose cluster logits are exactly (to float precision) s1 and s2: solve <z_h, w_h,k> / T = s_h,k."""
    w1, w2 = (c.double() for c in sampler.centroids)
    t = sampler.temperature
    z1 = torch.linalg.solve(w1, torch.tensor(s1, dtype=torch.float64) * t)
    z2 = torch.linalg.solve(w2, torch.tensor(s2, dtype=torch.float64) * t)
    return torch.cat([z1, z2]).float().unsqueeze(0)


# every cell but (0, 1..3) and (1..3, 0): C = 10 non-empty, at most R = 3 per row
SPARSE = [(0, 0)] + [(a, b) for a in range(1, K) for b in range(1, K)]
DENSE = [(a, b) for a in range(K) for b in range(K)]


def spy_paths(monkeypatch) -> list[str]:
    taken: list[str] = []
    for name in ("_draw_cells_joint", "_draw_cells_two_step"):
        original = getattr(MIDXSampler, name)

        def wrapped(self, *args, _original=original, _name=name):
            taken.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(MIDXSampler, name, wrapped)
    return taken


@pytest.mark.parametrize("popularity", [False, True])
@pytest.mark.parametrize("cells, num, path", [
    (DENSE, 40, "_draw_cells_joint"),       # C = 16 <= K + num R
    (DENSE, 1, "_draw_cells_two_step"),     # C = 16 > 4 + 1 * 4
    (SPARSE, 1, "_draw_cells_two_step"),    # C = 10 > 4 + 1 * 3
    (SPARSE, 30, "_draw_cells_joint"),
])
def test_draws_follow_log_prob_by_chi_square_on_every_path(monkeypatch, popularity, cells, num, path):
    taken = spy_paths(monkeypatch)
    vectors = cell_vectors(cells, seed=1)
    sampler = MIDXSampler(N, num_clusters=K, temperature=0.5, seed=0,
                          item_counts=counts_for(2) if popularity else None)
    sampler.refresh(vectors)
    assert int((sampler.cell_counts > 0).sum()) == len(cells)
    for row, query in enumerate(torch.randn(2, D, generator=torch.Generator().manual_seed(3))):
        q = query.expand(12000 // num, -1).contiguous()
        items, log_q = sampler.sample(q, num)
        assert taken[-1] == path
        assert torch.equal(log_q, sampler.log_prob(q, items))  # the one shared formula, bit for bit
        probs = sampler.full_log_prob(query.unsqueeze(0))[0].exp()
        assert abs(float(probs.sum()) - 1) < 1e-4
        assert chi_square_p(items, probs) > 1e-3, (row, path)


@pytest.mark.parametrize("cells, num, path", [
    (SPARSE, 1, "_draw_cells_two_step"),  # psi of row 0 underflows, and so do row 0's k2 weights
    (SPARSE, 30, "_draw_cells_joint"),    # every joint weight underflows in float64
])
def test_underflowing_weights_fall_back_to_log_space(monkeypatch, cells, num, path):
    """s1 = L at the row r0 holding one cell (r0, c0), s2 = L everywhere but c0 (L = 1000): e1 e2 omega underflows
    to 0 for every non-empty cell, yet (r0, c0) and the cells of the other rows tie at L -- the draw must still
    split between them exactly."""
    taken = spy_paths(monkeypatch)
    sampler = MIDXSampler(N, num_clusters=K, temperature=1.0, seed=0)
    sampler.refresh(cell_vectors(cells, seed=4))
    # k-means numbers its clusters its own way: find the row with one non-empty cell, (r0, c0), in its numbering
    r0 = int((sampler.omega > 0).sum(1).argmin())
    c0 = int((sampler.omega[r0] > 0).nonzero()[0, 0])
    s1, s2 = [0.0] * K, [1000.0] * K
    s1[r0], s2[c0] = 1000.0, 0.0
    query = query_with_logits(sampler, s1, s2)
    stats = sampler._query_stats(query)
    joint = stats.e1[:, sampler.nz_k1] * stats.e2[:, sampler.nz_k2] * sampler.nz_omega
    assert bool(stats.exact_rows.all()) and float(joint.max()) == 0.0  # the float64 weights are all gone
    probs = sampler.full_log_prob(query)[0].exp()
    assert abs(float(probs.sum()) - 1) < 1e-3 and float(probs.max()) < 0.05  # float32 logits near 1000: 1e-4 ulps
    q = query.expand(12000 // num, -1).contiguous()
    items, log_q = sampler.sample(q, num)
    assert taken[-1] == path and torch.isfinite(log_q).all()
    assert chi_square_p(items, probs) > 1e-3


@pytest.mark.parametrize("popularity", [False, True])
def test_padding_is_never_scored_nor_drawn(popularity):
    """Item 0 has log_prob -inf and is never drawn (issue 10, defect 7) -- also when the logits overflow to inf,
    where s1 + s2 + log omega - log Z + log P(0 | cell) used to give NaN for it."""
    vectors = cell_vectors(SPARSE, seed=5)
    sampler = MIDXSampler(N, num_clusters=K, seed=0, item_counts=counts_for(6) if popularity else None)
    sampler.refresh(vectors)
    queries = torch.randn(6, D, generator=torch.Generator().manual_seed(7))
    items = torch.tensor([[0, 1, 7, N, 0]]).expand(6, -1)
    log_q = sampler.log_prob(queries, items)
    assert torch.isneginf(log_q[:, [0, 4]]).all() and torch.isfinite(log_q[:, 1:4]).all()
    for num in (1, 50):
        drawn, _ = sampler.sample(queries.repeat(50, 1), num)
        assert drawn.min() >= 1 and drawn.max() <= N
    overflow = sampler.log_prob(queries * 1e38, items)
    assert torch.isneginf(overflow[:, [0, 4]]).all()


def test_rebuild_refuses_non_finite_vectors():
    vectors = cell_vectors(DENSE, seed=8)
    sampler = MIDXSampler(N, num_clusters=K, seed=0)
    sampler.refresh(vectors)
    for bad in (float("nan"), float("inf"), float("-inf")):
        broken = vectors.clone()
        broken[N // 2, 3] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            sampler.refresh(broken)  # a warm rebuild: the check is cheap now, not skipped


def test_bench_compares_sizes_in_one_run(tmp_path):
    """`benchmarks/sampler_bench.py --items A B` measures both sizes and reports the issue-10 goals from one run."""
    from test_sampling_adaptive import sampler_bench

    bench_main = sampler_bench().main

    out = tmp_path / "two.json"
    result = bench_main(["--items", "400", "800", "--queries", "16", "--negatives", "4", "--dim", "8",
                         "--repeats", "1", "--kl-queries", "4", "--out", str(out)])
    assert set(result["runs"]) == {"400", "800"} and result["smallest"] == 400 and result["largest"] == 800
    targets = result["targets"]
    assert targets["midx_speedup_vs_exact_at_largest"] > 0 and targets["midx_time_ratio_largest_over_smallest"] > 0
    assert set(targets["kl_midx_by_size"]) == {"400", "800"}
    assert out.exists() and result["runs"]["800"]["midx_nonempty_cells"] >= 1
