"""One registration idiom for every kind of component: a decorator next to the class or function.

    from tandem.registry import register_retriever

    @register_retriever("gmf")
    class GMF(Retriever):
        def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64) -> None: ...

A registry finds its components by importing every module of its package the first time it is asked for a name,
so adding a component is one new file: no import list, no name table to edit. A component is built with the
user's options (its keyword arguments: an unknown one, or one of the wrong type, is an error that names it) plus
whichever *context* arguments its constructor accepts. The context is what the wiring derives from the data and
the other components (`num_items`, `num_users`, `item_counts`, the built retriever...): a factory takes what it
needs by naming it in its signature, so there are no name-based special cases in the wiring, and a context name is
never a user option.

Options are checked once, against the factory's signature and type annotations (pydantic, strict: an `int` option
refuses 2.5 and true, a `float` one accepts 3) and the ranges their names imply (`check_range`: sizes >= 1,
dropout in [0, 1), temperatures > 0), by `check` — which `tandem.config` runs when a config is loaded, before any
data is read, and `build` runs for direct calls.

The registries:

| registry       | package                  | built by                                   | context                                 |
|----------------|--------------------------|--------------------------------------------|-----------------------------------------|
| RETRIEVERS     | tandem.models.retrievers | `build_retriever`                          | num_users, num_items, max_seq_len, features |
| RANKERS        | tandem.models.rankers    | `build_ranker`                             | num_users, num_items, features          |
| SAMPLERS       | tandem.sampling          | `build_sampler`                            | num_items, item_counts, num_contexts    |
| LOSSES         | tandem.losses            | `build_loss` (a `RetrieverLoss`)           | num_items                               |
| DISTILL_LOSSES | tandem.losses            | `build_distill_loss` (options bound)       | temperature (the sampler's)             |
| SCHEMES        | tandem.training          | `build_scheme_from_config`                 | the built models, sampler, loss...      |
| FORMATS        | tandem.data              | `read_dataset`                             | —                                       |
"""
from __future__ import annotations

import functools
import importlib
import inspect
import math
import pkgutil
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

_NO_CHECK = object()  # an annotation that cannot be checked (a tensor type, a forward reference...)


def _type_name(annotation: Any) -> str:
    """`int`, `float | None`, `Sequence[int]`: an annotation as a user reads it in an error."""
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("collections.abc.", "").replace("NoneType", "None")


@functools.lru_cache(maxsize=None)
def _adapter(annotation: Any) -> Any:
    """A pydantic TypeAdapter for `annotation`, or _NO_CHECK when pydantic cannot validate it."""
    try:
        from pydantic import TypeAdapter

        return TypeAdapter(annotation)
    except Exception:  # noqa: BLE001 - pydantic refuses arbitrary classes (tensors, feature tables): not checked
        return _NO_CHECK


def check_type(value: Any, annotation: Any, key: str) -> None:
    """ValueError `key: expected <type>, got <value>` unless `value` is of type `annotation` (strict: no
    coercion but int -> float)."""
    if annotation is inspect.Parameter.empty or annotation is Any or isinstance(annotation, str):
        return
    try:
        adapter = _adapter(annotation)
    except TypeError:  # unhashable annotation
        return
    if adapter is _NO_CHECK:
        return
    from pydantic import ValidationError

    try:
        adapter.validate_python(value, strict=True)
    except ValidationError:
        raise ValueError(f"{key}: expected {_type_name(annotation)}, got {value!r}") from None


# Ranges an option has whatever the component, recognised by its name (a component needing another range annotates
# it: `Annotated[int, annotated_types.Ge(0)]`, which pydantic checks too).
_POSITIVE_INT_NAMES = ("niter", "top_k", "top_factor", "tutor_top", "max_points_per_centroid", "hidden")
_POSITIVE_NUMBER_NAMES = ("temperature", "tau")


def _positive_int_option(name: str) -> bool:
    return name in _POSITIVE_INT_NAMES or name.startswith("num_") or name.endswith(("_dim", "_size", "_hidden"))


