"""DeepFM's score against its definition (Guo et al., IJCAI 2017, eqs. 2-3), one candidate at a time:
y = w_0 + sum_f w_f + sum_{f < g} <v_f, v_g> + MLP([v_1, ..., v_F]), with the FM's pairwise interactions summed
pair by pair (the model computes them with the (sum)^2 - sum of squares identity, per row for the user's fields)."""
import itertools

import pytest
import torch

from tandem.data.features import FeatureTable
from tandem.models.rankers.deepfm import DeepFM


@pytest.mark.parametrize("use_history", [False, True])
def test_deepfm_score_equals_the_papers_formula_per_candidate(use_history):
    torch.manual_seed(0)
    age = FeatureTable("age", "categorical", torch.tensor([0, 1, 2, 1]), cardinality=3)
    genre = FeatureTable("genre", "multi", torch.tensor([[0, 0], [1, 2], [2, 0], [1, 0], [2, 1], [1, 1], [0, 0]]),
                         cardinality=3)
    model = DeepFM(num_users=4, num_items=6, user_features=[age], item_features=[genre], embedding_dim=5,
                   mlp_hidden=[7, 3], use_history=use_history).eval()
    with torch.no_grad():
        for module in (model.user_bias, model.item_bias):
            module.weight.normal_()
        model.bias.fill_(0.3)
    batch = {"user": torch.tensor([0, 2, 3]), "history": torch.tensor([[0, 1, 4], [0, 0, 0], [2, 3, 5]])}
    items = torch.tensor([[1, 2, 6], [3, 3, 4], [5, 1, 2]])
    with torch.no_grad():
        got = model.score(batch, items)
        user_fields, user_first = model.user_fields(batch)
        for b in range(3):
            for position in range(3):
                item_fields, item_first = model.item_fields(items[b:b + 1, position:position + 1])
                fields = list(user_fields[b]) + list(item_fields[0, 0])
                pairs = sum(float(fields[f] @ fields[g]) for f, g in itertools.combinations(range(len(fields)), 2))
                deep = float(model.output(model.mlp(torch.cat(fields))))
                expected = float(model.bias) + float(user_first[b]) + float(item_first[0, 0]) + pairs + deep
                assert float(got[b, position]) == pytest.approx(expected, rel=1e-5, abs=1e-5)
