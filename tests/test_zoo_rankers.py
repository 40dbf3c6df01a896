"""The ranker zoo: every registered ranker, under every cooperative scheme, learns a structure that only a ranker
can see — found through the registries, no hand-kept list of names — and the DCN/BST layers match their papers."""
from __future__ import annotations

import inspect
import math
from typing import Any

import pytest
import torch

from tandem.config import config_from_dict
from tandem.data.dataset import preprocess
from tandem.data.splits import split_sequential
from tandem.registry import RANKERS
from tandem.training.registry import build_scheme_from_config
from tandem.training.trainer import Trainer, TrainerSettings

from test_cooperative import grouped_raw


def scheme_registry() -> Any:
    """Name -> scheme: the one scheme registry when it exists, else the table of cooperative schemes."""
    import tandem.registry as registry

    schemes = getattr(registry, "SCHEMES", None)
    if schemes is not None:
        return schemes
    from tandem.training.registry import COOPERATIVE

    return COOPERATIVE


def cooperative_schemes() -> list[str]:
    """The registered schemes that train a ranker (their constructor takes one)."""
    schemes = scheme_registry()
    return sorted(name for name in schemes if "ranker" in _parameters(schemes[name]))


def _parameters(component: Any) -> set[str]:
    try:
        return set(inspect.signature(component).parameters)
    except (TypeError, ValueError):
        return set()


# Sizes shrunk for a one-core test, applied to a component only where its constructor declares the option.
SMALL_RANKER = {"embedding_dim": 16, "mlp_hidden": [32], "attention_hidden": 16, "cross_layers": 2,
                "num_heads": 2, "feedforward_dim": 32, "sequence_length": 5, "dropout": 0.0}
SMALL_SCHEME = {"warmup_epochs": 1}  # RankFlow: one independent epoch, then its own flows
MAX_SEQ_LEN = 5


def small_options(component: Any, sizes: dict[str, Any]) -> dict[str, Any]:
    declared = _parameters(component)
    return {key: value for key, value in sizes.items() if key in declared}


@pytest.fixture(scope="module")
def planted():
    """Sequential split of users and items in 4 groups, most interactions inside the user's group: the group is in
    the user and item features (and in the history), which a rank-2 MF retriever cannot express."""
    data = preprocess(grouped_raw(num_users=100, num_items=80, per_user=14, groups=4, seed=3),
                      min_user_interactions=1, min_item_interactions=1)
    return data, split_sequential(data, max_seq_len=MAX_SEQ_LEN)


def ranker_auc(ranker: torch.nn.Module, split) -> float:
    """Mean over test rows of the fraction of unseen non-target items the ranker scores below the target (ties
    count one half): 0.5 in expectation for a random order of the candidates."""
    test = split.test
    rows, num_items = len(test.target_items), ranker.num_items
    items = torch.arange(1, num_items + 1).expand(rows, -1)
    ranker.eval()
    with torch.no_grad():
        scores = ranker.score(dict(test.tensors), items)  # [rows, N]
    target = torch.as_tensor(test.target_items, dtype=torch.long)
    known = torch.zeros(rows, num_items + 1, dtype=torch.bool)
    owner = torch.repeat_interleave(torch.arange(rows), torch.as_tensor(test.known_indptr).diff())
    known[owner, torch.as_tensor(test.known_items, dtype=torch.long)] = True
    known[torch.arange(rows), target] = True
    negative = ~known[:, 1:]
    target_score = scores.gather(1, (target - 1).unsqueeze(1))
    wins = ((scores < target_score).float() + 0.5 * (scores == target_score).float()) * negative
    return (wins.sum(1) / negative.sum(1)).mean().item()


def test_the_zoo_is_found_through_the_registries():
    assert {"deepfm", "din", "dcn", "bst"} <= set(RANKERS)
    assert {"independent", "corr", "rankflow"} <= set(cooperative_schemes())


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ICC's sigmoid-gated cascade trained with BCE (the authors' form, tandem's default) drives every ranker score to
# large negative values within a few epochs (ranker score mean -3.8 after one epoch, -14 after six, per-user AUC
# 0.53-0.54 at lr 0.01 and 0.48 at lr 0.001 on this fixture), while `form: weighted` learns (AUC 0.85): a finding,
# kept visible by a strict xfail that fails as soon as the gated ICC ranker learns.
KNOWN_NOT_LEARNING = {"icc": "ICC's gated cascade + BCE saturates the ranker's scores: it does not learn the order"}


def scheme_params() -> list[Any]:
    return [pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_NOT_LEARNING[name]))
            if name in KNOWN_NOT_LEARNING else name for name in cooperative_schemes()]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("scheme", scheme_params())
