"""The sampler protocol shared by every negative sampler.

A sampler draws negatives for a batch of queries and reports the normalised log-probability of each draw under the
distribution it really sampled from, so a loss can correct by log Q (seed 000 eqs. 1-2).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import torch

#: Rows x items evaluated at once by `Sampler.mixture_log_prob` (bounds its memory whatever the batch size).
MIXTURE_CHUNK_ELEMENTS = 1 << 22


class Sampler(ABC):
    """Draws items in 1..num_items (0 is padding and is never drawn).

    `sample(query [B, d], num, context=None) -> (items [B, num] long, log_q [B, num])`
    `log_prob(query [B, d], items [B, L], context=None) -> log_q [B, L]`
    `context` ([B] long ids of the contexts, e.g. users or training examples) is only used by samplers that keep
    per-context state (AdaSIR pools); the others ignore it.
    `refresh(item_vectors [N+1, d])` is called when the retriever's embeddings move; static samplers ignore it.
    """

    def __init__(self, num_items: int) -> None:
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        self.num_items = int(num_items)

    @abstractmethod
    def sample(
        self, query: torch.Tensor, num: int, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw `num` items per query row; return (items [B, num], log_q [B, num])."""

    @abstractmethod
    def log_prob(
        self, query: torch.Tensor, items: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Normalised log-probability of `items` [B, L] under this sampler's distribution for each query."""

    @torch.no_grad()
    def mixture_log_prob(
        self, query: torch.Tensor, items: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """log (1/B) sum_j Q(item | c_j) [L] for `items` [L]: the proposal of items pooled from all B rows' draws.

        Shared in-batch negatives (every row scored against the batch's B * n draws) were drawn by different rows,
        each from its own Q(.|c_j); a pooled item was therefore drawn from the batch mixture, the log-probability a
        corrected loss must use for it, in every row. Static samplers (Q independent of the query) return Q itself.
        Rows are evaluated in chunks, so memory is O(MIXTURE_CHUNK_ELEMENTS) whatever B and L.
        """
        if items.dim() != 1:
            raise ValueError(f"items must be 1-D [L], got shape {tuple(items.shape)}")
        batch = query.shape[0]
        if not self.adaptive or batch == 1:
            part = context[:1] if context is not None else None
            return self.log_prob(query[:1], items.unsqueeze(0), context=part).squeeze(0)
        rows = max(1, MIXTURE_CHUNK_ELEMENTS // max(1, items.shape[0]))
        total: torch.Tensor | None = None
        for start in range(0, batch, rows):
            stop = min(batch, start + rows)
            part = None if context is None else context[start:stop]
            log_q = self.log_prob(query[start:stop], items.unsqueeze(0).expand(stop - start, -1), context=part)
            chunk = torch.logsumexp(log_q, dim=0)
            total = chunk if total is None else torch.logaddexp(total, chunk)
        return total - math.log(batch)

    def refresh(self, item_vectors: torch.Tensor) -> None:  # noqa: B027 - optional hook
        """Rebuild whatever depends on the retriever's item vectors [N+1, d] (row 0 is padding)."""

    @property
    def adaptive(self) -> bool:
        """True when the distribution depends on the model (and so `refresh` matters)."""
        return False

    #: Attributes that are caches (recomputed on demand, identical values): left out of `state_dict`.
    STATELESS: tuple[str, ...] = ("_cache",)

    def state_dict(self) -> dict[str, Any]:
        """Everything this sampler holds, for an exact resume: its index or pools, stored item vectors, scalars and
        the state of every random generator it draws with. Tensors, numbers, strings and containers only (loadable
        with `torch.load(weights_only=True)`); caches are left out (see `STATELESS`)."""
        return {name: _encode(value, f"{type(self).__name__}.{name}") for name, value in vars(self).items()
                if name not in self.STATELESS}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        """Restore what `state_dict` returned; tensors that lived on an accelerator go to `device`."""
        for name, value in state.items():
            setattr(self, name, _decode(value, getattr(self, name, None), torch.device(device)))
        for name in self.STATELESS:
            if hasattr(self, name):
                setattr(self, name, None)


def _encode(value: Any, where: str) -> Any:
    """A sampler attribute as plain containers and CPU tensors (generators as their state)."""
    from tandem.sampling._common import SeededGenerators

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return {"kind": "tensor", "value": value.detach().cpu(), "accelerator": value.device.type != "cpu"}
    if isinstance(value, torch.Generator):
        return {"kind": "generator", "state": value.get_state(), "device": str(value.device)}
    if isinstance(value, SeededGenerators):
        return {"kind": "seeded", "seed": value.seed,
                "states": {device: gen.get_state() for device, gen in value._generators.items()}}
    if isinstance(value, (tuple, list)) and type(value) in (tuple, list):
        return {"kind": type(value).__name__, "items": [_encode(item, where) for item in value]}
    raise TypeError(f"{where}: cannot save a {type(value).__name__} in a sampler checkpoint")


def _decode(value: Any, current: Any, device: torch.device) -> Any:
    """Inverse of `_encode`; a SeededGenerators object is restored in place."""
    from tandem.sampling._common import SeededGenerators

    if not isinstance(value, dict):
        return value
    kind = value["kind"]
    if kind == "tensor":
        return value["value"].to(device) if value["accelerator"] else value["value"]
    if kind == "generator":
        generator = torch.Generator(device=value["device"])
        generator.set_state(value["state"])
        return generator
    if kind == "seeded":
        restored = current if isinstance(current, SeededGenerators) else SeededGenerators(value["seed"])
        restored.seed = value["seed"]
        restored._generators = {}
        for name, state in value["states"].items():
            generator = torch.Generator(device=name)
            generator.set_state(state)
            restored._generators[name] = generator
        return restored
    items = [_decode(item, None, device) for item in value["items"]]
    return tuple(items) if kind == "tuple" else items
