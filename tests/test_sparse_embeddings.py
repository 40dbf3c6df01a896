"""train.sparse_embeddings: the embedding tables' gradients hold only the rows a step used, and a lazy Adam
(SparseAdam) steps them, so a step's cost does not grow with the catalogue."""
import pytest
import torch

from tandem.config import Config
from tandem.data.dataset import preprocess
from tandem.data.splits import split_general, split_sequential
from tandem.data.synthetic import low_rank_interactions, markov_interactions
from tandem.errors import TandemError
from tandem.losses import sampled_softmax
from tandem.models.retrievers.mf import MF
from tandem.models.retrievers.sasrec import SASRec
from tandem.sampling import UniformSampler
from tandem.training.schemes import RetrieverScheme
from tandem.training.trainer import Trainer, TrainerSettings


@pytest.fixture(scope="module")
def general():
    data = preprocess(low_rank_interactions(200, 120, per_user=25, rank=4, sharpness=5.0, seed=0),
                      min_user_interactions=1, min_item_interactions=1)
    return data, split_general(data)


def mf_scheme(data, seed=0):
    torch.manual_seed(seed)
    return RetrieverScheme(MF(data.num_users, data.num_items, 16), UniformSampler(data.num_items,
                           torch.Generator().manual_seed(seed)), sampled_softmax, 10)


def batch_of(split, size=64):
    return {key: value[:size] for key, value in split.train.tensors.items()}


def test_sparse_gradient_equals_the_dense_one_on_the_rows_used(general):
    data, split = general
    batch = batch_of(split)
    dense, sparse = mf_scheme(data), mf_scheme(data)
    sparse.use_sparse_embeddings()
    for scheme in (dense, sparse):
        sum(scheme.losses(batch).values()).backward()
    for name in ("retriever.item_embedding.weight", "retriever.user_embedding.weight"):
        got = dict(sparse.named_parameters())[name].grad
        expected = dict(dense.named_parameters())[name].grad
        assert got.is_sparse, name
        torch.testing.assert_close(got.to_dense(), expected, rtol=1e-5, atol=1e-7)
    touched = sparse.retriever.item_embedding.weight.grad.coalesce().indices()[0]
    assert touched.numel() < data.num_items + 1  # only some rows are carried


def test_lazy_adam_leaves_rows_the_step_did_not_use_untouched(general):
    data, split = general
    scheme = mf_scheme(data)
    scheme.use_sparse_embeddings()
    optimizers = scheme.make_optimizers(lr=0.01, weight_decay=0.0)
    assert set(optimizers) == {"sparse-adam"} == set(scheme.active_optimizers(1))  # MF: tables only
    batch = batch_of(split, 8)
    before = scheme.retriever.user_embedding.weight.detach().clone()
    sum(scheme.losses(batch).values()).backward()
    for optimizer in optimizers.values():
        optimizer.step()
    after = scheme.retriever.user_embedding.weight.detach()
    moved = (after != before).any(dim=1)
    used = torch.zeros_like(moved)
    used[batch["user"]] = True
    assert torch.equal(moved, used)


def test_sasrec_trains_with_sparse_tables_and_learns():
    torch.manual_seed(0)
    data = preprocess(markov_interactions(150, 60, per_user=30, seed=0), min_user_interactions=1,
                      min_item_interactions=1)
    split = split_sequential(data, 10)
    scheme = RetrieverScheme(SASRec(data.num_items, embedding_dim=32, max_seq_len=10, dropout=0.1),
                             UniformSampler(data.num_items, torch.Generator().manual_seed(0)), sampled_softmax, 10)
    config = Config(task="sequential")
    config.train.epochs, config.train.lr, config.train.batch_size, config.train.patience = 4, 0.01, 256, 4
    config.train.progress, config.train.sparse_embeddings = False, True
    trainer = Trainer(TrainerSettings.of(config), scheme, split)
    before = trainer.evaluate("test")["ndcg@10"]
    after = trainer.fit().test["ndcg@10"]
    assert scheme.retriever.item_embedding.sparse
    assert after > 2 * before and after > 0.2


def test_unsupported_combinations_are_one_line_errors(general):
    data, _ = general
    scheme = mf_scheme(data)
    scheme.use_sparse_embeddings()
    with pytest.raises(TandemError, match="weight_decay"):
        scheme.make_optimizers(lr=0.01, weight_decay=1e-4)
    cosine = RetrieverScheme(MF(data.num_users, data.num_items, 8, similarity="cosine"),
                             UniformSampler(data.num_items), sampled_softmax, 5)
    with pytest.raises(TandemError, match="similarity"):
        cosine.use_sparse_embeddings()


