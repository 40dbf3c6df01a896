"""Pairwise losses, AdaSIR (seed 003 eqs. 1 and 3) and the loss registry, against naive loops and closed forms."""
import math

import pytest
import torch
import torch.nn.functional as F

from tandem.losses import RetrieverLoss, adasir, adasir_w, bpr, build_loss, sampled_softmax, softmax_ce, triplet
from tandem.losses.adasir import adasir_weights, harmonic_weight
from tandem.losses.registry import LOSS_NAMES

DT = torch.float64


def data(batch=4, negs=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(batch, generator=g, dtype=DT)
    neg = torch.randn(batch, negs, generator=g, dtype=DT)
    neg_log_q = torch.log_softmax(torch.randn(batch, negs, generator=g, dtype=DT), 1)
    return pos, neg, neg_log_q


def test_bpr_and_triplet_naive():
    pos, neg, _ = data()
    for b in range(len(pos)):
        pairs = [(pos[b].item(), neg[b, j].item()) for j in range(neg.shape[1])]
        naive_bpr = sum(-math.log(1 / (1 + math.exp(-(p - n)))) for p, n in pairs) / len(pairs)
        naive_trip = sum(max(0.0, n - p + 0.7) for p, n in pairs) / len(pairs)
        assert math.isclose(bpr(pos, neg)[b].item(), naive_bpr, rel_tol=1e-12)
        assert math.isclose(triplet(pos, neg, 0.7)[b].item(), naive_trip, rel_tol=1e-12)


def test_bpr_stable_for_large_gaps():
    loss = bpr(torch.tensor([0.0, 0.0]), torch.tensor([[500.0], [-500.0]]))
    assert torch.allclose(loss, torch.tensor([500.0, 0.0]))


def test_softmax_ce_with_and_without_log_q():
    pos, neg, neg_q = data()
    pos_q = torch.full_like(pos, -2.0)
    labels = torch.zeros(len(pos), dtype=torch.long)
    assert torch.allclose(softmax_ce(pos, neg), F.cross_entropy(torch.cat([pos[:, None], neg], 1), labels,
                                                                 reduction="none"), atol=1e-12)
    corrected = torch.cat([(pos - pos_q)[:, None], neg - neg_q], 1)
    assert torch.allclose(softmax_ce(pos, neg, pos_q, neg_q), F.cross_entropy(corrected, labels, reduction="none"))
    assert torch.allclose(softmax_ce(pos, neg, pos_q, neg_q), sampled_softmax(pos, neg, pos_q, neg_q))
    with pytest.raises(ValueError):
        bpr(pos, neg[0])


# --- AdaSIR ------------------------------------------------------------------------------------------------------


def test_adasir_weights_sum_to_one_and_match_naive_loop():
    pos, neg, neg_q = data(batch=5, negs=7, seed=1)
    w = adasir_weights(neg, neg_q)
    assert torch.allclose(w.sum(1), torch.ones(5, dtype=DT), atol=1e-12)
    loss = adasir(pos, neg, neg_q)
    for b in range(5):
        raw = [math.exp(neg[b, j].item() - neg_q[b, j].item()) for j in range(7)]
        weights = [r / sum(raw) for r in raw]
        assert all(math.isclose(w[b, j].item(), weights[j], rel_tol=1e-12) for j in range(7))
        naive = sum(-weights[j] * math.log(1 / (1 + math.exp(-(pos[b].item() - neg[b, j].item())))) for j in range(7))
        assert math.isclose(loss[b].item(), naive, rel_tol=1e-12)
        naive_trip = sum(weights[j] * max(0.0, neg[b, j].item() - pos[b].item() + 0.5) for j in range(7))
        assert math.isclose(adasir(pos, neg, neg_q, pairwise="triplet", margin=0.5)[b].item(), naive_trip,
                            rel_tol=1e-12)


def test_adasir_weights_are_constants_and_uniform_q_cancels():
    pos, neg, _ = data(seed=2)
    neg = neg.clone().requires_grad_()
    uniform = torch.full_like(neg, -math.log(100))
    w = adasir_weights(neg, uniform)
    assert not w.requires_grad
    assert torch.allclose(w, torch.softmax(neg.detach(), 1))  # uniform proposal: the weights are softmax(scores)
    (g,) = torch.autograd.grad(adasir(pos, neg, uniform).sum(), neg)
    assert torch.allclose(g, w * torch.sigmoid(neg.detach() - pos[:, None]))  # only the BPR term is differentiated


def test_harmonic_weight_matches_partial_sums():
    ranks = torch.tensor([1, 2, 3, 10, 57, 1000])
    naive = torch.tensor([sum(1 / j for j in range(1, k + 1)) for k in ranks.tolist()], dtype=DT)
    assert torch.allclose(harmonic_weight(ranks.to(DT)), naive, atol=1e-12)
    assert torch.allclose(harmonic_weight(ranks).double(), naive, atol=1e-5)  # integer input
    assert harmonic_weight(torch.tensor([0.0])).item() == pytest.approx(1.0)  # below 1 reads as 1


def test_adasir_w_is_rank_weighted_adasir():
    pos, neg, neg_q = data(seed=3)
    rank = torch.tensor([1.0, 4.0, 12.0, 250.0], dtype=DT)
    expected = torch.tensor([sum(1 / j for j in range(1, int(k) + 1)) for k in rank.tolist()], dtype=DT)
    assert torch.allclose(adasir_w(pos, neg, neg_q, rank), expected * adasir(pos, neg, neg_q), atol=1e-12)
    with pytest.raises(ValueError, match="rank_estimate"):
        adasir_w(pos, neg, neg_q, rank[:2])


# --- registry ----------------------------------------------------------------------------------------------------


def test_registry_builds_every_name_with_one_signature():
    pos, neg, neg_q = data(seed=4)
    pos_q = torch.full_like(pos, -3.0)
    rank = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=DT)
    assert set(LOSS_NAMES) == {"softmax", "softmax-noq", "bpr", "bce", "triplet", "top1", "croloss", "croloss-lambda",
                               "adasir", "adasir-w"}
    for name in LOSS_NAMES:
        loss = build_loss(name, num_items=50)
        assert isinstance(loss, RetrieverLoss) and loss.name == name
        out = loss(pos, neg, pos_q, neg_q, rank_estimate=rank)
        assert out.shape == pos.shape and torch.isfinite(out).all()
        assert loss.shares_negatives == name.startswith("croloss")
        assert loss.needs_rank_estimate == (name == "adasir-w")


