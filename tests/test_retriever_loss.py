"""`retriever_loss` (training/schemes.py): the proposal of shared in-batch negatives and accidental-hit masking."""
from __future__ import annotations

import math

import pytest
import torch

from tandem.losses import build_loss
from tandem.sampling import AdaSIRSampler, ExactSampler
from tandem.sampling.base import Sampler
from tandem.training.schemes import retriever_loss

N, D, B = 30, 6, 5


class Vectors:
    """The part of a retriever that `retriever_loss` uses when the query is given: the item table."""

    def __init__(self, vectors: torch.Tensor) -> None:
        self.vectors = vectors

    def item_vectors(self) -> torch.Tensor:
        return self.vectors

    def training_item_vectors(self) -> torch.Tensor:
        return self.vectors


class Capture:
    """A loss that records what `retriever_loss` gives it."""

    def __init__(self, shares_negatives: bool) -> None:
        self.shares_negatives = shares_negatives
        self.needs_rank_estimate = False
        self.seen: dict[str, torch.Tensor] = {}

    def __call__(self, pos_score, neg_score, pos_log_q, neg_log_q, hit_mask=None):
        self.seen = {"pos_score": pos_score, "neg_score": neg_score, "pos_log_q": pos_log_q,
                     "neg_log_q": neg_log_q, "hit_mask": hit_mask}
        return torch.zeros_like(pos_score)


class Fixed(Sampler):
    """Draws given items with uniform log Q (a static sampler whose draws a test chooses)."""

    def __init__(self, items: torch.Tensor) -> None:
        super().__init__(N)
        self.items = items

    def sample(self, query, num, context=None):
        return self.items, torch.full(self.items.shape, -math.log(N))

    def log_prob(self, query, items, context=None):
        return torch.full(items.shape, -math.log(N))


class Recording(Sampler):
    """Wraps a sampler and keeps its last draws, so a test knows which items were shared."""

    def __init__(self, inner: Sampler) -> None:
        super().__init__(inner.num_items)
        self.inner = inner
        self.items: torch.Tensor | None = None

    @property
    def adaptive(self) -> bool:
        return self.inner.adaptive

    def sample(self, query, num, context=None):
        self.items, log_q = self.inner.sample(query, num, context=context)
        return self.items, log_q

    def log_prob(self, query, items, context=None):
        return self.inner.log_prob(query, items, context=context)


def setup(seed: int):
    g = torch.Generator().manual_seed(seed)
    vectors = torch.cat([torch.zeros(1, D), torch.randn(N, D, generator=g)])
    queries = torch.randn(B, D, generator=g)
    positives = torch.randint(1, N + 1, (B,), generator=g)
    return vectors, queries, positives


def test_shared_negatives_of_an_adaptive_sampler_use_the_batch_mixture():
    """Shared items were drawn by different rows: their proposal is (1/B) sum_j Q(.|c_j), for every row and for the
    positive's correction too (issue 10, defect 3). Q(.|c_j) = softmax(q_j V / T), written out by a loop."""
    vectors, queries, positives = setup(0)
    exact = ExactSampler(N, temperature=0.7, seed=0)
    exact.refresh(vectors)
    sampler = Recording(exact)
    loss = Capture(shares_negatives=True)
    retriever_loss(Vectors(vectors), sampler, loss, 3, {"item": positives}, query=queries)
    seen = loss.seen
    assert seen["neg_score"].shape == (B, 3 * B)
    probs = [torch.softmax(queries[j].double() @ vectors[1:].double().T / 0.7, 0) for j in range(B)]

    def mixture(item: int) -> float:
        return math.log(sum(float(p[item - 1]) for p in probs) / B)

    shared = sampler.items.reshape(-1).tolist()
    for b in range(B):
        for k, item in enumerate(shared):
            assert seen["neg_log_q"][b, k].item() == pytest.approx(mixture(item), abs=1e-4), (b, k)
        assert seen["pos_log_q"][b].item() == pytest.approx(mixture(int(positives[b])), abs=1e-4), b


