"""The conventional retrieval losses CROLoss generalises (seed 002, eqs. 1, 2 and 4), per row [B].

The pairwise losses average over the L negatives of a row rather than summing (eqs. 2 and 4 sum): the value then
does not grow with the number of negatives, so changing n does not change the effective learning rate. With
`tandem.losses.croloss` at alpha = 0 they differ from CROLoss only by a constant (eqs. 18-19). Every loss takes
`hit_mask` [B, L] (True where a sampled negative is the row's own positive): those draws are left out, and the mean
is over the remaining negatives (0 for a row with none).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tandem.losses.registry import RetrieverLoss
from tandem.losses.sampled_softmax import check_hit_mask, sampled_softmax
from tandem.registry import register_loss

__all__ = ["bpr", "triplet", "softmax_ce", "masked_mean"]


def _gaps(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    if pos.dim() != 1 or neg.dim() != 2 or pos.shape[0] != neg.shape[0]:
        raise ValueError(f"expected pos [B] and neg [B, L], got {tuple(pos.shape)} and {tuple(neg.shape)}")
    return neg - pos.unsqueeze(1)


def masked_mean(values: torch.Tensor, hit_mask: torch.Tensor | None) -> torch.Tensor:
    """Row means [B] of `values` [B, L] over the entries that are not accidental hits (0 where none is left)."""
    hit_mask = check_hit_mask(hit_mask, values)
    if hit_mask is None:
        return values.mean(dim=1)
    keep = ~hit_mask
    total = values.masked_fill(hit_mask, 0.0).sum(dim=1)
    return total / keep.sum(dim=1).clamp_min(1).to(values.dtype)


def bpr(pos: torch.Tensor, neg: torch.Tensor, hit_mask: torch.Tensor | None = None) -> torch.Tensor:
    """BPR loss per row [B]: mean_i -log sigmoid(S_pos - S_i) = mean_i softplus(S_i - S_pos) (eq. 4 / L).

    Written through softplus, which is exact and stable for large gaps of either sign. Accidental hits
    (`hit_mask`) are left out of the mean.
    """
    return masked_mean(F.softplus(_gaps(pos, neg)), hit_mask)


def triplet(
    pos: torch.Tensor, neg: torch.Tensor, margin: float = 1.0, hit_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Triplet loss per row [B] with the user as anchor: mean_i (S_i - S_pos + margin)_+ (eq. 2 / L).

    The margin enlarges the gap required between the positive and each negative before the pair stops contributing.
    Accidental hits (`hit_mask`) are left out of the mean.
    """
    return masked_mean(F.relu(_gaps(pos, neg) + margin), hit_mask)


def softmax_ce(
    pos: torch.Tensor,
    neg: torch.Tensor,
    pos_log_q: torch.Tensor | None = None,
    neg_log_q: torch.Tensor | None = None,
    hit_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sampled softmax cross-entropy per row [B] (eq. 1), log-Q corrected when the log-probabilities are given.

    Without log Q it is -log(e^{S_pos} / (e^{S_pos} + sum_i e^{S_i})) over the sampled negatives, biased toward
    popular items under a non-uniform proposal; with log Q every logit is corrected by the log-probability of the
    distribution it was drawn from (see `tandem.losses.sampled_softmax`).
    """
    _gaps(pos, neg)
    return sampled_softmax(pos, neg, pos_log_q, neg_log_q, hit_mask=hit_mask)


def binary_cross_entropy(pos: torch.Tensor, neg: torch.Tensor, hit_mask: torch.Tensor | None = None,
                         positive_weight: float = 1.0) -> torch.Tensor:
    """Pointwise BCE per row [B]: -c log sigmoid(S_pos) - mean_i log sigmoid(-S_i) (the positive labelled 1 with
    weight c, each negative 0) — the loss RecBole-style baselines such as SASRec-BCE train with (c = 1), and
    LogisticMF's confidence-weighted likelihood (Johnson 2014, eq. 2: alpha r_ui log p + log(1 - p), here with
    c = alpha for a training row r_ui = 1 and the log(1 - p) sum over items estimated by the sampled negatives)."""
    return positive_weight * F.softplus(-pos) + masked_mean(F.softplus(neg), hit_mask)


# ------------------------------------------------------------------------------------------- registered losses

@register_loss("softmax")
def softmax_loss() -> RetrieverLoss:
    """The log-Q corrected sampled softmax (seed 000 eqs. 1-2)."""
    def fn(pos, neg, pos_q, neg_q, rank, hits):
        if (pos_q is None) != (neg_q is None):
            raise ValueError("loss 'softmax' needs both pos_log_q and neg_log_q (or neither, for no correction)")
        return softmax_ce(pos, neg, pos_q, neg_q, hit_mask=hits)

    return RetrieverLoss("softmax", fn, {})


@register_loss("softmax-noq")
def softmax_noq_loss() -> RetrieverLoss:
    """The sampled softmax without correction (seed 002 eq. 1)."""
    return RetrieverLoss("softmax-noq", lambda pos, neg, pos_q, neg_q, rank, hits: softmax_ce(pos, neg, hit_mask=hits),
                         {})


@register_loss("bpr")
def bpr_loss() -> RetrieverLoss:
    """Mean over negatives of -log sigmoid(S_pos - S_neg) (seed 002 eq. 4)."""
    return RetrieverLoss("bpr", lambda pos, neg, pos_q, neg_q, rank, hits: bpr(pos, neg, hit_mask=hits), {})


@register_loss("bce")
def bce_loss(positive_weight: float = 1.0) -> RetrieverLoss:
    """Pointwise binary cross-entropy: the positive labelled 1 (weighted by `positive_weight`, LogisticMF's
    confidence alpha), each negative 0."""
    if not 0 < positive_weight < float("inf"):
        raise ValueError(f"positive_weight must be a positive finite number, got {positive_weight}")

    def fn(pos, neg, pos_q, neg_q, rank, hits):
        return binary_cross_entropy(pos, neg, hit_mask=hits, positive_weight=positive_weight)

    return RetrieverLoss("bce", fn, {"positive_weight": positive_weight})


@register_loss("triplet")
def triplet_loss(margin: float = 1.0) -> RetrieverLoss:
    """Mean over negatives of (S_neg - S_pos + margin)_+ (seed 002 eq. 2)."""
    def fn(pos, neg, pos_q, neg_q, rank, hits):
        return triplet(pos, neg, margin, hit_mask=hits)

    return RetrieverLoss("triplet", fn, {"margin": margin})
