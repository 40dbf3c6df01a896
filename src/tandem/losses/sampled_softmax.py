"""Sampled log-softmax with log-Q correction (seed 000, eqs. 1 and 2)."""
from __future__ import annotations

import torch


def sampled_softmax(
    pos_score: torch.Tensor,
    neg_score: torch.Tensor,
    pos_log_q: torch.Tensor | None = None,
    neg_log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """Negative sampled log-softmax per row, [B].

    Every logit is corrected by subtracting log Q of the distribution it was drawn from, and the positive is part
    of the normaliser, so the loss stays non-negative like the full log-softmax. With all other items as negatives
    under a uniform Q the correction cancels and this equals the full softmax cross-entropy.
    """
    if neg_score.dim() != 2 or pos_score.shape[0] != neg_score.shape[0]:
        raise ValueError(f"expected pos [B] and neg [B, L], got {tuple(pos_score.shape)} and {tuple(neg_score.shape)}")
    pos = pos_score if pos_log_q is None else pos_score - pos_log_q
    neg = neg_score if neg_log_q is None else neg_score - neg_log_q
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1)
    return torch.logsumexp(logits, dim=1) - pos
