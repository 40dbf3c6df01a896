"""AdaSIR's self-normalised importance-weighted pairwise loss and its rank-weighted AdaSIR-W (seed 003, eqs. 1-3).

The negatives J_ci of a row are drawn uniformly from AdaSIR's pool R_c, which importance resampling filled with
weights w(j|c) (Algorithm 1 line 5, computed with the previous refresh's scores r'). Each drawn negative j is weighted
by a softmax over the row's draws of sg(r_cj - log w(j|c)) (eq. 1; `neg_log_q` = log w, as the sampler returns it),
a self-normalised importance weight toward the current softmax exp(r_cj) / sum exp(r): for a uniform proposal it is
proportional to exp(r_cj - r'_cj), so items whose score rose since the pool was built count more. The weights are
constants (no gradient), as importance weights are. AdaSIR-W (eq. 3) further scales each
positive's loss by J(rank) = sum_{k <= rank} 1/k (WARP), so that badly ranked positives get more of the gradient.
A negative that is the row's own positive (`hit_mask`, an accidental hit, frequent with AdaSIR's pools since the
positive is a high-scored item) gets weight 0 and the others are renormalised; a row with no negative left has loss 0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tandem.losses.registry import RetrieverLoss, need_neg_log_q
from tandem.losses.sampled_softmax import check_hit_mask
from tandem.registry import register_loss

__all__ = ["adasir_weights", "adasir", "adasir_w", "harmonic_weight"]

_EULER_GAMMA = 0.57721566490153286060651209


def _pairwise(gaps: torch.Tensor, pairwise: str, margin: float) -> torch.Tensor:
    if pairwise == "bpr":
        return F.softplus(gaps)  # -ln sigmoid(r_ci - r_cj)
    if pairwise == "triplet":
        return F.relu(gaps + margin)
    raise ValueError(f"unknown pairwise loss {pairwise!r}; expected 'bpr' or 'triplet'")


def adasir_weights(
    neg_score: torch.Tensor, neg_log_q: torch.Tensor, hit_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Self-normalised importance weights w_hat [B, L] of seed 003 eq. 1: softmax_j(sg(neg_score - neg_log_q)).

    `neg_log_q` is log w(j|c), the resampling weight each negative had when it entered the context's pool (what
    tandem's AdaSIR sampler returns with each draw). Each row sums to one over the negatives that are not
    accidental hits (`hit_mask` True: weight 0; a row of hits only gets all-zero weights). Detached: the weights
    select, they are not trained through.
    """
    if neg_score.dim() != 2 or neg_log_q.shape != neg_score.shape:
        raise ValueError(
            f"expected neg_score [B, L] and neg_log_q of the same shape, got {tuple(neg_score.shape)} and "
            f"{tuple(neg_log_q.shape)}"
        )
    logits = (neg_score - neg_log_q).detach()
    hit_mask = check_hit_mask(hit_mask, neg_score)
    if hit_mask is None:
        return torch.softmax(logits, dim=1)
    weights = torch.softmax(logits.masked_fill(hit_mask, float("-inf")), dim=1)
    return weights.nan_to_num(0.0)  # a row of hits only: softmax of all -inf is NaN, its weights are 0


def adasir(
    pos_score: torch.Tensor,
    neg_score: torch.Tensor,
    neg_log_q: torch.Tensor,
    *,
    pairwise: str = "bpr",
    margin: float = 1.0,
    hit_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """AdaSIR loss per row [B]: sum_j w_hat(j|c) * l(r_ci - r_cj) (seed 003 eq. 1), l = -ln sigmoid by default.

    `pairwise` picks l: 'bpr' (eq. 1) or 'triplet' ((r_cj - r_ci + margin)_+). Because the weights sum to one the
    value is on the scale of a single pair's loss, whatever the number of negatives L. Accidental hits
    (`hit_mask`) are left out.
    """
    if pos_score.dim() != 1 or neg_score.dim() != 2 or pos_score.shape[0] != neg_score.shape[0]:
        raise ValueError(
            f"expected pos_score [B] and neg_score [B, L], got {tuple(pos_score.shape)} and {tuple(neg_score.shape)}"
        )
    weights = adasir_weights(neg_score, neg_log_q, hit_mask)
    per_pair = _pairwise(neg_score - pos_score.unsqueeze(1), pairwise, margin)
    return (weights * per_pair).sum(dim=1)


def harmonic_weight(rank: torch.Tensor) -> torch.Tensor:
    """J(k) = sum_{j=1}^{k} 1/j = digamma(k + 1) + Euler's gamma, vectorised (WARP's rank weight, seed 003).

    J(1) = 1 and J grows like log k, so a positive ranked deep in the list weighs more than one at the top, but only
    logarithmically. Non-integer k (an averaged rank estimate) gets the analytic continuation; k < 1 is read as 1.
    """
    k = rank.detach().to(torch.get_default_dtype() if not rank.is_floating_point() else rank.dtype)
    return torch.special.digamma(k.clamp_min(1.0) + 1.0) + _EULER_GAMMA


def adasir_w(
    pos_score: torch.Tensor,
    neg_score: torch.Tensor,
    neg_log_q: torch.Tensor,
    rank_estimate: torch.Tensor,
    *,
    pairwise: str = "bpr",
    margin: float = 1.0,
    hit_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """AdaSIR-W loss per row [B]: J(rank(c, i)) * adasir(...) (seed 003 eq. 3).

    `rank_estimate` [B] is the (estimated) rank of each positive among all items, 1 = top, e.g. from the pool by
    eq. 2: floor((N - 1) * #{j in K_c : r_cj > r_ci} / |K_c|) + 1. It only weights, so it carries no gradient.
    """
    if rank_estimate.shape != pos_score.shape:
        raise ValueError(
            f"rank_estimate must be [B] like pos_score {tuple(pos_score.shape)}, got {tuple(rank_estimate.shape)}"
        )
    weight = harmonic_weight(rank_estimate).to(pos_score.dtype)
    return weight * adasir(pos_score, neg_score, neg_log_q, pairwise=pairwise, margin=margin, hit_mask=hit_mask)



# ------------------------------------------------------------------------------------------- registered losses

@register_loss("adasir")
def adasir_loss(pairwise: str = "bpr", margin: float = 1.0) -> RetrieverLoss:
    """AdaSIR (seed 003 eq. 1); needs neg_log_q = log w(j|c), the weight the AdaSIR sampler returns with each draw."""
    def fn(pos, neg, pos_q, neg_q, rank, hits):
        return adasir(pos, neg, need_neg_log_q("adasir", neg_q), pairwise=pairwise, margin=margin, hit_mask=hits)

    return RetrieverLoss("adasir", fn, {"pairwise": pairwise, "margin": margin})


@register_loss("adasir-w")
def adasir_w_loss(pairwise: str = "bpr", margin: float = 1.0) -> RetrieverLoss:
    """AdaSIR-W (seed 003 eq. 3): adasir times J(rank_estimate); needs the rank estimate of each positive."""
    def fn(pos, neg, pos_q, neg_q, rank, hits):
        return adasir_w(pos, neg, need_neg_log_q("adasir-w", neg_q), rank, pairwise=pairwise, margin=margin,
                        hit_mask=hits)

    return RetrieverLoss("adasir-w", fn, {"pairwise": pairwise, "margin": margin}, needs_rank_estimate=True)
