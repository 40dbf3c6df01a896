"""Sampled log-softmax with log-Q correction (seed 000, eqs. 1 and 2), accidental hits masked."""
from __future__ import annotations

import torch


def accidental_hits(positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Bool mask [B, L]: True where the sampled negative is the row's own positive (an accidental hit).

    `positives` is [B] item ids and `negatives` [B, L] item ids (for shared in-batch negatives, the [B, B * n]
    matrix each row is scored against). Pass the result as `hit_mask` to any loss so the positive is never
    pushed down as its own negative.
    """
    if positives.dim() != 1 or negatives.dim() != 2 or positives.shape[0] != negatives.shape[0]:
        raise ValueError(
            f"expected positives [B] and negatives [B, L], got {tuple(positives.shape)} and {tuple(negatives.shape)}"
        )
    return negatives == positives.to(negatives.device).unsqueeze(1)


def check_hit_mask(hit_mask: torch.Tensor | None, neg_score: torch.Tensor) -> torch.Tensor | None:
    """`hit_mask` as a bool tensor on neg_score's device, after checking it is [B, L] like `neg_score`."""
    if hit_mask is None:
        return None
    if hit_mask.shape != neg_score.shape:
        raise ValueError(f"hit_mask must match neg_score {tuple(neg_score.shape)}, got {tuple(hit_mask.shape)}")
    return hit_mask.to(device=neg_score.device, dtype=torch.bool)


def sampled_softmax(
    pos_score: torch.Tensor,
    neg_score: torch.Tensor,
    pos_log_q: torch.Tensor | None = None,
    neg_log_q: torch.Tensor | None = None,
    hit_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Negative sampled log-softmax per row, [B].

    Every logit is corrected by subtracting log Q of the distribution it was drawn from, and the positive is part
    of the normaliser, so the loss stays non-negative like the full log-softmax. With all other items as negatives
    under a uniform Q the correction cancels and this equals the full softmax cross-entropy. `hit_mask` [B, L]
    (True = the negative is the row's positive, see `accidental_hits`) drops those draws from the normaliser: the
    full softmax counts the positive once, as the positive.
    """
    if neg_score.dim() != 2 or pos_score.shape[0] != neg_score.shape[0]:
        raise ValueError(f"expected pos [B] and neg [B, L], got {tuple(pos_score.shape)} and {tuple(neg_score.shape)}")
    hit_mask = check_hit_mask(hit_mask, neg_score)
    pos = pos_score if pos_log_q is None else pos_score - pos_log_q
    neg = neg_score if neg_log_q is None else neg_score - neg_log_q
    if hit_mask is not None:
        neg = neg.masked_fill(hit_mask, float("-inf"))
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1)
    return torch.logsumexp(logits, dim=1) - pos
