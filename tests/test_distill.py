"""Distillation losses: the sampled KL of seed 000 (Theorem 3.1, Corollary 3.2), RankDistill, CoDistill."""
from __future__ import annotations

import math

import pytest
import torch

from tandem.losses.distill import (
    DISTILL_LOSSES,
    build_distill_loss,
    co_distill,
    corollary_kl_estimate,
    rank_distill,
    sampled_kl,
)


def full_kl(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    log_t, log_s = torch.log_softmax(teacher, -1), torch.log_softmax(student, -1)
    return (log_t.exp() * (log_t - log_s)).sum(-1)


def catalogue(seed: int, n: int = 500):
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(n, generator=g, dtype=torch.float64) * 1.5
    student = torch.randn(n, generator=g, dtype=torch.float64) * 1.5
    # a non-uniform proposal, related to the student as in CoRR but not equal to it
    log_q = torch.log_softmax(0.5 * student + torch.randn(n, generator=g, dtype=torch.float64), 0)
    return teacher, student, log_q, g


def test_sampled_kl_converges_to_full_kl_under_non_uniform_proposal():
    teacher, student, log_q, g = catalogue(0)
    truth = full_kl(teacher, student)
    assert log_q.exp().max() / log_q.exp().min() > 50  # really non-uniform
    errors, uncorrected = {}, None
    for length, repeats in [(10, 100), (100, 100), (10000, 20)]:
        idx = torch.multinomial(log_q.exp().expand(repeats, -1), length, replacement=True, generator=g)
        estimate = sampled_kl(teacher[idx], student[idx], log_q[idx])
        errors[length] = (estimate - truth).abs().mean().item()
        if length == 10000:
            uncorrected = (sampled_kl(teacher[idx], student[idx], None) - truth).abs().mean().item()
    assert errors[10] > errors[100] > errors[10000]
    assert errors[10000] < 0.1 and errors[10000] < errors[10] / 5
    assert errors[10000] < 0.05 * truth.item() + 0.02
    # without the -log Q correction the estimate stays biased however large S is
    assert uncorrected > 5 * errors[10000]


def test_corollary_is_log_l_minus_entropy_and_estimates_the_full_kl():
    """Corollary 3.2: over S ~ softmax(M), the sampled KL is log L - H(softmax(R - M)) (entropy written out here)."""
    teacher, student, _, g = catalogue(1)
    idx = torch.multinomial(torch.softmax(student, 0).expand(50, -1), 200, replacement=True, generator=g)
    corollary = corollary_kl_estimate(teacher[idx], student[idx])
    delta = teacher[idx] - student[idx]
    p = torch.exp(delta) / torch.exp(delta).sum(-1, keepdim=True)
    torch.testing.assert_close(corollary, math.log(200) + (p * torch.log(p)).sum(-1))
    # and it estimates the full KL
    assert abs(corollary.mean().item() - full_kl(teacher, student).item()) < 0.25 * full_kl(teacher, student).item()


def test_corollary_uniform_delta_is_zero():
    student = torch.randn(3, 7)
    assert corollary_kl_estimate(student + 2.0, student).abs().max() < 1e-6
    assert torch.all(corollary_kl_estimate(torch.randn(4, 7), torch.randn(4, 7)) >= -1e-6)


def test_corollary_gradient_estimates_the_kl_gradient():
    """d KL(P_R || P_M) / d M_i = P_M(i) - P_R(i) (closed form). Over S ~ softmax(M) the corollary's gradient,
    accumulated onto the catalogue's scores, converges to it: M plays log Q, which is held fixed (issue 10,
    defect 6)."""
    g = torch.Generator().manual_seed(11)
    n, length = 6, 40000
    teacher = torch.randn(n, generator=g, dtype=torch.float64) * 1.5
    student = (torch.randn(n, generator=g, dtype=torch.float64) * 1.5).requires_grad_(True)
    idx = torch.multinomial(torch.softmax(student.detach(), 0), length, replacement=True, generator=g)[None]
    (grad,) = torch.autograd.grad(corollary_kl_estimate(teacher[idx], student[idx]).sum(), student)
    expected = torch.softmax(student.detach(), 0) - torch.softmax(teacher, 0)
    torch.testing.assert_close(grad, expected, atol=0.02, rtol=0)


def test_corollary_with_temperature_reads_log_q_as_scores_over_t():
    """With Q = softmax(M / T) the corollary's log Q(i) is M(i) / T: KL(softmax(R - M/T) || softmax(M - M/T))."""
    g = torch.Generator().manual_seed(12)
    teacher, student = torch.randn(3, 9, generator=g, dtype=torch.float64), torch.randn(3, 9, generator=g,
                                                                                           dtype=torch.float64)
    t = 0.5
    p = torch.softmax(teacher - student / t, -1)
    q = torch.softmax(student - student / t, -1)
    expected = (p * (p.log() - q.log())).sum(-1)
    torch.testing.assert_close(corollary_kl_estimate(teacher, student, temperature=t), expected)


def test_corollary_is_a_distill_option_reachable_from_a_config():
    """`scheme.distill: corollary` builds CoRR with the corollary, at the temperature of the configured sampler."""
    from tandem.config import config_from_dict
    from tandem.data.dataset import preprocess
    from tandem.data.splits import split_sequential
    from tandem.data.synthetic import markov_interactions
    from tandem.training.registry import build_scheme_from_config

    assert "corollary" in DISTILL_LOSSES
    data = preprocess(markov_interactions(20, 30, per_user=6, seed=1), min_user_interactions=1,
                      min_item_interactions=1)
    split = split_sequential(data, max_seq_len=3)
    config = config_from_dict({
        "task": "sequential",
        "retriever": {"name": "sasrec", "embedding_dim": 8},
        "ranker": {"name": "din", "embedding_dim": 8},
        "sampler": {"name": "exact", "temperature": 0.5},
        "scheme": {"name": "corr", "distill": "corollary"},
        "train": {"epochs": 1, "progress": False},
        "eval": {"cutoffs": [10], "retrieval_cutoff": 20, "monitor": "ndcg@10"},
    })
    scheme = build_scheme_from_config(config, data, split)
    g = torch.Generator().manual_seed(13)
    teacher, student, log_q = (torch.randn(4, 5, generator=g) for _ in range(3))
    torch.testing.assert_close(scheme.distill(teacher, student, log_q),
                               corollary_kl_estimate(teacher, student, temperature=0.5))


def test_sampled_kl_gradients_flow_into_student_only():
    g = torch.Generator().manual_seed(2)
    teacher = torch.randn(4, 6, generator=g, requires_grad=True)
    student = torch.randn(4, 6, generator=g, requires_grad=True)
    log_q = torch.randn(4, 6, generator=g)
    sampled_kl(teacher, student, log_q).sum().backward()
    assert teacher.grad is None or torch.all(teacher.grad == 0)
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_sampled_kl_equals_naive_loop():
    g = torch.Generator().manual_seed(3)
    teacher = torch.randn(3, 5, generator=g, dtype=torch.float64)
    student = torch.randn(3, 5, generator=g, dtype=torch.float64)
    log_q = torch.randn(3, 5, generator=g, dtype=torch.float64)
    expected = []
    for b in range(3):
        rt = [math.exp(teacher[b, i].item() - log_q[b, i].item()) for i in range(5)]
        rs = [math.exp(student[b, i].item() - log_q[b, i].item()) for i in range(5)]
        pt = [x / sum(rt) for x in rt]
        ps = [x / sum(rs) for x in rs]
        expected.append(sum(p * math.log(p / q) for p, q in zip(pt, ps)))
    torch.testing.assert_close(sampled_kl(teacher, student, log_q), torch.tensor(expected, dtype=torch.float64))
    # log Q normalisation does not matter; a uniform log Q equals no correction
    torch.testing.assert_close(sampled_kl(teacher, student, log_q + 3.0), sampled_kl(teacher, student, log_q))
    torch.testing.assert_close(sampled_kl(teacher, student, torch.full_like(log_q, -2.0)),
                               sampled_kl(teacher, student, None))
    assert torch.all(sampled_kl(teacher, teacher, log_q).abs() < 1e-12)


def test_sampled_kl_rejects_bad_shapes():
    with pytest.raises(ValueError):
        sampled_kl(torch.zeros(2, 3), torch.zeros(2, 4), None)
    with pytest.raises(ValueError):
        sampled_kl(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2))


