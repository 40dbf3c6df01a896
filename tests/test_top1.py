"""GRU4Rec's TOP1 loss against the paper's formula evaluated by a plain loop, and through the loss registry."""
import math

import torch

from tandem.losses import build_loss
from tandem.losses.top1 import top1


def reference(pos: list[float], neg: list[list[float]], hits: list[list[bool]]) -> list[float]:
    out = []
    for r_i, row, row_hits in zip(pos, neg, hits):
        terms = [1 / (1 + math.exp(-(r_j - r_i))) + 1 / (1 + math.exp(-r_j * r_j))
                 for r_j, hit in zip(row, row_hits) if not hit]
        out.append(sum(terms) / len(terms) if terms else 0.0)
    return out


def test_top1_equals_the_paper_formula_and_leaves_out_accidental_hits():
    generator = torch.Generator().manual_seed(0)
    pos = torch.randn(5, generator=generator, dtype=torch.float64)
    neg = 2 * torch.randn(5, 4, generator=generator, dtype=torch.float64)
    hits = torch.zeros(5, 4, dtype=torch.bool)
    hits[1, 2] = True
    hits[3] = True  # a row with no negative left: 0
    got = top1(pos, neg, hits)
    expected = reference(pos.tolist(), neg.tolist(), hits.tolist())
    assert torch.allclose(got, torch.tensor(expected, dtype=torch.float64), atol=1e-12)
    assert got[3] == 0


def test_top1_through_the_registry_prefers_the_positive_on_top():
    loss = build_loss("top1", num_items=10)
    neg = torch.zeros(1, 3)
    high, low = loss(torch.tensor([3.0]), neg, None, None), loss(torch.tensor([-3.0]), neg, None, None)
    assert float(high.mean()) < float(low.mean())
