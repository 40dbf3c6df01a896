"""Every config key is used or an error, for every scheme (issue 11): a bogus key in any section, under any
registered scheme, stops the config with one error naming `section.key`; so does a section the scheme does not use.
The schemes, sections and components come from the registries and the Config dataclass: no hand-kept list."""
from __future__ import annotations

import dataclasses

import pytest

from tandem.config import Config, config_from_dict
from tandem.errors import TandemError
from tandem.registry import RANKERS, SCHEMES
from tandem.training.registry import COMPONENT_REGISTRIES

BOGUS = "bogus_key"
#: every mapping section of a config (data, train, eval are dataclasses; the others components)
SECTIONS = [field.name for field in dataclasses.fields(Config) if field.name not in ("task", "seed")]


def base(scheme: str) -> dict:
    """The smallest config running `scheme` (a ranker section when the scheme trains one)."""
    raw: dict = {"scheme": {"name": scheme}}
    if "ranker" in SCHEMES.accepts(scheme):
        raw["ranker"] = {"name": next(iter(RANKERS))}
    return raw


def error_of(raw: dict) -> str:
    with pytest.raises(TandemError) as caught:
        config_from_dict(raw)
    return str(caught.value)


def section_paths(scheme: str) -> list[tuple[str, ...]]:
    """Every section of a config for `scheme`, and every sub-component option of the scheme (CoRR's distill)."""
    paths = [(section,) for section in SECTIONS]
    paths += [("scheme", key) for key in SCHEMES[scheme].components]
    return paths


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_the_base_configs_are_valid(scheme):
    config_from_dict(base(scheme))


@pytest.mark.parametrize(("scheme", "path"), [(scheme, path) for scheme in SCHEMES for path in section_paths(scheme)],
                         ids=lambda value: ".".join(value) if isinstance(value, tuple) else value)
def test_a_bogus_key_in_every_section_under_every_scheme_is_an_error_naming_it(scheme, path):
    raw = base(scheme)
    defaults = Config().to_dict()
    section = path[0]
    if len(path) == 1:
        current = raw.get(section, defaults[section])
        if current is None:  # a section this scheme does not use at all (the ranker of the retriever scheme)
            raw[section] = {"name": next(iter(RANKERS))}
            assert f"config key {section!r}" in error_of(raw)
            return
        raw[section] = {**current, BOGUS: 1}
    else:  # a sub-component option, given as a mapping {name: <its default>, ...}
        registry, default = SCHEMES[scheme].components[path[1]]
        raw[section] = {**raw[section], path[1]: {"name": default, BOGUS: 1}}
    message = error_of(raw)
    assert f"'{'.'.join(path)}.{BOGUS}'" in message, message


@pytest.mark.parametrize(("section", "name"), [(section, name) for section, registry in COMPONENT_REGISTRIES.items()
                                               if section != "scheme" for name in registry])
def test_a_bogus_option_of_every_registered_component_is_an_error_naming_it(section, name):
    """Each retriever, ranker, sampler and loss refuses an option it does not have, at load time."""
    raw = base("independent")
    raw[section] = {"name": name, BOGUS: 1}
    message = error_of(raw)
    assert f"'{section}.{BOGUS}'" in message and repr(name) in message, message


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_a_section_the_scheme_does_not_consume_is_refused_or_used(scheme):
    """A non-default loss is either used by the scheme or an error naming `loss`."""
    raw = base(scheme)
    raw["loss"] = {"name": "bpr"}
    try:
        config_from_dict(raw)
    except TandemError as error:
        assert "'loss" in str(error), error


def test_icc_uses_the_loss_only_for_its_retriever_loss():
    raw = {"scheme": {"name": "icc"}, "ranker": {"name": next(iter(RANKERS))}, "loss": {"name": "bpr"}}
    assert "scheme.retriever_loss" in error_of(raw)
    raw["scheme"]["retriever_loss"] = True
    config_from_dict(raw)


def test_ill_typed_options_name_the_key_the_type_and_the_value():
    raw = base("corr")
    raw["scheme"]["distill"] = {"name": "rankdistill", "top_k": 2.5}
    message = error_of(raw)
    assert "'scheme.distill.top_k'" in message and "int" in message and "2.5" in message
    message = error_of({"retriever": {"name": "mf", "embedding_dim": "big"}})
    assert "'retriever.embedding_dim'" in message and "int" in message and "'big'" in message
    message = error_of({"sampler": {"name": "midx", "exclude_padding": "yes"}})
    assert "'sampler.exclude_padding'" in message and "bool" in message


@pytest.mark.parametrize("name, option", [("rankdistill", "top_k"), ("codistill", "num_samples")])
def test_distillation_counts_must_fit_the_rows_sample(name, option):
    """RankDistill's top_k and CoDistill's num_samples count items of the row's sampled negatives: above
    train.num_negatives (or below 1) is refused, naming the key, instead of silently clamped."""
    raw = base("corr")
    raw.setdefault("train", {})["num_negatives"] = 8
    raw["scheme"]["distill"] = {"name": name, option: 9}
    message = error_of(raw)
    assert f"'scheme.distill.{option}'" in message and "num_negatives = 8" in message
    raw["scheme"]["distill"] = {"name": name, option: 0}
    assert f"'scheme.distill.{option}'" in error_of(raw)
    raw["scheme"]["distill"] = {"name": name, option: 8}
    config_from_dict(raw)
