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
from tandem.training.trainer import Trainer, TrainerSettings

MAX_SEQ_LEN = 5
EPOCHS, LR, NUM_NEGATIVES, BATCH_SIZE = 4, 0.02, 5, 256
#: trained validation NDCG@10 over chance: every pair here reaches 1.9-7x (1.5x or more over four data seeds),
#: an untrained model about 1x
MARGIN = 1.5
#: small versions of the models, each option given only to the constructors that declare it
SMALL = {"embedding_dim": 16, "hidden_size": 16, "feedforward_dim": 32, "mlp_hidden": [32, 16], "num_layers": 1,
         "window": 3, "dropout": 0.0}
#: a small MIDX index for the 50-item catalogue, given only to the samplers that declare the option
SMALL_SAMPLER = {"num_clusters": 4}
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


def sampler_section(name: str) -> dict:
    """The config section of sampler `name` with the small options it declares."""
    import tandem.registry as registry

    samplers = getattr(registry, "SAMPLERS", None)
    if samplers is not None:
        declared = set(inspect.signature(samplers[name]).parameters)
    else:
        from tandem.sampling.factory import COMMON_OPTIONS, SAMPLER_OPTIONS

        declared = COMMON_OPTIONS | SAMPLER_OPTIONS[name]
    return {"name": name, **{key: value for key, value in SMALL_SAMPLER.items() if key in declared}}


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
        raw = low_rank_interactions(150, 50, per_user=10, rank=3, sharpness=4.0, seed=0)
    else:
        raw = markov_interactions(120, 50, per_user=10, max_hop=2, noise=0.05, seed=0)
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
    """Whether retriever `name` (built with its defaults) declares that it reads `batch["history"]`."""
    return "history" in build_retriever(name, num_users=2, num_items=3, max_seq_len=MAX_SEQ_LEN).inputs


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
    config.sampler = sampler_section(sampler)
    config.train.epochs, config.train.lr, config.train.num_negatives = EPOCHS, LR, NUM_NEGATIVES
    config.train.batch_size, config.train.eval_every, config.train.patience = BATCH_SIZE, EPOCHS, EPOCHS
    config.train.progress = False
    scheme = build(config, data, split)
    if getattr(scheme.loss, "needs_rank_estimate", False) and not hasattr(scheme.sampler, "estimate_rank"):
        # a loss weighted by the positive's rank needs a sampler that estimates it: the first registered one that does
        for other in component_names("sampler"):
            config.sampler = sampler_section(other)
            scheme = build(config, data, split)
            if hasattr(scheme.sampler, "estimate_rank"):
                break
    result = Trainer(TrainerSettings.of(config), scheme, split).fit()
    return mean_chance_ndcg(split.valid, data.num_items), float(result.valid["ndcg@10"])


def check_learns(retriever: str, loss: str, sampler: str) -> None:
    chance, trained = train(retriever, loss, sampler)
    assert trained > MARGIN * chance, (chance, trained)


@pytest.mark.parametrize("loss", component_names("loss"))
@pytest.mark.parametrize("retriever", list(RETRIEVERS))
def test_every_retriever_learns_with_every_loss(retriever, loss):
    check_learns(retriever, loss, DEFAULTS.sampler["name"])


@pytest.mark.parametrize("sampler", [name for name in component_names("sampler") if name != DEFAULTS.sampler["name"]])
@pytest.mark.parametrize("retriever", list(RETRIEVERS))
def test_every_retriever_learns_with_every_sampler(retriever, sampler):
    check_learns(retriever, DEFAULTS.loss["name"], sampler)


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


def test_every_retriever_module_registers_its_model_and_scores_by_inner_product():
    """Each module of the retrievers package registers its Retriever subclasses, and every registered retriever
    built with its defaults scores every item by the inner product of its query and item table (a plain loop)."""
    import importlib
    import pkgutil

    import tandem.models.retrievers as package

    for module_info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{module_info.name}")
        for value in vars(module).values():
            if (inspect.isclass(value) and issubclass(value, Retriever) and value.__module__ == module.__name__
                    and not inspect.isabstract(value)):
                assert value in RETRIEVERS.values(), f"{value.__name__} in {module.__name__} is not registered"
    batch = {"user": torch.tensor([0, 3]), "history": torch.tensor([[0, 0, 0, 1, 2], [3, 4, 5, 6, 7]])}
    for name in RETRIEVERS:
        torch.manual_seed(0)
        model = build_retriever(name, num_users=4, num_items=9, max_seq_len=MAX_SEQ_LEN).eval()
        with torch.no_grad():
            query, table, scores = (x.detach() for x in (model.query(batch), model.item_vectors(),
                                                          model.score_all(batch)))
        assert table.shape[0] == 10 and query.shape == (2, table.shape[1]), name
        expected = [[float(sum(query[b, k] * table[i, k] for k in range(table.shape[1]))) for i in range(10)]
                    for b in range(2)]
        torch.testing.assert_close(scores, torch.tensor(expected), rtol=1e-4, atol=1e-4, msg=name)


