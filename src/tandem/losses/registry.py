"""Retriever losses by name, all behind one call signature so any scheme can use any of them with any sampler.

Each loss registers a builder next to its function with `@register_loss("name")` (`tandem.registry.LOSSES`): the
builder takes the loss's options (and `num_items`, the catalogue size, if it needs it) and returns a
`RetrieverLoss`. `LOSS_NAMES` lists them all.

    loss = build_loss("croloss", num_items=N, alpha=1.2)
    per_row = loss(pos_score [B], neg_score [B, L], pos_log_q [B], neg_log_q [B, L], rank_estimate=None,
                   hit_mask=None)  # [B]; hit_mask [B, L] True where a negative is the row's positive

A scheme reads two attributes before drawing negatives: `shares_negatives` (score every positive against the whole
batch's B * n sampled items, neg_score [B, B * n], as CROLoss does in seed 002 sec. 4.1) and `needs_rank_estimate`
(AdaSIR-W wants the rank of each positive, seed 003 eq. 2).
"""
from __future__ import annotations

import operator
from typing import Any, Callable

import torch

from tandem.registry import LOSSES

__all__ = ["RetrieverLoss", "build_loss", "need_neg_log_q", "LOSS_NAMES"]

Tensor = torch.Tensor


class RetrieverLoss:
    """A named retriever loss: `(pos_score [B], neg_score [B, L], pos_log_q [B], neg_log_q [B, L], *,
    rank_estimate=None, hit_mask=None) -> [B]` per-row losses (reduce them yourself, e.g. `.mean()`).

    `hit_mask` [B, L] (bool, True where the sampled negative is the row's own positive, see
    `tandem.losses.sampled_softmax.accidental_hits`) leaves those accidental hits out of every loss.

    Attributes:
        name: the registry name it was built from.
        options: the resolved options (defaults filled in).
        shares_negatives: the caller should pass, for every row, the negatives of the whole batch ([B, B * n]).
        needs_rank_estimate: the caller must pass `rank_estimate` [B] (rank of each positive, 1 = top).
    """

    def __init__(
        self,
        name: str,
        fn: Callable[..., Tensor],
        options: dict[str, Any],
        *,
        shares_negatives: bool = False,
        needs_rank_estimate: bool = False,
    ) -> None:
        self.name = name
        self.options = dict(options)
        self.shares_negatives = bool(shares_negatives)
        self.needs_rank_estimate = bool(needs_rank_estimate)
        self._fn = fn

    def __call__(
        self,
        pos_score: Tensor,
        neg_score: Tensor,
        pos_log_q: Tensor | None = None,
        neg_log_q: Tensor | None = None,
        *,
        rank_estimate: Tensor | None = None,
        hit_mask: Tensor | None = None,
    ) -> Tensor:
        if pos_score.dim() != 1 or neg_score.dim() != 2 or pos_score.shape[0] != neg_score.shape[0]:
            raise ValueError(
                f"loss {self.name!r}: expected pos_score [B] and neg_score [B, L], got {tuple(pos_score.shape)} "
                f"and {tuple(neg_score.shape)}"
            )
        if neg_log_q is not None and neg_log_q.shape != neg_score.shape:
            raise ValueError(
                f"loss {self.name!r}: neg_log_q must match neg_score {tuple(neg_score.shape)}, "
                f"got {tuple(neg_log_q.shape)}"
            )
        if hit_mask is not None and hit_mask.shape != neg_score.shape:
            raise ValueError(
                f"loss {self.name!r}: hit_mask must match neg_score {tuple(neg_score.shape)}, "
                f"got {tuple(hit_mask.shape)}"
            )
        if self.needs_rank_estimate and rank_estimate is None:
            raise ValueError(f"loss {self.name!r} needs rank_estimate [B] (the rank of each positive)")
        return self._fn(pos_score, neg_score, pos_log_q, neg_log_q, rank_estimate, hit_mask)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"RetrieverLoss({self.name!r}{', ' if opts else ''}{opts})"


def need_neg_log_q(name: str, neg_log_q: Tensor | None) -> Tensor:
    """`neg_log_q`, or a ValueError saying that the loss `name` needs it."""
    if neg_log_q is None:
        raise ValueError(f"loss {name!r} needs neg_log_q [B, L] (log-probability of the proposal of each negative)")
    return neg_log_q


def build_loss(name: str, *, num_items: int, **options: Any) -> RetrieverLoss:
    """Build the retriever loss `name` for a catalogue of `num_items` items.

    Names and their options (defaults in brackets):
      softmax      log-Q corrected sampled softmax (seed 000 eqs. 1-2)
      softmax-noq  sampled softmax without correction (seed 002 eq. 1)
      bpr          mean over negatives of -log sigmoid(S_pos - S_neg) (seed 002 eq. 4)
      triplet      margin [1.0]: mean over negatives of (S_neg - S_pos + margin)_+ (seed 002 eq. 2)
      croloss      kernel ['softplus'], alpha [1.0], margin [1.0], shared_negatives [True], log_q_correction
                   [False], weight_kernel [None] (seed 002 eqs. 16, 24)
      croloss-lambda  as croloss, with weight_kernel ['sigmoid'] (phi_1; 'step' allowed) (seed 002 eqs. 21-23)
      adasir       pairwise ['bpr' | 'triplet'], margin [1.0] (seed 003 eq. 1); needs neg_log_q = log w(j|c), the
                   resampling weight the AdaSIR sampler returns with each draw
      adasir-w     as adasir, times J(rank_estimate) (seed 003 eq. 3); needs rank_estimate
      bce          positive_weight [1.0]: pointwise binary cross-entropy, positive 1 (weighted: LogisticMF's
                   confidence alpha) and each negative 0
      top1         GRU4Rec's TOP1: mean over negatives of sigmoid(S_neg - S_pos) + sigmoid(S_neg^2)

    An unknown name or option is a ValueError that names it.
    """
    try:
        num_items = operator.index(num_items)
    except TypeError:
        raise ValueError(f"num_items must be a positive int, got {num_items!r}") from None
    if num_items < 1:
        raise ValueError(f"num_items must be a positive int, got {num_items!r}")
    return LOSSES.build(name, {"num_items": num_items}, options)


def __getattr__(name: str) -> Any:
    if name == "LOSS_NAMES":  # every registered loss, found when first asked (module attribute, PEP 562)
        return tuple(LOSSES)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
