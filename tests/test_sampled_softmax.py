"""sampled_softmax against closed forms."""
import math

import torch

from tandem.losses import sampled_softmax


def test_equals_full_softmax_with_all_other_items_under_uniform_q():
    torch.manual_seed(0)
    batch, items = 6, 40
    scores = torch.randn(batch, items, dtype=torch.float64)
    positives = torch.randint(0, items, (batch,))
    full = torch.nn.functional.cross_entropy(scores, positives, reduction="none")
    others = torch.stack([torch.cat([torch.arange(p), torch.arange(p + 1, items)]) for p in positives.tolist()])
    pos_score = scores.gather(1, positives[:, None]).squeeze(1)
    neg_score = scores.gather(1, others)
    log_q = math.log(1 / items)
    got = sampled_softmax(pos_score, neg_score, torch.full((batch,), log_q, dtype=torch.float64),
                          torch.full_like(neg_score, log_q))
    assert torch.allclose(got, full, atol=1e-12)


def test_log_q_is_subtracted_from_every_logit():
    pos, neg = torch.tensor([1.0]), torch.tensor([[0.5, -0.2]])
    pos_q, neg_q = torch.tensor([-1.0]), torch.tensor([[-2.0, -0.5]])
    logits = torch.tensor([1.0 + 1.0, 0.5 + 2.0, -0.2 + 0.5])
    expected = torch.logsumexp(logits, 0) - logits[0]
    assert torch.allclose(sampled_softmax(pos, neg, pos_q, neg_q), expected.unsqueeze(0))
    assert (sampled_softmax(pos, neg, pos_q, neg_q) >= 0).all()


def test_accidental_hits_are_masked():
    """A sampled negative equal to the positive is left out of the normaliser (issue 10, defect 4); naive loop."""
    g = torch.Generator().manual_seed(1)
    pos, neg = torch.randn(4, generator=g, dtype=torch.float64), torch.randn(4, 5, generator=g, dtype=torch.float64)
    pos_q, neg_q = -torch.rand(4, generator=g, dtype=torch.float64), -torch.rand(4, 5, generator=g, dtype=torch.float64)
    hit = torch.zeros(4, 5, dtype=torch.bool)
    hit[0, 2] = hit[1, 0] = hit[1, 4] = True
    hit[3] = True  # all draws of row 3 are its positive: only the positive is left, loss 0
    got = sampled_softmax(pos, neg, pos_q, neg_q, hit_mask=hit)
    for b in range(4):
        logits = [pos[b].item() - pos_q[b].item()]
        logits += [neg[b, j].item() - neg_q[b, j].item() for j in range(5) if not hit[b, j]]
        expected = math.log(sum(math.exp(x) for x in logits)) - logits[0]
        assert abs(got[b].item() - expected) < 1e-12, b
    assert got[3].item() == 0.0