def test_rank_distill_weights_and_gradients():
    teacher = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0]])
    agreeing = teacher.clone().requires_grad_(True)
    # the student already ranks the teacher's top items at least as high: no ranking discrepancy, no loss
    assert rank_distill(teacher, agreeing, None, top_k=3).item() == 0.0
    reversed_student = (-teacher).clone().requires_grad_(True)
    loss = rank_distill(teacher, reversed_student, None, top_k=3)
    assert loss.item() > 0
    loss.backward()
    # the teacher's best item (ranked last by the student) is pulled up the most
    assert reversed_student.grad[0, 0] < 0 and reversed_student.grad[0, 0] <= reversed_student.grad[0, 1:].min()
    # position weights alone: the loss is a weighted NLL of the teacher's top-k under P_student^S
    student = torch.randn(2, 5, dtype=torch.float64)
    t = torch.randn(2, 5, dtype=torch.float64)
    got = rank_distill(t, student, None, top_k=2, use_discrepancy=False, position_temperature=1.0)
    w = torch.softmax(-torch.tensor([1.0, 2.0], dtype=torch.float64), 0)
    top = t.topk(2, dim=-1).indices
    expected = -(w * torch.log_softmax(student, -1).gather(-1, top)).sum(-1)
    torch.testing.assert_close(got, expected)
    teacher_leaf = t.clone().requires_grad_(True)
    rank_distill(teacher_leaf, student.requires_grad_(True), None, likelihood="sigmoid").sum().backward()
    assert teacher_leaf.grad is None