# ---------------------------------------------------------------------------------------------- the papers' scores
# Each model's score against its paper's equation, computed here element by element with plain loops.

def randomised(name: str, **options):
    """Retriever `name` (4 users, 9 items) in eval mode with every parameter redrawn, biases included."""
    torch.manual_seed(1)
    model = build_retriever(name, num_users=4, num_items=9, max_seq_len=MAX_SEQ_LEN, **options).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.5)
    return model


def dot(a, b) -> float:
    return float(sum(float(x) * float(y) for x, y in zip(a, b)))


def test_gmf_is_the_weighted_elementwise_product():
    """He et al. eq. 9: y(u, i) = h^T (p_u * q_i)."""
    model = randomised("gmf")
    with torch.no_grad():
        scores = model.score_all({"user": torch.tensor([2])})[0]
        p, q, h = model.user_embedding.weight[2], model.item_embedding.weight, model.h
        for i in range(1, 10):
            assert abs(float(scores[i]) - sum(float(h[k] * p[k] * q[i, k]) for k in range(len(h)))) < 1e-4


def test_logisticmf_is_the_biased_latent_product():
    """Johnson eq. 1: the logit of p(l_ui) is x_u y_i^T + beta_u + beta_i."""
    model = randomised("logisticmf")
    with torch.no_grad():
        scores = model.score_all({"user": torch.tensor([1])})[0]
        for i in range(1, 10):
            expected = (dot(model.user_embedding.weight[1], model.item_embedding.weight[i])
                        + float(model.user_bias.weight[1, 0]) + float(model.item_bias.weight[i, 0]))
            assert abs(float(scores[i]) - expected) < 1e-4


def test_ncf_retrieves_by_gmf_and_full_score_is_neumf():
    """He et al. eq. 12: y = h^T [p^G * q^G, MLP([p^M, q^M])] + b; retrieval uses the GMF part alone."""
    model = randomised("ncf", mlp_hidden=[6, 3])
    batch = {"user": torch.tensor([3])}
    items = torch.tensor([[1, 5, 9]])
    with torch.no_grad():
        full, retrieval = model.full_score(batch, items)[0], model.score_all(batch)[0]
        p, pm = model.user_embedding.weight[3], model.mlp_user_embedding.weight[3]
        linears = [layer for layer in model.mlp if isinstance(layer, torch.nn.Linear)]
        for column, i in enumerate(items[0].tolist()):
            gmf = sum(float(model.h_gmf[k] * p[k] * model.item_embedding.weight[i, k]) for k in range(len(p)))
            x = [float(v) for v in torch.cat([pm, model.mlp_item_embedding.weight[i]])]
            for layer in linears:  # ReLU(W x + b), one unit at a time
                x = [max(0.0, dot(layer.weight[j], x) + float(layer.bias[j])) for j in range(layer.out_features)]
            expected = gmf + dot(model.h_mlp, x) + float(model.bias)
            assert abs(float(full[column]) - expected) < 1e-4
            assert abs(float(retrieval[i]) - gmf) < 1e-4
        loss = model.auxiliary_loss({"user": torch.tensor([0, 1]), "item": torch.tensor([2, 3])})
    assert loss is not None and loss.dim() == 0 and torch.isfinite(loss)


def test_caser_is_the_papers_convolutional_score():
    """Tang & Wang eqs. 3-8 with ReLU activations: horizontal filters max-pooled over time, vertical filters as
    weighted sums of the L rows, z = ReLU(W [o~, o] + b), y_i = W'_i [z, P_u] + b'_i."""
    model = randomised("caser", embedding_dim=4, window=3, num_vertical=2, num_horizontal=2)
    history = torch.tensor([[0, 0, 7, 2, 5]])
    with torch.no_grad():
        scores = model.score_all({"user": torch.tensor([1]), "history": history})[0]
        E = model.item_embedding.weight[history[0, -3:]]  # [L, d], the last L = 3 items
        L, d = E.shape
        vertical = [float(model.vertical.bias[k]) + sum(float(model.vertical.weight[k, 0, t, 0] * E[t, j])
                                                        for t in range(L))
                    for k in range(2) for j in range(d)]
        horizontal = []
        for conv in model.horizontal:
            h = conv.weight.shape[2]
            for k in range(2):
                windows = [float(conv.bias[k]) + sum(float(conv.weight[k, 0, a, b] * E[t + a, b])
                                                     for a in range(h) for b in range(d))
                           for t in range(L - h + 1)]
                horizontal.append(max(0.0, max(windows)))
        o = vertical + horizontal
        z = [max(0.0, dot(model.fc.weight[j], o) + float(model.fc.bias[j])) for j in range(d)]
        user = [float(v) for v in model.user_embedding.weight[1]]
        for i in range(1, 10):
            expected = dot(model.output_embedding.weight[i], z + user) + float(model.output_bias.weight[i, 0])
            assert abs(float(scores[i]) - expected) < 1e-3


