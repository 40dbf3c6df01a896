"""tandem's cooperative options: fused final score, KL gate and warm-up, BCE ranker, negatives left out — and the
planted-structure check that distillation lifts the retriever above its Independent self."""
import json
import math

import numpy as np
import pytest
import torch

from tandem.data.dataset import preprocess
from tandem.data.splits import split_general
from tandem.losses.distill import sampled_kl
from tandem.models.rankers import build_ranker
from tandem.models.retrievers.mf import MF
from tandem.sampling import UniformSampler
from tandem.training.cooperative import CoRRScheme, excluded_negatives, masked_bce
from tandem.training.registry import build_scheme_from_config
from tandem.training.trainer import Trainer, TrainerSettings

from test_cooperative import general_config, grouped_raw


@pytest.fixture(scope="module")
def grouped():
    data = preprocess(grouped_raw(), min_user_interactions=1, min_item_interactions=1)
    return data, split_general(data)


def make_scheme(data, **options):
    torch.manual_seed(0)
    retriever = MF(data.num_users, data.num_items, 8)
    ranker = build_ranker("deepfm", num_users=data.num_users, num_items=data.num_items,
                          user_features=data.user_features, item_features=data.item_features, embedding_dim=8)
    return CoRRScheme(retriever, ranker, UniformSampler(data.num_items), 10, sampled_kl, 1.0, **options)


def test_fusion_weight_zero_is_the_retriever_order_and_never_loses_on_validation(grouped):
    data, split = grouped
    scheme = make_scheme(data, fusion=True)  # untrained: a random ranker, worse than the retriever
    cutoffs, k = (5, 10, 20), 20
    result = scheme.evaluate(split.valid, cutoffs, 128, retrieval_cutoff=k, calibrate=True)
    retriever = result["retriever"]
    # the blend with weight 0 orders the top-k exactly as the full ranking does (cutoffs <= k)
    from tandem.evaluation import evaluate_batches

    zero = evaluate_batches(split.valid, scheme._pipeline_rank_fn(cutoffs, k, (0.0,)), 128)
    for name, value in retriever.items():
        assert math.isclose(zero[f"w=0.0|{name}"], value, abs_tol=1e-12), name
    assert result["pipeline"]["ndcg@10"] >= retriever["ndcg@10"] - 1e-12
    assert 0.0 <= result["fusion"]["weight"] <= 1.0
    # the weight is kept for test-time evaluation and reported
    test = scheme.evaluate(split.test, cutoffs, 128, retrieval_cutoff=k)
    assert test["fusion"]["weight"] == result["fusion"]["weight"] and "pipeline_ranker_only" in test


def test_distill_gate_and_warmup(grouped):
    data, split = grouped
    batch = {key: value[:64] for key, value in split.train.tensors.items()}
    scheme = make_scheme(data, distill_gate=True, distill_warmup=4)
    assert "distill" not in scheme.losses(batch)  # the ranker's lift is unknown: gate shut
    scheme.ranker_lift.fill_(-0.01)
    assert scheme.current_distill_weight() == 0.0
    scheme.ranker_lift.fill_(0.02)
    scheme.epochs_started.fill_(1)
    assert scheme.current_distill_weight() == pytest.approx(0.25)
    assert "distill" in scheme.losses(batch)
    scheme.epochs_started.fill_(9)
    assert scheme.current_distill_weight() == pytest.approx(1.0)
    paper = make_scheme(data)  # Algorithm 1: full weight from the first step
    assert paper.current_distill_weight() == 1.0 and "distill" in paper.losses(batch)


def test_bce_of_the_ranker_by_hand():
    scores = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    excluded = torch.tensor([[False, False, True]])
    sigmoid = lambda x: 1.0 / (1.0 + math.exp(-x))  # noqa: E731
    expected = -math.log(sigmoid(2.0)) - 0.5 * (math.log(1 - sigmoid(-1.0)) + math.log(1 - sigmoid(0.5)))
    assert masked_bce(scores, excluded).item() == pytest.approx(expected, rel=1e-6)


