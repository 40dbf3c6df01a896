"""TOP1, GRU4Rec's ranking loss (Hidasi et al., ICLR 2016, sec. 3.1.2), per row [B].

    L = 1/N_S sum_j [ sigma(r_j - r_i) + sigma(r_j^2) ]

over the N_S sampled negatives j of a row whose positive scores r_i: the first term is a relaxation of the
positive's rank, the second pulls the negatives' scores towards zero (a regulariser the paper adds because
negatives are items that do get positive feedback elsewhere). Accidental hits (a negative equal to the positive)
are left out of the mean, as in every tandem loss.
"""
from __future__ import annotations

import torch

from tandem.losses.pairwise import masked_mean
from tandem.losses.registry import RetrieverLoss
from tandem.registry import register_loss


def top1(pos: torch.Tensor, neg: torch.Tensor, hit_mask: torch.Tensor | None = None) -> torch.Tensor:
    """TOP1 per row [B] of positive scores `pos` [B] and negative scores `neg` [B, L]."""
    if pos.dim() != 1 or neg.dim() != 2 or pos.shape[0] != neg.shape[0]:
        raise ValueError(f"expected pos [B] and neg [B, L], got {tuple(pos.shape)} and {tuple(neg.shape)}")
    return masked_mean(torch.sigmoid(neg - pos.unsqueeze(1)) + torch.sigmoid(neg.square()), hit_mask)


@register_loss("top1")
def top1_loss() -> RetrieverLoss:
    """GRU4Rec's TOP1 over the sampled negatives (no log-Q correction: the paper samples by popularity and uses
    the scores as they are)."""
    return RetrieverLoss("top1", lambda pos, neg, pos_q, neg_q, rank, hits: top1(pos, neg, hit_mask=hits), {})
