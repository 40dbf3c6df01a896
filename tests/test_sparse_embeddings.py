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
from tandem.training.trainer import Trainer


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
    trainer = Trainer(config, scheme, split)
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