def test_shared_negatives_of_adasir_use_the_batch_mixture_of_its_weights():
    """The same mixture with AdaSIR: row j's Q(i|c_j) is the sampler's w(i|c_j) (seed 003 eq. 1)."""
    vectors, queries, positives = setup(1)
    contexts = torch.arange(B)
    adasir = AdaSIRSampler(N, num_contexts=B, pool_size=20, candidate_size=40, seed=0)
    adasir.refresh_pools(contexts, queries, vectors)
    sampler = Recording(adasir)
    loss = Capture(shares_negatives=True)
    retriever_loss(Vectors(vectors), sampler, loss, 2, {"item": positives, "context": contexts}, query=queries)
    every = torch.arange(1, N + 1).expand(B, -1)
    weights = adasir.log_prob(queries, every, context=contexts).double().exp()  # [B, N]: w(i | c_j)
    mix = torch.log(weights.mean(0))
    for k, item in enumerate(sampler.items.reshape(-1).tolist()):
        assert torch.allclose(loss.seen["neg_log_q"][:, k].double(), mix[item - 1].expand(B), atol=1e-4), k


@pytest.mark.parametrize("shared", [False, True])
def test_accidental_hits_reach_the_loss_as_a_mask(shared):
    """Negatives equal to the row's positive are flagged, in the row's own draws and among shared draws."""
    vectors, queries, positives = setup(2)
    draws = torch.randint(1, N + 1, (B, 4), generator=torch.Generator().manual_seed(3))
    draws[0, 1] = positives[0]
    draws[2, :] = positives[2]
    loss = Capture(shares_negatives=shared)
    retriever_loss(Vectors(vectors), Fixed(draws), loss, 4, {"item": positives}, query=queries)
    columns = draws.reshape(1, -1).expand(B, -1) if shared else draws
    expected = torch.tensor([[int(columns[b, k]) == int(positives[b]) for k in range(columns.shape[1])]
                             for b in range(B)])
    assert torch.equal(loss.seen["hit_mask"], expected)


def test_sampled_softmax_of_a_scheme_leaves_accidental_hits_out():
    """End to end: the retriever's sampled softmax over draws that include the positive equals the naive loss over
    the other draws."""
    vectors, queries, positives = setup(4)
    draws = torch.randint(1, N + 1, (B, 4), generator=torch.Generator().manual_seed(5))
    draws[1, 0] = draws[1, 3] = positives[1]
    got = retriever_loss(Vectors(vectors), Fixed(draws), build_loss("softmax", num_items=N), 4,
                         {"item": positives}, query=queries)
    total = 0.0
    for b in range(B):
        pos = float(queries[b] @ vectors[positives[b]])
        logits = [pos] + [float(queries[b] @ vectors[i]) for i in draws[b].tolist() if i != int(positives[b])]
        total += math.log(sum(math.exp(x) for x in logits)) - pos  # uniform log Q cancels
    assert got.item() == pytest.approx(total / B, abs=1e-5)


def test_adasir_loss_of_a_scheme_corrects_by_the_resampling_weight():
    """End to end, seed 003 eq. 1: w_hat(j|c) = exp(r_cj - log w(j|c)) / sum over the row's (non-hit) draws, with
    log w(j|c) = r'_cj - log Q(j) - log sum_{K_c} exp(r' - log Q) written out from the pool's candidates."""
    vectors, queries, positives = setup(6)
    contexts = torch.arange(B)
    adasir = AdaSIRSampler(N, num_contexts=B, pool_size=15, candidate_size=25, seed=0)
    adasir.refresh_pools(contexts, queries, vectors)
    sampler = Recording(adasir)
    moved = queries + 0.3  # the model moved since the refresh: r (current) differs from r' (refresh)
    got = retriever_loss(Vectors(vectors), sampler, build_loss("adasir", num_items=N), 6,
                         {"item": positives, "context": contexts}, query=moved)
    total = 0.0
    for b in range(B):
        cands = adasir.candidates[b].tolist()
        logits = [float(queries[b] @ vectors[j]) + math.log(N) for j in cands]  # r'_cj - log Q(j), Q uniform
        log_norm = math.log(sum(math.exp(x) for x in logits))
        log_w = {j: x - log_norm for j, x in zip(cands, logits)}
        pos = float(moved[b] @ vectors[positives[b]])
        draws = [j for j in sampler.items[b].tolist() if j != int(positives[b])]
        scores = [float(moved[b] @ vectors[j]) for j in draws]
        weights = [math.exp(r - log_w[j]) for j, r in zip(draws, scores)]
        total += sum(w / sum(weights) * math.log1p(math.exp(r - pos)) for w, r in zip(weights, scores))
    assert got.item() == pytest.approx(total / B, abs=1e-5)
