"""The retriever zoo learns: every registered retriever, with every registered loss and with every registered
sampler, trained for a few epochs on small data with planted structure, ranks validation items clearly better than
a random order does.

Names come from the registries (no list is kept here), so a new retriever, loss or sampler file is tested as soon
as it exists. A retriever that reads `batch["history"]` trains on the sequential task (a Markov walk: the next item
is one or two steps after the last one), the others on the general task (low-rank user-item preferences). The bar
is a multiple of the closed-form NDCG@10 of a uniformly random order of the same rows.
"""
from __future__ import annotations

import functools
import inspect

import numpy as np
import pytest
import torch

from tandem.config import Config
from tandem.data.dataset import InteractionData, preprocess
from tandem.data.splits import EvalSet, Split, split_general, split_sequential
from tandem.data.synthetic import low_rank_interactions, markov_interactions
from tandem.models.retrievers import Retriever, build_retriever
from tandem.registry import RETRIEVERS
from tandem.training.registry import build_scheme_from_config
from tandem.training.trainer import Trainer

MAX_SEQ_LEN = 5
EPOCHS, LR, NUM_NEGATIVES = 4, 0.03, 5
#: trained validation NDCG@10 over chance; the trained models reach 2-7x here, an untrained one about 1x
MARGIN = 1.5
#: small versions of the models, each option given only to the constructors that declare it
SMALL = {"embedding_dim": 16, "hidden_size": 16, "feedforward_dim": 32, "mlp_hidden": [32, 16], "num_layers": 1,
         "window": 3, "dropout": 0.0}
DEFAULTS = Config()


def component_names(kind: str) -> list[str]:
    """Registered loss or sampler names: from `tandem.registry` when it has them, else the older name lists."""
    import tandem.registry as registry

    table = getattr(registry, {"loss": "LOSSES", "sampler": "SAMPLERS"}[kind], None)
    if table is not None:
        return list(table)
    if kind == "loss":
        from tandem.losses.registry import LOSS_NAMES

        return list(LOSS_NAMES)
    from tandem.sampling import SAMPLER_NAMES

    return list(SAMPLER_NAMES)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: the models are tiny, and more threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.lru_cache(maxsize=None)
def dataset(task: str) -> tuple[InteractionData, Split]:
    if task == "general":
        raw = low_rank_interactions(200, 50, per_user=10, rank=3, sharpness=4.0, seed=0)
    else:
        raw = markov_interactions(150, 50, per_user=10, max_hop=2, noise=0.05, seed=0)
    data = preprocess(raw, min_user_interactions=1, min_item_interactions=1)
    split = split_general(data) if task == "general" else split_sequential(data, max_seq_len=MAX_SEQ_LEN)
    return data, split


def row_sets(eval_set: EvalSet, row: int) -> tuple[set[int], set[int]]:
    """(known items, target items) of one evaluation row."""
    known = eval_set.known_items[eval_set.known_indptr[row]:eval_set.known_indptr[row + 1]]
    targets = eval_set.target_items[eval_set.target_indptr[row]:eval_set.target_indptr[row + 1]]
    return set(known.tolist()), set(targets.tolist())


def chance_ndcg(known: set[int], targets: set[int], num_items: int, k: int = 10) -> float:
    """Expected NDCG@k of a uniformly random order of a row's M candidates (the items not known to the row, its
    targets included): each target lands at each rank with probability 1/M, so the expected DCG is
    T/M * sum_{r < min(k, M)} 1/log2(r + 2), over the ideal DCG of min(T, k) targets."""
    discounts = 1.0 / np.log2(np.arange(num_items) + 2.0)
    candidates = num_items - len(known - targets)
    return len(targets) / candidates * discounts[: min(k, candidates)].sum() / discounts[: min(len(targets), k)].sum()


def mean_chance_ndcg(eval_set: EvalSet, num_items: int) -> float:
    return float(np.mean([chance_ndcg(*row_sets(eval_set, row), num_items) for row in range(len(eval_set))]))


@functools.lru_cache(maxsize=None)
def reads_history(name: str) -> bool:
    """Whether retriever `name` reads `batch["history"]`: asked of the model, with a batch that has none."""
    model = build_retriever(name, num_users=2, num_items=3, max_seq_len=MAX_SEQ_LEN).eval()
    try:
        with torch.no_grad():
            model.query({"user": torch.zeros(1, dtype=torch.long)})
    except KeyError:
        return True
    return False