def test_gru4rec_reads_only_the_real_items_with_the_gru_equations():
    """Hidasi et al. sec. 3.1: the GRU update over the row's items only (padding never enters), then the output
    layer y_i = W_y[i] . h + b_y[i]."""
    model = randomised("gru4rec", embedding_dim=3, hidden_size=4)
    history = torch.tensor([[0, 0, 4, 9, 1], [2, 3, 6, 8, 5]])
    gru = model.gru
    with torch.no_grad():
        scores = model.score_all({"history": history})
        for row in range(2):
            h = [0.0] * 4
            for item in [i for i in history[row].tolist() if i != 0]:
                x = [float(v) for v in model.item_embedding.weight[item]]
                gates = [dot(gru.weight_ih_l0[j], x) + float(gru.bias_ih_l0[j]) for j in range(12)]
                recur = [dot(gru.weight_hh_l0[j], h) + float(gru.bias_hh_l0[j]) for j in range(12)]
                sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
                r = [sig(gates[j] + recur[j]) for j in range(4)]
                u = [sig(gates[4 + j] + recur[4 + j]) for j in range(4)]
                n = [np.tanh(gates[8 + j] + r[j] * recur[8 + j]) for j in range(4)]
                h = [(1 - u[j]) * n[j] + u[j] * h[j] for j in range(4)]
            for i in range(1, 10):
                expected = dot(model.output_embedding.weight[i], h) + float(model.output_bias.weight[i, 0])
                assert abs(float(scores[row, i]) - expected) < 1e-4


def test_bert4rec_queries_from_a_mask_after_the_history():
    """Sun et al. eq. 7: the [mask] appended after the history is the predicted position; its output
    GELU(h W^P + b^P) meets the shared item embedding plus the output bias. Left padding changes nothing."""
    model = randomised("bert4rec")
    with torch.no_grad():
        padded = model.score_all({"history": torch.tensor([[0, 0, 3, 8]])})[0]
        unpadded = model.score_all({"history": torch.tensor([[3, 8]])})[0]
        sequence = torch.tensor([[3, 8, model.mask_token]])
        positions = torch.arange(3) + (MAX_SEQ_LEN + 1 - 3)
        hidden = model.input_norm(model.embedding(sequence) + model.position_embedding(positions))
        out = torch.nn.functional.gelu(model.projection(model.encoder(hidden)[0, -1]))
        for i in range(1, 10):
            expected = dot(out, model.embedding.weight[i]) + float(model.output_bias[i])
            assert abs(float(padded[i]) - expected) < 1e-3 and abs(float(unpadded[i]) - expected) < 1e-3
    model.train()
    torch.manual_seed(0)
    cloze = model.auxiliary_loss({"history": torch.tensor([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]),
                                  "item": torch.tensor([5, 1])})
    assert cloze is not None and torch.isfinite(cloze)
    cloze.backward()
    assert model.embedding.weight.grad[1:10].abs().sum() > 0
    assert randomised("bert4rec", mask_ratio=0.0).auxiliary_loss({"history": torch.tensor([[1, 2]]),
                                                                  "item": torch.tensor([3])}) is None


def test_dssm_towers_read_ids_and_features():
    """Huang et al.: y = tanh MLP of each side's input; here each side's input is its id and feature embeddings,
    so a user's query depends on its features and the padding item's vector is zero."""
    from tandem.data.features import FeatureTable

    def model(user_feature):
        age = FeatureTable("age", "categorical", torch.tensor(user_feature), cardinality=3)
        genre = FeatureTable("genre", "multi", torch.randint(0, 4, (10, 2), generator=torch.Generator().manual_seed(0)),
                             cardinality=4)
        torch.manual_seed(0)
        return build_retriever("dssm", num_users=4, num_items=9, max_seq_len=MAX_SEQ_LEN, mlp_hidden=[8, 5],
                               user_features={"age": age}, item_features={"genre": genre}).eval()

    first, second = model([1, 1, 2, 2]), model([1, 2, 2, 2])
    batch = {"user": torch.tensor([1])}
    with torch.no_grad():
        assert first.item_table()[0].abs().sum() == 0
        assert first.item_table().shape == (10, 5) and first.item_table().abs().max() <= 1.0  # tanh output
        assert not torch.allclose(first.query(batch), second.query(batch))
        assert torch.allclose(first.query({"user": torch.tensor([0])}), second.query({"user": torch.tensor([0])}))