def test_excluded_negatives_are_hits_and_history_items_not_padding():
    batch = {"item": torch.tensor([5, 7]), "history": torch.tensor([[0, 3, 4], [0, 0, 9]])}
    negatives = torch.tensor([[5, 3, 0, 8], [9, 0, 7, 4]])
    assert excluded_negatives(batch, negatives, False).tolist() == [[True, False, False, False],
                                                                    [False, False, True, False]]
    assert excluded_negatives(batch, negatives, True).tolist() == [[True, True, False, False],
                                                                   [True, False, True, False]]


def test_distillation_lifts_the_retriever_above_its_independent_self():
    """Planted structure: sparse interactions, a strong same-group bonus the ranker sees through group features.
    The Independent MF learns groups only from its few positives; CoRR's MF also gets the ranker's view of every
    sampled negative through the sampled KL."""
    data = preprocess(grouped_raw(num_users=300, num_items=200, per_user=6, seed=1),
                      min_user_interactions=1, min_item_interactions=1)
    split = split_general(data)
    scores = {}
    for scheme in ("independent", "corr"):
        torch.manual_seed(0)
        config = general_config(scheme, retriever={"name": "mf", "embedding_dim": 8},
                                train={"epochs": 15, "lr": 0.01, "batch_size": 256, "num_negatives": 20,
                                       "patience": 15, "progress": False})
        result = Trainer(TrainerSettings.of(config), build_scheme_from_config(config, data, split), split).fit()
        scores[scheme] = result.test["retriever"]["ndcg@10"]
    assert scores["corr"] > 1.2 * scores["independent"], scores


def test_gated_cascade_by_hand():
    from tandem.training.cooperative import gated_cascade

    def by_hand(m, r):
        s = lambda x: 1.0 / (1.0 + math.exp(-x))  # noqa: E731
        p1, p2 = s(m), s(r)
        g1, g2 = s(p1 - math.tanh(0.0)), s(p2 - math.tanh(1.0))
        return p1 * (1 - g1) * 1.0 + p2 * (1 - g2) * g1

    m, r = torch.tensor([[0.3, -2.0, 4.0]]), torch.tensor([[1.5, 0.2, -3.0]])
    expected = [by_hand(a, b) for a, b in zip(m[0].tolist(), r[0].tolist())]
    assert gated_cascade(m, r)[0].tolist() == pytest.approx(expected, rel=1e-6)


def test_rankflow_phases_optimizers_and_tutor_flow(grouped):
    from tandem.training.cooperative import RankFlowScheme
    from tandem.losses.registry import build_loss

    data, split = grouped
    torch.manual_seed(0)
    retriever = MF(data.num_users, data.num_items, 8)
    ranker = build_ranker("deepfm", num_users=data.num_users, num_items=data.num_items, embedding_dim=8)
    scheme = RankFlowScheme(retriever, ranker, UniformSampler(data.num_items), build_loss("bce", num_items=200), 10,
                            top_k=10, tutor_top=3, warmup_epochs=2, self_epochs=2, tutor_epochs=1)
    # epochs 1-2 independent (Adam), then self, self, tutor, self, self, tutor, ...
    assert [scheme.phase(e) for e in range(1, 9)] == ["independent"] * 2 + ["self", "self", "tutor"] * 2
    optimizers = scheme.make_optimizers(1e-3, 0.0)
    assert isinstance(optimizers["sgd-tutor"], torch.optim.SGD) and optimizers["sgd-tutor"].defaults["lr"] == 1e-4
    assert scheme.active_optimizers(1) == ("adam",) and scheme.active_optimizers(3) == ("sgd-self",)
    assert scheme.active_optimizers(5) == ("sgd-tutor",)
    batch = {key: value[:32] for key, value in split.train.tensors.items()}
    scheme.epochs_started.fill_(5)  # a tutor epoch: only the retriever learns, from the ranker's view
    losses = scheme.losses(batch)
    assert set(losses) == {"tutor"}
    grads = torch.autograd.grad(losses["tutor"], list(ranker.parameters()), allow_unused=True, retain_graph=True)
    assert all(g is None or torch.count_nonzero(g) == 0 for g in grads)
    assert any(g is not None and torch.count_nonzero(g) > 0
               for g in torch.autograd.grad(losses["tutor"], list(retriever.parameters()), allow_unused=True))
    scheme.epochs_started.fill_(3)  # self-learning: the ranker learns on the retriever's top-k
    assert set(scheme.losses(batch)) == {"retriever", "ranker"}


