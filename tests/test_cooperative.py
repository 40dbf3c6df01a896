"""Cooperative training: gradient isolation of CoRR, wiring of every scheme, and that cooperation pays off."""
import numpy as np
import pandas as pd
import pytest
import torch

from tandem.config import config_from_dict
from tandem.data.dataset import preprocess
from tandem.data.raw import RawDataset
from tandem.data.splits import split_general, split_sequential
from tandem.data.synthetic import markov_interactions
from tandem.losses.distill import sampled_kl
from tandem.models.rankers import build_ranker
from tandem.models.retrievers.mf import MF
from tandem.sampling import UniformSampler
from tandem.training.cooperative import CoRRScheme
from tandem.training.registry import build_scheme_from_config
from tandem.training.trainer import Trainer, TrainerSettings


def grouped_raw(num_users=300, num_items=200, per_user=30, groups=8, seed=0):
    """Preference = weak rank-2 inner product + a strong 'same group' bonus (an 8-way block structure that a
    2-dimensional inner product cannot express, but that a ranker seeing the group features can)."""
    rng = np.random.default_rng(seed)
    user_group = rng.integers(0, groups, num_users)
    item_group = rng.integers(0, groups, num_items)
    p, q = rng.normal(size=(num_users, 2)), rng.normal(size=(num_items, 2))
    logits = 0.5 * p @ q.T + 4.0 * (user_group[:, None] == item_group[None, :])
    chosen = np.argsort(-(logits + rng.gumbel(size=logits.shape)), axis=1)[:, :per_user]
    frame = pd.DataFrame({
        "user": np.repeat(np.arange(num_users), per_user),
        "item": chosen.reshape(-1) + 1,
        "timestamp": rng.permutation(num_users * per_user).astype(float),
    })
    users = pd.DataFrame({"user": np.arange(num_users), "group": user_group.astype(str)})
    items = pd.DataFrame({"item": np.arange(1, num_items + 1), "group": item_group.astype(str)})
    return RawDataset("grouped", frame, users, items, {"group": "categorical"}, {"group": "categorical"})


def general_config(scheme, **extra):
    raw = {
        "task": "general",
        "retriever": {"name": "mf", "embedding_dim": 2},
        "ranker": {"name": "deepfm", "embedding_dim": 16, "mlp_hidden": [32], "dropout": 0.0},
        "sampler": {"name": "uniform"},
        "scheme": {"name": scheme},
        "train": {"epochs": 12, "lr": 0.01, "batch_size": 256, "num_negatives": 20, "patience": 12, "progress": False},
        "eval": {"cutoffs": [10], "retrieval_cutoff": 50, "monitor": "ndcg@10"},
    }
    raw.update(extra)
    return config_from_dict(raw)


@pytest.fixture(scope="module")
def grouped():
    data = preprocess(grouped_raw(), min_user_interactions=1, min_item_interactions=1)
    return data, split_general(data)


def test_corr_gradients_are_isolated(grouped):
    data, split = grouped
    torch.manual_seed(0)
    retriever = MF(data.num_users, data.num_items, 8)
    ranker = build_ranker("deepfm", num_users=data.num_users, num_items=data.num_items,
                          user_features=data.user_features, item_features=data.item_features, embedding_dim=8)
    scheme = CoRRScheme(retriever, ranker, UniformSampler(data.num_items), 10, sampled_kl, 1.0)
    batch = {key: value[:32] for key, value in split.train.tensors.items()}
    losses = scheme.losses(batch)
    ranker_params = list(ranker.parameters())
    retriever_params = list(retriever.parameters())
    # the ranker's loss reaches no retriever parameter
    grads = torch.autograd.grad(losses["ranker"], retriever_params, allow_unused=True, retain_graph=True)
    assert all(g is None or torch.count_nonzero(g) == 0 for g in grads)
    # the distillation loss reaches no ranker parameter, but does reach the retriever
    grads = torch.autograd.grad(losses["distill"], ranker_params, allow_unused=True, retain_graph=True)
    assert all(g is None or torch.count_nonzero(g) == 0 for g in grads)
    grads = torch.autograd.grad(losses["distill"], retriever_params, allow_unused=True, retain_graph=True)
    assert any(g is not None and torch.count_nonzero(g) > 0 for g in grads)
    # and the retriever's supervised loss reaches no ranker parameter
    grads = torch.autograd.grad(losses["retriever"], ranker_params, allow_unused=True)
    assert all(g is None or torch.count_nonzero(g) == 0 for g in grads)