def hook_missing(name: str) -> bool:
    """The retriever trains partly through `auxiliary_loss`, which the Retriever base class (and so no scheme)
    knows yet: until it does, the model trains without that part of its objective."""
    return "auxiliary_loss" in vars(RETRIEVERS[name]) and not hasattr(Retriever, "auxiliary_loss")


def build(config: Config, data: InteractionData, split: Split):
    torch.manual_seed(config.seed)
    return build_scheme_from_config(config, data, split)


def train(retriever: str, loss: str, sampler: str) -> tuple[float, float]:
    """(chance, trained) validation NDCG@10 of `retriever` trained with `loss` on `sampler`'s negatives."""
    task = "sequential" if reads_history(retriever) else "general"
    data, split = dataset(task)
    declared = inspect.signature(RETRIEVERS[retriever]).parameters
    config = Config(task=task, seed=0)
    config.retriever = {"name": retriever, **{key: value for key, value in SMALL.items() if key in declared}}
    config.loss = {"name": loss}
    config.sampler = {"name": sampler, "num_clusters": 4}
    config.train.epochs, config.train.lr, config.train.num_negatives = EPOCHS, LR, NUM_NEGATIVES
    config.train.batch_size, config.train.eval_every, config.train.patience = 256, EPOCHS, EPOCHS
    config.train.progress = False
    scheme = build(config, data, split)
    if getattr(scheme.loss, "needs_rank_estimate", False) and not hasattr(scheme.sampler, "estimate_rank"):
        # a loss weighted by the positive's rank needs a sampler that estimates it: the first registered one that does
        for other in component_names("sampler"):
            config.sampler = {"name": other, "num_clusters": 4}
            scheme = build(config, data, split)
            if hasattr(scheme.sampler, "estimate_rank"):
                break
    result = Trainer(config, scheme, split).fit()
    return mean_chance_ndcg(split.valid, data.num_items), float(result.valid["ndcg@10"])


def check_learns(request: pytest.FixtureRequest, retriever: str, loss: str, sampler: str) -> None:
    if hook_missing(retriever):
        request.applymarker(pytest.mark.xfail(reason="Retriever.auxiliary_loss is not called by the schemes yet",
                                              strict=False))
    chance, trained = train(retriever, loss, sampler)
    assert trained > MARGIN * chance, (chance, trained)


@pytest.mark.parametrize("loss", component_names("loss"))
@pytest.mark.parametrize("retriever", list(RETRIEVERS))
def test_every_retriever_learns_with_every_loss(request, retriever, loss):
    check_learns(request, retriever, loss, DEFAULTS.sampler["name"])


@pytest.mark.parametrize("sampler", [name for name in component_names("sampler") if name != DEFAULTS.sampler["name"]])
@pytest.mark.parametrize("retriever", list(RETRIEVERS))
def test_every_retriever_learns_with_every_sampler(request, retriever, sampler):
    check_learns(request, retriever, DEFAULTS.loss["name"], sampler)


def test_chance_ndcg_matches_shuffled_rankings():
    """The closed form agrees with the mean NDCG@10 of many random orders of a row's candidates (a plain loop)."""
    data, split = dataset("general")
    rng = np.random.default_rng(0)
    for row in range(0, len(split.valid), 50):
        known, targets = row_sets(split.valid, row)
        candidates = [item for item in range(1, data.num_items + 1) if item not in known or item in targets]
        ideal = sum(1 / np.log2(rank + 2) for rank in range(min(len(targets), 10)))
        ndcg = [sum(1 / np.log2(rank + 2) for rank, item in enumerate(rng.permutation(candidates)[:10])
                    if item in targets) / ideal for _ in range(2000)]
        assert abs(np.mean(ndcg) - chance_ndcg(known, targets, data.num_items)) < 0.015


def test_the_zoo_is_found_through_the_registry():
    """Every retriever module's class is registered, and each one builds with its defaults and scores every item
    by the inner product of its query and item table (row 0, the padding item, included)."""
    for name in RETRIEVERS:
        model = build_retriever(name, num_users=4, num_items=9, max_seq_len=MAX_SEQ_LEN).eval()
        batch = {"user": torch.tensor([0, 3]), "history": torch.tensor([[0, 0, 0, 1, 2], [3, 4, 5, 6, 7]])}
        with torch.no_grad():
            query, table, scores = model.query(batch), model.item_vectors(), model.score_all(batch)
        assert table.shape[0] == 10 and query.shape == (2, table.shape[1])
        expected = torch.stack([torch.stack([torch.dot(query[b], table[i]) for i in range(10)]) for b in range(2)])
        torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-5)
