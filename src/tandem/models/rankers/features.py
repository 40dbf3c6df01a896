"""Shared embedding of side-feature tables for rankers: ids in, one field vector per feature out.

- categorical: an embedding row per value, value 0 (missing) embeds to the zero vector;
- multi: the mean of the embeddings of the row's non-zero values (a row with none embeds to zero);
- numeric: a learned linear map x -> x * w + b (NaN values count as 0, the standardised mean).

The tables are registered as buffers, so `.to(device)` moves them and `state_dict()` stores them with the model.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from tandem.data.features import FeatureTable
from tandem.models.layers import UniformMaskDropout

FeatureInput = Mapping[str, FeatureTable] | Iterable[FeatureTable] | None


def as_table_list(tables: FeatureInput) -> list[FeatureTable]:
    """A list of tables from a {name: table} mapping, an iterable of tables or None."""
    if tables is None:
        return []
    if isinstance(tables, Mapping):
        tables = tables.values()
    result = list(tables)
    for table in result:
        if not isinstance(table, FeatureTable):
            raise TypeError(f"expected FeatureTable, got {type(table).__name__}")
        if table.kind not in ("categorical", "multi", "numeric"):
            raise ValueError(f"feature {table.name!r} has unknown kind {table.kind!r}; "
                             "expected categorical, multi or numeric")
    return result


class FeatureEmbedding(nn.Module):
    """Embeds the features of ids: `forward(ids [...]) -> [..., F, dim]`, one field per table, in table order.

    `num_rows` (when given) checks that every table has a row per id. With no tables, F = 0.

    >>> import torch
    >>> from tandem.data.features import FeatureTable
    >>> genre = FeatureTable("genre", "multi", torch.tensor([[0, 0], [1, 2], [2, 0]]), cardinality=3)
    >>> FeatureEmbedding([genre], dim=4)(torch.tensor([[1, 2]])).shape
    torch.Size([1, 2, 1, 4])
    """

    def __init__(self, tables: FeatureInput, dim: int, num_rows: int | None = None, init_std: float = 0.1) -> None:
        super().__init__()
        tables = as_table_list(tables)
        self.dim = dim
        self.names: tuple[str, ...] = tuple(t.name for t in tables)
        self.kinds: tuple[str, ...] = tuple(t.kind for t in tables)
        self.layers = nn.ModuleList()
        for index, table in enumerate(tables):
            if num_rows is not None and table.num_rows != num_rows:
                raise ValueError(f"feature {table.name!r} has {table.num_rows} rows, expected {num_rows}")
            if table.kind == "numeric":
                values = torch.nan_to_num(table.values.to(torch.float32), nan=0.0)
                layer: nn.Module = nn.Linear(1, dim)
                nn.init.normal_(layer.weight, std=init_std)
                nn.init.zeros_(layer.bias)
            else:
                values = table.values.to(torch.long)
                if values.numel() and int(values.min()) < 0:
                    raise ValueError(f"feature {table.name!r} has negative ids")
                cardinality = max(int(table.cardinality), int(values.max()) + 1 if values.numel() else 1, 1)
                layer = nn.Embedding(cardinality, dim, padding_idx=0)
                nn.init.normal_(layer.weight, std=init_std)
                with torch.no_grad():
                    layer.weight[0].zero_()
            self.register_buffer(f"values_{index}", values)
            self.layers.append(layer)

    @property
    def num_fields(self) -> int:
        return len(self.layers)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if not self.layers:
            return ids.new_zeros((*ids.shape, 0, self.dim), dtype=torch.float32)
        fields = []
        for index, (kind, layer) in enumerate(zip(self.kinds, self.layers)):
            values = getattr(self, f"values_{index}")[ids]
            if kind == "categorical":
                fields.append(layer(values))
            elif kind == "multi":
                mask = (values != 0).unsqueeze(-1).to(layer.weight.dtype)
                summed = (layer(values) * mask).sum(-2)
                fields.append(summed / mask.sum(-2).clamp_min(1.0))
            else:
                fields.append(layer(values.unsqueeze(-1).to(layer.weight.dtype)))
        return torch.stack(fields, dim=-2)


def masked_mean(vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `vectors` [..., H, d] over the positions where `mask` [..., H] is true; zero when none is."""
    weights = mask.unsqueeze(-1).to(vectors.dtype)
    return (vectors * weights).sum(-2) / weights.sum(-2).clamp_min(1.0)


def make_mlp(in_dim: int, hidden: Iterable[int], dropout: float, activation: str = "relu") -> nn.Sequential:
    """Linear -> activation -> dropout for each hidden size (no output layer)."""
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(in_dim, int(size)), make_activation(activation, int(size)), UniformMaskDropout(dropout)]
        in_dim = int(size)
    return nn.Sequential(*layers)


ACTIVATIONS = ("relu", "prelu", "sigmoid", "tanh", "gelu")


def make_activation(name: str, size: int = 1) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "prelu":
        return nn.PReLU(size)
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "tanh":
        return nn.Tanh()
    if name == "gelu":
        return nn.GELU()
    raise ValueError(f"unknown activation {name!r}; expected one of {list(ACTIVATIONS)}")
