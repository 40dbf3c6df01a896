"""AdaSIR's self-normalised importance-weighted pairwise loss and its rank-weighted AdaSIR-W (seed 003, eqs. 1-3).

The negatives J_ci of a row are drawn (through AdaSIR's resampled pools) from candidates that a static proposal Q
generated. Each drawn negative j is weighted by a softmax over the row's draws of sg(r_cj - log Q(j)) (eq. 1), a
self-normalised importance weight toward the softmax distribution exp(r_cj) / sum exp(r): hard negatives count
more, and the weights are constants (no gradient), as importance weights are. AdaSIR-W (eq. 3) further scales each
positive's loss by J(rank) = sum_{k <= rank} 1/k (WARP), so that badly ranked positives get more of the gradient.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["adasir_weights", "adasir", "adasir_w", "harmonic_weight"]

_EULER_GAMMA = 0.57721566490153286060651209


def _pairwise(gaps: torch.Tensor, pairwise: str, margin: float) -> torch.Tensor:
    if pairwise == "bpr":
        return F.softplus(gaps)  # -ln sigmoid(r_ci - r_cj)
    if pairwise == "triplet":
        return F.relu(gaps + margin)
    raise ValueError(f"unknown pairwise loss {pairwise!r}; expected 'bpr' or 'triplet'")


def adasir_weights(neg_score: torch.Tensor, neg_log_q: torch.Tensor) -> torch.Tensor:
    """Self-normalised importance weights w_hat [B, L] of seed 003 eq. 1: softmax_j(sg(neg_score - neg_log_q)).

    `neg_log_q` is the log-probability of each negative under the static proposal that generated the pool
    candidates (what tandem's AdaSIR sampler returns). Each row sums to one. Detached: the weights select, they are
    not trained through.
    """
    if neg_score.dim() != 2 or neg_log_q.shape != neg_score.shape:
        raise ValueError(
            f"expected neg_score [B, L] and neg_log_q of the same shape, got {tuple(neg_score.shape)} and "
            f"{tuple(neg_log_q.shape)}"
        )
    return torch.softmax((neg_score - neg_log_q).detach(), dim=1)


def adasir(
    pos_score: torch.Tensor,
    neg_score: torch.Tensor,
    neg_log_q: torch.Tensor,
    *,
    pairwise: str = "bpr",
    margin: float = 1.0,
) -> torch.Tensor:
    """AdaSIR loss per row [B]: sum_j w_hat(j|c) * l(r_ci - r_cj) (seed 003 eq. 1), l = -ln sigmoid by default.

    `pairwise` picks l: 'bpr' (eq. 1) or 'triplet' ((r_cj - r_ci + margin)_+). Because the weights sum to one the
    value is on the scale of a single pair's loss, whatever the number of negatives L.
    """
    if pos_score.dim() != 1 or neg_score.dim() != 2 or pos_score.shape[0] != neg_score.shape[0]:
        raise ValueError(
            f"expected pos_score [B] and neg_score [B, L], got {tuple(pos_score.shape)} and {tuple(neg_score.shape)}"
        )
    weights = adasir_weights(neg_score, neg_log_q)
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
    return weight * adasir(pos_score, neg_score, neg_log_q, pairwise=pairwise, margin=margin)