@pytest.mark.parametrize("ranker", list(RANKERS))
def test_ranker_learns_under_scheme(planted, ranker, scheme):
    """Two epochs on the planted fixture; the model kept is the best epoch by validation pipeline NDCG@10. An
    untrained ranker scores 0.46-0.60 here (3 seeds x 4 rankers), trained ones 0.77-0.87; the rank-2 MF retriever
    stays near 0.5."""
    data, split = planted
    config = config_from_dict({
        "task": "sequential",
        "seed": 0,
        "data": {"max_seq_len": MAX_SEQ_LEN},
        "retriever": {"name": "mf", "embedding_dim": 2},
        "ranker": {"name": ranker, **small_options(RANKERS[ranker], SMALL_RANKER)},
        "sampler": {"name": "uniform"},
        "scheme": {"name": scheme, **small_options(scheme_registry()[scheme], SMALL_SCHEME)},
        "train": {"epochs": 2, "lr": 0.01, "batch_size": 128, "num_negatives": 10, "patience": 2,
                  "progress": False},
        "eval": {"cutoffs": [10], "retrieval_cutoff": 20, "monitor": "ndcg@10"},
    })
    torch.manual_seed(0)
    trained = build_scheme_from_config(config, data, split)
    Trainer(TrainerSettings.of(config), trained, split).fit()
    auc = ranker_auc(trained.ranker, split)
    assert auc > 0.7, (ranker, scheme, auc)


def test_cross_layers_follow_the_papers_equation():
    """x_{l+1} = x0 x_l^T w_l + b_l + x_l (Wang et al. 2017, eq. 3), with the D x D outer product written out."""
    from tandem.models.rankers.dcn import CrossNetwork

    torch.manual_seed(0)
    cross = CrossNetwork(6, 3)
    with torch.no_grad():
        cross.biases.normal_()
    x0 = torch.randn(4, 6)
    expected = []
    for row in x0:
        x = row
        for w, b in zip(cross.weights, cross.biases):
            x = torch.outer(row, x) @ w + b + x
        expected.append(x)
    torch.testing.assert_close(cross(x0), torch.stack(expected))


