"""CROLoss (seed 002): kernel conditions i-v, W_alpha, the special cases of eqs. 17-19, and the Lambda gradient."""
import math

import pytest
import torch
import torch.nn.functional as F
from scipy import integrate

from tandem.losses import bpr, croloss, scaled_cosine, softmax_ce, triplet
from tandem.losses.croloss import KERNELS, croloss_rank, get_kernel, weighting_cdf, weighting_density

DT = torch.float64
KERNEL_CASES = [("sigmoid", 1.0), ("exponential", 1.0), ("softplus", 1.0), ("hinge", 1.0), ("hinge", 0.5),
                ("step", 1.0)]


def scores(batch=5, negs=9, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    pos = (scale * torch.randn(batch, generator=g, dtype=DT)).requires_grad_()
    neg = (scale * torch.randn(batch, negs, generator=g, dtype=DT)).requires_grad_()
    return pos, neg


def grads(value, *tensors):
    return torch.autograd.grad(value, tensors)


# --- kernel conditions i-v of seed 002 sec. 3.4, numerically on a grid -----------------------------------------


@pytest.mark.parametrize("name,margin", KERNEL_CASES)
def test_kernel_conditions(name, margin):
    phi = get_kernel(name, margin)
    grid = torch.linspace(-30, 30, 6001, dtype=DT)
    values = phi(grid)
    # ii) monotonically increasing (non-decreasing)
    assert (values[1:] - values[:-1] >= -1e-15).all()
    # iii) phi -> 0 at -inf; iv) 0.5 <= phi(0) <= 1; v) phi(+inf) >= 1
    assert phi(torch.tensor([-60.0], dtype=DT)).item() < 1e-12
    assert 0.5 <= phi(torch.tensor([0.0], dtype=DT)).item() <= 1.0
    assert phi(torch.tensor([60.0], dtype=DT)).item() >= 1.0
    # i) differentiable almost everywhere: away from the finitely many kinks, autograd = finite difference
    kinks = {"hinge": [-margin], "step": [0.0]}.get(name, [])
    x = torch.linspace(-8, 8, 1601, dtype=DT)
    x = x[torch.stack([(x - k).abs() > 1e-3 for k in kinks]).all(0)] if kinks else x
    h = 1e-6
    fd = (phi(x + h) - phi(x - h)) / (2 * h)
    if phi.differentiable:
        xg = x.clone().requires_grad_()
        (auto,) = grads(phi(xg).sum(), xg)
        assert torch.allclose(auto, fd, atol=1e-6, rtol=1e-6)
    else:
        assert torch.equal(fd, torch.zeros_like(fd))
    if phi.log_fn is not None:  # the stable log form agrees with log phi
        assert torch.allclose(phi.log_fn(x), torch.log(phi(x)), atol=1e-12)


def test_kernel_registry_and_errors():
    assert set(KERNELS) == {"sigmoid", "exponential", "softplus", "step"}
    with pytest.raises(ValueError, match="cosine"):
        get_kernel("cosine")
    with pytest.raises(ValueError, match="margin"):
        get_kernel("hinge", 0.0)
    pos, neg = scores()
    with pytest.raises(ValueError, match="step"):
        croloss(pos, neg, kernel="step", alpha=1.0, num_items=50)
    with pytest.raises(ValueError, match="reduction"):
        croloss(pos, neg, kernel="sigmoid", alpha=1.0, num_items=50, reduction="avg")
    with pytest.raises(ValueError, match="neg_score"):
        croloss(pos, neg[0], kernel="sigmoid", alpha=1.0, num_items=50)


# --- W_alpha and w_alpha (eqs. 12-13) ------------------------------------------------------------------------------

ALPHAS = [-1.0, 0.0, 0.6, 1.0, 1.4, 3.0]


@pytest.mark.parametrize("alpha", ALPHAS)
def test_weighting_cdf_properties(alpha):
    n = 1000
    ends = weighting_cdf(torch.tensor([1.0, n + 1.0], dtype=DT), alpha=alpha, num_items=n)
    assert torch.allclose(ends, torch.tensor([0.0, 1.0], dtype=DT), atol=1e-12)
    x = torch.linspace(1, n + 1, 5000, dtype=DT).requires_grad_()
    cdf = weighting_cdf(x, alpha=alpha, num_items=n)
    assert (cdf[1:] > cdf[:-1]).all()  # strictly increasing: a CDF of a positive density
    (dcdf,) = grads(cdf.sum(), x)  # W' = w
    assert torch.allclose(dcdf, weighting_density(x.detach(), alpha=alpha, num_items=n), rtol=1e-10)
    total, _ = integrate.quad(
        lambda t: weighting_density(torch.tensor(t, dtype=DT), alpha=alpha, num_items=n).item(), 1, n + 1, limit=200
    )
    assert math.isclose(total, 1.0, rel_tol=1e-6)


def test_weighting_cdf_alpha_one_is_log_form_and_continuous():
    n, x = 500, torch.tensor([1.0, 2.0, 17.0, 300.0], dtype=DT)
    log_form = torch.log(x) / math.log(n + 1)
    assert torch.allclose(weighting_cdf(x, alpha=1.0, num_items=n), log_form, atol=1e-15)
    for eps in (1e-4, -1e-4):
        assert torch.allclose(weighting_cdf(x, alpha=1.0 + eps, num_items=n), log_form, atol=1e-3)


def test_larger_alpha_weights_small_retrieval_sizes_more():
    n, x = 1000, torch.tensor([2.0, 10.0, 100.0], dtype=DT)
    by_alpha = torch.stack([weighting_cdf(x, alpha=a, num_items=n) for a in ALPHAS])
    assert (by_alpha[1:] > by_alpha[:-1]).all()


# --- special cases, eqs. 17-19: values and gradients, double precision --------------------------------------------


@pytest.mark.parametrize("negs,num_items", [(49, 50), (9, 50), (12, 1000)])
def test_exponential_alpha_one_is_softmax_cross_entropy(negs, num_items):
    pos, neg = scores(negs=negs, seed=1)
    cro = croloss(pos, neg, kernel="exponential", alpha=1.0, num_items=num_items, reduction="none")
    got = cro * math.log(num_items + 1) - math.log(num_items / negs)
    ce = softmax_ce(pos, neg)
    assert torch.allclose(got, ce, atol=1e-12)
    labels = torch.zeros(len(pos), dtype=torch.long)
    ce_full = F.cross_entropy(torch.cat([pos[:, None], neg], 1), labels, reduction="none")
    assert torch.allclose(ce, ce_full, atol=1e-12)
    g_cro = grads(cro.sum() * math.log(num_items + 1), pos, neg)
    g_ce = grads(ce.sum(), pos, neg)
    for a, b in zip(g_cro, g_ce):
        assert torch.allclose(a, b, atol=1e-12)


@pytest.mark.parametrize("margin", [0.5, 1.0, 5.0])
def test_hinge_alpha_zero_is_triplet(margin):
    negs, num_items = 11, 200
    pos, neg = scores(negs=negs, seed=2)
    cro = croloss(pos, neg, kernel="hinge", margin=margin, alpha=0.0, num_items=num_items, reduction="none")
    trip = triplet(pos, neg, margin)
    assert torch.allclose(cro, trip + 1 / negs - 1 / num_items, atol=1e-12)
    assert torch.allclose(trip, F.relu(neg - pos[:, None] + margin).sum(1) / negs, atol=1e-12)  # eq. 2 / L
    for a, b in zip(grads(cro.sum(), pos, neg), grads(trip.sum(), pos, neg)):
        assert torch.allclose(a, b, atol=1e-12)


def test_softplus_alpha_zero_is_bpr():
    negs, num_items = 8, 300
    pos, neg = scores(negs=negs, seed=3)
    cro = croloss(pos, neg, kernel="softplus", alpha=0.0, num_items=num_items, reduction="none")
    loss = bpr(pos, neg)
    assert torch.allclose(cro, loss + 1 / negs - 1 / num_items, atol=1e-12)
    eq4 = -torch.log(torch.sigmoid(pos[:, None] - neg)).sum(1) / negs
    assert torch.allclose(loss, eq4, atol=1e-12)
    for a, b in zip(grads(cro.sum(), pos, neg), grads(loss.sum(), pos, neg)):
        assert torch.allclose(a, b, atol=1e-12)


# --- the kernel gradient (eq. 20) and the Lambda method (eqs. 21-23) ------------------------------------------------


def _w_alpha_by_hand(rank, alpha, n):
    z = math.log(n + 1) if alpha == 1.0 else ((n + 1) ** (1 - alpha) - 1) / (1 - alpha)
    return rank ** (-alpha) / z


@pytest.mark.parametrize("alpha", [0.0, 1.0, 1.4])
@pytest.mark.parametrize("kernel,dphi", [("softplus", torch.sigmoid), ("exponential", torch.exp),
                                         ("sigmoid", lambda g: torch.sigmoid(g) * torch.sigmoid(-g))])
def test_croloss_gradient_is_weight_density_times_kernel_derivative(alpha, kernel, dphi):
    negs, n = 10, 400
    pos, neg = scores(negs=negs, seed=4)
    loss = croloss(pos, neg, kernel=kernel, alpha=alpha, num_items=n, reduction="sum")
    g_pos, g_neg = grads(loss, pos, neg)
    gaps = (neg - pos[:, None]).detach()
    rank = n / negs * (1 + get_kernel(kernel)(gaps).sum(1))  # eq. 24 by hand
    expected = _w_alpha_by_hand(rank, alpha, n)[:, None] * (n / negs) * dphi(gaps)  # eq. 20
    assert torch.allclose(g_neg, expected, rtol=1e-10, atol=1e-14)
    assert torch.allclose(g_pos, -expected.sum(1), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("phi1", ["step", "sigmoid"])
@pytest.mark.parametrize("phi2,dphi2", [("softplus", torch.sigmoid), ("exponential", torch.exp),
                                        ("hinge", lambda g: (g + 1.0 > 0).to(g.dtype))])
@pytest.mark.parametrize("alpha,negs,n", [(1.0, 10, 10), (1.4, 10, 10), (1.0, 7, 500), (0.6, 7, 500)])
def test_lambda_gradient_per_gap(phi1, phi2, dphi2, alpha, negs, n):
    pos, neg = scores(negs=negs, seed=5)
    loss = croloss(pos, neg, kernel=phi2, weight_kernel=phi1, alpha=alpha, num_items=n, reduction="sum")
    g_pos, g_neg = grads(loss, pos, neg)
    gaps = (neg - pos[:, None]).detach()
    phi1_values = (gaps >= 0).to(DT) if phi1 == "step" else torch.sigmoid(gaps)
    lam = _w_alpha_by_hand(n / negs * (1 + phi1_values.sum(1)), alpha, n)  # eq. 21 with eq. 24's rank
    expected = lam[:, None] * (n / negs) * dphi2(gaps)  # eq. 22 (n / negs = 1 when |I'| = |I|)
    assert torch.allclose(g_neg, expected, rtol=1e-10, atol=1e-14)
    assert torch.allclose(g_pos, -expected.sum(1), rtol=1e-10, atol=1e-14)
    # eq. 23's value: SG(lambda) * R_hat_phi2
    rank2 = n / negs * (1 + get_kernel(phi2)(gaps).sum(1))
    assert torch.allclose(loss.detach(), (lam * rank2).sum(), rtol=1e-12)


# --- sampling details: shared negatives, log-Q importance weights, stability, scaled cosine ------------------------


def test_shared_in_batch_negatives_use_all_batch_items():
    batch, n_per_row, num_items = 4, 3, 100
    g = torch.Generator().manual_seed(6)
    query, table = torch.randn(batch, 8, generator=g, dtype=DT), torch.randn(num_items + 1, 8, generator=g, dtype=DT)
    pos_items = torch.randint(1, num_items + 1, (batch,), generator=g)
    neg_items = torch.randint(1, num_items + 1, (batch, n_per_row), generator=g)
    pos = (query * table[pos_items]).sum(1)
    shared = query @ table[neg_items.reshape(-1)].T  # [B, B * n]: every positive against the whole batch's draws
    got = croloss(pos, shared, kernel="sigmoid", alpha=1.2, num_items=num_items, reduction="none")
    rank = num_items / (batch * n_per_row) * (1 + torch.sigmoid(shared - pos[:, None]).sum(1))
    assert torch.allclose(got, weighting_cdf(rank, alpha=1.2, num_items=num_items), atol=1e-12)


@pytest.mark.parametrize("kernel", ["softplus", "exponential"])
def test_log_q_importance_weights(kernel):
    negs, n = 6, 80
    pos, neg = scores(negs=negs, seed=7)
    uniform = torch.full_like(neg, -math.log(n))
    plain = croloss(pos, neg, kernel=kernel, alpha=1.0, num_items=n, reduction="none")
    assert torch.allclose(croloss(pos, neg, kernel=kernel, alpha=1.0, num_items=n, neg_log_q=uniform,
                                  reduction="none"), plain, atol=1e-12)
    log_q = torch.log_softmax(torch.randn(negs, dtype=DT), 0).expand_as(neg)
    rank = (n + (get_kernel(kernel)(neg - pos[:, None]) / log_q.exp()).sum(1)) / negs
    log_rank = croloss_rank(pos, neg, get_kernel(kernel), n, log_q)
    assert torch.allclose(log_rank, torch.log(rank), atol=1e-12)


def test_exponential_kernel_does_not_overflow():
    pos = torch.zeros(3, requires_grad=True)
    neg = torch.tensor([[200.0, 0.0], [-200.0, 1.0], [90.0, 95.0]], requires_grad=True)  # exp(200) overflows fp32
    for alpha in (1.0, 1.4, 0.6):
        loss = croloss(pos, neg, kernel="exponential", alpha=alpha, num_items=1000)
        g = grads(loss, pos, neg)
        assert torch.isfinite(loss) and all(torch.isfinite(t).all() for t in g)


def test_scaled_cosine():
    g = torch.Generator().manual_seed(8)
    q, v = torch.randn(4, 5, generator=g, dtype=DT), torch.randn(4, 6, 5, generator=g, dtype=DT)
    s = scaled_cosine(q, v)
    assert s.shape == (4, 6) and (s.abs() <= 10 + 1e-12).all()
    assert torch.allclose(s, 10 * F.cosine_similarity(q[:, None, :], v, dim=-1), atol=1e-12)
    assert torch.allclose(scaled_cosine(q, v[:, 0], tau=3.0), 3 * F.cosine_similarity(q, v[:, 0], dim=-1), atol=1e-12)
    assert torch.allclose(scaled_cosine(q, 7 * q), torch.full((4,), 10.0, dtype=DT))
    with pytest.raises(ValueError):
        scaled_cosine(q, v[0, 0])


# --- issue 10: accidental hits (eq. 24 sums over v_i != v) and the Lambda method in log space ------------------------


def _cdf_by_hand(rank, alpha, n):
    if alpha == 1.0:
        return math.log(rank) / math.log(n + 1)
    return (1 - rank ** (1 - alpha)) / (1 - (n + 1) ** (1 - alpha))


@pytest.mark.parametrize("weight_kernel", [None, "sigmoid", "step"])
def test_accidental_hits_are_left_out_of_the_ranking_statistic(weight_kernel):
    """Eq. 24: R = |I| / |I'| (1 + sum over sampled v_i != v of phi(g_i)); a draw equal to the positive adds
    nothing, and |I'| stays the number of items drawn."""
    n, negs, alpha = 50, 6, 1.2
    pos, neg = scores(negs=negs, seed=9)
    hit = torch.zeros(5, negs, dtype=torch.bool)
    hit[0, 1] = hit[2, 0] = hit[2, 3] = True
    hit[3] = True  # every draw of row 3 is the positive
    neg = torch.where(hit, pos.detach()[:, None], neg.detach()).requires_grad_()  # a hit scores as the positive
    got = croloss(pos, neg, kernel="softplus", alpha=alpha, num_items=n, weight_kernel=weight_kernel,
                  hit_mask=hit, reduction="none")
    for b in range(5):
        gaps = [float(neg.detach()[b, i] - pos.detach()[b]) for i in range(negs) if not hit[b, i]]
        rank2 = n / negs * (1 + sum(math.log1p(math.exp(x)) for x in gaps))
        if weight_kernel is None:
            expected = _cdf_by_hand(rank2, alpha, n)
        else:
            phi1 = (lambda x: float(x >= 0)) if weight_kernel == "step" else (lambda x: 1 / (1 + math.exp(-x)))
            rank1 = n / negs * (1 + sum(phi1(x) for x in gaps))
            expected = _w_alpha_by_hand(rank1, alpha, n) * rank2
        assert got[b].item() == pytest.approx(expected, rel=1e-10), b
    g_neg = torch.autograd.grad(got.sum(), neg)[0]
    assert torch.all(g_neg[hit] == 0)


@pytest.mark.parametrize("alpha", [1.0, 1.4])
def test_lambda_with_exponential_kernels_is_finite_in_fp32(alpha):
    """phi_1 = phi_2 = exponential: lambda * R = R^-alpha / Z * R = R^(1 - alpha) / Z (eqs. 12, 23) stays finite for
    alpha >= 1 however large R is; fp32 must give it (not 0 * inf), with gradient lambda |I| / L exp(g_i) (eq. 22)."""
    n, negs = 1000, 2
    pos = torch.zeros(3, requires_grad=True)
    neg = torch.tensor([[200.0, 0.0], [-200.0, 1.0], [90.0, 95.0]], requires_grad=True)  # exp(90) overflows fp32
    loss = croloss(pos, neg, kernel="exponential", weight_kernel="exponential", alpha=alpha, num_items=n,
                   reduction="none")
    (grad,) = torch.autograd.grad(loss.sum(), neg)
    gaps = neg.detach().double()
    rank = n / negs * (1 + torch.exp(gaps).sum(1))  # float64 holds exp(200)
    z = math.log(n + 1) if alpha == 1.0 else ((n + 1) ** (1 - alpha) - 1) / (1 - alpha)
    assert torch.allclose(loss.double(), rank ** (1 - alpha) / z, rtol=1e-4, atol=0)
    expected_grad = (rank ** -alpha / z)[:, None] * (n / negs) * torch.exp(gaps)
    assert torch.allclose(grad.double(), expected_grad, rtol=1e-4, atol=1e-30)


def test_lambda_exponential_value_representable_in_fp32_is_computed():
    """phi_1 = sigmoid, phi_2 = exponential at a gap of 85: R_phi2 ~ e^91 overflows fp32 but lambda * R_phi2 ~ e^80
    does not; every per-gap gradient lambda |I| / L exp(g_i) that fits in fp32 is finite and right (no inf * 0)."""
    n, negs, alpha = 1000, 2, 1.4
    pos = torch.zeros(2, requires_grad=True)
    neg = torch.tensor([[85.0, 0.0], [200.0, -3.0]], requires_grad=True)
    loss = croloss(pos, neg, kernel="exponential", weight_kernel="sigmoid", alpha=alpha, num_items=n,
                   reduction="none")
    (grad,) = torch.autograd.grad(loss.sum(), neg)
    gaps = neg.detach().double()
    lam = _w_alpha_by_hand(n / negs * (1 + torch.sigmoid(gaps).sum(1)), alpha, n)
    value = lam * n / negs * (1 + torch.exp(gaps).sum(1))
    assert math.isfinite(loss[0].item()) and loss[0].item() == pytest.approx(value[0].item(), rel=1e-4)
    assert loss[1].item() == math.inf  # ~e^192: not representable in fp32
    expected_grad = lam[:, None] * (n / negs) * torch.exp(gaps)
    assert grad[0, 0].item() == pytest.approx(expected_grad[0, 0].item(), rel=1e-4)
    for b, i in ((0, 1), (1, 1)):
        assert grad[b, i].item() == pytest.approx(expected_grad[b, i].item(), rel=1e-4), (b, i)
