"""tandem.flops: the ops torch's counter leaves at zero are counted by their closed forms, and DIN's activation unit
(forward + hand-written backward) comes to the multiply-adds its formula needs."""
from __future__ import annotations

import torch

from tandem.flops import count_flops
from tandem.models.rankers.din import ActivationUnit


def test_in_place_and_vector_products_count_their_multiply_adds() -> None:
    m, k, n, b = 7, 5, 3, 4
    a, w, v = torch.randn(m, k), torch.randn(k, n), torch.randn(k)
    assert count_flops(lambda: torch.zeros(m, n).addmm_(a, w))["total"] == 2 * m * k * n
    assert count_flops(lambda: torch.mv(a, v))["total"] == 2 * m * k
    assert count_flops(lambda: torch.mv(a, v, out=torch.empty(m)))["total"] == 2 * m * k
    assert count_flops(lambda: torch.zeros(m).addmv_(a, v))["total"] == 2 * m * k
    assert count_flops(lambda: torch.addmv(torch.zeros(m), a, v))["total"] == 2 * m * k
    batch1, batch2 = torch.randn(b, m, k), torch.randn(b, k, n)
    assert count_flops(lambda: torch.zeros(b, m, n).baddbmm_(batch1, batch2))["total"] == 2 * b * m * k * n


def test_out_of_place_products_keep_torch_counts() -> None:
    a, w = torch.randn(6, 4), torch.randn(4, 9)
    counted = count_flops(lambda: a @ w)
    assert counted["total"] == 2 * 6 * 4 * 9
    assert counted["aten.mm"] == counted["total"]


def test_din_activation_unit_counts_what_its_formula_needs() -> None:
    """W [h, c, h - c, h * c] = (W_h + W_d) h + (W_c - W_d) c + W_p (h * c), then w_o . sigmoid(.):
    forward  B H d k (history term) + B L d k (candidate term) + B L H d k (pair term) + B L H k (output),
    the backward twice each matrix term again (input and weight gradients) and the output term once more (w_o's
    gradient, one matrix-vector product; the gradient through w_o is elementwise); a multiply-add is 2 FLOPs."""
    batch, length, positions, dim, hidden = 3, 5, 4, 8, 6
    torch.manual_seed(0)
    unit = ActivationUnit(dim, hidden)
    history = torch.randn(batch, positions, dim, requires_grad=True)
    candidates = torch.randn(batch, length, dim, requires_grad=True)
    counted = count_flops(lambda: unit(history, candidates).sum().backward())
    pair = batch * length * positions * dim * hidden
    expected = 2 * (3 * batch * positions * dim * hidden + 3 * batch * length * dim * hidden + 3 * pair
                    + 2 * batch * length * positions * hidden)
    assert counted["total"] == expected
    assert history.grad is not None and candidates.grad is not None