def check_range(name: str, value: Any, key: str) -> None:
    """ValueError `key: expected ...` when `value` is out of the range its option `name` implies: sizes and counts
    >= 1 (`num_*`, `*_dim`, `*_size`, `*_hidden`, top_k...), dropout in [0, 1), temperatures > 0, every number
    finite."""
    values = value if isinstance(value, (list, tuple)) else [value]
    for number in values:
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueError(f"{key}: expected a finite number, got {value!r}")
    if value is None:
        return
    if _positive_int_option(name):
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in values):
            plural = " (or a list of them)" if isinstance(value, (list, tuple)) else ""
            raise ValueError(f"{key}: expected a positive integer{plural}, got {value!r}")
    elif name == "dropout" or name.endswith("_dropout"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"{key}: expected a probability in [0, 1), got {value!r}")
    elif name in _POSITIVE_NUMBER_NAMES:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{key}: expected a positive number, got {value!r}")


def _signature_target(factory: Callable[..., Any]) -> Callable[..., Any]:
    return factory.__init__ if inspect.isclass(factory) else factory  # type: ignore[misc]


@functools.lru_cache(maxsize=None)
def _hints(factory: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(_signature_target(factory))
    except Exception:  # noqa: BLE001 - an annotation that does not resolve is simply not checked
        return {}


class Registry(Mapping[str, Callable[..., Any]]):
    """Name -> component factory (a class or a function) for one kind of component ("retriever", "sampler"...).

    A read-only mapping, so `name in REGISTRY`, `sorted(REGISTRY)` and `REGISTRY[name]` work as on a dict
    (iteration is sorted and leaves out aliases).

    `context`: argument names the wiring supplies (never user options). `bind`: the factory is the component
    itself, a function whose keyword-only arguments are its options; `build` returns it with them bound.
    """

    def __init__(self, kind: str, package: str | None = None, *, context: Iterable[str] = (),
                 bind: bool = False) -> None:
        self.kind = kind
        self.package = package
        self.context = frozenset(context)
        self.bind = bind
        self._entries: dict[str, Callable[..., Any]] = {}
        self._aliases: dict[str, str] = {}
        self._discovered = package is None

    def register(self, name: str | None = None, *, aliases: Iterable[str] = ()) -> Callable[[T], T]:
        """Decorator registering a class or function under `name` (default: its lower-cased `__name__`) and any
        `aliases` (accepted names that are not listed)."""

        def decorate(component: T) -> T:
            key = (name or getattr(component, "__name__")).lower()
            existing = self._entries.get(key)
            if existing is not None and existing is not component:
                raise ValueError(f"{self.kind} {key!r} is registered twice: {existing!r} and {component!r}")
            self._entries[key] = component  # type: ignore[assignment]
            for alias in aliases:
                self._aliases[alias.lower()] = key
            return component

        return decorate

    def _discover(self) -> None:
        """Import every module of the package once, so their decorators run."""
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.package)  # type: ignore[arg-type]
        for module in pkgutil.walk_packages(package.__path__, prefix=f"{self.package}."):
            importlib.import_module(module.name)

    def canonical(self, name: str) -> str:
        """The registered name `name` stands for (itself, or what it is an alias of)."""
        self._discover()
        return self._aliases.get(name, name)

    def __getitem__(self, name: str) -> Callable[..., Any]:
        self._discover()
        key = self._aliases.get(name, name)
        if key not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; expected one of {sorted(self._entries)}")
        return self._entries[key]

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        self._discover()
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        self._discover()
        return len(self._entries)

    # ------------------------------------------------------------------------------------------- signatures
    def parameters(self, name: str) -> dict[str, inspect.Parameter]:
        """Every named parameter the factory `name` accepts (context and options)."""
        factory = self[name]
        kinds = (inspect.Parameter.KEYWORD_ONLY,) if self.bind else (
            inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        parameters = inspect.signature(factory).parameters
        accepted = {key: p for key, p in parameters.items() if p.kind in kinds}
        if self.bind:  # the context may also arrive as an ordinary keyword argument
            accepted.update({key: p for key, p in parameters.items() if key in self.context
                             and p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD})
        return accepted

    def accepts(self, name: str) -> frozenset[str]:
        """Names of the context arguments the factory `name` takes."""
        return frozenset(key for key in self.parameters(name) if key in self.context)

    def options(self, name: str) -> dict[str, inspect.Parameter]:
        """The user options of `name`: its parameters that are not context, with their defaults."""
        return {key: p for key, p in self.parameters(name).items() if key not in self.context}

    def defaults(self, name: str) -> dict[str, Any]:
        """The default value of every option of `name` that has one."""
        return {key: p.default for key, p in self.options(name).items() if p.default is not inspect.Parameter.empty}

    def check(self, name: str, options: Mapping[str, Any], where: str | None = None) -> None:
        """ValueError unless every key of `options` is an option of `name` with a value of its annotated type.

        `where` is the config section ("sampler", "scheme.distill"): the error then names `where.key`."""
        allowed = self.options(name)
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            if where is None:
                raise ValueError(f"unknown option(s) {unknown} for {self.kind} {name!r}; allowed: {sorted(allowed)}")
            keys = ", ".join(repr(f"{where}.{key}") for key in unknown)
            raise ValueError(f"unknown config key {keys} for {self.kind} {name!r}; allowed: {sorted(allowed)}")
        hints = _hints(self[name])
        for key, value in options.items():
            label = f"config key '{where}.{key}'" if where is not None else f"{self.kind} {name!r} option {key!r}"
            check_type(value, hints.get(key, allowed[key].annotation), label)
            check_range(key, value, label)

    def build(self, name: str, context: Mapping[str, Any], options: Mapping[str, Any]) -> Any:
        """The component `name` built from the user's `options` and the `context` arguments it accepts.

        A required argument that neither gives is a ValueError naming it."""
        self.check(name, options)
        factory = self[name]
        parameters = self.parameters(name)
        arguments = {key: value for key, value in context.items() if key in parameters}
        arguments.update(options)
        missing = [key for key, p in parameters.items() if p.default is inspect.Parameter.empty
                   and key not in arguments and not (self.bind and p.kind is not inspect.Parameter.KEYWORD_ONLY)]
        if missing:
            raise ValueError(f"{self.kind} {name!r} needs {', '.join(missing)}")
        if self.bind:
            return functools.partial(factory, **arguments) if arguments else factory
        return factory(**arguments)


#: context every model may take: the catalogue, the users and their side features (FeatureTables)
MODEL_CONTEXT = ("num_users", "num_items", "user_features", "item_features")

RETRIEVERS = Registry("retriever", "tandem.models.retrievers", context=(*MODEL_CONTEXT, "max_seq_len"))
RANKERS = Registry("ranker", "tandem.models.rankers", context=MODEL_CONTEXT)
SAMPLERS = Registry("sampler", "tandem.sampling", context=("num_items", "item_counts", "num_contexts"))
LOSSES = Registry("loss", "tandem.losses", context=("num_items",))
DISTILL_LOSSES = Registry("distillation loss", "tandem.losses", context=("temperature",), bind=True)
SCHEMES = Registry("scheme", "tandem.training", context=(
    "retriever", "ranker", "sampler", "loss", "num_negatives", "refresh", "seed"))
FORMATS = Registry("data format", "tandem.data", context=())

register_retriever = RETRIEVERS.register
register_ranker = RANKERS.register
register_sampler = SAMPLERS.register
register_loss = LOSSES.register
register_distill_loss = DISTILL_LOSSES.register
register_scheme = SCHEMES.register
register_format = FORMATS.register

__all__ = [
    "Registry", "check_type",
    "RETRIEVERS", "RANKERS", "SAMPLERS", "LOSSES", "DISTILL_LOSSES", "SCHEMES", "FORMATS",
    "register_retriever", "register_ranker", "register_sampler", "register_loss", "register_distill_loss",
    "register_scheme", "register_format",
]