def test_registry_wires_the_right_functions():
    pos, neg, neg_q = data(seed=5)
    pos_q = torch.full_like(pos, -3.0)
    expected = softmax_ce(pos, neg, pos_q, neg_q)
    assert torch.allclose(build_loss("softmax", num_items=9)(pos, neg, pos_q, neg_q), expected)
    assert torch.allclose(build_loss("softmax-noq", num_items=9)(pos, neg, pos_q, neg_q), softmax_ce(pos, neg))
    assert torch.allclose(build_loss("bpr", num_items=9)(pos, neg, pos_q, neg_q), bpr(pos, neg))
    trip = build_loss("triplet", num_items=9, margin=2.0)
    assert torch.allclose(trip(pos, neg, pos_q, neg_q), triplet(pos, neg, 2.0))
    assert torch.allclose(build_loss("adasir", num_items=9)(pos, neg, pos_q, neg_q), adasir(pos, neg, neg_q))
    lam = build_loss("croloss-lambda", num_items=9)
    assert lam.options["weight_kernel"] == "sigmoid" and lam.options["kernel"] == "softplus"
    cro = build_loss("croloss", num_items=9, kernel="exponential", alpha=1.0, shared_negatives=False)
    assert not cro.shares_negatives
    cro_expected = (softmax_ce(pos, neg) + math.log(9 / neg.shape[1])) / math.log(10)
    assert torch.allclose(cro(pos, neg, pos_q, neg_q), cro_expected, atol=1e-12)


def test_registry_errors_name_the_culprit():
    with pytest.raises(ValueError, match="'warp'"):
        build_loss("warp", num_items=10)
    with pytest.raises(ValueError, match="'temperature'"):
        build_loss("croloss", num_items=10, temperature=0.1)
    with pytest.raises(ValueError, match="'margin'"):
        build_loss("bpr", num_items=10, margin=1.0)
    with pytest.raises(ValueError, match="'cosine'"):
        build_loss("croloss", num_items=10, kernel="cosine")
    with pytest.raises(ValueError, match="step"):
        build_loss("croloss", num_items=10, kernel="step")
    with pytest.raises(ValueError, match="num_items"):
        build_loss("bpr", num_items=0)
    pos, neg, _ = data()
    with pytest.raises(ValueError, match="rank_estimate"):
        build_loss("adasir-w", num_items=10)(pos, neg, None, torch.zeros_like(neg))
    with pytest.raises(ValueError, match="neg_log_q"):
        build_loss("adasir", num_items=10)(pos, neg)


