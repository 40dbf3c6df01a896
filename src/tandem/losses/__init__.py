"""Losses: pure functions of score tensors (they know nothing of models)."""
from tandem.losses.sampled_softmax import sampled_softmax
from tandem.losses.distill import build_distill_loss, co_distill, corollary_kl_estimate, rank_distill, sampled_kl
from tandem.losses.adasir import adasir, adasir_w
from tandem.losses.croloss import croloss, scaled_cosine
from tandem.losses.pairwise import bpr, softmax_ce, triplet
from tandem.losses.registry import RetrieverLoss, build_loss

__all__ = ["sampled_softmax"]
__all__ += ["adasir", "adasir_w", "croloss", "scaled_cosine", "bpr", "softmax_ce", "triplet"]
__all__ += ["RetrieverLoss", "build_loss"]
__all__ += ["sampled_kl", "corollary_kl_estimate", "rank_distill", "co_distill", "build_distill_loss"]
