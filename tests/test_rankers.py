"""Rankers (DeepFM, DIN) and the shared feature embedding."""
from __future__ import annotations

import pytest
import torch

from tandem.data.features import FeatureTable
from tandem.losses.sampled_softmax import sampled_softmax
from tandem.models.rankers import FeatureEmbedding, build_ranker
from tandem.models.rankers.deepfm import DeepFM
from tandem.models.rankers.din import DIN
from tandem.models.rankers.din import ActivationUnit

NUM_USERS, NUM_ITEMS = 40, 30


def tables(seed: int = 0, num_users: int = NUM_USERS, num_items: int = NUM_ITEMS):
    g = torch.Generator().manual_seed(seed)
    user = {
        "gender": FeatureTable("gender", "categorical", torch.randint(1, 3, (num_users,), generator=g), 3),
        "age": FeatureTable("age", "numeric", torch.randn(num_users, generator=g)),
    }
    genres = torch.randint(0, 6, (num_items + 1, 3), generator=g)
    genres[0] = 0
    kind = torch.randint(1, 3, (num_items + 1,), generator=g)
    kind[0] = 0
    item = {
        "kind": FeatureTable("kind", "categorical", kind, 3),
        "genres": FeatureTable("genres", "multi", genres, 6),
        "year": FeatureTable("year", "numeric", torch.randn(num_items + 1, generator=g)),
    }
    return user, item


def make(name: str, seed: int = 0, **options):
    torch.manual_seed(seed)
    user, item = tables()
    return build_ranker(name, num_users=NUM_USERS, num_items=NUM_ITEMS, user_features=user, item_features=item,
                        **options)