# --- issue 10: accidental hits (a sampled negative equal to the positive) are left out of every loss ---------------


def hits(batch=4, negs=6):
    mask = torch.zeros(batch, negs, dtype=torch.bool)
    mask[0, 1] = mask[2, 0] = mask[2, 5] = True
    mask[3] = True  # every draw of row 3 is its positive
    return mask


def test_pairwise_and_adasir_leave_accidental_hits_out():
    """Naive loops over the non-hit negatives: means for BPR and triplet, eq. 1's weights renormalised over them."""
    pos, neg, neg_q = data(seed=6)
    mask = hits()
    rank = torch.tensor([1.0, 3.0, 7.0, 2.0], dtype=DT)
    got = {"bpr": bpr(pos, neg, hit_mask=mask), "triplet": triplet(pos, neg, 0.5, hit_mask=mask),
           "adasir": adasir(pos, neg, neg_q, hit_mask=mask), "adasir_w": adasir_w(pos, neg, neg_q, rank, hit_mask=mask)}
    for b in range(4):
        keep = [j for j in range(6) if not mask[b, j]]
        gaps = [neg[b, j].item() - pos[b].item() for j in keep]
        if not keep:
            expected = dict.fromkeys(got, 0.0)
        else:
            w = [math.exp(neg[b, j].item() - neg_q[b, j].item()) for j in keep]
            a = sum(wi / sum(w) * math.log1p(math.exp(x)) for wi, x in zip(w, gaps))
            expected = {"bpr": sum(math.log1p(math.exp(x)) for x in gaps) / len(keep),
                        "triplet": sum(max(x + 0.5, 0.0) for x in gaps) / len(keep),
                        "adasir": a, "adasir_w": sum(1 / k for k in range(1, int(rank[b]) + 1)) * a}
        for name, value in got.items():
            assert value[b].item() == pytest.approx(expected[name], abs=1e-12), (name, b)


def test_every_registered_loss_masks_accidental_hits():
    """For every loss but CROLoss, masking a hit equals dropping its column (row by row); CROLoss keeps |I'| = L
    (eq. 24, tested in test_croloss)."""
    pos, neg, neg_q = data(seed=7)
    pos_q = torch.full_like(pos, -3.0)
    rank = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=DT)
    mask = hits()
    mask[3, 2] = False  # keep one negative in row 3, so that dropping columns leaves a valid row
    for name in LOSS_NAMES:
        loss = build_loss(name, num_items=50)
        got = loss(pos, neg, pos_q, neg_q, rank_estimate=rank, hit_mask=mask)
        assert torch.isfinite(got).all(), name
        if name.startswith("croloss"):
            assert not torch.allclose(got, loss(pos, neg, pos_q, neg_q, rank_estimate=rank)), name
            continue
        for b in range(4):
            keep = ~mask[b]
            one = loss(pos[b:b + 1], neg[b:b + 1, keep], pos_q[b:b + 1], neg_q[b:b + 1, keep],
                       rank_estimate=rank[b:b + 1])
            assert got[b].item() == pytest.approx(one.item(), abs=1e-12), (name, b)


def test_bce_retriever_loss_by_hand():
    import math

    from tandem.losses.registry import build_loss

    loss = build_loss("bce", num_items=10)
    pos, neg = torch.tensor([1.0]), torch.tensor([[0.5, -2.0, 3.0]])
    hits = torch.tensor([[False, False, True]])
    softplus = lambda x: math.log1p(math.exp(x))  # noqa: E731
    expected = softplus(-1.0) + (softplus(0.5) + softplus(-2.0)) / 2
    assert loss(pos, neg, None, None, hit_mask=hits).item() == pytest.approx(expected, rel=1e-6)
    # LogisticMF's confidence weight alpha on the positive's log-likelihood (Johnson 2014, eq. 2)
    weighted = build_loss("bce", num_items=10, positive_weight=5.0)
    assert weighted(pos, neg, None, None, hit_mask=hits).item() == pytest.approx(
        5.0 * softplus(-1.0) + (softplus(0.5) + softplus(-2.0)) / 2, rel=1e-6)
