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
from tandem.training.trainer import Trainer

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
    Trainer(config, trained, split).fit()
    auc = ranker_auc(trained.ranker, split)
    assert auc > 0.7, (ranker, scheme, auc)
