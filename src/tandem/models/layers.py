"""Layers shared by retrievers and rankers."""
from __future__ import annotations

import torch
from torch import nn


def padded_item_embedding(num_items: int, dim: int, init_std: float) -> nn.Embedding:
    """An item table of N + 1 rows, normal(0, init_std), whose row 0 (the padding item) is zero and gets no gradient."""
    table = nn.Embedding(num_items + 1, dim, padding_idx=0)
    nn.init.normal_(table.weight, std=init_std)
    with torch.no_grad():
        table.weight[0].zero_()
    return table
