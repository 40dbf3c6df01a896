"""Retriever losses by name, all behind one call signature so any scheme can use any of them with any sampler.

    loss = build_loss("croloss", num_items=N, alpha=1.2)
    per_row = loss(pos_score [B], neg_score [B, L], pos_log_q [B], neg_log_q [B, L], rank_estimate=None,
                   hit_mask=None)  # [B]; hit_mask [B, L] True where a negative is the row's positive

A scheme reads two attributes before drawing negatives: `shares_negatives` (score every positive against the whole
batch's B * n sampled items, neg_score [B, B * n], as CROLoss does in seed 002 sec. 4.1) and `needs_rank_estimate`
(AdaSIR-W wants the rank of each positive, seed 003 eq. 2).
"""
from __future__ import annotations

import inspect
import operator
from typing import Any, Callable

import torch

from tandem.losses.adasir import adasir, adasir_w
from tandem.losses.croloss import croloss, get_kernel
from tandem.losses.pairwise import binary_cross_entropy, bpr, softmax_ce, triplet

__all__ = ["RetrieverLoss", "build_loss", "LOSS_NAMES"]

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


def _need_neg_log_q(name: str, neg_log_q: Tensor | None) -> Tensor:
    if neg_log_q is None:
        raise ValueError(f"loss {name!r} needs neg_log_q [B, L] (log-probability of the proposal of each negative)")
    return neg_log_q


def _softmax(num_items: int) -> RetrieverLoss:
    def fn(pos, neg, pos_q, neg_q, rank, hits):
        if (pos_q is None) != (neg_q is None):
            raise ValueError("loss 'softmax' needs both pos_log_q and neg_log_q (or neither, for no correction)")
        return softmax_ce(pos, neg, pos_q, neg_q, hit_mask=hits)

    return RetrieverLoss("softmax", fn, {})


def _softmax_noq(num_items: int) -> RetrieverLoss:
    return RetrieverLoss("softmax-noq", lambda pos, neg, pos_q, neg_q, rank, hits: softmax_ce(pos, neg, hit_mask=hits),
                         {})


def _bpr(num_items: int) -> RetrieverLoss:
    return RetrieverLoss("bpr", lambda pos, neg, pos_q, neg_q, rank, hits: bpr(pos, neg, hit_mask=hits), {})


def _bce(num_items: int) -> RetrieverLoss:
    return RetrieverLoss(
        "bce", lambda pos, neg, pos_q, neg_q, rank, hits: binary_cross_entropy(pos, neg, hit_mask=hits), {})


def _triplet(num_items: int, margin: float = 1.0) -> RetrieverLoss:
    def fn(pos, neg, pos_q, neg_q, rank, hits):
        return triplet(pos, neg, margin, hit_mask=hits)

    return RetrieverLoss("triplet", fn, {"margin": margin})


def _croloss_factory(name: str, default_weight_kernel: str | None, default_kernel: str, default_alpha: float):
    def make(
        num_items: int,
        kernel: str = default_kernel,
        alpha: float = default_alpha,
        margin: float = 1.0,
        weight_kernel: str | None = default_weight_kernel,
        shared_negatives: bool = True,
        log_q_correction: bool = False,
    ) -> RetrieverLoss:
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

    return make


def _adasir(num_items: int, pairwise: str = "bpr", margin: float = 1.0) -> RetrieverLoss:
    def fn(pos, neg, pos_q, neg_q, rank, hits):
        return adasir(pos, neg, _need_neg_log_q("adasir", neg_q), pairwise=pairwise, margin=margin, hit_mask=hits)

    return RetrieverLoss("adasir", fn, {"pairwise": pairwise, "margin": margin})


def _adasir_w(num_items: int, pairwise: str = "bpr", margin: float = 1.0) -> RetrieverLoss:
    def fn(pos, neg, pos_q, neg_q, rank, hits):
        return adasir_w(pos, neg, _need_neg_log_q("adasir-w", neg_q), rank, pairwise=pairwise, margin=margin,
                        hit_mask=hits)

    return RetrieverLoss("adasir-w", fn, {"pairwise": pairwise, "margin": margin}, needs_rank_estimate=True)


_BUILDERS: dict[str, Callable[..., RetrieverLoss]] = {
    "softmax": _softmax,
    "softmax-noq": _softmax_noq,
    "bpr": _bpr,
    "bce": _bce,
    "triplet": _triplet,
    # seed 002 Table 2: softplus with alpha = 1.0 is the best plain CROLoss on Amazon and always best or second best
    "croloss": _croloss_factory("croloss", None, "softplus", 1.0),
    # seed 002 Tables 2 and 4: phi_1 = sigmoid beats the unit step "in most cases"; phi_2 = softplus at alpha = 1.0
    # is best on Amazon (Taobao, the larger catalogue, prefers phi_2 = exponential at alpha = 1.4)
    "croloss-lambda": _croloss_factory("croloss-lambda", "sigmoid", "softplus", 1.0),
    "adasir": _adasir,
    "adasir-w": _adasir_w,
}

LOSS_NAMES: tuple[str, ...] = tuple(_BUILDERS)


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

    An unknown name or option is a ValueError that names it.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSS_NAMES)}")
    try:
        num_items = operator.index(num_items)
    except TypeError:
        raise ValueError(f"num_items must be a positive int, got {num_items!r}") from None
    if num_items < 1:
        raise ValueError(f"num_items must be a positive int, got {num_items!r}")
    builder = _BUILDERS[name]
    accepted = [p for p in inspect.signature(builder).parameters if p != "num_items"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for loss {name!r}; "
            f"expected {', '.join(accepted) if accepted else 'none'}"
        )
    return builder(num_items, **options)
