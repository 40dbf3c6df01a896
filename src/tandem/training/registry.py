"""The wiring: a config's component sections built through the registries (`tandem.registry`) into a scheme.

Every section is `{name, **options}`. The wiring derives the *context* from the data (num_users, num_items,
max_seq_len, feature tables, item_counts, num_contexts) and from the components already built (the retriever,
the ranker, the sampler, the loss...), and each factory takes the context it names in its signature. A scheme
says which sections it consumes the same way: a scheme whose constructor takes no `ranker` trains none. There is
no list of names here: a new component or scheme is picked up by its registry.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tandem.config import Config
from tandem.data.dataset import InteractionData
from tandem.data.splits import Split
from tandem.registry import DISTILL_LOSSES, LOSSES, RANKERS, RETRIEVERS, SAMPLERS, SCHEMES, Registry
from tandem.sampling.base import Sampler
from tandem.training.distributed import current_topology

#: keys of a section the wiring consumes itself (not options of the component)
RESERVED = {"sampler": ("refresh",)}


def options_of(section: Mapping[str, Any], *reserved: str) -> dict[str, Any]:
    """A config section's options: everything but its name and the keys the wiring consumes itself."""
    return {key: value for key, value in section.items() if key not in ("name", *reserved)}


def section_options(section_name: str, section: Mapping[str, Any]) -> dict[str, Any]:
    return options_of(section, *RESERVED.get(section_name, ()))


def make_retriever(config: Config, data: InteractionData, split: Split):
    context = {"num_users": data.num_users, "num_items": data.num_items, "max_seq_len": max(1, split.max_seq_len),
               "user_features": data.user_features, "item_features": data.item_features}
    return RETRIEVERS.build(config.retriever["name"], context, options_of(config.retriever))


def make_ranker(config: Config, data: InteractionData, scheme_name: str):
    if config.ranker is None:
        raise ValueError(f"scheme {scheme_name!r} trains a ranker: the config needs a 'ranker' section")
    context = {"num_users": data.num_users, "num_items": data.num_items,
               "user_features": data.user_features, "item_features": data.item_features}
    return RANKERS.build(config.ranker["name"], context, options_of(config.ranker))


def make_sampler(section: Mapping[str, Any], data: InteractionData, split: Split, seed: int) -> Sampler:
    """The configured sampler; the data-derived context (item counts, number of contexts) is offered to it, and
    its `seed` defaults to the run's plus the process rank, so that under torchrun every rank draws its own
    negatives (a single process: the run's seed)."""
    name = section["name"]
    options = section_options("sampler", section)
    if "seed" in SAMPLERS.options(name):
        options.setdefault("seed", seed + current_topology().rank)
    context = {"num_items": data.num_items, "item_counts": data.item_counts(),
               "num_contexts": split.train.num_contexts}
    return SAMPLERS.build(name, context, options)


def make_loss(section: Mapping[str, Any], data: InteractionData):
    return LOSSES.build(section["name"], {"num_items": data.num_items}, options_of(section))


def component_spec(value: Any, key: str, registry: Registry) -> tuple[str, dict[str, Any]] | None:
    """A sub-component option (`distill: kl` or `distill: {name: rankdistill, top_k: 5}`) as (name, options);
    None for 'none'."""
    if isinstance(value, Mapping):
        name, options = value.get("name"), options_of(value)
    else:
        name, options = value, {}
    if name == "none" and not options:
        return None
    if not isinstance(name, str) or name not in registry:
        raise ValueError(f"config key {key!r}: unknown {registry.kind} {name!r}; expected one of "
                         f"{[*registry, 'none']} (or a mapping {{name: ..., options...}})")
    return registry.canonical(name), options


def make_components(scheme_cls: type, options: dict[str, Any], sampler: Mapping[str, Any]) -> dict[str, Any]:
    """`options` with each sub-component option of the scheme (`Scheme.components`, e.g. CoRR's `distill`) built
    by its registry; the distillation losses get the sampler's temperature as context."""
    built = dict(options)
    for key, (registry, default) in scheme_cls.components.items():
        spec = component_spec(options.get(key, default), f"scheme.{key}", registry)
        if spec is None:
            built[key] = None
            continue
        name, sub_options = spec
        context = {"temperature": sampler.get("temperature", 1.0)} if registry is DISTILL_LOSSES else {}
        built[key] = registry.build(name, context, sub_options)
    return built


