"""The optimised DIN (decomposed activation unit, blockwise hand-written backward, hoisted user block, distinct-id
item representations) against a straightforward reference of DIN's published formula written here from scratch:
concat[h, c, h - c, h * c] -> activation MLP -> masked weighted sum of history -> MLP -> score (+ item bias).
Outputs and all parameter gradients are compared on random inputs with padding, in eval mode and in train mode with
dropout disabled."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import tandem.models.rankers.din as din_module
from tandem.data.features import FeatureTable
from tandem.models.rankers.din import DIN

NUM_USERS, NUM_ITEMS = 23, 40


def assert_close(got: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float, what: str = "") -> None:
    """|got - expected| <= atol + rtol |expected| everywhere (torch.testing's first call imports for seconds)."""
    assert got.shape == expected.shape, (what, got.shape, expected.shape)
    difference = (got - expected).abs()
    assert bool((difference <= atol + rtol * expected.abs()).all()), f"{what}: max |difference| {difference.max()}"


def feature_tables(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    year = torch.randint(1, 9, (NUM_ITEMS + 1,), generator=g)
    year[0] = 0
    genre = torch.randint(0, 7, (NUM_ITEMS + 1, 3), generator=g)
    genre[0] = 0
    items = [FeatureTable("year", "categorical", year, 9), FeatureTable("genre", "multi", genre, 7)]
    users = [FeatureTable("age", "categorical", torch.randint(1, 5, (NUM_USERS,), generator=g), 5),
             FeatureTable("score", "numeric", torch.randn(NUM_USERS, generator=g))]
    return users, items


def reference_item(model: DIN, ids: torch.Tensor) -> torch.Tensor:
    """e(i): the id embedding, or [id, feature fields] projected back to d."""
    vector = model.item_embedding.weight[ids]
    if model.item_projection is None:
        return vector
    fields = [vector] + [field for field in model.item_features(ids).unbind(-2)]
    return model.item_projection(torch.cat(fields, dim=-1))


def reference_score(model: DIN, batch: dict[str, torch.Tensor], items: torch.Tensor) -> torch.Tensor:
    """DIN's formula with the explicit [B, L, H, 4d] concatenation and one MLP input per candidate."""
    history = batch["history"]
    B, L, H = items.shape[0], items.shape[1], history.shape[1]
    c = reference_item(model, items)  # [B, L, d]
    h = reference_item(model, history)  # [B, H, d]
    h4 = h.unsqueeze(1).expand(B, L, H, -1)
    c4 = c.unsqueeze(2).expand(B, L, H, -1)
    unit = model.attention
    hidden = unit.activation(unit.hidden(torch.cat([h4, c4, h4 - c4, h4 * c4], dim=-1)))
    weights = unit.output(hidden).squeeze(-1)  # [B, L, H], not normalised
    weights = torch.where(history.unsqueeze(1) == 0, torch.zeros_like(weights), weights)
    interest = (weights.unsqueeze(-1) * h.unsqueeze(1)).sum(2)  # [B, L, d]
    parts = []
    if model.user_embedding is not None:
        parts.append(model.user_embedding.weight[batch["user"]])
    for field in model.user_features(batch["user"]).unbind(-2):
        parts.append(field)
    parts = [p.unsqueeze(1).expand(B, L, -1) for p in parts] + [interest, c]
    if model.interest_product:
        parts.append(interest * c)
    x = torch.cat(parts, dim=-1)
    for layer in model.mlp:
        x = layer(x)
    score = model.output(x).squeeze(-1)
    if model.item_bias is not None:
        score = score + model.item_bias.weight[items].squeeze(-1)
    return score


def random_inputs(batch_size: int = 6, length: int = 5, positions: int = 7, seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    history = torch.randint(1, NUM_ITEMS + 1, (batch_size, positions), generator=g)
    kept = torch.randint(0, positions + 1, (batch_size,), generator=g)
    history[torch.arange(positions).unsqueeze(0) < (positions - kept).unsqueeze(1)] = 0  # left padding
    history[0] = 0  # an empty history
    history[1, 3] = 0  # a gap inside a history
    batch = {"user": torch.randint(0, NUM_USERS, (batch_size,), generator=g), "history": history}
    return batch, torch.randint(1, NUM_ITEMS + 1, (batch_size, length), generator=g)


def make(features: bool, dtype: torch.dtype = torch.float32, **options) -> DIN:
    users, items = feature_tables() if features else (None, None)
    torch.manual_seed(0)
    model = DIN(NUM_USERS, NUM_ITEMS, user_features=users, item_features=items, embedding_dim=8, attention_hidden=6,
                mlp_hidden=options.pop("mlp_hidden", (12, 5)), **options).to(dtype)
    with torch.no_grad():  # non-zero item biases so that the bias path is checked too
        if model.item_bias is not None:
            model.item_bias.weight[1:].normal_()
    return model


def set_mode(model: DIN, mode: str) -> None:
    model.train(mode == "train")
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


CONFIGS = [
    (True, {}),
    (True, {"use_user_id": True}),
    (False, {}),
    (False, {"interest_product": False, "item_bias": False}),
    (True, {"mlp_hidden": ()}),
    (True, {"attention_activation": "tanh"}),
]


@pytest.fixture(params=[10**9, 300], ids=["one-block", "many-blocks"])
def block_size(request, monkeypatch):
    """One block for the whole batch, and several blocks with a ragged last one."""
    monkeypatch.setattr(din_module, "CHUNK_ELEMENTS", request.param)
    return request.param


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("features,options", CONFIGS)
def test_outputs_match_the_reference(features, options, mode, block_size):
    model = make(features, **dict(options))
    set_mode(model, mode)
    batch, items = random_inputs()
    got, expected = model.score(batch, items), reference_score(model, batch, items)
    assert_close(got, expected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # the no-grad (serving) path as well
        assert_close(model.score(batch, items), expected.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("features,options", CONFIGS)
def test_gradients_match_the_reference(features, options, block_size):
    """Float64, so that the hand-written backward is checked to ~1e-10, not merely to float32 rounding."""
    model = make(features, torch.float64, **dict(options))
    set_mode(model, "train")
    batch, items = random_inputs()
    weights = torch.randn(items.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    parameters = [p for p in model.parameters() if p.requires_grad]
    got = torch.autograd.grad((model.score(batch, items) * weights).sum(), parameters, allow_unused=True)
    expected = torch.autograd.grad((reference_score(model, batch, items) * weights).sum(), parameters,
                                   allow_unused=True)
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    for name, a, b in zip(names, got, expected):
        a = torch.zeros_like(b) if a is None else a
        b = torch.zeros_like(a) if b is None else b
        assert_close(a, b, rtol=1e-9, atol=1e-11, what=name)


def test_padding_positions_get_no_gradient_and_change_nothing():
    model = make(True)
    set_mode(model, "train")
    batch, items = random_inputs()
    embedding = model.item_embedding.weight
    score = model.score(batch, items)
    (grad,) = torch.autograd.grad(score.sum(), [embedding])
    assert torch.all(grad[0] == 0)  # padding row: masked out and padding_idx
    assert torch.all(score[0] == model.score(dict(batch, history=torch.zeros_like(batch["history"])), items)[0])


def test_state_dict_names_and_shapes_are_those_of_the_committed_checkpoints():
    """The ML-100K run's ranker keys (benchmarks/results/seed000-table2-ml100k-seq/runs/*/best.pt), so those
    checkpoints load with strict=True."""
    users = [FeatureTable("age", "categorical", torch.ones(943, dtype=torch.long), 62),
             FeatureTable("gender", "categorical", torch.ones(943, dtype=torch.long), 3),
             FeatureTable("occupation", "categorical", torch.ones(943, dtype=torch.long), 22)]
    items = [FeatureTable("release_year", "categorical", torch.ones(1153, dtype=torch.long), 71),
             FeatureTable("genre", "multi", torch.ones(1153, 6, dtype=torch.long), 19)]
    model = DIN(943, 1152, user_features=users, item_features=items)
    expected = {
        "item_embedding.weight": (1153, 64), "item_features.values_0": (1153,), "item_features.values_1": (1153, 6),
        "item_features.layers.0.weight": (71, 64), "item_features.layers.1.weight": (19, 64),
        "item_projection.weight": (64, 192), "item_projection.bias": (64,),
        "user_features.values_0": (943,), "user_features.values_1": (943,), "user_features.values_2": (943,),
        "user_features.layers.0.weight": (62, 64), "user_features.layers.1.weight": (3, 64),
        "user_features.layers.2.weight": (22, 64),
        "attention.hidden.weight": (64, 256), "attention.hidden.bias": (64,),
        "attention.output.weight": (1, 64), "attention.output.bias": (1,),
        "mlp.0.weight": (200, 384), "mlp.0.bias": (200,), "mlp.3.weight": (80, 200), "mlp.3.bias": (80,),
        "output.weight": (1, 80), "output.bias": (1,), "item_bias.weight": (1153, 1),
    }
    assert {name: tuple(t.shape) for name, t in model.state_dict().items()} == expected


@pytest.mark.parametrize("positions,length", [(0, 3), (4, 0), (0, 0)])
def test_empty_history_axis_or_no_candidates(positions, length):
    model = make(True)
    set_mode(model, "train")
    batch, items = random_inputs()
    batch["history"], items = batch["history"][:, :positions], items[:, :length]
    score = model.score(batch, items)
    score.sum().backward()
    assert score.shape == (6, length)
    assert_close(score, reference_score(model, batch, items), rtol=1e-5, atol=1e-6)
