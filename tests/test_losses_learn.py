"""Every registered retriever loss trains MF to recover planted rank-4 preferences far better than a random MF."""
import math

import pytest
import torch

from tandem.losses import build_loss
from tandem.losses.registry import LOSS_NAMES
from tandem.models.retrievers.mf import MF
from tandem.sampling import UniformSampler

USERS, ITEMS, RANK, TOP, TRAIN, DIM = 200, 300, 4, 20, 15, 16


def planted():
    """Each user's TOP best items under a rank-4 preference; TRAIN of them for training, the rest for testing."""
    g = torch.Generator().manual_seed(0)
    pref = torch.randn(USERS, RANK, generator=g) @ torch.randn(RANK, ITEMS, generator=g)
    top = pref.topk(TOP, dim=1).indices + 1  # item ids 1..N
    order = torch.rand(USERS, TOP, generator=g).argsort(1)
    top = top.gather(1, order)
    return top[:, :TRAIN], top[:, TRAIN:]


def ndcg_at_10(model, train, test):
    """Full-ranking NDCG@10 of the held-out items, train items and padding masked; naive but exact."""
    with torch.no_grad():
        scores = model.score_all({"user": torch.arange(USERS)})
    scores[:, 0] = -math.inf
    scores.scatter_(1, train, -math.inf)
    top10 = scores.topk(10, dim=1).indices
    hits = (top10[:, :, None] == test[:, None, :]).any(-1).float()
    discounts = 1.0 / torch.log2(torch.arange(2, 12).float())
    ideal = discounts[: test.shape[1]].sum()
    return ((hits * discounts).sum(1) / ideal).mean().item()


def train(name, steps=300, batch=256, negs=16, shared_negs=2, lr=0.02):
    torch.manual_seed(0)
    train_items, test_items = planted()
    model = MF(USERS, ITEMS, DIM)
    random_ndcg = ndcg_at_10(model, train_items, test_items)
    loss_fn = build_loss(name, num_items=ITEMS)
    sampler = UniformSampler(ITEMS, generator=torch.Generator().manual_seed(1))
    users = torch.arange(USERS).repeat_interleave(TRAIN)
    items = train_items.reshape(-1)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    for step in range(steps):
        idx = torch.randint(0, len(users), (batch,))
        user, pos = users[idx], items[idx]
        query = model.query({"user": user})
        table = model.item_vectors()
        pos_score = (query * table[pos]).sum(1)
        pos_log_q = sampler.log_prob(query, pos[:, None]).squeeze(1)
        if loss_fn.shares_negatives:  # every positive against the whole batch's draws: [B, B * n]
            neg, neg_log_q = sampler.sample(query, shared_negs)
            neg_score = query @ table[neg.reshape(-1)].T
            neg_log_q = neg_log_q.reshape(1, -1).expand(batch, -1)
        else:
            neg, neg_log_q = sampler.sample(query, negs)
            neg_score = torch.einsum("bd,bld->bl", query, table[neg])
        rank = None
        if loss_fn.needs_rank_estimate:  # exact rank of the positive among all items (1 = top)
            with torch.no_grad():
                rank = 1.0 + ((query @ table[1:].T) > pos_score[:, None]).sum(1).float()
        loss = loss_fn(pos_score, neg_score, pos_log_q, neg_log_q, rank_estimate=rank).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return random_ndcg, ndcg_at_10(model, train_items, test_items)


@pytest.fixture
def one_thread():
    # tiny matmuls: one intra-op thread is fastest and avoids oversubscription when cores are shared
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_loss_trains_mf_on_planted_structure(name, one_thread):
    random_ndcg, trained_ndcg = train(name)
    assert trained_ndcg > 0.4 and trained_ndcg > 5 * random_ndcg, (random_ndcg, trained_ndcg)