def test_per_row_stages_of_a_fused_scheme_include_the_ranker_only_order(grouped):
    """The experiment runner's per-user stages must cover every stage the report has (the table pairs them)."""
    from tandem.experiments.runner import per_row_metrics

    data, split = grouped
    scheme = make_scheme(data, fusion=True)
    cutoffs, k = (5, 10), 20
    scheme.evaluate(split.valid, cutoffs, 128, retrieval_cutoff=k, calibrate=True)
    stages = scheme.stage_rank_fns(cutoffs, k)
    assert set(stages) == {"retriever", "pipeline", "pipeline_ranker_only"}
    ranker_only = per_row_metrics(split.test, stages["pipeline_ranker_only"], 128)
    scheme.fusion = False  # expected: the ranker's order alone, through the unfused path
    unfused = scheme.evaluate(split.test, cutoffs, 128, retrieval_cutoff=k)["pipeline"]
    for name, value in unfused.items():
        assert math.isclose(float(ranker_only[name].mean()), value, abs_tol=1e-9), name


def test_stage_selection_keeps_each_model_at_its_own_best_epoch(grouped, tmp_path):
    """eval.select 'stages': the kept retriever is the one of the epoch with its best validation figure (its
    figures at that epoch come back exactly, whatever ranker sits on it), the ranker that of the best pipeline
    epoch, and early stopping waits until neither has improved for `patience` validations."""
    from tandem.errors import TandemError
    from tandem.utils import load_checkpoint

    data, split = grouped
    torch.manual_seed(0)
    config = general_config("corr", train={"epochs": 14, "lr": 0.03, "batch_size": 256, "num_negatives": 20,
                                           "patience": 3, "progress": False},
                            eval={"cutoffs": [10], "retrieval_cutoff": 50, "monitor": "ndcg@10", "select": "stages"})
    result = Trainer(TrainerSettings.of(config), build_scheme_from_config(config, data, split), split,
                     out_dir=tmp_path).fit()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    epochs = [line for line in lines if "epoch" in line]
    retriever_curve = [line["valid"]["retriever"]["ndcg@10"] for line in epochs]
    pipeline_curve = [line["valid"]["pipeline"]["ndcg@10"] for line in epochs]
    retriever_epoch = 1 + int(np.argmax(retriever_curve))  # first maximum: later ties do not improve
    ranker_epoch = 1 + int(np.argmax(pipeline_curve))
    assert (result.retriever_epoch, result.best_epoch) == (retriever_epoch, ranker_epoch)
    last = max(retriever_epoch, ranker_epoch)
    assert result.epochs_run == min(14, last + 3)
    # the kept retriever is exactly that epoch's: its validation figures come back
    kept = epochs[retriever_epoch - 1]["valid"]["retriever"]
    assert result.valid["retriever"] == pytest.approx(kept, abs=1e-12)
    assert lines[-1]["selected"] == {"retriever_epoch": retriever_epoch, "ranker_epoch": ranker_epoch,
                                     "validation": result.valid}
    saved = load_checkpoint(tmp_path / "best.pt")
    assert saved["retriever_epoch"] == retriever_epoch and saved["epoch"] == ranker_epoch
    with pytest.raises(TandemError, match="eval.select"):
        general_config("retriever", ranker=None, sampler={"name": "uniform"},
                       eval={"cutoffs": [10], "select": "stages"})
