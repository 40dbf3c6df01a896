"""`build_sampler(name, num_items=N, **options)`: every sampler by name, with options checked by name.

| name        | class              | options (defaults)                                                              |
|-------------|--------------------|---------------------------------------------------------------------------------|
| uniform     | UniformSampler     | seed                                                                            |
| popularity  | PopularitySampler  | item_counts [N+1] (required), beta (1.0), smoothing (1.0), transform, seed      |
| exact       | ExactSampler       | temperature (1.0), seed, exclude_padding (True)                                 |
| midx        | MIDXSampler        | num_clusters (64), temperature, niter (20), max_points_per_centroid (256), seed |
| midx-pop    | MIDXSampler        | as midx + item_counts (required), beta, smoothing                               |
| adasir      | AdaSIRSampler      | num_contexts (required), proposal ('uniform'), pool_size (200),                 |
|             |                    | candidate_size (200), item_counts, beta, smoothing, temperature, seed           |
| dns         | DNSSampler         | candidate_size (10), temperature, seed                                          |
| toprand     | TopRandSampler     | top_factor (5), num_negatives (20), temperature, seed                           |
| top&rand    | TopAndRandSampler  | num_negatives (20), temperature, seed                                           |

All accept `seed` and `exclude_padding` (True: vectors given to refresh are [N+1, d] with row 0 = padding).
Options a sampler does not use are accepted only when generic (num_clusters, temperature, seed, exclude_padding
are listed as common options of the issue), so a config can switch samplers by name; anything else is an error.
"""
from __future__ import annotations

from typing import Any

import torch

from tandem.sampling.adasir import AdaSIRSampler
from tandem.sampling.base import Sampler
from tandem.sampling.exact import ExactSampler
from tandem.sampling.midx import MIDXSampler
from tandem.sampling.static import PopularitySampler, UniformSampler
from tandem.sampling.topk import DNSSampler, TopAndRandSampler, TopRandSampler

#: Options every sampler accepts (ignored by those that have no use for them).
COMMON_OPTIONS = frozenset({"num_clusters", "temperature", "seed", "exclude_padding"})

#: Specific options of each sampler name.
SAMPLER_OPTIONS: dict[str, frozenset[str]] = {
    "uniform": frozenset(),
    "popularity": frozenset({"item_counts", "beta", "smoothing", "transform"}),
    "exact": frozenset(),
    "midx": frozenset({"niter", "max_points_per_centroid"}),
    "midx-pop": frozenset({"item_counts", "beta", "smoothing", "niter", "max_points_per_centroid"}),
    "adasir": frozenset({"proposal", "pool_size", "candidate_size", "num_contexts", "item_counts", "beta",
                         "smoothing", "transform"}),
    "dns": frozenset({"candidate_size"}),
    "toprand": frozenset({"top_factor", "num_negatives"}),
    "top&rand": frozenset({"num_negatives"}),
}

SAMPLER_NAMES: tuple[str, ...] = tuple(SAMPLER_OPTIONS)


def _generator(seed: int | None) -> torch.Generator | None:
    return None if seed is None else torch.Generator().manual_seed(int(seed))


def build_sampler(name: str, num_items: int, **options: Any) -> Sampler:
    """The sampler called `name` over items 1..num_items; unknown names or options raise ValueError naming them.

    Example::

        sampler = build_sampler("midx", num_items=N, num_clusters=64, temperature=1.0, seed=0)
        sampler.refresh(retriever.item_vectors())
    """
    if name not in SAMPLER_OPTIONS:
        raise ValueError(f"unknown sampler {name!r}; expected one of {', '.join(SAMPLER_NAMES)}")
    allowed = COMMON_OPTIONS | SAMPLER_OPTIONS[name]
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for sampler {name!r}; allowed: {', '.join(sorted(allowed))}"
        )
    if not isinstance(num_items, int) or isinstance(num_items, bool) or num_items < 1:
        raise ValueError(f"num_items must be a positive integer, got {num_items!r}")
    seed = options.pop("seed", None)
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    num_clusters = options.pop("num_clusters", 64)
    temperature = options.pop("temperature", 1.0)
    exclude_padding = options.pop("exclude_padding", True)
    if not isinstance(exclude_padding, bool):
        raise ValueError(f"exclude_padding must be true or false, got {exclude_padding!r}")
    vector_args = {"temperature": temperature, "seed": seed, "exclude_padding": exclude_padding}

    if name in ("popularity", "midx-pop") and options.get("item_counts") is None:
        raise ValueError(f"sampler {name!r} needs item_counts ([num_items + 1] interaction counts)")
    if name == "uniform":
        return UniformSampler(num_items, generator=_generator(seed))
    if name == "popularity":
        return PopularitySampler(num_items, generator=_generator(seed), **options)
    if name == "exact":
        return ExactSampler(num_items, **vector_args)
    if name in ("midx", "midx-pop"):
        return MIDXSampler(num_items, num_clusters=num_clusters, **vector_args, **options)
    if name == "adasir":
        if "num_contexts" not in options:
            raise ValueError("sampler 'adasir' needs num_contexts (number of context ids keying the pools)")
        return AdaSIRSampler(num_items, **vector_args, **options)
    if name == "dns":
        return DNSSampler(num_items, **vector_args, **options)
    if name == "toprand":
        return TopRandSampler(num_items, **vector_args, **options)
    return TopAndRandSampler(num_items, **vector_args, **options)
