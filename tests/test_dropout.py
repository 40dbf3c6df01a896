"""UniformMaskDropout is inverted dropout: keep probability 1 - p (a binomial bound), kept entries scaled by
1 / (1 - p), identity in eval mode, and the gradient is the same mask times the same scale."""
import math

import pytest
import torch

from tandem.models.layers import UniformMaskDropout


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_keep_rate_scale_and_gradient(p):
    torch.manual_seed(0)
    layer = UniformMaskDropout(p).train()
    x = torch.ones(1000, 1000, requires_grad=True)
    out = layer(x)
    kept = out != 0
    n = kept.numel()
    # binomial(n, 1 - p): the kept count lies within 6 standard deviations of its mean
    assert abs(kept.sum().item() - n * (1 - p)) < 6 * math.sqrt(n * p * (1 - p))
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / (1 - p)))
    out.sum().backward()
    assert torch.equal(x.grad, out.detach())  # d(sum x * m * s)/dx = m * s, which is out for x = 1
    # independent entries: neighbouring masks agree as often as chance says (1 - 2p(1-p))
    agree = (kept[:, 1:] == kept[:, :-1]).double().mean().item()
    assert abs(agree - (1 - 2 * p * (1 - p))) < 0.005


def test_eval_mode_and_edge_probabilities_are_exact():
    x = torch.randn(50, 7)
    assert torch.equal(UniformMaskDropout(0.3).eval()(x), x)
    assert torch.equal(UniformMaskDropout(0.0).train()(x), x)
    assert torch.equal(UniformMaskDropout(1.0).train()(x), torch.zeros_like(x))
