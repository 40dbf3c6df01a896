"""Losses: pure functions of score tensors (they know nothing of models)."""
from tandem.losses.adasir import adasir, adasir_w
from tandem.losses.croloss import croloss, scaled_cosine
from tandem.losses.distill import build_distill_loss, co_distill, corollary_kl_estimate, rank_distill, sampled_kl
from tandem.losses.pairwise import bpr, softmax_ce, triplet
from tandem.losses.registry import RetrieverLoss, build_loss
from tandem.losses.sampled_softmax import accidental_hits, sampled_softmax

__all__ = [
    "sampled_softmax",
    "accidental_hits",
    "sampled_kl",
    "corollary_kl_estimate",
    "rank_distill",
    "co_distill",
    "build_distill_loss",
    "croloss",
    "scaled_cosine",
    "bpr",
    "triplet",
    "softmax_ce",
    "adasir",
    "adasir_w",
    "RetrieverLoss",
    "build_loss",
]
