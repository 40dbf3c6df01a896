"""Losses: pure functions of score tensors (they know nothing of models)."""
from tandem.losses.sampled_softmax import sampled_softmax

__all__ = ["sampled_softmax"]
