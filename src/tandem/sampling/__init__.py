"""Negative samplers: one protocol (`Sampler`), static and adaptive implementations, and `build_sampler` by name.

    from tandem.sampling import build_sampler
    sampler = build_sampler("midx", num_items=N, num_clusters=64, seed=0)
    sampler.refresh(item_vectors)                  # [N+1, d], row 0 padding; again whenever the retriever moves
    items, log_q = sampler.sample(query, 20)       # [B, 20] in 1..N and log Q(item | query)

Every sampler registers itself with `@register_sampler("name")` (`tandem.registry.SAMPLERS`); `SAMPLER_NAMES` lists
them all.
"""
from typing import Any

from tandem.sampling.adasir import AdaSIRSampler
from tandem.sampling.base import Sampler
from tandem.sampling.exact import ExactSampler
from tandem.sampling.factory import build_sampler
from tandem.sampling.midx import MIDXSampler
from tandem.sampling.static import PopularitySampler, UniformSampler
from tandem.sampling.topk import DNSSampler, TopAndRandSampler, TopRandSampler

__all__ = [
    "Sampler",
    "UniformSampler",
    "PopularitySampler",
    "ExactSampler",
    "MIDXSampler",
    "AdaSIRSampler",
    "DNSSampler",
    "TopRandSampler",
    "TopAndRandSampler",
    "SAMPLER_NAMES",
    "build_sampler",
]


def __getattr__(name: str) -> Any:
    if name == "SAMPLER_NAMES":
        from tandem.registry import SAMPLERS

        return tuple(SAMPLERS)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
