"""Every registered model reads only the batch fields its `inputs` declare (serving and the data checks trust them),
and a model's `auxiliary_loss` reaches every scheme's step."""
from __future__ import annotations

import pytest
import torch

from tandem.models.retrievers.mf import MF
from tandem.registry import RANKERS, RETRIEVERS
from tandem.sampling import UniformSampler
from tandem.training.schemes import RetrieverScheme

USERS, ITEMS, ROWS, LENGTH = 5, 12, 3, 4
FULL = {"user": torch.tensor([0, 3, 4]), "history": torch.tensor([[0, 0, 2, 5], [1, 2, 3, 4], [0, 7, 7, 9]])}
CONTEXT = {"num_users": USERS, "num_items": ITEMS, "max_seq_len": LENGTH, "user_features": None, "item_features": None}


def only(fields: frozenset[str]) -> dict[str, torch.Tensor]:
    unknown = set(fields) - set(FULL)
    assert not unknown, f"inputs name fields no batch has: {unknown}"
    return {key: value for key, value in FULL.items() if key in fields}


@pytest.mark.parametrize("name", list(RETRIEVERS))
def test_every_retriever_reads_only_its_inputs(name):
    model = RETRIEVERS.build(name, CONTEXT, {}).eval()
    assert isinstance(model.inputs, frozenset) and model.inputs
    query = model.query(only(model.inputs))  # a KeyError here: the model reads a field it does not declare
    assert query.shape[0] == ROWS


@pytest.mark.parametrize("name", list(RANKERS))
def test_every_ranker_reads_only_its_inputs(name):
    model = RANKERS.build(name, CONTEXT, {}).eval()
    assert isinstance(model.inputs, frozenset) and model.inputs
    scores = model.score(only(model.inputs), torch.tensor([[1, 2], [3, 4], [5, 6]]))
    assert scores.shape == (ROWS, 2)


class _MFWithAuxiliary(MF):
    def auxiliary_loss(self, batch):
        return self.user_embedding(batch["user"]).pow(2).mean()


def test_a_models_auxiliary_loss_is_added_to_the_step():
    torch.manual_seed(0)
    plain = RetrieverScheme(MF(USERS, ITEMS, 4), UniformSampler(ITEMS), lambda *a, **k: torch.zeros(ROWS), 2)
    batch = {"user": FULL["user"], "item": torch.tensor([1, 2, 3])}
    assert set(plain(batch)) == {"retriever"}
    torch.manual_seed(0)
    model = _MFWithAuxiliary(USERS, ITEMS, 4)
    scheme = RetrieverScheme(model, UniformSampler(ITEMS), lambda *a, **k: torch.zeros(ROWS), 2)
    losses = scheme(batch)
    assert set(losses) == {"retriever", "retriever_auxiliary"}
    torch.testing.assert_close(losses["retriever_auxiliary"], model.user_embedding.weight[FULL["user"]].pow(2).mean())