def cooperative_scheme(data, kind: str, ranker_name: str = "deepfm", seed: int = 0):
    from tandem.losses.distill import sampled_kl
    from tandem.models.rankers import build_ranker
    from tandem.training.cooperative import CoRRScheme, IndependentScheme

    torch.manual_seed(seed)
    retriever = MF(data.num_users, data.num_items, 8)
    ranker = build_ranker(ranker_name, num_users=data.num_users, num_items=data.num_items, embedding_dim=8)
    sampler = UniformSampler(data.num_items, torch.Generator().manual_seed(seed))
    if kind == "corr":
        return CoRRScheme(retriever, ranker, sampler, 10, sampled_kl, 1.0)
    return IndependentScheme(retriever, ranker, sampler, sampled_softmax, 10, seed=seed)


@pytest.mark.parametrize("kind", ["corr", "independent"])
def test_first_cooperative_step_with_sparse_tables_follows_adam_in_closed_form(general, kind):
    """From the same start and batch: the tables' gradients are sparse and equal the dense ones; one lazy Adam step
    moves each table entry by Kingma & Ba's first step, -lr * sqrt(1 - b2) g / (sqrt(1 - b2) |g| + eps) (rows the
    step did not use stay), for retriever and ranker alike; every other parameter takes dense Adam's step."""
    data, split = general
    batch = batch_of(split)
    lr = 0.01
    dense, sparse = cooperative_scheme(data, kind), cooperative_scheme(data, kind)
    sparse.use_sparse_embeddings()
    start = {name: parameter.detach().clone() for name, parameter in sparse.named_parameters()}
    gradients = {}
    for scheme in (dense, sparse):
        optimizers = scheme.make_optimizers(lr=lr, weight_decay=0.0)
        torch.manual_seed(1)  # the same dropout masks in both
        sum(scheme.losses(batch).values()).backward()
        gradients[scheme is sparse] = {name: parameter.grad for name, parameter in scheme.named_parameters()}
        for optimizer in optimizers.values():
            optimizer.step()
    assert set(sparse.make_optimizers(lr=lr, weight_decay=0.0)) == {"adam", "sparse-adam"}
    tables = {id(parameter) for parameter in sparse.sparse_parameters}
    named = dict(sparse.named_parameters())
    assert {"retriever.item_embedding.weight", "ranker.item_embedding.weight",
            "ranker.user_embedding.weight"} <= {name for name, p in named.items() if id(p) in tables}
    b2, eps = 0.999, 1e-8  # Adam's defaults
    for name, parameter in dense.named_parameters():
        got = named[name].detach()
        if id(named[name]) in tables:
            g = gradients[True][name]
            assert g.is_sparse, name
            g = g.to_dense()
            torch.testing.assert_close(g, gradients[False][name], rtol=1e-6, atol=1e-9, msg=name)
            c = (1 - b2) ** 0.5
            expected = start[name] - lr * c * g / (c * g.abs() + eps)
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7, msg=name)
        else:
            torch.testing.assert_close(got, parameter.detach(), rtol=1e-6, atol=1e-8, msg=name)


def test_cooperative_sparse_needs_a_ranker_with_lookups_only(general):
    data, _ = general
    scheme = cooperative_scheme(data, "corr")
    scheme.ranker.sparse_lookups = False  # as a ranker that reads a table's weight directly declares itself
    with pytest.raises(TandemError, match="lookups only"):
        scheme.use_sparse_embeddings()


def load_scaling_benchmark():
    """benchmarks/scaling.py (a command beside the library) as a module."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "scaling.py"
    spec = importlib.util.spec_from_file_location("scaling_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("sparse", [False, True])
def test_scaling_benchmark_configs_are_valid_and_train_sparse_when_asked(sparse):
    """The scaling benchmark's configs pass validation, and --sparse really trains with sparse item gradients."""
    from tandem.config import config_from_dict
    from tandem.data.dataset import preprocess
    from tandem.data.splits import split_sequential
    from tandem.data.synthetic_scale import WorldSpec, generate
    from tandem.run import Prepared

    scaling = load_scaling_benchmark()
    for kind in ("mf", "sasrec", "corr"):
        assert config_from_dict(scaling.config_for(kind, 500, sparse)).train.sparse_embeddings is sparse
    data = preprocess(generate(WorldSpec(300, 3000, seed=0)).raw(), None, 5, 1, duplicates="rows")
    config = config_from_dict(scaling.config_for("sasrec", data.num_items, sparse))
    measured = scaling.train_measure(config, Prepared(data, split_sequential(data, 20)), batches=1)
    table = measured["scheme"].retriever.item_embedding.weight
    assert (table.grad is not None and table.grad.is_sparse) is sparse
    assert measured["per_batch"]["total_s"] > 0
