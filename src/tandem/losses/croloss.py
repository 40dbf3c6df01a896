"""CROLoss: the Customizable Recall@N Optimization Loss and its Lambda method (seed 002, sec. 3 and 4.1).

Recall@N is rewritten through the ranking statistic of the positive (eq. 6), R = 1 + sum_i psi(S_i - S_pos) with psi
the unit step; weighting Recall@x by the power density w_alpha (eq. 12) turns -E_w Recall@x into W_alpha(R) (eqs.
11-14), and replacing psi by a differentiable comparison kernel phi (eq. 15) makes it trainable (eq. 16). Here the
sum over the catalogue is estimated from the sampled negatives and scaled by |I|/|I'| (eq. 24).

The Lambda method (eqs. 21-23) decouples the two roles phi plays in the gradient (eq. 20): a kernel phi_1 (which
may be the unit step) estimates the rank for the weight lambda = w_alpha(R_phi1), held constant, and a kernel phi_2
drives the gaps, so d loss / d g_i = lambda * phi_2'(g_i) (times the |I|/|I'| sampling scale).

Everything is a pure function of score tensors: [B] positive scores and [B, L] negative scores.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from tandem.losses.registry import RetrieverLoss
from tandem.registry import register_loss

__all__ = [
    "Kernel",
    "KERNELS",
    "get_kernel",
    "croloss",
    "croloss_rank",
    "weighting_cdf",
    "weighting_density",
    "scaled_cosine",
]

Tensor = torch.Tensor


@dataclass(frozen=True)
class Kernel:
    """A comparison kernel phi(x) of a gap x = S(u, v_i) - S(u, v) (seed 002, sec. 3.4).

    `fn` computes phi; `log_fn`, where given, computes log phi stably so that rank statistics built from fast-growing
    kernels (the exponential) are summed in log space instead of overflowing. `differentiable` is False for the unit
    step, whose gradient is zero almost everywhere: it may estimate a rank (Lambda phi_1) but cannot drive learning.
    A valid kernel satisfies conditions i-v of seed 002: differentiable a.e., non-decreasing, phi(-inf) = 0,
    0.5 <= phi(0) <= 1 and phi(+inf) >= 1.
    """

    name: str
    fn: Callable[[Tensor], Tensor]
    log_fn: Callable[[Tensor], Tensor] | None = None
    differentiable: bool = True

    def __call__(self, x: Tensor) -> Tensor:
        return self.fn(x)


def _step(x: Tensor) -> Tensor:
    # psi(x) = 1 for x >= 0, else 0 (eq. 6); no gradient flows through it.
    return (x.detach() >= 0).to(x.dtype)


def _hinge(margin: float) -> Callable[[Tensor], Tensor]:
    def hinge(x: Tensor) -> Tensor:
        return F.relu(x + margin)

    return hinge


def get_kernel(name: str, margin: float = 1.0) -> Kernel:
    """The kernel called `name`: 'hinge' ((x + margin)_+), 'sigmoid', 'exponential', 'softplus' or 'step'.

    The hinge satisfies kernel condition iv (0.5 <= phi(0) = margin <= 1) only for margins in [0.5, 1]; the paper
    uses m = 5 with scores scaled by tau = 10, which trades condition iv for a wider margin. Any margin > 0 is allowed.
    """
    if name == "hinge":
        if margin <= 0:
            raise ValueError(f"hinge kernel needs margin > 0, got {margin}")
        return Kernel("hinge", _hinge(float(margin)))
    if name not in KERNELS:
        raise ValueError(f"unknown comparison kernel {name!r}; expected one of {sorted([*KERNELS, 'hinge'])}")
    return KERNELS[name]


KERNELS: dict[str, Kernel] = {
    "sigmoid": Kernel("sigmoid", torch.sigmoid, F.logsigmoid),
    "exponential": Kernel("exponential", torch.exp, lambda x: x),
    "softplus": Kernel("softplus", F.softplus),
    "step": Kernel("step", _step, differentiable=False),
}
"""The parameter-free kernels by name; the hinge needs a margin, so get it from `get_kernel('hinge', margin)`."""


# --- the weighting function w_alpha and its CDF W_alpha (eqs. 12-13) -------------------------------------------


def _log_normaliser(alpha: float, num_items: int) -> float:
    """log Z with Z = int_1^{|I|+1} x^-alpha dx, so that w_alpha integrates to one (eq. 12)."""
    log_top = math.log(num_items + 1)
    if alpha == 1.0:
        return math.log(log_top)
    return math.log(math.expm1((1.0 - alpha) * log_top) / (1.0 - alpha))


def _cdf_from_log(log_rank: Tensor, alpha: float, num_items: int) -> Tensor:
    """W_alpha(R) of eq. 13 from log R; expm1 keeps it accurate for alpha near 1 and continuous into the log form."""
    log_top = math.log(num_items + 1)
    if alpha == 1.0:
        return log_rank / log_top
    # (1 - R^(1-a)) / (1 - (|I|+1)^(1-a)) = expm1((1-a) log R) / expm1((1-a) log(|I|+1))
    return torch.expm1((1.0 - alpha) * log_rank) / math.expm1((1.0 - alpha) * log_top)


def _density_from_log(log_rank: Tensor, alpha: float, num_items: int) -> Tensor:
    """w_alpha(R) = R^-alpha / Z (eq. 12), from log R."""
    return torch.exp(-alpha * log_rank - _log_normaliser(alpha, num_items))


def _check_weighting(alpha: float, num_items: int) -> None:
    if num_items < 1:
        raise ValueError(f"num_items must be >= 1, got {num_items}")
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha}")


def weighting_cdf(rank: Tensor, *, alpha: float, num_items: int) -> Tensor:
    """W_alpha(N) = int_1^N w_alpha(x) dx (eq. 13): 0 at N = 1, 1 at N = |I| + 1, the log form at alpha = 1.

    It is the per-example CROLoss before the kernel relaxation (eq. 14): minimising it maximises the w-weighted mean
    of Recall@x. A larger alpha concentrates the weight on small retrieval sizes x.
    """
    _check_weighting(alpha, num_items)
    return _cdf_from_log(torch.log(rank), float(alpha), num_items)


def weighting_density(rank: Tensor, *, alpha: float, num_items: int) -> Tensor:
    """w_alpha(x) = x^-alpha / Z on [1, |I| + 1) (eq. 12), the derivative of `weighting_cdf` and the Lambda weight."""
    _check_weighting(alpha, num_items)
    return _density_from_log(torch.log(rank), float(alpha), num_items)


# --- the sampled ranking statistic (eqs. 15 and 24) ----------------------------------------------------------


def _check_scores(pos_score: Tensor, neg_score: Tensor) -> None:
    if pos_score.dim() != 1 or neg_score.dim() != 2 or pos_score.shape[0] != neg_score.shape[0]:
        raise ValueError(
            f"expected pos_score [B] and neg_score [B, L], got {tuple(pos_score.shape)} and {tuple(neg_score.shape)}"
        )
    if neg_score.shape[1] < 1:
        raise ValueError("neg_score needs at least one negative per row")


def _rank_terms(
    pos_score: Tensor,
    neg_score: Tensor,
    num_items: int,
    neg_log_q: Tensor | None,
    hit_mask: Tensor | None,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """The per-negative terms of eq. 24 relative to |I| / |I'|: (gaps [B, L], log of each importance factor [B, L]
    or None, keep [B, L] bool or None). The factor is 1 under eq. 24 and 1 / (|I| Q(v_i)) with importance weights."""
    _check_scores(pos_score, neg_score)
    gaps = neg_score - pos_score.unsqueeze(1)
    rel = None if neg_log_q is None else (-neg_log_q.detach() - math.log(num_items))
    if hit_mask is not None:
        if hit_mask.shape != neg_score.shape:
            raise ValueError(f"hit_mask must match neg_score {tuple(neg_score.shape)}, got {tuple(hit_mask.shape)}")
        hit_mask = hit_mask.to(device=neg_score.device, dtype=torch.bool)
    return gaps, rel, hit_mask


def _log_kernel_terms(kernel: Kernel, gaps: Tensor, rel: Tensor | None, hit_mask: Tensor | None) -> Tensor:
    """log(phi(g_i) * factor_i) [B, L] for a kernel with `log_fn`, -inf for accidental hits."""
    terms = kernel.log_fn(gaps) if rel is None else kernel.log_fn(gaps) + rel
    return terms if hit_mask is None else terms.masked_fill(hit_mask, float("-inf"))


def _kernel_terms(kernel: Kernel, gaps: Tensor, hit_mask: Tensor | None) -> Tensor:
    """phi(g_i) [B, L] for a kernel without `log_fn` (bounded growth), 0 for accidental hits."""
    values = kernel(gaps)
    return values if hit_mask is None else values.masked_fill(hit_mask, 0.0)


def croloss_rank(
    pos_score: Tensor,
    neg_score: Tensor,
    kernel: Kernel,
    num_items: int,
    neg_log_q: Tensor | None = None,
    hit_mask: Tensor | None = None,
) -> Tensor:
    """log R_hat_phi per row [B]: the log of the sampled kernel ranking statistic (eqs. 15 and 24).

    R_hat = |I| / |I'| * (1 + sum_{i in I', v_i != v} phi(S_i - S_pos)) with |I'| = L, the number of negatives
    drawn for the row; `hit_mask` [B, L] marks the draws equal to the positive v (accidental hits), which eq. 24
    leaves out of the sum while |I'| still counts them. With `neg_log_q` the per-negative factor |I| = 1 / Q_uniform
    is replaced by the importance weight 1 / Q(v_i) of the proposal that really drew v_i, i.e.
    R_hat = (|I| + sum_i phi(g_i) / Q(v_i)) / L, which is eq. 24 exactly when Q is uniform. The log is returned
    because W_alpha and w_alpha are functions of log R and the exponential kernel would overflow R itself.
    """
    gaps, rel, hit_mask = _rank_terms(pos_score, neg_score, num_items, neg_log_q, hit_mask)
    log_scale = math.log(num_items) - math.log(neg_score.shape[1])
    if kernel.log_fn is not None:
        terms = _log_kernel_terms(kernel, gaps, rel, hit_mask)
        zero = torch.zeros_like(pos_score).unsqueeze(1)
        return log_scale + torch.logsumexp(torch.cat([zero, terms], dim=1), dim=1)
    values = _kernel_terms(kernel, gaps, hit_mask)
    if rel is not None:
        values = values * torch.exp(rel)
    return log_scale + torch.log1p(values.sum(dim=1))


def _lambda_loss(
    log_lam: Tensor,
    pos_score: Tensor,
    neg_score: Tensor,
    kernel: Kernel,
    num_items: int,
    neg_log_q: Tensor | None,
    hit_mask: Tensor | None,
) -> Tensor:
    """lambda * R_hat_phi2 per row [B] (eq. 23), summed term by term in log space.

    Each term lambda * |I| / L * phi_2(g_i) * factor_i is exp(log lambda + log(|I| / L) + log phi_2(g_i) + ...), so
    a huge R_hat (exponential kernel) times a tiny lambda never becomes inf * 0: the value is finite whenever it is
    representable, and each gap's gradient lambda |I| / L phi_2'(g_i) is computed from its own term alone.
    """
    gaps, rel, hit_mask = _rank_terms(pos_score, neg_score, num_items, neg_log_q, hit_mask)
    base = log_lam + math.log(num_items) - math.log(neg_score.shape[1])  # log(lambda |I| / |I'|), [B]
    if kernel.log_fn is not None:
        terms = _log_kernel_terms(kernel, gaps, rel, hit_mask)
        return torch.exp(base) + torch.exp(base.unsqueeze(1) + terms).sum(dim=1)
    values = _kernel_terms(kernel, gaps, hit_mask)
    scale = base.unsqueeze(1) if rel is None else base.unsqueeze(1) + rel
    return torch.exp(base) + (torch.exp(scale) * values).sum(dim=1)


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"unknown reduction {reduction!r}; expected 'mean', 'sum' or 'none'")


def croloss(
    pos_score: Tensor,
    neg_score: Tensor,
    *,
    kernel: str | Kernel,
    alpha: float,
    num_items: int,
    weight_kernel: str | Kernel | None = None,
    margin: float = 1.0,
    neg_log_q: Tensor | None = None,
    hit_mask: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """CROLoss W_alpha(R_hat_phi) (eq. 16 with the sampled rank of eq. 24), or its Lambda form (eq. 23).

    Args:
        pos_score: [B] scores S(u, v) of the positives.
        neg_score: [B, L] scores of the negatives each positive is compared with. L is |I'| of eq. 24. With the
            paper's shared in-batch negatives (sec. 4.1) the caller draws n items per positive, scores every positive
            against all B * n of them and passes neg_score of shape [B, B * n]; then |I'| = B * n.
        kernel: the comparison kernel phi whose gradient drives learning: 'hinge' (uses `margin`), 'sigmoid',
            'exponential', 'softplus' or a `Kernel`. In the Lambda method it is phi_2.
        alpha: the weighting parameter of w_alpha(x) = x^-alpha / Z (eq. 12); any real value, alpha = 1 is the log
            form of eq. 13. Larger alpha favours Recall@N for small N.
        num_items: |I|, the catalogue size the sampled rank is scaled to.
        weight_kernel: None for plain CROLoss. Otherwise the Lambda method: lambda = w_alpha(R_hat_{phi_1}) with
            phi_1 = weight_kernel ('step' allowed), under stop-gradient, times R_hat_{phi_2} (eq. 23), so that
            d loss / d g_i = lambda * |I| / |I'| * phi_2'(g_i) (eq. 22 with the sampling scale of eq. 24).
        margin: the hinge margin m (kernel condition iv holds for 0.5 <= m <= 1; the paper uses 5 with tau = 10).
        neg_log_q: optional [B, L] log-probabilities of the proposal that drew the negatives; when given, the rank
            is importance weighted (see `croloss_rank`) instead of assuming uniform draws.
        hit_mask: optional [B, L] bool, True where the sampled item is the row's positive (an accidental hit, e.g.
            from `tandem.losses.sampled_softmax.accidental_hits`). Eq. 24 sums over v_i != v only, so these draws add
            nothing to the rank (nor gradient), while |I'| stays L, the number drawn.
        reduction: 'mean' (default), 'sum' or 'none' (per-row [B]).

    Special cases (seed 002, eqs. 17-19), per row, on any set of L negatives: exponential with alpha = 1 is
    (softmax cross-entropy + log(|I| / L)) / log(|I| + 1); hinge with alpha = 0 is the triplet loss (mean over the
    negatives, `tandem.losses.pairwise.triplet`) + 1/L - 1/|I|; softplus with alpha = 0 is the BPR loss (mean over
    the negatives) + 1/L - 1/|I|. So the constants and positive scale factors are the only differences, in values
    and in gradients.
    """
    if num_items < 1:
        raise ValueError(f"num_items must be >= 1, got {num_items}")
    _check_weighting(alpha, num_items)
    phi = kernel if isinstance(kernel, Kernel) else get_kernel(kernel, margin)
    if not phi.differentiable:
        raise ValueError(f"kernel {phi.name!r} has no gradient; it is allowed only as weight_kernel (Lambda phi_1)")
    if neg_log_q is not None and neg_log_q.shape != neg_score.shape:
        raise ValueError(f"neg_log_q must match neg_score {tuple(neg_score.shape)}, got {tuple(neg_log_q.shape)}")
    alpha = float(alpha)
    if weight_kernel is None:
        log_rank = croloss_rank(pos_score, neg_score, phi, num_items, neg_log_q, hit_mask)
        loss = _cdf_from_log(log_rank, alpha, num_items)
    else:
        phi1 = weight_kernel if isinstance(weight_kernel, Kernel) else get_kernel(weight_kernel, margin)
        with torch.no_grad():
            log_rank1 = croloss_rank(pos_score, neg_score, phi1, num_items, neg_log_q, hit_mask)
            log_lam = -alpha * log_rank1 - _log_normaliser(alpha, num_items)  # log w_alpha(R_phi1), eq. 21
        loss = _lambda_loss(log_lam, pos_score, neg_score, phi, num_items, neg_log_q, hit_mask)
    return _reduce(loss, reduction)


def scaled_cosine(query: Tensor, items: Tensor, tau: float = 10.0, eps: float = 1e-12) -> Tensor:
    """S(u, v) = tau * cos(u, v) (seed 002, sec. 4.1): bounded scores in [-tau, tau] mapped to the kernels' range.

    `query` is [B, d]; `items` is [B, d] (one item per row, returns [B]) or [B, L, d] (returns [B, L]). To score a
    shared set of M items, pass `items.expand(B, M, d)` (no copy). The paper found tau = 10 best.
    """
    q = F.normalize(query, dim=-1, eps=eps)
    v = F.normalize(items, dim=-1, eps=eps)
    if items.dim() == 2:
        if items.shape != query.shape:
            raise ValueError(f"items [B, d] must match query {tuple(query.shape)}, got {tuple(items.shape)}")
        return tau * (q * v).sum(-1)
    if items.dim() == 3:
        if items.shape[0] != query.shape[0] or items.shape[2] != query.shape[1]:
            raise ValueError(f"items [B, L, d] must match query {tuple(query.shape)}, got {tuple(items.shape)}")
        return tau * torch.einsum("bd,bld->bl", q, v)
    raise ValueError(f"items must be [B, d] or [B, L, d], got {tuple(items.shape)}")


# ------------------------------------------------------------------------------------------- registered losses

def _croloss_loss(name: str, num_items: int, kernel: str, alpha: float, margin: float, weight_kernel: str | None,
                  shared_negatives: bool, log_q_correction: bool) -> RetrieverLoss:
    get_kernel(kernel, margin)  # fail at build time on a bad kernel name or margin
    if weight_kernel is not None:
        get_kernel(weight_kernel, margin)
    elif name == "croloss-lambda":
        raise ValueError("loss 'croloss-lambda' needs a weight_kernel (phi_1); use 'croloss' for none")
    if weight_kernel is None and kernel == "step":
        raise ValueError("kernel 'step' has no gradient; it is allowed only as weight_kernel")

    def fn(pos, neg, pos_q, neg_q, rank, hits):
        return croloss(
            pos, neg, kernel=kernel, alpha=alpha, num_items=num_items, weight_kernel=weight_kernel,
            margin=margin, neg_log_q=neg_q if log_q_correction else None, hit_mask=hits, reduction="none",
        )

    options = {"kernel": kernel, "alpha": alpha, "margin": margin, "weight_kernel": weight_kernel,
               "shared_negatives": shared_negatives, "log_q_correction": log_q_correction}
    return RetrieverLoss(name, fn, options, shares_negatives=shared_negatives)


# seed 002 Table 2: softplus with alpha = 1.0 is the best plain CROLoss on Amazon and always best or second best
@register_loss("croloss")
def croloss_loss(num_items: int, kernel: str = "softplus", alpha: float = 1.0, margin: float = 1.0,
                 weight_kernel: str | None = None, shared_negatives: bool = True,
                 log_q_correction: bool = False) -> RetrieverLoss:
    """CROLoss (seed 002 eqs. 16, 24), in-batch shared negatives by default."""
    return _croloss_loss("croloss", num_items, kernel, alpha, margin, weight_kernel, shared_negatives,
                         log_q_correction)


# seed 002 Tables 2 and 4: phi_1 = sigmoid beats the unit step "in most cases"; phi_2 = softplus at alpha = 1.0
# is best on Amazon (Taobao, the larger catalogue, prefers phi_2 = exponential at alpha = 1.4)
@register_loss("croloss-lambda")
def croloss_lambda_loss(num_items: int, kernel: str = "softplus", alpha: float = 1.0, margin: float = 1.0,
                        weight_kernel: str | None = "sigmoid", shared_negatives: bool = True,
                        log_q_correction: bool = False) -> RetrieverLoss:
    """CROLoss-Lambda (seed 002 eqs. 21-23): the rank estimated with weight_kernel (phi_1; 'step' allowed)."""
    return _croloss_loss("croloss-lambda", num_items, kernel, alpha, margin, weight_kernel, shared_negatives,
                         log_q_correction)