def a_batch(batch_size: int = 5, history_len: int = 6, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    history = torch.randint(1, NUM_ITEMS + 1, (batch_size, history_len), generator=g)
    history[:, :2] = 0  # left padding
    history[0] = 0  # an empty history
    return {
        "user": torch.randint(0, NUM_USERS, (batch_size,), generator=g),
        "history": history,
        "item": torch.randint(1, NUM_ITEMS + 1, (batch_size,), generator=g),
    }


RANKERS = [("deepfm", {}), ("deepfm", {"use_history": True}), ("din", {}), ("din", {"use_user_id": True})]


@pytest.mark.parametrize("name,options", RANKERS)
def test_shapes_and_empty_history(name, options):
    model = make(name, **options).eval()
    batch = a_batch()
    for length in (1, 7):
        items = torch.randint(1, NUM_ITEMS + 1, (5, length))
        scores = model.score(batch, items)
        assert scores.shape == (5, length) and torch.isfinite(scores).all()
    empty = dict(batch, history=torch.zeros(5, 6, dtype=torch.long))
    assert torch.isfinite(model.score(empty, torch.randint(1, NUM_ITEMS + 1, (5, 4)))).all()
    with pytest.raises(ValueError):
        model.score(batch, torch.ones(5, dtype=torch.long))


@pytest.mark.parametrize("name,options", RANKERS)
def test_features_change_outputs(name, options):
    model = make(name, **options).eval()
    batch = a_batch()
    items = torch.randint(1, NUM_ITEMS + 1, (5, 4))
    before = model.score(batch, items)
    with torch.no_grad():
        kind = model.item_features.values_0  # the item's categorical 'kind'
        kind[items[1, 2]] = 3 - kind[items[1, 2]]
    after_item = model.score(batch, items)
    assert not torch.allclose(before[1, 2], after_item[1, 2])
    with torch.no_grad():
        gender = model.user_features.values_0
        gender[batch["user"][3]] = 3 - gender[batch["user"][3]]
    after_user = model.score(batch, items)
    assert not torch.allclose(after_item[3], after_user[3])


@pytest.mark.parametrize("name,options", RANKERS)
def test_eval_determinism_state_dict_and_dropout(name, options):
    model = make(name, **options)
    batch, items = a_batch(), torch.randint(1, NUM_ITEMS + 1, (5, 4))
    model.eval()
    first = model.score(batch, items)
    assert torch.equal(first, model.score(batch, items))
    state = model.state_dict()
    assert any("values_" in key for key in state)  # feature tables travel with the model
    clone = make(name, seed=99, **options).eval()
    assert not torch.equal(clone.score(batch, items), first)
    clone.load_state_dict(state)
    assert torch.equal(clone.score(batch, items), first)
    model.train()
    assert not torch.equal(model.score(batch, items), model.score(batch, items))  # dropout 0.3 is on


@pytest.mark.parametrize("options", [{}, {"use_user_id": True}])
def test_din_padding_has_no_influence(options):
    model = make("din", **options).eval()
    batch, items = a_batch(), torch.randint(1, NUM_ITEMS + 1, (5, 4))
    before = model.score(batch, items)
    with torch.no_grad():  # whatever the padding row's embedding and features are, nothing changes
        model.item_embedding.weight[0].normal_()
        model.item_features.values_0[0] = 2
        model.item_features.values_2[0] = 5.0
    assert torch.allclose(model.score(batch, items), before, atol=1e-6)
    padded = dict(batch, history=torch.cat([torch.zeros(5, 9, dtype=torch.long), batch["history"]], dim=1))
    assert torch.allclose(model.score(padded, items), before, atol=1e-6)
    changed = batch["history"].clone()
    changed[1, -1] = changed[1, -1] % NUM_ITEMS + 1  # a real (non-padding) position does matter
    assert not torch.allclose(model.score(dict(batch, history=changed), items)[1], before[1])


def test_deepfm_history_field_ignores_padding():
    model = make("deepfm", use_history=True).eval()
    batch, items = a_batch(), torch.randint(1, NUM_ITEMS + 1, (5, 4))
    before = model.score(batch, items)
    padded = dict(batch, history=torch.cat([torch.zeros(5, 3, dtype=torch.long), batch["history"]], dim=1))
    assert torch.allclose(model.score(padded, items), before, atol=1e-6)
    no_history = {key: value for key, value in batch.items() if key != "history"}
    assert torch.allclose(model.score(no_history, items)[0], before[0], atol=1e-6)  # row 0's history is empty


def test_activation_unit_equals_concatenation():
    unit = ActivationUnit(8, 16)
    history, candidates = torch.randn(3, 5, 8), torch.randn(3, 4, 8)
    torch.testing.assert_close(unit(history, candidates), unit.reference(history, candidates))


def test_feature_embedding_kinds():
    multi = FeatureTable("tags", "multi", torch.tensor([[0, 0], [1, 2], [2, 0]]), 3)
    numeric = FeatureTable("x", "numeric", torch.tensor([0.0, float("nan"), 2.0]))
    embedding = FeatureEmbedding({"tags": multi, "x": numeric}, dim=4)
    out = embedding(torch.tensor([0, 1, 2]))
    assert out.shape == (3, 2, 4)
    weights = embedding.layers[0].weight
    assert torch.all(out[0, 0] == 0)
    torch.testing.assert_close(out[1, 0], (weights[1] + weights[2]) / 2)
    torch.testing.assert_close(out[2, 0], weights[2])
    torch.testing.assert_close(out[1, 1], embedding.layers[1].bias)  # NaN counts as the mean, 0
    with pytest.raises(ValueError):
        FeatureEmbedding([multi], dim=4, num_rows=5)
    assert FeatureEmbedding(None, dim=4)(torch.tensor([[1, 2]])).shape == (1, 2, 0, 4)


def test_build_ranker_errors():
    with pytest.raises(ValueError, match="bogus"):
        build_ranker("bogus", num_users=2, num_items=3)
    with pytest.raises(ValueError, match="hidden_size"):
        build_ranker("din", num_users=2, num_items=3, hidden_size=4)
    assert isinstance(build_ranker("deepfm", num_users=2, num_items=3, embedding_dim=8), DeepFM)
    assert isinstance(build_ranker("din", num_users=2, num_items=3, mlp_hidden=[16]), DIN)


def auc_per_user(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over users of P(score of a positive > score of a negative)."""
    greater = (scores.unsqueeze(2) > scores.unsqueeze(1)).float()  # [B, N, N]: item n beats item m
    pairs = labels.unsqueeze(2) & ~labels.unsqueeze(1)
    return ((greater * pairs).sum((1, 2)) / pairs.sum((1, 2)).clamp_min(1)).mean().item()


@pytest.fixture
def one_thread():
    """Small ops on a shared, loaded machine: intra-op threads only wait on each other (x15 slower seen)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", ["deepfm", "din"])
def test_learns_xor_of_user_and_item_features(name):
    """The positive is an item whose category differs from the user's group (XOR): no main effect helps."""
    num_users, num_items, steps, batch_size = 300, 60, 300, 64
    g = torch.Generator().manual_seed(7)
    group = torch.randint(1, 3, (num_users,), generator=g)
    category = torch.randint(1, 3, (num_items + 1,), generator=g)
    category[0] = 0
    user_features = [FeatureTable("group", "categorical", group, 3),
                     FeatureTable("noise", "numeric", torch.randn(num_users, generator=g))]
    item_features = [FeatureTable("category", "categorical", category, 3)]
    torch.manual_seed(0)
    model = build_ranker(name, num_users=num_users, num_items=num_items, user_features=user_features,
                         item_features=item_features, embedding_dim=16)
    all_items = torch.arange(1, num_items + 1)
    positive_mask = group.unsqueeze(1) != category[all_items].unsqueeze(0)  # [U, N]

    def batch_of(users: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"user": users, "history": torch.randint(1, num_items + 1, (len(users), 5), generator=g)}

    test_users = torch.arange(0, num_users, 3)
    test_batch = batch_of(test_users)

    def auc() -> float:
        model.eval()
        with torch.no_grad():
            scores = model.score(test_batch, all_items.expand(len(test_users), -1))
        model.train()
        return auc_per_user(scores, positive_mask[test_users])

    initial = auc()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        users = torch.randint(0, num_users, (batch_size,), generator=g)
        # a positive drawn uniformly among the user's positive items
        weights = positive_mask[users].float()
        positives = torch.multinomial(weights, 1, generator=g).squeeze(1) + 1
        negatives = torch.randint(1, num_items + 1, (batch_size, 20), generator=g)
        batch = batch_of(users)
        scores = model.score(batch, torch.cat([positives.unsqueeze(1), negatives], dim=1))
        loss = sampled_softmax(scores[:, 0], scores[:, 1:]).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    final = auc()
    assert abs(initial - 0.5) < 0.2
    assert final > 0.9, (initial, final)


def test_din_history_positions_make_it_order_aware():
    """The paper's DIN pools the history by attention and is blind to its order; with `history_positions` the
    same history in another order scores differently, and the newest item's position vector is row-independent."""
    from tandem.models.rankers.din import DIN

    torch.manual_seed(0)
    batch = {"history": torch.tensor([[0, 3, 4, 5]])}
    swapped = {"history": torch.tensor([[0, 5, 4, 3]])}
    items = torch.tensor([[1, 2, 6]])
    blind, aware = DIN(2, 10, embedding_dim=8).eval(), DIN(2, 10, embedding_dim=8, history_positions=3).eval()
    gap = lambda model: (model.score(batch, items) - model.score(swapped, items)).abs().max().item()  # noqa: E731
    assert gap(blind) < 1e-7 and gap(aware) > 1e-5  # at init the weights are small (std 0.1): so is the gap
    with pytest.raises(ValueError, match="history_positions"):
        DIN(2, 10, history_positions=-1)
