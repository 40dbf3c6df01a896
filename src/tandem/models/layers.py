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


def transformer_encoder(width: int, num_heads: int, feedforward_dim: int, dropout: float, num_layers: int, *,
                        norm_first: bool) -> nn.TransformerEncoder:
    """`num_layers` batch-first Transformer layers (GELU feed-forward) over tokens of `width`: pre-norm for SASRec's
    causal stack, post-norm (BERT's) for BERT4Rec. Checks that the heads divide the width, with the values named."""
    if num_heads < 1 or num_layers < 1:
        raise ValueError(f"num_heads and num_layers must be >= 1, got {num_heads} and {num_layers}")
    if width % num_heads:
        raise ValueError(f"embedding_dim ({width}) must be divisible by num_heads ({num_heads})")
    layer = nn.TransformerEncoderLayer(width, num_heads, feedforward_dim, dropout, activation="gelu",
                                       batch_first=True, norm_first=norm_first)
    use_uniform_mask_dropout(layer)
    return nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)  # copies the layer


def use_uniform_mask_dropout(module: nn.Module) -> nn.Module:
    """Swap every `nn.Dropout` inside `module` (a Transformer layer's residual and feed-forward dropouts) for the
    equivalent, cheaper UniformMaskDropout; attention-weight dropout inside the attention kernel is left as is."""
    for name, child in list(module.named_children()):
        if type(child) is nn.Dropout:
            setattr(module, name, UniformMaskDropout(child.p))
        else:
            use_uniform_mask_dropout(child)
    return module


class UniformMaskDropout(nn.Dropout):
    """Inverted dropout (each entry kept with probability 1 - p, kept ones scaled by 1 / (1 - p)) whose mask comes
    from `torch.rand_like(x) >= p` instead of `bernoulli_`: the same distribution (up to float32 uniform
    resolution), ~3.5x cheaper on CPU, where `bernoulli_` was a fifth of a CoRR (MF + DeepFM) step
    (benchmarks/cooperative.py --speed). One fused mask-and-scale tensor is kept for the backward pass."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return x * 0.0
        keep = torch.rand_like(x).ge_(self.p)
        return x * keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))
