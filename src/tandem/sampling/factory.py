"""`build_sampler(name, num_items=N, **options)`: every sampler by its registered name (`tandem.registry.SAMPLERS`).

Each sampler registers itself next to its class with `@register_sampler("name")` (the class, or a small function
when the config options differ from the constructor's, as for `uniform` and `midx-pop`):

| name        | options (defaults)                                                                     | context      |
|-------------|----------------------------------------------------------------------------------------|--------------|
| uniform     | seed                                                                                   |              |
| popularity  | beta (1.0), smoothing (1.0), transform ('power' or 'log'), seed                        | item_counts  |
| exact       | temperature (1.0), seed, exclude_padding (True)                                        |              |
| midx        | num_clusters (64), temperature, niter (20), max_points_per_centroid (256), seed, exclude_padding |   |
| midx-pop    | as midx + beta, smoothing                                                              | item_counts  |
| adasir      | proposal ('uniform'), pool_size (200), candidate_size (200), beta, smoothing, transform, temperature, seed, exclude_padding | num_contexts, item_counts |
| dns         | candidate_size (10), temperature, seed, exclude_padding                                |              |
| toprand     | top_factor (5), num_negatives (20), temperature, seed, exclude_padding                  |              |
| top&rand    | num_negatives (20), temperature, seed, exclude_padding                                 |              |

The context (`item_counts` [N+1] interaction counts, `num_contexts` the number of context ids keying AdaSIR's
pools) comes from the training data; a sampler takes it by naming it in its signature and ignores it otherwise.
`exclude_padding` (True): vectors given to refresh are [N+1, d] with row 0 = padding. An option a sampler does not
have, or a value of the wrong type, is a ValueError naming it.
"""
from __future__ import annotations

from typing import Any

from tandem.registry import SAMPLERS
from tandem.sampling.base import Sampler


def build_sampler(name: str, num_items: int, **options: Any) -> Sampler:
    """The sampler called `name` over items 1..num_items; unknown names or options raise ValueError naming them.

    `item_counts` and `num_contexts` may be given with the options: they are context, passed to the samplers
    that take them. Example::

        sampler = build_sampler("midx", num_items=N, num_clusters=64, temperature=1.0, seed=0)
        sampler.refresh(retriever.item_vectors())
    """
    context: dict[str, Any] = {"num_items": num_items}
    for key in SAMPLERS.context - {"num_items"}:
        if key in options:
            context[key] = options.pop(key)
    return SAMPLERS.build(name, context, options)


def __getattr__(name: str) -> Any:
    if name == "SAMPLER_NAMES":  # every registered sampler, found when first asked (module attribute, PEP 562)
        return tuple(SAMPLERS)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