def build_scheme_from_config(config: Config, data: InteractionData, split: Split):
    """The configured scheme, built with exactly the components its constructor takes (models first, in the
    order retriever, ranker, so that their initialisation draws the same random numbers as always)."""
    name = config.scheme["name"]
    scheme_cls = SCHEMES[name]
    takes = SCHEMES.accepts(name)
    context: dict[str, Any] = {
        "num_negatives": config.train.num_negatives,
        "refresh": config.sampler.get("refresh", "epoch"),
        "seed": config.seed + current_topology().rank,  # a scheme's own samplers differ by rank too
        "retriever": make_retriever(config, data, split),
    }
    if "ranker" in takes:
        context["ranker"] = make_ranker(config, data, name)
    context["sampler"] = make_sampler(config.sampler, data, split, config.seed)
    if "loss" in takes:
        context["loss"] = make_loss(config.loss, data)
    options = make_components(scheme_cls, options_of(config.scheme), config.sampler)
    return SCHEMES.build(name, context, options)


# ---------------------------------------------------------------------------------------------- config checks
COMPONENT_REGISTRIES: dict[str, Registry] = {"retriever": RETRIEVERS, "ranker": RANKERS, "sampler": SAMPLERS,
                                             "loss": LOSSES, "scheme": SCHEMES}


def check_config(config: Config) -> None:
    """Every component section of `config` checked through the registries, before any data is read; a ValueError
    naming the key for the first problem:

    - each section names a registered component and gives only its options, each of its annotated type;
    - the scheme consumes every section given: a scheme whose constructor takes no `ranker` refuses a ranker
      section (and one that takes it needs it), a section it does not take must stay the default, and a scheme may
      refuse more (`Scheme.check_sections`, e.g. ICC's loss without `retriever_loss`);
    - a scheme option naming a component of another registry (CoRR's `distill`) is checked by that registry.
    """
    defaults = Config()
    sections = {name: getattr(config, name) for name in COMPONENT_REGISTRIES}
    for section, registry in COMPONENT_REGISTRIES.items():
        value = sections[section]
        if value is not None and value.get("name") not in registry:
            raise ValueError(f"config key '{section}.name': unknown {registry.kind} {value.get('name')!r}; "
                             f"expected one of {list(registry)}")
    scheme_name = config.scheme["name"]
    scheme_cls = SCHEMES[scheme_name]
    takes = SCHEMES.accepts(scheme_name)
    if "ranker" in takes and config.ranker is None:
        raise ValueError(f"config key 'ranker': scheme {scheme_name!r} trains a ranker: the config needs a 'ranker' "
                         f"section")
    if "ranker" not in takes and config.ranker is not None:
        raise ValueError(f"config key 'ranker': scheme {scheme_name!r} trains no ranker; remove the section")
    if config.eval.select == "stages" and not scheme_cls.cooperative:
        raise ValueError(f"config key 'eval.select': 'stages' selects a retriever and a ranker; scheme "
                         f"{scheme_name!r} trains no ranker")
    for section in ("sampler", "loss"):
        if section not in takes and sections[section] != getattr(defaults, section):
            raise ValueError(f"config key {section!r}: scheme {scheme_name!r} does not use a {section}; remove the "
                             f"section")
    for section, registry in COMPONENT_REGISTRIES.items():
        value = sections[section]
        if value is None or section == "scheme":
            continue
        registry.check(registry.canonical(value["name"]), section_options(section, value), where=section)
    refresh = config.sampler.get("refresh", "epoch")
    if not (refresh == "epoch" or (isinstance(refresh, int) and not isinstance(refresh, bool) and refresh >= 1)):
        raise ValueError(f"config key 'sampler.refresh': expected 'epoch' or a positive number of steps, got "
                         f"{refresh!r}")
    options = options_of(config.scheme)
    SCHEMES.check(scheme_name, {key: value for key, value in options.items() if key not in scheme_cls.components},
                  where="scheme")
    for key, (registry, default) in scheme_cls.components.items():
        spec = component_spec(options.get(key, default), f"scheme.{key}", registry)
        if spec is not None:
            registry.check(spec[0], spec[1], where=f"scheme.{key}")
            if registry is DISTILL_LOSSES:
                check_distill_sample_options(spec[1], config.train.num_negatives, f"scheme.{key}")
    scheme_cls.check_sections(options, sections)


#: Distillation options that count items of the row's sample S (its `train.num_negatives` negatives).
DISTILL_SAMPLE_OPTIONS = ("top_k", "num_samples")


def check_distill_sample_options(options: Mapping[str, Any], num_negatives: int, where: str) -> None:
    """A distillation loss works on the row's sampled negatives only: an option counting items of that sample
    must not exceed train.num_negatives (the loss would otherwise clamp it silently; >= 1 is checked with the
    option's type)."""
    for option in DISTILL_SAMPLE_OPTIONS:
        value = options.get(option)
        if value is not None and value > num_negatives:
            raise ValueError(f"config key '{where}.{option}': {value} items of the sample, but each row's sample "
                             f"holds train.num_negatives = {num_negatives}; expected 1..{num_negatives}")