@pytest.mark.parametrize("scheme", ["independent", "corr", "rankflow", "icc"])
def test_every_scheme_runs_and_reports_both_stages(grouped, scheme):
    data, split = grouped
    config = general_config(scheme, train={"epochs": 1, "batch_size": 512, "progress": False})
    trainer = Trainer(TrainerSettings.of(config), build_scheme_from_config(config, data, split), split)
    result = trainer.fit()
    assert set(result.test) == {"retriever", "pipeline"}
    assert 0.0 <= result.test["pipeline"]["ndcg@10"] <= 1.0


def test_corr_pipeline_beats_the_retriever_alone(grouped):
    data, split = grouped
    torch.manual_seed(0)
    config = general_config("corr")
    result = Trainer(TrainerSettings.of(config), build_scheme_from_config(config, data, split), split).fit()
    retriever, pipeline = result.test["retriever"]["ndcg@10"], result.test["pipeline"]["ndcg@10"]
    assert pipeline > 1.3 * retriever, (retriever, pipeline)


def test_sequential_cooperative_run_with_cutoff_sweep():
    data = preprocess(markov_interactions(60, 80, per_user=15, seed=1), min_user_interactions=1, min_item_interactions=1)
    split = split_sequential(data, max_seq_len=5)
    config = config_from_dict({
        "task": "sequential",
        "retriever": {"name": "sasrec", "embedding_dim": 16},
        "ranker": {"name": "din", "embedding_dim": 16},
        "scheme": {"name": "corr", "distill": "kl"},
        "train": {"epochs": 1, "progress": False},
        "eval": {"cutoffs": [10], "retrieval_cutoff": 20, "cutoff_sweep": [10, 50], "monitor": "ndcg@10"},
    })
    result = Trainer(TrainerSettings.of(config), build_scheme_from_config(config, data, split), split).fit()
    assert set(result.test["cutoff_sweep"]) == {"10", "50"}


def test_corr_consumes_the_loss_section_and_its_distillation_options(grouped):
    """`loss:` is CoRR's retriever loss (the default is Algorithm 1's sampled softmax, the same numbers as before);
    a loss sharing negatives across the batch is refused naming the key; `scheme.distill` takes options."""
    from tandem.errors import TandemError
    from tandem.losses.sampled_softmax import sampled_softmax
    from tandem.run import Prepared, build_scheme

    data, split = grouped
    batch = {key: value[:32] for key, value in split.train.tensors.items()}

    def retriever_term(config):
        torch.manual_seed(0)
        scheme = build_scheme_from_config(config, data, split)
        torch.manual_seed(1)
        return scheme, scheme.losses(batch)["retriever"]

    _, default = retriever_term(general_config("corr"))
    # Algorithm 1's term, recomputed by hand with the same draws (a scheme built the same way, fresh sampler)
    torch.manual_seed(0)
    scheme = build_scheme_from_config(general_config("corr"), data, split)
    query = scheme.retriever.query(batch)
    negatives, neg_log_q = scheme.sampler.sample(query.detach(), 20)
    candidates = torch.cat([batch["item"].unsqueeze(1), negatives], dim=1)
    scores = torch.einsum("bd,bld->bl", query, scheme.retriever.item_vectors()[candidates])
    pos_log_q = scheme.sampler.log_prob(query.detach(), batch["item"].unsqueeze(1)).squeeze(1)
    expected = sampled_softmax(scores[:, 0], scores[:, 1:], pos_log_q, neg_log_q,
                               hit_mask=negatives == batch["item"].unsqueeze(1)).mean()
    assert torch.equal(default, expected)
    _, bpr = retriever_term(general_config("corr", loss={"name": "bpr"}))
    assert not torch.equal(bpr, default)
    with pytest.raises(TandemError, match="loss.shared_negatives"):
        build_scheme(general_config("corr", loss={"name": "croloss"}), Prepared(data, split))
    build_scheme(general_config("corr", loss={"name": "croloss", "shared_negatives": False}), Prepared(data, split))
    config = general_config("corr")
    config.scheme["distill"] = {"name": "rankdistill", "top_k": 3}
    assert build_scheme_from_config(config, data, split).distill.keywords == {"top_k": 3}
    config.scheme["distill"] = "none"
    none = build_scheme_from_config(config, data, split)
    assert none.distill is None and "distill" not in none.losses(batch)
