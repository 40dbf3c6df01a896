"""Negative samplers: one protocol (`Sampler`), static and adaptive implementations."""
from tandem.sampling.base import Sampler
from tandem.sampling.static import PopularitySampler, UniformSampler

__all__ = ["Sampler", "UniformSampler", "PopularitySampler"]
