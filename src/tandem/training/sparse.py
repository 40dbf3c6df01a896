"""Sparse embedding gradients for large catalogues (`train.sparse_embeddings: true`).

With a dense gradient every step costs O(N d) twice over, whatever the batch: the backward of `weight[ids]`
materialises an [N+1, d] gradient and Adam then updates all N rows and their two moments. Here every embedding
table of the retriever produces a sparse gradient holding only the rows the step touched, and those tables are
stepped by a lazy Adam (`torch.optim.SparseAdam`): a step costs O(rows touched · d). Lazy means a row's moments
move only on the steps that touch it, which is not the same trajectory as dense Adam (it is the usual choice for
embedding tables). Supported: the `retriever`, `independent` and `corr` schemes with a retriever whose item table is
one `nn.Embedding`'s weight used as it is (dot similarity; mf, gmf, sasrec...), without an auxiliary loss, weight
decay 0; in the cooperative schemes the ranker's tables too, for a ranker whose tables are only read by lookups
(`Ranker.sparse_lookups`: DIN, DeepFM).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tandem.errors import TandemError
from tandem.models.retrievers.base import Retriever


class SparseRows:
    """Stands for the item table in a training step: `rows[items]` looks the rows up with a sparse gradient."""

    def __init__(self, table: nn.Embedding) -> None:
        self.table = table

    def __getitem__(self, items: torch.Tensor) -> torch.Tensor:
        return F.embedding(items, self.table.weight, padding_idx=self.table.padding_idx, sparse=True)


def item_embedding_of(retriever: Retriever) -> nn.Embedding:
    """The `nn.Embedding` whose weight is the retriever's item table, or a one-line error saying why not."""
    name = type(retriever).__name__
    if retriever.similarity != "dot":
        raise TandemError(f"train.sparse_embeddings needs similarity 'dot'; {name} uses {retriever.similarity!r}")
    if type(retriever).auxiliary_loss is not Retriever.auxiliary_loss:
        raise TandemError(f"train.sparse_embeddings: {name} trains an auxiliary loss of its own, not supported")
    table = retriever.item_table()
    for module in retriever.modules():
        if isinstance(module, nn.Embedding) and module.weight is table:
            return module
    raise TandemError(f"train.sparse_embeddings: {name}'s item table is not a plain embedding table")


def enable_sparse_embeddings(retriever: Retriever) -> list[nn.Parameter]:
    """Switch every embedding table of `retriever` to sparse gradients; returns their parameters (for SparseAdam)."""
    item_embedding = item_embedding_of(retriever)
    tables = [module for module in retriever.modules() if isinstance(module, nn.Embedding)]
    for module in tables:
        module.sparse = True
    retriever.training_rows = SparseRows(item_embedding)
    return [module.weight for module in tables]


def enable_sparse_ranker_embeddings(ranker: nn.Module) -> list[nn.Parameter]:
    """Switch every embedding table of `ranker` to sparse gradients; refused (one line) for a ranker that reads a
    table's weight directly, whose gradient would be dense."""
    if not getattr(ranker, "sparse_lookups", False):
        raise TandemError(f"train.sparse_embeddings: the ranker {type(ranker).__name__} reads its embedding tables "
                          f"directly (sparse gradients need lookups only; DIN and DeepFM support it)")
    tables = [module for module in ranker.modules() if isinstance(module, nn.Embedding)]
    for module in tables:
        module.sparse = True
    return [module.weight for module in tables]
