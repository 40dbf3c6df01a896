"""Build a training scheme, with its models, sampler and losses, from a config."""
from __future__ import annotations

from typing import Any, Callable

from tandem.config import Config
from tandem.data.dataset import InteractionData
from tandem.data.splits import Split
from tandem.models.retrievers import build_retriever
from tandem.sampling.base import Sampler
from tandem.training.cooperative import CoRRScheme, ICCScheme, IndependentScheme, RankFlowScheme
from tandem.training.schemes import RetrieverScheme, Scheme
from tandem.utils import call_with_options


def options_of(section: dict[str, Any], *reserved: str) -> dict[str, Any]:
    """A config section's options: everything but its name and the keys the wiring consumes itself."""
    return {key: value for key, value in section.items() if key not in ("name", *reserved)}


def make_retriever(config: Config, data: InteractionData, split: Split):
    return build_retriever(
        config.retriever["name"],
        num_users=data.num_users,
        num_items=data.num_items,
        max_seq_len=max(1, split.max_seq_len),
        user_features=data.user_features,
        item_features=data.item_features,
        **options_of(config.retriever),
    )


def make_sampler(section: dict[str, Any], data: InteractionData, split: Split, seed: int) -> Sampler:
    """The configured sampler; data-derived arguments (item counts, number of contexts) are filled in."""
    from tandem.sampling import build_sampler

    name = section["name"]
    options = options_of(section, "refresh")
    counts = data.item_counts()
    if name in ("popularity", "midx-pop") or (name == "adasir" and options.get("proposal") == "popularity"):
        options.setdefault("item_counts", counts)
    if name == "adasir":
        options.setdefault("num_contexts", split.train.num_contexts)
    options.setdefault("seed", seed)
    return build_sampler(name, num_items=data.num_items, **options)


def make_loss(section: dict[str, Any], data: InteractionData):
    from tandem.losses.registry import build_loss

    return build_loss(section["name"], num_items=data.num_items, **options_of(section))


def build_retriever_scheme(config: Config, data: InteractionData, split: Split) -> Scheme:
    unused = options_of(config.scheme)
    if unused:
        raise ValueError(f"unknown option(s) {sorted(unused)} for scheme 'retriever'")
    return RetrieverScheme(
        make_retriever(config, data, split),
        make_sampler(config.sampler, data, split, config.seed),
        make_loss(config.loss, data),
        config.train.num_negatives,
        config.sampler.get("refresh", "epoch"),
    )


def make_ranker(config: Config, data: InteractionData, scheme_name: str):
    from tandem.models.rankers import build_ranker

    if config.ranker is None:
        raise ValueError(f"scheme {scheme_name!r} trains a ranker: the config needs a 'ranker' section")
    return build_ranker(
        config.ranker["name"],
        num_users=data.num_users,
        num_items=data.num_items,
        user_features=data.user_features,
        item_features=data.item_features,
        **options_of(config.ranker),
    )


def make_distill(name: str, sampler: dict[str, Any] | None = None):
    """The CoRR distillation loss called `name` (None for 'none').

    'corollary' (seed 000 Corollary 3.2) reads log Q(i|c) off the retriever's scores as M(i, c) / T, so it is built
    with the temperature T of the configured sampler (1.0 when the sampler has none).
    """
    from tandem.losses.distill import build_distill_loss

    if name == "none":
        return None
    if name == "corollary":
        return build_distill_loss(name, temperature=(sampler or {}).get("temperature", 1.0))
    return build_distill_loss(name)


def build_cooperative_scheme(config: Config, data: InteractionData, split: Split) -> Scheme:
    """independent / corr / rankflow / icc with their scheme options checked against the scheme's constructor."""
    name = config.scheme["name"]
    options = options_of(config.scheme)
    common = {
        "retriever": make_retriever(config, data, split),
        "ranker": make_ranker(config, data, name),
        "sampler": make_sampler(config.sampler, data, split, config.seed),
        "num_negatives": config.train.num_negatives,
        "refresh": config.sampler.get("refresh", "epoch"),
        "seed": config.seed,
    }
    if name in ("independent", "rankflow"):
        common["loss"] = make_loss(config.loss, data)
    if name == "corr":
        options["distill"] = make_distill(options.get("distill", "kl"), config.sampler)
    cls = COOPERATIVE[name]
    return call_with_options(cls, common, options, what=f"scheme {name!r}")


COOPERATIVE = {"independent": IndependentScheme, "corr": CoRRScheme, "rankflow": RankFlowScheme, "icc": ICCScheme}

SCHEMES: dict[str, Callable[[Config, InteractionData, Split], Scheme]] = {
    "retriever": build_retriever_scheme,
    **{name: build_cooperative_scheme for name in COOPERATIVE},
}


def build_scheme_from_config(config: Config, data: InteractionData, split: Split) -> Scheme:
    name = config.scheme["name"]
    if name not in SCHEMES:
        raise ValueError(f"unknown scheme {name!r}; expected one of {sorted(SCHEMES)}")
    return SCHEMES[name](config, data, split)