def test_co_distill_pulls_student_towards_teacher():
    g = torch.Generator().manual_seed(4)
    teacher = torch.randn(8, 20, generator=g) * 1.5
    student = torch.zeros(8, 20, requires_grad=True)
    optimiser = torch.optim.SGD([student], lr=5.0)
    first = None
    for _ in range(500):
        loss = co_distill(teacher, student, None, generator=g).mean()
        first = loss.item() if first is None else first
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < first
    top = teacher.topk(3, dim=-1).indices
    # the teacher's top items are sampled most, so the student fits them best
    fitted = torch.sigmoid(student.detach().gather(-1, top))
    torch.testing.assert_close(fitted, torch.sigmoid(teacher.gather(-1, top)), atol=0.08, rtol=0)


def test_build_distill_loss_names_and_options():
    g = torch.Generator().manual_seed(5)
    teacher, student, log_q = (torch.randn(3, 6, generator=g) for _ in range(3))
    student.requires_grad_(True)
    for name in DISTILL_LOSSES:  # every registered one ('none' is no loss: the scheme skips distillation)
        loss = build_distill_loss(name)(teacher, student, log_q)
        assert loss.shape == (3,)
        loss.sum().backward()
    assert torch.equal(build_distill_loss("kl")(teacher, student, log_q), sampled_kl(teacher, student, log_q))
    assert set(DISTILL_LOSSES) == {"kl", "corollary", "rankdistill", "codistill"}
    assert build_distill_loss("rankdistill", top_k=2)(teacher, student, log_q).shape == (3,)
    with pytest.raises(ValueError, match="nope"):
        build_distill_loss("nope")
    with pytest.raises(ValueError, match="top_kk"):
        build_distill_loss("rankdistill", top_kk=2)
    with pytest.raises(ValueError, match="top_k"):
        build_distill_loss("kl", top_k=2)