def reference_bst_layer(layer: torch.nn.TransformerEncoderLayer, tokens: torch.Tensor, pad: torch.Tensor):
    """One BST block for one sequence [S, T] written from the paper (eval mode, no dropout):
    S = MH(E), S' = LayerNorm(E + S), F = LayerNorm(S' + LeakyReLU(S' W1 + b1) W2 + b2); padded keys ignored."""
    heads, width = layer.self_attn.num_heads, tokens.shape[-1]
    w_q, w_k, w_v = layer.self_attn.in_proj_weight.split(width)
    b_q, b_k, b_v = layer.self_attn.in_proj_bias.split(width)
    q, k, v = (tokens @ w.T + b for w, b in ((w_q, b_q), (w_k, b_k), (w_v, b_v)))
    outputs = []
    for h in range(heads):
        cols = slice(h * width // heads, (h + 1) * width // heads)
        logits = q[:, cols] @ k[:, cols].T / math.sqrt(width // heads)
        logits = logits.masked_fill(pad.unsqueeze(0), float("-inf"))
        outputs.append(torch.softmax(logits, dim=-1) @ v[:, cols])
    attended = torch.cat(outputs, dim=-1) @ layer.self_attn.out_proj.weight.T + layer.self_attn.out_proj.bias
    s1 = torch.nn.functional.layer_norm(tokens + attended, (width,), layer.norm1.weight, layer.norm1.bias,
                                        layer.norm1.eps)
    hidden = torch.nn.functional.leaky_relu(s1 @ layer.linear1.weight.T + layer.linear1.bias)
    ffn = hidden @ layer.linear2.weight.T + layer.linear2.bias
    return torch.nn.functional.layer_norm(s1 + ffn, (width,), layer.norm2.weight, layer.norm2.bias, layer.norm2.eps)


def bst_and_batch():
    from tandem.data.features import FeatureTable
    from tandem.models.rankers.bst import BST

    torch.manual_seed(0)
    genre = FeatureTable("genre", "categorical", torch.tensor([0, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2]), 3)
    age = FeatureTable("age", "numeric", torch.randn(4))
    model = BST(num_users=4, num_items=10, item_features=[genre], user_features=[age], embedding_dim=4,
                sequence_length=4, num_heads=2, mlp_hidden=[8]).eval()
    batch = {"user": torch.tensor([0, 3]), "history": torch.tensor([[0, 0, 5, 7], [2, 9, 4, 1]])}
    return model, batch, torch.tensor([[3, 8, 1], [6, 10, 2]])


def test_bst_scores_follow_the_paper_block_by_block():
    """Tokens [item id, item features, position], positions counted back from the target; one block as the paper
    writes it; the flattened outputs (padding zeroed) with the user's fields through the MLP."""
    model, batch, items = bst_and_batch()
    with torch.no_grad():
        scores = model.score(batch, items)
        for row in range(2):
            for col in range(3):
                sequence = torch.cat([batch["history"][row], items[row, col:col + 1]])  # oldest .. target
                gaps = torch.tensor([4, 3, 2, 1, 0])
                tokens = torch.cat([model.item_embedding(sequence),
                                    model.item_features.layers[0](model.item_features.values_0[sequence]),
                                    model.position_embedding(gaps)], dim=-1)
                pad = sequence == 0
                pad[-1] = False
                out = reference_bst_layer(model.transformer[0], tokens, pad).masked_fill(pad.unsqueeze(-1), 0.0)
                age = model.user_features.layers[0](model.user_features.values_0[batch["user"][row]].view(1))
                expected = model.output(model.mlp(torch.cat([out.flatten(), age]))).squeeze(-1)
                torch.testing.assert_close(scores[row, col], expected, rtol=1e-4, atol=1e-5)


def test_bst_window_padding_order_and_chunks():
    import tandem.models.rankers.bst as bst

    model, batch, items = bst_and_batch()
    with torch.no_grad():
        scores = model.score(batch, items)
        wider = dict(batch, history=torch.cat([torch.zeros(2, 3, dtype=torch.long), batch["history"]], dim=1))
        torch.testing.assert_close(model.score(wider, items), scores)  # more left padding changes nothing
        older = dict(batch, history=torch.cat([torch.tensor([[3], [3]]), batch["history"]], dim=1))
        torch.testing.assert_close(model.score(older, items), scores)  # beyond sequence_length: cut
        swapped = dict(batch, history=batch["history"][:, [0, 1, 3, 2]])
        assert not torch.allclose(model.score(swapped, items)[1], scores[1])  # order matters, unlike a pooling
        limit = bst.CHUNK_ELEMENTS
        bst.CHUNK_ELEMENTS = 1  # one row per chunk
        try:
            torch.testing.assert_close(model.score(batch, items), scores)
        finally:
            bst.CHUNK_ELEMENTS = limit
    torch.testing.assert_close(model.score(batch, items).detach(), scores)  # with gradients: one pass
    with pytest.raises(ValueError, match="history"):
        model.score({"user": batch["user"]}, items)


@pytest.mark.parametrize("name", list(RANKERS))
def test_every_ranker_keeps_the_contract(name):
    """score(batch, items [B, L]) -> finite [B, L] for any L and an empty history; the user's and the item's
    features reach the score; a state_dict restores the scores exactly."""
    from dataclasses import replace

    from tandem.models.rankers import build_ranker
    from test_rankers import NUM_ITEMS, NUM_USERS, a_batch, tables

    options = small_options(RANKERS[name], SMALL_RANKER)

    def make(seed: int = 0, flip_item: int | None = None, flip_user: int | None = None):
        user, item = tables()
        if flip_item is not None:
            values = item["kind"].values.clone()
            values[flip_item] = 3 - values[flip_item]
            item = dict(item, kind=replace(item["kind"], values=values))
        if flip_user is not None:
            values = user["gender"].values.clone()
            values[flip_user] = 3 - values[flip_user]
            user = dict(user, gender=replace(user["gender"], values=values))
        torch.manual_seed(seed)
        return build_ranker(name, num_users=NUM_USERS, num_items=NUM_ITEMS, user_features=user,
                            item_features=item, **options).eval()

    model, batch = make(), a_batch()
    items = torch.randint(1, NUM_ITEMS + 1, (5, 4), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for length in (1, 7):
            scores = model.score(batch, torch.randint(1, NUM_ITEMS + 1, (5, length)))
            assert scores.shape == (5, length) and torch.isfinite(scores).all()
        empty = dict(batch, history=torch.zeros_like(batch["history"]))
        assert torch.isfinite(model.score(empty, items)).all()
        scores = model.score(batch, items)
        flipped_item = make(flip_item=int(items[1, 2])).score(batch, items)
        assert not torch.allclose(flipped_item[1, 2], scores[1, 2])
        flipped_user = make(flip_user=int(batch["user"][3])).score(batch, items)
        assert not torch.allclose(flipped_user[3], scores[3])
        clone = make(seed=99)
        assert not torch.equal(clone.score(batch, items), scores)
        clone.load_state_dict(model.state_dict())
        assert torch.equal(clone.score(batch, items), scores)
    with pytest.raises(ValueError):
        model.score(batch, torch.ones(5, dtype=torch.long))
